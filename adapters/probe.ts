/**
 * One-shot reachability checks for Kafka and a MongoDB-protocol server, used by
 * the stack script, `/health` and the integration tests' preflight. Each call
 * opens and closes its own short-lived client and never retries.
 *
 * @module
 */
import { Kafka, type KafkaConfig, logLevel } from "kafkajs";
import { MongoClient } from "mongodb";
import { quietKafkajsIdleTimer } from "./kafka_client.ts";

/** Resolves when a broker answers a metadata request; rejects otherwise. `security`: SASL/TLS as for the clients. */
export async function probeKafka(
  brokers: string,
  timeoutMs: number,
  security: Pick<KafkaConfig, "sasl" | "ssl"> = {},
): Promise<void> {
  quietKafkajsIdleTimer();
  const kafka = new Kafka({
    clientId: "iot-probe",
    brokers: brokers.split(","),
    connectionTimeout: timeoutMs,
    requestTimeout: timeoutMs,
    retry: { retries: 0 },
    logLevel: logLevel.NOTHING,
    ...security,
  });
  const admin = kafka.admin();
  try {
    await withTimeout(
      (async () => {
        await admin.connect();
        await admin.describeCluster();
      })(),
      timeoutMs,
      `Kafka at ${brokers}`,
    );
  } finally {
    await admin.disconnect().catch(() => {});
  }
}

/** Resolves when the server answers `ping`; rejects otherwise. */
export async function probeMongo(url: string, timeoutMs: number): Promise<void> {
  const client = new MongoClient(url, {
    serverSelectionTimeoutMS: timeoutMs,
    connectTimeoutMS: timeoutMs,
  });
  try {
    await withTimeout(
      (async () => {
        await client.connect();
        await client.db("admin").command({ ping: 1 });
      })(),
      timeoutMs,
      `MongoDB at ${redactUrl(url)}`,
    );
  } finally {
    await client.close().catch(() => {});
  }
}

/** Removes the password from a connection string so it can be logged. */
export function redactUrl(url: string): string {
  return url.replace(/\/\/([^:@/]+):([^@/]+)@/, "//$1:***@");
}

async function withTimeout<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
    work.catch(() => {}); // a late rejection after the timeout is not interesting
  }
}
