/** The durable fleet through the public surface: HTTP API, restarts, several processes. */
import "./env_guard.ts";
import assert from "node:assert/strict";
import { EMBEDDED, KAFKA_KV, startApp, testEnv } from "./test_app.ts";
import { testKafka, uniqueName } from "./fixtures.ts";
import { testWith } from "./needs.ts";
import { until } from "./wait.ts";

/** Registrars for the tests that need Kafka, and for those that need only permissions. */
const kafka = await testWith(KAFKA_KV);
const permitted = await testWith();

async function sensorIds(url: string): Promise<string[]> {
  const body = await (await fetch(`${url}/sensors?limit=1000`)).json();
  return body.sensors.map((s: { id: string }) => s.id).sort();
}

function post(url: string, body: unknown): Promise<Response> {
  return fetch(`${url}/sensors`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
}

permitted.test("a restart recreates the fleet that was running: API-added kept, removed gone, --sensors not doubled (embedded)", async () => {
  await using env = await testEnv("fleet-restart", EMBEDDED);
  {
    await using app = await startApp(env, { SENSORS: "3" });
    assert.deepEqual(await sensorIds(app.url), ["sensor-0001", "sensor-0002", "sensor-0003"]);
    const added = await post(app.url, {
      id: "boiler-1",
      intervalMs: 500,
      thresholds: { high: 90 },
    });
    assert.equal(added.status, 201);
    assert.deepEqual(await added.json(), { ids: ["boiler-1"] });
    assert.equal((await fetch(`${app.url}/sensors/sensor-0002`, { method: "DELETE" })).status, 204);
  }
  await using again = await startApp(env, { SENSORS: "3" });
  assert.deepEqual(await sensorIds(again.url), ["boiler-1", "sensor-0001", "sensor-0003"]);
  const boiler = await (await fetch(`${again.url}/sensors/boiler-1`)).json();
  assert.equal(boiler.intervalMs, 500);
  assert.equal(boiler.thresholds.high, 90);
  assert.equal(boiler.status, "running");
  assert.equal(boiler.emitting, true);
  assert.equal(boiler.owner.pid, Deno.pid);
  const dup = await post(again.url, { id: "boiler-1" });
  assert.equal(dup.status, 409);
  assert.equal((await dup.json()).error.code, "conflict");
  assert.equal((await fetch(`${again.url}/sensors/sensor-0002`)).status, 404);
});

permitted.test("--sensors seeds an empty registry once even when every seeded sensor was removed (embedded)", async () => {
  await using env = await testEnv("fleet-seed", EMBEDDED);
  {
    await using app = await startApp(env, { SENSORS: "2" });
    for (const id of await sensorIds(app.url)) {
      assert.equal((await fetch(`${app.url}/sensors/${id}`, { method: "DELETE" })).status, 204);
    }
  }
  await using again = await startApp(env, { SENSORS: "2" });
  assert.deepEqual(await sensorIds(again.url), []);
});

interface Seen {
  readonly deviceId: string;
  readonly seq: number;
  readonly ts: number;
  readonly temperature: number;
}

/** Every reading on the topic, from the beginning, as it arrives. */
async function watchReadings(topic: string): Promise<{ seen: Seen[] } & AsyncDisposable> {
  const kafka = testKafka("fleet-test-watch");
  const groupId = uniqueName("fleet-watch");
  const consumer = kafka.consumer({ groupId, maxWaitTimeInMs: 100 });
  const seen: Seen[] = [];
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    eachMessage: ({ message }) => {
      const r = JSON.parse(message.value!.toString());
      seen.push({
        deviceId: r.deviceId,
        seq: r.seq,
        ts: Date.parse(r.ts),
        temperature: r.temperature,
      });
      return Promise.resolve();
    },
  });
  return {
    seen,
    async [Symbol.asyncDispose]() {
      await consumer.disconnect();
      const admin = kafka.admin();
      await admin.connect();
      await admin.deleteGroups([groupId]).catch(() => {});
      await admin.disconnect();
    },
  };
}

