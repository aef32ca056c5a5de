/**
 * Port: the ordered, partitioned source of reading records the processors
 * consume (Kafka, or the embedded queue), and the dead-letter sink for records
 * that cannot be decoded. Declared here, beside the processors that need it;
 * the transport adapters implement it.
 *
 * @module
 */

/** One record as it came off the transport. */
export interface RawRecord {
  readonly key: Uint8Array | null;
  readonly value: Uint8Array | null;
  readonly offset: string;
  /** Broker/producer timestamp in ms, as a string (Kafka's convention). */
  readonly timestamp: string;
}

export interface RecordBatch {
  readonly topic: string;
  readonly partition: number;
  readonly records: readonly RawRecord[];
}

export interface BatchContext {
  /** Keeps group membership alive during long batches. */
  heartbeat(): Promise<void>;
  /** True when a rebalance took the partition away while the batch ran. */
  isStale(): boolean;
  /**
   * The source takes a batch handed on before it is durable ({@linkcode HandedOn}), and reads
   * its partition again from it if it never becomes durable (Kafka; not the embedded queue).
   */
  readonly handOn?: boolean;
}

/**
 * A batch handed on: applied, its writes started, durable once `stored` resolves. The source
 * then reads on at once, so the next batches are fetched and applied while the store writes
 * (it would otherwise sit idle during every fetch), but counts the batch processed — its offsets
 * committable — only once `stored` resolved. The `stored` of one partition's batches settle in
 * partition order, and once one rejects every later one rejects too: the source then waits until
 * no batch of the partition is being handled or stored, calls `SourceEvents.onRewind`, and reads
 * the partition again from the first batch that was not stored.
 */
export interface HandedOn {
  readonly stored: Promise<void>;
}

/**
 * Handles one batch; resolves when its effects are durable, or, where the context allows it
 * (`handOn`), once handed on; throws on I/O failure.
 */
export type BatchHandler = (
  batch: RecordBatch,
  ctx: BatchContext,
) => Promise<void | HandedOn>;

export interface SourceEvents {
  /**
   * Partitions were (re)assigned: per-device state of this member may be stale. Batches handed
   * on before may still be being stored, and a source may assign while a batch is being handled
   * (kafkajs waits for those): neither adds anything afterwards.
   */
  readonly onAssignment: (partitions: readonly number[]) => void;
  /** The consumer stopped for good (non-retriable error, or no broker answered for too long). */
  readonly onFatal: (error: unknown) => void;
  /**
   * A handed-on batch of `partition` was not stored: what was applied of it and of the batches
   * after it must be forgotten before the partition is read again from it (no batch of the
   * partition is being handled or stored meanwhile). Required with `BatchContext.handOn`.
   */
  readonly onRewind?: (partition: number) => Promise<void>;
}

/** Next offset to read per partition, for the batches whose handler resolved (and were stored). */
export type Offsets = ReadonlyMap<number, string>;

/** Port: an ordered, partitioned source with "batch, then commit at a checkpoint" semantics. */
export interface ReadingSource extends AsyncDisposable {
  start(handler: BatchHandler, events: SourceEvents): Promise<void>;
  /** A snapshot of what was processed and not yet committed. */
  processed(): Offsets;
  /** Commits offsets (e.g. a `processed()` snapshot); partitions no longer owned are skipped. */
  commit(offsets: Offsets): Promise<void>;
  /** Stops fetching and waits until no batch is being handled (before a final checkpoint). */
  drain(): Promise<void>;
  /** Records not yet handled, per owned partition, as last seen. */
  lag(): ReadonlyMap<number, number>;
  /**
   * The owned partitions whose every record produced before this call began has been handled
   * (no batch of them in flight): what lets an idle partition's event time advance with the
   * clock (docs/offline.md). Rejects when the transport cannot tell.
   */
  caughtUp?(): Promise<ReadonlySet<number>>;
}

export interface DeadLetter {
  readonly record: RawRecord;
  readonly partition: number;
  readonly reason: string;
}

/** Port: where invalid records go, with the reason and their original bytes. */
export interface DeadLetterSink {
  send(letters: readonly DeadLetter[]): Promise<void>;
}
