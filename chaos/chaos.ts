/**
 * Fault-injection harness: proves "nothing lost, nothing duplicated, alerts
 * right" the way Kafka's system tests and Jepsen do — by counting.
 *
 * A load generator produces readings for D devices straight to Kafka and keeps
 * a ledger of every reading the broker acknowledged. Processor roles run as
 * child processes (restarted when they exit, as systemd or compose would) and
 * are killed, frozen or starved while the load runs. A checker then reads the
 * store and reports lost, duplicated, phantom, gaps, flag and alert
 * mismatches (the pure rule replayed over the stored readings).
 *
 *   deno task chaos                         all scenarios, 20 000 readings each
 *   deno task chaos --short                 the CI variant (scenarios 1, 2, 4, 6; 3 000 readings)
 *   deno task chaos --scenario kill9 --readings 50000
 *
 * Needs the local stack (`deno task stack:up`); scenarios that restart Kafka
 * or FerretDB control it through stack/stack.ts.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { Kafka, logLevel, type Message, Partitioners } from "kafkajs";
import { MongoClient } from "mongodb";
import { DEFAULT_RULE } from "../domain/hysteresis.ts";
import { encodeReading } from "../schemas/reading.ts";
import { check, type CheckReport, type StoredAlert } from "./check.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const BROKERS = Deno.env.get("KAFKA_BROKERS") || "127.0.0.1:9092";
const MONGO_URL = Deno.env.get("MONGO_URL") || "mongodb://127.0.0.1:27017/";
const PARTITIONS = 6;
/** KAFKA_GIVE_UP_MS of the `broker-gone` scenario's processor. */
const GIVE_UP_MS = 10_000;
const CYCLE = [60, 81, 85, 90, 79, 75, 69, 65, 62, 72];

interface Settings {
  readonly readings: number;
  readonly devices: number;
  readonly rate: number;
}

interface Fault {
  /** Fraction of the load sent when the fault starts. */
  readonly at: number;
  readonly name: string;
  readonly run: (ctx: RunContext) => Promise<void>;
}

interface Scenario {
  readonly id: string;
  readonly title: string;
  readonly processors: number;
  readonly faults: readonly Fault[];
  /** Scenarios that stop a service need it to be the harness's own stack. */
  readonly needsLocalStack?: boolean;
  /**
   * Who produces the load: the harness's own producer (default, a ledger of acknowledged
   * records), or the app's sensors role (scripted sensors; the ledger is every reading they emit).
   */
  readonly load?: "harness" | "sensors";
  /** Extra settings for the processor processes. */
  readonly processorEnv?: Readonly<Record<string, string>>;
}

