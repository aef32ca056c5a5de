/**
 * Writes a benchmark run: the full JSON to `bench/results/<date>.json` and
 * the headline tables between markers in `bench/RESULTS.md`, leaving the
 * hand-written analysis (bottlenecks, before/after) around them untouched.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import type { BrokerCeiling, StoreCeiling } from "./ceilings.ts";
import type { SensorScaleResult } from "./sensor_scale.ts";
import type { ProcessorThroughputResult } from "./processor_throughput.ts";
import type { EndToEndResult } from "./end_to_end.ts";
import { API_LOAD } from "./api_load.ts";
import type { FleetResult } from "./fleet.ts";
import type { WebhookOutboxResult } from "./webhook_outbox.ts";
import { formatNumber, formatSpread, spread } from "./stats.ts";

const BENCH_DIR = fileURLToPath(new URL("./", import.meta.url));
const BEGIN = "<!-- bench:latest:begin (written by `deno task bench`) -->";
const END = "<!-- bench:latest:end -->";
const FLEET_BEGIN = "<!-- bench:fleet:begin (written by `deno task bench --scenario fleet`) -->";
const FLEET_END = "<!-- bench:fleet:end -->";

export interface Machine {
  readonly cores: number;
  readonly memoryGiB: number;
  readonly cpu: string;
  readonly os: string;
  readonly deno: string;
  readonly v8: string;
  readonly kafka: string;
  readonly store: string;
  readonly load: readonly number[];
}

export interface BenchResults {
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly command: string;
  readonly machine: Machine;
  readonly settings: Readonly<Record<string, unknown>>;
  readonly runs: number;
  readonly ceilings: { broker: BrokerCeiling[]; store: StoreCeiling[] };
  readonly sensorScale: SensorScaleResult[][];
  readonly processorThroughput: ProcessorThroughputResult[];
  readonly endToEnd: EndToEndResult[][];
  readonly fleet: FleetResult[][];
  /** Absent in results from before the scenario existed. */
  readonly webhookOutbox?: WebhookOutboxResult[];
}

export async function machine(versions: { kafka: string; store: string }): Promise<Machine> {
  let cpu = "unknown";
  try {
    const info = await Deno.readTextFile("/proc/cpuinfo");
    cpu = /model name\s*:\s*(.*)/.exec(info)?.[1]?.trim() ?? cpu;
  } catch { /* not Linux */ }
  return {
    cores: navigator.hardwareConcurrency,
    memoryGiB: Math.round(Deno.systemMemoryInfo().total / 2 ** 30),
    cpu,
    os: `${Deno.build.os} ${Deno.osRelease()}`,
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    kafka: versions.kafka,
    store: versions.store,
    load: Deno.loadavg(),
  };
}

/** Writes the JSON file and refreshes the latest-figures section of RESULTS.md; returns the JSON path. */
export async function writeResults(
  results: BenchResults,
  options: { markdown: boolean; smoke: boolean },
) {
  const dir = join(BENCH_DIR, "results");
  await Deno.mkdir(dir, { recursive: true });
  // Smoke runs (CI) are only a check that the harness works: named apart and not committed.
  const name = `${options.smoke ? "smoke-" : ""}${
    results.startedAt.replaceAll(":", "-").slice(0, 19)
  }Z`;
  const file = join(dir, `${name}.json`);
  await Deno.writeTextFile(file, JSON.stringify(results, null, 2) + "\n");
  if (options.markdown) {
    const path = join(BENCH_DIR, "RESULTS.md");
    let next = await Deno.readTextFile(path).catch(() =>
      `# Benchmark results\n\n${BEGIN}\n${END}\n`
    );
    // A fleet-only run leaves the latest full run's tables alone; the fleet has its own section.
    const scenarios = results.settings.scenarios as string[] | undefined;
    if (!scenarios || scenarios.some((x) => x !== "fleet")) {
      next = replaceSection(next, BEGIN, END, markdown(results, file));
    }
    if (results.fleet.length) {
      next = replaceSection(next, FLEET_BEGIN, FLEET_END, fleetMarkdown(results, file));
    }
    await Deno.writeTextFile(path, next);
    // Keep the file as `deno fmt` would write it, so `deno task check` stays clean.
    await new Deno.Command(Deno.execPath(), { args: ["fmt", "-q", path] }).output();
  }
  return file;
}

