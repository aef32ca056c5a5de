import assert from "node:assert/strict";
import { type Actor, ask } from "../actors/actor.ts";
import { createProcessor, type DeviceOutput, type ProcessorMsg } from "../actors/processor.ts";
import { OfflineWatch, type OfflineWatchOptions } from "../actors/offline_watch.ts";
import type { WriteBatch, WriteResult } from "../actors/device_store.ts";
import { DEFAULT_RULE, INITIAL_ALARM_STATE } from "../domain/hysteresis.ts";
import type { AlertDoc, DeviceDoc } from "../schemas/documents.ts";
import type { Reading } from "../schemas/reading.ts";
import { silentLogger } from "../adapters/log.ts";
import { FakeTime } from "./fake_time.ts";

const BASE_MS = Date.UTC(2026, 10, 30, 12);
const LIMIT = 9000;
const GRACE = 2000;

function reading(deviceId: string, seq: number, tsMs: number): Reading {
  return {
    deviceId,
    seq,
    ts: new Date(tsMs).toISOString(),
    temperature: 20,
    humidity: 50,
    location: { lat: 48.85, lon: 2.35 },
    offlineAfterMs: LIMIT,
  };
}

/** A store that keeps the latest snapshot of each alert, as the real ones do (`asOfSeq`). */
class AlertStore {
  readonly alerts = new Map<string, AlertDoc>();
  writes = 0;
  fail = false;

  write(batch: WriteBatch): Promise<WriteResult> {
    if (this.fail) return Promise.reject(new Error("store down"));
    this.writes++;
    for (const a of batch.alerts) {
      if ((this.alerts.get(a._id)?.asOfSeq ?? -1) <= a.asOfSeq) this.alerts.set(a._id, a);
    }
    return Promise.resolve({ refused: [] });
  }

  offline(): AlertDoc[] {
    return [...this.alerts.values()].filter((a) => a.type === "offline");
  }
}

/**
 * The offline watch with what the processors' supervisor gives it: each device's processor,
 * the store its batches and the watch write to, a source that says which partitions are
 * caught up, and a fake clock.
 */
function harness(
  start = BASE_MS,
  activeAlerts?: () => Promise<readonly AlertDoc[]>,
  options: Pick<OfflineWatchOptions, "currentStates" | "statesIn"> & {
    /** Stored states the processors restore from (as the device registry would). */
    readonly restore?: ReadonlyMap<string, DeviceDoc>;
  } = {},
) {
  const { restore, ...watchOptions } = options;
  const time = new FakeTime(start);
  const store = new AlertStore();
  const source = {
    idle: new Set<number>(),
    fail: false,
    caughtUp(): Promise<ReadonlySet<number>> {
      return this.fail ? Promise.reject(new Error("broker down")) : Promise.resolve(this.idle);
    },
  };
  const watch = new OfflineWatch({
    writer: store,
    graceMs: GRACE,
    tickMs: 1000,
    logger: silentLogger,
    timers: time,
    ...(activeAlerts ? { activeAlerts } : {}),
    ...watchOptions,
  });
  watch.attach(source);
  const processors = new Map<string, Actor<ProcessorMsg>>();
  /** Each device's state as the processors' checkpoint stores it: with its partition. */
  const devices = new Map<string, DeviceDoc>();
  /** One stored batch of `partition`: the processors apply it, the store takes it, the watch sees it. */
  async function batch(partition: number, readings: readonly Reading[]) {
    const outputs: DeviceOutput[] = [];
    for (const [id, list] of Map.groupBy(readings, (r) => r.deviceId)) {
      let actor = processors.get(id);
      if (!actor) {
        actor = createProcessor(id, restore?.get(id)?.alarm ?? INITIAL_ALARM_STATE, {
          default: DEFAULT_RULE,
          current: DEFAULT_RULE,
        }, (error) => {
          throw error;
        });
        processors.set(id, actor);
      }
      outputs.push(
        await ask<ProcessorMsg, DeviceOutput>(actor, (reply) => ({
          type: "apply",
          readings: list,
          processedAt: new Date(time.now()),
          reply,
        })),
      );
    }
    await store.write({ readings: [], alerts: outputs.flatMap((o) => o.alerts), devices: [] });
    for (const o of outputs) devices.set(o.device.deviceId, { ...o.device, partition });
    watch.observe(outputs, partition);
  }
  return {
    time,
    store,
    devices,
    source,
    watch,
    batch,
    async [Symbol.asyncDispose]() {
      await watch.stop();
      for (const actor of processors.values()) await actor.stop();
    },
  };
}

