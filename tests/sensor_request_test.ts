import assert from "node:assert/strict";
import fc from "fast-check";
import {
  findForbiddenKey,
  INTERVAL_RANGE,
  MAX_BATCH,
  parseSensorRequest,
  type SensorRequest,
} from "../schemas/sensor_request.ts";
import { numRuns } from "./fc_runs.ts";

const NUM_RUNS = numRuns(200);

/** The parsed request; fails the test when the body was rejected. */
function accepted(body: unknown): SensorRequest {
  const result = parseSensorRequest(body);
  assert.ok(result.ok, `expected acceptance, got ${JSON.stringify(result)}`);
  return result.request;
}

/** The rejection message; fails the test when the body was accepted. */
function rejected(body: unknown): string {
  const result = parseSensorRequest(body);
  assert.equal(result.ok, false, `expected a rejection, got ${JSON.stringify(result)}`);
  return result.ok ? "" : result.message;
}

Deno.test("parseSensorRequest() reads an empty body as one sensor with every default", () => {
  const request = accepted({});
  assert.equal(request.kind, "one");
  assert.equal(request.kind === "one" && request.id, undefined);
  assert.equal(request.template.profile, undefined);
  assert.deepEqual(
    Object.entries(request.template).filter(([, v]) => v !== undefined),
    [],
  );
});

Deno.test("parseSensorRequest() reads one sensor with every field", () => {
  const body = {
    id: "boiler-7",
    profile: "overheat",
    intervalMs: 250,
    seed: 7,
    location: { lat: 45.5, lon: -73.6 },
    thresholds: { high: 90, raiseAfter: 3 },
  };
  const { id, ...template } = body;
  assert.deepEqual(accepted(body), { kind: "one", id, template });
});

Deno.test("parseSensorRequest() reads a batch with a count and an id prefix", () => {
  assert.deepEqual(accepted({ count: 3, idPrefix: "hall", profile: "mobile" }), {
    kind: "batch",
    count: 3,
    idPrefix: "hall",
    template: { profile: "mobile" },
  });
  const plain = accepted({ count: 1 });
  assert.equal(plain.kind, "batch");
  assert.equal(plain.kind === "batch" && plain.idPrefix, undefined);
});

Deno.test("parseSensorRequest() makes a sensor with temperatures scripted", () => {
  assert.deepEqual(accepted({ temperatures: [70, 81], humidity: [40, 41] }).template, {
    temperatures: [70, 81],
    humidity: [40, 41],
    profile: "scripted",
  });
  assert.deepEqual(accepted({ count: 2, profile: "scripted", temperatures: [1] }).template, {
    profile: "scripted",
    temperatures: [1],
  });
});

Deno.test("parseSensorRequest() rejects a body that is not a JSON object", () => {
  for (const body of [null, 42, "sensor", [], [{ id: "a" }], true]) {
    assert.equal(rejected(body), "Body must be a JSON object", JSON.stringify(body));
  }
});

Deno.test("parseSensorRequest() rejects unknown fields, even next to valid ones", () => {
  assert.match(rejected({ id: "a", owner: "eve" }), /owner/);
  assert.match(rejected({ count: 2, id: "a" }), /id/);
  assert.match(rejected({ idPrefix: "a" }), /idPrefix/);
  assert.match(rejected({ location: { lat: 1, lon: 2, alt: 3 } }), /alt/);
  assert.match(rejected({ thresholds: { high: 90, hysteresis: 2 } }), /hysteresis/);
});

Deno.test("parseSensorRequest() rejects a $-key at any depth", () => {
  assert.equal(rejected({ $where: "1" }), 'Forbidden key: "$where"');
  assert.equal(rejected({ location: { $near: 1, lat: 1, lon: 2 } }), 'Forbidden key: "$near"');
  assert.equal(
    rejected({ thresholds: { high: { $gt: 0 } } }),
    'Forbidden key: "$gt"',
  );
});

Deno.test("parseSensorRequest() rejects __proto__ and constructor keys", () => {
  assert.equal(
    rejected(JSON.parse('{"__proto__": {"admin": true}}')),
    'Forbidden key: "__proto__"',
  );
  assert.equal(
    rejected(JSON.parse('{"location": {"__proto__": {}, "lat": 1, "lon": 2}}')),
    'Forbidden key: "__proto__"',
  );
  assert.equal(rejected({ constructor: { prototype: {} } }), 'Forbidden key: "constructor"');
});

Deno.test("parseSensorRequest() accepts intervalMs from 100 to 3 600 000 inclusive", () => {
  for (const intervalMs of [INTERVAL_RANGE.min, 1000, INTERVAL_RANGE.max]) {
    assert.equal(accepted({ intervalMs }).template.intervalMs, intervalMs);
  }
  assert.deepEqual([INTERVAL_RANGE.min, INTERVAL_RANGE.max], [100, 3_600_000]);
  for (const intervalMs of [99, 3_600_001, 0, -100, 150.5, "1000"]) {
    assert.match(rejected({ intervalMs }), /^intervalMs: /, String(intervalMs));
  }
});

Deno.test("parseSensorRequest() rejects a scripted profile without temperatures", () => {
  assert.equal(
    rejected({ profile: "scripted" }),
    "temperatures: required by the scripted profile",
  );
  assert.equal(
    rejected({ count: 2, profile: "scripted" }),
    "temperatures: required by the scripted profile",
  );
});

