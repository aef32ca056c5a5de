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
}

/** Handles one batch; resolves when its effects are durable; throws on I/O failure. */
export type BatchHandler = (batch: RecordBatch, ctx: BatchContext) => Promise<void>;

export interface SourceEvents {
  /** Partitions were (re)assigned: per-device state of this member may be stale. */
  readonly onAssignment: (partitions: readonly number[]) => void;
  /** The consumer stopped for good (non-retriable error, or no broker answered for too long). */
  readonly onFatal: (error: unknown) => void;
}

/** Next offset to read per partition, for the batches whose handler resolved. */
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
