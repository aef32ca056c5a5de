/**
 * `GET /metrics` end to end: the real program scraped over HTTP while
 * readings flow, in embedded mode and against Kafka + MongoDB; and the
 * committed Grafana dashboard checked against what the app really exposes.
 */
import "./env_guard.ts";
import assert from "node:assert/strict";
import { encodeReading, type Reading } from "../schemas/reading.ts";
import { type App, VERSION } from "../main.ts";
import { testProducer } from "./fixtures.ts";
import { testWith } from "./needs.ts";
import { until } from "./wait.ts";
import { EMBEDDED, KAFKA_MONGO, type Mode, startApp, type TestEnv, testEnv } from "./test_app.ts";

/** Registrar for tests that need only the suite's permissions. */
const permitted = await testWith();

/** Samples of a Prometheus text exposition, keyed by name and labels as written. */
type Samples = Map<string, number>;

function parseExposition(text: string): Samples {
  const samples: Samples = new Map();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$/.exec(line);
    assert.ok(match, `malformed exposition line: ${line}`);
    samples.set(match[1]!, Number(match[2]));
  }
  return samples;
}

async function scrape(app: App): Promise<{ samples: Samples; contentType: string }> {
  const res = await fetch(`${app.url}/metrics`);
  assert.equal(res.status, 200);
  return {
    samples: parseExposition(await res.text()),
    contentType: res.headers.get("content-type")!,
  };
}

function value(samples: Samples, series: string): number {
  const v = samples.get(series);
  assert.ok(v !== undefined, `series ${series} is exposed`);
  return v;
}

/** Publishes raw records the way a foreign producer would, on either transport. */
async function publishRaw(
  app: App,
  env: TestEnv,
  records: readonly { key: string; value: string }[],
): Promise<void> {
  const queue = app.parts.transport?.embedded;
  if (queue) {
    for (const r of records) assert.ok(queue.publishRaw(r.key, r.value));
    return;
  }
  const producer = testProducer();
  await producer.connect();
  await producer.send({ topic: env.topic, messages: [...records] });
  await producer.disconnect();
}

const WORKED_EXAMPLE = [70, 81, 82, 79, 76, 71, 69, 68, 85, 86];

const reading = (seq: number, ts: string): Reading => ({
  deviceId: "late-1",
  seq,
  ts,
  temperature: 20,
  humidity: 40,
  location: { lat: 48.85, lon: 2.35 },
});

