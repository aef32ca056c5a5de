import assert from "node:assert/strict";
import { type ApiDeps, createApi } from "../adapters/http_api.ts";
import { MAX_BODY_BYTES } from "../adapters/http/helpers.ts";
import { rateLimit } from "../adapters/http/middleware.ts";
import { silentLogger } from "../adapters/log.ts";
import type { HealthReport } from "../adapters/health.ts";
import { ApiError, errorBody } from "../adapters/http_errors.ts";
import { Hono } from "@hono/hono";
import { createMetrics } from "../adapters/metrics.ts";
import { FakeTime } from "./fake_time.ts";
import {
  CreatedSensorsSchema,
  ErrorBodySchema,
  OverheatAcceptedSchema,
  ProbeBodySchema,
} from "../schemas/http_api.ts";
import { until } from "./wait.ts";
import { parseSensorRequest, type SensorRequest } from "../schemas/sensor_request.ts";
import type { OverheatRequest } from "../schemas/overheat_request.ts";
import { type FaultRequest, resolveFault } from "../schemas/fault_request.ts";
import type { FaultKind } from "../domain/sensor_faults.ts";
import {
  type AlertDoc,
  type DeviceDoc,
  type ReadingDoc,
  toAlertDoc,
  toDeviceDoc,
  toReadingDoc,
} from "../schemas/documents.ts";
import { DEFAULT_RULE, INITIAL_ALARM_STATE } from "../domain/hysteresis.ts";
import type {
  AddSensorsResult,
  ClearFaultsResult,
  FaultResult,
  OverheatResult,
  RuleResult,
  SensorControl,
  SensorDetail,
} from "../actors/sensor_control.ts";
import { mergeRule, type RulePatch } from "../schemas/rule_request.ts";
import type { AckOutcome, ReadingWindow, StoreQueries } from "../actors/store_queries.ts";
import type { AlertAck } from "../schemas/documents.ts";

const TOKEN = "s3cret-token";

/** An in-memory fleet: ids are unique, adds are all-or-none and bounded by `cap`. */
class FakeFleet implements SensorControl {
  readonly sensors = new Map<string, SensorDetail>();
  readonly requests: SensorRequest[] = [];
  #next = 1;

  constructor(
    readonly cap = 10,
    readonly reject?: (request: SensorRequest) => AddSensorsResult | undefined,
  ) {}

  get size(): number {
    return this.sensors.size;
  }

  add(request: SensorRequest): AddSensorsResult {
    this.requests.push(request);
    const rejected = this.reject?.(request);
    if (rejected) return rejected;
    const ids = request.kind === "one"
      ? [request.id ?? `sensor-${this.#next}`]
      : Array.from({ length: request.count }, (_, i) => `${request.idPrefix ?? "sensor"}-${i + 1}`);
    if (this.size + ids.length > this.cap) {
      return {
        ok: false,
        code: "cap",
        message: `Sensor cap reached: ${ids.length} more would exceed the limit of ${this.cap}`,
      };
    }
    const taken = ids.find((id) => this.sensors.has(id));
    if (taken) {
      return { ok: false, code: "conflict", message: `Sensor already running: "${taken}"` };
    }
    for (const id of ids) {
      this.#next++;
      this.sensors.set(id, {
        id,
        profile: request.template.profile ?? "normal",
        intervalMs: request.template.intervalMs ?? 1000,
        seq: 0,
        status: "running",
        thresholds: DEFAULT_RULE,
        owner: { host: "test-host", pid: 1 },
        emitting: true,
        faults: [],
        lastReading: null,
      });
    }
    return { ok: true, ids };
  }

  remove(id: string): Promise<boolean> {
    return Promise.resolve(this.sensors.delete(id));
  }

  list(offset: number, limit: number): readonly SensorDetail[] {
    return [...this.sensors.values()].slice(offset, offset + limit);
  }

  get(id: string): SensorDetail | undefined {
    return this.sensors.get(id);
  }

  readonly overheats: Array<[string, OverheatRequest]> = [];

  overheat(id: string, request: OverheatRequest): OverheatResult {
    const sensor = this.sensors.get(id);
    if (!sensor) return { ok: false, code: "not_found", message: `Unknown sensor: "${id}"` };
    const temperature = request.temperature ?? sensor.thresholds.high + 10;
    if (temperature < sensor.thresholds.high) {
      return { ok: false, code: "invalid", message: `temperature: ${temperature} is too cool` };
    }
    if (sensor.status !== "running") {
      return { ok: false, code: "not_running", message: `Sensor is ${sensor.status}: "${id}"` };
    }
    this.overheats.push([id, request]);
    return { ok: true, readings: request.readings, temperature };
  }

  readonly faultRequests: Array<[string, FaultRequest]> = [];
  readonly cleared: Array<[string, FaultKind | undefined]> = [];

  fault(id: string, request: FaultRequest): FaultResult {
    const sensor = this.sensors.get(id);
    if (!sensor) return { ok: false, code: "not_found", message: `Unknown sensor: "${id}"` };
    if (sensor.status !== "running") {
      return { ok: false, code: "not_running", message: `Sensor is ${sensor.status}: "${id}"` };
    }
    this.faultRequests.push([id, request]);
    return {
      ok: true,
      fault: resolveFault(request, { high: sensor.thresholds.high, maxTemperature: 200 }),
    };
  }

  clearFaults(id: string, kind?: FaultKind): ClearFaultsResult {
    if (!this.sensors.has(id)) {
      return { ok: false, code: "not_found", message: `Unknown sensor: "${id}"` };
    }
    this.cleared.push([id, kind]);
    return { ok: true };
  }

  readonly rulePatches: Array<[string, RulePatch]> = [];

  setRule(id: string, patch: RulePatch): RuleResult {
    const sensor = this.sensors.get(id);
    if (!sensor) return { ok: false, code: "not_found", message: `Unknown sensor: "${id}"` };
    const merged = mergeRule(sensor.thresholds, patch);
    if (!merged.ok) return { ok: false, code: "invalid", message: merged.message };
    this.rulePatches.push([id, patch]);
    this.sensors.set(id, { ...sensor, thresholds: merged.rule });
    return { ok: true, rule: merged.rule, appliesAfterSeq: sensor.seq };
  }
}

type AlertFilter = Parameters<StoreQueries["alerts"]>[0];

/** An in-memory read side that records what it was asked. */
class FakeStore implements StoreQueries {
  readonly devices = new Map<string, DeviceDoc>();
  readonly readingDocs: ReadingDoc[] = [];
  readonly alertDocs: AlertDoc[] = [];
  readonly readingCalls: Array<[string, number]> = [];
  readonly alertCalls: AlertFilter[] = [];

  device(id: string): Promise<DeviceDoc | null> {
    return Promise.resolve(this.devices.get(id) ?? null);
  }

  readings(deviceId: string, limit: number): Promise<readonly ReadingDoc[]> {
    this.readingCalls.push([deviceId, limit]);
    const mine = this.readingDocs.filter((r) => r.deviceId === deviceId);
    return Promise.resolve(mine.sort((a, b) => b.seq - a.seq).slice(0, limit));
  }

  alerts(filter: AlertFilter): Promise<readonly AlertDoc[]> {
    this.alertCalls.push(filter);
    return Promise.resolve(
      this.alertDocs
        .filter((a) => filter.status === undefined || a.status === filter.status)
        .filter((a) => filter.deviceId === undefined || a.deviceId === filter.deviceId)
        .filter((a) => filter.acked === undefined || (a.ackedAt !== undefined) === filter.acked)
        .filter((a) => filter.raisedFrom === undefined || a.raisedAt >= filter.raisedFrom)
        .filter((a) => filter.raisedTo === undefined || a.raisedAt < filter.raisedTo)
        .slice(0, filter.limit),
    );
  }

  readonly windowCalls: ReadingWindow[] = [];
  /** When set, `readingsBetween()` answers only once its signal aborts (a store that hangs). */
  hang = false;

  readingsBetween(window: ReadingWindow): Promise<readonly ReadingDoc[]> {
    this.windowCalls.push(window);
    if (this.hang) {
      return new Promise((_, reject) =>
        window.signal?.addEventListener("abort", () => reject(window.signal?.reason))
      );
    }
    return Promise.resolve(
      this.readingDocs
        .filter((r) => window.deviceId === undefined || r.deviceId === window.deviceId)
        .filter((r) => r.ts >= window.from && r.ts < window.to)
        .sort((a, b) => a.deviceId.localeCompare(b.deviceId) || a.seq - b.seq)
        .slice(0, window.limit),
    );
  }

