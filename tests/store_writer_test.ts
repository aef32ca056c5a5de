import assert from "node:assert/strict";
import { settle } from "./wait.ts";
import { StoreWriter } from "../actors/store_writer.ts";
import { DEFAULT_RULE, INITIAL_ALARM_STATE } from "../domain/hysteresis.ts";
import { toAlertDoc, toDeviceDoc, toReadingDoc } from "../schemas/documents.ts";
import type { Refusal, WriteBatch, WriteResult } from "../actors/device_store.ts";

const AT = new Date("2026-11-27T13:00:00.000Z");

/** A batch with one reading and one device document for `deviceId`. */
function batchFor(deviceId: string, seq = 1): WriteBatch {
  return {
    readings: [
      toReadingDoc(
        {
          deviceId,
          seq,
          ts: AT.toISOString(),
          temperature: 20,
          humidity: 50,
          location: { lat: 0, lon: 0 },
        },
        false,
        AT,
      ),
    ],
    alerts: [],
    devices: [toDeviceDoc(deviceId, { ...INITIAL_ALARM_STATE, lastSeq: seq }, DEFAULT_RULE, AT)],
  };
}

/** An overheat alert of `deviceId` raised at seq 1. */
function alertFor(deviceId: string) {
  return toAlertDoc(deviceId, {
    raisedSeq: 1,
    raisedAt: AT.toISOString(),
    peakTemperature: 85,
  }, DEFAULT_RULE);
}

/** A store whose writes wait until the test settles them, one gate per call. */
class GatedStore {
  readonly calls: WriteBatch[] = [];
  readonly #gates: PromiseWithResolvers<WriteResult>[] = [];

  write(batch: WriteBatch): Promise<WriteResult> {
    this.calls.push(batch);
    const gate = Promise.withResolvers<WriteResult>();
    this.#gates.push(gate);
    return gate.promise;
  }

  succeed(call: number, refused: readonly Refusal[] = []): void {
    this.#gates[call]!.resolve({ refused });
  }

  fail(call: number, error: Error): void {
    this.#gates[call]!.reject(error);
  }
}

/** Lets every queued microtask and pending callback run (a zero-delay macrotask). */
/** Tracks whether a promise has settled, without leaving a rejection unhandled. */
function track(promise: Promise<unknown>) {
  const state = { settled: false, error: undefined as unknown };
  const done = promise.then(
    () => void (state.settled = true),
    (error) => void Object.assign(state, { settled: true, error }),
  );
  return { state, done };
}

Deno.test("StoreWriter.write() passes a lone batch to the store unchanged", async () => {
  const store = new GatedStore();
  const writer = new StoreWriter(store);
  const batch = batchFor("a");
  const written = writer.write(batch);
  assert.equal(store.calls.length, 1);
  assert.equal(store.calls[0], batch);
  store.succeed(0);
  await written;
  assert.deepEqual(writer.stats, { writes: 1, readings: 1, alerts: 0, failures: 0, queued: 0 });
});

Deno.test("StoreWriter merges writes queued behind one in flight into one store call", async () => {
  const store = new GatedStore();
  const writer = new StoreWriter(store);
  const first = track(writer.write(batchFor("a")));
  const second = track(writer.write(batchFor("b")));
  const third = track(writer.write(batchFor("c")));
  await settle();
  assert.equal(store.calls.length, 1, "only the first write goes out while it is in flight");

  store.succeed(0);
  await first.done;
  await settle();
  assert.equal(store.calls.length, 2);
  assert.deepEqual(store.calls[1], {
    readings: [...batchFor("b").readings, ...batchFor("c").readings],
    skipped: [],
    alerts: [],
    devices: [...batchFor("b").devices, ...batchFor("c").devices],
  });
  assert.equal(second.state.settled, false, "a caller waits for the write holding its batch");
  assert.equal(third.state.settled, false);

  store.succeed(1);
  await Promise.all([second.done, third.done]);
  assert.equal(second.state.error, undefined);
  assert.equal(third.state.error, undefined);
  assert.deepEqual(writer.stats, { writes: 2, readings: 3, alerts: 0, failures: 0, queued: 0 });
});

Deno.test("StoreWriter answers each caller of a merged write with its own refused readings", async () => {
  const store = new GatedStore();
  const writer = new StoreWriter(store);
  const first = writer.write(batchFor("a"));
  const b = batchFor("b");
  const c = { ...batchFor("c"), skipped: batchFor("c", 7).readings };
  const second = writer.write(b);
  const third = writer.write(c);
  store.succeed(0);
  assert.deepEqual(await first, { refused: [] });
  await settle();
  const conflict: Refusal = { type: "conflict", reading: b.readings[0]!, stored: b.readings[0]! };
  const late: Refusal = { type: "late", reading: c.skipped[0]! };
  store.succeed(1, [late, conflict]);
  assert.deepEqual((await second).refused, [conflict]);
  assert.deepEqual((await third).refused, [late]);
  assert.equal(writer.stats.readings, 2, "the conflicting reading was not stored");
});

Deno.test("StoreWriter resolves each caller only after the write that holds its batch", async () => {
  const store = new GatedStore();
  const writer = new StoreWriter(store);
  const order: string[] = [];
  const first = writer.write(batchFor("a")).then(() => void order.push("a"));
  const second = writer.write(batchFor("b")).then(() => void order.push("b"));
  await settle();
  assert.deepEqual(order, []);
  store.succeed(0);
  await first;
  assert.deepEqual(order, ["a"]);
  await settle();
  store.succeed(1);
  await second;
  assert.deepEqual(order, ["a", "b"]);
});

