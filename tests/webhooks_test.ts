/**
 * Webhooks end to end: subscriptions through the HTTP API, alert transitions
 * from readings through the real pipeline (Kafka + MongoDB protocol, and
 * embedded + Deno KV), deliveries to a real local HTTP receiver — also across
 * a restart of the app while the receiver is down.
 */
import "./env_guard.ts";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import type { Reading } from "../schemas/reading.ts";
import type { App } from "../main.ts";
import { testWith } from "./needs.ts";
import { until } from "./wait.ts";
import { EMBEDDED, KAFKA_MONGO, publishReadings, startApp, testEnv } from "./test_app.ts";

const TOKEN = "webhook-test-token-0123456789";
const AUTH = { Authorization: `Bearer ${TOKEN}`, "Content-Type": "application/json" };
const SECRET = "webhook-e2e-secret-0123";
const DEVICE = "hook-1";
/** Fast retries in real time: these tests wait for the pipeline, not for the backoff. */
const FAST = {
  API_TOKEN: TOKEN,
  WEBHOOK_POLL_MS: "50",
  WEBHOOK_BACKOFF_BASE_MS: "50",
  WEBHOOK_BACKOFF_CAP_MS: "200",
  // The receivers here listen on loopback, which webhooks may not call unless allowed.
  WEBHOOK_ALLOW_NETWORKS: "127.0.0.1",
};

function reading(seq: number, temperature: number): Reading {
  return {
    deviceId: DEVICE,
    seq,
    ts: new Date(Date.UTC(2026, 10, 30, 12, 0, seq)).toISOString(),
    temperature,
    humidity: 40,
    location: { lat: 48.85, lon: 2.35 },
  };
}

interface Received {
  readonly key: string;
  readonly event: string;
  readonly signed: boolean;
}

