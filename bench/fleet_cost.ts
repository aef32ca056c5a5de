/**
 * What a sensor costs its process apart from Kafka: N sensors of the fleet
 * (the real `SensorFleet`, seqs from an in-memory ledger) publishing into a
 * sink that only counts. Prints the retained heap per running sensor (after
 * a forced GC, once every sensor has emitted) and the CPU of the main thread
 * per 10 000 readings over a window, read from /proc so the figure does not
 * depend on how much CPU the machine leaves the run.
 *
 *   deno run -A --v8-flags=--expose-gc bench/fleet_cost.ts 100000
 *
 * @module
 */
import { SensorFleet } from "../actors/sensor_supervisor.ts";
import { DEFAULT_RULE } from "../domain/hysteresis.ts";
import { MemorySeqLedger } from "../tests/memory_seq_ledger.ts";
import { silentLogger } from "../adapters/log.ts";

async function mainCpuMs(): Promise<number> {
  const text = await Deno.readTextFile(`/proc/self/task/${Deno.pid}/stat`);
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

function collectGarbage() {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error("Run with --v8-flags=--expose-gc");
  gc();
  gc();
}

if (import.meta.main) {
  const sensors = Number(Deno.args[0] ?? 100_000);
  const windowMs = Number(Deno.args[1] ?? 9000);
  let emitted = 0;
  collectGarbage();
  const heap0 = Deno.memoryUsage().heapUsed;
  const fleet = new SensorFleet({
    sink: { publish: () => (emitted++, true) },
    logger: silentLogger,
    cap: sensors,
    defaults: { intervalMs: 3000, rule: DEFAULT_RULE, seed: 1 },
    ledger: new MemorySeqLedger(),
    seqBlock: 100,
  });
  const t0 = performance.now();
  fleet.add({ kind: "batch", count: sensors, idPrefix: "cost", template: { profile: "normal" } });
  const addMs = Math.round(performance.now() - t0);
  // Every sensor has started and ticked once after one interval (its phase is below it).
  await new Promise((r) => setTimeout(r, 3500));
  collectGarbage();
  const heapPerSensor = Math.round((Deno.memoryUsage().heapUsed - heap0) / sensors);
  emitted = 0;
  const cpu0 = await mainCpuMs();
  const w0 = performance.now();
  await new Promise((r) => setTimeout(r, windowMs));
  const cpu = (await mainCpuMs()) - cpu0;
  const seconds = (performance.now() - w0) / 1000;
  console.log(JSON.stringify({
    sensors,
    addMs,
    heapPerSensor,
    emittedPerSec: Math.round(emitted / seconds),
    duePerSec: Math.round(sensors / 3),
    mainCpuMsPer10k: Math.round(cpu / emitted * 10_000),
    mainCpuCores: Math.round(cpu / seconds / 10) / 100,
    load: Deno.loadavg()[0],
  }));
  await fleet.stop();
  Deno.exit(0);
}
