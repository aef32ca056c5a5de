/**
 * The body of `POST /rules/backtest`: a candidate alarm rule (the one rule
 * schema, as readings carry it) and the window of stored readings to replay it
 * over, for one device or for every device. Strict: unknown fields are rejected.
 *
 * @module
 */
import { z } from "zod";
import { DeviceIdSchema, RuleSchema } from "./reading.ts";
import { describeIssues } from "./json_value.ts";
import { findForbiddenKey } from "./sensor_request.ts";
import type { AlarmRule } from "../domain/hysteresis.ts";

export const BacktestRequestSchema = z.strictObject({
  /** Only this device's readings; absent: every device's. */
  deviceId: DeviceIdSchema.optional(),
  /** Start of the window (inclusive), ISO 8601, compared with each reading's `ts`. */
  from: z.iso.datetime({ offset: true }),
  /** End of the window (exclusive). */
  to: z.iso.datetime({ offset: true }),
  rule: RuleSchema,
}).refine((r) => Date.parse(r.from) < Date.parse(r.to), {
  message: "from must be before to",
  path: ["to"],
});

export interface BacktestRequest {
  readonly deviceId: string | undefined;
  readonly from: Date;
  readonly to: Date;
  readonly rule: AlarmRule;
}

export type BacktestRequestResult =
  | { readonly ok: true; readonly request: BacktestRequest }
  | { readonly ok: false; readonly message: string };

/** Validates a parsed JSON body. Never throws. */
export function parseBacktestRequest(body: unknown): BacktestRequestResult {
  const badKey = findForbiddenKey(body);
  if (badKey) return { ok: false, message: `Forbidden key: "${badKey}"` };
  const parsed = BacktestRequestSchema.safeParse(body);
  if (!parsed.success) return { ok: false, message: describeIssues(parsed.error) };
  const { deviceId, from, to, rule } = parsed.data;
  return { ok: true, request: { deviceId, from: new Date(from), to: new Date(to), rule } };
}