interface RunContext {
  readonly processors: readonly Processor[];
  readonly kafka: Kafka;
  readonly topic: string;
  readonly ledger: Ledger;
  note(event: string): void;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Stops one service of the local stack for `ms`, then starts it again. */
const outage = (service: "kafka" | "ferretdb", ms: number) => async () => {
  await stack("down", service);
  await sleep(ms);
  await stack("up");
};

const SCENARIOS: readonly Scenario[] = [
  {
    id: "kill9",
    title: "1. kill -9 of the only processor mid-stream, restart",
    processors: 1,
    faults: [{
      at: 0.4,
      name: "SIGKILL processor",
      run: async (ctx) => {
        await ctx.processors[0]!.kill("SIGKILL");
        await sleep(1000);
        ctx.processors[0]!.start();
      },
    }],
  },
  {
    id: "rebalance",
    title: "2. two processors; kill -9 one (rebalance), later restart it (rebalance back)",
    processors: 2,
    faults: [
      { at: 0.3, name: "SIGKILL processor 2", run: (ctx) => ctx.processors[1]!.kill("SIGKILL") },
      {
        at: 0.6,
        name: "restart processor 2",
        run: (ctx) => Promise.resolve(ctx.processors[1]!.start()),
      },
    ],
  },
  {
    id: "freeze",
    title: "3. a processor frozen (SIGSTOP) beyond the session timeout, then resumed",
    processors: 2,
    faults: [{
      at: 0.3,
      name: "SIGSTOP processor 1 for 40 s",
      run: async (ctx) => {
        ctx.processors[0]!.signal("SIGSTOP");
        await sleep(40_000);
        ctx.processors[0]!.signal("SIGCONT");
      },
    }],
  },
  {
    id: "broker",
    title: "4. broker restart mid-stream",
    processors: 1,
    needsLocalStack: true,
    faults: [{
      at: 0.4,
      name: "restart Kafka",
      run: async () => {
        await stack("down", "kafka");
        await stack("up");
      },
    }],
  },
  {
    id: "broker-outage",
    title: "4b. Kafka down for 60 s while the app's own sensors produce (the producer buffer)",
    processors: 1,
    needsLocalStack: true,
    load: "sensors",
    faults: [{
      at: 0.25,
      name: "stop Kafka for 60 s",
      run: outage("kafka", 60_000),
    }],
  },
  {
    id: "broker-gone",
    title: "4c. Kafka gone beyond KAFKA_GIVE_UP_MS: /health says so, the processor exits 1",
    processors: 1,
    needsLocalStack: true,
    processorEnv: { KAFKA_GIVE_UP_MS: String(GIVE_UP_MS) },
    faults: [{
      at: 0.4,
      name: `stop Kafka until the processor gives up (KAFKA_GIVE_UP_MS=${GIVE_UP_MS})`,
      run: async (ctx) => {
        const processor = ctx.processors[0]!;
        const exitsBefore = processor.exitCodes.length;
        await stack("down", "kafka");
        const stoppedAt = Date.now();
        // Shutdown after giving up may wait for its 30 s deadline with the broker gone.
        const deadline = stoppedAt + GIVE_UP_MS + 45_000;
        let reported = false;
        let reason = false;
        // Overlapping polls: a health check waits for its Kafka probe to time out. Until the
        // process gives up, /health must say 503 with the Kafka check failing.
        const polls: Promise<void>[] = [];
        while (processor.exitCodes.length === exitsBefore && Date.now() < deadline) {
          polls.push(
            fetch(processor.healthUrl).then(async (res) => {
              const body = await res.json();
              if (res.status === 503 && body.checks?.kafka?.ok === false) reported = true;
              if (/no Kafka broker answered/.test(body.checks?.pipeline?.error ?? "")) {
                reason = true;
              }
            }, () => {}),
          );
          await sleep(250);
        }
        await Promise.all(polls);
        const code = processor.exitCodes[exitsBefore];
        ctx.note(
          `processor exit code ${code ?? "none"} after ${
            ((Date.now() - stoppedAt) / 1000).toFixed(1)
          } s; /health answered 503: ${reported}, named the reason: ${reason}`,
        );
        await stack("up");
        if (code !== 1) throw new Error(`expected exit code 1, got ${code ?? "none (still up)"}`);
        if (!reported) throw new Error("/health never reported Kafka down before the exit");
      },
    }],
  },
  {
    id: "store-outage",
    title: "5b. FerretDB down for 60 s mid-stream",
    processors: 1,
    needsLocalStack: true,
    faults: [{
      at: 0.3,
      name: "stop FerretDB for 60 s",
      run: outage("ferretdb", 60_000),
    }],
  },
  {
    id: "store",
    title: "5. FerretDB restart mid-stream",
    processors: 1,
    needsLocalStack: true,
    faults: [{
      at: 0.4,
      name: "restart FerretDB",
      run: outage("ferretdb", 5000),
    }],
  },
  {
    id: "bad-records",
    title: "6. malformed, oversized, duplicated and out-of-order records injected",
    processors: 1,
    faults: [0.2, 0.5, 0.8].map((at) => ({
      at,
      name: "inject bad records",
      run: (ctx: RunContext) => injectBadRecords(ctx),
    })),
  },
  {
    id: "cold-start",
    title: "7. the whole system killed (SIGKILL) and cold-started",
    processors: 1,
    needsLocalStack: true,
    faults: [{
      at: 0.5,
      name: "SIGKILL processor, Kafka and FerretDB; start all again",
      run: async (ctx) => {
        await ctx.processors[0]!.kill("SIGKILL");
        for (const service of ["kafka", "ferretdb"]) {
          const pid = Number(await Deno.readTextFile(`${ROOT}.stack/run/${service}.pid`));
          Deno.kill(pid, "SIGKILL");
        }
        await sleep(1000);
        await stack("up");
        ctx.processors[0]!.start();
      },
    }],
  },
];

// ----------------------------------------------------------------- processes

/** One processor role as a child process, restarted whenever it exits unexpectedly. */
class Processor {
  readonly #env: Record<string, string>;
  readonly #log: string;
  readonly #port: number;
  #child: Deno.ChildProcess | undefined;
  #wanted = false;
  restarts = 0;
  /** Exit codes of the processes that exited on their own, in order. */
  readonly exitCodes: number[] = [];

