/** The embedded Deno KV adapter, on a real KV file. */
import assert from "node:assert/strict";
import { KvStore } from "../adapters/kv_store.ts";
import {
  type DeviceDoc,
  type ReadingDoc,
  toAlertDoc,
  toDeviceDoc,
  toReadingDoc,
} from "../schemas/documents.ts";
import { DEFAULT_RULE, INITIAL_ALARM_STATE } from "../domain/hysteresis.ts";
import type { Reading } from "../schemas/reading.ts";
import { testWith } from "./needs.ts";

/** Every test here keeps its store in a file (read and write access). */
const permitted = await testWith();

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

/** A KV file of its own, removed afterwards. */
async function tempKv(): Promise<{ path: string } & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "iot-kv-test-" });
  return {
    path: `${dir}/iot.kv`,
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }).catch(() => {}),
  };
}

permitted.test("KvStore.write() inserts a reading once, ignores it replayed and refuses other content under its seq", async () => {
  await using tmp = await tempKv();
  await using store = await KvStore.open(tmp.path);
  const first = toReadingDoc(reading("d1", 1, 21.5), false, new Date("2026-11-27T13:00:00Z"));
  assert.deepEqual(await store.write({ readings: [first], alerts: [], devices: [] }), {
    refused: [],
  });
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
  assert.equal(docs[1]!.is_critical, false);
});

permitted.test("KvStore.write() finds each skipped reading stored as it is, stored otherwise or not at all", async () => {
  await using tmp = await tempKv();
  await using store = await KvStore.open(tmp.path);
  const at = new Date();
  await store.write({
    readings: [1, 2].map((seq) => toReadingDoc(reading("d1", seq), false, at)),
    alerts: [],
    devices: [],
  });
  const same = toReadingDoc(reading("d1", 1), true, at);
  const other = toReadingDoc(reading("d1", 2, 99), false, at);
  const never = toReadingDoc(reading("d1", 3), false, at);
  const fresh = toReadingDoc(reading("d2", 1), false, at);
  const sameAsFresh = toReadingDoc(reading("d2", 1), false, at);
  const { refused } = await store.write({
    readings: [fresh],
    skipped: [same, other, never, sameAsFresh],
    alerts: [],
    devices: [],
  });
  assert.deepEqual(refused.map((r) => [r.type, r.reading]), [["conflict", other], ["late", never]]);
  const stored = await store.readings("d1", 10);
  assert.deepEqual(stored.map((r) => [r.seq, r.temperature]), [[2, 21], [1, 21]]);
});

permitted.test("KvStore.write() stores the first of two readings with one key in a batch", async () => {
  await using tmp = await tempKv();
  await using store = await KvStore.open(tmp.path);
  const at = new Date();
  const first = toReadingDoc(reading("d1", 1, 20), false, at);
  const second = toReadingDoc(reading("d1", 1, 30), false, at);
  const { refused } = await store.write({ readings: [first, second], alerts: [], devices: [] });
  assert.deepEqual(refused.map((r) => [r.type, r.reading]), [["conflict", second]]);
  assert.equal((await store.readings("d1", 10))[0]?.temperature, 20);
});

permitted.test("KvStore.write() from two writers of one file never overwrites a stored reading", async () => {
  await using tmp = await tempKv();
  await using a = await KvStore.open(tmp.path);
  await using b = await KvStore.open(tmp.path);
  const at = new Date();
  const seqs = Array.from({ length: 250 }, (_, i) => i + 1);
  const ofA = seqs.map((seq) => toReadingDoc(reading("d1", seq, 20), false, at));
  const ofB = seqs.map((seq) => toReadingDoc(reading("d1", seq, 30), false, at));
  // SQLite may answer "database is locked" to one of them: an I/O failure, so the batch is retried.
  const retrying = async (store: KvStore, readings: ReadingDoc[]) => {
    for (let attempt = 1;; attempt++) {
      try {
        return await store.write({ readings, alerts: [], devices: [] });
      } catch (error) {
        if (attempt === 20 || !/database is locked/.test(String(error))) throw error;
      }
    }
  };
  const [ra, rb] = await Promise.all([retrying(a, ofA), retrying(b, ofB)]);
  const stored = await a.readings("d1", 1000);
  assert.equal(stored.length, seqs.length);
  assert.equal(ra.refused.length + rb.refused.length, seqs.length, "one refusal per seq");
  const refusedA = new Set(ra.refused.map((r) => r.reading.seq));
  for (const doc of stored) {
    assert.equal(doc.temperature, refusedA.has(doc.seq) ? 30 : 20, `seq ${doc.seq}`);
  }
});

