import assert from "node:assert/strict";
import { applyHeatBurst, type HeatBurst } from "../domain/heat_burst.ts";

Deno.test("applyHeatBurst() raises the temperature for exactly `remaining` samples", () => {
  let burst: HeatBurst | null = { remaining: 3, temperature: 90 };
  const out: number[] = [];
  for (const t of [20, 21, 22, 23, 24]) {
    const next = applyHeatBurst(burst, t);
    out.push(next.temperature);
    burst = next.burst;
  }
  assert.deepEqual(out, [90, 90, 90, 23, 24]);
  assert.equal(burst, null);
});

Deno.test("applyHeatBurst() keeps a sample that is already hotter than the burst", () => {
  const next = applyHeatBurst({ remaining: 2, temperature: 90 }, 95.5);
  assert.equal(next.temperature, 95.5);
  assert.deepEqual(next.burst, { remaining: 1, temperature: 90 });
});

Deno.test("applyHeatBurst() without a burst, or a spent one, passes the sample through", () => {
  for (const burst of [null, { remaining: 0, temperature: 90 }]) {
    assert.deepEqual(applyHeatBurst(burst, 21.3), { temperature: 21.3, burst: null });
  }
});