  acknowledge(id: string, ack: AlertAck): Promise<AckOutcome | null> {
    const i = this.alertDocs.findIndex((a) => a._id === id);
    if (i < 0) return Promise.resolve(null);
    const alert = this.alertDocs[i]!;
    if (alert.ackedAt !== undefined) return Promise.resolve({ alert, recorded: false });
    this.alertDocs[i] = { ...alert, ...ack };
    return Promise.resolve({ alert: this.alertDocs[i]!, recorded: true });
  }
}

function makeApi(overrides: Partial<ApiDeps> = {}) {
  const fleet = new FakeFleet();
  const store = new FakeStore();
  const app = createApi({
    health: () => Promise.resolve({ ok: true, checks: {} }),
    info: { role: "all", version: "test" },
    logger: silentLogger,
    sensors: fleet,
    queries: store,
    ...overrides,
  });
  return { app, fleet, store };
}

function post(body: string, headers: Record<string, string> = {}): RequestInit {
  return { method: "POST", body, headers: { "Content-Type": "application/json", ...headers } };
}

/** Asserts the status and the exact error shape, and returns the message. */
async function assertError(res: Response, status: number, code: string): Promise<string> {
  assert.equal(res.status, status);
  assert.match(res.headers.get("Content-Type") ?? "", /^application\/json/);
  const body = await res.json();
  assert.deepEqual(Object.keys(body), ["error"]);
  assert.deepEqual(Object.keys(body.error).sort(), ["code", "message"]);
  assert.equal(body.error.code, code);
  assert.equal(typeof body.error.message, "string");
  assert.doesNotMatch(body.error.message, /\n\s+at /, "no stack trace");
  return body.error.message;
}

const reading = (deviceId: string, seq: number, temperature: number) =>
  toReadingDoc(
    {
      deviceId,
      seq,
      ts: new Date(Date.UTC(2026, 0, 1, 0, 0, seq)).toISOString(),
      temperature,
      humidity: 50,
      location: { lat: 48.85, lon: 2.35 },
    },
    temperature >= 80,
    new Date(Date.UTC(2026, 0, 1, 0, 1)),
  );

// --- health and routing -----------------------------------------------------

Deno.test("GET /health still answers 200 with the role and version", async () => {
  const { app } = makeApi();
  const res = await app.request("/health");
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.equal(body.status, "ok");
  assert.equal(body.role, "all");
  assert.equal(body.version, "test");
});

Deno.test("GET /livez answers 200 without running a dependency check", async () => {
  let checks = 0;
  const { app } = makeApi({
    // A check that never settles: /livez must not wait for it.
    health: () => {
      checks++;
      return new Promise(() => {});
    },
  });
  const res = await app.request("/livez");
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { status: "ok" });
  assert.equal(res.headers.get("Cache-Control"), "no-store");
  assert.equal(checks, 0);
});

Deno.test("GET /readyz answers 503 naming the failing check, 200 once every check passes", async () => {
  let report: HealthReport = {
    ok: false,
    checks: { kafka: { ok: false, error: "refused" }, pipeline: { ok: true, latencyMs: 0 } },
  };
  const { app } = makeApi({ health: () => Promise.resolve(report) });
  const down = await app.request("/readyz");
  assert.equal(down.status, 503);
  assert.equal(down.headers.get("Cache-Control"), "no-store");
  assert.deepEqual(await down.json(), { status: "degraded", checks: report.checks });

  report = { ok: true, checks: { kafka: { ok: true, latencyMs: 3 } } };
  const up = await app.request("/readyz");
  assert.equal(up.status, 200);
  assert.deepEqual(await up.json(), { status: "ok", checks: report.checks });
});

Deno.test("the probes answer without a token when API_TOKEN is set", async () => {
  const { app } = makeApi({ apiToken: TOKEN });
  assert.equal((await app.request("/livez")).status, 200);
  assert.equal((await app.request("/readyz")).status, 200);
});

Deno.test("an unknown route answers 404 not_found with the error body", async () => {
  const { app } = makeApi();
  const message = await assertError(await app.request("/nope"), 404, "not_found");
  assert.equal(message, "No route for GET /nope");
});

Deno.test("an unexpected port failure answers 500 internal without details", async () => {
  const fleet = new FakeFleet();
  fleet.list = () => {
    throw new Error("secret detail at /srv/app.ts:12");
  };
  const { app } = makeApi({ sensors: fleet });
  const message = await assertError(await app.request("/sensors"), 500, "internal");
  assert.equal(message, "Internal error");
});

// --- GET /sensors -------------------------------------------------------------

Deno.test("GET /sensors lists the fleet with total, offset and default limit", async () => {
  const { app, fleet } = makeApi();
  fleet.add(parseBatch(3));
  const res = await app.request("/sensors");
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.equal(body.total, 3);
  assert.equal(body.offset, 0);
  assert.equal(body.limit, 100);
  assert.deepEqual(body.sensors.map((s: { id: string }) => s.id), [
    "sensor-1",
    "sensor-2",
    "sensor-3",
  ]);
});

Deno.test("GET /sensors pages with offset and limit", async () => {
  const { app, fleet } = makeApi();
  fleet.add(parseBatch(3));
  const body = await (await app.request("/sensors?offset=1&limit=1")).json();
  assert.equal(body.total, 3);
  assert.equal(body.offset, 1);
  assert.equal(body.limit, 1);
  assert.deepEqual(body.sensors.map((s: { id: string }) => s.id), ["sensor-2"]);
});

Deno.test("GET /sensors answers 400 for a limit or offset that is not an allowed integer", async () => {
  const { app } = makeApi();
  for (
    const query of [
      "limit=abc",
      "limit=0",
      "limit=1001",
      "limit=1.5",
      "limit=-1",
      "limit=1e2",
      "limit=",
      "offset=-1",
      "offset=x",
      "offset=99999999999999999999",
    ]
  ) {
    const message = await assertError(await app.request(`/sensors?${query}`), 400, "bad_request");
    assert.match(message, new RegExp(`^Invalid ${query.split("=")[0]}: `), query);
  }
  const message = await assertError(await app.request("/sensors?limit=abc"), 400, "bad_request");
  assert.equal(message, 'Invalid limit: "abc" must be an integer from 1 to 1000');
});

Deno.test("GET /sensors accepts the limit bounds 1 and 1000", async () => {
  const { app } = makeApi();
  assert.equal((await app.request("/sensors?limit=1")).status, 200);
  assert.equal((await app.request("/sensors?limit=1000")).status, 200);
});

// --- POST /sensors --------------------------------------------------------------

function parseOne(body: Record<string, unknown>): SensorRequest {
  const parsed = parseSensorRequest(body);
  assert.ok(parsed.ok);
  return parsed.request;
}

function parseBatch(count: number): SensorRequest {
  const parsed = parseSensorRequest({ count });
  assert.ok(parsed.ok);
  return parsed.request;
}

Deno.test("POST /sensors answers 201 with the id and a Location for one sensor", async () => {
  const { app, fleet } = makeApi();
  const res = await app.request("/sensors", post('{"id":"boiler-1","intervalMs":500}'));
  assert.equal(res.status, 201);
  assert.equal(res.headers.get("Location"), "/sensors/boiler-1");
  assert.deepEqual(await res.json(), { ids: ["boiler-1"] });
  assert.equal(fleet.get("boiler-1")?.intervalMs, 500);
});

Deno.test("POST /sensors passes a parsed batch request to add and answers every id", async () => {
  const { app, fleet } = makeApi();
  const res = await app.request("/sensors", post('{"count":3}'));
  assert.equal(res.status, 201);
  assert.equal(res.headers.get("Location"), null);
  assert.deepEqual(await res.json(), { ids: ["sensor-1", "sensor-2", "sensor-3"] });
  assert.deepEqual(fleet.requests, [parseBatch(3)]);
  assert.equal(fleet.requests[0]?.kind, "batch");
});

Deno.test("POST /sensors accepts a JSON content type with parameters", async () => {
  const { app } = makeApi();
  const res = await app.request(
    "/sensors",
    post("{}", { "Content-Type": "application/json; charset=utf-8" }),
  );
  assert.equal(res.status, 201);
});

Deno.test("POST /sensors answers 400 for a body that is not valid JSON", async () => {
  const { app, fleet } = makeApi();
  for (const body of ['{"id":', "", "not json"]) {
    const message = await assertError(
      await app.request("/sensors", post(body)),
      400,
      "bad_request",
    );
    assert.match(message, /^Body is not valid JSON/);
  }
  assert.equal(fleet.requests.length, 0);
});

