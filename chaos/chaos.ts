/**
 * Fault-injection harness: proves "nothing lost, nothing duplicated, nothing
 * reused, alerts right" the way Kafka's system tests and Jepsen do — by
 * counting. docs/chaos.md describes every scenario and how to read the output.
 *
 *   deno task chaos                         every scenario, 20 000 readings each
 *   deno task chaos --short                 the CI variant (SHORT below; 3 000 readings)
 *   deno task chaos --scenario kill9 --readings 50000
 *   deno task chaos --scenario sensors-kill9,sensors-embedded
 *
 * Two kinds of scenario: the load is the harness's own producer with a ledger
 * of what Kafka acknowledged (`scenarios.ts`, run by `run.ts`), or the app's
 * own sensors, checked per (deviceId, seq) against the topic read back and
 * snapshots of the store (`sensor_scenarios.ts`, run by `sensor_run.ts`).
 * Scenarios that stop Kafka or FerretDB need the stack `stack/stack.ts` runs
 * from STACK_DIR with the STACK_*_PORT settings; KAFKA_BROKERS and MONGO_URL
 * must point at it.
 *
 * @module
 */
import { parseArgs } from "node:util";
import type { OfflineReport } from "./check.ts";
import { apiFlood, describeFlood, floodFailed, FLOODS } from "./flood.ts";
import type { LoadSettings } from "./load.ts";
import { ownsStack } from "./processes.ts";
import { failures, type RunResult, runScenario } from "./run.ts";
import { SCENARIOS } from "./scenarios.ts";
import { SENSOR_SCENARIOS } from "./sensor_scenarios.ts";
import { runSensorScenario, sensorRunFailures, type SensorRunResult } from "./sensor_run.ts";

/** The CI variant: the processor-side faults, then kill -9 of the app's own sensors (Kafka and embedded). */
const SHORT = [
  "kill9",
  "rebalance",
  "broker",
  "broker-gone",
  "bad-records",
  "sensors-kill9",
  "sensors-embedded",
];

const ALL_IDS = [...SCENARIOS.map((s) => s.id), ...SENSOR_SCENARIOS.map((s) => s.id), "flood"];

/**
 * Rejections nobody awaited (a kafkajs client racing a broker restart, say) fail the scenario
 * that was running instead of killing the harness before it reports.
 */
const strays: string[] = [];
globalThis.addEventListener("unhandledrejection", (event) => {
  event.preventDefault();
  strays.push(`unhandled rejection: ${event.reason}`);
  console.error(`  unhandled rejection (counted as a failure): ${event.reason}`);
});

interface Crashed {
  readonly scenario: string;
  readonly error: string;
}

