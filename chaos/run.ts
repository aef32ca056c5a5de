/**
 * One run of a harness-load scenario: its own topic, consumer group and
 * database; processors as child processes; the load with its faults; then the
 * checker over the ledger and the store.
 *
 * @module
 */
import { MongoClient } from "mongodb";
import { DEFAULT_RULE } from "../domain/hysteresis.ts";
import { check, type CheckReport, type StoredAlert } from "./check.ts";
import {
  chaosKafka,
  committed,
  createTopics,
  deleteTopicFamily,
  topicSize,
  withAdmin,
} from "./kafka.ts";
import { type Ledger, type LoadSettings, produce, produceWithScriptedSensors } from "./load.ts";
import { AppProcess, services, sleep } from "./processes.ts";
import type { RunContext, Scenario } from "./scenarios.ts";

export const PARTITIONS = 6;

export interface RunResult {
  readonly scenario: string;
  readonly report: CheckReport;
  readonly deadLettered: number;
  readonly longestStallMs: number;
  readonly catchUpMs: number;
  readonly durationMs: number;
  readonly processorRestarts: number;
  readonly events: readonly string[];
  readonly faultErrors: readonly string[];
}

/**
 * The offline limit of every device in a run (OFFLINE_AFTER_MS of its processes): short, so
 * frozen sensors and outages make offline episodes for the checker to replay.
 */
export const CHAOS_OFFLINE_AFTER_MS = 5000;

/** How long the stored alerts may take to settle once every record is committed. */
const SETTLE_MS = 15_000;

/** The counts of a run that must be 0, fault errors included. */
export function failures(r: Pick<RunResult, "report" | "faultErrors">): number {
  const { lost, duplicated, phantom, gaps, flagMismatches, alertMismatches } = r.report;
  return lost + duplicated + phantom + gaps + flagMismatches + alertMismatches +
    (r.report.offlineMismatches ?? 0) + r.faultErrors.length;
}

/** A run's names: topic, dead-letter topic, consumer group, database and log prefix. */
export function runNames(scenarioId: string) {
  const { logDir } = services();
  const id = `${scenarioId}-${Date.now().toString(36)}`;
  const topic = `chaos.${id}`;
  return {
    id,
    topic,
    dlq: `${topic}.dlq`,
    group: `chaos-${id}`,
    db: `chaos_${id.replaceAll("-", "_")}`,
    logDir,
    log: (name: string) => `${logDir}/chaos-${id}-${name}.log`,
  };
}

/** A note-taker that timestamps events from the start of a run and echoes them. */
export function eventLog(scenarioId: string) {
  const events: string[] = [];
  const t0 = Date.now();
  return {
    events,
    t0,
    note(event: string) {
      events.push(`${((Date.now() - t0) / 1000).toFixed(1)}s ${event}`);
      console.error(`  [${scenarioId}] ${events.at(-1)}`);
    },
  };
}