Deno.test("POST /sensors answers 400 for a content type other than JSON", async () => {
  const { app, fleet } = makeApi();
  for (const type of ["text/plain", "application/x-www-form-urlencoded"]) {
    const res = await app.request("/sensors", post("{}", { "Content-Type": type }));
    assert.match(await assertError(res, 400, "bad_request"), /must be application\/json/);
  }
  assert.equal(fleet.requests.length, 0);
});

Deno.test("POST /sensors answers 400 with the schema's message for an invalid request", async () => {
  const cases: Array<[string, string, RegExp]> = [
    ["unknown field", '{"id":"a","role":"admin"}', /role|Unrecognized/i],
    ["$-key", '{"$where":"1"}', /^Forbidden key: "\$where"$/],
    ["nested $-key", '{"location":{"$gt":1}}', /^Forbidden key: "\$gt"$/],
    ["__proto__ key", '{"__proto__":{"admin":true}}', /^Forbidden key: "__proto__"$/],
    ["intervalMs below 100", '{"intervalMs":99}', /^intervalMs: /],
    ["intervalMs above one hour", '{"intervalMs":3600001}', /^intervalMs: /],
    ["bad id", '{"id":"a:b"}', /^id: /],
    ["an array", "[]", /^Body must be a JSON object$/],
    ["count 0", '{"count":0}', /^count: /],
  ];
  for (const [name, body, expected] of cases) {
    const { app, fleet } = makeApi();
    const res = await app.request("/sensors", post(body));
    assert.match(await assertError(res, 400, "bad_request"), expected, name);
    assert.equal(fleet.requests.length, 0, `${name}: add not called`);
  }
});

Deno.test("POST /sensors answers 400 when the fleet calls the request invalid", async () => {
  const fleet = new FakeFleet(10, () => ({
    ok: false,
    code: "invalid",
    message: "idPrefix: ids would be too long",
  }));
  const { app } = makeApi({ sensors: fleet });
  const message = await assertError(
    await app.request("/sensors", post('{"count":2,"idPrefix":"x"}')),
    400,
    "bad_request",
  );
  assert.equal(message, "idPrefix: ids would be too long");
});

Deno.test("POST /sensors answers 409 when the id is already running", async () => {
  const { app, fleet } = makeApi();
  assert.equal((await app.request("/sensors", post('{"id":"dup"}'))).status, 201);
  const res = await app.request("/sensors", post('{"id":"dup"}'));
  assert.equal(await assertError(res, 409, "conflict"), 'Sensor already running: "dup"');
  assert.equal(fleet.size, 1);
});

Deno.test("POST /sensors answers 409 conflict naming the cap when the fleet is full", async () => {
  const fleet = new FakeFleet(2);
  const { app } = makeApi({ sensors: fleet });
  const res = await app.request("/sensors", post('{"count":3}'));
  const message = await assertError(res, 409, "conflict");
  assert.match(message, /cap/i);
  assert.match(message, /\b2\b/);
  assert.equal(fleet.size, 0);
});

Deno.test("POST /sensors answers 413 for a body over 2 MiB", async () => {
  const { app, fleet } = makeApi();
  const big = `{"id":"a","pad":"${"x".repeat(MAX_BODY_BYTES)}"}`;
  const message = await assertError(
    await app.request("/sensors", post(big)),
    413,
    "payload_too_large",
  );
  assert.match(message, /2 MiB/);
  assert.equal(fleet.requests.length, 0);
});

Deno.test("POST /sensors answers 413 from Content-Length alone and for a streamed body", async () => {
  const { app } = makeApi();
  const declared = await app.request(
    "/sensors",
    post("{}", { "Content-Length": String(MAX_BODY_BYTES + 1) }),
  );
  await assertError(declared, 413, "payload_too_large");

  const chunk = new TextEncoder().encode("x".repeat(64 * 1024));
  let sent = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (sent > MAX_BODY_BYTES) return controller.close();
      sent += chunk.length;
      controller.enqueue(chunk);
    },
  });
  const streamed = await app.request("/sensors", {
    method: "POST",
    body: stream,
    headers: { "Content-Type": "application/json" },
  });
  await assertError(streamed, 413, "payload_too_large");
});

Deno.test("POST /sensors reads a body of exactly 2 MiB", async () => {
  const { app } = makeApi();
  const prefix = '{"id":"a","pad":"';
  const suffix = '"}';
  const body = prefix + "x".repeat(MAX_BODY_BYTES - prefix.length - suffix.length) + suffix;
  assert.equal(body.length, MAX_BODY_BYTES);
  // Past the limit, into validation: the unknown field is what is wrong.
  await assertError(await app.request("/sensors", post(body)), 400, "bad_request");
});

// --- GET and DELETE /sensors/:id ------------------------------------------------

Deno.test("GET /sensors/:id answers 200 with the sensor detail", async () => {
  const { app, fleet } = makeApi();
  fleet.add({ kind: "one", id: "probe-7", template: { profile: "overheat" } });
  const res = await app.request("/sensors/probe-7");
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), fleet.get("probe-7"));
});

Deno.test("GET /sensors/:id answers 404 for an unknown sensor", async () => {
  const { app } = makeApi();
  const message = await assertError(await app.request("/sensors/ghost"), 404, "not_found");
  assert.equal(message, 'Unknown sensor: "ghost"');
});

Deno.test("GET /sensors/:id answers 400 for a malformed id", async () => {
  const { app } = makeApi();
  for (const id of ["bad%3Aid", "-leading-dash", "x".repeat(65), "sp%20ace"]) {
    const message = await assertError(await app.request(`/sensors/${id}`), 400, "bad_request");
    assert.match(message, /^Invalid sensor id: /, id);
  }
});

Deno.test("DELETE /sensors/:id answers 204 with no body and removes the sensor", async () => {
  const { app, fleet } = makeApi();
  fleet.add({ kind: "one", id: "gone", template: {} });
  const res = await app.request("/sensors/gone", { method: "DELETE" });
  assert.equal(res.status, 204);
  assert.equal(await res.text(), "");
  assert.equal(fleet.get("gone"), undefined);
});

Deno.test("DELETE /sensors/:id answers 404 for an unknown sensor", async () => {
  const { app } = makeApi();
  const res = await app.request("/sensors/ghost", { method: "DELETE" });
  assert.equal(await assertError(res, 404, "not_found"), 'Unknown sensor: "ghost"');
});

// --- devices and readings -------------------------------------------------------

Deno.test("GET /devices/:id answers 200 with the device document, dates as ISO strings", async () => {
  const { app, store } = makeApi();
  const updatedAt = new Date(Date.UTC(2026, 0, 2, 3, 4, 5));
  store.devices.set("dev-1", toDeviceDoc("dev-1", INITIAL_ALARM_STATE, DEFAULT_RULE, updatedAt));
  const res = await app.request("/devices/dev-1");
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.equal(body._id, "dev-1");
  assert.equal(body.level, "normal");
  assert.equal(body.updatedAt, "2026-01-02T03:04:05.000Z");
  assert.deepEqual(body.thresholds, DEFAULT_RULE);
});

Deno.test("GET /devices/:id answers 404 for an unknown device and 400 for a bad id", async () => {
  const { app } = makeApi();
  const message = await assertError(await app.request("/devices/ghost"), 404, "not_found");
  assert.equal(message, 'Unknown device: "ghost"');
  await assertError(await app.request("/devices/a%3Ab"), 400, "bad_request");
});

Deno.test("GET /devices/:id/readings answers newest first, honouring limit", async () => {
  const { app, store } = makeApi();
  store.readingDocs.push(reading("dev-1", 1, 20), reading("dev-1", 2, 21), reading("dev-1", 3, 22));
  store.readingDocs.push(reading("other", 9, 20));
  const res = await app.request("/devices/dev-1/readings?limit=2");
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.equal(body.deviceId, "dev-1");
  assert.deepEqual(body.readings.map((r: { seq: number }) => r.seq), [3, 2]);
  assert.equal(body.readings[0].ts, "2026-01-01T00:00:03.000Z");
  assert.deepEqual(store.readingCalls, [["dev-1", 2]]);
});

Deno.test("GET /devices/:id/readings defaults limit to 100 and rejects a bad one", async () => {
  const { app, store } = makeApi();
  assert.equal((await app.request("/devices/dev-1/readings")).status, 200);
  assert.deepEqual(store.readingCalls, [["dev-1", 100]]);
  for (const limit of ["0", "1001", "ten"]) {
    const res = await app.request(`/devices/dev-1/readings?limit=${limit}`);
    assert.match(await assertError(res, 400, "bad_request"), /^Invalid limit: /);
  }
});

