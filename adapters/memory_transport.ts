/**
 * The embedded transport: an in-process, partitioned, keyed log with Kafka's
 * contract, for running without a broker. Readings are routed by `deviceId`
 * to a partition (so a device's readings stay in order); each partition is
 * consumed batch by batch, and a batch's records are released only when the
 * processors commit past them at a checkpoint. A failed batch is retried from
 * the same position, as kafkajs does. The log is bounded: when a partition
 * holds `capacity` uncommitted records, `publish()` refuses (the sensors count
 * the reading as dropped) until the processors catch up.
 *
 * Not durable: what is not yet committed is lost if the process dies. A
 * graceful shutdown drains it first.
 *
 * @module
 */
import { encodeReading, type Reading } from "../schemas/reading.ts";
import { seedFrom } from "../domain/random.ts";
import type { Logger } from "../actors/logger.ts";
import type { ProducerStats, ReadingSink } from "../actors/reading_sink.ts";
import type {
  BatchHandler,
  DeadLetter,
  DeadLetterSink,
  Offsets,
  RawRecord,
  ReadingSource,
  SourceEvents,
} from "../actors/reading_source.ts";

export interface MemoryTransportOptions {
  readonly partitions: number;
  /** Uncommitted records a partition may hold before `publish()` refuses. */
  readonly capacity?: number;
  readonly maxBatch?: number;
  readonly logger: Logger;
}

interface Partition {
  /** Offset of `records[0]`. */
  base: number;
  records: RawRecord[];
  /** Next offset to hand out. */
  position: number;
  /** A batch of this partition is being handled. */
  busy: boolean;
  wake: (() => void) | undefined;
}

const encoder = new TextEncoder();

export class MemoryTransport implements ReadingSink, ReadingSource, DeadLetterSink {
  readonly #partitions: Partition[];
  readonly #capacity: number;
  readonly #maxBatch: number;
  readonly #log: Logger;
  #processed = new Map<number, string>();
  #committed = new Map<number, string>();
  #running = false;
  #paused = false;
  #loops: Promise<void>[] = [];
  #inFlight = 0;
  #idle: PromiseWithResolvers<void> | undefined;
  #sent = 0;
  #dropped = 0;
  #deadLetters: DeadLetter[] = [];
  #deadLettered = 0;

