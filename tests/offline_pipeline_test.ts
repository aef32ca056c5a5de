/**
 * End to end: offline alerts through the real app — sensors → Kafka (or the
 * embedded queue) → processors → FerretDB (or Deno KV) — read back through
 * the HTTP API (docs/offline.md).
 */
import "./env_guard.ts";
import assert from "node:assert/strict";
import { encodeReading, type Reading } from "../schemas/reading.ts";
import type { AlertDoc } from "../schemas/documents.ts";
import type { App } from "../main.ts";
import { ensureTopics } from "../adapters/kafka_client.ts";
import { testKafka } from "./fixtures.ts";
import { testWith } from "./needs.ts";
import { until } from "./wait.ts";
import { EMBEDDED, KAFKA_MONGO, startApp, type TestEnv, testEnv } from "./test_app.ts";

function post(url: string, body: unknown) {
  return fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
}

/** The offline alerts of a device through `GET /alerts?type=offline`, oldest first. */
async function offlineAlerts(app: App, deviceId: string): Promise<Record<string, unknown>[]> {
  const res = await fetch(`${app.url}/alerts?type=offline&deviceId=${deviceId}&limit=100`);
  assert.equal(res.status, 200, await res.clone().text());
  const { alerts } = await res.json() as { alerts: Record<string, unknown>[] };
  return alerts.sort((a, b) => Number(a.raisedSeq) - Number(b.raisedSeq));
}

for (const mode of [KAFKA_MONGO, EMBEDDED]) {
  const inMode = await testWith(mode);
  inMode.test(`offline (${mode.name}): a removed sensor goes offline and clears when it reports again`, async () => {
    await using env = await testEnv("e2e-offline", mode);
    await using app = await startApp(env);
    const spec = { id: "quiet-1", intervalMs: 200, offlineAfterMs: 1500 };
    assert.equal((await post(`${app.url}/sensors`, spec)).status, 201);
    // Another sensor keeps going: only the silent one goes offline.
    assert.equal(
      (await post(`${app.url}/sensors`, { id: "steady-1", intervalMs: 200 })).status,
      201,
    );
    await until("quiet-1 stored a few readings", async () => {
      const d = await app.parts.store!.device("quiet-1");
      return d && d.lastSeq >= 3 ? true : undefined;
    });
    assert.equal((await fetch(`${app.url}/sensors/quiet-1`, { method: "DELETE" })).status, 204);
    const lastEmitted = app.parts.fleet!.lastSeq("quiet-1")!;
    const id = `quiet-1:offline:${lastEmitted}`;

    const raised = await until("quiet-1 offline since its last reading", async () => {
      const alerts = await offlineAlerts(app, "quiet-1");
      return alerts.find((a) => a._id === id && a.status === "active");
    }, 30_000);
    const device = (await app.parts.store!.device("quiet-1"))!;
    assert.equal(device.lastSeq, lastEmitted, "its last reading is stored");
    assert.equal(raised.type, "offline");
    assert.equal(raised.raisedSeq, lastEmitted);
    assert.equal(
      Date.parse(String(raised.raisedAt)),
      device.lastTs!.getTime() + 1500,
      "the silence began offlineAfterMs after the last reading",
    );
    // Any other episode of quiet-1 was one its held-up readings withdrew (a loaded machine).
    const others = (await offlineAlerts(app, "quiet-1")).filter((a) => a._id !== id);
    assert.ok(others.every((a) => a.withdrawn === true), JSON.stringify(others));
    await until("steady-1 has no offline episode", async () => {
      const alerts = await offlineAlerts(app, "steady-1");
      return alerts.every((a) => a.withdrawn === true) ? true : undefined;
    });
    const overheat = await (await fetch(`${app.url}/alerts?type=overheat&deviceId=quiet-1`)).json();
    assert.deepEqual(overheat.alerts, []);
    assert.equal((await fetch(`${app.url}/alerts?type=cold`)).status, 400);
    const metrics = await (await fetch(`${app.url}/metrics`)).text();
    assert.ok(Number(/^iot_devices_offline (\d+)$/m.exec(metrics)?.[1]) >= 1, metrics);
    assert.ok(
      Number(/^iot_offline_episodes_total\{event="raised"\} (\d+)$/m.exec(metrics)?.[1]) >= 1,
    );

    // Back: its next reading closes the episode.
    assert.equal((await post(`${app.url}/sensors`, spec)).status, 201);
    const cleared = await until("quiet-1 back online", async () => {
      const alerts = await offlineAlerts(app, "quiet-1");
      return alerts.find((a) => a._id === id && a.status === "cleared");
    }, 30_000);
    assert.equal(cleared.raisedAt, raised.raisedAt);
    assert.ok(Number(cleared.clearedSeq) > lastEmitted);
    assert.equal(cleared.withdrawn, undefined, "a real silence");
  });
}

