/**
 * Coalesces the seq-block requests of many sensors into one ledger call at a
 * time: while a call is in flight, new requests queue for the next one. A
 * failed call is retried with bounded exponential backoff; when it keeps
 * failing, its requests are refused and the owner is told (the sensors then
 * skip ticks, counted as stalled, and ask again).
 *
 * @module
 */
import type { SeqBlock } from "../domain/seq_block.ts";
import { type SeqLedger, SeqLedgerError, type SeqRequest } from "./seq_ledger.ts";
import { realTimers, type TimerId, type Timers } from "./timers.ts";

/** Where the answer to one request goes. */
export interface SeqReply {
  granted(block: SeqBlock): void;
  refused(error: Error): void;
}

export interface SeqReserverOptions {
  readonly ledger: SeqLedger;
  /** Seqs per block. */
  readonly blockSize: number;
  /** Seqs a device may have used before the ledger knew it: its first block starts above. */
  readonly floors?: ReadonlyMap<string, number>;
  /** Attempts per ledger call and the backoff between them. */
  readonly retry?: {
    readonly attempts: number;
    readonly initialMs: number;
    readonly maxMs: number;
  };
  /** Devices per ledger call; the rest waits for the next call. */
  readonly maxBatch?: number;
  /** What the retries' backoff is scheduled on (default: the runtime's); tests pass a fake. */
  readonly timers?: Timers;
  /** Told when a call failed on every attempt (its requests were refused). */
  readonly onFailure?: (error: Error) => void;
}

export interface SeqReserverStats {
  /** Blocks granted. */
  readonly reservations: number;
  /** Ledger calls made, retries included. */
  readonly calls: number;
  /** Ledger calls that failed. */
  readonly failedCalls: number;
  /** Requests waiting for a ledger call. */
  readonly queued: number;
}

interface Waiting {
  readonly deviceId: string;
  readonly reply: SeqReply;
}

const DEFAULT_RETRY = { attempts: 5, initialMs: 200, maxMs: 5000 };

export class SeqReserver implements AsyncDisposable {
  readonly #opts: SeqReserverOptions;
  readonly #timers: Timers;
  readonly #retry: NonNullable<SeqReserverOptions["retry"]>;
  readonly #floors: Map<string, number>;
  #queue: Waiting[] = [];
  #inFlight: Promise<void> | undefined;
  #backoff: TimerId | undefined;
  /** Failed attempts of the requests at the head of the queue. */
  #attempt = 0;
  #stopped = false;
  #scheduled = false;
  #stats = { reservations: 0, calls: 0, failedCalls: 0 };

  constructor(options: SeqReserverOptions) {
    this.#opts = options;
    this.#timers = options.timers ?? realTimers;
    this.#retry = options.retry ?? DEFAULT_RETRY;
    this.#floors = new Map(options.floors ?? []);
  }

  get stats(): SeqReserverStats {
    return { ...this.#stats, queued: this.#queue.length };
  }

  /** Asks for the next block of `deviceId`; `reply` hears the answer exactly once. */
  request(deviceId: string, reply: SeqReply): void {
    if (this.#stopped) {
      reply.refused(new SeqLedgerError(`Seq reserver stopped: "${deviceId}" gets no block`));
      return;
    }
    this.#queue.push({ deviceId, reply });
    // Requests made in the same turn (a batch of sensors starting) share one call.
    if (!this.#scheduled) {
      this.#scheduled = true;
      queueMicrotask(() => {
        this.#scheduled = false;
        this.#kick();
      });
    }
  }

  /** Refuses what is queued and waits for the call in flight. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#backoff !== undefined) this.#timers.clearTimeout(this.#backoff);
    this.#backoff = undefined;
    await this.#inFlight;
    this.#refuse(this.#queue.splice(0), new SeqLedgerError("Seq reserver stopped"));
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  #kick() {
    if (this.#inFlight || this.#backoff !== undefined || this.#stopped) return;
    if (this.#queue.length === 0) return;
    // One request per device per call; a second one for the same device waits for the next.
    const batch: Waiting[] = [];
    const rest: Waiting[] = [];
    const seen = new Set<string>();
    const max = this.#opts.maxBatch ?? 10_000;
    for (const w of this.#queue) {
      if (batch.length < max && !seen.has(w.deviceId)) {
        seen.add(w.deviceId);
        batch.push(w);
      } else {
        rest.push(w);
      }
    }
    this.#queue = rest;
    this.#inFlight = this.#call(batch).finally(() => {
      this.#inFlight = undefined;
      this.#kick();
    });
  }

  async #call(batch: readonly Waiting[]) {
    const requests: SeqRequest[] = batch.map(({ deviceId }) => {
      const floor = this.#floors.get(deviceId);
      return { deviceId, size: this.#opts.blockSize, ...(floor ? { floor } : {}) };
    });
    this.#stats.calls++;
    let blocks: Map<string, SeqBlock>;
    try {
      blocks = await this.#opts.ledger.reserve(requests);
    } catch (err) {
      this.#stats.failedCalls++;
      const error = err instanceof Error ? err : new Error(String(err));
      this.#attempt++;
      if (this.#attempt >= this.#retry.attempts || this.#stopped) {
        this.#attempt = 0;
        this.#refuse(batch, error);
        this.#opts.onFailure?.(error);
        return;
      }
      // The same requests go first once the backoff is over.
      this.#queue = [...batch, ...this.#queue];
      const ms = Math.min(this.#retry.maxMs, this.#retry.initialMs * 2 ** (this.#attempt - 1));
      this.#backoff = this.#timers.setTimeout(() => {
        this.#backoff = undefined;
        this.#kick();
      }, ms);
      return;
    }
    this.#attempt = 0;
    for (const { deviceId, reply } of batch) {
      const block = blocks.get(deviceId);
      if (block) {
        this.#floors.delete(deviceId);
        this.#stats.reservations++;
        reply.granted(block);
      } else {
        reply.refused(new SeqLedgerError(`Seq ledger granted no block: "${deviceId}"`));
      }
    }
  }

  #refuse(waiting: readonly Waiting[], error: Error) {
    for (const { reply } of waiting) reply.refused(error);
  }
}
