/**
 * Decoding a record's bytes the one way every wire format here does: UTF-8
 * JSON, then its zod schema. Never throws: a bad record is data with a reason
 * (a dead letter, or a registry or ledger record skipped with a log line).
 *
 * @module
 */
import type { z } from "zod";

export type Decoded<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly reason: string };

const decoder = new TextDecoder("utf-8", { fatal: true });

/** Parses `value` as UTF-8 JSON and validates it with `schema`. */
export function decodeJson<T>(schema: z.ZodType<T>, value: Uint8Array): Decoded<T> {
  let json: unknown;
  try {
    json = JSON.parse(decoder.decode(value));
  } catch (err) {
    return { ok: false, reason: `invalid JSON: ${(err as Error).message}` };
  }
  const result = schema.safeParse(json);
  return result.success
    ? { ok: true, value: result.data }
    : { ok: false, reason: describeIssues(result.error) };
}

/** One readable line listing each problem with its path, e.g. `temperature: Too big`. */
export function describeIssues(error: z.ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((i) => `${i.path.length ? i.path.join(".") : "value"}: ${i.message}`)
    .join("; ");
}
