/**
 * What the pipeline stores in MongoDB, defined once: the three collections'
 * document shapes, their deterministic `_id`s (so every write is idempotent:
 * docs/data-contract.md), what makes two readings under one `_id` the same
 * reading, and the schema that validates a stored alarm state before a
 * processor trusts it after a restart.
 *
 * @module
 */
import { z } from "zod";
import type { AlarmRule, AlarmState, Episode } from "../domain/hysteresis.ts";
import type { OfflineEpisode } from "../domain/offline.ts";
import type { Reading } from "./reading.ts";

export const COLLECTIONS = {
  readings: "readings",
  alerts: "alerts",
  devices: "devices",
  /** The device-state journal: checkpoints append here, folds move it into `devices`. */
  deviceStates: "device_states",
} as const;

export interface ReadingDoc {
  readonly _id: string;
  readonly deviceId: string;
  readonly seq: number;
  readonly ts: Date;
  readonly temperature: number;
  readonly humidity: number;
  readonly location: { readonly type: "Point"; readonly coordinates: readonly [number, number] };
  /** The device's alarm state after this reading. */
  readonly is_critical: boolean;
  readonly processedAt: Date;
  /**
   * The reading's own alarm rule, when it carried one: kept so a roll-forward from stored
   * readings applies each reading under the rule it was made with, across a rule change.
   */
  readonly thresholds?: AlarmRule;
}

export type AlertStatus = "active" | "cleared";

/** What an alert is about: a device too hot, or a device that stopped reporting. */
export const ALERT_TYPES = ["overheat", "offline"] as const;
export type AlertType = (typeof ALERT_TYPES)[number];

/**
 * One alert episode, of any type: the fields every type has, and each type's own (optional
 * here; {@linkcode OverheatAlertDoc} and {@linkcode OfflineAlertDoc} say which a type has).
 */
export interface AlertDoc {
  readonly _id: string;
  readonly deviceId: string;
  readonly type: AlertType;
  readonly status: AlertStatus;
  readonly raisedAt: Date;
  readonly raisedSeq: number;
  /** Overheat: the highest temperature of the episode. */
  readonly peakTemperature?: number;
  /** Overheat: the rule in force. */
  readonly thresholds?: AlarmRule;
  /** Overheat: seq of the device's first reading under `thresholds` (docs/http-api.md). */
  readonly ruleSeq?: number;
  /** Offline: `ts` of the last reading before the silence. */
  readonly lastSeenAt?: Date;
  /** Offline: the silence that made the device offline. */
  readonly offlineAfterMs?: number;
  /**
   * Offline: set on an episode raised while the device's readings were held up before the
   * topic — its next reading showed no such silence in event time, so it never happened.
   */
  readonly withdrawn?: true;
  readonly clearedAt?: Date;
  readonly clearedSeq?: number;
  /**
   * seq of the last reading this snapshot reflects. A snapshot never replaces
   * a newer one, so a stale owner after a rebalance cannot reopen a cleared alert.
   */
  readonly asOfSeq: number;
  /**
   * Who acknowledged the episode, when, and their note (`POST /alerts/:id/ack`). Written only
   * by the acknowledgement, never by the processors: their snapshots leave these fields alone.
   */
  readonly ackedBy?: string;
  readonly ackedAt?: Date;
  readonly note?: string;
}

/** The acknowledgement fields of an alert, set together once (the first acknowledgement wins). */
export type AlertAck = Required<Pick<AlertDoc, "ackedBy" | "ackedAt">> & Pick<AlertDoc, "note">;

/** The names of the acknowledgement fields, which a processor's snapshot never carries. */
export const ACK_FIELDS = ["ackedBy", "ackedAt", "note"] as const;
export interface OverheatAlertDoc extends AlertDoc {
  readonly type: "overheat";
  readonly peakTemperature: number;
  readonly thresholds: AlarmRule;
}

/**
 * A device silent for longer than `offlineAfterMs` (docs/offline.md). `raisedSeq` is its last
 * reading before the silence, `raisedAt` that reading's `ts` + `offlineAfterMs`; the next
 * reading clears it.
 */