permitted.test("KvStore.write() of readings above their device's stored ones reads nothing back", async () => {
  await using tmp = await tempKv();
  await using store = await KvStore.open(tmp.path);
  const readings = Array.from(
    { length: 250 },
    (_, i) => toReadingDoc(reading(`d${i % 5}`, Math.floor(i / 5) + 1), false, new Date()),
  );
  // First sight of each device: its highest stored seq is looked up once.
  await store.write({ readings: readings.slice(0, 5), alerts: [], devices: [] });
  // Count the reads the adapter sends, on the prototype its instance uses.
  const proto = Deno.Kv.prototype as unknown as Record<string, (...args: unknown[]) => unknown>;
  const originals = { get: proto.get!, getMany: proto.getMany!, list: proto.list! };
  let reads = 0;
  for (const [name, original] of Object.entries(originals)) {
    proto[name] = function (this: unknown, ...args: unknown[]) {
      reads++;
      return original.apply(this, args);
    };
  }
  try {
    await store.write({ readings: readings.slice(5), alerts: [], devices: [] });
    assert.equal(reads, 0, "the normal path costs the insert alone");
    await store.write({ readings: readings.slice(0, 3), alerts: [], devices: [] });
    assert.ok(reads > 0, "a replay reads the stored readings to compare them");
  } finally {
    Object.assign(proto, originals);
  }
  assert.equal((await store.readings("d0", 100)).length, 50);
});

permitted.test("KvStore.write() after another writer stored readings reads what it no longer knows", async () => {
  await using tmp = await tempKv();
  await using a = await KvStore.open(tmp.path);
  await using b = await KvStore.open(tmp.path);
  const at = new Date();
  await a.write({ readings: [toReadingDoc(reading("d1", 1), false, at)], alerts: [], devices: [] });
  // b stores seq 2 behind a's back; a still believes seq 1 is d1's highest.
  await b.write({
    readings: [toReadingDoc(reading("d1", 2, 50), false, at)],
    alerts: [],
    devices: [],
  });
  const mine = toReadingDoc(reading("d1", 2, 20), false, at);
  const { refused } = await a.write({ readings: [mine], alerts: [], devices: [] });
  assert.deepEqual(refused.map((r) => [r.type, r.reading]), [["conflict", mine]]);
  assert.equal((await a.readings("d1", 10))[0]?.temperature, 50);
});