// --- alerts ---------------------------------------------------------------------

Deno.test("GET /alerts answers 200 filtered by status and deviceId", async () => {
  const { app, store } = makeApi();
  const episode = { raisedSeq: 3, raisedAt: "2026-01-01T00:00:03.000Z", peakTemperature: 91 };
  store.alertDocs.push(
    toAlertDoc("dev-1", episode, DEFAULT_RULE),
    toAlertDoc("dev-2", episode, DEFAULT_RULE, { seq: 9, ts: "2026-01-01T00:00:09.000Z" }),
  );
  const res = await app.request("/alerts?status=active&deviceId=dev-1&limit=5");
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.deepEqual(body.alerts.map((a: { _id: string }) => a._id), ["dev-1:overheat:3"]);
  assert.equal(body.alerts[0].raisedAt, "2026-01-01T00:00:03.000Z");
  assert.deepEqual(store.alertCalls, [{ status: "active", deviceId: "dev-1", limit: 5 }]);
});

Deno.test("GET /alerts without filters asks for the default limit only", async () => {
  const { app, store } = makeApi();
  const res = await app.request("/alerts");
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { alerts: [] });
  assert.deepEqual(store.alertCalls, [{ limit: 100 }]);
});

Deno.test("GET /alerts answers 400 for a bad status, deviceId or limit", async () => {
  const { app, store } = makeApi();
  const status = await assertError(await app.request("/alerts?status=open"), 400, "bad_request");
  assert.equal(status, 'Invalid status: "open" must be "active" or "cleared"');
  const device = await assertError(
    await app.request("/alerts?deviceId=a%3Ab"),
    400,
    "bad_request",
  );
  assert.match(device, /^Invalid deviceId: "a:b"/);
  const limit = await assertError(await app.request("/alerts?limit=5000"), 400, "bad_request");
  assert.equal(limit, 'Invalid limit: "5000" must be an integer from 1 to 1000');
  assert.equal(store.alertCalls.length, 0);
});

Deno.test("GET /alerts?acked= filters by acknowledgement and rejects anything but true or false", async () => {
  const { app, store } = makeApi();
  const episode = { raisedSeq: 3, raisedAt: "2026-01-01T00:00:03.000Z", peakTemperature: 91 };
  store.alertDocs.push(
    { ...toAlertDoc("dev-1", episode, DEFAULT_RULE), ackedBy: "ana", ackedAt: new Date(0) },
    toAlertDoc("dev-2", episode, DEFAULT_RULE),
  );
  const ids = async (query: string) =>
    (await (await app.request(`/alerts${query}`)).json()).alerts.map((a: AlertDoc) => a._id);
  assert.deepEqual(await ids("?acked=false"), ["dev-2:overheat:3"]);
  assert.deepEqual(await ids("?acked=true"), ["dev-1:overheat:3"]);
  assert.deepEqual(store.alertCalls.map((f) => f.acked), [false, true]);
  const message = await assertError(await app.request("/alerts?acked=yes"), 400, "bad_request");
  assert.equal(message, 'Invalid acked: "yes" must be "true" or "false"');
});

// --- acknowledgement --------------------------------------------------------------

const ACK_AT = new Date("2026-02-03T04:05:06.000Z");

function ackApi(overrides: Partial<ApiDeps> = {}) {
  const made = makeApi({ now: () => ACK_AT, ...overrides });
  const episode = { raisedSeq: 3, raisedAt: "2026-01-01T00:00:03.000Z", peakTemperature: 91 };
  made.store.alertDocs.push(toAlertDoc("dev-1", episode, DEFAULT_RULE));
  return made;
}

Deno.test("POST /alerts/:id/ack records who, when and the note, and answers the alert", async () => {
  const { app, store } = ackApi();
  const res = await app.request(
    "/alerts/dev-1:overheat:3/ack",
    post('{"by":" ana ","note":"on my way"}'),
  );
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.equal(body._id, "dev-1:overheat:3");
  assert.equal(body.status, "active", "acknowledging does not clear");
  assert.deepEqual([body.ackedBy, body.ackedAt, body.note], [
    "ana",
    ACK_AT.toISOString(),
    "on my way",
  ]);
  assert.equal(store.alertDocs[0]!.ackedBy, "ana");
});

Deno.test("POST /alerts/:id/ack again keeps the first acknowledgement and answers it", async () => {
  const { app } = ackApi();
  await app.request("/alerts/dev-1:overheat:3/ack", post('{"by":"ana"}'));
  const again = await app.request(
    "/alerts/dev-1:overheat:3/ack",
    post('{"by":"bob","note":"me too"}'),
  );
  assert.equal(again.status, 200);
  const body = await again.json();
  assert.equal(body.ackedBy, "ana");
  assert.equal(body.note, undefined);
});

Deno.test("POST /alerts/:id/ack answers 404 for an unknown alert and 400 for bad input", async () => {
  const { app, store } = ackApi();
  const unknown = await assertError(
    await app.request("/alerts/dev-9:overheat:3/ack", post('{"by":"ana"}')),
    404,
    "not_found",
  );
  assert.equal(unknown, 'Unknown alert: "dev-9:overheat:3"');
  const bodies = [
    ["{}", /^by: /],
    ['{"by":"   "}', /^by: /],
    ['{"by":"ana","extra":1}', /extra/],
    ['{"by":"ana","note":7}', /^note: /],
    [`{"by":"${"x".repeat(101)}"}`, /^by: /],
    ['{"by":"ana","$set":1}', /^Forbidden key: "\$set"/],
    ["[]", /./],
    ["not json", /^Body is not valid JSON/],
  ] as const;
  for (const [body, pattern] of bodies) {
    const message = await assertError(
      await app.request("/alerts/dev-1:overheat:3/ack", post(body)),
      400,
      "bad_request",
    );
    assert.match(message, pattern, body);
  }
  const badId = await assertError(
    await app.request("/alerts/dev-1/ack", post('{"by":"ana"}')),
    400,
    "bad_request",
  );
  assert.match(badId, /^Invalid alert id: "dev-1" must be <deviceId>:<type>:<raisedSeq>/);
  assert.equal(store.alertDocs[0]!.ackedAt, undefined);
});

Deno.test("POST /alerts/:id/ack needs the API token like every change", async () => {
  const { app, store } = ackApi({ apiToken: TOKEN });
  await assertError(
    await app.request("/alerts/dev-1:overheat:3/ack", post('{"by":"ana"}')),
    401,
    "unauthorized",
  );
  assert.equal(store.alertDocs[0]!.ackedAt, undefined);
  const res = await app.request(
    "/alerts/dev-1:overheat:3/ack",
    post('{"by":"ana"}', { Authorization: `Bearer ${TOKEN}` }),
  );
  assert.equal(res.status, 200);
});

// --- backtest ----------------------------------------------------------------------

const WINDOW = { from: "2026-01-01T00:00:00.000Z", to: "2026-01-01T01:00:00.000Z" };
const STRICT_RULE = { high: 85, low: 70, raiseAfter: 1, clearAfter: 1 };

Deno.test("POST /rules/backtest answers the candidate rule's episodes next to the stored ones", async () => {
  const { app, store } = makeApi();
  // dev-1: 81, 82 (stored episode at 2 under the default rule), 86, 60.
  for (const [seq, t] of [[1, 81], [2, 82], [3, 86], [4, 60], [5, 60]] as const) {
    store.readingDocs.push(reading("dev-1", seq, t));
  }
  store.readingDocs.push(reading("dev-2", 1, 90), reading("other", 1, 99));
  const episode = { raisedSeq: 2, raisedAt: "2026-01-01T00:00:02.000Z", peakTemperature: 86 };
  store.alertDocs.push(
    toAlertDoc("dev-1", episode, DEFAULT_RULE, { seq: 5, ts: "2026-01-01T00:00:05.000Z" }),
  );
  const res = await app.request(
    "/rules/backtest",
    post(JSON.stringify({ deviceId: "dev-1", ...WINDOW, rule: STRICT_RULE })),
  );
  assert.equal(res.status, 200, await res.clone().text());
  const body = await res.json();
  assert.equal(body.readings, 5);
  assert.equal(body.devices, 1);
  assert.deepEqual(body.candidate, [{
    _id: "dev-1:overheat:3",
    deviceId: "dev-1",
    type: "overheat",
    status: "cleared",
    raisedAt: "2026-01-01T00:00:03.000Z",
    raisedSeq: 3,
    peakTemperature: 86,
    clearedAt: "2026-01-01T00:00:04.000Z",
    clearedSeq: 4,
  }]);
  assert.deepEqual(body.stored.map((a: AlertDoc) => a._id), ["dev-1:overheat:2"]);
  assert.deepEqual(body.summary, { candidate: 1, stored: 1, same: 0 });
  assert.deepEqual(body.rule, STRICT_RULE);
  assert.equal(store.windowCalls[0]!.deviceId, "dev-1");
});

