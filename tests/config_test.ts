import assert from "node:assert/strict";
import { helpText, parseConfig, SETTINGS } from "../schemas/config.ts";

Deno.test("parseConfig() fills every setting with its default", () => {
  const result = parseConfig([], {});
  assert.ok(result.ok);
  const { config } = result;
  assert.equal(config.port, 8080);
  assert.equal(config.host, "127.0.0.1");
  assert.equal(config.kafkaBrokers, undefined, "embedded transport by default");
  assert.equal(config.mongoUrl, undefined, "embedded store by default");
  assert.equal(config.kvPath, "data/iot.kv");
  assert.equal(config.kafkaTopic, "iot.readings");
  assert.equal(config.kafkaDlqTopic, "iot.readings.dlq");
  assert.equal(config.kafkaPartitions, 6);
  assert.equal(config.mongoDb, "iot");
  assert.equal(config.sensors, 10);
  assert.equal(config.intervalMs, 3000);
  assert.equal(config.maxSensors, 100_000);
  assert.equal(config.alarmHigh, 80);
  assert.equal(config.alarmLow, 70);
  assert.equal(config.apiToken, undefined);
  assert.equal(config.role, "all");
});

Deno.test("parseConfig() prefers flags over the environment over defaults", () => {
  const result = parseConfig(["--port", "9000", "--kafka-topic", "t.flag"], {
    PORT: "7000",
    KAFKA_TOPIC: "t.env",
    MONGO_DB: "fromenv",
    KAFKA_BROKERS: "a:1, b:2",
  });
  assert.ok(result.ok);
  assert.equal(result.config.port, 9000);
  assert.equal(result.config.kafkaTopic, "t.flag");
  assert.equal(result.config.kafkaDlqTopic, "t.flag.dlq");
  assert.equal(result.config.mongoDb, "fromenv");
  assert.deepEqual(result.config.kafkaBrokers, ["a:1", "b:2"]);
});

Deno.test("parseConfig() reports every bad value at once", () => {
  const result = parseConfig(["--port", "99999", "--role", "boss"], {
    SENSOR_INTERVAL_MS: "10",
    ALARM_RAISE_AFTER: "1.5",
    KAFKA_BROKERS: "nohost",
    LOG_FORMAT: "xml",
  });
  assert.ok(!result.ok && !result.help);
  assert.equal(result.errors.length, 6, result.errors.join("\n"));
  assert.match(result.errors.join("\n"), /--port: "99999" must be between 0 and 65535/);
  assert.match(
    result.errors.join("\n"),
    /--role: "boss" must be one of all, sensors, processors, api/,
  );
  assert.match(
    result.errors.join("\n"),
    /SENSOR_INTERVAL_MS: "10" must be between 100 and 3600000/,
  );
  assert.match(result.errors.join("\n"), /ALARM_RAISE_AFTER: "1.5" is not an integer/);
});

Deno.test("parseConfig() checks thresholds against each other", () => {
  const result = parseConfig(["--alarm-high", "60"], { ALARM_LOW: "70" });
  assert.ok(!result.ok && !result.help);
  assert.match(result.errors[0]!, /low \(70\) must be below high \(60\)/);
});

Deno.test("parseConfig() never echoes a secret in an error", () => {
  const result = parseConfig([], { MONGO_URL: "postgres://user:hunter2@db" });
  assert.ok(!result.ok && !result.help);
  assert.doesNotMatch(result.errors.join(""), /hunter2/);
  assert.match(result.errors[0]!, /MONGO_URL must be a mongodb/);
});

Deno.test("parseConfig() rejects unknown flags and answers --help", () => {
  const unknown = parseConfig(["--prot", "1"], {});
  assert.ok(!unknown.ok && !unknown.help);
  assert.match(unknown.errors[0]!, /prot/);
  const help = parseConfig(["--help"], {});
  assert.ok(!help.ok && help.help);
});

Deno.test("helpText() lists every flag, variable and default", () => {
  const text = helpText();
  for (const s of SETTINGS) {
    assert.ok(text.includes(`--${s.flag}`), s.flag);
    assert.ok(text.includes(s.env), s.env);
    if (s.default !== undefined) assert.ok(text.includes(`(default: ${s.default})`), s.flag);
  }
});

Deno.test("parseConfig() refuses a split role without Kafka", () => {
  const result = parseConfig(["--role", "processors"], {});
  assert.ok(!result.ok && !result.help);
  assert.match(result.errors[0]!, /"processors" needs KAFKA_BROKERS/);
  assert.ok(parseConfig(["--role", "processors"], { KAFKA_BROKERS: "k:9092" }).ok);
});

Deno.test("parseConfig() refuses an open control API on a public address", () => {
  const open = parseConfig(["--host", "0.0.0.0"], {});
  assert.ok(!open.ok && !open.help);
  assert.match(open.errors[0]!, /without API_TOKEN/);
  assert.ok(parseConfig(["--host", "0.0.0.0"], { API_TOKEN: "s3cret" }).ok);
  assert.ok(parseConfig(["--host", "0.0.0.0", "--allow-open"], {}).ok);
  assert.ok(parseConfig([], {}).ok, "loopback needs no token");
});