Deno.test("StoreWriter rejects every caller of a failed group and keeps working", async () => {
  const store = new GatedStore();
  const writer = new StoreWriter(store);
  const first = track(writer.write(batchFor("a")));
  const second = track(writer.write(batchFor("b")));
  const third = track(writer.write(batchFor("c")));
  store.succeed(0);
  await first.done;
  await settle();

  const outage = new Error("Store write failed: connection reset");
  store.fail(1, outage);
  await Promise.all([second.done, third.done]);
  assert.equal(first.state.error, undefined);
  assert.equal(second.state.error, outage);
  assert.equal(third.state.error, outage);
  assert.equal(writer.stats.failures, 1);

  const later = writer.write(batchFor("d"));
  assert.equal(store.calls.length, 3, "a write after a failure goes out at once");
  assert.deepEqual(store.calls[2], batchFor("d"));
  store.succeed(2);
  await later;
  assert.deepEqual(writer.stats, { writes: 2, readings: 2, alerts: 0, failures: 1, queued: 0 });
});

Deno.test("StoreWriter rejects a lone caller when the store throws synchronously", async () => {
  const error = new Error("Store closed");
  const writer = new StoreWriter({
    write() {
      throw error;
    },
  });
  await assert.rejects(writer.write(batchFor("a")), error);
  assert.equal(writer.stats.failures, 1);
});

Deno.test("StoreWriter reports each acknowledged write, not a failed one, with its time", async () => {
  const store = new GatedStore();
  const stored: { batch: WriteBatch; at: number }[] = [];
  let now = 1000;
  const writer = new StoreWriter(store, {
    onStored: (batch, at) => stored.push({ batch, at }),
    now: () => now,
  });
  const first = track(writer.write(batchFor("a")));
  const second = track(writer.write(batchFor("b")));
  await settle();
  assert.equal(writer.stats.queued, 1, "b waits behind the write in flight");
  store.fail(0, new Error("store down"));
  await first.done;
  assert.equal(stored.length, 0, "a failed write is not reported");
  now = 2500;
  store.succeed(1);
  await second.done;
  assert.deepEqual(stored.map((s) => [s.batch.readings[0]!.deviceId, s.at]), [["b", 2500]]);
  assert.equal(writer.stats.queued, 0);
});

Deno.test("StoreWriter writes a batch of alerts alone beside a readings write in flight, and merges alerts queued behind one", async () => {
  const store = new GatedStore();
  const writer = new StoreWriter(store);
  const readings = track(writer.write(batchFor("a")));
  const alert = (seq: number): WriteBatch => ({
    readings: [],
    alerts: [{ ...alertFor("a"), asOfSeq: seq }],
    devices: [],
  });
  const first = track(writer.write(alert(1)));
  assert.equal(store.calls.length, 2, "the alert did not queue behind the readings");
  assert.equal(store.calls[1]!.alerts.length, 1);
  const second = track(writer.write(alert(2)));
  const third = track(writer.write(alert(3)));
  store.succeed(1);
  await first.done;
  await settle();
  assert.equal(store.calls.length, 3);
  assert.deepEqual(store.calls[2]!.alerts.map((a) => a.asOfSeq), [3], "the latest snapshot");
  assert.equal(readings.state.settled, false);
  store.succeed(2);
  store.succeed(0);
  await Promise.all([readings.done, second.done, third.done]);
  assert.deepEqual(writer.stats, { writes: 3, readings: 1, alerts: 2, failures: 0, queued: 0 });
});

Deno.test("StoreWriter tells each caller when the write holding its batch goes out, not while it is queued", async () => {
  const store = new GatedStore();
  const writer = new StoreWriter(store);
  const started: string[] = [];
  const first = track(writer.write(batchFor("a"), { onStart: () => started.push("a") }));
  const second = track(writer.write(batchFor("b"), { onStart: () => started.push("b") }));
  await settle();
  assert.deepEqual(started, ["a"], "the second batch is queued behind the first write");
  store.succeed(0);
  await first.done;
  await settle();
  assert.deepEqual(started, ["a", "b"]);
  store.succeed(1);
  await second.done;
});

Deno.test("StoreWriter's readings lane takes as many writes at once as the store says, the rest merged behind them", async () => {
  const store = Object.assign(new GatedStore(), { readingWrites: 2 });
  const writer = new StoreWriter(store);
  const writes = ["a", "b", "c", "d"].map((id) => track(writer.write(batchFor(id))));
  await settle();
  assert.equal(store.calls.length, 2, "two writes in flight");
  assert.deepEqual(store.calls.map((c) => c.readings.map((r) => r.deviceId)), [["a"], ["b"]]);
  // The second acknowledged first: its caller resolves at once, the queued batches go out.
  store.succeed(1);
  await writes[1]!.done;
  await settle();
  assert.equal(writes[0]!.state.settled, false);
  assert.deepEqual(store.calls[2]!.readings.map((r) => r.deviceId), ["c", "d"]);
  store.succeed(0);
  store.succeed(2);
  await Promise.all(writes.map((w) => w.done));
  assert.ok(writes.every((w) => w.state.error === undefined));
  // Alerts stay one write at a time.
  const alerts = [track(writer.write(alertsOnly("e"))), track(writer.write(alertsOnly("f")))];
  await settle();
  assert.equal(store.calls.length, 4);
  store.succeed(3);
  await alerts[0]!.done;
  await settle();
  store.succeed(4);
  await alerts[1]!.done;
});

function alertsOnly(deviceId: string): WriteBatch {
  return { readings: [], alerts: [alertFor(deviceId)], devices: [] };
}