function receiver() {
  const state = { down: false, refused: 0, received: [] as Received[] };
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, async (req) => {
    const body = await req.text();
    if (state.down) {
      state.refused++;
      return new Response("down", { status: 503 });
    }
    const signature = `sha256=${createHmac("sha256", SECRET).update(body).digest("hex")}`;
    state.received.push({
      key: req.headers.get("idempotency-key") ?? "",
      event: JSON.parse(body).event,
      signed: req.headers.get("x-signature-256") === signature,
    });
    return new Response(null, { status: 200 });
  });
  return {
    state,
    url: `http://127.0.0.1:${server.addr.port}/hook`,
    keys: () => [...new Set(state.received.map((r) => r.key))].sort(),
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

async function subscribe(app: App, url: string): Promise<string> {
  const res = await fetch(`${app.url}/webhooks`, {
    method: "POST",
    headers: AUTH,
    body: JSON.stringify({ url, events: ["raise", "clear", "ack"], secret: SECRET }),
  });
  assert.equal(res.status, 201);
  const created = await res.json();
  assert.equal(created.secret, undefined, "the secret is never answered");
  return created._id;
}

const ALL = [
  `${DEVICE}:overheat:2:ack`,
  `${DEVICE}:overheat:2:clear`,
  `${DEVICE}:overheat:2:raise`,
];

for (const mode of [KAFKA_MONGO, EMBEDDED]) {
  const inMode = await testWith(mode);
  inMode.test(`webhooks (${mode.name}): an overheat's raise, ack and clear reach the subscriber, signed`, async () => {
    await using env = await testEnv("e2e-webhooks", mode);
    await using hook = receiver();
    await using app = await startApp(env, FAST);
    const id = await subscribe(app, hook.url);

    const listed = await (await fetch(`${app.url}/webhooks`)).json();
    assert.deepEqual(listed.webhooks.map((w: { _id: string }) => w._id), [id]);
    assert.ok(listed.webhooks.every((w: object) => !("secret" in w)));

    await publishReadings(app, env, [reading(1, 90), reading(2, 91)]);
    await until("the raise delivered", () => hook.keys().includes(ALL[2]!));
    const ack = await fetch(`${app.url}/alerts/${DEVICE}:overheat:2/ack`, {
      method: "POST",
      headers: AUTH,
      body: JSON.stringify({ by: "ana" }),
    });
    assert.equal(ack.status, 200);
    await ack.body?.cancel();
    await publishReadings(app, env, [reading(3, 60), reading(4, 60)]);
    await until("every event delivered", () => hook.keys().length === ALL.length);
    assert.deepEqual(hook.keys(), ALL);
    assert.ok(hook.state.received.every((r) => r.signed), "every body is signed");
    // The receiver answers before the outcome is stored and counted.
    const metrics = await until("the deliveries counted", async () => {
      const text = await (await fetch(`${app.url}/metrics`)).text();
      const delivered = Number(/^iot_webhook_deliveries_total (\d+)$/m.exec(text)?.[1]);
      return delivered >= ALL.length ? text : undefined;
    });
    assert.match(metrics, /^iot_webhook_dead_letters_total 0$/m);

    const removed = await fetch(`${app.url}/webhooks/${id}`, { method: "DELETE", headers: AUTH });
    assert.equal(removed.status, 204);
    const again = await fetch(`${app.url}/webhooks/${id}`, { method: "DELETE", headers: AUTH });
    assert.equal(again.status, 404);
    await again.body?.cancel();
    assert.deepEqual((await (await fetch(`${app.url}/webhooks`)).json()).webhooks, []);
  });
}

const embedded = await testWith(EMBEDDED);
embedded.test("POST /webhooks needs the token and refuses bad input", async () => {
  await using env = await testEnv("e2e-webhooks-bad", EMBEDDED);
  await using app = await startApp(env, FAST);
  const post = (body: unknown, headers: Record<string, string> = AUTH) =>
    fetch(`${app.url}/webhooks`, { method: "POST", headers, body: JSON.stringify(body) });
  const good = { url: "https://example.com/hook", events: ["raise"], secret: SECRET };
  const anonymous = await post(good, { "Content-Type": "application/json" });
  assert.equal(anonymous.status, 401);
  await anonymous.body?.cancel();
  for (
    const bad of [
      { ...good, url: "ftp://example.com/hook" },
      { ...good, url: "file:///etc/passwd" },
      { ...good, events: ["explode"] },
      { ...good, events: [] },
      { ...good, secret: "short" },
      { url: good.url, events: good.events },
      // Not public, and not in WEBHOOK_ALLOW_NETWORKS (127.0.0.1 only).
      { ...good, url: "http://169.254.169.254/latest/meta-data" },
      { ...good, url: "http://0xa9fea9fe/latest/meta-data" },
      { ...good, url: "http://10.0.0.1/hook" },
      { ...good, url: "http://127.0.0.2/hook" },
      { ...good, url: "http://[::1]:8080/hook" },
      { ...good, url: "http://[::ffff:a9fe:a9fe]/hook" },
      { ...good, url: "http://[fd00::1]/hook" },
      { ...good, url: "http://localhost:8080/hook" },
    ]
  ) {
    const res = await post(bad);
    assert.equal(res.status, 400, JSON.stringify(bad));
    await res.body?.cancel();
  }
  const metadata = await post({ ...good, url: "http://169.254.169.254/latest/meta-data" });
  assert.deepEqual((await metadata.json()).error, {
    code: "bad_request",
    message: 'Webhook host "169.254.169.254" is a link-local address (169.254.169.254); ' +
      "allow its network with WEBHOOK_ALLOW_NETWORKS to call it",
  });
  const allowed = await post({ ...good, url: "http://127.0.0.1:9/hook" });
  assert.equal(allowed.status, 201, "an allowed network is accepted");
  await allowed.body?.cancel();
  const missing = await fetch(`${app.url}/webhooks/${crypto.randomUUID()}`, {
    method: "DELETE",
    headers: AUTH,
  });
  assert.equal(missing.status, 404);
  await missing.body?.cancel();
});

const kafkaMongo = await testWith(KAFKA_MONGO);
kafkaMongo.test("webhooks (kafka+mongodb): events pending when the app stops are delivered after it starts again", async () => {
  await using env = await testEnv("e2e-webhooks-restart", KAFKA_MONGO);
  await using hook = receiver();
  hook.state.down = true;
  // Attempts are stored and count across restarts: on a busy machine the raise can be refused
  // many times before the clear is stored, so the bound must not dead-letter it meanwhile.
  const patient = { ...FAST, WEBHOOK_MAX_ATTEMPTS: "1000" };
  {
    await using app = await startApp(env, patient);
    await subscribe(app, hook.url);
    await publishReadings(app, env, [
      reading(1, 90),
      reading(2, 91),
      reading(3, 60),
      reading(4, 60),
    ]);
    // Both transitions stored, their deliveries failing: then the app stops without delivering.
    await until("the clear stored and refused", async () => {
      const res = await fetch(`${app.url}/alerts?deviceId=${DEVICE}&status=cleared`);
      return (await res.json()).alerts.length === 1 && hook.state.refused >= 2;
    });
  }
  assert.deepEqual(hook.state.received, []);
  hook.state.down = false;
  await using app = await startApp(env, patient);
  await until("every event delivered after the restart", () => hook.keys().length === 2);
  assert.deepEqual(hook.keys(), [ALL[1], ALL[2]]);
  assert.ok(app.url);
});

embedded.test("webhooks (embedded+kv): a receiver that never answers gets the event dead-lettered, listed by the API", async () => {
  await using env = await testEnv("e2e-webhooks-dead", EMBEDDED);
  // A port nobody listens on: every attempt is refused.
  const closed = Deno.listen({ port: 0, hostname: "127.0.0.1" });
  const port = (closed.addr as Deno.NetAddr).port;
  closed.close();
  await using app = await startApp(env, { ...FAST, WEBHOOK_MAX_ATTEMPTS: "2" });
  const id = await subscribe(app, `http://127.0.0.1:${port}/hook`);
  await publishReadings(app, env, [reading(1, 90), reading(2, 91)]);
  const dead = await until("the raise dead-lettered", async () => {
    const res = await fetch(`${app.url}/webhooks/${id}/dead-letters`);
    assert.equal(res.status, 200);
    const { deadLetters } = await res.json();
    return deadLetters.length > 0 ? deadLetters : undefined;
  });
  assert.deepEqual(
    dead.map((d: { eventId: string; outcome: { status: string; attempts: number } }) => [
      d.eventId,
      d.outcome.status,
      d.outcome.attempts,
    ]),
    [[ALL[2], "dead", 2]],
  );
  const unknown = await fetch(`${app.url}/webhooks/${crypto.randomUUID()}/dead-letters`);
  assert.equal(unknown.status, 404);
  await unknown.body?.cancel();
});
