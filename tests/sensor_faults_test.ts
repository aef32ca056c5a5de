import assert from "node:assert/strict";
import fc from "fast-check";
import {
  clearFaults,
  deliver,
  describeFaults,
  type FaultOrder,
  type FaultState,
  gate,
  injectFault,
  isIdle,
  NO_FAULTS,
} from "../domain/sensor_faults.ts";
import type { Reading } from "../schemas/reading.ts";
import { numRuns } from "./fc_runs.ts";

const NUM_RUNS = numRuns(200);
const T0 = Date.UTC(2030, 0, 1);

function reading(seq: number, temperature = 20 + seq / 10): Reading {
  return {
    deviceId: "d",
    seq,
    ts: new Date(T0 + seq * 1000).toISOString(),
    temperature,
    humidity: 50,
    location: { lat: 1, lon: 2 },
  };
}

/** Runs `ticks` ticks the way the sensor does; what was sent, and the seqs taken. */
function run(state: FaultState, ticks: number, startSeq = 1, startMs = T0) {
  const sent: Reading[] = [];
  let seq = startSeq;
  let silent = 0;
  for (let i = 0; i < ticks; i++) {
    const gated = gate(state, startMs + i * 1000);
    state = gated.state;
    if (gated.silent) {
      silent++;
      continue;
    }
    const out = deliver(state, reading(seq++));
    state = out.state;
    sent.push(...out.send);
  }
  return { sent, state, taken: seq - startSeq, silent };
}

const seqs = (rs: readonly Reading[]) => rs.map((r) => r.seq);

Deno.test("without faults every reading is sent once, as made", () => {
  const { sent, state } = run(NO_FAULTS, 5);
  assert.deepEqual(seqs(sent), [1, 2, 3, 4, 5]);
  assert.ok(isIdle(state));
});

Deno.test("a dropout for N readings is silence: no seq taken, nothing sent", () => {
  const state = injectFault(NO_FAULTS, { kind: "dropout", readings: 3 }, { now: T0 });
  const { sent, taken, silent, state: after } = run(state, 6);
  assert.equal(silent, 3);
  assert.equal(taken, 3, "only the ticks that sent took a seq");
  assert.deepEqual(seqs(sent), [1, 2, 3], "no gap: the seqs continue after the silence");
  assert.ok(isIdle(after));
});

Deno.test("a dropout for a duration ends on the clock", () => {
  const state = injectFault(NO_FAULTS, { kind: "dropout", durationMs: 2500 }, { now: T0 });
  assert.deepEqual(describeFaults(state), [{
    kind: "dropout",
    remaining: null,
    until: new Date(T0 + 2500).toISOString(),
  }]);
  const { silent, sent } = run(state, 6);
  assert.equal(silent, 3, "ticks at 0, 1 and 2 s");
  assert.equal(sent.length, 3);
});

Deno.test("stuck repeats the first affected value with fresh seqs, or the value ordered", () => {
  const latched = run(injectFault(NO_FAULTS, { kind: "stuck", readings: 3 }, { now: T0 }), 5);
  assert.deepEqual(seqs(latched.sent), [1, 2, 3, 4, 5]);
  assert.deepEqual(latched.sent.map((r) => r.temperature), [20.1, 20.1, 20.1, 20.4, 20.5]);
  const fixed = run(
    injectFault(NO_FAULTS, { kind: "stuck", readings: 2, temperature: -5, humidity: 0 }, {
      now: T0,
    }),
    3,
  );
  assert.deepEqual(fixed.sent.map((r) => [r.temperature, r.humidity]), [[-5, 0], [-5, 0], [
    20.3,
    50,
  ]]);
});

Deno.test("spikes are single readings, never two in a row", () => {
  const { sent } = run(
    injectFault(NO_FAULTS, { kind: "spike", count: 3, temperature: 150 }, { now: T0 }),
    8,
  );
  assert.deepEqual(sent.map((r) => r.temperature === 150), [
    true,
    false,
    true,
    false,
    true,
    false,
    false,
    false,
  ]);
  assert.deepEqual(seqs(sent), [1, 2, 3, 4, 5, 6, 7, 8]);
});

Deno.test("a late reading keeps its seq and ts and comes after `by` later readings", () => {
  const { sent, state } = run(
    injectFault(NO_FAULTS, { kind: "late", readings: 1, by: 2 }, { now: T0 }),
    5,
  );
  assert.deepEqual(seqs(sent), [2, 3, 1, 4, 5]);
  assert.deepEqual(sent[2], reading(1), "the same reading, as made");
  assert.ok(isIdle(state));
});

