import assert from "node:assert/strict";
import {
  check,
  checkSensors,
  compareOffline,
  isRefusal,
  type ProducedReading,
  refusalsLogged,
  sensorFailures,
  type StoredAlert,
  type StoredContent,
  type StoredReading,
} from "../chaos/check.ts";
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

// The app's sensors: content per (deviceId, seq) on the topic, in the store and in snapshots.

const content = (r: StoredReading) => `${r.ts}|${r.temperature}`;

function storedContent(deviceId: string): StoredContent[] {
  return stored(deviceId).map((r) => ({ ...r, content: content(r) }));
}

function producedFrom(readings: readonly StoredContent[]): ProducedReading[] {
  return readings.map(({ deviceId, seq, content }) => ({ deviceId, seq, content }));
}

const snapshotOf = (readings: readonly StoredContent[]) =>
  new Map(readings.map((r) => [`${r.deviceId}:${r.seq}`, r.content]));

Deno.test("checkSensors() reports nothing wrong when each pair was produced once and stored as is", () => {
  const store = storedContent("d1");
  const produced = producedFrom(store);
  const report = checkSensors({
    // The same reading sent twice (a producer retry) is a resend, not a failure.
    produced: [...produced, produced[3]!],
    stored: store,
    snapshots: [snapshotOf(store.slice(0, 5)), snapshotOf(store)],
    alerts: ALERTS,
    conflictsReported: 0,
    rule: DEFAULT_RULE,
  });
  assert.deepEqual(report, {
    produced: 11,
    pairs: 10,
    stored: 10,
    reused: 0,
    resent: 1,
    lost: 0,
    overwritten: 0,
    notFirst: 0,
    phantom: 0,
    gaps: 0,
    flagMismatches: 0,
    alertMismatches: 0,
    conflictsReported: 0,
  });
  assert.equal(sensorFailures(report), 0);
});

Deno.test("checkSensors() counts a reused seq and the acknowledged reading it cost", () => {
  const store = storedContent("d1");
  const produced = producedFrom(store);
  // After a restart, seqs 4 and 5 are produced again with new content; the store kept the first.
  const again = produced.slice(3, 5).map((p) => ({ ...p, content: `${p.content}:again` }));
  const report = checkSensors({
    produced: [...produced, ...again],
    stored: store,
    snapshots: [],
    alerts: ALERTS,
    conflictsReported: 2,
    rule: DEFAULT_RULE,
  });
  assert.equal(report.reused, 2);
  assert.equal(report.lost, 2, "the second readings of seqs 4 and 5 are not stored");
  assert.equal(report.notFirst, 0);
  assert.equal(report.conflictsReported, 2);
  assert.equal(sensorFailures(report), 6);
});

Deno.test("checkSensors() counts stored content that is not the first produced, and phantoms", () => {
  const store = storedContent("d1");
  const produced = producedFrom(store);
  const replaced = store.map((r) => r.seq === 2 ? { ...r, content: "later" } : r);
  const report = checkSensors({
    produced: [...produced.slice(0, 9), { ...produced[1]!, content: "later" }],
    stored: replaced,
    snapshots: [],
    alerts: ALERTS,
    conflictsReported: 0,
    rule: DEFAULT_RULE,
  });
  assert.equal(report.reused, 1);
  assert.equal(report.notFirst, 1);
  assert.equal(report.lost, 1, "the first reading of seq 2 is not stored");
  assert.equal(report.phantom, 1, "seq 10 is stored but was never produced");
});

Deno.test("checkSensors() counts stored readings a snapshot saw that later changed or vanished", () => {
  const store = storedContent("d1");
  const before = snapshotOf(store);
  const after = store.filter((r) => r.seq !== 9).map((r) =>
    r.seq === 2 ? { ...r, content: "overwritten" } : r
  );
  const report = checkSensors({
    stored: after,
    snapshots: [before, before],
    alerts: [],
    conflictsReported: 0,
    rule: DEFAULT_RULE,
  });
  assert.equal(report.overwritten, 2, "each changed reading counts once, however many snapshots");
  assert.equal(report.produced, 0, "embedded mode has no topic");
  assert.equal(report.gaps, 1, "without a topic, gaps are the holes in the stored seqs");
  assert.equal(report.lost, 0);
  assert.ok(report.alertMismatches > 0, "the replayed rule raises alerts nobody stored");
});

Deno.test("isRefusal() knows the dead-letter reasons of a refused reading", () => {
  assert.equal(
    isRefusal('conflict: reading "d1" seq "4" is stored already with other content'),
    true,
  );
  assert.equal(isRefusal('late: reading "d1" seq "4" is not above its last applied seq "9"'), true);
  assert.equal(isRefusal("invalid JSON: Unexpected token"), false);
  assert.equal(isRefusal("translated"), false);
});

