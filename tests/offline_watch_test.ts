import assert from "node:assert/strict";
import { type Actor, ask } from "../actors/actor.ts";
import { createProcessor, type DeviceOutput, type ProcessorMsg } from "../actors/processor.ts";
import { OfflineWatch } from "../actors/offline_watch.ts";
import type { WriteBatch, WriteResult } from "../actors/device_store.ts";
import { DEFAULT_RULE, INITIAL_ALARM_STATE } from "../domain/hysteresis.ts";
import type { AlertDoc } from "../schemas/documents.ts";
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
function harness(start = BASE_MS, activeAlerts?: () => Promise<readonly AlertDoc[]>) {
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
  });
  watch.attach(source);
  const processors = new Map<string, Actor<ProcessorMsg>>();
  /** One stored batch of `partition`: the processors apply it, the store takes it, the watch sees it. */
  async function batch(partition: number, readings: readonly Reading[]) {
    const outputs: DeviceOutput[] = [];
    for (const [id, list] of Map.groupBy(readings, (r) => r.deviceId)) {
      let actor = processors.get(id);
      if (!actor) {
        actor = createProcessor(id, INITIAL_ALARM_STATE, {
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
    watch.observe(outputs, partition);
  }
  return {
    time,
    store,
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
