import assert from "node:assert/strict";
import { Sensor, type SensorSettings, type SeqSource } from "../actors/sensor.ts";
import type { ChildExit } from "../actors/supervisor.ts";
import { DEFAULT_RULE } from "../domain/hysteresis.ts";
import { decodeReading, encodeReading, type Reading } from "../schemas/reading.ts";
import { RecordingSink } from "./recording_sink.ts";
import { delay, until } from "./wait.ts";
import type { ReadingSink } from "../actors/reading_sink.ts";

/** The injected clock runs in 2030, so a `ts` from the real clock would stand out. */
const EPOCH = Date.UTC(2030, 0, 1);

/** A clock that moves with real time but starts at EPOCH. */
function shiftedClock(): () => number {
  const offset = EPOCH - Date.now();
  return () => Date.now() + offset;
}

function settings(overrides: Partial<SensorSettings> = {}): SensorSettings {
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
  readonly exits: ChildExit[];
  readonly dropped: string[];
  readonly emitted: Reading[];
}

/** Seqs lastSeq + 1, lastSeq + 2, ... as if from one endless granted block. */
function countFrom(lastSeq: number): SeqSource {
  let seq = lastSeq;
  return { take: () => ++seq };
}

function start(
  overrides: Partial<SensorSettings> = {},
  lastSeq = 0,
  sink = new RecordingSink(),
): Started {
  const exits: ChildExit[] = [];
  const dropped: string[] = [];
  const emitted: Reading[] = [];
  const sensor = new Sensor(settings(overrides), countFrom(lastSeq), {
    sink,
    now: shiftedClock(),
    onDropped: (id) => dropped.push(id),
    onEmit: (reading) => emitted.push(reading),
  }, (e) => exits.push(e));
  return {
    sensor,
    sink,
    exits,
    dropped,
    emitted,
    [Symbol.asyncDispose]: () => sensor.stop(),
  };
}

Deno.test("Sensor emits readings with the seqs its source hands out", async () => {
  await using s = start({}, 41);
  await until("three readings", () => s.sink.readings.length >= 3);
  await s.sensor.stop();
  const seqs = s.sink.readings.map((r) => r.seq);
  assert.deepEqual(seqs.slice(0, 3), [42, 43, 44]);
  assert.deepEqual(seqs, seqs.map((_, i) => 42 + i), "no gap and no repeat");
  assert.equal(s.sensor.seq, seqs.at(-1));
});

Deno.test("Sensor readings carry the device id, the injected clock's time and valid values", async () => {
  const before = EPOCH;
  await using s = start({ profile: "overheat", seed: 12345 });
  await until("ten readings", () => s.sink.readings.length >= 10);
  await s.sensor.stop();
  let previous = before;
  for (const reading of s.sink.readings) {
    assert.equal(reading.deviceId, "sensor-0001");
    const ts = Date.parse(reading.ts);
    assert.equal(new Date(ts).toISOString(), reading.ts, "ts is ISO-8601 UTC");
    assert.ok(ts >= previous && ts < EPOCH + 60_000, `ts ${reading.ts} comes from now()`);
    previous = ts;
    // The wire schema is the range check: every reading must survive the consumer.
    const bytes = new TextEncoder().encode(encodeReading(reading));
    assert.deepEqual(decodeReading(bytes), { ok: true, reading });
    assert.equal("thresholds" in reading, false);
  }
});

Deno.test("Sensor hands each reading to onEmit as well as to the sink", async () => {
  await using s = start();
  await until("two readings", () => s.sink.readings.length >= 2);
  await s.sensor.stop();
  assert.deepEqual(s.emitted, s.sink.readings);
  assert.deepEqual(s.dropped, []);
});

Deno.test("Sensor with a script emits exactly its temperatures, then exits normally once", async () => {
  const temperatures = [70, 81, 82, -5.5];
  const humidity = [40, 41, 42, 43];
  await using s = start({ profile: "scripted", temperatures, humidity }, 10);
  await until("the exit", () => s.exits.length > 0);
  assert.deepEqual(s.sink.readings.map((r) => r.temperature), temperatures);
  assert.deepEqual(s.sink.readings.map((r) => r.humidity), humidity);
  assert.deepEqual(s.sink.readings.map((r) => r.seq), [11, 12, 13, 14]);
  assert.ok(s.sink.readings.every((r) => r.location.lat === 48.8566));
  assert.deepEqual(s.exits, [{ type: "normal" }]);
  assert.equal(s.sensor.running, false);
  await delay(20);
  assert.equal(s.sink.readings.length, 4);
  assert.equal(s.exits.length, 1);
});

