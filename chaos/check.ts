/**
 * The fault-injection checker: compares what Kafka acknowledged (the ledger)
 * with what the store holds, and the stored alerts with the pure rule
 * replayed over the stored readings. Pure: the harness feeds it data.
 *
 * @module
 */
import { type AlarmRule, replay } from "../domain/hysteresis.ts";

export interface StoredReading {
  readonly deviceId: string;
  readonly seq: number;
  readonly ts: string;
  readonly temperature: number;
  readonly is_critical: boolean;
}

export interface StoredAlert {
  readonly deviceId: string;
  readonly raisedSeq: number;
  readonly status: "active" | "cleared";
  readonly clearedSeq?: number;
}

export interface CheckReport {
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
 * `acked` maps each device to the highest seq Kafka acknowledged (the load
 * generator sends seqs 1..n in order, so every seq up to it was acknowledged).
 */
export function check(
  acked: ReadonlyMap<string, number>,
  readings: readonly StoredReading[],
  alerts: readonly StoredAlert[],
  rule: AlarmRule,
): CheckReport {
  const byDevice = new Map<string, StoredReading[]>();
  for (const r of readings) {
    const list = byDevice.get(r.deviceId);
    if (list) list.push(r);
    else byDevice.set(r.deviceId, [r]);
  }
  let lost = 0, duplicated = 0, phantom = 0, gaps = 0, flagMismatches = 0, alertMismatches = 0;
  let acknowledged = 0;
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
    const expected = replay(unique, rule);
    unique.forEach((r, i) => {
      if (r.is_critical !== expected.critical[i]) flagMismatches++;
    });
    const want = new Map<number, { status: "active" | "cleared"; clearedSeq?: number }>();
    for (const t of expected.transitions) {
      if (t.type === "raised") want.set(t.seq, { status: "active" });
      else want.set(t.episode.raisedSeq, { status: "cleared", clearedSeq: t.seq });
    }
    const got = alertsByDevice.get(deviceId) ?? [];
    alertsByDevice.delete(deviceId);
    const seenRaised = new Set<number>();
    for (const a of got) {
      const w = want.get(a.raisedSeq);
      if (!w || seenRaised.has(a.raisedSeq) || w.status !== a.status) alertMismatches++;
      else if (w.status === "cleared" && w.clearedSeq !== a.clearedSeq) alertMismatches++;
      seenRaised.add(a.raisedSeq);
    }
    for (const raisedSeq of want.keys()) if (!seenRaised.has(raisedSeq)) alertMismatches++;
  }
  // Alerts of devices with no stored reading at all.
  for (const list of alertsByDevice.values()) alertMismatches += list.length;
  return {
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
