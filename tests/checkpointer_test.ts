import assert from "node:assert/strict";
import { Checkpointer, type CheckpointerOptions } from "../actors/checkpointer.ts";
import { DEFAULT_RULE, INITIAL_ALARM_STATE } from "../domain/hysteresis.ts";
import { type DeviceDoc, toDeviceDoc } from "../schemas/documents.ts";
import type { WriteBatch } from "../actors/device_store.ts";
import type { Offsets } from "../actors/reading_source.ts";
import { silentLogger } from "../adapters/log.ts";
import { FakeTime } from "./fake_time.ts";
import { settle } from "./wait.ts";

function state(id: string, lastSeq: number): DeviceDoc {
  return toDeviceDoc(id, { ...INITIAL_ALARM_STATE, lastSeq }, DEFAULT_RULE, new Date(0));
}

/** A checkpointer over a recording store and source, on fake time. */
function setup(options: Pick<CheckpointerOptions, "onWritten"> = {}) {
  const events: string[] = [];
  const written = { gate: undefined as Promise<void> | undefined };
  const store = {
    async write(batch: WriteBatch) {
      if (written.gate) await written.gate;
      events.push(`stored ${batch.devices.map((d) => `${d._id}@${d.lastSeq}`).join(" ")}`);
      return { refused: [] };
    },
  };
  let processed: Offsets = new Map();
  const source = {
    processed: () => processed,
    commit(offsets: Offsets) {
      events.push(`commit ${[...offsets].map(([p, o]) => `${p}:${o}`).join(" ")}`);
      processed = new Map();
      return Promise.resolve();
    },
  };
  const timers = new FakeTime(0);
  const checkpointer = new Checkpointer({
    store,
    everyMs: 100,
    logger: silentLogger,
    timers,
    ...options,
  });
  return {
    checkpointer,
    events,
    written,
    timers,
    source,
    process(offsets: Offsets) {
      processed = offsets;
    },
    advance(ms: number) {
      timers.tick(ms);
    },
  };
}

Deno.test("Checkpointer.checkpoint() stores the added states, then commits the offsets processed before", async () => {
  const t = setup();
  t.checkpointer.attach(t.source);
  t.checkpointer.add(state("a", 3), 0);
  t.checkpointer.add(state("a", 4), 0); // the newest state of a device wins
  t.process(new Map([[0, "17"]]));
  await t.checkpointer.checkpoint();
  assert.deepEqual(t.events, ["stored a@4", "commit 0:17"]);
  assert.deepEqual(t.checkpointer.stats, {
    checkpoints: 1,
    failedCheckpoints: 0,
    pendingStates: 0,
  });
  await t.checkpointer.stop();
});

Deno.test("Checkpointer.add() never takes a device's pending state back to an older one", async () => {
  const t = setup();
  t.checkpointer.attach(t.source);
  t.checkpointer.add(state("a", 5), 0);
  // A batch fetched before a rebalance, stored after the partition was read again past it.
  t.checkpointer.add(state("a", 3), 0);
  assert.equal(t.checkpointer.unsaved("a")?.lastSeq, 5);
  t.process(new Map([[0, "9"]]));
  await t.checkpointer.checkpoint();
  assert.deepEqual(t.events, ["stored a@5", "commit 0:9"]);
  // Nor to one older than the state being written.
  const gate = Promise.withResolvers<void>();
  t.written.gate = gate.promise;
  t.checkpointer.add(state("a", 8), 0);
  const writing = t.checkpointer.checkpoint();
  t.checkpointer.add(state("a", 6), 0);
  gate.resolve();
  await writing;
  assert.equal(t.checkpointer.unsaved("a"), undefined);
  await t.checkpointer.stop();
});

Deno.test("Checkpointer.unsaved() answers the state waiting or being written, and none once stored", async () => {
  const t = setup();
  t.checkpointer.attach(t.source);
  t.checkpointer.add(state("a", 2), 0);
  assert.equal(t.checkpointer.unsaved("a")?.lastSeq, 2);
  const gate = Promise.withResolvers<void>();
  t.written.gate = gate.promise;
  const checkpoint = t.checkpointer.checkpoint();
  await settle(); // its write waits on the gate
  assert.equal(t.checkpointer.unsaved("a")?.lastSeq, 2, "being written");
  t.checkpointer.add(state("a", 5), 0);
  assert.equal(t.checkpointer.unsaved("a")?.lastSeq, 5, "the waiting state is newer");
  gate.resolve();
  await checkpoint;
  assert.equal(t.checkpointer.unsaved("a")?.lastSeq, 5);
  await t.checkpointer.checkpoint();
  assert.equal(t.checkpointer.unsaved("a"), undefined);
  assert.equal(t.checkpointer.unsaved("nobody"), undefined);
  await t.checkpointer.stop();
});

Deno.test("Checkpointer.keepOnly() forgets the states of partitions no longer owned", async () => {
  const t = setup();
  t.checkpointer.attach(t.source);
  t.checkpointer.add(state("a", 1), 0);
  t.checkpointer.add(state("b", 1), 1);
  t.checkpointer.keepOnly(new Set([0]));
  assert.equal(t.checkpointer.unsaved("b"), undefined);
  await t.checkpointer.checkpoint();
  assert.deepEqual(t.events, ["stored a@1"]);
  await t.checkpointer.stop();
});

