import type { Reading } from "../schemas/reading.ts";
import assert from "node:assert/strict";
import { SensorFleet, type SensorFleetOptions } from "../actors/sensor_supervisor.ts";
import { DEFAULT_RULE } from "../domain/hysteresis.ts";
import type { SensorRequest, SensorTemplate } from "../schemas/sensor_request.ts";
import { RecordingSink } from "./recording_sink.ts";
import { silentLogger } from "../adapters/log.ts";
import { FakeTime } from "./fake_time.ts";
import { MemorySeqLedger } from "./memory_seq_ledger.ts";

/** A fleet on fake time: its sensors tick only when the test moves `time`; seqs from memory. */
function fleet(overrides: Partial<SensorFleetOptions> = {}) {
  const sink = new RecordingSink();
  const ledger = new MemorySeqLedger();
  const time = new FakeTime();
  const sensors = new SensorFleet({
    sink,
    logger: silentLogger,
    cap: 100,
    defaults: { intervalMs: 5, rule: DEFAULT_RULE, seed: 1 },
    ledger,
    seqBlock: 10,
    timers: time,
    ...overrides,
  });
  const recording = (overrides.sink as RecordingSink | undefined) ?? sink;
  const used = (overrides.ledger as MemorySeqLedger | undefined) ?? ledger;
  return Object.assign(sensors, { sink: recording, ledger: used, time });
}

/**
 * Moves the fleet's fake time `ms` on (every sensor ticks within its first 5 ms, then every
 * 5 ms) and asserts what must hold by then.
 */
async function after(
  f: { readonly time: FakeTime },
  ms: number,
  what: string,
  condition: () => boolean,
): Promise<void> {
  await f.time.tickAsync(ms);
  assert.ok(condition(), `after ${ms} ms: ${what}`);
}

function one(id?: string, template: SensorTemplate = {}): SensorRequest {
  return { kind: "one", id, template };
}

function batch(count: number, idPrefix?: string, template: SensorTemplate = {}): SensorRequest {
  return { kind: "batch", count, idPrefix, template };
}

function idsOf(result: ReturnType<SensorFleet["add"]>): readonly string[] {
  assert.ok(result.ok, `expected success, got ${JSON.stringify(result)}`);
  return result.ids;
}

Deno.test("SensorFleet.add() names a sensor without an id sensor-0001, sensor-0002, ...", async () => {
  await using f = fleet();
  assert.deepEqual(idsOf(f.add(one())), ["sensor-0001"]);
  assert.deepEqual(idsOf(f.add(one())), ["sensor-0002"]);
  assert.deepEqual(idsOf(f.add(one("boiler-7"))), ["boiler-7"]);
  assert.equal(f.size, 3);
});

Deno.test("SensorFleet.add() starts a batch under generated ids, with or without a prefix", async () => {
  await using f = fleet();
  assert.deepEqual(idsOf(f.add(batch(3))), ["sensor-0001", "sensor-0002", "sensor-0003"]);
  await using g = fleet();
  assert.deepEqual(idsOf(g.add(batch(2, "hall"))), ["hall-0001", "hall-0002"]);
  assert.equal(f.size, 3);
  assert.equal(g.size, 2);
});

Deno.test("SensorFleet.add() skips generated ids that are already taken", async () => {
  await using f = fleet();
  idsOf(f.add(one("sensor-0002")));
  assert.deepEqual(idsOf(f.add(batch(2))), ["sensor-0001", "sensor-0003"]);
});

Deno.test("SensorFleet.add() starts sensors that emit into the sink", async () => {
  await using f = fleet();
  const ids = idsOf(f.add(batch(3)));
  await after(f, 10, "a reading from each", () => ids.every((id) => f.sink.of(id).length >= 2));
  assert.equal(f.stats.running, 3);
  assert.ok(f.stats.emitted >= 6);
  assert.equal(f.stats.dropped, 0);
});

Deno.test("SensorFleet.add() refuses an id that is already running, changing nothing", async () => {
  await using f = fleet();
  idsOf(f.add(one("a")));
  assert.deepEqual(f.add(one("a")), {
    ok: false,
    code: "conflict",
    message: 'Sensor already running: "a"',
  });
  assert.equal(f.size, 1);
});

