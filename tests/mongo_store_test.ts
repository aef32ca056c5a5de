/** The MongoDB adapter against the real MongoDB-protocol server. */
import "./env_guard.ts";
import assert from "node:assert/strict";
import { Collection, type Db } from "mongodb";
import {
  foldDue,
  idLookupOf,
  joinOf,
  MongoStore,
  secondaryIndexesServe,
} from "../adapters/mongo_store.ts";
import { silentLogger } from "../adapters/log.ts";
import { DEFAULT_RULE, INITIAL_ALARM_STATE } from "../domain/hysteresis.ts";
import { type DeviceDoc, toAlertDoc, toDeviceDoc, toReadingDoc } from "../schemas/documents.ts";
import type { Reading } from "../schemas/reading.ts";
import { MONGO_URL, tempDb } from "./fixtures.ts";
import { until } from "./wait.ts";
import { testWith } from "./needs.ts";

/** Registrar for tests that need the MongoDB-protocol store. */
const mongo = await testWith({ mongo: true });

function reading(deviceId: string, seq: number, temperature = 21): Reading {
  return {
    deviceId,
    seq,
    ts: new Date(Date.UTC(2026, 10, 27, 13, 0, seq)).toISOString(),
    temperature,
    humidity: 40,
    location: { lat: 48.85, lon: 2.35 },
  };
}

function device(deviceId: string, lastSeq: number, partition?: number): DeviceDoc {
  const doc = toDeviceDoc(deviceId, { ...INITIAL_ALARM_STATE, lastSeq }, DEFAULT_RULE, new Date());
  return partition === undefined ? doc : { ...doc, partition };
}

/** How many device states the journal holds, over all its entries. */
async function journaledStates(db: Db): Promise<number> {
  const entries = await db.collection("device_states").find({}).toArray();
  return entries.reduce((sum, e) => sum + (Array.isArray(e.deviceIds) ? e.deviceIds.length : 1), 0);
}

mongo.test("MongoStore makes its secondary indexes only where the server answers queries from them", async () => {
  await using tmp = await tempDb("store");
  const serve = await secondaryIndexesServe(tmp.db);
  // FerretDB names itself in explain's serverInfo. Version 1.24 answers no query from a secondary
  // index: SQLite filters only `_id`, and PostgreSQL filters with `@>`, which a btree cannot serve.
  const plan = await tmp.db.collection("readings").find({ deviceId: "d1" }).explain();
  assert.equal(serve, plan.serverInfo?.ferretdbVersion === undefined);
  await using _store = await MongoStore.open(MONGO_URL, tmp.name, silentLogger);
  // Secondary ones only: a collection nothing was written to yet has no indexes at all.
  const names = async (collection: string) =>
    (await tmp.db.collection(collection).indexes().catch(() => []))
      .map((i) => i.name).filter((name) => name !== "_id_").sort();
  assert.deepEqual(await names("readings"), serve ? ["deviceId_ts"] : []);
  assert.deepEqual(await names("alerts"), serve ? ["deviceId_raisedAt", "status_raisedAt"] : []);
});

mongo.test("MongoStore.write() keeps the first copy of a replayed reading", async () => {
  await using tmp = await tempDb("store");
  await using store = await MongoStore.open(MONGO_URL, tmp.name, silentLogger);
  const first = toReadingDoc(reading("d1", 1), false, new Date("2026-11-27T13:00:00Z"));
  await store.write({ readings: [first], alerts: [], devices: [] });
  const replay = toReadingDoc(reading("d1", 1), true, new Date("2026-11-27T14:00:00Z"));
  const next = toReadingDoc(reading("d1", 2), false, new Date());
  await store.write({ readings: [replay, next], alerts: [], devices: [] });
  const docs = await store.readings("d1", 10);
  assert.deepEqual(docs.map((d) => d._id), ["d1:2", "d1:1"]);
  assert.equal(docs[1]!.is_critical, false);
  assert.deepEqual(docs[1]!.processedAt, new Date("2026-11-27T13:00:00Z"));
});

