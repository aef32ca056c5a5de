/**
 * The body of `POST /sensors/:id/faults` and the fault order it resolves to,
 * which is also what a fault command carries on the fleet's commands topic
 * (`fleet_messages.ts`). One fault per request, tagged by `kind`:
 *
 *     {"kind":"stuck","readings":20}              stuck at the next value (or "temperature")
 *     {"kind":"stuck","durationMs":60000,"temperature":21.5}
 *     {"kind":"spike","count":3}                  3 single-reading outliers, never adjacent
 *     {"kind":"dropout","readings":5}             silent for 5 ticks (or "durationMs")
 *     {"kind":"late","readings":1,"by":2}         next reading sent after 2 later ones
 *     {"kind":"duplicate","readings":3,"copies":1} next 3 readings each sent twice
 *
 * Strict, like every request body: unknown fields are rejected.
 *
 * @module
 */
import { z } from "zod";
import { HumiditySchema, TemperatureSchema } from "./reading.ts";
import { describeIssues } from "./json_value.ts";
import { findForbiddenKey } from "./sensor_request.ts";
import { FAULT_KINDS, type FaultKind, type FaultOrder } from "../domain/sensor_faults.ts";

/** Bounds of each count and duration a fault request may name. */
export const FAULT_LIMITS = {
  readings: { min: 1, max: 10_000, fallback: 10 },
  durationMs: { min: 1, max: 24 * 60 * 60 * 1000 },
  spikes: { min: 1, max: 1000, fallback: 1 },
  lateReadings: { min: 1, max: 100, fallback: 1 },
  by: { min: 1, max: 100, fallback: 2 },
  duplicateReadings: { min: 1, max: 1000, fallback: 1 },
  copies: { min: 1, max: 10, fallback: 1 },
} as const;

/** Degrees above the sensor's high threshold of a spike whose request names no temperature. */
export const SPIKE_MARGIN = 30;

const between = (limit: { readonly min: number; readonly max: number }) =>
  z.int().min(limit.min).max(limit.max);

const Readings = between(FAULT_LIMITS.readings);
const DurationMs = between(FAULT_LIMITS.durationMs);

export const FaultKindSchema = z.enum(FAULT_KINDS);

/** The HTTP body: every count optional, with the defaults above. */
export const FaultRequestSchema = z.discriminatedUnion("kind", [
  z.strictObject({
    kind: z.literal("stuck"),
    readings: Readings.optional(),
    durationMs: DurationMs.optional(),
    /** The value reported; by default the first affected reading's. */
    temperature: TemperatureSchema.optional(),
    humidity: HumiditySchema.optional(),
  }),
  z.strictObject({
    kind: z.literal("dropout"),
    readings: Readings.optional(),
    durationMs: DurationMs.optional(),
  }),
  z.strictObject({
    kind: z.literal("spike"),
    count: between(FAULT_LIMITS.spikes).optional(),
    temperature: TemperatureSchema.optional(),
  }),
  z.strictObject({
    kind: z.literal("late"),
    readings: between(FAULT_LIMITS.lateReadings).optional(),
    by: between(FAULT_LIMITS.by).optional(),
  }),
  z.strictObject({
    kind: z.literal("duplicate"),
    readings: between(FAULT_LIMITS.duplicateReadings).optional(),
    copies: between(FAULT_LIMITS.copies).optional(),
  }),
]).refine(
  (f) =>
    !("readings" in f && "durationMs" in f && f.readings !== undefined &&
      f.durationMs !== undefined),
  { message: "Give either readings or durationMs, not both" },
);

/** A validated request; a spike's temperature is still to come from the sensor's threshold. */
export type FaultRequest = z.infer<typeof FaultRequestSchema>;

/**
 * A resolved order, as a fleet command carries it: every default filled in.
 * The refinements make exactly one of `readings` and `durationMs` present,
 * which zod's inferred type cannot say; hence the cast to the domain's type.
 */
