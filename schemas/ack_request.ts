/**
 * The body of `POST /alerts/:id/ack`: who acknowledges an alert episode and,
 * optionally, why. Strict, like every request body: unknown fields are rejected.
 *
 * @module
 */
import { z } from "zod";
import { describeIssues } from "./json_value.ts";
import { findForbiddenKey } from "./sensor_request.ts";

/**
 * An alert id: `<deviceId>:<type>:<raisedSeq>` (`alertId()` in documents.ts), for any alert
 * type, so a path parameter is checked before it reaches the store.
 */
export const ALERT_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}:[a-z][a-z_]{0,31}:[1-9]\d{0,15}$/;

export const ACK_BY_MAX = 100;
export const ACK_NOTE_MAX = 1000;

export const AckRequestSchema = z.strictObject({
  /** Who acknowledges: an operator's name or handle, as the team knows it. */
  by: z.string().trim().min(1).max(ACK_BY_MAX),
  /** What is being done about it, free text. */
  note: z.string().trim().max(ACK_NOTE_MAX).optional(),
});

export type AckRequest = z.infer<typeof AckRequestSchema>;

export type AckRequestResult =
  | { readonly ok: true; readonly request: AckRequest }
  | { readonly ok: false; readonly message: string };

/** Validates a parsed JSON body. Never throws. */
export function parseAckRequest(body: unknown): AckRequestResult {
  const badKey = findForbiddenKey(body);
  if (badKey) return { ok: false, message: `Forbidden key: "${badKey}"` };
  const parsed = AckRequestSchema.safeParse(body);
  if (!parsed.success) return { ok: false, message: describeIssues(parsed.error) };
  const { by, note } = parsed.data;
  // An empty note is no note.
  return { ok: true, request: note ? { by, note } : { by } };
}
