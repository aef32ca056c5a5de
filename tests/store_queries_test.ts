/**
 * The store-query port's acknowledgement and reading-window methods, run alike against both
 * adapters: Deno KV on a file and MongoDB on the real MongoDB-protocol server.
 */
import "./env_guard.ts";
import assert from "node:assert/strict";
import { KvStore } from "../adapters/kv_store.ts";
import { MongoStore } from "../adapters/mongo_store.ts";
import { silentLogger } from "../adapters/log.ts";
import { DEFAULT_RULE, INITIAL_ALARM_STATE } from "../domain/hysteresis.ts";
import { type AlertDoc, toAlertDoc, toDeviceDoc, toReadingDoc } from "../schemas/documents.ts";
import type { StoreQueries } from "../actors/store_queries.ts";
import type { DeviceStore } from "../actors/device_store.ts";
import { MONGO_URL, tempDb } from "./fixtures.ts";
import { type TestRegistrar, testWith } from "./needs.ts";

type Store = StoreQueries & DeviceStore & AsyncDisposable & {
  devices(ids: readonly string[]): Promise<ReadonlyMap<string, { lastSeq: number }>>;
};

const stores: Array<[string, TestRegistrar, () => Promise<Store & { cleanup(): Promise<void> }>]> =
  [
    ["KvStore", await testWith(), async () => {
      const dir = await Deno.makeTempDir({ prefix: "iot-kv-test-" });
      const store = await KvStore.open(`${dir}/iot.kv`);
      return Object.assign(store, {
        cleanup: () => Deno.remove(dir, { recursive: true }).catch(() => {}),
      });
    }],
    ["MongoStore", await testWith({ mongo: true }), async () => {
      const tmp = await tempDb("queries");
      const store = await MongoStore.open(MONGO_URL, tmp.name, silentLogger);
      return Object.assign(store, { cleanup: async () => await tmp[Symbol.asyncDispose]() });
    }],
  ];

const at = (second: number) => new Date(Date.UTC(2026, 10, 27, 13, 0, second)).toISOString();

function reading(deviceId: string, seq: number, second = seq) {
  return toReadingDoc(
    {
      deviceId,
      seq,
      ts: at(second),
      temperature: 20 + seq,
      humidity: 40,
      location: { lat: 48.85, lon: 2.35 },
    },
    false,
    new Date(),
  );
}

const EPISODE = { raisedSeq: 3, raisedAt: at(3), peakTemperature: 90 };
const ACK = { ackedBy: "ana", ackedAt: new Date("2026-11-27T14:00:00.000Z"), note: "on it" };

async function withStore(
  open: () => Promise<Store & { cleanup(): Promise<void> }>,
  fn: (store: Store) => Promise<void>,
) {
  const store = await open();
  try {
    await fn(store);
  } finally {
    await store[Symbol.asyncDispose]();
    await store.cleanup();
  }
}

