/**
 * Scenario 1, sensor scale: N simulated sensors at a 3 s cadence in one
 * process (the `sensors` role), producing to Kafka. Measures the add call
 * (spawn), retained heap per idle sensor (after a forced GC, before any
 * sensor has ticked), readings/s emitted and acknowledged by Kafka against
 * the expected N / interval, timer lateness and the CPU the process used.
 *
 * Lateness needs each tick's due time. The schedule is drift-free (tick k is
 * due at start + k × interval), so `now − seq × interval` is constant for an
 * on-time device; each device's smallest such value seen during the warm-up
 * and window is its schedule, and lateness is how far a tick lies above it.
 * That cannot overstate lateness; it would understate it only if every tick
 * of a device was equally late.
 *
 * @module
 */
import { startPipeline } from "./pipeline.ts";
import type { Services } from "./services.ts";
import { sleep } from "./interrupt.ts";
import { cpuMs, Histogram, type LatencySummary, round } from "./stats.ts";

export interface SensorScaleResult {
  readonly sensors: number;
  readonly intervalMs: number;
  readonly windowS: number;
  /** Duration of the synchronous add of all N sensors (the API call's work). */
  readonly spawnMs: number;
  /** From the add call until every sensor had emitted (includes the phase spread of ≤ 1 interval). */
  readonly allEmittingMs: number;
  readonly heapBytesPerSensor: number;
  readonly expectedPerSec: number;
  readonly emittedPerSec: number;
  readonly ackedPerSec: number;
  readonly dropped: number;
  readonly latenessMs: LatencySummary;
  readonly cpuCores: number;
}

export async function sensorScale(
  services: Services,
  options: { sensors: number; windowMs: number; log: (line: string) => void },
): Promise<SensorScaleResult> {
  const { sensors, windowMs, log } = options;
  const intervalMs = 3000;
  await using run = await startPipeline(services, {
    role: "sensors",
    partitions: 6,
    settings: { MAX_SENSORS: String(sensors), SENSOR_INTERVAL_MS: String(intervalMs) },
  });
  const fleet = run.app.parts.fleet!;
  const producer = run.app.parts.producer!;
  // Device number → earliest (now − seq × interval), see the module comment.
  const schedule = new Float64Array(sensors + 1).fill(Infinity);
  let seen = 0;
  let allEmittingAt = 0;
  let measuring = false;
  let emitted = 0;
  let lateness = new Histogram(60_000);
  run.onPublish = (reading, now) => {
    const n = Number(reading.deviceId.slice(6)); // "bench-000123"
    const base = now - reading.seq * intervalMs;
    const best = schedule[n]!;
    if (best === Infinity) {
      if (++seen === sensors) allEmittingAt = now;
    }
    if (base < best) schedule[n] = base;
    if (measuring) {
      emitted++;
      lateness.add(base < best ? 0 : base - best);
    }
  };

  collectGarbage();
  const heapBefore = Deno.memoryUsage().heapUsed;
  const addStarted = Date.now();
  const t0 = performance.now();
  const added = fleet.add({
    kind: "batch",
    count: sensors,
    idPrefix: "bench",
    template: { profile: "normal" },
  });
  const spawnMs = round(performance.now() - t0, 1);
  if (!added.ok) throw new Error(`Could not add sensors: ${added.message}`);
  // Synchronously after add(): no sensor has ticked yet, so this is the idle fleet.
  collectGarbage();
  const heapBytesPerSensor = Math.round((Deno.memoryUsage().heapUsed - heapBefore) / sensors);
  log(`sensors ${sensors}: spawned in ${spawnMs} ms, ${heapBytesPerSensor} B/sensor; warming up`);

  // Warm up for one interval (every sensor ticks once) plus a little, then measure.
  await sleep(intervalMs + 1000);
  lateness = new Histogram(60_000);
  measuring = true;
  const sent0 = producer.stats.sent;
  const dropped0 = producer.stats.dropped;
  const cpu0 = cpuMs();
  const w0 = performance.now();
  const progress = setInterval(() => {
    const s = (performance.now() - w0) / 1000;
    log(
      `sensors ${sensors}: t=${s.toFixed(0)}s emitted ${Math.round(emitted / s)}/s ` +
        `acked ${Math.round((producer.stats.sent - sent0) / s)}/s lateness p99 ${
          lateness.percentile(99)
        } ms buffered ${producer.stats.buffered}`,
    );
  }, 5000);
  await sleep(windowMs);
  clearInterval(progress);
  const seconds = (performance.now() - w0) / 1000;
  const cpuCores = round((cpuMs() - cpu0) / 1000 / seconds);
  measuring = false;
  return {
    sensors,
    intervalMs,
    windowS: round(seconds, 1),
    spawnMs,
    allEmittingMs: allEmittingAt ? allEmittingAt - addStarted : NaN,
    heapBytesPerSensor,
    expectedPerSec: Math.round(sensors / (intervalMs / 1000)),
    emittedPerSec: Math.round(emitted / seconds),
    ackedPerSec: Math.round((producer.stats.sent - sent0) / seconds),
    dropped: producer.stats.dropped - dropped0,
    latenessMs: lateness.summary(),
    cpuCores,
  };
}

function collectGarbage() {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error("Run with --v8-flags=--expose-gc (deno task bench does)");
  gc();
  gc();
}
