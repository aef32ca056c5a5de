/**
 * Port: the durable ledger of the seq blocks sensors may use. A sensor only
 * emits seqs from a block the ledger granted, so a `(deviceId, seq)` pair is
 * produced at most once across crashes, restarts and moves between
 * processes; seqs of a block left unused are a gap, never a reuse. Deno KV
 * and a compacted Kafka topic implement it (see docs/seq-ledger.md).
 *
 * @module
 */
import type { SeqBlock } from "../domain/seq_block.ts";

export interface SeqRequest {
  readonly deviceId: string;
  /** Seqs wanted (at least 1). */
  readonly size: number;
  /**
   * The block must start above this too: a seq the device may have used
   * before the ledger knew it (e.g. the store's lastSeq after an upgrade).
   */
  readonly floor?: number;
}

/** Port: where sensors reserve their seqs. */
export interface SeqLedger {
  /**
   * For each request, atomically and durably reserves the `size` seqs above
   * the highest seq ever reserved for that device (and above `floor`).
   * Resolves once every block is durable, with one block per device; blocks
   * of one device never overlap, across calls, processes and restarts.
   * Requests name distinct devices. Rejects on I/O failure: some blocks may
   * then be reserved but never used (a gap).
   */
  reserve(requests: readonly SeqRequest[]): Promise<Map<string, SeqBlock>>;
}

/** The ledger could not reserve a block (I/O failure or too much contention). */
export class SeqLedgerError extends Error {
  override readonly name = "SeqLedgerError";
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

/** Throws when two requests name the same device: they would get overlapping blocks. */
export function assertDistinct(requests: readonly SeqRequest[]): void {
  const seen = new Set<string>();
  for (const { deviceId, size } of requests) {
    if (seen.has(deviceId)) {
      throw new SeqLedgerError(`Seq request names a device twice: "${deviceId}"`);
    }
    if (!Number.isSafeInteger(size) || size < 1) {
      throw new SeqLedgerError(`Seq request size must be a positive integer: "${size}"`);
    }
    seen.add(deviceId);
  }
}
