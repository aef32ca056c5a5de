/**
 * Turns a `POST /sensors` request into the specs of the sensors it creates:
 * ids (given or generated), defaults, a seed derived from the fleet seed and
 * the id, and a location near the base. Pure: the fleet it is checked
 * against (taken ids, size, cap, the next generated number) is an argument,
 * so the embedded fleet and every API process of a Kafka deployment resolve
 * a request the same way.
 *
 * @module
 */
import type { GeoPoint } from "./signal.ts";
import type { AlarmRule } from "./hysteresis.ts";
import { seedFrom } from "./random.ts";
import type { SensorRequest, SensorTemplate } from "../schemas/sensor_request.ts";
import type { SensorSpec } from "../schemas/sensor_spec.ts";

/** The fleet-wide settings a request's template falls back to. */
export interface SpecDefaults {
  readonly intervalMs: number;
  readonly rule: AlarmRule;
  readonly seed: number;
  readonly location?: GeoPoint;
  /** The global offline limit; unset: 3 × each sensor's interval. */
  readonly offlineAfterMs?: number;
}

export interface ResolveOptions {
  readonly defaults: SpecDefaults;
  /** True when the id already belongs to a sensor of the fleet. */
  readonly taken: (id: string) => boolean;
  /** Sensors in the fleet now. */
  readonly size: number;
  readonly cap: number;
  /** Where generated ids start counting (`sensor-0001` is 1); a hint, taken ids are skipped. */
  readonly nextNumber: number;
}

export type ResolveResult =
  | { readonly ok: true; readonly specs: readonly SensorSpec[]; readonly nextNumber: number }
  | { readonly ok: false; readonly code: "conflict" | "cap" | "invalid"; readonly message: string };

export const DEFAULT_LOCATION: GeoPoint = { lat: 48.8566, lon: 2.3522 };

/** The specs a request creates, or why the fleet refuses it (all or none). */
export function resolveSensorRequest(
  request: SensorRequest,
  options: ResolveOptions,
): ResolveResult {
  let next = options.nextNumber;
  const fresh = (prefix: string, count: number) => {
    const ids: string[] = [];
    while (ids.length < count) {
      const id = `${prefix}-${String(next++).padStart(4, "0")}`;
      if (!options.taken(id)) ids.push(id);
    }
    return ids;
  };
  const ids = request.kind === "one"
    ? [request.id ?? fresh("sensor", 1)[0]!]
    : fresh(request.idPrefix ?? "sensor", request.count);
  const taken = ids.find((id) => options.taken(id));
  if (taken) {
    return { ok: false, code: "conflict", message: `Sensor already running: "${taken}"` };
  }
  if (options.size + ids.length > options.cap) {
    return {
      ok: false,
      code: "cap",
      message: `Sensor cap reached: ${options.size} running + ${ids.length} requested ` +
        `exceeds the limit of ${options.cap}`,
    };
  }
  const rule: AlarmRule = { ...options.defaults.rule, ...request.template.thresholds };
  const shared: AlarmRule = {
    high: rule.high,
    low: rule.low,
    raiseAfter: rule.raiseAfter,
    clearAfter: rule.clearAfter,
  };
  if (rule.low >= rule.high) {
    return {
      ok: false,
      code: "invalid",
      message:
        `thresholds: low (${rule.low}) must be below high (${rule.high}) once merged with the defaults`,
    };
  }
  return {
    ok: true,
    // One rule object for the whole batch: specs are read-only, and 100 000 copies cost 5.6 MB.
    specs: ids.map((id) => specFor(id, request.template, shared, options.defaults)),
    nextNumber: next,
  };
}

function specFor(
  id: string,
  t: SensorTemplate,
  rule: AlarmRule,
  defaults: SpecDefaults,
): SensorSpec {
  const offlineAfterMs = t.offlineAfterMs ?? defaults.offlineAfterMs;
  const seed = t.seed ?? seedFrom(`${defaults.seed}:${id}`);
  const base = defaults.location ?? DEFAULT_LOCATION;
  // Spread generated sensors over a few km around the base location, reproducibly.
  const location = t.location ? { lat: t.location.lat, lon: t.location.lon } : {
    lat: round6(base.lat + ((seed % 1000) / 1000 - 0.5) * 0.1),
    lon: round6(base.lon + ((Math.floor(seed / 1000) % 1000) / 1000 - 0.5) * 0.1),
  };
  return {
    id,
    profile: t.profile ?? "normal",
    intervalMs: t.intervalMs ?? defaults.intervalMs,
    seed,
    location,
    rule,
    customRule: t.thresholds !== undefined,
    ...(offlineAfterMs !== undefined ? { offlineAfterMs } : {}),
    ...(t.temperatures ? { temperatures: [...t.temperatures] } : {}),
    ...(t.humidity ? { humidity: [...t.humidity] } : {}),
  };
}

function round6(x: number): number {
  return Math.round(x * 1e6) / 1e6;
}
