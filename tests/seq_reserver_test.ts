import assert from "node:assert/strict";
import { type SeqReply, SeqReserver } from "../actors/seq_reserver.ts";
import type { SeqBlock } from "../domain/seq_block.ts";
import { MemorySeqLedger } from "./memory_seq_ledger.ts";
import { FakeTime } from "./fake_time.ts";
import { until } from "./wait.ts";

class Answers {
  readonly granted = new Map<string, SeqBlock[]>();
  readonly refused: string[] = [];
  for(id: string): SeqReply {
    return {
      granted: (block) => this.granted.set(id, [...(this.granted.get(id) ?? []), block]),
      refused: () => this.refused.push(id),
    };
  }
}

function reserver(
  ledger: MemorySeqLedger,
  more: Partial<ConstructorParameters<typeof SeqReserver>[0]> = {},
) {
  // Its backoff timers run only when the test moves the time.
  const timers = new FakeTime();
  const failures: Error[] = [];
  const r = new SeqReserver({
    ledger,
    blockSize: 10,
    timers,
    retry: { attempts: 3, initialMs: 100, maxMs: 150 },
    onFailure: (e) => failures.push(e),
    ...more,
  });
  return { r, timers, failures };
}

Deno.test("SeqReserver grants each device a block from one ledger call", async () => {
  const ledger = new MemorySeqLedger([["b", 30]]);
  const { r } = reserver(ledger);
  const answers = new Answers();
  for (const id of ["a", "b", "c"]) r.request(id, answers.for(id));
  await until("grants", () => answers.granted.size === 3);
  assert.deepEqual(answers.granted.get("a"), [{ first: 1, last: 10 }]);
  assert.deepEqual(answers.granted.get("b"), [{ first: 31, last: 40 }]);
  assert.equal(ledger.calls.length, 1);
  assert.deepEqual(r.stats, { reservations: 3, calls: 1, failedCalls: 0, queued: 0 });
  await r.stop();
});

Deno.test("SeqReserver queues requests while a call is in flight and sends them together next", async () => {
  const ledger = new MemorySeqLedger();
  const { r } = reserver(ledger);
  const answers = new Answers();
  const release = Promise.withResolvers<void>();
  ledger.hold = release.promise;
  r.request("a", answers.for("a"));
  await until("the first call", () => ledger.calls.length === 1);
  for (const id of ["b", "c", "d"]) r.request(id, answers.for(id));
  await Promise.resolve();
  assert.equal(ledger.calls.length, 1, "one call at a time");
  assert.equal(r.stats.queued, 3);
  ledger.hold = undefined;
  release.resolve();
  await until("grants", () => answers.granted.size === 4);
  assert.deepEqual(ledger.calls.map((c) => c.map((q) => q.deviceId)), [["a"], ["b", "c", "d"]]);
  await r.stop();
});

Deno.test("SeqReserver sends one request per device per call; a second waits for the next", async () => {
  const ledger = new MemorySeqLedger();
  const { r } = reserver(ledger);
  const answers = new Answers();
  const release = Promise.withResolvers<void>();
  ledger.hold = release.promise;
  r.request("x", answers.for("x"));
  await until("the first call", () => ledger.calls.length === 1);
  r.request("a", answers.for("a"));
  r.request("a", answers.for("a"));
  ledger.hold = undefined;
  release.resolve();
  await until("both grants", () => (answers.granted.get("a")?.length ?? 0) === 2);
  assert.deepEqual(answers.granted.get("a"), [{ first: 1, last: 10 }, { first: 11, last: 20 }]);
  assert.equal(ledger.calls.length, 3);
  await r.stop();
});

Deno.test("SeqReserver passes a device's floor until its first grant", async () => {
  const ledger = new MemorySeqLedger();
  const { r } = reserver(ledger, { floors: new Map([["a", 500]]) });
  const answers = new Answers();
  r.request("a", answers.for("a"));
  await until("first", () => answers.granted.size === 1);
  r.request("a", answers.for("a"));
  await until("second", () => answers.granted.get("a")?.length === 2);
  assert.deepEqual(ledger.calls.map((c) => c[0]!.floor), [500, undefined]);
  assert.deepEqual(answers.granted.get("a"), [{ first: 501, last: 510 }, {
    first: 511,
    last: 520,
  }]);
  await r.stop();
});

Deno.test("SeqReserver retries a failed call after a bounded backoff", async () => {
  const ledger = new MemorySeqLedger();
  const { r, timers, failures } = reserver(ledger);
  const answers = new Answers();
  ledger.failNext = 2;
  r.request("a", answers.for("a"));
  await until("first retry scheduled", () => timers.pending === 1);
  assert.deepEqual(timers.dueIn, [100]);
  r.request("b", answers.for("b"));
  await Promise.resolve();
  assert.equal(ledger.calls.length, 1, "nothing is sent during the backoff");
  await timers.next();
  await until("second retry scheduled", () => timers.pending === 1);
  assert.deepEqual(timers.dueIn, [150], "the backoff doubles up to its cap");
  await timers.next();
  await until("grants", () => answers.granted.size === 2);
  assert.deepEqual(ledger.calls.map((c) => c.map((q) => q.deviceId)), [["a"], ["a", "b"], [
    "a",
    "b",
  ]]);
  assert.deepEqual(failures, []);
  assert.deepEqual(r.stats, { reservations: 2, calls: 3, failedCalls: 2, queued: 0 });
  await r.stop();
});

Deno.test("SeqReserver refuses the requests and tells its owner when the ledger keeps failing", async () => {
  const ledger = new MemorySeqLedger();
  const { r, timers, failures } = reserver(ledger);
  const answers = new Answers();
  ledger.failNext = 3;
  r.request("a", answers.for("a"));
  for (let i = 0; i < 2; i++) {
    await until("retry scheduled", () => timers.pending === 1);
    await timers.next();
  }
  await until("refused", () => answers.refused.length === 1);
  assert.equal(failures.length, 1);
  assert.match(failures[0]!.message, /injected failure/);
  assert.equal(answers.granted.size, 0);
  // The next request starts a fresh round of attempts.
  r.request("a", answers.for("a"));
  await until("granted", () => answers.granted.size === 1);
  await r.stop();
});

Deno.test("SeqReserver.stop() refuses what is queued and cancels the backoff", async () => {
  const ledger = new MemorySeqLedger();
  const { r, timers } = reserver(ledger);
  const answers = new Answers();
  ledger.failNext = 1;
  r.request("a", answers.for("a"));
  await until("retry scheduled", () => timers.pending === 1);
  await r.stop();
  assert.deepEqual(answers.refused, ["a"]);
  assert.equal(timers.pending, 0);
  r.request("b", answers.for("b"));
  assert.deepEqual(answers.refused, ["a", "b"]);
  assert.equal(ledger.calls.length, 1);
});
