/**
 * Port: one-shot timers, so the actors' time-driven work (checkpoints,
 * passivation sweeps) can be driven by tests without sleeping.
 *
 * @module
 */

export interface ScheduledTimer {
  /** Keeps the callback from running, if it has not yet. */
  cancel(): void;
}

export interface Timers {
  /** Runs `run` once, `ms` from now. */
  schedule(ms: number, run: () => void): ScheduledTimer;
}

/** The runtime's timers. */
export const realTimers: Timers = {
  schedule(ms, run) {
    const id = setTimeout(run, ms);
    return { cancel: () => clearTimeout(id) };
  },
};
