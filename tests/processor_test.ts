import assert from "node:assert/strict";
import { type Actor, ask } from "../actors/actor.ts";
import { createProcessor, type DeviceOutput, type ProcessorMsg } from "../actors/processor.ts";
import {
  type AlarmRule,
  type AlarmState,
  DEFAULT_RULE,
  INITIAL_ALARM_STATE,
} from "../domain/hysteresis.ts";
import type { Reading } from "../schemas/reading.ts";
import type { AlertDoc } from "../schemas/documents.ts";
import fc from "fast-check";
import { numRuns } from "./fc_runs.ts";

const ID = "boiler-1";
const BASE_MS = Date.UTC(2026, 10, 27, 13, 0, 0);
const PROCESSED_AT = new Date(BASE_MS + 60_000);
const WORKED_EXAMPLE = [70, 81, 82, 79, 76, 71, 69, 68, 85, 86];

/** Readings with consecutive seq from `firstSeq`, one second apart. */
function readings(
  temperatures: readonly number[],
  firstSeq = 1,
  thresholds?: AlarmRule,
): Reading[] {
  return temperatures.map((temperature, i) => ({
    deviceId: ID,
    seq: firstSeq + i,
    ts: new Date(BASE_MS + (firstSeq + i) * 1000).toISOString(),
    temperature,
    humidity: 50,
    location: { lat: 48.8566, lon: 2.3522 },
    ...(thresholds ? { thresholds } : {}),
  }));
}

function apply(actor: Actor<ProcessorMsg>, batch: readonly Reading[]): Promise<DeviceOutput> {
  return ask<ProcessorMsg, DeviceOutput>(actor, (reply) => ({
    type: "apply",
    readings: batch,
    processedAt: PROCESSED_AT,
    reply,
  }));
}

function stateOf(actor: Actor<ProcessorMsg>): Promise<AlarmState> {
  return ask<ProcessorMsg, AlarmState>(actor, (reply) => ({ type: "state", reply }));
}

function processor(initial: AlarmState = INITIAL_ALARM_STATE): Actor<ProcessorMsg> {
  return createProcessor(ID, initial, { default: DEFAULT_RULE, current: DEFAULT_RULE }, (error) => {
    throw new Error("Processor failed unexpectedly", { cause: error });
  });
}

Deno.test("processor marks each reading of the worked example critical or not", async () => {
  await using actor = processor();
  const out = await apply(actor, readings(WORKED_EXAMPLE));
  assert.deepEqual(
    out.readings.map((r) => r.is_critical),
    [false, false, true, true, true, true, true, false, false, true],
  );
  assert.deepEqual(out.readings.map((r) => r._id), WORKED_EXAMPLE.map((_, i) => `${ID}:${i + 1}`));
  assert.ok(out.readings.every((r) => r.processedAt === PROCESSED_AT));
  assert.equal(out.skipped.length, 0);
});

Deno.test("processor reports the cleared and the open episode of the worked example", async () => {
  await using actor = processor();
  const out = await apply(actor, readings(WORKED_EXAMPLE));
  const byId = new Map(out.alerts.map((a) => [a._id, a]));
  assert.deepEqual([...byId.keys()].sort(), [`${ID}:overheat:10`, `${ID}:overheat:3`]);

  const first = byId.get(`${ID}:overheat:3`)!;
  assert.equal(first.status, "cleared");
  assert.equal(first.raisedSeq, 3);
  assert.equal(first.clearedSeq, 8);
  assert.equal(first.peakTemperature, 82);
  assert.deepEqual(first.raisedAt, new Date(BASE_MS + 3000));
  assert.deepEqual(first.clearedAt, new Date(BASE_MS + 8000));
  assert.deepEqual(first.thresholds, DEFAULT_RULE);

  const second = byId.get(`${ID}:overheat:10`)!;
  assert.equal(second.status, "active");
  assert.equal(second.peakTemperature, 86);
  assert.equal(second.clearedSeq, undefined);

  assert.deepEqual(out.transitions.map((t) => `${t.type}@${t.seq}`), [
    "raised@3",
    "cleared@8",
    "raised@10",
  ]);
  assert.equal(out.device.level, "critical");
  assert.equal(out.device.lastSeq, 10);
  assert.deepEqual(out.device.thresholds, DEFAULT_RULE);
});

