import assert from "node:assert/strict";
import { SharedFleet } from "../actors/fleet_control.ts";
import type { RegistrySnapshot, RegistryView } from "../actors/fleet_registry.ts";
import type { FleetCommands, FleetPlacement, SensorOwner } from "../actors/sensor_control.ts";
import { silentLogger } from "../adapters/log.ts";
import { DEFAULT_RULE } from "../domain/hysteresis.ts";
import type { FaultKind, FaultOrder } from "../domain/sensor_faults.ts";
import type { SensorSpec } from "../schemas/sensor_spec.ts";

/** A registry view in memory: every write is at once in the view, partitions by id length. */
class MemoryView implements RegistryView {
  readonly records = new Map<string, SensorSpec>();
  seeded = false;
  catchUps = 0;

  catchUp(): Promise<void> {
    this.catchUps++;
    return Promise.resolve();
  }
  load(): Promise<RegistrySnapshot> {
    return Promise.resolve({ specs: [...this.records.values()], seeded: this.seeded });
  }
  put(specs: readonly SensorSpec[], options: { seeded?: boolean } = {}): Promise<void> {
    for (const spec of specs) this.records.set(spec.id, spec);
    if (options.seeded) this.seeded = true;
    return Promise.resolve();
  }
  remove(id: string): Promise<void> {
    this.records.delete(id);
    return Promise.resolve();
  }
  spec(id: string): SensorSpec | undefined {
    return this.records.get(id);
  }
  ids(): readonly string[] {
    return [...this.records.keys()].sort();
  }
  get size(): number {
    return this.records.size;
  }
  partitionOf(id: string): number {
    return id.length % 2;
  }
}

function shared(owners: Map<number, SensorOwner> = new Map(), cap = 10) {
  const view = new MemoryView();
  const sent: [string, { readings: number; temperature: number }][] = [];
  const faults: [string, FaultOrder][] = [];
  const cleared: [string, FaultKind | undefined][] = [];
  const placement: FleetPlacement = { ownerOf: (p) => owners.get(p) };
  const commands: FleetCommands = {
    overheat: (id, order) => {
      sent.push([id, order]);
      return Promise.resolve();
    },
    fault: (id, order) => {
      faults.push([id, order]);
      return Promise.resolve();
    },
    clearFaults: (id, kind) => {
      cleared.push([id, kind]);
      return Promise.resolve();
    },
  };
  const fleet = new SharedFleet({
    registry: view,
    placement,
    commands,
    defaults: { intervalMs: 1000, rule: DEFAULT_RULE, seed: 1 },
    cap,
    logger: silentLogger,
  });
  return { fleet, view, sent, faults, cleared };
}

const owner: SensorOwner = { host: "h", pid: 7, member: "m-1" };

Deno.test("SharedFleet.add() writes the specs after catching up and refuses a taken id and the cap", async () => {
  const { fleet, view } = shared(new Map(), 3);
  assert.deepEqual(await fleet.add({ kind: "one", id: "ab", template: {} }), {
    ok: true,
    ids: ["ab"],
  });
  assert.equal(view.catchUps, 1);
  assert.equal(view.spec("ab")?.intervalMs, 1000);
  const dup = await fleet.add({ kind: "one", id: "ab", template: {} });
  assert.equal(!dup.ok && dup.code, "conflict");
  const full = await fleet.add({ kind: "batch", count: 3, idPrefix: undefined, template: {} });
  assert.equal(!full.ok && full.code, "cap");
  assert.equal(view.size, 1);
});

Deno.test("SharedFleet.add() of concurrent requests makes one registry write, checking each against those before it", async () => {
  const { fleet, view } = shared(new Map(), 4);
  let puts = 0;
  const put = view.put.bind(view);
  view.put = (specs, options) => {
    puts++;
    return put(specs, options);
  };
  const results = await Promise.all([
    fleet.add({ kind: "one", id: "a1", template: {} }),
    fleet.add({ kind: "one", id: "a2", template: {} }),
    fleet.add({ kind: "one", id: "a1", template: {} }),
    fleet.add({ kind: "batch", count: 3, idPrefix: "b", template: {} }),
    fleet.add({ kind: "one", id: "a3", template: {} }),
  ]);
  assert.deepEqual(results.map((r) => r.ok ? r.ids : r.code), [
    ["a1"],
    ["a2"],
    "conflict",
    "cap",
    ["a3"],
  ]);
  assert.equal(puts, 1, "one registry write for the five requests");
  assert.equal(view.catchUps, 1);
  assert.deepEqual(view.ids(), ["a1", "a2", "a3"]);
  assert.deepEqual(await fleet.add({ kind: "one", id: "a4", template: {} }), {
    ok: true,
    ids: ["a4"],
  });
  assert.equal(puts, 2);
});

