import assert from "node:assert/strict";
import fc from "fast-check";
import {
  type AlarmRule,
  type AlarmState,
  DEFAULT_RULE,
  INITIAL_ALARM_STATE,
  type ReadingSample,
  replay,
  ruleProblems,
  step,
  type Transition,
} from "../domain/hysteresis.ts";
import { numRuns } from "./fc_runs.ts";

const NUM_RUNS = numRuns(200);
const BASE_MS = Date.UTC(2025, 0, 1);

function tsAt(second: number): string {
  return new Date(BASE_MS + second * 1000).toISOString();
}

/** Readings with consecutive seq from `firstSeq`, one second apart. */
function series(temperatures: readonly number[], firstSeq = 1): ReadingSample[] {
  return temperatures.map((temperature, i) => ({
    seq: firstSeq + i,
    ts: tsAt(firstSeq + i),
    temperature,
  }));
}

/** The state after the given temperatures, from scratch. */
function after(temperatures: readonly number[], rule: AlarmRule = DEFAULT_RULE): AlarmState {
  return replay(series(temperatures), rule).state;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null) {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}

function summary(t: Transition): string {
  return `${t.type}@${t.seq}(peak ${t.episode.peakTemperature}, from ${t.episode.raisedSeq})`;
}

// ---------------------------------------------------------------------------
// Table-driven transitions

interface TransitionCase {
  readonly name: string;
  readonly rule?: AlarmRule;
  /** Temperatures replayed first (seq from 1) to reach the starting state. */
  readonly prefix?: readonly number[];
  /** Temperatures under test, with seq continuing after the prefix. */
  readonly temperatures: readonly number[];
  readonly critical: readonly boolean[];
  readonly transitions: readonly string[];
}

const T = true;
const F = false;

