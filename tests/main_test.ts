/** The composition root run in-process: health, modes, shutdown. */
import "./env_guard.ts";
import assert from "node:assert/strict";
import { type App, start } from "../main.ts";
import { parseConfig } from "../schemas/config.ts";
import { createLogger, silentLogger } from "../adapters/log.ts";
import { requireServices } from "./fixtures.ts";
import { testWith } from "./needs.ts";
import { EMBEDDED, KAFKA_MONGO, startApp, testConfig, testEnv } from "./test_app.ts";
import { firstEvents, sseEvents } from "./sse.ts";
import { until } from "./wait.ts";
import type { DashboardSnapshot } from "../schemas/dashboard.ts";

/** Registrars for tests that need the services, and for those that need only permissions. */
const services = await testWith(KAFKA_MONGO);
const permitted = await testWith();

/** The app's exit code once it stopped by itself or was stopped (fails if it never does). */
async function exitCode(app: App): Promise<number> {
  let code: number | undefined;
  void app.finished.then((c) => (code = c));
  await until("the app to stop", () => code !== undefined, 30_000);
  return code!;
}

services.test("GET /health reports Kafka, MongoDB and the pipeline up once ready", async () => {
  await using env = await testEnv("main", KAFKA_MONGO);
  await using app = await startApp(env);
  const res = await fetch(`${app.url}/health`);
  const body = await res.json();
  assert.equal(res.status, 200, JSON.stringify(body));
  assert.equal(body.status, "ok");
  assert.deepEqual(body.mode, { transport: "kafka", store: "mongodb" });
  assert.equal(body.checks.kafka.ok, true);
  assert.equal(body.checks.mongodb.ok, true);
  assert.equal(body.checks.pipeline.ok, true);
});

services.test("GET /health answers 503 naming the dependency that is down", async () => {
  await requireServices();
  // Port 1 on loopback: nothing listens there, so every connection is refused.
  const parsed = parseConfig(["--port", "0", "--sensors", "0", "--role", "sensors"], {
    KAFKA_BROKERS: "127.0.0.1:1",
  });
  assert.ok(parsed.ok);
  await using app = start(parsed.config, { logger: silentLogger, connectAttempts: 1 });
  const res = await fetch(`${app.url}/health`);
  const body = await res.json();
  assert.equal(res.status, 503);
  assert.equal(body.status, "degraded");
  assert.equal(body.checks.kafka.ok, false);
  assert.match(body.checks.kafka.error, /.+/);
  assert.equal(body.checks.mongodb, undefined, "the sensors role does not use MongoDB");
  await assert.rejects(app.ready);
});

permitted.test("with Kafka down /livez answers 200 while /readyz answers 503", async () => {
  const parsed = parseConfig(["--port", "0", "--sensors", "0", "--role", "sensors"], {
    KAFKA_BROKERS: "127.0.0.1:1",
  });
  assert.ok(parsed.ok);
  await using app = start(parsed.config, { logger: silentLogger, connectAttempts: 1 });
  const live = await fetch(`${app.url}/livez`);
  assert.equal(live.status, 200);
  assert.deepEqual(await live.json(), { status: "ok" });
  const ready = await fetch(`${app.url}/readyz`);
  const body = await ready.json();
  assert.equal(ready.status, 503);
  assert.equal(body.checks.kafka.ok, false);
  await assert.rejects(app.ready);
});

permitted.test("during start-up /health answers at once and sensor and store routes answer 503 not connected yet", async () => {
  await using env = await testEnv("main-connecting", EMBEDDED);
  // Nothing listens on port 1: start-up keeps retrying until the app is disposed.
  const config = testConfig(env, { KAFKA_BROKERS: "127.0.0.1:1" });
  const app = start(config, { logger: silentLogger });
  const health = await fetch(`${app.url}/health`);
  const body = await health.json();
  assert.equal(health.status, 503);
  assert.equal(body.checks.pipeline.error, "starting");
  for (
    const [path, message] of [
      ["/sensors", "The sensor fleet is not connected yet; see /health"],
      ["/alerts", "The store is not connected yet; see /health"],
      ["/devices/oven-1", "The store is not connected yet; see /health"],
    ]
  ) {
    const res = await fetch(`${app.url}${path}`);
    assert.equal(res.status, 503, path);
    assert.deepEqual(await res.json(), { error: { code: "unavailable", message } });
  }
  await app[Symbol.asyncDispose]();
  assert.equal(await exitCode(app), 0, "a requested stop during start-up is not a failure");
  await assert.rejects(app.ready, /Start-up cancelled by shutdown/);
});

permitted.test("a start-up that gives up ends with exit code 1 and says why through the logger", async () => {
  await using env = await testEnv("main-cannot-start", EMBEDDED);
  const lines: string[] = [];
  // The KV file's directory cannot be created: a file is in the way.
  const blocker = `${env.kvPath}.blocker`;
  await Deno.writeTextFile(blocker, "");
  const config = testConfig(env, { KV_PATH: `${blocker}/iot.kv` });
  await using app = start(config, {
    logger: createLogger({ write: (line) => lines.push(line) }),
    connectAttempts: 1,
  });
  const error = await app.ready.then(() => undefined, (e: Error) => e);
  assert.ok(error instanceof Error, "start-up gave up");
  assert.equal(await exitCode(app), 1);
  // One sentence: what failed, where, and why.
  const fatal = lines.map((l) => JSON.parse(l)).find((l) => l.msg.startsWith("Cannot start: "));
  assert.equal(fatal?.level, "error");
  assert.equal(fatal?.msg, error.message);
  assert.match(fatal?.msg, /^Cannot start: opening the Deno KV store ".*iot\.kv" failed: /);
  assert.equal(fatal?.error?.message, error.message);
});

