import assert from "node:assert/strict";
import { settle } from "./wait.ts";
import { Actor } from "../actors/actor.ts";
import {
  type ChildExit,
  type ChildSpec,
  type RestartType,
  Supervisor,
  supervisorChild,
  SupervisorEscalationError,
} from "../actors/supervisor.ts";

/** Lets every queued microtask and pending callback run (a zero-delay macrotask). */
/** A fake child that counts starts and stops and reports exits for its latest incarnation. */
interface Probe {
  readonly spec: ChildSpec;
  readonly starts: number;
  readonly stops: number;
  exit(e: ChildExit): void;
}

function probe(id: string, restart: RestartType, log: string[] = []): Probe {
  let report: (e: ChildExit) => void = () => {};
  let starts = 0;
  let stops = 0;
  return {
    get starts() {
      return starts;
    },
    get stops() {
      return stops;
    },
    exit: (e) => report(e),
    spec: {
      id,
      restart,
      start(exit) {
        starts++;
        report = exit;
        log.push(`start ${id}`);
        return {
          stop() {
            stops++;
            log.push(`stop ${id}`);
            return Promise.resolve();
          },
        };
      },
    },
  };
}

function failure(message = "boom"): ChildExit {
  return { type: "failed", error: new Error(message) };
}

Deno.test("Supervisor restarts a permanent child after a failure", async () => {
  const restarts: [string, unknown][] = [];
  await using supervisor = new Supervisor({ onRestart: (id, error) => restarts.push([id, error]) });
  const child = probe("a", "permanent");
  await supervisor.startChild(child.spec);
  const exit = failure();
  child.exit(exit);
  await settle();
  assert.equal(child.starts, 2);
  assert.equal(supervisor.restarts, 1);
  assert.deepEqual(restarts, [["a", exit.type === "failed" && exit.error]]);
  assert.ok(supervisor.has("a"));
});

Deno.test("Supervisor restarts a permanent child after a normal exit", async () => {
  await using supervisor = new Supervisor();
  const child = probe("a", "permanent");
  await supervisor.startChild(child.spec);
  child.exit({ type: "normal" });
  await settle();
  assert.equal(child.starts, 2);
  assert.equal(supervisor.restarts, 1);
});

Deno.test("Supervisor restarts a transient child after a failure but not after a normal exit", async () => {
  await using supervisor = new Supervisor();
  const child = probe("a", "transient");
  await supervisor.startChild(child.spec);
  child.exit(failure());
  await settle();
  assert.equal(child.starts, 2);
  child.exit({ type: "normal" });
  await settle();
  assert.equal(child.starts, 2);
  assert.equal(supervisor.has("a"), false);
  assert.equal(supervisor.size, 0);
});

Deno.test("Supervisor never restarts a temporary child", async () => {
  await using supervisor = new Supervisor();
  const failing = probe("a", "temporary");
  const finishing = probe("b", "temporary");
  await supervisor.startChild(failing.spec);
  await supervisor.startChild(finishing.spec);
  failing.exit(failure());
  finishing.exit({ type: "normal" });
  await settle();
  assert.equal(failing.starts, 1);
  assert.equal(finishing.starts, 1);
  assert.equal(supervisor.size, 0);
  assert.equal(supervisor.restarts, 0);
});

Deno.test("Supervisor ignores a second exit reported by the same incarnation", async () => {
  await using supervisor = new Supervisor();
  const child = probe("a", "permanent");
  await supervisor.startChild(child.spec);
  const exit = child.exit;
  child.exit(failure());
  exit(failure());
  await settle();
  assert.equal(child.starts, 2);
  assert.equal(supervisor.restarts, 1);
});

