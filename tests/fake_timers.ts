/**
 * Timers on a manual clock, for actors that take a `Timers` port: nothing
 * runs until the test calls `runDue()`, and then only what is due by the
 * clock's `now()`, in due order.
 *
 * @module
 */
import type { ScheduledTimer, Timers } from "../actors/timers.ts";

interface Entry {
  readonly due: number;
  readonly order: number;
  readonly run: () => void;
}

export class FakeTimers implements Timers {
  readonly #now: () => number;
  readonly #pending = new Set<Entry>();
  #order = 0;

  constructor(now: () => number) {
    this.#now = now;
  }

  /** Callbacks scheduled and neither run nor cancelled. */
  get pending(): number {
    return this.#pending.size;
  }

  schedule(ms: number, run: () => void): ScheduledTimer {
    const entry = { due: this.#now() + Math.max(0, ms), order: this.#order++, run };
    this.#pending.add(entry);
    return { cancel: () => this.#pending.delete(entry) };
  }

  /** Runs every callback due by now, earliest first (also those they schedule, if due); returns how many ran. */
  runDue(): number {
    let ran = 0;
    for (;;) {
      let next: Entry | undefined;
      for (const e of this.#pending) {
        if (e.due > this.#now()) continue;
        if (!next || e.due < next.due || (e.due === next.due && e.order < next.order)) next = e;
      }
      if (!next) return ran;
      this.#pending.delete(next);
      next.run();
      ran++;
    }
  }
}
