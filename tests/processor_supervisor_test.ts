import assert from "node:assert/strict";
import { ProcessorSupervisor } from "../actors/processor_supervisor.ts";
import { StoreWriter } from "../actors/store_writer.ts";
import type { DeviceOutput } from "../actors/processor.ts";
import {
  type AlarmRule,
  type AlarmState,
  DEFAULT_RULE,
  INITIAL_ALARM_STATE,
  replay,
} from "../domain/hysteresis.ts";
import {
  type AlertDoc,
  type DeviceDoc,
  type ReadingDoc,
  toDeviceDoc,
  toReadingDoc,
} from "../schemas/documents.ts";
import { encodeReading, type Reading } from "../schemas/reading.ts";
import { silentLogger } from "../adapters/log.ts";
import { FakeTime } from "./fake_time.ts";
import { settle, until } from "./wait.ts";
import { KvStore } from "../adapters/kv_store.ts";
import {
  type DeviceStore,
  type Refusal,
  refusalOf,
  type WriteBatch,
  type WriteResult,
} from "../actors/device_store.ts";
import type {
  BatchContext,
  DeadLetter,
  DeadLetterSink,
  Offsets,
  RawRecord,
  ReadingSource,
  RecordBatch,
} from "../actors/reading_source.ts";

const BASE_MS = Date.UTC(2026, 10, 27, 13, 0, 0);
const WORKED_EXAMPLE = [70, 81, 82, 79, 76, 71, 69, 68, 85, 86];
const encoder = new TextEncoder();

/** A device state as `id@lastSeq`, to compare the states written. */
function tagOf(doc: DeviceDoc): string {
  return `${doc._id}@${doc.lastSeq}`;
}

/** The device states of a write, as sorted tags. */
function statesOf(batch: WriteBatch | undefined): string[] {
  return (batch?.devices ?? []).map(tagOf).sort();
}

/**
 * An in-memory DeviceStore: inserts readings once (refusing other content
 * under a stored `_id`, like the real adapters), upserts the rest by `_id`,
 * records every call, fails or waits on demand. Stored device states are
 * logged to `events`.
 */
class MemoryStore implements DeviceStore {
  readonly readings = new Map<string, ReadingDoc>();
  readonly alerts = new Map<string, AlertDoc>();
  readonly devices = new Map<string, DeviceDoc>();
  readonly batches: WriteBatch[] = [];
  readonly loads: string[][] = [];
  /** What became durable, in order, shared with the source's commits. */
  readonly events: string[] = [];
  /** Each write call first waits for the next of these, if any is queued. */
  readonly gates: Promise<void>[] = [];
  /** The next write calls reject with this error while it is set. */
  failWrites: Error | undefined;
  /** Write calls carrying device states reject with this error while it is set. */
  failDeviceWrites: Error | undefined;
  /** Write calls carrying readings reject with this error while it is set. */
  failReadingWrites: Error | undefined;
  failLoads: Error | undefined;
  /** Writes of readings the store takes at once (the writer reads it when built). */
  readingWrites = 1;
  /** Runs first in every write call (after it is recorded): may wait or throw. */
  before: ((batch: WriteBatch) => Promise<void>) | undefined;

  /** Runs first in every lookup of device states (after it is recorded): may wait or throw. */
  beforeLoad: (() => Promise<void>) | undefined;

  async loadDevices(ids: readonly string[]): Promise<Map<string, DeviceDoc>> {
    this.loads.push([...ids]);
    await this.beforeLoad?.();
    if (this.failLoads) return Promise.reject(this.failLoads);
    const found = new Map<string, DeviceDoc>();
    for (const id of ids) {
      const doc = this.devices.get(id);
      if (doc) found.set(id, structuredClone(doc));
    }
    return found;
  }

  async write(batch: WriteBatch): Promise<WriteResult> {
    this.batches.push(batch);
    await this.before?.(batch);
    const gate = this.gates.shift();
    if (gate) await gate;
    if (this.failWrites) throw this.failWrites;
    if (this.failDeviceWrites && batch.devices.length > 0) throw this.failDeviceWrites;
    if (this.failReadingWrites && batch.readings.length > 0) throw this.failReadingWrites;
    const refused: Refusal[] = [];
    for (const doc of batch.readings) {
      const stored = this.readings.get(doc._id);
      if (!stored) this.readings.set(doc._id, structuredClone(doc));
      const refusal = stored && refusalOf(doc, stored);
      if (refusal) refused.push(refusal);
    }
    for (const doc of batch.skipped ?? []) {
      const refusal = refusalOf(doc, this.readings.get(doc._id));
      if (refusal) refused.push(refusal);
    }
    for (const doc of batch.alerts) this.alerts.set(doc._id, structuredClone(doc));
    for (const doc of batch.devices) {
      // Like the Mongo adapter: a device document never moves backwards.
      const stored = this.devices.get(doc._id);
      if (!stored || stored.lastSeq <= doc.lastSeq) this.devices.set(doc._id, structuredClone(doc));
    }
    if (batch.devices.length > 0) this.events.push(`stored ${statesOf(batch).join(" ")}`);
    return { refused };
  }

  readingsAfter(deviceId: string, afterSeq: number, limit: number): Promise<ReadingDoc[]> {
    const after = [...this.readings.values()].filter((r) =>
      r.deviceId === deviceId && r.seq > afterSeq
    );
    return Promise.resolve(after.sort((a, b) => a.seq - b.seq).slice(0, limit));
  }

  /** Stores readings as an earlier run would have (to restore a device past them). */
  seedReadings(readings: readonly Reading[]): void {
    for (const r of readings) {
      this.readings.set(`${r.deviceId}:${r.seq}`, toReadingDoc(r, false, new Date(BASE_MS)));
    }
  }

  /** Everything stored, for comparing two runs. */
  snapshot() {
    const sorted = <T>(m: Map<string, T>) => [...m].sort(([a], [b]) => a.localeCompare(b));
    return {
      readings: sorted(this.readings),
      alerts: sorted(this.alerts),
      devices: sorted(this.devices),
    };
  }
}

/**
 * The source as the supervisor sees it: `offsets` holds the next offset per
 * partition once a batch was handled (the test controls it), `processed()`
 * returns those not committed yet, and commits are recorded (logged to the
 * store's `events`).
 */
class FakeSource implements Pick<ReadingSource, "processed" | "commit"> {
  readonly offsets = new Map<number, string>();
  readonly committed = new Map<number, string>();
  readonly commits: Offsets[] = [];
  readonly #events: string[];
  /** Commits reject with this error while it is set. */
  failCommits: Error | undefined;

  constructor(events: string[]) {
    this.#events = events;
  }

  /** What the real source does once the handler of `batch` resolved. */
  markProcessed(batch: RecordBatch): void {
    this.offsets.set(batch.partition, offsetAfter(batch));
  }

  processed(): Offsets {
    return new Map([...this.offsets].filter(([p, offset]) => this.committed.get(p) !== offset));
  }

  commit(offsets: Offsets): Promise<void> {
    const copy = new Map(offsets);
    this.commits.push(copy);
    this.#events.push(`commit ${[...copy].map(([p, offset]) => `${p}:${offset}`).join(" ")}`);
    if (this.failCommits) return Promise.reject(this.failCommits);
    for (const [p, offset] of copy) this.committed.set(p, offset);
    return Promise.resolve();
  }
}

class RecordingDeadLetters implements DeadLetterSink {
  readonly letters: DeadLetter[] = [];
  fail: Error | undefined;

  send(letters: readonly DeadLetter[]): Promise<void> {
    if (this.fail) return Promise.reject(this.fail);
    this.letters.push(...letters);
    return Promise.resolve();
  }
}

/** A manual clock in ms. */
function clock(start = BASE_MS + 3_600_000) {
  let now = start;
  return {
    now: () => now,
    advance(ms: number) {
      now += ms;
    },
  };
}

interface Harness extends AsyncDisposable {
  readonly supervisor: ProcessorSupervisor;
  readonly store: MemoryStore;
  readonly source: FakeSource;
  readonly deadLetters: RecordingDeadLetters;
  /** The processors' clock: `advance()` moves it alone, without running a timer. */
  readonly clock: ReturnType<typeof clock>;
  /** The checkpoint and sweep timers. */
  readonly timers: FakeTime;
  /** Advances the clock and the timers, runs the timers due, and lets what they started settle. */
  tick(ms: number): Promise<void>;
  /** Handles `batch` as the source does: marked processed once handled, unless stale. */
  deliver(batch: RecordBatch, ctx?: BatchContext): Promise<void>;
}

/**
 * A supervisor attached to a fake source (unless `attach` is false), its
 * timers on fake time: no checkpoint or sweep runs unless a test calls
 * `tick()`; most call `checkpoint()` themselves. Disposing stops the
 * supervisor and its timers.
 */
function harness(
  options: {
    store?: MemoryStore;
    passivateAfterMs?: number;
    rule?: AlarmRule;
    checkpointMs?: number;
    attach?: boolean;
    onRaiseStored?: (readingTs: string, storedAtMs: number) => void;
    onProcessed?: (outputs: readonly DeviceOutput[]) => void;
    rollForward?: boolean;
  } = {},
): Harness {
  const {
    store = new MemoryStore(),
    passivateAfterMs = 60_000,
    rule = DEFAULT_RULE,
    checkpointMs = 60_000,
    attach = true,
    onRaiseStored,
  } = options;
  const deadLetters = new RecordingDeadLetters();
  const source = new FakeSource(store.events);
  const time = clock();
  const timers = new FakeTime(time.now());
  const supervisor = new ProcessorSupervisor({
    store,
    writer: new StoreWriter(store),
    deadLetters,
    rule,
    passivateAfterMs,
    checkpointMs,
    logger: silentLogger,
    now: time.now,
    timers,
    ...(onRaiseStored ? { onRaiseStored } : {}),
    ...(options.onProcessed ? { onProcessed: options.onProcessed } : {}),
    ...(options.rollForward ? { rollForward: true } : {}),
  });
  if (attach) supervisor.attach(source);
  return {
    supervisor,
    store,
    source,
    deadLetters,
    clock: time,
    timers,
    async tick(ms) {
      time.advance(ms);
      timers.tick(ms);
      await settle();
    },
    async deliver(batch, ctx = LIVE) {
      await supervisor.handleBatch(batch, ctx);
      if (!ctx.isStale()) source.markProcessed(batch);
    },
    [Symbol.asyncDispose]: () => supervisor.stop(),
  };
}

