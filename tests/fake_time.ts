/**
 * A fake clock and timers in the style of Deno std's `FakeTime`, passed to
 * the code under test as its {@linkcode Timers} (nothing global is replaced).
 * Time stands still until the test moves it with `tick()` / `tickAsync()`;
 * every timer due on the way runs in due order, timers due at the same
 * millisecond in the order they were set.
 *
 * @module
 */
import type { TimerId, Timers } from "../actors/timers.ts";
import { settle } from "./wait.ts";

interface FakeTimer {
  readonly id: TimerId;
  readonly callback: () => void;
  due: number;
  /** Set for an interval: its period. */
  readonly every: number | undefined;
  /** Orders timers due at the same millisecond. */
  order: number;
}

export class FakeTime implements Timers, Disposable {
  #now: number;
  #nextId = 1;
  #order = 0;
  readonly #timers = new Map<TimerId, FakeTimer>();

  /** `start` is the clock's first reading, in ms since the epoch. */
  constructor(start = Date.UTC(2030, 0, 1)) {
    this.#now = start;
  }

  now = (): number => this.#now;

  /** Timers and intervals waiting to run. */
  get pending(): number {
    return this.#timers.size;
  }

  /** How long from now each waiting timer is due, soonest first (what a backoff chose). */
  get dueIn(): number[] {
    return [...this.#timers.values()].map((timer) => timer.due - this.#now).sort((a, b) => a - b);
  }

  setTimeout = (callback: () => void, ms: number): TimerId => this.#add(callback, ms, undefined);

  clearTimeout = (id: TimerId | undefined): void => {
    if (id !== undefined) this.#timers.delete(id);
  };

  setInterval = (callback: () => void, ms: number): TimerId =>
    this.#add(callback, ms, Math.max(1, ms));

  clearInterval = (id: TimerId | undefined): void => this.clearTimeout(id);

  /** Moves the clock `ms` forward, running the timers due on the way, synchronously. */
  tick(ms = 0): void {
    const until = this.#now + ms;
    for (let timer = this.#next(until); timer; timer = this.#next(until)) this.#run(timer);
    this.#now = until;
  }

  /**
   * Moves the clock `ms` forward like `tick()`, but lets promises settle before
   * and after each timer, so actors handle what a timer sent them before the
   * next one fires.
   */
  async tickAsync(ms = 0): Promise<void> {
    const until = this.#now + ms;
    await settle();
    for (let timer = this.#next(until); timer; timer = this.#next(until)) {
      this.#run(timer);
      await settle();
    }
    this.#now = until;
  }

  /** Runs the next timer (moving the clock to it) and lets promises settle; false if none. */
  async next(): Promise<boolean> {
    const timer = this.#next(Infinity);
    if (!timer) return false;
    this.#run(timer);
    await settle();
    return true;
  }

  /** Forgets every timer. */
  [Symbol.dispose](): void {
    this.#timers.clear();
  }

  #add(callback: () => void, ms: number, every: number | undefined): TimerId {
    const id = this.#nextId++;
    const delay = Math.max(0, Number.isFinite(ms) ? ms : 0);
    this.#timers.set(id, { id, callback, due: this.#now + delay, every, order: this.#order++ });
    return id;
  }

  #next(until: number): FakeTimer | undefined {
    let first: FakeTimer | undefined;
    for (const timer of this.#timers.values()) {
      if (timer.due > until) continue;
      if (
        !first || timer.due < first.due || (timer.due === first.due && timer.order < first.order)
      ) {
        first = timer;
      }
    }
    return first;
  }

  #run(timer: FakeTimer): void {
    this.#now = Math.max(this.#now, timer.due);
    if (timer.every === undefined) this.#timers.delete(timer.id);
    else {
      timer.due += timer.every;
      timer.order = this.#order++;
    }
    timer.callback();
  }
}
