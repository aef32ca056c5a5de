import "./env_guard.ts";
import assert from "node:assert/strict";
import process from "node:process";
import { logLevel } from "kafkajs";
import {
  createKafka,
  createTopicsWithLeaders,
  isKafkajsIdleTimerWarning,
  kafkajsLine,
  kafkaSecurity,
  securityConfig,
} from "../adapters/kafka_client.ts";
import { createLogger, silentLogger } from "../adapters/log.ts";
import { settle } from "./wait.ts";
import { type Config, parseConfig } from "../schemas/config.ts";

const PASSWORD = "hunter2-Kafka-pw";
const PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

function config(env: Record<string, string> = {}): Config {
  const result = parseConfig([], env);
  assert.ok(result.ok, result.ok ? "" : JSON.stringify(result));
  return result.config;
}

/** A reader that serves one file and records what it was asked. */
function fakeFiles(files: Record<string, string>) {
  const reads: string[] = [];
  const readFile = (path: string) => {
    reads.push(path);
    const text = files[path];
    if (text === undefined) throw new Deno.errors.NotFound(`No such file: "${path}"`);
    return text;
  };
  return { reads, readFile };
}

Deno.test("kafkaSecurity() asks for nothing when no security setting is given", () => {
  const { reads, readFile } = fakeFiles({});
  assert.deepEqual(kafkaSecurity(config(), readFile), {});
  assert.deepEqual(reads, []);
});

Deno.test("kafkaSecurity() passes SCRAM credentials as sasl", () => {
  const { readFile } = fakeFiles({});
  const security = kafkaSecurity(
    config({
      KAFKA_SASL_MECHANISM: "scram-sha-512",
      KAFKA_USERNAME: "pipeline",
      KAFKA_PASSWORD: PASSWORD,
    }),
    readFile,
  );
  assert.deepEqual(security, {
    sasl: { mechanism: "scram-sha-512", username: "pipeline", password: PASSWORD },
  });
});

Deno.test("kafkaSecurity() turns TLS on with the system roots when no CA file is given", () => {
  const { reads, readFile } = fakeFiles({});
  assert.deepEqual(kafkaSecurity(config({ KAFKA_TLS: "true" }), readFile), { ssl: true });
  assert.deepEqual(reads, []);
});

Deno.test("kafkaSecurity() trusts the CA bundle read through the injected reader", () => {
  const { reads, readFile } = fakeFiles({ "/etc/kafka/ca.pem": PEM });
  const security = kafkaSecurity(
    config({
      KAFKA_TLS: "true",
      KAFKA_TLS_CA_FILE: "/etc/kafka/ca.pem",
      KAFKA_SASL_MECHANISM: "scram-sha-256",
      KAFKA_USERNAME: "pipeline",
      KAFKA_PASSWORD: PASSWORD,
    }),
    readFile,
  );
  assert.deepEqual(security, {
    sasl: { mechanism: "scram-sha-256", username: "pipeline", password: PASSWORD },
    ssl: { ca: [PEM] },
  });
  assert.deepEqual(reads, ["/etc/kafka/ca.pem"]);
});

Deno.test("kafkaSecurity() lets a missing CA file fail loudly", () => {
  const { readFile } = fakeFiles({});
  assert.throws(
    () => kafkaSecurity(config({ KAFKA_TLS: "true", KAFKA_TLS_CA_FILE: "/nope.pem" }), readFile),
    Deno.errors.NotFound,
  );
});

Deno.test("createKafka() with SASL and TLS never logs the password", () => {
  const lines: string[] = [];
  const logger = createLogger({ level: "debug", write: (line) => lines.push(line) });
  const kafka = createKafka({
    brokers: ["127.0.0.1:9093"],
    clientId: "security-test",
    logger,
    sasl: { mechanism: "plain", username: "pipeline", password: PASSWORD },
    ssl: { ca: [PEM] },
  });
  // Building clients reads the config but opens no connection.
  kafka.producer();
  kafka.consumer({ groupId: "security-test" });
  kafka.admin();
  for (const line of lines) assert.ok(!line.includes(PASSWORD), line);

  // The capture is live: kafkajs's own logger ends up in it.
  const before = lines.length;
  kafka.logger().warn("probe line", { broker: "127.0.0.1:9093" });
  assert.equal(lines.length, before + 1);
  assert.match(lines.at(-1)!, /"msg":"probe line".*"component":"kafkajs"/);
});

