/** The composition root run in-process: health, modes, shutdown. */
import assert from "node:assert/strict";
import { start } from "../main.ts";
import { parseConfig } from "../schemas/config.ts";
import { createLogger, silentLogger } from "../adapters/log.ts";
import { requireServices } from "./fixtures.ts";
import { EMBEDDED, KAFKA_MONGO, startApp, testConfig, testEnv } from "./test_app.ts";

Deno.test("GET /health reports Kafka, MongoDB and the pipeline up once ready", async () => {
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

Deno.test("GET /health answers 503 naming the dependency that is down", async () => {
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

Deno.test("without KAFKA_BROKERS and MONGO_URL the app runs embedded and says how to switch", async () => {
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

Deno.test("unknown routes answer a JSON 404", async () => {
  await using env = await testEnv("main-404", EMBEDDED);
  await using app = await startApp(env, { ROLE: "api" });
  const res = await fetch(`${app.url}/nope`);
  assert.equal(res.status, 404);
  assert.deepEqual(await res.json(), {
    error: { code: "not_found", message: "No route for GET /nope" },
  });
});
