/**
 * Runs the real program in-process for a test, with its own topic, consumer
 * group and database, against the real Kafka and MongoDB-protocol servers;
 * disposing it stops the app and removes the topic and database.
 *
 * @module
 */
import { type App, start } from "../main.ts";
import { type Config, parseConfig } from "../schemas/config.ts";
import { silentLogger } from "../adapters/log.ts";
import { KAFKA_BROKERS, MONGO_URL, requireServices, testKafka, uniqueName } from "./fixtures.ts";
import { MongoClient } from "mongodb";

export interface TestEnv {
  readonly topic: string;
  readonly db: string;
  readonly group: string;
}

export function testEnv(prefix: string): TestEnv {
  return {
    topic: uniqueName(prefix),
    db: uniqueName(prefix).replaceAll("-", "_").slice(0, 60),
    group: uniqueName(`${prefix}-group`),
  };
}

export function testConfig(env: TestEnv, overrides: Record<string, string> = {}): Config {
  const parsed = parseConfig(["--port", "0"], {
    KAFKA_BROKERS,
    MONGO_URL,
    KAFKA_TOPIC: env.topic,
    KAFKA_GROUP: env.group,
    KAFKA_PARTITIONS: "3",
    MONGO_DB: env.db,
    SENSORS: "0",
    CHECKPOINT_MS: "200",
    ...overrides,
  });
  if (!parsed.ok) throw new Error(`Bad test config: ${JSON.stringify(parsed)}`);
  return parsed.config;
}

/** Starts the app and waits until it is ready. */
export async function startApp(env: TestEnv, overrides: Record<string, string> = {}): Promise<App> {
  await requireServices();
  const app = start(testConfig(env, overrides), { logger: silentLogger });
  try {
    await app.ready;
  } catch (err) {
    await app[Symbol.asyncDispose]();
    throw err;
  }
  return app;
}

/** Removes what a test environment created in Kafka and MongoDB. */
export function cleanupEnv(env: TestEnv): AsyncDisposable {
  return {
    async [Symbol.asyncDispose]() {
      const admin = testKafka().admin();
      await admin.connect();
      await admin.deleteTopics({ topics: [env.topic, `${env.topic}.dlq`] }).catch(() => {});
      await admin.deleteGroups([env.group]).catch(() => {});
      await admin.disconnect();
      const client = new MongoClient(MONGO_URL);
      await client.db(env.db).dropDatabase().catch(() => {});
      await client.close();
    },
  };
}
