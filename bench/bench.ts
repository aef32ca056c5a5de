/**
 * `deno task bench`: runs the benchmark scenarios against Kafka and the store
 * (the local stack unless KAFKA_BROKERS and MONGO_URL are set), prints a
 * progress line while each runs, and writes `bench/results/<date>.json` and
 * the latest-figures section of `bench/RESULTS.md`.
 *
 *   deno task bench                       # every scenario at the default (small) sizes
 *   deno task bench --smoke               # CI: tiny sizes, JSON only, ~2 minutes
 *   deno task bench --scenario sensors --sensors 10000,100000,1000000
 *   deno task bench --scenario e2e,api --rates 3000,10000,20000 --window 300 --runs 3
 *
 * Timings are never asserted; the command fails only when the harness or the
 * pipeline is broken (an exception, or a scenario that moved no readings).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { openServices } from "./services.ts";
import { brokerCeiling, kafkaLatencyCeiling, storeCeiling } from "./ceilings.ts";
import { sensorScale, sensorScaleSummary } from "./sensor_scale.ts";
import { processorThroughput } from "./processor_throughput.ts";
import { apiLoadSummary, endToEnd } from "./end_to_end.ts";
import { webhookOutbox } from "./webhook_outbox.ts";
import { fleetScenario } from "./fleet.ts";
import { type BenchResults, machine, writeResults } from "./report.ts";
import { handleSignals } from "./interrupt.ts";

const SCENARIOS = ["ceilings", "sensors", "processor", "e2e", "api", "fleet", "outbox"] as const;
type Scenario = typeof SCENARIOS[number];

const HELP = `Usage: deno task bench [options]

  --scenario LIST        ${SCENARIOS.join(",")} (default: all)
  --sensors LIST         sensor-scale fleet sizes (default 10000,100000)
  --readings N           processor scenario: readings pre-filled (default 200000)
  --devices LIST         processor scenario: devices they come from (default 10000; e.g.
                         1000,10000,100000 to see how the cost grows with the fleet)
  --rates LIST           end-to-end offered readings/s (default 3000,10000)
  --api-rate N           offered load while the API is exercised (default 3000)
  --warmup S             end-to-end warm-up seconds (default 15)
  --window S             measurement window seconds (default 30)
  --runs N               repetitions of each measurement (default 1)
  --fleet-processes LIST fleet scenario: sensors processes (default 1,2,3)
  --fleet-sensors N      fleet scenario: sensors added through the api process (default 2000)
  --fleet-interval MS    fleet scenario: their interval (default 1000)
  --session-timeout MS   fleet scenario: KAFKA_SENSORS_SESSION_TIMEOUT_MS (default 10000)
  --outbox-readings N    outbox scenario: readings pre-filled, an overheat raised and cleared
                         every 6 readings of each device (default 12000)
  --outbox-devices N     outbox scenario: devices (default 100)
  --outbox-poll-ms MS    outbox scenario: WEBHOOK_POLL_MS (default 1000)
  --ceiling-records N    messages for Kafka's perf tools (default 500000)
  --store-seconds S      raw insertMany loop duration (default 10)
  --smoke                tiny sizes for CI; writes the JSON only
  --no-markdown          do not touch bench/RESULTS.md
  --help`;

function parseOptions(args: string[]) {
  const { values } = parseArgs({
    args,
    options: {
      scenario: { type: "string", default: SCENARIOS.join(",") },
      sensors: { type: "string", default: "10000,100000" },
      readings: { type: "string", default: "200000" },
      devices: { type: "string", default: "10000" },
      rates: { type: "string", default: "3000,10000" },
      "api-rate": { type: "string", default: "3000" },
      warmup: { type: "string", default: "15" },
      window: { type: "string", default: "30" },
      runs: { type: "string", default: "1" },
      "fleet-processes": { type: "string", default: "1,2,3" },
      "fleet-sensors": { type: "string", default: "2000" },
      "fleet-interval": { type: "string", default: "1000" },
      "session-timeout": { type: "string", default: "10000" },
      "outbox-readings": { type: "string", default: "12000" },
      "outbox-devices": { type: "string", default: "100" },
      "outbox-poll-ms": { type: "string", default: "1000" },
      "ceiling-records": { type: "string", default: "500000" },
      "store-seconds": { type: "string", default: "10" },
      smoke: { type: "boolean", default: false },
      "no-markdown": { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(HELP);
    Deno.exit(0);
  }
  const problems: string[] = [];
  const int = (name: string, raw: string, min = 1) => {
    const x = Number(raw);
    if (!Number.isInteger(x) || x < min) {
      problems.push(`--${name}: "${raw}" is not an integer ≥ ${min}`);
    }
    return x;
  };
  const list = (name: string, raw: string) => raw.split(",").map((x) => int(name, x.trim()));
  const scenarios = values.scenario.split(",").map((x) => x.trim());
  for (const x of scenarios) {
    if (!(SCENARIOS as readonly string[]).includes(x)) problems.push(`--scenario: unknown "${x}"`);
  }
  const smoke = values.smoke;
  const options = {
    scenarios: new Set(scenarios as Scenario[]),
    sensors: smoke ? [2000] : list("sensors", values.sensors),
    readings: smoke ? 20_000 : int("readings", values.readings),
    devices: smoke ? [500] : list("devices", values.devices),
    rates: smoke ? [500] : list("rates", values.rates),
    apiRate: smoke ? 500 : int("api-rate", values["api-rate"]),
    warmupMs: (smoke ? 4 : int("warmup", values.warmup, 0)) * 1000,
    windowMs: (smoke ? 5 : int("window", values.window)) * 1000,
    runs: smoke ? 1 : int("runs", values.runs),
    fleetProcesses: smoke ? [1, 2] : list("fleet-processes", values["fleet-processes"]),
    fleetSensors: smoke ? 50 : int("fleet-sensors", values["fleet-sensors"]),
    fleetIntervalMs: smoke ? 1000 : int("fleet-interval", values["fleet-interval"], 100),
    sessionTimeoutMs: smoke ? 6000 : int("session-timeout", values["session-timeout"], 6000),
    outboxReadings: smoke ? 1200 : int("outbox-readings", values["outbox-readings"]),
    outboxDevices: smoke ? 20 : int("outbox-devices", values["outbox-devices"]),
    outboxPollMs: smoke ? 200 : int("outbox-poll-ms", values["outbox-poll-ms"], 10),
    ceilingRecords: smoke ? 50_000 : int("ceiling-records", values["ceiling-records"]),
    storeMs: (smoke ? 3 : int("store-seconds", values["store-seconds"])) * 1000,
    smoke,
    markdown: !smoke && !values["no-markdown"],
  };
  if (problems.length > 0) {
    console.error(`Bad options:\n${problems.map((p) => `  - ${p}`).join("\n")}\n\n${HELP}`);
    Deno.exit(2);
  }
  return options;
}

type Options = ReturnType<typeof parseOptions>;

function log(line: string) {
  console.log(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}`);
}

async function runAll(o: Options): Promise<BenchResults> {
  const startedAt = new Date().toISOString();
  await using services = await openServices(log);
  const results: BenchResults = {
    startedAt,
    finishedAt: "",
    command: `deno task bench ${Deno.args.join(" ")}`.trim(),
    machine: await machine(services.versions),
    settings: {
      scenarios: [...o.scenarios],
      sensors: o.sensors,
      readings: o.readings,
      devices: o.devices,
      rates: o.rates,
      apiRate: o.apiRate,
      warmupS: o.warmupMs / 1000,
      windowS: o.windowMs / 1000,
      ceilingRecords: o.ceilingRecords,
      storeSeconds: o.storeMs / 1000,
      fleetProcesses: o.fleetProcesses,
      fleetSensors: o.fleetSensors,
      fleetIntervalMs: o.fleetIntervalMs,
      sessionTimeoutMs: o.sessionTimeoutMs,
      outboxReadings: o.outboxReadings,
      outboxDevices: o.outboxDevices,
      outboxPollMs: o.outboxPollMs,
      partitions: 6,
      intervalMs: 3000,
    },
    runs: o.runs,
    ceilings: { broker: [], store: [] },
    sensorScale: [],
    processorThroughput: [],
    endToEnd: [],
    fleet: [],
    webhookOutbox: [],
  };
  const has = (s: Scenario) => o.scenarios.has(s);
  for (let run = 1; run <= o.runs; run++) {
    const tag = o.runs > 1 ? ` (run ${run}/${o.runs})` : "";
    if (has("ceilings")) {
      log(`ceilings${tag}`);
      results.ceilings.broker.push(
        await brokerCeiling(services, { records: o.ceilingRecords, partitions: 6, log }),
      );
      results.ceilings.store.push(
        await storeCeiling(services, { durationMs: o.storeMs, batchSize: 2000, log }),
      );
    }
    if (has("sensors")) {
      // The sensors' figures are read against Kafka's own producer in the same run.
      if (!has("ceilings")) {
        log(`ceilings${tag}: producer only`);
        results.ceilings.broker.push(
          await brokerCeiling(services, {
            records: o.ceilingRecords,
            partitions: 6,
            log,
            producerOnly: true,
          }),
        );
      }
      const producerCeilingPerSec = results.ceilings.broker.at(-1)!.producePerSec;
      o.sensors.forEach((_, i) => results.sensorScale[i] ??= []);
      for (const [i, sensors] of o.sensors.entries()) {
        log(`sensor scale: ${sensors} sensors${tag}`);
        const r = await sensorScale(services, {
          sensors,
          windowMs: o.windowMs,
          producerCeilingPerSec,
          log,
        });
        log(`  → ${sensorScaleSummary(r)}`);
        results.sensorScale[i]!.push(r);
      }
    }
    if (has("processor")) {
      for (const devices of o.devices) {
        log(`processor throughput: ${o.readings} readings from ${devices} devices${tag}`);
        const r = await processorThroughput(services, {
          readings: o.readings,
          devices,
          timeoutMs: Math.max(60_000, o.windowMs * 4),
          log,
        });
        log(
          `  → ${r.readingsPerSec}/s (${
            (r.readingsPerSec / (r.ceilingPerSec ?? NaN)).toFixed(2)
          } of the ceiling), drained in ${r.drainS} s${r.completed ? "" : " (timed out)"}, ` +
            `store CPU ${
              r.storeCpuMsPer10k ?? "—"
            } ms per 10 000 (ceiling ${r.ceilingStoreCpuMsPer10k})`,
        );
        results.processorThroughput.push(r);
      }
    }
    const rates = has("e2e") ? [...o.rates] : [];
    if (has("api") && !rates.includes(o.apiRate)) rates.push(o.apiRate);
    rates.forEach((_, i) => results.endToEnd[i] ??= []);
    for (const [i, rate] of rates.entries()) {
      // The floor under the latencies below, from the same run: this run's full ceilings, else
      // Kafka's EndToEndLatency alone (2 000 round trips, a few seconds).
      const kafkaEndToEndMs = has("ceilings")
        ? results.ceilings.broker.at(-1)!.endToEndMs
        : await kafkaLatencyCeiling(services, { partitions: 6, log });
      log(`end to end: ${rate} readings/s${tag}`);
      const r = {
        ...await endToEnd(services, {
          rate,
          warmupMs: o.warmupMs,
          windowMs: o.windowMs,
          apiLoad: has("api") && rate === o.apiRate,
          log,
        }),
        kafkaEndToEndMs,
      };
      const b = r.baseline;
      log(
        `  → stored ${b.storedPerSec}/s, backlog ${b.bounded ? "bounded" : "growing"}; ` +
          `emit→stored p50 ${b.storedLatencyMs.p50} p99 ${b.storedLatencyMs.p99} ms, ` +
          `alert detection p50 ${b.alertLatencyMs.p50} p99 ${b.alertLatencyMs.p99} ms ` +
          `(${b.alertLatencyMs.count} alerts); Kafka EndToEndLatency p50 ${kafkaEndToEndMs.p50} ` +
          `p99 ${kafkaEndToEndMs.p99} ms (same run); ` +
          `store CPU ${b.storeCpuMsPer10k ?? "—"} ms per 10 000 stored; ` +
          `machine busy ${b.machineCpu?.busyCores} of ${b.machineCpu?.cores} cores`,
      );
      if (r.underApiLoad) log(`  → ${apiLoadSummary(r)}`);
      results.endToEnd[i]!.push(r);
    }
    if (has("fleet")) {
      o.fleetProcesses.forEach((_, i) => results.fleet[i] ??= []);
      for (const [i, processes] of o.fleetProcesses.entries()) {
        log(`fleet: ${o.fleetSensors} sensors over ${processes} sensors process(es)${tag}`);
        results.fleet[i]!.push(
          await fleetScenario(services, {
            processes,
            sensors: o.fleetSensors,
            intervalMs: o.fleetIntervalMs,
            windowMs: o.windowMs,
            sessionTimeoutMs: o.sessionTimeoutMs,
            log,
          }),
        );
      }
    }
    if (has("outbox")) {
      log(
        `webhook outbox: ${o.outboxReadings} readings from ${o.outboxDevices} devices, ` +
          `without and with a subscription${tag}`,
      );
      const r = await webhookOutbox(services, {
        readings: o.outboxReadings,
        devices: o.outboxDevices,
        pollMs: o.outboxPollMs,
        timeoutMs: Math.max(120_000, o.windowMs * 4),
        log,
      });
      log(`  → with ÷ without ${r.ratio}, load ${r.load.join(" → ")}`);
      results.webhookOutbox!.push(r);
    }
  }
  return { ...results, finishedAt: new Date().toISOString() };
}

/** The harness is broken if a scenario that ran moved no readings at all (not a timing check). */
function brokenScenarios(r: BenchResults): string[] {
  const broken: string[] = [];
  for (const runs of r.sensorScale) {
    for (const x of runs) {
      if (x.ackedPerSec === 0) broken.push(`sensors ${x.sensors}: nothing reached Kafka`);
    }
  }
  for (const x of r.processorThroughput) {
    if (!x.completed) broken.push("processor: topic not drained");
  }
  for (const runs of r.endToEnd) {
    for (const x of runs) {
      if (x.baseline.storedPerSec === 0) broken.push(`e2e ${x.rate}/s: nothing stored`);
      if (x.underApiLoad && x.underApiLoad.api.get.perSec === 0) broken.push("api: no answers");
    }
  }
  for (const runs of r.fleet) {
    for (const x of runs) {
      if (x.ackedPerSec === 0) broken.push(`fleet ${x.processes}: nothing reached Kafka`);
      // Under overload the topic can lag past the deadline; the API still shows whether they moved.
      if (Number.isNaN(x.moveByTopicMs) && Number.isNaN(x.moveByApiMs)) {
        broken.push(`fleet ${x.processes}: the killed process's sensors did not emit again`);
      }
    }
  }
  for (const x of r.webhookOutbox ?? []) {
    if (!x.without.completed || !x.with.completed) broken.push("outbox: not drained or delivered");
  }
  for (const c of r.ceilings.broker) {
    if (!(c.producePerSec > 0)) broken.push("ceiling: ProducerPerformance gave no figure");
  }
  return broken;
}

if (import.meta.main) {
  const options = parseOptions(Deno.args);
  handleSignals(log);
  let code = 0;
  try {
    const results = await runAll(options);
    const file = await writeResults(results, {
      markdown: options.markdown,
      smoke: options.smoke,
    });
    log(`results written to ${file}${options.markdown ? " and bench/RESULTS.md" : ""}`);
    const broken = brokenScenarios(results);
    if (broken.length > 0) {
      log(`harness check failed:\n  - ${broken.join("\n  - ")}`);
      code = 1;
    }
  } catch (err) {
    log(`failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
    code = err instanceof Error && err.name === "Interrupted" ? 130 : 1;
  }
  // kafkajs and the MongoDB driver can leave sockets lingering after close; the run is over.
  Deno.exit(code);
}
