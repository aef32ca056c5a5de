/**
 * The body of `POST /sensors/:id/overheat`: how long a running sensor should
 * run hot and how hot. Both fields are optional; an empty body takes the
 * defaults. Strict, like every request body: unknown fields are rejected.
 *
 * @module
 */
import { z } from "zod";
import { TemperatureSchema } from "./reading.ts";
import { describeIssues } from "./json_value.ts";
import { findForbiddenKey } from "./sensor_request.ts";

export const OVERHEAT_READINGS = { min: 1, max: 1000, fallback: 10 } as const;
/** Degrees above the sensor's high threshold when the request names no temperature. */
export const OVERHEAT_MARGIN = 10;

export const OverheatRequestSchema = z.strictObject({
  /** Readings the sensor emits hot before its own signal takes over again. */
  readings: z.int().min(OVERHEAT_READINGS.min).max(OVERHEAT_READINGS.max).optional(),
  /** Temperature in °C of those readings; must reach the sensor's high threshold. */
  temperature: TemperatureSchema.optional(),
});

/** What was asked, before the sensor's own threshold fills in the temperature. */
export interface OverheatRequest {
  readonly readings: number;
  readonly temperature: number | undefined;
}

export type OverheatRequestResult =
  | { readonly ok: true; readonly request: OverheatRequest }
  | { readonly ok: false; readonly message: string };

/** Validates a parsed JSON body (`undefined` for an empty one). Never throws. */
export function parseOverheatRequest(body: unknown): OverheatRequestResult {
  const badKey = findForbiddenKey(body);
  if (badKey) return { ok: false, message: `Forbidden key: "${badKey}"` };
  const parsed = OverheatRequestSchema.safeParse(body ?? {});
  if (!parsed.success) return { ok: false, message: describeIssues(parsed.error) };
  return {
    ok: true,
    request: {
      readings: parsed.data.readings ?? OVERHEAT_READINGS.fallback,
      temperature: parsed.data.temperature,
    },
  };
}
