/**
 * The dashboard's live view: a bounded in-memory picture of the devices this
 * process's processors handled — latest reading, alarm state and a few recent
 * temperatures each — plus the latest alert transitions and the throughput.
 * Fed with the processors' outputs once they are stored, so it never shows
 * what the store does not have. It exists only where the processors run;
 * past `maxDevices`, the device heard from least recently is forgotten.
 *
 * @module
 */
import type { DeviceOutput } from "../actors/processor.ts";
import type { AlertDoc } from "../schemas/documents.ts";
import type {
  AlertEvent,
  DashboardQuery,
  DashboardSnapshot,
  DeviceRow,
  MapPoint,
} from "../schemas/dashboard.ts";

export interface LiveViewOptions {
  /** Devices kept; the least recently updated goes first. */
  readonly maxDevices?: number;
  /** Recent temperatures kept per device, for its sparkline. */
  readonly pointsPerDevice?: number;
  /** Alert transitions kept. */
  readonly maxAlerts?: number;
  /** Map points sent; past it, critical devices first, then an even sample of the rest. */
  readonly maxMapPoints?: number;
  /** A device not heard from for this long is dropped (its sensor is probably gone). */
  readonly expireAfterMs?: number;
  /** Sensors running in this process, when it runs them too. */
  readonly sensors?: () => number;
  /** Wall clock in ms; tests inject one. */
  readonly now?: () => number;
}

interface LiveDevice {
  lat: number;
  lon: number;
  temperature: number;
  humidity: number;
  critical: boolean;
  since: number;
  lastTs: number;
  /** When this view last heard of it, on its own clock. */
  seenAt: number;
  readonly spark: number[];
}

/** Seconds over which readings per second are averaged (whole seconds before the current one). */
const RATE_WINDOW_S = 5;
/** How long readings of a forgotten device from before it was forgotten are ignored. */
const FORGET_FOR_MS = 60_000;

export class LiveView {
  readonly #devices = new Map<string, LiveDevice>();
  readonly #alerts: AlertEvent[] = [];
  /** Devices forgotten on purpose, and when: their readings from before then are ignored. */
  readonly #forgotten = new Map<string, number>();
  /** Readings counted per whole second, oldest first. */
  readonly #rate: { second: number; count: number }[] = [];
  readonly #maxDevices: number;
  readonly #points: number;
  readonly #maxAlerts: number;
  readonly #maxMapPoints: number;
  readonly #expireAfterMs: number;
  readonly #sensors: (() => number) | undefined;
  readonly #now: () => number;
  #lagMs: number | null = null;

  constructor(options: LiveViewOptions = {}) {
    this.#maxDevices = options.maxDevices ?? 10_000;
    this.#points = options.pointsPerDevice ?? 30;
    this.#maxAlerts = options.maxAlerts ?? 50;
    this.#maxMapPoints = options.maxMapPoints ?? 2_000;
    this.#expireAfterMs = options.expireAfterMs ?? 300_000;
    this.#sensors = options.sensors;
    this.#now = options.now ?? Date.now;
  }

  /** Devices currently held. */
  get size(): number {
    return this.#devices.size;
  }

  /** Takes in what one batch produced, after it was stored. */
  record(outputs: readonly DeviceOutput[]): void {
    const now = this.#now();
    let count = 0;
    for (const out of outputs) {
      const last = out.readings.at(-1);
      if (!last) continue; // only duplicates
      const id = out.device.deviceId;
      const forgottenAt = this.#forgotten.get(id);
      if (forgottenAt !== undefined) {
        // Readings still in flight when its sensor was removed must not bring it back.
        if (last.ts.getTime() <= forgottenAt) continue;
        this.#forgotten.delete(id);
      }
      const known = this.#devices.get(id);
      // Re-inserting keeps the map in recency order, so eviction takes the stalest.
      this.#devices.delete(id);
      const device: LiveDevice = known ?? {
        lat: 0,
        lon: 0,
        temperature: 0,
        humidity: 0,
        critical: false,
        since: last.ts.getTime(),
        lastTs: 0,
        seenAt: now,
        spark: [],
      };
      for (const r of out.readings) device.spark.push(r.temperature);
      device.spark.splice(0, Math.max(0, device.spark.length - this.#points));
      const [lon, lat] = last.location.coordinates;
      device.lat = lat;
      device.lon = lon;
      device.temperature = last.temperature;
      device.humidity = last.humidity;
      device.critical = last.is_critical;
      device.lastTs = last.ts.getTime();
      device.seenAt = now;
      // A device that never changed level has been in it since first seen here.
      device.since = out.device.since?.getTime() ?? device.since;
      this.#devices.set(id, device);
      this.#lagMs = Math.max(0, last.processedAt.getTime() - last.ts.getTime());
      count += out.readings.length;
      for (const t of out.transitions) {
        this.#alerts.unshift({
          deviceId: id,
          type: t.type,
          seq: t.seq,
          ts: t.ts,
          temperature: t.temperature,
          peakTemperature: t.episode.peakTemperature,
        });
      }
    }
    this.#alerts.splice(this.#maxAlerts);
    for (const id of this.#devices.keys()) {
      if (this.#devices.size <= this.#maxDevices) break;
      this.#devices.delete(id);
    }
    this.#count(count, now);
  }