Deno.test("Checkpointer reports the states it stored, without those of partitions revoked during the write", async () => {
  const seen: string[] = [];
  const t = setup({
    onWritten: (states, stored) =>
      seen.push(`${stored ? "stored" : "unsure"} ${states.map((d) => `${d._id}@${d.lastSeq}`)}`),
  });
  t.checkpointer.attach(t.source);
  t.checkpointer.add(state("a", 1), 0);
  t.checkpointer.add(state("b", 1), 1);
  const gate = Promise.withResolvers<void>();
  t.written.gate = gate.promise;
  const checkpoint = t.checkpointer.checkpoint();
  await settle(); // its write waits on the gate
  t.checkpointer.keepOnly(new Set([0]));
  assert.deepEqual(seen, [], "nothing before the write is acknowledged");
  gate.resolve();
  await checkpoint;
  assert.deepEqual(t.events, ["stored a@1 b@1"]);
  assert.deepEqual(seen, ["stored a@1"]);
  await t.checkpointer.stop();
});

Deno.test("Checkpointer reports every state of a failed write as unsure", async () => {
  const seen: string[] = [];
  const failing = new Error("Store write failed: not primary");
  const t = setup({
    onWritten: (states, stored) =>
      seen.push(`${stored ? "stored" : "unsure"} ${states.map((d) => `${d._id}@${d.lastSeq}`)}`),
  });
  t.checkpointer.attach(t.source);
  t.checkpointer.add(state("a", 2), 0);
  t.checkpointer.add(state("b", 1), 1);
  t.written.gate = Promise.reject(failing);
  await assert.rejects(t.checkpointer.checkpoint(), failing);
  assert.deepEqual(seen, ["unsure a@2,b@1"]);
  t.written.gate = undefined;
  await t.checkpointer.checkpoint();
  assert.deepEqual(seen, ["unsure a@2,b@1", "stored a@2,b@1"]);
  await t.checkpointer.stop();
});

Deno.test("Checkpointer.attach() checkpoints on its timers every period until stop()", async () => {
  const t = setup();
  t.checkpointer.attach(t.source);
  t.checkpointer.add(state("a", 1), 0);
  t.advance(99);
  await Promise.resolve();
  assert.deepEqual(t.events, [], "not due yet");
  t.advance(1);
  await settle();
  assert.deepEqual(t.events, ["stored a@1"]);
  assert.equal(t.timers.pending, 1, "the next one is scheduled");
  await t.checkpointer.stop();
  assert.equal(t.timers.pending, 0);
});

/** `count` changed devices, `readings` readings stored for them in all. */
function addStates(c: Checkpointer, count: number, readings: number, from = 0) {
  for (let i = 0; i < count; i++) {
    c.add(
      state(`d${from + i}`, 1),
      0,
      Math.floor(readings / count) + (i < readings % count ? 1 : 0),
    );
  }
}

Deno.test("Checkpointer.attach() holds back a checkpoint of 1 000 states or more until ten readings were stored per state, or 30 s passed", async () => {
  const t = setup();
  t.checkpointer.attach(t.source);
  addStates(t.checkpointer, 1000, 9_000);
  t.advance(100);
  await settle();
  assert.deepEqual(t.events, [], "0.11 states per reading: held back");
  addStates(t.checkpointer, 1, 1_000, 1000); // 1 001 states, 10 000 readings: still over 0.1
  t.advance(100);
  await settle();
  assert.deepEqual(t.events, []);
  t.checkpointer.add(state("d0", 2), 0, 100); // 10 100 readings for 1 001 states
  t.advance(100);
  await settle();
  assert.equal(t.events.length, 1, "under 0.1 states per reading: written");
  // Two readings per state: held back up to 30 s, then written.
  addStates(t.checkpointer, 2000, 4000, 5000);
  t.advance(29_800);
  await settle();
  assert.equal(t.events.length, 1);
  t.advance(300);
  await settle();
  assert.equal(t.events.length, 2, "0.5 states per reading: written once 30 s passed");
  await t.checkpointer.stop();
});

Deno.test("Checkpointer.attach() holds back a checkpoint of about one state per reading past 30 s, up to two minutes", async () => {
  const t = setup();
  t.checkpointer.attach(t.source);
  // A fleet larger than the store keeps up with: each device stored about once since.
  addStates(t.checkpointer, 10_000, 12_000);
  t.advance(60_000);
  await settle();
  assert.deepEqual(t.events, [], "0.83 states per reading at 60 s: held back");
  for (let i = 0; i < 10_000; i++) t.checkpointer.add(state(`d${i}`, 2), 0, 1);
  t.advance(100);
  await settle();
  assert.equal(t.events.length, 1, "0.45 states per reading once devices reported twice");
  addStates(t.checkpointer, 10_000, 10_000, 20_000);
  t.advance(119_000);
  await settle();
  assert.equal(t.events.length, 1);
  t.advance(1_100);
  await settle();
  assert.equal(t.events.length, 2, "written at two minutes whatever the ratio");
  await t.checkpointer.stop();
});
