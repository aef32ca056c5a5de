/**
 * The fault-injection checker: compares what Kafka acknowledged (the ledger)
 * with what the store holds, and the stored alerts with the pure rules
 * replayed over the stored readings: overheat (domain/hysteresis.ts) and,
 * given the run's `offlineAfterMs`, offline (domain/offline.ts). Pure: the
 * harness feeds it data.
 *
 * @module
 */
import { type AlarmRule, replay } from "../domain/hysteresis.ts";
import { offlineAt, offlineGap } from "../domain/offline.ts";

export interface StoredReading {
  readonly deviceId: string;
  readonly seq: number;
  readonly ts: string;
  readonly temperature: number;
  readonly is_critical: boolean;
}

export interface StoredAlert {
  readonly deviceId: string;
  /** Absent: overheat. */
  readonly type?: "overheat" | "offline";
  readonly raisedSeq: number;
  readonly status: "active" | "cleared";
  readonly clearedSeq?: number;
  readonly raisedAt?: Date | string;
  /** Offline: raised on the clock, then shown by the next reading never to have happened. */
  readonly withdrawn?: boolean;
}

/** What the offline rule replayed over the stored readings makes of the stored offline alerts. */
export interface OfflineReport {
  /** Offline episodes stored (withdrawn ones not counted). */
  readonly offlineEpisodes: number;
  /** Episodes raised on the clock that the next reading showed never happened (not a failure). */
  readonly offlineWithdrawn: number;
  /**
   * Offline episodes stored but not expected, expected (a silence between two stored readings)
   * but not stored, or stored with another start or end; an open one that is not the device's
   * last silence.
   */
  readonly offlineMismatches: number;
}

/** With an `offlineAfterMs`, the report also has the offline counts. */
export interface CheckReport extends Partial<OfflineReport> {
  /** Acknowledged readings missing from the store. */
  readonly lost: number;
  /** Extra stored copies of the same (deviceId, seq). */
  readonly duplicated: number;
  /** Stored readings Kafka never acknowledged. */
  readonly phantom: number;
  /** Holes in a device's stored seq range 1..max. */
  readonly gaps: number;
  /** Stored `is_critical` flags that differ from the rule replayed over the stored readings. */
  readonly flagMismatches: number;
  /** Alert episodes stored but not expected, expected but not stored, or with a wrong status. */
  readonly alertMismatches: number;
  readonly stored: number;
  readonly acknowledged: number;
}

/**
 * Compares one device's stored flags and alerts with the rule replayed over its stored readings
 * (unique, sorted by seq).
 */
export function compareWithReplay(
  readings: readonly StoredReading[],
  alerts: readonly StoredAlert[],
  rule: AlarmRule,
): { readonly flagMismatches: number; readonly alertMismatches: number } {
  let flagMismatches = 0, alertMismatches = 0;
  const expected = replay(readings, rule);
  readings.forEach((r, i) => {
    if (r.is_critical !== expected.critical[i]) flagMismatches++;
  });
  const want = new Map<number, { status: "active" | "cleared"; clearedSeq?: number }>();
  for (const t of expected.transitions) {
    if (t.type === "raised") want.set(t.seq, { status: "active" });
    else want.set(t.episode.raisedSeq, { status: "cleared", clearedSeq: t.seq });
  }
  const seenRaised = new Set<number>();
  for (const a of alerts.filter(isOverheat)) {
    const w = want.get(a.raisedSeq);
    if (!w || seenRaised.has(a.raisedSeq) || w.status !== a.status) alertMismatches++;
    else if (w.status === "cleared" && w.clearedSeq !== a.clearedSeq) alertMismatches++;
    seenRaised.add(a.raisedSeq);
  }
  for (const raisedSeq of want.keys()) if (!seenRaised.has(raisedSeq)) alertMismatches++;
  return { flagMismatches, alertMismatches };
}

function isOverheat(a: StoredAlert): boolean {
  return (a.type ?? "overheat") === "overheat";
}

/**
 * Compares one device's stored offline alerts with the offline rule replayed over its stored
 * readings (unique, sorted by seq): every silence longer than `offlineAfterMs` between two
 * readings is one cleared episode with the right start and end; an active one may only be the
 * silence after the last reading, dated from it.
 */
