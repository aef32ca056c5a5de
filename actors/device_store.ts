/**
 * Port: what the processors need of a store — the device states to resume
 * from and durable batched writes. MongoDB and Deno KV adapters implement it.
 *
 * Readings are insert-once: a stored reading is never replaced. Writing one
 * whose `deviceId` and `seq` are stored already is a no-op when it is the same
 * reading (a replay) and a refused conflict when its content differs.
 *
 * @module
 */
import {
  type AlertDoc,
  type DeviceDoc,
  readingDifferences,
  type ReadingDoc,
} from "../schemas/documents.ts";

export interface WriteBatch {
  /** Inserted unless stored already; see {@linkcode WriteResult}. */
  readonly readings: readonly ReadingDoc[];
  /**
   * Readings the processors did not apply because their device was past their
   * seq: never written, only looked up (after `readings` are), so each is
   * found stored as it is, stored with other content, or not stored at all.
   */
  readonly skipped?: readonly ReadingDoc[];
  readonly alerts: readonly AlertDoc[];
  readonly devices: readonly DeviceDoc[];
}

/** A reading of a batch the store did not take as it is. */
export type Refusal =
  /** Its deviceId and seq are stored with other content; the stored reading was kept. */
  | { readonly type: "conflict"; readonly reading: ReadingDoc; readonly stored: ReadingDoc }
  /** A skipped reading that is not stored at all: it arrived after its device moved past it. */
  | { readonly type: "late"; readonly reading: ReadingDoc };

export interface WriteResult {
  /** The readings (of `readings` or `skipped`, the same objects) that were refused. */
  readonly refused: readonly Refusal[];
}

/** Port: what the processors need of a store. */
export interface DeviceStore {
  /** Stored device documents for these ids (missing ids are absent from the map). */
  loadDevices(ids: readonly string[]): Promise<Map<string, DeviceDoc>>;
  /**
   * The stored states of the devices whose readings arrive on `partitions`, in one read, plus
   * those stored before states recorded their partition (`partition` absent: they may be any
   * partition's). Prefetched when a member is assigned partitions, so a batch that meets a new
   * device need not wait for a lookup, and the offline watch resumes the partitions' silent
   * devices (optional: without it each new device is looked up and nothing is resumed).
   *
   * A device that moved partition may be answered with an older state, recorded with its old
   * partition: callers check `partition` and, where it matters, look the device up.
   */
  devicesIn?(partitions: readonly number[]): Promise<Map<string, DeviceDoc>>;
  /** Makes a batch durable; rejects if any part could not be written. */
  write(batch: WriteBatch): Promise<WriteResult>;
  /**
   * How many writes of readings (of different batches) the store takes at once and makes
   * faster by it (default 1: one at a time, e.g. a store whose writes of readings check a
   * guard key that concurrent commits would conflict on).
   */
  readonly readingWrites?: number;
  /**
   * Up to `limit` stored readings of a device with seq above `afterSeq`, by
   * ascending seq: what a restored state has not seen when the source cannot
   * replay them (the embedded queue).
   */
  readingsAfter?(deviceId: string, afterSeq: number, limit: number): Promise<ReadingDoc[]>;
}

/** Port: last applied seq per device, so a re-added sensor continues its sequence. */
export interface SeqLookup {
  lastSeqs(): Promise<Map<string, number>>;
}

/**
 * What the stored copy of a looked-up reading (undefined: none) makes of it:
 * a conflict when its content differs, late when nothing is stored, and
 * undefined when it is the same reading.
 */
export function refusalOf(
  reading: ReadingDoc,
  stored: ReadingDoc | undefined,
): Refusal | undefined {
  if (!stored) return { type: "late", reading };
  if (readingDifferences(reading, stored).length > 0) return { type: "conflict", reading, stored };
  return undefined;
}
