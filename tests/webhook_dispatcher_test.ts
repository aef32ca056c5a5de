/**
 * The webhook dispatcher against a real local HTTP receiver and the real
 * stores (Deno KV always, MongoDB protocol when available). Time is the
 * injected fake clock: a receiver "down for 60 s" costs no wall time.
 */
import "./env_guard.ts";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { KvStore } from "../adapters/kv_store.ts";
import { MongoStore } from "../adapters/mongo_store.ts";
import { silentLogger } from "../adapters/log.ts";
import { httpWebhookTransport } from "../adapters/webhook_http.ts";
import { WebhookDispatcher } from "../actors/webhook_dispatcher.ts";
import type { WebhookStore } from "../actors/webhook_store.ts";
import type { DeviceStore } from "../actors/device_store.ts";
import type { StoreQueries } from "../actors/store_queries.ts";
import { type AlertDoc, toAlertDoc } from "../schemas/documents.ts";
import { DEFAULT_RULE } from "../domain/hysteresis.ts";
import { FakeTime } from "./fake_time.ts";
import { MONGO_URL, tempDb } from "./fixtures.ts";
import { testWith } from "./needs.ts";
import { until } from "./wait.ts";

const permitted = await testWith();
const mongo = await testWith({ mongo: true });

const SECRET = "webhook-test-secret-0123";
type TestStore = WebhookStore & DeviceStore & StoreQueries & AsyncDisposable;

interface Received {
  readonly key: string;
  readonly body: string;
  readonly event: string;
}

