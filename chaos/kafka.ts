/**
 * The harness's view of Kafka: its client, topic set-up and clean-up, offsets
 * and reading a whole topic back. Every call here may land right after a
 * broker restart, when the broker briefly answers "This server does not host
 * this topic-partition" or refuses connections, so each is retried until a
 * deadline instead of failing the run (or crashing it as an unhandled rejection).
 *
 * @module
 */
import {
  type Kafka,
  type KafkaMessage,
  type Producer,
  removeResources,
  testKafka,
  testProducer,
} from "../tests/fixtures.ts";
import { services } from "./processes.ts";
import { retrying } from "./retry.ts";
import { createTopicsWithLeaders } from "../adapters/kafka_client.ts";

export type { Kafka };

/** A record to produce: the device id as key, so a device's readings keep their order. */
export interface Message {
  readonly key: string;
  readonly value: string;
}

/** The harness's client: the shared fixture's, quick to give up (each call here is retried). */
export function chaosKafka(): Kafka {
  return testKafka("chaos", services(), { retries: 3 });
}

/** A producer of the harness's own records, partitioned like the app's (by key). */
export function harnessProducer(kafka: Kafka): Producer {
  return testProducer(kafka);
}

type Admin = ReturnType<Kafka["admin"]>;

/** One admin request on a fresh connection (fresh metadata too), retried. */
export function withAdmin<T>(
  kafka: Kafka,
  what: string,
  fn: (admin: Admin) => Promise<T>,
  timeoutMs?: number,
): Promise<T> {
  return retrying(what, async () => {
    const admin = kafka.admin();
    try {
      await admin.connect();
      return await fn(admin);
    } finally {
      await admin.disconnect().catch(() => {});
    }
  }, timeoutMs);
}

export function createTopics(kafka: Kafka, topics: readonly [string, number][]): Promise<void> {
  return withAdmin(
    kafka,
    `create topics ${topics.map(([t]) => `"${t}"`).join(", ")}`,
    (admin) =>
      createTopicsWithLeaders(
        admin,
        topics.map(([topic, numPartitions]) => ({ topic, numPartitions })),
      ),
  );
}

/** Deletes `topic` and every topic named after it (its dead letters, the fleet's registry topics). */
export async function deleteTopicFamily(kafka: Kafka, topic: string): Promise<void> {
  try {
    const topics = await withAdmin(
      kafka,
      `list the topics of "${topic}"`,
      async (admin) =>
        (await admin.listTopics()).filter((t) => t === topic || t.startsWith(`${topic}.`)),
      10_000,
    );
    if (topics.length === 0) return;
    await retrying(
      `delete the topics of "${topic}"`,
      () => removeResources({ topics }, services()),
      10_000,
    );
  } catch {
    // Best effort: a run's leftovers are named after it and harm no other run.
  }
}

/** High watermark per partition: how many records the topic holds. */
export function topicEnds(kafka: Kafka, topic: string): Promise<Map<number, number>> {
  return withAdmin(kafka, `fetch the offsets of "${topic}"`, async (admin) => {
    const offsets = await admin.fetchTopicOffsets(topic);
    return new Map(offsets.map((p) => [p.partition, Number(p.high)]));
  });
}

export async function topicSize(kafka: Kafka, topic: string): Promise<number> {
  return [...(await topicEnds(kafka, topic)).values()].reduce((n, high) => n + high, 0);
}

/** Records the group has committed on `topic`, summed over partitions. */
export function committed(
  kafka: Kafka,
  group: string,
  topic: string,
  timeoutMs?: number,
): Promise<number> {
  return withAdmin(kafka, `fetch the offsets of group "${group}"`, async (admin) => {
    const [offsets] = await admin.fetchOffsets({ groupId: group, topics: [topic] });
    return (offsets?.partitions ?? []).reduce((n, p) => n + Math.max(0, Number(p.offset)), 0);
  }, timeoutMs);
}

export interface TopicRecord {
  readonly partition: number;
  readonly message: KafkaMessage;
}

/**
 * Every record of `topic` up to its current end, in partition order (records of one key keep
 * their order). Uses a throw-away consumer group.
 */
export async function readTopic(kafka: Kafka, topic: string): Promise<TopicRecord[]> {
  const ends = await topicEnds(kafka, topic);
  const remaining = new Set([...ends].filter(([, high]) => high > 0).map(([p]) => p));
  const records: TopicRecord[] = [];
  if (remaining.size === 0) return records;
  return await retrying(`read "${topic}" back`, async () => {
    records.length = 0;
    const pending = new Set(remaining);
    const consumer = kafka.consumer({
      groupId: `chaos-readback-${crypto.randomUUID()}`,
      maxBytes: 50 * 1024 * 1024,
    });
    const { promise: done, resolve, reject } = Promise.withResolvers<void>();
    consumer.on(consumer.events.CRASH, ({ payload }) => reject(payload.error));
    try {
      await consumer.connect();
      await consumer.subscribe({ topic, fromBeginning: true });
      await consumer.run({
        autoCommit: false,
        eachBatch: ({ batch }) => {
          const end = ends.get(batch.partition) ?? 0;
          for (const message of batch.messages) {
            if (Number(message.offset) < end) records.push({ partition: batch.partition, message });
          }
          if (Number(batch.lastOffset()) >= end - 1) pending.delete(batch.partition);
          if (pending.size === 0) resolve();
          return Promise.resolve();
        },
      });
      const timeout = setTimeout(
        () => reject(new Error(`partitions ${[...pending].join(", ")} not read to their end`)),
        120_000,
      );
      await done.finally(() => clearTimeout(timeout));
    } finally {
      await consumer.disconnect().catch(() => {});
    }
    // A partition fetched twice (a rebalance inside the read) must not count records twice.
    const seen = new Set<string>();
    return records.filter((r) => {
      const key = `${r.partition}:${r.message.offset}`;
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    }).sort((a, b) =>
      a.partition - b.partition || Number(a.message.offset) - Number(b.message.offset)
    );
  });
}
