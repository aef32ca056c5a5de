import assert from "node:assert/strict";
import { Sensor, type SeqSource } from "../actors/sensor.ts";
import type { SensorSpec } from "../schemas/sensor_spec.ts";
import { SharedTimer } from "../actors/shared_timer.ts";
import type { ChildExit } from "../actors/supervisor.ts";
import { DEFAULT_RULE } from "../domain/hysteresis.ts";
import { decodeReading, encodeReading, type Reading } from "../schemas/reading.ts";
import { RecordingSink } from "./recording_sink.ts";
import { FakeTime } from "./fake_time.ts";
import type { ReadingSink } from "../actors/reading_sink.ts";

/** The fake clock starts in 2030, so a `ts` from the real clock would stand out. */
const EPOCH = Date.UTC(2030, 0, 1);

function settings(overrides: Partial<SensorSpec> = {}): SensorSpec {
  return {
    id: "sensor-0001",
    profile: "normal",
    intervalMs: 5,
    seed: 7,
    location: { lat: 48.8566, lon: 2.3522 },
    rule: DEFAULT_RULE,
    customRule: false,
    ...overrides,
  };
}

interface Started extends AsyncDisposable {
  readonly sensor: Sensor;
  readonly sink: RecordingSink;
  readonly time: FakeTime;
  readonly exits: ChildExit[];
  readonly dropped: string[];
  readonly emitted: Reading[];
}

/** Seqs lastSeq + 1, lastSeq + 2, ... as if from one endless granted block. */
function countFrom(lastSeq: number): SeqSource {
  let seq = lastSeq;
  return { take: () => ++seq };
}

/**
 * A sensor on fake time: nothing happens until the test moves the clock. Its seqs continue
 * from `seqs` when that is a number (the seq it emitted last), else come from `seqs`.
 */
function start(
  overrides: Partial<SensorSpec> = {},
  seqs: number | SeqSource = 0,
  sink: ReadingSink = new RecordingSink(),
  time = new FakeTime(EPOCH),
): Started {
  const exits: ChildExit[] = [];
  const dropped: string[] = [];
  const emitted: Reading[] = [];
  const source = typeof seqs === "number" ? countFrom(seqs) : seqs;
  const sensor = new Sensor(settings(overrides), {
    take: () => source.take(),
    exit: (e) => exits.push(e),
  }, {
    sink,
    now: time.now,
    timer: new SharedTimer(time),
    onDropped: (id) => dropped.push(id),
    onEmit: (reading) => emitted.push(reading),
  });
  return {
    sensor,
    sink: sink as RecordingSink,
    time,
    exits,
    dropped,
    emitted,
    [Symbol.asyncDispose]: async () => {
      await sensor.stop();
      time[Symbol.dispose]();
    },
  };
}

/** With seed 7 and a 5 ms interval a random profile's first tick is due 2 ms after the start. */
const FIRST = 7 % 5;

Deno.test("Sensor emits readings with the seqs its source hands out", async () => {
  await using s = start({}, 41);
  await s.time.tickAsync(FIRST + 2 * 5);
  await s.sensor.stop();
  const seqs = s.sink.readings.map((r) => r.seq);
  assert.deepEqual(seqs, [42, 43, 44]);
  assert.deepEqual(seqs, seqs.map((_, i) => 42 + i), "no gap and no repeat");
  assert.equal(s.sensor.seq, seqs.at(-1));
});

Deno.test("Sensor readings carry the device id, the injected clock's time and valid values", async () => {
  const before = EPOCH;
  await using s = start({ profile: "overheat", seed: 12345 });
  const phase = 12345 % 5;
  await s.time.tickAsync(phase + 9 * 5);
  await s.sensor.stop();
  assert.equal(s.sink.readings.length, 10);
  let previous = before;
  for (const [i, reading] of s.sink.readings.entries()) {
    assert.equal(reading.deviceId, "sensor-0001");
    const ts = Date.parse(reading.ts);
    assert.equal(new Date(ts).toISOString(), reading.ts, "ts is ISO-8601 UTC");
    assert.ok(ts >= previous && ts < EPOCH + 60_000, `ts ${reading.ts} comes from now()`);
    assert.equal(ts, EPOCH + phase + 5 * i, "each tick at its due time on the injected clock");
    previous = ts;
    // The wire schema is the range check: every reading must survive the consumer.
    const bytes = new TextEncoder().encode(encodeReading(reading));
    assert.deepEqual(decodeReading(bytes), { ok: true, reading });
    assert.equal("thresholds" in reading, false);
  }
});

