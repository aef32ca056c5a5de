/**
 * The services a benchmark runs against. Uses KAFKA_BROKERS / MONGO_URL when
 * both are set; otherwise brings the local stack up through `stack/stack.ts`
 * (honouring STACK_KAFKA_PORT / STACK_MONGO_PORT) and, if this run started
 * it, stops it again on dispose. Each measurement gets its own topic, group
 * and database, removed afterwards with the tests' fixture
 * (`tests/fixtures.ts`: `testKafka`, `testProducer`, `removeResources`).
 *
 * @module
 */
import { MongoClient } from "mongodb";
import { fileURLToPath } from "node:url";
import { FERRETDB_VERSION, KAFKA_VERSION, settingsFromEnv } from "../stack/stack.ts";
import { serviceProblems } from "../tests/fixtures.ts";
import { ferretdbBackend } from "./store_cpu.ts";

const STACK_SCRIPT = fileURLToPath(new URL("../stack/stack.ts", import.meta.url));

export interface Services extends AsyncDisposable {
  readonly brokers: string;
  readonly mongoUrl: string;
  /** What the figures were measured against, for the results file. */
  readonly versions: { readonly kafka: string; readonly store: string };
}

/** Connects to the configured services or starts the local stack. */
export async function openServices(log: (line: string) => void): Promise<Services> {
  const env = Deno.env.toObject();
  const given = env.KAFKA_BROKERS && env.MONGO_URL;
  const brokers = env.KAFKA_BROKERS || `127.0.0.1:${env.STACK_KAFKA_PORT || "9092"}`;
  const mongoUrl = env.MONGO_URL || `mongodb://127.0.0.1:${env.STACK_MONGO_PORT || "27017"}/`;
  let startedStack = false;
  if (!given && !(await reachable(brokers, mongoUrl))) {
    log(`starting the local stack (Kafka ${brokers}, store ${mongoUrl})`);
    // Without the service variables `stack.ts up` starts both services on the STACK_* ports.
    const childEnv = { ...env };
    delete childEnv.KAFKA_BROKERS;
    delete childEnv.MONGO_URL;
    await stackCommand("up", childEnv);
    startedStack = true;
  } else if (!(await reachable(brokers, mongoUrl))) {
    throw new Error(`Services not reachable: Kafka ${brokers}, store ${mongoUrl}`);
  }
  // The stack's backend when this run uses the stack; a given MONGO_URL's from the FerretDB
  // process serving it on this machine, if one does.
  const backend = env.MONGO_URL
    ? await ferretdbBackend(mongoUrl)
    : settingsFromEnv(env).ferretBackend;
  const storeVersion = await serverVersion(mongoUrl, backend);
  return {
    brokers,
    mongoUrl,
    versions: { kafka: `Apache Kafka ${KAFKA_VERSION} (local stack)`, store: storeVersion },
    async [Symbol.asyncDispose]() {
      if (!startedStack) return;
      log("stopping the local stack this run started");
      await stackCommand("down", env).catch((e) => log(`stack down failed: ${e}`));
    },
  };
}

async function reachable(brokers: string, mongoUrl: string): Promise<boolean> {
  const problems = await serviceProblems({ brokers, mongoUrl }, { kafka: true, mongo: true });
  return problems.length === 0;
}

async function stackCommand(command: "up" | "down", env: Record<string, string>) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-run",
      "--allow-read",
      "--allow-write",
      "--allow-env",
      "--allow-net",
      "--allow-sys",
      STACK_SCRIPT,
      command,
    ],
    env,
    clearEnv: true,
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (!out.success) throw new Error(`stack ${command} failed (exit ${out.code})`);
}

/** "FerretDB v1.24.2" or "MongoDB 7.0.x", as the server reports itself. */
async function serverVersion(mongoUrl: string, backend: string | undefined): Promise<string> {
  const client = new MongoClient(mongoUrl, { serverSelectionTimeoutMS: 5000 });
  try {
    const info = await client.db("admin").command({ buildInfo: 1 });
    // FerretDB reports a MongoDB version but adds its Go build environment.
    const ferret = info.ferretdbVersion ?? info.ferretdb?.version ??
      (info.buildEnvironment?.["go.version"] ? FERRETDB_VERSION : undefined);
    if (!ferret) return `MongoDB ${info.version}`;
    return backend ? `FerretDB ${ferret} (${backend} backend)` : `FerretDB ${ferret}`;
  } catch {
    return `FerretDB ${FERRETDB_VERSION} (assumed)`;
  } finally {
    await client.close();
  }
}

/** A name no other run uses (topics, groups, databases). */
export function runName(prefix: string): string {
  return `bench-${prefix}-${Date.now().toString(36)}-${crypto.randomUUID().slice(0, 6)}`;
}
