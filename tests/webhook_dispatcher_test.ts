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
import { WebhookDispatcher, type WebhookDispatcherOptions } from "../actors/webhook_dispatcher.ts";
import type { WebhookStore } from "../actors/webhook_store.ts";
import type { DeviceStore } from "../actors/device_store.ts";
import type { StoreQueries } from "../actors/store_queries.ts";
import { type AlertDoc, toAlertDoc } from "../schemas/documents.ts";
import type { OutboxEvent, WebhookEventType } from "../schemas/webhook.ts";
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
    /** Every delivered key, repeats included. */
    received: () => state.received.map((r) => r.key),
    keys: () => [...new Set(state.received.map((r) => r.key))].sort(),
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

function dispatcher(
  store: WebhookStore,
  time: FakeTime,
  maxAttempts = 100,
  extra: Partial<WebhookDispatcherOptions> = {},
) {
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
    ...extra,
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

/**
 * Replays (a crash before the checkpoint writes the alerts again) of events a subscription wants
 * are looked for among the settled ones and never delivered twice; the others are settled again
 * without that look-up (on FerretDB it reads every settled event).
 */
async function replays(
  open: () => Promise<{ store: TestStore } & AsyncDisposable>,
  { looksUpReplays }: { readonly looksUpReplays: boolean },
) {
  await using opened = await open();
  const { store } = opened;
  await using hook = receiver();
  hook.state.down = false;
  await store.addWebhook({
    _id: crypto.randomUUID(),
    url: hook.url,
    events: ["clear"],
    secret: SECRET,
    createdAt: new Date(),
  });
  const asked: [string, boolean][] = [];
  const spy: WebhookStore = {
    addWebhook: (doc) => store.addWebhook(doc),
    webhooks: () => store.webhooks(),
    removeWebhook: (id) => store.removeWebhook(id),
    acquireLease: (owner, now, ttl) => store.acquireLease(owner, now, ttl),
    releaseLease: (owner, token) => store.releaseLease(owner, token),
    pendingEvents: (limit, deliverable) =>
      store.pendingEvents(limit, (e: OutboxEvent) => {
        const wanted = deliverable?.(e) ?? true;
        asked.push([e._id, wanted]);
        return wanted;
      }),
    recordDelivery: (e, s, state, fence) => store.recordDelivery(e, s, state, fence),
    settle: (events, at, fence) => store.settle(events, at, fence),
    prune: (before, limit) => store.prune(before, limit),
    deadLetters: (id, limit) => store.deadLetters(id, limit),
  };
  const time = new FakeTime();
  await using d = dispatcher(spy, time);
  const settledAfter = async (write: () => Promise<unknown>) => {
    await write();
    await advance(time, d, 5000);
    assert.deepEqual(await store.pendingEvents(10), []);
  };
  const raise = () => store.write({ readings: [], alerts: [overheat("d1", 3)], devices: [] });
  const clear = () => store.write({ readings: [], alerts: [overheat("d1", 3, 9)], devices: [] });
  await settledAfter(raise);
  await settledAfter(raise);
  await settledAfter(clear);
  await settledAfter(clear);
  assert.deepEqual(hook.received(), ["d1:overheat:3:clear"], "the clear once, the raise never");
  // Deno KV finds replays as it writes them: it never asks.
  if (!looksUpReplays) return;
  assert.ok(asked.some(([id, wanted]) => id === "d1:overheat:3:raise" && !wanted));
  assert.ok(asked.every(([id, wanted]) => wanted === id.endsWith(":clear")));
}

permitted.test("WebhookDispatcher delivers a replayed event once and settles unwanted ones unchecked (Deno KV)", () =>
  replays(kvStore, { looksUpReplays: false }));

mongo.test("WebhookDispatcher delivers a replayed event once and settles unwanted ones unchecked (MongoDB)", () =>
  replays(mongoStore, { looksUpReplays: true }));

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

/** Where a store lives, so a test can open it twice (a restart, or two processes). */
interface StoreSite extends AsyncDisposable {
  readonly name: string;
  open(): Promise<TestStore>;
}

async function kvSite(): Promise<StoreSite> {
  const dir = await Deno.makeTempDir({ prefix: "iot-webhook-test-" });
  return {
    name: "Deno KV",
    open: () => KvStore.open(`${dir}/iot.kv`),
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }).catch(() => {}),
  };
}

