/**
 * The local service stack: a single-node Apache Kafka broker (KRaft) run from
 * the broker jars on Maven Central, and FerretDB (MongoDB wire protocol)
 * built with the Go toolchain, storing into a PostgreSQL server of the stack's
 * own or into SQLite files (STACK_FERRETDB_BACKEND, docs/local-stack.md).
 * No Docker needed.
 *
 *   deno task stack:up       fetch (first time), start, health-check
 *   deno task stack:status   running / healthy per service
 *   deno task stack:down     stop every service by its pid file
 *
 * `up` only starts a service whose address is not already given by the
 * environment (KAFKA_BROKERS / MONGO_URL), so the test task can call it
 * unconditionally. Everything lives on loopback.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { probeKafka, probeMongo } from "../adapters/probe.ts";

export const KAFKA_VERSION = "4.1.1";
export const FERRETDB_VERSION = "v1.24.2";

const STACK_DIR = fileURLToPath(new URL("./", import.meta.url));
const ROOT = join(STACK_DIR, "..");
const STATE = Deno.env.get("STACK_DIR") ?? join(ROOT, ".stack");
const CACHE = join(
  Deno.env.get("XDG_CACHE_HOME") ?? join(Deno.env.get("HOME") ?? "/tmp", ".cache"),
  "iot-pipeline-stack",
);

type Service = "kafka" | "ferretdb" | "postgres";
const SERVICES: readonly Service[] = ["kafka", "ferretdb", "postgres"];

/** Where FerretDB keeps the documents. */
export type FerretBackend = "sqlite" | "pg";
export const FERRET_BACKENDS: readonly FerretBackend[] = ["sqlite", "pg"];

export interface StackSettings {
  readonly kafkaPort: number;
  readonly kafkaControllerPort: number;
  readonly mongoPort: number;
  /** STACK_FERRETDB_BACKEND. */
  readonly ferretBackend: FerretBackend;
  /** The stack's own PostgreSQL (backend `pg` only), on loopback. */
  readonly pgPort: number;
  /** STACK_PG_BINDIR: where `postgres` and `initdb` are, instead of the newest Debian install. */
  readonly pgBinDir: string | undefined;
  readonly healthTimeoutMs: number;
}

export class StackError extends Error {
  override name = "StackError";
}

/** Resolves the STACK_* settings, reporting every bad value at once. */
export function settingsFromEnv(env: Readonly<Record<string, string | undefined>>): StackSettings {
  const problems: string[] = [];
  const port = (name: string, fallback: number) => {
    const raw = env[name];
    if (raw === undefined || raw === "") return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 1 || n > 65535) {
      problems.push(`${name}: "${raw}" is not a TCP port`);
    }
    return n;
  };
  const settings: StackSettings = {
    kafkaPort: port("STACK_KAFKA_PORT", 9092),
    kafkaControllerPort: port("STACK_KAFKA_CONTROLLER_PORT", 9093),
    mongoPort: port("STACK_MONGO_PORT", 27017),
    ferretBackend: backend(env.STACK_FERRETDB_BACKEND, problems),
    pgPort: port("STACK_PG_PORT", 54320),
    pgBinDir: env.STACK_PG_BINDIR || undefined,
    healthTimeoutMs: port("STACK_HEALTH_TIMEOUT_S", 90) * 1000,
  };
  const ports = [settings.kafkaPort, settings.kafkaControllerPort, settings.mongoPort];
  if (settings.ferretBackend === "pg") ports.push(settings.pgPort);
  if (problems.length === 0 && new Set(ports).size !== ports.length) {
    problems.push(`the stack's ports must differ: "${ports.join(", ")}"`);
  }
  if (problems.length > 0) {
    throw new StackError(`Invalid stack settings: ${problems.join("; ")}`);
  }
  return settings;
}

/**
 * PostgreSQL since 2026-12-01: on SQLite FerretDB 1.24 never uses its `_id` index, so every update
 * by `_id` scans its collection, and a pipeline whose devices raise and clear alerts slows as the
 * alerts accumulate (3 000 readings/s, 1 % of devices flapping: p99 1–4 s and a growing backlog
 * within 3 minutes in 3 of 3 runs; on PostgreSQL 200–300 ms until a journal fold, 579 ms over the
 * 3 minutes with the fold paced: docs/local-stack.md#choosing-the-ferretdb-backend).
 */
