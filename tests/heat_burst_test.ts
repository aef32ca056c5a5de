import assert from "node:assert/strict";
import fc from "fast-check";
import {
  applyHeatBurst,
  COOL_TAU_SAMPLES,
  HEAT_TAU_SAMPLES,
  type HeatBurst,
  heatBurst,
} from "../domain/heat_burst.ts";
import { dewPoint } from "../domain/humidity.ts";
import { numRuns } from "./fc_runs.ts";

const NUM_RUNS = numRuns(200);

/** Plays a burst over a constant own signal; the reported samples and the burst left. */
function play(burst: HeatBurst | null, own: { temperature: number; humidity: number }, n: number) {
  const out: { temperature: number; humidity: number }[] = [];
  for (let i = 0; i < n; i++) {
    const next = applyHeatBurst(burst, own);
    out.push({ temperature: next.temperature, humidity: next.humidity });
    burst = next.burst;
  }
  return { out, burst };
}

Deno.test("applyHeatBurst() ramps towards the target with thermal lag instead of jumping", () => {
  const { out } = play(heatBurst({ readings: 3, target: 90, high: 80 }), {
    temperature: 25,
    humidity: 50,
  }, 6);
  const temperatures = out.map((s) => s.temperature);
  // First-order: 90 + (25 - 90) e^(-n/2) = 50.6, 66.1, 75.5, 81.2 ...
  assert.deepEqual(temperatures.slice(0, 4), [50.6, 66.1, 75.5, 81.2]);
  assert.ok(temperatures[0]! - 25 < 30, "no jump of ~60 °C in one reading");
  assert.equal(HEAT_TAU_SAMPLES, 2);
});

Deno.test("applyHeatBurst() emits `readings` hot samples, then cools back and ends", () => {
  const own = { temperature: 25, humidity: 50 };
  const { out, burst } = play(heatBurst({ readings: 3, target: 90, high: 80 }), own, 60);
  const temperatures = out.map((s) => s.temperature);
  const firstHot = temperatures.findIndex((t) => t >= 80);
  assert.deepEqual(
    temperatures.slice(firstHot, firstHot + 3).map((t) => t >= 80),
    [true, true, true],
  );
  assert.ok(temperatures[firstHot + 3]! < 80, `cooling after three hot: ${temperatures}`);
  // Cooling is lagged too: no drop of more than (1 - e^(-1/τ)) of the way in one sample.
  const drop = temperatures[firstHot + 2]! - temperatures[firstHot + 3]!;
  const most = (temperatures[firstHot + 2]! - 25) * (1 - Math.exp(-1 / COOL_TAU_SAMPLES));
  assert.ok(drop <= most + 0.1, `drop ${drop} within ${most}`);
  assert.equal(burst, null, "the burst ends");
  assert.ok(Math.abs(temperatures.at(-1)! - 25) <= 0.5);
});

Deno.test("applyHeatBurst() reaches a target equal to the threshold (the curve is asymptotic)", () => {
  const { out } = play(heatBurst({ readings: 2, target: 80, high: 80 }), {
    temperature: 20,
    humidity: 40,
  }, 20);
  assert.equal(out.filter((s) => s.temperature >= 80).length, 2);
});

Deno.test("applyHeatBurst() keeps a sample that is already hotter than the target", () => {
  const next = applyHeatBurst(heatBurst({ readings: 2, target: 90, high: 80 }), {
    temperature: 95.5,
    humidity: 10,
  });
  assert.equal(next.temperature, 95.5);
  assert.equal(next.burst?.remaining, 1);
});

Deno.test("applyHeatBurst() without a burst passes the sample through", () => {
  assert.deepEqual(applyHeatBurst(null, { temperature: 21.3, humidity: 44 }), {
    temperature: 21.3,
    humidity: 44,
    burst: null,
  });
});

Deno.test("applyHeatBurst() dries the air as it heats it: same dew point, lower humidity", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 350 }).map((t) => t / 10),
      fc.integer({ min: 100, max: 1000 }).map((h) => h / 10),
      fc.integer({ min: 1, max: 20 }),
      (temperature, humidity, readings) => {
        const own = { temperature, humidity };
        const target = Math.max(temperature + 20, 80);
        const { out } = play(heatBurst({ readings, target, high: 80 }), own, 40);
        const dew = dewPoint(temperature, humidity);
        for (const s of out) {
          assert.ok(s.humidity >= 0 && s.humidity <= 100);
          if (s.temperature > temperature + 1) {
            assert.ok(s.humidity < humidity, `${s.temperature} °C: ${s.humidity} %RH`);
            // Rounding to 0.1 %RH moves the dew point by well under a degree.
            if (s.humidity >= 1) {
              assert.ok(Math.abs(dewPoint(s.temperature, s.humidity) - dew) < 1.5);
            }
          }
        }
      },
    ),
    { numRuns: NUM_RUNS },
  );
});

Deno.test("applyHeatBurst() always yields at least `readings` consecutive hot samples", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: -200, max: 400 }).map((t) => t / 10),
      fc.integer({ min: 0, max: 40 }),
      fc.integer({ min: 1, max: 30 }),
      (own, margin, readings) => {
        const high = 80;
        const { out } = play(heatBurst({ readings, target: high + margin, high }), {
          temperature: own,
          humidity: 50,
        }, 200);
        let streak = 0;
        let best = 0;
        for (const s of out) {
          streak = s.temperature >= high ? streak + 1 : 0;
          best = Math.max(best, streak);
        }
        assert.ok(best >= readings, `longest hot streak ${best} < ${readings}`);
        // Every step moves at most (1 - e^(-1/2)) of the distance to the target: lagged.
        let previous = own;
        for (const s of out) {
          assert.ok(Math.abs(s.temperature - previous) <= 0.4 * (high + margin - own) + 0.2);
          previous = s.temperature;
        }
      },
    ),
    { numRuns: NUM_RUNS },
  );
});