mongo.test("MongoStore.write() never moves a device state backwards", async () => {
  await using tmp = await tempDb("store");
  await using store = await MongoStore.open(MONGO_URL, tmp.name, silentLogger);
  await store.write({ readings: [], alerts: [], devices: [device("d1", 7), device("d2", 3)] });
  await store.write({ readings: [], alerts: [], devices: [device("d1", 5), device("d2", 4)] });
  const loaded = await store.loadDevices(["d1", "d2", "d3"]);
  assert.equal(loaded.get("d1")?.lastSeq, 7);
  assert.equal(loaded.get("d2")?.lastSeq, 4);
  assert.equal(loaded.has("d3"), false);
  assert.deepEqual(await store.lastSeqs(), new Map([["d1", 7], ["d2", 4]]));
});

Deno.test("foldDue() folds after 50 000 states, or four times the fleet if larger", () => {
  assert.equal(foldDue(49_999, 0), false);
  assert.equal(foldDue(50_000, 0), true);
  assert.equal(foldDue(50_000, 12_500), true);
  // A fresh store's first checkpoint of 100 000 devices does not make a fold of all of them due.
  assert.equal(foldDue(100_000, 100_000), false);
  assert.equal(foldDue(399_999, 100_000), false);
  assert.equal(foldDue(400_000, 100_000), true);
  assert.equal(foldDue(4, 100_000, { exactly: 4 }), true, "tests fold after exactly N");
  assert.equal(foldDue(3, 0, { exactly: 4 }), false);
});

mongo.test("MongoStore folds the device-state journal into devices, keeping the newest state of each", async () => {
  await using tmp = await tempDb("store");
  {
    await using store = await MongoStore.open(MONGO_URL, tmp.name, silentLogger, {
      foldAfterStates: 4,
    });
    await store.write({ readings: [], alerts: [], devices: [device("d1", 2), device("d2", 3)] });
    assert.equal(await tmp.db.collection("device_states").countDocuments({}), 1, "one entry");
    assert.equal(await journaledStates(tmp.db), 2);
    assert.equal(await tmp.db.collection("devices").countDocuments({}), 0, "appended only");
    // d2@1 is a stale owner's: it reaches the journal but never wins.
    await store.write({ readings: [], alerts: [], devices: [device("d1", 5), device("d2", 1)] });
    // The fold runs in the background; it is done once only its own copies are journaled.
    await until(
      "the fold",
      async () =>
        await journaledStates(tmp.db) === 2 &&
        await tmp.db.collection("devices").countDocuments({}) === 2,
    );
    const folded = await tmp.db.collection("devices").find({}).sort({ _id: 1 }).toArray();
    assert.deepEqual(folded.map((d) => [d._id, d.lastSeq]), [["d1", 5], ["d2", 3]]);
    assert.equal(await journaledStates(tmp.db), 2, "one copy each");
    await store.write({ readings: [], alerts: [], devices: [device("d2", 4)] });
    assert.deepEqual(
      [...await store.loadDevices(["d1", "d2"])].map(([id, d]) => [id, d._id, d.lastSeq]),
      [["d1", "d1", 5], ["d2", "d2", 4]],
    );
    assert.equal((await store.device("d2"))?.lastSeq, 4);
    assert.deepEqual(await store.lastSeqs(), new Map([["d1", 5], ["d2", 4]]));
  }
  // The next start folds what is left.
  await using store = await MongoStore.open(MONGO_URL, tmp.name, silentLogger);
  assert.deepEqual(
    [...await store.allDevices()].map(([id, d]) => [id, d.lastSeq]).sort(),
    [["d1", 5], ["d2", 4]],
  );
  const devices = await tmp.db.collection("devices").find({}).sort({ _id: 1 }).toArray();
  assert.deepEqual(devices.map((d) => [d._id, d.lastSeq]), [["d1", 5], ["d2", 4]]);
});

