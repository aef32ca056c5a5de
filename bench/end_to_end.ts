/**
 * Scenarios 3 and 4, end to end: sensors → Kafka → processors → store in one
 * process (`--role all`) at a fixed offered load (rate × 3 s sensors at a 3 s
 * cadence, 1 % of them overheating every 15 s so alerts happen). After a
 * warm-up it measures a window: stored readings/s, the backlog (acknowledged
 * by Kafka but not yet stored) over time, emit → stored latency and alert
 * latency. With `apiLoad`, a second window of the same length runs while
 * clients on a worker thread call the control API at fixed rates (`API_LOAD`: the sensor, device
 * and active-alert reads an operator's tools make, and `POST /sensors`), giving
 * their latency and the pipeline's stored/s and latency with and without them.
 *
 * @module
 */
import type { SensorTemplate } from "../schemas/sensor_request.ts";
import { latencyParts, startPipeline } from "./pipeline.ts";
import type { Services } from "./services.ts";
import { cpuMs, Histogram, type LatencySummary, round } from "./stats.ts";
import { sleep } from "./interrupt.ts";
import {
  busyCoresBetween,
  machineBusyMs,
  storeCpuTime,
  type StoreProcesses,
  storeProcesses,
} from "./store_cpu.ts";
import { API_LOAD, type ApiLoadResult, type RouteLoad, startApiLoad } from "./api_load.ts";

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
  /** The store server's CPU over the window, in cores (NaN when it is not a local process). */
  readonly storeCpuCores: number;
  /**
   * The store server's CPU per 10 000 readings stored in the window (NaN when unknown), to set
   * beside the same run's raw insert ceiling and drain (absent in old results).
   */
  readonly storeCpuMsPer10k?: number;
  /** The whole machine's busy CPU over the window, in cores, and its cores (absent in old results). */
  readonly machineCpu?: { readonly busyCores: number; readonly cores: number };
  readonly storedLatencyMs: LatencySummary;
  readonly alertLatencyMs: LatencySummary;
  /** [seconds into the window, readings acknowledged by Kafka but not yet stored]. */
  readonly backlog: readonly (readonly [number, number])[];
  /** Backlog did not grow: its maximum over the last third is at most that of the first third plus one second of load. */
  readonly bounded: boolean;
}

export interface EndToEndResult {
  readonly rate: number;
  readonly sensors: number;
  /** Kafka's own EndToEndLatency, measured in the same run right before (absent in old results). */
  readonly kafkaEndToEndMs?: { readonly p50: number; readonly p99: number };
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
    return added.ids;
  };
  // The fleet numbers ids across prefixes (`hot-0001`…`hot-0090`, then `e2e-0091`…): the API
  // load asks for these, not for ids rebuilt from the counts.
  const ids = [
    ...add(hot, "hot", { profile: "scripted", temperatures: HOT_SCRIPT }),
    ...add(sensors - hot, "e2e", { profile: "normal" }),
  ];
  log(
    `e2e ${rate}/s: ${sensors} sensors (${hot} overheating); warming up ${
      options.warmupMs / 1000
    } s`,
  );
  await sleep(options.warmupMs);
  const store = await storeProcesses(services.mongoUrl);
  const baseline = await measureWindow(
    run,
    { rate, store },
    options.windowMs,
    `e2e ${rate}/s`,
    log,
  );
  if (!options.apiLoad) return { rate, sensors, baseline };
  const clients = startApiLoad(run.app.url, ids);
  const loaded = await measureWindow(
    run,
    { rate, store },
    options.windowMs,
    `e2e ${rate}/s + API`,
    log,
  );
  const api = await clients.stop();
  return { rate, sensors, baseline, underApiLoad: { ...loaded, api } };
}

/**
 * One line for the API scenario: the pipeline's stored/s and emit → stored p99 without and with
 * the API load (the drop as a ratio of the same run's baseline), the store's CPU both ways and
 * the API's own answer times.
 */
