/**
 * Scenarios 3 and 4, end to end: sensors → Kafka → processors → store in one
 * process (`--role all`) at a fixed offered load (rate × 3 s sensors at a 3 s
 * cadence, 1 % of them overheating every 15 s so alerts happen). After a
 * warm-up it measures a window: stored readings/s, the backlog (acknowledged
 * by Kafka but not yet stored) over time, emit → stored latency and alert
 * latency. With `apiLoad`, a second window of the same length runs while
 * clients call `GET /sensors/:id` and `POST /sensors` at fixed rates, giving
 * their latency and the pipeline's latency change.
 *
 * @module
 */
import type { SensorTemplate } from "../schemas/sensor_request.ts";
import { startPipeline } from "./pipeline.ts";
import type { Services } from "./services.ts";
import { cpuMs, Histogram, type LatencySummary, round } from "./stats.ts";
import { sleep } from "./interrupt.ts";

/**
 * What the overheating 1 % of sensors report: one raise (two readings at or
 * above 80 °C) and one clear (two at or below 70 °C) every five readings,
 * so alert latency is measured many times in a short window.
 */
const HOT_SCRIPT: readonly number[] = Array.from(
  { length: 2000 },
  (_, i) => [60, 85, 86, 60, 60][i % 5]!,
);

export interface WindowResult {
  readonly windowS: number;
  readonly offeredPerSec: number;
  readonly sentPerSec: number;
  readonly storedPerSec: number;
  readonly cpuCores: number;
  readonly storedLatencyMs: LatencySummary;
  readonly alertLatencyMs: LatencySummary;
  /** [seconds into the window, readings acknowledged by Kafka but not yet stored]. */
  readonly backlog: readonly (readonly [number, number])[];
  /** Backlog did not grow: its maximum over the last third is at most that of the first third plus one second of load. */
  readonly bounded: boolean;
}

export interface ApiLoadResult {
  readonly get: {
    readonly perSec: number;
    readonly latencyMs: LatencySummary;
    readonly errors: number;
  };
  readonly post: {
    readonly perSec: number;
    readonly latencyMs: LatencySummary;
    readonly errors: number;
  };
}

export interface EndToEndResult {
  readonly rate: number;
  readonly sensors: number;
  readonly baseline: WindowResult;
  readonly underApiLoad?: WindowResult & { readonly api: ApiLoadResult };
}

export async function endToEnd(
  services: Services,
  options: {
    rate: number;
    warmupMs: number;
    windowMs: number;
    apiLoad: boolean;
    log: (line: string) => void;
  },
): Promise<EndToEndResult> {
  const { rate, log } = options;
  const intervalMs = 3000;
  const sensors = Math.round((rate * intervalMs) / 1000);
  await using run = await startPipeline(services, {
    role: "all",
    partitions: 6,
    settings: {
      MAX_SENSORS: String(sensors * 2 + 100_000),
      SENSOR_INTERVAL_MS: String(intervalMs),
    },
  });
  const fleet = run.app.parts.fleet!;
  const hot = Math.max(1, Math.round(sensors / 100));
  const add = (count: number, idPrefix: string, template: SensorTemplate) => {
    const added = fleet.add({ kind: "batch", count, idPrefix, template });
    if (!added.ok) throw new Error(`Could not add sensors: ${added.message}`);
  };
  add(hot, "hot", { profile: "scripted", temperatures: HOT_SCRIPT });
  add(sensors - hot, "e2e", { profile: "normal" });
  log(
    `e2e ${rate}/s: ${sensors} sensors (${hot} overheating); warming up ${
      options.warmupMs / 1000
    } s`,
  );
  await sleep(options.warmupMs);
  const baseline = await measureWindow(run, rate, options.windowMs, `e2e ${rate}/s`, log);
  if (!options.apiLoad) return { rate, sensors, baseline };
  const clients = startApiLoad(run.app.url, "hot-0001");
  const loaded = await measureWindow(run, rate, options.windowMs, `e2e ${rate}/s + API`, log);
  const api = await clients.stop();
  return { rate, sensors, baseline, underApiLoad: { ...loaded, api } };
}

