/**
 * The body of `POST /sensors`: one sensor, or a batch of `count` sensors that
 * share a template. Strict: unknown fields are rejected (no mass assignment),
 * and so is any key starting with `$` or named `__proto__`.
 *
 * @module
 */
import { z } from "zod";
import { type Profile, PROFILES } from "../domain/signal.ts";
import {
  DeviceIdSchema,
  HumiditySchema,
  LocationSchema,
  OfflineAfterSchema,
  RuleCountSchema,
  TemperatureSchema,
} from "./reading.ts";
import { describeIssues } from "./json_value.ts";

/** The profiles a request may name: the domain's one list. */
export const SENSOR_REQUEST_PROFILES = PROFILES;
export type SensorProfile = Profile;
export const INTERVAL_RANGE = { min: 100, max: 3_600_000 } as const;
export const MAX_BATCH = 100_000;
export const MAX_SCRIPT_LENGTH = 100_000;

/** Overrides of the global alarm rule for one sensor; unspecified fields keep the global value. */
export const ThresholdsInputSchema = z.strictObject({
  high: TemperatureSchema.optional(),
  low: TemperatureSchema.optional(),
  raiseAfter: RuleCountSchema.optional(),
  clearAfter: RuleCountSchema.optional(),
});

const common = {
  profile: z.enum(SENSOR_REQUEST_PROFILES).optional(),
  intervalMs: z.int().min(INTERVAL_RANGE.min).max(INTERVAL_RANGE.max).optional(),
  seed: z.int().min(0).max(0xffff_ffff).optional(),
  location: LocationSchema.optional(),
  thresholds: ThresholdsInputSchema.optional(),
  offlineAfterMs: OfflineAfterSchema.optional(),
  temperatures: z.array(TemperatureSchema).min(1).max(MAX_SCRIPT_LENGTH).optional(),
  humidity: z.array(HumiditySchema).min(1).max(MAX_SCRIPT_LENGTH).optional(),
};

const OneSensorSchema = z.strictObject({ id: DeviceIdSchema.optional(), ...common });
const BatchSchema = z.strictObject({
  count: z.int().min(1).max(MAX_BATCH),
  idPrefix: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,40}$/).optional(),
  ...common,
});

/**
 * The whole body, for the API's description: `parseSensorRequest()` picks one branch by the
 * presence of `count` and checks what a schema cannot say (scripted profile, humidity length).
 */
export const SensorRequestSchema = z.union([OneSensorSchema, BatchSchema]);

/** What a sensor is made from, before defaults are filled in. */
export interface SensorTemplate {
  readonly profile?: SensorProfile;
  readonly intervalMs?: number;
  readonly seed?: number;
  readonly location?: { readonly lat: number; readonly lon: number };
  readonly thresholds?: z.infer<typeof ThresholdsInputSchema>;
  /** Silence after which the device is offline (default: the global setting, else 3 × interval). */
  readonly offlineAfterMs?: number;
  readonly temperatures?: readonly number[];
  readonly humidity?: readonly number[];
}

export type SensorRequest =
  | { readonly kind: "one"; readonly id: string | undefined; readonly template: SensorTemplate }
  | {
    readonly kind: "batch";
    readonly count: number;
    readonly idPrefix: string | undefined;
    readonly template: SensorTemplate;
  };

export type SensorRequestResult =
  | { readonly ok: true; readonly request: SensorRequest }
  | { readonly ok: false; readonly message: string };

/** Validates a parsed JSON body. Never throws. */
export function parseSensorRequest(body: unknown): SensorRequestResult {
  const badKey = findForbiddenKey(body);
  if (badKey) return { ok: false, message: `Forbidden key: "${badKey}"` };
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    return { ok: false, message: "Body must be a JSON object" };
  }
  const isBatch = "count" in body;
  const parsed = isBatch ? BatchSchema.safeParse(body) : OneSensorSchema.safeParse(body);
  if (!parsed.success) return { ok: false, message: describeIssues(parsed.error) };
  const { temperatures, humidity } = parsed.data;
  let profile = parsed.data.profile;
  if (temperatures && profile === undefined) profile = "scripted";
  if (profile === "scripted" && !temperatures) {
    return { ok: false, message: "temperatures: required by the scripted profile" };
  }
  if (temperatures && profile !== "scripted") {
    return {
      ok: false,
      message: `temperatures: only allowed with the scripted profile, not "${profile}"`,
    };
  }
  if (humidity && (!temperatures || humidity.length !== temperatures.length)) {
    return { ok: false, message: "humidity: must have one value per temperature" };
  }
  const t = parsed.data.thresholds;
  if (t?.high !== undefined && t.low !== undefined && t.low >= t.high) {
    return { ok: false, message: "thresholds: low must be below high" };
  }
  const template: SensorTemplate = { ...stripUndefined(parsed.data), profile };
  if ("count" in parsed.data) {
    const { count, idPrefix } = parsed.data;
    return { ok: true, request: { kind: "batch", count, idPrefix, template } };
  }
  return { ok: true, request: { kind: "one", id: parsed.data.id, template } };
}

function stripUndefined<T extends Record<string, unknown>>(o: T): SensorTemplate {
  const { id: _id, count: _count, idPrefix: _prefix, ...rest } = o as Record<string, unknown>;
  return Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined));
}

/** The first key anywhere in the value that starts with `$` or is `__proto__`/`constructor`. */
export function findForbiddenKey(value: unknown, depth = 0): string | undefined {
  if (depth > 10 || typeof value !== "object" || value === null) return undefined;
  if (Array.isArray(value)) {
    // Arrays here hold numbers only; no need to walk 100 000 of them.
    return undefined;
  }
  for (const key of Object.keys(value)) {
    if (key.startsWith("$") || key === "__proto__" || key === "constructor") return key;
    const inner = findForbiddenKey((value as Record<string, unknown>)[key], depth + 1);
    if (inner) return inner;
  }
  return undefined;
}
