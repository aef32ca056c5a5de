/**
 * Notices devices that stopped reporting while they are silent, and raises
 * their `offline` alert. The processors' supervisor feeds it what each stored
 * batch applied; it keeps, per owned partition, the last reading of each
 * device and the partition's event-time clock (domain/offline.ts), and every
 * `tickMs` raises the episodes the watermark has passed.
 *
 * The watermark follows the readings consumed (minus `graceMs`), so a lagging
 * or replaying consumer never sees a device as silent just because its
 * readings are still queued. Only when the source says a partition is caught
 * up does the clock stand in for readings that do not come — which is what
 * lets a device, or a whole partition, that really went quiet be noticed.
 *
 * What an episode contains depends on the readings alone: the processor
 * closes it (actors/processor.ts) from the gap between two readings, noticed
 * or not. If the next reading shows there was no such gap in event time (its
 * readings were held up before the topic), the raised episode is withdrawn —
 * also one raised before a crash or by another member: the open episodes
 * stored are loaded at each assignment.
 *
 * @module
 */
import {
  INITIAL_PARTITION_CLOCK,
  observeCaughtUp,
  observeEvent,
  openEpisode,
  type PartitionClock,
  type Seen,
  watermarkOf,
} from "../domain/offline.ts";
import {
  type AlertDoc,
  alertId,
  type OfflineAlertDoc,
  toOfflineAlertDoc,
} from "../schemas/documents.ts";
import type { DeviceOutput } from "./processor.ts";
import type { WriteBatch, WriteResult } from "./device_store.ts";
import type { ReadingSource } from "./reading_source.ts";
import type { Logger } from "./logger.ts";
import { realTimers, type TimerId, type Timers } from "./timers.ts";

export interface OfflineWatchOptions {
  /** Where raised and withdrawn episodes go: the processors' store writer (one write at a time). */
  readonly writer: { write(batch: WriteBatch): Promise<WriteResult> };
  /** How far readings of one partition may overtake each other. */
  readonly graceMs: number;
  /** Time between two checks (default 1000). */
  readonly tickMs?: number;
  readonly logger: Logger;
  /** The clock that stands in for event time on a caught-up partition (default: the timers'). */
  readonly now?: () => number;
  readonly timers?: Timers;
  /**
   * The open offline alerts stored (`alerts({ type: "offline", status: "active" })`), loaded at
   * each assignment so an episode raised before a restart or a rebalance is still withdrawn if
   * its device's next reading shows it never happened.
   */
  readonly activeAlerts?: () => Promise<readonly AlertDoc[]>;
  /** Sees each offline alert written or closed (metrics). */
  readonly onEpisode?: (event: OfflineEvent, doc: AlertDoc) => void;
}

/** What happened to an offline episode. */
export type OfflineEvent = "raised" | "cleared" | "withdrawn";

interface Tracked {
  readonly last: Seen;
  readonly offlineAfterMs: number;
  /** The open episode of `last` was raised (or is being written). */
  raised: boolean;
}

interface Watched {
  clock: PartitionClock;
  readonly devices: Map<string, Tracked>;
}

export interface OfflineWatchStats {
  /** Devices of the owned partitions with an open offline episode noticed here. */
  readonly devicesOffline: number;
  readonly offlineRaised: number;
  readonly offlineCleared: number;
  readonly offlineWithdrawn: number;
  readonly offlineChecks: number;
  readonly failedOfflineChecks: number;
}

