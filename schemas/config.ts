/**
 * Every setting of the program, defined once: its flag, its environment
 * variable, its default and how it is parsed. `parseConfig()` is pure — it
 * takes the arguments and an environment snapshot and returns either a fully
 * resolved config or every problem at once, so `main.ts` can refuse to start
 * before touching anything.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { RANDOM_PROFILES } from "../domain/signal.ts";
import { RULE_COUNT_RANGE } from "../domain/hysteresis.ts";
import { OFFLINE_AFTER_RANGE } from "../domain/offline.ts";
import { TEMPERATURE_RANGE } from "./reading.ts";
import { parseCidr } from "../domain/network_address.ts";

export type Role = "all" | "sensors" | "processors" | "api";
export const ROLES: readonly Role[] = ["all", "sensors", "processors", "api"];
/** `--sensor-profile` choices: the domain's profiles that need no script. */
export const SENSOR_PROFILES = RANDOM_PROFILES;
export const KAFKA_SASL_MECHANISMS = ["scram-sha-256", "scram-sha-512", "plain"] as const;
export type KafkaSaslMechanism = (typeof KAFKA_SASL_MECHANISMS)[number];
export const LOG_FORMATS = ["json", "pretty"] as const;
export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
/**
 * The shortest `API_TOKEN` accepted. 16 characters are at least 64 bits even
 * as hex (`openssl rand -hex 8`), far beyond guessing through the rate-limited
 * API; anything shorter is a password someone typed, like "admin" or "s3cret".
 */
export const API_TOKEN_MIN_LENGTH = 16;

/** The fully resolved configuration; every field has a value. */
export interface Config {
  readonly role: Role;
  readonly host: string;
  readonly port: number;
  readonly apiToken: string | undefined;
  readonly allowOpen: boolean;
  /** Mutating requests per minute per token (or client); 0: no limit. */
  readonly rateLimitPerMinute: number;
  readonly requestTimeoutMs: number;
  /** How long the API reuses a store read's answer (0: only reads in flight are shared). */
  readonly apiReadCacheMs: number;
  /** Unset: the embedded in-process transport. */
  readonly kafkaBrokers: readonly string[] | undefined;
  readonly kafkaTopic: string;
  readonly kafkaDlqTopic: string;
  /** Compacted topic of the sensors' durable seq blocks (Kafka mode). */
  readonly kafkaSeqTopic: string;
  readonly kafkaPartitions: number;
  readonly kafkaGroup: string;
  /** The compacted fleet registry topic (sensor id → spec). */
  readonly kafkaSensorsTopic: string;
  /** The consumer group of the sensors processes on the registry. */
  readonly kafkaSensorsGroup: string;
  /** How long the sensors group waits for a silent process before moving its sensors. */
  readonly kafkaSensorsSessionTimeoutMs: number;
  readonly kafkaClientId: string;
  /**
   * Start-up gives up (and the process exits 1) after failing to connect for this long; so does
   * the consumer after this long without a broker answer.
   */
  readonly kafkaGiveUpMs: number;
  /** Set together with `kafkaUsername` and `kafkaPassword`, or not at all. */
  readonly kafkaSaslMechanism: KafkaSaslMechanism | undefined;
  readonly kafkaUsername: string | undefined;
  readonly kafkaPassword: string | undefined;
  readonly kafkaTls: boolean;
  /** The sensors' Kafka producer runs in a Deno Worker (its encoding on another core). */
  readonly kafkaProducerWorker: boolean;
  /** PEM CA bundle trusted for the brokers (unset: the system roots); needs `kafkaTls`. */
  readonly kafkaTlsCaFile: string | undefined;
  /** Unset: the embedded Deno KV store at `kvPath`. */
  readonly mongoUrl: string | undefined;
  readonly kvPath: string;
  readonly mongoDb: string;
  readonly sensors: number;
  readonly sensorProfile: (typeof SENSOR_PROFILES)[number];
  readonly intervalMs: number;
  /** Seqs each sensor reserves durably at a time (see docs/seq-ledger.md). */
  readonly seqBlock: number;
  readonly maxSensors: number;
  readonly seed: number;
  readonly alarmHigh: number;
  readonly alarmLow: number;
  readonly alarmRaiseAfter: number;
  readonly alarmClearAfter: number;
  readonly passivateAfterMs: number;
  readonly checkpointMs: number;
  /** Silence after which a device is offline; unset: 3 × its interval (docs/offline.md). */
  readonly offlineAfterMs: number | undefined;
  /** Out-of-orderness allowed between readings of one partition before offline is decided. */
  readonly offlineGraceMs: number;
  /** Attempts of one webhook delivery before it goes to the subscription's dead letters. */
  readonly webhookMaxAttempts: number;
  /** Ceiling of the first retry's wait; it doubles per failure up to the cap (full jitter). */
  readonly webhookBackoffBaseMs: number;
  readonly webhookBackoffCapMs: number;
  /** How often the dispatcher looks for pending events and due retries. */
  readonly webhookPollMs: number;
  /** How long one delivery attempt waits for an answer. */
  readonly webhookTimeoutMs: number;
  /** How long the webhook dispatcher's lease lasts unless renewed (one dispatcher per store). */
  readonly webhookLeaseMs: number;
  /** How long settled outbox events (and dead letters) are kept. */
  readonly webhookRetentionMs: number;
  /** Non-public networks (CIDRs) webhooks may reach anyway; unset: public addresses only. */
  readonly webhookAllowNetworks: readonly string[] | undefined;
  readonly logFormat: (typeof LOG_FORMATS)[number];
  readonly logLevel: (typeof LOG_LEVELS)[number];
}

