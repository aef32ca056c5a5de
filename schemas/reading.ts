/**
 * The Kafka wire format of a sensor reading — defined once, validated where
 * it enters (the consumer) and produced only through `encodeReading()`.
 *
 *   key   = deviceId
 *   value = {"deviceId":"sensor-0001","seq":42,"ts":"2026-11-27T13:00:00.000Z",
 *            "temperature":23.4,"humidity":51.2,"location":{"lat":48.8566,"lon":2.3522}}
 *
 * An optional `thresholds` object carries a sensor's own alarm rule, so the
 * rule travels with the data and a replay applies the same rule; likewise an
 * optional `offlineAfterMs`, the silence after which the device counts as
 * offline (docs/offline.md; absent: the processors' default).
 *
 * @module
 */
import { z } from "zod";
import { RULE_COUNT_RANGE } from "../domain/hysteresis.ts";
import { OFFLINE_AFTER_RANGE } from "../domain/offline.ts";
import type { GeoPoint } from "../domain/signal.ts";
import { decodeJson } from "./json_value.ts";

/** Device ids: 1–64 characters, no ':' (it separates the id from seq in `_id`). */
export const DEVICE_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
export const TEMPERATURE_RANGE = { min: -100, max: 200 } as const;

export const DeviceIdSchema = z.string().regex(
  DEVICE_ID_PATTERN,
  "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
);
export const TemperatureSchema = z.number().min(TEMPERATURE_RANGE.min).max(TEMPERATURE_RANGE.max);
export const HumiditySchema = z.number().min(0).max(100);
/** A position on the wire: the domain's one geo type, {@linkcode GeoPoint}. */
export const LocationSchema = z.strictObject({
  lat: z.number().min(-90).max(90),
  lon: z.number().min(-180).max(180),
}) satisfies z.ZodType<GeoPoint>;

/** A rule's debounce count, bounded where the rule itself is defined. */
export const RuleCountSchema = z.int().min(RULE_COUNT_RANGE.min).max(RULE_COUNT_RANGE.max);

/** Silence (ms) after which a device is offline: the one schema of the setting. */
export const OfflineAfterSchema = z.int().min(OFFLINE_AFTER_RANGE.min).max(OFFLINE_AFTER_RANGE.max);

/** The fields of an alarm rule, each bounded; {@linkcode RuleSchema} adds `low < high`. */
export const RuleFieldsSchema = z.strictObject({
  high: TemperatureSchema,
  low: TemperatureSchema,
  raiseAfter: RuleCountSchema,
  clearAfter: RuleCountSchema,
});

/** A complete alarm rule as carried by a reading: the one rule schema. */
export const RuleSchema = RuleFieldsSchema.refine((r) => r.low < r.high, {
  message: "low must be below high",
});

// Not strict: a newer producer may add fields, and this consumer ignores them.
export const ReadingSchema = z.object({
  deviceId: DeviceIdSchema,
  seq: z.int().min(1).max(Number.MAX_SAFE_INTEGER),
  ts: z.iso.datetime({ offset: true }),
  temperature: TemperatureSchema,
  humidity: HumiditySchema,
  location: LocationSchema,
  thresholds: RuleSchema.optional(),
  offlineAfterMs: OfflineAfterSchema.optional(),
});

export type Reading = z.infer<typeof ReadingSchema>;

export type DecodeResult =
  | { readonly ok: true; readonly reading: Reading }
  | { readonly ok: false; readonly reason: string };

/** For the record key; the value goes through `decodeJson()`. */
const decoder = new TextDecoder("utf-8", { fatal: true });

/**
 * Parses and validates one Kafka record. Never throws: a bad record is data
 * with a reason, destined for the dead-letter topic.
 */
export function decodeReading(
  value: Uint8Array | null | undefined,
  key?: Uint8Array | null,
): DecodeResult {
  if (!value || value.length === 0) return { ok: false, reason: "empty value" };
  const decoded = decodeJson(ReadingSchema, value);
  if (!decoded.ok) return decoded;
  const reading = decoded.value;
  if (key && key.length > 0) {
    let keyText: string;
    try {
      keyText = decoder.decode(key);
    } catch {
      return { ok: false, reason: "key is not UTF-8" };
    }
    if (keyText !== reading.deviceId) {
      return {
        ok: false,
        reason: `key "${keyText.slice(0, 64)}" does not match deviceId "${reading.deviceId}"`,
      };
    }
  }
  return { ok: true, reading };
}

/** The record value for a reading (the key is `reading.deviceId`). */
export function encodeReading(reading: Reading): string {
  return JSON.stringify(reading);
}