export class OfflineWatch implements AsyncDisposable {
  readonly #opts: OfflineWatchOptions;
  readonly #log: Logger;
  readonly #timers: Timers;
  readonly #now: () => number;
  readonly #partitions = new Map<number, Watched>();
  #source: Pick<ReadingSource, "caughtUp"> | undefined;
  /** Open episodes stored before this member watched their device, by device. */
  #stored = new Map<string, Tracked>();
  /** The stored open episodes are to be (re)loaded at the next check. */
  #reload = false;
  /** Raised episodes a later reading showed never happened, stored at the next check. */
  #withdrawals: OfflineAlertDoc[] = [];
  #timer: TimerId | undefined;
  #running: Promise<void> | undefined;
  #stats = {
    offlineRaised: 0,
    offlineCleared: 0,
    offlineWithdrawn: 0,
    offlineChecks: 0,
    failedOfflineChecks: 0,
  };

  constructor(options: OfflineWatchOptions) {
    this.#opts = options;
    this.#log = options.logger.child({ component: "offline" });
    this.#timers = options.timers ?? realTimers;
    this.#now = options.now ?? (() => this.#timers.now());
  }

  get stats(): OfflineWatchStats {
    let devicesOffline = 0;
    for (const w of this.#partitions.values()) {
      for (const d of w.devices.values()) if (d.raised) devicesOffline++;
    }
    return { ...this.#stats, devicesOffline };
  }

  /** What a stored batch of `partition` applied: the devices' last readings and event time. */
  observe(outputs: readonly DeviceOutput[], partition: number): void {
    const watched = this.#watched(partition);
    const seenAt = this.#now();
    for (const out of outputs) {
      const deviceId = out.device.deviceId;
      for (const doc of out.alerts) {
        if (doc.type === "offline" && doc.status === "cleared" && !doc.withdrawn) {
          this.#stats.offlineCleared++;
          this.#opts.onEpisode?.("cleared", doc);
          this.#log.info("device back online", {
            deviceId,
            raisedSeq: doc.raisedSeq,
            clearedSeq: doc.clearedSeq,
          });
        }
      }
      if (out.applied.length === 0) continue;
      for (const r of out.applied) {
        watched.clock = observeEvent(watched.clock, Date.parse(r.ts), seenAt);
      }
      const prev = watched.devices.get(deviceId) ?? this.#stored.get(deviceId);
      this.#stored.delete(deviceId);
      if (prev?.raised) {
        const next = out.applied.find((r) => r.seq > prev.last.seq);
        const closed = out.alerts.some((a) =>
          a._id === alertId(deviceId, prev.last.seq, "offline")
        );
        if (next && !closed) {
          // Raised on the clock, but the next reading shows no such silence in event time.
          const episode = openEpisode(prev.last, prev.offlineAfterMs, Infinity)!;
          this.#withdrawals.push(
            toOfflineAlertDoc(deviceId, episode, { seq: next.seq, ts: next.ts }),
          );
        }
      }
      const last = out.applied[out.applied.length - 1]!;
      if (last.offlineAfterMs === undefined) watched.devices.delete(deviceId);
      else {
        watched.devices.set(deviceId, {
          last: { seq: last.seq, ts: last.ts },
          offlineAfterMs: last.offlineAfterMs,
          raised: false,
        });
      }
    }
  }

  /** Forgets the devices of partitions no longer owned; their new owner watches them. */
  onAssignment(partitions: readonly number[]): void {
    const kept = new Set(partitions);
    for (const p of this.#partitions.keys()) if (!kept.has(p)) this.#partitions.delete(p);
    for (const p of partitions) this.#watched(p);
    this.#reload = this.#opts.activeAlerts !== undefined;
  }

  /** Starts the periodic checks, asking `source` which partitions are caught up. */
  attach(source: Pick<ReadingSource, "caughtUp">): void {
    this.#source = source;
    const every = this.#opts.tickMs ?? 1000;
    const loop = () => {
      this.#timer = this.#timers.setTimeout(async () => {
        await this.check().catch(() => {});
        if (this.#source) loop();
      }, every);
    };
    loop();
  }

  /**
   * Advances idle partitions' clocks and raises the episodes their watermark
   * passed; resolves once those are stored. One check at a time.
   */
  check(): Promise<void> {
    const next = (this.#running ?? Promise.resolve()).then(() => this.#check());
    this.#running = next.catch(() => {});
    return next;
  }

  async stop(): Promise<void> {
    this.#source = undefined;
    this.#timers.clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#running;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  #watched(partition: number): Watched {
    let watched = this.#partitions.get(partition);
    if (!watched) {
      watched = { clock: INITIAL_PARTITION_CLOCK, devices: new Map() };
      this.#partitions.set(partition, watched);
    }
    return watched;
  }

  async #loadStored(): Promise<void> {
    let alerts: readonly AlertDoc[];
    try {
      alerts = await this.#opts.activeAlerts!();
    } catch (error) {
      this.#stats.failedOfflineChecks++;
      this.#log.warn("open offline alerts not loaded; will retry", { error: error as Error });
      return;
    }
    this.#reload = false;
    const watched = new Set<string>();
    for (const w of this.#partitions.values()) for (const id of w.devices.keys()) watched.add(id);
    this.#stored = new Map();
    for (const a of alerts) {
      if (a.type !== "offline" || a.status !== "active" || watched.has(a.deviceId)) continue;
      if (a.lastSeenAt === undefined || a.offlineAfterMs === undefined) continue;
      const last = { seq: a.raisedSeq, ts: new Date(a.lastSeenAt).toISOString() };
      this.#stored.set(a.deviceId, { last, offlineAfterMs: a.offlineAfterMs, raised: true });
    }
  }

  async #check(): Promise<void> {
    this.#stats.offlineChecks++;
    if (this.#reload) await this.#loadStored();
    // Read before asking: whatever was acknowledged before this moment is known to be consumed.
    const at = this.#now();
    let idle: ReadonlySet<number> = new Set();
    if (this.#source?.caughtUp) {
      try {
        idle = await this.#source.caughtUp();
      } catch (error) {
        // Without an answer the clocks follow the readings only: late, never false.
        this.#stats.failedOfflineChecks++;
        this.#log.debug("could not tell which partitions are caught up", {
          error: error as Error,
        });
      }
    }
    const raised: { doc: OfflineAlertDoc; device: Tracked }[] = [];
    for (const [p, watched] of this.#partitions) {
      if (idle.has(p)) watched.clock = observeCaughtUp(watched.clock, at);
      const watermark = watermarkOf(watched.clock, this.#opts.graceMs);
      for (const [deviceId, device] of watched.devices) {
        if (device.raised) continue;
        const episode = openEpisode(device.last, device.offlineAfterMs, watermark);
        if (!episode) continue;
        device.raised = true;
        raised.push({ doc: toOfflineAlertDoc(deviceId, episode), device });
      }
    }
    const withdrawn = this.#withdrawals;
    this.#withdrawals = [];
    if (raised.length === 0 && withdrawn.length === 0) return;
    try {
      await this.#opts.writer.write({
        readings: [],
        alerts: [...withdrawn, ...raised.map((r) => r.doc)],
        devices: [],
      });
    } catch (error) {
      // Tried again at the next check (raised ones unless a reading came meanwhile).
      for (const r of raised) r.device.raised = false;
      this.#withdrawals.unshift(...withdrawn);
      this.#stats.failedOfflineChecks++;
      this.#log.warn("offline alerts not stored; will retry", { error: error as Error });
      throw error;
    }
    for (const doc of withdrawn) {
      this.#stats.offlineWithdrawn++;
      this.#opts.onEpisode?.("withdrawn", doc);
      this.#log.warn("offline alert withdrawn: the device's readings were held up, not missing", {
        deviceId: doc.deviceId,
        raisedSeq: doc.raisedSeq,
      });
    }
    for (const { doc } of raised) {
      this.#stats.offlineRaised++;
      this.#opts.onEpisode?.("raised", doc);
      this.#log.info("device offline", {
        deviceId: doc.deviceId,
        raisedSeq: doc.raisedSeq,
        lastSeenAt: doc.lastSeenAt.toISOString(),
        offlineAfterMs: doc.offlineAfterMs,
      });
    }
  }
}
