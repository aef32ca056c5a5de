import assert from "node:assert/strict";
import { DeviceRegistry } from "../actors/device_registry.ts";
import { DEFAULT_RULE, INITIAL_ALARM_STATE } from "../domain/hysteresis.ts";
import { type DeviceDoc, toDeviceDoc, toReadingDoc } from "../schemas/documents.ts";
import type { Reading } from "../schemas/reading.ts";
import { silentLogger } from "../adapters/log.ts";
import { FakeTime } from "./fake_time.ts";

function state(id: string, lastSeq: number): DeviceDoc {
  return toDeviceDoc(id, { ...INITIAL_ALARM_STATE, lastSeq }, DEFAULT_RULE, new Date(0));
}

function reading(deviceId: string, seq: number): Reading {
  return {
    deviceId,
    seq,
    ts: new Date(Date.UTC(2026, 10, 27) + seq * 1000).toISOString(),
    temperature: 20,
    humidity: 50,
    location: { lat: 48.8566, lon: 2.3522 },
  };
}

function setup(unsaved: ReadonlyMap<string, DeviceDoc> = new Map()) {
  // The registry's clock; its sweep timer (every 1000 ms) never runs: time stands still for it.
  let now = 0;
  const stored = new Map([["a", state("a", 7)], ["b", state("b", 3)]]);
  const loads: string[][] = [];
  const timers = new FakeTime(0);
  const registry = new DeviceRegistry({
    store: {
      loadDevices(ids) {
        loads.push([...ids]);
        return Promise.resolve(
          new Map(ids.flatMap((id) => {
            const doc = stored.get(id);
            return doc ? [[id, doc] as const] : [];
          })),
        );
      },
    },
    rule: DEFAULT_RULE,
    unsaved: (id) => unsaved.get(id),
    passivateAfterMs: 1000,
    logger: silentLogger,
    now: () => now,
    timers,
  });
  return {
    registry,
    loads,
    advance(ms: number) {
      now += ms;
    },
  };
}

Deno.test("DeviceRegistry.ensure() resumes each device from its newest safe state, loading only the stored ones", async () => {
  const t = setup(new Map([["b", state("b", 5)]]));
  await t.registry.ensure(["a", "b", "c"], 0);
  assert.deepEqual(t.loads, [["a", "c"]], "b's unsaved state is newer than the stored one");
  assert.equal((await t.registry.state("a"))?.lastSeq, 7);
  assert.equal((await t.registry.state("b"))?.lastSeq, 5);
  assert.equal((await t.registry.state("c"))?.lastSeq, 0);
  await t.registry.ensure(["a"], 0);
  assert.equal(t.loads.length, 1, "an active device is not loaded again");
  const out = await t.registry.apply("a", [reading("a", 8)], new Date(0));
  assert.equal(out.device.lastSeq, 8);
  await t.registry.stop();
  assert.equal(t.registry.size, 0);
});

Deno.test("DeviceRegistry.passivateIdle() keeps held devices and releases the idle ones", async () => {
  const t = setup();
  await t.registry.ensure(["a", "b"], 0);
  const release = t.registry.hold(["a"]);
  t.advance(5000);
  assert.equal(await t.registry.passivateIdle(), 1, "b only: a is held by a batch");
  release();
  assert.equal(await t.registry.passivateIdle(), 1);
  assert.equal(t.registry.size, 0);
  assert.equal(t.registry.stats.passivated, 2);
  await t.registry.stop();
});

Deno.test("DeviceRegistry.discard() and outside() release the devices of lost partitions", async () => {
  const t = setup();
  await t.registry.ensure(["a"], 0);
  await t.registry.ensure(["b"], 1);
  const lost = t.registry.outside(new Set([0]));
  assert.deepEqual(lost, ["b"]);
  await t.registry.discard(lost);
  assert.equal(await t.registry.state("b"), undefined);
  assert.equal((await t.registry.state("a"))?.lastSeq, 7);
  await t.registry.ensure(["b"], 0);
  assert.deepEqual(t.loads.at(-1), ["b"], "spawned again from the store");
  await t.registry.stop();
});

