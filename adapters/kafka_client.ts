/**
 * Builds the kafkajs client from the resolved config and routes kafkajs's own
 * log lines into the project's structured logger.
 *
 * @module
 */
import { Kafka, type KafkaConfig, type LogEntry, logLevel } from "kafkajs";
import type { Logger } from "./log.ts";

export interface KafkaClientOptions {
  readonly brokers: readonly string[];
  readonly clientId: string;
  readonly logger: Logger;
}

export function createKafka({ brokers, clientId, logger }: KafkaClientOptions): Kafka {
  const log = logger.child({ component: "kafkajs" });
  const config: KafkaConfig = {
    clientId,
    brokers: [...brokers],
    connectionTimeout: 3000,
    requestTimeout: 30_000,
    // Few retries per call: callers (start-up, the producer's buffer, the
    // consumer's restart) retry at their own level.
    retry: { initialRetryTime: 300, retries: 3, maxRetryTime: 3000 },
    logLevel: logLevel.WARN,
    logCreator: () => ({ namespace, level, log: entry }: LogEntry) => {
      const { message, timestamp: _t, logger: _l, ...fields } = entry;
      // kafkajs logs broker addresses and errors, never message payloads.
      const line = { namespace, ...fields };
      if (level === logLevel.ERROR) log.warn(message, line);
      else if (level === logLevel.WARN) log.warn(message, line);
      else log.debug(message, line);
    },
  };
  return new Kafka(config);
}

/** Creates the readings and dead-letter topics if they do not exist yet. */
export async function ensureTopics(
  kafka: Kafka,
  topics: readonly { readonly topic: string; readonly numPartitions: number }[],
): Promise<string[]> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const existing = new Set(await admin.listTopics());
    const missing = topics.filter((t) => !existing.has(t.topic));
    if (missing.length > 0) {
      await admin.createTopics({
        topics: missing.map((t) => ({ topic: t.topic, numPartitions: t.numPartitions })),
        waitForLeaders: true,
      });
    }
    return missing.map((t) => t.topic);
  } finally {
    await admin.disconnect();
  }
}
