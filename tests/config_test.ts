import assert from "node:assert/strict";
import { helpText, parseConfig, SETTINGS } from "../schemas/config.ts";
import { RuleSchema, TEMPERATURE_RANGE } from "../schemas/reading.ts";
import { RULE_COUNT_RANGE } from "../domain/hysteresis.ts";
import { PROFILES } from "../domain/signal.ts";
import { resolveSensorRequest } from "../domain/sensor_specs.ts";

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
  assert.ok(parseConfig(["--host", "0.0.0.0"], { API_TOKEN: "s3cret-s3cret-s3cret" }).ok);
  assert.ok(parseConfig(["--host", "0.0.0.0", "--allow-open"], {}).ok);
  assert.ok(parseConfig([], {}).ok, "loopback needs no token");
});

Deno.test("parseConfig() defaults the rate limit to 600 and Kafka security to off", () => {
  const result = parseConfig([], {});
  assert.ok(result.ok);
  const { config } = result;
  assert.equal(config.rateLimitPerMinute, 600);
  assert.equal(config.kafkaSaslMechanism, undefined);
  assert.equal(config.kafkaUsername, undefined);
  assert.equal(config.kafkaPassword, undefined);
  assert.equal(config.kafkaTls, false);
  assert.equal(config.kafkaTlsCaFile, undefined);
});

Deno.test("parseConfig() reads the rate limit, 0 included, and checks its range", () => {
  const flag = parseConfig(["--rate-limit", "0"], { RATE_LIMIT_PER_MINUTE: "30" });
  assert.ok(flag.ok);
  assert.equal(flag.config.rateLimitPerMinute, 0);
  const env = parseConfig([], { RATE_LIMIT_PER_MINUTE: "30" });
  assert.ok(env.ok);
  assert.equal(env.config.rateLimitPerMinute, 30);
  for (const bad of ["-1", "1000001", "2.5", "lots"]) {
    const result = parseConfig([], { RATE_LIMIT_PER_MINUTE: bad });
    assert.ok(!result.ok && !result.help, bad);
    assert.match(result.errors[0]!, /^Invalid RATE_LIMIT_PER_MINUTE: /, bad);
  }
});

Deno.test("parseConfig() reads SASL credentials and TLS from flags and the environment", () => {
  const result = parseConfig(["--kafka-tls", "--kafka-sasl-mechanism", "scram-sha-256"], {
    KAFKA_USERNAME: "pipeline",
    KAFKA_PASSWORD: "hunter2",
    KAFKA_TLS_CA_FILE: "/etc/kafka/ca.pem",
  });
  assert.ok(result.ok, JSON.stringify(result));
  assert.equal(result.config.kafkaSaslMechanism, "scram-sha-256");
  assert.equal(result.config.kafkaUsername, "pipeline");
  assert.equal(result.config.kafkaPassword, "hunter2");
  assert.equal(result.config.kafkaTls, true);
  assert.equal(result.config.kafkaTlsCaFile, "/etc/kafka/ca.pem");
  for (const mechanism of ["scram-sha-512", "plain"]) {
    const other = parseConfig([], {
      KAFKA_SASL_MECHANISM: mechanism,
      KAFKA_USERNAME: "u",
      KAFKA_PASSWORD: "p",
    });
    assert.ok(other.ok && other.config.kafkaSaslMechanism === mechanism, mechanism);
  }
});

Deno.test("parseConfig() rejects an unknown SASL mechanism", () => {
  const result = parseConfig([], {
    KAFKA_SASL_MECHANISM: "gssapi",
    KAFKA_USERNAME: "u",
    KAFKA_PASSWORD: "p",
  });
  assert.ok(!result.ok && !result.help);
  assert.deepEqual(result.errors, [
    'Invalid KAFKA_SASL_MECHANISM: "gssapi" must be one of scram-sha-256, scram-sha-512, plain',
  ]);
});