export function compareOffline(
  readings: readonly Pick<StoredReading, "seq" | "ts">[],
  alerts: readonly StoredAlert[],
  offlineAfterMs: number,
): OfflineReport {
  const want = new Map<number, { clearedSeq: number; raisedAtMs: number }>();
  readings.forEach((r, i) => {
    const e = offlineGap(readings[i - 1] ?? null, r, offlineAfterMs);
    if (e) {
      want.set(e.raisedSeq, { clearedSeq: e.cleared!.seq, raisedAtMs: Date.parse(e.raisedAt) });
    }
  });
  const last = readings.at(-1);
  let offlineEpisodes = 0, offlineWithdrawn = 0, offlineMismatches = 0;
  const seen = new Set<number>();
  for (const a of alerts) {
    if (a.type !== "offline") continue;
    if (a.withdrawn) {
      offlineWithdrawn++;
      continue;
    }
    offlineEpisodes++;
    const raisedAtMs = a.raisedAt === undefined ? NaN : new Date(a.raisedAt).getTime();
    if (a.status === "active") {
      const ok = last !== undefined && a.raisedSeq === last.seq &&
        raisedAtMs === offlineAt(last.ts, offlineAfterMs);
      if (!ok) offlineMismatches++;
      continue;
    }
    const w = want.get(a.raisedSeq);
    if (
      !w || seen.has(a.raisedSeq) || w.clearedSeq !== a.clearedSeq || w.raisedAtMs !== raisedAtMs
    ) {
      offlineMismatches++;
    }
    seen.add(a.raisedSeq);
  }
  for (const raisedSeq of want.keys()) if (!seen.has(raisedSeq)) offlineMismatches++;
  return { offlineEpisodes, offlineWithdrawn, offlineMismatches };
}

/** Sums offline reports. */
function addOffline(a: OfflineReport, b: OfflineReport): OfflineReport {
  return {
    offlineEpisodes: a.offlineEpisodes + b.offlineEpisodes,
    offlineWithdrawn: a.offlineWithdrawn + b.offlineWithdrawn,
    offlineMismatches: a.offlineMismatches + b.offlineMismatches,
  };
}

const NO_OFFLINE: OfflineReport = { offlineEpisodes: 0, offlineWithdrawn: 0, offlineMismatches: 0 };

/**
 * `acked` maps each device to the highest seq Kafka acknowledged (the load
 * generator sends seqs 1..n in order, so every seq up to it was acknowledged).
 */
export function check(
  acked: ReadonlyMap<string, number>,
  readings: readonly StoredReading[],
  alerts: readonly StoredAlert[],
  rule: AlarmRule,
  offlineAfterMs?: number,
): CheckReport {
  const byDevice = new Map<string, StoredReading[]>();
  for (const r of readings) {
    const list = byDevice.get(r.deviceId);
    if (list) list.push(r);
    else byDevice.set(r.deviceId, [r]);
  }
  let lost = 0, duplicated = 0, phantom = 0, gaps = 0, flagMismatches = 0, alertMismatches = 0;
  let acknowledged = 0;
  let offline = NO_OFFLINE;
  for (const [deviceId, max] of acked) {
    acknowledged += max;
    const seen = new Set((byDevice.get(deviceId) ?? []).map((r) => r.seq));
    for (let seq = 1; seq <= max; seq++) if (!seen.has(seq)) lost++;
  }
  const alertsByDevice = new Map<string, StoredAlert[]>();
  for (const a of alerts) {
    const list = alertsByDevice.get(a.deviceId);
    if (list) list.push(a);
    else alertsByDevice.set(a.deviceId, [a]);
  }
  for (const [deviceId, list] of byDevice) {
    const max = acked.get(deviceId) ?? 0;
    const sorted = [...list].sort((a, b) => a.seq - b.seq);
    const unique: StoredReading[] = [];
    for (const r of sorted) {
      if (r.seq > max) phantom++;
      if (unique.length > 0 && unique.at(-1)!.seq === r.seq) duplicated++;
      else unique.push(r);
    }
    const top = unique.at(-1)?.seq ?? 0;
    gaps += top - unique.length;
    const got = alertsByDevice.get(deviceId) ?? [];
    alertsByDevice.delete(deviceId);
    const m = compareWithReplay(unique, got, rule);
    flagMismatches += m.flagMismatches;
    alertMismatches += m.alertMismatches;
    if (offlineAfterMs !== undefined) {
      offline = addOffline(offline, compareOffline(unique, got, offlineAfterMs));
    }
  }
  // Alerts of devices with no stored reading at all.
  for (const list of alertsByDevice.values()) alertMismatches += list.length;
  return {
    ...(offlineAfterMs !== undefined ? offline : {}),
    lost,
    duplicated,
    phantom,
    gaps,
    flagMismatches,
    alertMismatches,
    stored: readings.length,
    acknowledged,
  };
}

