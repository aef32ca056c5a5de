import assert from "node:assert/strict";
import fc from "fast-check";
import {
  decodeReading,
  DEVICE_ID_PATTERN,
  encodeReading,
  type Reading,
  TEMPERATURE_RANGE,
} from "../schemas/reading.ts";
import { numRuns } from "./fc_runs.ts";

const NUM_RUNS = numRuns(200);
const encoder = new TextEncoder();

const VALID: Reading = {
  deviceId: "sensor-0001",
  seq: 42,
  ts: "2026-11-27T13:00:00.000Z",
  temperature: 23.4,
  humidity: 51.2,
  location: { lat: 48.8566, lon: 2.3522 },
};

function bytes(value: unknown): Uint8Array {
  return encoder.encode(typeof value === "string" ? value : JSON.stringify(value));
}

/** The reason of a rejected record; fails the test when the record was accepted. */
function reasonOf(value: Uint8Array | null | undefined, key?: Uint8Array | null): string {
  const result = decodeReading(value, key);
  assert.equal(result.ok, false, `expected a rejection, got ${JSON.stringify(result)}`);
  return result.ok ? "" : result.reason;
}

Deno.test("decodeReading() accepts a valid reading whose key is its deviceId", () => {
  const result = decodeReading(bytes(VALID), bytes("sensor-0001"));
  assert.deepEqual(result, { ok: true, reading: VALID });
});

Deno.test("decodeReading() accepts a record without a key or with an empty key", () => {
  assert.deepEqual(decodeReading(bytes(VALID)), { ok: true, reading: VALID });
  assert.deepEqual(decodeReading(bytes(VALID), null), { ok: true, reading: VALID });
  assert.deepEqual(decodeReading(bytes(VALID), new Uint8Array()), { ok: true, reading: VALID });
});

Deno.test("decodeReading() keeps a reading's own thresholds", () => {
  const reading = { ...VALID, thresholds: { high: 50, low: 40, raiseAfter: 1, clearAfter: 3 } };
  assert.deepEqual(decodeReading(bytes(reading)), { ok: true, reading });
});

Deno.test("decodeReading() rejects an empty value", () => {
  assert.equal(reasonOf(null), "empty value");
  assert.equal(reasonOf(undefined), "empty value");
  assert.equal(reasonOf(new Uint8Array()), "empty value");
});

Deno.test("decodeReading() rejects a value that is not JSON", () => {
  for (const text of ["{", "not json", '{"deviceId": "a",}', "NaN"]) {
    assert.match(reasonOf(bytes(text)), /^invalid JSON: /, text);
  }
});

Deno.test("decodeReading() rejects a value that is not UTF-8", () => {
  assert.match(reasonOf(new Uint8Array([0xff, 0xfe, 0x7b, 0x7d])), /^invalid JSON: /);
  // A valid reading with one byte of its device id replaced by a lone continuation byte.
  const valid = bytes(VALID);
  const broken = valid.slice();
  broken[valid.indexOf(0x73)] = 0x80; // the "s" of "sensor-0001"
  assert.match(reasonOf(broken), /^invalid JSON: /);
});

Deno.test("decodeReading() rejects a JSON value that is not an object", () => {
  for (const value of [null, 42, "reading", [VALID], true]) {
    assert.match(reasonOf(bytes(JSON.stringify(value))), /^value: /, JSON.stringify(value));
  }
});

Deno.test("decodeReading() names each missing field", () => {
  for (const field of ["deviceId", "seq", "ts", "temperature", "humidity", "location"] as const) {
    const { [field]: _dropped, ...rest } = VALID;
    assert.match(reasonOf(bytes(rest)), new RegExp(`^${field}: `), field);
  }
  assert.match(reasonOf(bytes({ ...VALID, location: { lat: 1 } })), /^location\.lon: /);
});

Deno.test("decodeReading() rejects fields of the wrong type", () => {
  const cases: [string, Record<string, unknown>][] = [
    ["deviceId", { deviceId: 17 }],
    ["seq", { seq: "42" }],
    ["ts", { ts: 1_764_248_400_000 }],
    ["temperature", { temperature: "23.4" }],
    ["humidity", { humidity: null }],
    ["location", { location: [2.3522, 48.8566] }],
    ["thresholds", { thresholds: "strict" }],
  ];
  for (const [field, patch] of cases) {
    assert.match(reasonOf(bytes({ ...VALID, ...patch })), new RegExp(`^${field}: `), field);
  }
});