async function mongoSite(): Promise<StoreSite> {
  const tmp = await tempDb("webhooks");
  return {
    name: "MongoDB",
    open: () => MongoStore.open(MONGO_URL, tmp.name, silentLogger),
    [Symbol.asyncDispose]: () => tmp[Symbol.asyncDispose](),
  };
}

const SITES = [{ site: kvSite, with: permitted }, { site: mongoSite, with: mongo }];

async function subscribe(
  store: WebhookStore,
  url: string,
  events: WebhookEventType[] = ["raise"],
) {
  const id = crypto.randomUUID();
  await store.addWebhook({ _id: id, url, events, secret: SECRET, createdAt: new Date() });
  return id;
}

/** Moves the clock one poll at a time with every dispatcher finishing its poll and attempts. */
async function advanceAll(
  time: FakeTime,
  ds: readonly WebhookDispatcher[],
  ms: number,
  done?: () => boolean,
) {
  for (let t = 0; t < ms; t += 1000) {
    time.tick(1000);
    await until("the dispatchers to finish their polls", () => ds.every((d) => !d.busy));
    if (done?.()) return;
  }
}

/**
 * A store and transport that stop answering at `kill()`, like a process killed with SIGKILL: the
 * dispatcher using them neither writes nor POSTs again, and does not hand its lease back.
 */
function killable(store: WebhookStore) {
  let dead = false;
  const guard = <A extends unknown[], R>(f: (...args: A) => Promise<R>) => (...args: A) =>
    dead ? Promise.reject(new Error("killed")) : f(...args);
  const wrapped: WebhookStore = {
    addWebhook: guard((doc) => store.addWebhook(doc)),
    webhooks: guard(() => store.webhooks()),
    removeWebhook: guard((id) => store.removeWebhook(id)),
    acquireLease: guard((owner, now, ttl) => store.acquireLease(owner, now, ttl)),
    releaseLease: guard((owner, token) => store.releaseLease(owner, token)),
    pendingEvents: guard((limit) => store.pendingEvents(limit)),
    recordDelivery: guard((e, s, state, fence) => store.recordDelivery(e, s, state, fence)),
    settle: guard((events, at, fence) => store.settle(events, at, fence)),
    prune: guard((before, limit) => store.prune(before, limit)),
    deadLetters: guard((id, limit) => store.deadLetters(id, limit)),
  };
  return {
    store: wrapped,
    transport: guard(httpWebhookTransport),
    kill: () => void (dead = true),
  };
}

/** Counts the store's calls by method, passing each on. */
function counting(store: WebhookStore) {
  const calls = new Map<string, number>();
  const count =
    <A extends unknown[], R>(name: string, f: (...args: A) => Promise<R>) => (...args: A) => {
      calls.set(name, (calls.get(name) ?? 0) + 1);
      return f(...args);
    };
  const wrapped: WebhookStore = {
    addWebhook: count("addWebhook", (doc) => store.addWebhook(doc)),
    webhooks: count("webhooks", () => store.webhooks()),
    removeWebhook: count("removeWebhook", (id) => store.removeWebhook(id)),
    acquireLease: count("acquireLease", (owner, now, ttl) => store.acquireLease(owner, now, ttl)),
    releaseLease: count("releaseLease", (owner, token) => store.releaseLease(owner, token)),
    pendingEvents: count("pendingEvents", (limit, ok) => store.pendingEvents(limit, ok)),
    recordDelivery: count(
      "recordDelivery",
      (e, s, state, fence) => store.recordDelivery(e, s, state, fence),
    ),
    settle: count("settle", (events, at, fence) => store.settle(events, at, fence)),
    prune: count("prune", (before, limit) => store.prune(before, limit)),
    deadLetters: count("deadLetters", (id, limit) => store.deadLetters(id, limit)),
  };
  return { store: wrapped, calls: (name: string) => calls.get(name) ?? 0 };
}

/** `n` devices' overheats, each raised and cleared: 2n events. */
function episodes(n: number): AlertDoc[] {
  return Array.from({ length: n }, (_, i) => overheat(`d${i}`, 3, 6));
}

