/**
 * Runs the real program in-process for a test, with its own topic, consumer
 * group, database and KV file, against the real Kafka and MongoDB-protocol
 * servers or the embedded adapters; disposing the environment removes what
 * the test created.
 *
 * @module
 */
import { type App, start } from "../main.ts";
import { type Config, parseConfig } from "../schemas/config.ts";
import { silentLogger } from "../adapters/log.ts";
import { encodeReading, type Reading } from "../schemas/reading.ts";
import assert from "node:assert/strict";
import {
  KAFKA_BROKERS,
  MONGO_URL,
  removeResources,
  requireServices,
  testKafka,
  uniqueDbName,
  uniqueName,
} from "./fixtures.ts";

/** Which adapter serves each port. */
export interface Mode {
  readonly name: string;
  readonly kafka: boolean;
  readonly mongo: boolean;
}

export const KAFKA_MONGO: Mode = { name: "kafka+mongodb", kafka: true, mongo: true };
export const EMBEDDED: Mode = { name: "embedded+kv", kafka: false, mongo: false };
export const KAFKA_KV: Mode = { name: "kafka+kv", kafka: true, mongo: false };
export const EMBEDDED_MONGO: Mode = { name: "embedded+mongodb", kafka: false, mongo: true };

export interface TestEnv extends AsyncDisposable {
  readonly mode: Mode;
  readonly topic: string;
  readonly db: string;
  readonly group: string;
  readonly kvPath: string;
}

/** A fresh environment; dispose it to remove the topic, group, database and KV file. */
export async function testEnv(prefix: string, mode: Mode = KAFKA_MONGO): Promise<TestEnv> {
  if (mode.kafka || mode.mongo) await requireServices(undefined, mode);
  const dir = await Deno.makeTempDir({ prefix: "iot-test-" });
  const env = {
    mode,
    topic: uniqueName(prefix),
    db: uniqueDbName(prefix),
    group: uniqueName(`${prefix}-group`),
    kvPath: `${dir}/iot.kv`,
  };
  return {
    ...env,
    async [Symbol.asyncDispose]() {
      // The seq ledger's and the fleet's registry topics are named after the readings' topic,
      // the fleet's group after theirs.
      const fleet = `${env.topic}.sensors`;
      await removeResources({
        ...(mode.kafka
          ? {
            topics: [
              env.topic,
              `${env.topic}.dlq`,
              `${env.topic}.seqs`,
              fleet,
              `${fleet}.status`,
              `${fleet}.commands`,
            ],
            groups: [env.group, `${env.group}-sensors`],
          }
          : {}),
        ...(mode.mongo ? { db: env.db } : {}),
      });
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

export function testConfig(env: TestEnv, overrides: Record<string, string> = {}): Config {
  const parsed = parseConfig(["--port", "0"], {
    ...(env.mode.kafka ? { KAFKA_BROKERS } : {}),
    ...(env.mode.mongo ? { MONGO_URL } : {}),
    KAFKA_TOPIC: env.topic,
    KAFKA_GROUP: env.group,
    KAFKA_PARTITIONS: "3",
    MONGO_DB: env.db,
    KV_PATH: env.kvPath,
    SENSORS: "0",
    CHECKPOINT_MS: "200",
    ...overrides,
  });
  if (!parsed.ok) throw new Error(`Bad test config: ${JSON.stringify(parsed)}`);
  return parsed.config;
}

/** Starts the app and waits until it is ready. */
export async function startApp(env: TestEnv, overrides: Record<string, string> = {}): Promise<App> {
  const app = start(testConfig(env, overrides), { logger: silentLogger });
  try {
    await app.ready;
  } catch (err) {
    await app[Symbol.asyncDispose]();
    throw err;
  }
  return app;
}

/** Publishes readings to the app's readings topic (Kafka) or its embedded queue. */
export async function publishReadings(
  app: App,
  env: TestEnv,
  records: readonly Reading[],
): Promise<void> {
  const queue = app.parts.transport?.embedded;
  if (queue) {
    for (const r of records) assert.ok(queue.publishRaw(r.deviceId, encodeReading(r)));
    return;
  }
  const producer = testKafka().producer();
  await producer.connect();
  await producer.send({
    topic: env.topic,
    messages: records.map((r) => ({ key: r.deviceId, value: encodeReading(r) })),
  });
  await producer.disconnect();
}