Deno.test("processor gives the same result whether the readings come in one batch or many", async () => {
  await using whole = processor();
  await using split = processor();
  const all = readings(WORKED_EXAMPLE);
  const once = await apply(whole, all);
  const parts = [];
  for (let i = 0; i < all.length; i += 3) parts.push(await apply(split, all.slice(i, i + 3)));
  assert.deepEqual(parts.flatMap((p) => p.readings), once.readings);
  assert.deepEqual(parts.flatMap((p) => p.transitions), once.transitions);
  assert.deepEqual(parts.at(-1)!.device, once.device);
  assert.deepEqual(await stateOf(split), await stateOf(whole));
});

Deno.test("processor ignores a replayed batch as duplicates and keeps the device doc", async () => {
  await using actor = processor();
  const first = await apply(actor, readings(WORKED_EXAMPLE));
  const again = await apply(actor, readings(WORKED_EXAMPLE));
  assert.deepEqual(again.readings, []);
  assert.deepEqual(again.alerts, []);
  assert.deepEqual(again.transitions, []);
  assert.equal(again.skipped.length, 10);
  assert.equal(again.device.lastSeq, first.device.lastSeq);
  assert.equal(again.device.level, first.device.level);
  assert.equal(again.device.counters.duplicates, 10);
  assert.equal(again.device.counters.readings, 10);
});

Deno.test("processor applies only the new readings of a partly replayed batch", async () => {
  await using actor = processor();
  const all = readings(WORKED_EXAMPLE);
  await apply(actor, all.slice(0, 6));
  const out = await apply(actor, all.slice(3));
  assert.equal(out.skipped.length, 3);
  assert.deepEqual(out.readings.map((r) => r.seq), [7, 8, 9, 10]);
  assert.deepEqual(out.readings.map((r) => r.is_critical), [true, false, false, true]);
});

Deno.test("processor starts from the state it is given", async () => {
  const restored: AlarmState = { ...INITIAL_ALARM_STATE, lastSeq: 5 };
  await using actor = processor(restored);
  const out = await apply(actor, readings([20, 21, 22, 23, 24, 25, 26], 1));
  assert.deepEqual(out.readings.map((r) => r.seq), [6, 7]);
  assert.equal(out.skipped.length, 5);
  assert.equal(out.device.lastSeq, 7);
});

Deno.test("processor keeps an open episode's peak current without a transition", async () => {
  await using actor = processor();
  await apply(actor, readings([81, 82]));
  const out = await apply(actor, readings([90, 75], 3));
  assert.deepEqual(out.transitions, []);
  assert.equal(out.alerts.length, 1);
  assert.equal(out.alerts[0]!._id, `${ID}:overheat:2`);
  assert.equal(out.alerts[0]!.status, "active");
  assert.equal(out.alerts[0]!.peakTemperature, 90);
});

Deno.test("processor writes an open episode's snapshot only when a batch changes it", async () => {
  await using actor = processor();
  const raised = await apply(actor, readings([81, 82]));
  assert.deepEqual(raised.alerts.map((a) => [a.status, a.asOfSeq]), [["active", 2]]);
  // A hotter reading moves the peak: a new snapshot, as of that reading.
  const hotter = await apply(actor, readings([90, 85], 3));
  assert.deepEqual(hotter.alerts.map((a) => [a.peakTemperature, a.asOfSeq]), [[90, 3]]);
  // Critical readings that change nothing write nothing (each rewrite is a guarded update).
  const same = await apply(actor, readings([84, 75], 5));
  assert.deepEqual(same.alerts, []);
  assert.equal(same.device.lastSeq, 6);
  const cleared = await apply(actor, readings([60, 60], 7));
  assert.deepEqual(cleared.alerts.map((a) => [a.status, a.asOfSeq]), [["cleared", 8]]);
});

