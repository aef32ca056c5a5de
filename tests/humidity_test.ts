import assert from "node:assert/strict";
import fc from "fast-check";
import { dewPoint, relativeHumidity } from "../domain/humidity.ts";
import { numRuns } from "./fc_runs.ts";

const NUM_RUNS = numRuns(500);

Deno.test("dewPoint() matches tabulated values", () => {
  // 20 °C at 50 %RH has a dew point of 9.3 °C; 30 °C at 80 %RH of 26.2 °C.
  assert.equal(Math.round(dewPoint(20, 50) * 10) / 10, 9.3);
  assert.equal(Math.round(dewPoint(30, 80) * 10) / 10, 26.2);
  assert.ok(Math.abs(dewPoint(25, 100) - 25) < 1e-9);
});

Deno.test("relativeHumidity() is 100 at the dew point and below, and falls as the air warms", () => {
  assert.equal(relativeHumidity(10, 10), 100);
  assert.equal(relativeHumidity(10, 0), 100);
  // Air with a 10 °C dew point at 90 °C: about 1.7 %RH (saturation pressure 70.1 vs 1.23 kPa).
  assert.equal(Math.round(relativeHumidity(10, 90) * 10) / 10, 1.7);
});

Deno.test("relativeHumidity() inverts dewPoint() and falls monotonically with temperature", () => {
  const temperature = fc.integer({ min: -400, max: 900 }).map((t) => t / 10);
  fc.assert(
    fc.property(
      temperature,
      fc.integer({ min: 1, max: 1000 }).map((h) => h / 10),
      fc.integer({ min: 1, max: 500 }).map((d) => d / 10),
      (t, rh, warmer) => {
        const dew = dewPoint(t, rh);
        assert.ok(dew <= t + 1e-9, "the dew point is never above the temperature");
        assert.ok(Math.abs(relativeHumidity(dew, t) - rh) < 1e-6);
        const after = relativeHumidity(dew, t + warmer);
        assert.ok(after < rh && after >= 0, `${rh} %RH at ${t} °C → ${after} at ${t + warmer}`);
      },
    ),
    { numRuns: NUM_RUNS },
  );
});