Deno.test("Sensor.stop() stops emission at once", async () => {
  await using s = start();
  await until("a reading", () => s.sink.readings.length >= 1);
  await s.sensor.stop();
  const count = s.sink.readings.length;
  assert.equal(s.sensor.running, false);
  await delay(25);
  assert.equal(s.sink.readings.length, count, "no reading after stop() resolved");
  assert.deepEqual(s.exits, [], "a requested stop is not an exit");
});

Deno.test("Sensor.stop() before the first tick emits nothing", async () => {
  await using s = start({ intervalMs: 5 });
  await s.sensor.stop();
  await delay(20);
  assert.deepEqual(s.sink.readings, []);
  assert.equal(s.sensor.seq, 0);
});

Deno.test("Sensor counts a refused reading as dropped and does not reuse its seq", async () => {
  const sink = new RecordingSink();
  sink.accepting = false;
  await using s = start({}, 0, sink);
  await until("two refused readings", () => sink.readings.length >= 2);
  sink.accepting = true;
  await until("an accepted reading", () => sink.readings.length >= 4);
  await s.sensor.stop();
  assert.ok(s.dropped.length >= 2);
  assert.ok(s.dropped.every((id) => id === "sensor-0001"));
  const seqs = sink.readings.map((r) => r.seq);
  assert.deepEqual(seqs, seqs.map((_, i) => i + 1));
  assert.equal(s.sensor.seq, seqs.at(-1));
});

Deno.test("Sensor includes its thresholds in readings only when it has a custom rule", async () => {
  const rule = { high: 60, low: 50, raiseAfter: 3, clearAfter: 1 };
  await using custom = start({ id: "custom", rule, customRule: true });
  await using plain = start({ id: "plain", rule: DEFAULT_RULE, customRule: false });
  await until(
    "readings from both",
    () => custom.sink.readings.length >= 2 && plain.sink.readings.length >= 2,
  );
  await custom.sensor.stop();
  await plain.sensor.stop();
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
  const exits: ChildExit[] = [];
  const failing = new Sensor(
    settings(),
    countFrom(0),
    { sink, now: Date.now },
    (e) => exits.push(e),
  );
  await until("the failure", () => exits.length > 0);
  assert.deepEqual(exits, [{ type: "failed", error }]);
  assert.equal(failing.running, false);
  await delay(15);
  assert.equal(exits.length, 1, "exit is reported once and the timer no longer fires");
  await failing.stop();
});

Deno.test("Sensor ticks at its interval, neither faster nor falling behind", async () => {
  await using s = start({ intervalMs: 5, seed: 0 });
  const started = Date.now();
  await until("twenty readings", () => s.sink.readings.length >= 20, 2000);
  const elapsed = Date.now() - started;
  await s.sensor.stop();
  // The 20th tick is due 95 ms after the start; the upper bound only guards against stalls.
  assert.ok(elapsed >= 90 && elapsed < 1500, `took ${elapsed} ms`);
  assert.equal(s.sensor.late, 0);
});

Deno.test("Sensor.overheat() makes the next readings hot, then the signal takes over", async () => {
  await using s = start({ profile: "normal", intervalMs: 20 });
  await until("a first reading", () => s.sink.readings.length >= 1, 2000);
  s.sensor.overheat({ remaining: 3, temperature: 95 });
  const from = s.sink.readings.length;
  await until("five more readings", () => s.sink.readings.length >= from + 5, 2000);
  await s.sensor.stop();
  const after = s.sink.readings.slice(from).map((r) => r.temperature);
  assert.deepEqual(after.slice(0, 3), [95, 95, 95]);
  assert.ok(after.slice(3).every((t) => t < 40), `back to normal: ${after}`);
  assert.ok(s.sink.readings.slice(0, from).every((r) => r.temperature < 40));
});

Deno.test("Sensor skips a tick with no seq to use, counts it as stalled and resumes without a gap", async () => {
  const sink = new RecordingSink();
  const exits: ChildExit[] = [];
  const offered: (number | undefined)[] = [5, undefined, undefined, 6, 7];
  let asked = 0;
  const seqs: SeqSource = { take: () => offered[asked++] };
  const sensor = new Sensor(settings({ intervalMs: 5 }), seqs, {
    sink,
    now: shiftedClock(),
  }, (e) => exits.push(e));
  await until("every seq offered", () => asked >= offered.length + 1);
  await sensor.stop();
  assert.deepEqual(sink.readings.map((r) => r.seq), [5, 6, 7]);
  assert.equal(sensor.stalled, asked - 3, "every tick without a seq");
  assert.equal(sensor.seq, 7);
  assert.deepEqual(exits, []);
});