Deno.test("SensorFleet.add() refuses a batch that would exceed the cap, atomically", async () => {
  await using f = fleet({ cap: 5 });
  idsOf(f.add(batch(3)));
  const refused = f.add(batch(3, "extra"));
  assert.equal(refused.ok, false);
  assert.equal(!refused.ok && refused.code, "cap");
  assert.match(
    !refused.ok ? refused.message : "",
    /3 running \+ 3 requested exceeds the limit of 5/,
  );
  assert.equal(f.size, 3);
  assert.deepEqual(f.list(0, 10).map((s) => s.id), ["sensor-0001", "sensor-0002", "sensor-0003"]);
  await after(f, 10, "some readings", () => f.sink.readings.length >= 6);
  assert.ok(f.sink.readings.every((r) => r.deviceId.startsWith("sensor-")), "none was started");

  assert.equal(idsOf(f.add(batch(2))).length, 2, "filling up to the cap exactly is allowed");
  assert.equal(f.size, 5);
  const full = f.add(one("last"));
  assert.equal(!full.ok && full.code, "cap");
  assert.equal(f.get("last"), undefined);
});

Deno.test("SensorFleet.add() never exceeds the cap under many concurrent requests", async () => {
  await using f = fleet({ cap: 10 });
  const results = await Promise.all(
    Array.from(
      { length: 40 },
      (_, i) => Promise.resolve().then(() => f.add(i % 2 ? one() : batch(3))),
    ),
  );
  const accepted = results.flatMap((r) => (r.ok ? r.ids : []));
  // batch(3), one, batch(3), one fill 8; then one batch is refused and two single adds fit.
  assert.equal(accepted.length, 10);
  assert.equal(f.size, 10);
  assert.equal(new Set(accepted).size, 10, "ids are unique");
  assert.ok(results.filter((r) => !r.ok).every((r) => !r.ok && r.code === "cap"));
  assert.equal(f.list(0, 100).length, 10);
});

Deno.test("SensorFleet.list() pages through the sensors in start order", async () => {
  await using f = fleet();
  idsOf(f.add(batch(5)));
  const page = (offset: number, limit: number) => f.list(offset, limit).map((s) => s.id);
  assert.deepEqual(page(0, 2), ["sensor-0001", "sensor-0002"]);
  assert.deepEqual(page(2, 2), ["sensor-0003", "sensor-0004"]);
  assert.deepEqual(page(4, 2), ["sensor-0005"]);
  assert.deepEqual(page(5, 2), []);
  assert.deepEqual(page(0, 0), []);
  assert.equal(page(0, 100).length, 5);
});

Deno.test("SensorFleet.list() describes each sensor with its resolved settings", async () => {
  await using f = fleet({ seqFloors: new Map([["b", 9]]), owner: { host: "h", pid: 7 } });
  idsOf(f.add(one("a", { profile: "overheat", intervalMs: 50, thresholds: { high: 90 } })));
  idsOf(f.add(one("b")));
  const [a, b] = f.list(0, 10);
  assert.deepEqual(a, {
    id: "a",
    profile: "overheat",
    intervalMs: 50,
    seq: 0,
    status: "running",
    thresholds: { ...DEFAULT_RULE, high: 90 },
    owner: { host: "h", pid: 7 },
    emitting: true,
    faults: [],
  });
  assert.equal(b?.profile, "normal");
  assert.equal(b?.intervalMs, 5);
  assert.equal(b?.seq, 0, "the last seq emitted: none yet");
  assert.deepEqual(b?.thresholds, DEFAULT_RULE);
  await after(f, 10, "b's first reading", () => f.sink.of("b").length >= 1);
  assert.equal(f.sink.of("b")[0]!.seq, 10);
});

Deno.test("SensorFleet.get() returns a sensor with its last reading", async () => {
  await using f = fleet();
  idsOf(f.add(one("a")));
  assert.equal(f.get("a")?.lastReading, null);
  assert.equal(f.get("nobody"), undefined);
  await after(f, 10, "two readings", () => f.sink.of("a").length >= 2);
  const detail = f.get("a")!;
  const emitted = f.sink.of("a");
  assert.deepEqual(detail.lastReading, emitted.at(-1));
  assert.equal(detail.seq, emitted.at(-1)!.seq);
  assert.equal(detail.status, "running");
});