export const DEFAULT_FERRET_BACKEND: FerretBackend = "pg";

function backend(raw: string | undefined, problems: string[]): FerretBackend {
  if (raw === undefined || raw === "") return DEFAULT_FERRET_BACKEND;
  const value = raw.trim().toLowerCase();
  if (value === "postgres" || value === "postgresql") return "pg";
  if ((FERRET_BACKENDS as readonly string[]).includes(value)) return value as FerretBackend;
  problems.push(`STACK_FERRETDB_BACKEND: "${raw}" is not one of ${FERRET_BACKENDS.join(", ")}`);
  return DEFAULT_FERRET_BACKEND;
}

function say(message: string) {
  console.error(`[stack] ${message}`);
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}

/** Runs a command to completion; on failure the error carries its output. */
async function run(
  cmd: string,
  args: string[],
  opts: { cwd?: string; env?: Record<string, string> } = {},
): Promise<string> {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(cmd, { args, ...opts, stdin: "null" }).output();
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) throw missingTool(cmd);
    throw err;
  }
  if (!out.success) {
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    throw new StackError(`Command failed: ${cmd} ${args.join(" ")}\n${text.slice(-4000)}`);
  }
  return new TextDecoder().decode(out.stdout);
}

function runArgv([cmd, ...args]: string[]): Promise<string> {
  return run(cmd!, args);
}

function missingTool(cmd: string): StackError {
  const hint: Record<string, string> = {
    java: "install a Java 17+ runtime (e.g. `apt-get install openjdk-17-jre-headless`)",
    mvn: "install Apache Maven (e.g. `apt-get install maven`)",
    go: "install Go 1.22+ (https://go.dev/doc/install)",
    "apt-get": "install PostgreSQL 13+ (Debian/Ubuntu package `postgresql`) or set " +
      "STACK_PG_BINDIR to the folder holding `postgres` and `initdb`",
  };
  return new StackError(
    `"${cmd}" was not found on PATH: ${
      hint[cmd] ?? "install it"
    }, or run Kafka and MongoDB yourself ` +
      "(compose.yaml) and set KAFKA_BROKERS and MONGO_URL",
  );
}

// ---------------------------------------------------------------- processes

function pidFile(service: Service) {
  return join(STATE, "run", `${service}.pid`);
}

/** The pid from the pid file if that process is alive and is ours. */
async function runningPid(service: Service): Promise<number | undefined> {
  let pid: number;
  try {
    pid = Number((await Deno.readTextFile(pidFile(service))).trim());
  } catch {
    return undefined;
  }
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  // `ps` rather than /proc: Deno only lets --allow-all read other processes' /proc.
  const out = await new Deno.Command("ps", { args: ["-p", String(pid), "-o", "stat=,args="] })
    .output();
  const [stat = "", ...args] = new TextDecoder().decode(out.stdout).trim().split(/\s+/);
  const marker = { kafka: "kafka.Kafka", ferretdb: "ferretdb", postgres: "postgres" }[service];
  // A killed process nobody reaped yet (a zombie, state Z) is not running.
  return out.success && !stat.startsWith("Z") && args.join(" ").includes(marker) ? pid : undefined;
}