for (const mode of [EMBEDDED, KAFKA_MONGO] satisfies Mode[]) {
  const inMode = await testWith(mode);
  inMode.test(`metrics (${mode.name}): the counters move as readings flow`, async () => {
    await using env = await testEnv("metrics", mode);
    await using app = await startApp(env, { API_TOKEN: "metrics-test-token-0123456789" });

    const before = await scrape(app);
    assert.match(before.contentType, /^text\/plain; version=0\.0\.4/);
    assert.equal(value(before.samples, "iot_readings_produced_total"), 0);
    assert.equal(value(before.samples, "iot_readings_stored_total"), 0);
    assert.equal(value(before.samples, "iot_emit_to_stored_seconds_count"), 0);

    const res = await fetch(`${app.url}/sensors`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        authorization: "Bearer metrics-test-token-0123456789",
      },
      body: JSON.stringify({ id: "oven-1", temperatures: WORKED_EXAMPLE, intervalMs: 100 }),
    });
    assert.equal(res.status, 201, await res.text());
    // Out of order (ts goes back), a duplicate seq and a record that is not JSON.
    await publishRaw(app, env, [
      { key: "late-1", value: encodeReading(reading(1, "2026-11-27T13:00:10.000Z")) },
      { key: "late-1", value: encodeReading(reading(2, "2026-11-27T13:00:05.000Z")) },
      { key: "late-1", value: encodeReading(reading(2, "2026-11-27T13:00:05.000Z")) },
      { key: "late-1", value: "{not json" },
    ]);

    const after = await until("every reading stored and counted", async () => {
      const { samples } = await scrape(app);
      const settled = value(samples, "iot_readings_stored_total") >= 12 &&
        value(samples, "iot_dead_letters_total") >= 1 &&
        value(samples, "iot_readings_consumed_total") >= 14 &&
        value(samples, "iot_active_sensors") === 0;
      return settled ? samples : undefined;
    }, 30_000);

    assert.equal(value(after, "iot_readings_produced_total"), 10);
    // Embedded, the raw records went through the same queue the sensors publish to.
    assert.equal(value(after, "iot_readings_published_total"), mode.kafka ? 10 : 14);
    assert.equal(value(after, "iot_readings_dropped_total"), 0);
    assert.equal(value(after, "iot_readings_consumed_total"), 14);
    assert.equal(value(after, "iot_readings_stored_total"), 12);
    assert.equal(value(after, "iot_dead_letters_total"), 1);
    assert.equal(value(after, "iot_duplicates_dropped_total"), 1);
    assert.equal(value(after, "iot_out_of_order_readings_total"), 1);
    // The worked example: one episode raised and cleared, a second one still open.
    assert.equal(value(after, "iot_alerts_raised_total"), 2);
    assert.equal(value(after, "iot_alerts_cleared_total"), 1);
    assert.equal(value(after, "iot_critical_devices"), 1);
    assert.equal(value(after, "iot_emit_to_stored_seconds_count"), 12);
    assert.ok(value(after, "iot_emit_to_stored_seconds_sum") > 0);
    assert.equal(value(after, "iot_detection_latency_seconds_count"), 2);
    assert.equal(value(after, 'iot_detection_latency_seconds_bucket{le="+Inf"}'), 2);
    assert.equal(value(after, 'iot_supervisor_restarts_total{supervisor="sensors"}'), 0);
    assert.equal(value(after, 'iot_mailbox_depth{actors="processors"}'), 0);
    assert.ok(after.has('iot_mailbox_depth{actors="sensors"}'));
    assert.ok(value(after, "process_resident_memory_bytes") > 0);

    // Caught up: every partition that saw records reports no lag.
    const lag = [...after].filter(([series]) => series.startsWith("iot_consumer_lag{"));
    assert.ok(lag.length > 0, "lag is reported per partition");
    await until("no lag left", async () => {
      const { samples } = await scrape(app);
      const lags = [...samples].filter(([series]) => series.startsWith("iot_consumer_lag{"));
      return lags.every(([, v]) => v === 0) ? true : undefined;
    });
  });
}

permitted.test("the running app counts its HTTP answers by route template, not by path", async () => {
  await using env = await testEnv("metrics-http", EMBEDDED);
  await using app = await startApp(env);
  for (const path of ["/sensors/nope-1", "/sensors/nope-2", "/no/such/path"]) {
    await (await fetch(`${app.url}${path}`)).body?.cancel();
  }
  await (await fetch(`${app.url}/sensors`, { method: "PUT" })).body?.cancel();
  const { samples } = await scrape(app);
  const total = (labels: string) => value(samples, `iot_http_requests_total{${labels}}`);
  assert.equal(total('method="GET",route="/sensors/:id",code="404"'), 2);
  assert.equal(total('method="GET",route="unmatched",code="404"'), 1);
  assert.equal(total('method="PUT",route="unmatched",code="405"'), 1);
  assert.ok(
    value(samples, 'iot_http_request_duration_seconds_count{method="GET",route="/sensors/:id"}') ===
      2,
  );
  assert.ok(![...samples.keys()].some((k) => k.includes("nope-")), "no raw path in a label");
});

permitted.test("iot_build_info carries the app version and the Deno version", async () => {
  await using env = await testEnv("metrics-build", EMBEDDED);
  await using app = await startApp(env);
  const { samples } = await scrape(app);
  const info = [...samples].filter(([series]) => series.startsWith("iot_build_info{"));
  assert.equal(info.length, 1, "one build-info series");
  const [series, v] = info[0]!;
  assert.equal(v, 1);
  assert.ok(series.includes(`version="${VERSION}"`), series);
  assert.ok(series.includes(`deno="${Deno.version.deno}"`), series);
});

/**
 * Names of the series a scrape shows. One request is answered first: the HTTP request series
 * have samples only once the API has answered something, as in any running deployment.
 */