Deno.test("KvStore.readingsAfter() lists a device's readings above a seq by ascending seq, up to a limit", async () => {
  await using tmp = await tempKv();
  await using store = await KvStore.open(tmp.path);
  const at = new Date("2026-11-27T13:00:00Z");
  const docs = [
    ...[12, 3, 1, 10, 2].map((seq) => toReadingDoc(reading("d1", seq), false, at)),
    // Another device whose id starts with the first's: not part of its range.
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

/** Counts what the store reads from its KV: entries listed and keys fetched, by key prefix. */
function countReads(kv: Deno.Kv): Map<string, number> {
  const reads = new Map<string, number>();
  const add = (key: Deno.KvKey) => reads.set(String(key[0]), (reads.get(String(key[0])) ?? 0) + 1);
  const list = kv.list.bind(kv);
  kv.list = <T>(selector: Deno.KvListSelector, options?: Deno.KvListOptions) => {
    const iter = list<T>(selector, options);
    const next = iter.next.bind(iter);
    iter.next = async () => {
      const step = await next();
      if (!step.done) add(step.value.key);
      return step;
    };
    return iter;
  };
  const getMany = kv.getMany.bind(kv);
  kv.getMany = ((keys: Deno.KvKey[], options?: { consistency?: Deno.KvConsistencyLevel }) => {
    for (const key of keys) add(key);
    return getMany(keys, options);
  }) as typeof kv.getMany;
  return reads;
}

permitted.test("KvStore.alerts() reads the active episodes without the settled history", async () => {
  await using tmp = await tempKv();
  await using store = await KvStore.open(tmp.path);
  const at = (s: number) => new Date(Date.UTC(2026, 10, 27, 13, 0, 0) + s * 1000).toISOString();
  const episode = (s: number) => ({ raisedSeq: s, raisedAt: at(s), peakTemperature: 90 });
  const settled = Array.from(
    { length: 500 },
    (_, i) => toAlertDoc(`d${i % 50}`, episode(i + 1), DEFAULT_RULE, { seq: i + 2, ts: at(i + 2) }),
  );
  // The three newest of the overheat history are active.
  const active = [601, 602, 603].map((s) => toAlertDoc("hot", episode(s), DEFAULT_RULE));
  await store.write({ readings: [], alerts: [...settled, ...active], devices: [] });
  // Newer still: an episode raised, then cleared by a later write, which moves it out of "active".
  const closed = toAlertDoc("again", episode(700), DEFAULT_RULE, { seq: 701, ts: at(701) });
  await store.write({
    readings: [],
    alerts: [toAlertDoc("again", episode(700), DEFAULT_RULE)],
    devices: [],
  });
  await store.write({ readings: [], alerts: [closed], devices: [] });
  const reads = countReads(store.kv);
  const found = await store.alerts({ status: "active", limit: 1000 });
  assert.deepEqual(found.map((a) => a._id), [
    "hot:overheat:603",
    "hot:overheat:602",
    "hot:overheat:601",
  ]);
  const alertReads = (reads.get("alerts") ?? 0) + (reads.get("alerts_by_status") ?? 0) +
    (reads.get("alerts_by_time") ?? 0) + (reads.get("alert_acks") ?? 0);
  assert.ok(alertReads <= 3 * 3, `read ${alertReads} alert entries for 3 active of 504`);
  const cleared = await store.alerts({ status: "cleared", limit: 2 });
  assert.deepEqual(cleared.map((a) => a._id), ["again:overheat:700", "d49:overheat:500"]);
});

permitted.test("KvStore.open() indexes by status the alerts of a file written before the index", async () => {
  await using tmp = await tempKv();
  const at = (s: number) => new Date(Date.UTC(2026, 10, 27, 13, 0, s)).toISOString();
  const episode = (s: number) => ({ raisedSeq: s, raisedAt: at(s), peakTemperature: 90 });
  {
    await using store = await KvStore.open(tmp.path);
    await store.write({
      readings: [],
      alerts: [
        toAlertDoc("d1", episode(1), DEFAULT_RULE, { seq: 2, ts: at(2) }),
        toAlertDoc("d2", episode(3), DEFAULT_RULE),
      ],
      devices: [],
    });
    // What an older version left: the alerts without their status index.
    const kv = store.kv;
    for await (const e of kv.list({ prefix: ["alerts_by_status"] })) await kv.delete(e.key);
    await kv.delete(["alerts_by_status_built"]);
    assert.deepEqual(await store.alerts({ status: "active", limit: 10 }), []);
  }
  await using store = await KvStore.open(tmp.path);
  assert.deepEqual((await store.alerts({ status: "active", limit: 10 })).map((a) => a._id), [
    "d2:overheat:3",
  ]);
  assert.deepEqual((await store.alerts({ status: "cleared", limit: 10 })).map((a) => a._id), [
    "d1:overheat:1",
  ]);
});

permitted.test("KvStore.devicesIn() reads the states recorded on the given partitions, and those stored before states had one", async () => {
  await using tmp = await tempKv();
  const state = (id: string, lastSeq: number, partition?: number): DeviceDoc => ({
    ...toDeviceDoc(id, { ...INITIAL_ALARM_STATE, lastSeq }, DEFAULT_RULE, new Date(0)),
    ...(partition === undefined ? {} : { partition }),
  });
  {
    // What an older version left: states without a partition, no copies.
    const kv = await Deno.openKv(tmp.path);
    await kv.set(["devices", "old"], state("old", 4));
    kv.close();
  }
  {
    await using store = await KvStore.open(tmp.path);
    await store.write({
      readings: [],
      alerts: [],
      devices: [state("a", 2, 0), state("b", 3, 1), state("m", 6, 0)],
    });
  }
  await using store = await KvStore.open(tmp.path);
  const seqs = async (partitions: number[]) =>
    [...await store.devicesIn(partitions)].map(([id, d]) => [id, d.lastSeq]).sort();
  assert.deepEqual(await seqs([0]), [["a", 2], ["m", 6], ["old", 4]]);
  // m moves to partition 2 (a partition count change), old is rewritten with its partition.
  await store.write({ readings: [], alerts: [], devices: [state("m", 7, 2), state("old", 5, 1)] });
  assert.deepEqual(await seqs([0]), [["a", 2]]);
  assert.deepEqual(await seqs([1, 2]), [["b", 3], ["m", 7], ["old", 5]]);
  assert.equal((await store.device("m"))?.partition, 2);
  assert.deepEqual(await store.lastSeqs(), new Map([["a", 2], ["b", 3], ["m", 7], ["old", 5]]));
});