const TRANSITION_CASES: readonly TransitionCase[] = [
  {
    name: "step() stays normal for readings at or below low",
    temperatures: [20, 50, 69.9, 70],
    critical: [F, F, F, F],
    transitions: [],
  },
  {
    name: "step() stays normal for readings between the thresholds",
    temperatures: [71, 75, 79.99, 72],
    critical: [F, F, F, F],
    transitions: [],
  },
  {
    name: "step() stays normal after a single hot reading",
    temperatures: [90],
    critical: [F],
    transitions: [],
  },
  {
    name: "step() raises after two consecutive readings at or above high",
    temperatures: [81, 82],
    critical: [F, T],
    transitions: ["raised@2(peak 82, from 2)"],
  },
  {
    name: "step() counts a reading exactly at high as hot",
    temperatures: [80, 80],
    critical: [F, T],
    transitions: ["raised@2(peak 80, from 2)"],
  },
  {
    name: "step() records the highest reading of the raising streak as the peak",
    rule: { ...DEFAULT_RULE, raiseAfter: 3 },
    temperatures: [85, 95, 81],
    critical: [F, F, T],
    transitions: ["raised@3(peak 95, from 3)"],
  },
  {
    name: "step() restarts the hot streak after a reading between the thresholds",
    temperatures: [81, 79.9, 82, 75, 83],
    critical: [F, F, F, F, F],
    transitions: [],
  },
  {
    name: "step() restarts the hot streak after a cool reading",
    temperatures: [81, 60, 82, 83],
    critical: [F, F, F, T],
    transitions: ["raised@4(peak 83, from 4)"],
  },
  {
    name: "step() takes the peak from the raising streak only, not an earlier broken one",
    temperatures: [99, 75, 81, 82],
    critical: [F, F, F, T],
    transitions: ["raised@4(peak 82, from 4)"],
  },
  {
    name: "step() stays critical between the thresholds",
    prefix: [81, 82],
    temperatures: [79, 75, 70.01, 71, 80, 90],
    critical: [T, T, T, T, T, T],
    transitions: [],
  },
  {
    name: "step() stays critical after a single cool reading",
    prefix: [81, 82],
    temperatures: [65],
    critical: [T],
    transitions: [],
  },
  {
    name: "step() clears after two consecutive readings at or below low",
    prefix: [81, 82],
    temperatures: [69, 68],
    critical: [T, F],
    transitions: ["cleared@4(peak 82, from 2)"],
  },
  {
    name: "step() counts a reading exactly at low as cool",
    prefix: [81, 82],
    temperatures: [70, 70],
    critical: [T, F],
    transitions: ["cleared@4(peak 82, from 2)"],
  },
  {
    name: "step() restarts the cool streak after a reading between the thresholds",
    prefix: [81, 82],
    temperatures: [69, 71, 68, 75, 67, 66],
    critical: [T, T, T, T, T, F],
    transitions: ["cleared@8(peak 82, from 2)"],
  },
  {
    name: "step() restarts the cool streak after a hot reading and raises the peak",
    prefix: [81, 82],
    temperatures: [69, 91, 68, 67],
    critical: [T, T, T, F],
    transitions: ["cleared@6(peak 91, from 2)"],
  },
  {
    name: "step() raises on the first hot reading when raiseAfter is 1",
    rule: { ...DEFAULT_RULE, raiseAfter: 1, clearAfter: 1 },
    temperatures: [79, 80, 75, 70, 85],
    critical: [F, T, T, F, T],
    transitions: [
      "raised@2(peak 80, from 2)",
      "cleared@4(peak 80, from 2)",
      "raised@5(peak 85, from 5)",
    ],
  },
  {
    name: "step() clears on the first cool reading when clearAfter is 1",
    rule: { ...DEFAULT_RULE, clearAfter: 1 },
    prefix: [81, 82],
    temperatures: [88, 70.5, 70],
    critical: [T, T, F],
    transitions: ["cleared@5(peak 88, from 2)"],
  },
  {
    name: "step() honours longer debounce counts and negative thresholds",
    rule: { high: 10, low: -10, raiseAfter: 4, clearAfter: 3 },
    temperatures: [10, 11, 12, 9, 10, 10, 10, 13, -10, -11, 0, -20, -30, -40],
    critical: [F, F, F, F, F, F, F, T, T, T, T, T, T, F],
    transitions: ["raised@8(peak 13, from 8)", "cleared@14(peak 13, from 8)"],
  },
  {
    name: "step() treats a NaN temperature as neither hot nor cool",
    prefix: [81],
    temperatures: [NaN, 82, 83, 69, NaN, 68, 67],
    critical: [F, F, T, T, T, T, F],
    transitions: ["raised@4(peak 83, from 4)", "cleared@8(peak 83, from 4)"],
  },
  {
    name: "replay() follows the worked example of the overheat rule",
    temperatures: [70, 81, 82, 79, 76, 71, 69, 68, 85, 86],
    critical: [F, F, T, T, T, T, T, F, F, T],
    transitions: [
      "raised@3(peak 82, from 3)",
      "cleared@8(peak 82, from 3)",
      "raised@10(peak 86, from 10)",
    ],
  },
];

for (const c of TRANSITION_CASES) {
  Deno.test(c.name, () => {
    const rule = c.rule ?? DEFAULT_RULE;
    const prefix = c.prefix ?? [];
    const from = after(prefix, rule);
    const result = replay(series(c.temperatures, prefix.length + 1), rule, from);
    assert.deepEqual(result.critical, c.critical);
    assert.deepEqual(result.transitions.map(summary), c.transitions);
    assert.equal(result.state.level, c.critical.at(-1) ? "critical" : "normal");
  });
}

// ---------------------------------------------------------------------------
// Single steps in detail

Deno.test("step() leaves a fresh device normal with since null and counts the reading", () => {
  const reading = { seq: 1, ts: tsAt(1), temperature: 25 };
  assert.deepEqual(step(INITIAL_ALARM_STATE, reading, DEFAULT_RULE), {
    state: {
      ...INITIAL_ALARM_STATE,
      lastSeq: 1,
      lastTs: tsAt(1),
      counters: { readings: 1, duplicates: 0, gaps: 0, outOfOrder: 0 },
    },
    applied: true,
    transition: null,
  });
});

Deno.test("step() raising sets since, opens the episode and resets the streaks", () => {
  const state = after([85]);
  assert.equal(state.hotStreak, 1);
  assert.equal(state.streakPeak, 85);
  const { state: raised, transition, applied } = step(
    state,
    { seq: 2, ts: tsAt(2), temperature: 81 },
    DEFAULT_RULE,
  );
  const episode = { raisedSeq: 2, raisedAt: tsAt(2), peakTemperature: 85 };
  assert.equal(applied, true);
  assert.deepEqual(transition, { type: "raised", seq: 2, ts: tsAt(2), temperature: 81, episode });
  assert.deepEqual(raised, {
    level: "critical",
    since: tsAt(2),
    lastSeq: 2,
    lastTs: tsAt(2),
    hotStreak: 0,
    streakPeak: null,
    coolStreak: 0,
    episode,
    counters: { readings: 2, duplicates: 0, gaps: 0, outOfOrder: 0 },
  });
});