Deno.test("OfflineWatch raises a silent device's alert once its caught-up partition's clock passes offlineAfterMs + grace", async () => {
  await using h = harness();
  h.source.idle.add(0);
  await h.batch(0, [reading("a", 1, BASE_MS)]);
  await h.time.tickAsync(LIMIT + GRACE - 1);
  assert.deepEqual(h.store.offline(), [], "not yet: within offlineAfterMs + grace");
  await h.time.tickAsync(1000);
  const [alert, ...rest] = h.store.offline();
  assert.deepEqual(rest, []);
  assert.equal(alert?._id, "a:offline:1");
  assert.equal(alert?.status, "active");
  assert.deepEqual(alert?.raisedAt, new Date(BASE_MS + LIMIT), "dated from event time");
  assert.deepEqual(alert?.lastSeenAt, new Date(BASE_MS));
  assert.equal(alert?.offlineAfterMs, LIMIT);
  assert.equal(h.watch.stats.devicesOffline, 1);
  const writes = h.store.writes;
  await h.time.tickAsync(60_000);
  assert.equal(h.store.writes, writes, "raised once, not at every check");
  assert.equal(h.watch.stats.offlineRaised, 1);
});

Deno.test("OfflineWatch raises nothing while its partition lags, however far the clock runs", async () => {
  // A backlog from ten minutes ago, every device reporting each second: consumed late.
  await using h = harness(BASE_MS + 600_000);
  for (let s = 0; s < 30; s++) {
    await h.batch(0, [
      reading("a", s + 1, BASE_MS + s * 1000),
      reading("b", s + 1, BASE_MS + s * 1000 + 500),
    ]);
    await h.time.tickAsync(5000);
  }
  await h.time.tickAsync(600_000);
  assert.deepEqual(h.store.offline(), []);
  assert.equal(h.watch.stats.devicesOffline, 0);
  // Caught up at last: both really are silent now, since their last reading.
  h.source.idle.add(0);
  await h.time.tickAsync(1000);
  assert.deepEqual(
    h.store.offline().map((a) => [a._id, a.raisedAt.getTime()]).sort(),
    [["a:offline:30", BASE_MS + 29_000 + LIMIT], ["b:offline:30", BASE_MS + 29_500 + LIMIT]],
  );
});

Deno.test("OfflineWatch finds a silence inside a backlog from the readings alone", async () => {
  await using h = harness(BASE_MS + 600_000);
  // "a" stops for 20 s while "b" goes on: the backlog itself shows it, no clock needed.
  const b = Array.from({ length: 30 }, (_, s) => reading("b", s + 1, BASE_MS + s * 1000));
  await h.batch(0, [reading("a", 1, BASE_MS), ...b.slice(0, 15)]);
  await h.time.tickAsync(1000);
  const [open] = h.store.offline();
  assert.equal(open?._id, "a:offline:1");
  assert.equal(open?.status, "active");
  await h.batch(0, [...b.slice(15), reading("a", 2, BASE_MS + 20_000)]);
  const [closed, ...rest] = h.store.offline();
  assert.deepEqual(rest, []);
  assert.equal(closed?.status, "cleared");
  assert.equal(closed?.clearedSeq, 2);
  assert.deepEqual(closed?.raisedAt, new Date(BASE_MS + LIMIT));
  assert.deepEqual(closed?.clearedAt, new Date(BASE_MS + 20_000));
  assert.equal(h.watch.stats.devicesOffline, 0);
});

