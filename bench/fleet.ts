/**
 * Scenario `fleet`: the durable fleet (docs/fleet.md) spread over N
 * `--role sensors` child processes, spawned the one way chaos spawns the app
 * (`chaos/processes.ts`), with S sensors added once through a `--role api`
 * process. Each N gets its own topics and database.
 *
 * Over a window it measures readings/s emitted (the processes' `/health`
 * counters), acknowledged (records on the readings topic, by end offsets),
 * both against the offered S × 1000 / interval, timer lateness and each
 * process's CPU. Then it `kill -9`s one sensors process and measures how long
 * until every sensor it ran emits again: by the readings topic (the first
 * reading of each moved sensor stamped after the kill) and by the API
 * (`emitting` with an owner other than the dead process). With one process
 * nobody can take over, so that process is restarted 1 s after the kill, as a
 * service manager would.
 *
 * Lateness comes from the readings on the topic: a sensor ticks at
 * `start + k × interval` with a start of its own, so an on-time sensor's
 * `ts mod interval` is constant. Per sensor, the phase is the value just
 * after the largest circular gap among its `ts mod interval`, and a tick's
 * lateness is how far it lies after that phase. It cannot overstate lateness;
 * it understates it when every tick of a sensor was equally late, or by a
 * whole interval (a tick that late is skipped and missing from the emitted rate).
 *
 * @module
 */
import { join } from "node:path";
import { MongoClient } from "mongodb";
import { AppProcess, ROOT } from "../chaos/processes.ts";
import { createTopics, deleteTopicFamily, topicEnds, topicSize } from "../chaos/kafka.ts";
import { removeResources, testKafka } from "../tests/fixtures.ts";
import type { SensorInfo } from "../actors/sensor_control.ts";
import { runName, type Services } from "./services.ts";
import { sleep } from "./interrupt.ts";
import { Histogram, type LatencySummary, round } from "./stats.ts";

export interface FleetResult {
  readonly processes: number;
  readonly sensors: number;
  readonly intervalMs: number;
  readonly windowS: number;
  readonly sessionTimeoutMs: number;
  readonly offeredPerSec: number;
  readonly emittedPerSec: number;
  readonly ackedPerSec: number;
  /** From the add call's answer until every sensor had a reading on the topic. */
  readonly allEmittingMs: number;
  readonly latenessMs: LatencySummary;
  /** CPU of each sensors process over the window, in cores. */
  readonly cpuCores: readonly number[];
  /** The sensors the killed process ran. */
  readonly moved: number;
  /** Whether the killed process was restarted (one process: nobody else can take over). */
  readonly restarted: boolean;
  /** Kill → the last moved sensor's first reading stamped after the kill; NaN if not all came back. */
  readonly moveByTopicMs: number;
  /** Kill → the API shows every moved sensor emitting under another owner; NaN if it never did. */
  readonly moveByApiMs: number;
}

export interface FleetOptions {
  readonly processes: number;
  readonly sensors: number;
  readonly intervalMs: number;
  readonly windowMs: number;
  readonly sessionTimeoutMs: number;
  readonly log: (line: string) => void;
}

const PARTITIONS = 6;
const CLOCK_TICKS_PER_S = 100;