  constructor(options: MemoryTransportOptions) {
    const { partitions, capacity = 100_000, maxBatch = 1000, logger } = options;
    this.#partitions = Array.from({ length: partitions }, () => ({
      base: 0,
      records: [],
      position: 0,
      busy: false,
      wake: undefined,
    }));
    this.#capacity = capacity;
    this.#maxBatch = maxBatch;
    this.#log = logger.child({ component: "embedded-transport" });
  }

  // ------------------------------------------------------------ producer side

  get stats(): ProducerStats {
    const buffered = this.#partitions.reduce((n, p) => n + p.records.length, 0);
    return { sent: this.#sent, dropped: this.#dropped, buffered, failedSends: 0 };
  }

  publish(reading: Reading): boolean {
    return this.publishRaw(reading.deviceId, encodeReading(reading));
  }

  /** Appends a raw record (as a foreign producer would); false when the partition is full. */
  publishRaw(key: string, value: string | Uint8Array): boolean {
    const p = this.#partitions[seedFrom(key) % this.#partitions.length]!;
    if (p.records.length >= this.#capacity) {
      this.#dropped++;
      return false;
    }
    p.records.push({
      key: encoder.encode(key),
      value: typeof value === "string" ? encoder.encode(value) : value,
      offset: String(p.base + p.records.length),
      timestamp: String(Date.now()),
    });
    this.#sent++;
    p.wake?.();
    return true;
  }

  /** Nothing to flush: a published record is in the log at once. */
  flush(): Promise<void> {
    return Promise.resolve();
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  // ------------------------------------------------------------ consumer side

  start(handler: BatchHandler, events: SourceEvents): Promise<void> {
    if (this.#running) throw new Error("Embedded transport already started");
    this.#running = true;
    events.onAssignment(this.#partitions.map((_, i) => i));
    this.#loops = this.#partitions.map((_, i) => this.#consume(i, handler));
    return Promise.resolve();
  }

  processed(): Offsets {
    const pending = new Map<number, string>();
    for (const [p, offset] of this.#processed) {
      if (this.#committed.get(p) !== offset) pending.set(p, offset);
    }
    return pending;
  }

  commit(offsets: Offsets): Promise<void> {
    for (const [index, offset] of offsets) {
      const p = this.#partitions[index];
      if (!p) continue;
      const upTo = Number(offset);
      // Committed records are released; the log only holds what may be replayed.
      const release = Math.min(upTo - p.base, p.records.length);
      if (release > 0) {
        p.records.splice(0, release);
        p.base += release;
      }
      this.#committed.set(index, offset);
    }
    return Promise.resolve();
  }

  async drain(): Promise<void> {
    this.#paused = true;
    while (this.#inFlight > 0) {
      this.#idle = Promise.withResolvers<void>();
      await this.#idle.promise;
    }
  }

  /** Records still waiting to be handled, per partition. */
  lag(): ReadonlyMap<number, number> {
    return new Map(this.#partitions.map((p, i) => [i, p.base + p.records.length - p.position]));
  }

  /** Partitions with nothing waiting and no batch in flight. */
  caughtUp(): Promise<ReadonlySet<number>> {
    const idle = new Set<number>();
    if (!this.#running || this.#paused) return Promise.resolve(idle);
    this.#partitions.forEach((p, i) => {
      if (!p.busy && p.base + p.records.length - p.position <= 0) idle.add(i);
    });
    return Promise.resolve(idle);
  }

  /** Records still waiting to be handled, across partitions. */
  get backlog(): number {
    return this.#partitions.reduce((n, p) => n + (p.base + p.records.length - p.position), 0);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#running = false;
    for (const p of this.#partitions) p.wake?.();
    await Promise.all(this.#loops);
  }

  // ---------------------------------------------------------- dead letters

  send(letters: readonly DeadLetter[]): Promise<void> {
    for (const letter of letters) {
      this.#deadLetters.push(letter);
      this.#deadLettered++;
    }
    // Keep the newest thousand for inspection; the count is exact.
    if (this.#deadLetters.length > 1000) {
      this.#deadLetters.splice(0, this.#deadLetters.length - 1000);
    }
    return Promise.resolve();
  }

  /** The most recent dead letters (embedded mode keeps them in memory). */
  get deadLetters(): readonly DeadLetter[] {
    return this.#deadLetters;
  }

  async #consume(index: number, handler: BatchHandler) {
    const p = this.#partitions[index]!;
    let failures = 0;
    while (this.#running) {
      const available = p.base + p.records.length - p.position;
      if (available <= 0 || this.#paused) {
        await new Promise<void>((resolve) => (p.wake = resolve));
        p.wake = undefined;
        continue;
      }
      const from = p.position - p.base;
      const records = p.records.slice(from, from + Math.min(available, this.#maxBatch));
      this.#inFlight++;
      p.busy = true;
      try {
        await handler(
          { topic: "embedded", partition: index, records },
          { heartbeat: () => Promise.resolve(), isStale: () => false },
        );
        p.position += records.length;
        this.#processed.set(index, String(p.position));
        failures = 0;
      } catch (error) {
        // Like a consumer crash and restart: retry the same records after a pause.
        failures++;
        const delayMs = Math.min(10_000, 200 * 2 ** Math.min(failures, 6));
        this.#log.warn("batch failed; retrying", { partition: index, retryInMs: delayMs, error });
        await new Promise((r) => setTimeout(r, delayMs));
      } finally {
        p.busy = false;
        this.#inFlight--;
        if (this.#inFlight === 0) this.#idle?.resolve();
      }
    }
  }
}
