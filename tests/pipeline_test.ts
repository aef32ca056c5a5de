/**
 * End-to-end: sensors → Kafka → processors → MongoDB, through the HTTP API
 * and by reading MongoDB, against the real broker and MongoDB-protocol server.
 */
import "./env_guard.ts";
import assert from "node:assert/strict";
import { DEFAULT_RULE, replay } from "../domain/hysteresis.ts";
import { encodeReading, type Reading } from "../schemas/reading.ts";
import type { AlertDoc, ReadingDoc } from "../schemas/documents.ts";
import type { App } from "../main.ts";
import { testKafka, testProducer } from "./fixtures.ts";
import { testWith } from "./needs.ts";
import { until } from "./wait.ts";
import {
  EMBEDDED,
  EMBEDDED_MONGO,
  KAFKA_KV,
  KAFKA_MONGO,
  type Mode,
  publishReadings,
  startApp,
  type TestEnv,
  testEnv,
} from "./test_app.ts";

/** Registrars for tests that need the services, and for those that need only permissions. */
const services = await testWith(KAFKA_MONGO);
const permitted = await testWith();

function post(url: string, body: unknown) {
  return fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
}

/** Every stored reading of a device, oldest first, through the store port. */
async function storedReadings(app: App, deviceId: string): Promise<ReadingDoc[]> {
  return [...await app.parts.store!.readings(deviceId, 100_000)].reverse();
}

/** A device's overheat alerts (a sensor that stops also gets offline ones: docs/offline.md). */
async function storedAlerts(app: App, deviceId: string): Promise<AlertDoc[]> {
  const alerts = await app.parts.store!.alerts({ deviceId, type: "overheat", limit: 1000 });
  return [...alerts].sort((a, b) => a.raisedSeq - b.raisedSeq);
}

/**
 * Recomputes a device's whole history from its stored readings and compares.
 * Each restart may leave one gap: the unused rest of its seq blocks.
 */
async function assertConsistent(app: App, deviceId: string, lastSeq: number, restarts = 0) {
  const readings = await storedReadings(app, deviceId);
  const seqs = readings.map((r) => r.seq);
  if (restarts === 0) {
    assert.deepEqual(
      seqs,
      Array.from({ length: lastSeq }, (_, i) => i + 1),
      `${deviceId}: every seq exactly once`,
    );
  } else {
    assert.equal(seqs[0], 1, `${deviceId}: starts at 1`);
    assert.equal(seqs.at(-1), lastSeq, `${deviceId}: ends at the last seq emitted`);
    const breaks = seqs.filter((seq, i) => i > 0 && seq !== seqs[i - 1]! + 1);
    assert.ok(seqs.every((seq, i) => i === 0 || seq > seqs[i - 1]!), `${deviceId}: increasing`);
    assert.ok(breaks.length <= restarts, `${deviceId}: one gap per restart at most: ${seqs}`);
  }
  const expected = replay(
    readings.map((r) => ({
      seq: r.seq,
      ts: new Date(r.ts).toISOString(),
      temperature: r.temperature,
    })),
    DEFAULT_RULE,
  );
  assert.deepEqual(readings.map((r) => r.is_critical), expected.critical, `${deviceId}: flags`);
  const raised = expected.transitions.filter((t) => t.type === "raised").map((t) => t.seq);
  const alerts = await storedAlerts(app, deviceId);
  assert.deepEqual(alerts.map((a) => a.raisedSeq), raised, `${deviceId}: one alert per episode`);
  return raised.length;
}

const WORKED_EXAMPLE = [70, 81, 82, 79, 76, 71, 69, 68, 85, 86];

/** A valid reading sent next to invalid ones in the dead-letter tests. */
const GOOD: Reading = {
  deviceId: "dlq-1",
  seq: 1,
  ts: "2026-11-27T13:00:00.000Z",
  temperature: 21.5,
  humidity: 40,
  location: { lat: 48.85, lon: 2.35 },
};