mongo.test("MongoStore leaves a due fold to the next start when it stops, losing no state", async () => {
  await using tmp = await tempDb("store");
  {
    await using store = await MongoStore.open(MONGO_URL, tmp.name, silentLogger, {
      foldAfterStates: 2,
    });
    await store.write({ readings: [], alerts: [], devices: [device("d1", 2)] });
    // The last checkpoint before the stop makes a fold due: the stop only waits for the append.
    await store.write({ readings: [], alerts: [], devices: [device("d1", 5), device("d2", 3)] });
  }
  assert.equal(await journaledStates(tmp.db), 3, "not folded");
  assert.equal(await tmp.db.collection("devices").countDocuments({}), 0, "devices unchanged");
  await using store = await MongoStore.open(MONGO_URL, tmp.name, silentLogger);
  assert.equal((await store.device("d1"))?.lastSeq, 5);
  assert.deepEqual(
    [...await store.allDevices()].map(([id, d]) => [id, d.lastSeq]).sort(),
    [["d1", 5], ["d2", 3]],
  );
  // That start folded it.
  const devices = await tmp.db.collection("devices").find({}).sort({ _id: 1 }).toArray();
  assert.deepEqual(devices.map((d) => [d._id, d.lastSeq]), [["d1", 5], ["d2", 3]]);
  assert.equal((await store.device("d1"))?.lastSeq, 5);
  assert.deepEqual(await store.lastSeqs(), new Map([["d1", 5], ["d2", 3]]));
});

mongo.test("MongoStore reads a journaled device state back as written, and entries of earlier versions too", async () => {
  await using tmp = await tempDb("store");
  await using store = await MongoStore.open(MONGO_URL, tmp.name, silentLogger);
  const since = "2026-11-27T13:00:05.000Z";
  const written = toDeviceDoc(
    "d1",
    {
      ...INITIAL_ALARM_STATE,
      level: "critical",
      since,
      lastSeq: 7,
      lastTs: "2026-11-27T13:00:07.000Z",
      episode: { raisedSeq: 5, raisedAt: since, peakTemperature: 91.5 },
    },
    DEFAULT_RULE,
    new Date("2026-11-27T13:00:08.000Z"),
    2,
  );
  await store.write({ readings: [], alerts: [], devices: [written] });
  const [entry] = await tmp.db.collection("device_states").find({}).toArray();
  assert.equal(typeof entry?.states, "string", "packed into one field");
  assert.deepEqual(entry?.deviceIds, ["d1"], "what a lookup filters on stays on top");
  assert.deepEqual(await store.device("d1"), written);
  assert.deepEqual((await store.loadDevices(["d1"])).get("d1"), written);
  assert.deepEqual((await store.allDevices()).get("d1"), written);
  // An entry as versions before the packing wrote it: the device document plus writer and n.
  const legacy = device("d2", 4);
  await tmp.db.collection("device_states").insertOne(
    { ...legacy, _id: "old-writer:0", writer: "old-writer", n: 0 } as unknown as never,
  );
  assert.deepEqual(await store.device("d2"), legacy);
  // An entry as versions before several states per entry wrote it: one device, packed.
  const { _id: _, deviceId, lastSeq, partition: __, ...rest } = device("d3", 9, 1);
  await tmp.db.collection("device_states").insertOne(
    {
      _id: "old-writer:1",
      deviceId,
      lastSeq,
      partition: 1,
      writer: "old-writer",
      n: 1,
      state: JSON.stringify(rest),
    } as unknown as never,
  );
  const d3 = await store.device("d3");
  assert.deepEqual({ ...d3, updatedAt: null }, { ...device("d3", 9, 1), updatedAt: null });
  // d1 and d2 have no partition, so an assignment's read takes them too.
  assert.deepEqual([...(await store.devicesIn([1])).keys()].sort(), ["d1", "d2", "d3"]);
  assert.deepEqual([...(await store.devicesIn([0])).keys()].sort(), ["d1", "d2"]);
  assert.deepEqual(
    [...await store.allDevices()].map(([id, d]) => [id, d.lastSeq]).sort(),
    [["d1", 7], ["d2", 4], ["d3", 9]],
  );
  assert.deepEqual(await store.lastSeqs(), new Map([["d1", 7], ["d2", 4], ["d3", 9]]));
});

