import assert from "node:assert/strict";
import { KvFleetRegistry } from "../adapters/kv_fleet_registry.ts";
import { silentLogger } from "../adapters/log.ts";
import { DEFAULT_RULE } from "../domain/hysteresis.ts";
import type { SensorSpec } from "../schemas/sensor_spec.ts";
import { testWith } from "./needs.ts";

/** For the tests that keep the registry in a file (read and write access). */
const permitted = await testWith();

function spec(id: string, overrides: Partial<SensorSpec> = {}): SensorSpec {
  return {
    id,
    profile: "normal",
    intervalMs: 1000,
    seed: 1,
    location: { lat: 1, lon: 2 },
    rule: DEFAULT_RULE,
    customRule: false,
    ...overrides,
  };
}

async function tempKvPath(): Promise<{ path: string } & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "iot-registry-" });
  return {
    path: `${dir}/nested/iot.kv`,
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}

permitted.test("KvFleetRegistry keeps puts and removes across a reopen of the file", async () => {
  await using tmp = await tempKvPath();
  {
    await using registry = await KvFleetRegistry.open(tmp.path, silentLogger);
    assert.deepEqual(await registry.load(), { specs: [], seeded: false });
    await registry.put([spec("a"), spec("b")]);
    await registry.put([spec("a", { intervalMs: 2000 })]);
    await registry.remove("b");
    await registry.remove("never-there");
  }
  await using reopened = await KvFleetRegistry.open(tmp.path, silentLogger);
  assert.deepEqual(await reopened.load(), {
    specs: [spec("a", { intervalMs: 2000 })],
    seeded: false,
  });
});

Deno.test("KvFleetRegistry records the seed marker with the seeded specs, even an empty seed", async () => {
  await using registry = await KvFleetRegistry.open(":memory:", silentLogger);
  await registry.put([], { seeded: true });
  assert.deepEqual(await registry.load(), { specs: [], seeded: true });
});

Deno.test("KvFleetRegistry writes a batch larger than one atomic commit", async () => {
  await using registry = await KvFleetRegistry.open(":memory:", silentLogger);
  const specs = Array.from({ length: 1001 }, (_, i) => spec(`s-${String(i).padStart(4, "0")}`));
  await registry.put(specs, { seeded: true });
  const loaded = await registry.load();
  assert.equal(loaded.specs.length, 1001);
  assert.equal(loaded.seeded, true);
});

permitted.test("KvFleetRegistry skips a record it cannot read and loads the rest", async () => {
  await using tmp = await tempKvPath();
  await using registry = await KvFleetRegistry.open(tmp.path, silentLogger);
  await registry.put([spec("good")]);
  const kv = await Deno.openKv(tmp.path);
  await kv.set(["fleet", "sensors", "bad"], { id: "bad", profile: "weird" });
  kv.close();
  assert.deepEqual((await registry.load()).specs, [spec("good")]);
});
