/**
 * The wire format of the seq ledger topic (Kafka mode), a compacted topic
 * keyed by device id:
 *
 *   key   = deviceId
 *   value = {"first":101,"last":200,"by":"<process id>:<n>"}
 *
 * A record proposes the block `first..last`; it is valid when, in the
 * partition's order, `first` is above every `last` before it for that key
 * (see docs/seq-ledger.md). `by` names the proposal so its writer recognises
 * it; a re-assertion of the ceiling after a stale proposal has
 * `first === last` and a `by` ending in `:ceiling`.
 *
 * @module
 */
import { z } from "zod";
import { DeviceIdSchema } from "./reading.ts";
import { decodeJson, describeIssues } from "./json_value.ts";

const Seq = z.int().min(1).max(Number.MAX_SAFE_INTEGER);

export const SeqRecordSchema = z.object({
  first: Seq,
  last: Seq,
  by: z.string().min(1).max(200),
}).refine((r) => r.first <= r.last, { message: "first must not be above last" });

export type SeqRecord = z.infer<typeof SeqRecordSchema>;

const decoder = new TextDecoder();

/** Parses one ledger record; never throws (a bad record is skipped by the ledger, with a reason). */
export function decodeSeqRecord(
  key: Uint8Array | null | undefined,
  value: Uint8Array | null | undefined,
):
  | { readonly ok: true; readonly deviceId: string; readonly record: SeqRecord }
  | { readonly ok: false; readonly reason: string } {
  if (!key || key.length === 0) return { ok: false, reason: "no key" };
  if (!value || value.length === 0) return { ok: false, reason: "empty value" };
  const id = DeviceIdSchema.safeParse(decoder.decode(key));
  if (!id.success) return { ok: false, reason: `key: ${describeIssues(id.error)}` };
  const record = decodeJson(SeqRecordSchema, value);
  if (!record.ok) return record;
  return { ok: true, deviceId: id.data, record: record.value };
}

export function encodeSeqRecord(record: SeqRecord): string {
  return JSON.stringify(record);
}