Deno.test("Supervisor escalates and stops every child when restart intensity is exceeded", async () => {
  const log: string[] = [];
  const escalations: SupervisorEscalationError[] = [];
  const supervisor = new Supervisor({
    name: "root",
    intensity: { maxRestarts: 2, withinMs: 1000 },
    now: () => 0,
    onEscalate: (error) => {
      log.push("escalate");
      escalations.push(error);
    },
  });
  const children = ["a", "b", "c"].map((id) => probe(id, "permanent", log));
  for (const child of children) await supervisor.startChild(child.spec);
  const b = children[1];
  assert.ok(b);
  b.exit(failure("first"));
  await settle();
  b.exit(failure("second"));
  await settle();
  assert.equal(supervisor.restarts, 2);
  const last = failure("third");
  b.exit(last);
  assert.equal(supervisor.status, "escalated");
  await settle();
  assert.deepEqual(log.slice(-3), ["stop c", "stop a", "escalate"]);
  assert.equal(escalations.length, 1);
  const [error] = escalations;
  assert.ok(error instanceof SupervisorEscalationError);
  assert.equal(error.cause, last.type === "failed" && last.error);
  assert.match(error.message, /^Supervisor "root" gave up: more than 2 restarts within 1000 ms/);
  assert.equal(supervisor.restarts, 2);
  assert.equal(supervisor.size, 0);
  await assert.rejects(supervisor.startChild(probe("d", "permanent").spec), /is escalated/);
  await supervisor.stop();
  assert.equal(supervisor.status, "escalated");
});

Deno.test("Supervisor does not count restarts outside the intensity window", async () => {
  let now = 0;
  let escalated = 0;
  await using supervisor = new Supervisor({
    intensity: { maxRestarts: 1, withinMs: 1000 },
    now: () => now,
    onEscalate: () => escalated++,
  });
  const child = probe("a", "permanent");
  await supervisor.startChild(child.spec);
  child.exit(failure());
  await settle();
  now = 1000; // the first restart has left the window
  child.exit(failure());
  await settle();
  assert.equal(supervisor.restarts, 2);
  assert.equal(supervisor.status, "running");
  now = 1999; // the second restart is still inside the window
  child.exit(failure());
  await settle();
  assert.equal(supervisor.status, "escalated");
  assert.equal(escalated, 1);
});

Deno.test("Supervisor stops children in reverse start order, keeping a restarted child's position", async () => {
  const log: string[] = [];
  const supervisor = new Supervisor();
  const children = ["a", "b", "c"].map((id) => probe(id, "permanent", log));
  for (const child of children) await supervisor.startChild(child.spec);
  children[1]?.exit(failure());
  await settle();
  assert.deepEqual(supervisor.ids(), ["a", "b", "c"]);
  await supervisor.stop();
  assert.deepEqual(log, ["start a", "start b", "start c", "start b", "stop c", "stop b", "stop a"]);
  assert.equal(supervisor.status, "stopped");
  assert.equal(supervisor.size, 0);
});

Deno.test("Supervisor.stop() is idempotent", async () => {
  const child = probe("a", "permanent");
  const supervisor = new Supervisor();
  await supervisor.startChild(child.spec);
  const stopping = supervisor.stop();
  assert.equal(supervisor.status, "stopping");
  await Promise.all([stopping, supervisor.stop()]);
  await supervisor.stop();
  await supervisor[Symbol.asyncDispose]();
  assert.equal(child.stops, 1);
  assert.equal(supervisor.status, "stopped");
  await assert.rejects(supervisor.startChild(child.spec), /is stopped/);
});

Deno.test("Supervisor.stop() stops every child even when one fails to stop", async () => {
  const log: string[] = [];
  const supervisor = new Supervisor();
  await supervisor.startChild(probe("a", "permanent", log).spec);
  await supervisor.startChild({
    id: "b",
    restart: "permanent",
    start: () => ({ stop: () => Promise.reject(new Error("Cannot disconnect")) }),
  });
  await assert.rejects(supervisor.stop(), AggregateError);
  assert.deepEqual(log, ["start a", "stop a"]);
  assert.equal(supervisor.status, "stopped");
});

Deno.test("Supervisor.stopChild() stops a child without restarting it", async () => {
  await using supervisor = new Supervisor();
  const child = probe("a", "permanent");
  await supervisor.startChild(child.spec);
  assert.equal(await supervisor.stopChild("a"), true);
  child.exit(failure()); // a late report from the stopped child
  await settle();
  assert.equal(child.stops, 1);
  assert.equal(child.starts, 1);
  assert.equal(supervisor.has("a"), false);
  assert.equal(await supervisor.stopChild("a"), false);
  assert.equal(supervisor.restarts, 0);
});