type Kind =
  | {
    readonly type: "string";
    readonly pattern?: RegExp;
    readonly patternHint?: string;
    readonly minLength?: number;
  }
  | { readonly type: "int"; readonly min: number; readonly max: number }
  | { readonly type: "number"; readonly min: number; readonly max: number }
  | { readonly type: "enum"; readonly values: readonly string[] }
  | { readonly type: "bool" }
  /** Comma-separated `host:port` items, or CIDR networks with `items: "cidr"`. */
  | { readonly type: "list"; readonly items?: "cidr" };

/**
 * The kinds a setting may have for a field of type `T`: a table entry whose
 * kind cannot produce its field's type fails `deno check`.
 */
type KindFor<T> = [T] extends [boolean] ? Extract<Kind, { type: "bool" }>
  : [T] extends [number] ? Extract<Kind, { type: "int" | "number" }>
  : [T] extends [readonly string[]] ? Extract<Kind, { type: "list" }>
  : [T] extends [string] ? Extract<Kind, { type: "string" | "enum" }>
  : never;

/** How a user sets the field `K` and what it means. */
interface SettingOf<K extends keyof Config> {
  readonly key: K;
  readonly flag: string;
  readonly env: string;
  readonly kind: KindFor<NonNullable<Config[K]>>;
  /** Default as the user would type it; undefined means "unset". */
  readonly default: string | undefined;
  readonly help: string;
  /** Never print the value (tokens, URLs with passwords). */
  readonly secret?: boolean;
}

/** One setting: how a user sets it and what it means. Exported for --help (docs/configuration.md). */
export type Setting = { [K in keyof Config]-?: SettingOf<K> }[keyof Config];

const TOPIC = /^[A-Za-z0-9._-]{1,249}$/;