Deno.test("OfflineWatch raises every device of a partition that went quiet as a whole", async () => {
  await using h = harness();
  h.source.idle.add(1);
  await h.batch(1, [reading("a", 1, BASE_MS), reading("b", 4, BASE_MS + 100)]);
  await h.batch(2, [reading("c", 1, BASE_MS)]);
  await h.time.tickAsync(LIMIT + GRACE + 1000);
  assert.deepEqual(h.store.offline().map((a) => a._id).sort(), ["a:offline:1", "b:offline:4"]);
});

Deno.test("OfflineWatch: the next reading clears the alert, and a replay without the clock stores the same episode", async () => {
  const readings = [reading("a", 1, BASE_MS), reading("a", 2, BASE_MS + 60_000)];
  let live: AlertDoc[];
  {
    await using h = harness();
    h.source.idle.add(0);
    await h.batch(0, readings.slice(0, 1));
    await h.time.tickAsync(LIMIT + GRACE + 1000);
    assert.equal(h.store.offline()[0]?.status, "active");
    await h.time.tickAsync(60_000 - LIMIT - GRACE - 1000);
    await h.batch(0, readings.slice(1));
    live = h.store.offline();
    assert.equal(live[0]?.status, "cleared");
    assert.equal(h.watch.stats.offlineCleared, 1);
  }
  // After a crash the readings are replayed in one go, long after: the same document.
  await using replay = harness(BASE_MS + 3_600_000);
  await replay.batch(0, readings);
  assert.deepEqual(replay.store.offline(), live);
});

Deno.test("OfflineWatch withdraws an alert its next reading shows was no silence in event time", async () => {
  await using h = harness();
  h.source.idle.add(0);
  await h.batch(0, [reading("a", 1, BASE_MS)]);
  await h.time.tickAsync(LIMIT + GRACE + 1000);
  assert.equal(h.store.offline()[0]?.status, "active");
  // Held up before the topic (a producer outage): stamped 5 s after the last one.
  await h.batch(0, [reading("a", 2, BASE_MS + 5000)]);
  await h.time.tickAsync(1000);
  const [alert] = h.store.offline();
  assert.equal(alert?.status, "cleared");
  assert.equal(alert?.withdrawn, true);
  assert.equal(alert?.clearedSeq, 2);
  assert.equal(h.watch.stats.offlineWithdrawn, 1);
  assert.equal(h.watch.stats.devicesOffline, 0);
});

Deno.test("OfflineWatch forgets the devices of a partition it lost", async () => {
  await using h = harness();
  h.source.idle.add(0);
  await h.batch(0, [reading("a", 1, BASE_MS)]);
  h.watch.onAssignment([1]);
  await h.time.tickAsync(LIMIT + GRACE + 1000);
  assert.deepEqual(h.store.offline(), []);
});

Deno.test("OfflineWatch raises nothing when the source cannot say it is caught up, and retries a failed write", async () => {
  await using h = harness();
  h.source.idle.add(0);
  h.source.fail = true;
  await h.batch(0, [reading("a", 1, BASE_MS)]);
  await h.time.tickAsync(LIMIT + GRACE + 5000);
  assert.deepEqual(h.store.offline(), [], "late, never false");
  assert.ok(h.watch.stats.failedOfflineChecks > 0);
  h.source.fail = false;
  h.store.fail = true;
  await h.time.tickAsync(1000);
  assert.equal(h.watch.stats.devicesOffline, 0, "not offline until stored");
  h.store.fail = false;
  await h.time.tickAsync(1000);
  assert.equal(h.store.offline()[0]?._id, "a:offline:1");
  assert.equal(h.watch.stats.offlineRaised, 1);
});

