/**
 * The clock and timers that time-driven code schedules on. Production code
 * uses {@linkcode realTimers}; tests pass a fake one (`tests/fake_time.ts`)
 * and move time explicitly instead of sleeping.
 *
 * @module
 */

/** An opaque handle returned by `setTimeout` / `setInterval`. */
export type TimerId = ReturnType<typeof setTimeout> | number;

export interface Timers {
  /** Milliseconds since the epoch, like `Date.now()`. */
  now(): number;
  setTimeout(callback: () => void, ms: number): TimerId;
  clearTimeout(id: TimerId | undefined): void;
  setInterval(callback: () => void, ms: number): TimerId;
  clearInterval(id: TimerId | undefined): void;
}

/** The runtime's own clock and timers. */
export const realTimers: Timers = {
  now: () => Date.now(),
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (id) => clearTimeout(id),
  setInterval: (callback, ms) => setInterval(callback, ms),
  clearInterval: (id) => clearInterval(id),
};