Deno.test("Sensor ts is its own clock's millisecond when sensors on other clocks tick in between", async () => {
  await using a = start({ id: "a" });
  await using b = start({ id: "b" }, 0, new RecordingSink(), new FakeTime(EPOCH + 86_400_000 + 1));
  await using c = start({ id: "c" });
  for (let i = 0; i < 3; i++) {
    await a.time.tickAsync(FIRST + (i === 0 ? 0 : 5));
    await b.time.tickAsync(FIRST + (i === 0 ? 0 : 5));
    await c.time.tickAsync(FIRST + (i === 0 ? 0 : 5));
  }
  for (const [s, epoch] of [[a, EPOCH], [b, EPOCH + 86_400_000 + 1], [c, EPOCH]] as const) {
    assert.deepEqual(
      s.sink.readings.map((r) => r.ts),
      [0, 1, 2].map((i) => new Date(epoch + FIRST + 5 * i).toISOString()),
    );
  }
});

Deno.test("Sensor hands each reading to onEmit as well as to the sink", async () => {
  await using s = start();
  await s.time.tickAsync(FIRST + 5);
  await s.sensor.stop();
  assert.equal(s.sink.readings.length, 2);
  assert.deepEqual(s.emitted, s.sink.readings);
  assert.deepEqual(s.dropped, []);
});

Deno.test("Sensor with a script emits exactly its temperatures, then exits normally once", async () => {
  const temperatures = [70, 81, 82, -5.5];
  const humidity = [40, 41, 42, 43];
  await using s = start({ profile: "scripted", temperatures, humidity }, 10);
  // A script starts at once (no phase): ticks at 0, 5, 10, 15; the fifth finds it done.
  await s.time.tickAsync(15);
  assert.deepEqual(s.exits, []);
  await s.time.tickAsync(5);
  assert.deepEqual(s.sink.readings.map((r) => r.temperature), temperatures);
  assert.deepEqual(s.sink.readings.map((r) => r.humidity), humidity);
  assert.deepEqual(s.sink.readings.map((r) => r.seq), [11, 12, 13, 14]);
  assert.ok(s.sink.readings.every((r) => r.location.lat === 48.8566));
  assert.deepEqual(s.exits, [{ type: "normal" }]);
  assert.equal(s.sensor.running, false);
  await s.time.tickAsync(20);
  assert.equal(s.sink.readings.length, 4);
  assert.equal(s.exits.length, 1);
  assert.equal(s.time.pending, 0, "nothing is scheduled any more");
});

Deno.test("Sensor.stop() stops emission at once", async () => {
  await using s = start();
  await s.time.tickAsync(FIRST);
  assert.equal(s.sink.readings.length, 1);
  await s.sensor.stop();
  const count = s.sink.readings.length;
  assert.equal(s.sensor.running, false);
  await s.time.tickAsync(25);
  assert.equal(s.sink.readings.length, count, "no reading after stop() resolved");
  assert.deepEqual(s.exits, [], "a requested stop is not an exit");
  assert.equal(s.time.pending, 0);
});

Deno.test("Sensor.stop() before the first tick emits nothing", async () => {
  await using s = start({ intervalMs: 5 });
  await s.sensor.stop();
  await s.time.tickAsync(20);
  assert.deepEqual(s.sink.readings, []);
  assert.equal(s.sensor.seq, 0);
});

Deno.test("Sensor counts a refused reading as dropped and does not reuse its seq", async () => {
  const sink = new RecordingSink();
  sink.accepting = false;
  await using s = start({}, 0, sink);
  await s.time.tickAsync(FIRST + 5);
  assert.equal(sink.readings.length, 2, "two refused readings");
  sink.accepting = true;
  await s.time.tickAsync(10);
  assert.equal(sink.readings.length, 4, "two accepted readings");
  await s.sensor.stop();
  assert.deepEqual(s.dropped, ["sensor-0001", "sensor-0001"]);
  const seqs = sink.readings.map((r) => r.seq);
  assert.deepEqual(seqs, seqs.map((_, i) => i + 1));
  assert.equal(s.sensor.seq, seqs.at(-1));
});

