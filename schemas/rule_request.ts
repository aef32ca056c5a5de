/**
 * The body of `PATCH /devices/:id/rule`: some or all of a rule's fields. The
 * fields given replace the device's current ones and the result must pass the
 * one rule schema, {@linkcode RuleSchema} (so `low < high` is checked on the
 * rule that would be in force, not on the patch alone). Strict: unknown fields
 * are rejected; an empty patch changes nothing and is refused.
 *
 * @module
 */
import { z } from "zod";
import type { AlarmRule } from "../domain/hysteresis.ts";
import { DeviceIdSchema, RuleFieldsSchema, RuleSchema } from "./reading.ts";
import { describeIssues } from "./json_value.ts";
import { findForbiddenKey } from "./sensor_request.ts";

/** A partial rule: each field bounded like the rule's own. */
export const RulePatchSchema = RuleFieldsSchema.partial().refine(
  (patch) => Object.keys(patch).length > 0,
  { message: "name at least one of high, low, raiseAfter, clearAfter" },
);
export type RulePatch = z.infer<typeof RulePatchSchema>;

/**
 * The `202` answer: the rule now recorded for the device, and the last seq emitted under the
 * old one when the process that answers runs the sensor (else null: see `ruleSeq` on
 * `GET /devices/:id`).
 */
export const RuleAcceptedSchema = z.strictObject({
  id: DeviceIdSchema,
  rule: RuleSchema,
  appliesAfterSeq: z.int().min(0).nullable(),
});

export type RulePatchResult =
  | { readonly ok: true; readonly patch: RulePatch }
  | { readonly ok: false; readonly message: string };

/** Validates a parsed JSON body. Never throws. */
export function parseRulePatch(body: unknown): RulePatchResult {
  const badKey = findForbiddenKey(body);
  if (badKey) return { ok: false, message: `Forbidden key: "${badKey}"` };
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    return { ok: false, message: "Body must be a JSON object" };
  }
  const parsed = RulePatchSchema.safeParse(body);
  if (!parsed.success) return { ok: false, message: describeIssues(parsed.error) };
  return { ok: true, patch: parsed.data };
}

export type MergedRuleResult =
  | { readonly ok: true; readonly rule: AlarmRule }
  | { readonly ok: false; readonly message: string };

/** `current` with the patch's fields, validated as a whole by the one rule schema. */
export function mergeRule(current: AlarmRule, patch: RulePatch): MergedRuleResult {
  const parsed = RuleSchema.safeParse({ ...current, ...patch });
  if (!parsed.success) return { ok: false, message: describeIssues(parsed.error) };
  return { ok: true, rule: parsed.data };
}