Deno.test("parseConfig() requires a username and a password with a SASL mechanism", () => {
  const none = parseConfig([], { KAFKA_SASL_MECHANISM: "plain" });
  assert.ok(!none.ok && !none.help);
  assert.deepEqual(none.errors, [
    'Invalid KAFKA_SASL_MECHANISM: "plain" needs KAFKA_USERNAME and KAFKA_PASSWORD',
  ]);
  const noPassword = parseConfig([], { KAFKA_SASL_MECHANISM: "plain", KAFKA_USERNAME: "u" });
  assert.ok(!noPassword.ok && !noPassword.help);
  assert.deepEqual(noPassword.errors, [
    'Invalid KAFKA_SASL_MECHANISM: "plain" needs KAFKA_PASSWORD',
  ]);
  const noUser = parseConfig([], { KAFKA_SASL_MECHANISM: "plain", KAFKA_PASSWORD: "hunter2" });
  assert.ok(!noUser.ok && !noUser.help);
  assert.deepEqual(noUser.errors, ['Invalid KAFKA_SASL_MECHANISM: "plain" needs KAFKA_USERNAME']);
  assert.doesNotMatch(noUser.errors.join(""), /hunter2/);
});

Deno.test("parseConfig() refuses credentials without a SASL mechanism", () => {
  const both = parseConfig([], { KAFKA_USERNAME: "u", KAFKA_PASSWORD: "hunter2" });
  assert.ok(!both.ok && !both.help);
  assert.deepEqual(both.errors, [
    "Invalid Kafka credentials: KAFKA_USERNAME and KAFKA_PASSWORD need KAFKA_SASL_MECHANISM",
  ]);
  assert.doesNotMatch(both.errors.join(""), /hunter2/);
  const password = parseConfig([], { KAFKA_PASSWORD: "hunter2" });
  assert.ok(!password.ok && !password.help);
  assert.deepEqual(password.errors, [
    "Invalid Kafka credentials: KAFKA_PASSWORD needs KAFKA_SASL_MECHANISM",
  ]);
});

Deno.test("parseConfig() refuses a CA file without TLS", () => {
  const result = parseConfig(["--kafka-tls-ca-file", "/etc/kafka/ca.pem"], {});
  assert.ok(!result.ok && !result.help);
  assert.deepEqual(result.errors, [
    'Invalid KAFKA_TLS_CA_FILE: "/etc/kafka/ca.pem" needs KAFKA_TLS=true',
  ]);
  const off = parseConfig([], { KAFKA_TLS: "false", KAFKA_TLS_CA_FILE: "/etc/kafka/ca.pem" });
  assert.ok(!off.ok && !off.help);
  assert.ok(parseConfig([], { KAFKA_TLS: "true", KAFKA_TLS_CA_FILE: "/etc/kafka/ca.pem" }).ok);
  assert.ok(parseConfig([], { KAFKA_TLS: "true" }).ok, "TLS alone trusts the system roots");
});

Deno.test("parseConfig() reports every Kafka security problem at once", () => {
  const result = parseConfig([], {
    KAFKA_SASL_MECHANISM: "scram-sha-512",
    KAFKA_PASSWORD: "hunter2",
    KAFKA_TLS_CA_FILE: "/ca.pem",
  });
  assert.ok(!result.ok && !result.help);
  assert.equal(result.errors.length, 2, result.errors.join("\n"));
});

Deno.test("parseConfig() never echoes the Kafka password, even when it is invalid", () => {
  const result = parseConfig([], {
    KAFKA_SASL_MECHANISM: "plain",
    KAFKA_USERNAME: "u",
    KAFKA_PASSWORD: "   ",
  });
  assert.ok(!result.ok && !result.help);
  assert.deepEqual(result.errors, ["Invalid KAFKA_PASSWORD must not be empty"]);
  assert.ok(SETTINGS.find((s) => s.key === "kafkaPassword")?.secret);
});