Deno.test("Sensor includes its thresholds in readings only when it has a custom rule", async () => {
  const rule = { high: 60, low: 50, raiseAfter: 3, clearAfter: 1 };
  const time = new FakeTime(EPOCH);
  await using custom = start({ id: "custom", rule, customRule: true }, 0, undefined, time);
  await using plain = start(
    { id: "plain", rule: DEFAULT_RULE, customRule: false },
    0,
    undefined,
    time,
  );
  await time.tickAsync(FIRST + 5);
  await custom.sensor.stop();
  await plain.sensor.stop();
  assert.equal(custom.sink.readings.length, 2);
  assert.equal(plain.sink.readings.length, 2);
  assert.ok(
    custom.sink.readings.every((r) => JSON.stringify(r.thresholds) === JSON.stringify(rule)),
  );
  assert.ok(plain.sink.readings.every((r) => !("thresholds" in r)));
});

Deno.test("Sensor reports a failure through exit when the sink throws", async () => {
  const error = new Error("Sink exploded");
  const sink: ReadingSink = {
    publish() {
      throw error;
    },
  };
  await using s = start({}, 0, sink);
  await s.time.tickAsync(FIRST);
  assert.deepEqual(s.exits, [{ type: "failed", error }]);
  assert.equal(s.sensor.running, false);
  await s.time.tickAsync(15);
  assert.equal(s.exits.length, 1, "exit is reported once");
  assert.equal(s.time.pending, 0, "the timer no longer fires");
});

Deno.test("Sensor ticks at its interval, neither faster nor falling behind", async () => {
  // seed 0: no phase, so the n-th tick is due (n - 1) * 5 ms after the start.
  await using s = start({ intervalMs: 5, seed: 0 });
  await s.time.tickAsync(95);
  assert.equal(s.sink.readings.length, 20, "the 20th tick is due 95 ms after the start");
  await s.time.tickAsync(4);
  assert.equal(s.sink.readings.length, 20, "not faster");
  await s.time.tickAsync(1);
  assert.equal(s.sink.readings.length, 21);
  await s.time.tickAsync(500);
  assert.equal(s.sink.readings.length, 121, "not falling behind over a longer stretch");
  assert.equal(s.sensor.late, 0, "each tick was handled before the next was due");
});

Deno.test("Sensor skips a tick that arrives while the previous one waits, and counts it late", async () => {
  await using s = start({ intervalMs: 5, seed: 0 });
  // tick() runs both timers without letting the actor handle the first tick in between.
  s.time.tick(5);
  assert.equal(s.sensor.late, 1);
  assert.equal(s.sensor.mailboxDepth, 1, "the mailbox holds at most one tick");
  await s.time.tickAsync(0);
  assert.deepEqual(s.sink.readings.map((r) => r.seq), [1], "the skipped tick used no seq");
  await s.time.tickAsync(5);
  assert.deepEqual(s.sink.readings.map((r) => r.seq), [1, 2]);
  assert.equal(s.sensor.late, 1);
});

Deno.test("Sensor.overheat() heats the readings with lag past the threshold, then the signal takes over", async () => {
  await using s = start({ profile: "normal", intervalMs: 20 });
  await s.time.tickAsync(7 % 20);
  assert.equal(s.sink.readings.length, 1, "a first reading");
  s.sensor.overheat({ readings: 3, temperature: 95 });
  const from = s.sink.readings.length;
  await s.time.tickAsync(40 * 20);
  await s.sensor.stop();
  const after = s.sink.readings.slice(from);
  const temperatures = after.map((r) => r.temperature);
  assert.ok(temperatures[0]! < 80, `the first reading is still on its way up: ${temperatures}`);
  assert.ok(
    temperatures.every((t, i) => i === 0 || Math.abs(t - temperatures[i - 1]!) < 30),
    `no jump: ${temperatures}`,
  );
  const hot = temperatures.filter((t) => t >= DEFAULT_RULE.high).length;
  assert.ok(
    hot >= 3 && hot <= 5,
    `three hot readings, and maybe one or two on the way down: ${hot}`,
  );
  // Heating the same air dries it: humidity is lowest where temperature is highest.
  const hottest = after.reduce((a, b) => (b.temperature > a.temperature ? b : a));
  assert.ok(after.every((r) => r.humidity >= hottest.humidity));
  assert.ok(temperatures.slice(-5).every((t) => t < 40), `back to normal: ${temperatures}`);
  assert.ok(s.sink.readings.slice(0, from).every((r) => r.temperature < 40));
});

Deno.test("Sensor skips a tick with no seq to use, counts it as stalled and resumes without a gap", async () => {
  const offered: (number | undefined)[] = [5, undefined, undefined, 6, 7];
  let asked = 0;
  const seqs: SeqSource = { take: () => offered[asked++] };
  await using s = start({ intervalMs: 5 }, seqs);
  // One tick, and one ask, per interval: the 6th asks for more than was offered.
  await s.time.tickAsync(FIRST + offered.length * 5);
  assert.ok(asked >= offered.length + 1, `every seq offered: asked ${asked} times`);
  await s.sensor.stop();
  assert.deepEqual(s.sink.readings.map((r) => r.seq), [5, 6, 7]);
  assert.equal(s.sensor.stalled, asked - 3, "every tick without a seq");
  assert.equal(s.sensor.seq, 7);
  assert.deepEqual(s.exits, []);
});