Deno.test("refusalsLogged() counts the app's log lines about refused readings", () => {
  const log = [
    JSON.stringify({ level: "warn", msg: "record dead-lettered", reason: "conflict: seq 4" }),
    JSON.stringify({ level: "warn", msg: "record dead-lettered", reason: "late: seq 5" }),
    JSON.stringify({ level: "warn", msg: "record dead-lettered", reason: "invalid JSON" }),
    JSON.stringify({ level: "error", msg: "reading conflict" }),
    JSON.stringify({ level: "info", msg: "pipeline running" }),
    "a plain line about a conflict",
    "",
  ].join("\n");
  assert.equal(refusalsLogged(log), 4);
});

/** d1's readings a second apart, but for a 20 s silence after seq 4. */
function silent(): StoredReading[] {
  return stored("d1").map((r) =>
    r.seq > 4 ? { ...r, ts: new Date(Date.parse(r.ts) + 20_000).toISOString() } : r
  );
}

const SILENCE_START = Date.UTC(2026, 0, 1, 0, 0, 3) + 5000;

Deno.test("compareOffline() accepts the silence between two readings and the one after the last", () => {
  const readings = silent();
  const last = Date.parse(readings.at(-1)!.ts);
  const alerts: StoredAlert[] = [
    {
      deviceId: "d1",
      type: "offline",
      raisedSeq: 4,
      status: "cleared",
      clearedSeq: 5,
      raisedAt: new Date(SILENCE_START),
    },
    {
      deviceId: "d1",
      type: "offline",
      raisedSeq: 10,
      status: "active",
      raisedAt: new Date(last + 5000),
    },
    // Raised on the clock, then shown never to have happened: reported, not a failure.
    {
      deviceId: "d1",
      type: "offline",
      raisedSeq: 7,
      status: "cleared",
      clearedSeq: 8,
      withdrawn: true,
    },
  ];
  assert.deepEqual(compareOffline(readings, [...ALERTS, ...alerts], 5000), {
    offlineEpisodes: 2,
    offlineWithdrawn: 1,
    offlineMismatches: 0,
  });
});

Deno.test("compareOffline() counts a missed, an invented, a misdated and a stale open episode", () => {
  const readings = silent();
  const cases: [string, StoredAlert[]][] = [
    ["missed", []],
    ["misdated", [{
      deviceId: "d1",
      type: "offline",
      raisedSeq: 4,
      status: "cleared",
      clearedSeq: 5,
      raisedAt: new Date(SILENCE_START + 1),
    }]],
    ["cleared by the wrong reading", [{
      deviceId: "d1",
      type: "offline",
      raisedSeq: 4,
      status: "cleared",
      clearedSeq: 6,
      raisedAt: new Date(SILENCE_START),
    }]],
    ["still open though a reading came", [{
      deviceId: "d1",
      type: "offline",
      raisedSeq: 4,
      status: "active",
      raisedAt: new Date(SILENCE_START),
    }]],
  ];
  for (const [name, alerts] of cases) {
    // Open when it should be closed: a stale open episode and a missing closed one.
    const expected = name.startsWith("still open") ? 2 : 1;
    assert.equal(compareOffline(readings, alerts, 5000).offlineMismatches, expected, name);
  }
  const invented: StoredAlert = {
    deviceId: "d1",
    type: "offline",
    raisedSeq: 2,
    status: "cleared",
    clearedSeq: 3,
    raisedAt: new Date(0),
  };
  assert.equal(compareOffline(stored("d1"), [invented], 5000).offlineMismatches, 1, "invented");
});

Deno.test("check() and checkSensors() report offline counts only given the run's offlineAfterMs, and fail on a mismatch", () => {
  const readings = silent();
  const bad: StoredAlert[] = [...ALERTS];
  const without = check(new Map([["d1", 10]]), readings, bad, DEFAULT_RULE);
  assert.equal(without.offlineMismatches, undefined);
  const report = check(new Map([["d1", 10]]), readings, bad, DEFAULT_RULE, 5000);
  assert.equal(report.offlineMismatches, 1, "the silence after seq 4 is missing");
  assert.equal(report.alertMismatches, 0, "offline alerts are not overheat ones");
  const store = readings.map((r) => ({ ...r, content: `${r.deviceId}:${r.seq}` }));
  const sensors = checkSensors({
    stored: store,
    snapshots: [],
    alerts: bad,
    conflictsReported: 0,
    rule: DEFAULT_RULE,
    offlineAfterMs: 5000,
  });
  assert.equal(sensors.offlineMismatches, 1);
  assert.equal(sensorFailures(sensors), 1);
});