Deno.test("processor stores the same alert snapshots however a device's readings are batched", () => {
  // A replay after a crash splits the readings differently: the newest snapshot of every alert
  // (what the store keeps, `asOfSeq` guard) must not depend on it.
  const newest = async (temperatures: readonly number[], cuts: readonly number[]) => {
    await using actor = processor();
    const all = readings(temperatures);
    const stored = new Map<string, AlertDoc>();
    const bounds = [...new Set([0, ...cuts.map((c) => c % (all.length + 1)), all.length])]
      .sort((a, b) => a - b);
    for (let i = 1; i < bounds.length; i++) {
      const out = await apply(actor, all.slice(bounds[i - 1], bounds[i]));
      for (const a of out.alerts) {
        const seen = stored.get(a._id);
        if (!seen || seen.asOfSeq <= a.asOfSeq) stored.set(a._id, a);
      }
    }
    return [...stored.values()].sort((a, b) => a._id.localeCompare(b._id));
  };
  return fc.assert(
    fc.asyncProperty(
      fc.array(fc.integer({ min: 55, max: 95 }), { minLength: 1, maxLength: 40 }),
      fc.array(fc.nat(), { maxLength: 10 }),
      async (temperatures, cuts) => {
        assert.deepEqual(await newest(temperatures, cuts), await newest(temperatures, []));
      },
    ),
    { numRuns: numRuns(100) },
  );
});

Deno.test("processor applies a reading's own thresholds instead of the default rule", async () => {
  const own: AlarmRule = { high: 50, low: 40, raiseAfter: 1, clearAfter: 1 };
  await using actor = processor();
  const out = await apply(actor, readings([55, 45, 39], 1, own));
  // Under the default rule (80/70, 2 readings) none of these would be critical.
  assert.deepEqual(out.readings.map((r) => r.is_critical), [true, true, false]);
  assert.equal(out.alerts.length, 1);
  assert.equal(out.alerts[0]!.status, "cleared");
  assert.deepEqual(out.alerts[0]!.thresholds, own);
  assert.deepEqual(out.device.thresholds, own);
});

Deno.test("processor falls back to the default rule for readings without thresholds", async () => {
  const own: AlarmRule = { high: 50, low: 40, raiseAfter: 1, clearAfter: 1 };
  await using actor = processor();
  const out = await apply(actor, [...readings([55], 1, own), ...readings([60, 60], 2)]);
  // Under its own rule 60 is above low (40) and keeps it critical; the default clears at 70.
  assert.deepEqual(out.readings.map((r) => r.is_critical), [true, true, false]);
  assert.equal(out.alerts[0]!.clearedSeq, 3);
  assert.deepEqual(out.device.thresholds, DEFAULT_RULE);
});

Deno.test("processor answers a state query with its current alarm state", async () => {
  await using actor = processor();
  assert.deepEqual(await stateOf(actor), INITIAL_ALARM_STATE);
  await apply(actor, readings([81, 82]));
  const state = await stateOf(actor);
  assert.equal(state.level, "critical");
  assert.equal(state.lastSeq, 2);
  assert.deepEqual(state.episode, {
    raisedSeq: 2,
    raisedAt: new Date(BASE_MS + 2000).toISOString(),
    peakTemperature: 82,
  });
});

