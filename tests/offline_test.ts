import assert from "node:assert/strict";
import fc from "fast-check";
import {
  defaultOfflineAfterMs,
  INITIAL_PARTITION_CLOCK,
  observeCaughtUp,
  observeEvent,
  OFFLINE_AFTER_RANGE,
  offlineGap,
  openEpisode,
  type PartitionClock,
  watermarkOf,
} from "../domain/offline.ts";
import { numRuns } from "./fc_runs.ts";

const NUM_RUNS = numRuns(200);
const BASE_MS = Date.UTC(2026, 10, 30, 12);

function at(ms: number): string {
  return new Date(BASE_MS + ms).toISOString();
}

Deno.test("defaultOfflineAfterMs() is three intervals, within the setting's range", () => {
  assert.equal(defaultOfflineAfterMs(3000), 9000);
  assert.equal(defaultOfflineAfterMs(5), OFFLINE_AFTER_RANGE.min);
  assert.equal(defaultOfflineAfterMs(3_600_000 * 100), OFFLINE_AFTER_RANGE.max);
});

Deno.test("offlineGap() finds an episode only for a silence longer than offlineAfterMs", () => {
  const prev = { seq: 7, ts: at(0) };
  const cases: [string, number, boolean][] = [
    ["the next reading on time", 3000, false],
    ["exactly offlineAfterMs later", 9000, false],
    ["one millisecond past it", 9001, true],
    ["a minute later", 60_000, true],
    ["a reading stamped earlier (out of order)", -5000, false],
  ];
  for (const [name, gapMs, expected] of cases) {
    const episode = offlineGap(prev, { seq: 8, ts: at(gapMs) }, 9000);
    assert.equal(episode !== null, expected, name);
  }
  assert.equal(offlineGap(null, { seq: 1, ts: at(0) }, 9000), null, "a first reading");
});

Deno.test("offlineGap() dates the episode from event time: last reading + offlineAfterMs", () => {
  const episode = offlineGap({ seq: 7, ts: at(0) }, { seq: 9, ts: at(60_000) }, 9000);
  assert.deepEqual(episode, {
    raisedSeq: 7,
    raisedAt: at(9000),
    lastSeenAt: at(0),
    offlineAfterMs: 9000,
    cleared: { seq: 9, ts: at(60_000) },
  });
});

Deno.test("openEpisode() opens once the watermark reaches the offline moment", () => {
  const last = { seq: 3, ts: at(0) };
  assert.equal(openEpisode(last, 9000, BASE_MS + 8999), null);
  assert.deepEqual(openEpisode(last, 9000, BASE_MS + 9000), {
    raisedSeq: 3,
    raisedAt: at(9000),
    lastSeenAt: at(0),
    offlineAfterMs: 9000,
  });
  assert.equal(openEpisode(last, 9000, -Infinity), null, "nothing known of the partition");
});

Deno.test("watermarkOf() follows the latest event, and elapsed time while caught up, minus the grace", () => {
  let clock: PartitionClock = INITIAL_PARTITION_CLOCK;
  assert.equal(watermarkOf(clock, 2000), -Infinity);
  assert.equal(watermarkOf(observeCaughtUp(clock, BASE_MS), 2000), -Infinity, "no event yet");
  // Sensors' clocks an hour behind the processors': only differences of time count.
  const skew = 3_600_000;
  clock = observeEvent(clock, BASE_MS + 10_000, BASE_MS + skew + 10_000);
  assert.equal(watermarkOf(clock, 2000), BASE_MS + 8000);
  clock = observeEvent(clock, BASE_MS + 5000, BASE_MS + skew + 11_000);
  assert.equal(watermarkOf(clock, 2000), BASE_MS + 8000, "an older event does not move it back");
  clock = observeCaughtUp(clock, BASE_MS + skew + 30_000);
  assert.equal(watermarkOf(clock, 2000), BASE_MS + 28_000, "20 s idle since the latest event");
  clock = observeCaughtUp(clock, BASE_MS + skew + 20_000);
  assert.equal(watermarkOf(clock, 2000), BASE_MS + 28_000, "nor does an older caught-up time");
  clock = observeEvent(clock, BASE_MS + 12_000, BASE_MS + skew + 40_000);
  assert.equal(watermarkOf(clock, 2000), BASE_MS + 28_000, "an event older than idle time reached");
  clock = observeCaughtUp(clock, BASE_MS + skew + 45_000);
  assert.equal(watermarkOf(clock, 2000), BASE_MS + 43_000, "idle again: on from where it was");
  assert.equal(observeEvent(clock, Number.NaN, BASE_MS), clock, "an unparsable ts is ignored");
});

