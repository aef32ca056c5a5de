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
import type { FaultRequest } from "../schemas/fault_request.ts";
import type { RulePatch } from "../schemas/rule_request.ts";
import type { FaultInfo, FaultKind, FaultOrder } from "../domain/sensor_faults.ts";

/** "pending": recorded in the registry, but no process runs it yet (Kafka mode). */
export type SensorStatus = "running" | "completed" | "failed" | "pending";

/** The process that runs a sensor. */
export interface SensorOwner {
  readonly host: string;
  readonly pid: number;
  /** The consumer-group member id of a sensors process (Kafka mode). */
  readonly member?: string;
}

export interface SensorInfo {
  readonly id: string;
  readonly profile: SensorProfile;
  readonly intervalMs: number;
  /** seq of the last reading emitted (0 before the first); null when another process runs it. */
  readonly seq: number | null;
  readonly status: SensorStatus;
  readonly thresholds: AlarmRule;
  /** The process that runs it; null when none does (yet). */
  readonly owner: SensorOwner | null;
  /** True while its owner runs it and reports in. */
  readonly emitting: boolean;
  /** Injected faults in effect (docs/faults.md); null when another process runs it. */
  readonly faults: readonly FaultInfo[] | null;
}

export interface SensorDetail extends SensorInfo {
  readonly lastReading: Reading | null;
}

export type AddSensorsResult =
  | { readonly ok: true; readonly ids: readonly string[] }
  | {
    readonly ok: false;
    /** unavailable: the fleet stopped for good (its supervisor gave up). */
    readonly code: "conflict" | "cap" | "invalid" | "unavailable";
    readonly message: string;
  };

export type OverheatResult =
  | { readonly ok: true; readonly readings: number; readonly temperature: number }
  | {
    readonly ok: false;
    readonly code: "not_found" | "not_running" | "invalid" | "unavailable";
    readonly message: string;
  };

export type FaultResult =
  | { readonly ok: true; readonly fault: FaultOrder }
  | {
    readonly ok: false;
    readonly code: "not_found" | "not_running" | "unavailable";
    readonly message: string;
  };

export type ClearFaultsResult =
  | { readonly ok: true }
  | { readonly ok: false; readonly code: "not_found" | "unavailable"; readonly message: string };

/**
 * A rule change recorded (docs/http-api.md, "Changing a device's rule"): the rule now in
 * force for the sensor, and `appliesAfterSeq`, the last seq emitted under the old rule when
 * this process applied it at once (every later reading carries the new rule); null when
 * another process runs the sensor and adopts it from the registry.
 */
export type RuleResult =
  | {
    readonly ok: true;
    readonly rule: AlarmRule;
    readonly appliesAfterSeq: number | null;
  }
  | {
    readonly ok: false;
    readonly code: "not_found" | "invalid" | "unavailable";
    readonly message: string;
  };

type MaybePromise<T> = T | Promise<T>;

/**
 * Port: the fleet as the API drives it — the durable fleet (registry plus the
 * sensors it runs) or, in tests, the bare sensor supervisor.
 */
export interface SensorControl {
  /**
   * Adds sensors atomically: all or none; the cap and id uniqueness are checked
   * against the whole fleet. Resolves once the new sensors are recorded durably.
   */
  add(request: SensorRequest): MaybePromise<AddSensorsResult>;
  /** Removes a sensor for good (recorded durably, then stopped); false when the id is unknown. */
  remove(id: string): Promise<boolean>;
  /** Sensors in start order, paginated. */
  list(offset: number, limit: number): MaybePromise<readonly SensorInfo[]>;
  get(id: string): MaybePromise<SensorDetail | undefined>;
  /** Makes a running sensor report temperatures past its high threshold for a while. */
  overheat(id: string, request: OverheatRequest): MaybePromise<OverheatResult>;
  /** Injects a fault into a running sensor (replacing one of the same kind). */
  fault(id: string, request: FaultRequest): MaybePromise<FaultResult>;
  /** Ends a sensor's faults of `kind`, or all of them. */
  clearFaults(id: string, kind?: FaultKind): MaybePromise<ClearFaultsResult>;
  /**
   * Changes a sensor's alarm rule for good (recorded durably before it resolves): its next
   * readings carry the new thresholds, so the processors apply it from a definite seq.
   */
  setRule(id: string, patch: RulePatch): MaybePromise<RuleResult>;
  readonly size: number;
  readonly cap: number;
}

/** Port: which process runs each registry partition now (Kafka mode). */
export interface FleetPlacement {
  /** The process that owns the partition and runs its sensors, if one reported in recently. */
  ownerOf(partition: number): SensorOwner | undefined;
}

/** Port: commands to whichever process runs a sensor (Kafka mode). */
export interface FleetCommands {
  overheat(
    id: string,
    order: { readonly readings: number; readonly temperature: number },
  ): Promise<void>;
  fault(id: string, order: FaultOrder): Promise<void>;
  clearFaults(id: string, kind?: FaultKind): Promise<void>;
}