Deno.test("step() clearing sets since, closes the episode and carries its final peak", () => {
  const state = after([81, 82, 95, 69]);
  assert.equal(state.coolStreak, 1);
  assert.deepEqual(state.episode, { raisedSeq: 2, raisedAt: tsAt(2), peakTemperature: 95 });
  const { state: cleared, transition } = step(
    state,
    { seq: 5, ts: tsAt(5), temperature: 60 },
    DEFAULT_RULE,
  );
  assert.deepEqual(transition, {
    type: "cleared",
    seq: 5,
    ts: tsAt(5),
    temperature: 60,
    episode: { raisedSeq: 2, raisedAt: tsAt(2), peakTemperature: 95 },
  });
  assert.equal(cleared.level, "normal");
  assert.equal(cleared.since, tsAt(5));
  assert.equal(cleared.episode, null);
  assert.equal(cleared.coolStreak, 0);
  assert.equal(cleared.hotStreak, 0);
});

Deno.test("step() keeps since while the level does not change", () => {
  const state = after([81, 82, 75, 90, 71]);
  assert.equal(state.level, "critical");
  assert.equal(state.since, tsAt(2));
});

Deno.test("step() does not mutate the state, reading or rule it is given", () => {
  const state = deepFreeze(after([81, 82, 69]));
  const reading = deepFreeze({ seq: 4, ts: tsAt(4), temperature: 68 });
  const rule = deepFreeze({ ...DEFAULT_RULE });
  const snapshot = structuredClone(state);
  const result = step(state, reading, rule);
  assert.deepEqual(state, snapshot);
  assert.notEqual(result.state, state);
  assert.equal(result.state.level, "normal");
});

// ---------------------------------------------------------------------------
// Duplicates, gaps and out-of-order timestamps

Deno.test("step() ignores a reading whose seq is not above lastSeq and counts it as a duplicate", () => {
  const state = after([81]);
  for (const seq of [1, 0, -5]) {
    const result = step(state, { seq, ts: tsAt(99), temperature: 99 }, DEFAULT_RULE);
    assert.equal(result.applied, false);
    assert.equal(result.transition, null);
    assert.deepEqual(result.state, {
      ...state,
      counters: { ...state.counters, duplicates: state.counters.duplicates + 1 },
    });
  }
});

Deno.test("step() does not raise again for a duplicate of the raising reading", () => {
  const readings = series([81, 82]);
  const { state, transitions } = replay([...readings, ...readings, ...readings], DEFAULT_RULE);
  assert.deepEqual(transitions.map(summary), ["raised@2(peak 82, from 2)"]);
  assert.equal(state.counters.readings, 2);
  assert.equal(state.counters.duplicates, 4);
});

Deno.test("replay() reports the current level for a duplicate reading", () => {
  const [r1, r2, r3, r4] = series([81, 82, 69, 68]);
  const { critical } = replay([r1!, r2!, r1!, r3!, r4!, r2!], DEFAULT_RULE);
  assert.deepEqual(critical, [F, T, T, T, F, F]);
});

Deno.test("step() applies a reading after a seq gap and counts the gap", () => {
  const readings: ReadingSample[] = [
    { seq: 1, ts: tsAt(1), temperature: 81 },
    { seq: 2, ts: tsAt(2), temperature: 70 },
    { seq: 5, ts: tsAt(5), temperature: 81 },
    { seq: 6, ts: tsAt(6), temperature: 81 },
    { seq: 100, ts: tsAt(100), temperature: 20 },
  ];
  const { state, critical } = replay(readings, DEFAULT_RULE);
  assert.deepEqual(critical, [F, F, F, T, T]);
  assert.deepEqual(state.counters, { readings: 5, duplicates: 0, gaps: 2, outOfOrder: 0 });
  assert.equal(state.lastSeq, 100);
});

Deno.test("step() does not count a gap for the first reading of a device", () => {
  const { state } = replay([{ seq: 42, ts: tsAt(42), temperature: 20 }], DEFAULT_RULE);
  assert.deepEqual(state.counters, { readings: 1, duplicates: 0, gaps: 0, outOfOrder: 0 });
});