Deno.test("DeviceRegistry.ensure() with rollForward answers every stored reading past each restored state, under the device's rule", async () => {
  const own = { high: 30, low: 25, raiseAfter: 1, clearAfter: 1 };
  const stored = new Map([[
    "a",
    toDeviceDoc("a", { ...INITIAL_ALARM_STATE, lastSeq: 7 }, own, new Date(0)),
  ]]);
  // 1 200 readings past a's state: three pages of 500. None past b's unsaved state.
  const readings = new Map([
    ["a", Array.from({ length: 1207 }, (_, i) => reading("a", i + 1))],
    ["b", [1, 2, 3].map((seq) => reading("b", seq))],
  ]);
  const calls: string[] = [];
  const registry = new DeviceRegistry({
    store: {
      loadDevices: (ids) =>
        Promise.resolve(
          new Map(ids.flatMap((id) => stored.has(id) ? [[id, stored.get(id)!]] : [])),
        ),
      readingsAfter(deviceId, afterSeq, limit) {
        calls.push(`${deviceId}>${afterSeq}`);
        const docs = (readings.get(deviceId) ?? []).filter((r) => r.seq > afterSeq).slice(0, limit);
        return Promise.resolve(docs.map((r) => toReadingDoc(r, false, new Date(0))));
      },
    },
    rule: DEFAULT_RULE,
    unsaved: (id) => id === "b" ? state("b", 3) : undefined,
    passivateAfterMs: 1000,
    rollForward: true,
    logger: silentLogger,
    now: () => 0,
  });
  const unseen = await registry.ensure(["a", "b", "c"], 0);
  assert.deepEqual([...unseen.keys()], ["a"], "b's state covers its readings; c has none");
  const a = unseen.get("a")!;
  assert.deepEqual(a.map((r) => r.seq), Array.from({ length: 1200 }, (_, i) => i + 8));
  assert.deepEqual(a[0], { ...reading("a", 8), thresholds: own });
  assert.deepEqual(calls.sort(), ["a>1007", "a>507", "a>7", "b>3", "c>0"]);
  assert.equal((await registry.ensure(["a"], 0)).size, 0, "an active device is not rolled again");
  await registry.stop();
});

Deno.test("DeviceRegistry refuses rollForward with a store that cannot list readings after a seq", () => {
  assert.throws(
    () =>
      new DeviceRegistry({
        store: { loadDevices: () => Promise.resolve(new Map()) },
        rule: DEFAULT_RULE,
        unsaved: () => undefined,
        passivateAfterMs: 1000,
        rollForward: true,
        logger: silentLogger,
        now: () => 0,
      }),
    { name: "TypeError", message: /Cannot roll devices forward/ },
  );
});

Deno.test("DeviceRegistry.prefetch() serves each device once from one read of its partitions' stored states, never one held, unsaved or recorded on another partition", async () => {
  const stored = new Map([
    ["a", state("a", 7)],
    ["b", state("b", 3)],
    ["c", state("c", 4)],
    ["e", { ...state("e", 5), partition: 1 }],
  ]);
  const loads: string[][] = [];
  const reads: (readonly number[])[] = [];
  const registry = new DeviceRegistry({
    store: {
      devicesIn(partitions) {
        reads.push(partitions);
        return Promise.resolve(new Map(stored));
      },
      loadDevices(ids) {
        loads.push([...ids]);
        return Promise.resolve(
          new Map(ids.flatMap((id) => stored.has(id) ? [[id, stored.get(id)!] as const] : [])),
        );
      },
    },
    rule: DEFAULT_RULE,
    unsaved: () => undefined,
    passivateAfterMs: 1000,
    logger: silentLogger,
    now: () => 0,
  });
  await registry.ensure(["a"], 0);
  assert.deepEqual(loads, [["a"]], "no snapshot yet: looked up");
  const prefetched = registry.prefetch([0, 2], ["c"]);
  assert.deepEqual([...(await prefetched)!.keys()], ["a", "b", "c", "e"], "answered for the watch");
  // Stored meanwhile (e.g. this member's own checkpoint): the snapshot is older now.
  stored.set("a", state("a", 9));
  stored.set("c", state("c", 6));
  await registry.ensure(["b", "c", "d"], 0);
  assert.deepEqual(reads, [[0, 2]], "only the assigned partitions");
  assert.deepEqual(loads, [["a"], ["c"]], "b and d from the snapshot; c had an unsaved state");
  assert.equal((await registry.state("b"))?.lastSeq, 3);
  assert.equal((await registry.state("c"))?.lastSeq, 6);
  assert.equal((await registry.state("d"))?.lastSeq, 0, "not stored: a new device");
  await registry.discard(["a", "b"]);
  stored.set("b", state("b", 8));
  await registry.ensure(["a", "b"], 0);
  assert.deepEqual(loads.at(-1), ["a", "b"], "held when it was taken, or served once: looked up");
  assert.equal((await registry.state("a"))?.lastSeq, 9);
  assert.equal((await registry.state("b"))?.lastSeq, 8);
  await registry.ensure(["e"], 0);
  assert.deepEqual(loads.at(-1), ["e"], "recorded on partition 1, met on 0: it moved, looked up");
  await registry.stop();
});