Deno.test("SensorFleet.remove() stops a sensor for good and forgets it", async () => {
  await using f = fleet();
  idsOf(f.add(batch(2)));
  await after(f, 5, "readings", () => f.sink.of("sensor-0001").length >= 1);
  assert.equal(await f.remove("sensor-0001"), true);
  const count = f.sink.of("sensor-0001").length;
  assert.equal(f.get("sensor-0001"), undefined);
  assert.equal(f.size, 1);
  assert.deepEqual(f.list(0, 10).map((s) => s.id), ["sensor-0002"]);
  const other = f.sink.of("sensor-0002").length;
  await after(
    f,
    15,
    "the other sensor to go on",
    () => f.sink.of("sensor-0002").length >= other + 3,
  );
  assert.equal(f.sink.of("sensor-0001").length, count, "no reading after remove()");
});

Deno.test("SensorFleet.remove() returns false for an unknown id", async () => {
  await using f = fleet();
  assert.equal(await f.remove("nobody"), false);
  idsOf(f.add(one("a")));
  assert.equal(await f.remove("a"), true);
  assert.equal(await f.remove("a"), false);
});

Deno.test("SensorFleet continues a removed then re-added id above its old blocks", async () => {
  await using f = fleet();
  idsOf(f.add(one("a")));
  await after(f, 15, "readings", () => f.sink.of("a").length >= 3);
  await f.remove("a");
  const before = f.sink.of("a").length;
  const last = f.sink.of("a").at(-1)!.seq;
  const reserved = f.ledger.ceilings.get("a")!;
  assert.equal(f.add(one("a")).ok, true);
  assert.equal(f.get("a")?.seq, last, "the last seq emitted");
  await after(f, 20, "new readings", () => f.sink.of("a").length >= before + 3);
  const seqs = f.sink.of("a").map((r) => r.seq);
  assert.deepEqual(seqs.slice(0, before), seqs.slice(0, before).map((_, i) => i + 1));
  // The rest of the old block is a gap: the new sensor starts above every block reserved.
  assert.deepEqual(seqs.slice(before, before + 3), [reserved + 1, reserved + 2, reserved + 3]);
});

Deno.test("SensorFleet starts each device above its seq floor (the store's lastSeq on upgrade)", async () => {
  await using f = fleet({ seqFloors: new Map([["a", 41]]) });
  idsOf(f.add(one("a")));
  idsOf(f.add(one("b")));
  await after(f, 10, "readings", () => f.sink.of("a").length >= 2 && f.sink.of("b").length >= 1);
  assert.deepEqual(f.sink.of("a").slice(0, 2).map((r) => r.seq), [42, 43]);
  assert.equal(f.sink.of("b")[0]?.seq, 1);
});

Deno.test("SensorFleet reserves blocks for a batch in one ledger call and refills ahead of need", async () => {
  await using f = fleet({ seqBlock: 4 });
  const ids = idsOf(f.add(batch(5)));
  await after(f, 12 * 5, "12 readings each", () => ids.every((id) => f.sink.of(id).length >= 12));
  assert.deepEqual(f.ledger.calls[0]!.map((r) => r.deviceId), ids, "one call for the batch");
  for (const id of ids) {
    const seqs = f.sink.of(id).map((r) => r.seq).slice(0, 12);
    assert.deepEqual(seqs, seqs.map((_, i) => i + 1), `${id}: no gap in steady state`);
  }
  assert.equal(f.stats.stalled, 0, "a prompt ledger never leaves a sensor waiting");
  assert.ok(f.stats.seqBlocks >= 15);
});