// ------------------------------------------------------- the app's sensors

/** A reading's content, one comparable string: what must never change under its (deviceId, seq). */
export type Content = string;

/** One reading on the topic, in topic order (a device's readings keep their order). */
export interface ProducedReading {
  readonly deviceId: string;
  readonly seq: number;
  readonly content: Content;
}

export interface StoredContent extends StoredReading {
  readonly content: Content;
}

/** A snapshot of the stored readings: `deviceId:seq` → content. */
export type Snapshot = ReadonlyMap<string, Content>;

export interface SensorCheckInput {
  /** Every reading on the topic; absent in embedded mode, which has no topic to read back. */
  readonly produced?: readonly ProducedReading[];
  readonly stored: readonly StoredContent[];
  /** Stored readings taken during the run (after each fault). */
  readonly snapshots: readonly Snapshot[];
  readonly alerts: readonly StoredAlert[];
  /** Conflicts the app itself reported: dead letters (reason conflict/late) or logged lines. */
  readonly conflictsReported: number;
  readonly rule: AlarmRule;
  /** The offline limit of every device of the run: checks offline alerts too. */
  readonly offlineAfterMs?: number;
}

/** With an `offlineAfterMs`, the report also has the offline counts. */
export interface SensorReport extends Partial<OfflineReport> {
  /** Readings on the topic (Kafka acknowledged them), and their distinct (deviceId, seq) pairs. */
  readonly produced: number;
  readonly pairs: number;
  readonly stored: number;
  /** Pairs produced more than once with different content: a reused seq. */
  readonly reused: number;
  /** Pairs produced more than once with the same content: a harmless resend (not a failure). */
  readonly resent: number;
  /**
   * Acknowledged but not stored: readings on the topic (distinct content per pair) the store does
   * not hold, whether their pair has nothing stored or another reading stored under it.
   */
  readonly lost: number;
  /** Stored readings whose content changed after a snapshot saw them: stored then overwritten. */
  readonly overwritten: number;
  /** Stored readings whose content is not the first one produced under their pair. */
  readonly notFirst: number;
  /** Stored readings never produced. */
  readonly phantom: number;
  /** Seqs skipped by the producers (allowed: counted, not a failure). */
  readonly gaps: number;
  readonly flagMismatches: number;
  readonly alertMismatches: number;
  readonly conflictsReported: number;
}

/** The counts of a {@linkcode SensorReport} that must be 0. */
export function sensorFailures(r: SensorReport): number {
  return r.reused + r.lost + r.overwritten + r.notFirst + r.phantom + r.flagMismatches +
    r.alertMismatches + r.conflictsReported + (r.offlineMismatches ?? 0);
}

const pairKey = (deviceId: string, seq: number) => `${deviceId}:${seq}`;

/**
 * Checks the promise for the app's own sensors, per (deviceId, seq): produced at most once with
 * one content, every acknowledged reading stored with that first content and never overwritten,
 * and flags and alerts equal to the rule replayed over the stored readings.
 */
