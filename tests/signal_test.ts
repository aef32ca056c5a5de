import assert from "node:assert/strict";
import fc from "fast-check";
import {
  type GeoPoint,
  initialSignal,
  nextSample,
  type Profile,
  PROFILES,
  type Sample,
  type SignalOptions,
  type SignalState,
} from "../domain/signal.ts";
import { numRuns } from "./fc_runs.ts";

const NUM_RUNS = numRuns(100);

const RANDOM_PROFILES: readonly Profile[] = ["normal", "overheat", "flapping", "mobile"];
const HERE: GeoPoint = { lat: 52.520008, lon: 13.404954 };

const seedArb = fc.integer({ min: 0, max: 0xffffffff });
const locationArb = fc.record({
  lat: fc.double({ min: -90, max: 90, noNaN: true }),
  lon: fc.double({ min: -180, max: 180, noNaN: true }),
});
const intervalArb = fc.integer({ min: 100, max: 600_000 });
const randomProfileArb = fc.constantFrom(...RANDOM_PROFILES);

function options(
  profile: Profile,
  seed: number,
  extra: Partial<SignalOptions> = {},
): SignalOptions {
  return { profile, seed, location: HERE, intervalMs: 3000, ...extra };
}

/** Up to `count` samples; fewer if the signal ends. */
function take(state: SignalState, count: number): { state: SignalState; samples: Sample[] } {
  const samples: Sample[] = [];
  for (let i = 0; i < count; i++) {
    const next = nextSample(state);
    if (next === null) break;
    state = next.state;
    samples.push(next.sample);
  }
  return { state, samples };
}

function samplesOf(options: SignalOptions, count: number): Sample[] {
  return take(initialSignal(options), count).samples;
}

function temperaturesOf(options: SignalOptions, count: number): number[] {
  return samplesOf(options, count).map((sample) => sample.temperature);
}

/** Lengths of the runs of consecutive values that satisfy `inside`. */
function runLengths(values: readonly number[], inside: (value: number) => boolean): number[] {
  const runs: number[] = [];
  let length = 0;
  for (const value of values) {
    if (inside(value)) {
      length += 1;
    } else if (length > 0) {
      runs.push(length);
      length = 0;
    }
  }
  if (length > 0) runs.push(length);
  return runs;
}

/** Full cycles of at least 2 consecutive samples >= high followed by at least 2 <= low. */
function overheatCycles(values: readonly number[], high: number, low: number): number {
  let cycles = 0;
  let wantHot = true;
  let run = 0;
  for (const value of values) {
    run = (wantHot ? value >= high : value <= low) ? run + 1 : 0;
    if (run < 2) continue;
    if (!wantHot) cycles += 1;
    wantHot = !wantHot;
    run = 0;
  }
  return cycles;
}

function correlation(xs: readonly number[], ys: readonly number[]): number {
  const n = xs.length;
  const meanX = xs.reduce((sum, x) => sum + x, 0) / n;
  const meanY = ys.reduce((sum, y) => sum + y, 0) / n;
  let covariance = 0;
  let varianceX = 0;
  let varianceY = 0;
  for (let i = 0; i < n; i++) {
    const dx = (xs[i] ?? 0) - meanX;
    const dy = (ys[i] ?? 0) - meanY;
    covariance += dx * dy;
    varianceX += dx * dx;
    varianceY += dy * dy;
  }
  return covariance / Math.sqrt(varianceX * varianceY);
}

function haversineMetres(a: GeoPoint, b: GeoPoint): number {
  const radians = Math.PI / 180;
  const dLat = (b.lat - a.lat) * radians;
  const dLon = (b.lon - a.lon) * radians;
  const h = Math.sin(dLat / 2) ** 2 +
    Math.cos(a.lat * radians) * Math.cos(b.lat * radians) * Math.sin(dLon / 2) ** 2;
  return 2 * 6_371_008.8 * Math.asin(Math.min(1, Math.sqrt(h)));
}

function bearingDegrees(a: GeoPoint, b: GeoPoint): number {
  const radians = Math.PI / 180;
  const y = Math.sin((b.lon - a.lon) * radians) * Math.cos(b.lat * radians);
  const x = Math.cos(a.lat * radians) * Math.sin(b.lat * radians) -
    Math.sin(a.lat * radians) * Math.cos(b.lat * radians) * Math.cos((b.lon - a.lon) * radians);
  return Math.atan2(y, x) / radians;
}

function hasDecimals(value: number, decimals: number): boolean {
  const scaled = value * 10 ** decimals;
  return Math.abs(scaled - Math.round(scaled)) < 1e-6;
}