Deno.test("Sensor.stop() with a tick in its mailbox handles that tick, then stops", async () => {
  await using s = start({ intervalMs: 5, seed: 0 });
  s.time.tick(0);
  assert.equal(s.sensor.mailboxDepth, 1, "the first tick waits for its microtask");
  const stopped = s.sensor.stop();
  assert.equal(s.sensor.running, false, "no longer running once stop() was called");
  await stopped;
  assert.deepEqual(s.sink.readings.map((r) => r.seq), [1], "the queued tick was handled");
  assert.equal(s.sensor.mailboxDepth, 0);
  await s.time.tickAsync(20);
  assert.equal(s.sink.readings.length, 1, "nothing after stop() resolved");
  assert.deepEqual(s.exits, []);
});

Deno.test("Sensor after a stall of several intervals emits once late and counts the other missed ticks late", async () => {
  await using s = start({ intervalMs: 5, seed: 0 });
  await s.time.tickAsync(0);
  assert.equal(s.sink.readings.length, 1);
  // The loop is blocked for four intervals: one timer turn then finds ticks 2 to 5 due at once.
  s.time.tick(20);
  await s.time.tickAsync(0);
  assert.equal(s.sink.readings.length, 2, "one reading for the stall, not one per missed tick");
  assert.equal(s.sensor.late, 3);
  // Back on the drift-free schedule: tick 6 is due at 25 ms.
  await s.time.tickAsync(4);
  assert.equal(s.sink.readings.length, 2);
  await s.time.tickAsync(1);
  assert.equal(s.sink.readings.length, 3);
});

Deno.test("Sensor under a dropout takes no seq and sends nothing, then resumes without a gap", async () => {
  let asked = 0;
  const seqs: SeqSource = { take: () => ++asked };
  await using s = start({ intervalMs: 5 }, seqs);
  await s.time.tickAsync(FIRST);
  assert.equal(s.sink.readings.length, 1);
  s.sensor.injectFault({ kind: "dropout", readings: 4 });
  assert.deepEqual(s.sensor.faults, [{ kind: "dropout", remaining: 4, until: null }]);
  await s.time.tickAsync(4 * 5);
  assert.equal(s.sink.readings.length, 1, "silent for four ticks");
  assert.equal(asked, 1, "no seq taken while silent");
  assert.equal(s.sensor.silenced, 4);
  assert.deepEqual(s.sensor.faults, []);
  await s.time.tickAsync(2 * 5);
  await s.sensor.stop();
  assert.deepEqual(s.sink.readings.map((r) => r.seq), [1, 2, 3]);
});

Deno.test("Sensor sends a late reading after later ones and a duplicate twice, seqs unchanged", async () => {
  await using s = start({ intervalMs: 5 });
  await s.time.tickAsync(FIRST);
  s.sensor.injectFault({ kind: "late", readings: 1, by: 1 });
  s.sensor.injectFault({ kind: "duplicate", readings: 1, copies: 1 });
  await s.time.tickAsync(3 * 5);
  await s.sensor.stop();
  // Seq 2 is held (and repeated when finally sent) after seq 3.
  assert.deepEqual(s.sink.readings.map((r) => r.seq), [1, 3, 2, 2, 4]);
  assert.deepEqual(s.sink.readings[2], s.sink.readings[3]);
  assert.deepEqual(s.emitted.map((r) => r.seq), [1, 2, 3, 4], "onEmit once per seq");
});

Deno.test("Sensor.clearFaults() ends a stuck value at once", async () => {
  await using s = start({ profile: "scripted", temperatures: [20, 21, 22, 23, 24], intervalMs: 5 });
  await s.time.tickAsync(0);
  s.sensor.injectFault({ kind: "stuck", durationMs: 60_000 });
  await s.time.tickAsync(2 * 5);
  assert.equal(s.sensor.faults[0]?.kind, "stuck");
  s.sensor.clearFaults();
  assert.deepEqual(s.sensor.faults, []);
  await s.time.tickAsync(2 * 5);
  assert.deepEqual(s.sink.readings.map((r) => r.temperature), [20, 21, 21, 23, 24]);
});