async function measureWindow(
  run: Awaited<ReturnType<typeof startPipeline>>,
  rate: number,
  windowMs: number,
  label: string,
  log: (line: string) => void,
): Promise<WindowResult> {
  run.stored = new Histogram();
  run.alerts = new Histogram();
  const sent0 = run.sentCount;
  const stored0 = run.storedCount;
  const cpu0 = cpuMs();
  const t0 = performance.now();
  const backlog: [number, number][] = [];
  let lastLog = t0;
  while (performance.now() - t0 < windowMs) {
    await sleep(1000);
    const now = performance.now();
    const s = round((now - t0) / 1000, 1);
    backlog.push([s, Math.max(0, run.sentCount - run.storedCount)]);
    if (now - lastLog >= 5000) {
      lastLog = now;
      const stored = run.storedCount - stored0;
      log(
        `${label}: t=${s.toFixed(0)}s stored ${Math.round(stored / s)}/s backlog ${
          backlog.at(-1)![1]
        } latency p50 ${run.stored.percentile(50)} p99 ${run.stored.percentile(99)} ms`,
      );
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  const third = Math.max(1, Math.floor(backlog.length / 3));
  const maxOf = (xs: (readonly [number, number])[]) => Math.max(0, ...xs.map(([, b]) => b));
  return {
    windowS: round(seconds, 1),
    offeredPerSec: rate,
    sentPerSec: Math.round((run.sentCount - sent0) / seconds),
    storedPerSec: Math.round((run.storedCount - stored0) / seconds),
    cpuCores: round((cpuMs() - cpu0) / 1000 / seconds),
    storedLatencyMs: run.stored.summary(),
    alertLatencyMs: run.alerts.summary(),
    backlog,
    bounded: maxOf(backlog.slice(-third)) <= maxOf(backlog.slice(0, third)) + rate,
  };
}

/** Offered API load: fixed rates, so it measures the API and not the load generator. */
export const API_LOAD = { getPerSec: 200, postPerSec: 20, maxOutstanding: 256 } as const;

/**
 * Open-loop clients at fixed rates (`API_LOAD`): `GET /sensors/:id` of a
 * running sensor, and `POST /sensors` adding a scripted sensor that emits one
 * reading and completes (so the adds barely change the offered load).
 * Requests are issued on schedule whether or not earlier ones were answered.
 */
function startApiLoad(url: string, knownId: string) {
  let running = true;
  const t0 = performance.now();
  const get = { latency: new Histogram(), count: 0, errors: 0 };
  const post = { latency: new Histogram(), count: 0, errors: 0 };
  let outstanding = 0;
  let added = 0;
  const issue = async (stats: typeof get, request: () => Promise<Response>) => {
    if (outstanding >= API_LOAD.maxOutstanding) {
      stats.errors++;
      return;
    }
    outstanding++;
    const started = performance.now();
    try {
      const res = await request();
      await res.body?.cancel();
      if (!res.ok) stats.errors++;
    } catch {
      stats.errors++;
    } finally {
      outstanding--;
    }
    stats.latency.add(performance.now() - started);
    stats.count++;
  };
  const inFlight = new Set<Promise<void>>();
  const track = (p: Promise<void>) => {
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p));
  };
  const pacer = (async () => {
    let gets = 0;
    let posts = 0;
    while (running) {
      const elapsed = (performance.now() - t0) / 1000;
      for (; gets < elapsed * API_LOAD.getPerSec; gets++) {
        track(issue(get, () => fetch(`${url}/sensors/${knownId}`)));
      }
      for (; posts < elapsed * API_LOAD.postPerSec; posts++) {
        track(issue(post, () =>
          fetch(`${url}/sensors`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({
              id: `api-${++added}`,
              profile: "scripted",
              temperatures: [21],
              intervalMs: 1000,
            }),
          })));
      }
      await sleep(5).catch(() => running = false);
    }
  })();
  return {
    async stop(): Promise<ApiLoadResult> {
      running = false;
      await pacer;
      await Promise.all(inFlight);
      const s = (performance.now() - t0) / 1000;
      const result = (x: typeof get) => ({
        perSec: Math.round(x.count / s),
        latencyMs: x.latency.summary(),
        errors: x.errors,
      });
      return { get: result(get), post: result(post) };
    },
  };
}
