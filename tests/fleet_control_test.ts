import assert from "node:assert/strict";
import { DurableFleet } from "../actors/fleet_control.ts";
import { SensorFleet } from "../actors/sensor_supervisor.ts";
import { KvFleetRegistry } from "../adapters/kv_fleet_registry.ts";
import { silentLogger } from "../adapters/log.ts";
import { DEFAULT_RULE } from "../domain/hysteresis.ts";
import { RecordingSink } from "./recording_sink.ts";
import { MemorySeqLedger } from "./memory_seq_ledger.ts";
import { FakeTime } from "./fake_time.ts";

const defaults = { intervalMs: 100, rule: DEFAULT_RULE, seed: 1 };

async function durable(cap = 10) {
  const registry = await KvFleetRegistry.open(":memory:", silentLogger);
  const fleet = new SensorFleet({
    sink: new RecordingSink(),
    logger: silentLogger,
    cap,
    defaults,
    ledger: new MemorySeqLedger(),
    seqBlock: 100,
    // Stopped time: no sensor ticks unless a test moves it, so what a test sees of seqs does not
    // depend on how busy the machine is.
    timers: new FakeTime(),
  });
  const control = new DurableFleet({ registry, fleet, defaults, cap, logger: silentLogger });
  return Object.assign(control, {
    registry,
    fleet,
    async [Symbol.asyncDispose]() {
      await fleet.stop();
      await registry[Symbol.asyncDispose]();
    },
  });
}

Deno.test("DurableFleet records an added sensor in the registry before it answers", async () => {
  await using f = await durable();
  const result = await f.add({ kind: "one", id: "a", template: { intervalMs: 200 } });
  assert.deepEqual(result, { ok: true, ids: ["a"] });
  const { specs } = await f.registry.load();
  assert.deepEqual(specs.map((s) => [s.id, s.intervalMs]), [["a", 200]]);
  assert.equal(f.fleet.has("a"), true);
});

Deno.test("DurableFleet never exceeds the cap under concurrent adds", async () => {
  await using f = await durable(5);
  const results = await Promise.all(
    Array.from({ length: 8 }, () => f.add({ kind: "one", id: undefined, template: {} })),
  );
  assert.equal(results.filter((r) => r.ok).length, 5);
  assert.ok(results.filter((r) => !r.ok).every((r) => !r.ok && r.code === "cap"));
  assert.equal((await f.registry.load()).specs.length, 5);
});

Deno.test("DurableFleet removes a sensor from the registry and the fleet; an unknown id is false", async () => {
  await using f = await durable();
  await f.add({ kind: "one", id: "a", template: {} });
  assert.equal(await f.remove("a"), true);
  assert.equal(await f.remove("a"), false);
  assert.deepEqual((await f.registry.load()).specs, []);
  assert.equal(f.fleet.has("a"), false);
});

Deno.test("DurableFleet.restore() seeds once and starts what the registry holds", async () => {
  await using f = await durable();
  const seed = { kind: "batch", count: 2, idPrefix: undefined, template: {} } as const;
  await f.restore(seed);
  assert.equal(f.fleet.size, 2);
  await using g = await durable();
  await g.registry.put((await f.registry.load()).specs, { seeded: true });
  await g.restore(seed);
  assert.equal(g.fleet.size, 2, "a seeded registry is not seeded again");
});

Deno.test("DurableFleet.setRule() records the new rule in the registry before the sensor adopts it", async () => {
  await using f = await durable();
  await f.add({ kind: "one", id: "a", template: {} });
  const result = await f.setRule("a", { high: 50, low: 40 });
  const rule = { ...DEFAULT_RULE, high: 50, low: 40 };
  assert.deepEqual(result, { ok: true, rule, appliesAfterSeq: 0 });
  const { specs } = await f.registry.load();
  assert.deepEqual(specs.map((s) => [s.id, s.rule, s.customRule]), [["a", rule, true]]);
  assert.deepEqual(f.get("a")?.thresholds, rule);
  const missing = await f.setRule("nobody", { high: 50 });
  assert.equal(!missing.ok && missing.code, "not_found");
  const bad = await f.setRule("a", { low: 60 });
  assert.equal(!bad.ok && bad.code, "invalid");
  assert.deepEqual(
    (await f.registry.load()).specs[0]?.rule,
    rule,
    "a refused change is not recorded",
  );
});