for (const mode of [KAFKA_MONGO, EMBEDDED]) {
  const inMode = await testWith(mode);
  inMode.test(`offline (${mode.name}): a sensor silent across a processors restart goes offline with the episode it would have had without the restart`, async () => {
    await using env = await testEnv("e2e-offline-restart", mode);
    const limit = 8000;
    const spec = { id: "quiet-1", intervalMs: 200, offlineAfterMs: limit };
    let lastSeq: number;
    let lastTs: Date;
    {
      await using app = await startApp(env);
      assert.equal((await post(`${app.url}/sensors`, spec)).status, 201);
      assert.equal(
        (await post(`${app.url}/sensors`, { id: "steady-1", intervalMs: 200 })).status,
        201,
      );
      await until("quiet-1 stored a few readings", async () => {
        const d = await app.parts.store!.device("quiet-1");
        return d && d.lastSeq >= 3 ? true : undefined;
      });
      assert.equal((await fetch(`${app.url}/sensors/quiet-1`, { method: "DELETE" })).status, 204);
      lastSeq = app.parts.fleet!.lastSeq("quiet-1")!;
      // Checkpointed, with its offsets: after the restart its readings are not consumed again.
      const device = await until("quiet-1's last reading checkpointed", async () => {
        const d = await app.parts.store!.device("quiet-1");
        return d?.lastSeq === lastSeq ? d : undefined;
      });
      assert.equal(typeof device.partition, "number", "the state records its partition");
      assert.equal(device.offlineAfterMs, limit);
      lastTs = device.lastTs!;
      assert.deepEqual(await offlineAlerts(app, "quiet-1"), [], "stopped before its deadline");
    }
    // The processors restart (the sensors with them); quiet-1 stays removed.
    await using app = await startApp(env);
    const id = `quiet-1:offline:${lastSeq}`;
    const raised = await until("quiet-1 offline since its last reading", async () => {
      const alerts = await offlineAlerts(app, "quiet-1");
      return alerts.find((a) => a._id === id && a.status === "active");
    }, 60_000);
    // What the rule makes of its readings alone: the same as without the restart.
    assert.equal(raised.type, "offline");
    assert.equal(raised.raisedSeq, lastSeq);
    assert.equal(Date.parse(String(raised.raisedAt)), lastTs.getTime() + limit);
    assert.equal(Date.parse(String(raised.lastSeenAt)), lastTs.getTime());
    assert.equal(raised.offlineAfterMs, limit);
    const others = (await offlineAlerts(app, "quiet-1")).filter((a) => a._id !== id);
    assert.ok(others.every((a) => a.withdrawn === true), JSON.stringify(others));
    assert.ok(app.parts.offline!.stats.devicesResumed >= 1);
    const metrics = await (await fetch(`${app.url}/metrics`)).text();
    assert.ok(Number(/^iot_devices_offline (\d+)$/m.exec(metrics)?.[1]) >= 1, metrics);

    // Back: its next reading closes the same episode.
    assert.equal((await post(`${app.url}/sensors`, spec)).status, 201);
    const cleared = await until("quiet-1 back online", async () => {
      const alerts = await offlineAlerts(app, "quiet-1");
      return alerts.find((a) => a._id === id && a.status === "cleared");
    }, 30_000);
    assert.equal(cleared.raisedAt, raised.raisedAt);
    assert.equal(cleared.withdrawn, undefined, "a real silence");
  });
}