Deno.test("several late readings wait together and arrive in their own order", () => {
  const { sent } = run(
    injectFault(NO_FAULTS, { kind: "late", readings: 2, by: 2 }, { now: T0 }),
    6,
  );
  assert.deepEqual(seqs(sent), [3, 4, 1, 2, 5, 6]);
});

Deno.test("a duplicate resends the same reading, seq and content", () => {
  const { sent } = run(
    injectFault(NO_FAULTS, { kind: "duplicate", readings: 2, copies: 2 }, { now: T0 }),
    3,
  );
  assert.deepEqual(seqs(sent), [1, 1, 1, 2, 2, 2, 3]);
  assert.deepEqual(sent[0], sent[2]);
});

Deno.test("clearFaults() ends the faults but still sends what was held back", () => {
  let state = injectFault(NO_FAULTS, { kind: "late", readings: 5, by: 1 }, { now: T0 });
  state = injectFault(state, { kind: "stuck", readings: 100 }, { now: T0 });
  const first = run(state, 1);
  assert.deepEqual(first.sent, []);
  assert.deepEqual(describeFaults(first.state).map((f) => f.kind), ["stuck", "late"]);
  const cleared = clearFaults(first.state);
  assert.deepEqual(describeFaults(cleared), [{
    kind: "late",
    remaining: 0,
    until: null,
    by: 1,
    held: 1,
  }]);
  const rest = run(cleared, 2, 2);
  assert.deepEqual(seqs(rest.sent), [2, 1, 3]);
  assert.ok(isIdle(rest.state));
  const onlyStuck = clearFaults(first.state, "late");
  assert.deepEqual(describeFaults(onlyStuck).map((f) => f.kind), ["stuck", "late"]);
});

Deno.test("injectFault() replaces a fault of the same kind", () => {
  let state = injectFault(NO_FAULTS, { kind: "spike", count: 5, temperature: 100 }, { now: T0 });
  state = injectFault(state, { kind: "spike", count: 1, temperature: 120 }, { now: T0 });
  assert.deepEqual(describeFaults(state), [{
    kind: "spike",
    remaining: 1,
    until: null,
    temperature: 120,
  }]);
});

const orderArb: fc.Arbitrary<FaultOrder> = fc.oneof(
  fc.record({ kind: fc.constant("stuck" as const), readings: fc.integer({ min: 1, max: 20 }) }),
  fc.record({ kind: fc.constant("dropout" as const), readings: fc.integer({ min: 1, max: 20 }) }),
  fc.record({
    kind: fc.constant("dropout" as const),
    durationMs: fc.integer({ min: 1, max: 20_000 }),
  }),
  fc.record({
    kind: fc.constant("spike" as const),
    count: fc.integer({ min: 1, max: 10 }),
    temperature: fc.constant(150),
  }),
  fc.record({
    kind: fc.constant("late" as const),
    readings: fc.integer({ min: 1, max: 5 }),
    by: fc.integer({ min: 1, max: 5 }),
  }),
  fc.record({
    kind: fc.constant("duplicate" as const),
    readings: fc.integer({ min: 1, max: 5 }),
    copies: fc.integer({ min: 1, max: 3 }),
  }),
);

Deno.test("whatever the faults, seqs stay honest: each seq taken is sent, same content every time, no seq invented", () => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.integer({ min: 0, max: 30 }), orderArb), { maxLength: 6 }),
      fc.boolean(),
      (orders, clearAtEnd) => {
        let state: FaultState = NO_FAULTS;
        const made = new Map<number, Reading>();
        const sent: Reading[] = [];
        let seq = 1;
        let tick = 0;
        const queue = [...orders].sort((a, b) => a[0] - b[0]);
        // Enough ticks for every fault to run out and every held reading to arrive.
        const ticks = 40 + 30 * 2;
        for (; tick < ticks; tick++) {
          while (queue.length > 0 && queue[0]![0] === tick) {
            state = injectFault(state, queue.shift()![1], { now: T0 + tick * 1000 });
          }
          if (clearAtEnd && tick === 35) state = clearFaults(state);
          const gated = gate(state, T0 + tick * 1000);
          state = gated.state;
          if (gated.silent) continue;
          const out = deliver(state, reading(seq));
          made.set(seq, out.reading);
          seq++;
          state = out.state;
          sent.push(...out.send);
        }
        assert.ok(isIdle(state), "every fault ran out and every held reading was sent");
        const distinct = new Set(seqs(sent));
        assert.deepEqual([...distinct].sort((a, b) => a - b), [...made.keys()], "each seq sent");
        for (const r of sent) assert.deepEqual(r, made.get(r.seq), "the same content each time");
      },
    ),
    { numRuns: NUM_RUNS },
  );
});
