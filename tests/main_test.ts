/** The composition root run in-process against the real services. */
import assert from "node:assert/strict";
import { start } from "../main.ts";
import { parseConfig } from "../schemas/config.ts";
import { silentLogger } from "../adapters/log.ts";
import { KAFKA_BROKERS, MONGO_URL, requireServices, uniqueName } from "./fixtures.ts";

function config(env: Record<string, string>) {
  const parsed = parseConfig(["--port", "0", "--sensors", "0"], {
    KAFKA_BROKERS,
    MONGO_URL,
    MONGO_DB: uniqueName("main").replaceAll("-", "_"),
    KAFKA_TOPIC: uniqueName("main"),
    ...env,
  });
  if (!parsed.ok) throw new Error("bad test config");
  return parsed.config;
}

Deno.test("GET /health reports Kafka, MongoDB and the pipeline up once ready", async () => {
  await requireServices();
  await using app = start(config({ ROLE: "api" }), { logger: silentLogger });
  await app.ready;
  const res = await fetch(`${app.url}/health`);
  const body = await res.json();
  assert.equal(res.status, 200, JSON.stringify(body));
  assert.equal(body.status, "ok");
  assert.equal(body.checks.mongodb.ok, true);
  assert.equal(body.checks.pipeline.ok, true);
});

Deno.test("GET /health answers 503 naming the dependency that is down", async () => {
  await requireServices();
  // Port 1 on loopback: nothing listens there, so every connection is refused.
  await using app = start(config({ KAFKA_BROKERS: "127.0.0.1:1", ROLE: "sensors" }), {
    logger: silentLogger,
    connectAttempts: 1,
  });
  const res = await fetch(`${app.url}/health`);
  const body = await res.json();
  assert.equal(res.status, 503);
  assert.equal(body.status, "degraded");
  assert.equal(body.checks.kafka.ok, false);
  assert.match(body.checks.kafka.error, /.+/);
  assert.equal(body.checks.mongodb, undefined, "the sensors role does not use MongoDB");
  await assert.rejects(app.ready);
});

Deno.test("unknown routes answer a JSON 404", async () => {
  await requireServices();
  await using app = start(config({ ROLE: "api" }), { logger: silentLogger });
  await app.ready;
  const res = await fetch(`${app.url}/nope`);
  assert.equal(res.status, 404);
  assert.deepEqual(await res.json(), {
    error: { code: "not_found", message: "No route for GET /nope" },
  });
});