mongo.test("MongoStore journals a checkpoint in few entries, one partition each", async () => {
  await using tmp = await tempDb("store");
  await using store = await MongoStore.open(MONGO_URL, tmp.name, silentLogger);
  // 600 states on each of two partitions: 500 per entry at most, so two entries each.
  const states = Array.from({ length: 1200 }, (_, i) => device(`dev-${i}`, i + 1, i % 2));
  await store.write({ readings: [], alerts: [], devices: states });
  const entries = await tmp.db.collection("device_states").find({}).toArray();
  assert.deepEqual(
    entries.map((e) => [e.partition, e.deviceIds.length]).sort(),
    [[0, 100], [0, 500], [1, 100], [1, 500]],
  );
  for (const e of entries) {
    assert.ok(e.deviceIds.every((id: string) => Number(id.slice(4)) % 2 === e.partition));
  }
  assert.equal((await store.devicesIn([1])).size, 600);
  const some = ["dev-0", "dev-599", "dev-1199", "dev-9999"];
  assert.deepEqual(
    [...await store.loadDevices(some)].map(([id, d]) => [id, d.lastSeq]).sort(),
    [["dev-0", 1], ["dev-1199", 1200], ["dev-599", 600]],
  );
  assert.equal((await store.devices(["dev-42"])).get("dev-42")?.lastSeq, 43);
});

mongo.test("MongoStore writes hundreds of alerts and device states in one call", async () => {
  // FerretDB 1.24 hangs on an update command with 100+ statements; the adapter chunks.
  await using tmp = await tempDb("store");
  await using store = await MongoStore.open(MONGO_URL, tmp.name, silentLogger);
  const ids = Array.from({ length: 250 }, (_, i) => `dev-${i}`);
  const alerts = ids.map((id) =>
    toAlertDoc(id, { raisedSeq: 3, raisedAt: reading(id, 3).ts, peakTemperature: 90 }, DEFAULT_RULE)
  );
  await store.write({ readings: [], alerts, devices: ids.map((id) => device(id, 3)) });
  await store.write({ readings: [], alerts, devices: ids.map((id) => device(id, 4)) });
  assert.equal((await store.alerts({ status: "active", limit: 1000 })).length, 250);
  assert.equal((await store.loadDevices(ids)).size, 250);
  assert.equal((await store.device("dev-249"))?.lastSeq, 4);
});

mongo.test("MongoStore.open() finishes a device-state write a crash interrupted", async () => {
  await using tmp = await tempDb("store");
  {
    await using store = await MongoStore.open(MONGO_URL, tmp.name, silentLogger);
    await store.write({ readings: [], alerts: [], devices: [device("d1", 2), device("d2", 9)] });
  }
  // As if the process died after deleting d1's old state, before inserting the new one.
  await tmp.db.collection("devices").deleteOne({ _id: "d1" as unknown as never });
  const pending = tmp.db.collection<{ _id: string; checkpointId: string; doc: unknown }>(
    "devices_pending",
  );
  await pending.insertMany([
    { _id: "c1:d1", checkpointId: "c1", doc: device("d1", 5) },
    { _id: "c1:d2", checkpointId: "c1", doc: device("d2", 6) },
  ]);
  await using store = await MongoStore.open(MONGO_URL, tmp.name, silentLogger);
  assert.equal((await store.device("d1"))?.lastSeq, 5, "the interrupted write is completed");
  assert.equal((await store.device("d2"))?.lastSeq, 9, "a newer stored state is kept");
  assert.equal(await pending.countDocuments({}), 0);
});

mongo.test("MongoStore.write() never replaces an alert snapshot with an older one", async () => {
  await using tmp = await tempDb("store");
  await using store = await MongoStore.open(MONGO_URL, tmp.name, silentLogger);
  const episode = { raisedSeq: 3, raisedAt: reading("d1", 3).ts, peakTemperature: 82 };
  const cleared = toAlertDoc("d1", episode, DEFAULT_RULE, { seq: 8, ts: reading("d1", 8).ts });
  await store.write({ readings: [], alerts: [cleared], devices: [] });
  // A stale owner's snapshot of the same episode, still open as of seq 5.
  const stale = toAlertDoc("d1", episode, DEFAULT_RULE, undefined, 5);
  await store.write({ readings: [], alerts: [stale], devices: [] });
  const [alert] = await store.alerts({ deviceId: "d1", limit: 10 });
  assert.equal(alert?.status, "cleared");
  assert.equal(alert?.asOfSeq, 8);
});