export const FaultOrderSchema: z.ZodType<FaultOrder> = z.union([
  z.strictObject({
    kind: z.literal("stuck"),
    temperature: TemperatureSchema.optional(),
    humidity: HumiditySchema.optional(),
    readings: Readings.optional(),
    durationMs: DurationMs.optional(),
  }).refine(oneSpan, { message: "Give either readings or durationMs" }),
  z.strictObject({
    kind: z.literal("dropout"),
    readings: Readings.optional(),
    durationMs: DurationMs.optional(),
  }).refine(oneSpan, { message: "Give either readings or durationMs" }),
  z.strictObject({
    kind: z.literal("spike"),
    count: between(FAULT_LIMITS.spikes),
    temperature: TemperatureSchema,
  }),
  z.strictObject({
    kind: z.literal("late"),
    readings: between(FAULT_LIMITS.lateReadings),
    by: between(FAULT_LIMITS.by),
  }),
  z.strictObject({
    kind: z.literal("duplicate"),
    readings: between(FAULT_LIMITS.duplicateReadings),
    copies: between(FAULT_LIMITS.copies),
  }),
]) as unknown as z.ZodType<FaultOrder>;

function oneSpan(f: { readings?: number | undefined; durationMs?: number | undefined }): boolean {
  return (f.readings === undefined) !== (f.durationMs === undefined);
}

export type FaultRequestResult =
  | { readonly ok: true; readonly request: FaultRequest }
  | { readonly ok: false; readonly message: string };

/** Validates a parsed JSON body. Never throws. */
export function parseFaultRequest(body: unknown): FaultRequestResult {
  const badKey = findForbiddenKey(body);
  if (badKey) return { ok: false, message: `Forbidden key: "${badKey}"` };
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    return { ok: false, message: "Body must be a JSON object" };
  }
  const parsed = FaultRequestSchema.safeParse(body);
  if (!parsed.success) return { ok: false, message: describeIssues(parsed.error) };
  return { ok: true, request: parsed.data };
}

/**
 * The order a request makes of a sensor whose high threshold is `high`: the
 * defaults filled in; a spike with no temperature goes `SPIKE_MARGIN` above
 * the threshold (within the reading schema's range).
 */
export function resolveFault(
  request: FaultRequest,
  sensor: { readonly high: number; readonly maxTemperature: number },
): FaultOrder {
  switch (request.kind) {
    case "stuck":
    case "dropout": {
      const { readings, durationMs, ...rest } = request;
      const span = durationMs !== undefined
        ? { durationMs }
        : { readings: readings ?? FAULT_LIMITS.readings.fallback };
      return { ...rest, ...span } as FaultOrder;
    }
    case "spike":
      return {
        kind: "spike",
        count: request.count ?? FAULT_LIMITS.spikes.fallback,
        temperature: request.temperature ??
          Math.min(sensor.high + SPIKE_MARGIN, sensor.maxTemperature),
      };
    case "late":
      return {
        kind: "late",
        readings: request.readings ?? FAULT_LIMITS.lateReadings.fallback,
        by: request.by ?? FAULT_LIMITS.by.fallback,
      };
    case "duplicate":
      return {
        kind: "duplicate",
        readings: request.readings ?? FAULT_LIMITS.duplicateReadings.fallback,
        copies: request.copies ?? FAULT_LIMITS.copies.fallback,
      };
    default:
      request satisfies never;
      throw new TypeError(`Unknown fault kind: "${(request as { kind: unknown }).kind}"`);
  }
}

/** `DELETE /sensors/:id/faults?kind=`: without `kind`, every fault. */
export const FaultsQuerySchema = z.strictObject({ kind: FaultKindSchema.optional() });

/** `202` of `POST /sensors/:id/faults`: the fault as resolved. */
export const FaultAcceptedSchema = z.strictObject({
  id: z.string(),
  fault: FaultOrderSchema,
});

/** The `kind` query parameter of `DELETE /sensors/:id/faults`, if valid. */
export function parseFaultKind(raw: string): FaultKind | undefined {
  const parsed = FaultKindSchema.safeParse(raw);
  return parsed.success ? parsed.data : undefined;
}