Deno.test("parseConfig() derives the fleet registry topic and group from the readings topic and group", () => {
  const result = parseConfig([], { KAFKA_TOPIC: "plant.readings", KAFKA_GROUP: "plant" });
  assert.ok(result.ok);
  assert.equal(result.config.kafkaSensorsTopic, "plant.readings.sensors");
  assert.equal(result.config.kafkaSensorsGroup, "plant-sensors");
  assert.equal(result.config.kafkaSensorsSessionTimeoutMs, 10_000);
  const set = parseConfig(["--kafka-sensors-topic", "fleet"], {
    KAFKA_SENSORS_GROUP: "runners",
    KAFKA_SENSORS_SESSION_TIMEOUT_MS: "6000",
  });
  assert.ok(set.ok);
  assert.equal(set.config.kafkaSensorsTopic, "fleet");
  assert.equal(set.config.kafkaSensorsGroup, "runners");
  assert.equal(set.config.kafkaSensorsSessionTimeoutMs, 6000);
});

Deno.test("parseConfig() refuses a registry topic equal to the readings topic and a session timeout the broker refuses", () => {
  const result = parseConfig([], {
    KAFKA_TOPIC: "same",
    KAFKA_SENSORS_TOPIC: "same",
    KAFKA_SENSORS_SESSION_TIMEOUT_MS: "1000",
  });
  assert.equal(result.ok, false);
  assert.ok(!result.ok && !result.help);
  assert.ok(
    result.errors.some((e) => e.includes("KAFKA_SENSORS_SESSION_TIMEOUT_MS")),
    result.errors.join("; "),
  );
  const topic = parseConfig([], { KAFKA_TOPIC: "same", KAFKA_SENSORS_TOPIC: "same" });
  assert.ok(!topic.ok && !topic.help);
  assert.deepEqual(topic.errors, [
    "Invalid fleet registry topic: it must differ from the readings and dead-letter topics",
  ]);
});

Deno.test("parseConfig() defaults the seq block to 100 and the seq topic to <topic>.seqs", () => {
  const result = parseConfig(["--kafka-topic", "t"], {});
  assert.ok(result.ok);
  assert.equal(result.config.seqBlock, 100);
  assert.equal(result.config.kafkaSeqTopic, "t.seqs");
  const set = parseConfig(["--seq-block", "500"], { KAFKA_SEQ_TOPIC: "ledger" });
  assert.ok(set.ok);
  assert.equal(set.config.seqBlock, 500);
  assert.equal(set.config.kafkaSeqTopic, "ledger");
});

Deno.test("parseConfig() checks the seq block's range and a seq topic distinct from the others", () => {
  for (const bad of ["1", "1000001", "ten"]) {
    const result = parseConfig([], { SEQ_BLOCK: bad });
    assert.ok(!result.ok && !result.help);
    assert.match(result.errors.join("\n"), new RegExp(`Invalid SEQ_BLOCK: "${bad}"`));
  }
  const same = parseConfig([], { KAFKA_SEQ_TOPIC: "iot.readings.dlq" });
  assert.ok(!same.ok && !same.help);
  assert.deepEqual(same.errors, [
    "Invalid seq topic: it must differ from the readings, dead-letter and fleet registry topics",
  ]);
});

Deno.test("parseConfig() refuses the empty API_TOKEN compose passes when none is set", () => {
  // compose.yaml passes `${API_TOKEN:-}` with HOST=0.0.0.0 from the image: the app must refuse.
  const result = parseConfig([], { HOST: "0.0.0.0", API_TOKEN: "" });
  assert.ok(!result.ok && !result.help);
  assert.ok(result.errors.some((e) => /API_TOKEN/.test(e)), result.errors.join("; "));
});

Deno.test("parseConfig() refuses ALARM_HIGH beyond what a reading may carry (one rule bound)", () => {
  // Regression: ALARM_HIGH=300 used to pass here while the reading schema caps thresholds at 200,
  // so every reading of a sensor added with partial thresholds was dead-lettered.
  const result = parseConfig([], { ALARM_HIGH: "300" });
  assert.ok(!result.ok && !result.help);
  assert.match(result.errors.join("\n"), /ALARM_HIGH: "300"/);
});