mongo.test("MongoStore.write() keeps the newest snapshot of a new alert in one batch, in either order, and across batches with its acknowledgement", async () => {
  await using tmp = await tempDb("store");
  await using store = await MongoStore.open(MONGO_URL, tmp.name, silentLogger);
  const snapshots = (deviceId: string) => {
    const episode = { raisedSeq: 3, raisedAt: reading(deviceId, 3).ts, peakTemperature: 82 };
    const clear = { seq: 8, ts: reading(deviceId, 8).ts };
    return {
      open: toAlertDoc(deviceId, episode, DEFAULT_RULE, undefined, 5),
      cleared: toAlertDoc(deviceId, episode, DEFAULT_RULE, clear),
    };
  };
  const [a, b, c] = [snapshots("a"), snapshots("b"), snapshots("c")];
  // New alerts, both snapshots in one batch: newer first, then older first.
  await store.write({ readings: [], alerts: [a.cleared, a.open, b.open, b.cleared], devices: [] });
  // Across batches: the older stored first, acknowledged, then the newer, then the older again.
  await store.write({ readings: [], alerts: [c.open], devices: [] });
  const ackedAt = new Date("2026-11-27T13:00:10Z");
  assert.ok(await store.acknowledge(c.open._id, { ackedBy: "ana", ackedAt, note: "on it" }));
  await store.write({ readings: [], alerts: [c.cleared], devices: [] });
  await store.write({ readings: [], alerts: [c.open, c.cleared, c.open], devices: [] });
  const stored = await store.alerts({ limit: 10 });
  for (const id of ["a", "b", "c"]) {
    const alert = stored.find((d) => d.deviceId === id);
    assert.equal(alert?.status, "cleared", `${id} is cleared`);
    assert.equal(alert?.asOfSeq, 8, `${id} reflects seq 8`);
  }
  const acked = stored.find((d) => d.deviceId === "c");
  assert.deepEqual([acked?.ackedBy, acked?.ackedAt, acked?.note], ["ana", ackedAt, "on it"]);
  assert.equal(stored.find((d) => d.deviceId === "a")?.ackedBy, undefined);
});

mongo.test("MongoStore.write() stores the same document for an episode whatever order its snapshots arrive in", async () => {
  // A raise, a new peak, a new rule in force and the clear, as a processor writes them; a stale
  // owner or a replay may deliver any of them late. Each order gets its own device.
  await using tmp = await tempDb("store");
  await using store = await MongoStore.open(MONGO_URL, tmp.name, silentLogger);
  const stricter = { ...DEFAULT_RULE, high: 75, low: 65 };
  const snapshots = (deviceId: string) => {
    const raised = { raisedSeq: 3, raisedAt: reading(deviceId, 3).ts, peakTemperature: 82 };
    const peak = { ...raised, peakTemperature: 88 };
    const clear = { seq: 8, ts: reading(deviceId, 8).ts };
    return [
      { ...toAlertDoc(deviceId, raised, DEFAULT_RULE), ruleSeq: 1 },
      { ...toAlertDoc(deviceId, peak, DEFAULT_RULE, undefined, 4), ruleSeq: 1 },
      { ...toAlertDoc(deviceId, peak, stricter, undefined, 5), ruleSeq: 5 },
      { ...toAlertDoc(deviceId, peak, stricter, clear), ruleSeq: 5 },
    ];
  };
  const orders = permutations([0, 1, 2, 3]);
  for (const [n, order] of orders.entries()) {
    const docs = snapshots(`p${n}`);
    for (const i of order) await store.write({ readings: [], alerts: [docs[i]!], devices: [] });
  }
  // And all four in one write, newest first.
  await store.write({ readings: [], alerts: snapshots("batch").reverse(), devices: [] });
  const stored = await store.alerts({ limit: 100 });
  assert.equal(stored.length, orders.length + 1);
  for (const doc of stored) {
    const { _id, deviceId, ...fields } = doc;
    const { _id: _, deviceId: __, ...expected } = snapshots(deviceId).at(-1)!;
    assert.deepEqual(fields, expected, `order ${deviceId}`);
  }
});

