/**
 * End to end: a device's thresholds are lowered at run time through `PATCH /devices/:id/rule`;
 * its sensor carries the new rule from its next reading, the processors record the seq it took
 * effect at on the device and on the alert the new rule raises, and a replay after a crash
 * (device states lost) gives the same episode and the same seq (Kafka + MongoDB and embedded).
 */
import "./env_guard.ts";
import assert from "node:assert/strict";
import { MongoClient } from "mongodb";
import { encodeReading, type Reading } from "../schemas/reading.ts";
import { type AlertDoc, COLLECTIONS, type DeviceDoc } from "../schemas/documents.ts";
import { DEFAULT_RULE } from "../domain/hysteresis.ts";
import type { App } from "../main.ts";
import { MONGO_URL, removeResources } from "./fixtures.ts";
import { testWith } from "./needs.ts";
import { until } from "./wait.ts";
import { EMBEDDED, KAFKA_MONGO, startApp, type TestEnv, testEnv } from "./test_app.ts";

const TOKEN = "rule-test-token-0123456789";
const AUTH = { Authorization: `Bearer ${TOKEN}`, "Content-Type": "application/json" };
const DEVICE = "tune-1";
/** Readings of the scripted sensor: all at 60 °C, below the default high (80), above the new. */
const SCRIPT_LENGTH = 80;
const LOWERED = { high: 50, low: 40 };
const NEW_RULE = { ...DEFAULT_RULE, ...LOWERED };

interface StoredReading {
  readonly seq: number;
  readonly is_critical: boolean;
  readonly thresholds?: unknown;
}

async function json<T>(app: App, path: string): Promise<T> {
  const res = await fetch(`${app.url}${path}`);
  assert.equal(res.status, 200, path);
  return await res.json();
}

// Overheat episodes only: a sensor at a 100 ms interval that stalls for 300 ms on a busy machine
// is rightly reported offline (event time), and removing it at the end silences it for good.
const alerts = async (app: App) =>
  (await json<{ alerts: AlertDoc[] }>(app, `/alerts?deviceId=${DEVICE}&type=overheat`)).alerts;

/** The device document as the API shows it, once it has applied `seq`. */
function deviceAt(app: App, seq: number): Promise<DeviceDoc> {
  return until(`the device at seq ${seq}`, async () => {
    const res = await fetch(`${app.url}/devices/${DEVICE}`);
    if (res.status !== 200) return void await res.body?.cancel();
    const device = await res.json();
    return device.lastSeq === seq ? device : undefined;
  }, 60_000);
}

/**
 * Runs a scripted sensor at 60 °C, lowers its thresholds once it has emitted a few readings,
 * lets its script finish, checks what the processors made of it, and removes the sensor (so a
 * restart does not run its script again). Answers the device's last seq and its episodes.
 */
async function lowerAtRunTime(app: App, env: TestEnv) {
  const created = await fetch(`${app.url}/sensors`, {
    method: "POST",
    headers: AUTH,
    body: JSON.stringify({
      id: DEVICE,
      profile: "scripted",
      intervalMs: 100,
      temperatures: Array.from({ length: SCRIPT_LENGTH }, () => 60),
    }),
  });
  assert.equal(created.status, 201);
  await created.body?.cancel();
  await until("a few readings", async () => {
    const sensor = await json<{ seq: number | null }>(app, `/sensors/${DEVICE}`);
    return (sensor.seq ?? 0) >= 3;
  });

  const unauthorized = await fetch(`${app.url}/devices/${DEVICE}/rule`, {
    method: "PATCH",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(LOWERED),
  });
  assert.equal(unauthorized.status, 401, "changing a rule needs the token");
  await unauthorized.body?.cancel();
  const bad = await fetch(`${app.url}/devices/${DEVICE}/rule`, {
    method: "PATCH",
    headers: AUTH,
    body: JSON.stringify({ low: 90 }),
  });
  assert.equal(bad.status, 400, "low above the current high is refused");
  assert.match((await bad.json()).error.message, /low must be below high/);
  const missing = await fetch(`${app.url}/devices/nobody/rule`, {
    method: "PATCH",
    headers: AUTH,
    body: JSON.stringify(LOWERED),
  });
  assert.equal(missing.status, 404);
  await missing.body?.cancel();

  const res = await fetch(`${app.url}/devices/${DEVICE}/rule`, {
    method: "PATCH",
    headers: AUTH,
    body: JSON.stringify(LOWERED),
  });
  assert.equal(res.status, 202);
  const accepted = await res.json();
  assert.deepEqual(accepted.rule, NEW_RULE);
  if (env.mode.kafka) {
    assert.equal(accepted.appliesAfterSeq, null, "another path applies it: seq not known here");
  } else {
    assert.ok(accepted.appliesAfterSeq >= 3, `appliesAfterSeq ${accepted.appliesAfterSeq}`);
  }

  const sensor = await until("the script's end", async () => {
    const s = await json<{ status: string; seq: number; thresholds: unknown }>(
      app,
      `/sensors/${DEVICE}`,
    );
    return s.status === "completed" ? s : undefined;
  }, 60_000);
  assert.deepEqual(sensor.thresholds, NEW_RULE, "the sensor runs under the new rule");
  const device = await deviceAt(app, sensor.seq);
  assert.deepEqual(device.thresholds, NEW_RULE);
  const ruleSeq = device.ruleSeq!;
  assert.ok(ruleSeq > (accepted.appliesAfterSeq ?? 1), `ruleSeq ${ruleSeq}`);
  assert.ok(ruleSeq < sensor.seq - 1, "the new rule had readings enough to raise");

  // Every reading before ruleSeq was made under the default rule, every later one under the new.
  const { readings } = await json<{ readings: StoredReading[] }>(
    app,
    `/devices/${DEVICE}/readings?limit=1000`,
  );
  for (const r of readings) {
    if (r.seq < ruleSeq) {
      assert.equal(r.thresholds, undefined, `seq ${r.seq} under the default rule`);
      assert.equal(r.is_critical, false, `seq ${r.seq} is not critical under the default rule`);
    } else {
      assert.deepEqual(r.thresholds, NEW_RULE, `seq ${r.seq} under the new rule`);
    }
  }

  const found = await alerts(app);
  assert.equal(found.length, 1, JSON.stringify(found));
  const [alert] = found;
  assert.equal(alert!.type, "overheat");
  assert.equal(alert!.status, "active");
  assert.deepEqual(alert!.thresholds, NEW_RULE, "the alert stores the rule that raised it");
  assert.equal(alert!.ruleSeq, ruleSeq, "and the seq that rule took effect at");
  assert.ok(alert!.raisedSeq > ruleSeq, "raised under the new rule: two readings at 60 °C");

  const removed = await fetch(`${app.url}/sensors/${DEVICE}`, { method: "DELETE", headers: AUTH });
  assert.equal(removed.status, 204);
  return { lastSeq: sensor.seq, ruleSeq, alert: alert! };
}

