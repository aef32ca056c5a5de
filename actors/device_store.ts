/**
 * Port: what the processors need of a store — the device states to resume
 * from and durable batched writes. MongoDB and Deno KV adapters implement it.
 *
 * @module
 */
import type { AlertDoc, DeviceDoc, ReadingDoc } from "../schemas/documents.ts";

export interface WriteBatch {
  readonly readings: readonly ReadingDoc[];
  readonly alerts: readonly AlertDoc[];
  readonly devices: readonly DeviceDoc[];
}

/** Port: what the processors need of a store. */
export interface DeviceStore {
  /** Stored device documents for these ids (missing ids are absent from the map). */
  loadDevices(ids: readonly string[]): Promise<Map<string, DeviceDoc>>;
  /** Makes a batch durable; rejects if any part could not be written. */
  write(batch: WriteBatch): Promise<void>;
}

/** Port: last applied seq per device, so a re-added sensor continues its sequence. */
export interface SeqLookup {
  lastSeqs(): Promise<Map<string, number>>;
}