Deno.test("SharedFleet says who runs each sensor: the owner of its partition, else pending", async () => {
  const { fleet } = shared(new Map([[0, owner]]));
  await fleet.add({ kind: "one", id: "ab", template: {} }); // partition 0
  await fleet.add({ kind: "one", id: "abc", template: {} }); // partition 1
  const [ab, abc] = fleet.list(0, 10);
  assert.deepEqual(
    [ab?.id, ab?.status, ab?.emitting, ab?.owner, ab?.seq],
    ["ab", "running", true, owner, null],
  );
  assert.deepEqual(
    [abc?.id, abc?.status, abc?.emitting, abc?.owner],
    ["abc", "pending", false, null],
  );
  assert.equal(fleet.get("abc")?.lastReading, null);
  assert.equal(fleet.get("nope"), undefined);
});

Deno.test("SharedFleet.overheat() sends a command to a running sensor and refuses the rest", async () => {
  const { fleet, sent } = shared(new Map([[0, owner]]));
  await fleet.add({ kind: "one", id: "ab", template: {} });
  await fleet.add({ kind: "one", id: "abc", template: {} });
  assert.deepEqual(await fleet.overheat("ab", { readings: 3, temperature: undefined }), {
    ok: true,
    readings: 3,
    temperature: DEFAULT_RULE.high + 10,
  });
  assert.deepEqual(sent, [["ab", { readings: 3, temperature: DEFAULT_RULE.high + 10 }]]);
  const pending = await fleet.overheat("abc", { readings: 3, temperature: undefined });
  assert.equal(!pending.ok && pending.code, "not_running");
  const cold = await fleet.overheat("ab", { readings: 3, temperature: 20 });
  assert.equal(!cold.ok && cold.code, "invalid");
  const unknown = await fleet.overheat("zz", { readings: 3, temperature: undefined });
  assert.equal(!unknown.ok && unknown.code, "not_found");
  assert.equal(sent.length, 1);
});

Deno.test("SharedFleet.fault() resolves the fault here and sends it as a command to the running sensor", async () => {
  const { fleet, faults, cleared } = shared(new Map([[0, owner]]));
  await fleet.add({ kind: "one", id: "ab", template: { thresholds: { high: 60, low: 50 } } });
  await fleet.add({ kind: "one", id: "abc", template: {} });
  assert.deepEqual(await fleet.fault("ab", { kind: "spike" }), {
    ok: true,
    fault: { kind: "spike", count: 1, temperature: 90 },
  });
  assert.deepEqual(faults, [["ab", { kind: "spike", count: 1, temperature: 90 }]]);
  const pending = await fleet.fault("abc", { kind: "dropout" });
  assert.equal(!pending.ok && pending.code, "not_running");
  const unknown = await fleet.fault("zz", { kind: "dropout" });
  assert.equal(!unknown.ok && unknown.code, "not_found");
  assert.equal(faults.length, 1);
  assert.equal(fleet.get("abc")?.faults, null, "run elsewhere: not known here");
  assert.deepEqual(await fleet.clearFaults("ab", "spike"), { ok: true });
  assert.deepEqual(await fleet.clearFaults("abc"), { ok: true });
  assert.equal((await fleet.clearFaults("zz")).ok, false);
  assert.deepEqual(cleared, [["ab", "spike"], ["abc", undefined]]);
});

Deno.test("SharedFleet.remove() tombstones a known sensor; an unknown one is false", async () => {
  const { fleet, view } = shared();
  await fleet.add({ kind: "one", id: "ab", template: {} });
  assert.equal(await fleet.remove("ab"), true);
  assert.equal(view.size, 0);
  assert.equal(await fleet.remove("ab"), false);
});

Deno.test("SharedFleet.seed() records the seed once", async () => {
  const { fleet, view } = shared();
  const seed = { kind: "batch", count: 2, idPrefix: undefined, template: {} } as const;
  await fleet.seed(seed);
  await fleet.remove("sensor-0001");
  await fleet.seed(seed);
  assert.deepEqual(view.ids(), ["sensor-0002"]);
});
