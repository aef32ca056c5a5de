/**
 * One run of a scenario whose load is the app's own sensors. Kafka mode: a
 * processors process, one or three sensors processes (and an api process when
 * the fleet is added over HTTP), each with its own topic and database; at the
 * end the whole topic, the dead-letter topic and the store are read back.
 * Embedded mode: one `--role all` process with its Deno KV file, read after
 * the app has exited. Either way the store is snapshotted after each fault.
 *
 * @module
 */
import { join } from "node:path";
import { MongoClient } from "mongodb";
import { DEFAULT_RULE } from "../domain/hysteresis.ts";
import type { AlertDoc, ReadingDoc } from "../schemas/documents.ts";
import { decodeReading, type Reading } from "../schemas/reading.ts";
import {
  checkSensors,
  type Content,
  isRefusal,
  type ProducedReading,
  refusalsLogged,
  sensorFailures,
  type SensorReport,
  type Snapshot,
  type StoredAlert,
  type StoredContent,
} from "./check.ts";
import {
  chaosKafka,
  committed,
  createTopics,
  deleteTopicFamily,
  readTopic,
  topicSize,
} from "./kafka.ts";
import type { LoadSettings } from "./load.ts";
import { retrying } from "./retry.ts";
import { AppProcess, embeddedEnv, services, sleep } from "./processes.ts";
import { CHAOS_OFFLINE_AFTER_MS, eventLog, PARTITIONS, runNames } from "./run.ts";
import type { SensorContext, SensorScenario } from "./sensor_scenarios.ts";

export interface SensorRunResult {
  readonly scenario: string;
  readonly report: SensorReport;
  /** Dead letters of any reason (Kafka mode). */
  readonly deadLettered: number;
  readonly restarts: number;
  readonly durationMs: number;
  readonly events: readonly string[];
  readonly errors: readonly string[];
}

export function sensorRunFailures(r: SensorRunResult): number {
  return sensorFailures(r.report) + r.errors.length;
}

/** The profile of the sensors: it crosses the alarm band often, so alerts are exercised. */
const PROFILE = "flapping";
/** Without progress for this long, the load phase ends as a failure. */
const STALL_MS = 90_000;

/** A stored reading's content; the same string as {@linkcode readingContent} of its reading. */
function docContent(doc: ReadingDoc): Content {
  const [lon, lat] = doc.location.coordinates;
  return `${new Date(doc.ts).getTime()}|${doc.temperature}|${doc.humidity}|${lat}|${lon}`;
}

function readingContent(r: Reading): Content {
  return `${Date.parse(r.ts)}|${r.temperature}|${r.humidity}|${r.location.lat}|${r.location.lon}`;
}

function storedContent(doc: ReadingDoc): StoredContent {
  return {
    deviceId: doc.deviceId,
    seq: doc.seq,
    ts: new Date(doc.ts).toISOString(),
    temperature: doc.temperature,
    is_critical: doc.is_critical,
    content: docContent(doc),
  };
}

function toSnapshot(docs: readonly ReadingDoc[]): Snapshot {
  return new Map(docs.map((d) => [`${d.deviceId}:${d.seq}`, docContent(d)]));
}

/** Fleet size and interval for the requested readings per second. */
function fleetShape(s: LoadSettings) {
  const intervalMs = Math.max(100, Math.round(1000 * s.devices / s.rate));
  return { devices: s.devices, intervalMs, rate: 1000 * s.devices / intervalMs };
}

/**
 * Drives the load: polls how many readings exist, starts each fault at its fraction of
 * `s.readings`, and ends once the target is reached and every fault has finished.
 */