Deno.test("SensorFleet: a sensor waits for its first block and stalls, counted, while the ledger is down", async () => {
  const ledger = new MemorySeqLedger();
  const hold = Promise.withResolvers<void>();
  ledger.hold = hold.promise;
  await using f = fleet({
    ledger,
    seqBlock: 4,
    seqRetry: { attempts: 1, initialMs: 1, maxMs: 1 },
  });
  idsOf(f.add(one("a")));
  await f.time.tickAsync(30);
  assert.equal(f.sink.of("a").length, 0, "no reading without a granted block");
  ledger.hold = undefined;
  ledger.failNext = 1_000_000;
  hold.resolve();
  // The first call fails; the sensor asks again every interval and stays silent.
  await after(f, 20, "a few failed calls", () => f.stats.seqLedgerFailures >= 3);
  assert.equal(f.sink.of("a").length, 0);
  ledger.failNext = 0;
  await after(f, 50, "the sensor to emit", () => f.sink.of("a").length >= 6);
  // Now fail every refill: the sensor uses up its block, then stalls instead of inventing seqs.
  ledger.failNext = 1_000_000;
  await after(f, 100, "stalled ticks", () => f.stats.stalled >= 3);
  const seqs = f.sink.of("a").map((r) => r.seq);
  assert.ok(Math.max(...seqs) <= f.ledger.ceilings.get("a")!, "every seq was granted");
  assert.deepEqual(seqs, [...new Set(seqs)].sort((x, y) => x - y), "increasing, never reused");
  ledger.failNext = 0;
  const count = seqs.length;
  await after(f, 20, "emitting again", () => f.sink.of("a").length >= count + 2);
});

Deno.test("SensorFleet.add() refuses thresholds whose low is not below the merged high", async () => {
  await using f = fleet();
  const low = f.add(one("a", { thresholds: { low: 80 } }));
  assert.equal(!low.ok && low.code, "invalid");
  assert.match(!low.ok ? low.message : "", /low \(80\) must be below high \(80\)/);
  const high = f.add(batch(2, "b", { thresholds: { high: 60 } }));
  assert.equal(!high.ok && high.code, "invalid");
  assert.equal(f.size, 0);
  assert.equal(f.get("a"), undefined);
});

Deno.test("SensorFleet sends a sensor's own thresholds, merged with the defaults, in its readings", async () => {
  await using f = fleet();
  idsOf(f.add(one("own", { thresholds: { high: 90, raiseAfter: 3 } })));
  idsOf(f.add(one("plain")));
  await after(
    f,
    10,
    "readings",
    () => f.sink.of("own").length >= 1 && f.sink.of("plain").length >= 1,
  );
  assert.deepEqual(f.sink.of("own")[0]?.thresholds, { ...DEFAULT_RULE, high: 90, raiseAfter: 3 });
  assert.equal("thresholds" in f.sink.of("plain")[0]!, false);
});

Deno.test("SensorFleet marks a scripted sensor completed once its script is done", async () => {
  await using f = fleet();
  idsOf(f.add(one("s", { profile: "scripted", temperatures: [70, 81, 82] })));
  await after(f, 15, "completion", () => f.get("s")?.status === "completed");
  assert.deepEqual(f.sink.of("s").map((r) => r.temperature), [70, 81, 82]);
  assert.equal(f.get("s")?.seq, 3);
  assert.equal(f.size, 1, "a completed sensor stays listed until removed");
  assert.equal(await f.remove("s"), true);
});

Deno.test("SensorFleet counts readings the sink refused as dropped", async () => {
  const sink = new RecordingSink();
  sink.accepting = false;
  await using f = fleet({ sink });
  idsOf(f.add(one("a")));
  await after(f, 10, "refused readings", () => f.stats.dropped >= 2);
  assert.equal(f.stats.emitted, sink.readings.length);
  assert.equal(f.stats.dropped, sink.readings.length);
});

Deno.test("SensorFleet.stop() stops every sensor", async () => {
  const f = fleet();
  idsOf(f.add(batch(4)));
  await after(f, 10, "readings", () => f.sink.readings.length >= 8);
  await f.stop();
  const count = f.sink.readings.length;
  await f.time.tickAsync(25);
  assert.equal(f.sink.readings.length, count);
  await f.stop();
});

Deno.test({
  name: "SensorFleet.add() of an id whose removal is still in progress starts a running sensor",
  fn: async () => {
    await using f = fleet();
    idsOf(f.add(one("a")));
    await after(f, 5, "a reading", () => f.sink.of("a").length >= 1);
    const removing = f.remove("a");
    const again = f.add(one("a"));
    await removing;
    if (again.ok) {
      await f.time.tickAsync(0);
      assert.equal(f.get("a")?.status, "running");
      const count = f.sink.of("a").length;
      await after(f, 10, "a reading after re-adding", () => f.sink.of("a").length > count);
    } else {
      assert.equal(again.code, "conflict");
    }
  },
});