export interface OfflineAlertDoc extends AlertDoc {
  readonly type: "offline";
  readonly lastSeenAt: Date;
  readonly offlineAfterMs: number;
}

export interface DeviceDoc {
  readonly _id: string;
  readonly deviceId: string;
  readonly level: AlarmState["level"];
  readonly since: Date | null;
  readonly lastSeq: number;
  readonly lastTs: Date | null;
  readonly counters: AlarmState["counters"];
  readonly thresholds: AlarmRule;
  /**
   * seq of the first reading applied under `thresholds`: where the rule in force took effect
   * (a rule change, or the device's first reading). Absent in documents written before it.
   */
  readonly ruleSeq?: number;
  /**
   * The readings partition this state's readings arrived on: a member assigned partitions reads
   * only their states (docs/offline.md#crashes-and-restarts). Absent in documents written before
   * it ("unknown partition": read with every assignment until rewritten).
   */
  readonly partition?: number;
  /**
   * The `offlineAfterMs` of the last applied reading (`lastSeq`, `lastTs`), so the offline watch
   * of the partition's next owner resumes where this one stopped. Absent when that reading had
   * none, and in documents written before it.
   */
  readonly offlineAfterMs?: number;
  /** The full alarm state, restored by the next owner of this device. */
  readonly alarm: AlarmState;
  readonly updatedAt: Date;
}

export function readingId(deviceId: string, seq: number): string {
  return `${deviceId}:${seq}`;
}

export function alertId(
  deviceId: string,
  raisedSeq: number,
  type: AlertType = "overheat",
): string {
  return `${deviceId}:${type}:${raisedSeq}`;
}

export function toReadingDoc(reading: Reading, isCritical: boolean, processedAt: Date): ReadingDoc {
  return {
    _id: readingId(reading.deviceId, reading.seq),
    deviceId: reading.deviceId,
    seq: reading.seq,
    ts: new Date(reading.ts),
    temperature: reading.temperature,
    humidity: reading.humidity,
    location: { type: "Point", coordinates: [reading.location.lon, reading.location.lat] },
    is_critical: isCritical,
    processedAt,
    ...(reading.thresholds ? { thresholds: reading.thresholds } : {}),
  };
}

/**
 * The reading a stored document was made from, to apply it again: with the
 * rule stored with it, else `thresholds` (the device's rule in force, for
 * documents stored before readings kept theirs), else none and the default applies.
 */
export function fromReadingDoc(doc: ReadingDoc, fallback?: AlarmRule): Reading {
  const thresholds = doc.thresholds ?? fallback;
  const [lon, lat] = doc.location.coordinates;
  return {
    deviceId: doc.deviceId,
    seq: doc.seq,
    ts: new Date(doc.ts).toISOString(),
    temperature: doc.temperature,
    humidity: doc.humidity,
    location: { lat, lon },
    ...(thresholds ? { thresholds } : {}),
  };
}

/**
 * How `incoming` differs from `stored`, field by field, as `field "new" (stored "old")`;
 * empty when they are the same reading. Only what the sensor sent counts: `is_critical`
 * and `processedAt` are the pipeline's, and a replay may legitimately differ in them. A
 * reading's own `thresholds` are not compared: documents stored before readings kept
 * them have none.
 */
export function readingDifferences(incoming: ReadingDoc, stored: ReadingDoc): string[] {
  const fields: [string, unknown, unknown][] = [
    ["deviceId", incoming.deviceId, stored.deviceId],
    ["seq", incoming.seq, stored.seq],
    ["ts", isoOf(incoming.ts), isoOf(stored.ts)],
    ["temperature", incoming.temperature, stored.temperature],
    ["humidity", incoming.humidity, stored.humidity],
    ["location", coordinatesOf(incoming), coordinatesOf(stored)],
  ];
  return fields
    .filter(([, a, b]) => a !== b)
    .map(([name, a, b]) => `${name} "${String(a)}" (stored "${String(b)}")`);
}