async function drive(
  scenario: SensorScenario,
  s: LoadSettings,
  ctx: SensorContext,
  progress: () => Promise<number | undefined>,
  errors: string[],
) {
  const pending = [...scenario.faults];
  const runs: Promise<void>[] = [];
  let last = -1;
  let lastChange = Date.now();
  let lastPrint = 0;
  for (;;) {
    await sleep(1000);
    const n = await progress();
    if (n === undefined) continue;
    if (n !== last) [last, lastChange] = [n, Date.now()];
    while (pending.length > 0 && n >= pending[0]!.at * s.readings) {
      const fault = pending.shift()!;
      ctx.note(`fault: ${fault.name}`);
      runs.push(
        fault.run(ctx).then(
          () => ctx.note(`fault done: ${fault.name}`),
          (error) => {
            errors.push(`${fault.name}: ${error}`);
            ctx.note(`fault failed: ${fault.name}: ${error}`);
          },
        ),
      );
    }
    if (Date.now() - lastPrint > 5000) {
      lastPrint = Date.now();
      console.error(`  [${scenario.id}] ${n}/${s.readings} readings`);
    }
    if (n >= s.readings && pending.length === 0) break;
    if (Date.now() - lastChange > STALL_MS) {
      errors.push(`no new readings for ${STALL_MS / 1000} s (at ${n}/${s.readings})`);
      break;
    }
  }
  await Promise.all(runs);
  ctx.note("load done");
}

export function runSensorScenario(
  scenario: SensorScenario,
  s: LoadSettings,
): Promise<SensorRunResult> {
  return scenario.mode === "embedded" ? runEmbedded(scenario, s) : runKafka(scenario, s);
}