Deno.test("Supervisor does not restart a child that fails while the supervisor is stopping", async () => {
  const restarts: string[] = [];
  const supervisor = new Supervisor({ onRestart: (id) => restarts.push(id) });
  const a = probe("a", "permanent");
  await supervisor.startChild(a.spec);
  await supervisor.startChild({
    id: "b",
    restart: "permanent",
    start: (exit) => ({
      stop: () => {
        exit(failure("Connection reset while stopping"));
        a.exit(failure("Sibling failed while stopping"));
        return Promise.resolve();
      },
    }),
  });
  await supervisor.stop();
  await settle();
  assert.equal(a.starts, 1);
  assert.deepEqual(restarts, []);
  assert.equal(supervisor.restarts, 0);
});

Deno.test("Supervisor.startChild() passes on an error thrown by start", async () => {
  await using supervisor = new Supervisor();
  const error = new Error("Cannot connect");
  const throwing: ChildSpec = {
    id: "sync",
    restart: "permanent",
    start: () => {
      throw error;
    },
  };
  const rejecting: ChildSpec = {
    id: "async",
    restart: "permanent",
    start: () => Promise.reject(error),
  };
  await assert.rejects(supervisor.startChild(throwing), (e) => e === error);
  await assert.rejects(supervisor.startChild(rejecting), (e) => e === error);
  assert.equal(supervisor.size, 0);
  assert.equal(supervisor.restarts, 0);
  assert.equal(supervisor.status, "running");
});

Deno.test("Supervisor rejects a restart intensity that could never escalate", () => {
  assert.throws(() => new Supervisor({ intensity: { maxRestarts: 3, withinMs: 0 } }), RangeError);
  assert.throws(() => new Supervisor({ intensity: { maxRestarts: -1, withinMs: 1 } }), RangeError);
});

Deno.test("Supervisor.startChild() rejects an id that is already running", async () => {
  await using supervisor = new Supervisor();
  const child = probe("a", "permanent");
  await supervisor.startChild(child.spec);
  await assert.rejects(supervisor.startChild(child.spec), /already running/);
  assert.equal(child.starts, 1);
});

Deno.test("Supervisor counts a failing restart as another failure", async () => {
  const error = new Error("Cannot connect");
  let starts = 0;
  let report: (e: ChildExit) => void = () => {};
  const escalated = Promise.withResolvers<SupervisorEscalationError>();
  const supervisor = new Supervisor({
    intensity: { maxRestarts: 2, withinMs: 1000 },
    now: () => 0,
    onEscalate: escalated.resolve,
  });
  await supervisor.startChild({
    id: "a",
    restart: "permanent",
    start: (exit) => {
      if (++starts > 1) throw error;
      report = exit;
      return { stop: () => Promise.resolve() };
    },
  });
  report(failure());
  const escalation = await escalated.promise;
  assert.equal(escalation.cause, error);
  assert.equal(starts, 3);
  assert.equal(supervisor.restarts, 2);
});

Deno.test("Supervisor waits for the backoff before restarting", async () => {
  const backoffs: number[] = [];
  const restarted = Promise.withResolvers<void>();
  let starts = 0;
  let report: (e: ChildExit) => void = () => {};
  await using supervisor = new Supervisor({
    backoffMs: (recent) => {
      backoffs.push(recent);
      return 1;
    },
  });
  await supervisor.startChild({
    id: "a",
    restart: "permanent",
    start: (exit) => {
      if (++starts === 2) restarted.resolve();
      report = exit;
      return { stop: () => Promise.resolve() };
    },
  });
  report(failure());
  await Promise.resolve();
  assert.equal(starts, 1);
  await restarted.promise;
  assert.deepEqual(backoffs, [1]);
});

Deno.test("Supervisor.stop() cancels a pending backoff restart", async () => {
  const supervisor = new Supervisor({ backoffMs: () => 60_000 });
  const child = probe("a", "permanent");
  await supervisor.startChild(child.spec);
  child.exit(failure());
  assert.equal(supervisor.restarts, 1);
  await supervisor.stop();
  assert.equal(child.starts, 1);
  assert.equal(child.stops, 0);
});