const TABLE = [
  {
    key: "role",
    flag: "role",
    env: "ROLE",
    kind: { type: "enum", values: ROLES },
    default: "all",
    help: "Which roles this process runs",
  },
  {
    key: "host",
    flag: "host",
    env: "HOST",
    kind: { type: "string" },
    default: "127.0.0.1",
    help: "Address the HTTP API binds to",
  },
  {
    key: "port",
    flag: "port",
    env: "PORT",
    kind: { type: "int", min: 0, max: 65535 },
    default: "8080",
    help: "HTTP API port (0 picks a free one)",
  },
  {
    key: "apiToken",
    flag: "api-token",
    env: "API_TOKEN",
    kind: {
      type: "string",
      minLength: API_TOKEN_MIN_LENGTH,
      // A header value cannot carry it intact: HTTP trims it, and "Bearer a b" is two words.
      pattern: /^\S+$/,
      patternHint: "free of whitespace",
    },
    default: undefined,
    help: "Bearer token required by POST/DELETE endpoints (e.g. openssl rand -hex 24)",
    secret: true,
  },
  {
    key: "allowOpen",
    flag: "allow-open",
    env: "ALLOW_OPEN",
    kind: { type: "bool" },
    default: "false",
    help: "Allow binding a non-loopback host without API_TOKEN",
  },
  {
    key: "rateLimitPerMinute",
    flag: "rate-limit",
    env: "RATE_LIMIT_PER_MINUTE",
    kind: { type: "int", min: 0, max: 1_000_000 },
    default: "600",
    help: "Mutating requests per minute per token (or client) before 429; 0 disables",
  },
  {
    key: "requestTimeoutMs",
    flag: "request-timeout-ms",
    env: "REQUEST_TIMEOUT_MS",
    kind: { type: "int", min: 100, max: 600_000 },
    default: "30000",
    help: "Time an HTTP request may take before it is answered 503 timeout",
  },
  {
    key: "apiReadCacheMs",
    flag: "api-read-cache-ms",
    env: "API_READ_CACHE_MS",
    kind: { type: "int", min: 0, max: 60_000 },
    default: "1000",
    help:
      "How long the API reuses a store read (devices, readings, alerts) before asking the store again; 0 shares only reads in flight",
  },
  {
    key: "kafkaBrokers",
    flag: "kafka-brokers",
    env: "KAFKA_BROKERS",
    kind: { type: "list" },
    default: undefined,
    help: "Kafka bootstrap servers, comma-separated (unset: embedded in-process queue)",
  },
  {
    key: "kafkaTopic",
    flag: "kafka-topic",
    env: "KAFKA_TOPIC",
    kind: { type: "string", pattern: TOPIC, patternHint: "letters, digits, '.', '_' or '-'" },
    default: "iot.readings",
    help: "Topic carrying sensor readings",
  },
  {
    key: "kafkaDlqTopic",
    flag: "kafka-dlq-topic",
    env: "KAFKA_DLQ_TOPIC",
    kind: { type: "string", pattern: TOPIC, patternHint: "letters, digits, '.', '_' or '-'" },
    default: undefined,
    help: "Dead-letter topic for invalid records (default: <topic>.dlq)",
  },
  {
    key: "kafkaSeqTopic",
    flag: "kafka-seq-topic",
    env: "KAFKA_SEQ_TOPIC",
    kind: { type: "string", pattern: TOPIC, patternHint: "letters, digits, '.', '_' or '-'" },
    default: undefined,
    help: "Compacted topic of the sensors' reserved seq blocks (default: <topic>.seqs)",
  },
  {
    key: "kafkaPartitions",
    flag: "kafka-partitions",
    env: "KAFKA_PARTITIONS",
    kind: { type: "int", min: 1, max: 1000 },
    default: "6",
    help: "Partitions of the readings topic when it is created",
  },
  {
    key: "kafkaGroup",
    flag: "kafka-group",
    env: "KAFKA_GROUP",
    kind: { type: "string" },
    default: "iot-processors",
    help: "Consumer group of the processors",
  },
  {
    key: "kafkaSensorsTopic",
    flag: "kafka-sensors-topic",
    env: "KAFKA_SENSORS_TOPIC",
    kind: { type: "string", pattern: TOPIC, patternHint: "letters, digits, '.', '_' or '-'" },
    default: undefined,
    help:
      "Compacted fleet registry topic; <it>.status and <it>.commands go with it (default: <topic>.sensors)",
  },
  {
    key: "kafkaSensorsGroup",
    flag: "kafka-sensors-group",
    env: "KAFKA_SENSORS_GROUP",
    kind: { type: "string" },
    default: undefined,
    help: "Consumer group of the sensors processes on the registry (default: <group>-sensors)",
  },
  {
    key: "kafkaSensorsSessionTimeoutMs",
    flag: "kafka-sensors-session-timeout-ms",
    env: "KAFKA_SENSORS_SESSION_TIMEOUT_MS",
    kind: { type: "int", min: 6000, max: 300_000 },
    default: "10000",
    help: "A sensors process silent this long loses its sensors to the others",
  },
  {
    key: "kafkaGiveUpMs",
    flag: "kafka-give-up-ms",
    env: "KAFKA_GIVE_UP_MS",
    kind: { type: "int", min: 1000, max: 86_400_000 },
    default: "120000",
    help: "Start-up gives up (exit 1) after failing to connect for this long; running processors " +
      "exit 1 when no Kafka broker has answered for this long",
  },
  {
    key: "kafkaClientId",
    flag: "kafka-client-id",
    env: "KAFKA_CLIENT_ID",
    kind: { type: "string" },
    default: "iot-pipeline",
    help: "Kafka client id",
  },
  {
    key: "kafkaSaslMechanism",
    flag: "kafka-sasl-mechanism",
    env: "KAFKA_SASL_MECHANISM",
    kind: { type: "enum", values: KAFKA_SASL_MECHANISMS },
    default: undefined,
    help: "SASL mechanism for the brokers (unset: none)",
  },
  {
    key: "kafkaUsername",
    flag: "kafka-username",
    env: "KAFKA_USERNAME",
    kind: { type: "string" },
    default: undefined,
    help: "SASL username; needs KAFKA_SASL_MECHANISM",
  },
  {
    key: "kafkaPassword",
    flag: "kafka-password",
    env: "KAFKA_PASSWORD",
    kind: { type: "string" },
    default: undefined,
    help: "SASL password; needs KAFKA_SASL_MECHANISM",
    secret: true,
  },
  {
    key: "kafkaTls",
    flag: "kafka-tls",
    env: "KAFKA_TLS",
    kind: { type: "bool" },
    default: "false",
    help: "Connect to the brokers over TLS",
  },
  {
    key: "kafkaProducerWorker",
    flag: "kafka-producer-worker",
    env: "KAFKA_PRODUCER_WORKER",
    kind: { type: "bool" },
    default: "true",
    help:
      "Run the sensors' Kafka producer in a worker thread, so its encoding uses another core than the sensors",
  },
  {
    key: "kafkaTlsCaFile",
    flag: "kafka-tls-ca-file",
    env: "KAFKA_TLS_CA_FILE",
    kind: { type: "string" },
    default: undefined,
    help: "PEM CA bundle for the brokers' certificates (unset: system roots); needs KAFKA_TLS",
  },
  {
    key: "mongoUrl",
    flag: "mongo-url",
    env: "MONGO_URL",
    kind: {
      type: "string",
      pattern: /^mongodb(\+srv)?:\/\//,
      patternHint: "a mongodb:// or mongodb+srv:// URL",
    },
    default: undefined,
    help: "MongoDB connection string (unset: embedded Deno KV store)",
    secret: true,
  },
  {
    key: "kvPath",
    flag: "kv-path",
    env: "KV_PATH",
    kind: { type: "string" },
    default: "data/iot.kv",
    help: "Deno KV file of the embedded store (':memory:' keeps nothing)",
  },
  {
    key: "mongoDb",
    flag: "mongo-db",
    env: "MONGO_DB",
    kind: {
      type: "string",
      pattern: /^[A-Za-z0-9_-]{1,63}$/,
      patternHint: "letters, digits, '_' or '-'",
    },
    default: "iot",
    help: "MongoDB database name",
  },
  {
    key: "sensors",
    flag: "sensors",
    env: "SENSORS",
    kind: { type: "int", min: 0, max: 1_000_000 },
    default: "10",
    help: "Simulated sensors started at launch",
  },
  {
    key: "sensorProfile",
    flag: "sensor-profile",
    env: "SENSOR_PROFILE",
    kind: { type: "enum", values: SENSOR_PROFILES },
    default: "normal",
    help: "Profile of the initial sensors",
  },
  {
    key: "intervalMs",
    flag: "interval-ms",
    env: "SENSOR_INTERVAL_MS",
    kind: { type: "int", min: 100, max: 3_600_000 },
    default: "3000",
    help: "Default time between two readings of a sensor",
  },
  {
    key: "seqBlock",
    flag: "seq-block",
    env: "SEQ_BLOCK",
    kind: { type: "int", min: 2, max: 1_000_000 },
    default: "100",
    help: "Seqs a sensor reserves durably at a time; a crash leaves at most one block unused " +
      "per sensor (a gap, never a reuse)",
  },
  {
    key: "maxSensors",
    flag: "max-sensors",
    env: "MAX_SENSORS",
    kind: { type: "int", min: 1, max: 10_000_000 },
    default: "100000",
    help: "Cap on running sensors; more are refused with 409",
  },
  {
    key: "seed",
    flag: "seed",
    env: "SEED",
    kind: { type: "int", min: 0, max: 4294967295 },
    default: "1",
    help: "Fleet seed; each sensor's seed derives from it and its id",
  },
  {
    key: "alarmHigh",
    flag: "alarm-high",
    env: "ALARM_HIGH",
    kind: { type: "number", ...TEMPERATURE_RANGE },
    default: "80",
    help: "Raise threshold (°C, reading >= high is hot)",
  },
  {
    key: "alarmLow",
    flag: "alarm-low",
    env: "ALARM_LOW",
    kind: { type: "number", ...TEMPERATURE_RANGE },
    default: "70",
    help: "Clear threshold (°C, reading <= low is cool)",
  },
  {
    key: "alarmRaiseAfter",
    flag: "alarm-raise-after",
    env: "ALARM_RAISE_AFTER",
    kind: { type: "int", ...RULE_COUNT_RANGE },
    default: "2",
    help: "Consecutive hot readings that raise an alert",
  },
  {
    key: "alarmClearAfter",
    flag: "alarm-clear-after",
    env: "ALARM_CLEAR_AFTER",
    kind: { type: "int", ...RULE_COUNT_RANGE },
    default: "2",
    help: "Consecutive cool readings that clear it",
  },
  {
    key: "passivateAfterMs",
    flag: "passivate-after-ms",
    env: "PASSIVATE_AFTER_MS",
    kind: { type: "int", min: 1000, max: 86_400_000 },
    default: "300000",
    help: "Idle time after which a device's processor is released from memory",
  },
  {
    key: "checkpointMs",
    flag: "checkpoint-ms",
    env: "CHECKPOINT_MS",
    kind: { type: "int", min: 50, max: 600_000 },
    default: "1000",
    help: "Time between checkpoints of device states and consumer offsets",
  },
  {
    key: "offlineAfterMs",
    flag: "offline-after-ms",
    env: "OFFLINE_AFTER_MS",
    kind: { type: "int", ...OFFLINE_AFTER_RANGE },
    default: undefined,
    help: "Silence after which a device gets an offline alert (unset: 3 × its interval); a " +
      "sensor's own offlineAfterMs overrides it (docs/offline.md)",
  },
  {
    key: "offlineGraceMs",
    flag: "offline-grace-ms",
    env: "OFFLINE_GRACE_MS",
    kind: { type: "int", min: 0, max: 600_000 },
    default: "2000",
    help: "How far readings of one partition may overtake each other (and the processors' " +
      "clock lead the sensors'): offline is decided this much after the silence (docs/offline.md)",
  },
  {
    key: "webhookMaxAttempts",
    flag: "webhook-max-attempts",
    env: "WEBHOOK_MAX_ATTEMPTS",
    kind: { type: "int", min: 1, max: 1000 },
    default: "12",
    help: "Attempts of one webhook delivery before it is dead-lettered (docs/webhooks.md)",
  },
  {
    key: "webhookBackoffBaseMs",
    flag: "webhook-backoff-base-ms",
    env: "WEBHOOK_BACKOFF_BASE_MS",
    kind: { type: "int", min: 1, max: 600_000 },
    default: "1000",
    help: "Longest wait before the first webhook retry; doubles per failure, full jitter",
  },
  {
    key: "webhookBackoffCapMs",
    flag: "webhook-backoff-cap-ms",
    env: "WEBHOOK_BACKOFF_CAP_MS",
    kind: { type: "int", min: 1, max: 86_400_000 },
    default: "300000",
    help: "Longest wait between two webhook attempts",
  },
  {
    key: "webhookPollMs",
    flag: "webhook-poll-ms",
    env: "WEBHOOK_POLL_MS",
    kind: { type: "int", min: 10, max: 600_000 },
    default: "1000",
    help: "How often the webhook dispatcher looks for pending events and due retries",
  },
  {
    key: "webhookTimeoutMs",
    flag: "webhook-timeout-ms",
    env: "WEBHOOK_TIMEOUT_MS",
    kind: { type: "int", min: 100, max: 600_000 },
    default: "10000",
    help: "How long one webhook attempt waits for an answer",
  },
  {
    key: "webhookLeaseMs",
    flag: "webhook-lease-ms",
    env: "WEBHOOK_LEASE_MS",
    kind: { type: "int", min: 1000, max: 600_000 },
    default: "15000",
    help: "How long the webhook dispatcher's lease lasts unless renewed; another processors " +
      "process takes over this long after the holder died (docs/webhooks.md)",
  },
  {
    key: "webhookRetentionMs",
    flag: "webhook-retention-ms",
    env: "WEBHOOK_RETENTION_MS",
    kind: { type: "int", min: 60_000, max: 31_536_000_000 },
    default: "604800000",
    help: "How long delivered and dead-lettered webhook events are kept before they are deleted",
  },
  {
    key: "webhookAllowNetworks",
    flag: "webhook-allow-networks",
    env: "WEBHOOK_ALLOW_NETWORKS",
    kind: { type: "list", items: "cidr" },
    default: undefined,
    help: "Loopback, private or link-local networks webhooks may reach anyway, e.g. " +
      "10.0.5.0/24,127.0.0.1 (unset: public addresses only)",
  },
  {
    key: "logFormat",
    flag: "log-format",
    env: "LOG_FORMAT",
    kind: { type: "enum", values: LOG_FORMATS },
    default: "json",
    help: "Log lines as JSON objects or readable text",
  },
  {
    key: "logLevel",
    flag: "log-level",
    env: "LOG_LEVEL",
    kind: { type: "enum", values: LOG_LEVELS },
    default: "info",
    help: "Lowest level logged",
  },
] as const satisfies readonly Setting[];