function isoOf(ts: Date): string {
  const ms = new Date(ts).getTime();
  return Number.isNaN(ms) ? String(ts) : new Date(ms).toISOString();
}

function coordinatesOf(doc: ReadingDoc): string {
  const [lon, lat] = doc.location?.coordinates ?? [];
  return `lat ${lat} lon ${lon}`;
}

/** The alert document for an episode, open or (with `cleared`) closed. */
export function toAlertDoc(
  deviceId: string,
  episode: Episode,
  rule: AlarmRule,
  cleared?: { readonly seq: number; readonly ts: string },
  asOfSeq: number = cleared?.seq ?? episode.raisedSeq,
): OverheatAlertDoc {
  return {
    _id: alertId(deviceId, episode.raisedSeq),
    deviceId,
    type: "overheat",
    status: cleared ? "cleared" : "active",
    raisedAt: new Date(episode.raisedAt),
    raisedSeq: episode.raisedSeq,
    peakTemperature: episode.peakTemperature,
    thresholds: rule,
    ...(cleared ? { clearedAt: new Date(cleared.ts), clearedSeq: cleared.seq } : {}),
    asOfSeq,
  };
}

/**
 * The offline alert document for an episode: open, closed by the device's next reading, or
 * (with `withdrawn`) closed by a next reading that showed the silence never happened.
 */
export function toOfflineAlertDoc(
  deviceId: string,
  episode: OfflineEpisode,
  withdrawn?: { readonly seq: number; readonly ts: string },
): OfflineAlertDoc {
  const cleared = episode.cleared ?? withdrawn;
  return {
    _id: alertId(deviceId, episode.raisedSeq, "offline"),
    deviceId,
    type: "offline",
    status: cleared ? "cleared" : "active",
    raisedAt: new Date(episode.raisedAt),
    raisedSeq: episode.raisedSeq,
    lastSeenAt: new Date(episode.lastSeenAt),
    offlineAfterMs: episode.offlineAfterMs,
    ...(cleared ? { clearedAt: new Date(cleared.ts), clearedSeq: cleared.seq } : {}),
    ...(withdrawn && !episode.cleared ? { withdrawn: true as const } : {}),
    asOfSeq: cleared?.seq ?? episode.raisedSeq,
  };
}

export function toDeviceDoc(
  deviceId: string,
  state: AlarmState,
  rule: AlarmRule,
  updatedAt: Date,
  ruleSeq?: number,
  offlineAfterMs?: number,
): DeviceDoc {
  return {
    _id: deviceId,
    deviceId,
    level: state.level,
    since: state.since === null ? null : new Date(state.since),
    lastSeq: state.lastSeq,
    lastTs: state.lastTs === null ? null : new Date(state.lastTs),
    counters: state.counters,
    thresholds: rule,
    ...(ruleSeq === undefined ? {} : { ruleSeq }),
    ...(offlineAfterMs === undefined ? {} : { offlineAfterMs }),
    alarm: state,
    updatedAt,
  };
}

const count = z.int().min(0);
const EpisodeSchema = z.object({
  raisedSeq: z.int().min(1),
  raisedAt: z.string(),
  peakTemperature: z.number(),
});

/** Validates an alarm state read back from the store. */
export const AlarmStateSchema = z.object({
  level: z.enum(["normal", "critical"]),
  since: z.string().nullable(),
  lastSeq: count,
  lastTs: z.string().nullable(),
  hotStreak: count,
  streakPeak: z.number().nullable(),
  coolStreak: count,
  episode: EpisodeSchema.nullable(),
  counters: z.object({ readings: count, duplicates: count, gaps: count, outOfOrder: count }),
});

/** The stored alarm state of a device document, or an error message when it is unusable. */
export function restoreAlarmState(
  doc: unknown,
): { ok: true; state: AlarmState } | { ok: false; reason: string } {
  const alarm = (doc as { alarm?: unknown } | null)?.alarm;
  const parsed = AlarmStateSchema.safeParse(alarm);
  if (!parsed.success) {
    return { ok: false, reason: parsed.error.issues.map((i) => i.message).join("; ") };
  }
  return { ok: true, state: parsed.data };
}