Deno.test("processor closes an offline episode with the reading that ends a silence longer than its offlineAfterMs", async () => {
  await using actor = processor();
  const [first, second, third] = readings([20, 21, 22]).map((r) => ({
    ...r,
    offlineAfterMs: 1500,
  }));
  // Two seconds of silence before the third reading: longer than 1.5 s.
  const late = { ...third!, ts: new Date(BASE_MS + 5000).toISOString() };
  const out = await apply(actor, [first!, second!, late]);
  assert.deepEqual(out.alerts, [{
    _id: `${ID}:offline:2`,
    deviceId: ID,
    type: "offline",
    status: "cleared",
    raisedAt: new Date(BASE_MS + 2000 + 1500),
    raisedSeq: 2,
    lastSeenAt: new Date(BASE_MS + 2000),
    offlineAfterMs: 1500,
    clearedAt: new Date(BASE_MS + 5000),
    clearedSeq: 3,
    asOfSeq: 3,
  }]);
  // A reading within the limit, or one without a limit, closes nothing.
  const next = await apply(actor, [
    { ...readings([20], 4)[0]!, ts: new Date(BASE_MS + 6000).toISOString(), offlineAfterMs: 1500 },
    { ...readings([20], 5)[0]!, ts: new Date(BASE_MS + 60_000).toISOString() },
  ]);
  assert.deepEqual(next.alerts, []);
});

// --- rule changes at run time ------------------------------------------------------

const LOWERED: AlarmRule = { ...DEFAULT_RULE, high: 50, low: 40 };

Deno.test("processor records ruleSeq: the first reading's seq, then the first under a changed rule", async () => {
  await using actor = processor();
  const first = await apply(actor, readings([60, 60, 60]));
  assert.equal(first.device.ruleSeq, 1, "the device's first reading starts its rule");
  assert.deepEqual(first.alerts, [], "60 °C is below the default high");
  const changed = await apply(actor, readings([60, 60, 60], 4, LOWERED));
  assert.equal(changed.device.ruleSeq, 4);
  assert.deepEqual(changed.device.thresholds, LOWERED);
  assert.deepEqual(changed.readings.map((r) => r.is_critical), [false, true, true]);
  assert.deepEqual(
    changed.alerts.map((a) => [a.raisedSeq, a.thresholds, a.ruleSeq]),
    [[5, LOWERED, 4]],
    "the alert names the rule that raised it and the seq it took effect at",
  );
  const same = await apply(actor, readings([60], 7, LOWERED));
  assert.equal(same.device.ruleSeq, 4, "the same rule again changes nothing");
});

Deno.test("processor gives the same ruleSeq and episodes in one batch, many, or after a restore", async () => {
  const all = [...readings([60, 60], 1), ...readings([60, 60, 30, 30], 3, LOWERED)];
  await using whole = processor();
  const once = await apply(whole, all);
  await using split = processor();
  await apply(split, all.slice(0, 3));
  const rest = await apply(split, all.slice(3));
  assert.equal(once.device.ruleSeq, 3);
  assert.equal(rest.device.ruleSeq, 3);
  assert.deepEqual(rest.alerts, once.alerts.filter((a) => a.status === "cleared"));
  // Restored from the stored device after seq 3, the next owner carries on with the same seq.
  const restoredAt = await apply(processor(), all.slice(0, 3));
  await using next = createProcessor(
    ID,
    restoredAt.device.alarm,
    { default: DEFAULT_RULE, current: LOWERED, since: restoredAt.device.ruleSeq },
    (error) => {
      throw error;
    },
  );
  const resumed = await apply(next, all.slice(3));
  assert.equal(resumed.device.ruleSeq, 3);
  assert.deepEqual(resumed.alerts, rest.alerts);
});

Deno.test("processor: replayed duplicates under an old rule do not move ruleSeq", async () => {
  await using actor = processor();
  await apply(actor, [...readings([60, 60], 1), ...readings([60], 3, LOWERED)]);
  const replay = await apply(actor, readings([60, 60], 1));
  assert.equal(replay.skipped.length, 2);
  assert.equal(replay.device.ruleSeq, 3);
  assert.deepEqual(replay.device.thresholds, LOWERED);
});