Deno.test("SensorFleet.overheat() heats a running sensor past its own high threshold", async () => {
  await using f = fleet();
  idsOf(f.add(one("a", { thresholds: { high: 60, low: 50 } })));
  await after(f, 5, "a reading", () => f.sink.of("a").length >= 1);
  assert.deepEqual(f.overheat("a", { readings: 4, temperature: undefined }), {
    ok: true,
    readings: 4,
    temperature: 70,
  });
  const from = f.sink.of("a").length;
  const hot = () => f.sink.of("a").slice(from).filter((r) => r.temperature >= 60).length;
  await after(f, 40, "four hot readings", () => hot() >= 4);
  // Heated with thermal lag towards 70 °C: it gets there, it does not jump there.
  const heated = f.sink.of("a").slice(from).map((r) => r.temperature);
  assert.ok(heated[0]! < 60, `on its way up: ${heated}`);
  const peak = heated.indexOf(Math.max(...heated));
  assert.ok(heated[peak]! <= 70, `never past the target: ${heated}`);
  assert.ok(heated.slice(0, peak + 1).every((t, i) => i === 0 || t > heated[i - 1]!), `${heated}`);
});

Deno.test("SensorFleet.overheat() refuses unknown sensors and temperatures below high", async () => {
  await using f = fleet();
  idsOf(f.add(one("a")));
  const unknown = f.overheat("nobody", { readings: 1, temperature: undefined });
  assert.deepEqual(unknown, { ok: false, code: "not_found", message: 'Unknown sensor: "nobody"' });
  const cool = f.overheat("a", { readings: 1, temperature: DEFAULT_RULE.high - 0.5 });
  assert.equal(cool.ok, false);
  if (!cool.ok) {
    assert.equal(cool.code, "invalid");
    assert.match(cool.message, /high threshold is 80/);
  }
});

Deno.test("SensorFleet.overheat() refuses a sensor whose script has completed", async () => {
  await using f = fleet();
  idsOf(f.add(one("s", { profile: "scripted", temperatures: [20] })));
  await after(f, 5, "the script to end", () => f.get("s")?.status === "completed");
  const result = f.overheat("s", { readings: 1, temperature: undefined });
  assert.equal(result.ok, false);
  if (!result.ok) assert.equal(result.code, "not_running");
});

Deno.test("SensorFleet.start() runs a spec once, restarts it when the spec changed", async () => {
  await using f = fleet();
  const spec = {
    id: "r",
    profile: "normal" as const,
    intervalMs: 5,
    seed: 3,
    location: { lat: 1, lon: 2 },
    rule: DEFAULT_RULE,
    customRule: false,
  };
  assert.equal(await f.start(spec), "started");
  assert.equal(await f.start({ ...spec, location: { lat: 1, lon: 2 } }), "unchanged");
  await after(f, 10, "a reading", () => f.sink.readings.length > 0);
  assert.equal(await f.start({ ...spec, intervalMs: 50 }), "restarted");
  assert.equal(f.size, 1);
  assert.equal(f.list(0, 1)[0]?.intervalMs, 50);
  assert.equal(f.list(0, 1)[0]?.status, "running");
});

Deno.test("SensorFleet.start() of a sensor being removed starts it again once it is gone", async () => {
  await using f = fleet();
  const spec = {
    id: "r",
    profile: "normal" as const,
    intervalMs: 5,
    seed: 3,
    location: { lat: 1, lon: 2 },
    rule: DEFAULT_RULE,
    customRule: false,
  };
  await f.start(spec);
  const removing = f.remove("r");
  const again = f.start(spec);
  assert.equal(await removing, true);
  assert.equal(await again, "started");
  assert.equal(f.has("r"), true);
  assert.equal(f.list(0, 1)[0]?.status, "running");
});

