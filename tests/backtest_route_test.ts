/**
 * End to end: `POST /rules/backtest` over readings the real pipeline stored, against FerretDB
 * (Kafka + MongoDB) and Deno KV (embedded), comparing a candidate rule's episodes with the
 * stored ones; and its bound on the readings of one backtest.
 */
import "./env_guard.ts";
import assert from "node:assert/strict";
import { createApi } from "../adapters/http_api.ts";
import { silentLogger } from "../adapters/log.ts";
import { DEFAULT_RULE } from "../domain/hysteresis.ts";
import type { Reading } from "../schemas/reading.ts";
import type { App } from "../main.ts";
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

const START = Date.UTC(2026, 10, 30, 12, 0, 0);

/** Device `a` runs 81-82 °C for a while twice; device `b` once reaches 90 °C. */
const SERIES: Record<string, number[]> = {
  a: [70, 81, 82, 79, 76, 71, 69, 68, 81, 82, 83, 60, 60, 60],
  b: [60, 90, 90, 90, 60, 60, 60],
};

function readings(): Reading[] {
  return Object.entries(SERIES).flatMap(([deviceId, temps]) =>
    temps.map((temperature, i) => ({
      deviceId,
      seq: i + 1,
      ts: new Date(START + (i + 1) * 1000).toISOString(),
      temperature,
      humidity: 40,
      location: { lat: 48.85, lon: 2.35 },
    }))
  );
}

/** Publishes the series and waits until the processors stored every reading of it. */
async function stored(app: App, env: TestEnv) {
  await publishReadings(app, env, readings());
  for (const [id, temps] of Object.entries(SERIES)) {
    await until(`device ${id} stored`, async () => {
      const device = await app.parts.store!.device(id);
      return device?.lastSeq === temps.length ? device : undefined;
    });
  }
}

function backtest(url: string, body: unknown) {
  return fetch(`${url}/rules/backtest`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
}

const WINDOW = {
  from: new Date(START).toISOString(),
  to: new Date(START + 60_000).toISOString(),
};

type Episode = { _id: string; status: string; clearedSeq?: number; peakTemperature: number };
const brief = (e: Episode) => [e._id, e.status, e.clearedSeq, e.peakTemperature];

for (const mode of [KAFKA_MONGO, EMBEDDED]) {
  const inMode = await testWith(mode);
  inMode.test(`backtest (${mode.name}): the rule in force reproduces the stored episodes; a candidate differs`, async () => {
    await using env = await testEnv("e2e-backtest", mode);
    await using app = await startApp(env);
    await stored(app, env);

    const same = await backtest(app.url, { ...WINDOW, rule: DEFAULT_RULE });
    assert.equal(same.status, 200, await same.clone().text());
    const body = await same.json();
    const expected = [
      ["a:overheat:3", "cleared", 8, 82],
      ["a:overheat:10", "cleared", 13, 83],
      ["b:overheat:3", "cleared", 6, 90],
    ];
    assert.deepEqual(body.stored.map(brief), expected, "what the pipeline stored");
    assert.deepEqual(body.candidate.map(brief), expected, "the same rule, replayed");
    assert.deepEqual(body.summary, { candidate: 3, stored: 3, same: 3 });
    assert.equal(body.readings, 21);
    assert.equal(body.devices, 2);

    // Raise at 85 °C only: device a never gets there.
    const strict = { high: 85, low: 70, raiseAfter: 2, clearAfter: 2 };
    const candidate = await (await backtest(app.url, { ...WINDOW, rule: strict })).json();
    assert.deepEqual(candidate.candidate.map(brief), [["b:overheat:3", "cleared", 6, 90]]);
    assert.deepEqual(candidate.summary, { candidate: 1, stored: 3, same: 1 });

    // One device, and a window that starts mid-series (seq 9 on): a's second episode only.
    const narrow = await (await backtest(app.url, {
      deviceId: "a",
      from: new Date(START + 9000).toISOString(),
      to: WINDOW.to,
      rule: DEFAULT_RULE,
    })).json();
    assert.deepEqual(narrow.candidate.map(brief), [["a:overheat:10", "cleared", 13, 83]]);
    assert.deepEqual(narrow.stored.map(brief), [["a:overheat:10", "cleared", 13, 83]]);
    assert.equal(narrow.readings, 6);
  });
}

const kafkaMongo = await testWith(KAFKA_MONGO);
kafkaMongo.test("backtest (kafka+mongodb): a window past the reading bound answers 422 naming the bound", async () => {
  await using env = await testEnv("e2e-backtest-bound", KAFKA_MONGO);
  await using app = await startApp(env);
  await stored(app, env);
  // The same store behind an API with a bound of 14 readings: device a alone fits, both do not.
  const api = createApi({
    health: () => Promise.resolve({ ok: true, checks: {} }),
    info: { role: "api", version: "test" },
    logger: silentLogger,
    queries: app.parts.store!,
    backtest: { maxReadings: 14, deadlineMs: 60_000 },
  });
  const request = (body: unknown) =>
    api.request("/rules/backtest", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
  const one = await request({ ...WINDOW, deviceId: "a", rule: DEFAULT_RULE });
  assert.equal(one.status, 200);
  assert.equal((await one.json()).readings, 14);
  const all = await request({ ...WINDOW, rule: DEFAULT_RULE });
  assert.equal(all.status, 422);
  assert.deepEqual(await all.json(), {
    error: {
      code: "limit_exceeded",
      message:
        "Backtest window holds more readings than the limit of 14: narrow the window (from, to) or name a deviceId",
    },
  });
});
