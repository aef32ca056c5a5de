import assert from "node:assert/strict";
import { DEFAULT_RULE } from "../domain/hysteresis.ts";
import { type ResolveOptions, resolveSensorRequest } from "../domain/sensor_specs.ts";
import { seedFrom } from "../domain/random.ts";
import type { SensorRequest, SensorTemplate } from "../schemas/sensor_request.ts";
import { decodeSpec, encodeSpec, parseSpec, type SensorSpec } from "../schemas/sensor_spec.ts";

function options(overrides: Partial<ResolveOptions> = {}): ResolveOptions {
  return {
    defaults: { intervalMs: 3000, rule: DEFAULT_RULE, seed: 7 },
    taken: () => false,
    size: 0,
    cap: 100,
    nextNumber: 1,
    ...overrides,
  };
}

function one(id?: string, template: SensorTemplate = {}): SensorRequest {
  return { kind: "one", id, template };
}

function specsOf(result: ReturnType<typeof resolveSensorRequest>): readonly SensorSpec[] {
  assert.ok(result.ok, `expected success, got ${JSON.stringify(result)}`);
  return result.specs;
}

Deno.test("resolveSensorRequest() fills in the defaults and derives the seed from the fleet seed and id", () => {
  const [spec] = specsOf(resolveSensorRequest(one("boiler-1"), options()));
  assert.equal(spec?.id, "boiler-1");
  assert.equal(spec?.profile, "normal");
  assert.equal(spec?.intervalMs, 3000);
  assert.equal(spec?.seed, seedFrom("7:boiler-1"));
  assert.deepEqual(spec?.rule, DEFAULT_RULE);
  assert.equal(spec?.customRule, false);
  assert.ok(Math.abs(spec!.location.lat - 48.8566) <= 0.05);
});

Deno.test("resolveSensorRequest() is deterministic: the same request resolves to the same specs", () => {
  const request: SensorRequest = { kind: "batch", count: 3, idPrefix: "hall", template: {} };
  assert.deepEqual(
    resolveSensorRequest(request, options()),
    resolveSensorRequest(request, options()),
  );
});

Deno.test("resolveSensorRequest() keeps what the template sets and merges thresholds with the defaults", () => {
  const [spec] = specsOf(resolveSensorRequest(
    one("s", {
      profile: "scripted",
      intervalMs: 500,
      seed: 42,
      location: { lat: 1, lon: 2 },
      thresholds: { high: 90 },
      temperatures: [20, 95],
      humidity: [50, 50],
    }),
    options(),
  ));
  assert.deepEqual(spec, {
    id: "s",
    profile: "scripted",
    intervalMs: 500,
    seed: 42,
    location: { lat: 1, lon: 2 },
    rule: { ...DEFAULT_RULE, high: 90 },
    customRule: true,
    temperatures: [20, 95],
    humidity: [50, 50],
  });
});

Deno.test("resolveSensorRequest() generates ids from nextNumber, skipping taken ones, and says where to go on", () => {
  const taken = new Set(["sensor-0002"]);
  const result = resolveSensorRequest(
    { kind: "batch", count: 2, idPrefix: undefined, template: {} },
    options({ taken: (id) => taken.has(id), size: 1 }),
  );
  assert.deepEqual(specsOf(result).map((s) => s.id), ["sensor-0001", "sensor-0003"]);
  assert.ok(result.ok);
  assert.equal(result.nextNumber, 4);
});

Deno.test("resolveSensorRequest() refuses a taken id, the cap and a merged rule whose low is not below high", () => {
  assert.deepEqual(resolveSensorRequest(one("dup"), options({ taken: (id) => id === "dup" })), {
    ok: false,
    code: "conflict",
    message: 'Sensor already running: "dup"',
  });
  const full = resolveSensorRequest(
    { kind: "batch", count: 3, idPrefix: undefined, template: {} },
    options({ size: 8, cap: 10 }),
  );
  assert.equal(full.ok, false);
  assert.equal(!full.ok && full.code, "cap");
  assert.match(!full.ok ? full.message : "", /8 running \+ 3 requested exceeds the limit of 10/);
  const bad = resolveSensorRequest(one("x", { thresholds: { low: 85 } }), options());
  assert.equal(!bad.ok && bad.code, "invalid");
});

Deno.test("a resolved spec passes the registry schema and survives encoding", () => {
  for (
    const spec of specsOf(resolveSensorRequest(one("a", { thresholds: { high: 99 } }), options()))
  ) {
    assert.deepEqual(parseSpec(spec), { ok: true, spec });
    assert.deepEqual(decodeSpec(new TextEncoder().encode(encodeSpec(spec))), { ok: true, spec });
  }
});

Deno.test("decodeSpec() rejects a record that is not a valid spec, as data", () => {
  const bytes = (text: string) => new TextEncoder().encode(text);
  assert.equal(decodeSpec(bytes("{")).ok, false);
  const bad = decodeSpec(bytes('{"id":"x","profile":"weird"}'));
  assert.equal(bad.ok, false);
  assert.match(!bad.ok ? bad.reason : "", /profile/);
});

Deno.test("resolveSensorRequest() keeps an offline limit from the template, else the global one, else none", () => {
  const global = options({ defaults: { ...options().defaults, offlineAfterMs: 60_000 } });
  const [own] = specsOf(resolveSensorRequest(one("a", { offlineAfterMs: 5000 }), global));
  assert.equal(own!.offlineAfterMs, 5000);
  const [fleet] = specsOf(resolveSensorRequest(one("b"), global));
  assert.equal(fleet!.offlineAfterMs, 60_000);
  const [plain] = specsOf(resolveSensorRequest(one("c"), options()));
  assert.equal("offlineAfterMs" in plain!, false, "the sensor then uses 3 × its interval");
});
