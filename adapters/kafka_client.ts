/**
 * Builds the kafkajs client from the resolved config and routes kafkajs's own
 * log lines into the project's structured logger.
 *
 * @module
 */
import process from "node:process";
import {
  type Admin,
  type ITopicConfig,
  Kafka,
  type KafkaConfig,
  type LogEntry,
  logLevel,
  type SASLOptions,
} from "kafkajs";
import type { Config, KafkaSaslMechanism } from "../schemas/config.ts";
import type { Logger } from "../actors/logger.ts";
import { useLeanProduceEncoding } from "./kafka_lean_produce.ts";

export interface KafkaClientOptions {
  readonly brokers: readonly string[];
  readonly clientId: string;
  readonly logger: Logger;
  /** SASL authentication; absent: none. */
  readonly sasl?: {
    readonly mechanism: KafkaSaslMechanism;
    readonly username: string;
    readonly password: string;
  };
  /** TLS: `true` trusts the system roots, `{ ca }` these PEM certificates instead; absent: plaintext. */
  readonly ssl?: boolean | { readonly ca: readonly string[] };
}

/** kafkajs's `sasl` / `ssl` settings for the given options (also used by health probes). */
export function securityConfig(
  { sasl, ssl }: Pick<KafkaClientOptions, "sasl" | "ssl">,
): Pick<KafkaConfig, "sasl" | "ssl"> {
  return {
    // Each of our mechanisms takes a username and a password; TypeScript just
    // does not distribute the mechanism union over kafkajs's per-mechanism types.
    ...(sasl ? { sasl: { ...sasl } as SASLOptions } : {}),
    ...(ssl === undefined ? {} : { ssl: typeof ssl === "boolean" ? ssl : { ca: [...ssl.ca] } }),
  };
}

/**
 * The smallest negative delay that still counts as kafkajs's idle-queue timer: `-1 - Date.now()`
 * is about minus the epoch clock (1.7e12 ms in 2023), far beyond any delay computed by mistake.
 */
const IDLE_TIMER_BELOW = -1e12;

let idleTimerQuieted = false;

/**
 * kafkajs 2.2.4 arms a timer for `-1 - Date.now()` ms whenever a connection's request queue is
 * idle (`scheduleCheckPendingRequests()` in `src/network/requestQueue/index.js`: `throttledUntil`
 * starts at -1; tulios/kafkajs#1751, not fixed in any release), and Node-compatible runtimes print
 * a `TimeoutNegativeWarning` for it. No setting avoids it, so this drops exactly that warning — a
 * `TimeoutNegativeWarning` for a delay of about minus the epoch clock — and passes every other
 * warning on unchanged. Idempotent; called by every function here that builds a kafkajs client.
 */
export function quietKafkajsIdleTimer(): void {
  if (idleTimerQuieted) return;
  idleTimerQuieted = true;
  const emitWarning = process.emitWarning;
  process.emitWarning = function (this: unknown, warning: string | Error, ...rest: unknown[]) {
    if (isKafkajsIdleTimerWarning(warning, rest[0])) return;
    return Reflect.apply(emitWarning, this, [warning, ...rest]);
  } as typeof process.emitWarning;
}

/** `type` is the warning's type, or an options object carrying it. */
export function isKafkajsIdleTimerWarning(warning: string | Error, type: unknown): boolean {
  const name = typeof type === "string"
    ? type
    : typeof type === "object" && type !== null && "type" in type
    ? String(type.type)
    : warning instanceof Error
    ? warning.name
    : undefined;
  if (name !== "TimeoutNegativeWarning") return false;
  const delay = Number.parseFloat(typeof warning === "string" ? warning : warning.message);
  return delay < IDLE_TIMER_BELOW;
}

/**
 * One kafkajs log entry as a line of ours. kafkajs retries on its own and logs every try with a
 * stack: those lines go to debug, since the outcome reaches our code, which reports it once (a
 * start-up retry, a consumer restart). The rest of its errors and warnings are warnings, and a
 * stack rides on an `error` field, which the logger prints only at debug level.
 */
export function kafkajsLine(
  { namespace, level, log: entry }: Pick<LogEntry, "namespace" | "level" | "log">,
): { level: "debug" | "warn"; message: string; fields: Record<string, unknown> } {
  const { message, timestamp: _t, logger: _l, stack, error, ...rest } = entry;
  // kafkajs logs broker addresses and errors, never message payloads.
  const fields: Record<string, unknown> = { namespace, ...rest };
  if (typeof stack === "string") {
    fields.error = Object.assign(new Error(String(error ?? message)), { stack });
  } else if (error !== undefined) fields.error = error;
  const retried = "retryCount" in rest || "retryTime" in rest;
  const connectionFailure = namespace === "Connection" && level === logLevel.ERROR;
  const serious = level === logLevel.ERROR || level === logLevel.WARN;
  return { level: serious && !retried && !connectionFailure ? "warn" : "debug", message, fields };
}