function reading(deviceId: string, seq: number, temperature: number): Reading {
  return {
    deviceId,
    seq,
    ts: new Date(BASE_MS + seq * 1000).toISOString(),
    temperature,
    humidity: 50,
    location: { lat: 48.8566, lon: 2.3522 },
  };
}

/** Readings of one device with consecutive seq from `firstSeq`. */
function series(deviceId: string, temperatures: readonly number[], firstSeq = 1): Reading[] {
  return temperatures.map((t, i) => reading(deviceId, firstSeq + i, t));
}

let nextOffset = 0;

function raw(value: string | Uint8Array | null, key: string | null): RawRecord {
  return {
    key: key === null ? null : encoder.encode(key),
    value: typeof value === "string" ? encoder.encode(value) : value,
    offset: String(nextOffset++),
    timestamp: String(BASE_MS),
  };
}

function recordOf(r: Reading): RawRecord {
  return raw(encodeReading(r), r.deviceId);
}

function batchOf(records: readonly RawRecord[], partition = 0): RecordBatch {
  return { topic: "readings", partition, records };
}

/** The offset following a batch's last record: what a checkpoint commits for it. */
function offsetAfter(batch: RecordBatch): string {
  return String(Number(batch.records.at(-1)!.offset) + 1);
}

function readingsBatch(list: readonly Reading[], partition = 0): RecordBatch {
  return batchOf(list.map(recordOf), partition);
}

const LIVE: BatchContext = { heartbeat: () => Promise.resolve(), isStale: () => false };
const STALE: BatchContext = { heartbeat: () => Promise.resolve(), isStale: () => true };
/** A source that takes batches handed on before they are stored (Kafka). */
const HAND_ON: BatchContext = { ...LIVE, handOn: true };

function criticalOf(store: MemoryStore, deviceId: string): boolean[] {
  return [...store.readings.values()]
    .filter((r) => r.deviceId === deviceId)
    .sort((a, b) => a.seq - b.seq)
    .map((r) => r.is_critical);
}

Deno.test("ProcessorSupervisor dead-letters invalid records with reasons and writes the valid ones", async () => {
  await using h = harness();
  const good = series("a", [20, 21]);
  const notJson = raw("{oops", "a");
  const outOfRange = raw(encodeReading({ ...reading("a", 3, 20), temperature: 500 }), "a");
  const wrongKey = raw(encodeReading(reading("b", 1, 20)), "a");
  const empty = raw(null, "a");
  const records = [recordOf(good[0]!), notJson, outOfRange, recordOf(good[1]!), wrongKey, empty];
  await h.supervisor.handleBatch(batchOf(records, 2), LIVE);

  assert.deepEqual(
    h.deadLetters.letters.map((l) => [l.record, l.partition]),
    [[notJson, 2], [outOfRange, 2], [wrongKey, 2], [empty, 2]],
  );
  const reasons = h.deadLetters.letters.map((l) => l.reason);
  assert.match(reasons[0]!, /^invalid JSON: /);
  assert.match(reasons[1]!, /^temperature: /);
  assert.match(reasons[2]!, /does not match deviceId/);
  assert.equal(reasons[3], "empty value");

  assert.deepEqual([...h.store.readings.keys()].sort(), ["a:1", "a:2"]);
  await h.supervisor.checkpoint();
  assert.equal(h.store.devices.get("a")?.lastSeq, 2);
  assert.equal(h.store.devices.has("b"), false);
  assert.equal(h.supervisor.stats.deadLettered, 4);
  assert.equal(h.supervisor.stats.readings, 2);
});

Deno.test("ProcessorSupervisor sends a batch of only invalid records to the dead-letter sink", async () => {
  await using h = harness();
  await h.supervisor.handleBatch(batchOf([raw("[]", "x"), raw("null", null)]), LIVE);
  assert.equal(h.deadLetters.letters.length, 2);
  assert.equal(h.store.readings.size, 0);
  assert.equal(h.supervisor.stats.activeDevices, 0);
});