const kafka = await testWith(KAFKA_MONGO);

kafka.test("offline (kafka+mongodb): a backlog consumed long after it was produced raises no false offline", async () => {
  await using env = await testEnv("e2e-offline-backlog", KAFKA_MONGO);
  // Ten minutes of history, produced before the processors start: "steady" devices report every
  // second; "gappy" stops for 20 s in the middle. offlineAfterMs 3 s.
  const start = Date.now() - 600_000;
  const records: Reading[] = [];
  const gappy: number[] = [];
  for (let s = 0; s < 120; s++) {
    for (const id of ["steady-1", "steady-2", "steady-3"]) {
      records.push(reading(id, s + 1, start + s * 1000));
    }
    if (s < 40 || s >= 60) gappy.push(s);
  }
  gappy.forEach((s, i) => records.push(reading("gappy-1", i + 1, start + s * 1000)));
  records.sort((a, b) => Date.parse(a.ts) - Date.parse(b.ts));
  await produceBacklog(env, records);

  await using app = await startApp(env, { OFFLINE_GRACE_MS: "1000" });
  await until("the backlog consumed", async () => {
    const d = await app.parts.store!.device("steady-3");
    return d?.lastSeq === 120 ? true : undefined;
  }, 60_000);
  // Caught up, they are all silent now: each gets one episode, from its last reading.
  const alerts = await until("every device offline since its last reading", async () => {
    const all = await app.parts.store!.alerts({ type: "offline", limit: 100 });
    return all.filter((a) => a.status === "active").length === 4 ? all : undefined;
  }, 30_000);
  const byDevice = Map.groupBy(alerts, (a: AlertDoc) => a.deviceId);
  for (const id of ["steady-1", "steady-2", "steady-3"]) {
    const list = byDevice.get(id) ?? [];
    assert.deepEqual(
      list.map((a) => [a.raisedSeq, a.status]),
      [[120, "active"]],
      `${id}: no episode inside the backlog`,
    );
    assert.equal(list[0]!.raisedAt.getTime(), start + 119_000 + 3000);
  }
  const episodes = (byDevice.get("gappy-1") ?? []).sort((a, b) => a.raisedSeq - b.raisedSeq);
  assert.deepEqual(
    episodes.map((a) => [a.raisedSeq, a.status, a.clearedSeq, a.raisedAt.getTime()]),
    [
      [40, "cleared", 41, start + 39_000 + 3000],
      [gappy.length, "active", undefined, start + 119_000 + 3000],
    ],
    "gappy-1: the silence in the backlog, from the readings alone, and the one now",
  );
  assert.equal(app.parts.offline!.stats.offlineWithdrawn, 0);
});

function reading(deviceId: string, seq: number, tsMs: number): Reading {
  return {
    deviceId,
    seq,
    ts: new Date(tsMs).toISOString(),
    temperature: 20 + (seq % 5),
    humidity: 50,
    location: { lat: 48.85, lon: 2.35 },
    offlineAfterMs: 3000,
  };
}

/** Creates the readings topic as the app would and fills it before any processor runs. */
async function produceBacklog(env: TestEnv, records: readonly Reading[]) {
  const client = testKafka();
  await ensureTopics(client, [{ topic: env.topic, numPartitions: 3 }]);
  const producer = client.producer();
  await producer.connect();
  try {
    await producer.send({
      topic: env.topic,
      acks: -1,
      messages: records.map((r) => ({ key: r.deviceId, value: encodeReading(r) })),
    });
  } finally {
    await producer.disconnect();
  }
}