for (const [name, registrar, open] of stores) {
  registrar.test(`${name}.acknowledge() records the first acknowledgement and keeps it`, () =>
    withStore(open, async (store) => {
      assert.equal(await store.acknowledge("d1:overheat:3", ACK), null, "unknown alert");
      await store.write({
        readings: [],
        alerts: [toAlertDoc("d1", EPISODE, DEFAULT_RULE)],
        devices: [],
      });
      const first = await store.acknowledge("d1:overheat:3", ACK);
      assert.equal(first?.recorded, true);
      assert.deepEqual(
        [first?.alert.ackedBy, first?.alert.ackedAt, first?.alert.note, first?.alert.status],
        ["ana", ACK.ackedAt, "on it", "active"],
      );
      const again = await store.acknowledge("d1:overheat:3", {
        ackedBy: "bob",
        ackedAt: new Date("2026-11-27T15:00:00.000Z"),
      });
      assert.equal(again?.recorded, false);
      assert.deepEqual([again?.alert.ackedBy, again?.alert.ackedAt], ["ana", ACK.ackedAt]);
      const [stored] = await store.alerts({ deviceId: "d1", limit: 10 });
      assert.deepEqual([stored?.ackedBy, stored?.ackedAt, stored?.note], [
        "ana",
        ACK.ackedAt,
        "on it",
      ]);
    }));

  registrar.test(`${name}: the processors' later snapshots and the clear keep the acknowledgement`, () =>
    withStore(open, async (store) => {
      await store.write({
        readings: [],
        alerts: [toAlertDoc("d1", EPISODE, DEFAULT_RULE)],
        devices: [],
      });
      await store.acknowledge("d1:overheat:3", ACK);
      // A newer peak, then the clear, then the clear replayed after a crash.
      const hotter = toAlertDoc(
        "d1",
        { ...EPISODE, peakTemperature: 95 },
        DEFAULT_RULE,
        undefined,
        5,
      );
      const cleared = toAlertDoc("d1", { ...EPISODE, peakTemperature: 95 }, DEFAULT_RULE, {
        seq: 8,
        ts: at(8),
      });
      for (const alert of [hotter, cleared, cleared]) {
        await store.write({ readings: [], alerts: [alert], devices: [] });
      }
      const [stored] = await store.alerts({ deviceId: "d1", limit: 10 });
      assert.deepEqual(
        [stored?.status, stored?.clearedSeq, stored?.peakTemperature, stored?.asOfSeq],
        ["cleared", 8, 95, 8],
      );
      assert.deepEqual([stored?.ackedBy, stored?.ackedAt, stored?.note], [
        "ana",
        ACK.ackedAt,
        "on it",
      ]);
    }));

  registrar.test(`${name}.alerts() filters by acknowledgement, type and raise time`, () =>
    withStore(open, async (store) => {
      const alerts: AlertDoc[] = [1, 3, 5].map((raisedSeq) =>
        toAlertDoc("d1", { raisedSeq, raisedAt: at(raisedSeq), peakTemperature: 90 }, DEFAULT_RULE)
      );
      alerts.push(toAlertDoc("d2", EPISODE, DEFAULT_RULE));
      await store.write({ readings: [], alerts, devices: [] });
      await store.acknowledge("d1:overheat:3", ACK);
      const ids = async (filter: Parameters<StoreQueries["alerts"]>[0]) =>
        (await store.alerts(filter)).map((a) => a._id).sort();
      assert.deepEqual(await ids({ acked: true, limit: 10 }), ["d1:overheat:3"]);
      assert.deepEqual(await ids({ acked: false, limit: 10 }), [
        "d1:overheat:1",
        "d1:overheat:5",
        "d2:overheat:3",
      ]);
      assert.deepEqual(await ids({ acked: false, deviceId: "d1", limit: 10 }), [
        "d1:overheat:1",
        "d1:overheat:5",
      ]);
      const window = { raisedFrom: new Date(at(3)), raisedTo: new Date(at(5)) };
      assert.deepEqual(await ids({ ...window, limit: 10 }), ["d1:overheat:3", "d2:overheat:3"]);
      assert.deepEqual(await ids({ ...window, deviceId: "d1", limit: 10 }), ["d1:overheat:3"]);
      assert.deepEqual(await ids({ raisedFrom: new Date(at(4)), limit: 10 }), ["d1:overheat:5"]);
      assert.deepEqual(await ids({ raisedTo: new Date(at(2)), limit: 10 }), ["d1:overheat:1"]);
      assert.equal((await store.alerts({ type: "overheat", limit: 2 })).length, 2);
      assert.equal((await store.alerts({ type: "overheat", limit: 10 })).length, 4);
    }));

  registrar.test(`${name}.readingsBetween() answers a window's readings by device, then seq`, () =>
    withStore(open, async (store) => {
      // d2's seq 3 has an earlier ts than seq 2 (late delivery): seq decides the order.
      const readings = [
        reading("d2", 1, 1),
        reading("d2", 3, 2),
        reading("d2", 2, 4),
        reading("d1", 1, 1),
        reading("d1", 2, 2),
        reading("d1", 3, 9),
        reading("d3", 1, 3),
      ];
      await store.write({ readings, alerts: [], devices: [] });
      const window = { from: new Date(at(2)), to: new Date(at(9)), limit: 100 };
      const ids = async (w: Parameters<StoreQueries["readingsBetween"]>[0]) =>
        (await store.readingsBetween(w)).map((r) => r._id);
      assert.deepEqual(await ids(window), ["d1:2", "d2:2", "d2:3", "d3:1"]);
      assert.deepEqual(await ids({ ...window, deviceId: "d2" }), ["d2:2", "d2:3"]);
      assert.deepEqual(await ids({ ...window, limit: 2 }), ["d1:2", "d2:2"]);
      const [first] = await store.readingsBetween({ ...window, deviceId: "d1" });
      assert.ok(first?.ts instanceof Date);
      const controller = new AbortController();
      controller.abort(new Error("deadline"));
      await assert.rejects(
        store.readingsBetween({ ...window, signal: controller.signal }),
        /deadline/,
      );
    }));

  registrar.test(`${name}.devices() answers the newest stored state of each id in one call`, () =>
    withStore(open, async (store) => {
      const state = (deviceId: string, lastSeq: number) =>
        toDeviceDoc(deviceId, { ...INITIAL_ALARM_STATE, lastSeq }, DEFAULT_RULE, new Date());
      await store.write({ readings: [], alerts: [], devices: [state("d1", 1), state("d2", 4)] });
      await store.write({ readings: [], alerts: [], devices: [state("d1", 2)] });
      const found = await store.devices(["d1", "d2", "d3"]);
      assert.deepEqual([...found].map(([id, d]) => [id, d.lastSeq]).sort(), [["d1", 2], ["d2", 4]]);
      assert.deepEqual([...await store.devices(["d1"])].map(([id, d]) => [id, d.lastSeq]), [
        ["d1", 2],
      ]);
      assert.equal((await store.devices([])).size, 0);
    }));
}
