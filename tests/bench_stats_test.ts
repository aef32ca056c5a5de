import assert from "node:assert/strict";
import { formatSpread, Histogram, spread } from "../bench/stats.ts";

Deno.test("Histogram.percentile() returns the nearest-rank latency", () => {
  const h = new Histogram(1000);
  for (let ms = 1; ms <= 100; ms++) h.add(ms);
  assert.deepEqual(h.percentile(50), 50);
  assert.deepEqual(h.percentile(99), 99);
  assert.deepEqual(h.percentile(100), 100);
  assert.deepEqual(h.summary().count, 100);
  assert.deepEqual(h.summary().mean, 50.5);
});

Deno.test("Histogram puts latencies beyond its range in the last bin but keeps the true max", () => {
  const h = new Histogram(10);
  h.add(3);
  h.add(5000);
  assert.deepEqual(h.percentile(99), 10);
  assert.deepEqual(h.summary().max, 5000);
});

Deno.test("Histogram.summary() of no samples is NaN, not zero", () => {
  const s = new Histogram(10).summary();
  assert.deepEqual(s.count, 0);
  assert(Number.isNaN(s.p99));
});

Deno.test("spread() gives the median and range and skips failed (NaN) runs", () => {
  assert.deepEqual(spread([3, 1, 2]), { median: 2, min: 1, max: 3, runs: 3 });
  assert.deepEqual(spread([4, 1, NaN, 2]).median, 2);
  assert.deepEqual(spread([1, 2, 3, 4]).median, 2.5);
  assert.deepEqual(formatSpread(spread([12000, 11000, 13500])), "12 000 (11 000–13 500)");
  assert.deepEqual(formatSpread(spread([7])), "7");
  assert.deepEqual(formatSpread(spread([])), "n/a");
});

Deno.test("busyCoresBetween() reads the busy share from the counters, whatever clock was read beside them", async () => {
  const { busyCoresBetween } = await import("../bench/store_cpu.ts");
  const before = { busyMs: 10_000, allMs: 40_000, cores: 2 };
  // 30 s on 2 cores (60 000 ms of CPU time), 45 000 ms of it busy: 1.5 cores.
  assert.equal(busyCoresBetween(before, { busyMs: 55_000, allMs: 100_000, cores: 2 }), 1.5);
  assert.ok(Number.isNaN(busyCoresBetween(before, before)), "no time between: no figure");
});
