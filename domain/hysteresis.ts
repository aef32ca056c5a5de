/**
 * The overheat alarm rule: a pure hysteresis state machine over one device's
 * temperature readings. No I/O, no clock reads and no randomness — the
 * reading's own `seq` and `ts` are the clock, so a replay after a crash
 * reproduces exactly the same states and transitions.
 *
 * @module
 */

/** Thresholds and debounce counts of the overheat alarm. */
export interface AlarmRule {
  /** Raise threshold in °C: a reading `>= high` counts as hot. */
  readonly high: number;
  /** Clear threshold in °C: a reading `<= low` counts as cool. */
  readonly low: number;
  /** Consecutive hot readings needed to raise (integer from 1 to 1000). */
  readonly raiseAfter: number;
  /** Consecutive cool readings needed to clear (integer from 1 to 1000). */
  readonly clearAfter: number;
}

/** Raise at 80 °C, clear at 70 °C, two consecutive readings each way. */
export const DEFAULT_RULE: AlarmRule = { high: 80, low: 70, raiseAfter: 2, clearAfter: 2 };

/** Bounds of `raiseAfter` and `clearAfter`: the rule schema and the config use these. */
export const RULE_COUNT_RANGE = { min: 1, max: 1000 } as const;

/** Every problem with a rule, as messages; empty when the rule is valid. */
export function ruleProblems(rule: AlarmRule): string[] {
  const problems: string[] = [];
  for (const key of ["high", "low"] as const) {
    if (!Number.isFinite(rule[key])) {
      problems.push(`Rule "${key}" must be a finite number: received "${String(rule[key])}"`);
    }
  }
  if (Number.isFinite(rule.high) && Number.isFinite(rule.low) && !(rule.low < rule.high)) {
    problems.push(
      `Rule "low" must be below "high": received low "${rule.low}" and high "${rule.high}"`,
    );
  }
  for (const key of ["raiseAfter", "clearAfter"] as const) {
    const count = rule[key];
    if (
      !Number.isInteger(count) || count < RULE_COUNT_RANGE.min || count > RULE_COUNT_RANGE.max
    ) {
      problems.push(
        `Rule "${key}" must be an integer from ${RULE_COUNT_RANGE.min} to ${RULE_COUNT_RANGE.max}: received "${
          String(count)
        }"`,
      );
    }
  }
  return problems;
}

/** Alarm level of one device. */
export type AlarmLevel = "normal" | "critical";

/** An overheat episode: opened when the alarm is raised, closed when it clears. */
export interface Episode {
  readonly raisedSeq: number;
  readonly raisedAt: string;
  /** Highest temperature seen from the start of the raising hot streak until now. */
  readonly peakTemperature: number;
}

/** Bookkeeping of what arrived, for metrics and diagnosis. */
export interface AlarmCounters {
  /** Readings applied (duplicates excluded). */
  readonly readings: number;
  /** Readings not applied because their `seq` was not above the last applied one. */
  readonly duplicates: number;
  /** Applied readings whose `seq` skipped at least one number. */
  readonly gaps: number;
  /** Applied readings whose `ts` is earlier than the previous applied reading's. */
  readonly outOfOrder: number;
}

/**
 * Alarm state of one device. Plain JSON-serializable data, so it can be
 * stored and restored after a crash.
 */
export interface AlarmState {
  readonly level: AlarmLevel;
  /** `ts` of the reading that moved the device to its current level; null if it never changed level. */
  readonly since: string | null;
  /** Highest `seq` applied; 0 when none yet. */
  readonly lastSeq: number;
  /** `ts` of the last applied reading. */
  readonly lastTs: string | null;
  /** Consecutive hot readings while normal; 0 while critical. */
  readonly hotStreak: number;
  /** Highest temperature of the current hot streak; null when `hotStreak` is 0. */
  readonly streakPeak: number | null;
  /** Consecutive cool readings while critical; 0 while normal. */
  readonly coolStreak: number;
  /** The open overheat episode while critical, else null. */
  readonly episode: Episode | null;
  readonly counters: AlarmCounters;
}

/** A device that has seen no readings yet. */
export const INITIAL_ALARM_STATE: AlarmState = {
  level: "normal",
  since: null,
  lastSeq: 0,
  lastTs: null,
  hotStreak: 0,
  streakPeak: null,
  coolStreak: 0,
  episode: null,
  counters: { readings: 0, duplicates: 0, gaps: 0, outOfOrder: 0 },
};

/** What the alarm rule needs of a reading; `ts` is an ISO-8601 UTC string. */
export interface ReadingSample {
  readonly seq: number;
  readonly ts: string;
  readonly temperature: number;
}

