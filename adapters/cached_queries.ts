/**
 * The store's read side as the API process asks it, made cheap for the store:
 * identical reads in flight share one store query, an answer is reused for a
 * short while, and device lookups that arrive together go to the store as one
 * read. The API's reads then cost the store a bounded amount per second, so
 * they do not take the processors' share of a busy store (on FerretDB 1.24
 * every filtered read but `_id` equality scans the collection).
 *
 * Staleness: an answer may be up to `ttlMs` older than the request (plus the
 * store read's own duration); the stored state itself trails the processors by
 * a checkpoint. An acknowledgement through this object forgets the cached
 * alert lists, so its caller reads its own acknowledgement at once.
 *
 * @module
 */
import type { DeviceDoc } from "../schemas/documents.ts";
import type {
  AckOutcome,
  AlertFilter,
  ReadingWindow,
  StoreQueries,
} from "../actors/store_queries.ts";

/** Queries plus a lookup of many devices in one store read (MongoDB: one `$in` per collection). */
export interface BatchQueries extends StoreQueries {
  devices(ids: readonly string[]): Promise<ReadonlyMap<string, DeviceDoc>>;
}

export interface CachedQueriesOptions {
  /** How long an answer is reused; 0 only shares reads in flight. */
  readonly ttlMs: number;
  /** Answers kept at most (the oldest go first). Default 10 000. */
  readonly maxEntries?: number;
  /** Devices asked of the store in one read at most. Default 500. */
  readonly maxBatch?: number;
  /** Milliseconds clock, for tests. */
  readonly now?: () => number;
}

interface Entry {
  readonly value: Promise<unknown>;
  /** When the answer arrived; undefined while in flight. */
  at?: number;
}

/** `StoreQueries` over `store` with shared reads, a short cache and batched device lookups. */
export class CachedQueries implements StoreQueries {
  readonly #store: BatchQueries;
  readonly #ttlMs: number;
  readonly #maxEntries: number;
  readonly #maxBatch: number;
  readonly #now: () => number;
  readonly #entries = new Map<string, Entry>();
  /** Device ids waiting for the next batch, with who waits for them. */
  #waiting = new Map<string, PromiseWithResolvers<DeviceDoc | null>>();
  #batchInFlight = false;

  constructor(store: BatchQueries, options: CachedQueriesOptions) {
    this.#store = store;
    this.#ttlMs = options.ttlMs;
    this.#maxEntries = options.maxEntries ?? 10_000;
    this.#maxBatch = options.maxBatch ?? 500;
    this.#now = options.now ?? Date.now;
  }

  device(id: string): Promise<DeviceDoc | null> {
    return this.#cached(`device\u0000${id}`, () => this.#batched(id));
  }

  readings(deviceId: string, limit: number) {
    return this.#cached(
      `readings\u0000${deviceId}\u0000${limit}`,
      () => this.#store.readings(deviceId, limit),
    );
  }

  alerts(filter: AlertFilter) {
    return this.#cached(`alerts\u0000${JSON.stringify(filter)}`, () => this.#store.alerts(filter));
  }

  /** A replay's window is not cached: it is rare, large and bounded by its own deadline. */
  readingsBetween(window: ReadingWindow) {
    return this.#store.readingsBetween(window);
  }

  async acknowledge(id: string, ack: Parameters<StoreQueries["acknowledge"]>[1]) {
    const outcome: AckOutcome | null = await this.#store.acknowledge(id, ack);
    for (const key of this.#entries.keys()) {
      if (key.startsWith("alerts\u0000")) this.#entries.delete(key);
    }
    return outcome;
  }

  #cached<T>(key: string, read: () => Promise<T>): Promise<T> {
    const found = this.#entries.get(key);
    if (found && (found.at === undefined || this.#now() - found.at < this.#ttlMs)) {
      return found.value as Promise<T>;
    }
    const entry: Entry = { value: read() };
    this.#entries.delete(key); // re-inserted last: the map's order is the eviction order
    this.#entries.set(key, entry);
    entry.value.then(
      () => {
        entry.at = this.#now();
        if (this.#ttlMs <= 0 && this.#entries.get(key) === entry) this.#entries.delete(key);
      },
      () => {
        if (this.#entries.get(key) === entry) this.#entries.delete(key);
      },
    );
    while (this.#entries.size > this.#maxEntries) {
      this.#entries.delete(this.#entries.keys().next().value!);
    }
    return entry.value as Promise<T>;
  }

  /** Joins the next batch; one batch is asked of the store at a time. */
  #batched(id: string): Promise<DeviceDoc | null> {
    let waiter = this.#waiting.get(id);
    if (!waiter) {
      waiter = Promise.withResolvers<DeviceDoc | null>();
      this.#waiting.set(id, waiter);
    }
    if (!this.#batchInFlight) void this.#runBatches();
    return waiter.promise;
  }

  async #runBatches() {
    this.#batchInFlight = true;
    try {
      // Lookups made in the same turn of the event loop go together.
      await Promise.resolve();
      while (this.#waiting.size > 0) {
        const batch = [...this.#waiting].slice(0, this.#maxBatch);
        for (const [id] of batch) this.#waiting.delete(id);
        try {
          const found = await this.#store.devices(batch.map(([id]) => id));
          for (const [id, waiter] of batch) waiter.resolve(found.get(id) ?? null);
        } catch (err) {
          for (const [, waiter] of batch) waiter.reject(err);
        }
      }
    } finally {
      this.#batchInFlight = false;
    }
  }
}
