/** The API's read cache over the store's queries, against a counting fake store and a fake clock. */
import assert from "node:assert/strict";
import { type BatchQueries, CachedQueries } from "../adapters/cached_queries.ts";
import { DEFAULT_RULE } from "../domain/hysteresis.ts";
import { type AlertDoc, type DeviceDoc, toAlertDoc } from "../schemas/documents.ts";

function device(id: string): DeviceDoc {
  return {
    _id: id,
    deviceId: id,
    level: "normal",
    since: null,
    lastSeq: 1,
    lastTs: null,
    counters: { above: 0, below: 0 },
    thresholds: DEFAULT_RULE,
    alarm: { level: "normal", counters: { above: 0, below: 0 } },
    updatedAt: new Date(0),
  } as unknown as DeviceDoc;
}

/** A store that counts its reads; `gate` holds every read until resolved. */
function countingStore() {
  const calls = { alerts: 0, devices: [] as string[][], readings: 0, acks: 0 };
  let gate = Promise.withResolvers<void>();
  gate.resolve();
  let alerts: AlertDoc[] = [
    toAlertDoc(
      "d1",
      { raisedSeq: 1, raisedAt: "2026-11-30T12:00:00Z", peakTemperature: 90 },
      DEFAULT_RULE,
    ),
  ];
  const store: BatchQueries = {
    device() {
      return Promise.reject(new Error("device() is not called: lookups are batched"));
    },
    async devices(ids) {
      calls.devices.push([...ids]);
      await gate.promise;
      return new Map(ids.filter((id) => id !== "unknown").map((id) => [id, device(id)]));
    },
    async readings() {
      calls.readings++;
      await gate.promise;
      return [];
    },
    async alerts() {
      calls.alerts++;
      await gate.promise;
      return alerts;
    },
    readingsBetween() {
      return Promise.resolve([]);
    },
    acknowledge(id, ack) {
      calls.acks++;
      alerts = alerts.map((a) => a._id === id ? { ...a, ...ack } : a);
      return Promise.resolve({ alert: alerts[0]!, recorded: true });
    },
  };
  return {
    store,
    calls,
    hold() {
      gate = Promise.withResolvers<void>();
      return () => gate.resolve();
    },
  };
}

Deno.test("CachedQueries.alerts() shares a read in flight and reuses its answer for ttlMs", async () => {
  const { store, calls, hold } = countingStore();
  let now = 0;
  const queries = new CachedQueries(store, { ttlMs: 1000, now: () => now });
  const release = hold();
  const filter = { status: "active" as const, limit: 100 };
  const answers = [queries.alerts(filter), queries.alerts(filter), queries.alerts(filter)];
  release();
  const [a, b, c] = await Promise.all(answers);
  assert.equal(calls.alerts, 1, "three concurrent identical reads, one store read");
  assert.deepEqual(a, b);
  assert.deepEqual(b, c);
  now = 999;
  await queries.alerts(filter);
  assert.equal(calls.alerts, 1, "reused within ttlMs");
  await queries.alerts({ ...filter, limit: 10 });
  assert.equal(calls.alerts, 2, "another filter is another read");
  now = 1000;
  await queries.alerts(filter);
  assert.equal(calls.alerts, 3, "read again once ttlMs passed");
});

Deno.test("CachedQueries with ttlMs 0 shares only reads in flight", async () => {
  const { store, calls } = countingStore();
  const queries = new CachedQueries(store, { ttlMs: 0, now: () => 0 });
  await Promise.all([queries.readings("d1", 10), queries.readings("d1", 10)]);
  assert.equal(calls.readings, 1);
  await queries.readings("d1", 10);
  assert.equal(calls.readings, 2);
});

Deno.test("CachedQueries.device() asks the store for devices looked up together in one read", async () => {
  const { store, calls, hold } = countingStore();
  const queries = new CachedQueries(store, { ttlMs: 0, now: () => 0 });
  const release = hold();
  const first = [queries.device("a"), queries.device("b"), queries.device("a")];
  // While that batch is in flight, later lookups wait and go together in the next one.
  await Promise.resolve();
  const later = [queries.device("c"), queries.device("unknown"), queries.device("d")];
  release();
  const found = await Promise.all([...first, ...later]);
  assert.deepEqual(found.map((d) => d?._id ?? null), ["a", "b", "a", "c", null, "d"]);
  assert.deepEqual(calls.devices, [["a", "b"], ["c", "unknown", "d"]]);
});

Deno.test("CachedQueries.device() keeps batches within maxBatch ids", async () => {
  const { store, calls } = countingStore();
  const queries = new CachedQueries(store, { ttlMs: 0, maxBatch: 2, now: () => 0 });
  await Promise.all(["a", "b", "c", "d", "e"].map((id) => queries.device(id)));
  assert.deepEqual(calls.devices, [["a", "b"], ["c", "d"], ["e"]]);
});

Deno.test("CachedQueries.acknowledge() forgets the cached alert lists, so its caller sees the acknowledgement", async () => {
  const { store, calls } = countingStore();
  const queries = new CachedQueries(store, { ttlMs: 60_000, now: () => 0 });
  const [before] = await queries.alerts({ limit: 10 });
  assert.equal(before?.ackedBy, undefined);
  await queries.acknowledge("d1:overheat:1", { ackedBy: "ana", ackedAt: new Date(0) });
  const [after] = await queries.alerts({ limit: 10 });
  assert.equal(after?.ackedBy, "ana");
  assert.equal(calls.alerts, 2);
});

Deno.test("CachedQueries does not keep a failed read", async () => {
  const { store } = countingStore();
  let fail = true;
  let reads = 0;
  const queries = new CachedQueries({
    ...store,
    readings() {
      reads++;
      return fail ? Promise.reject(new Error("store down")) : Promise.resolve([]);
    },
  }, { ttlMs: 60_000, now: () => 0 });
  await assert.rejects(queries.readings("d1", 10), /store down/);
  fail = false;
  assert.deepEqual(await queries.readings("d1", 10), []);
  assert.equal(reads, 2);
});

Deno.test("CachedQueries keeps at most maxEntries answers, dropping the oldest", async () => {
  const { store, calls } = countingStore();
  const queries = new CachedQueries(store, { ttlMs: 60_000, maxEntries: 2, now: () => 0 });
  for (const limit of [1, 2, 3]) await queries.alerts({ limit });
  assert.equal(calls.alerts, 3);
  await queries.alerts({ limit: 3 });
  await queries.alerts({ limit: 2 });
  assert.equal(calls.alerts, 3, "the two newest are kept");
  await queries.alerts({ limit: 1 });
  assert.equal(calls.alerts, 4, "the oldest was dropped");
});