for (const { site, with: t } of SITES) {
  t.test(`WebhookDispatcher settles what it delivered together, not an update per outcome, and reads on at once while polls come back full (${t === mongo ? "MongoDB" : "Deno KV"})`, async () => {
    await using where = await site();
    await using store = await where.open();
    await using hook = receiver();
    hook.state.down = false;
    await subscribe(store, hook.url, ["raise", "clear"]);
    await store.write({ readings: [], alerts: episodes(30), devices: [] });
    const spy = counting(store);
    const time = new FakeTime();
    // 60 events, 20 per poll: the three polls follow each other without waiting for the clock.
    await using d = dispatcher(spy.store, time, 100, { batch: 20 });
    await advance(time, d, 1000);
    assert.equal(hook.keys().length, 60, "every event delivered within the first poll interval");
    assert.deepEqual(await store.pendingEvents(100), [], "and settled");
    // On FerretDB an update scans the outbox: one per outcome was 45 ms each at 2 000 pending.
    assert.equal(spy.calls("recordDelivery"), 0, "no outcome written one by one");
    // Outcomes that come back while a write runs go together into the next one.
    assert.ok(spy.calls("settle") <= 30, `settle called ${spy.calls("settle")} times`);
    assert.equal(d.stats.delivered, 60);
  });

  t.test(`WebhookDispatcher settles a backlog no subscription wants within one poll interval, a full batch after another (${t === mongo ? "MongoDB" : "Deno KV"})`, async () => {
    await using where = await site();
    await using store = await where.open();
    await using hook = receiver();
    hook.state.down = false;
    // Wanted: only acknowledgements, so none of the 60 raise and clear events.
    await subscribe(store, hook.url, ["ack"]);
    await store.write({ readings: [], alerts: episodes(30), devices: [] });
    const time = new FakeTime();
    await using d = dispatcher(store, time, 100, { batch: 20 });
    await advance(time, d, 1000);
    assert.deepEqual(await store.pendingEvents(100), [], "all settled within the first interval");
    assert.equal(hook.keys().length, 0, "and none sent");
  });

  t.test(`WebhookDispatcher prunes every tenth of the retention, at least every minute, by default (${t === mongo ? "MongoDB" : "Deno KV"})`, async () => {
    await using where = await site();
    await using store = await where.open();
    const time = new FakeTime();
    // One hour kept: a prune every 6 minutes (one that reads every settled event on FerretDB).
    const hour = counting(store);
    await using h = dispatcher(hour.store, time, 100, { retentionMs: 3_600_000 });
    await advance(time, h, 30 * 60_000);
    assert.equal(hour.calls("prune"), 5, "at 0, 6, 12, 18 and 24 minutes");
    await h[Symbol.asyncDispose]();
    // Five minutes kept: a tenth would be 30 s; never more often than once a minute.
    const short = counting(store);
    await using s = dispatcher(short.store, time, 100, { retentionMs: 300_000 });
    await advance(time, s, 10 * 60_000);
    assert.equal(short.calls("prune"), 10, "once a minute");
  });

  t.test(`WebhookDispatcher that stalled past its lease neither settles nor records what it delivered (${t === mongo ? "MongoDB" : "Deno KV"})`, async () => {
    await using where = await site();
    await using store = await where.open();
    // The first request is held until released: A's attempt, answered after A lost the lease.
    let release!: () => void;
    const released = new Promise<void>((resolve) => release = resolve);
    let requests = 0;
    const server = Deno.serve(
      { port: 0, hostname: "127.0.0.1", onListen: () => {} },
      async (req) => {
        await req.body?.cancel();
        if (++requests === 1) await released;
        return new Response(null, { status: 204 });
      },
    );
    await using _server = { [Symbol.asyncDispose]: () => server.shutdown() };
    await subscribe(store, `http://127.0.0.1:${server.addr.port}/hook`);
    await store.write({ readings: [], alerts: [overheat("d1", 3)], devices: [] });
    const time = new FakeTime();
    const leaseMs = 10_000;
    await using dA = dispatcher(store, time, 100, { owner: "a", leaseMs });
    time.tick(1000);
    await until("A's attempt to reach the receiver", () => requests === 1);
    // While A stalls, its lease expires and B takes it over (and stamps the pending events).
    const taken = await store.acquireLease("b", new Date(time.now() + leaseMs + 1000), leaseMs);
    assert.deepEqual([taken.owner, taken.token], ["b", 2]);
    time.tick(leaseMs + 2000); // A wakes up past its expiry; then its attempt is answered.
    release();
    await until("A to be done with its attempt", () => !dA.busy);
    assert.equal(dA.stats.leader, false);
    // Still pending with no outcome, for B to deliver: not settled (nor dropped as a replay of a
    // settled copy) by the holder that lost the lease.
    const pending = await store.pendingEvents(10);
    assert.deepEqual(pending.map((p) => [p.event._id, p.deliveries]), [[
      "d1:overheat:3:raise",
      {},
    ]]);
  });

  t.test(`WebhookDispatcher makes at most \`concurrency\` attempts at once (${t === mongo ? "MongoDB" : "Deno KV"})`, async () => {
    await using where = await site();
    await using store = await where.open();
    let open = 0;
    let most = 0;
    const keys = new Set<string>();
    const server = Deno.serve(
      { port: 0, hostname: "127.0.0.1", onListen: () => {} },
      async (req) => {
        open++;
        most = Math.max(most, open);
        await req.body?.cancel();
        await new Promise((resolve) => setTimeout(resolve, 20)); // Held long enough to overlap.
        keys.add(req.headers.get("idempotency-key") ?? "");
        open--;
        return new Response(null, { status: 204 });
      },
    );
    await using _server = { [Symbol.asyncDispose]: () => server.shutdown() };
    await subscribe(store, `http://127.0.0.1:${server.addr.port}/hook`, ["raise", "clear"]);
    await store.write({ readings: [], alerts: episodes(10), devices: [] });
    const time = new FakeTime();
    await using d = dispatcher(store, time, 100, { concurrency: 3 });
    await advance(time, d, 10_000, () => keys.size === 20);
    assert.equal(keys.size, 20);
    assert.ok(most <= 3, `${most} requests at once`);
    assert.deepEqual(await store.pendingEvents(100), []);
  });

  t.test(`WebhookDispatcher dead-letters after exactly maxAttempts attempts across a restart (${t === mongo ? "MongoDB" : "Deno KV"})`, async () => {
    await using where = await site();
    await using hook = receiver(); // Down throughout: every attempt is refused and counted.
    const time = new FakeTime();
    // The wait after a failure is close to its ceiling: the restart must honour the stored one.
    const slow = { random: () => 0.99, backoff: { baseMs: 4000, capMs: 60_000 } };
    let id: string;
    {
      await using store = await where.open();
      id = await subscribe(store, hook.url);
      await store.write({ readings: [], alerts: [overheat("d1", 3)], devices: [] });
      await using d = dispatcher(store, time, 5, slow);
      await advance(time, d, 300_000, () => hook.state.refused === 3);
      assert.equal(hook.state.refused, 3);
      assert.equal(d.stats.failedAttempts, 3);
    }
    {
      await using store = await where.open();
      const [pending] = await store.pendingEvents(10);
      const stored = pending!.deliveries[id]!;
      assert.equal(stored.status, "retrying");
      assert.equal(stored.attempts, 3);
      assert.match(stored.status === "retrying" ? stored.error : "", /status 503/);
      await using d = dispatcher(store, time, 5, slow);
      await advance(time, d, 2000);
      assert.equal(hook.state.refused, 3, "the stored backoff (about 16 s) is waited out");
      await advance(time, d, 600_000, () => d.stats.deadLettered === 1);
      await advance(time, d, 120_000); // Nothing more is attempted once dead-lettered.
      assert.equal(hook.state.refused, 5, "exactly maxAttempts attempts reached the receiver");
      assert.equal(d.stats.failedAttempts, 2);
      const dead = await store.deadLetters(id, 10);
      assert.deepEqual(dead.map((l) => [l.eventId, l.outcome.status, l.outcome.attempts]), [
        ["d1:overheat:3:raise", "dead", 5],
      ]);
      assert.deepEqual(await store.pendingEvents(10), []);
    }
  });

  t.test(`WebhookDispatcher: of two on one store one delivers; the other takes over within the lease when it dies (${t === mongo ? "MongoDB" : "Deno KV"})`, async () => {
    await using where = await site();
    await using hook = receiver();
    hook.state.down = false;
    const time = new FakeTime();
    await using storeA = await where.open();
    await using storeB = await where.open();
    await subscribe(storeA, hook.url, ["raise", "clear"]);
    const leaseMs = 10_000;
    const a = killable(storeA);
    await using dA = dispatcher(a.store, time, 100, {
      owner: "a",
      leaseMs,
      transport: a.transport,
    });
    await advanceAll(time, [dA], 1000); // A starts first and takes the lease.
    await using dB = dispatcher(storeB, time, 100, { owner: "b", leaseMs });
    await storeA.write({
      readings: [],
      alerts: [overheat("d1", 3, 6), overheat("d2", 4), overheat("d3", 5, 9)],
      devices: [],
    });
    const first = [
      "d1:overheat:3:clear",
      "d1:overheat:3:raise",
      "d2:overheat:4:raise",
      "d3:overheat:5:clear",
      "d3:overheat:5:raise",
    ];
    await advanceAll(time, [dA, dB], 30_000, () => hook.keys().length === first.length);
    await advanceAll(time, [dA, dB], 20_000); // Renewals and polls: still nothing twice.
    assert.deepEqual(hook.received().sort(), first, "each event delivered once");
    assert.deepEqual([dA.stats.leader, dB.stats.leader], [true, false]);
    assert.deepEqual([dA.stats.delivered, dB.stats.delivered], [5, 0]);
    assert.deepEqual(await storeB.pendingEvents(10), []);

    a.kill(); // A neither writes, POSTs nor hands its lease back from now on.
    const killedAt = time.now();
    await storeB.write({ readings: [], alerts: [overheat("d4", 7, 8)], devices: [] });
    let tookOverAt: number | undefined;
    await advanceAll(time, [dA, dB], 60_000, () => {
      if (dB.stats.leader) tookOverAt ??= time.now();
      return hook.keys().length === first.length + 2;
    });
    assert.ok(tookOverAt !== undefined, "B took the lease");
    assert.ok(
      tookOverAt - killedAt <= leaseMs + 1000,
      `B took over ${tookOverAt - killedAt} ms after the kill (lease ${leaseMs} ms, poll 1000 ms)`,
    );
    await advanceAll(time, [dA, dB], 5000);
    assert.deepEqual(
      hook.received().sort(),
      [...first, "d4:overheat:7:clear", "d4:overheat:7:raise"].sort(),
      "nothing lost, nothing twice",
    );
    assert.deepEqual(await storeB.pendingEvents(10), []);
  });

  t.test(`The webhook store refuses the writes of a lease holder that was taken over (${t === mongo ? "MongoDB" : "Deno KV"})`, async () => {
    await using where = await site();
    await using store = await where.open();
    const sub = await subscribe(store, "http://127.0.0.1:9/hook");
    await store.write({ readings: [], alerts: [overheat("d1", 3)], devices: [] });
    const event = "d1:overheat:3:raise";
    const t0 = Date.UTC(2030, 0, 1);
    const at = (ms: number) => new Date(t0 + ms);
    assert.deepEqual(await store.acquireLease("a", at(0), 10_000), {
      owner: "a",
      token: 1,
      expiresAt: at(10_000),
    });
    assert.equal((await store.acquireLease("b", at(9_999), 10_000)).owner, "a");
    assert.equal(
      (await store.acquireLease("a", at(5_000), 10_000)).expiresAt.getTime(),
      t0 + 15_000,
    );
    const taken = await store.acquireLease("b", at(15_000), 10_000);
    assert.deepEqual([taken.owner, taken.token], ["b", 2]);
    const retrying = { status: "retrying", attempts: 1, nextAt: at(20_000), error: "x" } as const;
    assert.equal(await store.recordDelivery(event, sub, retrying, 1), false, "stale token");
    const pending = await store.pendingEvents(10);
    assert.equal(await store.settle(pending, at(16_000), 1), 0, "stale token");
    assert.equal(await store.recordDelivery(event, sub, retrying, 2), true);
    const delivered = { status: "delivered", attempts: 2, at: at(21_000) } as const;
    assert.equal(await store.recordDelivery(event, sub, delivered, 2), true);
    const dead = { status: "dead", attempts: 3, at: at(22_000), error: "x" } as const;
    assert.equal(await store.recordDelivery(event, sub, dead, 2), false, "the first outcome wins");
    assert.deepEqual((await store.pendingEvents(10))[0]!.deliveries, { [sub]: delivered });
    assert.equal(await store.settle(await store.pendingEvents(10), at(23_000), 2), 1);
    assert.deepEqual(await store.pendingEvents(10), []);
    // A replay of the transition (a crash before the checkpoint) adds no event to deliver again.
    await store.write({ readings: [], alerts: [overheat("d1", 3)], devices: [] });
    assert.deepEqual(await store.pendingEvents(10), []);
    // The old holder cannot renew; a release by it changes nothing; the holder's release frees it.
    assert.equal((await store.acquireLease("a", at(16_000), 10_000)).owner, "b");
    await store.releaseLease("a", 1);
    assert.equal((await store.acquireLease("a", at(17_000), 10_000)).owner, "b");
    await store.releaseLease("b", 2);
    assert.deepEqual(await store.acquireLease("a", at(17_000), 10_000), {
      owner: "a",
      token: 3,
      expiresAt: at(27_000),
    });
  });

  t.test(`WebhookDispatcher keeps dead letters readable until the retention, then prunes settled events (${t === mongo ? "MongoDB" : "Deno KV"})`, async () => {
    await using where = await site();
    await using store = await where.open();
    await using hook = receiver();
    hook.state.down = false;
    const closed = Deno.listen({ port: 0, hostname: "127.0.0.1" });
    const port = (closed.addr as Deno.NetAddr).port;
    closed.close();
    const deadSub = await subscribe(store, `http://127.0.0.1:${port}/hook`);
    await subscribe(store, hook.url);
    await store.write({ readings: [], alerts: [overheat("d1", 3)], devices: [] });
    const time = new FakeTime();
    const retentionMs = 120_000;
    await using d = dispatcher(store, time, 2, { retentionMs, pruneEveryMs: 10_000 });
    await advance(time, d, 60_000, () => d.stats.deadLettered === 1 && d.stats.delivered === 1);
    await advance(time, d, 2000); // Settled.
    assert.deepEqual(await store.pendingEvents(10), []);
    await advance(time, d, retentionMs - 20_000);
    assert.equal((await store.deadLetters(deadSub, 10)).length, 1, "readable until the retention");
    assert.equal(d.stats.pruned, 0);
    await advance(time, d, 40_000, () => d.stats.pruned === 1);
    assert.equal(d.stats.pruned, 1);
    assert.deepEqual(await store.deadLetters(deadSub, 10), []);
    assert.equal(hook.state.received.length, 1);
  });

  t.test(`WebhookDispatcher re-checks the target before every attempt and counts a refusal as a failed attempt (${t === mongo ? "MongoDB" : "Deno KV"})`, async () => {
    await using where = await site();
    await using store = await where.open();
    await using hook = receiver();
    const id = await subscribe(store, hook.url);
    await store.write({ readings: [], alerts: [overheat("d1", 3)], devices: [] });
    const time = new FakeTime();
    let rebound = false;
    const checkTarget = (url: string) =>
      Promise.resolve(
        rebound ? `Webhook host "${new URL(url).hostname}" is a private address` : undefined,
      );
    await using d = dispatcher(store, time, 3, { checkTarget });
    await advance(time, d, 30_000, () => hook.state.refused === 1);
    rebound = true; // The name now resolves to a private address.
    hook.state.down = false;
    await advance(time, d, 120_000, () => d.stats.deadLettered === 1);
    assert.equal(hook.state.received.length, 0, "nothing sent to the refused address");
    assert.equal(d.stats.failedAttempts, 3);
    const [letter] = await store.deadLetters(id, 10);
    assert.match(letter?.outcome.status === "dead" ? letter.outcome.error : "", /private address/);
  });
}