async function exposedNames(app: App): Promise<Set<string>> {
  await (await fetch(`${app.url}/livez`)).body?.cancel();
  return new Set(
    [...(await scrape(app)).samples.keys()].map((series) => series.replace(/\{.*$/, "")),
  );
}

interface Panel {
  readonly type: string;
  readonly title: string;
  readonly datasource?: { readonly type: string; readonly uid: string };
  readonly targets?: readonly { readonly expr: string }[];
  readonly panels?: readonly Panel[];
}

permitted.test("the Grafana dashboard queries only series the app exposes", async () => {
  const dashboard = JSON.parse(
    await Deno.readTextFile(
      new URL("../observability/grafana/dashboards/iot.json", import.meta.url),
    ),
  );
  assert.equal(typeof dashboard.title, "string");
  assert.equal(typeof dashboard.uid, "string");
  assert.ok(Number.isInteger(dashboard.schemaVersion) && dashboard.schemaVersion >= 36);
  const datasources = await Deno.readTextFile(
    new URL("../observability/grafana/provisioning/datasources/prometheus.yaml", import.meta.url),
  );
  const panels: Panel[] = (dashboard.panels as Panel[]).flatMap((p) => [p, ...(p.panels ?? [])]);
  const queried = panels.filter((p) => p.type !== "row");
  assert.ok(queried.length >= 5, "throughput, lag, latency, critical devices, alerts");

  await using env = await testEnv("metrics-dashboard", EMBEDDED);
  await using app = await startApp(env);
  const exposed = await exposedNames(app);
  for (const panel of queried) {
    assert.ok(panel.targets && panel.targets.length > 0, `panel "${panel.title}" has queries`);
    assert.ok(
      panel.datasource && datasources.includes(`uid: ${panel.datasource.uid}`),
      `panel "${panel.title}" uses the provisioned datasource`,
    );
    for (const { expr } of panel.targets) {
      const names = expr.match(/\b(?:iot|process|nodejs)_[a-z0-9_]+/g) ?? [];
      assert.ok(names.length > 0, `panel "${panel.title}": ${expr} names a metric`);
      for (const name of names) {
        assert.ok(exposed.has(name), `panel "${panel.title}": ${name} is not exposed by the app`);
      }
    }
  }
});

permitted.test("the alert rules query only series the app exposes", async () => {
  const rules = await Deno.readTextFile(
    new URL("../observability/prometheus/alerts.yml", import.meta.url),
  );
  const exprs = [...rules.matchAll(/^\s+expr: (?:>-\n)?((?:.+\n)+?)\s+(?:for|labels):/gm)]
    .map((m) => m[1]!);
  assert.ok(exprs.length >= 5, "pipeline down, lag, dead letters, store writes, critical devices");
  await using env = await testEnv("metrics-alerts", EMBEDDED);
  await using app = await startApp(env);
  const exposed = await exposedNames(app);
  const named = exprs.flatMap((expr) => expr.match(/\biot_[a-z0-9_]+/g) ?? []);
  for (
    const name of ["iot_consumer_lag", "iot_dead_letters_total", "iot_failed_batches_total"]
  ) assert.ok(named.includes(name), `an alert watches ${name}`);
  for (const name of named) assert.ok(exposed.has(name), `${name} is not exposed by the app`);
});

permitted.test("every stat panel of the Grafana dashboard has its own thresholds", async () => {
  const dashboard = JSON.parse(
    await Deno.readTextFile(
      new URL("../observability/grafana/dashboards/iot.json", import.meta.url),
    ),
  );
  type Step = { color: string; value: number | null };
  const stats = (dashboard.panels as {
    type: string;
    title: string;
    fieldConfig?: { defaults?: { thresholds?: { mode: string; steps: Step[] } } };
  }[]).filter((p) => p.type === "stat");
  assert.ok(stats.length >= 4);
  const colorAt = (steps: Step[], value: number) =>
    steps.filter((s) => s.value === null || s.value <= value).at(-1)?.color;
  for (const panel of stats) {
    const thresholds = panel.fieldConfig?.defaults?.thresholds;
    assert.ok(thresholds, `panel "${panel.title}" sets thresholds (Grafana's default: red at 80)`);
    assert.equal(thresholds.mode, "absolute");
    assert.equal(thresholds.steps[0]?.value, null, `panel "${panel.title}" has a base colour`);
  }
  const steps = (title: string) =>
    stats.find((p) => p.title === title)!.fieldConfig!.defaults!.thresholds!.steps;
  assert.equal(colorAt(steps("Active sensors"), 100_000), "green", "many sensors are fine");
  assert.equal(colorAt(steps("Critical devices"), 0), "green");
  assert.equal(colorAt(steps("Critical devices"), 1), "red");
  assert.equal(colorAt(steps("Total consumer lag"), 0), "green");
});