Deno.test("POST /rules/backtest validates the rule with the one rule schema and the window", async () => {
  const { app, store } = makeApi();
  const bodies = [
    [{ ...WINDOW, rule: { ...STRICT_RULE, low: 90 } }, /low must be below high/],
    [{ ...WINDOW, rule: { ...STRICT_RULE, raiseAfter: 0 } }, /^rule\.raiseAfter: /],
    [{ ...WINDOW, rule: { high: 85 } }, /^rule\.low: /],
    [{ ...WINDOW, rule: STRICT_RULE, extra: 1 }, /extra/],
    [{ from: WINDOW.to, to: WINDOW.from, rule: STRICT_RULE }, /^to: from must be before to/],
    [{ from: "yesterday", to: WINDOW.to, rule: STRICT_RULE }, /^from: /],
    [{ ...WINDOW, deviceId: "a:b", rule: STRICT_RULE }, /^deviceId: /],
  ] as const;
  for (const [body, pattern] of bodies) {
    const message = await assertError(
      await app.request("/rules/backtest", post(JSON.stringify(body))),
      400,
      "bad_request",
    );
    assert.match(message, pattern, JSON.stringify(body));
  }
  assert.equal(store.windowCalls.length, 0);
});

Deno.test("POST /rules/backtest answers 422 past the reading bound, naming it and how to narrow", async () => {
  const { app, store } = makeApi({ backtest: { maxReadings: 3, deadlineMs: 60_000 } });
  for (const seq of [1, 2, 3]) store.readingDocs.push(reading("dev-1", seq, 50));
  const body = JSON.stringify({ ...WINDOW, rule: STRICT_RULE });
  assert.equal((await app.request("/rules/backtest", post(body))).status, 200, "at the bound");
  store.readingDocs.push(reading("dev-2", 1, 50));
  const message = await assertError(
    await app.request("/rules/backtest", post(body)),
    422,
    "limit_exceeded",
  );
  assert.equal(
    message,
    "Backtest window holds more readings than the limit of 3: narrow the window (from, to) or name a deviceId",
  );
  assert.deepEqual(store.windowCalls.map((w) => w.limit), [4, 4], "asks for one past the bound");
});

Deno.test("POST /rules/backtest answers 422 when the store does not answer within the deadline", async () => {
  const { app, store } = makeApi({ backtest: { maxReadings: 10, deadlineMs: 1 } });
  store.hang = true;
  const message = await assertError(
    await app.request("/rules/backtest", post(JSON.stringify({ ...WINDOW, rule: STRICT_RULE }))),
    422,
    "limit_exceeded",
  );
  assert.equal(
    message,
    "Backtest took longer than the deadline: the limit is 1 ms; narrow the window (from, to) or name a deviceId",
  );
  assert.ok(store.windowCalls[0]!.signal?.aborted, "the store was told to stop");
});

Deno.test("POST /rules/backtest needs the API token", async () => {
  const { app, store } = makeApi({ apiToken: TOKEN });
  const body = JSON.stringify({ ...WINDOW, rule: STRICT_RULE });
  await assertError(await app.request("/rules/backtest", post(body)), 401, "unauthorized");
  assert.equal(store.windowCalls.length, 0);
});

// --- roles ----------------------------------------------------------------------

Deno.test("sensor routes answer 503 when this process does not run the sensors role", async () => {
  const { app } = makeApi({ sensors: undefined });
  const requests: Array<[string, RequestInit]> = [
    ["/sensors", {}],
    ["/sensors", post('{"id":"a"}')],
    ["/sensors/a", {}],
    ["/sensors/a", { method: "DELETE" }],
  ];
  for (const [path, init] of requests) {
    const message = await assertError(await app.request(path, init), 503, "unavailable");
    assert.equal(message, "This process does not run the sensors role");
  }
});

Deno.test("device and alert routes answer 503 when this process has no store", async () => {
  const { app } = makeApi({ queries: undefined });
  for (const path of ["/devices/a", "/devices/a/readings", "/alerts"]) {
    await assertError(await app.request(path), 503, "unavailable");
  }
  assert.equal((await app.request("/sensors")).status, 200);
});

// --- auth -----------------------------------------------------------------------

Deno.test("with an API token, POST without Authorization answers 401 with WWW-Authenticate", async () => {
  const { app, fleet } = makeApi({ apiToken: TOKEN });
  const res = await app.request("/sensors", post('{"id":"a"}'));
  assert.match(res.headers.get("WWW-Authenticate") ?? "", /^Bearer\b/);
  assert.match(await assertError(res, 401, "unauthorized"), /^Missing bearer token/);
  assert.equal(fleet.requests.length, 0);
});

Deno.test("with an API token, a wrong token or scheme answers 401", async () => {
  const { app, fleet } = makeApi({ apiToken: TOKEN });
  for (
    const authorization of [
      "Bearer wrong",
      `Bearer ${TOKEN}x`,
      `Bearer ${TOKEN.slice(0, -1)}`,
      `Basic ${btoa(`u:${TOKEN}`)}`,
      TOKEN,
      "Bearer ",
    ]
  ) {
    const res = await app.request("/sensors", post("{}", { Authorization: authorization }));
    assert.match(res.headers.get("WWW-Authenticate") ?? "", /^Bearer\b/, authorization);
    await assertError(res, 401, "unauthorized");
  }
  assert.equal(fleet.requests.length, 0);
});

Deno.test("with an API token, GETs stay open while POST and DELETE need the token", async () => {
  const { app, fleet } = makeApi({ apiToken: TOKEN });
  fleet.add({ kind: "one", id: "kept", template: {} });
  assert.equal((await app.request("/sensors")).status, 200);
  assert.equal((await app.request("/sensors/kept")).status, 200);
  assert.equal((await app.request("/alerts")).status, 200);
  assert.equal((await app.request("/health")).status, 200);

  await assertError(await app.request("/sensors/kept", { method: "DELETE" }), 401, "unauthorized");
  assert.ok(fleet.get("kept"));

  const auth = { Authorization: `Bearer ${TOKEN}` };
  const created = await app.request("/sensors", post('{"id":"new"}', auth));
  assert.equal(created.status, 201);
  const deleted = await app.request("/sensors/kept", { method: "DELETE", headers: auth });
  assert.equal(deleted.status, 204);
  const lowerCase = await app.request("/sensors/new", {
    method: "DELETE",
    headers: { Authorization: `bearer ${TOKEN}` },
  });
  assert.equal(lowerCase.status, 204);
});

Deno.test("with an API token, PUT and PATCH need the token even on unknown routes", async () => {
  const { app } = makeApi({ apiToken: TOKEN });
  for (const method of ["PUT", "PATCH"]) {
    await assertError(await app.request("/sensors/a", { method }), 401, "unauthorized");
    await assertError(await app.request("/nope", { method }), 401, "unauthorized");
    const headers = { Authorization: `Bearer ${TOKEN}` };
    // With the token, a known path answers 405 (no route takes PUT or PATCH), an unknown one 404.
    await assertError(
      await app.request("/sensors/a", { method, headers }),
      405,
      "method_not_allowed",
    );
    await assertError(await app.request("/nope", { method, headers }), 404, "not_found");
  }
});

Deno.test("without an API token, POST needs no Authorization", async () => {
  const { app } = makeApi();
  assert.equal((await app.request("/sensors", post('{"id":"open"}'))).status, 201);
});

// --- rate limit -------------------------------------------------------------------

/** A settable clock in milliseconds. */
function manualClock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => void (t += ms) };
}

/** The connection info `Deno.serve` hands to `app.fetch` as Hono's `c.env`. */
function from(hostname: string) {
  return { remoteAddr: { hostname, port: 40_000, transport: "tcp" } };
}

Deno.test("with a rate limit, mutating requests within the limit pass", async () => {
  const clock = manualClock();
  const { app, fleet } = makeApi({ rateLimit: { perMinute: 3, now: clock.now } });
  for (const id of ["a", "b", "c"]) {
    assert.equal((await app.request("/sensors", post(`{"id":"${id}"}`))).status, 201, id);
  }
  assert.equal(fleet.size, 3);
});

