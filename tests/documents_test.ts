import assert from "node:assert/strict";
import {
  type AlarmState,
  DEFAULT_RULE,
  INITIAL_ALARM_STATE,
  replay,
} from "../domain/hysteresis.ts";
import {
  alertId,
  fromReadingDoc,
  readingId,
  restoreAlarmState,
  toAlertDoc,
  toDeviceDoc,
  toReadingDoc,
} from "../schemas/documents.ts";
import type { Reading } from "../schemas/reading.ts";

const PROCESSED_AT = new Date("2026-11-27T13:00:05.000Z");

const READING: Reading = {
  deviceId: "sensor-0001",
  seq: 42,
  ts: "2026-11-27T13:00:00.000Z",
  temperature: 81.5,
  humidity: 40.1,
  location: { lat: 48.8566, lon: 2.3522 },
};

/** An alarm state with an open episode and non-trivial counters. */
function criticalState(): AlarmState {
  const temperatures = [70, 81, 82, 79, 85];
  return replay(
    temperatures.map((temperature, i) => ({
      seq: i + 1,
      ts: new Date(Date.UTC(2026, 10, 27, 13, 0, i)).toISOString(),
      temperature,
    })),
    DEFAULT_RULE,
  ).state;
}

Deno.test("readingId() joins the device id and seq with a colon", () => {
  assert.equal(readingId("sensor-0001", 42), "sensor-0001:42");
  assert.equal(readingId("a.b_c", 1), "a.b_c:1");
});

Deno.test("alertId() names an overheat episode by the seq that raised it", () => {
  assert.equal(alertId("sensor-0001", 3), "sensor-0001:overheat:3");
  assert.notEqual(alertId("d", 3), readingId("d", 3));
});

Deno.test("toReadingDoc() stores the location as GeoJSON [lon, lat]", () => {
  const doc = toReadingDoc(READING, true, PROCESSED_AT);
  assert.deepEqual(doc.location, { type: "Point", coordinates: [2.3522, 48.8566] });
});

Deno.test("toReadingDoc() keys the document by readingId and turns ts into a Date", () => {
  assert.deepEqual(toReadingDoc(READING, false, PROCESSED_AT), {
    _id: "sensor-0001:42",
    deviceId: "sensor-0001",
    seq: 42,
    ts: new Date("2026-11-27T13:00:00.000Z"),
    temperature: 81.5,
    humidity: 40.1,
    location: { type: "Point", coordinates: [2.3522, 48.8566] },
    is_critical: false,
    processedAt: PROCESSED_AT,
  });
});

// Changed with rule changes at run time: a roll-forward from stored readings needs each one's rule.
Deno.test("toReadingDoc() keeps a reading's own thresholds in the document", () => {
  const doc = toReadingDoc(
    { ...READING, thresholds: { high: 50, low: 40, raiseAfter: 1, clearAfter: 1 } },
    true,
    PROCESSED_AT,
  );
  assert.deepEqual(doc.thresholds, { high: 50, low: 40, raiseAfter: 1, clearAfter: 1 });
  assert.equal(doc.is_critical, true);
});

Deno.test("toAlertDoc() describes an open episode as active, a closed one as cleared", () => {
  const episode = { raisedSeq: 3, raisedAt: "2026-11-27T13:00:03.000Z", peakTemperature: 82 };
  assert.deepEqual(toAlertDoc("d", episode, DEFAULT_RULE), {
    _id: "d:overheat:3",
    deviceId: "d",
    type: "overheat",
    status: "active",
    raisedAt: new Date(episode.raisedAt),
    raisedSeq: 3,
    peakTemperature: 82,
    thresholds: DEFAULT_RULE,
    asOfSeq: 3,
  });
  const cleared = toAlertDoc("d", episode, DEFAULT_RULE, {
    seq: 8,
    ts: "2026-11-27T13:00:08.000Z",
  });
  assert.equal(cleared.status, "cleared");
  assert.equal(cleared.clearedSeq, 8);
  assert.deepEqual(cleared.clearedAt, new Date("2026-11-27T13:00:08.000Z"));
  assert.equal(cleared.asOfSeq, 8, "a cleared snapshot reflects the clearing reading");
});

Deno.test("toDeviceDoc() keys the document by device id and keeps the full alarm state", () => {
  const state = criticalState();
  const rule = { ...DEFAULT_RULE, high: 78 };
  const doc = toDeviceDoc("sensor-0001", state, rule, PROCESSED_AT);
  assert.equal(doc._id, "sensor-0001");
  assert.equal(doc.level, "critical");
  assert.equal(doc.lastSeq, 5);
  assert.deepEqual(doc.since, new Date(state.since!));
  assert.deepEqual(doc.lastTs, new Date(state.lastTs!));
  assert.deepEqual(doc.counters, state.counters);
  assert.deepEqual(doc.thresholds, rule);
  assert.deepEqual(doc.alarm, state);
  assert.equal(doc.updatedAt, PROCESSED_AT);
});

