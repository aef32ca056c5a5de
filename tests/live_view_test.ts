import { toOfflineAlertDoc } from "../schemas/documents.ts";
import assert from "node:assert/strict";
import { LiveView } from "../adapters/live_view.ts";
import { type Actor, ask } from "../actors/actor.ts";
import { createProcessor, type DeviceOutput, type ProcessorMsg } from "../actors/processor.ts";
import { DEFAULT_RULE, INITIAL_ALARM_STATE } from "../domain/hysteresis.ts";
import { type DashboardQuery, parseDashboardQuery } from "../schemas/dashboard.ts";
import type { Reading } from "../schemas/reading.ts";

const BASE_MS = Date.UTC(2026, 10, 27, 13, 0, 0);

/** Real processors (one per device) turning temperatures into the outputs the live view takes. */
class Processors implements AsyncDisposable {
  readonly #actors = new Map<string, Actor<ProcessorMsg>>();
  readonly #seq = new Map<string, number>();

  async run(
    deviceId: string,
    temperatures: readonly number[],
    processedAt = BASE_MS + 3_600_000,
    location = { lat: 48.85, lon: 2.35 },
  ): Promise<DeviceOutput> {
    let actor = this.#actors.get(deviceId);
    if (!actor) {
      actor = createProcessor(deviceId, INITIAL_ALARM_STATE, {
        default: DEFAULT_RULE,
        current: DEFAULT_RULE,
      }, (error) => {
        throw error;
      });
      this.#actors.set(deviceId, actor);
    }
    const first = (this.#seq.get(deviceId) ?? 0) + 1;
    this.#seq.set(deviceId, first + temperatures.length - 1);
    const readings: Reading[] = temperatures.map((temperature, i) => ({
      deviceId,
      seq: first + i,
      ts: new Date(BASE_MS + (first + i) * 1000).toISOString(),
      temperature,
      humidity: 40 + i,
      location,
    }));
    return await ask<ProcessorMsg, DeviceOutput>(actor, (reply) => ({
      type: "apply",
      readings,
      processedAt: new Date(processedAt),
      reply,
    }));
  }

  async [Symbol.asyncDispose]() {
    await Promise.all([...this.#actors.values()].map((a) => a.stop()));
  }
}

function query(params: Record<string, string> = {}): DashboardQuery {
  const parsed = parseDashboardQuery(params);
  assert.ok(parsed.ok);
  return parsed.query;
}

Deno.test("LiveView shows each device's latest reading, alarm state and recent temperatures", async () => {
  await using p = new Processors();
  const view = new LiveView({ pointsPerDevice: 4, now: () => BASE_MS + 3_600_000 });
  view.record([await p.run("a", [20, 21, 22])]);
  view.record([await p.run("a", [81, 82, 83], undefined, { lat: 1.5, lon: 2.5 })]);
  view.record([await p.run("b", [30])]);
  const snap = view.snapshot(query());
  assert.equal(snap.live, true);
  assert.deepEqual(snap.table.rows.map((r) => [r.id, r.critical, r.temperature, r.spark]), [
    ["a", true, 83, [22, 81, 82, 83]],
    ["b", false, 30, [30]],
  ]);
  const a = snap.table.rows[0]!;
  assert.equal(a.since, BASE_MS + 5_000, "critical since the second hot reading (seq 5)");
  assert.equal(a.lastTs, BASE_MS + 6_000);
  assert.equal(a.humidity, 42);
  assert.equal(snap.table.rows[1]!.since, BASE_MS + 1_000, "never changed: since first seen");
  assert.deepEqual(snap.map.points, [["a", 1.5, 2.5, 1], ["b", 48.85, 2.35, 0]], "sorted by id");
  assert.equal(snap.counters.criticalDevices, 1);
  assert.equal(snap.counters.sensors, 2, "no fleet here: devices heard from");
});

Deno.test("LiveView lists alert transitions newest first, keeping the latest few", async () => {
  await using p = new Processors();
  const view = new LiveView({ maxAlerts: 3 });
  view.record([await p.run("a", [85, 86])]); // raised at seq 2
  view.record([await p.run("a", [60, 60])]); // cleared at seq 4
  view.record([await p.run("b", [90, 91, 60, 60, 90, 90])]); // raised 2, cleared 4, raised 6
  const alerts = view.snapshot(query()).alerts;
  assert.deepEqual(alerts.map((a) => [a.deviceId, a.type, a.seq]), [
    ["b", "raised", 6],
    ["b", "cleared", 4],
    ["b", "raised", 2],
  ]);
  assert.equal(alerts[1]!.peakTemperature, 91);
  assert.equal(alerts[1]!.temperature, 60);
});

Deno.test("LiveView forgets the least recently updated device past maxDevices", async () => {
  await using p = new Processors();
  const view = new LiveView({ maxDevices: 2 });
  view.record([await p.run("a", [20])]);
  view.record([await p.run("b", [20])]);
  view.record([await p.run("a", [21])]);
  view.record([await p.run("c", [20])]);
  assert.equal(view.size, 2);
  assert.deepEqual(view.snapshot(query()).table.rows.map((r) => r.id), ["a", "c"]);
  view.forget("a");
  assert.deepEqual(view.snapshot(query()).table.rows.map((r) => r.id), ["c"]);
});

Deno.test("LiveView.forget() ignores the device's readings stamped before, not after", async () => {
  await using p = new Processors();
  const view = new LiveView({ now: () => BASE_MS + 2_500 });
  view.record([await p.run("a", [20])]);
  view.forget("a");
  view.record([await p.run("a", [21])]); // ts BASE + 2 s: was in flight when forgotten
  assert.equal(view.size, 0);
  view.record([await p.run("a", [22])]); // ts BASE + 3 s: the sensor is back
  assert.deepEqual(view.snapshot(query()).table.rows.map((r) => [r.id, r.spark]), [["a", [22]]]);
});

Deno.test("LiveView pages, filters and searches the table, critical devices first", async () => {
  await using p = new Processors();
  const view = new LiveView();
  for (const id of ["d1", "d2", "d3", "x4", "x5"]) view.record([await p.run(id, [20])]);
  view.record([await p.run("x5", [90, 90])]);
  const page = view.snapshot(query({ offset: "1", limit: "2" })).table;
  assert.deepEqual([page.total, page.offset, page.limit], [5, 1, 2]);
  assert.deepEqual(page.rows.map((r) => r.id), ["d1", "d2"]);
  assert.deepEqual(view.snapshot(query()).table.rows.map((r) => r.id), [
    "x5",
    "d1",
    "d2",
    "d3",
    "x4",
  ]);
  const critical = view.snapshot(query({ filter: "critical" })).table;
  assert.deepEqual(critical.rows.map((r) => r.id), ["x5"]);
  const search = view.snapshot(query({ search: "X" })).table;
  assert.deepEqual([search.total, search.rows.map((r) => r.id)], [2, ["x5", "x4"]]);
});

Deno.test("LiveView samples the map past maxMapPoints but keeps every critical device", async () => {
  await using p = new Processors();
  const view = new LiveView({ maxMapPoints: 10 });
  for (let i = 0; i < 40; i++) view.record([await p.run(`d${i}`, [20])]);
  for (const id of ["d7", "d33"]) view.record([await p.run(id, [95, 95])]);
  const map = view.snapshot(query()).map;
  assert.equal(map.total, 40);
  assert.equal(map.points.length, 10);
  assert.deepEqual(map.points.filter((pt) => pt[3] === 1).map((pt) => pt[0]).sort(), [
    "d33",
    "d7",
  ]);
  assert.equal(new Set(map.points.map((pt) => pt[0])).size, 10, "no device twice");
});

Deno.test("LiveView counts readings per second over whole seconds and reports lag as reading age", async () => {
  await using p = new Processors();
  let now = BASE_MS + 10_000;
  const view = new LiveView({ now: () => now, sensors: () => 7 });
  assert.equal(view.snapshot(query()).counters.lagMs, null);
  view.record([await p.run("a", [20, 20, 20, 20, 20], now)]); // seq 1-5 at BASE+1..5 s
  now += 1000;
  view.record([await p.run("a", Array(5).fill(20), now)]); // seq 6-10, the last at BASE+10 s
  now += 1000;
  const counters = view.snapshot(query()).counters;
  assert.equal(counters.readingsPerSecond, 2, "10 readings over a 5 s window");
  assert.equal(counters.lagMs, 1000, "processed 1 s after the last reading's ts");
  assert.equal(counters.sensors, 7);
  now += 10_000;
  assert.equal(view.snapshot(query()).counters.readingsPerSecond, 0);
});

Deno.test("LiveView drops devices not heard from for expireAfterMs", async () => {
  await using p = new Processors();
  let now = BASE_MS;
  const view = new LiveView({ now: () => now, expireAfterMs: 60_000 });
  view.record([await p.run("a", [20])]);
  now += 30_000;
  view.record([await p.run("b", [20])]);
  now += 30_001;
  assert.deepEqual(view.snapshot(query()).table.rows.map((r) => r.id), ["b"]);
  assert.equal(view.size, 1);
});

Deno.test("LiveView shows offline episodes raised and cleared in the feed, not withdrawn ones", () => {
  const view = new LiveView();
  const doc = toOfflineAlertDoc("a", {
    raisedSeq: 4,
    raisedAt: new Date(BASE_MS + 9000).toISOString(),
    lastSeenAt: new Date(BASE_MS).toISOString(),
    offlineAfterMs: 9000,
  });
  view.recordOffline("raised", doc);
  const cleared = toOfflineAlertDoc("a", {
    ...{ raisedSeq: 4, raisedAt: doc.raisedAt.toISOString() },
    lastSeenAt: new Date(BASE_MS).toISOString(),
    offlineAfterMs: 9000,
    cleared: { seq: 5, ts: new Date(BASE_MS + 60_000).toISOString() },
  });
  view.recordOffline("cleared", cleared);
  view.recordOffline("withdrawn", doc);
  assert.deepEqual(view.snapshot(query()).alerts, [
    {
      deviceId: "a",
      type: "cleared",
      alert: "offline",
      seq: 5,
      ts: new Date(BASE_MS + 60_000).toISOString(),
      temperature: null,
      peakTemperature: null,
    },
    {
      deviceId: "a",
      type: "raised",
      alert: "offline",
      seq: 4,
      ts: new Date(BASE_MS + 9000).toISOString(),
      temperature: null,
      peakTemperature: null,
    },
  ]);
});
