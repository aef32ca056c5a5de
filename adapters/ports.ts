/**
 * The two ports the composition root chooses adapters for — transport and
 * store — and the factories that build the chosen adapter. Everything past
 * this file (sensors, processors, API) sees only these interfaces.
 *
 * @module
 */
import type { Kafka } from "kafkajs";
import type { Config } from "../schemas/config.ts";
import { MongoStore } from "./mongo_store.ts";
import { KvStore } from "./kv_store.ts";
import { KafkaReadingProducer } from "./kafka_producer.ts";
import { WorkerReadingProducer } from "./worker_producer.ts";
import { KafkaDeadLetterSink, KafkaReadingSource } from "./kafka_consumer.ts";
import { createKafka, ensureTopics, kafkaSecurity } from "./kafka_client.ts";
import { MemoryTransport } from "./memory_transport.ts";
import { FLEET_TOPIC_CONFIGS, fleetTopics } from "./kafka_fleet.ts";
import { KafkaSeqLedger, seqTopicSpec } from "./kafka_seq_ledger.ts";
import { KvSeqLedger } from "./kv_seq_ledger.ts";
import type { SeqLedger } from "../actors/seq_ledger.ts";
import { redactUrl } from "./probe.ts";
import type { DeviceStore, SeqLookup } from "../actors/device_store.ts";
import type { Logger } from "../actors/logger.ts";
import type { ProducerStats, ReadingSink } from "../actors/reading_sink.ts";
import type { DeadLetterSink, ReadingSource } from "../actors/reading_source.ts";
import type { WebhookStore } from "../actors/webhook_store.ts";
import type { BatchQueries } from "./cached_queries.ts";

/** Port: everything the pipeline needs of a store (the API's reads include batched lookups). */
export interface Store extends DeviceStore, BatchQueries, SeqLookup, WebhookStore, AsyncDisposable {
  ping(): Promise<void>;
}

/** The producer side of a transport, as the sensor fleet uses it. */
export interface Producer extends ReadingSink {
  readonly stats: ProducerStats;
  /** Set once the producer stopped working for good (every reading is then refused). */
  readonly failure?: Error | undefined;
  close(): Promise<void>;
}

/** Port: the transport, opened for the roles this process runs. */
export interface Transport {
  readonly kind: "kafka" | "embedded";
  /** The in-process queue when embedded (tests publish raw records through it). */
  readonly embedded?: MemoryTransport;
  /** Makes the producer side ready (connects; creates topics). */
  producer(): Promise<Producer>;
  /** The consumer side and its dead-letter sink. */
  consumer(): Promise<{ source: ReadingSource; deadLetters: DeadLetterSink & AsyncDisposable }>;
}

export function describeStore(config: Config): { kind: "mongodb" | "kv"; where: string } {
  return config.mongoUrl
    ? { kind: "mongodb", where: `${redactUrl(config.mongoUrl)} db ${config.mongoDb}` }
    : { kind: "kv", where: config.kvPath };
}

export async function openStore(config: Config, logger: Logger): Promise<Store> {
  return config.mongoUrl
    ? await MongoStore.open(config.mongoUrl, config.mongoDb, logger)
    : await KvStore.open(config.kvPath);
}

/**
 * The ledger sensors reserve their seqs from: the compacted Kafka topic when
 * brokers are given (shared by every sensors process), else Deno KV — the
 * store's own handle when the store is KV, else a KV file at `kvPath`.
 */
export async function openSeqLedger(
  config: Config,
  logger: Logger,
  store?: Store,
): Promise<SeqLedger & AsyncDisposable> {
  if (!config.kafkaBrokers) {
    return store instanceof KvStore
      ? new KvSeqLedger(store.kv)
      : await KvSeqLedger.open(config.kvPath);
  }
  const kafka = createKafka({
    brokers: config.kafkaBrokers,
    clientId: config.kafkaClientId,
    logger,
    ...kafkaSecurity(config, (path) => Deno.readTextFileSync(path)),
  });
  await ensureTopics(kafka, [seqTopicSpec(config.kafkaSeqTopic, config.kafkaPartitions)]);
  return await KafkaSeqLedger.open(kafka, { topic: config.kafkaSeqTopic, logger });
}