Deno.test("toDeviceDoc() writes null dates for a device that never changed level", () => {
  const doc = toDeviceDoc("d", INITIAL_ALARM_STATE, DEFAULT_RULE, PROCESSED_AT);
  assert.equal(doc.since, null);
  assert.equal(doc.lastTs, null);
  assert.equal(doc.lastSeq, 0);
});

Deno.test("restoreAlarmState() round-trips toDeviceDoc() through JSON", () => {
  for (const state of [INITIAL_ALARM_STATE, criticalState()]) {
    const stored: unknown = JSON.parse(
      JSON.stringify(toDeviceDoc("d", state, DEFAULT_RULE, PROCESSED_AT)),
    );
    // The top-level dates become strings, but `alarm` only ever held strings.
    assert.equal(typeof (stored as { updatedAt: unknown }).updatedAt, "string");
    assert.deepEqual(restoreAlarmState(stored), { ok: true, state });
  }
});

Deno.test("restoreAlarmState() restores a state the hysteresis can continue from", () => {
  const state = criticalState();
  const stored: unknown = JSON.parse(
    JSON.stringify(toDeviceDoc("d", state, DEFAULT_RULE, PROCESSED_AT)),
  );
  const restored = restoreAlarmState(stored);
  assert.ok(restored.ok);
  const next = [{ seq: 6, ts: "2026-11-27T13:00:06.000Z", temperature: 60 }, {
    seq: 7,
    ts: "2026-11-27T13:00:07.000Z",
    temperature: 60,
  }];
  assert.deepEqual(
    replay(next, DEFAULT_RULE, restored.state),
    replay(next, DEFAULT_RULE, state),
  );
});

Deno.test("restoreAlarmState() rejects documents without a usable alarm", () => {
  const valid = toDeviceDoc("d", criticalState(), DEFAULT_RULE, PROCESSED_AT);
  const garbage: unknown[] = [
    null,
    undefined,
    42,
    "device",
    [],
    {},
    { alarm: null },
    { alarm: "critical" },
    { alarm: {} },
    { alarm: { ...valid.alarm, level: "panic" } },
    { alarm: { ...valid.alarm, lastSeq: -1 } },
    { alarm: { ...valid.alarm, lastSeq: 1.5 } },
    { alarm: { ...valid.alarm, since: 17 } },
    { alarm: { ...valid.alarm, counters: { readings: 1 } } },
    { alarm: { ...valid.alarm, episode: { raisedSeq: 0, raisedAt: "x", peakTemperature: 1 } } },
    { alarm: { ...valid.alarm, hotStreak: "2" } },
  ];
  for (const doc of garbage) {
    const result = restoreAlarmState(doc);
    assert.equal(result.ok, false, JSON.stringify(doc));
    assert.ok(!result.ok && result.reason.length > 0);
  }
});

Deno.test("restoreAlarmState() ignores fields it does not know", () => {
  const state = criticalState();
  const doc = { alarm: { ...state, legacy: true } };
  assert.deepEqual(restoreAlarmState(doc), { ok: true, state });
});

Deno.test("fromReadingDoc() gives back the reading a document was made from, with the rule given", () => {
  const reading = {
    deviceId: "d1",
    seq: 4,
    ts: "2026-11-27T13:00:04.000Z",
    temperature: 81.5,
    humidity: 40,
    location: { lat: 48.85, lon: 2.35 },
  };
  const doc = toReadingDoc(reading, true, new Date());
  assert.deepEqual(fromReadingDoc(doc), reading);
  assert.deepEqual(fromReadingDoc(doc, DEFAULT_RULE), { ...reading, thresholds: DEFAULT_RULE });
  // A reading sent with an offset comes back as the same instant in UTC.
  const offset = toReadingDoc({ ...reading, ts: "2026-11-27T14:00:04+01:00" }, false, new Date());
  assert.equal(fromReadingDoc(offset).ts, reading.ts);
});

Deno.test("a reading's own rule is stored with it, and fromReadingDoc() prefers it to the one given", () => {
  const own = { ...DEFAULT_RULE, high: 50, low: 40 };
  const reading: Reading = {
    deviceId: "d1",
    seq: 5,
    ts: "2026-11-27T13:00:05.000Z",
    temperature: 60,
    humidity: 40,
    location: { lat: 48.85, lon: 2.35 },
    thresholds: own,
  };
  const doc = toReadingDoc(reading, true, new Date());
  assert.deepEqual(doc.thresholds, own);
  assert.deepEqual(fromReadingDoc(doc, DEFAULT_RULE), reading, "across a later rule change");
  const { thresholds: _, ...plain } = reading;
  assert.equal("thresholds" in toReadingDoc(plain, false, new Date()), false);
});