Deno.test("OfflineWatch withdraws an episode raised before a restart once the device's next reading shows no silence", async () => {
  let stored: AlertDoc[] = [];
  {
    await using before = harness();
    before.source.idle.add(0);
    await before.batch(0, [reading("a", 1, BASE_MS)]);
    await before.time.tickAsync(LIMIT + GRACE + 1000);
    stored = before.store.offline();
    assert.equal(stored[0]?.status, "active");
  }
  // A new member: it never saw "a" before, only the alert stored.
  await using h = harness(BASE_MS + 20_000, () => Promise.resolve(stored));
  for (const a of stored) h.store.alerts.set(a._id, a);
  h.watch.onAssignment([0]);
  await h.time.tickAsync(1000);
  await h.batch(0, [reading("a", 2, BASE_MS + 4000)]);
  await h.time.tickAsync(1000);
  const [alert] = h.store.offline();
  assert.equal(alert?.withdrawn, true);
  assert.equal(alert?.clearedSeq, 2);
});

/** Runs `readings` on partition 0 of a watch that is stopped before any of them is offline. */
async function beforeRestart(readings: readonly Reading[]) {
  await using before = harness();
  before.source.idle.add(0);
  await before.batch(0, readings);
  assert.deepEqual(before.store.offline(), [], "stopped before the deadline");
  return before.devices;
}

/** The episodes an uninterrupted watch raises for `readings` on an idle partition 0. */
async function withoutRestart(readings: readonly Reading[]) {
  await using h = harness();
  h.source.idle.add(0);
  await h.batch(0, readings);
  await h.time.tickAsync(LIMIT + GRACE + 2000);
  return h.store.offline();
}

Deno.test("OfflineWatch resumes a device silent across a restart from its stored state: the same episode as without the restart", async () => {
  const readings = [reading("a", 1, BASE_MS), reading("a", 2, BASE_MS + 1000)];
  const expected = await withoutRestart(readings);
  assert.deepEqual(expected.map((a) => a._id), ["a:offline:2"]);
  const stored = await beforeRestart(readings);
  assert.equal(stored.get("a")?.partition, 0);
  assert.equal(stored.get("a")?.offlineAfterMs, LIMIT, "the processor keeps the reading's limit");

  // The new process starts 3 s later; its partition is caught up and nothing else comes.
  await using h = harness(BASE_MS + 4000);
  h.source.idle.add(0);
  h.watch.onAssignment([0], Promise.resolve(stored));
  await h.time.tickAsync(1000);
  assert.equal(h.watch.stats.devicesResumed, 1);
  // The clock resumes from the latest stored reading as if consumed at the restart: later, never
  // sooner, than without it.
  await h.time.tickAsync(LIMIT + GRACE - 2000);
  assert.deepEqual(h.store.offline(), [], "not before its deadline plus the grace");
  await h.time.tickAsync(2000);
  assert.deepEqual(h.store.offline(), expected, "the same id and fields");
  assert.equal(h.watch.stats.devicesOffline, 1);
});

Deno.test("OfflineWatch raises a resumed device from a lagging partition's readings only, and lets its next reading clear it", async () => {
  const stored = await beforeRestart([reading("a", 1, BASE_MS), reading("b", 1, BASE_MS)]);
  await using h = harness(BASE_MS + 600_000, undefined, { restore: stored });
  h.watch.onAssignment([0], Promise.resolve(stored));
  await h.time.tickAsync(60_000);
  assert.deepEqual(h.store.offline(), [], "replaying: the clock follows the readings");
  // The replay shows b kept reporting and a did not.
  await h.batch(0, [reading("b", 2, BASE_MS + 5000)]);
  await h.batch(0, [reading("b", 3, BASE_MS + LIMIT + GRACE + 1000)]);
  await h.time.tickAsync(1000);
  assert.deepEqual(h.store.offline().map((a) => [a._id, a.status]), [["a:offline:1", "active"]]);
  await h.batch(0, [reading("a", 2, BASE_MS + 60_000)]);
  assert.deepEqual(h.store.offline().map((a) => [a._id, a.status]), [["a:offline:1", "cleared"]]);
  assert.equal(h.watch.stats.devicesOffline, 0);
});