/** The transport the config selects: Kafka when brokers are given, else the embedded queue. */
export async function openTransport(config: Config, logger: Logger): Promise<Transport> {
  if (!config.kafkaBrokers) return embeddedTransport(config, logger);
  const kafka = createKafka({
    brokers: config.kafkaBrokers,
    clientId: config.kafkaClientId,
    logger,
    ...kafkaSecurity(config, (path) => Deno.readTextFileSync(path)),
  });
  const created = await ensureTopics(kafka, [
    { topic: config.kafkaTopic, numPartitions: config.kafkaPartitions },
    { topic: config.kafkaDlqTopic, numPartitions: 1 },
  ]);
  logger.info("connected to kafka", {
    brokers: config.kafkaBrokers.join(","),
    topicsCreated: created,
  });
  return kafkaTransport(kafka, config, logger);
}

/** Readings a sensors process holds while Kafka is slow or down; beyond, they are dropped. */
const PRODUCER_MAX_BUFFERED = 200_000;

/**
 * Kafka mode: a client for the shared fleet (every role drives it through the
 * API), with its registry, status and commands topics created if missing.
 */
export async function openFleetKafka(config: Config, logger: Logger): Promise<Kafka> {
  if (!config.kafkaBrokers) throw new Error("The shared fleet needs KAFKA_BROKERS");
  const kafka = createKafka({
    brokers: config.kafkaBrokers,
    clientId: config.kafkaClientId,
    logger,
    ...kafkaSecurity(config, (path) => Deno.readTextFileSync(path)),
  });
  const topics = fleetTopics(config.kafkaSensorsTopic);
  await ensureTopics(kafka, [
    {
      topic: topics.registry,
      numPartitions: config.kafkaPartitions,
      configEntries: FLEET_TOPIC_CONFIGS.registry,
    },
    { topic: topics.status, numPartitions: 1, configEntries: FLEET_TOPIC_CONFIGS.status },
    {
      topic: topics.commands,
      numPartitions: config.kafkaPartitions,
      configEntries: FLEET_TOPIC_CONFIGS.commands,
    },
  ]);
  return kafka;
}

function kafkaTransport(kafka: Kafka, config: Config, logger: Logger): Transport {
  return {
    kind: "kafka",
    async producer() {
      const producer = config.kafkaProducerWorker
        ? new WorkerReadingProducer({
          kafka: {
            brokers: config.kafkaBrokers!,
            clientId: config.kafkaClientId,
            ...kafkaSecurity(config, (path) => Deno.readTextFileSync(path)),
          },
          topic: config.kafkaTopic,
          maxBuffered: PRODUCER_MAX_BUFFERED,
          logger,
        })
        : new KafkaReadingProducer(kafka, {
          topic: config.kafkaTopic,
          maxBuffered: PRODUCER_MAX_BUFFERED,
          logger,
        });
      try {
        await producer.connect();
      } catch (error) {
        await producer.close().catch(() => {});
        throw error;
      }
      return producer;
    },
    async consumer() {
      const deadLetters = new KafkaDeadLetterSink(kafka, {
        topic: config.kafkaDlqTopic,
        sourceTopic: config.kafkaTopic,
      });
      await deadLetters.connect();
      const source = new KafkaReadingSource(kafka, {
        topic: config.kafkaTopic,
        groupId: config.kafkaGroup,
        giveUpMs: config.kafkaGiveUpMs,
        // Every owned partition's batch of a fetch at once: kafkajs fetches again only when all
        // of them are handled, so with fewer, a fetch cost two rounds of store writes.
        concurrency: config.kafkaPartitions,
        logger,
      });
      return { source, deadLetters };
    },
  };
}

function embeddedTransport(config: Config, logger: Logger): Transport {
  const queue = new MemoryTransport({ partitions: config.kafkaPartitions, logger });
  return {
    kind: "embedded",
    embedded: queue,
    producer: () => Promise.resolve(queue),
    consumer: () =>
      Promise.resolve({
        source: queue,
        deadLetters: {
          send: (letters) => queue.send(letters),
          [Symbol.asyncDispose]: () => Promise.resolve(),
        },
      }),
  };
}