  /** An offline episode raised or cleared (a withdrawn one never happened: not shown). */
  recordOffline(event: "raised" | "cleared" | "withdrawn", doc: AlertDoc): void {
    if (event === "withdrawn") return;
    const cleared = event === "cleared";
    this.#alerts.unshift({
      deviceId: doc.deviceId,
      type: event,
      alert: "offline",
      seq: cleared ? doc.clearedSeq ?? doc.raisedSeq : doc.raisedSeq,
      ts: (cleared ? doc.clearedAt ?? doc.raisedAt : doc.raisedAt).toISOString(),
      temperature: null,
      peakTemperature: null,
    });
    this.#alerts.splice(this.#maxAlerts);
  }

  /**
   * Drops a device at once, e.g. when its sensor was removed, and ignores its
   * readings stamped before now (on the same clock as the sensors').
   */
  forget(id: string): void {
    const now = this.#now();
    this.#devices.delete(id);
    this.#forgotten.delete(id);
    this.#forgotten.set(id, now);
    // In-flight readings arrive within seconds; older marks only cost memory.
    for (const [key, at] of this.#forgotten) {
      if (at >= now - FORGET_FOR_MS && this.#forgotten.size <= this.#maxDevices) break;
      this.#forgotten.delete(key);
    }
  }

  /** The view for one dashboard stream: counters, map, one page of the table and the alerts. */
  snapshot(query: DashboardQuery): DashboardSnapshot {
    const at = this.#now();
    // Recency order: the silent devices are at the front.
    for (const [id, d] of this.#devices) {
      if (d.seenAt >= at - this.#expireAfterMs) break;
      this.#devices.delete(id);
    }
    const all = [...this.#devices];
    let critical = 0;
    for (const [, d] of all) if (d.critical) critical++;
    const search = query.search.toLowerCase();
    const matching = all.filter(([id, d]) =>
      (query.filter === "all" || d.critical) && (!search || id.toLowerCase().includes(search))
    );
    // Critical devices first: they are what the table is for.
    matching.sort(([a, da], [b, db]) =>
      Number(db.critical) - Number(da.critical) || (a < b ? -1 : a > b ? 1 : 0)
    );
    const rows: DeviceRow[] = matching
      .slice(query.offset, query.offset + query.limit)
      .map(([id, d]) => ({
        id,
        temperature: d.temperature,
        humidity: d.humidity,
        critical: d.critical,
        since: d.since,
        lastTs: d.lastTs,
        spark: [...d.spark],
      }));
    return {
      at,
      live: true,
      counters: {
        sensors: this.#sensors?.() ?? this.#devices.size,
        readingsPerSecond: this.#readingsPerSecond(at),
        criticalDevices: critical,
        lagMs: this.#lagMs,
      },
      map: { total: all.length, points: this.#mapPoints(all) },
      table: { total: matching.length, offset: query.offset, limit: query.limit, rows },
      alerts: [...this.#alerts],
    };
  }

  #mapPoints(all: readonly (readonly [string, LiveDevice])[]): MapPoint[] {
    // Rounded to about 10 m and sorted by id, so GPS jitter and update order
    // do not make an unchanged map look changed to the stream's diff.
    const point = ([id, d]: readonly [string, LiveDevice]): MapPoint => [
      id,
      round4(d.lat),
      round4(d.lon),
      d.critical ? 1 : 0,
    ];
    const byId = (a: MapPoint, b: MapPoint) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0);
    if (all.length <= this.#maxMapPoints) return all.map(point).sort(byId);
    const hot = all.filter(([, d]) => d.critical).slice(0, this.#maxMapPoints);
    const rest = all.filter(([, d]) => !d.critical);
    const room = this.#maxMapPoints - hot.length;
    const stride = rest.length / Math.max(1, room);
    const sample = room > 0
      ? Array.from({ length: Math.min(room, rest.length) }, (_, i) => rest[Math.floor(i * stride)]!)
      : [];
    return [...hot, ...sample].map(point).sort(byId);
  }

  #count(readings: number, now: number) {
    const second = Math.floor(now / 1000);
    const last = this.#rate.at(-1);
    if (last?.second === second) last.count += readings;
    else this.#rate.push({ second, count: readings });
    while (this.#rate.length > 0 && this.#rate[0]!.second < second - RATE_WINDOW_S) {
      this.#rate.shift();
    }
  }

  #readingsPerSecond(at: number): number {
    const current = Math.floor(at / 1000);
    let sum = 0;
    for (const { second, count } of this.#rate) {
      if (second < current && second >= current - RATE_WINDOW_S) sum += count;
    }
    return Math.round((sum / RATE_WINDOW_S) * 10) / 10;
  }
}

function round4(x: number): number {
  return Math.round(x * 1e4) / 1e4;
}