Deno.test("joinOf() applies a snapshot by `_id` alone, the one filter FerretDB hands to SQLite", () => {
  // Any other field in the filter makes FerretDB 1.24 read and decode every stored alert.
  const raised = { raisedSeq: 3, raisedAt: reading("d1", 3).ts, peakTemperature: 82 };
  const cleared = toAlertDoc("d1", raised, DEFAULT_RULE, { seq: 8, ts: reading("d1", 8).ts });
  const op = joinOf(cleared);
  assert.ok("updateOne" in op);
  assert.deepEqual(op.updateOne.filter, { _id: cleared._id });
});

function permutations<T>(xs: readonly T[]): T[][] {
  if (xs.length <= 1) return [[...xs]];
  return xs.flatMap((x, i) =>
    permutations([...xs.slice(0, i), ...xs.slice(i + 1)]).map((rest) => [x, ...rest])
  );
}

mongo.test("MongoStore.write() from two owners of the same new alerts both succeed", async () => {
  // Right after a rebalance two members may upsert the same new alert; FerretDB's upsert is
  // not atomic, so one of them can lose with a duplicate key and must retry, not fail.
  await using tmp = await tempDb("store");
  await using a = await MongoStore.open(MONGO_URL, tmp.name, silentLogger);
  await using b = await MongoStore.open(MONGO_URL, tmp.name, silentLogger);
  const alerts = Array.from({ length: 40 }, (_, i) =>
    toAlertDoc(`d${i}`, {
      raisedSeq: 3,
      raisedAt: reading(`d${i}`, 3).ts,
      peakTemperature: 85,
    }, DEFAULT_RULE));
  await Promise.all([
    a.write({ readings: [], alerts, devices: [] }),
    b.write({ readings: [], alerts, devices: [] }),
  ]);
  assert.equal((await a.alerts({ status: "active", limit: 100 })).length, 40);
});

mongo.test("MongoStore.write() inserts a reading once, ignores it replayed and refuses other content under its seq", async () => {
  await using tmp = await tempDb("store");
  await using store = await MongoStore.open(MONGO_URL, tmp.name, silentLogger);
  const first = toReadingDoc(reading("d1", 1, 21.5), false, new Date("2026-11-27T13:00:00Z"));
  assert.deepEqual(await store.write({ readings: [first], alerts: [], devices: [] }), {
    refused: [],
  });
  // Only the sensor's content counts: a replay may be flagged and processed differently.
  const replay = toReadingDoc(reading("d1", 1, 21.5), true, new Date());
  const other = toReadingDoc(reading("d1", 1, 80.1), true, new Date());
  const next = toReadingDoc(reading("d1", 2), false, new Date());
  const { refused } = await store.write({
    readings: [replay, other, next],
    alerts: [],
    devices: [],
  });
  assert.equal(refused.length, 1);
  const conflict = refused[0]!;
  assert.equal(conflict.type, "conflict");
  assert.equal(conflict.reading, other, "the refused reading is the one passed in");
  assert.equal(conflict.type === "conflict" && conflict.stored.temperature, 21.5);
  const docs = await store.readings("d1", 10);
  assert.deepEqual(docs.map((d) => [d._id, d.temperature]), [["d1:2", 21], ["d1:1", 21.5]]);
  assert.deepEqual(docs[1]!.processedAt, new Date("2026-11-27T13:00:00Z"));
});