Deno.test("OfflineWatch resumes only devices recorded on its partitions with a limit, and counts a stored open episode as offline without raising it again", async () => {
  const stored = await beforeRestart([reading("a", 1, BASE_MS)]);
  const [open] = await withoutRestart([reading("a", 1, BASE_MS)]);
  const { partition: _, ...unknown } = { ...stored.get("a")!, _id: "u", deviceId: "u" };
  const { offlineAfterMs: __, ...limitless } = { ...stored.get("a")!, _id: "n", deviceId: "n" };
  const states = new Map<string, DeviceDoc>([
    ["a", stored.get("a")!],
    ["o", { ...stored.get("a")!, _id: "o", deviceId: "o", partition: 1 }],
    ["u", unknown],
    ["n", limitless],
  ]);
  await using h = harness(BASE_MS + 30_000, () => Promise.resolve([open!]));
  h.store.alerts.set(open!._id, open!);
  h.source.idle.add(0);
  h.watch.onAssignment([0], Promise.resolve(states));
  await h.time.tickAsync(LIMIT + GRACE + 5000);
  assert.equal(h.watch.stats.devicesResumed, 1, "only a: o is partition 1's, u and n unknown");
  assert.equal(h.watch.stats.devicesOffline, 1, "a's stored episode is open");
  assert.equal(h.store.writes, 0, "nothing raised again");
});

Deno.test("OfflineWatch raises a device that moved partition once, and not at all if it reported since elsewhere", async () => {
  const stored = await beforeRestart([reading("a", 1, BASE_MS), reading("b", 1, BASE_MS)]);
  const lookups: string[][] = [];
  await using h = harness(BASE_MS + 4000, undefined, {
    // b reported since, on a partition of another member (the partition count changed).
    currentStates: (ids) => {
      lookups.push([...ids]);
      return Promise.resolve(
        new Map(ids.map((id) => {
          const doc = stored.get(id)!;
          return [id, id === "b" ? { ...doc, lastSeq: 2, partition: 5 } : doc];
        })),
      );
    },
  });
  h.source.idle.add(0).add(1);
  h.watch.onAssignment([0, 1], Promise.resolve(stored));
  await h.time.tickAsync(1000);
  // a now arrives on partition 1: it is watched there only.
  await h.batch(1, [reading("a", 2, BASE_MS + 2000)]);
  await h.time.tickAsync(LIMIT + GRACE + 5000);
  assert.deepEqual(h.store.offline().map((a) => a._id), ["a:offline:2"]);
  assert.deepEqual(lookups, [["b"]], "only resumed devices are looked up, once");
  assert.equal(h.watch.stats.devicesOffline, 1);
});

Deno.test("OfflineWatch reads its partitions' states again when the prefetch failed", async () => {
  const stored = await beforeRestart([reading("a", 1, BASE_MS)]);
  let reads = 0;
  await using h = harness(BASE_MS + 4000, undefined, {
    statesIn: (partitions) => {
      reads++;
      assert.deepEqual(partitions, [0]);
      return Promise.resolve(stored);
    },
  });
  h.source.idle.add(0);
  h.watch.onAssignment([0], Promise.reject(new Error("store down")));
  await h.time.tickAsync(1000);
  assert.equal(h.watch.stats.devicesResumed, 0);
  assert.equal(h.watch.stats.failedOfflineChecks, 1);
  await h.time.tickAsync(1000);
  assert.equal(reads, 1);
  assert.equal(h.watch.stats.devicesResumed, 1);
  await h.time.tickAsync(LIMIT + GRACE);
  assert.deepEqual(h.store.offline().map((a) => a._id), ["a:offline:1"]);
});