Deno.test("PROFILES lists every profile once", () => {
  assert.deepEqual([...PROFILES].sort(), ["flapping", "mobile", "normal", "overheat", "scripted"]);
});

Deno.test("nextSample() repeats the first 200 samples for the same seed and options", () => {
  fc.assert(
    fc.property(
      randomProfileArb,
      seedArb,
      locationArb,
      intervalArb,
      (profile, seed, location, intervalMs) => {
        const opts = options(profile, seed, { location, intervalMs });
        assert.deepEqual(samplesOf(opts, 200), samplesOf(opts, 200));
      },
    ),
    { numRuns: NUM_RUNS },
  );
});

Deno.test("nextSample() gives a different sequence for a different seed", () => {
  for (const profile of RANDOM_PROFILES) {
    assert.notDeepEqual(
      temperaturesOf(options(profile, 1), 200),
      temperaturesOf(options(profile, 2), 200),
      profile,
    );
    assert.notDeepEqual(
      samplesOf(options(profile, 1), 200).map((sample) => sample.location),
      samplesOf(options(profile, 2), 200).map((sample) => sample.location),
      profile,
    );
  }
});

Deno.test("nextSample() keeps every value finite, rounded and in physical range", () => {
  fc.assert(
    fc.property(
      randomProfileArb,
      seedArb,
      locationArb,
      intervalArb,
      (profile, seed, location, intervalMs) => {
        const samples = samplesOf(options(profile, seed, { location, intervalMs }), 200);
        assert.equal(samples.length, 200);
        for (const { temperature, humidity, location: { lat, lon } } of samples) {
          assert.ok(Number.isFinite(temperature) && temperature >= -20 && temperature <= 120);
          assert.ok(Number.isFinite(humidity) && humidity >= 0 && humidity <= 100);
          assert.ok(Number.isFinite(lat) && lat >= -90 && lat <= 90);
          assert.ok(Number.isFinite(lon) && lon >= -180 && lon <= 180);
          assert.ok(hasDecimals(temperature, 1) && hasDecimals(humidity, 1));
          assert.ok(hasDecimals(lat, 6) && hasDecimals(lon, 6));
        }
      },
    ),
    { numRuns: NUM_RUNS },
  );
});

Deno.test("overheat and flapping stay finite and near any band", () => {
  const bandArb = fc
    .record({ low: fc.integer({ min: -40, max: 200 }), width: fc.integer({ min: 1, max: 60 }) })
    .map(({ low, width }) => ({ low, high: low + width }));
  fc.assert(
    fc.property(
      fc.constantFrom("overheat", "flapping"),
      seedArb,
      bandArb,
      (profile, seed, band) => {
        for (const { temperature, humidity } of samplesOf(options(profile, seed, { band }), 200)) {
          assert.ok(Number.isFinite(temperature));
          // Overheat warms up from the ambient room temperature first.
          assert.ok(temperature >= Math.min(15, band.low - 3 * (band.high - band.low) - 30));
          assert.ok(temperature <= Math.max(40, band.high + 3 * (band.high - band.low) + 30));
          assert.ok(humidity >= 0 && humidity <= 100);
        }
      },
    ),
    { numRuns: NUM_RUNS },
  );
});

Deno.test("normal temperature stays within 18–35 °C near a 20–30 °C ambient", () => {
  fc.assert(
    fc.property(seedArb, intervalArb, (seed, intervalMs) => {
      const temperatures = temperaturesOf(options("normal", seed, { intervalMs }), 500);
      for (const temperature of temperatures) assert.ok(temperature >= 18 && temperature <= 35);
      // Over 500 minutes the walk has long forgotten where it started.
      const minutely = temperaturesOf(options("normal", seed, { intervalMs: 60_000 }), 500);
      const average = minutely.reduce((sum, t) => sum + t, 0) / minutely.length;
      assert.ok(average >= 19 && average <= 31, `average ${average}`);
    }),
    { numRuns: NUM_RUNS },
  );
});

Deno.test("normal humidity falls as temperature rises", () => {
  fc.assert(
    fc.property(seedArb, (seed) => {
      const samples = samplesOf(options("normal", seed), 500);
      const r = correlation(
        samples.map((sample) => sample.temperature),
        samples.map((sample) => sample.humidity),
      );
      assert.ok(r < -0.3, `correlation ${r}`);
    }),
    { numRuns: NUM_RUNS },
  );
});

Deno.test("normal position stays within a few metres of its location", () => {
  fc.assert(
    fc.property(seedArb, locationArb, (seed, location) => {
      for (const sample of samplesOf(options("normal", seed, { location }), 200)) {
        assert.ok(haversineMetres(location, sample.location) < 10);
      }
    }),
    { numRuns: NUM_RUNS },
  );
});

