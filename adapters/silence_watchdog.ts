/**
 * Gives up on a peer that has been silent for too long: `heard()` on every
 * sign of life, `onSilent` once when none came for `giveUpMs`. Checked on a
 * timer from the injected {@linkcode Timers}, so tests drive it with fake time.
 *
 * @module
 */
import { realTimers, type TimerId, type Timers } from "../actors/timers.ts";

export interface SilenceWatchdogOptions {
  readonly giveUpMs: number;
  /** Called once, with how long the peer has been silent. */
  readonly onSilent: (silentMs: number) => void;
  readonly timers?: Timers;
}

export class SilenceWatchdog implements Disposable {
  readonly #timers: Timers;
  readonly #options: SilenceWatchdogOptions;
  #lastHeard: number;
  #interval: TimerId | undefined;

  /** Starts watching; the silence is counted from now. */
  constructor(options: SilenceWatchdogOptions) {
    this.#options = options;
    this.#timers = options.timers ?? realTimers;
    this.#lastHeard = this.#timers.now();
    const { giveUpMs } = options;
    // Checking a few times per period keeps the overshoot below a quarter of it (at most 5 s).
    this.#interval = this.#timers.setInterval(() => this.#check(), Math.min(giveUpMs / 4, 5000));
  }

  /** A sign of life: the silence starts over. */
  heard(): void {
    this.#lastHeard = this.#timers.now();
  }

  /** Stops watching; `onSilent` is not called after this. */
  [Symbol.dispose](): void {
    this.#timers.clearInterval(this.#interval);
    this.#interval = undefined;
  }

  #check() {
    const silentMs = this.#timers.now() - this.#lastHeard;
    if (silentMs < this.#options.giveUpMs) return;
    this[Symbol.dispose]();
    this.#options.onSilent(silentMs);
  }
}