export async function runScenario(scenario: Scenario, s: LoadSettings): Promise<RunResult> {
  const names = runNames(scenario.id);
  const { topic } = names;
  const kafka = chaosKafka();
  await createTopics(kafka, [[topic, PARTITIONS], [names.dlq, 1]]);
  await Deno.mkdir(names.logDir, { recursive: true });
  const { brokers, mongoUrl } = services();
  const env = {
    ...Deno.env.toObject(),
    KAFKA_BROKERS: brokers,
    MONGO_URL: mongoUrl,
    KAFKA_TOPIC: topic,
    KAFKA_GROUP: names.group,
    MONGO_DB: names.db,
    CHECKPOINT_MS: "500",
    OFFLINE_AFTER_MS: String(CHAOS_OFFLINE_AFTER_MS),
  };
  const processors = Array.from(
    { length: scenario.processors },
    (_, i) =>
      new AppProcess(`processor ${i + 1}`, {
        flags: ["--role", "processors"],
        env: { ...env, ...scenario.processorEnv },
        log: names.log(`p${i + 1}`),
      }),
  );
  const mongo = new MongoClient(mongoUrl, { serverSelectionTimeoutMS: 60_000 });
  const db = mongo.db(names.db);
  const { events, t0, note } = eventLog(scenario.id);
  const ledger: Ledger = new Map();
  let passed = false;
  const ctx: RunContext = { processors, kafka, topic, ledger, note };
  const pendingFaults = [...scenario.faults];
  const faultRuns: Promise<void>[] = [];
  const faultErrors: string[] = [];
  // Progress is read from the consumer group's committed offsets: cheap for the broker,
  // unlike counting documents, which makes FerretDB scan the whole collection.
  let done = 0;
  let lastChange = Date.now();
  let longestStall = 0;
  let polling = false;
  const monitor = setInterval(async () => {
    if (polling) return;
    polling = true;
    try {
      const n = await committed(kafka, names.group, topic, 0);
      const now = Date.now();
      if (n !== done) {
        // Time without progress while work was waiting: kills, rebalances, restarts.
        if (done > 0) longestStall = Math.max(longestStall, now - lastChange);
        done = n;
        lastChange = now;
      }
    } catch {
      /* broker down: the stall grows */
    } finally {
      polling = false;
    }
  }, 500);
  try {
    processors.forEach((p) => p.start());
    let lastPrint = 0;
    const load = (onProgress: (fraction: number) => void) =>
      scenario.load === "sensors"
        ? produceWithScriptedSensors(env, s, ledger, names.log("sensors"), onProgress, note)
        : produce(kafka, topic, s, ledger, onProgress);
    await load((fraction) => {
      while (pendingFaults.length > 0 && fraction >= pendingFaults[0]!.at) {
        const fault = pendingFaults.shift()!;
        note(`fault: ${fault.name}`);
        faultRuns.push(
          fault.run(ctx).then(
            () => note(`fault done: ${fault.name}`),
            (error) => {
              faultErrors.push(`${fault.name}: ${error}`);
              note(`fault failed: ${fault.name}: ${error}`);
            },
          ),
        );
      }
      if (Date.now() - lastPrint > 2000) {
        lastPrint = Date.now();
        console.error(
          `  [${scenario.id}] sent ${Math.round(fraction * s.readings)}/${s.readings}, ` +
            `committed ${done}`,
        );
      }
    });
    const producedAt = Date.now();
    note("load done");
    await Promise.all(faultRuns);
    const end = await topicSize(kafka, topic);
    const deadline = Date.now() + 240_000;
    while (done < end && Date.now() < deadline) await sleep(250);
    const catchUpMs = Date.now() - producedAt;
    note(`committed ${done}/${end} records`);
    await sleep(1500); // let the last alerts and checkpoints land
    const readStore = async () => {
      const readings = await db.collection("readings").find({}, {
        projection: { _id: 0, deviceId: 1, seq: 1, ts: 1, temperature: 1, is_critical: 1 },
      }).toArray();
      const alerts = await db.collection("alerts").find({}).toArray();
      return check(
        ledger,
        readings.map((r) => ({
          deviceId: r.deviceId,
          seq: r.seq,
          ts: new Date(r.ts).toISOString(),
          temperature: r.temperature,
          is_critical: r.is_critical,
        })),
        alerts as unknown as StoredAlert[],
        DEFAULT_RULE,
        CHAOS_OFFLINE_AFTER_MS,
      );
    };
    // Offline episodes settle after the readings: one raised while readings were held up is
    // withdrawn at the watch's next check once they arrived (docs/offline.md). What still
    // differs after SETTLE_MS is reported.
    let report = await readStore();
    const settleBy = Date.now() + SETTLE_MS;
    while (failures({ report, faultErrors: [] }) > 0 && Date.now() < settleBy) {
      await sleep(1000);
      report = await readStore();
    }
    const deadLettered = await withAdmin(
      kafka,
      `fetch the offsets of "${names.dlq}"`,
      async (admin) =>
        (await admin.fetchTopicOffsets(names.dlq)).reduce((n, p) => n + Number(p.high), 0),
    );
    const result: RunResult = {
      scenario: scenario.id,
      report,
      deadLettered,
      longestStallMs: longestStall,
      catchUpMs,
      durationMs: Date.now() - t0,
      processorRestarts: processors.reduce((n, p) => n + p.restarts, 0),
      events,
      faultErrors,
    };
    passed = failures(result) === 0;
    return result;
  } finally {
    clearInterval(monitor);
    await Promise.all(processors.map((p) => p.kill("SIGTERM")));
    if (passed) {
      await db.dropDatabase().catch(() => {});
      await deleteTopicFamily(kafka, topic);
    } else {
      // Keep the evidence of a failed run.
      console.error(
        `  [${scenario.id}] kept for inspection: database ${names.db}, topic ${topic}, ` +
          `logs ${names.log("*")}`,
      );
    }
    await mongo.close();
  }
}