Deno.test("step() applies a reading with an earlier timestamp and counts it as out of order", () => {
  const readings: ReadingSample[] = [
    { seq: 1, ts: "2025-01-01T00:00:10.000Z", temperature: 81 },
    { seq: 2, ts: "2025-01-01T00:00:05.000Z", temperature: 82 },
    { seq: 3, ts: "2025-01-01T00:00:05.000Z", temperature: 75 },
    { seq: 4, ts: "2025-01-01T00:00:06Z", temperature: 75 },
  ];
  const { state, critical } = replay(readings, DEFAULT_RULE);
  assert.deepEqual(critical, [F, T, T, T]);
  assert.deepEqual(state.counters, { readings: 4, duplicates: 0, gaps: 0, outOfOrder: 1 });
  assert.equal(state.lastTs, "2025-01-01T00:00:06Z");
  assert.equal(state.since, "2025-01-01T00:00:05.000Z");
});

Deno.test("step() compares timestamps as instants, not as text", () => {
  const readings: ReadingSample[] = [
    { seq: 1, ts: "2025-01-01T00:00:10Z", temperature: 20 },
    // Sorts before the previous one as text, but is a later instant.
    { seq: 2, ts: "2025-01-01T00:00:10.500Z", temperature: 20 },
    { seq: 3, ts: "2025-01-01T00:00:10.100Z", temperature: 20 },
  ];
  assert.deepEqual(replay(readings, DEFAULT_RULE).state.counters, {
    readings: 3,
    duplicates: 0,
    gaps: 0,
    outOfOrder: 1,
  });
});

Deno.test("replay() of the same readings from the final state changes nothing but duplicates", () => {
  const readings = series([70, 81, 82, 79, 76, 71, 69, 68, 85, 86]);
  const first = replay(readings, DEFAULT_RULE);
  const again = replay(readings, DEFAULT_RULE, first.state);
  assert.deepEqual(again.transitions, []);
  assert.deepEqual(again.critical, readings.map(() => true));
  assert.deepEqual(again.state, {
    ...first.state,
    counters: { ...first.state.counters, duplicates: readings.length },
  });
});

Deno.test("replay() of no readings returns the starting state", () => {
  const from = after([81, 82]);
  assert.deepEqual(replay([], DEFAULT_RULE, from), { state: from, critical: [], transitions: [] });
  assert.deepEqual(replay([], DEFAULT_RULE).state, INITIAL_ALARM_STATE);
});

// ---------------------------------------------------------------------------
// ruleProblems()

Deno.test("ruleProblems() accepts the default rule and boundary counts", () => {
  assert.deepEqual(ruleProblems(DEFAULT_RULE), []);
  assert.deepEqual(ruleProblems({ high: -5, low: -5.5, raiseAfter: 1, clearAfter: 1000 }), []);
});

interface RuleProblemCase {
  readonly name: string;
  readonly rule: AlarmRule;
  readonly problems: readonly string[];
}

const RULE_PROBLEM_CASES: readonly RuleProblemCase[] = [
  {
    name: "ruleProblems() rejects a high that is not a finite number",
    rule: { ...DEFAULT_RULE, high: NaN },
    problems: ['Rule "high" must be a finite number: received "NaN"'],
  },
  {
    name: "ruleProblems() rejects a low that is not a finite number",
    rule: { ...DEFAULT_RULE, low: -Infinity },
    problems: ['Rule "low" must be a finite number: received "-Infinity"'],
  },
  {
    name: "ruleProblems() rejects a low equal to high",
    rule: { ...DEFAULT_RULE, low: 80 },
    problems: ['Rule "low" must be below "high": received low "80" and high "80"'],
  },
  {
    name: "ruleProblems() rejects a low above high",
    rule: { ...DEFAULT_RULE, low: 90 },
    problems: ['Rule "low" must be below "high": received low "90" and high "80"'],
  },
  {
    name: "ruleProblems() rejects a raiseAfter below 1",
    rule: { ...DEFAULT_RULE, raiseAfter: 0 },
    problems: ['Rule "raiseAfter" must be an integer from 1 to 1000: received "0"'],
  },
  {
    name: "ruleProblems() rejects a clearAfter that is not an integer",
    rule: { ...DEFAULT_RULE, clearAfter: 1.5 },
    problems: ['Rule "clearAfter" must be an integer from 1 to 1000: received "1.5"'],
  },
  {
    name: "ruleProblems() rejects a clearAfter above 1000",
    rule: { ...DEFAULT_RULE, clearAfter: 1001 },
    problems: ['Rule "clearAfter" must be an integer from 1 to 1000: received "1001"'],
  },
];