/** Every field of `Config` has its setting: a field left out of the table fails `deno check`. */
const _everyFieldHasASetting: [Exclude<keyof Config, (typeof TABLE)[number]["key"]>] extends [never]
  ? true
  : Exclude<keyof Config, (typeof TABLE)[number]["key"]> = true;

export const SETTINGS: readonly Setting[] = TABLE;

/**
 * A resolved config; or `help`: the user asked for information (`show`: `--help` or
 * `--version`), not for a run; or every problem found.
 */
export type ConfigResult =
  | { readonly ok: true; readonly config: Config }
  | { readonly ok: false; readonly help: true; readonly show: "help" | "version" }
  | { readonly ok: false; readonly help: false; readonly errors: readonly string[] };

/**
 * Resolves settings from flags (first) and the environment (second), else the
 * default. Pure: nothing is read but its arguments.
 */
export function parseConfig(
  args: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): ConfigResult {
  const options: Record<string, { type: "string" | "boolean"; short?: string }> = {
    help: { type: "boolean", short: "h" },
    version: { type: "boolean", short: "V" },
  };
  for (const s of SETTINGS) {
    options[s.flag] = { type: s.kind.type === "bool" ? "boolean" : "string" };
  }
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({ args: [...args], options, strict: true, allowPositionals: false }));
  } catch (err) {
    return { ok: false, help: false, errors: [(err as Error).message] };
  }
  if (values.help) return { ok: false, help: true, show: "help" };
  if (values.version) return { ok: false, help: true, show: "version" };

  const errors: string[] = [];
  const out: Record<string, unknown> = {};
  for (const s of SETTINGS) {
    const flagValue = values[s.flag];
    const envValue = env[s.env];
    const [raw, source] = flagValue !== undefined
      ? [String(flagValue), `--${s.flag}`]
      : envValue !== undefined && envValue !== ""
      ? [envValue, s.env]
      : [s.default, "default"];
    if (raw === undefined) {
      out[s.key] = undefined;
      continue;
    }
    const parsed = parseValue(s.kind, raw);
    if (typeof parsed === "object" && parsed !== null && "problem" in parsed) {
      const shown = s.secret ? "" : `: "${raw}"`;
      errors.push(`Invalid ${source}${shown} ${parsed.problem}`);
    } else {
      out[s.key] = parsed;
    }
  }
  if (errors.length === 0) {
    out.kafkaDlqTopic ??= `${out.kafkaTopic}.dlq`;
    out.kafkaSensorsTopic ??= `${out.kafkaTopic}.sensors`;
    out.kafkaSensorsGroup ??= `${out.kafkaGroup}-sensors`;
    out.kafkaSeqTopic ??= `${out.kafkaTopic}.seqs`;
    if ((out.alarmLow as number) >= (out.alarmHigh as number)) {
      errors.push(
        `Invalid alarm thresholds: low (${out.alarmLow}) must be below high (${out.alarmHigh})`,
      );
    }
    if ((out.sensors as number) > (out.maxSensors as number)) {
      errors.push(
        `Invalid fleet size: ${out.sensors} sensors exceeds the cap of ${out.maxSensors}`,
      );
    }
    if ([out.kafkaTopic, out.kafkaDlqTopic].includes(out.kafkaSensorsTopic)) {
      errors.push(
        "Invalid fleet registry topic: it must differ from the readings and dead-letter topics",
      );
    }
    if (out.kafkaDlqTopic === out.kafkaTopic) {
      errors.push("Invalid dead-letter topic: it must differ from the readings topic");
    }
    if ([out.kafkaTopic, out.kafkaDlqTopic, out.kafkaSensorsTopic].includes(out.kafkaSeqTopic)) {
      errors.push(
        "Invalid seq topic: it must differ from the readings, dead-letter and fleet registry topics",
      );
    }
    const loopback = ["127.0.0.1", "localhost", "::1"].includes(out.host as string);
    if (!loopback && out.apiToken === undefined && !out.allowOpen) {
      errors.push(
        `Refusing to listen on "${out.host}" without API_TOKEN: set API_TOKEN, or pass --allow-open to accept an open control API`,
      );
    }
    errors.push(...kafkaSecurityProblems(out as Partial<Config>));
    if (out.kafkaBrokers === undefined && (out.role === "sensors" || out.role === "processors")) {
      errors.push(
        `Invalid --role: "${out.role}" needs KAFKA_BROKERS (the embedded queue lives inside one process)`,
      );
    }
  }
  if (errors.length > 0) return { ok: false, help: false, errors };
  return { ok: true, config: Object.freeze(out) as unknown as Config };
}

