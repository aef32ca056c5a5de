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
 * At each assignment it resumes the owned partitions from the stored device
 * states recorded on them (read once by the processors' prefetch): a device
 * whose last reading came before the committed offset, and that went silent
 * before a restart or a rebalance, is watched from that reading and raised
 * with the same episode as without the restart. Before one is raised, its
 * newest stored state is looked up: a device that reported since (on another
 * partition after a partition count change, or to another member) is dropped.
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
  observeResumed,
  openEpisode,
  type PartitionClock,
  type Seen,
  watermarkOf,
} from "../domain/offline.ts";
import {
  type AlertDoc,
  alertId,
  type DeviceDoc,
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
  /**
   * The newest stored states of these devices (`DeviceStore.loadDevices`), asked before a device
   * resumed from the store is raised; without it resumed devices are raised as stored.
   */
  readonly currentStates?: (ids: readonly string[]) => Promise<ReadonlyMap<string, DeviceDoc>>;
  /**
   * The stored states of these partitions (`DeviceStore.devicesIn`): read again when the read
   * handed to {@linkcode OfflineWatch.onAssignment} failed.
   */
  readonly statesIn?: (partitions: readonly number[]) => Promise<ReadonlyMap<string, DeviceDoc>>;
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
  /** Resumed from its stored state, not seen here: looked up again before it is raised. */
  readonly resumed?: true;
}

interface Watched {
  clock: PartitionClock;
  readonly devices: Map<string, Tracked>;
  /** Latest `ts` (epoch ms) of the devices resumed here: the clock once caught up. */
  resumedMs: number;
}

