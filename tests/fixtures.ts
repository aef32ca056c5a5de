/**
 * Integration-test fixtures: the addresses of the real Kafka and
 * MongoDB-protocol servers (from KAFKA_BROKERS / MONGO_URL, else the local
 * stack), a preflight that names a missing service instead of timing out, and
 * per-test topics and databases that clean up after themselves.
 *
 * @module
 */
import { Kafka, logLevel } from "kafkajs";
import { type Db, MongoClient } from "mongodb";
import { probeKafka, probeMongo } from "../adapters/probe.ts";

export const KAFKA_BROKERS = Deno.env.get("KAFKA_BROKERS") || "127.0.0.1:9092";
export const MONGO_URL = Deno.env.get("MONGO_URL") || "mongodb://127.0.0.1:27017/";

let preflight: Promise<void> | undefined;

/** Fails fast, naming the service that is down and how to start it. */
export function requireServices(): Promise<void> {
  preflight ??= (async () => {
    const problems: string[] = [];
    await Promise.all([
      probeKafka(KAFKA_BROKERS, 5000).catch((e) =>
        problems.push(`Kafka is not reachable at ${KAFKA_BROKERS} (${e.message})`)
      ),
      probeMongo(MONGO_URL, 5000).catch((e) =>
        problems.push(`MongoDB/FerretDB is not reachable (${e.message})`)
      ),
    ]);
    if (problems.length > 0) {
      throw new Error(
        `${problems.join("; ")}: start the local stack with \`deno task stack:up\` ` +
          "(or run `deno task test`, which does it), or point KAFKA_BROKERS / MONGO_URL at running servers",
      );
    }
  })();
  return preflight;
}

/** A name no other test (or earlier run) uses. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${crypto.randomUUID().slice(0, 8)}`;
}

export function testKafka(clientId = "iot-test"): Kafka {
  return new Kafka({
    clientId,
    brokers: KAFKA_BROKERS.split(","),
    logLevel: logLevel.NOTHING,
    retry: { retries: 5, initialRetryTime: 100 },
  });
}

export interface TempTopic extends AsyncDisposable {
  readonly name: string;
}

/** Creates a topic for one test and deletes it afterwards. */
export async function tempTopic(prefix = "test", partitions = 3): Promise<TempTopic> {
  await requireServices();
  const name = uniqueName(prefix);
  const admin = testKafka().admin();
  await admin.connect();
  await admin.createTopics({
    topics: [{ topic: name, numPartitions: partitions }],
    waitForLeaders: true,
  });
  return {
    name,
    async [Symbol.asyncDispose]() {
      await admin.deleteTopics({ topics: [name] }).catch(() => {});
      await admin.disconnect();
    },
  };
}

export interface TempDb extends AsyncDisposable {
  readonly name: string;
  readonly db: Db;
  readonly client: MongoClient;
}

/** A database for one test, dropped afterwards. */
export async function tempDb(prefix = "test"): Promise<TempDb> {
  await requireServices();
  const name = uniqueName(prefix).replaceAll("-", "_").slice(0, 60);
  const client = new MongoClient(MONGO_URL, { serverSelectionTimeoutMS: 5000 });
  await client.connect();
  const db = client.db(name);
  return {
    name,
    db,
    client,
    async [Symbol.asyncDispose]() {
      await db.dropDatabase().catch(() => {});
      await client.close();
    },
  };
}

/** Polls `check` until it returns a value other than undefined, or fails after `timeoutMs`. */
export async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${last}` : ""}`);
}