for (const { name, rule, problems } of RULE_PROBLEM_CASES) {
  Deno.test(name, () => {
    assert.deepEqual(ruleProblems(rule), problems);
  });
}

Deno.test("ruleProblems() reports every problem at once", () => {
  const rule = { high: Infinity, low: NaN, raiseAfter: -1, clearAfter: NaN };
  assert.deepEqual(ruleProblems(rule), [
    'Rule "high" must be a finite number: received "Infinity"',
    'Rule "low" must be a finite number: received "NaN"',
    'Rule "raiseAfter" must be an integer from 1 to 1000: received "-1"',
    'Rule "clearAfter" must be an integer from 1 to 1000: received "NaN"',
  ]);
});

Deno.test("ruleProblems() rejects values that are not numbers at all", () => {
  const rule = { high: "80", low: null, raiseAfter: "2", clearAfter: 2 } as unknown as AlarmRule;
  assert.deepEqual(ruleProblems(rule), [
    'Rule "high" must be a finite number: received "80"',
    'Rule "low" must be a finite number: received "null"',
    'Rule "raiseAfter" must be an integer from 1 to 1000: received "2"',
  ]);
});

// ---------------------------------------------------------------------------
// Properties

/** Valid rules with thresholds in tenths of a degree, so JSON round-trips are exact. */
const ruleArb: fc.Arbitrary<AlarmRule> = fc
  .record({
    low: fc.integer({ min: -400, max: 1200 }),
    band: fc.integer({ min: 1, max: 300 }),
    raiseAfter: fc.integer({ min: 1, max: 5 }),
    clearAfter: fc.integer({ min: 1, max: 5 }),
  })
  .map(({ low, band, raiseAfter, clearAfter }) => ({
    high: (low + band) / 10,
    low: low / 10,
    raiseAfter,
    clearAfter,
  }));

/** Temperatures that hit the thresholds exactly and land hot, cool and between. */
function temperatureArb(rule: AlarmRule): fc.Arbitrary<number> {
  const span = rule.high - rule.low;
  return fc
    .oneof(
      fc.constant(rule.high),
      fc.constant(rule.low),
      fc.double({ min: rule.high, max: rule.high + span, noNaN: true }),
      fc.double({ min: rule.low - span, max: rule.low, noNaN: true }),
      fc.double({
        min: rule.low,
        max: rule.high,
        minExcluded: true,
        maxExcluded: true,
        noNaN: true,
      }),
    )
    .map((t) => t + 0); // no -0, which JSON turns into 0
}

function bandArb(rule: AlarmRule): fc.Arbitrary<number> {
  return fc.double({
    min: rule.low,
    max: rule.high,
    minExcluded: true,
    maxExcluded: true,
    noNaN: true,
  });
}

interface Scenario {
  readonly rule: AlarmRule;
  readonly readings: readonly ReadingSample[];
}

/** In-order readings with consecutive seq, one second apart. */
const cleanScenarioArb: fc.Arbitrary<Scenario> = ruleArb.chain((rule) =>
  fc.array(temperatureArb(rule), { maxLength: 60 }).map((temps) => ({
    rule,
    readings: series(temps),
  }))
);

/** Readings as they arrive from Kafka: duplicates, replays, gaps and clock skew included. */
const messyScenarioArb: fc.Arbitrary<Scenario> = ruleArb.chain((rule) =>
  fc
    .array(
      fc.record({
        seqStep: fc.oneof(fc.constant(1), fc.integer({ min: -3, max: 4 })),
        skew: fc.integer({ min: -5, max: 5 }),
        temperature: temperatureArb(rule),
      }),
      { maxLength: 60 },
    )
    .map((raw) => {
      let seq = 0;
      const readings = raw.map(({ seqStep, skew, temperature }) => {
        seq = Math.max(1, seq + seqStep);
        return { seq, ts: tsAt(seq + skew), temperature };
      });
      return { rule, readings };
    })
);

