/**
 * The dashboard's view in a process that does not run the processors (role
 * `api` or `sensors`): there is no live view here, so it shows what it can —
 * the alerts in the store and the sensors running in this process — and says
 * where the live picture is.
 *
 * @module
 */
import type { DashboardSource } from "./dashboard_routes.ts";
import type { AlertEvent, DashboardQuery, DashboardSnapshot } from "../schemas/dashboard.ts";
import type { AlertDoc } from "../schemas/documents.ts";
import type { StoreQueries } from "../actors/store_queries.ts";

export interface StoreSnapshotOptions {
  /** The role this process runs, for the note. */
  readonly role: string;
  readonly queries?: StoreQueries;
  /** Sensors running in this process. */
  readonly sensors?: () => number;
  /** How long one store answer is reused by every stream (default 2000 ms). */
  readonly reuseForMs?: number;
  readonly now?: () => number;
}

/** Alerts shown; the same cap as the live view's feed. */
const ALERTS = 50;
/** Active alerts looked at to count critical devices. */
const ACTIVE_SCAN = 1000;

export function storeSnapshot(options: StoreSnapshotOptions): DashboardSource {
  const { role, queries, sensors, reuseForMs = 2000, now = Date.now } = options;
  const note = `This process runs the "${role}" role, not the processors: the map, the device ` +
    `table and the throughput are live on the process that does.` +
    (queries ? " Alerts and critical devices come from the store." : "");
  let cached: { at: number; alerts: AlertEvent[]; critical: number } | undefined;
  const fromStore = async (at: number) => {
    if (!queries) return { at, alerts: [], critical: 0 };
    if (cached && at - cached.at < reuseForMs) return cached;
    const [recent, active] = await Promise.all([
      queries.alerts({ limit: ALERTS }),
      queries.alerts({ status: "active", limit: ACTIVE_SCAN }),
    ]);
    cached = {
      at,
      alerts: recent.flatMap(eventsOf).sort((a, b) => b.ts.localeCompare(a.ts)).slice(0, ALERTS),
      critical: new Set(active.filter((a) => a.type === "overheat").map((a) => a.deviceId)).size,
    };
    return cached;
  };
  return {
    async snapshot(query: DashboardQuery): Promise<DashboardSnapshot> {
      const at = now();
      const { alerts, critical } = await fromStore(at);
      return {
        at,
        live: false,
        note,
        counters: {
          sensors: sensors?.() ?? 0,
          readingsPerSecond: 0,
          criticalDevices: critical,
          lagMs: null,
        },
        map: { total: 0, points: [] },
        table: { total: 0, offset: query.offset, limit: query.limit, rows: [] },
        alerts,
      };
    },
  };
}

/** An alert document as the feed's transitions: raised, and cleared when it was. */
function eventsOf(doc: AlertDoc): AlertEvent[] {
  if (doc.type === "offline" && doc.withdrawn) return [];
  const peak = doc.type === "overheat" ? doc.peakTemperature ?? null : null;
  const raised: AlertEvent = {
    deviceId: doc.deviceId,
    type: "raised",
    ...(doc.type === "offline" ? { alert: "offline" as const } : {}),
    seq: doc.raisedSeq,
    ts: doc.raisedAt.toISOString(),
    temperature: peak,
    peakTemperature: peak,
  };
  if (doc.clearedAt === undefined || doc.clearedSeq === undefined) return [raised];
  return [{
    ...raised,
    type: "cleared",
    seq: doc.clearedSeq,
    ts: doc.clearedAt.toISOString(),
  }, raised];
}