/** SASL settings come all together or not at all; a CA file only means something over TLS. */
function kafkaSecurityProblems(config: Partial<Config>): string[] {
  const problems: string[] = [];
  const credentials = [
    ...(config.kafkaUsername === undefined ? [] : ["KAFKA_USERNAME"]),
    ...(config.kafkaPassword === undefined ? [] : ["KAFKA_PASSWORD"]),
  ];
  if (config.kafkaSaslMechanism !== undefined) {
    const missing = ["KAFKA_USERNAME", "KAFKA_PASSWORD"].filter((n) => !credentials.includes(n));
    if (missing.length > 0) {
      problems.push(
        `Invalid KAFKA_SASL_MECHANISM: "${config.kafkaSaslMechanism}" needs ${
          missing.join(" and ")
        }`,
      );
    }
  } else if (credentials.length > 0) {
    problems.push(
      `Invalid Kafka credentials: ${credentials.join(" and ")} ${
        credentials.length === 1 ? "needs" : "need"
      } KAFKA_SASL_MECHANISM`,
    );
  }
  if (config.kafkaTlsCaFile !== undefined && !config.kafkaTls) {
    problems.push(
      `Invalid KAFKA_TLS_CA_FILE: "${config.kafkaTlsCaFile}" needs KAFKA_TLS=true`,
    );
  }
  return problems;
}