Deno.test("decodeReading() rejects a seq that is not a positive safe integer", () => {
  for (const seq of [0, -1, 1.5, Number.MAX_SAFE_INTEGER + 2]) {
    assert.match(reasonOf(bytes({ ...VALID, seq })), /^seq: /, String(seq));
  }
  assert.equal(decodeReading(bytes({ ...VALID, seq: Number.MAX_SAFE_INTEGER })).ok, true);
});

Deno.test("decodeReading() rejects a device id that could not be part of a document id", () => {
  for (const deviceId of ["", "a:b", "-leading-dash", "with space", "x".repeat(65), "é"]) {
    assert.match(
      reasonOf(bytes({ ...VALID, deviceId })),
      /^deviceId: /,
      JSON.stringify(deviceId),
    );
  }
  assert.equal(decodeReading(bytes({ ...VALID, deviceId: "x".repeat(64) })).ok, true);
});

Deno.test("decodeReading() rejects out-of-range measurements and accepts the bounds", () => {
  // NaN and Infinity cannot be written in JSON, so out-of-range finite values are the threat.
  const rejected: [string, Record<string, unknown>][] = [
    ["temperature", { temperature: TEMPERATURE_RANGE.max + 0.1 }],
    ["temperature", { temperature: TEMPERATURE_RANGE.min - 0.1 }],
    ["temperature", { temperature: 1e308 }],
    ["humidity", { humidity: -0.1 }],
    ["humidity", { humidity: 100.1 }],
    ["location.lat", { location: { lat: 90.000001, lon: 0 } }],
    ["location.lat", { location: { lat: -91, lon: 0 } }],
    ["location.lon", { location: { lat: 0, lon: 180.5 } }],
    ["location.lon", { location: { lat: 0, lon: -181 } }],
  ];
  for (const [path, patch] of rejected) {
    assert.match(
      reasonOf(bytes({ ...VALID, ...patch })),
      new RegExp(`^${path.replace(".", "\\.")}: `),
      JSON.stringify(patch),
    );
  }
  const accepted: Record<string, unknown>[] = [
    { temperature: TEMPERATURE_RANGE.min },
    { temperature: TEMPERATURE_RANGE.max },
    { humidity: 0 },
    { humidity: 100 },
    { location: { lat: 90, lon: 180 } },
    { location: { lat: -90, lon: -180 } },
  ];
  for (const patch of accepted) {
    assert.equal(decodeReading(bytes({ ...VALID, ...patch })).ok, true, JSON.stringify(patch));
  }
});

Deno.test("decodeReading() rejects a timestamp that is not an ISO date-time", () => {
  for (
    const ts of [
      "",
      "yesterday",
      "2026-11-27",
      "2026-11-27 13:00:00Z",
      "2026-11-27T13:00Z",
      "2026-02-30T00:00:00Z",
      "2026-11-27T24:00:00Z",
      "Fri, 27 Nov 2026 13:00:00 GMT",
    ]
  ) {
    assert.match(reasonOf(bytes({ ...VALID, ts })), /^ts: /, ts);
  }
});

Deno.test("decodeReading() accepts timestamps with a UTC offset", () => {
  const result = decodeReading(bytes({ ...VALID, ts: "2026-11-27T14:00:00+01:00" }));
  assert.ok(result.ok);
  assert.equal(Date.parse(result.reading.ts), Date.parse(VALID.ts));
});

Deno.test("decodeReading() rejects thresholds whose low is not below high", () => {
  const thresholds = { high: 70, low: 70, raiseAfter: 1, clearAfter: 1 };
  assert.match(reasonOf(bytes({ ...VALID, thresholds })), /^thresholds: low must be below high/);
  assert.match(
    reasonOf(bytes({ ...VALID, thresholds: { ...thresholds, low: 60, raiseAfter: 0 } })),
    /^thresholds\.raiseAfter: /,
  );
});

Deno.test("decodeReading() rejects a key that does not match the deviceId", () => {
  assert.equal(
    reasonOf(bytes(VALID), bytes("sensor-0002")),
    'key "sensor-0002" does not match deviceId "sensor-0001"',
  );
  assert.equal(reasonOf(bytes(VALID), new Uint8Array([0xc3, 0x28])), "key is not UTF-8");
});