/**
 * A partition's readings as a consumer sees them: per device, seq order; across devices,
 * readings overtake each other by less than `grace` (each arrives before `ts + grace`).
 */
const partitionArb = (grace: number, limit: number) =>
  fc.array(
    fc.array(
      fc.record({ gap: fc.integer({ min: 1, max: limit }), delay: fc.nat(grace - 1) }),
      { minLength: 1, maxLength: 30 },
    ),
    { minLength: 1, maxLength: 5 },
  ).map((devices) => {
    const arrivals: { device: number; seq: number; tsMs: number; key: number }[] = [];
    devices.forEach((steps, device) => {
      let tsMs = BASE_MS + device * 137;
      let key = -Infinity;
      steps.forEach(({ gap, delay }, i) => {
        tsMs += gap;
        // A device's own readings keep their order on the topic.
        key = Math.max(key, tsMs + delay);
        arrivals.push({ device, seq: i + 1, tsMs, key });
      });
    });
    return arrivals.sort((a, b) => a.key - b.key);
  });

Deno.test("property: consuming a backlog never opens an episode for a device that kept reporting", () => {
  const grace = 2000, limit = 9000;
  fc.assert(
    fc.property(partitionArb(grace, limit), (arrivals) => {
      // Every device reports at most `limit` after its previous reading: none is ever offline.
      let clock = INITIAL_PARTITION_CLOCK;
      const last = new Map<number, { seq: number; ts: string }>();
      for (const r of arrivals) {
        clock = observeEvent(clock, r.tsMs, r.key);
        last.set(r.device, { seq: r.seq, ts: new Date(r.tsMs).toISOString() });
        const watermark = watermarkOf(clock, grace);
        for (const [device, seen] of last) {
          const final = arrivals.filter((a) => a.device === device).at(-1)!;
          // Only a device whose readings have all arrived may be silent by now.
          if (final.seq === seen.seq) continue;
          assert.equal(openEpisode(seen, limit, watermark), null, `device ${device}`);
        }
      }
    }),
    { numRuns: NUM_RUNS },
  );
});

Deno.test("property: an episode noticed while open is the one its next reading closes", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 1e6 }),
      fc.integer({ min: OFFLINE_AFTER_RANGE.min, max: 600_000 }),
      fc.nat(600_000),
      fc.integer({ min: 1, max: 600_000 }),
      (seq, limit, late, after) => {
        const last = { seq, ts: at(0) };
        const watermark = BASE_MS + limit + late;
        const open = openEpisode(last, limit, watermark)!;
        // The next reading arrives after the watermark passed the offline moment.
        const next = { seq: seq + 1, ts: new Date(watermark + after).toISOString() };
        const closed = offlineGap(last, next, limit)!;
        const { cleared, ...rest } = closed;
        assert.deepEqual(rest, open);
        assert.deepEqual(cleared, next);
      },
    ),
    { numRuns: NUM_RUNS },
  );
});

Deno.test("property: episodes depend on the readings alone, not on how they were batched", () => {
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 1, max: 30_000 }), { minLength: 1, maxLength: 50 }),
      fc.array(fc.nat(), { maxLength: 10 }),
      (gaps, cuts) => {
        let tsMs = BASE_MS;
        const readings = gaps.map((gap, i) => ({
          seq: i + 1,
          ts: new Date(tsMs += gap).toISOString(),
        }));
        const whole = readings.flatMap((r, i) => {
          const e = offlineGap(readings[i - 1] ?? null, r, 9000);
          return e ? [e] : [];
        });
        // The same readings in batches, each batch starting from the previous batch's last one.
        const bounds = [...new Set(cuts.map((c) => c % readings.length))].sort((a, b) => a - b);
        let prev: { seq: number; ts: string } | null = null;
        const batched = [];
        for (
          const [from, to] of [0, ...bounds].map((b, i, all) => [b, all[i + 1] ?? readings.length])
        ) {
          for (const r of readings.slice(from, to)) {
            const e = offlineGap(prev, r, 9000);
            if (e) batched.push(e);
            prev = r;
          }
        }
        assert.deepEqual(batched, whole);
      },
    ),
    { numRuns: NUM_RUNS },
  );
});