for (const mode of [KAFKA_MONGO, EMBEDDED, KAFKA_KV, EMBEDDED_MONGO]) {
  const inMode = await testWith(mode);
  inMode.test(`pipeline (${mode.name}): the scripted example yields the documented readings and alerts`, async () => {
    await using env = await testEnv("e2e-script", mode);
    await using app = await startApp(env);
    await scriptedExample(app);
  });
}

for (const mode of [KAFKA_MONGO, EMBEDDED]) {
  const inMode = await testWith(mode);
  inMode.test(`pipeline (${mode.name}): added sensors appear as devices and a removed one stops`, async () => {
    await using env = await testEnv("e2e-fleet", mode);
    await using app = await startApp(env);
    await addAndRemove(app);
  });

  inMode.test(`pipeline (${mode.name}): a restart mid-stream loses and duplicates nothing`, async () => {
    await using env = await testEnv("e2e-restart-all", mode);
    await restartMidStream(mode, env);
  });
}

async function scriptedExample(app: App) {
  const res = await post(`${app.url}/sensors`, {
    id: "script-1",
    temperatures: WORKED_EXAMPLE,
    intervalMs: 100,
  });
  assert.equal(res.status, 201, await res.clone().text());
  assert.deepEqual(await res.json(), { ids: ["script-1"] });

  const device = await until("device script-1 at seq 10", async () => {
    const r = await fetch(`${app.url}/devices/script-1`);
    const body = r.ok ? await r.json() : await r.body?.cancel();
    return body?.lastSeq === 10 ? body : undefined;
  });
  assert.equal(device.level, "critical");
  assert.equal(device.counters.readings, 10);

  const readings = await storedReadings(app, "script-1");
  assert.deepEqual(readings.map((r) => r.seq), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  assert.deepEqual(readings.map((r) => r.temperature), WORKED_EXAMPLE);
  assert.deepEqual(
    readings.map((r) => r.is_critical),
    [false, false, true, true, true, true, true, false, false, true],
  );
  assert.equal(readings[0]!._id, "script-1:1");
  assert.ok(readings[0]!.ts instanceof Date);
  assert.equal(readings[0]!.location.type, "Point");

  const alerts = await storedAlerts(app, "script-1");
  assert.deepEqual(
    alerts.map((a) => [a._id, a.status, a.raisedSeq, a.clearedSeq, a.peakTemperature]),
    [
      ["script-1:overheat:3", "cleared", 3, 8, 82],
      ["script-1:overheat:10", "active", 10, undefined, 86],
    ],
  );
  assert.deepEqual(alerts[0]!.thresholds, DEFAULT_RULE);

  const active =
    await (await fetch(`${app.url}/alerts?status=active&type=overheat&deviceId=script-1`)).json();
  assert.deepEqual(active.alerts.map((a: AlertDoc) => a._id), ["script-1:overheat:10"]);
  const latest = await (await fetch(`${app.url}/devices/script-1/readings?limit=3`)).json();
  assert.deepEqual(latest.readings.map((r: ReadingDoc) => r.seq), [10, 9, 8]);
  const sensor = await until("the scripted sensor to complete", async () => {
    const body = await (await fetch(`${app.url}/sensors/script-1`)).json();
    return body.status === "completed" ? body : undefined;
  });
  assert.equal(sensor.lastReading.seq, 10);
}

async function addAndRemove(app: App) {
  const res = await post(`${app.url}/sensors`, { count: 4, intervalMs: 150, idPrefix: "fleet" });
  assert.equal(res.status, 201);
  const { ids } = await res.json() as { ids: string[] };
  assert.equal(ids.length, 4);
  for (const id of ids) {
    await until(`readings of ${id}`, async () => {
      const body = await (await fetch(`${app.url}/devices/${id}/readings?limit=1`)).json();
      return body.readings.length > 0 ? true : undefined;
    });
  }
  const list = await (await fetch(`${app.url}/sensors`)).json();
  assert.equal(list.total, 4);

  const removed = ids[0]!;
  assert.equal((await fetch(`${app.url}/sensors/${removed}`, { method: "DELETE" })).status, 204);
  assert.equal((await fetch(`${app.url}/sensors/${removed}`)).status, 404);
  // Everything it emitted before the removal is still on its way; then nothing more comes.
  const lastEmitted = app.parts.fleet!.lastSeq(removed)!;
  await until("the removed sensor's readings all stored", async () => {
    const stored = await storedReadings(app, removed);
    return stored.at(-1)?.seq === lastEmitted ? true : undefined;
  });
  // Others keep going for a while; the removed one adds nothing.
  const other = ids[1]!;
  const before = (await app.parts.store!.device(other))?.lastSeq ?? 0;
  await until("another sensor to advance", async () => {
    const now = (await app.parts.store!.device(other))?.lastSeq ?? 0;
    return now >= before + 3 ? true : undefined;
  });
  const after = await storedReadings(app, removed);
  assert.equal(after.at(-1)!.seq, lastEmitted, "no reading after removal");
  assert.equal(after.length, lastEmitted, "one document per seq");
}

/** Stops the whole app mid-stream and starts it again on the same data. */
async function restartMidStream(mode: Mode, env: Awaited<ReturnType<typeof testEnv>>) {
  const cycle = [60, 81, 85, 90, 79, 75, 69, 65, 62, 72];
  const temperatures = Array.from({ length: 40 }, (_, i) => cycle[i % cycle.length]!);
  const sensors = { count: 3, temperatures, intervalMs: 100, idPrefix: "hot" };
  let ids: string[];
  {
    await using first = await startApp(env);
    const res = await post(`${first.url}/sensors`, sensors);
    ids = (await res.json()).ids;
    await until(
      "first run stores readings",
      () => (first.parts.processors?.stats.readings ?? 0) >= 45 ? true : undefined,
    );
  }
  // The fleet registry brings the same sensors back; their seqs continue above every block
  // reserved before.
  await using second = await startApp(env);
  const listed = await until("the sensors recreated", async () => {
    const body = await (await fetch(`${second.url}/sensors`)).json();
    return body.total === ids.length ? body.sensors.map((s: { id: string }) => s.id) : undefined;
  });
  assert.deepEqual(listed, ids, `${mode.name}: same ids`);
  for (const id of ids) {
    const last = await until(`${id} completes and is stored`, async () => {
      const sensor = second.parts.fleet!.get(id);
      const device = await second.parts.store!.device(id);
      return sensor?.status === "completed" && device?.lastSeq === sensor.seq
        ? sensor.seq
        : undefined;
    }, 30_000);
    assert.ok(last > temperatures.length, `${id}: seq continued after the restart (${last})`);
    const episodes = await assertConsistent(second, id, last, 1);
    assert.ok(episodes >= 5, `${id}: episodes in both runs`);
  }
}

services.test("pipeline (kafka+mongodb): a malformed record goes to the dead-letter topic and processing goes on", async () => {
  await using env = await testEnv("e2e-dlq", KAFKA_MONGO);
  await using app = await startApp(env);
  const kafka = testKafka();
  const producer = testProducer(kafka);
  await producer.connect();
  await producer.send({
    topic: env.topic,
    messages: [
      { key: "dlq-1", value: "{not json" },
      { key: "dlq-1", value: JSON.stringify({ ...GOOD, seq: 2, temperature: "hot" }) },
      { key: "dlq-1", value: encodeReading(GOOD) },
    ],
  });
  await producer.disconnect();

  await until("the valid reading stored", async () => {
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
  await until("two dead letters", () => letters.length >= 2 ? true : undefined);
  await consumer.disconnect();
  assert.equal(letters[0]!.value, "{not json");
  assert.match(letters[0]!.reason, /invalid JSON/);
  assert.match(letters[1]!.reason, /temperature/);
  assert.equal(app.parts.processors!.stats.deadLettered, 2);
});

services.test("pipeline (kafka+mongodb): restarting the processor role mid-stream loses and duplicates nothing", async () => {
  await using env = await testEnv("e2e-restart", KAFKA_MONGO);
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
  await until(
    "first processor stores readings",
    () => (first.parts.processors?.stats.readings ?? 0) >= 60 ? true : undefined,
  );
  await first[Symbol.asyncDispose]();

  // Second instance resumes from the committed offsets and stored states.
  await using second = await startApp(env, { ROLE: "processors" });
  await until(
    "second processor stores readings",
    () => (second.parts.processors?.stats.readings ?? 0) >= 60 ? true : undefined,
  );
  for (const id of ids) {
    await until(`${id} fully stored`, async () => {
      const d = await second.parts.store!.device(id);
      return d && d.lastSeq >= temperatures.length ? true : undefined;
    }, 30_000);
    const episodes = await assertConsistent(second, id, temperatures.length);
    assert.equal(episodes, 10, `${id}: one episode per cycle`);
  }
});

services.test("pipeline (kafka+mongodb): two processor processes share the consumer group and split the partitions", async () => {
  await using env = await testEnv("e2e-split", KAFKA_MONGO);
  await using sensors = await startApp(env, { ROLE: "sensors" });
  await using a = await startApp(env, { ROLE: "processors" });
  await using b = await startApp(env, { ROLE: "processors" });
  const res = await post(`${sensors.url}/sensors`, {
    count: 12,
    intervalMs: 100,
    idPrefix: "split",
  });
  assert.equal(res.status, 201);
  const [pa, pb] = await until("both members to own partitions", () => {
    const x = a.parts.processors!.assignment;
    const y = b.parts.processors!.assignment;
    return x.length > 0 && y.length > 0 && x.length + y.length === 3 ? [x, y] : undefined;
  }, 30_000);
  assert.deepEqual([...pa, ...pb].sort(), [0, 1, 2], "every partition owned exactly once");
  await until(
    "both members to store readings",
    () =>
      a.parts.processors!.stats.readings > 0 && b.parts.processors!.stats.readings > 0
        ? true
        : undefined,
    30_000,
  );
});

permitted.test("pipeline (embedded+kv): a malformed record is dead-lettered and processing goes on", async () => {
  await using env = await testEnv("e2e-dlq-embedded", EMBEDDED);
  await using app = await startApp(env);
  const queue = app.parts.transport!.embedded!;
  assert.ok(queue.publishRaw("dlq-1", "{not json"));
  assert.ok(queue.publishRaw("dlq-1", encodeReading(GOOD)));
  await until(
    "the valid reading stored",
    () => app.parts.store!.device("dlq-1").then((d) => d ?? undefined),
  );
  assert.equal(app.parts.processors!.stats.deadLettered, 1);
  assert.match(queue.deadLetters[0]!.reason, /invalid JSON/);
});

/** Every dead letter so far, value and reason: the DLQ topic (Kafka) or the embedded queue's. */
async function deadLetters(
  app: App,
  env: TestEnv,
  atLeast: number,
): Promise<{ value: string; reason: string }[]> {
  const queue = app.parts.transport?.embedded;
  if (queue) {
    return queue.deadLetters.map((l) => ({
      value: new TextDecoder().decode(l.record.value!),
      reason: l.reason,
    }));
  }
  const consumer = testKafka().consumer({ groupId: `${env.group}-dlq-${crypto.randomUUID()}` });
  await consumer.connect();
  try {
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
    await until(`${atLeast} dead letters`, () => letters.length >= atLeast || undefined);
    return letters;
  } finally {
    await consumer.disconnect();
  }
}

/** One series of `GET /metrics`, read over HTTP. */
async function metric(app: App, series: string): Promise<number> {
  const text = await (await fetch(`${app.url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  assert.ok(line, `series ${series} is exposed`);
  return Number(line.split(" ")[1]);
}

for (const mode of [KAFKA_MONGO, EMBEDDED]) {
  const inMode = await testWith(mode);
  inMode.test(`pipeline (${mode.name}): a different reading under a stored seq is refused, dead-lettered and counted; the same one is ignored`, async () => {
    await using env = await testEnv("e2e-conflict", mode);
    await using app = await startApp(env);
    const first: Reading = { ...GOOD, deviceId: "twice-1" };
    await publishReadings(app, env, [first]);
    const stored = async () => {
      const res = await fetch(`${app.url}/devices/twice-1/readings`);
      return res.ok ? (await res.json() as { readings: ReadingDoc[] }).readings : [];
    };
    await until("the first reading stored", async () => (await stored()).length || undefined);

    // The same deviceId and seq, emitted again later with other content; then a true replay.
    const reused: Reading = { ...first, ts: "2026-11-27T13:05:00.000Z", temperature: 80.1 };
    await publishReadings(app, env, [reused, first]);
    await until(
      "the conflict and the duplicate handled",
      async () =>
        await metric(app, "iot_duplicates_dropped_total") >= 1 &&
          await metric(app, "iot_reading_conflicts_total") >= 1 || undefined,
      30_000,
    );

    const readings = await stored();
    assert.equal(readings.length, 1);
    assert.equal(readings[0]!.temperature, first.temperature, "the stored reading is kept");
    assert.equal(new Date(readings[0]!.ts).toISOString(), first.ts);
    const letters = await deadLetters(app, env, 1);
    assert.equal(letters.length, 1, "only the conflicting reading is dead-lettered");
    assert.deepEqual(JSON.parse(letters[0]!.value), reused);
    assert.equal(
      letters[0]!.reason,
      'conflict: reading "twice-1" seq "1" is stored already with other content: ' +
        'ts "2026-11-27T13:05:00.000Z" (stored "2026-11-27T13:00:00.000Z"), ' +
        'temperature "80.1" (stored "21.5")',
    );
    assert.equal(await metric(app, "iot_reading_conflicts_total"), 1);
    assert.equal(await metric(app, "iot_duplicates_dropped_total"), 1);
    assert.equal(await metric(app, "iot_dead_letters_total"), 1);
    assert.equal(await metric(app, "iot_late_readings_total"), 0);
    const health = await (await fetch(`${app.url}/health`)).json();
    assert.equal(health.stats.processors.conflicts, 1);
  });
}

services.test("pipeline (kafka+mongodb): batches handed on past a store write that failed are stored once, in order, and nothing is dead-lettered", async () => {
  await using env = await testEnv("e2e-handon", KAFKA_MONGO);
  await using app = await startApp(env, { ROLE: "processors" });
  const writer = app.parts.writer!;
  const write = writer.write.bind(writer);
  let readingWrites = 0;
  // The second write of readings fails before it reaches the store: the batches handed on after
  // it must not count as stored, and the partition is read again from it.
  writer.write = (batch, options) => {
    if (batch.readings.length > 0 && ++readingWrites === 2) {
      return Promise.reject(new Error("Store write failed: connection reset"));
    }
    return write(batch, options);
  };
  const cycle = [60, 81, 85, 90, 79, 75, 69, 65, 62, 72];
  const ids = ["handon-a", "handon-b", "handon-c"];
  const rounds = 6;
  for (let round = 0; round < rounds; round++) {
    await publishReadings(
      app,
      env,
      ids.flatMap((deviceId) =>
        cycle.map((temperature, i) => ({
          ...GOOD,
          deviceId,
          seq: round * cycle.length + i + 1,
          ts: new Date(Date.UTC(2026, 10, 27, 13, 0, round * cycle.length + i)).toISOString(),
          temperature,
        }))
      ),
    );
  }
  const last = rounds * cycle.length;
  for (const id of ids) {
    await until(`${id} fully stored`, async () => {
      const d = await app.parts.store!.device(id);
      return d && d.lastSeq >= last ? true : undefined;
    }, 30_000);
    assert.equal(await assertConsistent(app, id, last), rounds, `${id}: one episode per cycle`);
  }
  const stats = app.parts.processors!.stats;
  assert.ok(stats.failedBatches >= 1, "the write failed");
  assert.equal(stats.deadLettered, 0, "nothing refused as late or conflicting");
});
