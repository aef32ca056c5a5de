import assert from "node:assert/strict";
import fc from "fast-check";
import { gaussian, nextRandom, seedFrom } from "../domain/random.ts";
import { numRuns } from "./fc_runs.ts";

const NUM_RUNS = numRuns(100);
const uint32 = fc.integer({ min: 0, max: 0xffffffff });

function draws(state: number, count: number, draw = nextRandom): number[] {
  const values: number[] = [];
  for (let i = 0; i < count; i++) {
    const next = draw(state);
    state = next.state;
    values.push(next.value);
  }
  return values;
}

function mean(values: readonly number[]): number {
  return values.reduce((sum, value) => sum + value, 0) / values.length;
}

Deno.test("nextRandom() repeats the same sequence from the same state", () => {
  fc.assert(
    fc.property(uint32, (seed) => {
      assert.deepEqual(draws(seed, 50), draws(seed, 50));
    }),
    { numRuns: NUM_RUNS },
  );
});

Deno.test("nextRandom() gives different sequences from different states", () => {
  assert.notDeepEqual(draws(1, 20), draws(2, 20));
  assert.notDeepEqual(draws(0, 20), draws(0xffffffff, 20));
});

Deno.test("nextRandom() draws values in [0, 1) and advances to a uint32 state", () => {
  fc.assert(
    fc.property(uint32, (state) => {
      const { state: next, value } = nextRandom(state);
      assert.ok(value >= 0 && value < 1, `value ${value} is outside [0, 1)`);
      assert.ok(Number.isInteger(next) && next >= 0 && next <= 0xffffffff);
      assert.notEqual(next, state);
    }),
    { numRuns: NUM_RUNS },
  );
});

Deno.test("nextRandom() averages about 0.5 and fills every tenth of [0, 1) over 10 000 draws", () => {
  const values = draws(seedFrom("uniformity"), 10_000);
  assert.ok(Math.abs(mean(values) - 0.5) < 0.01, `mean ${mean(values)}`);
  const buckets = Array.from({ length: 10 }, () => 0);
  for (const value of values) {
    const bucket = Math.floor(value * 10);
    buckets[bucket] = (buckets[bucket] ?? 0) + 1;
  }
  for (const count of buckets) assert.ok(count > 850 && count < 1150, `bucket count ${count}`);
});

Deno.test("gaussian() has mean about 0 and variance about 1 over 10 000 draws", () => {
  const values = draws(seedFrom("gaussian"), 10_000, gaussian);
  const average = mean(values);
  const variance = mean(values.map((value) => (value - average) ** 2));
  assert.ok(Math.abs(average) < 0.05, `mean ${average}`);
  assert.ok(Math.abs(variance - 1) < 0.05, `variance ${variance}`);
});

Deno.test("gaussian() is deterministic and finite for every state", () => {
  fc.assert(
    fc.property(uint32, (state) => {
      const first = gaussian(state);
      assert.deepEqual(gaussian(state), first);
      assert.ok(Number.isFinite(first.value));
      assert.ok(Number.isInteger(first.state) && first.state >= 0 && first.state <= 0xffffffff);
    }),
    { numRuns: NUM_RUNS },
  );
});

Deno.test("seedFrom() matches the FNV-1a reference values", () => {
  assert.equal(seedFrom(""), 0x811c9dc5);
  assert.equal(seedFrom("a"), 0xe40c292c);
  assert.equal(seedFrom("foobar"), 0xbf9cf968);
});

Deno.test("seedFrom() is stable and returns a uint32 for any text", () => {
  fc.assert(
    fc.property(fc.string({ unit: "grapheme" }), (text) => {
      const seed = seedFrom(text);
      assert.equal(seedFrom(text), seed);
      assert.ok(Number.isInteger(seed) && seed >= 0 && seed <= 0xffffffff);
    }),
    { numRuns: NUM_RUNS },
  );
});

Deno.test("seedFrom() gives distinct seeds to distinct device ids", () => {
  const seeds = new Set<number>();
  for (let device = 0; device < 1000; device++) seeds.add(seedFrom(`fleet-42/device-${device}`));
  assert.equal(seeds.size, 1000);
  assert.notEqual(seedFrom("fleet-1/device-1"), seedFrom("fleet-2/device-1"));
});
