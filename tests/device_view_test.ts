/**
 * The processors' device view: `GET /devices/:id` answered from the states this process's
 * checkpoints stored. Unit tests of the view, then through the HTTP API against the real Kafka
 * and MongoDB-protocol servers and in embedded mode.
 */
import "./env_guard.ts";
import assert from "node:assert/strict";
import { DeviceView, viewedQueries } from "../actors/device_view.ts";
import type { StoreQueries } from "../actors/store_queries.ts";
import type { WriteBatch } from "../actors/device_store.ts";
import { DEFAULT_RULE, INITIAL_ALARM_STATE } from "../domain/hysteresis.ts";
import { type DeviceDoc, toDeviceDoc } from "../schemas/documents.ts";
import type { Reading } from "../schemas/reading.ts";
import type { Store } from "../adapters/ports.ts";
import type { App } from "../main.ts";
import { testWith } from "./needs.ts";
import { until } from "./wait.ts";
import { EMBEDDED, KAFKA_MONGO, publishReadings, startApp, testEnv } from "./test_app.ts";

function state(id: string, lastSeq: number, partition: number | undefined = 0): DeviceDoc {
  const doc = toDeviceDoc(id, { ...INITIAL_ALARM_STATE, lastSeq }, DEFAULT_RULE, new Date(lastSeq));
  return partition === undefined ? doc : { ...doc, partition };
}

Deno.test("DeviceView holds a stored state of an owned partition until a newer one is stored", () => {
  const view = new DeviceView();
  view.assign([0, 2]);
  view.written([state("a", 3), state("b", 1, 2)], true);
  assert.equal(view.get("a")?.lastSeq, 3);
  assert.equal(view.get("b")?.lastSeq, 1);
  view.written([state("a", 5)], true);
  assert.equal(view.get("a")?.lastSeq, 5);
  assert.equal(view.size, 2);
});

Deno.test("DeviceView answers nothing before its first assignment, nor for other partitions", () => {
  const view = new DeviceView();
  view.written([state("a", 1)], true);
  assert.equal(view.get("a"), undefined, "no assignment yet");
  view.assign([1]);
  view.written([state("a", 1, 0), state("old", 1, undefined)], true);
  assert.equal(view.get("a"), undefined, "partition 0 is not owned");
  assert.equal(view.get("old"), undefined, "a state without a partition");
});

Deno.test("DeviceView forgets a device whose stored state is not newer: the stores break ties differently", () => {
  const view = new DeviceView();
  view.assign([0]);
  view.written([state("same", 4), state("older", 4)], true);
  view.written([state("same", 4), state("older", 2)], true);
  assert.equal(view.get("same"), undefined);
  assert.equal(view.get("older"), undefined);
  view.written([state("same", 5)], true);
  assert.equal(view.get("same")?.lastSeq, 5, "a newer stored state is held again");
});

Deno.test("DeviceView forgets the states of a failed write: the store may hold them or not", () => {
  const view = new DeviceView();
  view.assign([0]);
  view.written([state("a", 3), state("b", 1)], true);
  view.written([state("a", 4)], false);
  assert.equal(view.get("a"), undefined);
  assert.equal(view.get("b")?.lastSeq, 1);
});

Deno.test("DeviceView.assign() forgets every state, kept partitions' too, and clear() leaves none owned", () => {
  const view = new DeviceView();
  view.assign([0, 1]);
  view.written([state("a", 3, 0), state("b", 3, 1)], true);
  view.assign([0]);
  assert.equal(view.size, 0);
  view.written([state("a", 4, 0), state("b", 4, 1)], true);
  assert.equal(view.get("a")?.lastSeq, 4);
  assert.equal(view.get("b"), undefined, "partition 1 was revoked");
  view.clear();
  view.written([state("a", 5, 0)], true);
  assert.equal(view.size, 0);
});

Deno.test("viewedQueries() answers a held device from the view and the rest from the queries", async () => {
  const view = new DeviceView();
  view.assign([0]);
  view.written([state("held", 7)], true);
  const asked: string[] = [];
  const fromStore = state("other", 2);
  const queries = viewedQueries({
    device: (id) => {
      asked.push(id);
      return Promise.resolve(id === "other" ? fromStore : null);
    },
  } as StoreQueries, view);
  assert.equal((await queries.device("held"))?.lastSeq, 7);
  assert.equal(await queries.device("other"), fromStore);
  assert.equal(await queries.device("nobody"), null);
  assert.deepEqual(asked, ["other", "nobody"]);
  assert.deepEqual(view.stats, { devices: 1, hits: 1, misses: 2 });
});

// Through the HTTP API, with the real store behind it.

/** Records the ids the API asks the store for (its device lookups go through `devices()`). */
function countDeviceReads(store: Store): string[] {
  const asked: string[] = [];
  const devices = store.devices.bind(store);
  store.devices = (ids) => {
    asked.push(...ids);
    return devices(ids);
  };
  return asked;
}

/** Holds every write of device states (the checkpoints') until `release()`. */
function holdStateWrites(store: Store) {
  const gate = Promise.withResolvers<void>();
  const held: WriteBatch[] = [];
  const write = store.write.bind(store);
  store.write = async (batch) => {
    if (batch.devices.length > 0) {
      held.push(batch);
      await gate.promise;
    }
    return await write(batch);
  };
  return { held, release: () => gate.resolve() };
}