function parseValue(kind: Kind, raw: string): unknown {
  switch (kind.type) {
    case "string":
      if (raw.trim() === "") return { problem: "must not be empty" };
      if (kind.minLength !== undefined && raw.length < kind.minLength) {
        return { problem: `must be at least ${kind.minLength} characters long` };
      }
      if (kind.pattern && !kind.pattern.test(raw)) {
        return { problem: `must be ${kind.patternHint}` };
      }
      return raw;
    case "int":
    case "number": {
      const n = Number(raw);
      if (raw.trim() === "" || !Number.isFinite(n)) return { problem: "is not a number" };
      if (kind.type === "int" && !Number.isInteger(n)) return { problem: "is not an integer" };
      if (n < kind.min || n > kind.max) {
        return { problem: `must be between ${kind.min} and ${kind.max}` };
      }
      return n;
    }
    case "enum":
      return kind.values.includes(raw)
        ? raw
        : { problem: `must be one of ${kind.values.join(", ")}` };
    case "bool":
      if (["true", "1", "yes"].includes(raw)) return true;
      if (["false", "0", "no"].includes(raw)) return false;
      return { problem: "must be true or false" };
    case "list": {
      const items = raw.split(",").map((x) => x.trim()).filter((x) => x !== "");
      const what = kind.items === "cidr" ? "network" : "host:port";
      if (items.length === 0) return { problem: `must list at least one ${what}` };
      for (const item of items) {
        const problem = kind.items === "cidr"
          ? (parseCidr(item) ? undefined : "expected an IP address or CIDR network")
          : hostPortProblem(item);
        if (problem) return { problem: `has "${item}": ${problem}` };
      }
      return items;
    }
    default:
      return kind satisfies never;
  }
}

