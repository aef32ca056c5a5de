/**
 * End to end: an overheat alert raised by the real pipeline is acknowledged through the HTTP
 * API, then cleared by the processors, and both survive — also a crash that replays the
 * clear after the acknowledgement (Kafka + MongoDB).
 */
import "./env_guard.ts";
import assert from "node:assert/strict";
import { MongoClient } from "mongodb";
import type { Reading } from "../schemas/reading.ts";
import { type AlertDoc, COLLECTIONS } from "../schemas/documents.ts";
import type { App } from "../main.ts";
import { MONGO_URL, removeResources } from "./fixtures.ts";
import { testWith } from "./needs.ts";
import { until } from "./wait.ts";
import {
  EMBEDDED,
  KAFKA_MONGO,
  publishReadings,
  startApp,
  type TestEnv,
  testEnv,
} from "./test_app.ts";

const TOKEN = "ack-test-token-0123456789";
const AUTH = { Authorization: `Bearer ${TOKEN}`, "Content-Type": "application/json" };
const DEVICE = "hot-1";

function reading(seq: number, temperature: number): Reading {
  return {
    deviceId: DEVICE,
    seq,
    ts: new Date(Date.UTC(2026, 10, 30, 12, 0, seq)).toISOString(),
    temperature,
    humidity: 40,
    location: { lat: 48.85, lon: 2.35 },
  };
}

async function alerts(app: App, query = ""): Promise<AlertDoc[]> {
  const res = await fetch(`${app.url}/alerts?deviceId=${DEVICE}${query}`);
  assert.equal(res.status, 200);
  return (await res.json()).alerts;
}

function ack(app: App, id: string, body: unknown, headers: Record<string, string> = AUTH) {
  return fetch(`${app.url}/alerts/${encodeURIComponent(id)}/ack`, {
    method: "POST",
    headers,
    body: JSON.stringify(body),
  });
}

/** Overheat (raised at seq 2), acknowledge while active, then cool down (cleared at seq 4). */
async function ackThenClear(app: App, env: TestEnv): Promise<AlertDoc> {
  await publishReadings(app, env, [reading(1, 90), reading(2, 91)]);
  const [raised] = await until("the overheat alert", async () => {
    const found = await alerts(app, "&status=active");
    return found.length > 0 ? found : undefined;
  });
  assert.equal(raised!._id, `${DEVICE}:overheat:2`);
  assert.deepEqual((await alerts(app, "&acked=false")).map((a) => a._id), [raised!._id]);

  const refused = await ack(app, raised!._id, { by: "ana" }, {
    "Content-Type": "application/json",
  });
  assert.equal(refused.status, 401, "acknowledging needs the token");
  await refused.body?.cancel();
  const res = await ack(app, raised!._id, { by: "ana", note: "checking the fan" });
  assert.equal(res.status, 200);
  const acked = await res.json();
  assert.equal(acked.status, "active", "acknowledging does not clear");
  assert.equal(acked.ackedBy, "ana");
  assert.deepEqual((await alerts(app, "&acked=true")).map((a) => a._id), [raised!._id]);
  assert.deepEqual(await alerts(app, "&acked=false"), []);

  const again = await ack(app, raised!._id, { by: "bob" });
  assert.equal(again.status, 200);
  assert.deepEqual(
    [(await again.json()).ackedBy, (await alerts(app))[0]!.ackedBy],
    ["ana", "ana"],
    "the first acknowledgement wins",
  );

  await publishReadings(app, env, [reading(3, 60), reading(4, 60)]);
  const [cleared] = await until("the clear", async () => {
    const found = await alerts(app, "&status=cleared");
    return found.length > 0 ? found : undefined;
  });
  assert.equal(cleared!.clearedSeq, 4);
  assert.equal(cleared!.peakTemperature, 91);
  assert.deepEqual(
    [cleared!.ackedBy, cleared!.ackedAt, cleared!.note],
    ["ana", acked.ackedAt, "checking the fan"],
    "clearing does not erase the acknowledgement",
  );
  return cleared!;
}

for (const mode of [KAFKA_MONGO, EMBEDDED]) {
  const inMode = await testWith(mode);
  inMode.test(`acknowledgement (${mode.name}): an acknowledged overheat clears and keeps who acknowledged it`, async () => {
    await using env = await testEnv("e2e-ack", mode);
    await using app = await startApp(env, { API_TOKEN: TOKEN });
    await ackThenClear(app, env);
  });
}

const kafkaMongo = await testWith(KAFKA_MONGO);
kafkaMongo.test("acknowledgement (kafka+mongodb): a crash replaying the clear after the acknowledgement keeps it", async () => {
  await using env = await testEnv("e2e-ack-replay", KAFKA_MONGO);
  let cleared: AlertDoc;
  {
    await using app = await startApp(env, { API_TOKEN: TOKEN });
    cleared = await ackThenClear(app, env);
  }
  // As if the process died after storing the alerts but before its checkpoint: no device state
  // and no committed offsets, so the next start applies every reading again and rewrites the
  // episode's snapshots, the clear included.
  const client = new MongoClient(MONGO_URL);
  try {
    // Device states live in `devices` and in the journal checkpoints append to.
    for (const name of [COLLECTIONS.devices, COLLECTIONS.deviceStates]) {
      await client.db(env.db).collection(name).deleteMany({});
    }
  } finally {
    await client.close();
  }
  const group = `${env.group}-replay`;
  try {
    await using app = await startApp(env, { API_TOKEN: TOKEN, KAFKA_GROUP: group });
    await until("the readings replayed", async () => {
      const device = await app.parts.store!.device(DEVICE);
      return device?.lastSeq === 4 ? device : undefined;
    });
    assert.equal(app.parts.processors!.stats.alertsCleared, 1, "the clear was applied again");
    const [after] = await alerts(app);
    assert.deepEqual(after, cleared);
  } finally {
    await removeResources({ groups: [group] });
  }
});
