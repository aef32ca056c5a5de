/**
 * Backtesting a candidate alarm rule: the stored readings of each device,
 * replayed in seq order through the same pure hysteresis step the processors
 * apply, give the overheat episodes that rule would have raised. Pure: no
 * I/O, no clock.
 *
 * Each device starts from the initial (normal) state at the first reading
 * given: what it was in before the window is not reconstructed, so an episode
 * the candidate rule would have opened earlier is not in the result.
 *
 * @module
 */
import {
  type AlarmRule,
  type Episode,
  INITIAL_ALARM_STATE,
  type ReadingSample,
  step,
} from "./hysteresis.ts";

/** A reading to replay: the rule's sample and the device it came from. */
export interface DeviceSample extends ReadingSample {
  readonly deviceId: string;
}

/** An episode the candidate rule raises; `cleared` is absent while it is still open at the end. */
export interface BacktestEpisode extends Episode {
  readonly deviceId: string;
  readonly cleared?: { readonly seq: number; readonly ts: string };
}

export interface BacktestResult {
  /** By device id, then raisedSeq. */
  readonly episodes: readonly BacktestEpisode[];
  readonly devices: number;
  /** Readings applied (a repeated seq is not applied twice). */
  readonly readings: number;
}

/**
 * Replays each device's samples, sorted by seq, from the initial state with `rule` (assumed
 * valid, see `ruleProblems()`), and collects every episode it raises.
 */
export function backtest(samples: readonly DeviceSample[], rule: AlarmRule): BacktestResult {
  const byDevice = new Map<string, DeviceSample[]>();
  for (const sample of samples) {
    const own = byDevice.get(sample.deviceId);
    if (own) own.push(sample);
    else byDevice.set(sample.deviceId, [sample]);
  }
  const episodes: BacktestEpisode[] = [];
  let readings = 0;
  for (const deviceId of [...byDevice.keys()].sort()) {
    const own = byDevice.get(deviceId)!.sort((a, b) => a.seq - b.seq);
    let state = INITIAL_ALARM_STATE;
    for (const sample of own) {
      const result = step(state, sample, rule);
      state = result.state;
      const t = result.transition;
      if (t?.type === "cleared") {
        episodes.push({ deviceId, ...t.episode, cleared: { seq: t.seq, ts: t.ts } });
      }
    }
    readings += state.counters.readings;
    if (state.episode) episodes.push({ deviceId, ...state.episode });
  }
  return { episodes, devices: byDevice.size, readings };
}