async function runKafka(scenario: SensorScenario, s: LoadSettings): Promise<SensorRunResult> {
  const names = runNames(scenario.id);
  const kafka = chaosKafka();
  await createTopics(kafka, [[names.topic, PARTITIONS], [names.dlq, 1]]);
  await Deno.mkdir(names.logDir, { recursive: true });
  const fleet = fleetShape(s);
  const { brokers, mongoUrl } = services();
  const env = {
    ...Deno.env.toObject(),
    KAFKA_BROKERS: brokers,
    MONGO_URL: mongoUrl,
    KAFKA_TOPIC: names.topic,
    KAFKA_GROUP: names.group,
    MONGO_DB: names.db,
    CHECKPOINT_MS: "500",
    OFFLINE_AFTER_MS: String(CHAOS_OFFLINE_AFTER_MS),
  };
  const app = (name: string, flags: string[]) =>
    new AppProcess(name, { flags, env, log: names.log(name.replaceAll(" ", "-")) });
  // `--sensors 0` wherever the fleet is not meant to come from, in case a role seeds the registry.
  const processors = [app("processors", ["--role", "processors", "--sensors", "0"])];
  const sensorFlags = scenario.fleetViaApi
    ? ["--role", "sensors", "--sensors", "0"]
    : ["--role", "sensors", "--sensors", String(fleet.devices), "--sensor-profile", PROFILE];
  sensorFlags.push("--interval-ms", String(fleet.intervalMs));
  const sensors = Array.from(
    { length: scenario.sensorsProcesses },
    (_, i) => app(`sensors ${i + 1}`, sensorFlags),
  );
  const api = scenario.fleetViaApi ? app("api", ["--role", "api", "--sensors", "0"]) : undefined;
  const everyone = [...processors, ...sensors, ...(api ? [api] : [])];
  const mongo = new MongoClient(mongoUrl, { serverSelectionTimeoutMS: 60_000 });
  const readings = () => mongo.db(names.db).collection<ReadingDoc>("readings");
  const { events, t0, note } = eventLog(scenario.id);
  const snapshots: Snapshot[] = [];
  const errors: string[] = [];
  let passed = false;
  const ctx: SensorContext = {
    sensors,
    processors,
    rate: fleet.rate,
    note,
    async snapshot(label) {
      const docs = await retrying("snapshot the store", () => readings().find({}).toArray());
      snapshots.push(toSnapshot(docs));
      note(`snapshot ${label}: ${docs.length} stored readings`);
    },
    async backlog() {
      return await topicSize(kafka, names.topic) -
        await committed(kafka, names.group, names.topic);
    },
  };
  try {
    note(
      `${fleet.devices} sensors every ${fleet.intervalMs} ms (${fleet.rate.toFixed(0)}/s) in ` +
        `${sensors.length} sensors process(es), profile ${PROFILE}`,
    );
    processors.forEach((p) => p.start());
    api?.start();
    sensors.forEach((p) => p.start());
    const added = api ? await addFleet(api, fleet) : undefined;
    if (added) errors.push(added);
    else {
      await drive(
        scenario,
        s,
        ctx,
        () => topicSize(kafka, names.topic).catch(() => undefined),
        errors,
      );
    }
    // Stop the sensors gracefully (they flush), all at once so no sensor moves to a process that
    // is about to stop, then let the processors store everything.
    const codes = await Promise.all(sensors.map((p) => p.kill("SIGTERM")));
    codes.forEach((code, i) => code !== 0 && note(`${sensors[i]!.name} exited with ${code}`));
    await api?.kill("SIGTERM");
    const end = await topicSize(kafka, names.topic);
    const deadline = Date.now() + 240_000;
    let done = 0;
    while (Date.now() < deadline) {
      done = await committed(kafka, names.group, names.topic).catch(() => done);
      if (done >= end) break;
      await sleep(500);
    }
    note(`processors committed ${done}/${end} records`);
    if (done < end) errors.push(`the processors committed ${done} of ${end} records in 240 s`);
    await sleep(1500); // the last checkpoint
    for (const p of processors) await p.kill("SIGTERM");
    const [docs, alerts, topic, dlq] = await Promise.all([
      retrying("read the stored readings", () => readings().find({}).toArray()),
      retrying(
        "read the stored alerts",
        () => mongo.db(names.db).collection<AlertDoc>("alerts").find({}).toArray(),
      ),
      readTopic(kafka, names.topic),
      readTopic(kafka, names.dlq),
    ]);
    const produced: ProducedReading[] = [];
    for (const { message } of topic) {
      const decoded = decodeReading(message.value, message.key);
      if (!decoded.ok) {
        errors.push(`an invalid record on the topic: ${decoded.reason}`);
        continue;
      }
      const r = decoded.reading;
      produced.push({ deviceId: r.deviceId, seq: r.seq, content: readingContent(r) });
    }
    const conflicts = dlq.filter(({ message }) =>
      isRefusal(message.headers?.["dlq.reason"]?.toString() ?? "")
    ).length;
    const report = checkSensors({
      produced,
      stored: docs.map(storedContent),
      snapshots,
      alerts: alerts as unknown as StoredAlert[],
      conflictsReported: conflicts,
      rule: DEFAULT_RULE,
      offlineAfterMs: CHAOS_OFFLINE_AFTER_MS,
    });
    const result: SensorRunResult = {
      scenario: scenario.id,
      report,
      deadLettered: dlq.length,
      restarts: everyone.reduce((n, p) => n + p.restarts, 0),
      durationMs: Date.now() - t0,
      events,
      errors,
    };
    passed = sensorRunFailures(result) === 0;
    return result;
  } finally {
    await Promise.all(everyone.map((p) => p.kill("SIGTERM")));
    if (passed) {
      await mongo.db(names.db).dropDatabase().catch(() => {});
      await deleteTopicFamily(kafka, names.topic);
    } else {
      console.error(
        `  [${scenario.id}] kept for inspection: database ${names.db}, topic ${names.topic}, ` +
          `logs ${names.log("*")}`,
      );
    }
    await mongo.close();
  }
}

/** `POST /sensors` to the api process; a message when the fleet cannot be added there. */
async function addFleet(
  api: AppProcess,
  fleet: { devices: number; intervalMs: number },
): Promise<string | undefined> {
  await api.healthy();
  const res = await fetch(`${api.url}/sensors`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ count: fleet.devices, profile: PROFILE, intervalMs: fleet.intervalMs }),
  });
  const body = await res.text();
  if (res.status === 201) return undefined;
  return `POST /sensors to the api process answered ${res.status} ${body.trim()}: the fleet ` +
    "cannot be added where the sensors do not run (needs the fleet registry of issue 11)";
}