Deno.test("every alarm rule the config accepts, merged with partial thresholds, is a valid reading rule", () => {
  const extremes = [
    { ALARM_HIGH: String(TEMPERATURE_RANGE.max), ALARM_LOW: String(TEMPERATURE_RANGE.min) },
    { ALARM_RAISE_AFTER: String(RULE_COUNT_RANGE.max), ALARM_CLEAR_AFTER: "1" },
  ];
  for (const env of extremes) {
    const result = parseConfig([], env);
    assert.ok(result.ok, JSON.stringify(env));
    const { config } = result;
    const defaults = {
      intervalMs: config.intervalMs,
      seed: config.seed,
      rule: {
        high: config.alarmHigh,
        low: config.alarmLow,
        raiseAfter: config.alarmRaiseAfter,
        clearAfter: config.alarmClearAfter,
      },
    };
    const resolved = resolveSensorRequest(
      { kind: "one", id: "partial-1", template: { thresholds: { raiseAfter: 3 } } },
      { defaults, taken: () => false, size: 0, cap: 10, nextNumber: 1 },
    );
    assert.ok(resolved.ok, JSON.stringify(resolved));
    const rule = resolved.specs[0]!.rule;
    assert.ok(
      RuleSchema.safeParse(rule).success,
      `${JSON.stringify(rule)} from ${JSON.stringify(env)}`,
    );
  }
});

Deno.test("--sensor-profile offers the domain's profiles that need no script", () => {
  const kind = SETTINGS.find((s) => s.key === "sensorProfile")!.kind;
  assert.ok(kind.type === "enum");
  assert.deepEqual([...kind.values], PROFILES.filter((p) => p !== "scripted"));
});

Deno.test("parseConfig() refuses a broker port outside 1-65535, naming the variable and the value", () => {
  for (const brokers of ["127.0.0.1:99999", "127.0.0.1:0", "a:9092,b:65536", "k:-1", "k:9x"]) {
    const result = parseConfig([], { KAFKA_BROKERS: brokers });
    assert.ok(!result.ok && !result.help, brokers);
    assert.equal(result.errors.length, 1, result.errors.join("; "));
    assert.match(result.errors[0]!, /^Invalid KAFKA_BROKERS: /, brokers);
    assert.ok(result.errors[0]!.includes(`"${brokers}"`), result.errors[0]);
    assert.match(result.errors[0]!, /port must be between 1 and 65535/, brokers);
  }
  const flag = parseConfig(["--kafka-brokers", "127.0.0.1:99999"], {});
  assert.ok(!flag.ok && !flag.help);
  assert.match(
    flag.errors[0]!,
    /^Invalid --kafka-brokers: "127\.0\.0\.1:99999" has "127\.0\.0\.1:99999"/,
  );
});

Deno.test("parseConfig() accepts host:port brokers with ports 1-65535, no IPv6 literal (kafkajs cannot use one)", () => {
  for (
    const brokers of ["127.0.0.1:1", "kafka-0.kafka.svc:65535", "a:9092, b:9093"]
  ) {
    const result = parseConfig([], { KAFKA_BROKERS: brokers });
    assert.ok(result.ok, `${brokers}: ${JSON.stringify(result)}`);
  }
  for (const brokers of ["nohost", ":9092", "::1:9092", "[::1]:9092", "a b:9092"]) {
    const result = parseConfig([], { KAFKA_BROKERS: brokers });
    assert.ok(!result.ok && !result.help, brokers);
    assert.match(result.errors[0]!, /expected host:port/, brokers);
  }
});

Deno.test("parseConfig() refuses a PORT outside 0-65535", () => {
  for (const port of ["65536", "-1", "8080.5"]) {
    const result = parseConfig([], { PORT: port });
    assert.ok(!result.ok && !result.help, port);
    assert.match(result.errors[0]!, new RegExp(`^Invalid PORT: "${port.replace(".", "\\.")}" `));
  }
  assert.ok(parseConfig([], { PORT: "65535" }).ok);
});

