/**
 * The processors' side of Kafka: a consumer-group member that hands each
 * partition batch to a handler and commits the batch's offsets only after the
 * handler resolves — i.e. after the store acknowledged the writes it covers
 * (at-least-once into an idempotent store). Also the dead-letter sink.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import type { Consumer, Kafka, Producer } from "kafkajs";
import type { Logger } from "./log.ts";

/** One record as it came off the transport. */
export interface RawRecord {
  readonly key: Uint8Array | null;
  readonly value: Uint8Array | null;
  readonly offset: string;
  /** Broker/producer timestamp in ms, as a string (Kafka's convention). */
  readonly timestamp: string;
}

export interface RecordBatch {
  readonly topic: string;
  readonly partition: number;
  readonly records: readonly RawRecord[];
}

export interface BatchContext {
  /** Keeps group membership alive during long batches. */
  heartbeat(): Promise<void>;
  /** True when a rebalance took the partition away while the batch ran. */
  isStale(): boolean;
}

/** Handles one batch; resolves when its effects are durable; throws on I/O failure. */
export type BatchHandler = (batch: RecordBatch, ctx: BatchContext) => Promise<void>;

export interface SourceEvents {
  /** Partitions were (re)assigned: per-device state of this member may be stale. */
  readonly onAssignment: (partitions: readonly number[]) => void;
  /** The consumer stopped for good (non-retriable error). */
  readonly onFatal: (error: unknown) => void;
}

/** Port: an ordered, partitioned source with "batch then commit" semantics. */
export interface ReadingSource extends AsyncDisposable {
  start(handler: BatchHandler, events: SourceEvents): Promise<void>;
  /** Highest offsets vs committed, per partition (consumer lag). */
  lag(): Promise<Record<number, number>>;
}

export interface DeadLetter {
  readonly record: RawRecord;
  readonly partition: number;
  readonly reason: string;
}

/** Port: where invalid records go, with the reason and their original bytes. */
export interface DeadLetterSink {
  send(letters: readonly DeadLetter[]): Promise<void>;
}

export interface KafkaReadingSourceOptions {
  readonly topic: string;
  readonly groupId: string;
  readonly logger: Logger;
  /** Partitions processed at once by this member. */
  readonly concurrency?: number;
}

export class KafkaReadingSource implements ReadingSource {
  readonly #kafka: Kafka;
  readonly #consumer: Consumer;
  readonly #options: KafkaReadingSourceOptions;
  readonly #log: Logger;

  constructor(kafka: Kafka, options: KafkaReadingSourceOptions) {
    this.#kafka = kafka;
    this.#options = options;
    this.#log = options.logger.child({ component: "consumer" });
    this.#consumer = kafka.consumer({
      groupId: options.groupId,
      sessionTimeout: 30_000,
      heartbeatInterval: 3000,
      maxBytesPerPartition: 1 << 20,
      maxWaitTimeInMs: 100,
      retry: { retries: 10, initialRetryTime: 300, maxRetryTime: 10_000 },
    });
  }

  async start(handler: BatchHandler, events: SourceEvents): Promise<void> {
    const { topic } = this.#options;
    const c = this.#consumer;
    c.on(c.events.GROUP_JOIN, ({ payload }) => {
      const partitions = payload.memberAssignment[topic] ?? [];
      this.#log.info("partitions assigned", {
        memberId: payload.memberId,
        leader: payload.isLeader,
        partitions,
      });
      events.onAssignment(partitions);
    });
    c.on(c.events.CRASH, ({ payload }) => {
      this.#log.error("consumer crashed", { error: payload.error, restart: payload.restart });
      if (!payload.restart) events.onFatal(payload.error);
    });
    await c.connect();
    await c.subscribe({ topic, fromBeginning: true });
    await c.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: this.#options.concurrency ?? 3,
      eachBatch: async ({ batch, heartbeat, isRunning, isStale, resolveOffset }) => {
        if (!isRunning() || isStale() || batch.messages.length === 0) return;
        const records: RawRecord[] = batch.messages.map((m) => ({
          key: m.key ?? null,
          value: m.value ?? null,
          offset: m.offset,
          timestamp: m.timestamp,
        }));
        await handler(
          { topic: batch.topic, partition: batch.partition, records },
          { heartbeat, isStale },
        );
        // Only now are the batch's writes durable: commit past its last record.
        const last = batch.messages[batch.messages.length - 1]!.offset;
        resolveOffset(last);
        if (isStale()) return; // the partition moved; the new owner re-reads idempotently
        await c.commitOffsets([{
          topic: batch.topic,
          partition: batch.partition,
          offset: (BigInt(last) + 1n).toString(),
        }]);
        await heartbeat();
      },
    });
  }

  async lag(): Promise<Record<number, number>> {
    const admin = this.#kafka.admin();
    await admin.connect();
    try {
      const { topic, groupId } = this.#options;
      const [ends, committed] = await Promise.all([
        admin.fetchTopicOffsets(topic),
        admin.fetchOffsets({ groupId, topics: [topic] }),
      ]);
      const done = new Map(
        (committed[0]?.partitions ?? []).map((p) => [p.partition, Number(p.offset)]),
      );
      const lag: Record<number, number> = {};
      for (const p of ends) {
        const committedOffset = Math.max(0, done.get(p.partition) ?? 0);
        lag[p.partition] = Math.max(0, Number(p.high) - committedOffset);
      }
      return lag;
    } finally {
      await admin.disconnect();
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    // disconnect() waits for the running batches to finish and commit.
    await this.#consumer.disconnect();
  }
}

export class KafkaDeadLetterSink implements DeadLetterSink, AsyncDisposable {
  readonly #producer: Producer;
  readonly #topic: string;
  readonly #sourceTopic: string;

  constructor(kafka: Kafka, options: { readonly topic: string; readonly sourceTopic: string }) {
    this.#producer = kafka.producer({ allowAutoTopicCreation: false });
    this.#topic = options.topic;
    this.#sourceTopic = options.sourceTopic;
  }

  connect(): Promise<void> {
    return this.#producer.connect();
  }

  async send(letters: readonly DeadLetter[]): Promise<void> {
    if (letters.length === 0) return;
    await this.#producer.send({
      topic: this.#topic,
      acks: -1,
      messages: letters.map(({ record, partition, reason }) => ({
        key: record.key ? Buffer.from(record.key) : null,
        value: record.value ? Buffer.from(record.value) : null,
        headers: {
          "dlq.reason": reason,
          "dlq.source.topic": this.#sourceTopic,
          "dlq.source.partition": String(partition),
          "dlq.source.offset": record.offset,
          "dlq.source.timestamp": record.timestamp,
        },
      })),
    });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.#producer.disconnect();
  }
}