export function apiLoadSummary(r: EndToEndResult): string {
  const b = r.baseline;
  const l = r.underApiLoad;
  if (!l) return "no API load measured";
  const drop = 1 - l.storedPerSec / b.storedPerSec;
  const p = (x: RouteLoad) => `p50 ${x.latencyMs.p50} / p99 ${x.latencyMs.p99} ms`;
  const routes = Object.entries(l.api.routes ?? {}).map(([name, x]) => `${name} ${p(x)}`);
  return [
    `API load: stored ${b.storedPerSec}/s without → ${l.storedPerSec}/s with ` +
    `(${(drop * 100).toFixed(0)} % drop, ×${(l.storedPerSec / b.storedPerSec).toFixed(2)})`,
    `emit→stored p99 ${b.storedLatencyMs.p99} → ${l.storedLatencyMs.p99} ms ` +
    `(×${(l.storedLatencyMs.p99 / b.storedLatencyMs.p99).toFixed(2)})`,
    `store CPU ${b.storeCpuCores} → ${l.storeCpuCores} cores`,
    `app CPU ${b.cpuCores} → ${l.cpuCores} cores (its API clients' worker included)`,
    `machine busy ${b.machineCpu?.busyCores} → ${l.machineCpu?.busyCores} of ${l.machineCpu?.cores} cores`,
    `backlog ${b.bounded ? "bounded" : "growing"} → ${l.bounded ? "bounded" : "growing"}`,
    `GET ${l.api.get.perSec}/s ${p(l.api.get)} (${routes.join("; ")})`,
    `POST ${l.api.post.perSec}/s ${p(l.api.post)}`,
    `errors ${l.api.get.errors + l.api.post.errors}`,
    `not sent ${
      (l.api.get.notSent ?? 0) + (l.api.post.notSent ?? 0)
    } (${API_LOAD.maxOutstanding} outstanding)`,
  ].join(", ");
}

async function measureWindow(
  run: Awaited<ReturnType<typeof startPipeline>>,
  { rate, store }: { rate: number; store: StoreProcesses | undefined },
  windowMs: number,
  label: string,
  log: (line: string) => void,
): Promise<WindowResult> {
  run.stored = new Histogram();
  run.alerts = new Histogram();
  if (run.parts) run.parts = latencyParts();
  using loop = run.parts ? loopDelay() : undefined;
  // The slow reads (a `/proc` file per store process) first: the window's counts and its clock are
  // then taken together, and the store's CPU over its own interval, with the readings stored in it.
  const storeCpu0 = await storeCpuTime(store);
  const storeStored0 = run.storedCount;
  const storeT0 = performance.now();
  const machine0 = await machineBusyMs();
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
  const sent = run.sentCount - sent0;
  const stored = run.storedCount - stored0;
  const cpu = cpuMs() - cpu0;
  const machine = await machineBusyMs();
  const storeCpuMs = await storeCpuTime(store) - storeCpu0;
  const storeSeconds = (performance.now() - storeT0) / 1000;
  const storeStored = run.storedCount - storeStored0;
  if (run.parts) {
    const part = (h: Histogram) => `p50 ${h.percentile(50)} / p99 ${h.percentile(99)} ms`;
    log(
      `${label}: emit → stored in parts: to the writer ${part(run.parts.toWriter)}, queued ${
        part(run.parts.queued)
      }, writing ${part(run.parts.writing)}`,
    );
    log(
      `${label}: event loop delay (a 10 ms timer's lateness) ${part(loop!.delays)}, max ${
        loop!.delays.summary().max
      } ms`,
    );
    const alerts = run.parts.alerts;
    log(
      `${label}: alert detection in parts: to the writer ${part(alerts.toWriter)}, queued ${
        part(alerts.queued)
      }, writing ${part(alerts.writing)}`,
    );
  }
  const third = Math.max(1, Math.floor(backlog.length / 3));
  const maxOf = (xs: (readonly [number, number])[]) => Math.max(0, ...xs.map(([, b]) => b));
  return {
    windowS: round(seconds, 1),
    offeredPerSec: rate,
    sentPerSec: Math.round(sent / seconds),
    storedPerSec: Math.round(stored / seconds),
    cpuCores: round(cpu / 1000 / seconds),
    storeCpuCores: round(storeCpuMs / 1000 / storeSeconds),
    // Per stored reading: a window that stored none (a wedged store) has no such figure.
    ...(storeStored > 0 ? { storeCpuMsPer10k: Math.round(storeCpuMs / storeStored * 10_000) } : {}),
    machineCpu: {
      busyCores: round(busyCoresBetween(machine0, machine)),
      cores: machine.cores,
    },
    storedLatencyMs: run.stored.summary(),
    alertLatencyMs: run.alerts.summary(),
    backlog,
    bounded: maxOf(backlog.slice(-third)) <= maxOf(backlog.slice(0, third)) + rate,
  };
}

/**
 * How late a 10 ms timer fires on this process's event loop, which runs the app (sensors,
 * producer, consumer, processors, writer): a stall there delays every reading in flight.
 * `node:perf_hooks`' `monitorEventLoopDelay` answers nothing useful in Deno 2.
 */
function loopDelay(): { readonly delays: Histogram } & Disposable {
  const delays = new Histogram();
  const everyMs = 10;
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    delays.add(Math.max(0, now - last - everyMs));
    last = now;
  }, everyMs);
  return { delays, [Symbol.dispose]: () => clearInterval(timer) };
}
