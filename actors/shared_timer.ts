/**
 * One timer for many actors. A fleet of 100 000 sensors, each with its own
 * `setTimeout`, spends much of its CPU and heap on the runtime's timer
 * objects (see bench/RESULTS.md); here callbacks wait in buckets keyed by
 * their due millisecond, a min-heap orders the buckets, and a single
 * `setTimeout` is armed for the earliest one. Callbacks due in the same
 * millisecond run in the order they were scheduled.
 *
 * @module
 */
import { realTimers, type TimerId, type Timers } from "./timers.ts";

/**
 * The longest one firing may run callbacks before it yields to I/O and other
 * timers (the rest run on the next turn): an overloaded fleet of 1 000 000
 * sensors otherwise kept the event loop from ever handling a signal.
 */
const MAX_FIRE_MS = 20;

/**
 * A scheduled callback, as returned by `schedule()` to cancel it. An object
 * that is its own entry (`add()`) saves a closure and an entry per actor; its
 * `due` must not change while it is scheduled.
 */
export interface TimerEntry {
  readonly due: number;
  run(): void;
}

export class SharedTimer implements Disposable {
  readonly #now: () => number;
  readonly #timers: Timers;
  readonly #buckets = new Map<number, TimerEntry[]>();
  /** Due times of the buckets (a bucket emptied by cancel() leaves a stale key, skipped). */
  readonly #heap: number[] = [];
  #timer: TimerId | undefined;
  #armedFor = Infinity;
  #firing = false;
  #size = 0;

  /**
   * `timers` arms the one underlying timer; `now` is the clock that due times
   * refer to (the sensors' clock, by default the timers' own).
   */
  constructor(timers: Timers = realTimers, now: () => number = () => timers.now()) {
    this.#timers = timers;
    this.#now = now;
  }

  /** Callbacks waiting to run. */
  get size(): number {
    return this.#size;
  }

  /** Runs `run` once `now() >= due`; returns the entry for `cancel()`. */
  schedule(due: number, run: () => void): TimerEntry {
    return this.add({ due, run });
  }

  /** Calls `entry.run()` once `now() >= entry.due`; returns `entry` for `cancel()`. */
  add<T extends TimerEntry>(entry: T): T {
    const key = Math.ceil(entry.due);
    const bucket = this.#buckets.get(key);
    if (bucket) bucket.push(entry);
    else {
      this.#buckets.set(key, [entry]);
      heapPush(this.#heap, key);
    }
    this.#size++;
    if (!this.#firing && key < this.#armedFor) this.#arm(key);
    return entry;
  }

  /** Forgets a scheduled callback; the timer is released once nothing is scheduled. */
  cancel(entry: TimerEntry): void {
    const key = Math.ceil(entry.due);
    const bucket = this.#buckets.get(key);
    const i = bucket ? bucket.indexOf(entry) : -1;
    if (i < 0) return;
    bucket!.splice(i, 1);
    this.#size--;
    if (bucket!.length === 0) this.#buckets.delete(key);
    if (this.#size === 0) this[Symbol.dispose]();
  }

  /** Cancels everything. */
  [Symbol.dispose](): void {
    this.#timers.clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#armedFor = Infinity;
    this.#buckets.clear();
    this.#heap.length = 0;
    this.#size = 0;
  }

  #arm(key: number) {
    this.#timers.clearTimeout(this.#timer);
    this.#armedFor = key;
    this.#timer = this.#timers.setTimeout(() => this.#fire(), Math.max(0, key - this.#now()));
  }

  #fire() {
    this.#timer = undefined;
    this.#armedFor = Infinity;
    this.#firing = true;
    try {
      const now = this.#now();
      const yieldAt = performance.now() + MAX_FIRE_MS;
      outer: while (this.#heap.length > 0 && this.#heap[0]! <= now) {
        const key = heapPop(this.#heap);
        const bucket = this.#buckets.get(key);
        if (!bucket) continue;
        this.#buckets.delete(key);
        this.#size -= bucket.length;
        // A callback may schedule again or cancel: the bucket is already detached.
        for (let i = 0; i < bucket.length; i++) {
          if (performance.now() >= yieldAt) {
            // Out of time: the rest of this bucket runs first on the next turn.
            const rest = bucket.slice(i);
            const later = this.#buckets.get(key);
            this.#buckets.set(key, later ? rest.concat(later) : rest);
            if (!later) heapPush(this.#heap, key);
            this.#size += rest.length;
            break outer;
          }
          bucket[i]!.run();
        }
      }
    } finally {
      this.#firing = false;
      while (this.#heap.length > 0 && !this.#buckets.has(this.#heap[0]!)) heapPop(this.#heap);
      if (this.#heap.length > 0) this.#arm(this.#heap[0]!);
    }
  }
}

function heapPush(heap: number[], x: number) {
  let i = heap.length;
  heap.push(x);
  while (i > 0) {
    const parent = (i - 1) >> 1;
    if (heap[parent]! <= x) break;
    heap[i] = heap[parent]!;
    i = parent;
  }
  heap[i] = x;
}

function heapPop(heap: number[]): number {
  const top = heap[0]!;
  const last = heap.pop()!;
  if (heap.length > 0) {
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= heap.length) break;
      const r = l + 1;
      const child = r < heap.length && heap[r]! < heap[l]! ? r : l;
      if (heap[child]! >= last) break;
      heap[i] = heap[child]!;
      i = child;
    }
    heap[i] = last;
  }
  return top;
}
