/**
 * Scenario 1, sensor scale: N simulated sensors at a 3 s cadence in one
 * process (the `sensors` role), producing to Kafka. Measures the add call
 * (spawn), retained heap per running sensor (after a forced GC, once every
 * sensor has emitted: sensors start only once their first seq block is
 * granted, so the fleet is not complete before), readings/s emitted and
 * acknowledged by Kafka and readings dropped, each as a share of the due rate
 * N / interval and of Kafka's own producer ceiling from the same run, timer
 * lateness and the CPU the process used.
 *
 * It also counts readings emitted in the window that were due before it
 * (`dueBefore`, from the same schedule): a late tick is emitted late, not
 * skipped, so a window that starts while the fleet is still behind (start-up,
 * a stall) also holds ticks due earlier, and the emitted rate over the window
 * exceeds the due rate by that backlog ÷ the window.
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
  /** Kafka ProducerPerformance in the same run (msg/s), the ceiling the ratios refer to. */
  readonly producerCeilingPerSec: number;
  /** Duration of the synchronous add of all N sensors (the API call's work). */
  readonly spawnMs: number;
  /** From the add call until every sensor had emitted (includes the phase spread of ≤ 1 interval). */
  readonly allEmittingMs: number;
  /** Sensors that had emitted when the window opened (all, unless their seq blocks were slow). */
  readonly emittingAtWindow: number;
  /** Retained heap of this isolate per sensor, all running (after a forced GC). */
  readonly heapBytesPerSensor: number;
  /** Readings waiting in this isolate's producer buffer when the heap was measured. */
  readonly bufferedAtHeap: number;
  readonly expectedPerSec: number;
  readonly emittedPerSec: number;
  readonly ackedPerSec: number;
  /** Readings the producer refused in the window (its buffer was full). */
  readonly dropped: number;
  /** Readings emitted in the window that were due before it (a backlog from before). */
  readonly dueBefore: number;
  /** Shares of the due rate and of the producer ceiling. */
  readonly ratios: {
    readonly emittedPerDue: number;
    readonly ackedPerDue: number;
    readonly ackedPerCeiling: number;
    readonly droppedPerEmitted: number;
  };
  readonly latenessMs: LatencySummary;
  readonly cpuCores: number;
}

export async function sensorScale(
  services: Services,
  options: {
    sensors: number;
    windowMs: number;
    /** Kafka ProducerPerformance msg/s measured in the same run. */
    producerCeilingPerSec: number;
    log: (line: string) => void;
  },
): Promise<SensorScaleResult> {
  const { sensors, windowMs, producerCeilingPerSec, log } = options;
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
  let dueBefore = 0;
  let windowStart = Infinity;
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
      if (Math.min(base, best) + reading.seq * intervalMs < windowStart) dueBefore++;
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
  log(`sensors ${sensors}: added in ${spawnMs} ms; waiting until all emit`);
  // Sensors start as their first seq blocks are granted: wait until every one has emitted.
  const launchDeadline = Date.now() + Math.max(60_000, 10 * intervalMs);
  while (seen < sensors && Date.now() < launchDeadline) await sleep(200);
  collectGarbage();
  const bufferedAtHeap = producer.stats.buffered;
  const heapBytesPerSensor = Math.round((Deno.memoryUsage().heapUsed - heapBefore) / sensors);
  log(
    `sensors ${sensors}: ${seen} emitting after ${Date.now() - addStarted} ms, ` +
      `${heapBytesPerSensor} B/sensor (${bufferedAtHeap} readings buffered); warming up`,
  );

  // Warm up for one more interval, then measure.
  await sleep(intervalMs);
  lateness = new Histogram(60_000);
  measuring = true;
  windowStart = Date.now();
  const emittingAtWindow = seen;
  const sent0 = producer.stats.sent;
  const dropped0 = producer.stats.dropped;
  const cpu0 = cpuMs();
  const w0 = performance.now();
  const progress = setInterval(() => {
    const s = (performance.now() - w0) / 1000;
    log(
      `sensors ${sensors}: t=${s.toFixed(0)}s emitted ${Math.round(emitted / s)}/s ` +
        `acked ${Math.round((producer.stats.sent - sent0) / s)}/s dropped ${
          producer.stats.dropped - dropped0
        } lateness p99 ${lateness.percentile(99)} ms buffered ${producer.stats.buffered}`,
    );
  }, 5000);
  await sleep(windowMs);
  clearInterval(progress);
  const seconds = (performance.now() - w0) / 1000;
  const cpuCores = round((cpuMs() - cpu0) / 1000 / seconds);
  measuring = false;
  const expectedPerSec = Math.round(sensors / (intervalMs / 1000));
  const emittedPerSec = Math.round(emitted / seconds);
  const ackedPerSec = Math.round((producer.stats.sent - sent0) / seconds);
  const dropped = producer.stats.dropped - dropped0;
  return {
    sensors,
    intervalMs,
    windowS: round(seconds, 1),
    producerCeilingPerSec,
    emittingAtWindow,
    spawnMs,
    allEmittingMs: allEmittingAt ? allEmittingAt - addStarted : NaN,
    heapBytesPerSensor,
    bufferedAtHeap,
    expectedPerSec,
    emittedPerSec,
    ackedPerSec,
    dropped,
    dueBefore,
    ratios: {
      emittedPerDue: round(emittedPerSec / expectedPerSec, 3),
      ackedPerDue: round(ackedPerSec / expectedPerSec, 3),
      ackedPerCeiling: round(ackedPerSec / producerCeilingPerSec, 3),
      droppedPerEmitted: emitted > 0 ? round(dropped / emitted, 3) : 0,
    },
    latenessMs: lateness.summary(),
    cpuCores,
  };
}

/** The one-line summary: acknowledged, dropped and emitted, each against the due rate and the ceiling. */
export function sensorScaleSummary(r: SensorScaleResult): string {
  const x = r.ratios;
  const partial = r.emittingAtWindow < r.sensors
    ? ` (only ${r.emittingAtWindow} of ${r.sensors} sensors had started)`
    : "";
  return `acked ${r.ackedPerSec}/s = ${x.ackedPerDue} of due ${r.expectedPerSec}/s, ` +
    `${x.ackedPerCeiling} of ceiling ${Math.round(r.producerCeilingPerSec)}/s; ` +
    `dropped ${r.dropped} (${x.droppedPerEmitted} of emitted); ` +
    `emitted ${r.emittedPerSec}/s = ${x.emittedPerDue} of due (${r.dueBefore} due before the window); ` +
    `lateness p99 ${r.latenessMs.p99} ms, ${r.cpuCores} cores, ${r.heapBytesPerSensor} B/sensor` +
    partial;
}

function collectGarbage() {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error("Run with --v8-flags=--expose-gc (deno task bench does)");
  gc();
  gc();
}
