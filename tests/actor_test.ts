import assert from "node:assert/strict";
import { settle } from "./wait.ts";
import { Actor, ActorStoppedError, ask } from "../actors/actor.ts";

/** Lets every queued microtask and pending callback run (a zero-delay macrotask). */
Deno.test("Actor handles messages in FIFO order", async () => {
  const seen: number[] = [];
  await using actor = new Actor<number>((n) => void seen.push(n));
  for (let i = 0; i < 5; i++) await actor.send(i);
  assert.equal(actor.trySend(5), true);
  await actor.stop();
  assert.deepEqual(seen, [0, 1, 2, 3, 4, 5]);
});

Deno.test("Actor handles one message at a time with an async handler", async () => {
  const log: string[] = [];
  const gates = [Promise.withResolvers<void>(), Promise.withResolvers<void>()];
  const actor = new Actor<number>(async (n) => {
    log.push(`start ${n}`);
    await gates[n]?.promise;
    log.push(`end ${n}`);
  });
  await actor.send(0);
  await actor.send(1);
  await settle();
  assert.deepEqual(log, ["start 0"]);
  gates[1]?.resolve();
  await settle();
  assert.deepEqual(log, ["start 0"]);
  gates[0]?.resolve();
  await actor.stop();
  assert.deepEqual(log, ["start 0", "end 0", "start 1", "end 1"]);
});

Deno.test("Actor does not run the handler inside send()", async () => {
  const log: string[] = [];
  await using actor = new Actor<string>((msg) => void log.push(msg));
  const sent = actor.send("a");
  log.push("after send");
  await sent;
  await actor.stop();
  assert.deepEqual(log, ["after send", "a"]);
});

Deno.test("Actor.trySend() returns false when the mailbox is full", async () => {
  const gate = Promise.withResolvers<void>();
  const actor = new Actor<number>(() => gate.promise, { capacity: 2 });
  assert.equal(actor.trySend(1), true);
  assert.equal(actor.trySend(2), true);
  assert.equal(actor.trySend(3), false);
  assert.equal(actor.depth, 2);
  await settle(); // the handler takes message 1, which frees one slot
  assert.equal(actor.depth, 1);
  assert.equal(actor.trySend(3), true);
  assert.equal(actor.trySend(4), false);
  gate.resolve();
  await actor.stop();
  assert.equal(actor.depth, 0);
});

Deno.test("Actor.send() waits while the mailbox is full and resumes once space frees", async () => {
  const log: string[] = [];
  const gates = new Map<number, PromiseWithResolvers<void>>();
  const actor = new Actor<number>((n) => {
    log.push(`handle ${n}`);
    const gate = Promise.withResolvers<void>();
    gates.set(n, gate);
    return gate.promise;
  }, { capacity: 1 });
  const send = (n: number) => actor.send(n).then(() => void log.push(`sent ${n}`));
  const sends = [send(1), send(2), send(3)];
  await settle();
  // 1 is being handled and 2 fills the mailbox, so 3 must wait.
  assert.deepEqual(log.toSorted(), ["handle 1", "sent 1", "sent 2"]);
  gates.get(1)?.resolve();
  await settle();
  // Handling 2 freed the slot that 3 was waiting for.
  assert.deepEqual(log.slice(3).toSorted(), ["handle 2", "sent 3"]);
  gates.get(2)?.resolve();
  await settle();
  gates.get(3)?.resolve();
  await Promise.all(sends);
  await actor.stop();
  assert.deepEqual(log.filter((line) => line.startsWith("handle")), [
    "handle 1",
    "handle 2",
    "handle 3",
  ]);
});

Deno.test("Actor fails once when the handler throws and drops its mailbox", async () => {
  const boom = new Error("boom");
  const failures: unknown[] = [];
  const handled: number[] = [];
  const gate = Promise.withResolvers<void>();
  const actor = new Actor<number>(async (n) => {
    handled.push(n);
    await gate.promise;
    if (n === 1) throw boom;
  }, { capacity: 1, onFailure: (error) => failures.push(error) });
  await actor.send(1);
  await settle();
  await actor.send(2); // fills the mailbox
  const blocked = actor.send(3);
  gate.resolve();
  await assert.rejects(blocked, ActorStoppedError);
  assert.deepEqual(failures, [boom]);
  assert.equal(actor.status, "failed");
  assert.equal(actor.depth, 0);
  await assert.rejects(actor.send(4), ActorStoppedError);
  assert.equal(actor.trySend(5), false);
  await actor.stop();
  await settle();
  assert.deepEqual(handled, [1]);
  assert.deepEqual(failures, [boom]);
});

Deno.test("Actor fails when a synchronous handler throws", async () => {
  const failed = Promise.withResolvers<unknown>();
  const actor = new Actor<string>((msg) => {
    throw new Error(`Cannot handle message: "${msg}"`);
  }, { onFailure: failed.resolve });
  await actor.send("x");
  const error = await failed.promise;
  assert.ok(error instanceof Error);
  assert.equal(error.message, 'Cannot handle message: "x"');
  assert.equal(actor.status, "failed");
});