permitted.test("when the sensor supervisor gives up, /health answers 503 with the reason and the app exits 1", async () => {
  await using env = await testEnv("main-escalation", EMBEDDED);
  await using app = await startApp(env, { SENSOR_INTERVAL_MS: "100" });
  const { fleet, transport } = app.parts;
  assert.ok(fleet && transport?.embedded);
  // Hold the fleet's release, so the API can be looked at while the app winds down.
  const windDown = Promise.withResolvers<void>();
  const stopFleet = fleet.stop.bind(fleet);
  fleet.stop = async () => {
    await windDown.promise;
    await stopFleet();
  };
  // The injected fault: handing a reading to the queue throws, so every sensor fails each tick.
  transport.embedded.publish = () => {
    throw new Error("Injected sensor failure");
  };
  try {
    const add = await fetch(`${app.url}/sensors`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ count: 200, idPrefix: "doomed" }),
    });
    assert.equal(add.status, 201);
    await add.body?.cancel();

    const health = await until("/health to answer 503", async () => {
      const res = await fetch(`${app.url}/health`);
      const body = await res.json();
      return res.status === 503 ? body : undefined;
    });
    assert.equal(health.status, "degraded");
    assert.match(
      health.checks.pipeline.error,
      /^stopped: SupervisorEscalationError: Supervisor "sensors" gave up: more than 100 restarts/,
    );
    const refused = await fetch(`${app.url}/sensors`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ count: 1 }),
    });
    assert.equal(refused.status, 503);
    assert.equal((await refused.json()).error.code, "unavailable");
  } finally {
    windDown.resolve();
  }
  assert.equal(await exitCode(app), 1);
});

permitted.test("without KAFKA_BROKERS and MONGO_URL the app runs embedded and says how to switch", async () => {
  await using env = await testEnv("main-embedded", EMBEDDED);
  const lines: string[] = [];
  await using app = start(testConfig(env), {
    logger: createLogger({ write: (line) => lines.push(line) }),
  });
  await app.ready;
  const body = await (await fetch(`${app.url}/health`)).json();
  assert.equal(body.status, "ok");
  assert.deepEqual(body.mode, { transport: "embedded", store: "kv" });
  assert.equal(body.checks.kafka, undefined);
  assert.equal(body.checks.kv.ok, true);
  const modeLine = lines.map((l) => JSON.parse(l).msg).find((m: string) => m.startsWith("using"));
  assert.match(modeLine, /set KAFKA_BROKERS=127\.0\.0\.1:9092 to use Kafka/);
  assert.match(modeLine, /set MONGO_URL=mongodb:\/\/127\.0\.0\.1:27017\/ to use MongoDB/);
});

permitted.test("unknown routes answer a JSON 404", async () => {
  await using env = await testEnv("main-404", EMBEDDED);
  await using app = await startApp(env, { ROLE: "api" });
  const res = await fetch(`${app.url}/nope`);
  assert.equal(res.status, 404);
  assert.deepEqual(await res.json(), {
    error: { code: "not_found", message: "No route for GET /nope" },
  });
});

for (const mode of [EMBEDDED, KAFKA_MONGO]) {
  const inMode = await testWith(mode);
  inMode.test(`the dashboard stream shows an overheat triggered through the API turn a device critical (${mode.name})`, async () => {
    await using env = await testEnv("main-dashboard", mode);
    await using app = await startApp(env, { SENSOR_INTERVAL_MS: "200" });
    const add = await fetch(`${app.url}/sensors`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ count: 2, idPrefix: "dash" }),
    });
    assert.equal(add.status, 201);
    await add.body?.cancel();
    const stream = await fetch(`${app.url}/dashboard/events?filter=critical`);
    assert.equal(stream.status, 200);
    let triggered = false;
    let table: DashboardSnapshot["table"] | undefined;
    let alerts: DashboardSnapshot["alerts"] = [];
    const deadline = Date.now() + 20_000;
    for await (const { data } of sseEvents(stream)) {
      const diff = data as DashboardSnapshot;
      assert.equal(diff.live, true);
      table = diff.table ?? table;
      alerts = diff.alerts ?? alerts;
      if (!triggered && (diff.map?.total ?? 0) === 2) {
        // Both devices processed and shown: now heat one of them.
        const res = await fetch(`${app.url}/sensors/dash-0002/overheat`, { method: "POST" });
        assert.equal(res.status, 202);
        await res.body?.cancel();
        triggered = true;
      }
      if (alerts.some((a) => a.deviceId === "dash-0002" && a.type === "raised")) break;
      assert.ok(Date.now() < deadline, "no raised alert on the stream within 20 s");
    }
    assert.deepEqual(table?.rows.map((r) => [r.id, r.critical]), [["dash-0002", true]]);
  });
}

permitted.test("in the api role the dashboard says where the live view is and shows the store's alerts", async () => {
  await using env = await testEnv("main-dashboard-api", EMBEDDED);
  await using app = await startApp(env, { ROLE: "api" });
  const page = await fetch(`${app.url}/`);
  assert.equal(page.status, 200);
  assert.match(await page.text(), /<title>IoT pipeline/);
  const [first] = await firstEvents(await fetch(`${app.url}/dashboard/events`), 1);
  const snap = first!.data as DashboardSnapshot;
  assert.equal(snap.live, false);
  assert.match(snap.note!, /"api" role, not the processors/);
  assert.deepEqual(snap.alerts, []);
});
