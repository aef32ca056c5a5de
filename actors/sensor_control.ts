/**
 * Port: the sensor fleet as the control API drives it. The fleet implements
 * it; the HTTP adapter calls it.
 *
 * @module
 */
import type { AlarmRule } from "../domain/hysteresis.ts";
import type { Reading } from "../schemas/reading.ts";
import type { SensorProfile, SensorRequest } from "../schemas/sensor_request.ts";
import type { OverheatRequest } from "../schemas/overheat_request.ts";

export type SensorStatus = "running" | "completed" | "failed";

export interface SensorInfo {
  readonly id: string;
  readonly profile: SensorProfile;
  readonly intervalMs: number;
  /** seq of the last reading emitted (0 before the first). */
  readonly seq: number;
  readonly status: SensorStatus;
  readonly thresholds: AlarmRule;
}

export interface SensorDetail extends SensorInfo {
  readonly lastReading: Reading | null;
}

export type AddSensorsResult =
  | { readonly ok: true; readonly ids: readonly string[] }
  | { readonly ok: false; readonly code: "conflict" | "cap" | "invalid"; readonly message: string };

export type OverheatResult =
  | { readonly ok: true; readonly readings: number; readonly temperature: number }
  | {
    readonly ok: false;
    readonly code: "not_found" | "not_running" | "invalid";
    readonly message: string;
  };

/** Port: the running fleet (implemented by the sensor supervisor). */
export interface SensorControl {
  /** Adds sensors atomically: all or none; the cap and id uniqueness are checked synchronously. */
  add(request: SensorRequest): AddSensorsResult;
  /** Stops a sensor at once; false when the id is unknown. */
  remove(id: string): Promise<boolean>;
  /** Sensors in start order, paginated. */
  list(offset: number, limit: number): readonly SensorInfo[];
  get(id: string): SensorDetail | undefined;
  /** Makes a running sensor report temperatures past its high threshold for a while. */
  overheat(id: string, request: OverheatRequest): OverheatResult;
  readonly size: number;
  readonly cap: number;
}
