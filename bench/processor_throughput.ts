/**
 * Scenario 2, processor throughput: a topic pre-filled with M readings from
 * D devices, then the `processors` role alone drains it into the store.
 * Measures readings/s from the first stored reading to the last, and the lag
 * (readings not yet stored) over time, from the app's own counters (asking
 * FerretDB for a count would scan and slow what is measured). Right before
 * each drain, a raw indexed `insertMany` of as many documents from as many
 * devices into the same store gives the ceiling it is divided by, and the store server's CPU per 10 000 documents
 * for both (bench/store_cpu.ts).
 *
 * @module
 */
import { defaultOfflineAfterMs } from "../domain/offline.ts";
import { startPipeline } from "./pipeline.ts";
import { sampleReading } from "./ceilings.ts";
import { runName, type Services } from "./services.ts";
import { removeResources } from "../tests/fixtures.ts";
import { fillTopic } from "./fill_topic.ts";
import { cpuMs, round } from "./stats.ts";
import { sleep } from "./interrupt.ts";
import { storeCeiling } from "./ceilings.ts";
import { storeCpuTime, storeProcesses } from "./store_cpu.ts";

export interface ProcessorThroughputResult {
  readonly readings: number;
  readonly devices: number;
  readonly partitions: number;
  readonly readingsPerSec: number;
  readonly drainS: number;
  readonly cpuCores: number;
  /** [seconds since start, readings not yet stored]. */
  readonly lag: readonly (readonly [number, number])[];
  readonly completed: boolean;
  /** Raw indexed insertMany docs/s into the same store, measured right before the drain. */
  readonly ceilingPerSec?: number;
  /** The store server's CPU per 10 000 stored readings: the drain's, and the ceiling loop's. */
  readonly storeCpuMsPer10k?: number;
  readonly ceilingStoreCpuMsPer10k?: number;
}

export async function processorThroughput(
  services: Services,
  options: { readings: number; devices: number; timeoutMs: number; log: (line: string) => void },
): Promise<ProcessorThroughputResult> {
  const { readings, devices, log } = options;
  const partitions = 6;
  const topic = runName("prefilled");
  try {
    await prefill(services, topic, { readings, devices, partitions, log });
    const ceiling = await storeCeiling(services, {
      durationMs: 0,
      batchSize: 2000,
      log,
      total: readings,
      devices,
    });
    log(
      `  ceiling ${ceiling.insertsPerSec} docs/s, store CPU ${ceiling.storeCpuMsPer10k} ms per 10 000`,
    );
    const store = await storeProcesses(services.mongoUrl);
    const storeCpu0 = await storeCpuTime(store);
    await using run = await startPipeline(services, { role: "processors", partitions, topic });
    const lag: [number, number][] = [];
    const t0 = performance.now();
    const cpu0 = cpuMs();
    let first = 0;
    let last = 0;
    let lastLog = 0;
    while (performance.now() - t0 < options.timeoutMs) {
      const stored = run.storedCount;
      const now = performance.now();
      // From the first write handed to the store (as the ceiling's clock starts before its
      // first insert), not its acknowledgement, which would leave the first write out.
      if (stored > 0 && first === 0) first = run.firstWriteAt || now;
      const s = round((now - t0) / 1000, 1);
      lag.push([s, readings - stored]);
      if (now - lastLog >= 5000) {
        lastLog = now;
        log(`processors: t=${s}s stored ${stored}/${readings}, lag ${readings - stored}`);
      }
      if (stored >= readings) {
        last = run.lastStoredAt || now;
        break;
      }
      await sleep(250);
    }
    const cpuCores = round((cpuMs() - cpu0) / (performance.now() - t0));
    const stored = run.storedCount;
    const storeCpuMs = await storeCpuTime(store) - storeCpu0;
    const end = last || performance.now();
    const drainS = round((end - (first || t0)) / 1000, 1);
    return {
      readings,
      devices,
      partitions,
      readingsPerSec: Math.round(stored / Math.max(0.001, (end - (first || t0)) / 1000)),
      drainS,
      cpuCores,
      lag: thin(lag, 40),
      completed: stored >= readings,
      ceilingPerSec: ceiling.insertsPerSec,
      ...(stored > 0 ? { storeCpuMsPer10k: Math.round(storeCpuMs / stored * 10_000) } : {}),
      ...(ceiling.storeCpuMsPer10k !== undefined
        ? { ceilingStoreCpuMsPer10k: ceiling.storeCpuMsPer10k }
        : {}),
    };
  } finally {
    await removeResources({ topics: [topic] }, services);
  }
}

/**
 * Produces readings round-robin over the devices (bench/fill_topic.ts), one reading per ms of
 * event time, so each device reports every `devices` ms, and says so with its offline limit.
 */
async function prefill(
  services: Services,
  topic: string,
  o: { readings: number; devices: number; partitions: number; log: (line: string) => void },
) {
  // Each device reports every `devices` ms of event time: without its own offline limit the
  // processors' default (3 × the configured interval) would find every gap an offline episode.
  const offlineAfterMs = defaultOfflineAfterMs(o.devices);
  const seconds = await fillTopic(services, topic, {
    readings: o.readings,
    devices: o.devices,
    partitions: o.partitions,
    reading: (device, seq, tsMs) => ({
      ...sampleReading(`dev-${String(device).padStart(6, "0")}`, seq, tsMs),
      offlineAfterMs,
    }),
  });
  o.log(`prefilled ${o.readings} readings (${o.devices} devices) in ${round(seconds, 1)} s`);
}

function thin<T>(xs: readonly T[], n: number): T[] {
  if (xs.length <= n) return [...xs];
  const step = xs.length / n;
  const out: T[] = [];
  for (let i = 0; i < n; i++) out.push(xs[Math.floor(i * step)]!);
  out.push(xs.at(-1)!);
  return out;
}
