/**
 * End-to-end: sensors → Kafka → processors → MongoDB, through the HTTP API
 * and by reading MongoDB, against the real broker and MongoDB-protocol server.
 */
import assert from "node:assert/strict";
import { MongoClient } from "mongodb";
import { DEFAULT_RULE, replay } from "../domain/hysteresis.ts";
import { encodeReading } from "../schemas/reading.ts";
import type { AlertDoc, DeviceDoc, ReadingDoc } from "../schemas/documents.ts";
import { eventually, MONGO_URL, testKafka } from "./fixtures.ts";
import { cleanupEnv, startApp, testEnv } from "./test_app.ts";

async function withDb<T>(name: string, fn: (db: import("mongodb").Db) => Promise<T>): Promise<T> {
  const client = new MongoClient(MONGO_URL);
  try {
    return await fn(client.db(name));
  } finally {
    await client.close();
  }
}

function post(url: string, body: unknown) {
  return fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
}

Deno.test("pipeline: the scripted example yields the documented readings and alerts", async () => {
  const env = testEnv("e2e-script");
  await using _cleanup = cleanupEnv(env);
  await using app = await startApp(env);
  const temperatures = [70, 81, 82, 79, 76, 71, 69, 68, 85, 86];
  const res = await post(`${app.url}/sensors`, { id: "script-1", temperatures, intervalMs: 100 });
  assert.equal(res.status, 201, await res.clone().text());
  assert.deepEqual(await res.json(), { ids: ["script-1"] });

  const device = await eventually("device script-1 at seq 10", async () => {
    const r = await fetch(`${app.url}/devices/script-1`);
    const body = r.ok ? await r.json() : await r.body?.cancel();
    return body?.lastSeq === 10 ? body : undefined;
  });
  assert.equal(device.level, "critical");
  assert.equal(device.counters.readings, 10);

  await withDb(env.db, async (db) => {
    const readings = await db.collection<ReadingDoc>("readings")
      .find({ deviceId: "script-1" }).sort({ seq: 1 }).toArray();
    assert.deepEqual(readings.map((r) => r.seq), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    assert.deepEqual(readings.map((r) => r.temperature), temperatures);
    assert.deepEqual(
      readings.map((r) => r.is_critical),
      [false, false, true, true, true, true, true, false, false, true],
    );
    assert.equal(readings[0]!._id, "script-1:1");
    assert.ok(readings[0]!.ts instanceof Date);
    assert.equal(readings[0]!.location.type, "Point");

    const alerts = await db.collection<AlertDoc>("alerts").find({ deviceId: "script-1" })
      .sort({ raisedSeq: 1 }).toArray();
    assert.equal(alerts.length, 2);
    assert.deepEqual(
      alerts.map((a) => [a._id, a.status, a.raisedSeq, a.clearedSeq, a.peakTemperature]),
      [
        ["script-1:overheat:3", "cleared", 3, 8, 82],
        ["script-1:overheat:10", "active", 10, undefined, 86],
      ],
    );
    assert.deepEqual(alerts[0]!.thresholds, DEFAULT_RULE);
  });

  const active = await (await fetch(`${app.url}/alerts?status=active&deviceId=script-1`)).json();
  assert.deepEqual(active.alerts.map((a: AlertDoc) => a._id), ["script-1:overheat:10"]);
  const latest = await (await fetch(`${app.url}/devices/script-1/readings?limit=3`)).json();
  assert.deepEqual(latest.readings.map((r: ReadingDoc) => r.seq), [10, 9, 8]);
  const sensor = await eventually("the scripted sensor to complete", async () => {
    const body = await (await fetch(`${app.url}/sensors/script-1`)).json();
    return body.status === "completed" ? body : undefined;
  });
  assert.equal(sensor.lastReading.seq, 10);
});

Deno.test("pipeline: added sensors appear as devices and a removed one stops", async () => {
  const env = testEnv("e2e-fleet");
  await using _cleanup = cleanupEnv(env);
  await using app = await startApp(env);
  const res = await post(`${app.url}/sensors`, { count: 4, intervalMs: 150, idPrefix: "fleet" });
  assert.equal(res.status, 201);
  const { ids } = await res.json() as { ids: string[] };
  assert.equal(ids.length, 4);

  for (const id of ids) {
    await eventually(`readings of ${id}`, async () => {
      const body = await (await fetch(`${app.url}/devices/${id}/readings?limit=1`)).json();
      return body.readings.length > 0 ? true : undefined;
    });
  }
  const list = await (await fetch(`${app.url}/sensors`)).json();
  assert.equal(list.total, 4);

  const removed = ids[0]!;
  assert.equal((await fetch(`${app.url}/sensors/${removed}`, { method: "DELETE" })).status, 204);
  const seqAtRemoval = await eventually("the removed sensor's last reading stored", async () => {
    const device = await (await fetch(`${app.url}/devices/${removed}`)).json() as DeviceDoc;
    const sensorSeq = app.parts.fleet!.stats.emitted; // fleet keeps counting others
    return device.lastSeq > 0 && sensorSeq > 0 ? device.lastSeq : undefined;
  });
  assert.equal((await fetch(`${app.url}/sensors/${removed}`)).status, 404);
  // Others keep going for a while; the removed one adds nothing.
  const other = ids[1]!;
  const before = (await (await fetch(`${app.url}/devices/${other}`)).json()).lastSeq;
  await eventually("another sensor to advance", async () => {
    const now = (await (await fetch(`${app.url}/devices/${other}`)).json()).lastSeq;
    return now >= before + 3 ? true : undefined;
  });
  const after = await (await fetch(`${app.url}/devices/${removed}`)).json();
  assert.ok(after.lastSeq <= seqAtRemoval + 1, `removed sensor went on: ${after.lastSeq}`);
  await withDb(env.db, async (db) => {
    const n = await db.collection("readings").countDocuments({ deviceId: removed });
    assert.equal(n, after.lastSeq, "one document per seq, none after removal");
  });
});

Deno.test("pipeline: a malformed record goes to the dead-letter topic and processing goes on", async () => {
  const env = testEnv("e2e-dlq");
  await using _cleanup = cleanupEnv(env);
  await using app = await startApp(env);
  const kafka = testKafka();
  const producer = kafka.producer();
  await producer.connect();
  const good = {
    deviceId: "dlq-1",
    seq: 1,
    ts: "2026-11-27T13:00:00.000Z",
    temperature: 21.5,
    humidity: 40,
    location: { lat: 48.85, lon: 2.35 },
  };
  await producer.send({
    topic: env.topic,
    messages: [
      { key: "dlq-1", value: "{not json" },
      { key: "dlq-1", value: JSON.stringify({ ...good, seq: 2, temperature: "hot" }) },
      { key: "dlq-1", value: encodeReading(good) },
    ],
  });
  await producer.disconnect();

  await eventually("the valid reading stored", async () => {
    const r = await fetch(`${app.url}/devices/dlq-1`);
    return r.ok ? await r.json() : await r.body?.cancel();
  });
  const consumer = kafka.consumer({ groupId: `${env.group}-dlq-reader` });
  await consumer.connect();
  await consumer.subscribe({ topic: `${env.topic}.dlq`, fromBeginning: true });
  const letters: { value: string; reason: string }[] = [];
  await consumer.run({
    eachMessage: ({ message }) => {
      letters.push({
        value: message.value!.toString(),
        reason: message.headers!["dlq.reason"]!.toString(),
      });
      return Promise.resolve();
    },
  });
  await eventually("two dead letters", () => letters.length >= 2 ? true : undefined);
  await consumer.disconnect();
  assert.equal(letters[0]!.value, "{not json");
  assert.match(letters[0]!.reason, /invalid JSON/);
  assert.match(letters[1]!.reason, /temperature/);
  assert.equal(app.parts.processors!.stats.deadLettered, 2);
});

Deno.test("pipeline: restarting the processors mid-stream loses and duplicates nothing", async () => {
  const env = testEnv("e2e-restart");
  await using _cleanup = cleanupEnv(env);
  await using sensors = await startApp(env, { ROLE: "sensors" });
  // A deterministic series with an overheat episode every 10 readings.
  const cycle = [60, 81, 85, 90, 79, 75, 69, 65, 62, 72];
  const temperatures = Array.from({ length: 100 }, (_, i) => cycle[i % cycle.length]!);
  const res = await post(`${sensors.url}/sensors`, {
    count: 3,
    temperatures,
    intervalMs: 100,
    idPrefix: "hot",
  });
  assert.equal(res.status, 201);
  const { ids } = await res.json() as { ids: string[] };

  // First processor instance: let it store part of the stream, then stop it.
  const first = await startApp(env, { ROLE: "processors" });
  await eventually(
    "first processor stores readings",
    () => (first.parts.processors?.stats.readings ?? 0) >= 60 ? true : undefined,
  );
  await first[Symbol.asyncDispose]();

  // Second instance resumes from the committed offsets and stored states.
  await using second = await startApp(env, { ROLE: "processors" });
  await eventually(
    "second processor stores readings",
    () => (second.parts.processors?.stats.readings ?? 0) >= 60 ? true : undefined,
  );
  const produced = new Map(ids.map((id) => [id, temperatures.length]));

  await withDb(env.db, async (db) => {
    for (const id of ids) {
      const last = await eventually(`${id} fully stored`, async () => {
        const d = await db.collection<DeviceDoc>("devices").findOne({ _id: id });
        return d && d.lastSeq >= produced.get(id)! ? d.lastSeq : undefined;
      }, 30_000);
      const readings = await db.collection<ReadingDoc>("readings").find({ deviceId: id })
        .sort({ seq: 1 }).toArray();
      assert.deepEqual(
        readings.map((r) => r.seq),
        Array.from({ length: last }, (_, i) => i + 1),
        `${id}: every seq exactly once`,
      );
      // Recompute the whole history from the stored readings: flags and alerts must agree.
      const expected = replay(
        readings.map((r) => ({ seq: r.seq, ts: r.ts.toISOString(), temperature: r.temperature })),
        DEFAULT_RULE,
      );
      assert.deepEqual(readings.map((r) => r.is_critical), expected.critical, `${id}: flags`);
      const alerts = await db.collection<AlertDoc>("alerts").find({ deviceId: id })
        .sort({ raisedSeq: 1 }).toArray();
      const raised = expected.transitions.filter((t) => t.type === "raised").map((t) => t.seq);
      assert.deepEqual(alerts.map((a) => a.raisedSeq), raised, `${id}: one alert per episode`);
      assert.equal(raised.length, 10, `${id}: one episode per cycle`);
    }
  });
});

Deno.test("pipeline: two processor processes share the consumer group and split the partitions", async () => {
  const env = testEnv("e2e-split");
  await using _cleanup = cleanupEnv(env);
  await using sensors = await startApp(env, { ROLE: "sensors" });
  await using a = await startApp(env, { ROLE: "processors" });
  await using b = await startApp(env, { ROLE: "processors" });
  const res = await post(`${sensors.url}/sensors`, {
    count: 12,
    intervalMs: 100,
    idPrefix: "split",
  });
  assert.equal(res.status, 201);
  const [pa, pb] = await eventually("both members to own partitions", () => {
    const x = a.parts.processors!.assignment;
    const y = b.parts.processors!.assignment;
    return x.length > 0 && y.length > 0 && x.length + y.length === 3 ? [x, y] : undefined;
  }, 30_000);
  assert.deepEqual([...pa, ...pb].sort(), [0, 1, 2], "every partition owned exactly once");
  await eventually(
    "both members to store readings",
    () =>
      a.parts.processors!.stats.readings > 0 && b.parts.processors!.stats.readings > 0
        ? true
        : undefined,
    30_000,
  );
});
