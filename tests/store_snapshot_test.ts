import assert from "node:assert/strict";
import { storeSnapshot } from "../adapters/store_snapshot.ts";
import { parseDashboardQuery } from "../schemas/dashboard.ts";
import { type AlertDoc, toAlertDoc } from "../schemas/documents.ts";
import { DEFAULT_RULE } from "../domain/hysteresis.ts";
import type { StoreQueries } from "../actors/store_queries.ts";

const QUERY = (() => {
  const parsed = parseDashboardQuery({ offset: "5", limit: "20" });
  assert.ok(parsed.ok);
  return parsed.query;
})();

const at = (s: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, s)).toISOString();

function alert(deviceId: string, raisedSeq: number, cleared?: number): AlertDoc {
  const episode = { raisedSeq, raisedAt: at(raisedSeq), peakTemperature: 90 + raisedSeq };
  return cleared === undefined
    ? toAlertDoc(deviceId, episode, DEFAULT_RULE)
    : toAlertDoc(deviceId, episode, DEFAULT_RULE, { seq: cleared, ts: at(cleared) });
}

/** A store answering from a fixed list, newest raised first, counting its calls. */
function store(alerts: AlertDoc[]): StoreQueries & { calls: number } {
  return {
    calls: 0,
    device: () => Promise.resolve(null),
    readings: () => Promise.resolve([]),
    readingsBetween: () => Promise.resolve([]),
    acknowledge: () => Promise.resolve(null),
    alerts(filter) {
      this.calls++;
      return Promise.resolve(
        alerts.filter((a) => filter.status === undefined || a.status === filter.status)
          .sort((a, b) => b.raisedSeq - a.raisedSeq).slice(0, filter.limit),
      );
    },
  };
}

Deno.test("storeSnapshot() shows the store's alerts as transitions, newest first, and says why", async () => {
  const queries = store([alert("a", 1, 4), alert("b", 2, 3), alert("b", 5), alert("c", 6)]);
  const source = storeSnapshot({ role: "api", queries, now: () => 42 });
  const snap = await source.snapshot(QUERY);
  assert.equal(snap.live, false);
  assert.match(snap.note!, /"api" role/);
  assert.deepEqual(snap.alerts.map((a) => [a.deviceId, a.type, a.seq]), [
    ["c", "raised", 6],
    ["b", "raised", 5],
    ["a", "cleared", 4],
    ["b", "cleared", 3],
    ["b", "raised", 2],
    ["a", "raised", 1],
  ]);
  assert.equal(snap.alerts[2]!.peakTemperature, 91);
  assert.deepEqual(snap.counters, {
    sensors: 0,
    readingsPerSecond: 0,
    criticalDevices: 2,
    lagMs: null,
  });
  assert.deepEqual(snap.table, { total: 0, offset: 5, limit: 20, rows: [] });
  assert.deepEqual(snap.map, { total: 0, points: [] });
});

Deno.test("storeSnapshot() asks the store at most once per reuseForMs for every stream", async () => {
  let now = 0;
  const queries = store([alert("a", 1)]);
  const source = storeSnapshot({ role: "api", queries, reuseForMs: 2000, now: () => now });
  await source.snapshot(QUERY);
  now = 1999;
  await source.snapshot(QUERY);
  assert.equal(queries.calls, 2, "one call for recent alerts, one for active ones");
  now = 2000;
  await source.snapshot(QUERY);
  assert.equal(queries.calls, 4);
});

Deno.test("storeSnapshot() without a store shows this process's sensors only", async () => {
  const source = storeSnapshot({ role: "sensors", sensors: () => 12 });
  const snap = await source.snapshot(QUERY);
  assert.equal(snap.counters.sensors, 12);
  assert.deepEqual(snap.alerts, []);
  assert.doesNotMatch(snap.note!, /store/);
});
