/** Start-up retries, step by step, on a fake clock: give-up time, back-off, no reopening. */
import assert from "node:assert/strict";
import { createRetry, StartCancelledError, StartFailedError } from "../app/retry.ts";
import { createLogger, silentLogger } from "../adapters/log.ts";
import { FakeTime } from "./fake_time.ts";

const refused = () =>
  Promise.reject(new Error("Connection error: connect ECONNREFUSED 127.0.0.1:1"));

/** Runs the fake clock until `promise` settles; returns its error (fails if it resolves). */
async function failure(time: FakeTime, promise: Promise<unknown>): Promise<unknown> {
  let settled: { error: unknown } | undefined;
  promise.then(
    () => (settled = { error: new Error("Resolved, expected a rejection") }),
    (error) => (settled = { error }),
  );
  for (let i = 0; i < 1000 && !settled; i++) {
    if (!(await time.next())) await time.tickAsync(0);
  }
  assert.ok(settled, "the retry settled");
  return settled.error;
}

Deno.test("createRetry() gives up once a step has failed for giveUpMs, naming the step and the limit", async () => {
  using time = new FakeTime();
  const retry = createRetry({
    giveUpMs: 2000,
    signal: new AbortController().signal,
    logger: silentLogger,
    timers: time,
  });
  const tries: number[] = [];
  const error = await failure(
    time,
    retry('connecting to Kafka at "127.0.0.1:1"', () => {
      tries.push(time.now());
      return refused();
    }),
  );
  assert.ok(error instanceof StartFailedError, String(error));
  assert.equal(
    error.message,
    'Cannot start: connecting to Kafka at "127.0.0.1:1" failed for 2.0 s (KAFKA_GIVE_UP_MS=2000): ' +
      "Connection error: connect ECONNREFUSED 127.0.0.1:1",
  );
  assert.equal(error.step, 'connecting to Kafka at "127.0.0.1:1"');
  assert.match(String((error.cause as Error).message), /ECONNREFUSED/);
  // Back-off 0.5 s, then 1 s, then only what is left of the 2 s: the last try is at the limit.
  const start = tries[0]!;
  assert.deepEqual(tries.map((t) => t - start), [0, 500, 1500, 2000]);
});

Deno.test("createRetry() counts the give-up time from start-up, across steps", async () => {
  using time = new FakeTime();
  const retry = createRetry({
    giveUpMs: 1000,
    signal: new AbortController().signal,
    logger: silentLogger,
    timers: time,
  });
  await time.tickAsync(800); // the store took 0.8 s to open
  let tries = 0;
  const error = await failure(time, retry("connecting to Kafka", () => (tries++, refused())));
  assert.ok(error instanceof StartFailedError);
  assert.equal(tries, 2, "one try, a wait of what was left (0.2 s), one more");
});

Deno.test("createRetry() retries only the step that fails: what earlier steps opened stays open", async () => {
  using time = new FakeTime();
  const lines: string[] = [];
  const retry = createRetry({
    giveUpMs: 60_000,
    signal: new AbortController().signal,
    logger: createLogger({ write: (line) => lines.push(line) }),
    timers: time,
  });
  let opened = 0;
  let kafkaTries = 0;
  const startUp = async () => {
    const store = await retry("opening the store", () => Promise.resolve(++opened));
    const kafka = await retry(
      "connecting to Kafka",
      () => ++kafkaTries < 3 ? refused() : Promise.resolve("kafka"),
    );
    return { store, kafka };
  };
  let result: unknown;
  void startUp().then((r) => (result = r));
  for (let i = 0; i < 1000 && result === undefined; i++) {
    if (!(await time.next())) await time.tickAsync(0);
  }
  assert.deepEqual(result, { store: 1, kafka: "kafka" });
  assert.equal(opened, 1, "the store is opened once");
  assert.equal(kafkaTries, 3);
  const warnings = lines.map((l) => JSON.parse(l)).filter((l) => l.level === "warn");
  assert.deepEqual(warnings.map((w) => [w.step, w.attempt, w.retryInMs]), [
    ["connecting to Kafka", 1, 500],
    ["connecting to Kafka", 2, 1000],
  ]);
});

Deno.test("createRetry() stops at once on a missing permission and after its attempts", async () => {
  using time = new FakeTime();
  const retry = createRetry({
    signal: new AbortController().signal,
    logger: silentLogger,
    timers: time,
  });
  let tries = 0;
  const denied = await failure(
    time,
    retry('opening the Deno KV store "/tmp/x.kv"', () => {
      tries++;
      return Promise.reject(new Deno.errors.NotCapable('Requires write access to "/tmp"'));
    }),
  );
  assert.equal(tries, 1);
  assert.ok(denied instanceof StartFailedError);
  assert.equal(
    denied.message,
    'Cannot start: opening the Deno KV store "/tmp/x.kv" failed: Requires write access to "/tmp"',
  );

  const twice = createRetry({
    attempts: 2,
    signal: new AbortController().signal,
    logger: silentLogger,
    timers: time,
  });
  const error = await failure(time, twice("connecting to Kafka", refused));
  assert.ok(error instanceof StartFailedError);
  assert.match(
    error.message,
    /^Cannot start: connecting to Kafka failed 2 times: Connection error/,
  );
});

Deno.test("createRetry() ends the wait at once when shutdown aborts", async () => {
  using time = new FakeTime();
  const shutdown = new AbortController();
  const retry = createRetry({ signal: shutdown.signal, logger: silentLogger, timers: time });
  let error: unknown;
  retry("connecting to Kafka", refused).catch((e) => (error = e));
  await time.tickAsync(0);
  assert.deepEqual(time.dueIn, [500], "waiting to try again");
  shutdown.abort();
  await time.tickAsync(0);
  assert.ok(error instanceof StartCancelledError, String(error));
  assert.equal(time.pending, 0, "the wait's timer is cleared");
});