Deno.test("SensorFleet reports its supervisor giving up once, marks its sensors failed and refuses more", async () => {
  const escalations: Error[] = [];
  await using f = fleet({
    sink: {
      publish: () => {
        throw new Error("Sink broken");
      },
    },
    onEscalate: (error) => escalations.push(error),
  });
  idsOf(f.add(batch(50)));
  await after(f, 50, "the supervisor gave up", () => escalations.length > 0);
  assert.equal(escalations.length, 1);
  assert.match(escalations[0]!.message, /^Supervisor "sensors" gave up: more than 100 restarts/);
  assert.equal((escalations[0]!.cause as Error).message, "Sink broken");
  assert.ok(f.list(0, 100).every((s) => s.status === "failed"));
  const refused = f.add(one());
  assert.equal(refused.ok, false);
  assert.equal(!refused.ok && refused.code, "unavailable");
  const overheat = f.overheat("sensor-0001", { readings: 3, temperature: undefined });
  assert.equal(!overheat.ok && overheat.code, "unavailable");
  await f.time.tickAsync(20);
  assert.equal(escalations.length, 1, "reported once");
});

Deno.test("SensorFleet.fault() resolves against the sensor's own threshold, shows and counts the fault", async () => {
  await using f = fleet();
  idsOf(f.add(one("a", { thresholds: { high: 60, low: 50 } })));
  idsOf(f.add(one("b")));
  await after(f, 5, "a reading", () => f.sink.of("a").length >= 1);
  assert.deepEqual(f.fault("a", { kind: "spike" }), {
    ok: true,
    fault: { kind: "spike", count: 1, temperature: 90 },
  });
  assert.deepEqual(f.fault("b", { kind: "dropout", durationMs: 1000 }), {
    ok: true,
    fault: { kind: "dropout", durationMs: 1000 },
  });
  assert.equal(f.get("b")?.faults?.[0]?.kind, "dropout");
  assert.deepEqual(f.list(0, 10).map((s) => s.faults?.length), [1, 1]);
  assert.equal(f.stats.faultsActive.dropout, 1);
  assert.equal(f.stats.faultsInjected.spike, 1);
  const from = f.sink.of("b").length;
  await after(f, 50, "b silent", () => f.sink.of("b").length === from);
  assert.ok(f.stats.silenced >= 9, `silenced ${f.stats.silenced}`);
  assert.ok(f.sink.of("a").some((r) => r.temperature === 90), "a spiked");
  assert.deepEqual(f.clearFaults("b"), { ok: true });
  assert.equal(f.stats.faultsActive.dropout, 0);
  await after(f, 10, "b again", () => f.sink.of("b").length > from);
  assert.equal(f.stats.faultsInjected.dropout, 1, "a total, not a level");
});

Deno.test("SensorFleet.fault() refuses unknown sensors and sensors that are not running", async () => {
  await using f = fleet();
  idsOf(f.add(one("s", { profile: "scripted", temperatures: [20] })));
  assert.deepEqual(f.fault("nobody", { kind: "stuck" }), {
    ok: false,
    code: "not_found",
    message: 'Unknown sensor: "nobody"',
  });
  await after(f, 5, "the script to end", () => f.get("s")?.status === "completed");
  const done = f.fault("s", { kind: "stuck" });
  assert.equal(!done.ok && done.code, "not_running");
  assert.equal(f.clearFaults("nobody").ok, false);
  assert.deepEqual(f.get("s")?.faults, []);
});

Deno.test("SensorFleet applies an overheat or fault given before the sensor's first seq block once it starts", async () => {
  await using f = fleet();
  idsOf(f.add(one("a")));
  idsOf(f.add(one("b")));
  assert.equal(f.get("a")?.faults?.length, 0, "not started yet: nothing to show");
  assert.deepEqual(f.fault("a", { kind: "stuck", readings: 3, temperature: 42 }), {
    ok: true,
    fault: { kind: "stuck", readings: 3, temperature: 42 },
  });
  assert.equal(f.overheat("b", { readings: 2, temperature: undefined }).ok, true);
  await after(f, 30, "readings of both", () => f.sink.of("a").length >= 4);
  assert.deepEqual(f.sink.of("a").slice(0, 3).map((r) => r.temperature), [42, 42, 42]);
  assert.notEqual(f.sink.of("a")[3]!.temperature, 42);
  await after(f, 50, "b heated", () => f.sink.of("b").some((r) => r.temperature >= 80));
});

// --- rule changes at run time ------------------------------------------------------