/** True once every id has a reading stamped after `since`. */
function allEmittedAfter(seen: readonly Seen[], ids: readonly string[], since: number): boolean {
  return ids.every((id) => seen.some((r) => r.deviceId === id && r.ts > since));
}

kafka.test("sensors processes share the registry: added through the api role, moved when one stops, removed for good (kafka)", async () => {
  await using env = await testEnv("fleet-kafka", KAFKA_KV);
  const settings = { KAFKA_SENSORS_SESSION_TIMEOUT_MS: "6000", SENSOR_INTERVAL_MS: "200" };
  await using api = await startApp(env, { ...settings, ROLE: "api" });
  const first = await startApp(env, { ...settings, ROLE: "sensors" });
  await using second = await startApp(env, { ...settings, ROLE: "sensors" });
  let firstDisposed = false;
  try {
    await using watch = await watchReadings(env.topic);
    const added = await post(api.url, { count: 8, idPrefix: "mv" });
    assert.equal(added.status, 201);
    const { ids } = await added.json() as { ids: string[] };
    assert.equal(ids.length, 8);
    const started = Date.now();
    await until(
      "readings of every added sensor",
      () => allEmittedAfter(watch.seen, ids, started) || undefined,
      60_000,
    );
    // Both members own partitions; each sensor runs in exactly one of them.
    await until("the sensors spread over both processes", () => {
      const onFirst = ids.filter((id) => first.parts.fleet!.has(id));
      const onSecond = ids.filter((id) => second.parts.fleet!.has(id));
      return onFirst.length + onSecond.length === ids.length ? true : undefined;
    }, 60_000);
    const listed = await until("every sensor listed as emitting with its owner", async () => {
      const body = await (await fetch(`${api.url}/sensors`)).json();
      const all = body.sensors as { id: string; emitting: boolean; owner: unknown }[];
      return body.total === 8 && all.every((s) => s.emitting && s.owner) ? all : undefined;
    }, 60_000);
    assert.deepEqual(listed.map((s) => s.id), [...ids].sort());

    // Stop the process that runs more of them: its sensors continue in the other.
    const [leaving, staying] = ids.filter((id) => first.parts.fleet!.has(id)).length >= 4
      ? [first, second]
      : [second, first];
    const moved = ids.filter((id) => leaving.parts.fleet!.has(id));
    assert.ok(moved.length > 0);
    await leaving[Symbol.asyncDispose]();
    if (leaving === first) firstDisposed = true;
    const stoppedAt = Date.now();
    await until(
      "the moved sensors emitting again",
      () => allEmittedAfter(watch.seen, moved, stoppedAt) || undefined,
      60_000,
    );
    assert.ok(moved.every((id) => staying.parts.fleet!.has(id)));
    const one = await until("a moved sensor shown emitting", async () => {
      const body = await (await fetch(`${api.url}/sensors/${moved[0]}`)).json();
      return body.emitting ? body : undefined;
    }, 30_000);
    assert.equal(one.status, "running");

    // Overheat travels to the process that runs the sensor.
    const heat = await fetch(`${api.url}/sensors/${moved[0]}/overheat`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ readings: 3, temperature: 150 }),
    });
    assert.equal(heat.status, 202);
    await until(
      "an overheated reading on the topic",
      // Heated with thermal lag: past the high threshold (80) within a few readings, towards 150.
      () => watch.seen.some((r) => r.deviceId === moved[0] && r.temperature >= 80) || undefined,
      30_000,
    );

    // Removed through the api role: the process that runs it stops it for good.
    const gone = moved[0]!;
    assert.equal((await fetch(`${api.url}/sensors/${gone}`, { method: "DELETE" })).status, 204);
    await until("the sensor stopped", () => !staying.parts.fleet!.has(gone) || undefined);
    const removedAt = Date.now();
    const others = ids.filter((id) => id !== gone);
    await until(
      "the other sensors going on",
      () => allEmittedAfter(watch.seen, others, removedAt + 1000) || undefined,
      30_000,
    );
    assert.equal(
      watch.seen.filter((r) => r.deviceId === gone && r.ts >= removedAt).length,
      0,
      "no reading of a removed sensor",
    );
    assert.equal((await fetch(`${api.url}/sensors/${gone}`)).status, 404);
    assert.equal(
      (await fetch(`${api.url}/sensors/${gone}`, { method: "DELETE" })).status,
      404,
    );
    const dup = await post(api.url, { id: others[0] });
    assert.equal(dup.status, 409);
  } finally {
    if (!firstDisposed) await first[Symbol.asyncDispose]();
  }
});