Deno.test("parseSensorRequest() rejects temperatures with a profile that is not scripted", () => {
  assert.equal(
    rejected({ profile: "normal", temperatures: [20] }),
    'temperatures: only allowed with the scripted profile, not "normal"',
  );
});

Deno.test("parseSensorRequest() rejects humidity that does not pair with the temperatures", () => {
  const message = "humidity: must have one value per temperature";
  assert.equal(rejected({ temperatures: [20, 21], humidity: [50] }), message);
  assert.equal(rejected({ temperatures: [20], humidity: [50, 51] }), message);
  assert.equal(rejected({ humidity: [50] }), message);
});

Deno.test("parseSensorRequest() rejects out-of-range script values", () => {
  assert.match(rejected({ temperatures: [] }), /^temperatures: /);
  assert.match(rejected({ temperatures: [20, 200.5] }), /^temperatures\.1: /);
  assert.match(rejected({ temperatures: [20], humidity: [101] }), /^humidity\.0: /);
});

Deno.test("parseSensorRequest() rejects thresholds whose low is not below high", () => {
  const message = "thresholds: low must be below high";
  assert.equal(rejected({ thresholds: { high: 70, low: 70 } }), message);
  assert.equal(rejected({ thresholds: { high: 60, low: 70 } }), message);
  // One side alone is checked against the defaults later, by the fleet.
  assert.deepEqual(accepted({ thresholds: { low: 95 } }).template.thresholds, { low: 95 });
  assert.match(rejected({ thresholds: { raiseAfter: 0 } }), /^thresholds\.raiseAfter: /);
  assert.match(rejected({ thresholds: { clearAfter: 1001 } }), /^thresholds\.clearAfter: /);
});

Deno.test("parseSensorRequest() accepts a count from 1 to 100 000", () => {
  assert.equal(MAX_BATCH, 100_000);
  for (const count of [1, MAX_BATCH]) {
    const request = accepted({ count });
    assert.equal(request.kind === "batch" && request.count, count);
  }
  for (const count of [0, MAX_BATCH + 1, -1, 2.5, "3"]) {
    assert.match(rejected({ count }), /^count: /, String(count));
  }
});

Deno.test("parseSensorRequest() rejects ids and prefixes that could not form document ids", () => {
  assert.match(rejected({ id: "a:b" }), /^id: /);
  assert.match(rejected({ id: "" }), /^id: /);
  assert.match(rejected({ count: 1, idPrefix: "x".repeat(42) }), /^idPrefix: /);
  assert.equal(accepted({ count: 1, idPrefix: "x".repeat(41) }).kind, "batch");
});

Deno.test("parseSensorRequest() rejects an unknown profile and an out-of-range seed", () => {
  assert.match(rejected({ profile: "chaotic" }), /^profile: /);
  assert.match(rejected({ seed: -1 }), /^seed: /);
  assert.match(rejected({ seed: 0x1_0000_0000 }), /^seed: /);
  assert.equal(accepted({ seed: 0xffff_ffff }).template.seed, 0xffff_ffff);
});

Deno.test("findForbiddenKey() does not walk arrays or beyond depth 10", () => {
  assert.equal(findForbiddenKey([{ $x: 1 }]), undefined);
  let deep: Record<string, unknown> = { $deep: 1 };
  for (let i = 0; i < 11; i++) deep = { a: deep };
  assert.equal(findForbiddenKey(deep), undefined);
  assert.equal(findForbiddenKey({ a: { b: { $c: 1 } } }), "$c");
  assert.equal(findForbiddenKey("$string"), undefined);
});

Deno.test("parseSensorRequest() never throws on arbitrary JSON values", () => {
  fc.assert(
    fc.property(fc.jsonValue(), (body) => {
      const result = parseSensorRequest(body);
      if (result.ok) assert.ok(result.request.kind === "one" || result.request.kind === "batch");
      else assert.ok(result.message.length > 0);
    }),
    { numRuns: NUM_RUNS },
  );
});

Deno.test("parseSensorRequest() never throws on request-shaped JSON", () => {
  const fields = fc.record({
    id: fc.oneof(fc.string(), fc.jsonValue()),
    count: fc.oneof(fc.integer({ min: -1, max: MAX_BATCH + 1 }), fc.jsonValue()),
    profile: fc.oneof(fc.constantFrom("normal", "scripted", "mobile", "other"), fc.jsonValue()),
    intervalMs: fc.oneof(fc.integer({ min: 0, max: 4_000_000 }), fc.jsonValue()),
    temperatures: fc.oneof(fc.array(fc.integer({ min: -150, max: 250 })), fc.jsonValue()),
    humidity: fc.oneof(fc.array(fc.integer({ min: -1, max: 101 })), fc.jsonValue()),
    thresholds: fc.oneof(
      fc.record({ high: fc.integer(), low: fc.integer() }, { requiredKeys: [] }),
      fc.jsonValue(),
    ),
  }, { requiredKeys: [] });
  fc.assert(
    fc.property(fields, (body) => {
      const result = parseSensorRequest(JSON.parse(JSON.stringify(body)));
      assert.equal(typeof result.ok, "boolean");
    }),
    { numRuns: NUM_RUNS },
  );
});