const LOWERED = { ...DEFAULT_RULE, high: 50, low: 40 };

Deno.test("SensorFleet.setRule() changes the rule between two readings: later seqs carry it", async () => {
  await using f = fleet();
  idsOf(f.add(one("t")));
  await after(f, 12, "readings", () => f.sink.of("t").length >= 2);
  const result = f.setRule("t", { high: 50, low: 40 });
  assert.deepEqual(result, { ok: true, rule: LOWERED, appliesAfterSeq: f.get("t")!.seq });
  const cut = result.ok ? result.appliesAfterSeq! : 0;
  await after(f, 20, "readings under the new rule", () => f.sink.of("t").length >= cut + 2);
  const sent = f.sink.of("t");
  assert.deepEqual(sent.map((r) => r.seq), sent.map((_, i) => i + 1), "no restart, no gap");
  for (const r of sent) {
    assert.deepEqual(r.thresholds, r.seq > cut ? LOWERED : undefined, `seq ${r.seq}`);
  }
  assert.deepEqual(f.get("t")!.thresholds, LOWERED);
});

Deno.test("SensorFleet.setRule() refuses unknown sensors and a rule with low not below high", async () => {
  await using f = fleet();
  idsOf(f.add(one("t")));
  const unknown = f.setRule("nobody", { high: 50 });
  assert.equal(!unknown.ok && unknown.code, "not_found");
  const bad = f.setRule("t", { low: 90 });
  assert.equal(!bad.ok && bad.code, "invalid");
  assert.match(!bad.ok ? bad.message : "", /low must be below high/);
  assert.deepEqual(f.get("t")!.thresholds, DEFAULT_RULE);
});

Deno.test("SensorFleet.start() adopts a spec whose rule alone changed without restarting the sensor", async () => {
  await using f = fleet();
  const spec = {
    id: "r",
    profile: "scripted" as const,
    intervalMs: 5,
    seed: 3,
    location: { lat: 1, lon: 2 },
    rule: DEFAULT_RULE,
    customRule: false,
    temperatures: [10, 20, 30, 40, 50, 60],
  };
  assert.equal(await f.start(spec), "started");
  await after(f, 12, "two readings", () => f.sink.of("r").length >= 2);
  assert.equal(await f.start({ ...spec, rule: LOWERED, customRule: true }), "ruled");
  await after(f, 40, "the script's end", () => f.get("r")?.status === "completed");
  // A restart would have run the script again from its first temperature under new seqs.
  assert.deepEqual(f.sink.of("r").map((r) => r.temperature), [10, 20, 30, 40, 50, 60]);
  assert.deepEqual(f.sink.of("r").at(-1)?.thresholds, LOWERED);
});

/** Records like RecordingSink, but handing over `failing`'s reading number `failAt` throws. */
class FailingOnceSink extends RecordingSink {
  #seen = 0;
  constructor(readonly failing: string, readonly failAt: number) {
    super();
  }
  override publish(reading: Reading): boolean {
    if (reading.deviceId === this.failing && ++this.#seen === this.failAt) {
      throw new Error("Sink hiccup");
    }
    return super.publish(reading);
  }
}

Deno.test("SensorFleet restarts a failed sensor alone; its seqs go on above the lost one", async () => {
  await using f = fleet({ sink: new FailingOnceSink("a", 2) });
  idsOf(f.add(one("a")));
  idsOf(f.add(one("b")));
  await after(f, 40, "a restarted and emitting again", () => f.sink.of("a").length >= 4);
  assert.equal(f.stats.restarts, 1);
  assert.equal(f.get("a")?.status, "running");
  assert.equal(f.get("b")?.status, "running");
  const seqs = f.sink.of("a").map((r) => r.seq);
  assert.ok(seqs.every((seq, i) => i === 0 || seq > seqs[i - 1]!), `increasing: ${seqs}`);
  assert.equal(seqs[1]! - seqs[0]!, 2, `the failed tick's seq is burned, not reused: ${seqs}`);
  assert.equal(f.get("a")?.lastReading?.seq, seqs.at(-1));
  const b = f.sink.of("b").map((r) => r.seq);
  assert.deepEqual(b, b.map((_, i) => b[0]! + i), "b never noticed");
});