Deno.test("over the rate limit, POST and DELETE answer 429 rate_limited with Retry-After", async () => {
  const clock = manualClock();
  const { app, fleet } = makeApi({ rateLimit: { perMinute: 3, now: clock.now } });
  for (const id of ["a", "b", "c"]) await app.request("/sensors", post(`{"id":"${id}"}`));
  const res = await app.request("/sensors", post('{"id":"d"}'));
  assert.equal(res.headers.get("Retry-After"), "20", "one token every 60/3 s");
  const message = await assertError(res, 429, "rate_limited");
  assert.equal(message, "Too many requests: the limit is 3 per minute, retry in 20 s");
  const deleted = await app.request("/sensors/a", { method: "DELETE" });
  assert.equal(deleted.headers.get("Retry-After"), "20");
  await assertError(deleted, 429, "rate_limited");
  assert.equal(fleet.requests.length, 3, "a limited request never reaches the handler");
  assert.ok(fleet.get("a"));
});

Deno.test("the rate limit refills continuously with the injected clock", async () => {
  const clock = manualClock();
  const { app } = makeApi({ rateLimit: { perMinute: 3, now: clock.now } });
  const create = (id: string) => app.request("/sensors", post(`{"id":"${id}"}`));
  for (const id of ["a", "b", "c"]) await create(id);
  clock.advance(10_000);
  const early = await create("d");
  assert.equal(early.status, 429);
  assert.equal(early.headers.get("Retry-After"), "10", "half a token is back");
  clock.advance(9_500);
  const almost = await create("d");
  assert.equal(almost.status, 429);
  assert.equal(almost.headers.get("Retry-After"), "1", "rounded up, never 0");
  clock.advance(500);
  assert.equal((await create("d")).status, 201);
  assert.equal((await create("e")).status, 429, "that token is spent");
  clock.advance(10 * 60_000);
  for (const id of ["e", "f", "g"]) assert.equal((await create(id)).status, 201, id);
  assert.equal((await create("h")).status, 429, "an idle bucket holds at most perMinute");
});

Deno.test("the rate limit keeps a bucket per token", async () => {
  const clock = manualClock();
  const app = new Hono()
    .use(rateLimit({ perMinute: 1, byToken: true, now: clock.now }))
    .post("/", (c) => c.text("ok"))
    .onError((err, c) =>
      err instanceof ApiError
        ? c.json(errorBody(err.code, err.message), err.status)
        : c.text("", 500)
    );
  const as = (token: string) => ({ method: "POST", headers: { Authorization: `Bearer ${token}` } });
  assert.equal((await app.request("/", as("alpha"))).status, 200);
  assert.equal((await app.request("/", as("alpha"))).status, 429);
  assert.equal((await app.request("/", as("beta"))).status, 200, "another token, another bucket");
  assert.equal((await app.request("/", as("beta"))).status, 429);
});

Deno.test("with an API token, the rate limit applies after auth and per token", async () => {
  const clock = manualClock();
  const { app } = makeApi({ apiToken: TOKEN, rateLimit: { perMinute: 1, now: clock.now } });
  for (let i = 0; i < 5; i++) {
    await assertError(
      await app.request("/sensors", post('{"id":"x"}', { Authorization: "Bearer wrong" })),
      401,
      "unauthorized",
    );
  }
  const auth = { Authorization: `Bearer ${TOKEN}` };
  const first = await app.request("/sensors", post('{"id":"a"}', auth), from("10.0.0.1"));
  assert.equal(first.status, 201, "401s spent no token");
  const other = await app.request("/sensors", post('{"id":"b"}', auth), from("10.0.0.2"));
  await assertError(other, 429, "rate_limited");
  assert.ok(other.headers.get("Retry-After"), "the same token from elsewhere shares the bucket");
});

Deno.test("without an API token, the rate limit keeps a bucket per client address", async () => {
  const clock = manualClock();
  const { app } = makeApi({ rateLimit: { perMinute: 1, now: clock.now } });
  const create = (id: string, address: string, headers: Record<string, string> = {}) =>
    app.request("/sensors", post(`{"id":"${id}"}`, headers), from(address));
  assert.equal((await create("a", "10.0.0.1")).status, 201);
  assert.equal((await create("b", "10.0.0.1")).status, 429);
  assert.equal((await create("b", "10.0.0.2")).status, 201, "another address, another bucket");
  assert.equal(
    (await create("c", "10.0.0.1", { Authorization: "Bearer made-up" })).status,
    429,
    "an unchecked token does not buy a fresh bucket",
  );
  assert.equal((await app.request("/sensors", post('{"id":"c"}'))).status, 201, "no address");
  assert.equal((await app.request("/sensors", post('{"id":"d"}'))).status, 429, "anonymous");
});

Deno.test("the rate limit never applies to GET", async () => {
  const clock = manualClock();
  const { app } = makeApi({ rateLimit: { perMinute: 1, now: clock.now } });
  assert.equal((await app.request("/sensors", post('{"id":"a"}'))).status, 201);
  assert.equal((await app.request("/sensors", post('{"id":"b"}'))).status, 429);
  for (let i = 0; i < 10; i++) {
    for (const path of ["/health", "/sensors", "/sensors/a", "/devices/x", "/alerts"]) {
      const res = await app.request(path);
      assert.notEqual(res.status, 429, path);
      assert.equal(res.headers.get("Retry-After"), null, path);
    }
  }
});

Deno.test("a rate limit of 0 or none at all limits nothing", async () => {
  for (const overrides of [{ rateLimit: { perMinute: 0 } }, {}]) {
    const { app } = makeApi(overrides);
    for (let i = 0; i < 50; i++) {
      assert.equal((await app.request("/sensors/none", { method: "DELETE" })).status, 404);
    }
  }
  assert.throws(() => rateLimit({ perMinute: 0 }), RangeError);
});

Deno.test("rateLimit() stays bounded: idle buckets go first, then the least recently used", async () => {
  const clock = manualClock();
  const app = new Hono()
    .use(rateLimit({ perMinute: 1, now: clock.now, maxBuckets: 2 }))
    .post("/", (c) => c.text("ok"))
    .onError((err, c) => c.text("", err instanceof ApiError ? err.status : 500));
  const hit = async (address: string) =>
    (await app.request("/", { method: "POST" }, from(address))).status;
  assert.equal(await hit("a"), 200);
  clock.advance(60_000); // a's bucket is full again: idle
  assert.equal(await hit("b"), 200);
  assert.equal(await hit("c"), 200, "evicts idle a, keeps b");
  assert.equal(await hit("b"), 429, "b kept its empty bucket");
  // b and c are both empty; b was used last, so c is the one forgotten.
  assert.equal(await hit("d"), 200);
  assert.equal(await hit("b"), 429);
  assert.equal(await hit("c"), 200, "c starts over after eviction");
});

// --- POST /sensors/:id/overheat ------------------------------------------------

Deno.test("POST /sensors/:id/overheat answers 202 with what it asked the sensor", async () => {
  const { app, fleet } = makeApi();
  fleet.add(parseOne({ id: "boiler-1" }));
  const res = await app.request("/sensors/boiler-1/overheat", post('{"readings":5}'));
  assert.equal(res.status, 202);
  assert.deepEqual(await res.json(), { id: "boiler-1", readings: 5, temperature: 90 });
  assert.deepEqual(fleet.overheats, [["boiler-1", { readings: 5, temperature: undefined }]]);
});

Deno.test("POST /sensors/:id/overheat with no body takes the defaults", async () => {
  const { app, fleet } = makeApi();
  fleet.add(parseOne({ id: "boiler-1" }));
  const res = await app.request("/sensors/boiler-1/overheat", { method: "POST" });
  assert.equal(res.status, 202);
  assert.deepEqual(await res.json(), { id: "boiler-1", readings: 10, temperature: 90 });
});

Deno.test("POST /sensors/:id/overheat with a JSON Content-Type and an empty body takes the defaults", async () => {
  const { app, fleet } = makeApi();
  fleet.add(parseOne({ id: "boiler-1" }));
  for (const type of ["application/json", "application/json; charset=utf-8"]) {
    const res = await app.request("/sensors/boiler-1/overheat", post("", { "Content-Type": type }));
    assert.equal(res.status, 202, type);
    assert.deepEqual(await res.json(), { id: "boiler-1", readings: 10, temperature: 90 });
  }
  // Still refused: a body that is there but is not JSON, or not under a JSON Content-Type.
  await assertError(await app.request("/sensors/boiler-1/overheat", post(" ")), 400, "bad_request");
  const typed = await app.request("/sensors/boiler-1/overheat", {
    method: "POST",
    body: "{}",
    headers: { "Content-Type": "text/plain" },
  });
  await assertError(typed, 400, "bad_request");
  assert.equal(fleet.overheats.length, 2);
});