export async function fleetScenario(services: Services, o: FleetOptions): Promise<FleetResult> {
  const { processes, sensors, intervalMs, log } = o;
  const topic = runName(`fleet${processes}`);
  const db = topic.replaceAll("-", "_").slice(0, 60);
  const logDir = join(ROOT, ".stack", "logs");
  await Deno.mkdir(logDir, { recursive: true });
  const kafka = testKafka("bench-fleet", services, { retries: 3 });
  await createTopics(kafka, [[topic, PARTITIONS]]);
  const env = {
    ...Deno.env.toObject(),
    KAFKA_BROKERS: services.brokers,
    MONGO_URL: services.mongoUrl,
    KAFKA_TOPIC: topic,
    KAFKA_GROUP: `${topic}-group`,
    KAFKA_PARTITIONS: String(PARTITIONS),
    KAFKA_SENSORS_SESSION_TIMEOUT_MS: String(o.sessionTimeoutMs),
    MONGO_DB: db,
    RATE_LIMIT_PER_MINUTE: "0",
  };
  const logs: string[] = [];
  const app = (name: string, role: string) => {
    const file = join(logDir, `${topic}-${name}.log`);
    logs.push(file);
    return new AppProcess(name, { flags: ["--role", role, "--sensors", "0"], env, log: file });
  };
  const api = app("api", "api");
  const fleet = Array.from({ length: processes }, (_, i) => app(`sensors-${i + 1}`, "sensors"));
  const watch = new TopicWatch(kafka, topic, intervalMs);
  let ok = false;
  try {
    await watch.start();
    api.start();
    fleet.forEach((p) => p.start());
    await Promise.all([api, ...fleet].map((p) => p.healthy(120_000)));
    log(`fleet ${processes}: ${processes} sensors process(es) up; adding ${sensors} sensors`);
    const res = await fetch(`${api.url}/sensors`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ count: sensors, profile: "normal", intervalMs, idPrefix: "fleet" }),
    });
    const body = await res.text();
    if (res.status !== 201) throw new Error(`POST /sensors answered ${res.status}: ${body.trim()}`);
    const addedAt = Date.now();
    const allEmittingAt = await watch.untilDevices(sensors, 120_000);
    log(`fleet ${processes}: all ${sensors} emitting after ${allEmittingAt - addedAt} ms`);
    await sleep(intervalMs + 1000);

    const emitted = () => Promise.all(fleet.map(async (p) => (await p.stats())?.sensors?.emitted));
    const sum = (xs: (number | undefined)[]) => xs.reduce((n: number, x) => n + (x ?? 0), 0);
    const cpu0 = await Promise.all(fleet.map(cpuTicks));
    const [e0, a0] = await Promise.all([emitted(), topicSize(kafka, topic)]);
    const w0 = Date.now();
    watch.window = { from: w0, to: Infinity };
    await sleep(o.windowMs);
    const [e1, a1] = await Promise.all([emitted(), topicSize(kafka, topic)]);
    const cpu1 = await Promise.all(fleet.map(cpuTicks));
    const w1 = Date.now();
    watch.window = { from: w0, to: w1 };
    const windowEnds = await topicEnds(kafka, topic);
    const seconds = (w1 - w0) / 1000;
    const cpuCores = cpu0.map((c, i) => round((cpu1[i]! - c) / CLOCK_TICKS_PER_S / seconds));
    const emittedPerSec = Math.round((sum(e1) - sum(e0)) / seconds);
    const ackedPerSec = Math.round((a1 - a0) / seconds);
    log(
      `fleet ${processes}: emitted ${emittedPerSec}/s, acked ${ackedPerSec}/s of ` +
        `${Math.round(sensors * 1000 / intervalMs)}/s; CPU ${cpuCores.join(" + ")} cores`,
    );

    // The victim: the last sensors process, and the sensors the API says it runs.
    const victim = fleet.at(-1)!;
    const victimPid = victim.pid;
    const listed = await listSensors(api);
    const moved = new Set(listed.filter((s) => s.owner?.pid === victimPid).map((s) => s.id));
    if (victimPid === undefined || moved.size === 0) {
      throw new Error(`The API lists no sensor run by ${victim.name} (pid ${victimPid})`);
    }
    const restarted = processes === 1;
    log(`fleet ${processes}: kill -9 of ${victim.name} (pid ${victimPid}, ${moved.size} sensors)`);
    const killedAt = Date.now();
    watch.trackReturn(moved, killedAt);
    if (restarted) victim.signal("SIGKILL"); // AppProcess restarts it after 1 s
    else await victim.kill("SIGKILL");
    const limitMs = 3 * o.sessionTimeoutMs + 60_000;
    const byApi = untilApiMoved(api, moved, victimPid, killedAt + limitMs);
    const byTopic = watch.untilReturned(killedAt + limitMs);
    const [apiAt, topicAt] = await Promise.all([byApi, byTopic]);
    // Lateness needs every reading of the window, so the topic read up to the window's end.
    if (!(await watch.untilRead(windowEnds, Date.now() + 120_000))) {
      log(`fleet ${processes}: the topic was not read to the window's end; lateness is partial`);
    }
    const result: FleetResult = {
      processes,
      sensors,
      intervalMs,
      windowS: round(seconds, 1),
      sessionTimeoutMs: o.sessionTimeoutMs,
      offeredPerSec: Math.round(sensors * 1000 / intervalMs),
      emittedPerSec,
      ackedPerSec,
      allEmittingMs: allEmittingAt - addedAt,
      latenessMs: watch.lateness(),
      cpuCores,
      moved: moved.size,
      restarted,
      moveByTopicMs: topicAt === undefined ? NaN : topicAt - killedAt,
      moveByApiMs: apiAt === undefined ? NaN : apiAt - killedAt,
    };
    log(
      `fleet ${processes}: lateness p99 ${result.latenessMs.p99} ms; ${moved.size} sensors ` +
        `emitting again after ${result.moveByTopicMs} ms (topic), ${result.moveByApiMs} ms (API)`,
    );
    ok = true;
    return result;
  } finally {
    await watch.stop();
    await Promise.all([api, ...fleet].map((p) => p.kill("SIGTERM")));
    await deleteTopicFamily(kafka, topic);
    const groups = [`${topic}-watch`, `${topic}-group-sensors`];
    await removeResources({ groups }, services).catch(() => {});
    const mongo = new MongoClient(services.mongoUrl, { serverSelectionTimeoutMS: 5000 });
    await mongo.db(db).dropDatabase().catch(() => {});
    await mongo.close();
    if (ok) { for (const f of logs) await Deno.remove(f).catch(() => {}); }
    else log(`fleet ${processes}: logs kept in ${logDir}/${topic}-*.log`);
  }
}