Deno.test("securityConfig() turns the options into kafkajs settings, also for health probes", () => {
  assert.deepEqual(securityConfig({}), {});
  const sasl = { mechanism: "scram-sha-512" as const, username: "u", password: "p" };
  assert.deepEqual(securityConfig({ sasl, ssl: true }), { sasl, ssl: true });
  assert.deepEqual(securityConfig({ ssl: { ca: ["PEM"] } }), { ssl: { ca: ["PEM"] } });
});

Deno.test("isKafkajsIdleTimerWarning() picks out only kafkajs's idle-queue timer warning", () => {
  const idle = `${-1 - Date.now()} is a negative number.\nTimeout duration was set to 1.`;
  assert.equal(isKafkajsIdleTimerWarning(idle, "TimeoutNegativeWarning"), true);
  assert.equal(isKafkajsIdleTimerWarning(idle, { type: "TimeoutNegativeWarning" }), true);
  // A negative delay computed by mistake elsewhere still warns.
  const small = "-1796 is a negative number.\nTimeout duration was set to 1.";
  assert.equal(isKafkajsIdleTimerWarning(small, "TimeoutNegativeWarning"), false);
  assert.equal(isKafkajsIdleTimerWarning(idle, "DeprecationWarning"), false);
  assert.equal(isKafkajsIdleTimerWarning(idle, undefined), false);
  const error = Object.assign(new Error(idle), { name: "TimeoutNegativeWarning" });
  assert.equal(isKafkajsIdleTimerWarning(error, undefined), true);
});

Deno.test("createKafka() leaves every other process warning alone", async () => {
  createKafka({ brokers: ["127.0.0.1:9093"], clientId: "warning-test", logger: silentLogger });
  const seen: string[] = [];
  const listener = (warning: Error) => seen.push(`${warning.name}: ${warning.message}`);
  // Only this listener for the test: the runtime's own would print the two test warnings.
  const printers = process.listeners("warning");
  process.removeAllListeners("warning");
  process.on("warning", listener);
  try {
    process.emitWarning(`${-1 - Date.now()} is a negative number.`, "TimeoutNegativeWarning");
    process.emitWarning("-5 is a negative number.", "TimeoutNegativeWarning");
    process.emitWarning("Something else", "ExperimentalWarning");
    await settle();
    assert.deepEqual(seen, [
      "TimeoutNegativeWarning: -5 is a negative number.",
      "ExperimentalWarning: Something else",
    ]);
  } finally {
    process.off("warning", listener);
    for (const printer of printers) process.on("warning", printer);
  }
});

Deno.test("kafkajsLine() sends kafkajs's own retries and connection errors to debug, with the stack on an error field", () => {
  const stack = "Error: connect ECONNREFUSED 127.0.0.1:1\n    at connect (net.js:1:1)";
  const connection = kafkajsLine({
    namespace: "Connection",
    level: logLevel.ERROR,
    log: {
      timestamp: "t",
      logger: "kafkajs",
      message: "Connection error: connect ECONNREFUSED 127.0.0.1:1",
      broker: "127.0.0.1:1",
      stack,
    },
  });
  assert.equal(connection.level, "debug");
  assert.equal(connection.fields.namespace, "Connection");
  assert.equal(connection.fields.broker, "127.0.0.1:1");
  assert.equal(connection.fields.stack, undefined, "no bare stack field");
  assert.equal((connection.fields.error as Error).stack, stack);
  const retry = kafkajsLine({
    namespace: "BrokerPool",
    level: logLevel.ERROR,
    log: {
      timestamp: "t",
      logger: "kafkajs",
      message: "Failed to connect to seed broker, trying another broker from the list",
      retryCount: 0,
      retryTime: 300,
    },
  });
  assert.equal(retry.level, "debug");
  const crash = kafkajsLine({
    namespace: "Consumer",
    level: logLevel.ERROR,
    log: { timestamp: "t", logger: "kafkajs", message: "Crash: KafkaJSNumberOfRetriesExceeded" },
  });
  assert.equal(crash.level, "warn", "an error kafkajs does not retry itself stays visible");
  const info = kafkajsLine({
    namespace: "Consumer",
    level: logLevel.INFO,
    log: { timestamp: "t", logger: "kafkajs", message: "Starting" },
  });
  assert.equal(info.level, "debug");
});