  constructor(env: Record<string, string>, log: string, port: number) {
    this.#env = env;
    this.#log = log;
    this.#port = port;
  }

  get healthUrl(): string {
    return `http://127.0.0.1:${this.#port}/health`;
  }

  start() {
    this.#wanted = true;
    const child = spawnApp(`--role processors --port ${this.#port}`, this.#env, this.#log);
    this.#child = child;
    child.status.then(({ code }) => {
      if (this.#child !== child || !this.#wanted) return;
      this.exitCodes.push(code);
      // Like a service manager: an exited processor is started again.
      this.restarts++;
      setTimeout(() => this.#wanted && this.#child === child && this.start(), 1000);
    });
  }

  signal(signal: Deno.Signal) {
    this.#child?.kill(signal);
  }

  async kill(signal: Deno.Signal = "SIGTERM") {
    this.#wanted = false;
    const child = this.#child;
    if (!child) return;
    try {
      child.kill(signal);
    } catch { /* already gone */ }
    await child.status;
  }
}

async function stack(command: "up" | "down", service?: string) {
  const args = ["run", "--allow-run", "--allow-read", "--allow-write", "--allow-env"];
  args.push("--allow-net", "--allow-sys", "stack/stack.ts", command);
  if (service) args.push(service);
  const out = await new Deno.Command(Deno.execPath(), { args, cwd: ROOT, stdin: "null" }).output();
  if (!out.success) {
    throw new Error(`stack ${command} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
}

/** One app role (`main.ts` with these flags) as a child process, its output appended to `log`. */
function spawnApp(flags: string, env: Record<string, string>, log: string): Deno.ChildProcess {
  return new Deno.Command("sh", {
    args: [
      "-c",
      `exec "${Deno.execPath()}" run --allow-net --allow-env --allow-read --allow-sys ` +
      `main.ts ${flags} --log-level warn >>'${log}' 2>&1`,
    ],
    cwd: ROOT,
    env,
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

// ---------------------------------------------------------------------- load

/** Highest seq Kafka acknowledged per device; sends are in order, so everything below too. */
type Ledger = Map<string, number>;

function readingValue(deviceId: string, index: number, seq: number): string {
  return encodeReading({
    deviceId,
    seq,
    ts: new Date(Date.UTC(2026, 0, 1) + seq * 1000).toISOString(),
    temperature: CYCLE[(seq + index) % CYCLE.length]!,
    humidity: 40,
    location: { lat: 48.85, lon: 2.35 },
  });
}

async function produce(
  kafka: Kafka,
  topic: string,
  s: Settings,
  ledger: Ledger,
  onProgress: (fraction: number) => void,
) {
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
  await producer.connect();
  const ids = Array.from({ length: s.devices }, (_, i) => `chaos-${String(i).padStart(4, "0")}`);
  const perTick = Math.max(1, Math.round(s.rate / 10));
  let sent = 0;
  let next = 0;
  while (sent < s.readings) {
    const started = Date.now();
    const messages: Message[] = [];
    const batchMax = new Map<string, number>();
    for (let i = 0; i < perTick && sent + messages.length < s.readings; i++) {
      const d = next++ % s.devices;
      const id = ids[d]!;
      const seq = (batchMax.get(id) ?? ledger.get(id) ?? 0) + 1;
      batchMax.set(id, seq);
      messages.push({ key: id, value: readingValue(id, d, seq) });
    }
    // Retry the same batch until the broker takes it: order is kept, duplicates are allowed.
    for (let attempt = 0;; attempt++) {
      try {
        await producer.send({ topic, acks: -1, messages });
        break;
      } catch {
        await sleep(Math.min(2000, 200 * 2 ** Math.min(attempt, 4)));
      }
    }
    for (const [id, seq] of batchMax) ledger.set(id, seq);
    sent += messages.length;
    onProgress(sent / s.readings);
    await sleep(Math.max(0, 100 - (Date.now() - started)));
  }
  await producer.disconnect();
}

/** How long the sensors load lasts, so a 60 s outage lands mid-stream. */
const SENSOR_LOAD_MS = 100_000;

/**
 * The load from the app's own sensors role: scripted sensors, each emitting its script once.
 * Every reading a sensor emits must end up stored (the producer retries from its buffer), so the
 * ledger is the script length per device, and the sensors process must end with none dropped.
 */
async function produceWithSensors(
  env: Record<string, string>,
  s: Settings,
  ledger: Ledger,
  log: string,
  onProgress: (fraction: number) => void,
  note: (event: string) => void,
) {
  const perDevice = Math.max(1, Math.round(s.readings / s.devices));
  const intervalMs = Math.max(100, Math.round(SENSOR_LOAD_MS / perDevice));
  const port = freePort();
  const base = `http://127.0.0.1:${port}`;
  const child = spawnApp(`--role sensors --sensors 0 --port ${port}`, env, log);
  const stats = async () => {
    const body = await (await fetch(`${base}/health`)).json();
    return body.stats as {
      sensors: { emitted: number; dropped: number };
      producer: { sent: number; dropped: number; buffered: number };
    };
  };
  try {
    const ready = Date.now() + 60_000;
    while (!(await fetch(`${base}/health`).then((r) => r.ok, () => false))) {
      if (Date.now() > ready) throw new Error("the sensors role did not become healthy in 60 s");
      await sleep(250);
    }
    const res = await fetch(`${base}/sensors`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        count: s.devices,
        idPrefix: "chaos",
        profile: "scripted",
        intervalMs,
        temperatures: Array.from({ length: perDevice }, (_, i) => CYCLE[i % CYCLE.length]),
      }),
    });
    if (res.status !== 201) throw new Error(`add sensors: ${res.status} ${await res.text()}`);
    const { ids } = await res.json() as { ids: string[] };
    for (const id of ids) ledger.set(id, perDevice);
    const total = ids.length * perDevice;
    const started = Date.now();
    let peakBuffered = 0;
    for (;;) {
      await sleep(500);
      const now = await stats().catch(() => undefined);
      if (!now) continue;
      peakBuffered = Math.max(peakBuffered, now.producer.buffered);
      onProgress(Math.min(0.999, (Date.now() - started) / (perDevice * intervalMs)));
      if (now.sensors.emitted >= total && now.producer.buffered === 0) {
        if (now.sensors.dropped > 0 || now.producer.dropped > 0) {
          throw new Error(`the sensors role dropped ${now.sensors.dropped} readings`);
        }
        break;
      }
    }
    note(
      `sensors emitted ${total} readings, none dropped; producer buffer peaked at ${peakBuffered}`,
    );
    onProgress(1);
  } finally {
    child.kill("SIGTERM");
    const { code } = await child.status;
    if (code !== 0) note(`sensors role exited with ${code}`);
  }
}

async function injectBadRecords(ctx: RunContext) {
  const producer = ctx.kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
  await producer.connect();
  const acked = [...ctx.ledger].filter(([, seq]) => seq > 2).slice(0, 10);
  const messages: Message[] = [
    { key: "chaos-0000", value: "{not json" },
    { key: "chaos-0000", value: JSON.stringify({ deviceId: "chaos-0000", seq: "x" }) },
    { key: "chaos-0001", value: "x".repeat(300_000) },
    // Already acknowledged readings again: duplicates, and older than what follows them.
    ...acked.map(([id, seq]) => ({
      key: id,
      value: readingValue(id, Number(id.slice(6)), seq - 1),
    })),
  ];
  await producer.send({ topic: ctx.topic, acks: -1, messages });
  await producer.disconnect();
  ctx.note(`injected 3 invalid + ${acked.length} replayed records`);
}

// --------------------------------------------------------------------- a run

interface RunResult {
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

async function runScenario(scenario: Scenario, s: Settings): Promise<RunResult> {
  const id = `${scenario.id}-${Date.now().toString(36)}`;
  const topic = `chaos.${id}`;
  const dbName = `chaos_${id.replaceAll("-", "_")}`;
  const kafka = new Kafka({
    clientId: "chaos",
    brokers: BROKERS.split(","),
    logLevel: logLevel.NOTHING,
    retry: { retries: 3 },
  });
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({
    topics: [{ topic, numPartitions: PARTITIONS }, { topic: `${topic}.dlq`, numPartitions: 1 }],
    waitForLeaders: true,
  });
  await admin.disconnect();
  await Deno.mkdir(`${ROOT}.stack/logs`, { recursive: true });
  const env = {
    ...Deno.env.toObject(),
    KAFKA_BROKERS: BROKERS,
    MONGO_URL,
    KAFKA_TOPIC: topic,
    KAFKA_GROUP: `chaos-${id}`,
    MONGO_DB: dbName,
    CHECKPOINT_MS: "500",
  };
  const processors = Array.from(
    { length: scenario.processors },
    (_, i) =>
      new Processor(
        { ...env, ...scenario.processorEnv },
        `${ROOT}.stack/logs/chaos-${id}-p${i + 1}.log`,
        freePort(),
      ),
  );
  const mongo = new MongoClient(MONGO_URL, { serverSelectionTimeoutMS: 60_000 });
  const db = mongo.db(dbName);
  const events: string[] = [];
  const t0 = Date.now();
  const note = (e: string) => {
    events.push(`${((Date.now() - t0) / 1000).toFixed(1)}s ${e}`);
    console.error(`  [${scenario.id}] ${events.at(-1)}`);
  };
  const ledger: Ledger = new Map();
  let passed = false;
  const ctx: RunContext = { processors, kafka, topic, ledger, note };
  const pendingFaults = [...scenario.faults];
  const faultRuns: Promise<void>[] = [];
  const faultErrors: string[] = [];
  // Progress is read from the consumer group's committed offsets: cheap for the broker,
  // unlike counting documents, which makes FerretDB scan the whole collection.
  const monitorAdmin = kafka.admin();
  await monitorAdmin.connect();
  let committed = 0;
  let lastChange = Date.now();
  let longestStall = 0;
  let polling = false;
  const progress = async () => {
    const [offsets] = await monitorAdmin.fetchOffsets({
      groupId: env.KAFKA_GROUP,
      topics: [topic],
    });
    return (offsets?.partitions ?? []).reduce((n, p) => n + Math.max(0, Number(p.offset)), 0);
  };
  const monitor = setInterval(async () => {
    if (polling) return;
    polling = true;
    try {
      const n = await progress();
      const now = Date.now();
      if (n !== committed) {
        // Time without progress while work was waiting: kills, rebalances, restarts.
        if (committed > 0) longestStall = Math.max(longestStall, now - lastChange);
        committed = n;
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
        ? produceWithSensors(
          env,
          s,
          ledger,
          `${ROOT}.stack/logs/chaos-${id}-sensors.log`,
          onProgress,
          note,
        )
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
          `  [${scenario.id}] sent ${
            Math.round(fraction * s.readings)
          }/${s.readings}, committed ${committed}`,
        );
      }
    });
    const producedAt = Date.now();
    note("load done");
    await Promise.all(faultRuns);
    const endAdmin = kafka.admin();
    await endAdmin.connect();
    const end = (await endAdmin.fetchTopicOffsets(topic)).reduce((n, p) => n + Number(p.high), 0);
    await endAdmin.disconnect();
    const deadline = Date.now() + 240_000;
    while (committed < end && Date.now() < deadline) await sleep(250);
    const catchUpMs = Date.now() - producedAt;
    note(`committed ${committed}/${end} records`);
    await sleep(1500); // let the last alerts and checkpoints land
    const readings = await db.collection("readings").find({}, {
      projection: { _id: 0, deviceId: 1, seq: 1, ts: 1, temperature: 1, is_critical: 1 },
    }).toArray();
    const alerts = await db.collection("alerts").find({}).toArray();
    const report = check(
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
    );
    const dlqAdmin = kafka.admin();
    await dlqAdmin.connect();
    const offsets = await dlqAdmin.fetchTopicOffsets(`${topic}.dlq`);
    await dlqAdmin.disconnect();
    const result: RunResult = {
      scenario: scenario.id,
      report,
      deadLettered: offsets.reduce((n, p) => n + Number(p.high), 0),
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
    await monitorAdmin.disconnect().catch(() => {});
    await Promise.all(processors.map((p) => p.kill("SIGTERM")));
    if (passed) {
      await db.dropDatabase().catch(() => {});
      const a = kafka.admin();
      await a.connect().then(() => a.deleteTopics({ topics: [topic, `${topic}.dlq`] })).catch(
        () => {},
      );
      await a.disconnect().catch(() => {});
    } else {
      // Keep the evidence of a failed run.
      console.error(
        `  [${scenario.id}] kept for inspection: database ${dbName}, topic ${topic}, ` +
          `logs .stack/logs/chaos-${id}-*.log`,
      );
    }
    await mongo.close();
  }
}

// --------------------------------------------------------------- API flood

interface FloodResult {
  readonly requests: number;
  readonly statuses: Record<string, number>;
  readonly serverErrors: number;
  readonly sensorsRunning: number;
  readonly cap: number;
  readonly healthyAfter: boolean;
  readonly durationMs: number;
}

/**
 * 8. Thousands of concurrent add-sensor calls, a quarter with a wrong token,
 * against a real app process (embedded mode: the API is what is under test).
 */
async function apiFlood(
  requests: number,
  { rateLimitPerMinute, wrongTokens }: {
    readonly rateLimitPerMinute: number;
    readonly wrongTokens: boolean;
  },
): Promise<FloodResult> {
  const port = 18_000 + Math.floor(Math.random() * 1000);
  const token = crypto.randomUUID();
  const cap = 500;
  const dir = await Deno.makeTempDir({ prefix: "chaos-flood-" });
  const env = { ...Deno.env.toObject() };
  delete env.KAFKA_BROKERS;
  delete env.MONGO_URL;
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      "--allow-env",
      "--allow-read",
      `--allow-write=${dir}`,
      "--allow-sys",
      "main.ts",
      "--port",
      String(port),
      "--sensors",
      "0",
      "--log-level",
      "error",
    ],
    cwd: ROOT,
    clearEnv: true,
    env: {
      ...env,
      API_TOKEN: token,
      MAX_SENSORS: String(cap),
      RATE_LIMIT_PER_MINUTE: String(rateLimitPerMinute),
      KV_PATH: `${dir}/iot.kv`,
    },
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const base = `http://127.0.0.1:${port}`;
  const started = Date.now();
  try {
    for (let i = 0; i < 100; i++) {
      if (await fetch(`${base}/health`).then((r) => r.ok, () => false)) break;
      await sleep(100);
    }
    const statuses: Record<string, number> = {};
    let next = 0;
    const worker = async () => {
      while (next < requests) {
        const i = next++;
        const valid = !wrongTokens || i % 4 !== 0;
        const res = await fetch(`${base}/sensors`, {
          method: "POST",
          headers: {
            "content-type": "application/json",
            authorization: `Bearer ${valid ? token : "wrong-token"}`,
          },
          body: JSON.stringify({ count: 1 + (i % 5), intervalMs: 3_600_000 }),
        }).catch(() => undefined);
        const key = res ? String(res.status) : "network error";
        await res?.body?.cancel();
        statuses[key] = (statuses[key] ?? 0) + 1;
      }
    };
    await Promise.all(Array.from({ length: 200 }, worker));
    const list = await (await fetch(`${base}/sensors?limit=1`)).json();
    const healthyAfter = (await fetch(`${base}/health`).then((r) => r.status, () => 0)) === 200;
    const serverErrors = Object.entries(statuses)
      .filter(([status]) => !/^[234]/.test(status))
      .reduce((n, [, c]) => n + c, 0);
    return {
      requests,
      statuses,
      serverErrors,
      sensorsRunning: list.total,
      cap,
      healthyAfter,
      durationMs: Date.now() - started,
    };
  } finally {
    child.kill("SIGTERM");
    await child.status;
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

function failures(r: RunResult): number {
  const { lost, duplicated, phantom, gaps, flagMismatches, alertMismatches } = r.report;
  return lost + duplicated + phantom + gaps + flagMismatches + alertMismatches +
    r.faultErrors.length;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      scenario: { type: "string", default: "all" },
      readings: { type: "string" },
      devices: { type: "string", default: "50" },
      rate: { type: "string" },
      short: { type: "boolean", default: false },
    },
  });
  const requested = values.short
    ? ["kill9", "rebalance", "broker", "broker-gone", "bad-records"]
    : values.scenario === "all"
    ? [...SCENARIOS.map((s) => s.id), "flood"]
    : values.scenario!.split(",");
  const flood = requested.includes("flood");
  const ids = requested.filter((id) => id !== "flood");
  const readings = Number(values.readings ?? (values.short ? 3000 : 20_000));
  const settings: Settings = {
    readings,
    devices: Number(values.devices),
    // By default a run lasts about 20 s, so faults land mid-stream.
    rate: Number(values.rate ?? Math.max(100, Math.round(readings / 20))),
  };
  const unknown = ids.filter((id) => !SCENARIOS.some((s) => s.id === id));
  if (unknown.length > 0 || !(settings.readings > 0 && settings.devices > 0 && settings.rate > 0)) {
    console.error(
      `Usage: deno task chaos [--short] [--scenario ${
        SCENARIOS.map((s) => s.id).join("|")
      }|flood|all] ` +
        "[--readings N] [--devices N] [--rate N]" +
        (unknown.length ? `\nUnknown scenario: ${unknown.join(", ")}` : ""),
    );
    Deno.exit(2);
  }
  const external = Boolean(Deno.env.get("KAFKA_BROKERS") || Deno.env.get("MONGO_URL"));
  const results: RunResult[] = [];
  for (const id of ids) {
    const scenario = SCENARIOS.find((s) => s.id === id)!;
    if (scenario.needsLocalStack && external) {
      console.error(`skipping ${id}: it restarts services, and these are not the local stack`);
      continue;
    }
    console.error(
      `\n${scenario.title} — ${settings.readings} readings, ${settings.devices} devices`,
    );
    results.push(await runScenario(scenario, settings));
    const r = results.at(-1)!;
    console.error(`  => ${JSON.stringify(r.report)}`);
  }
  console.log(
    "\n| scenario | acked | stored | lost | dup | phantom | gaps | flag mism. | alert mism. | DLQ | longest stall | catch-up | restarts |",
  );
  console.log("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
  for (const r of results) {
    const p = r.report;
    console.log(
      `| ${r.scenario} | ${p.acknowledged} | ${p.stored} | ${p.lost} | ${p.duplicated} | ${p.phantom} | ${p.gaps} | ${p.flagMismatches} | ${p.alertMismatches} | ${r.deadLettered} | ${
        (r.longestStallMs / 1000).toFixed(1)
      } s | ${(r.catchUpMs / 1000).toFixed(1)} s | ${r.processorRestarts} |`,
    );
  }
  let floodFailed = 0;
  const floods = [
    {
      title: "8. API flood: concurrent add-sensor calls, a quarter with a wrong token, " +
        "rate limit raised so the cap is what stops them",
      options: { rateLimitPerMinute: 100_000, wrongTokens: true },
    },
    {
      title: "8b. API flood: the same calls, all with the valid token, at the default rate " +
        "limit (600 per minute)",
      options: { rateLimitPerMinute: 600, wrongTokens: false },
    },
  ];
  for (const { title, options } of flood ? floods : []) {
    console.error(`\n${title}`);
    const f = await apiFlood(Number(values.readings ?? 4000), options);
    const bad = f.serverErrors > 0 || f.sensorsRunning > f.cap || !f.healthyAfter;
    if (bad) floodFailed++;
    console.log(
      `\n${title}: ${f.requests} requests in ${(f.durationMs / 1000).toFixed(1)} s, statuses ${
        JSON.stringify(f.statuses)
      }, 5xx or errors ${f.serverErrors}, sensors running ${f.sensorsRunning} (cap ${f.cap}), ` +
        `healthy after: ${f.healthyAfter}`,
    );
  }
  const bad = results.reduce((n, r) => n + failures(r), 0) + floodFailed;
  const failedRuns = results.filter((r) => failures(r) > 0).length + floodFailed;
  const ranRuns = results.length + (flood ? floods.length : 0);
  console.log(`\n${ranRuns - failedRuns} passed, ${failedRuns} failed`);
  Deno.exit(bad > 0 ? 1 : 0);
}
