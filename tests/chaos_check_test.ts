import assert from "node:assert/strict";
import { check, type StoredAlert, type StoredReading } from "../chaos/check.ts";
import { DEFAULT_RULE, replay } from "../domain/hysteresis.ts";

const TEMPS = [70, 81, 82, 79, 76, 71, 69, 68, 85, 86];

function stored(deviceId: string, temps = TEMPS): StoredReading[] {
  const samples = temps.map((temperature, i) => ({
    seq: i + 1,
    ts: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString(),
    temperature,
  }));
  const { critical } = replay(samples, DEFAULT_RULE);
  return samples.map((s, i) => ({ ...s, deviceId, is_critical: critical[i]! }));
}

const ALERTS: StoredAlert[] = [
  { deviceId: "d1", raisedSeq: 3, status: "cleared", clearedSeq: 8 },
  { deviceId: "d1", raisedSeq: 10, status: "active" },
];

Deno.test("check() reports nothing wrong for a complete, consistent store", () => {
  const report = check(new Map([["d1", 10]]), stored("d1"), ALERTS, DEFAULT_RULE);
  assert.deepEqual(report, {
    lost: 0,
    duplicated: 0,
    phantom: 0,
    gaps: 0,
    flagMismatches: 0,
    alertMismatches: 0,
    stored: 10,
    acknowledged: 10,
  });
});

Deno.test("check() counts lost, duplicated and phantom readings and gaps", () => {
  const readings = stored("d1");
  const damaged = [
    ...readings.filter((r) => r.seq !== 5), // seq 5 lost: a gap too
    readings[0]!, // seq 1 twice
  ];
  const report = check(new Map([["d1", 9]]), damaged, ALERTS, DEFAULT_RULE);
  assert.equal(report.lost, 1);
  assert.equal(report.duplicated, 1);
  assert.equal(report.phantom, 1, "seq 10 was never acknowledged");
  assert.equal(report.gaps, 1);
});

Deno.test("check() counts wrong flags and missing, extra or wrong alerts", () => {
  const readings = stored("d1").map((r) => r.seq === 4 ? { ...r, is_critical: false } : r);
  const alerts: StoredAlert[] = [
    { deviceId: "d1", raisedSeq: 3, status: "active" }, // should be cleared
    { deviceId: "d1", raisedSeq: 5, status: "active" }, // never raised
    // raisedSeq 10 missing
  ];
  const report = check(new Map([["d1", 10]]), readings, alerts, DEFAULT_RULE);
  assert.equal(report.flagMismatches, 1);
  assert.equal(report.alertMismatches, 3);
});