/**
 * User + system CPU of a process so far, in clock ticks (Linux; 0 elsewhere). Read through
 * `cat`: Deno lets only --allow-all read another process's `/proc/<pid>` files.
 */
async function cpuTicks(p: AppProcess): Promise<number> {
  try {
    const out = await new Deno.Command("cat", { args: [`/proc/${p.pid}/stat`] }).output();
    const stat = new TextDecoder().decode(out.stdout);
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14 and 15)
    return Number.isFinite(ticks) ? ticks : 0;
  } catch {
    return 0;
  }
}

async function listSensors(api: AppProcess): Promise<SensorInfo[]> {
  const all: SensorInfo[] = [];
  for (let offset = 0;; offset += 1000) {
    const res = await fetch(`${api.url}/sensors?offset=${offset}&limit=1000`);
    if (!res.ok) throw new Error(`GET /sensors answered ${res.status}: ${await res.text()}`);
    const page = await res.json() as { total: number; sensors: SensorInfo[] };
    all.push(...page.sensors);
    if (page.sensors.length === 0 || all.length >= page.total) return all;
  }
}

/** When the API first lists every `ids` sensor as emitting under an owner other than `deadPid`. */
async function untilApiMoved(
  api: AppProcess,
  ids: ReadonlySet<string>,
  deadPid: number,
  deadline: number,
): Promise<number | undefined> {
  while (Date.now() < deadline) {
    const listed = await listSensors(api).catch(() => []);
    const back = listed.filter((s) => ids.has(s.id) && s.emitting && s.owner?.pid !== deadPid);
    if (back.length === ids.size) return Date.now();
    await sleep(250);
  }
  return undefined;
}

/**
 * Reads the readings topic from the beginning while the scenario runs: which sensors emitted,
 * the `ts mod interval` of each sensor's readings in the window, and the first reading of each
 * moved sensor stamped after the kill.
 */