Deno.test("overheat rises above high and falls below low at least twice in 200 samples", () => {
  fc.assert(
    fc.property(seedArb, locationArb, (seed, location) => {
      const temperatures = temperaturesOf(options("overheat", seed, { location }), 200);
      const cycles = overheatCycles(temperatures, 80, 70);
      assert.ok(cycles >= 2, `${cycles} cycles in ${temperatures.join(" ")}`);
    }),
    { numRuns: NUM_RUNS },
  );
});

Deno.test("overheat cycles through a custom band", () => {
  const bandArb = fc
    .record({ low: fc.integer({ min: -10, max: 150 }), width: fc.integer({ min: 2, max: 30 }) })
    .map(({ low, width }) => ({ low, high: low + width }));
  fc.assert(
    fc.property(seedArb, bandArb, (seed, band) => {
      const temperatures = temperaturesOf(options("overheat", seed, { band }), 300);
      assert.ok(overheatCycles(temperatures, band.high, band.low) >= 2);
    }),
    { numRuns: NUM_RUNS },
  );
});

Deno.test("overheat holds several samples on each side of the band", () => {
  const temperatures = temperaturesOf(options("overheat", 7), 200);
  const hot = runLengths(temperatures, (t) => t >= 80);
  const cool = runLengths(temperatures, (t) => t <= 70);
  // The first cool run is the warm-up from ambient, and the last of either may be cut off.
  assert.ok(hot.length >= 3 && hot.slice(0, -1).every((length) => length >= 3), `hot runs ${hot}`);
  assert.ok(cool.slice(1, -1).every((length) => length >= 3), `cool runs ${cool}`);
});

Deno.test("flapping crosses a naive high threshold many times, mostly for one sample", () => {
  fc.assert(
    fc.property(seedArb, locationArb, (seed, location) => {
      const temperatures = temperaturesOf(options("flapping", seed, { location }), 200);
      for (
        const runs of [
          runLengths(temperatures, (t) => t >= 80),
          runLengths(temperatures, (t) => t <= 70),
        ]
      ) {
        // Each excursion flips a naive threshold twice.
        assert.ok(runs.length >= 5, `${runs.length} excursions`);
        const single = runs.filter((length) => length === 1).length;
        assert.ok(single * 3 > runs.length, `${single} of ${runs.length} excursions are single`);
      }
    }),
    { numRuns: NUM_RUNS },
  );
});

Deno.test("flapping excursions beyond the band are single samples across a fleet", () => {
  let single = 0;
  let total = 0;
  for (let seed = 1; seed <= 50; seed++) {
    const temperatures = temperaturesOf(options("flapping", seed), 200);
    for (
      const runs of [
        runLengths(temperatures, (t) => t >= 80),
        runLengths(temperatures, (t) => t <= 70),
      ]
    ) {
      single += runs.filter((length) => length === 1).length;
      total += runs.length;
    }
  }
  assert.ok(single / total > 0.75, `${single} of ${total} excursions are single`);
});

Deno.test("mobile moves every step by at most 30 m/s times the interval", () => {
  fc.assert(
    fc.property(seedArb, locationArb, intervalArb, (seed, location, intervalMs) => {
      const samples = samplesOf(options("mobile", seed, { location, intervalMs }), 200);
      let previous = location;
      for (const sample of samples) {
        const metres = haversineMetres(previous, sample.location);
        assert.ok(metres <= (30 * intervalMs) / 1000, `${metres} m in ${intervalMs} ms`);
        previous = sample.location;
      }
      assert.ok(haversineMetres(location, previous) > 0, "the position never moved");
    }),
    { numRuns: NUM_RUNS },
  );
});

Deno.test("mobile travels a plausible distance along a smooth path", () => {
  for (let seed = 1; seed <= 20; seed++) {
    const path = [HERE, ...samplesOf(options("mobile", seed), 200).map((s) => s.location)];
    let travelled = 0;
    let previousBearing: number | undefined;
    for (let i = 1; i < path.length; i++) {
      const from = path[i - 1] ?? HERE;
      const to = path[i] ?? HERE;
      const metres = haversineMetres(from, to);
      travelled += metres;
      // Below ten metres, rounding to 6 decimals makes the bearing too coarse to judge.
      if (metres < 10) {
        previousBearing = undefined;
        continue;
      }
      const bearing = bearingDegrees(from, to);
      if (previousBearing !== undefined) {
        const turn = Math.abs(((bearing - previousBearing + 540) % 360) - 180);
        assert.ok(turn < 45, `turned ${turn}° in one step`);
      }
      previousBearing = bearing;
    }
    // 200 steps of 3 s at up to 30 m/s.
    assert.ok(travelled > 1_000 && travelled <= 200 * 90, `travelled ${travelled} m`);
  }
});