/** A real HTTP receiver on a free port; answers 503 while `down`, else 200. */
function receiver() {
  const state = { down: true, refused: 0, received: [] as Received[], badSignatures: 0 };
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, async (req) => {
    const body = await req.text();
    if (state.down) {
      state.refused++;
      return new Response("down", { status: 503 });
    }
    const expected = `sha256=${createHmac("sha256", SECRET).update(body).digest("hex")}`;
    if (req.headers.get("x-signature-256") !== expected) state.badSignatures++;
    state.received.push({
      key: req.headers.get("idempotency-key") ?? "",
      body,
      event: req.headers.get("x-webhook-event") ?? "",
    });
    return new Response(null, { status: 204 });
  });
  return {
    state,
    url: `http://127.0.0.1:${server.addr.port}/hook`,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

function overheat(deviceId: string, raisedSeq: number, clearedSeq?: number): AlertDoc {
  const ts = (seq: number) => new Date(Date.UTC(2026, 10, 30, 12, 0, seq)).toISOString();
  const episode = { raisedSeq, raisedAt: ts(raisedSeq), peakTemperature: 80 };
  return toAlertDoc(
    deviceId,
    episode,
    DEFAULT_RULE,
    clearedSeq === undefined ? undefined : { seq: clearedSeq, ts: ts(clearedSeq) },
  );
}

function dispatcher(store: WebhookStore, time: FakeTime, maxAttempts = 100) {
  let seed = 42;
  return new WebhookDispatcher({
    store,
    transport: httpWebhookTransport,
    timers: time,
    logger: silentLogger,
    pollMs: 1000,
    maxAttempts,
    backoff: { baseMs: 1000, capMs: 8000 },
    timeoutMs: 5000,
    leaseMs: 15_000,
    retentionMs: 7 * 86_400_000,
    random: () => (seed = (seed * 16807) % 2147483647) / 2147483647,
  });
}

/** Moves the fake clock one poll at a time, each poll and its attempts finished before the next. */
async function advance(time: FakeTime, d: WebhookDispatcher, ms: number, done?: () => boolean) {
  for (let t = 0; t < ms; t += 1000) {
    time.tick(1000);
    await until("the dispatcher to finish its poll", () => !d.busy);
    if (done?.()) return;
  }
}

async function kvStore(): Promise<{ store: TestStore } & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "iot-webhook-test-" });
  const store = await KvStore.open(`${dir}/iot.kv`);
  return {
    store,
    async [Symbol.asyncDispose]() {
      await store[Symbol.asyncDispose]();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

async function mongoStore(): Promise<{ store: TestStore } & AsyncDisposable> {
  const tmp = await tempDb("webhooks");
  const store = await MongoStore.open(MONGO_URL, tmp.name, silentLogger);
  return {
    store,
    async [Symbol.asyncDispose]() {
      await store[Symbol.asyncDispose]();
      await tmp[Symbol.asyncDispose]();
    },
  };
}

async function downThenUp(open: () => Promise<{ store: TestStore } & AsyncDisposable>) {
  await using opened = await open();
  const { store } = opened;
  await using hook = receiver();
  await store.addWebhook({
    _id: crypto.randomUUID(),
    url: hook.url,
    events: ["raise", "clear", "offline", "ack"],
    secret: SECRET,
    createdAt: new Date(),
  });
  // A second subscription that wants only clears.
  await store.addWebhook({
    _id: crypto.randomUUID(),
    url: hook.url,
    events: ["clear"],
    secret: SECRET,
    createdAt: new Date(),
  });
  const offline: AlertDoc = {
    _id: "d3:offline:7",
    deviceId: "d3",
    type: "offline",
    status: "active",
    raisedAt: new Date("2026-11-30T12:00:20Z"),
    raisedSeq: 7,
    asOfSeq: 7,
  };
  await store.write({ readings: [], alerts: [offline], devices: [] });
  // Two episodes raised; one clears; the same writes replayed (as after a crash); one acked.
  await store.write({ readings: [], alerts: [overheat("d1", 3), overheat("d2", 5)], devices: [] });
  await store.write({ readings: [], alerts: [overheat("d1", 3, 9)], devices: [] });
  await store.write({
    readings: [],
    alerts: [overheat("d1", 3), overheat("d1", 3, 9)],
    devices: [],
  });
  await store.acknowledge("d2:overheat:5", { ackedBy: "ana", ackedAt: new Date() });
  const expected = [
    "d3:offline:7:offline",
    "d1:overheat:3:raise",
    "d1:overheat:3:clear",
    "d2:overheat:5:raise",
    "d2:overheat:5:ack",
  ].sort();
  assert.deepEqual((await store.pendingEvents(100)).map((e) => e.event._id).sort(), expected);

  const time = new FakeTime();
  await using d = dispatcher(store, time);
  await advance(time, d, 60_000);
  assert.ok(hook.state.refused >= expected.length, `refused ${hook.state.refused}`);
  assert.equal(hook.state.received.length, 0);
  assert.equal(d.stats.delivered, 0);

  hook.state.down = false;
  // The clear goes to both subscriptions.
  await advance(time, d, 120_000, () => d.stats.delivered === expected.length + 1);
  await advance(time, d, 2000); // The next poll settles the delivered events.
  assert.deepEqual([...new Set(hook.state.received.map((r) => r.key))].sort(), expected);
  const clears = hook.state.received.filter((r) => r.key === "d1:overheat:3:clear");
  assert.ok(clears.length >= 2, "the clear reaches both subscriptions");
  // Duplicates, if any, carry the same key and the same body.
  const byKey = new Map<string, string>();
  for (const r of hook.state.received) {
    assert.equal(byKey.get(r.key) ?? r.body, r.body);
    byKey.set(r.key, r.body);
    assert.equal(JSON.parse(r.body).id, r.key);
    assert.equal(JSON.parse(r.body).event, r.event);
  }
  assert.equal(hook.state.badSignatures, 0);
  assert.equal(d.stats.deadLettered, 0);
  assert.ok(d.stats.failedAttempts >= expected.length);
  assert.deepEqual(await store.pendingEvents(100), []);
}

permitted.test("WebhookDispatcher delivers every event once a receiver down for 60 s returns (Deno KV)", () =>
  downThenUp(kvStore));

mongo.test("WebhookDispatcher delivers every event once a receiver down for 60 s returns (MongoDB)", () =>
  downThenUp(mongoStore));

permitted.test("WebhookDispatcher dead-letters a delivery after the last attempt and settles the event", async () => {
  await using opened = await kvStore();
  const { store } = opened;
  // A port nobody listens on: every attempt is refused.
  const closed = Deno.listen({ port: 0, hostname: "127.0.0.1" });
  const port = (closed.addr as Deno.NetAddr).port;
  closed.close();
  const id = crypto.randomUUID();
  await store.addWebhook({
    _id: id,
    url: `http://127.0.0.1:${port}/hook`,
    events: ["raise"],
    secret: SECRET,
    createdAt: new Date(),
  });
  await store.write({ readings: [], alerts: [overheat("d1", 3)], devices: [] });
  const time = new FakeTime();
  await using d = dispatcher(store, time, 3);
  await advance(time, d, 60_000, () => d.stats.deadLettered === 1);
  assert.equal(d.stats.deadLettered, 1);
  assert.equal(d.stats.failedAttempts, 3);
  await advance(time, d, 2000);
  const dead = await store.deadLetters(id, 10);
  assert.deepEqual(dead.map((l) => [l.eventId, l.outcome.status, l.outcome.attempts]), [
    ["d1:overheat:3:raise", "dead", 3],
  ]);
  assert.deepEqual(await store.pendingEvents(10), []);
});

permitted.test("WebhookDispatcher stopped without draining leaves its events to the next one", async () => {
  const dir = await Deno.makeTempDir({ prefix: "iot-webhook-test-" });
  await using hook = receiver();
  const time = new FakeTime();
  {
    await using store = await KvStore.open(`${dir}/iot.kv`);
    await store.addWebhook({
      _id: crypto.randomUUID(),
      url: hook.url,
      events: ["raise", "clear"],
      secret: SECRET,
      createdAt: new Date(),
    });
    await store.write({ readings: [], alerts: [overheat("d1", 3, 6)], devices: [] });
    await using d = dispatcher(store, time);
    await advance(time, d, 10_000);
    assert.ok(hook.state.refused > 0);
  }
  hook.state.down = false;
  {
    await using store = await KvStore.open(`${dir}/iot.kv`);
    await using d = dispatcher(store, time);
    await advance(time, d, 60_000, () => d.stats.delivered === 2);
    assert.deepEqual(hook.state.received.map((r) => r.key).sort(), [
      "d1:overheat:3:clear",
      "d1:overheat:3:raise",
    ]);
  }
  await Deno.remove(dir, { recursive: true });
});