class TopicWatch {
  window = { from: Infinity, to: Infinity };
  readonly #consumer;
  readonly #topic: string;
  readonly #intervalMs: number;
  readonly #seen = new Set<string>();
  readonly #phases = new Map<string, number[]>();
  #returning = new Map<string, number | undefined>();
  #killedAt = Infinity;
  /** Partition → the last offset read. */
  readonly #read = new Map<number, number>();

  constructor(kafka: ReturnType<typeof testKafka>, topic: string, intervalMs: number) {
    this.#consumer = kafka.consumer({ groupId: `${topic}-watch`, maxBytes: 20 * 1024 * 1024 });
    this.#topic = topic;
    this.#intervalMs = intervalMs;
  }

  async start() {
    await this.#consumer.connect();
    await this.#consumer.subscribe({ topic: this.#topic, fromBeginning: true });
    await this.#consumer.run({
      autoCommit: false,
      eachBatch: ({ batch }) => {
        const last = Number(batch.lastOffset());
        if (last > (this.#read.get(batch.partition) ?? -1)) this.#read.set(batch.partition, last);
        for (const m of batch.messages) {
          if (!m.value) continue;
          const { deviceId, ts } = JSON.parse(m.value.toString()) as {
            deviceId: string;
            ts: string;
          };
          this.#add(deviceId, Date.parse(ts));
        }
        return Promise.resolve();
      },
    });
  }

  #add(deviceId: string, ts: number) {
    this.#seen.add(deviceId);
    if (ts >= this.window.from && ts < this.window.to) {
      let xs = this.#phases.get(deviceId);
      if (!xs) this.#phases.set(deviceId, xs = []);
      xs.push(ts % this.#intervalMs);
    }
    if (ts > this.#killedAt && this.#returning.has(deviceId)) {
      const first = this.#returning.get(deviceId);
      if (first === undefined || ts < first) this.#returning.set(deviceId, ts);
    }
  }

  /** Resolves to the time `count` distinct sensors have been seen on the topic. */
  async untilDevices(count: number, timeoutMs: number): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    while (this.#seen.size < count) {
      if (Date.now() > deadline) {
        throw new Error(
          `Only ${this.#seen.size} of ${count} sensors emitted within ${timeoutMs} ms`,
        );
      }
      await sleep(100);
    }
    return Date.now();
  }

  trackReturn(ids: ReadonlySet<string>, killedAt: number) {
    this.#returning = new Map([...ids].map((id) => [id, undefined]));
    this.#killedAt = killedAt;
  }

  /** The latest first-reading-after-the-kill over the moved sensors, once all are back. */
  async untilReturned(deadline: number): Promise<number | undefined> {
    while (Date.now() < deadline) {
      const firsts = [...this.#returning.values()];
      if (firsts.every((t) => t !== undefined)) return Math.max(this.#killedAt, ...firsts);
      await sleep(250);
    }
    return undefined;
  }

  /** Whether every partition was read up to `ends` (high watermarks) before `deadline`. */
  async untilRead(ends: ReadonlyMap<number, number>, deadline: number): Promise<boolean> {
    const behind = () => [...ends].some(([p, high]) => (this.#read.get(p) ?? -1) < high - 1);
    while (behind()) {
      if (Date.now() > deadline) return false;
      await sleep(250);
    }
    return true;
  }

  lateness(): LatencySummary {
    const h = new Histogram(this.#intervalMs);
    for (const xs of this.#phases.values()) {
      xs.sort((a, b) => a - b);
      // The phase follows the largest circular gap between consecutive values.
      let phase = xs[0]!;
      let gap = xs[0]! + this.#intervalMs - xs.at(-1)!;
      for (let i = 1; i < xs.length; i++) {
        if (xs[i]! - xs[i - 1]! > gap) [gap, phase] = [xs[i]! - xs[i - 1]!, xs[i]!];
      }
      for (const x of xs) h.add((x - phase + this.#intervalMs) % this.#intervalMs);
    }
    return h.summary();
  }

  async stop() {
    await this.#consumer.disconnect().catch(() => {});
  }
}