mongo.test("MongoStore.write() finds each skipped reading stored as it is, stored otherwise or not at all", async () => {
  await using tmp = await tempDb("store");
  await using store = await MongoStore.open(MONGO_URL, tmp.name, silentLogger);
  const at = new Date();
  const stored = [1, 2].map((seq) => toReadingDoc(reading("d1", seq), false, at));
  await store.write({ readings: stored, alerts: [], devices: [] });
  const same = toReadingDoc(reading("d1", 1), true, at);
  const other = toReadingDoc(reading("d1", 2, 99), false, at);
  const never = toReadingDoc(reading("d1", 3), false, at);
  // A skipped reading is compared after this write's own readings are in.
  const fresh = toReadingDoc(reading("d2", 1), false, at);
  const sameAsFresh = toReadingDoc(reading("d2", 1), false, at);
  const { refused } = await store.write({
    readings: [fresh],
    skipped: [same, other, never, sameAsFresh],
    alerts: [],
    devices: [],
  });
  assert.deepEqual(refused.map((r) => [r.type, r.reading]), [["conflict", other], ["late", never]]);
  assert.equal((await store.readings("d1", 10)).length, 2, "skipped readings are never written");
  assert.equal((await store.readings("d1", 10)).find((r) => r.seq === 2)?.temperature, 21);
});

for (const lookup of ["in", "points", "scan"] as const) {
  mongo.test(`MongoStore.write() compares a replayed batch with the stored readings, looked up by \`_id\` as \`${lookup}\``, async () => {
    await using tmp = await tempDb("store");
    await using store = await MongoStore.open(MONGO_URL, tmp.name, silentLogger, {
      idLookup: lookup,
    });
    const at = new Date();
    // More than `scan`'s 32 point lookups and than `points`' 32 at a time.
    const stored = Array.from(
      { length: 90 },
      (_, i) => toReadingDoc(reading("d1", i + 1), false, at),
    );
    await store.write({ readings: stored, alerts: [], devices: [] });
    // Every 30th with other content under its seq; the rest as stored, processed again.
    const replay = stored.map((_, i) =>
      toReadingDoc(reading("d1", i + 1, i % 30 === 7 ? 99 : 21), true, new Date())
    );
    const never = toReadingDoc(reading("d1", 500), false, at);
    const { refused } = await store.write({
      readings: replay,
      skipped: [stored[3]!, never],
      alerts: [],
      devices: [],
    });
    assert.deepEqual(
      refused.map((r) => [r.type, r.reading.seq]).sort((a, b) => Number(a[1]) - Number(b[1])),
      [["conflict", 8], ["conflict", 38], ["conflict", 68], ["late", 500]],
    );
    assert.equal((await store.readings("d1", 200)).length, 90);
  });
}

mongo.test("idLookupOf() reads the server's explain: `$in` on MongoDB, one indexed lookup per id on the stack's PostgreSQL backend, `scan` on SQLite", async () => {
  await using tmp = await tempDb("store");
  await using _store = await MongoStore.open(MONGO_URL, tmp.name, silentLogger);
  const plan = await tmp.db.collection("readings").find({ deviceId: "d1" }).explain();
  const lookup = await idLookupOf(tmp.db);
  if (plan.serverInfo?.ferretdbVersion === undefined) return assert.equal(lookup, "in");
  // FerretDB: which backend, as the local stack recorded it (other servers: only not `in`).
  const backend = MONGO_URL.includes("127.0.0.1:27017")
    ? (await Deno.readTextFile(".stack/run/ferretdb.backend").catch(() => "")).trim()
    : "";
  const expected: Record<string, string> = { pg: "points", sqlite: "scan" };
  assert.equal(lookup, expected[backend] ?? lookup);
  assert.notEqual(lookup, "in", "FerretDB 1.24 pushes no `$in` down");
});

mongo.test("MongoStore.write() of readings not stored yet reads nothing back", async () => {
  await using tmp = await tempDb("store");
  await using store = await MongoStore.open(MONGO_URL, tmp.name, silentLogger);
  const readings = Array.from(
    { length: 200 },
    (_, i) => toReadingDoc(reading("d1", i + 1), false, new Date()),
  );
  const reads = countReads();
  try {
    await store.write({ readings, alerts: [], devices: [] });
    assert.equal(reads.count, 0, "the normal path costs the insert alone");
    await store.write({ readings: readings.slice(0, 3), alerts: [], devices: [] });
    assert.equal(reads.count, 3, "a replay looks up only the readings found stored");
  } finally {
    reads.restore();
  }
});