/**
 * Why `item` is not a `host:port`, or undefined if it is. No IPv6 literal: kafkajs 2.2.4 splits a
 * broker at its first colon (`connectionPoolBuilder.js`), so "[::1]:9092" could never connect.
 */
function hostPortProblem(item: string): string | undefined {
  const match = /^([^\s:]+):([^:]*)$/.exec(item);
  if (!match) return "expected host:port";
  const port = match[2]!;
  if (!/^\d+$/.test(port) || Number(port) < 1 || Number(port) > 65535) {
    return `the port must be between 1 and 65535`;
  }
  return undefined;
}

/** What a setting accepts, as --help shows it: the choices of an enum, the range of a number. */
export function acceptedValues(kind: Kind): string | undefined {
  switch (kind.type) {
    case "enum":
      return `choices: ${kind.values.join(", ")}`;
    case "int":
      return `an integer from ${kind.min} to ${kind.max}`;
    case "number":
      return `a number from ${kind.min} to ${kind.max}`;
    case "string": {
      const rules = [
        ...(kind.minLength === undefined ? [] : [`at least ${kind.minLength} characters`]),
        ...(kind.patternHint === undefined ? [] : [kind.patternHint]),
      ];
      return rules.length > 0 ? rules.join(", ") : undefined;
    }
    case "bool":
      return undefined;
    case "list":
      return kind.items === "cidr"
        ? "IP addresses or CIDR networks, comma-separated"
        : "host:port, comma-separated, each port from 1 to 65535";
    default:
      return kind satisfies never;
  }
}

