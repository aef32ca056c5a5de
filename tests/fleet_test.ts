/** The durable fleet through the public surface: HTTP API, restarts, several processes. */
import assert from "node:assert/strict";
import { EMBEDDED, startApp, testEnv } from "./test_app.ts";

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

Deno.test("a restart recreates the fleet that was running: API-added kept, removed gone, --sensors not doubled (embedded)", async () => {
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

Deno.test("--sensors seeds an empty registry once even when every seeded sensor was removed (embedded)", async () => {
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