Deno.test("parseConfig() refuses a short API_TOKEN or one with whitespace, without printing it", () => {
  for (
    const token of ["s3cret", "x", "fifteen-chars-x", "sixteen chars ok", "sixteen-chars-ok\n"]
  ) {
    const result = parseConfig([], { API_TOKEN: token });
    assert.ok(!result.ok && !result.help, JSON.stringify(token));
    assert.match(result.errors[0]!, /^Invalid API_TOKEN /);
    assert.match(result.errors[0]!, /at least 16 characters|whitespace/);
    assert.ok(!result.errors[0]!.includes(token.trim()), "the token is never printed");
  }
  const ok = parseConfig([], { API_TOKEN: "sixteen-chars-ok" });
  assert.ok(ok.ok);
  assert.equal(ok.config.apiToken, "sixteen-chars-ok");
});

Deno.test("parseConfig() answers --version and -V", () => {
  for (const flag of ["--version", "-V"]) {
    const result = parseConfig([flag], {});
    assert.ok(!result.ok && result.help, flag);
    assert.equal(result.show, "version");
  }
  const help = parseConfig(["-h"], {});
  assert.ok(!help.ok && help.help && help.show === "help");
});

Deno.test("helpText() lists each option's choices and ranges from the settings table", () => {
  const text = helpText();
  /** The lines --help prints for one option: its flag line and the indented ones after it. */
  const block = (flag: string) => {
    const lines = text.split("\n");
    const at = lines.findIndex((l) => l === `  --${flag}` || l.startsWith(`  --${flag} `));
    assert.ok(at >= 0, flag);
    const rest = lines.slice(at + 1);
    const end = rest.findIndex((l) => !l.startsWith("      "));
    return [lines[at]!, ...rest.slice(0, end < 0 ? rest.length : end)].join("\n");
  };
  let enums = 0;
  for (const s of SETTINGS) {
    if (s.kind.type === "enum") {
      enums++;
      assert.ok(block(s.flag).includes(`Choices: ${s.kind.values.join(", ")}`), block(s.flag));
    }
    if (s.kind.type === "int") {
      assert.ok(block(s.flag).includes(`from ${s.kind.min} to ${s.kind.max}`), block(s.flag));
    }
  }
  assert.ok(enums >= 5, "role, SASL mechanism, sensor profile, log format and log level");
  assert.match(block("sensor-profile"), /Choices: normal, /);
  assert.match(block("log-level"), /Choices: debug, info, warn, error \(default: info\)/);
  assert.match(block("log-format"), /Choices: json, pretty \(default: json\)/);
  assert.match(text, /--version/);
});

Deno.test("parseConfig() reads REQUEST_TIMEOUT_MS (default 30 s) and refuses one outside 100-600000", () => {
  const defaults = parseConfig([], {});
  assert.ok(defaults.ok);
  assert.equal(defaults.config.requestTimeoutMs, 30_000);
  const set = parseConfig(["--request-timeout-ms", "5000"], {});
  assert.ok(set.ok);
  assert.equal(set.config.requestTimeoutMs, 5_000);
  const low = parseConfig([], { REQUEST_TIMEOUT_MS: "5" });
  assert.ok(!low.ok && !low.help);
  assert.match(low.errors.join("\n"), /REQUEST_TIMEOUT_MS: "5" must be between 100 and 600000/);
});

Deno.test("parseConfig() leaves the offline limit unset by default and bounds it", () => {
  const defaults = parseConfig([], {});
  assert.ok(defaults.ok);
  assert.equal(defaults.config.offlineAfterMs, undefined);
  assert.equal(defaults.config.offlineGraceMs, 2000);
  const set = parseConfig(["--offline-after-ms", "60000"], { OFFLINE_GRACE_MS: "500" });
  assert.ok(set.ok);
  assert.equal(set.config.offlineAfterMs, 60_000);
  assert.equal(set.config.offlineGraceMs, 500);
  const bad = parseConfig([], { OFFLINE_AFTER_MS: "50" });
  assert.ok(!bad.ok && !bad.help);
  assert.match(bad.errors.join("\n"), /OFFLINE_AFTER_MS/);
});