/** Starts a detached background process whose output goes to a log file. */
async function spawnDetached(service: Service, argv: string[], cwd: string): Promise<number> {
  const log = join(STATE, "logs", `${service}.out`);
  const quoted = argv.map((a) => `'${a.replaceAll("'", `'\\''`)}'`).join(" ");
  const pid = Number(
    (await run("sh", ["-c", `setsid ${quoted} >>'${log}' 2>&1 </dev/null & echo $!`], { cwd }))
      .trim(),
  );
  await Deno.writeTextFile(pidFile(service), `${pid}\n`);
  return pid;
}

async function stopPid(service: Service): Promise<boolean> {
  const pid = await runningPid(service);
  if (pid === undefined) return false;
  // PostgreSQL's SIGTERM waits for every client to leave; SIGINT is its "fast" shutdown.
  Deno.kill(pid, service === "postgres" ? "SIGINT" : "SIGTERM");
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline && (await runningPid(service)) === pid) {
    await new Promise((r) => setTimeout(r, 200));
  }
  if ((await runningPid(service)) === pid) Deno.kill(pid, "SIGKILL");
  await Deno.remove(pidFile(service)).catch(() => {});
  return true;
}

async function waitHealthy(
  name: string,
  probe: () => Promise<void>,
  timeoutMs: number,
  stillRunning: () => Promise<boolean>,
  logPath: string,
) {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      await probe();
      return;
    } catch (err) {
      last = err;
    }
    if (!(await stillRunning())) {
      throw new StackError(`${name} exited during start-up: see ${logPath}`);
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new StackError(
    `${name} did not become healthy within ${timeoutMs / 1000}s: ${String(last)} (log: ${logPath})`,
  );
}

// -------------------------------------------------------------------- kafka

async function kafkaClasspath(): Promise<string> {
  const libs = join(CACHE, `kafka-${KAFKA_VERSION}`, "libs");
  if (!(await exists(join(libs, `kafka_2.13-${KAFKA_VERSION}.jar`)))) {
    say(`resolving Apache Kafka ${KAFKA_VERSION} broker jars with Maven (first run only)`);
    await installAtomically(libs, async (work) => {
      const out = join(work, "libs");
      await run("mvn", [
        "-q",
        "-B",
        "-f",
        join(STACK_DIR, "kafka", "pom.xml"),
        `-Dkafka.version=${KAFKA_VERSION}`,
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        `-DoutputDirectory=${out}`,
      ]);
      return out;
    });
  }
  return `${libs}/*`;
}

/**
 * Builds into a folder of this run's own (`build` gets it and returns the path
 * of what it made inside), then moves the result to `target` in one rename.
 * Two first-time `stack:up` runs at once therefore never see or delete each
 * other's half-made files: the first rename wins, and a run that finds
 * `target` already there keeps it and throws its own copy away.
 */
export async function installAtomically(
  target: string,
  build: (workDir: string) => Promise<string>,
): Promise<void> {
  await Deno.mkdir(dirname(target), { recursive: true });
  const work = await Deno.makeTempDir({ dir: dirname(target), prefix: ".build-" });
  try {
    const made = await build(work);
    try {
      await Deno.rename(made, target);
    } catch (err) {
      // Another run installed it first (a folder cannot replace a non-empty one).
      if (!(await exists(target))) throw err;
    }
  } finally {
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}

function kafkaProperties(s: StackSettings, dataDir: string): string {
  return [
    "# Written by stack/stack.ts; single-node KRaft broker + controller on loopback",
    "process.roles=broker,controller",
    "node.id=1",
    `controller.quorum.voters=1@127.0.0.1:${s.kafkaControllerPort}`,
    `listeners=PLAINTEXT://127.0.0.1:${s.kafkaPort},CONTROLLER://127.0.0.1:${s.kafkaControllerPort}`,
    `advertised.listeners=PLAINTEXT://127.0.0.1:${s.kafkaPort}`,
    "controller.listener.names=CONTROLLER",
    "inter.broker.listener.name=PLAINTEXT",
    "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
    `log.dirs=${dataDir}`,
    "num.partitions=1",
    "offsets.topic.replication.factor=1",
    "offsets.topic.num.partitions=6",
    "transaction.state.log.replication.factor=1",
    "transaction.state.log.min.isr=1",
    "share.coordinator.state.topic.replication.factor=1",
    "share.coordinator.state.topic.min.isr=1",
    // Tests create many short-lived groups; don't make each wait 3 s to rebalance.
    "group.initial.rebalance.delay.ms=0",
    "auto.create.topics.enable=true",
    "",
  ].join("\n");
}

const LOG4J2 = (logFile: string) =>
  [
    "status = warn",
    "appender.file.type = RollingFile",
    "appender.file.name = FILE",
    `appender.file.fileName = ${logFile}`,
    `appender.file.filePattern = ${logFile}.%i`,
    "appender.file.layout.type = PatternLayout",
    "appender.file.layout.pattern = [%d] %p %m (%c)%n",
    "appender.file.policies.type = Policies",
    "appender.file.policies.size.type = SizeBasedTriggeringPolicy",
    "appender.file.policies.size.size = 20MB",
    "appender.file.strategy.type = DefaultRolloverStrategy",
    "appender.file.strategy.max = 3",
    "rootLogger.level = INFO",
    "rootLogger.appenderRef.file.ref = FILE",
    "logger.kafka.name = kafka",
    "logger.kafka.level = INFO",
    "logger.apache.name = org.apache.kafka",
    "logger.apache.level = WARN",
    "",
  ].join("\n");

async function kafkaUp(s: StackSettings): Promise<string> {
  const brokers = `127.0.0.1:${s.kafkaPort}`;
  if (await runningPid("kafka")) {
    await probeKafka(brokers, 5000);
    return `Kafka ${KAFKA_VERSION} already running on ${brokers}`;
  }
  const java = Deno.env.get("JAVA_HOME") ? join(Deno.env.get("JAVA_HOME")!, "bin", "java") : "java";
  await run(java, ["-version"]);
  const cp = await kafkaClasspath();
  const home = join(STATE, "kafka");
  const dataDir = join(home, "data");
  await Deno.mkdir(dataDir, { recursive: true });
  const props = join(home, "server.properties");
  await Deno.writeTextFile(props, kafkaProperties(s, dataDir));
  const log4j = join(home, "log4j2.properties");
  await Deno.writeTextFile(log4j, LOG4J2(join(STATE, "logs", "kafka.log")));
  const jvm = ["-Xms256m", "-Xmx1g", `-Dlog4j2.configurationFile=${log4j}`, "-cp", cp];
  if (!(await exists(join(dataDir, "meta.properties")))) {
    const clusterId = (await run(java, [...jvm, "kafka.tools.StorageTool", "random-uuid"])).trim();
    await run(java, [...jvm, "kafka.tools.StorageTool", "format", "-t", clusterId, "-c", props]);
  }
  const started = Date.now();
  await spawnDetached("kafka", [java, ...jvm, "kafka.Kafka", props], home);
  await waitHealthy(
    "Kafka",
    () => probeKafka(brokers, 3000),
    s.healthTimeoutMs,
    async () => (await runningPid("kafka")) !== undefined,
    join(STATE, "logs", "kafka.log"),
  );
  return `Kafka ${KAFKA_VERSION} started on ${brokers} in ${Date.now() - started} ms`;
}

// ----------------------------------------------------------------- ferretdb

async function ferretBinary(): Promise<string> {
  const bin = join(CACHE, `ferretdb-${FERRETDB_VERSION}`, "ferretdb");
  if (await exists(bin)) return bin;
  say(`building FerretDB ${FERRETDB_VERSION} with Go (first run only)`);
  const mod = `github.com/FerretDB/FerretDB@${FERRETDB_VERSION}`;
  const info = JSON.parse(await run("go", ["mod", "download", "-json", mod]));
  // The module zip lacks build/version/version.txt, which FerretDB requires at
  // init (a plain `go install` binary panics), so build from a writable copy,
  // in a folder of this run's own: another first-time run may be building too.
  await installAtomically(bin, async (work) => {
    const src = join(work, "src");
    await run("cp", ["-R", info.Dir, src]);
    await run("chmod", ["-R", "u+w", src]);
    await Deno.writeTextFile(join(src, "build", "version", "version.txt"), `${FERRETDB_VERSION}\n`);
    await run("go", ["build", "-o", join(work, "ferretdb"), "./cmd/ferretdb"], { cwd: src });
    return join(work, "ferretdb");
  });
  return bin;
}

/**
 * SQLite's `synchronous=NORMAL` instead of its default FULL (FerretDB adds WAL mode, a busy timeout
 * and no auto-vacuum itself). In WAL mode NORMAL does not fsync at every commit: a commit survives a
 * crash of FerretDB, and may be lost only with the machine (an OS crash, a power loss), like a
 * standalone MongoDB's default acknowledgement before its journal flush, and like this stack's
 * Kafka, which leaves flushing to the OS. SQLite writes one transaction at a time (FerretDB commits
 * every 100 documents), and with an fsync at each commit the readings' inserts waited longer
 * behind the other writes: emit → stored p99 at 3 000 readings/s 812–1 485 ms with FULL, 312–616
 * ms with NORMAL (bench/RESULTS.md).
 */
const SQLITE_PRAGMAS = "_pragma=synchronous(normal)";

/** FerretDB's command line for the chosen backend (`pgUrl` only for `pg`). */
export function ferretArgs(
  bin: string,
  s: StackSettings,
  paths: { home: string; pgUrl: string },
): string[] {
  const store = s.ferretBackend === "pg"
    ? ["--handler=pg", `--postgresql-url=${paths.pgUrl}`]
    : ["--handler=sqlite", `--sqlite-url=file:${join(paths.home, "data")}/?${SQLITE_PRAGMAS}`];
  return [
    bin,
    ...store,
    `--state-dir=${paths.home}`,
    `--listen-addr=127.0.0.1:${s.mongoPort}`,
    "--debug-addr=-",
    "--telemetry=disable",
    "--log-level=warn",
  ];
}

async function ferretUp(s: StackSettings): Promise<string> {
  const url = `mongodb://127.0.0.1:${s.mongoPort}/`;
  const backendFile = join(STATE, "run", "ferretdb.backend");
  if (await runningPid("ferretdb")) {
    await probeMongo(url, 5000);
    // A stack started before the backend was configurable ran SQLite.
    const running = (await Deno.readTextFile(backendFile).catch(() => "sqlite")).trim();
    if (running !== s.ferretBackend) {
      say(
        `FerretDB is running with the "${running}" backend, not "${s.ferretBackend}": ` +
          "run `deno task stack:down` first to switch",
      );
    }
    // A newer table setup reaches a stack started by an older checkout.
    if (running === "pg") await prepareDatabase(s);
    return `FerretDB ${FERRETDB_VERSION} (${running}) already running on ${url}`;
  }
  // Both are slow only the first time; PostgreSQL must be up before FerretDB starts.
  const [bin, pg] = await Promise.all([
    ferretBinary(),
    s.ferretBackend === "pg" ? postgresUp(s) : undefined,
  ]);
  if (pg) say(pg.message);
  const home = join(STATE, "ferretdb");
  await Deno.mkdir(join(home, "data"), { recursive: true });
  const started = Date.now();
  await spawnDetached(
    "ferretdb",
    ferretArgs(bin, s, { home, pgUrl: pg?.url ?? "" }),
    home,
  );
  await Deno.writeTextFile(backendFile, `${s.ferretBackend}\n`);
  await waitHealthy(
    "FerretDB",
    () => probeMongo(url, 2000),
    s.healthTimeoutMs,
    async () => (await runningPid("ferretdb")) !== undefined,
    join(STATE, "logs", "ferretdb.out"),
  );
  return `FerretDB ${FERRETDB_VERSION} (${s.ferretBackend} backend) started on ${url} in ${
    Date.now() - started
  } ms`;
}

// ----------------------------------------------------------------- postgres

/** The PostgreSQL role and database FerretDB uses (trust auth, loopback only). */
const PG_ROLE = "ferretdb";
const PG_DATABASE = "ferretdb";

/** The URL FerretDB connects to. */
export function postgresUrl(s: StackSettings): string {
  return `postgres://${PG_ROLE}@127.0.0.1:${s.pgPort}/${PG_DATABASE}?pool_max_conns=${FERRETDB_PG_POOL}`;
}

/**
 * FerretDB's pool of PostgreSQL connections. With its default pool (50 connections here) FerretDB
 * 1.24 stopped answering under the pipeline's live load at 10 000 readings/s in 2 of 2 runs, every
 * pooled connection idle; with 150 it ran the same load (bench/RESULTS.md). Below the server's
 * `max_connections` (`postgresArgs()`), which leaves room for `psql` and the stack's own checks.
 */
const FERRETDB_PG_POOL = 150;

/** `initdb`'s arguments: a superuser named after FerretDB, trusted on loopback only. */
export function initdbArgs(dataDir: string): string[] {
  return [
    "-D",
    dataDir,
    `--username=${PG_ROLE}`,
    "--auth=trust",
    "--encoding=UTF8",
    "--locale=C",
  ];
}

/**
 * The postmaster's arguments. TCP on loopback only (no Unix socket, so nothing
 * is shared with a system cluster). `synchronous_commit=off` matches what a
 * standalone MongoDB acknowledges (`w: 1`, journal flushed every 100 ms): a
 * crash can lose the last fraction of a second, never corrupt; fsync stays on.
 * `plan_cache_mode=force_custom_plan`: FerretDB filters `_jsonb->$1 @> $2`
 * with the key as a parameter, and only a custom plan (the key inlined) can
 * use the `_id` index of `TABLE_SETUP_SQL`; a cached generic plan scans.
 */
export function postgresArgs(bin: string, s: StackSettings, dataDir: string): string[] {
  const settings = {
    listen_addresses: "127.0.0.1",
    port: String(s.pgPort),
    unix_socket_directories: "",
    synchronous_commit: "off",
    plan_cache_mode: "force_custom_plan",
    max_connections: "200",
    shared_buffers: "128MB",
    log_min_messages: "warning",
  };
  return [bin, "-D", dataDir, ...Object.entries(settings).flatMap(([k, v]) => ["-c", `${k}=${v}`])];
}

/**
 * Prepares every table FerretDB creates, with an event trigger (`up` also sets the statistics of
 * tables made before the trigger did):
 *
 * - FerretDB 1.24 gives each collection's table a btree index on `_jsonb->'_id'` but filters an
 *   `_id` with `@>`, which a btree cannot answer, so every `_id` equality (each lookup, update and
 *   upsert) scans the table. The trigger adds a GIN index that `@>` can use.
 * - Autovacuum's ANALYZE of a table computed statistics of its one column, the whole document as
 *   `jsonb`: 3.2 s of a core per ANALYZE of the readings (100 000 of them, a 30 000-row sample),
 *   repeated each time the table grew by a tenth, which stalled everything else on a 2-core
 *   machine (bench/RESULTS.md). FerretDB's filters are `@>` on that column, estimated without its
 *   statistics; the `_id` lookups still choose the index. The column's statistics target is 0:
 *   ANALYZE then takes 0.4 s.
 *
 * Invisible to MongoDB clients (FerretDB lists indexes from its own metadata) and dropped with the
 * collection.
 */
export const TABLE_SETUP_SQL = `
CREATE OR REPLACE FUNCTION iot_stack_prepare_table() RETURNS event_trigger
LANGUAGE plpgsql AS $$
DECLARE created record;
BEGIN
  FOR created IN SELECT objid, object_identity FROM pg_event_trigger_ddl_commands()
    WHERE command_tag = 'CREATE TABLE' AND object_type = 'table'
  LOOP
    IF created.object_identity NOT LIKE '%._ferretdb_%' AND EXISTS (
      SELECT 1 FROM pg_attribute
      WHERE attrelid = created.objid AND attname = '_jsonb' AND NOT attisdropped
    ) THEN
      EXECUTE format('CREATE INDEX ON %s USING gin ((_jsonb -> ''_id'') jsonb_path_ops)',
        created.object_identity);
      EXECUTE format('ALTER TABLE %s ALTER COLUMN _jsonb SET STATISTICS 0',
        created.object_identity);
    END IF;
  END LOOP;
END $$;
DROP EVENT TRIGGER IF EXISTS iot_stack_index_ids;
DROP FUNCTION IF EXISTS iot_stack_index_ids();
DROP EVENT TRIGGER IF EXISTS iot_stack_prepare_table;
CREATE EVENT TRIGGER iot_stack_prepare_table ON ddl_command_end WHEN TAG IN ('CREATE TABLE')
  EXECUTE FUNCTION iot_stack_prepare_table();
DO $$
DECLARE t record;
BEGIN
  FOR t IN SELECT a.attrelid::regclass AS name FROM pg_attribute a
    JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE a.attname = '_jsonb' AND NOT a.attisdropped AND c.relkind = 'r'
      AND a.attstattarget IS DISTINCT FROM 0 AND left(c.relname, 10) <> '_ferretdb_'
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  LOOP
    EXECUTE format('ALTER TABLE %s ALTER COLUMN _jsonb SET STATISTICS 0', t.name);
  END LOOP;
END $$;
`;

/** Runs `argv` as `user` (PostgreSQL refuses to run as root) when there is one. */
export function asUser(user: string | undefined, argv: string[]): string[] {
  if (user === undefined) return argv;
  return ["setpriv", `--reuid=${user}`, `--regid=${user}`, "--init-groups", "--", ...argv];
}

/** The folder with `postgres` and `initdb`: STACK_PG_BINDIR, else the newest Debian one. */
async function postgresBinDir(s: StackSettings): Promise<string> {
  if (s.pgBinDir) return s.pgBinDir;
  const found = async () => {
    const versions: number[] = [];
    if (!(await exists("/usr/lib/postgresql"))) return undefined;
    for await (const e of Deno.readDir("/usr/lib/postgresql")) {
      if (await exists(join("/usr/lib/postgresql", e.name, "bin", "postgres"))) {
        versions.push(Number(e.name));
      }
    }
    const newest = versions.filter(Number.isFinite).sort((a, b) => b - a)[0];
    return newest === undefined ? undefined : join("/usr/lib/postgresql", String(newest), "bin");
  };
  const dir = await found();
  if (dir) return dir;
  if (Deno.uid() !== 0) throw missingTool("apt-get");
  say("installing PostgreSQL with apt-get (first run only)");
  // The stack runs its own server: keep the package from creating and starting one on 5432.
  await Deno.mkdir("/etc/postgresql-common/createcluster.d", { recursive: true });
  await Deno.writeTextFile(
    "/etc/postgresql-common/createcluster.d/iot-pipeline-stack.conf",
    "# Written by iot-pipeline's stack/stack.ts, which runs a server of its own\n" +
      "create_main_cluster = false\n",
  );
  const env = { DEBIAN_FRONTEND: "noninteractive" };
  await run("apt-get", ["update", "-qq"], { env });
  await run("apt-get", ["install", "-y", "-qq", "--no-install-recommends", "postgresql"], { env });
  const installed = await found();
  if (!installed) throw new StackError("PostgreSQL was installed but no /usr/lib/postgresql/*/bin");
  return installed;
}

/**
 * The OS user the server runs as (`postgres` when we are root) and its data
 * folder: `.stack/postgres/data`, unless that user cannot reach it (a clone in
 * a private folder such as `mktemp -d`), then a folder in that user's home
 * named after the state folder.
 */
async function postgresPlace(): Promise<{ user?: string; dataDir: string }> {
  const preferred = join(STATE, "postgres", "data");
  if (Deno.uid() !== 0) return { dataDir: preferred };
  const user = "postgres";
  const entry = (await run("getent", ["passwd", user]).catch(() => "")).trim();
  if (entry === "") {
    await run("useradd", [
      "--system",
      "--home-dir",
      "/var/lib/postgresql",
      "--shell",
      "/bin/false",
      user,
    ]);
  }
  await Deno.mkdir(join(STATE, "postgres"), { recursive: true });
  const reachable = await runArgv(asUser(user, ["test", "-x", join(STATE, "postgres")])).then(
    () => true,
    () => false,
  );
  if (reachable) return { user, dataDir: preferred };
  const home = (await run("getent", ["passwd", user])).trim().split(":")[5] ||
    "/var/lib/postgresql";
  const hash = new Uint8Array(
    await crypto.subtle.digest("SHA-256", new TextEncoder().encode(STATE)),
  );
  const id = Array.from(hash.slice(0, 6), (b) => b.toString(16).padStart(2, "0")).join("");
  const dataDir = join(home, "iot-pipeline-stack", id, "data");
  say(`the "${user}" user cannot reach ${STATE}: PostgreSQL data in ${dataDir}`);
  return { user, dataDir };
}

/**
 * Runs `sql` in the stack's PostgreSQL database `db` with its `psql`, as FerretDB's role; answers
 * the rows unaligned, one per line.
 */
export async function stackSql(s: StackSettings, db: string, sql: string): Promise<string> {
  const binDir = await postgresBinDir(s);
  return await run(join(binDir, "psql"), [
    "-h",
    "127.0.0.1",
    "-p",
    String(s.pgPort),
    "-U",
    PG_ROLE,
    "-d",
    db,
    "-v",
    "ON_ERROR_STOP=1",
    "-tAc",
    sql,
  ]);
}

/**
 * FerretDB's database and `TABLE_SETUP_SQL`, at every `up`, also of servers already running.
 */
async function prepareDatabase(s: StackSettings): Promise<void> {
  const found = await stackSql(
    s,
    "postgres",
    `SELECT 1 FROM pg_database WHERE datname = '${PG_DATABASE}'`,
  );
  if (found.trim() !== "1") await stackSql(s, "postgres", `CREATE DATABASE ${PG_DATABASE}`);
  await stackSql(s, PG_DATABASE, TABLE_SETUP_SQL);
}

async function postgresUp(s: StackSettings): Promise<{ url: string; message: string }> {
  const url = postgresUrl(s);
  const binDir = await postgresBinDir(s);
  const ready = () =>
    run(join(binDir, "pg_isready"), ["-q", "-h", "127.0.0.1", "-p", String(s.pgPort), "-t", "2"])
      .then(() => {});
  if (await runningPid("postgres")) {
    await ready();
    await prepareDatabase(s);
    return { url, message: `PostgreSQL already running on 127.0.0.1:${s.pgPort}` };
  }
  const { user, dataDir } = await postgresPlace();
  const started = Date.now();
  if (!(await exists(join(dataDir, "PG_VERSION")))) {
    // Only the data folder is private: the server user must be able to pass through its parents.
    await Deno.mkdir(dirname(dataDir), { recursive: true });
    await Deno.mkdir(dataDir, { recursive: true, mode: 0o700 });
    if (user) await run("chown", ["-R", `${user}:${user}`, dirname(dataDir)]);
    await runArgv(asUser(user, [join(binDir, "initdb"), ...initdbArgs(dataDir)]));
  }
  const argv = asUser(user, postgresArgs(join(binDir, "postgres"), s, dataDir));
  await spawnDetached("postgres", argv, dirname(dataDir));
  await waitHealthy(
    "PostgreSQL",
    ready,
    s.healthTimeoutMs,
    async () => (await runningPid("postgres")) !== undefined,
    join(STATE, "logs", "postgres.out"),
  );
  await prepareDatabase(s);
  return {
    url,
    message: `PostgreSQL started on 127.0.0.1:${s.pgPort} (data ${dataDir}) in ${
      Date.now() - started
    } ms`,
  };
}

// ----------------------------------------------------------------- commands

async function up(s: StackSettings) {
  await Deno.mkdir(join(STATE, "run"), { recursive: true });
  await Deno.mkdir(join(STATE, "logs"), { recursive: true });
  const t0 = Date.now();
  // Each service is skipped when the environment already points elsewhere.
  const jobs: Promise<string>[] = [];
  if (Deno.env.get("KAFKA_BROKERS")) say(`KAFKA_BROKERS is set: not starting a local Kafka`);
  else jobs.push(kafkaUp(s));
  if (Deno.env.get("MONGO_URL")) say(`MONGO_URL is set: not starting a local FerretDB`);
  else jobs.push(ferretUp(s));
  const results = await Promise.allSettled(jobs);
  let failed = false;
  for (const r of results) {
    if (r.status === "fulfilled") say(r.value);
    else {
      failed = true;
      say(r.reason instanceof StackError ? r.reason.message : String(r.reason));
    }
  }
  if (failed) Deno.exit(1);
  say(`ready in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}

async function down(only?: string) {
  // PostgreSQL after FerretDB, its only client.
  for (const service of SERVICES) {
    if (only && only !== service) continue;
    say((await stopPid(service)) ? `${service} stopped` : `${service} was not running`);
  }
}

async function status(s: StackSettings) {
  let healthy = true;
  const check = async (service: Service, probe: () => Promise<void>) => {
    const pid = await runningPid(service);
    let health = "not running";
    if (pid !== undefined) {
      try {
        await probe();
        health = "healthy";
      } catch (err) {
        health = `unhealthy: ${(err as Error).message}`;
      }
    }
    if (health !== "healthy") healthy = false;
    say(`${service}: ${pid ? `pid ${pid}, ` : ""}${health}`);
  };
  await check("kafka", () => probeKafka(`127.0.0.1:${s.kafkaPort}`, 3000));
  await check("ferretdb", () => probeMongo(`mongodb://127.0.0.1:${s.mongoPort}/`, 3000));
  if (s.ferretBackend === "pg" || (await runningPid("postgres")) !== undefined) {
    await check("postgres", async () => {
      const binDir = await postgresBinDir(s);
      await run(join(binDir, "pg_isready"), ["-q", "-h", "127.0.0.1", "-p", String(s.pgPort)]);
    });
  }
  if (!healthy) Deno.exit(3);
}

if (import.meta.main) {
  const { positionals } = parseArgs({ args: Deno.args, allowPositionals: true });
  try {
    const s = settingsFromEnv(Deno.env.toObject());
    switch (positionals[0]) {
      case "up":
        await up(s);
        break;
      case "down":
        if (positionals[1] && !(SERVICES as readonly string[]).includes(positionals[1])) {
          console.error(`Usage: deno task stack:down [${SERVICES.join("|")}]`);
          Deno.exit(2);
        }
        await down(positionals[1]);
        break;
      case "status":
        await status(s);
        break;
      default:
        console.error("Usage: deno task stack:up | stack:down | stack:status");
        Deno.exit(2);
    }
  } catch (err) {
    say(err instanceof StackError ? err.message : String(err));
    Deno.exit(1);
  }
  // kafkajs / mongodb may leave sockets lingering; the job is done.
  Deno.exit(0);
}