const scenarioArb: fc.Arbitrary<Scenario> = fc.oneof(cleanScenarioArb, messyScenarioArb);

/** Folds with step(), keeping per reading whether it was applied and the state after it. */
function trace(readings: readonly ReadingSample[], rule: AlarmRule) {
  let state = INITIAL_ALARM_STATE;
  return readings.map((reading) => {
    const result = step(state, reading, rule);
    state = result.state;
    return { reading, ...result };
  });
}

Deno.test("property: a series that never reaches the high threshold never raises", () => {
  fc.assert(
    fc.property(
      ruleArb.chain((rule) =>
        fc.tuple(
          fc.constant(rule),
          fc.array(
            fc.double({ min: rule.low - 1000, max: rule.high, maxExcluded: true, noNaN: true }),
            { maxLength: 80 },
          ),
        )
      ),
      ([rule, temps]) => {
        const { state, critical, transitions } = replay(series(temps), rule);
        assert.deepEqual(transitions, []);
        assert.ok(critical.every((c) => !c));
        assert.equal(state.level, "normal");
        assert.equal(state.since, null);
      },
    ),
    { numRuns: NUM_RUNS },
  );
});

/** Any history, then enough readings at one threshold to be sure of `start`, then band noise. */
function bandNoiseProperty(start: "normal" | "critical") {
  return fc.property(
    cleanScenarioArb.chain(({ rule, readings }) =>
      fc.tuple(
        fc.constant(rule),
        fc.constant(readings),
        fc.array(bandArb(rule), { minLength: 1, maxLength: 60 }),
      )
    ),
    ([rule, history, noise]) => {
      const settle = start === "critical"
        ? Array.from({ length: rule.raiseAfter }, () => rule.high)
        : Array.from({ length: rule.clearAfter }, () => rule.low);
      const from = replay([...history, ...series(settle, history.length + 1)], rule).state;
      assert.equal(from.level, start);
      const firstSeq = history.length + settle.length + 1;
      const { state, critical, transitions } = replay(series(noise, firstSeq), rule, from);
      assert.deepEqual(transitions, []);
      assert.ok(critical.every((c) => c === (start === "critical")));
      assert.equal(state.level, from.level);
      assert.equal(state.since, from.since);
      assert.deepEqual(state.episode, from.episode);
      assert.equal(state.hotStreak, 0);
      assert.equal(state.coolStreak, 0);
    },
  );
}

Deno.test("property: noise confined strictly inside the band never changes a normal state", () => {
  fc.assert(bandNoiseProperty("normal"), { numRuns: NUM_RUNS });
});

Deno.test("property: noise confined strictly inside the band never changes a critical state", () => {
  fc.assert(bandNoiseProperty("critical"), { numRuns: NUM_RUNS });
});

Deno.test("property: replaying a prefix again is a no-op apart from duplicates", () => {
  fc.assert(
    fc.property(scenarioArb, fc.nat(), ({ rule, readings }, cut) => {
      const prefix = readings.slice(0, cut % (readings.length + 1));
      const first = replay(readings, rule);
      const again = replay(prefix, rule, first.state);
      const { counters } = first.state;
      assert.deepEqual(again.transitions, []);
      assert.ok(again.critical.every((c) => c === (first.state.level === "critical")));
      assert.deepEqual(again.state, {
        ...first.state,
        counters: { ...counters, duplicates: counters.duplicates + prefix.length },
      });
    }),
    { numRuns: NUM_RUNS },
  );
});

Deno.test("property: resuming from a saved state (JSON round-trip) at any point gives the same result as processing the series whole", () => {
  fc.assert(
    fc.property(scenarioArb, fc.nat(), ({ rule, readings }, cut) => {
      const at = cut % (readings.length + 1);
      const whole = replay(readings, rule);
      const head = replay(readings.slice(0, at), rule);
      const saved: AlarmState = JSON.parse(JSON.stringify(head.state));
      const tail = replay(readings.slice(at), rule, saved);
      assert.deepEqual(tail.state, whole.state);
      assert.deepEqual([...head.critical, ...tail.critical], whole.critical);
      assert.deepEqual([...head.transitions, ...tail.transitions], whole.transitions);
    }),
    { numRuns: NUM_RUNS },
  );
});