Deno.test("Actor reports a failure to reportError without onFailure", async () => {
  const boom = new Error("boom");
  const reported = Promise.withResolvers<unknown>();
  const listener = (event: ErrorEvent) => {
    event.preventDefault();
    reported.resolve(event.error);
  };
  globalThis.addEventListener("error", listener);
  try {
    const actor = new Actor<void>(() => {
      throw boom;
    });
    await actor.send();
    assert.equal(await reported.promise, boom);
  } finally {
    globalThis.removeEventListener("error", listener);
  }
});

Deno.test("Actor.stop() handles queued messages before calling onStop", async () => {
  const log: string[] = [];
  const actor = new Actor<number>(async (n) => {
    await Promise.resolve();
    log.push(`handle ${n}`);
  }, { onStop: () => log.push("stopped") });
  actor.trySend(1);
  actor.trySend(2);
  const stopped = actor.stop();
  assert.equal(actor.status, "stopping");
  await assert.rejects(actor.send(3), ActorStoppedError);
  assert.equal(actor.trySend(3), false);
  await stopped;
  assert.equal(actor.status, "stopped");
  assert.deepEqual(log, ["handle 1", "handle 2", "stopped"]);
});

Deno.test("Actor.stop() is idempotent", async () => {
  let stops = 0;
  const gate = Promise.withResolvers<void>();
  const actor = new Actor<number>(() => gate.promise, { onStop: () => stops++ });
  await actor.send(1);
  const first = actor.stop();
  const second = actor.stop();
  gate.resolve();
  await Promise.all([first, second]);
  await actor.stop();
  await actor[Symbol.asyncDispose]();
  assert.equal(stops, 1);
  assert.equal(actor.status, "stopped");
});

Deno.test("Actor.stop() rejects senders waiting on a full mailbox", async () => {
  const gate = Promise.withResolvers<void>();
  const handled: number[] = [];
  const actor = new Actor<number>(async (n) => {
    handled.push(n);
    await gate.promise;
  }, { capacity: 1 });
  await actor.send(1);
  await settle();
  await actor.send(2);
  const blocked = actor.send(3);
  const stopped = actor.stop();
  await assert.rejects(blocked, ActorStoppedError);
  gate.resolve();
  await stopped;
  assert.deepEqual(handled, [1, 2]);
});

Deno.test("Actor.stop() resolves when the actor fails while draining", async () => {
  const failures: unknown[] = [];
  const actor = new Actor<number>((n) => {
    if (n === 2) throw new Error("boom");
  }, { onFailure: (error) => failures.push(error), onStop: () => failures.push("stopped") });
  actor.trySend(1);
  actor.trySend(2);
  actor.trySend(3);
  await actor.stop();
  assert.equal(actor.status, "failed");
  assert.equal(failures.length, 1);
});

Deno.test("ask() resolves with the reply", async () => {
  type Msg =
    | { readonly type: "add"; readonly n: number }
    | { readonly type: "get"; readonly reply: (total: number) => void };
  let total = 0;
  await using counter = new Actor<Msg>((msg) => {
    switch (msg.type) {
      case "add":
        total += msg.n;
        break;
      case "get":
        msg.reply(total);
        break;
      default:
        msg satisfies never;
    }
  });
  await counter.send({ type: "add", n: 2 });
  await counter.send({ type: "add", n: 3 });
  const reply = await ask<Msg, number>(counter, (reply) => ({ type: "get", reply }));
  assert.equal(reply, 5);
});

Deno.test("ask() rejects when the actor fails before replying", async () => {
  const actor = new Actor<{ reply: (n: number) => void }>(() => {
    throw new Error("boom");
  }, { onFailure: () => {} });
  await assert.rejects(ask(actor, (reply) => ({ reply })), ActorStoppedError);
});

Deno.test("ask() rejects when the actor stops without replying", async () => {
  const actor = new Actor<{ reply: (n: number) => void }>(() => {});
  const answer = ask(actor, (reply) => ({ reply }));
  await actor.stop();
  await assert.rejects(answer, ActorStoppedError);
  await assert.rejects(ask(actor, (reply) => ({ reply })), ActorStoppedError);
});

Deno.test("ask() rejects with the signal's reason when aborted", async () => {
  await using actor = new Actor<{ reply: (n: number) => void }>(() => {});
  const controller = new AbortController();
  const answer = ask(actor, (reply) => ({ reply }), { signal: controller.signal });
  controller.abort(new Error("Timed out"));
  await assert.rejects(answer, { message: "Timed out" });
});

Deno.test("Actor rejects a capacity that is not a positive integer", () => {
  assert.throws(() => new Actor(() => {}, { capacity: 0 }), RangeError);
  assert.throws(() => new Actor(() => {}, { capacity: 1.5 }), RangeError);
});

Deno.test("Actor keeps FIFO order across mailbox compaction", async () => {
  const seen: number[] = [];
  const actor = new Actor<number>((n) => void seen.push(n), { capacity: 5000 });
  for (let i = 0; i < 5000; i++) actor.trySend(i);
  await settle();
  for (let i = 5000; i < 6000; i++) await actor.send(i);
  await actor.stop();
  assert.deepEqual(seen, Array.from({ length: 6000 }, (_, i) => i));
});

Deno.test("Actor scales to many actors", async () => {
  let handled = 0;
  const actors = Array.from({ length: 10_000 }, () => new Actor<number>(() => void handled++));
  for (const actor of actors) actor.trySend(1);
  await Promise.all(actors.map((actor) => actor.stop()));
  assert.equal(handled, 10_000);
});