const kafkaMongo = await testWith(KAFKA_MONGO);
kafkaMongo.test("rule change (kafka+mongodb): lowered thresholds raise from a definite seq, and a replay agrees", async () => {
  await using env = await testEnv("e2e-rule", KAFKA_MONGO);
  let before: Awaited<ReturnType<typeof lowerAtRunTime>>;
  {
    await using app = await startApp(env, { API_TOKEN: TOKEN });
    before = await lowerAtRunTime(app, env);
  }
  // As if the process died before any device state was stored: a new group reads the readings
  // topic from the start and applies every reading again, each under the rule it carries.
  const client = new MongoClient(MONGO_URL);
  try {
    for (const name of [COLLECTIONS.devices, COLLECTIONS.deviceStates]) {
      await client.db(env.db).collection(name).deleteMany({});
    }
  } finally {
    await client.close();
  }
  const group = `${env.group}-replay`;
  try {
    await using app = await startApp(env, { API_TOKEN: TOKEN, KAFKA_GROUP: group });
    const device = await deviceAt(app, before.lastSeq);
    assert.deepEqual(device.thresholds, NEW_RULE);
    assert.equal(device.ruleSeq, before.ruleSeq, "the replay records the same seq");
    assert.deepEqual(await alerts(app), [before.alert], "and the same episode");
  } finally {
    await removeResources({ groups: [group] });
  }
});

const embedded = await testWith(EMBEDDED);
embedded.test("rule change (embedded+kv): lowered thresholds raise from a definite seq, and a roll-forward agrees", async () => {
  await using env = await testEnv("e2e-rule", EMBEDDED);
  let before: Awaited<ReturnType<typeof lowerAtRunTime>>;
  {
    await using app = await startApp(env, { API_TOKEN: TOKEN });
    before = await lowerAtRunTime(app, env);
  }
  // As if the process died after storing the readings but before the device state: the next
  // reading of the device rolls it forward from the stored readings, each under its own rule.
  const kv = await Deno.openKv(env.kvPath);
  try {
    await kv.delete(["devices", DEVICE]);
  } finally {
    kv.close();
  }
  await using app = await startApp(env, { API_TOKEN: TOKEN });
  const next: Reading = {
    deviceId: DEVICE,
    seq: before.lastSeq + 1,
    ts: new Date().toISOString(),
    temperature: 60,
    humidity: 40,
    location: { lat: 48.85, lon: 2.35 },
    thresholds: NEW_RULE,
  };
  assert.ok(app.parts.transport!.embedded!.publishRaw(DEVICE, encodeReading(next)));
  const device = await deviceAt(app, next.seq);
  assert.deepEqual(device.thresholds, NEW_RULE);
  assert.equal(device.ruleSeq, before.ruleSeq, "the roll-forward records the same seq");
  const [after, ...more] = await alerts(app);
  assert.deepEqual(more, []);
  // The same episode: the reading further on changed neither its peak nor its rule, so the
  // snapshot (as of the last reading that changed it) is the one stored before.
  assert.deepEqual(after, before.alert);
  assert.ok(after!.asOfSeq < next.seq);
});
