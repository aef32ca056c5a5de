/**
 * One device's processor: owns that device's alarm state, applies the pure
 * hysteresis step to each reading in order, and answers with the documents to
 * store. It shares nothing with other devices' processors.
 *
 * The actor adopts the new state as soon as it computed it; if storing the
 * result fails, its supervisor discards the actor, and the next owner restores
 * the last stored state and replays — the step is deterministic, so the replay
 * produces the same documents. A reading whose seq the device already applied
 * is not applied again; it is handed back as skipped, for the supervisor to
 * check against the store (a replay, a conflicting reuse of the seq, or late).
 *
 * A reading that ends a silence longer than its `offlineAfterMs` closes that
 * offline episode (domain/offline.ts) whether or not it was noticed while
 * open (actors/offline_watch.ts): episodes depend on the readings alone.
 *
 * A reading carries the rule it was made under (a sensor adopts a changed rule
 * between two readings: docs/http-api.md). The first applied reading whose rule
 * differs from the one in force makes it the rule in force from its seq on
 * (`ruleSeq`, on the device and on the overheat alerts it writes): it depends on
 * the readings alone too, so a replay records the same seq.
 *
 * @module
 */
import { Actor } from "./actor.ts";
import { type AlarmRule, type AlarmState, step, type Transition } from "../domain/hysteresis.ts";
import {
  type AlertDoc,
  type DeviceDoc,
  type ReadingDoc,
  toAlertDoc,
  toDeviceDoc,
  toOfflineAlertDoc,
  toReadingDoc,
} from "../schemas/documents.ts";
import { offlineGap } from "../domain/offline.ts";
import { isDeepStrictEqual } from "node:util";
import type { Reading } from "../schemas/reading.ts";

/** What one batch of a device's readings produced. */
export interface DeviceOutput {
  readonly readings: readonly ReadingDoc[];
  /** The reading behind each of `readings`, in the same order. */
  readonly applied: readonly Reading[];
  /** Readings not applied because their seq was not above the device's last applied one. */
  readonly skipped: readonly Reading[];
  readonly alerts: readonly AlertDoc[];
  readonly device: DeviceDoc;
  readonly transitions: readonly Transition[];
  /** Applied readings whose `ts` is earlier than the previous applied reading's. */
  readonly outOfOrder: number;
  /** Applied readings whose seq skipped some (e.g. the unused rest of a sensor's seq block). */
  readonly gaps: number;
  /** Seqs skipped by those gaps. */
  readonly skippedSeqs: number;
}

export type ProcessorMsg =
  | {
    readonly type: "apply";
    readonly readings: readonly Reading[];
    readonly processedAt: Date;
    readonly reply: (out: DeviceOutput) => void;
  }
  | { readonly type: "state"; readonly reply: (state: AlarmState) => void };

/** Creates the actor for one device, starting from its restored (or initial) state. */
export function createProcessor(
  deviceId: string,
  initial: AlarmState,
  rules: {
    readonly default: AlarmRule;
    readonly current: AlarmRule;
    /** seq from which `current` is in force, restored with it (undefined: not known yet). */
    readonly since?: number | undefined;
    /** The offline limit of the last applied reading, restored with the state (none: unset). */
    readonly offlineAfterMs?: number | undefined;
  },
  onFailure: (error: unknown) => void,
): Actor<ProcessorMsg> {
  let state = initial;
  const defaultRule = rules.default;
  // The rule last applied, restored with the state, so a batch of replayed
  // duplicates does not write the default over a device's own thresholds.
  let rule = rules.current;
  let ruleSeq = rules.since;
  // Kept on the device state, so the partition's next owner watches it for silence.
  let offlineAfterMs = rules.offlineAfterMs;

  function apply(readings: readonly Reading[], processedAt: Date): DeviceOutput {
    const docs: ReadingDoc[] = [];
    const applied: Reading[] = [];
    const skipped: Reading[] = [];
    const transitions: Transition[] = [];
    // The latest snapshot of each alert touched in this batch; last write wins.
    const alerts = new Map<string, AlertDoc>();
    let gaps = 0;
    let skippedSeqs = 0;
    const outOfOrderBefore = state.counters.outOfOrder;
    // The last reading of this batch that changed the open episode's snapshot (its episode or the
    // rule in force): the snapshot's `asOfSeq`, whatever the batch boundaries.
    let changedSeq: number | undefined;
    for (const reading of readings) {
      const readingRule = reading.thresholds ?? defaultRule;
      const before = state;
      const result = step(state, reading, readingRule);
      if (!result.applied) {
        skipped.push(reading);
        state = result.state;
        continue;
      }
      // ---- rule changes at run time: the first reading under a new rule is where it applies.
      const ruleSeqBefore = ruleSeq;
      if (ruleSeq === undefined || !isDeepStrictEqual(readingRule, rule)) ruleSeq = reading.seq;
      rule = readingRule;
      if (state.lastSeq > 0 && reading.seq > state.lastSeq + 1) {
        gaps++;
        skippedSeqs += reading.seq - state.lastSeq - 1;
      }
      state = result.state;
      if (
        state.episode &&
        (ruleSeq !== ruleSeqBefore || !isDeepStrictEqual(state.episode, before.episode))
      ) changedSeq = reading.seq;
      docs.push(toReadingDoc(reading, state.level === "critical", processedAt));
      applied.push(reading);
      offlineAfterMs = reading.offlineAfterMs;
      const silence = reading.offlineAfterMs === undefined || before.lastTs === null
        ? null
        : offlineGap({ seq: before.lastSeq, ts: before.lastTs }, reading, reading.offlineAfterMs);
      if (silence) {
        const doc = toOfflineAlertDoc(deviceId, silence);
        alerts.set(doc._id, doc);
      }
      const t = result.transition;
      if (t) {
        transitions.push(t);
        const doc = t.type === "raised"
          ? toAlertDoc(deviceId, t.episode, rule)
          : toAlertDoc(deviceId, t.episode, rule, { seq: t.seq, ts: t.ts });
        alerts.set(doc._id, withRuleSeq(doc, ruleSeq));
      }
    }
    // Keep an open episode's snapshot current (its peak, the rule in force) even when this batch
    // had no transition, as of the last reading that changed it. A batch that changed neither
    // writes nothing: the same snapshot again would be an update of a stored alert, a store
    // round trip that changes nothing (bench/RESULTS.md, "Live gap").
    if (state.episode && changedSeq !== undefined) {
      const doc = toAlertDoc(deviceId, state.episode, rule, undefined, changedSeq);
      alerts.set(doc._id, withRuleSeq(doc, ruleSeq));
    }
    return {
      readings: docs,
      applied,
      skipped,
      alerts: [...alerts.values()],
      device: toDeviceDoc(deviceId, state, rule, processedAt, ruleSeq, offlineAfterMs),
      transitions,
      outOfOrder: state.counters.outOfOrder - outOfOrderBefore,
      gaps,
      skippedSeqs,
    };
  }

  return new Actor<ProcessorMsg>((msg) => {
    switch (msg.type) {
      case "apply":
        return msg.reply(apply(msg.readings, msg.processedAt));
      case "state":
        return msg.reply(state);
      default:
        return msg satisfies never;
    }
  }, { capacity: 64, name: `processor ${deviceId}`, onFailure });
}

/** The alert with the seq from which its `thresholds` were in force, when known. */
function withRuleSeq(doc: AlertDoc, ruleSeq: number | undefined): AlertDoc {
  return ruleSeq === undefined ? doc : { ...doc, ruleSeq };
}