Deno.test("decodeReading() quotes at most 64 characters of a mismatched key", () => {
  const reason = reasonOf(bytes(VALID), bytes("k".repeat(10_000)));
  assert.ok(reason.length < 200, reason);
  assert.ok(reason.includes(`"${"k".repeat(64)}"`));
});

Deno.test("decodeReading() accepts and strips unknown top-level fields", () => {
  const result = decodeReading(bytes({ ...VALID, firmware: "2.1.0", battery: { level: 0.8 } }));
  assert.deepEqual(result, { ok: true, reading: VALID });
  // JSON.parse makes "__proto__" an own key; it must not survive either.
  const text = JSON.stringify(VALID).replace(/}$/, ',"__proto__":{"polluted":true}}');
  const hostile = decodeReading(bytes(text));
  assert.deepEqual(hostile, { ok: true, reading: VALID });
  assert.equal(Object.hasOwn(hostile.ok ? hostile.reading : {}, "__proto__"), false);
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
});

Deno.test("encodeReading() output decodes back to the same reading", () => {
  const reading = { ...VALID, thresholds: { high: 90, low: 60, raiseAfter: 3, clearAfter: 2 } };
  assert.deepEqual(decodeReading(bytes(encodeReading(reading)), bytes(reading.deviceId)), {
    ok: true,
    reading,
  });
});

// ---------------------------------------------------------------------------
// Properties

/** Resolves to a value without -0, which JSON cannot carry. */
function finite(min: number, max: number): fc.Arbitrary<number> {
  return fc.double({ min, max, noNaN: true }).map((x) => x + 0);
}

const ruleArb = fc
  .record({
    a: fc.integer({ min: TEMPERATURE_RANGE.min * 10, max: TEMPERATURE_RANGE.max * 10 }),
    b: fc.integer({ min: TEMPERATURE_RANGE.min * 10, max: TEMPERATURE_RANGE.max * 10 }),
    raiseAfter: fc.integer({ min: 1, max: 1000 }),
    clearAfter: fc.integer({ min: 1, max: 1000 }),
  }, { noNullPrototype: true })
  .filter(({ a, b }) => a !== b)
  .map(({ a, b, raiseAfter, clearAfter }) => ({
    high: Math.max(a, b) / 10,
    low: Math.min(a, b) / 10,
    raiseAfter,
    clearAfter,
  }));

const readingArb: fc.Arbitrary<Reading> = fc
  .record({
    deviceId: fc.stringMatching(DEVICE_ID_PATTERN),
    seq: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
    ts: fc
      .integer({ min: Date.UTC(1970, 0, 1), max: Date.UTC(2200, 0, 1) })
      .map((ms) => new Date(ms).toISOString()),
    temperature: finite(TEMPERATURE_RANGE.min, TEMPERATURE_RANGE.max),
    humidity: finite(0, 100),
    location: fc.record(
      { lat: finite(-90, 90), lon: finite(-180, 180) },
      { noNullPrototype: true },
    ),
    thresholds: fc.option(ruleArb, { nil: undefined }),
  }, { noNullPrototype: true })
  .map(({ thresholds, ...rest }) => (thresholds ? { ...rest, thresholds } : rest));

Deno.test("decodeReading() never throws on arbitrary bytes, text or JSON", () => {
  const valueArb = fc.oneof(
    fc.uint8Array({ maxLength: 256 }),
    fc.string({ unit: "binary", maxLength: 128 }).map((s) => encoder.encode(s)),
    fc.jsonValue({ maxDepth: 4 }).map((v) => encoder.encode(JSON.stringify(v) ?? "")),
    readingArb.map((r) => encoder.encode(encodeReading(r))),
  );
  const keyArb = fc.option(fc.uint8Array({ maxLength: 80 }), { nil: null });
  fc.assert(
    fc.property(valueArb, keyArb, (value, key) => {
      const result = decodeReading(value, key);
      assert.equal(typeof result.ok, "boolean");
      if (!result.ok) assert.ok(result.reason.length > 0);
    }),
    { numRuns: NUM_RUNS },
  );
});

Deno.test("decodeReading(encodeReading(r)) returns r for any valid reading", () => {
  fc.assert(
    fc.property(readingArb, (reading) => {
      const result = decodeReading(bytes(encodeReading(reading)), bytes(reading.deviceId));
      assert.deepEqual(result, { ok: true, reading });
    }),
    { numRuns: NUM_RUNS },
  );
});