function usage(problem?: string): never {
  console.error(
    `Usage: deno task chaos [--short] [--scenario <id>[,<id>...]|all] [--readings N] ` +
      `[--devices N] [--rate N]\nScenarios: ${ALL_IDS.join(", ")}` +
      (problem ? `\n${problem}` : ""),
  );
  Deno.exit(2);
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      scenario: { type: "string", default: "all" },
      readings: { type: "string" },
      devices: { type: "string" },
      rate: { type: "string" },
      short: { type: "boolean", default: false },
    },
  });
  const requested = values.short
    ? SHORT
    : values.scenario === "all"
    ? ALL_IDS
    : values.scenario!.split(",");
  const unknown = requested.filter((id) => !ALL_IDS.includes(id));
  if (unknown.length > 0) usage(`Unknown scenario: ${unknown.join(", ")}`);
  const readings = Number(values.readings ?? (values.short ? 3000 : 20_000));
  const settings: LoadSettings = {
    readings,
    devices: Number(values.devices ?? 50),
    // By default a run lasts about 20 s, so faults land mid-stream.
    rate: Number(values.rate ?? Math.max(100, Math.round(readings / 20))),
  };
  // The sensors scenarios prove their promise over at least 20 000 readings unless told otherwise.
  const sensorSettings: LoadSettings = {
    readings: Number(values.readings ?? 20_000),
    devices: Number(values.devices ?? 50),
    rate: Number(values.rate ?? 500),
  };
  for (const s of [settings, sensorSettings]) {
    if (!(s.readings > 0 && s.devices > 0 && s.rate > 0)) {
      usage("--readings, --devices and --rate must be positive numbers");
    }
  }
  const local = await ownsStack();
  const skip = (id: string, needsLocalStack: boolean | undefined) => {
    if (!needsLocalStack || local) return false;
    console.error(
      `skipping ${id}: it restarts services, and KAFKA_BROKERS / MONGO_URL are not the stack ` +
        "stack/stack.ts runs from STACK_DIR on the STACK_*_PORT ports",
    );
    return true;
  };
  const results: RunResult[] = [];
  const sensorResults: SensorRunResult[] = [];
  const crashed: Crashed[] = [];
  /** Runs one scenario; a throw or a stray rejection fails it but never ends the harness. */
  const attempt = async <R extends { readonly scenario: string }>(
    id: string,
    run: () => Promise<R>,
    withErrors: (r: R, errors: string[]) => R,
  ): Promise<R | undefined> => {
    strays.length = 0;
    try {
      const r = await run();
      return strays.length > 0 ? withErrors(r, [...strays]) : r;
    } catch (error) {
      const detail = error instanceof Error && error.cause ? ` (${error.cause})` : "";
      crashed.push({ scenario: id, error: `${error}${detail}` });
      console.error(`  [${id}] the run failed: ${error}${detail}`);
      return undefined;
    }
  };
  for (const id of requested) {
    const scenario = SCENARIOS.find((s) => s.id === id);
    if (scenario && !skip(id, scenario.needsLocalStack)) {
      console.error(
        `\n${scenario.title} — ${settings.readings} readings, ${settings.devices} devices`,
      );
      const r = await attempt(
        id,
        () => runScenario(scenario, settings),
        (r, errors) => ({ ...r, faultErrors: [...r.faultErrors, ...errors] }),
      );
      if (r) {
        results.push(r);
        console.error(`  => ${JSON.stringify(r.report)}`);
      }
    }
    const sensorScenario = SENSOR_SCENARIOS.find((s) => s.id === id);
    if (sensorScenario && !skip(id, sensorScenario.needsLocalStack)) {
      console.error(
        `\n${sensorScenario.title} — ${sensorSettings.readings} readings, ` +
          `${sensorSettings.devices} sensors at ${sensorSettings.rate} readings/s`,
      );
      const r = await attempt(
        id,
        () => runSensorScenario(sensorScenario, sensorSettings),
        (r, errors) => ({ ...r, errors: [...r.errors, ...errors] }),
      );
      if (r) {
        sensorResults.push(r);
        console.error(`  => ${JSON.stringify(r.report)}`);
        for (const e of r.errors) console.error(`  !! ${e}`);
      }
    }
  }
  if (results.length > 0) {
    console.log(
      "\n| scenario | acked | stored | lost | dup | phantom | gaps | flag mism. | alert mism. | offline ep. / withdrawn / mism. | DLQ | longest stall | catch-up | restarts |",
    );
    console.log(`|${" --- |".repeat(14)}`);
    for (const r of results) {
      const p = r.report;
      console.log(
        `| ${r.scenario} | ${p.acknowledged} | ${p.stored} | ${p.lost} | ${p.duplicated} | ${p.phantom} | ${p.gaps} | ${p.flagMismatches} | ${p.alertMismatches} | ${
          offlineCell(p)
        } | ${r.deadLettered} | ${(r.longestStallMs / 1000).toFixed(1)} s | ${
          (r.catchUpMs / 1000).toFixed(1)
        } s | ${r.processorRestarts} |`,
      );
    }
  }
  if (sensorResults.length > 0) {
    console.log(
      "\n| scenario | produced | pairs | stored | reused | resent | lost | overwritten | not first | phantom | gaps | flag mism. | alert mism. | offline ep. / withdrawn / mism. | conflicts reported | DLQ | restarts | errors |",
    );
    console.log(`|${" --- |".repeat(18)}`);
    for (const r of sensorResults) {
      const p = r.report;
      console.log(
        `| ${r.scenario} | ${p.produced} | ${p.pairs} | ${p.stored} | ${p.reused} | ${p.resent} | ${p.lost} | ${p.overwritten} | ${p.notFirst} | ${p.phantom} | ${p.gaps} | ${p.flagMismatches} | ${p.alertMismatches} | ${
          offlineCell(p)
        } | ${p.conflictsReported} | ${r.deadLettered} | ${r.restarts} | ${r.errors.length} |`,
      );
    }
  }
  for (const c of crashed) console.log(`\n${c.scenario}: the run failed: ${c.error}`);
  let floodsFailed = 0;
  const flood = requested.includes("flood");
  for (const { title, options } of flood ? FLOODS : []) {
    console.error(`\n${title}`);
    const f = await apiFlood(Number(values.readings ?? 4000), options);
    if (floodFailed(f)) floodsFailed++;
    console.log(`\n${describeFlood(title, f)}`);
  }
  const failedRuns = results.filter((r) => failures(r) > 0).length +
    sensorResults.filter((r) => sensorRunFailures(r) > 0).length + crashed.length + floodsFailed;
  const ranRuns = results.length + sensorResults.length + crashed.length +
    (flood ? FLOODS.length : 0);
  console.log(`\n${ranRuns - failedRuns} passed, ${failedRuns} failed`);
  Deno.exit(failedRuns > 0 ? 1 : 0);
}

/** The offline counts of a report, as one table cell. */
function offlineCell(r: Partial<OfflineReport>): string {
  return `${r.offlineEpisodes ?? "-"} / ${r.offlineWithdrawn ?? "-"} / ${
    r.offlineMismatches ?? "-"
  }`;
}