async function runEmbedded(scenario: SensorScenario, s: LoadSettings): Promise<SensorRunResult> {
  const names = runNames(scenario.id);
  const dir = await Deno.makeTempDir({ prefix: `chaos-${scenario.id}-` });
  const kvPath = join(dir, "iot.kv");
  await Deno.mkdir(names.logDir, { recursive: true });
  const log = names.log("app");
  const fleet = fleetShape(s);
  const app = new AppProcess("the app", {
    flags: [
      "--role",
      "all",
      "--sensors",
      String(fleet.devices),
      "--sensor-profile",
      PROFILE,
      "--interval-ms",
      String(fleet.intervalMs),
    ],
    env: {
      ...embeddedEnv(Deno.env.toObject()),
      KV_PATH: kvPath,
      CHECKPOINT_MS: "500",
      OFFLINE_AFTER_MS: String(CHAOS_OFFLINE_AFTER_MS),
    },
    log,
    writable: dir,
    // Conflicts may be logged below warn; the log is the only place embedded mode reports them.
    logLevel: "info",
  });
  const { events, t0, note } = eventLog(scenario.id);
  const snapshots: Snapshot[] = [];
  const errors: string[] = [];
  let passed = false;
  // Emitted readings summed over the app's lives (a new life starts its counter at 0).
  let earlier = 0;
  let current = 0;
  const progress = async () => {
    const emitted = (await app.stats())?.sensors?.emitted;
    if (emitted === undefined) return earlier + current;
    if (emitted < current) earlier += current;
    current = emitted;
    return earlier + current;
  };
  const ctx: SensorContext = {
    sensors: [app],
    processors: [],
    rate: fleet.rate,
    note,
    async snapshot(label) {
      // Only while the app is down: the KV file has one writer.
      const { readings } = await readKv(kvPath);
      snapshots.push(toSnapshot(readings));
      note(`snapshot ${label}: ${readings.length} stored readings`);
    },
    backlog: () => Promise.resolve(0),
  };
  try {
    note(
      `${fleet.devices} sensors every ${fleet.intervalMs} ms (${fleet.rate.toFixed(0)}/s), ` +
        `profile ${PROFILE}, KV ${kvPath}`,
    );
    app.start();
    await drive(scenario, s, ctx, progress, errors);
    const code = await app.kill("SIGTERM");
    note(`the app exited with ${code}`);
    const { readings, alerts } = await readKv(kvPath);

    const report = checkSensors({
      stored: readings.map(storedContent),
      snapshots,
      alerts: alerts as unknown as StoredAlert[],
      conflictsReported: refusalsLogged(await Deno.readTextFile(log)),
      rule: DEFAULT_RULE,
      offlineAfterMs: CHAOS_OFFLINE_AFTER_MS,
    });
    const result: SensorRunResult = {
      scenario: scenario.id,
      report,
      deadLettered: 0,
      restarts: app.restarts,
      durationMs: Date.now() - t0,
      events,
      errors,
    };
    passed = sensorRunFailures(result) === 0;
    return result;
  } finally {
    await app.kill("SIGTERM");
    if (passed) await Deno.remove(dir, { recursive: true }).catch(() => {});
    else console.error(`  [${scenario.id}] kept for inspection: ${kvPath}, log ${log}`);
  }
}

/** The readings and alerts of a Deno KV store file (see adapters/kv_store.ts for the keys). */
async function readKv(path: string): Promise<{ readings: ReadingDoc[]; alerts: AlertDoc[] }> {
  using kv = await Deno.openKv(path);
  const readings: ReadingDoc[] = [];
  for await (const e of kv.list<ReadingDoc>({ prefix: ["readings"] })) readings.push(e.value);
  const alerts: AlertDoc[] = [];
  for await (const e of kv.list<AlertDoc>({ prefix: ["alerts"] })) alerts.push(e.value);
  return { readings, alerts };
}