/** A change of alarm level, caused by the reading it describes. */
export type Transition =
  | {
    readonly type: "raised";
    readonly seq: number;
    readonly ts: string;
    readonly temperature: number;
    readonly episode: Episode;
  }
  | {
    readonly type: "cleared";
    readonly seq: number;
    readonly ts: string;
    readonly temperature: number;
    /** The closed episode, with its final peak. */
    readonly episode: Episode;
  };

/** Outcome of applying one reading. */
export interface StepResult {
  readonly state: AlarmState;
  /**
   * False for a reading whose `seq` was already applied — a replay, or a reused or late seq,
   * which the store tells apart — and that changes only `counters.duplicates`.
   */
  readonly applied: boolean;
  readonly transition: Transition | null;
}

/**
 * Applies one reading to a device's alarm state; never mutates its inputs.
 * The rule is assumed valid (see {@linkcode ruleProblems}). A NaN temperature
 * is neither hot nor cool: like a reading between the thresholds it breaks
 * both streaks, and it never becomes an episode's peak.
 */
export function step(state: AlarmState, reading: ReadingSample, rule: AlarmRule): StepResult {
  const { counters } = state;
  if (reading.seq <= state.lastSeq) {
    return {
      state: { ...state, counters: { ...counters, duplicates: counters.duplicates + 1 } },
      applied: false,
      transition: null,
    };
  }
  const gap = state.lastSeq > 0 && reading.seq > state.lastSeq + 1;
  // Out-of-order timestamps are counted but still applied: `seq` decides the order.
  const outOfOrder = state.lastTs !== null && Date.parse(reading.ts) < Date.parse(state.lastTs);
  const advanced: AlarmState = {
    ...state,
    lastSeq: reading.seq,
    lastTs: reading.ts,
    counters: {
      readings: counters.readings + 1,
      duplicates: counters.duplicates,
      gaps: counters.gaps + (gap ? 1 : 0),
      outOfOrder: counters.outOfOrder + (outOfOrder ? 1 : 0),
    },
  };
  return state.level === "normal"
    ? stepNormal(advanced, reading, rule)
    : stepCritical(advanced, reading, rule);
}

function stepNormal(state: AlarmState, reading: ReadingSample, rule: AlarmRule): StepResult {
  const { seq, ts, temperature } = reading;
  if (!(temperature >= rule.high)) {
    return {
      state: { ...state, hotStreak: 0, streakPeak: null, coolStreak: 0 },
      applied: true,
      transition: null,
    };
  }
  const hotStreak = state.hotStreak + 1;
  const streakPeak = state.streakPeak === null
    ? temperature
    : Math.max(state.streakPeak, temperature);
  if (hotStreak < rule.raiseAfter) {
    return {
      state: { ...state, hotStreak, streakPeak, coolStreak: 0 },
      applied: true,
      transition: null,
    };
  }
  const episode: Episode = { raisedSeq: seq, raisedAt: ts, peakTemperature: streakPeak };
  return {
    state: {
      ...state,
      level: "critical",
      since: ts,
      hotStreak: 0,
      streakPeak: null,
      coolStreak: 0,
      episode,
    },
    applied: true,
    transition: { type: "raised", seq, ts, temperature, episode },
  };
}

function stepCritical(state: AlarmState, reading: ReadingSample, rule: AlarmRule): StepResult {
  const { seq, ts, temperature } = reading;
  const opened = state.episode ?? { raisedSeq: seq, raisedAt: ts, peakTemperature: temperature };
  const episode: Episode = temperature > opened.peakTemperature
    ? { ...opened, peakTemperature: temperature }
    : opened;
  const coolStreak = temperature <= rule.low ? state.coolStreak + 1 : 0;
  if (coolStreak < rule.clearAfter) {
    return {
      state: { ...state, hotStreak: 0, streakPeak: null, coolStreak, episode },
      applied: true,
      transition: null,
    };
  }
  return {
    state: {
      ...state,
      level: "normal",
      since: ts,
      hotStreak: 0,
      streakPeak: null,
      coolStreak: 0,
      episode: null,
    },
    applied: true,
    transition: { type: "cleared", seq, ts, temperature, episode },
  };
}

/** Final state, the level after each reading and every transition of a replay. */
export interface ReplayResult {
  state: AlarmState;
  /** Per reading: whether the device is critical after it (unchanged by a duplicate). */
  critical: boolean[];
  transitions: Transition[];
}

/** Folds many readings with {@linkcode step}, starting from `from` (default: no readings yet). */
export function replay(
  readings: readonly ReadingSample[],
  rule: AlarmRule,
  from: AlarmState = INITIAL_ALARM_STATE,
): ReplayResult {
  let state = from;
  const critical: boolean[] = [];
  const transitions: Transition[] = [];
  for (const reading of readings) {
    const result = step(state, reading, rule);
    state = result.state;
    critical.push(state.level === "critical");
    if (result.transition !== null) transitions.push(result.transition);
  }
  return { state, critical, transitions };
}