Deno.test("property: raised and cleared transitions alternate, starting with raised", () => {
  fc.assert(
    fc.property(scenarioArb, ({ rule, readings }) => {
      const { transitions } = replay(readings, rule);
      transitions.forEach((t, i) => {
        assert.equal(t.type, i % 2 === 0 ? "raised" : "cleared");
        if (t.type === "cleared") {
          const raised = transitions[i - 1]!;
          assert.equal(t.episode.raisedSeq, raised.seq);
          assert.equal(t.episode.raisedAt, raised.ts);
          assert.ok(t.episode.peakTemperature >= raised.episode.peakTemperature);
          assert.ok(t.seq > raised.seq);
        }
      });
    }),
    { numRuns: NUM_RUNS },
  );
});

Deno.test("property: is_critical after a reading equals state.level === 'critical'", () => {
  fc.assert(
    fc.property(scenarioArb, ({ rule, readings }) => {
      const steps = trace(readings, rule);
      const { critical, state } = replay(readings, rule);
      assert.deepEqual(critical, steps.map((s) => s.state.level === "critical"));
      assert.deepEqual(state, steps.at(-1)?.state ?? INITIAL_ALARM_STATE);
      for (const s of steps) {
        assert.equal(s.state.episode !== null, s.state.level === "critical");
      }
    }),
    { numRuns: NUM_RUNS },
  );
});

Deno.test("property: a raise needs at least raiseAfter consecutive readings >= high", () => {
  fc.assert(
    fc.property(scenarioArb, ({ rule, readings }) => {
      const applied = trace(readings, rule).filter((s) => s.applied);
      applied.forEach((s, i) => {
        if (s.transition?.type !== "raised") return;
        assert.ok(i + 1 >= rule.raiseAfter);
        const streak = applied
          .slice(i + 1 - rule.raiseAfter, i + 1)
          .map((a) => a.reading.temperature);
        assert.ok(streak.every((t) => t >= rule.high), `streak ${streak} before a raise`);
        assert.equal(s.transition.episode.peakTemperature, Math.max(...streak));
      });
    }),
    { numRuns: NUM_RUNS },
  );
});

Deno.test("property: a clear needs at least clearAfter consecutive readings <= low", () => {
  fc.assert(
    fc.property(scenarioArb, ({ rule, readings }) => {
      const applied = trace(readings, rule).filter((s) => s.applied);
      applied.forEach((s, i) => {
        if (s.transition?.type !== "cleared") return;
        assert.ok(i + 1 >= rule.clearAfter);
        const streak = applied
          .slice(i + 1 - rule.clearAfter, i + 1)
          .map((a) => a.reading.temperature);
        assert.ok(streak.every((t) => t <= rule.low), `streak ${streak} before a clear`);
      });
    }),
    { numRuns: NUM_RUNS },
  );
});

Deno.test("property: raiseAfter readings >= high always leave the device critical, clearAfter <= low normal", () => {
  fc.assert(
    fc.property(scenarioArb, ({ rule, readings }) => {
      let hot = 0;
      let cool = 0;
      for (const { reading, state, applied } of trace(readings, rule)) {
        if (!applied) continue;
        hot = reading.temperature >= rule.high ? hot + 1 : 0;
        cool = reading.temperature <= rule.low ? cool + 1 : 0;
        if (hot >= rule.raiseAfter) assert.equal(state.level, "critical");
        if (cool >= rule.clearAfter) assert.equal(state.level, "normal");
      }
    }),
    { numRuns: NUM_RUNS },
  );
});

Deno.test("property: step() never throws and accounts for every reading, whatever the temperature", () => {
  fc.assert(
    fc.property(
      ruleArb,
      fc.array(fc.record({ seq: fc.integer({ min: 0, max: 50 }), temperature: fc.double() }), {
        maxLength: 60,
      }),
      (rule, raw) => {
        const readings = raw.map(({ seq, temperature }) => ({ seq, ts: tsAt(seq), temperature }));
        const steps = trace(readings, rule);
        const { counters } = steps.at(-1)?.state ?? INITIAL_ALARM_STATE;
        assert.equal(counters.readings + counters.duplicates, readings.length);
        assert.equal(counters.readings, steps.filter((s) => s.applied).length);
        for (const { state } of steps) {
          const peak = state.episode?.peakTemperature;
          assert.ok(peak === undefined || !Number.isNaN(peak), "NaN became an episode peak");
        }
      },
    ),
    { numRuns: NUM_RUNS },
  );
});
