/**
 * The dashboard's wire format, defined once: the query of its event stream
 * (validated with zod where it enters) and the snapshot the server pushes
 * over Server-Sent Events. A pushed event carries only the sections that
 * changed since the previous event on the same stream; the page merges them.
 *
 * @module
 */
import { z } from "zod";
import { describeIssues } from "./json_value.ts";

/** Largest page of the device table a stream may ask for. */
export const MAX_TABLE_ROWS = 200;

/** `GET /dashboard/events?offset=&limit=&filter=&search=`. */
export const DashboardQuerySchema = z.strictObject({
  offset: z.coerce.number().int().min(0).max(1_000_000).default(0),
  limit: z.coerce.number().int().min(1).max(MAX_TABLE_ROWS).default(50),
  /** `critical`: only devices whose alarm is raised. */
  filter: z.enum(["all", "critical"]).default("all"),
  /** Keeps devices whose id contains this text. */
  search: z.string().max(64).default(""),
});

export type DashboardQuery = z.infer<typeof DashboardQuerySchema>;

export type DashboardQueryResult =
  | { readonly ok: true; readonly query: DashboardQuery }
  | { readonly ok: false; readonly message: string };

/** Validates the stream's query string parameters. Never throws. */
export function parseDashboardQuery(params: Record<string, string>): DashboardQueryResult {
  const parsed = DashboardQuerySchema.safeParse(params);
  return parsed.success
    ? { ok: true, query: parsed.data }
    : { ok: false, message: describeIssues(parsed.error) };
}

export interface FleetCounters {
  /** Sensors running in this process, or devices heard from lately when it runs none. */
  readonly sensors: number;
  readonly readingsPerSecond: number;
  readonly criticalDevices: number;
  /**
   * Consumer lag as time: how old the newest processed reading was when it
   * was processed, in ms; null before the first one or without processors.
   */
  readonly lagMs: number | null;
}

/** One dot on the map: `[deviceId, lat, lon, critical ? 1 : 0]`, compact on the wire. */
export type MapPoint = readonly [string, number, number, 0 | 1];

export interface DeviceRow {
  readonly id: string;
  readonly temperature: number;
  readonly humidity: number;
  readonly critical: boolean;
  /** When the device entered its current alarm state (epoch ms). */
  readonly since: number;
  /** `ts` of its latest reading (epoch ms). */
  readonly lastTs: number;
  /** Recent temperatures, oldest first. */
  readonly spark: readonly number[];
}

export interface AlertEvent {
  readonly deviceId: string;
  readonly type: "raised" | "cleared";
  /** What the alert is about; absent: overheat. */
  readonly alert?: "overheat" | "offline";
  readonly seq: number;
  /** `ts` of the reading that caused it (ISO 8601); offline raised: when the silence began. */
  readonly ts: string;
  /** null for an offline alert, which no temperature caused. */
  readonly temperature: number | null;
  readonly peakTemperature: number | null;
}

export interface DashboardSnapshot {
  /** Server time of the snapshot (epoch ms): "time in state" is `at - since`. */
  readonly at: number;
  /** False when this process does not run the processors: only the store's view is shown. */
  readonly live: boolean;
  /** Why the view is partial, for the page to show; absent when live. */
  readonly note?: string;
  readonly counters: FleetCounters;
  /** Every device up to a cap; past it, all critical ones and a sample of the rest. */
  readonly map: { readonly total: number; readonly points: readonly MapPoint[] };
  readonly table: {
    readonly total: number;
    readonly offset: number;
    readonly limit: number;
    readonly rows: readonly DeviceRow[];
  };
  /** Newest first. */
  readonly alerts: readonly AlertEvent[];
}