export function checkSensors(input: SensorCheckInput): SensorReport {
  let reused = 0, resent = 0, lost = 0, notFirst = 0, phantom = 0, gaps = 0;
  let flagMismatches = 0, alertMismatches = 0;
  let offline = NO_OFFLINE;
  const stored = new Map(input.stored.map((r) => [pairKey(r.deviceId, r.seq), r]));
  // First content per pair, and every distinct content seen under it.
  const first = new Map<string, Content>();
  const contents = new Map<string, Set<Content>>();
  const counts = new Map<string, number>();
  const maxSeq = new Map<string, number>();
  for (const p of input.produced ?? []) {
    const key = pairKey(p.deviceId, p.seq);
    if (!first.has(key)) first.set(key, p.content);
    const seen = contents.get(key) ?? new Set();
    seen.add(p.content);
    contents.set(key, seen);
    counts.set(key, (counts.get(key) ?? 0) + 1);
    maxSeq.set(p.deviceId, Math.max(maxSeq.get(p.deviceId) ?? 0, p.seq));
  }
  for (const [key, seen] of contents) {
    if (seen.size > 1) reused++;
    else if (counts.get(key)! > 1) resent++;
    const kept = stored.get(key)?.content;
    for (const content of seen) if (content !== kept) lost++;
  }
  const pairsPerDevice = new Map<string, number>();
  for (const key of first.keys()) {
    const deviceId = key.slice(0, key.lastIndexOf(":"));
    pairsPerDevice.set(deviceId, (pairsPerDevice.get(deviceId) ?? 0) + 1);
  }
  for (const [deviceId, max] of maxSeq) gaps += max - pairsPerDevice.get(deviceId)!;
  if (!input.produced) {
    // No topic (embedded mode): the holes in what was stored.
    for (const list of Map.groupBy(input.stored, (r) => r.deviceId).values()) {
      gaps += Math.max(...list.map((r) => r.seq)) - list.length;
    }
  }
  if (input.produced) {
    for (const [key, r] of stored) {
      const want = first.get(key);
      if (want === undefined) phantom++;
      else if (want !== r.content) notFirst++;
    }
  }
  const changed = new Set<string>();
  for (const snapshot of input.snapshots) {
    for (const [key, content] of snapshot) {
      const now = stored.get(key);
      // A reading that vanished was overwritten by nothing: as bad as by something else.
      if (!now || now.content !== content) changed.add(key);
    }
  }
  const overwritten = changed.size;
  const alerts = Map.groupBy(input.alerts, (a) => a.deviceId);
  for (const [deviceId, list] of Map.groupBy(input.stored, (r) => r.deviceId)) {
    const sorted = [...list].sort((a, b) => a.seq - b.seq);
    const m = compareWithReplay(sorted, alerts.get(deviceId) ?? [], input.rule);
    if (input.offlineAfterMs !== undefined) {
      offline = addOffline(
        offline,
        compareOffline(sorted, alerts.get(deviceId) ?? [], input.offlineAfterMs),
      );
    }
    alerts.delete(deviceId);
    flagMismatches += m.flagMismatches;
    alertMismatches += m.alertMismatches;
  }
  for (const list of alerts.values()) alertMismatches += list.length;
  return {
    produced: input.produced?.length ?? 0,
    pairs: first.size,
    stored: stored.size,
    reused,
    resent,
    lost,
    overwritten,
    notFirst,
    phantom,
    gaps,
    flagMismatches,
    alertMismatches,
    conflictsReported: input.conflictsReported,
    ...(input.offlineAfterMs !== undefined ? offline : {}),
  };
}

const REFUSED = /^(conflict|late)\b/i;

/** Whether a dead letter's reason says the store refused a reading (a conflict, or too late). */
export function isRefusal(reason: string): boolean {
  return REFUSED.test(reason);
}

/**
 * Log lines of the app that report a refused reading: a JSON line whose `reason` starts with
 * "conflict" or "late" or whose `msg` mentions a conflict; any other line that mentions one.
 */
export function refusalsLogged(log: string): number {
  let n = 0;
  for (const line of log.split("\n")) {
    let entry: unknown;
    try {
      entry = JSON.parse(line);
    } catch {
      if (/conflict/i.test(line)) n++;
      continue;
    }
    const { reason, msg } = (entry ?? {}) as { reason?: unknown; msg?: unknown };
    if (
      (typeof reason === "string" && isRefusal(reason)) ||
      (typeof msg === "string" && /conflict/i.test(msg))
    ) n++;
  }
  return n;
}
