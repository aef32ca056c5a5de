import assert from "node:assert/strict";
import fc from "fast-check";
import { backtest, type DeviceSample } from "../domain/backtest.ts";
import { type AlarmRule, DEFAULT_RULE, replay } from "../domain/hysteresis.ts";
import { numRuns } from "./fc_runs.ts";

const ts = (seq: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, seq)).toISOString();

/** One device's samples from temperatures, seq 1, 2, ... */
function series(deviceId: string, temperatures: readonly number[], firstSeq = 1): DeviceSample[] {
  return temperatures.map((temperature, i) => ({
    deviceId,
    seq: firstSeq + i,
    ts: ts(firstSeq + i),
    temperature,
  }));
}

Deno.test("backtest() finds the worked example's two episodes, the last still open", () => {
  const result = backtest(series("d", [70, 81, 82, 79, 76, 71, 69, 68, 85, 86]), DEFAULT_RULE);
  assert.deepEqual(result.episodes, [
    {
      deviceId: "d",
      raisedSeq: 3,
      raisedAt: ts(3),
      peakTemperature: 82,
      cleared: { seq: 8, ts: ts(8) },
    },
    { deviceId: "d", raisedSeq: 10, raisedAt: ts(10), peakTemperature: 86 },
  ]);
  assert.equal(result.readings, 10);
  assert.equal(result.devices, 1);
});

Deno.test("backtest() with a stricter rule raises fewer episodes on the same readings", () => {
  const readings = series("d", [70, 81, 82, 79, 76, 71, 69, 68, 85, 86]);
  const strict: AlarmRule = { high: 85, low: 70, raiseAfter: 2, clearAfter: 2 };
  assert.deepEqual(backtest(readings, strict).episodes, [
    { deviceId: "d", raisedSeq: 10, raisedAt: ts(10), peakTemperature: 86 },
  ]);
  const eager: AlarmRule = { high: 80, low: 75, raiseAfter: 1, clearAfter: 1 };
  assert.deepEqual(backtest(readings, eager).episodes.map((e) => [e.raisedSeq, e.cleared?.seq]), [
    [2, 6],
    [9, undefined],
  ]);
});

Deno.test("backtest() replays each device on its own, by device id, whatever the input order", () => {
  const a = series("a", [90, 90, 60, 60]);
  const b = series("b", [60, 90, 90]);
  const mixed = [b[2]!, a[3]!, a[0]!, b[0]!, a[2]!, b[1]!, a[1]!];
  const result = backtest(mixed, DEFAULT_RULE);
  assert.deepEqual(result.episodes.map((e) => [e.deviceId, e.raisedSeq, e.cleared?.seq]), [
    ["a", 2, 4],
    ["b", 3, undefined],
  ]);
  assert.equal(result.devices, 2);
  assert.equal(result.readings, 7);
});

Deno.test("backtest() starts each device normal at its first reading and applies a repeated seq once", () => {
  // Seqs from 40: a device already hot before the window needs raiseAfter hot readings inside it.
  const readings = series("d", [95, 95, 95], 40);
  const result = backtest([...readings, readings[1]!], DEFAULT_RULE);
  assert.deepEqual(result.episodes.map((e) => e.raisedSeq), [41]);
  assert.equal(result.readings, 3, "the repeated seq is not applied twice");
});

Deno.test("backtest() of nothing is nothing", () => {
  assert.deepEqual(backtest([], DEFAULT_RULE), { episodes: [], devices: 0, readings: 0 });
});

const ruleArb: fc.Arbitrary<AlarmRule> = fc
  .record({
    low: fc.integer({ min: 0, max: 90 }),
    band: fc.integer({ min: 1, max: 20 }),
    raiseAfter: fc.integer({ min: 1, max: 4 }),
    clearAfter: fc.integer({ min: 1, max: 4 }),
  })
  .map(({ low, band, raiseAfter, clearAfter }) => ({
    low,
    high: low + band,
    raiseAfter,
    clearAfter,
  }));

Deno.test("backtest() of one device agrees with the processors' replay(), transition for transition", () => {
  fc.assert(
    fc.property(
      ruleArb,
      fc.array(fc.integer({ min: -10, max: 130 }), { maxLength: 80 }),
      (rule, temps) => {
        const readings = series("d", temps);
        const expected = replay(readings, rule).transitions;
        const got = backtest(readings, rule).episodes;
        assert.deepEqual(
          got.map((e) => e.raisedSeq),
          expected.filter((t) => t.type === "raised").map((t) => t.seq),
        );
        assert.deepEqual(
          got.filter((e) => e.cleared).map((e) => [e.cleared!.seq, e.peakTemperature]),
          expected.filter((t) => t.type === "cleared").map((t) => [
            t.seq,
            t.episode.peakTemperature,
          ]),
        );
      },
    ),
    { numRuns: numRuns(200) },
  );
});

Deno.test("backtest() gives the same episodes however the devices' readings are interleaved", () => {
  fc.assert(
    fc.property(
      ruleArb,
      fc.array(
        fc.record({ device: fc.constantFrom("a", "b", "c"), t: fc.integer({ min: 0, max: 120 }) }),
        { maxLength: 90 },
      ),
      fc.array(fc.integer(), { minLength: 90, maxLength: 90 }),
      (rule, draws, keys) => {
        const next = new Map<string, number>();
        const samples = draws.map(({ device, t }) => {
          const seq = (next.get(device) ?? 0) + 1;
          next.set(device, seq);
          return { deviceId: device, seq, ts: ts(seq), temperature: t };
        });
        const shuffled = samples.map((s, i) => [keys[i]!, s] as const)
          .sort((x, y) => x[0] - y[0]).map(([, s]) => s);
        const perDevice = ["a", "b", "c"].flatMap((d) =>
          backtest(samples.filter((s) => s.deviceId === d), rule).episodes
        );
        assert.deepEqual(backtest(shuffled, rule).episodes, perDevice);
      },
    ),
    { numRuns: numRuns(200) },
  );
});
