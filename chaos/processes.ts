/**
 * The processes a chaos run controls: the app (`main.ts`) in any role, spawned
 * one way and restarted the way a service manager would, and the local
 * Kafka + FerretDB stack, stopped and started through `stack/stack.ts`.
 *
 * @module
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { LogLevel } from "../adapters/log.ts";
import { LOG_LEVELS } from "../schemas/config.ts";

/** The checkout the harness runs from; the app is spawned from here. */
export const ROOT = fileURLToPath(new URL("../", import.meta.url));
/**
 * The services a run uses (KAFKA_BROKERS, MONGO_URL; the local stack by default) and where
 * `stack/stack.ts` keeps its state and the run its logs (STACK_DIR, as the stack script reads it).
 */
export function services() {
  const stackDir = Deno.env.get("STACK_DIR") ?? join(ROOT, ".stack");
  return {
    brokers: Deno.env.get("KAFKA_BROKERS") || "127.0.0.1:9092",
    mongoUrl: Deno.env.get("MONGO_URL") || "mongodb://127.0.0.1:27017/",
    stackDir,
    logDir: join(stackDir, "logs"),
  };
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A loopback TCP port nobody listens on right now. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

export interface SpawnOptions {
  /** Flags after `main.ts`; `--port` and `--log-level` are added by the harness. */
  readonly flags: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  /** stdout and stderr are appended here. */
  readonly log: string;
  readonly port: number;
  /** A folder the app may write (embedded mode's Deno KV file); none by default. */
  readonly writable?: string;
  readonly logLevel?: LogLevel;
}

/** The app's log level unless a scenario sets one: `CHAOS_LOG_LEVEL`, else `warn`. */
function logLevelFromEnv(): LogLevel {
  const level = Deno.env.get("CHAOS_LOG_LEVEL") ?? "warn";
  if ((LOG_LEVELS as readonly string[]).includes(level)) return level as LogLevel;
  throw new Error(`CHAOS_LOG_LEVEL must be one of ${LOG_LEVELS.join(", ")}, not "${level}"`);
}

/** The one way the harness starts the app: `main.ts` with these flags, output appended to a log. */
export function spawnApp(options: SpawnOptions): Deno.ChildProcess {
  const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
  const argv = [
    Deno.execPath(),
    "run",
    "--allow-net",
    "--allow-env",
    "--allow-read",
    "--allow-sys",
    ...(options.writable ? [`--allow-write=${options.writable}`] : []),
    "main.ts",
    ...options.flags,
    "--port",
    String(options.port),
    "--log-level",
    options.logLevel ?? logLevelFromEnv(),
  ];
  // `exec` so a signal sent to the child reaches Deno itself, not a shell.
  return new Deno.Command("sh", {
    args: ["-c", `exec ${argv.map(quote).join(" ")} >>${quote(options.log)} 2>&1`],
    cwd: ROOT,
    clearEnv: true,
    env: { ...options.env },
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
}

/** Child environment without the harness's own service addresses (for embedded mode). */
export function embeddedEnv(env: Readonly<Record<string, string>>): Record<string, string> {
  const { KAFKA_BROKERS: _k, MONGO_URL: _m, ...rest } = env;
  return rest;
}

/**
 * One app process, restarted whenever it exits on its own (as systemd or compose would), until
 * the harness kills it on purpose.
 */
export class AppProcess {
  readonly name: string;
  readonly port: number;
  readonly #options: Omit<SpawnOptions, "port">;
  #child: Deno.ChildProcess | undefined;
  #wanted = false;
  restarts = 0;
  /** Exit codes of the processes that exited on their own, in order. */
  readonly exitCodes: number[] = [];

  constructor(name: string, options: Omit<SpawnOptions, "port">) {
    this.name = name;
    this.port = freePort();
    this.#options = options;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get healthUrl(): string {
    return `${this.url}/health`;
  }

  get running(): boolean {
    return this.#wanted;
  }

  /** The pid of the current (or last) process; `spawnApp` execs, so it is Deno's own. */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  start() {
    this.#wanted = true;
    const child = spawnApp({ ...this.#options, port: this.port });
    this.#child = child;
    child.status.then(({ code }) => {
      if (this.#child !== child || !this.#wanted) return;
      this.exitCodes.push(code);
      this.restarts++;
      setTimeout(() => this.#wanted && this.#child === child && this.start(), 1000);
    });
  }

  signal(signal: Deno.Signal) {
    try {
      this.#child?.kill(signal);
    } catch { /* already gone */ }
  }

  /** Sends `signal` and waits for the exit; the process is not restarted. Resolves to its code. */
  async kill(signal: Deno.Signal = "SIGTERM"): Promise<number | undefined> {
    this.#wanted = false;
    const child = this.#child;
    if (!child) return undefined;
    try {
      child.kill(signal);
    } catch { /* already gone */ }
    return (await child.status).code;
  }

  /** Waits until `/health` answers 200. */
  async healthy(timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (
      !(await fetch(this.healthUrl).then(async (r) => {
        await r.body?.cancel();
        return r.ok;
      }, () => false))
    ) {
      if (Date.now() > deadline) {
        throw new Error(`${this.name} did not become healthy within ${timeoutMs / 1000} s`);
      }
      await sleep(250);
    }
  }

  /** The `stats` of `/health`, or undefined while the process does not answer. */
  async stats(): Promise<Record<string, Record<string, number>> | undefined> {
    try {
      const res = await fetch(this.healthUrl, { signal: AbortSignal.timeout(5000) });
      return (await res.json()).stats;
    } catch {
      return undefined;
    }
  }
}

// --------------------------------------------------------------- the stack

type Service = "kafka" | "ferretdb";

/**
 * Whether `brokers` and `mongoUrl` are the addresses `stack/stack.ts` serves with the
 * STACK_KAFKA_PORT / STACK_MONGO_PORT settings of `env` (defaults 9092 and 27017).
 */
export function isStackAddress(
  brokers: string,
  mongoUrl: string,
  env: Readonly<Record<string, string | undefined>>,
): boolean {
  const port = (name: string, fallback: number) => Number(env[name] || fallback);
  return brokers === `127.0.0.1:${port("STACK_KAFKA_PORT", 9092)}` &&
    mongoUrl.replace(/\/?$/, "/") === `mongodb://127.0.0.1:${port("STACK_MONGO_PORT", 27017)}/`;
}

/**
 * Whether KAFKA_BROKERS and MONGO_URL are the stack that `stack/stack.ts` runs from STACK_DIR
 * with the STACK_*_PORT settings — the only services a scenario may stop and start.
 */
export async function ownsStack(): Promise<boolean> {
  const { brokers, mongoUrl, stackDir } = services();
  if (!isStackAddress(brokers, mongoUrl, Deno.env.toObject())) return false;
  try {
    await Promise.all([Deno.stat(pidFile("kafka")), Deno.stat(pidFile("ferretdb"))]);
    // The broker this STACK_DIR last started must be the one at KAFKA_BROKERS.
    const props = await Deno.readTextFile(join(stackDir, "kafka", "server.properties"));
    return props.includes(`advertised.listeners=PLAINTEXT://${brokers}\n`);
  } catch {
    return false;
  }
}

function pidFile(service: Service): string {
  return join(services().stackDir, "run", `${service}.pid`);
}

/** `stack/stack.ts up`, or `down [service]`, on the harness's own stack. */
export async function stack(command: "up" | "down", service?: Service): Promise<void> {
  const args = ["run", "--allow-run", "--allow-read", "--allow-write", "--allow-env"];
  args.push("--allow-net", "--allow-sys", "stack/stack.ts", command);
  if (service) args.push(service);
  // The stack script skips any service whose address the environment already gives.
  const env = embeddedEnv(Deno.env.toObject());
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    clearEnv: true,
    env: { ...env, STACK_DIR: services().stackDir },
    stdin: "null",
  }).output();
  if (!out.success) {
    throw new Error(`Stack ${command} failed: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
}

/** Stops one service of the stack for `ms`, then starts the stack again. */
export function outage(service: Service, ms: number) {
  return async () => {
    await stack("down", service);
    await sleep(ms);
    await stack("up");
  };
}

/** SIGKILL of a stack service (no clean shutdown), by its pid file. */
export async function killService(service: Service): Promise<void> {
  const pid = Number(await Deno.readTextFile(pidFile(service)));
  Deno.kill(pid, "SIGKILL");
}