Deno.test("POST /sensors/:id/overheat answers 400 for a bad body, 404 and 409 as the fleet says", async () => {
  const { app, fleet } = makeApi();
  fleet.add(parseOne({ id: "boiler-1" }));
  const bad = await app.request("/sensors/boiler-1/overheat", post('{"readings":0}'));
  assert.match(await assertError(bad, 400, "bad_request"), /^readings: /);
  const cool = await app.request("/sensors/boiler-1/overheat", post('{"temperature":20}'));
  assert.match(await assertError(cool, 400, "bad_request"), /too cool/);
  const text = await app.request("/sensors/boiler-1/overheat", {
    method: "POST",
    body: "readings=3",
    headers: { "Content-Type": "text/plain" },
  });
  assert.match(await assertError(text, 400, "bad_request"), /^Unsupported Content-Type/);
  const unknown = await app.request("/sensors/nobody/overheat", post("{}"));
  assert.equal(await assertError(unknown, 404, "not_found"), 'Unknown sensor: "nobody"');
  fleet.sensors.set("done", { ...fleet.sensors.get("boiler-1")!, id: "done", status: "completed" });
  const done = await app.request("/sensors/done/overheat", post("{}"));
  assert.match(await assertError(done, 409, "conflict"), /completed/);
  assert.deepEqual(fleet.overheats, []);
});

Deno.test("with an API token, POST /sensors/:id/overheat needs the token", async () => {
  const { app, fleet } = makeApi({ apiToken: TOKEN });
  fleet.add(parseOne({ id: "boiler-1" }));
  const res = await app.request("/sensors/boiler-1/overheat", post("{}"));
  await assertError(res, 401, "unauthorized");
  assert.deepEqual(fleet.overheats, []);
  const ok = await app.request(
    "/sensors/boiler-1/overheat",
    post("{}", { Authorization: `Bearer ${TOKEN}` }),
  );
  assert.equal(ok.status, 202);
});

// --- HTTP contract: 405, limits, timeouts, RED metrics -------------------------------

Deno.test("a wrong method on a known path answers 405 with Allow, in the error shape", async () => {
  const { app } = makeApi();
  const cases: Array<[string, string, string]> = [
    ["PUT", "/sensors", "GET, HEAD, OPTIONS, POST"],
    ["DELETE", "/health", "GET, HEAD, OPTIONS"],
    ["POST", "/sensors/a", "DELETE, GET, HEAD, OPTIONS"],
    ["GET", "/sensors/a/overheat", "OPTIONS, POST"],
    ["PATCH", "/alerts", "GET, HEAD, OPTIONS"],
    ["POST", "/devices/d-1/readings", "GET, HEAD, OPTIONS"],
  ];
  for (const [method, path, allow] of cases) {
    const res = await app.request(path, { method });
    assert.equal(res.headers.get("Allow"), allow, `${method} ${path}`);
    const message = await assertError(res, 405, "method_not_allowed");
    assert.match(message, new RegExp(`^Method not allowed: "${method}" on ${path} takes `));
  }
  // An unknown path stays 404, whatever the method.
  for (const method of ["GET", "PUT", "DELETE"]) {
    const res = await app.request("/sensors/a/b/c", { method });
    await assertError(res, 404, "not_found");
    assert.equal(res.headers.get("Allow"), null);
  }
});

Deno.test("OPTIONS on a known path answers 204 with Allow", async () => {
  const { app } = makeApi();
  const res = await app.request("/sensors/a", { method: "OPTIONS" });
  assert.equal(res.status, 204);
  assert.equal(res.headers.get("Allow"), "DELETE, GET, HEAD, OPTIONS");
  await assertError(await app.request("/nope", { method: "OPTIONS" }), 404, "not_found");
});

Deno.test("a request target over 8 KiB answers 414 and headers over 32 KiB 431, in the error shape", async () => {
  const { app } = makeApi();
  const long = await app.request(`/sensors/${"a".repeat(9000)}`);
  assert.match(await assertError(long, 414, "uri_too_long"), /^Request target is too long: /);
  const query = await app.request(`/alerts?deviceId=${"a".repeat(9000)}`);
  await assertError(query, 414, "uri_too_long");
  const big = await app.request("/health", { headers: { "X-Big": "b".repeat(40_000) } });
  assert.match(await assertError(big, 431, "headers_too_large"), /^Request headers are too large/);
  assert.equal((await app.request(`/sensors/${"a".repeat(60)}`)).status, 404, "short enough");
});

Deno.test("a request that takes too long answers 503 timeout in the error shape", async () => {
  using time = new FakeTime();
  let calls = 0;
  const { app } = makeApi({
    requestTimeoutMs: 5_000,
    timers: time,
    // A dependency check that never settles.
    health: () => {
      calls++;
      return new Promise(() => {});
    },
  });
  const pending = Promise.resolve(app.request("/readyz"));
  await until("the health check to be called", () => calls === 1);
  await time.tickAsync(4_999);
  let settled = false;
  void pending.then(() => (settled = true));
  await time.tickAsync(0);
  assert.equal(settled, false, "still waiting before the timeout");
  await time.tickAsync(1);
  const res = await pending;
  assert.equal(
    await assertError(res, 503, "timeout"),
    "Request timed out: no answer within 5000 ms",
  );
});

Deno.test("a request answered in time leaves no timer behind", async () => {
  using time = new FakeTime();
  const { app } = makeApi({ requestTimeoutMs: 5_000, timers: time });
  assert.equal((await app.request("/sensors")).status, 200);
  assert.equal(time.pending, 0);
});

Deno.test("GET /metrics counts requests by method, route template and status, with durations", async () => {
  const metrics = createMetrics(() => ({}));
  const { app, fleet } = makeApi({ metrics });
  fleet.add(parseOne({ id: "s-1" }));
  for (const id of ["s-1", "s-2", "s-3"]) await app.request(`/sensors/${id}`); // 200, 404, 404
  await app.request("/sensors", post('{"id":"s-4"}'));
  await app.request("/no/such/path/1");
  await app.request("/no/such/path/2");
  await app.request("/sensors", { method: "PUT" });
  await app.request("/sensors", { method: "BREW" });
  const text = await (await app.request("/metrics")).text();
  const sample = (series: string) => {
    const line = text.split("\n").find((l) => l.startsWith(`${series} `));
    return line === undefined ? undefined : Number(line.slice(series.length + 1));
  };
  const total = (labels: string) => sample(`iot_http_requests_total{${labels}}`);
  assert.equal(total('method="GET",route="/sensors/:id",code="200"'), 1);
  assert.equal(total('method="GET",route="/sensors/:id",code="404"'), 2, "one series, not per id");
  assert.equal(total('method="POST",route="/sensors",code="201"'), 1);
  assert.equal(total('method="GET",route="unmatched",code="404"'), 2, "unmatched paths collapse");
  assert.equal(total('method="PUT",route="unmatched",code="405"'), 1);
  assert.equal(total('method="OTHER",route="unmatched",code="405"'), 1, "unknown methods collapse");
  assert.equal(
    sample('iot_http_request_duration_seconds_count{method="GET",route="/sensors/:id"}'),
    3,
  );
  assert.ok(
    sample(
      'iot_http_request_duration_seconds_bucket{le="+Inf",method="GET",route="/sensors/:id"}',
    ) ===
      3,
  );
  assert.doesNotMatch(text, /s-2|no\/such/, "no raw path in any label");
});

Deno.test("answers match the schemas the OpenAPI document names for them", async () => {
  const { app, fleet } = makeApi();
  const created = await app.request("/sensors", post('{"id":"boiler-1"}'));
  CreatedSensorsSchema.parse(await created.json());
  const accepted = await app.request("/sensors/boiler-1/overheat", { method: "POST" });
  OverheatAcceptedSchema.parse(await accepted.json());
  for (const probe of ["/livez", "/readyz"]) {
    ProbeBodySchema.parse(await (await app.request(probe)).json());
  }
  assert.equal(fleet.size, 1);
  // Every kind of error, from handlers, middleware and routing, in the one strict shape.
  const errors = [
    await app.request("/sensors", post("{")),
    await app.request("/sensors/nobody"),
    await app.request("/sensors", { method: "PUT" }),
    await app.request("/nope"),
    await app.request(`/sensors/${"a".repeat(9000)}`),
    await app.request("/sensors?limit=0"),
  ];
  for (const res of errors) {
    assert.ok(res.status >= 400, String(res.status));
    ErrorBodySchema.parse(await res.json());
  }
});