export interface OfflineWatchStats {
  /**
   * Devices of the owned partitions with an open offline episode: raised here, or raised before
   * (by this member before a restart, or by the partition's previous owner) and resumed.
   */
  readonly devicesOffline: number;
  /** Devices resumed from their stored state at the assignments so far. */
  readonly devicesResumed: number;
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
  /** The partition each watched device is tracked in (one only: its newest reading's). */
  readonly #where = new Map<string, number>();
  /** The stored states to resume the assigned partitions from, at the next check. */
  #resume:
    | {
      readonly partitions: readonly number[];
      states: Promise<ReadonlyMap<string, DeviceDoc>> | undefined;
    }
    | undefined;
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
    devicesResumed: 0,
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
      const prev = this.#tracked(deviceId) ?? this.#stored.get(deviceId);
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
      if (last.offlineAfterMs === undefined) this.#untrack(deviceId);
      else {
        this.#track(deviceId, partition, {
          last: { seq: last.seq, ts: last.ts },
          offlineAfterMs: last.offlineAfterMs,
          raised: false,
        });
      }
    }
  }

  /**
   * Forgets the devices of partitions no longer owned (their new owner watches them) and, at
   * the next check, resumes the owned ones from `states`: the stored states of `partitions`
   * (`DeviceStore.devicesIn`; undefined: `statesIn`, if given).
   */
  onAssignment(
    partitions: readonly number[],
    states?: Promise<ReadonlyMap<string, DeviceDoc>>,
  ): void {
    const kept = new Set(partitions);
    for (const [p, watched] of this.#partitions) {
      if (kept.has(p)) continue;
      for (const id of watched.devices.keys()) this.#where.delete(id);
      this.#partitions.delete(p);
    }
    for (const p of partitions) this.#watched(p);
    this.#reload = this.#opts.activeAlerts !== undefined;
    // Observed at the next check; a failed read is read again there.
    states?.catch(() => {});
    this.#resume = states || this.#opts.statesIn ? { partitions, states } : undefined;
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
      watched = { clock: INITIAL_PARTITION_CLOCK, devices: new Map(), resumedMs: -Infinity };
      this.#partitions.set(partition, watched);
    }
    return watched;
  }

  /** The device's tracked last reading, in whichever owned partition it is tracked. */
  #tracked(deviceId: string): Tracked | undefined {
    const p = this.#where.get(deviceId);
    return p === undefined ? undefined : this.#partitions.get(p)?.devices.get(deviceId);
  }

  /** Tracks the device in `partition` only: a device that moved partition is raised once. */
  #track(deviceId: string, partition: number, device: Tracked): void {
    const before = this.#where.get(deviceId);
    if (before !== undefined && before !== partition) {
      this.#partitions.get(before)?.devices.delete(deviceId);
    }
    this.#watched(partition).devices.set(deviceId, device);
    this.#where.set(deviceId, partition);
  }

  #untrack(deviceId: string): void {
    const p = this.#where.get(deviceId);
    if (p !== undefined) this.#partitions.get(p)?.devices.delete(deviceId);
    this.#where.delete(deviceId);
  }

  /**
   * Tracks the devices whose stored state was recorded on an owned partition and is newer than
   * what is tracked of them: from their last reading, raised already if an open episode of that
   * reading is stored. States without a partition, or without an offline limit (written before
   * states kept them), are left to be noticed when their device reports again.
   */
  async #resumeStates(): Promise<void> {
    const resume = this.#resume!;
    let states: ReadonlyMap<string, DeviceDoc>;
    try {
      states = await (resume.states ?? this.#opts.statesIn!(resume.partitions));
    } catch (error) {
      resume.states = undefined;
      if (!this.#opts.statesIn) this.#resume = undefined;
      this.#stats.failedOfflineChecks++;
      this.#log.warn(
        "stored device states not read; devices silent before the assignment " +
          "are noticed when they report again",
        { error: error as Error },
      );
      return;
    }
    if (this.#resume !== resume) return;
    this.#resume = undefined;
    let resumed = 0;
    for (const doc of states.values()) {
      const { partition, offlineAfterMs, lastTs, lastSeq } = doc;
      if (partition === undefined || offlineAfterMs === undefined || lastTs === null) continue;
      const watched = this.#partitions.get(partition);
      if (!watched || lastSeq < 1) continue;
      const deviceId = doc.deviceId;
      if ((this.#tracked(deviceId)?.last.seq ?? -1) >= lastSeq) continue;
      const last = { seq: lastSeq, ts: new Date(lastTs).toISOString() };
      const raised = this.#stored.get(deviceId)?.last.seq === lastSeq;
      if (raised) this.#stored.delete(deviceId);
      this.#track(deviceId, partition, { last, offlineAfterMs, raised, resumed: true });
      watched.resumedMs = Math.max(watched.resumedMs, Date.parse(last.ts));
      resumed++;
    }
    this.#stats.devicesResumed += resumed;
    if (resumed > 0) this.#log.info("devices resumed from their stored state", { resumed });
  }

  /**
   * The due resumed devices that still are as stored: a newer state, or one recorded on another
   * partition, means the device reported since (elsewhere) and is no longer watched here. None
   * when the store cannot tell (they are tried again at the next check).
   */
  async #stillSilent(
    due: readonly { deviceId: string; partition: number; device: Tracked }[],
  ): Promise<Set<Tracked>> {
    const ok = new Set<Tracked>();
    if (due.length === 0) return ok;
    if (!this.#opts.currentStates) {
      for (const d of due) ok.add(d.device);
      return ok;
    }
    let current: ReadonlyMap<string, DeviceDoc>;
    try {
      current = await this.#opts.currentStates(due.map((d) => d.deviceId));
    } catch (error) {
      this.#stats.failedOfflineChecks++;
      this.#log.warn("stored device states not looked up; will retry", { error: error as Error });
      return ok;
    }
    for (const { deviceId, partition, device } of due) {
      const doc = current.get(deviceId);
      const moved = doc !== undefined &&
        (doc.lastSeq > device.last.seq ||
          (doc.partition !== undefined && doc.partition !== partition));
      if (!moved) ok.add(device);
      else if (this.#partitions.get(partition)?.devices.get(deviceId) === device) {
        this.#untrack(deviceId);
      }
    }
    return ok;
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
    this.#stored = new Map();
    for (const a of alerts) {
      if (a.type !== "offline" || a.status !== "active") continue;
      const tracked = this.#tracked(a.deviceId);
      if (tracked) {
        // Resumed from the reading the stored episode was raised at: it is open already.
        if (tracked.resumed && tracked.last.seq === a.raisedSeq) tracked.raised = true;
        continue;
      }
      if (a.lastSeenAt === undefined || a.offlineAfterMs === undefined) continue;
      const last = { seq: a.raisedSeq, ts: new Date(a.lastSeenAt).toISOString() };
      this.#stored.set(a.deviceId, { last, offlineAfterMs: a.offlineAfterMs, raised: true });
    }
  }

  async #check(): Promise<void> {
    this.#stats.offlineChecks++;
    if (this.#reload) await this.#loadStored();
    // After the open episodes: a device resumed at a stored episode's reading is raised already.
    if (this.#resume && !this.#reload) await this.#resumeStates();
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
    const due: {
      deviceId: string;
      partition: number;
      device: Tracked;
      doc: OfflineAlertDoc;
    }[] = [];
    for (const [p, watched] of this.#partitions) {
      if (idle.has(p)) {
        watched.clock = observeResumed(observeCaughtUp(watched.clock, at), watched.resumedMs, at);
      }
      const watermark = watermarkOf(watched.clock, this.#opts.graceMs);
      for (const [deviceId, device] of watched.devices) {
        if (device.raised) continue;
        const episode = openEpisode(device.last, device.offlineAfterMs, watermark);
        if (!episode) continue;
        due.push({ deviceId, partition: p, device, doc: toOfflineAlertDoc(deviceId, episode) });
      }
    }
    const confirmed = await this.#stillSilent(due.filter((d) => d.device.resumed));
    const raised: { doc: OfflineAlertDoc; device: Tracked }[] = [];
    for (const { deviceId, partition, device, doc } of due) {
      if (device.resumed && !confirmed.has(device)) continue;
      // A reading (or a reassignment) may have come while the resumed ones were looked up.
      if (device.raised || this.#partitions.get(partition)?.devices.get(deviceId) !== device) {
        continue;
      }
      device.raised = true;
      raised.push({ doc, device });
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