/** The --help text, generated from SETTINGS: each option's variable, meaning, values and default. */
export function helpText(): string {
  const lines = [
    "Usage: deno task start [options]",
    "",
    "Every option can also be set through the environment variable shown beside it.",
    "",
  ];
  for (const s of SETTINGS) {
    const flag = s.kind.type === "bool" ? `--${s.flag}` : `--${s.flag} <${placeholder(s.kind)}>`;
    lines.push(`  ${flag.padEnd(40)} ${s.env}`);
    lines.push(`      ${s.help}`);
    const accepted = acceptedValues(s.kind);
    const details = [
      ...(accepted === undefined ? [] : [capitalize(accepted)]),
      ...(s.default === undefined ? [] : [`(default: ${s.default})`]),
    ];
    if (details.length > 0) lines.push(`      ${details.join(" ")}`);
  }
  lines.push(`  -h, --help`, `      Show this help`);
  lines.push(`  -V, --version`, `      Show the name and version`);
  return lines.join("\n");
}

function placeholder(kind: Kind): string {
  switch (kind.type) {
    case "enum":
      return kind.values.join("|");
    case "int":
    case "number":
      return "number";
    case "list":
      return kind.items === "cidr" ? "cidr,…" : "host:port,…";
    default:
      return "value";
  }
}

function capitalize(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