function readings(deviceId: string, count: number, firstSeq = 1): Reading[] {
  return Array.from({ length: count }, (_, i) => ({
    deviceId,
    seq: firstSeq + i,
    ts: new Date(Date.UTC(2026, 10, 30, 12, 0, firstSeq + i)).toISOString(),
    temperature: 21 + i,
    humidity: 40,
    location: { lat: 48.85, lon: 2.35 },
  }));
}

/** `GET /devices/:id` as the client sees it: status and JSON body. */
async function getDevice(app: App, id: string): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`${app.url}/devices/${id}`);
  return { status: res.status, body: await res.json() };
}

/** The store's own answer, as JSON would carry it. */
async function storedAnswer(app: App, id: string): Promise<unknown> {
  return JSON.parse(JSON.stringify(await app.parts.store!.device(id)));
}

for (const mode of [KAFKA_MONGO, EMBEDDED]) {
  const inMode = await testWith(mode);

  inMode.test(`GET /devices/:id (${mode.name}) answers the stored state from the view, and not a state whose checkpoint is not stored yet`, async () => {
    await using env = await testEnv("device-view", mode);
    await using app = await startApp(env, { API_READ_CACHE_MS: "0" });
    const store = app.parts.store!;
    const id = "view-1";
    await publishReadings(app, env, readings(id, 3));
    await until("the state stored", async () => (await store.device(id))?.lastSeq === 3);
    await until("the view holding it", () => app.parts.deviceView!.get(id)?.lastSeq === 3);

    const asked = countDeviceReads(store);
    const stored = await storedAnswer(app, id);
    assert.deepEqual(await getDevice(app, id), { status: 200, body: stored });
    assert.deepEqual(asked, [], "answered without reading the store");
    const health = await (await fetch(`${app.url}/health`)).json();
    assert.deepEqual(health.stats.deviceView, { devices: 1, hits: 1, misses: 0 });

    // The next checkpoint's write is held: its state is applied but not stored.
    const writes = holdStateWrites(store);
    await publishReadings(app, env, readings(id, 2, 4));
    await until(
      "a checkpoint writing the new state",
      () => writes.held.some((b) => b.devices.some((d) => d.deviceId === id && d.lastSeq === 5)),
    );
    assert.deepEqual(await getDevice(app, id), { status: 200, body: stored }, "still seq 3");
    assert.deepEqual(await storedAnswer(app, id), stored, "what the store answers too");

    writes.release();
    const newer = await until("the new state answered", async () => {
      const answer = await getDevice(app, id);
      return (answer.body as DeviceDoc).lastSeq === 5 ? answer : undefined;
    });
    assert.deepEqual(newer, { status: 200, body: await storedAnswer(app, id) });
    assert.deepEqual(asked, [], "still without reading the store");

    // A device the view does not hold is the store's to answer.
    assert.equal((await getDevice(app, "nobody")).status, 404);
    assert.deepEqual(asked, ["nobody"]);
  });
}

const services = await testWith(KAFKA_MONGO);

services.test("GET /devices/:id (kafka+mongodb) after a rebalance: the view answers only the partitions still owned, the store the others", async () => {
  await using env = await testEnv("device-view-split", KAFKA_MONGO);
  const settings = { ROLE: "processors", API_READ_CACHE_MS: "0" };
  await using a = await startApp(env, settings);
  const ids = Array.from({ length: 12 }, (_, i) => `split-${String(i + 1).padStart(2, "0")}`);
  await publishReadings(a, env, ids.flatMap((id) => readings(id, 2)));
  for (const id of ids) {
    await until(`${id} in a's view`, () => a.parts.deviceView!.get(id)?.lastSeq === 2, 30_000);
  }
  const partitionOf = new Map<string, number>();
  for (const id of ids) partitionOf.set(id, (await a.parts.store!.device(id))!.partition!);
  assert.equal(new Set(partitionOf.values()).size, 3, "the devices cover every partition");

  await using b = await startApp(env, settings);
  const kept = await until("both members to own partitions", () => {
    const x = a.parts.processors!.assignment;
    const y = b.parts.processors!.assignment;
    return x.length > 0 && y.length > 0 && x.length + y.length === 3 ? new Set(x) : undefined;
  }, 30_000);
  const lost = ids.filter((id) => !kept.has(partitionOf.get(id)!));
  const own = ids.filter((id) => kept.has(partitionOf.get(id)!));

  // New states for every device: a stores its partitions', b the others'.
  await publishReadings(a, env, ids.flatMap((id) => readings(id, 1, 3)));
  for (const id of ids) {
    await until(
      `${id} stored at seq 3`,
      async () => (await a.parts.store!.device(id))?.lastSeq === 3,
      30_000,
    );
  }
  for (const id of own) {
    await until(
      `${id} in a's view at seq 3`,
      () => a.parts.deviceView!.get(id)?.lastSeq === 3,
      30_000,
    );
  }
  const asked = countDeviceReads(a.parts.store!);
  for (const id of own) {
    assert.deepEqual(await getDevice(a, id), { status: 200, body: await storedAnswer(a, id) });
  }
  assert.deepEqual(asked, [], "a's partitions answered from its view");
  for (const id of lost) {
    assert.equal(a.parts.deviceView!.get(id), undefined, `${id}: not in a's view`);
    assert.deepEqual(await getDevice(a, id), { status: 200, body: await storedAnswer(a, id) });
  }
  assert.deepEqual(asked, lost, "the revoked partitions' devices read from the store");
});