// --- POST/DELETE /sensors/:id/faults ---------------------------------------------

Deno.test("POST /sensors/:id/faults answers 202 with the resolved fault", async () => {
  const { app, fleet } = makeApi();
  fleet.add(parseOne({ id: "boiler-1" }));
  const spike = await app.request("/sensors/boiler-1/faults", post('{"kind":"spike"}'));
  assert.equal(spike.status, 202);
  assert.deepEqual(await spike.json(), {
    id: "boiler-1",
    fault: { kind: "spike", count: 1, temperature: 110 },
  });
  const dropout = await app.request(
    "/sensors/boiler-1/faults",
    post('{"kind":"dropout","durationMs":5000}'),
  );
  assert.deepEqual(await dropout.json(), {
    id: "boiler-1",
    fault: { kind: "dropout", durationMs: 5000 },
  });
  assert.deepEqual(fleet.faultRequests, [
    ["boiler-1", { kind: "spike" }],
    ["boiler-1", { kind: "dropout", durationMs: 5000 }],
  ]);
});

Deno.test("POST /sensors/:id/faults answers 400 in the error shape for invalid faults", async () => {
  const { app, fleet } = makeApi();
  fleet.add(parseOne({ id: "boiler-1" }));
  const cases: [string, RegExp][] = [
    ['{"kind":"melt"}', /^kind: /],
    ["{}", /^kind: /],
    ['{"kind":"dropout","readings":0}', /^readings: /],
    ['{"kind":"dropout","readings":3,"durationMs":100}', /either readings or durationMs/],
    ['{"kind":"late","by":1000}', /^by: /],
    ['{"kind":"duplicate","copies":1.5}', /^copies: /],
    ['{"kind":"spike","temperature":1000}', /^temperature: /],
    ['{"kind":"stuck","extra":1}', /extra/],
    ['{"kind":"stuck","$where":1}', /^Forbidden key: "\$where"/],
    ["[]", /^Body must be a JSON object/],
    ["{", /^Body is not valid JSON/],
  ];
  for (const [body, message] of cases) {
    const res = await app.request("/sensors/boiler-1/faults", post(body));
    assert.match(await assertError(res, 400, "bad_request"), message, body);
  }
  assert.deepEqual(fleet.faultRequests, []);
});

Deno.test("POST /sensors/:id/faults answers 404 and 409 as the fleet says", async () => {
  const { app, fleet } = makeApi();
  fleet.add(parseOne({ id: "boiler-1" }));
  const unknown = await app.request("/sensors/nobody/faults", post('{"kind":"stuck"}'));
  assert.equal(await assertError(unknown, 404, "not_found"), 'Unknown sensor: "nobody"');
  fleet.sensors.set("done", { ...fleet.sensors.get("boiler-1")!, id: "done", status: "completed" });
  const done = await app.request("/sensors/done/faults", post('{"kind":"stuck"}'));
  assert.match(await assertError(done, 409, "conflict"), /completed/);
});

Deno.test("DELETE /sensors/:id/faults clears all faults or one kind", async () => {
  const { app, fleet } = makeApi();
  fleet.add(parseOne({ id: "boiler-1" }));
  assert.equal((await app.request("/sensors/boiler-1/faults", { method: "DELETE" })).status, 204);
  const one = await app.request("/sensors/boiler-1/faults?kind=late", { method: "DELETE" });
  assert.equal(one.status, 204);
  assert.deepEqual(fleet.cleared, [["boiler-1", undefined], ["boiler-1", "late"]]);
  const bad = await app.request("/sensors/boiler-1/faults?kind=melt", { method: "DELETE" });
  assert.match(await assertError(bad, 400, "bad_request"), /^Invalid kind: "melt" must be one of/);
  const unknown = await app.request("/sensors/nobody/faults", { method: "DELETE" });
  await assertError(unknown, 404, "not_found");
});

Deno.test("with an API token, POST and DELETE /sensors/:id/faults need the token", async () => {
  const { app, fleet } = makeApi({ apiToken: TOKEN });
  fleet.add(parseOne({ id: "boiler-1" }));
  await assertError(
    await app.request("/sensors/boiler-1/faults", post('{"kind":"stuck"}')),
    401,
    "unauthorized",
  );
  await assertError(
    await app.request("/sensors/boiler-1/faults", { method: "DELETE" }),
    401,
    "unauthorized",
  );
  assert.deepEqual(fleet.faultRequests, []);
  assert.deepEqual(fleet.cleared, []);
  const ok = await app.request(
    "/sensors/boiler-1/faults",
    post('{"kind":"stuck"}', { Authorization: `Bearer ${TOKEN}` }),
  );
  assert.equal(ok.status, 202);
});

// --- PATCH /devices/:id/rule ------------------------------------------------------

function patch(body: string, headers: Record<string, string> = {}): RequestInit {
  return { method: "PATCH", body, headers: { "Content-Type": "application/json", ...headers } };
}

Deno.test("PATCH /devices/:id/rule answers 202 with the merged rule and the seq it follows", async () => {
  const { app, fleet } = makeApi();
  fleet.add(parseOne({ id: "boiler-1" }));
  fleet.sensors.set("boiler-1", { ...fleet.sensors.get("boiler-1")!, seq: 41 });
  const res = await app.request("/devices/boiler-1/rule", patch('{"high":50,"low":40}'));
  assert.equal(res.status, 202);
  assert.deepEqual(await res.json(), {
    id: "boiler-1",
    rule: { ...DEFAULT_RULE, high: 50, low: 40 },
    appliesAfterSeq: 41,
  });
  const full = { high: 60, low: 55, raiseAfter: 1, clearAfter: 3 };
  const again = await app.request("/devices/boiler-1/rule", patch(JSON.stringify(full)));
  assert.deepEqual((await again.json()).rule, full);
  assert.deepEqual(fleet.rulePatches, [["boiler-1", { high: 50, low: 40 }], ["boiler-1", full]]);
});

Deno.test("PATCH /devices/:id/rule answers 400 in the error shape for a bad rule", async () => {
  const { app, fleet } = makeApi();
  fleet.add(parseOne({ id: "boiler-1" }));
  const cases: [string, RegExp][] = [
    ["{}", /name at least one of/],
    ['{"high":500}', /^high: /],
    ['{"raiseAfter":0}', /^raiseAfter: /],
    ['{"clearAfter":1.5}', /^clearAfter: /],
    ['{"high":"80"}', /^high: /],
    ['{"high":80,"extra":1}', /extra/],
    ['{"$where":1}', /^Forbidden key: "\$where"/],
    // Valid alone, but the rule it would make is not: low must stay below high.
    ['{"low":85}', /low must be below high/],
    ['{"high":10,"low":20}', /low must be below high/],
    ["[]", /^Body must be a JSON object/],
    ["{", /^Body is not valid JSON/],
  ];
  for (const [body, message] of cases) {
    const res = await app.request("/devices/boiler-1/rule", patch(body));
    assert.match(await assertError(res, 400, "bad_request"), message, body);
  }
  assert.deepEqual(fleet.rulePatches, []);
  assert.deepEqual(fleet.sensors.get("boiler-1")!.thresholds, DEFAULT_RULE);
});

Deno.test("PATCH /devices/:id/rule answers 404 for a device no sensor runs", async () => {
  const { app } = makeApi();
  const res = await app.request("/devices/nobody/rule", patch('{"high":50}'));
  assert.equal(
    await assertError(res, 404, "not_found"),
    'Unknown device: no sensor has id "nobody"',
  );
  await assertError(await app.request("/devices/bad:id/rule", patch("{}")), 400, "bad_request");
});

Deno.test("with an API token, PATCH /devices/:id/rule needs the token", async () => {
  const { app, fleet } = makeApi({ apiToken: TOKEN });
  fleet.add(parseOne({ id: "boiler-1" }));
  await assertError(
    await app.request("/devices/boiler-1/rule", patch('{"high":90}')),
    401,
    "unauthorized",
  );
  assert.deepEqual(fleet.rulePatches, []);
  const ok = await app.request(
    "/devices/boiler-1/rule",
    patch('{"high":90}', { Authorization: `Bearer ${TOKEN}` }),
  );
  assert.equal(ok.status, 202);
});