Deno.test("Supervisor.stop() waits for a child that is still starting", async () => {
  const log: string[] = [];
  const connected = Promise.withResolvers<void>();
  const supervisor = new Supervisor();
  const starting = supervisor.startChild({
    id: "a",
    restart: "permanent",
    start: async () => {
      await connected.promise;
      log.push("started");
      return { stop: () => Promise.resolve(void log.push("stopped")) };
    },
  });
  const stopping = supervisor.stop();
  connected.resolve();
  await Promise.all([starting, stopping]);
  assert.deepEqual(log, ["started", "stopped"]);
});

Deno.test("Supervisor reports a nested supervisor's escalation to its parent", async () => {
  const restarts: [string, unknown][] = [];
  const parent = new Supervisor({ name: "root", onRestart: (id, e) => restarts.push([id, e]) });
  const leaf = probe("leaf", "permanent");
  let inits = 0;
  await parent.startChild(supervisorChild("workers", async (supervisor) => {
    inits++;
    await supervisor.startChild(leaf.spec);
  }, { intensity: { maxRestarts: 0, withinMs: 1000 } }));
  const exit = failure("Leaf crashed");
  leaf.exit(exit);
  await settle();
  assert.equal(inits, 2);
  assert.equal(leaf.starts, 2);
  assert.equal(leaf.stops, 0); // it had already ended when the nested supervisor gave up
  assert.equal(restarts.length, 1);
  const [id, error] = restarts[0] ?? [];
  assert.equal(id, "workers");
  assert.ok(error instanceof SupervisorEscalationError);
  assert.equal(error.cause, exit.type === "failed" && exit.error);
  await parent.stop();
  assert.equal(leaf.stops, 1);
});

Deno.test("Supervisor escalates to its own parent when a nested supervisor keeps escalating", async () => {
  const escalated = Promise.withResolvers<SupervisorEscalationError>();
  const parent = new Supervisor({
    name: "root",
    intensity: { maxRestarts: 0, withinMs: 1000 },
    onEscalate: escalated.resolve,
  });
  const leaf = probe("leaf", "permanent");
  await parent.startChild(supervisorChild(
    "workers",
    (supervisor) => supervisor.startChild(leaf.spec),
    { intensity: { maxRestarts: 0, withinMs: 1000 } },
  ));
  leaf.exit(failure());
  const error = await escalated.promise;
  assert.ok(error.cause instanceof SupervisorEscalationError);
  assert.equal(parent.status, "escalated");
});

Deno.test("supervisorChild() stops the nested supervisor when init fails", async () => {
  await using parent = new Supervisor();
  const leaf = probe("leaf", "permanent");
  const spec = supervisorChild("workers", async (supervisor) => {
    await supervisor.startChild(leaf.spec);
    throw new Error("Cannot start workers");
  });
  await assert.rejects(parent.startChild(spec), /Cannot start workers/);
  assert.equal(leaf.stops, 1);
  assert.equal(parent.has("workers"), false);
});

Deno.test("Supervisor restarts a failed actor", async () => {
  const actors: Actor<number>[] = [];
  await using supervisor = new Supervisor();
  await supervisor.startChild({
    id: "device-1",
    restart: "permanent",
    start: (exit) => {
      const actor = new Actor<number>((n) => {
        if (n < 0) throw new Error(`Cannot handle reading: ${n}`);
      }, { onFailure: (error) => exit({ type: "failed", error }) });
      actors.push(actor);
      return actor;
    },
  });
  await actors[0]?.send(-1);
  await settle();
  assert.equal(actors.length, 2);
  assert.equal(actors[0]?.status, "failed");
  assert.equal(actors[1]?.status, "running");
  await supervisor.stop();
  assert.equal(actors[1]?.status, "stopped");
});

Deno.test("Supervisor handles many children", async () => {
  const supervisor = new Supervisor();
  const reports: ((e: ChildExit) => void)[] = [];
  let stops = 0;
  const handle = { stop: () => Promise.resolve(void stops++) };
  for (let i = 0; i < 10_000; i++) {
    await supervisor.startChild({
      id: `device-${i}`,
      restart: "transient",
      start: (exit) => {
        reports[i] = exit;
        return handle;
      },
    });
  }
  reports[500]?.({ type: "normal" });
  reports[9_999]?.(failure());
  await settle();
  assert.equal(supervisor.size, 9_999);
  assert.equal(supervisor.restarts, 1);
  await supervisor.stop();
  assert.equal(stops, 9_999);
});
