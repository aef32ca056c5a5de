import type { DeviceStore, WriteBatch } from "./device_store.ts";
/**
 * Group commit in front of the store: while one write is in flight, batches
 * from other partitions queue up and go out together in the next write. Each
 * caller's promise resolves only when the write that contains its batch is
 * acknowledged, and rejects if that write failed.
 *
 * @module
 */

interface Pending {
  readonly batch: WriteBatch;
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
}

export interface StoreWriterStats {
  readonly writes: number;
  readonly readings: number;
  readonly alerts: number;
  readonly failures: number;
  /** Batches waiting for the next write. */
  readonly queued: number;
}

export interface StoreWriterOptions {
  /** Called after each acknowledged write with its batch and the time of the acknowledgement. */
  readonly onStored?: (batch: WriteBatch, ackedAtMs: number) => void;
  readonly now?: () => number;
}

export class StoreWriter {
  readonly #store: Pick<DeviceStore, "write">;
  readonly #options: StoreWriterOptions;
  #queue: Pending[] = [];
  #running = false;
  #writes = 0;
  #readings = 0;
  #alerts = 0;
  #failures = 0;

  constructor(store: Pick<DeviceStore, "write">, options: StoreWriterOptions = {}) {
    this.#store = store;
    this.#options = options;
  }

  get stats(): StoreWriterStats {
    return {
      writes: this.#writes,
      readings: this.#readings,
      alerts: this.#alerts,
      failures: this.#failures,
      queued: this.#queue.length,
    };
  }

  /** Resolves once `batch` is durable. */
  write(batch: WriteBatch): Promise<void> {
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    this.#queue.push({ batch, resolve, reject });
    if (!this.#running) void this.#drain();
    return promise;
  }

  async #drain() {
    this.#running = true;
    try {
      while (this.#queue.length > 0) {
        const group = this.#queue;
        this.#queue = [];
        const merged = merge(group.map((p) => p.batch));
        try {
          await this.#store.write(merged);
          this.#writes++;
          this.#readings += merged.readings.length;
          this.#alerts += merged.alerts.length;
          this.#options.onStored?.(merged, (this.#options.now ?? Date.now)());
          for (const p of group) p.resolve();
        } catch (error) {
          this.#failures++;
          for (const p of group) p.reject(error);
        }
      }
    } finally {
      this.#running = false;
    }
  }
}

function merge(batches: readonly WriteBatch[]): WriteBatch {
  if (batches.length === 1) return batches[0]!;
  return {
    readings: batches.flatMap((b) => b.readings),
    alerts: batches.flatMap((b) => b.alerts),
    devices: batches.flatMap((b) => b.devices),
  };
}