Deno.test("createKafka() logs a kafkajs error it does not retry as a warning, its stack left out", () => {
  const lines: string[] = [];
  const kafka = createKafka({
    brokers: ["127.0.0.1:1"],
    clientId: "log-test",
    logger: createLogger({ write: (line) => lines.push(line) }),
  });
  kafka.logger().error("Crash: KafkaJSNumberOfRetriesExceeded", {
    stack: "Error: boom\n    at somewhere (x.js:1:1)",
  });
  assert.equal(lines.length, 1);
  const line = JSON.parse(lines[0]!);
  assert.equal(line.level, "warn");
  assert.doesNotMatch(lines[0]!, /at somewhere/);
});

/** An admin whose metadata answers come from `answers`, in turn: a thrown error or partition leaders. */
function scriptedAdmin(answers: readonly (Error | number[])[]) {
  const calls = { create: 0, metadata: 0 };
  const admin = {
    createTopics: () => {
      calls.create++;
      return Promise.resolve(true);
    },
    fetchTopicMetadata: () => {
      const answer = answers[Math.min(calls.metadata++, answers.length - 1)]!;
      if (answer instanceof Error) return Promise.reject(answer);
      const partitions = answer.map((leader, partitionId) => ({ partitionId, leader }));
      return Promise.resolve({ topics: [{ name: "t", partitions }] });
    },
  };
  return { admin: admin as unknown as Parameters<typeof createTopicsWithLeaders>[0], calls };
}

/** A refusal as kafkajs raises it (a `KafkaJSProtocolError`: the protocol's type, code, retriable). */
function protocolError(type: string, code: number, retriable: boolean, message: string): Error {
  return Object.assign(new Error(message), { name: "KafkaJSProtocolError", type, code, retriable });
}

/** What a broker that has just started answers for a topic it has just created. */
const unknownTopic = () =>
  protocolError(
    "UNKNOWN_TOPIC_OR_PARTITION",
    3,
    true,
    "This server does not host this topic-partition",
  );

Deno.test("createTopicsWithLeaders() asks again while a fresh broker does not know the topic, until every partition has a leader", async () => {
  const { admin, calls } = scriptedAdmin([unknownTopic(), unknownTopic(), [-1, 0], [0, 0]]);
  const slept: number[] = [];
  const sleep = (ms: number) => (slept.push(ms), Promise.resolve());
  await createTopicsWithLeaders(admin, [{ topic: "t", numPartitions: 2 }], { delayMs: 50, sleep });
  assert.equal(calls.create, 1);
  assert.equal(calls.metadata, 4);
  assert.deepEqual(slept, [50, 50, 50]);
});

Deno.test("createTopicsWithLeaders() passes a refusal that is not retriable on at once, and gives up after its attempts", async () => {
  const denied = protocolError(
    "TOPIC_AUTHORIZATION_FAILED",
    29,
    false,
    "Not authorized to access topics: [Topic authorization failed.]",
  );
  const once = scriptedAdmin([denied]);
  const sleep = () => Promise.resolve();
  await assert.rejects(
    createTopicsWithLeaders(once.admin, [{ topic: "t" }], { sleep }),
    /Not authorized/,
  );
  assert.equal(once.calls.metadata, 1);
  const never = scriptedAdmin([unknownTopic()]);
  await assert.rejects(
    createTopicsWithLeaders(never.admin, [{ topic: "t" }], { attempts: 5, sleep }),
    /does not host this topic-partition/,
  );
  assert.equal(never.calls.metadata, 5);
  const leaderless = scriptedAdmin([[-1]]);
  await assert.rejects(
    createTopicsWithLeaders(leaderless.admin, [{ topic: "t" }], { attempts: 3, sleep }),
    /no leader/,
  );
  assert.equal(leaderless.calls.metadata, 3);
});