kafka.test("--sensors seeds the shared registry once; a restarted sensors process runs the same fleet (kafka)", async () => {
  await using env = await testEnv("fleet-kafka-seed", KAFKA_KV);
  const settings = { KAFKA_SENSORS_SESSION_TIMEOUT_MS: "6000", SENSORS: "3" };
  {
    await using first = await startApp(env, { ...settings, ROLE: "sensors" });
    await until(
      "the seeded sensors running",
      () => first.parts.fleet!.size === 3 || undefined,
    );
    assert.equal(
      (await fetch(`${first.url}/sensors/sensor-0002`, { method: "DELETE" })).status,
      204,
    );
  }
  await using again = await startApp(env, { ...settings, ROLE: "sensors" });
  await until(
    "the fleet running again",
    () => again.parts.fleet!.size === 2 || undefined,
    30_000,
  );
  assert.deepEqual(await sensorIds(again.url), ["sensor-0001", "sensor-0003"]);
  assert.deepEqual(again.parts.fleet!.list(0, 10).map((s) => s.id).sort(), [
    "sensor-0001",
    "sensor-0003",
  ]);
});

kafka.test("a fault posted to the api role reaches the sensors process that runs the sensor, and clears (kafka)", async () => {
  await using env = await testEnv("fleet-fault", KAFKA_KV);
  const settings = { SENSOR_INTERVAL_MS: "100" };
  await using sensors = await startApp(env, { ...settings, ROLE: "sensors" });
  await using api = await startApp(env, { ...settings, ROLE: "api" });
  const added = await post(api.url, { id: "far-1" });
  assert.equal(added.status, 201);
  await added.body?.cancel();
  await until("far-1 emitting in the sensors process", () => {
    return (sensors.parts.fleet!.lastSeq("far-1") ?? 0) > 0;
  }, 60_000);
  const faults = () => sensors.parts.fleet!.get("far-1")?.faults ?? [];
  // The command is read from the latest offset: one sent while the consumer joins is lost.
  await until("the fault applied by the sensors process", async () => {
    if (faults().length > 0) return true;
    const res = await fetch(`${api.url}/sensors/far-1/faults`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ kind: "stuck", durationMs: 600_000, temperature: 42 }),
    });
    assert.equal(res.status, 202);
    await res.body?.cancel();
    return await until("applied", () => faults().length > 0, 3000).catch(() => false);
  }, 60_000);
  assert.deepEqual(faults().map((f) => [f.kind, f.temperature]), [["stuck", 42]]);
  const remote = await (await fetch(`${api.url}/sensors/far-1`)).json();
  assert.equal(remote.faults, null, "not known to the api process");
  const local = await (await fetch(`${sensors.url}/sensors/far-1`)).json();
  assert.equal(local.faults[0].kind, "stuck");
  await until(
    "a stuck reading",
    () => sensors.parts.fleet!.get("far-1")?.lastReading?.temperature === 42,
  );

  const cleared = await fetch(`${api.url}/sensors/far-1/faults`, { method: "DELETE" });
  assert.equal(cleared.status, 204);
  await until("the fault cleared in the sensors process", () => faults().length === 0);
});