/** Counts the queries the adapter sends (`findOne` goes through `find`) until restored. */
function countReads() {
  const proto = Collection.prototype as unknown as { find: (...args: unknown[]) => unknown };
  const find = proto.find;
  const counter = { count: 0, restore: () => void (proto.find = find) };
  proto.find = function (this: unknown, ...args: unknown[]) {
    counter.count++;
    return find.apply(this, args);
  };
  return counter;
}

Deno.test("MongoStore.readingsAfter() lists a device's readings above a seq by ascending seq, up to a limit", async () => {
  await using tmp = await tempDb("store");
  await using store = await MongoStore.open(MONGO_URL, tmp.name, silentLogger);
  const at = new Date("2026-11-27T13:00:00Z");
  const docs = [
    ...[12, 3, 1, 10, 2].map((seq) => toReadingDoc(reading("d1", seq), false, at)),
    toReadingDoc(reading("d10", 5), false, at),
  ];
  await store.write({ readings: docs, alerts: [], devices: [] });
  const seqs = async (deviceId: string, after: number, limit: number) =>
    (await store.readingsAfter(deviceId, after, limit)).map((r) => `${r.deviceId}:${r.seq}`);
  assert.deepEqual(await seqs("d1", 2, 10), ["d1:3", "d1:10", "d1:12"]);
  assert.deepEqual(await seqs("d1", 0, 2), ["d1:1", "d1:2"]);
  assert.deepEqual(await seqs("d1", 12, 10), []);
  assert.deepEqual(await seqs("d2", 0, 10), []);
  assert.deepEqual(await store.readingsAfter("d1", 9, 1), [docs[3]], "the stored document");
});

mongo.test("MongoStore.devicesIn() reads the newest states recorded on the given partitions, and those recorded on none", async () => {
  await using tmp = await tempDb("store");
  {
    await using store = await MongoStore.open(MONGO_URL, tmp.name, silentLogger);
    // Written before states recorded their partition.
    await store.write({ readings: [], alerts: [], devices: [device("old", 4)] });
  }
  await using store = await MongoStore.open(MONGO_URL, tmp.name, silentLogger);
  const on = (id: string, seq: number, partition: number) => ({ ...device(id, seq), partition });
  await store.write({
    readings: [],
    alerts: [],
    devices: [on("a", 2, 0), on("b", 3, 1), on("c", 5, 2), on("m", 6, 0)],
  });
  // m moved to partition 2 (a partition count change); a moved on with a newer state.
  await store.write({ readings: [], alerts: [], devices: [on("m", 7, 2), on("a", 9, 0)] });
  const seqs = async (partitions: number[]) =>
    [...await store.devicesIn(partitions)].map(([id, d]) => [id, d.lastSeq, d.partition]).sort();
  assert.deepEqual(await seqs([0]), [["a", 9, 0], ["m", 6, 0], ["old", 4, undefined]]);
  assert.deepEqual(await seqs([1, 2]), [["b", 3, 1], ["c", 5, 2], ["m", 7, 2], [
    "old",
    4,
    undefined,
  ]]);
  // Rewritten with its partition and folded (the next start): no longer read with every assignment.
  await store.write({ readings: [], alerts: [], devices: [on("old", 5, 1)] });
  await using reopened = await MongoStore.open(MONGO_URL, tmp.name, silentLogger);
  const folded = async (partitions: number[]) =>
    [...await reopened.devicesIn(partitions)].map(([id, d]) => [id, d.lastSeq]).sort();
  assert.deepEqual(await folded([0]), [["a", 9]]);
  assert.deepEqual(await folded([1]), [["b", 3], ["old", 5]]);
  assert.deepEqual(await folded([2]), [["c", 5], ["m", 7]]);
});
