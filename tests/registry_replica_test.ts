import assert from "node:assert/strict";
import {
  type FleetChange,
  type RegistryRecord,
  RegistryReplica,
} from "../actors/registry_replica.ts";
import { DEFAULT_RULE } from "../domain/hysteresis.ts";
import type { SensorSpec } from "../schemas/sensor_spec.ts";

function spec(id: string, intervalMs = 1000): SensorSpec {
  return {
    id,
    profile: "normal",
    intervalMs,
    seed: 1,
    location: { lat: 1, lon: 2 },
    rule: DEFAULT_RULE,
    customRule: false,
  };
}

function put(offset: number, s: SensorSpec): RegistryRecord {
  return { offset, type: "put", spec: s };
}

function tombstone(offset: number, id: string): RegistryRecord {
  return { offset, type: "remove", id };
}

function summary(changes: readonly FleetChange[]): string[] {
  return changes.map((c) =>
    c.type === "start" ? `start ${c.spec.id}/${c.spec.intervalMs}` : `stop ${c.id}`
  );
}

Deno.test("RegistryReplica starts nothing until a partition is read up to its high watermark", () => {
  const replica = new RegistryReplica();
  assert.deepEqual(replica.assign([0]), []);
  assert.deepEqual(replica.apply(0, [put(0, spec("a")), put(1, spec("b"))]), []);
  assert.equal(replica.isLive(0), false);
  assert.deepEqual(summary(replica.target(0, 0, 3)), []);
  assert.deepEqual(summary(replica.apply(0, [tombstone(2, "a")])), ["start b/1000"]);
  assert.equal(replica.isLive(0), true);
});

Deno.test("RegistryReplica applies puts and tombstones at once on a live partition", () => {
  const replica = new RegistryReplica();
  replica.assign([1]);
  assert.deepEqual(replica.target(1, 0, 0), [], "an empty partition is live at once");
  assert.equal(replica.isLive(1), true);
  assert.deepEqual(summary(replica.apply(1, [put(0, spec("a"))])), ["start a/1000"]);
  assert.deepEqual(summary(replica.apply(1, [put(1, spec("a"))])), [], "same spec again");
  assert.deepEqual(summary(replica.apply(1, [put(2, spec("a", 500))])), ["start a/500"]);
  assert.deepEqual(summary(replica.apply(1, [tombstone(3, "a")])), ["stop a"]);
  assert.deepEqual(summary(replica.apply(1, [tombstone(4, "never")])), []);
  assert.equal(replica.size, 0);
});

Deno.test("RegistryReplica stops the sensors of revoked partitions", () => {
  const replica = new RegistryReplica();
  replica.assign([0, 1]);
  replica.target(0, 0, 1);
  replica.target(1, 0, 1);
  replica.apply(0, [put(0, spec("a"))]);
  replica.apply(1, [put(0, spec("b"))]);
  assert.deepEqual(summary(replica.assign([1])), ["stop a"]);
  assert.deepEqual(replica.partitions, [1]);
});

Deno.test("RegistryReplica re-reads a kept partition without stopping what runs, then applies the difference", () => {
  const replica = new RegistryReplica();
  replica.assign([0]);
  replica.target(0, 0, 2);
  assert.deepEqual(summary(replica.apply(0, [put(0, spec("a")), put(1, spec("b"))])), [
    "start a/1000",
    "start b/1000",
  ]);
  // A rebalance keeps partition 0; meanwhile "a" was removed, re-added and removed again.
  assert.deepEqual(replica.assign([0]), []);
  replica.target(0, 0, 5);
  const history = [
    put(0, spec("a")),
    put(1, spec("b")),
    tombstone(2, "a"),
    put(3, spec("a")),
    tombstone(4, "a"),
  ];
  assert.deepEqual(summary(replica.apply(0, history.slice(0, 4))), [], "nothing while loading");
  assert.deepEqual(summary(replica.apply(0, history.slice(4))), ["stop a"]);
  assert.equal(replica.spec("b")?.id, "b");
});

Deno.test("RegistryReplica ignores records it has read already and remembers the seed marker", () => {
  const replica = new RegistryReplica();
  replica.assign([0]);
  replica.target(0, 0, 2);
  replica.apply(0, [put(0, spec("a")), { offset: 1, type: "seeded" }]);
  assert.equal(replica.seeded, true);
  assert.deepEqual(replica.apply(0, [tombstone(0, "a")]), [], "an offset already read");
  assert.equal(replica.size, 1);
  assert.equal(replica.position(0), 2);
});

Deno.test("RegistryReplica treats a partition emptied below its low watermark as caught up", () => {
  const replica = new RegistryReplica();
  replica.assign([0]);
  assert.deepEqual(replica.target(0, 7, 7), []);
  assert.equal(replica.isLive(0), true);
  assert.deepEqual(summary(replica.apply(0, [put(7, spec("z"))])), ["start z/1000"]);
});
