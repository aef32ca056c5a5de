/**
 * The fleet registry's record: one sensor as it should run — its id, profile
 * and every setting resolved (defaults filled in), so any process recreates
 * exactly the same sensor from it. Defined once: the Deno KV registry stores
 * it, and in Kafka mode it is the value of the compacted registry topic
 * (key = sensor id, a null value removes the sensor).
 *
 *   key   = "boiler-1"
 *   value = {"id":"boiler-1","profile":"normal","intervalMs":3000,"seed":1234,
 *            "location":{"lat":48.85,"lon":2.35},
 *            "rule":{"high":80,"low":70,"raiseAfter":2,"clearAfter":2},"customRule":false}
 *
 * @module
 */
import { isDeepStrictEqual } from "node:util";
import { z } from "zod";
import {
  DeviceIdSchema,
  HumiditySchema,
  LocationSchema,
  OfflineAfterSchema,
  RuleSchema,
  TemperatureSchema,
} from "./reading.ts";
import { decodeJson, describeIssues } from "./json_value.ts";
import { INTERVAL_RANGE, MAX_SCRIPT_LENGTH, SENSOR_REQUEST_PROFILES } from "./sensor_request.ts";

// Not strict: a newer writer may add fields, and this reader ignores them.
export const SensorSpecSchema = z.object({
  id: DeviceIdSchema,
  profile: z.enum(SENSOR_REQUEST_PROFILES),
  intervalMs: z.int().min(INTERVAL_RANGE.min).max(INTERVAL_RANGE.max),
  seed: z.int().min(0).max(0xffff_ffff),
  location: LocationSchema,
  rule: RuleSchema,
  /** True when the sensor has its own thresholds: they then travel in every reading. */
  customRule: z.boolean(),
  /** Set when the sensor's offline limit is not the default 3 × `intervalMs` (docs/offline.md). */
  offlineAfterMs: OfflineAfterSchema.optional(),
  temperatures: z.array(TemperatureSchema).min(1).max(MAX_SCRIPT_LENGTH).optional(),
  humidity: z.array(HumiditySchema).min(1).max(MAX_SCRIPT_LENGTH).optional(),
});

/** Everything that defines a sensor, defaults already filled in. */
export type SensorSpec = z.infer<typeof SensorSpecSchema>;

export type SpecResult =
  | { readonly ok: true; readonly spec: SensorSpec }
  | { readonly ok: false; readonly reason: string };

/** Validates a stored or received spec. Never throws: a bad record is data with a reason. */
export function parseSpec(value: unknown): SpecResult {
  const result = SensorSpecSchema.safeParse(value);
  return result.success
    ? { ok: true, spec: result.data }
    : { ok: false, reason: describeIssues(result.error) };
}

/** Decodes a registry record's value (UTF-8 JSON). */
export function decodeSpec(value: Uint8Array): SpecResult {
  const decoded = decodeJson(SensorSpecSchema, value);
  return decoded.ok ? { ok: true, spec: decoded.value } : decoded;
}

/** The registry record's value for a spec (the key is `spec.id`). */
export function encodeSpec(spec: SensorSpec): string {
  return JSON.stringify(spec);
}

/** The spec with its own alarm rule: from then on the rule travels in every reading. */
export function withRule(spec: SensorSpec, rule: SensorSpec["rule"]): SensorSpec {
  return { ...spec, rule, customRule: true };
}

/**
 * True when `next` differs from `current` in its rule only: the running sensor adopts it in
 * place (its signal, seqs and faults go on) rather than being restarted.
 */
export function onlyRuleChanged(current: SensorSpec, next: SensorSpec): boolean {
  return !sameSpec(current, next) &&
    sameSpec({ ...current, rule: next.rule, customRule: next.customRule }, next);
}

/** True when two specs would run the same sensor (a re-put of an equal spec changes nothing). */
export function sameSpec(a: SensorSpec, b: SensorSpec): boolean {
  return isDeepStrictEqual(a, b);
}