Deno.test("mobile wraps longitude across the antimeridian and stays in range near the poles", () => {
  const starts = [{ lat: 0, lon: 179.9999 }, { lat: 0, lon: -179.9999 }, { lat: 89.9999, lon: 0 }];
  let crossed = 0;
  for (const location of starts) {
    for (let seed = 0; seed < 20; seed++) {
      const samples = samplesOf(options("mobile", seed, { location, intervalMs: 60_000 }), 100);
      for (const { location: { lat, lon } } of samples) {
        assert.ok(Math.abs(lat) <= 90 && Math.abs(lon) <= 180);
        if (Math.abs(location.lon) > 179 && Math.sign(lon) !== Math.sign(location.lon)) {
          crossed += 1;
        }
      }
    }
  }
  assert.ok(crossed > 0, "no path crossed the antimeridian");
});

Deno.test("scripted emits exactly the given temperatures at a fixed location, then null", () => {
  const temperatures = [21.234, -5, 80.05, 1e-7, 79.99];
  const state = initialSignal(options("scripted", 0, { temperatures }));
  const { state: end, samples } = take(state, 10);
  assert.deepEqual(samples.map((sample) => sample.temperature), temperatures);
  for (const sample of samples) {
    assert.deepEqual(sample.location, HERE);
    assert.ok(sample.humidity >= 0 && sample.humidity <= 100);
  }
  assert.equal(nextSample(end), null);
});

Deno.test("scripted derives humidity that falls as temperature rises", () => {
  const temperatures = [-40, 0, 20, 40, 80, 200];
  const humidity = samplesOf(options("scripted", 0, { temperatures }), 10).map((s) => s.humidity);
  assert.equal(humidity[0], 100);
  for (let i = 1; i < humidity.length; i++) assert.ok((humidity[i] ?? 0) <= (humidity[i - 1] ?? 0));
});

Deno.test("scripted uses the given humidity per step", () => {
  const samples = samplesOf(
    options("scripted", 0, { temperatures: [20, 30, 40], humidity: [12.5, 99, 0] }),
    10,
  );
  assert.deepEqual(samples.map((sample) => sample.humidity), [12.5, 99, 0]);
});

Deno.test("scripted with an empty series ends at once", () => {
  assert.equal(nextSample(initialSignal(options("scripted", 0, { temperatures: [] }))), null);
});

Deno.test("a state restored from JSON mid-stream continues identically", () => {
  const profileArb = fc.constantFrom(...PROFILES);
  const temperaturesArb = fc.array(fc.double({ min: -50, max: 150, noNaN: true }), {
    maxLength: 80,
  });
  fc.assert(
    fc.property(
      profileArb,
      seedArb,
      intervalArb,
      temperaturesArb,
      fc.integer({ min: 0, max: 100 }),
      (profile, seed, intervalMs, temperatures, crashAt) => {
        const { state } = take(
          initialSignal(options(profile, seed, { intervalMs, temperatures })),
          crashAt,
        );
        const restored = JSON.parse(JSON.stringify(state)) as SignalState;
        assert.deepEqual(restored, state);
        assert.deepEqual(take(restored, 100).samples, take(state, 100).samples);
      },
    ),
    { numRuns: NUM_RUNS },
  );
});

Deno.test("state stays the same size however long the signal runs", () => {
  for (const profile of RANDOM_PROFILES) {
    const early = take(initialSignal(options(profile, 3)), 1).state;
    const late = take(early, 5_000).state;
    assert.deepEqual(Object.keys(late), Object.keys(early));
  }
});

Deno.test("initialSignal() rejects out-of-range options", () => {
  const invalid: Partial<SignalOptions>[] = [
    { intervalMs: 0 },
    { intervalMs: Number.NaN },
    { seed: -1 },
    { seed: 1.5 },
    { location: { lat: 91, lon: 0 } },
    { location: { lat: 0, lon: Number.POSITIVE_INFINITY } },
    { band: { high: 70, low: 70 } },
    { profile: "bogus" as Profile },
    { profile: "scripted" },
    { profile: "scripted", temperatures: [20, Number.NaN] },
    { profile: "scripted", temperatures: [20], humidity: [101] },
  ];
  for (const extra of invalid) {
    assert.throws(
      () => initialSignal(options("normal", 1, extra)),
      RangeError,
      JSON.stringify(extra),
    );
  }
});
