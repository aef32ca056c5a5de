/**
 * The one fixture for code that runs against the real Kafka and
 * MongoDB-protocol servers — the tests, the benchmark and the chaos harness:
 * where the servers are (KAFKA_BROKERS / MONGO_URL, else the local stack), a
 * preflight that names a missing service, Kafka clients and producers set up
 * alike, and topics and databases of one's own that are removed afterwards.
 * Besides the Kafka adapters this is the only module that imports kafkajs.
 *
 * Tests declare what they need with `needs()` from `tests/needs.ts`.
 *
 * @module
 */
import {
  Kafka,
  type KafkaMessage,
  logLevel,
  type Message,
  Partitioners,
  type Producer,
  type ProducerConfig,
} from "kafkajs";
import { type Db, MongoClient } from "mongodb";
import { probeKafka, probeMongo } from "../adapters/probe.ts";
import { createTopicsWithLeaders, quietKafkajsIdleTimer } from "../adapters/kafka_client.ts";
import { envOr } from "./needs.ts";

export const KAFKA_BROKERS = envOr("KAFKA_BROKERS", "127.0.0.1:9092");
export const MONGO_URL = envOr("MONGO_URL", "mongodb://127.0.0.1:27017/");

/** Where the servers are; every helper below takes one, defaulting to the env's. */
export interface ServiceAddresses {
  readonly brokers: string;
  readonly mongoUrl: string;
}

const DEFAULT_SERVICES: ServiceAddresses = { brokers: KAFKA_BROKERS, mongoUrl: MONGO_URL };

const preflights = new Map<string, Promise<void>>();

/** Fails fast, naming the service that is down and how to start it (`which`: both). */
export function requireServices(
  services: ServiceAddresses = DEFAULT_SERVICES,
  which: ServiceChoice = { kafka: true, mongo: true },
): Promise<void> {
  const key = `${which.kafka ? services.brokers : ""} ${which.mongo ? services.mongoUrl : ""}`;
  let preflight = preflights.get(key);
  if (!preflight) {
    preflight = (async () => {
      const problems = await serviceProblems(services, which);
      if (problems.length > 0) {
        throw new Error(
          `${problems.join("; ")}: start the local stack with \`deno task stack:up\` ` +
            "(or run `deno task test`, which does it), or point KAFKA_BROKERS / MONGO_URL at running servers",
        );
      }
    })();
    preflights.set(key, preflight);
  }
  return preflight;
}

/** Which of the two services to look at. */
export interface ServiceChoice {
  readonly kafka?: boolean;
  readonly mongo?: boolean;
}

/** What is wrong with the services, one sentence each; empty when they answer. */
export async function serviceProblems(
  { brokers, mongoUrl }: ServiceAddresses = DEFAULT_SERVICES,
  which: ServiceChoice,
): Promise<string[]> {
  const problems: string[] = [];
  await Promise.all([
    which.kafka &&
    probeKafka(brokers, 5000).catch((e) =>
      problems.push(`Kafka is not reachable at "${brokers}" (${e.message})`)
    ),
    which.mongo &&
    probeMongo(mongoUrl, 5000).catch((e) =>
      problems.push(`MongoDB/FerretDB is not reachable (${e.message})`)
    ),
  ]);
  return problems;
}

/** A name no other test or run uses (topics, groups, databases). */
export function uniqueName(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${crypto.randomUUID().slice(0, 8)}`;
}

/** A database name from `uniqueName()`: underscores, at most 60 characters. */
export function uniqueDbName(prefix: string): string {
  return uniqueName(prefix).replaceAll("-", "_").slice(0, 60);
}

/** kafkajs's types, for harnesses that hold its objects without importing kafkajs themselves. */
export type { Kafka, KafkaMessage, Message, Producer };

/** A quiet kafkajs client with a few quick retries (`options.retries`: 5), for set-up and load. */
export function testKafka(
  clientId = "iot-test",
  services: Pick<ServiceAddresses, "brokers"> = DEFAULT_SERVICES,
  options: { readonly retries?: number } = {},
): Kafka {
  quietKafkajsIdleTimer();
  return new Kafka({
    clientId,
    brokers: services.brokers.split(","),
    logLevel: logLevel.NOTHING,
    retry: { retries: options.retries ?? 5, initialRetryTime: 100 },
  });
}

/** A producer with the partitioner chosen explicitly (the one the pipeline's producer uses). */
export function testProducer(
  kafka: Kafka = testKafka(),
  options: Omit<ProducerConfig, "createPartitioner"> = {},
): Producer {
  return kafka.producer({ ...options, createPartitioner: Partitioners.DefaultPartitioner });
}

export interface TempTopic extends AsyncDisposable {
  readonly name: string;
}

/** Creates a topic for one test or run and deletes it afterwards. */
export async function tempTopic(
  prefix = "test",
  partitions = 3,
  services: ServiceAddresses = DEFAULT_SERVICES,
): Promise<TempTopic> {
  await requireServices(services, { kafka: true });
  const name = uniqueName(prefix);
  const admin = testKafka("iot-test", services).admin();
  await admin.connect();
  await createTopicsWithLeaders(admin, [{ topic: name, numPartitions: partitions }]);
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

/** A database for one test or run, dropped afterwards. */
export async function tempDb(
  prefix = "test",
  services: ServiceAddresses = DEFAULT_SERVICES,
): Promise<TempDb> {
  await requireServices(services, { mongo: true });
  const name = uniqueDbName(prefix);
  const client = new MongoClient(services.mongoUrl, { serverSelectionTimeoutMS: 5000 });
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

/** What one test or run created, to remove afterwards. */
export interface CreatedResources {
  readonly topics?: readonly string[];
  readonly groups?: readonly string[];
  readonly db?: string;
}

/** Deletes the topics, the consumer groups and the database a test or run created. */
export async function removeResources(
  created: CreatedResources,
  services: ServiceAddresses = DEFAULT_SERVICES,
): Promise<void> {
  if (created.topics?.length || created.groups?.length) {
    const admin = testKafka("iot-test", services).admin();
    await admin.connect();
    if (created.topics?.length) {
      await admin.deleteTopics({ topics: [...created.topics] }).catch(() => {});
    }
    if (created.groups?.length) await admin.deleteGroups([...created.groups]).catch(() => {});
    await admin.disconnect();
  }
  if (created.db) {
    const client = new MongoClient(services.mongoUrl);
    await client.db(created.db).dropDatabase().catch(() => {});
    await client.close();
  }
}
