/**
 * The program as an operator runs it: `main.ts` as a subprocess, judged by its
 * exit code and what it writes. Every start-up failure ends in one sentence
 * through the logger (no stack trace at the default level) and a non-zero
 * exit; `--version` and `--help` answer on stdout and exit 0.
 *
 * Needs `run` access to `deno` besides the suite's permissions (deno.json's
 * default set grants it: `deno test -P`, `deno task test`).
 *
 * @module
 */
import assert from "node:assert/strict";
import { NAME, VERSION } from "../main.ts";
import { SETTINGS } from "../schemas/config.ts";
import { testWith } from "./needs.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const deno = await testWith({ deno: true });

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  /** stderr's JSON log lines. */
  readonly lines: readonly Record<string, unknown>[];
}

/**
 * Runs `main.ts` with `args` and only `env` (plus PATH and HOME), with the permissions of
 * `deno task start` but write access to `writable` only; kills it after `limitMs`.
 */
async function runMain(
  args: readonly string[],
  env: Record<string, string>,
  { writable = "data", limitMs = 60_000 }: { writable?: string; limitMs?: number } = {},
): Promise<Run> {
  const { code, stdout, stderr } = await new Deno.Command("deno", {
    args: [
      "run",
      "--allow-net",
      "--allow-env",
      "--allow-read",
      `--allow-write=${writable}`,
      "--allow-sys",
      "main.ts",
      ...args,
    ],
    cwd: ROOT,
    clearEnv: true,
    env: {
      PATH: Deno.env.get("PATH") ?? "",
      HOME: Deno.env.get("HOME") ?? "",
      ...(Deno.env.get("DENO_DIR") ? { DENO_DIR: Deno.env.get("DENO_DIR")! } : {}),
      NO_COLOR: "1",
      DENO_NO_UPDATE_CHECK: "1",
      PORT: "0",
      SENSORS: "0",
      ...env,
    },
    stdin: "null",
    // A start-up that never gives up fails the test instead of hanging it.
    signal: AbortSignal.timeout(limitMs),
  }).output();
  const text = new TextDecoder();
  const err = text.decode(stderr);
  const lines = err.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
  return { code, stdout: text.decode(stdout), stderr: err, lines };
}

/** The run's error-level lines: exactly one, its message returned; and no stack trace anywhere. */
function oneSentence(run: Run): string {
  const errors = run.lines.filter((l) => l.level === "error");
  assert.equal(errors.length, 1, run.stderr);
  assert.doesNotMatch(run.stderr, /^\s+at /m, "no stack trace");
  assert.doesNotMatch(run.stderr, /Uncaught|"stack"/, "no uncaught error, no stack field");
  return String(errors[0]!.msg);
}

deno.test("a start-up that cannot open its store exits 1 with one sentence saying why", async () => {
  const dir = await Deno.makeTempDir({ prefix: "iot-exit-" });
  try {
    // `deno task start` may write under data/ only: a KV_PATH elsewhere is refused.
    const run = await runMain([], { KV_PATH: `${dir}/elsewhere/x.kv` }, {
      writable: `${dir}/data`,
    });
    assert.equal(run.code, 1, run.stderr);
    const message = oneSentence(run);
    assert.match(message, /^Cannot start: opening the Deno KV store ".*x\.kv" failed: /);
    assert.match(message, /--allow-write/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

deno.test("a port already in use exits 1 with one sentence naming the address and PORT", async () => {
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = taken.addr;
  const run = await runMain([], { KV_PATH: ":memory:", PORT: String(port) });
  assert.equal(run.code, 1, run.stderr);
  assert.equal(
    oneSentence(run),
    `Cannot listen on "127.0.0.1:${port}": the address is already in use ` +
      "(set PORT to another port, or stop what holds it)",
  );
});

deno.test("at debug level a start-up failure carries its stack", async () => {
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const run = await runMain([], {
    KV_PATH: ":memory:",
    PORT: String(taken.addr.port),
    LOG_LEVEL: "debug",
  });
  assert.equal(run.code, 1, run.stderr);
  const fatal = run.lines.find((l) => l.level === "error") as { error?: { stack?: string } };
  assert.match(fatal.error?.stack ?? "", /ListenError/);
});

deno.test("an unreachable Kafka makes start-up give up after KAFKA_GIVE_UP_MS with exit 1 and no kafkajs stacks", async () => {
  const run = await runMain([], {
    KV_PATH: ":memory:",
    KAFKA_BROKERS: "127.0.0.1:1",
    // Long enough for a second attempt (kafkajs tries each connection 4 times, about 2.5 s).
    KAFKA_GIVE_UP_MS: "4000",
  });
  assert.equal(run.code, 1, run.stderr);
  assert.match(
    oneSentence(run),
    /^Cannot start: connecting to Kafka at "127\.0\.0\.1:1" failed for [\d.]+ s \(KAFKA_GIVE_UP_MS=4000\): .*ECONNREFUSED/,
  );
  const retries = run.lines.filter((l) => l.msg === "start-up failed; retrying");
  assert.ok(retries.length >= 1, run.stderr);
  // Only Kafka was retried: the store was opened once.
  assert.equal(run.lines.filter((l) => l.msg === "store open").length, 1, run.stderr);
  // kafkajs's own retries are debug lines: our retry line says it once per attempt.
  const kafkajs = run.lines.filter((l) => l.component === "kafkajs");
  assert.deepEqual(kafkajs, [], "no kafkajs lines at the default level");
});

deno.test("a broker port out of range exits 2 with one line through the logger naming the variable and value", async () => {
  const run = await runMain([], { KAFKA_BROKERS: "127.0.0.1:99999" });
  assert.equal(run.code, 2, run.stderr);
  const message = oneSentence(run);
  assert.match(message, /^Cannot start: Invalid KAFKA_BROKERS: "127\.0\.0\.1:99999" /);
  assert.match(message, /port must be between 1 and 65535/);
  assert.equal(run.lines.length, 1, run.stderr);
});

deno.test("--version prints NAME and VERSION (the version iot_build_info reports) and exits 0", async () => {
  const run = await runMain(["--version"], {});
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stdout, `${NAME} ${VERSION}\n`);
  assert.equal(run.stderr, "");
});

deno.test("--help lists each option with its choices and exits 0", async () => {
  const run = await runMain(["--help"], {});
  assert.equal(run.code, 0, run.stderr);
  for (const s of SETTINGS) {
    assert.ok(run.stdout.includes(`--${s.flag}`), s.flag);
    if (s.kind.type === "enum") {
      assert.ok(run.stdout.includes(`Choices: ${s.kind.values.join(", ")}`), s.flag);
    }
  }
  assert.match(run.stdout, /--log-level <debug\|info\|warn\|error>/);
  assert.match(run.stdout, /--version/);
});