Deno.test("ProcessorSupervisor applies each device's readings in partition order", async () => {
  await using h = harness();
  const a = series("a", WORKED_EXAMPLE);
  const b = series("b", [81, 82, 60, 60]);
  const interleaved: Reading[] = [];
  for (let i = 0; i < a.length; i++) {
    interleaved.push(a[i]!);
    if (b[i]) interleaved.push(b[i]!);
  }
  await h.supervisor.handleBatch(readingsBatch(interleaved), LIVE);
  assert.deepEqual(
    criticalOf(h.store, "a"),
    [false, false, true, true, true, true, true, false, false, true],
  );
  assert.deepEqual(criticalOf(h.store, "b"), [false, true, true, false]);
  const [written] = h.store.batches;
  const seqsOfA = written!.readings.filter((r) => r.deviceId === "a").map((r) => r.seq);
  assert.deepEqual(seqsOfA, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
});

Deno.test("ProcessorSupervisor writes the worked example's alerts and device state", async () => {
  await using h = harness();
  await h.supervisor.handleBatch(readingsBatch(series("a", WORKED_EXAMPLE)), LIVE);
  const first = h.store.alerts.get("a:overheat:3");
  const second = h.store.alerts.get("a:overheat:10");
  assert.equal(first?.status, "cleared");
  assert.equal(first?.clearedSeq, 8);
  assert.equal(first?.peakTemperature, 82);
  assert.equal(second?.status, "active");
  assert.equal(second?.peakTemperature, 86);
  await h.supervisor.checkpoint();
  const device = h.store.devices.get("a")!;
  assert.equal(device.level, "critical");
  assert.equal(device.lastSeq, 10);
  assert.deepEqual(device.updatedAt, new Date(h.clock.now()));
});

Deno.test("ProcessorSupervisor counts seq gaps and the seqs they skipped", async () => {
  await using h = harness();
  await h.supervisor.handleBatch(readingsBatch(series("a", [20, 21, 22])), LIVE);
  await h.supervisor.handleBatch(
    readingsBatch([...series("a", [23, 24], 10), ...series("a", [25], 20)]),
    LIVE,
  );
  assert.equal(h.supervisor.stats.readings, 6);
  assert.equal(h.supervisor.stats.gaps, 2);
  assert.equal(h.supervisor.stats.skippedSeqs, 6 + 8);
});

Deno.test("ProcessorSupervisor counts readings, duplicates, dead letters and alerts", async () => {
  await using h = harness();
  await h.supervisor.handleBatch(readingsBatch(series("a", WORKED_EXAMPLE)), LIVE);
  // seq 9 and 10 again as they were: duplicates.
  await h.supervisor.handleBatch(
    batchOf([...series("a", [85, 86], 9).map(recordOf), raw("x", null)]),
    LIVE,
  );
  assert.deepEqual(h.supervisor.stats, {
    batches: 2,
    records: 13,
    readings: 10,
    rolledForward: 0,
    duplicates: 2,
    conflicts: 0,
    late: 0,
    outOfOrder: 0,
    gaps: 0,
    skippedSeqs: 0,
    deadLettered: 1,
    alertsRaised: 2,
    alertsCleared: 1,
    activeDevices: 1,
    criticalDevices: 1,
    mailboxDepth: 0,
    passivated: 0,
    processorFailures: 0,
    failedBatches: 0,
    checkpoints: 0,
    failedCheckpoints: 0,
    pendingStates: 1,
  });
  await h.supervisor.checkpoint();
  assert.equal(h.supervisor.stats.checkpoints, 1);
  assert.equal(h.supervisor.stats.pendingStates, 0);
});

Deno.test("ProcessorSupervisor dead-letters a skipped reading stored with other content and keeps the stored one", async () => {
  await using h = harness();
  await h.deliver(readingsBatch(series("a", [70, 81, 82])));
  const reused = { ...reading("a", 2, 99.5), ts: new Date(BASE_MS + 60_000).toISOString() };
  const record = recordOf(reused);
  await h.deliver(batchOf([record, ...series("a", [83], 3).map(recordOf)]));
  assert.equal(h.store.readings.get("a:2")?.temperature, 81, "the stored reading is kept");
  assert.equal(h.deadLetters.letters.length, 2);
  const [conflict, again] = h.deadLetters.letters;
  assert.equal(conflict!.record, record, "the refused record itself is dead-lettered");
  assert.equal(
    conflict!.reason,
    'conflict: reading "a" seq "2" is stored already with other content: ' +
      `ts "${reused.ts}" (stored "${reading("a", 2, 0).ts}"), temperature "99.5" (stored "81")`,
  );
  // seq 3 again, with 83 instead of 82: a conflict too, not a duplicate.
  assert.match(again!.reason, /^conflict: reading "a" seq "3" .*temperature "83" \(stored "82"\)$/);
  assert.deepEqual(
    [h.supervisor.stats.conflicts, h.supervisor.stats.duplicates, h.supervisor.stats.deadLettered],
    [2, 0, 2],
  );
  assert.equal((await h.supervisor.state("a"))?.lastSeq, 3);
});

Deno.test("ProcessorSupervisor refuses the second of two readings with one seq in the same batch", async () => {
  await using h = harness();
  const first = reading("a", 1, 20);
  const second = reading("a", 1, 30);
  await h.deliver(readingsBatch([first, second, first]));
  assert.equal(h.store.readings.get("a:1")?.temperature, 20);
  assert.deepEqual(h.deadLetters.letters.map((l) => l.reason.split(":")[0]), ["conflict"]);
  assert.deepEqual([h.supervisor.stats.conflicts, h.supervisor.stats.duplicates], [1, 1]);
});

Deno.test("ProcessorSupervisor dead-letters a skipped reading that was never stored as late", async () => {
  const store = new MemoryStore();
  store.devices.set(
    "a",
    toDeviceDoc("a", { ...INITIAL_ALARM_STATE, lastSeq: 5 }, DEFAULT_RULE, new Date(BASE_MS)),
  );
  store.seedReadings(series("a", [20, 21, 22], 3));
  await using h = harness({ store });
  await h.deliver(readingsBatch(series("a", [20, 21, 20, 21, 22, 23])));
  assert.deepEqual(h.deadLetters.letters.map((l) => l.reason), [
    'late: reading "a" seq "1" is not above its device\'s last applied seq "6" and was never stored',
    'late: reading "a" seq "2" is not above its device\'s last applied seq "6" and was never stored',
  ]);
  assert.equal(store.readings.has("a:1"), false, "a late reading is not stored");
  assert.deepEqual(
    [h.supervisor.stats.late, h.supervisor.stats.duplicates, h.supervisor.stats.readings],
    [2, 3, 1],
  );
});

Deno.test("ProcessorSupervisor dead-letters an applied reading the store refuses as a conflict", async () => {
  // The device state is behind the stored readings (as after a crash in embedded mode).
  const store = new MemoryStore();
  store.seedReadings(series("a", [20, 21]));
  await using h = harness({ store });
  await h.deliver(readingsBatch(series("a", [20, 25, 30])));
  assert.deepEqual(
    [...store.readings.values()].map((r) => r.temperature),
    [20, 21, 30],
    "stored readings are never replaced",
  );
  assert.equal(h.deadLetters.letters.length, 1);
  assert.match(h.deadLetters.letters[0]!.reason, /^conflict: reading "a" seq "2" .*"25"/);
  assert.equal(h.supervisor.stats.conflicts, 1);
});

Deno.test("ProcessorSupervisor restores a device from the store on first sight", async () => {
  const store = new MemoryStore();
  const stored: AlarmState = { ...INITIAL_ALARM_STATE, lastSeq: 5 };
  store.devices.set("a", toDeviceDoc("a", stored, DEFAULT_RULE, new Date(BASE_MS)));
  store.seedReadings(series("a", [20, 21, 22, 23, 24]));
  await using h = harness({ store });
  await h.supervisor.handleBatch(
    readingsBatch(series("a", [20, 21, 22, 23, 24, 25, 26, 27])),
    LIVE,
  );
  assert.deepEqual(store.loads, [["a"]]);
  assert.deepEqual([...store.readings.keys()].sort().slice(5), ["a:6", "a:7", "a:8"]);
  assert.equal(h.supervisor.stats.duplicates, 5);
  assert.equal(h.supervisor.stats.readings, 3);
  assert.equal(store.devices.get("a")?.lastSeq, 5, "not stored before a checkpoint");
  await h.supervisor.checkpoint();
  assert.equal(store.devices.get("a")?.lastSeq, 8);
});

Deno.test("ProcessorSupervisor continues an open episode restored from the store", async () => {
  const store = new MemoryStore();
  const before = replay(
    series("a", [81, 82, 95]).map(({ seq, ts, temperature }) => ({ seq, ts, temperature })),
    DEFAULT_RULE,
  ).state;
  // Stored documents come back with dates and a JSON-shaped alarm.
  store.devices.set(
    "a",
    JSON.parse(JSON.stringify(toDeviceDoc("a", before, DEFAULT_RULE, new Date(BASE_MS)))),
  );
  await using h = harness({ store });
  await h.supervisor.handleBatch(readingsBatch(series("a", [60, 60], 4)), LIVE);
  const alert = store.alerts.get("a:overheat:2");
  assert.equal(alert?.status, "cleared");
  assert.equal(alert?.clearedSeq, 5);
  assert.equal(alert?.peakTemperature, 95);
  assert.equal(h.supervisor.stats.alertsCleared, 1);
});

Deno.test("ProcessorSupervisor keeps the stored lastSeq of an unusable device state", async () => {
  const store = new MemoryStore();
  const doc = toDeviceDoc("a", { ...INITIAL_ALARM_STATE, lastSeq: 3 }, DEFAULT_RULE, new Date());
  store.devices.set("a", { ...doc, alarm: { level: "panic" } as unknown as AlarmState });
  store.seedReadings(series("a", [20, 21, 22]));
  await using h = harness({ store });
  await h.supervisor.handleBatch(readingsBatch(series("a", [20, 21, 22, 23])), LIVE);
  assert.deepEqual([...store.readings.keys()], ["a:1", "a:2", "a:3", "a:4"]);
  assert.equal(h.supervisor.stats.duplicates, 3);
});

Deno.test("ProcessorSupervisor rejects a batch whose write fails and replays it exactly on retry", async () => {
  const all = series("a", WORKED_EXAMPLE);
  const other = series("b", [81, 82, 83]);
  const first = readingsBatch([...all.slice(0, 4), ...other.slice(0, 1)]);
  const second = readingsBatch([...all.slice(4), ...other.slice(1)]);

  await using clean = harness();
  await clean.supervisor.handleBatch(first, LIVE);
  await clean.supervisor.handleBatch(second, LIVE);

  await using flaky = harness();
  await flaky.supervisor.handleBatch(first, LIVE);
  const outage = new Error("Store write failed: not primary");
  flaky.store.failWrites = outage;
  await assert.rejects(flaky.supervisor.handleBatch(second, LIVE), outage);
  assert.equal(flaky.supervisor.stats.failedBatches, 1);
  assert.equal(flaky.supervisor.stats.activeDevices, 0, "touched devices were discarded");

  flaky.store.failWrites = undefined;
  await flaky.supervisor.handleBatch(second, LIVE);
  assert.deepEqual(flaky.store.snapshot(), clean.store.snapshot());
  assert.deepEqual(flaky.store.batches.at(-1), clean.store.batches.at(-1));
  assert.equal(flaky.store.readings.size, 13);
  assert.equal(flaky.supervisor.stats.duplicates, 0);
  assert.equal(flaky.supervisor.stats.alertsRaised, clean.supervisor.stats.alertsRaised);
  await clean.supervisor.checkpoint();
  await flaky.supervisor.checkpoint();
  assert.deepEqual(flaky.store.snapshot(), clean.store.snapshot());
  assert.deepEqual(statesOf(flaky.store.batches.at(-1)), ["a@10", "b@3"]);
});

Deno.test("ProcessorSupervisor rejects a batch whose dead letters cannot be sent, and retries it cleanly", async () => {
  await using h = harness();
  const batch = batchOf([...series("a", [81, 82]).map(recordOf), raw("bad", "a")]);
  const outage = new Error("Dead-letter topic unavailable");
  h.deadLetters.fail = outage;
  await assert.rejects(h.supervisor.handleBatch(batch, LIVE), outage);
  h.deadLetters.fail = undefined;
  await h.supervisor.handleBatch(batch, LIVE);
  assert.deepEqual(criticalOf(h.store, "a"), [false, true]);
  assert.equal(h.deadLetters.letters.length, 1);
});

Deno.test("ProcessorSupervisor rejects a batch whose device states cannot be loaded", async () => {
  await using h = harness();
  const outage = new Error("Store read failed");
  h.store.failLoads = outage;
  const batch = readingsBatch(series("a", [20]));
  await assert.rejects(h.supervisor.handleBatch(batch, LIVE), outage);
  assert.equal(h.store.batches.length, 0);
  h.store.failLoads = undefined;
  await h.supervisor.handleBatch(batch, LIVE);
  assert.deepEqual([...h.store.readings.keys()], ["a:1"]);
});

Deno.test("ProcessorSupervisor.onAssignment() keeps the devices of kept partitions and drops the others' states unwritten", async () => {
  await using h = harness();
  await h.deliver(readingsBatch(series("b", [81]), 1));
  await h.supervisor.checkpoint(); // b@1 stored
  await h.deliver(readingsBatch(series("a", [81]), 0));
  await h.deliver(readingsBatch(series("b", [82], 2), 1)); // b@2 not stored yet
  assert.equal(h.supervisor.stats.activeDevices, 2);
  assert.equal(h.supervisor.stats.pendingStates, 2);
  const writes = h.store.batches.length;

  await h.supervisor.onAssignment([2, 0]);
  assert.deepEqual(h.supervisor.assignment, [0, 2]);
  assert.equal(h.store.batches.length, writes, "nothing written on a rebalance");
  assert.equal((await h.supervisor.state("a"))?.hotStreak, 1, "partition 0 was kept");
  assert.equal(await h.supervisor.state("b"), undefined, "partition 1 was lost");
  assert.equal(h.supervisor.stats.activeDevices, 1);
  assert.equal(h.supervisor.stats.pendingStates, 1);

  await h.supervisor.checkpoint();
  assert.deepEqual(statesOf(h.store.batches.at(-1)), ["a@1"]);
  assert.equal(h.store.devices.get("b")?.lastSeq, 1, "b's unsaved state was dropped");

  // a goes on from memory.
  await h.deliver(readingsBatch(series("a", [82], 2), 0));
  assert.deepEqual(criticalOf(h.store, "a"), [false, true]);

  // Partition 1 comes back after its other owner moved on: b starts from the store.
  h.store.devices.set(
    "b",
    toDeviceDoc("b", { ...INITIAL_ALARM_STATE, lastSeq: 4 }, DEFAULT_RULE, new Date()),
  );
  await h.supervisor.onAssignment([0, 1]);
  assert.equal((await h.supervisor.state("a"))?.lastSeq, 2);
  await h.deliver(readingsBatch(series("b", [90, 91, 92, 93, 94], 2), 1));
  assert.deepEqual(h.store.loads.flat(), ["b", "a", "b"], "only lost or new devices are loaded");
  assert.deepEqual((await h.supervisor.state("b"))?.lastSeq, 6);
  assert.equal(h.store.readings.has("b:4"), false);
  assert.deepEqual(criticalOf(h.store, "b"), [false, true, false, true]);
  // Skipped as applied by the other owner: seq 2 is stored with 82, not 90; 3 and 4 never were.
  assert.deepEqual(
    [h.supervisor.stats.duplicates, h.supervisor.stats.conflicts, h.supervisor.stats.late],
    [0, 1, 2],
  );
});

Deno.test("ProcessorSupervisor.passivateIdle() releases devices idle longer than the limit", async () => {
  await using h = harness({ passivateAfterMs: 60_000 });
  await h.supervisor.handleBatch(readingsBatch(series("a", [81])), LIVE);
  h.clock.advance(30_000);
  await h.supervisor.handleBatch(readingsBatch(series("b", [20])), LIVE);
  h.clock.advance(30_001);

  assert.equal(await h.supervisor.passivateIdle(), 1);
  assert.equal(await h.supervisor.state("a"), undefined);
  assert.equal((await h.supervisor.state("b"))?.lastSeq, 1);
  assert.equal(h.supervisor.stats.passivated, 1);
  assert.equal(h.supervisor.stats.activeDevices, 1);
  assert.equal(await h.supervisor.passivateIdle(), 0, "b is not idle long enough yet");

  // A passivated device resumes from its latest state, even if not checkpointed yet.
  await h.supervisor.handleBatch(readingsBatch(series("a", [81, 82])), LIVE);
  assert.deepEqual(h.store.loads.flat(), ["a", "b"]);
  assert.deepEqual(criticalOf(h.store, "a"), [false, true]);
  assert.equal(h.supervisor.stats.duplicates, 1);

  // Once checkpointed, it resumes from the store.
  await h.supervisor.checkpoint();
  h.clock.advance(60_001);
  assert.equal(await h.supervisor.passivateIdle(), 2);
  await h.supervisor.handleBatch(readingsBatch(series("a", [83], 3)), LIVE);
  assert.deepEqual(h.store.loads.flat(), ["a", "b", "a"]);
  assert.deepEqual(criticalOf(h.store, "a"), [false, true, true]);
});

Deno.test("ProcessorSupervisor sweeps idle devices every quarter of passivateAfterMs", async () => {
  await using h = harness({ passivateAfterMs: 60_000 });
  await h.deliver(readingsBatch(series("a", [81])));
  for (let i = 0; i < 4; i++) await h.tick(15_000);
  assert.equal(h.supervisor.stats.activeDevices, 1, "idle for 60 s, not longer");
  await h.tick(15_000);
  assert.equal(h.supervisor.stats.activeDevices, 0);
  assert.equal(h.supervisor.stats.passivated, 1);
  assert.equal(await h.supervisor.state("a"), undefined);
});

Deno.test("ProcessorSupervisor.passivateIdle() keeps a device that had a batch recently", async () => {
  await using h = harness({ passivateAfterMs: 1000 });
  await h.supervisor.handleBatch(readingsBatch(series("a", [20])), LIVE);
  h.clock.advance(900);
  await h.supervisor.handleBatch(readingsBatch(series("a", [20], 2)), LIVE);
  h.clock.advance(900);
  assert.equal(await h.supervisor.passivateIdle(), 0);
  assert.equal((await h.supervisor.state("a"))?.lastSeq, 2);
});

Deno.test("ProcessorSupervisor writes nothing for a batch that went stale", async () => {
  await using h = harness();
  await h.supervisor.handleBatch(
    batchOf([...series("a", [81, 82]).map(recordOf), raw("bad", "a")]),
    STALE,
  );
  assert.equal(h.store.batches.length, 0);
  assert.equal(h.deadLetters.letters.length, 0);
  assert.equal(h.supervisor.stats.batches, 0);
  assert.equal(h.supervisor.stats.readings, 0);
  assert.equal(h.supervisor.stats.pendingStates, 0);
});

Deno.test("ProcessorSupervisor writes a stale batch's readings when the batch is delivered again", async () => {
  // The stale batch's states ran ahead of the store; they must not turn the redelivery into
  // duplicates.
  await using h = harness();
  const batch = readingsBatch(series("a", [81, 82]));
  await h.supervisor.handleBatch(batch, STALE);
  await h.supervisor.handleBatch(batch, LIVE);
  assert.deepEqual([...h.store.readings.keys()].sort(), ["a:1", "a:2"]);
  assert.deepEqual(criticalOf(h.store, "a"), [false, true]);
  assert.equal(h.supervisor.stats.duplicates, 0);
});

Deno.test({
  name:
    "ProcessorSupervisor keeps a device's own thresholds when a redelivered batch is all duplicates",
  fn: async () => {
    const own: AlarmRule = { high: 50, low: 40, raiseAfter: 1, clearAfter: 1 };
    const batch = readingsBatch(series("a", [55, 56]).map((r) => ({ ...r, thresholds: own })));
    const store = new MemoryStore();
    {
      await using first = harness({ store });
      await first.supervisor.handleBatch(batch, LIVE);
      await first.supervisor.checkpoint(); // as before a shutdown
    }
    assert.deepEqual(store.devices.get("a")?.thresholds, own);
    await using restarted = harness({ store });
    await restarted.supervisor.handleBatch(batch, LIVE);
    assert.equal(restarted.supervisor.stats.duplicates, 2);
    await restarted.supervisor.checkpoint();
    assert.deepEqual(store.devices.get("a")?.thresholds, own);
  },
});

Deno.test({
  name: "ProcessorSupervisor handles a batch for a device that is being passivated",
  fn: async () => {
    await using h = harness({ passivateAfterMs: 1000 });
    await h.supervisor.handleBatch(readingsBatch(series("a", [81])), LIVE);
    h.clock.advance(5000);
    const passivating = h.supervisor.passivateIdle(); // the sweep timer does not await it
    await h.supervisor.handleBatch(readingsBatch(series("a", [82], 2)), LIVE);
    assert.equal(await passivating, 1);
    assert.deepEqual(criticalOf(h.store, "a"), [false, true]);
    assert.equal(h.supervisor.stats.failedBatches, 0);
  },
});

Deno.test("ProcessorSupervisor.state() is undefined for a device it does not hold", async () => {
  await using h = harness();
  assert.equal(await h.supervisor.state("nobody"), undefined);
});

Deno.test("ProcessorSupervisor.stop() releases every device, its sweep and its checkpoint timer", async () => {
  const h = harness();
  await h.supervisor.handleBatch(readingsBatch([...series("a", [1]), ...series("b", [2])]), LIVE);
  await h.supervisor.stop();
  assert.equal(h.supervisor.stats.activeDevices, 0);
  assert.equal(await h.supervisor.state("a"), undefined);
  await h.supervisor.stop();
});

Deno.test("ProcessorSupervisor stores device states only at a checkpoint", async () => {
  await using h = harness();
  const first = readingsBatch(series("a", [81, 82]));
  await h.deliver(first);
  // Two writes since the alerts' lane (its readings; its alert, critical from seq 2): no state.
  assert.deepEqual(h.store.batches.map((b) => b.devices), [[], []], "the batch wrote no state");
  assert.deepEqual([...h.store.readings.keys()].sort(), ["a:1", "a:2"]);
  assert.equal(h.store.devices.size, 0);
  assert.equal(h.supervisor.stats.pendingStates, 1);

  await h.supervisor.checkpoint();
  const written = h.store.batches.at(-1)!;
  assert.deepEqual(written.readings, []);
  assert.deepEqual(written.alerts, []);
  assert.deepEqual(statesOf(written), ["a@2"]);
  assert.equal(h.store.devices.get("a")?.level, "critical");
  assert.deepEqual(h.source.commits, [new Map([[0, offsetAfter(first)]])]);
  assert.equal(h.supervisor.stats.checkpoints, 1);
  assert.equal(h.supervisor.stats.pendingStates, 0);

  // A later batch's state waits for the next checkpoint.
  const second = readingsBatch(series("a", [60, 60], 3));
  await h.deliver(second);
  assert.equal(h.store.devices.get("a")?.lastSeq, 2);
  await h.supervisor.checkpoint();
  assert.equal(h.store.devices.get("a")?.lastSeq, 4);
  assert.equal(h.store.devices.get("a")?.level, "normal");
  assert.deepEqual(h.source.commits.at(-1), new Map([[0, offsetAfter(second)]]));

  // Nothing changed or processed since: nothing written, nothing committed.
  const writes = h.store.batches.length;
  await h.supervisor.checkpoint();
  assert.equal(h.store.batches.length, writes);
  assert.equal(h.source.commits.length, 2);
  assert.equal(h.supervisor.stats.checkpoints, 3);
});

Deno.test("ProcessorSupervisor.checkpoint() commits the offsets processed before it, after storing the states", async () => {
  await using h = harness();
  const p0 = readingsBatch(series("a", [81, 82]), 0);
  const p1 = readingsBatch(series("b", [20]), 1);
  await h.deliver(p0);
  await h.deliver(p1);

  const stored = Promise.withResolvers<void>();
  h.store.gates.push(stored.promise);
  const checkpoint = h.supervisor.checkpoint();
  // Handled while the states are being written: its readings are stored at once
  // (a checkpoint does not hold up the data path), its state waits for the next checkpoint.
  const later = readingsBatch(series("a", [83], 3), 0);
  const delivering = h.deliver(later);
  await settle();
  assert.deepEqual(statesOf(h.store.batches.find((b) => b.devices.length > 0)), ["a@2", "b@1"]);
  await delivering;
  assert.ok(h.store.readings.has("a:3"), "readings flow during a checkpoint");
  assert.deepEqual(h.source.commits, [], "nothing committed before the states are stored");

  stored.resolve();
  await checkpoint;
  await delivering;
  assert.deepEqual(h.store.events, [
    "stored a@2 b@1",
    `commit 0:${offsetAfter(p0)} 1:${offsetAfter(p1)}`,
  ]);
  assert.equal(h.supervisor.stats.pendingStates, 1);

  await h.supervisor.checkpoint();
  assert.deepEqual(h.store.events.slice(2), ["stored a@3", `commit 0:${offsetAfter(later)}`]);
});

Deno.test("ProcessorSupervisor stores an alert beside a readings write in flight, and checkpoints its batch only once both are stored", async () => {
  await using h = harness();
  const hot = readingsBatch(series("a", WORKED_EXAMPLE.slice(0, 3)), 0);
  const readingsWritten = Promise.withResolvers<void>();
  h.store.gates.push(readingsWritten.promise);
  const delivering = h.deliver(hot);
  await until("the raise is stored", () => h.store.alerts.size === 1);
  assert.equal(h.store.readings.size, 0, "the alert did not wait for the readings' write");
  assert.deepEqual(h.store.batches.map((b) => [b.readings.length, b.alerts.length]), [[3, 0], [
    0,
    1,
  ]]);

  // The alert is stored, its readings are not: a checkpoint now must cover neither.
  await h.supervisor.checkpoint();
  assert.equal(h.supervisor.stats.pendingStates, 0);
  assert.deepEqual(h.store.events, [], "no state stored and no offset committed");

  readingsWritten.resolve();
  await delivering;
  await h.supervisor.checkpoint();
  assert.deepEqual(h.store.events, ["stored a@3", `commit 0:${offsetAfter(hot)}`]);
});

Deno.test("ProcessorSupervisor fails a batch whose readings were not stored though its alert was, and the retry stores what an uninterrupted run does", async () => {
  const all = series("a", WORKED_EXAMPLE);
  const first = readingsBatch(all.slice(0, 2));
  const raising = readingsBatch(all.slice(2, 5)); // raises at seq 3

  await using clean = harness();
  await clean.deliver(first);
  await clean.deliver(raising);
  await clean.supervisor.checkpoint();

  await using flaky = harness();
  await flaky.deliver(first);
  await flaky.supervisor.checkpoint();
  const outage = new Error("Store write failed: not primary");
  flaky.store.failReadingWrites = outage;
  await assert.rejects(flaky.deliver(raising), outage);
  assert.equal(flaky.store.alerts.size, 1, "the alert's lane stored it");
  assert.ok(!flaky.store.readings.has("a:3"), "its readings were not stored");
  // A checkpoint (or a crash and a restart from it) must not skip the unstored readings.
  await flaky.supervisor.checkpoint();
  assert.equal(flaky.store.devices.get("a")?.lastSeq, 2);
  assert.deepEqual(flaky.source.commits, [new Map([[0, offsetAfter(first)]])]);

  flaky.store.failReadingWrites = undefined;
  await flaky.deliver(raising);
  await flaky.supervisor.checkpoint();
  assert.deepEqual(flaky.store.snapshot(), clean.store.snapshot());
  assert.deepEqual(flaky.source.commits.at(-1), new Map([[0, offsetAfter(raising)]]));
});

Deno.test("ProcessorSupervisor with rollForward stores a batch's alerts only once its readings are stored", async () => {
  await using h = harness({ rollForward: true });
  const readingsWritten = Promise.withResolvers<void>();
  h.store.gates.push(readingsWritten.promise);
  const delivering = h.deliver(readingsBatch(series("a", WORKED_EXAMPLE.slice(0, 3))));
  await until("the readings' write", () => h.store.batches.length === 1);
  await settle();
  assert.equal(h.store.batches.length, 1, "the alerts wait for the readings");
  assert.equal(h.store.alerts.size, 0);
  readingsWritten.resolve();
  await delivering;
  assert.deepEqual(h.store.batches.map((b) => [b.readings.length, b.alerts.length]), [[3, 0], [
    0,
    1,
  ]]);
  assert.equal(h.store.alerts.size, 1);
});

Deno.test("ProcessorSupervisor.checkpoint() called during another one waits for it and takes a fresh snapshot", async () => {
  await using h = harness();
  const batch = readingsBatch(series("a", [20]));
  await h.deliver(batch);
  const stored = Promise.withResolvers<void>();
  h.store.gates.push(stored.promise);
  const first = h.supervisor.checkpoint();
  await settle();
  h.source.offsets.set(3, "1000");
  const second = h.supervisor.checkpoint();
  await settle();
  assert.deepEqual(h.store.events, [], "the second one waits for the first");

  stored.resolve();
  await Promise.all([first, second]);
  assert.deepEqual(h.store.events, [
    "stored a@1",
    `commit 0:${offsetAfter(batch)}`,
    "commit 3:1000",
  ]);
  assert.equal(h.supervisor.stats.checkpoints, 2);
});

Deno.test("ProcessorSupervisor.checkpoint() rejects when the states cannot be stored, commits nothing, and the next one stores them", async () => {
  await using h = harness();
  const first = readingsBatch([...series("a", [81, 82]), ...series("b", [20])]);
  await h.deliver(first);
  const outage = new Error("Store write failed: not primary");
  h.store.failDeviceWrites = outage;
  await assert.rejects(h.supervisor.checkpoint(), outage);
  assert.deepEqual(h.source.commits, []);
  assert.equal(h.store.devices.size, 0);
  assert.equal(h.supervisor.stats.failedCheckpoints, 1);
  assert.equal(h.supervisor.stats.checkpoints, 0);
  assert.equal(h.supervisor.stats.pendingStates, 2, "the states were put back");

  // A newer state of a arrives before the retry: it replaces the one that failed.
  h.store.failDeviceWrites = undefined;
  const second = readingsBatch(series("a", [83, 84], 3));
  await h.deliver(second);
  await h.supervisor.checkpoint();
  assert.deepEqual(statesOf(h.store.batches.at(-1)), ["a@4", "b@1"]);
  assert.equal(h.store.devices.get("a")?.lastSeq, 4);
  assert.deepEqual(h.source.commits, [new Map([[0, offsetAfter(second)]])]);
  assert.equal(h.supervisor.stats.checkpoints, 1);
  assert.equal(h.supervisor.stats.failedCheckpoints, 1);
  assert.equal(h.supervisor.stats.pendingStates, 0);
});

Deno.test("ProcessorSupervisor.checkpoint() that fails keeps a state that became newer during its write", async () => {
  await using h = harness();
  await h.deliver(readingsBatch([...series("a", [81, 82]), ...series("b", [20])]));

  // A batch of a is being written when the checkpoint starts; it completes before the
  // checkpoint's write fails.
  const batchWritten = Promise.withResolvers<void>();
  const checkpointWritten = Promise.withResolvers<void>();
  // The newer batch writes its readings and its alert (one gate each), then the checkpoint.
  h.store.gates.push(batchWritten.promise, batchWritten.promise, checkpointWritten.promise);
  const newer = readingsBatch(series("a", [83, 84], 3));
  const delivering = h.deliver(newer);
  await until("the newer batch's writes", () => h.store.batches.length === 4);
  const outage = new Error("Store write failed: not primary");
  h.store.failDeviceWrites = outage;
  const failing = assert.rejects(h.supervisor.checkpoint(), outage);
  batchWritten.resolve();
  await delivering;
  assert.equal(h.supervisor.stats.pendingStates, 1, "a@4 is pending, the checkpoint holds a@2");
  checkpointWritten.resolve();
  await failing;
  assert.equal(h.supervisor.stats.pendingStates, 2);

  h.store.failDeviceWrites = undefined;
  await h.supervisor.checkpoint();
  assert.deepEqual(statesOf(h.store.batches.at(-1)), ["a@4", "b@1"]);
  assert.deepEqual(h.source.commits, [new Map([[0, offsetAfter(newer)]])]);
});

Deno.test("ProcessorSupervisor.checkpoint() rejects when the commit fails, and the next one commits", async () => {
  await using h = harness();
  const batch = readingsBatch(series("a", [81]));
  await h.deliver(batch);
  const unavailable = new Error("The coordinator is not available");
  h.source.failCommits = unavailable;
  await assert.rejects(h.supervisor.checkpoint(), unavailable);
  assert.equal(h.store.devices.get("a")?.lastSeq, 1, "the states were stored");
  assert.equal(h.supervisor.stats.pendingStates, 0);

  h.source.failCommits = undefined;
  const writes = h.store.batches.length;
  await h.supervisor.checkpoint();
  assert.equal(h.store.batches.length, writes, "stored states are not written again");
  assert.deepEqual(h.source.commits, [
    new Map([[0, offsetAfter(batch)]]),
    new Map([[0, offsetAfter(batch)]]),
  ]);
  assert.deepEqual(h.source.processed(), new Map());
});

/** A harness whose store holds the state after `checkpointed`, which it has handled `unsaved` since. */
async function afterCheckpoint(checkpointed: RecordBatch, unsaved: RecordBatch): Promise<Harness> {
  const h = harness();
  await h.deliver(checkpointed);
  await h.supervisor.checkpoint();
  await h.deliver(unsaved);
  return h;
}

Deno.test("ProcessorSupervisor restores a device discarded after a failed batch from its unsaved state", async () => {
  const all = series("a", WORKED_EXAMPLE);
  const early = readingsBatch(all.slice(0, 2)); // checkpointed: the store holds a@2
  const middle = readingsBatch(all.slice(2, 5)); // a@5, not checkpointed
  const last = readingsBatch(all.slice(5));

  await using clean = await afterCheckpoint(early, middle);
  await clean.deliver(last);

  await using flaky = await afterCheckpoint(early, middle);
  const outage = new Error("Store write failed: not primary");
  flaky.store.failWrites = outage;
  await assert.rejects(flaky.supervisor.handleBatch(last, LIVE), outage);
  assert.equal(flaky.supervisor.stats.activeDevices, 0, "the device was discarded");
  assert.equal(flaky.supervisor.stats.pendingStates, 1, "its last good state is kept");
  assert.equal(flaky.store.devices.get("a")?.lastSeq, 2, "the store is behind it");

  flaky.store.failWrites = undefined;
  await flaky.deliver(last);
  assert.deepEqual(flaky.store.loads.flat(), ["a"], "the older stored state was not loaded");
  assert.deepEqual(flaky.store.batches.at(-1), clean.store.batches.at(-1));
  assert.equal(flaky.supervisor.stats.duplicates, 0);

  await clean.supervisor.checkpoint();
  await flaky.supervisor.checkpoint();
  assert.deepEqual(flaky.store.snapshot(), clean.store.snapshot());
  assert.deepEqual(criticalOf(flaky.store, "a"), [
    false,
    false,
    true,
    true,
    true,
    true,
    true,
    false,
    false,
    true,
  ]);
  assert.deepEqual(flaky.source.commits.at(-1), new Map([[0, offsetAfter(last)]]));
});

Deno.test("ProcessorSupervisor restores a device discarded during a checkpoint from the state that checkpoint is writing", async () => {
  const all = series("a", WORKED_EXAMPLE);
  const early = readingsBatch(all.slice(0, 2)); // checkpointed: the store holds a@2
  const middle = readingsBatch(all.slice(2, 6)); // a@6, held by the checkpoint in flight
  const last = readingsBatch(all.slice(6));

  await using clean = await afterCheckpoint(early, middle);
  await clean.deliver(last);

  await using flaky = await afterCheckpoint(early, middle);
  // The store hangs: the next checkpoint takes a@6 and waits on its write...
  const checkpointWritten = Promise.withResolvers<void>();
  flaky.store.gates.push(checkpointWritten.promise);
  const writes = flaky.store.batches.length;
  const checkpoint = flaky.supervisor.checkpoint();
  await until("the checkpoint's write", () => flaky.store.batches.length === writes + 1);
  // ...while a batch of the same device fails, so the device is discarded and restored.
  const outage = new Error("Store write failed: not primary");
  flaky.store.failWrites = outage;
  await assert.rejects(flaky.supervisor.handleBatch(last, LIVE), outage);
  flaky.store.failWrites = undefined;
  await flaky.deliver(last);
  const loads = flaky.store.loads.flat();
  checkpointWritten.resolve();
  await checkpoint;
  assert.deepEqual(loads, ["a"], "the older stored a@2 was not loaded");

  await clean.supervisor.checkpoint();
  await flaky.supervisor.checkpoint();
  assert.deepEqual(criticalOf(flaky.store, "a"), criticalOf(clean.store, "a"));
  assert.deepEqual(flaky.store.snapshot(), clean.store.snapshot());
});

Deno.test("ProcessorSupervisor.checkpoint() does nothing without an attached source", async () => {
  await using h = harness({ attach: false });
  await h.deliver(readingsBatch(series("a", [81])));
  await h.supervisor.checkpoint();
  assert.equal(h.store.devices.size, 0);
  assert.deepEqual(h.store.batches.map((b) => b.devices), [[]]);
  assert.equal(h.supervisor.stats.checkpoints, 0);
  assert.equal(h.supervisor.stats.pendingStates, 1);
});

Deno.test("ProcessorSupervisor.attach() checkpoints periodically and stop() ends it", async () => {
  const h = harness({ checkpointMs: 5 });
  try {
    const batch = readingsBatch(series("a", [81]));
    await h.deliver(batch);
    await h.tick(4);
    assert.deepEqual(h.source.commits, [], "not due yet");
    await h.tick(1);
    await until("a commit", () => h.source.commits.length > 0);
    assert.equal(h.store.devices.get("a")?.lastSeq, 1);
    assert.deepEqual(h.source.commits, [new Map([[0, offsetAfter(batch)]])]);
    assert.deepEqual(h.store.events, ["stored a@1", `commit 0:${offsetAfter(batch)}`]);
  } finally {
    await h.supervisor.stop();
  }
  const checkpoints = h.supervisor.stats.checkpoints;
  assert.equal(h.timers.pending, 0, "stop() cancelled the checkpoint and sweep timers");
  await h.tick(30);
  assert.equal(h.supervisor.stats.checkpoints, checkpoints, "no checkpoint after stop()");
  await h.supervisor.checkpoint();
  assert.equal(h.supervisor.stats.checkpoints, checkpoints, "detached by stop()");
});

Deno.test("ProcessorSupervisor.attach() spaces slow checkpoints so they take at most a quarter of the time", async () => {
  const h = harness({ checkpointMs: 5 });
  try {
    await h.deliver(readingsBatch(series("a", [81])));
    // The checkpoint's device write (the next store write) takes 60 ms.
    const written = Promise.withResolvers<void>();
    h.store.gates.push(written.promise);
    await h.tick(5);
    await until("the checkpoint's write", () => h.store.batches.length === 2);
    h.clock.advance(60);
    written.resolve();
    await until("the first checkpoint", () => h.supervisor.stats.checkpoints === 1);
    // Every 5 ms would mean about 20 more by now; spaced, the next is due 180 ms after this one.
    await h.tick(100);
    assert.equal(h.supervisor.stats.checkpoints, 1);
    await h.tick(80);
    await until("the second checkpoint", () => h.supervisor.stats.checkpoints === 2);
  } finally {
    await h.supervisor.stop();
  }
});

Deno.test({
  name:
    "ProcessorSupervisor.attach() retries a failed periodic checkpoint without an unhandled rejection",
  fn: async () => {
    const h = harness({ checkpointMs: 5 });
    try {
      h.store.failDeviceWrites = new Error("Store write failed: not primary");
      const batch = readingsBatch(series("a", [81]));
      await h.deliver(batch);
      await h.tick(5);
      await until("a failed checkpoint", () => h.supervisor.stats.failedCheckpoints === 1);
      await h.tick(5); // a failed checkpoint is retried after the period, not spaced out
      await until("the checkpoint retried", () => h.supervisor.stats.failedCheckpoints > 1);
      assert.deepEqual(h.source.commits, []);
      assert.equal(h.supervisor.stats.pendingStates, 1);

      h.store.failDeviceWrites = undefined;
      await h.tick(5);
      await until("a commit", () => h.source.commits.length > 0);
      assert.equal(h.store.devices.get("a")?.lastSeq, 1);
      assert.deepEqual(h.source.commits, [new Map([[0, offsetAfter(batch)]])]);
    } finally {
      await h.supervisor.stop();
    }
  },
});

Deno.test({
  name:
    "ProcessorSupervisor.checkpoint() that fails during a rebalance does not bring back the states of lost partitions",
  fn: async () => {
    await using h = harness();
    await h.deliver(readingsBatch(series("a", [81]), 0));
    await h.deliver(readingsBatch(series("b", [81]), 1));
    const written = Promise.withResolvers<void>();
    h.store.gates.push(written.promise);
    const outage = new Error("Store write failed: not primary");
    h.store.failDeviceWrites = outage;
    const failing = assert.rejects(h.supervisor.checkpoint(), outage);
    await settle();
    await h.supervisor.onAssignment([0]);
    written.resolve();
    await failing;
    assert.equal(h.supervisor.stats.pendingStates, 1, "only a's state is pending");

    // Partition 1 is back after its other owner stored b@5 (this member's writes kept failing).
    h.store.devices.set(
      "b",
      toDeviceDoc("b", { ...INITIAL_ALARM_STATE, lastSeq: 5 }, DEFAULT_RULE, new Date()),
    );
    await h.supervisor.onAssignment([0, 1]);
    await h.deliver(readingsBatch(series("b", [90], 6), 1));
    // Resumed from b@1 (hot streak 1), reading 6 would be critical.
    assert.deepEqual(criticalOf(h.store, "b"), [false, false], "b resumed from the store");
    h.store.failDeviceWrites = undefined;
    await h.supervisor.checkpoint();
    assert.deepEqual(statesOf(h.store.batches.at(-1)), ["a@1", "b@6"]);
  },
});

Deno.test({
  name:
    "ProcessorSupervisor leaves no state behind for a batch whose partition was lost during its write",
  fn: async () => {
    await using h = harness();
    let stale = false;
    const ctx: BatchContext = { heartbeat: () => Promise.resolve(), isStale: () => stale };
    const written = Promise.withResolvers<void>();
    h.store.gates.push(written.promise);
    const handling = h.deliver(readingsBatch(series("b", [81]), 1), ctx);
    await until("the batch's write", () => h.store.batches.length === 1);
    stale = true; // what the source reports once the group rebalanced
    await h.supervisor.onAssignment([0]);
    written.resolve();
    await handling;
    assert.equal(h.supervisor.stats.activeDevices, 0);
    assert.equal(h.supervisor.stats.pendingStates, 0, "b's partition is no longer ours");
    await h.supervisor.checkpoint();
    assert.equal(h.store.devices.has("b"), false);
  },
});

Deno.test("ProcessorSupervisor.stop() waits for a checkpoint in progress", async () => {
  await using h = harness();
  const batch = readingsBatch(series("a", [81]));
  await h.deliver(batch);
  const stored = Promise.withResolvers<void>();
  h.store.gates.push(stored.promise);
  const checkpoint = h.supervisor.checkpoint();
  await settle(); // its write is in flight
  assert.equal(h.store.batches.length, 2);
  let stopped = false;
  const stopping = h.supervisor.stop().then(() => (stopped = true));
  await settle();
  assert.equal(stopped, false);
  stored.resolve();
  await stopping;
  await checkpoint;
  assert.deepEqual(h.store.events, ["stored a@1", `commit 0:${offsetAfter(batch)}`]);
});

Deno.test("ProcessorSupervisor reports stored raises, critical devices of owned partitions and out-of-order readings", async () => {
  const raises: [string, number][] = [];
  await using h = harness({ onRaiseStored: (ts, at) => raises.push([ts, at]) });
  await h.supervisor.onAssignment([0, 1]);
  await h.deliver(readingsBatch(series("hot", WORKED_EXAMPLE), 0));
  const at = h.clock.now();
  assert.deepEqual(raises, [[reading("hot", 3, 0).ts, at], [reading("hot", 10, 0).ts, at]]);
  assert.equal(h.supervisor.stats.criticalDevices, 1, "hot ends in its second episode");

  // seq 2 carries a ts an hour before seq 1's.
  const late = { ...reading("cold", 2, 20), ts: new Date(BASE_MS - 3_600_000).toISOString() };
  await h.deliver(readingsBatch([reading("cold", 1, 20), late], 1));
  assert.equal(h.supervisor.stats.outOfOrder, 1);
  assert.equal(h.supervisor.stats.criticalDevices, 1);

  await h.supervisor.onAssignment([1]);
  assert.equal(h.supervisor.stats.criticalDevices, 0, "partition 0 moved to another member");
});

Deno.test("ProcessorSupervisor shows onProcessed each batch's outputs only once they are stored", async () => {
  const seen: DeviceOutput[][] = [];
  await using h = harness({ onProcessed: (outputs) => seen.push([...outputs]) });
  h.store.failWrites = new Error("store down");
  await assert.rejects(h.deliver(readingsBatch(series("a", [70, 81]))), /store down/);
  assert.equal(seen.length, 0, "nothing shown for a batch that was not stored");
  h.store.failWrites = undefined;
  await h.deliver(readingsBatch(series("a", [70, 81, 82])));
  assert.equal(seen.length, 1);
  const [out] = seen[0]!;
  assert.deepEqual(out!.readings.map((r) => [r.seq, r.is_critical]), [[1, false], [2, false], [
    3,
    true,
  ]]);
  assert.deepEqual(out!.transitions.map((t) => [t.type, t.seq]), [["raised", 3]]);
  assert.ok(out!.readings.every((r) => h.store.readings.has(r._id)), "stored before shown");
});

/**
 * A supervisor on a real store, as the embedded app runs it. Its timers are the
 * runtime's, far apart: no checkpoint or sweep runs unless the test calls it.
 */
function kvSupervisor(store: KvStore, rollForward: boolean) {
  return new ProcessorSupervisor({
    store,
    writer: new StoreWriter(store),
    deadLetters: new RecordingDeadLetters(),
    rule: DEFAULT_RULE,
    passivateAfterMs: 60_000,
    checkpointMs: 60_000,
    rollForward,
    logger: silentLogger,
  });
}

/** Alerts of a device, without what differs between runs. */
async function alertsOf(store: KvStore, deviceId: string) {
  const alerts = await store.alerts({ deviceId, limit: 100 });
  return alerts.sort((a, b) => a.raisedSeq - b.raisedSeq);
}

async function criticalInKv(store: KvStore, deviceId: string): Promise<boolean[]> {
  return (await store.readings(deviceId, 100)).sort((a, b) => a.seq - b.seq).map((r) =>
    r.is_critical
  );
}

for (const crash of ["after the alerts", "between the readings and their alerts"] as const) {
  Deno.test(`ProcessorSupervisor rolls a restored device forward over readings stored after its checkpoint (crash ${crash})`, async () => {
    // Normal until 5 (checkpointed), raised at 7 by readings stored after it, then 11 between thresholds.
    const temps = [70, 71, 72, 73, 74, 85, 86, 87, 88, 89, 75];
    const all = series("d1", temps);
    const expected = replay(all, DEFAULT_RULE);
    await using fresh = await KvStore.open(":memory:");
    {
      // The uninterrupted run.
      await using uninterrupted = kvSupervisor(fresh, true);
      await uninterrupted.handleBatch(readingsBatch(all), LIVE);
    }

    await using store = await KvStore.open(":memory:");
    await using first = kvSupervisor(store, true);
    const firstSource = new FakeSource([]);
    first.attach(firstSource);
    const checkpointed = readingsBatch(all.slice(0, 5));
    await first.handleBatch(checkpointed, LIVE);
    firstSource.markProcessed(checkpointed);
    await first.checkpoint();
    if (crash === "after the alerts") {
      await first.handleBatch(readingsBatch(all.slice(5, 10)), LIVE);
    } else {
      // The readings' commit made it, the alerts' did not.
      const flags = expected.critical.slice(5, 10);
      const docs = all.slice(5, 10).map((r, i) => toReadingDoc(r, flags[i]!, new Date(BASE_MS)));
      await store.write({ readings: docs, alerts: [], devices: [] });
    }
    assert.equal((await store.device("d1"))?.lastSeq, 5, "the crash lost the state after 5");
    // kill -9: the first supervisor's memory is gone; a fresh one starts on the same store.
    await using restarted = kvSupervisor(store, true);
    await restarted.handleBatch(readingsBatch(all.slice(10)), LIVE);

    assert.deepEqual(await criticalInKv(store, "d1"), expected.critical);
    assert.deepEqual(await criticalInKv(fresh, "d1"), expected.critical);
    assert.deepEqual(await alertsOf(store, "d1"), await alertsOf(fresh, "d1"));
    assert.equal((await alertsOf(store, "d1")).length, 1, "the alert raised at 7");
    assert.deepEqual(await restarted.state("d1"), expected.state);
    const stats = restarted.stats;
    assert.deepEqual(
      [stats.readings, stats.rolledForward, stats.duplicates, stats.conflicts, stats.late],
      [1, 5, 0, 0, 0],
    );
    assert.equal(stats.alertsRaised, 0, "the raise at 7 was derived again, not raised anew");
  });
}

Deno.test("ProcessorSupervisor without rollForward resumes from the checkpoint alone (a source that replays)", async () => {
  const all = series("d1", [70, 71, 72, 73, 74, 85, 86, 87, 88, 89, 75]);
  await using store = await KvStore.open(":memory:");
  await using first = kvSupervisor(store, false);
  const source = new FakeSource([]);
  first.attach(source);
  const checkpointed = readingsBatch(all.slice(0, 5));
  await first.handleBatch(checkpointed, LIVE);
  source.markProcessed(checkpointed);
  await first.checkpoint();
  await first.handleBatch(readingsBatch(all.slice(5, 10)), LIVE);
  await using restarted = kvSupervisor(store, false);
  await restarted.handleBatch(readingsBatch(all.slice(10)), LIVE);
  assert.equal((await restarted.state("d1"))?.level, "normal", "readings 6-10 were not applied");
  assert.equal(restarted.stats.rolledForward, 0);
});

/**
 * Hands `batch` on as the Kafka source does; answers its `stored` (an object: an async function
 * would wait for it), which marks it processed.
 */
async function handOn(h: Harness, batch: RecordBatch): Promise<{ stored: Promise<void> }> {
  const handed = await h.supervisor.handleBatch(batch, HAND_ON);
  assert.ok(handed, "handed on");
  const stored = handed.stored.then(() => h.source.markProcessed(batch));
  stored.catch(() => {});
  return { stored };
}

Deno.test("ProcessorSupervisor hands a batch on before it is stored, and counts a partition's batches stored only in order", async () => {
  const store = new MemoryStore();
  store.readingWrites = 2;
  await using h = harness({ store });
  const first = readingsBatch(series("a", [70, 71]));
  const second = readingsBatch(series("a", [72, 73], 3));
  const firstWritten = Promise.withResolvers<void>();
  const secondWritten = Promise.withResolvers<void>();
  store.gates.push(firstWritten.promise, secondWritten.promise);

  const { stored: firstStored } = await handOn(h, first);
  const handing = h.supervisor.handleBatch(second, HAND_ON);
  await until("both writes in flight", () => store.batches.length === 2);
  // The second batch's write is acknowledged first: it must not count before the first's.
  secondWritten.resolve();
  await settle();
  assert.equal(store.readings.size, 2, "the second batch's readings are stored");
  assert.equal(h.supervisor.stats.pendingStates, 0, "no state covers an unstored reading");
  await h.supervisor.checkpoint();
  assert.deepEqual(store.events, [], "no state stored and no offset committed");

  firstWritten.resolve();
  const handed = await handing;
  assert.ok(handed);
  await firstStored;
  await handed.stored;
  h.source.markProcessed(second);
  await h.supervisor.checkpoint();
  assert.deepEqual(store.events, ["stored a@4", `commit 0:${offsetAfter(second)}`]);
  assert.equal(h.supervisor.stats.readings, 4);
});

Deno.test("ProcessorSupervisor rejects every batch of a partition after a handed-on one that was not stored, and the partition read again stores what an uninterrupted run does", async () => {
  const all = [...series("a", WORKED_EXAMPLE), ...series("b", [81, 82, 83, 84, 85, 86])];
  const byDevice = (from: number, to: number) =>
    readingsBatch([...all.slice(from, to), ...all.slice(10 + from / 2, 10 + to / 2)]);
  const batches = [byDevice(0, 4), byDevice(4, 8), byDevice(8, 10)];

  await using clean = harness();
  for (const batch of batches) await clean.deliver(batch);
  await clean.supervisor.checkpoint();

  const store = new MemoryStore();
  store.readingWrites = 2;
  await using flaky = harness({ store });
  await (await handOn(flaky, batches[0]!)).stored;
  const outage = new Error("Store write failed: not primary");
  const failing = Promise.withResolvers<void>();
  store.before = async (batch) => {
    if (!batch.readings.some((r) => r._id === "a:5")) return;
    await failing.promise;
    throw outage;
  };
  const { stored: secondStored } = await handOn(flaky, batches[1]!);
  const handingThird = handOn(flaky, batches[2]!);
  await until("the third batch's readings are stored", () => store.readings.has("a:10"));
  failing.resolve();
  await assert.rejects(secondStored, outage);
  await assert.rejects(
    (await handingThird).stored,
    /not stored: an earlier batch of it was not stored/,
  );
  assert.equal(flaky.supervisor.stats.failedBatches, 1);
  await flaky.supervisor.checkpoint();
  assert.deepEqual(statesOf(store.batches.at(-1)), ["a@4", "b@2"], "only the stored batch's");
  assert.deepEqual(flaky.source.commits, [new Map([[0, offsetAfter(batches[0]!)]])]);

  // The source reads the partition again from the batch that was not stored.
  await flaky.supervisor.rewind(0);
  assert.equal(flaky.supervisor.stats.activeDevices, 0, "its devices start again");
  store.before = undefined;
  const again = [await handOn(flaky, batches[1]!), await handOn(flaky, batches[2]!)];
  await Promise.all(again.map((a) => a.stored));
  await flaky.supervisor.checkpoint();
  assert.deepEqual(store.snapshot(), clean.store.snapshot());
  assert.equal(flaky.supervisor.stats.deadLettered, 0, "nothing refused as late or conflicting");
  assert.equal(flaky.supervisor.stats.alertsRaised, clean.supervisor.stats.alertsRaised);
  assert.deepEqual(flaky.source.commits.at(-1), new Map([[0, offsetAfter(batches[2]!)]]));
});

Deno.test("ProcessorSupervisor restores a device read again after a rebalance from the unsaved state a checkpoint stores meanwhile", async () => {
  // The chaos `rebalance` flaw: a rebalance that kept the partition discarded the device (a batch of
  // it was handed on), and while that batch, read again, looked up the store, a checkpoint stored
  // the device's unsaved state and forgot it. The device then started from nothing: its open
  // episode was never cleared and the readings after it were flagged normal.
  const store = new MemoryStore();
  await using h = harness({ store });
  await h.deliver(readingsBatch(series("a", [70, 81, 85])));
  assert.equal(h.supervisor.stats.alertsRaised, 1);
  const next = readingsBatch(series("a", [79], 4));
  const after = readingsBatch(series("a", [75, 69, 65], 5));
  const written = Promise.withResolvers<void>();
  store.gates.push(written.promise);
  const { stored } = await handOn(h, next);
  await h.supervisor.onAssignment([0]);
  written.resolve();
  await assert.rejects(stored, /being read again/);
  let checkpointed = false;
  store.beforeLoad = async () => {
    store.beforeLoad = undefined;
    await h.supervisor.checkpoint();
    checkpointed = true;
  };
  await (await handOn(h, next)).stored;
  assert.ok(checkpointed, "the checkpoint ran during the lookup");
  assert.equal(store.events[0], "stored a@3");
  await (await handOn(h, after)).stored;
  const readings = [...store.readings.values()].sort((x, y) => x.seq - y.seq);
  const expected = replay(readings.map((r) => ({ ...r, ts: r.ts.toISOString() })), DEFAULT_RULE);
  assert.deepEqual(criticalOf(store, "a"), expected.critical);
  assert.deepEqual(criticalOf(store, "a"), [
    false,
    false,
    true,
    true,
    true,
    true,
    false,
  ]);
  const alerts = [...store.alerts.values()];
  assert.deepEqual(alerts.map((a) => [a.raisedSeq, a.status, a.clearedSeq]), [[3, "cleared", 7]]);
});

Deno.test("ProcessorSupervisor: a batch whose handling began before a rebalance that kept its partition neither replaces the device's processor nor its newer state", async () => {
  // kafkajs may still be handling a batch fetched before the rebalance while the partition is read
  // again from the committed offset: both batches then restore the same new device.
  const store = new MemoryStore();
  store.readingWrites = 2;
  await using h = harness({ store });
  await h.deliver(readingsBatch(series("a", [70])));
  await h.supervisor.checkpoint();
  const tailWritten = Promise.withResolvers<void>();
  store.gates.push(tailWritten.promise);
  const tail = await handOn(h, readingsBatch(series("a", [71], 2)));
  const lookup = Promise.withResolvers<void>();
  const lookupsBefore = store.loads.length;
  store.beforeLoad = () => {
    store.beforeLoad = undefined;
    return lookup.promise;
  };
  const early = readingsBatch(series("b", [81, 82]));
  const handingEarly = h.supervisor.handleBatch(early, HAND_ON);
  await until("the early batch looks b up", () => store.loads.length > lookupsBefore);
  await h.supervisor.onAssignment([0]);
  tailWritten.resolve();
  await assert.rejects(tail.stored, /being read again/);
  // Read again from the committed offset, past where the early batch ends.
  const again = readingsBatch([...series("a", [71], 2), ...series("b", [81, 82, 60])]);
  await (await handOn(h, again)).stored;
  h.source.markProcessed(again);
  lookup.resolve();
  const handed = await handingEarly;
  await handed?.stored.catch(() => {});
  await h.supervisor.checkpoint();
  assert.equal(store.devices.get("b")?.lastSeq, 3, "b's stored state covers what was committed");
  assert.equal((await h.supervisor.state("b"))?.lastSeq, 3, "b's processor is the newer one");
});

Deno.test("ProcessorSupervisor adds nothing for a batch handed on before a rebalance that keeps its partition", async () => {
  await using h = harness();
  const first = readingsBatch(series("a", [70, 71]));
  const written = Promise.withResolvers<void>();
  h.store.gates.push(written.promise);
  const { stored } = await handOn(h, first);
  await h.supervisor.onAssignment([0]);
  assert.equal(h.supervisor.stats.activeDevices, 0, "its devices start again");
  written.resolve();
  await assert.rejects(stored, /not stored: the partition is being read again/);
  await h.supervisor.checkpoint();
  assert.equal(h.supervisor.stats.pendingStates, 0);
  assert.deepEqual(h.store.events, [], "the batch is read again from the committed offset");
  // Read again, it is stored once, as if handled once.
  await (await handOn(h, first)).stored;
  await h.supervisor.checkpoint();
  assert.deepEqual(h.store.events, ["stored a@2", `commit 0:${offsetAfter(first)}`]);
  assert.equal(h.store.readings.size, 2);
});

Deno.test("ProcessorSupervisor: a batch whose lookup spans an assignment adds nothing, and leaves no device ahead of the store", async () => {
  // A source may go on handling a batch fetched before a rebalance (kafkajs waits for it instead:
  // this guards the port); the member reads the partition again from the committed offset. Had
  // the early batch applied a's readings after the assignment and then failed to store them, a
  // would have stayed ahead: read again, its readings would have been skipped as applied and
  // dead-lettered as late, never stored.
  const store = new MemoryStore();
  await using h = harness({ store });
  await h.deliver(readingsBatch(series("a", [70])));
  await h.supervisor.checkpoint();
  const lookup = Promise.withResolvers<void>();
  store.beforeLoad = () => {
    store.beforeLoad = undefined;
    return lookup.promise;
  };
  const early = readingsBatch([...series("a", [71, 72], 2), ...series("b", [60])]);
  const handingEarly = h.supervisor.handleBatch(early, HAND_ON);
  await until("the early batch looks b up", () => store.loads.length === 1);
  await h.supervisor.onAssignment([0]);
  const outage = new Error("Store write failed: not primary");
  store.before = (batch) =>
    batch.readings.some((r) => r._id === "a:2") ? Promise.reject(outage) : Promise.resolve();
  lookup.resolve();
  const handed = await handingEarly;
  await handed?.stored.catch(() => {});
  store.before = undefined;

  const again = readingsBatch([...series("a", [71, 72, 73], 2), ...series("b", [60])]);
  await (await handOn(h, again)).stored;
  assert.deepEqual([...store.readings.keys()].sort(), ["a:1", "a:2", "a:3", "a:4", "b:1"]);
  assert.equal(h.supervisor.stats.deadLettered, 0, "nothing refused as late");
  assert.equal((await h.supervisor.state("a"))?.lastSeq, 4);
});

Deno.test("ProcessorSupervisor: a handed-on batch not stored before an assignment leaves no device ahead of the store", async () => {
  // Its partition would have been read again from it (`rewind()`); the assignment replaces that
  // with reading again from the committed offset.
  const store = new MemoryStore();
  await using h = harness({ store });
  await h.deliver(readingsBatch(series("a", [70])));
  await h.supervisor.checkpoint();
  const failed = readingsBatch(series("a", [71, 72], 2));
  store.failReadingWrites = new Error("Store write failed: not primary");
  await assert.rejects((await handOn(h, failed)).stored, store.failReadingWrites);
  store.failReadingWrites = undefined;
  await h.supervisor.onAssignment([0]);

  await (await handOn(h, failed)).stored;
  assert.deepEqual([...store.readings.keys()].sort(), ["a:1", "a:2", "a:3"]);
  assert.equal(h.supervisor.stats.deadLettered, 0, "nothing refused as late");
});

Deno.test("ProcessorSupervisor does not passivate a device its batch found while it looks others up", async () => {
  const store = new MemoryStore();
  await using h = harness({ store, passivateAfterMs: 60_000 });
  await h.deliver(readingsBatch(series("a", [70])));
  h.clock.advance(60_001);
  const lookup = Promise.withResolvers<void>();
  store.beforeLoad = () => {
    store.beforeLoad = undefined;
    return lookup.promise;
  };
  const handling = h.deliver(readingsBatch([...series("a", [71], 2), ...series("b", [60])]));
  await until("the batch looks b up", () => store.loads.length === 1);
  assert.equal(await h.supervisor.passivateIdle(), 0, "a is in use");
  lookup.resolve();
  await handling;
  assert.equal((await h.supervisor.state("a"))?.lastSeq, 2);
  assert.equal(h.supervisor.stats.failedBatches, 0);
});
