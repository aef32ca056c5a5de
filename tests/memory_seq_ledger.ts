/**
 * An in-memory seq ledger for unit tests: grants blocks above a per-device
 * ceiling, records every call, and can be told to fail or to hold calls.
 *
 * @module
 */
import type { SeqBlock } from "../domain/seq_block.ts";
import { type SeqLedger, SeqLedgerError, type SeqRequest } from "../actors/seq_ledger.ts";

export class MemorySeqLedger implements SeqLedger {
  readonly ceilings = new Map<string, number>();
  readonly calls: (readonly SeqRequest[])[] = [];
  /** Calls still to fail with an I/O error. */
  failNext = 0;
  /** While set, calls wait for it before answering. */
  hold: Promise<void> | undefined;

  constructor(ceilings: Iterable<readonly [string, number]> = []) {
    for (const [id, c] of ceilings) this.ceilings.set(id, c);
  }

  async reserve(requests: readonly SeqRequest[]): Promise<Map<string, SeqBlock>> {
    this.calls.push(requests);
    await this.hold;
    if (this.failNext > 0) {
      this.failNext--;
      throw new SeqLedgerError("Seq ledger unavailable: injected failure");
    }
    const out = new Map<string, SeqBlock>();
    for (const { deviceId, size, floor } of requests) {
      const first = Math.max(this.ceilings.get(deviceId) ?? 0, floor ?? 0) + 1;
      const block = { first, last: first + size - 1 };
      this.ceilings.set(deviceId, block.last);
      out.set(deviceId, block);
    }
    return out;
  }
}