function replaceSection(text: string, begin: string, end: string, body: string): string {
  const section = `${begin}\n${body}\n${end}`;
  const i = text.indexOf(begin);
  const j = text.indexOf(end);
  return i >= 0 && j > i
    ? text.slice(0, i) + section + text.slice(j + end.length)
    : `${text.trimEnd()}\n\n${section}\n`;
}

const n = (x: number, d = 0) => formatNumber(x, d);
const s = (xs: number[], d = 0) => formatSpread(spread(xs), d);

export function markdown(r: BenchResults, file: string): string {
  const m = r.machine;
  const out: string[] = [];
  out.push(`### Latest run: ${r.startedAt.slice(0, 16).replace("T", " ")} UTC`);
  out.push("");
  out.push(
    `\`${r.command}\` — ${m.cores} cores (${m.cpu}), ${m.memoryGiB} GiB, ${m.os}; Deno ${m.deno} ` +
      `(V8 ${m.v8}); ${m.kafka}; ${m.store}; load average at start ${
        m.load.map((x) => x.toFixed(2)).join(" ")
      }. ` +
      `Kafka, the store, the benchmark and the pipeline share the machine (and it is shared with other ` +
      `work), so read figures as ratios to the ceilings measured in the same run. ` +
      `${r.runs} run(s) per figure: median (min–max). Raw data: \`bench/results/${
        file.split("/").at(-1)
      }\`.`,
  );
  const broker = r.ceilings.broker;
  const store = r.ceilings.store;
  const produceCeiling = spread(broker.map((b) => b.producePerSec)).median;
  const storeCeil = spread(store.map((c) => c.insertsPerSec)).median;
  const ceiling = Math.min(
    Number.isFinite(produceCeiling) ? produceCeiling : Infinity,
    Number.isFinite(storeCeil) ? storeCeil : Infinity,
  );
  if (broker.length || store.length) {
    out.push("", "**Ceilings (same services, same run)**", "");
    out.push("| Ceiling | Value |", "| --- | --- |");
    if (broker.length) {
      out.push(
        `| Kafka ProducerPerformance, ${broker[0]!.messageBytes} B, acks=all | ${
          s(broker.map((b) => b.producePerSec))
        } msg/s |`,
      );
      if (broker.some((b) => Number.isFinite(b.consumePerSec))) {
        out.push(
          `| Kafka ConsumerPerformance | ${s(broker.map((b) => b.consumePerSec))} msg/s |`,
        );
        out.push(
          `| Kafka EndToEndLatency p50 / p99 | ${s(broker.map((b) => b.endToEndMs.p50))} / ${
            s(broker.map((b) => b.endToEndMs.p99))
          } ms |`,
        );
      }
    }
    if (store.length) {
      out.push(
        `| Store: raw unordered insertMany, ${store[0]!.batchSize}/batch | ${
          s(store.map((c) => c.insertsPerSec))
        } docs/s |`,
      );
    }
  }
  if (r.sensorScale.length) {
    out.push(
      "",
      "**Sensor scale** (one process, `sensors` role, 3 s cadence, producing to Kafka)",
      "",
    );
    out.push(
      "| Sensors | Spawn (add call) | All emitting | Heap/sensor (running) | Due/s | Acked by Kafka/s | Acked ÷ due | Acked ÷ producer ceiling | Dropped (÷ emitted) | Emitted/s (÷ due) | Lateness p50 / p99 | CPU cores |",
      "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    );
    for (const runs of r.sensorScale) {
      const q = runs.map((x) => x.ratios);
      out.push(
        `| ${n(runs[0]!.sensors)} | ${s(runs.map((x) => x.spawnMs))} ms | ${
          s(runs.map((x) => x.allEmittingMs))
        } ms | ` +
          `${s(runs.map((x) => x.heapBytesPerSensor))} B | ${n(runs[0]!.expectedPerSec)} | ${
            s(runs.map((x) => x.ackedPerSec))
          } | ${s(q.map((x) => x.ackedPerDue), 2)} | ${s(q.map((x) => x.ackedPerCeiling), 2)} | ` +
          `${s(runs.map((x) => x.dropped))} (${s(q.map((x) => x.droppedPerEmitted), 2)}) | ${
            s(runs.map((x) => x.emittedPerSec))
          } (${s(q.map((x) => x.emittedPerDue), 2)}) | ${s(runs.map((x) => x.latenessMs.p50))} / ${
            s(runs.map((x) => x.latenessMs.p99))
          } ms | ` +
          `${s(runs.map((x) => x.cpuCores), 2)} |`,
      );
    }
  }
  if (r.processorThroughput.length) {
    out.push(
      "",
      "**Processor throughput** (pre-filled topic, `processors` role, store in the loop; each " +
        "drain divided by a raw indexed `insertMany` loop into the same store right before it; " +
        "store CPU is the store server's processes: FerretDB and, on its `pg` backend, PostgreSQL)",
      "",
    );
    out.push(
      "| Readings | Devices | Partitions | Readings/s | ÷ raw indexed insert, same run | Store CPU per 10 000: drain / raw insert | Drain time | CPU cores | ÷ min(ceilings) | Lag over time (s: lag) |",
      "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    );
    const byDevices = Map.groupBy(r.processorThroughput, (x) => x.devices);
    for (const p of byDevices.values()) {
      const rate = spread(p.map((x) => x.readingsPerSec)).median;
      const own = p.filter((x) => x.ceilingPerSec);
      const cpu = own.filter((x) => x.storeCpuMsPer10k && x.ceilingStoreCpuMsPer10k);
      out.push(
        `| ${n(p[0]!.readings)} | ${n(p[0]!.devices)} | ${p[0]!.partitions} | ${
          s(p.map((x) => x.readingsPerSec))
        } | ${own.length ? s(own.map((x) => x.readingsPerSec / x.ceilingPerSec!), 2) : "—"} | ${
          cpu.length
            ? `${s(cpu.map((x) => x.storeCpuMsPer10k!))} / ${
              s(cpu.map((x) => x.ceilingStoreCpuMsPer10k!))
            } ms = ${s(cpu.map((x) => x.storeCpuMsPer10k! / x.ceilingStoreCpuMsPer10k!), 2)}×`
            : "—"
        } | ` +
          `${s(p.map((x) => x.drainS), 1)} s | ${s(p.map((x) => x.cpuCores), 2)} | ${
            ratio(rate, ceiling)
          } | ` +
          `${lagLine(p[0]!.lag)} |`,
      );
    }
  }
  if (r.endToEnd.length) {
    out.push(
      "",
      "**End to end** (one process, `--role all`: sensors → Kafka → processors → store)",
      "",
    );
    out.push(
      "| Offered/s | Stored/s | ÷ min(ceilings) | Backlog bounded | Max backlog | Emit→stored p50 / p95 / p99 | Alert detection p50 / p99 | Kafka EndToEndLatency p50 / p99, same run | CPU cores |",
      "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    );
    for (const runs of r.endToEnd) {
      const b = runs.map((x) => x.baseline);
      out.push(
        `| ${n(runs[0]!.rate)} | ${s(b.map((x) => x.storedPerSec))} | ${
          ratio(spread(b.map((x) => x.storedPerSec)).median, ceiling)
        } | ` +
          `${b.filter((x) => x.bounded).length}/${b.length} runs | ${
            s(b.map((x) => Math.max(...x.backlog.map(([, v]) => v))))
          } | ` +
          `${s(b.map((x) => x.storedLatencyMs.p50))} / ${
            s(b.map((x) => x.storedLatencyMs.p95))
          } / ${s(b.map((x) => x.storedLatencyMs.p99))} ms | ` +
          `${s(b.map((x) => x.alertLatencyMs.p50))} / ${
            s(b.map((x) => x.alertLatencyMs.p99))
          } ms (${n(b[0]!.alertLatencyMs.count)} alerts) | ${kafkaLatency(runs)} | ${
            s(b.map((x) => x.cpuCores), 2)
          } |`,
      );
    }
    const loaded = r.endToEnd.flatMap((runs) =>
      runs.filter((x) => x.underApiLoad).map((x) => ({
        rate: x.rate,
        base: x.baseline,
        l: x.underApiLoad!,
      }))
    );
    if (loaded.length) {
      const mix = API_LOAD.gets.map((g) =>
        `${Math.round(g.weight * API_LOAD.getPerSec)} \`${g.name}\``
      )
        .join(", ");
      out.push(
        "",
        `**Control API under load** (open loop, offered per second from a worker thread of the bench process: ${mix} and ${API_LOAD.postPerSec} \`POST /sensors\`; the same run's window without API load first)`,
        "",
      );
      out.push(
        `| Offered/s | Stored/s without → with API load | With ÷ without | Emit→stored p99 without → with | Store CPU cores without → with | GET/s | GET p50 / p99 | POST/s | POST p50 / p99 | Errors | Not sent (${API_LOAD.maxOutstanding} outstanding) |`,
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
      );
      for (const x of loaded) {
        out.push(
          `| ${n(x.rate)} | ${n(x.base.storedPerSec)} → ${n(x.l.storedPerSec)} | ${
            (x.l.storedPerSec / x.base.storedPerSec).toFixed(2)
          } | ${x.base.storedLatencyMs.p99} → ${x.l.storedLatencyMs.p99} ms | ${
            x.base.storeCpuCores ?? "?"
          } → ${x.l.storeCpuCores ?? "?"} | ${
            n(x.l.api.get.perSec)
          } | ${x.l.api.get.latencyMs.p50} / ${x.l.api.get.latencyMs.p99} ms | ` +
            `${
              n(x.l.api.post.perSec)
            } | ${x.l.api.post.latencyMs.p50} / ${x.l.api.post.latencyMs.p99} ms | ${
              x.l.api.get.errors + x.l.api.post.errors
            } | ${
              x.l.api.get.notSent === undefined
                ? "(in errors)"
                : x.l.api.get.notSent + (x.l.api.post.notSent ?? 0)
            } |`,
        );
      }
    }
  }
  if (r.fleet.length) out.push("", ...fleetTable(r.fleet));
  if (r.webhookOutbox?.length) out.push("", ...outboxTable(r.webhookOutbox));
  out.push("", `Settings: \`${JSON.stringify(r.settings)}\``);
  return out.join("\n");
}

/** The fleet section of RESULTS.md: the machine line and the table. */
export function fleetMarkdown(r: BenchResults, file: string): string {
  const m = r.machine;
  return [
    `### Latest fleet run: ${r.startedAt.slice(0, 16).replace("T", " ")} UTC`,
    "",
    `\`${r.command}\` — ${m.cores} cores (${m.cpu}), ${m.memoryGiB} GiB; Deno ${m.deno}; ` +
    `${m.kafka}; load average at start ${m.load.map((x) => x.toFixed(2)).join(" ")}. ` +
    `${r.runs} run(s) per figure: median (min–max). Raw data: \`bench/results/${
      file.split("/").at(-1)
    }\`.`,
    "",
    ...fleetTable(r.fleet),
  ].join("\n");
}

function fleetTable(fleet: readonly FleetResult[][]): string[] {
  const f = fleet[0]![0]!;
  const pct = (xs: number[]) => `${s(xs.map((x) => 100 * x / f.offeredPerSec), 1)} %`;
  const out = [
    `**Fleet over sensors processes** (${n(f.sensors)} sensors added through a \`--role api\` ` +
    `process, ${n(f.intervalMs)} ms interval: ${n(f.offeredPerSec)} readings/s offered; ` +
    `${f.windowS} s window; then \`kill -9\` of one sensors process, ` +
    `KAFKA_SENSORS_SESSION_TIMEOUT_MS ${n(f.sessionTimeoutMs)})`,
    "",
    "| Sensors processes | Emitted ÷ offered | Acked by Kafka ÷ offered | Lateness p50 / p99 | CPU cores per process | Sensors moved | Kill → all emit again (topic) | Kill → API shows all emitting | Session timeout |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
  ];
  for (const runs of fleet) {
    const x = runs[0]!;
    const ms = (xs: number[]) => `${s(xs.map((v) => v / 1000), 1)} s`;
    // CPU per process: the median over runs of the first, second, … process.
    out.push(
      `| ${x.processes}${x.restarted ? " (restarted 1 s after the kill)" : ""} | ${
        pct(runs.map((y) => y.emittedPerSec))
      } | ${pct(runs.map((y) => y.ackedPerSec))} | ${s(runs.map((y) => y.latenessMs.p50))} / ${
        s(runs.map((y) => y.latenessMs.p99))
      } ms | ${x.cpuCores.map((_, i) => s(runs.map((y) => y.cpuCores[i]!), 2)).join(" + ")} | ${
        s(runs.map((y) => y.moved))
      } | ${ms(runs.map((y) => y.moveByTopicMs))} | ${ms(runs.map((y) => y.moveByApiMs))} | ${
        ms(runs.map((y) => y.sessionTimeoutMs))
      } |`,
    );
  }
  return out;
}

function ratio(x: number, ceiling: number): string {
  return Number.isFinite(x) && Number.isFinite(ceiling) && ceiling > 0
    ? (x / ceiling).toFixed(2)
    : "n/a";
}

function lagLine(lag: readonly (readonly [number, number])[]): string {
  const step = Math.max(1, Math.floor(lag.length / 6));
  return lag.filter((_, i) => i % step === 0 || i === lag.length - 1)
    .map(([t, l]) => `${Math.round(t)}: ${n(l)}`).join(", ");
}

/** The outbox scenario: the same drain without and with a webhook subscription, as a ratio. */
function outboxTable(runs: readonly WebhookOutboxResult[]): string[] {
  const x = runs[0]!;
  return [
    `**Webhook outbox** (${n(x.readings)} readings from ${n(x.devices)} devices raising and ` +
    `clearing an overheat every 6 readings: ${n(x.events)} events; \`processors\` role drained ` +
    `into fresh databases, first without a webhook subscription, then with one to a local ` +
    `receiver; \`WEBHOOK_POLL_MS\` ${x.pollMs})`,
    "",
    "| Readings/s without | Readings/s with | With ÷ without | Every event delivered after (s) | Load average (1 min) |",
    "| --- | --- | --- | --- | --- |",
    `| ${s(runs.map((r) => r.without.readingsPerSec))} | ${
      s(runs.map((r) => r.with.readingsPerSec))
    } | ${s(runs.map((r) => r.ratio), 2)} | ${s(runs.map((r) => r.with.deliveredS ?? NaN), 1)} | ${
      runs.map((r) => r.load.join(" → ")).join("; ")
    } |`,
  ];
}

/** Kafka's EndToEndLatency measured with these runs, or "—" for results from before it was. */
function kafkaLatency(runs: readonly EndToEndResult[]): string {
  const k = runs.flatMap((x) => x.kafkaEndToEndMs ? [x.kafkaEndToEndMs] : []);
  if (k.length === 0) return "—";
  return `${s(k.map((x) => x.p50))} / ${s(k.map((x) => x.p99))} ms`;
}
