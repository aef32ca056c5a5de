/**
 * Group commit in front of the store, in two lanes: one for alerts (with the
 * webhook outbox events the store writes beside them), one for everything
 * else (readings). In each lane, while its writes are in flight (one at a time; in the
 * readings' lane as many as the store takes, `DeviceStore.readingWrites`), batches from
 * other partitions queue up and go out together in the next write; the two
 * lanes write independently, so an alert never queues behind a bulk write of
 * readings, nor readings behind alert snapshots. Each caller's promise
 * resolves only when the write that contains its batch is acknowledged — with
 * the readings of its own batch the store refused — and rejects if that write
 * failed.
 *
 * A batch of alerts alone goes to the alerts' lane; any other batch (readings,
 * with or without alerts or device states) to the readings' lane, whole. The
 * processors hand a batch's readings and its alerts over separately and decide
 * their order (actors/processor_supervisor.ts, docs/reliability.md#write-lanes);
 * they and the offline watch write every alert snapshot through the alerts'
 * lane, one write at a time, which the Deno KV store's read-then-write of
 * alerts relies on.
 *
 * @module
 */
import type { DeviceStore, Refusal, WriteBatch, WriteResult } from "./device_store.ts";
import type { AlertDoc } from "../schemas/documents.ts";

interface Pending {
  readonly batch: WriteBatch;
  readonly onStart: (() => void) | undefined;
  readonly resolve: (result: WriteResult) => void;
  readonly reject: (error: unknown) => void;
}

export interface StoreWriterStats {
  /** Store writes, both lanes. */
  readonly writes: number;
  /** Readings stored (identical replays included, refused conflicts not). */
  readonly readings: number;
  readonly alerts: number;
  readonly failures: number;
  /** Batches waiting for the next write of their lane. */
  readonly queued: number;
}

export interface StoreWriterOptions {
  /** Called after each acknowledged write with its batch and the time of the acknowledgement. */
  readonly onStored?: (batch: WriteBatch, ackedAtMs: number) => void;
  readonly now?: () => number;
}

export class StoreWriter {
  readonly #readings: Lane;
  readonly #alerts: Lane;
  #counts = { writes: 0, readings: 0, alerts: 0, failures: 0 };

  constructor(
    store: Pick<DeviceStore, "write" | "readingWrites">,
    options: StoreWriterOptions = {},
  ) {
    const now = options.now ?? Date.now;
    const stored = (merged: WriteBatch, refused: readonly Refusal[]) => {
      this.#counts.writes++;
      this.#counts.readings += merged.readings.length - refusedOf(merged.readings, refused);
      this.#counts.alerts += merged.alerts.length;
      options.onStored?.(merged, now());
    };
    const failed = () => void this.#counts.failures++;
    this.#readings = new Lane(store, stored, failed, Math.max(1, store.readingWrites ?? 1));
    this.#alerts = new Lane(store, stored, failed, 1);
  }

  get stats(): StoreWriterStats {
    return { ...this.#counts, queued: this.#readings.queued + this.#alerts.queued };
  }

  /**
   * Resolves once `batch` is durable, with the readings of `batch` the store refused.
   * `onStart` is called when the store write holding it goes out (no longer queued).
   */
  write(batch: WriteBatch, options: { readonly onStart?: () => void } = {}): Promise<WriteResult> {
    const alertsOnly = batch.readings.length === 0 && (batch.skipped?.length ?? 0) === 0 &&
      batch.devices.length === 0 && batch.alerts.length > 0;
    return (alertsOnly ? this.#alerts : this.#readings).write(batch, options.onStart);
  }
}

/**
 * One lane's group commit: up to `limit` store writes at a time, the batches queued meanwhile
 * merged into the next. Writes in flight together hold different batches, and a caller hands a
 * partition's next batch only once its previous one is durable (actors/processor_supervisor.ts),
 * so two writes at once never hold two batches of one partition.
 */
class Lane {
  readonly #store: Pick<DeviceStore, "write">;
  readonly #stored: (merged: WriteBatch, refused: readonly Refusal[]) => void;
  readonly #failed: () => void;
  readonly #limit: number;
  #queue: Pending[] = [];
  #running = 0;

  constructor(
    store: Pick<DeviceStore, "write">,
    stored: (merged: WriteBatch, refused: readonly Refusal[]) => void,
    failed: () => void,
    limit: number,
  ) {
    this.#store = store;
    this.#stored = stored;
    this.#failed = failed;
    this.#limit = limit;
  }

  get queued(): number {
    return this.#queue.length;
  }

  write(batch: WriteBatch, onStart?: () => void): Promise<WriteResult> {
    const { promise, resolve, reject } = Promise.withResolvers<WriteResult>();
    this.#queue.push({ batch, onStart, resolve, reject });
    if (this.#running < this.#limit) void this.#drain();
    return promise;
  }

  async #drain() {
    this.#running++;
    try {
      while (this.#queue.length > 0) {
        const group = this.#queue;
        this.#queue = [];
        const merged = merge(group.map((p) => p.batch));
        for (const p of group) p.onStart?.();
        try {
          const { refused } = await this.#store.write(merged);
          this.#stored(merged, refused);
          if (group.length === 1) group[0]!.resolve({ refused });
          else for (const p of group) p.resolve({ refused: ownRefusals(p.batch, refused) });
        } catch (error) {
          this.#failed();
          for (const p of group) p.reject(error);
        }
      }
    } finally {
      this.#running--;
    }
  }
}

function merge(batches: readonly WriteBatch[]): WriteBatch {
  if (batches.length === 1) return batches[0]!;
  return {
    readings: batches.flatMap((b) => b.readings),
    skipped: batches.flatMap((b) => b.skipped ?? []),
    alerts: latestSnapshots(batches.flatMap((b) => b.alerts)),
    devices: batches.flatMap((b) => b.devices),
  };
}

/**
 * One snapshot per alert, the latest (highest `asOfSeq`): an offline alert raised on the clock
 * and closed by a reading can meet in one write, and the store must not apply them out of order.
 */
function latestSnapshots(alerts: readonly AlertDoc[]): AlertDoc[] {
  const latest = new Map<string, AlertDoc>();
  for (const a of alerts) {
    const seen = latest.get(a._id);
    if (!seen || seen.asOfSeq <= a.asOfSeq) latest.set(a._id, a);
  }
  return latest.size === alerts.length ? [...alerts] : [...latest.values()];
}

/** How many of `readings` were refused (not stored). */
function refusedOf(readings: WriteBatch["readings"], refused: readonly Refusal[]) {
  if (refused.length === 0) return 0;
  const set = new Set(readings);
  return refused.filter((r) => set.has(r.reading)).length;
}

/** The refusals of readings of `batch` (the store answers with the very objects it was given). */
function ownRefusals(batch: WriteBatch, refused: readonly Refusal[]): Refusal[] {
  if (refused.length === 0) return [];
  const own = new Set([...batch.readings, ...batch.skipped ?? []]);
  return refused.filter((r) => own.has(r.reading));
}
