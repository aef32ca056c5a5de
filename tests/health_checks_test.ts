import "./env_guard.ts";
import assert from "node:assert/strict";
import { healthChecks } from "../app/health_checks.ts";
import { createHealth, readiness } from "../adapters/health.ts";
import { ProducerWorkerError } from "../adapters/worker_producer.ts";
import { parseConfig } from "../schemas/config.ts";

/** An embedded config (no Kafka probe, no store probe for `sensors`) with the given role. */
function config(role: "sensors" | "processors") {
  const parsed = parseConfig(["--role", "all", "--sensors", "0"], {});
  assert.ok(parsed.ok, JSON.stringify(parsed));
  return { ...parsed.config, role };
}

/** The checks of a process with `role` and this producer. */
function health(role: "sensors" | "processors", producer: { failure?: Error } | undefined) {
  return createHealth(
    healthChecks(config(role), {
      store: () => undefined,
      pipeline: () => ({ type: "running" }),
      producer: () => producer,
    }),
    { cacheMs: 0 },
  );
}

Deno.test("healthChecks() reports a crashed producer worker: degraded, with its error", async () => {
  const producer: { failure?: Error } = {};
  const check = health("sensors", producer);
  const before = await check();
  assert.equal(before.ok, true, JSON.stringify(before));
  assert.deepEqual(Object.keys(before.checks), ["producer", "pipeline"]);

  producer.failure = new ProducerWorkerError("Producer worker failed: out of memory");
  const after = await check();
  assert.equal(after.ok, false);
  assert.deepEqual(after.checks.producer, {
    ok: false,
    error: "Producer worker failed: out of memory",
  });
  assert.equal(after.checks.pipeline?.ok, true, "the rest of the process still runs");
  assert.equal(readiness(after).status, "degraded");
});

Deno.test("healthChecks() has no producer check where no sensors run", async () => {
  const report = await health("processors", { failure: new Error("not ours") })();
  assert.equal(report.checks.producer, undefined);
});