export function createKafka(
  { brokers, clientId, logger, sasl, ssl }: KafkaClientOptions,
): Kafka {
  quietKafkajsIdleTimer();
  // Same bytes as kafkajs's own Produce encoder, without its per-record garbage.
  useLeanProduceEncoding();
  const log = logger.child({ component: "kafkajs" });
  const config: KafkaConfig = {
    clientId,
    brokers: [...brokers],
    ...securityConfig({ sasl, ssl }),
    connectionTimeout: 3000,
    requestTimeout: 30_000,
    // Few retries per call: callers (start-up, the producer's buffer, the
    // consumer's restart) retry at their own level.
    retry: { initialRetryTime: 300, retries: 3, maxRetryTime: 3000 },
    logLevel: logLevel.WARN,
    logCreator: () => (entry: LogEntry) => {
      const { level, message, fields } = kafkajsLine(entry);
      log[level](message, fields);
    },
  };
  return new Kafka(config);
}

/**
 * The `sasl` and `ssl` options the config asks for, reading the CA bundle
 * through `readFile` (e.g. `(path) => Deno.readTextFileSync(path)`).
 * `parseConfig()` has already checked that the settings fit together.
 */
export function kafkaSecurity(
  config: Pick<
    Config,
    "kafkaSaslMechanism" | "kafkaUsername" | "kafkaPassword" | "kafkaTls" | "kafkaTlsCaFile"
  >,
  readFile: (path: string) => string,
): Pick<KafkaClientOptions, "sasl" | "ssl"> {
  const { kafkaSaslMechanism: mechanism, kafkaUsername: username, kafkaPassword: password } =
    config;
  return {
    ...(mechanism !== undefined && username !== undefined && password !== undefined
      ? { sasl: { mechanism, username, password } }
      : {}),
    ...(config.kafkaTls
      ? {
        ssl: config.kafkaTlsCaFile === undefined ? true : { ca: [readFile(config.kafkaTlsCaFile)] },
      }
      : {}),
  };
}

/** A topic the program needs, with the configs it is created with. */
export interface TopicSpec {
  readonly topic: string;
  readonly numPartitions: number;
  readonly configEntries?: readonly { readonly name: string; readonly value: string }[];
}

/** Creates the topics that do not exist yet. */
export async function ensureTopics(
  kafka: Kafka,
  topics: readonly TopicSpec[],
): Promise<string[]> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const existing = new Set(await admin.listTopics());
    const missing = topics.filter((t) => !existing.has(t.topic));
    if (missing.length > 0) {
      await createTopicsWithLeaders(
        admin,
        missing.map((t) => ({
          topic: t.topic,
          numPartitions: t.numPartitions,
          ...(t.configEntries ? { configEntries: [...t.configEntries] } : {}),
        })),
      );
    }
    return missing.map((t) => t.topic);
  } finally {
    await admin.disconnect();
  }
}

export interface LeaderWait {
  /** Metadata reads before giving up (default 40). */
  readonly attempts?: number;
  /** Between two reads (default 250 ms). */
  readonly delayMs?: number;
  readonly sleep?: (ms: number) => Promise<void>;
}

/**
 * Creates the topics (those that exist already are left as they are) and waits until every
 * partition of each has a leader. Right after a broker starts, its metadata may answer
 * UNKNOWN_TOPIC_OR_PARTITION for a topic it has just created: a refusal Kafka marks retriable, which
 * kafkajs 2.2.4's own wait (`waitForLeaders`) does not retry (it retries only
 * LEADER_NOT_AVAILABLE), so `stack:up` followed at once by a run failed with "This server does not
 * host this topic-partition". Asked again a moment later, the broker answers.
 */
export async function createTopicsWithLeaders(
  admin: Pick<Admin, "createTopics" | "fetchTopicMetadata">,
  topics: readonly ITopicConfig[],
  { attempts = 40, delayMs = 250, sleep = (ms) => new Promise((r) => setTimeout(r, ms)) }:
    LeaderWait = {},
): Promise<void> {
  await admin.createTopics({ topics: [...topics], waitForLeaders: false });
  const names = topics.map((t) => t.topic);
  for (let attempt = 1;; attempt++) {
    const led = await admin.fetchTopicMetadata({ topics: names }).then(
      ({ topics: found }) =>
        found.length === names.length &&
        found.every((t) => t.partitions.length > 0 && t.partitions.every((p) => p.leader >= 0)),
      (error) => {
        if (!(error as { retriable?: boolean }).retriable || attempt >= attempts) throw error;
        return false;
      },
    );
    if (led) return;
    if (attempt >= attempts) {
      throw new Error(`Kafka gave no leader to every partition of ${names.join(", ")} in time`);
    }
    await sleep(delayMs);
  }
}
