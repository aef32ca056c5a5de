/**
 * One simulated sensor: an actor whose only message is the tick of its
 * schedule. Each tick draws the next sample from its signal model and hands a
 * reading to the sink. Ticks are scheduled against the start time (no drift)
 * on a timer the fleet's sensors share; a tick that arrives while the
 * previous one is still handled is skipped and counted as late rather than
 * queued, so after a stall a sensor emits once, late, not once per missed
 * tick. Its seqs come from a `SeqSource` that hands out only seqs the ledger
 * granted; a tick with no seq to use emits nothing and is counted as stalled.
 *
 * Its mailbox holds one tick and exists only while one is queued (a flag):
 * queued sensors wait in one run queue that a single microtask drains (a
 * shared scheduler), the sensor is its own entry on the shared timer, and
 * the deps are shared by a fleet's sensors, so a sensor owns no closure, no
 * timer entry and no promise (bench/RESULTS.md: each was 50–100 B at 100 000
 * sensors). The lifecycle is an actor's: stop() handles a queued tick first,
 * and a throwing tick fails the sensor through its parent's `exit()`.
 *
 * @module
 */
import type { ChildExit } from "./supervisor.ts";
import { initialSignal, nextSample, type SignalState } from "../domain/signal.ts";
import { applyHeatBurst, type HeatBurst, heatBurst } from "../domain/heat_burst.ts";
import {
  clearFaults,
  deliver,
  describeFaults,
  type FaultInfo,
  type FaultKind,
  type FaultOrder,
  type FaultState,
  gate,
  injectFault,
  isIdle,
  NO_FAULTS,
} from "../domain/sensor_faults.ts";
import { defaultOfflineAfterMs } from "../domain/offline.ts";
import type { Reading } from "../schemas/reading.ts";
import type { SensorSpec } from "../schemas/sensor_spec.ts";
import type { SharedTimer, TimerEntry } from "./shared_timer.ts";
import type { ReadingSink } from "./reading_sink.ts";

export type SensorMsg = { readonly type: "tick" };

/** Where a sensor takes its seqs: each granted once, increasing; undefined when none is left. */
export interface SeqSource {
  take(): number | undefined;
}

/** Whoever runs a sensor: hands out its seqs and hears how it ended by itself. */
export interface SensorParent extends SeqSource {
  /** Called once when `sensor` ends by itself (a finished script, a throwing tick). */
  exit(e: ChildExit, sensor: Sensor): void;
}

/** Every tick is the same message: no allocation per tick. */
const TICK: SensorMsg = { type: "tick" };

/** What a sensor uses; one object may serve a whole fleet (it holds no per-sensor state). */
export interface SensorDeps {
  readonly sink: ReadingSink;
  /** Wall clock in ms; the reading's `ts` comes from it. */
  readonly now: () => number;
  /** Called when the sink refused a reading (it is lost; the seq is not reused). */
  readonly onDropped?: (id: string) => void;
  /** Called for each tick a dropout fault silenced. */
  readonly onSilenced?: () => void;
  /** Called with each emitted reading (e.g. for `GET /sensors/:id`). */
  readonly onEmit?: (reading: Reading) => void;
  /** The timer a fleet's sensors share (on `now`'s clock); each sensor is its own entry on it. */
  readonly timer: SharedTimer;
}

/**
 * The last timestamp formatted, and its string: at 100 000 sensors some 33 ticks share each
 * millisecond, so formatting (a Date and a string per tick) is done once per millisecond instead.
 */
let lastTsMs = Number.NaN;
let lastTs = "";

/** `new Date(ms).toISOString()`, the same string for the same ms. */
function isoAt(ms: number): string {
  if (ms !== lastTsMs) {
    lastTs = new Date(ms).toISOString();
    lastTsMs = ms;
  }
  return lastTs;
}

/** Sensors with a tick in their mailbox, in the order the ticks arrived. */
const runQueue: Sensor[] = [];

/** Flags of `Sensor.#state`. */
const QUEUED = 1; // a tick waits in the one-slot mailbox
const BUSY = 2; // the handler is running
const STOPPING = 4;
const STOPPED = 8;
const FAILED = 16;
const SCHEDULED = 32; // it is an entry on the timer

export class Sensor implements TimerEntry {
  /** Its spec; only the rule changes while it runs (`adoptRule()`). */
  settings: SensorSpec;
  /** QUEUED | BUSY | STOPPING | STOPPED | FAILED | SCHEDULED: one small integer, not six fields. */
  #state = 0;
  #stopped: PromiseWithResolvers<void> | undefined;
  readonly #deps: SensorDeps;
  readonly #parent: SensorParent;
  #signal: SignalState;
  #burst: HeatBurst | null = null;
  /** Injected faults; null (the common case) costs the tick one comparison. */
  #faults: FaultState | null = null;
  #silenced = 0;
  #seq = 0;
  #stalled = 0;
  #startedAt: number;
  #ticks = 0;
  #late = 0;

  /** Starts emitting, with the seqs `parent` hands out. */
  constructor(settings: SensorSpec, parent: SensorParent, deps: SensorDeps) {
    this.settings = settings;
    this.#deps = deps;
    this.#parent = parent;
    this.#signal = initialSignal({
      profile: settings.profile,
      seed: settings.seed,
      location: settings.location,
      intervalMs: settings.intervalMs,
      band: settings.rule,
      ...(settings.temperatures ? { temperatures: settings.temperatures } : {}),
      ...(settings.humidity ? { humidity: settings.humidity } : {}),
    });
    // Random profiles start at a seed-derived phase so a fleet does not tick in lockstep.
    const phase = settings.profile === "scripted" ? 0 : settings.seed % settings.intervalMs;
    this.#startedAt = deps.now() + phase;
    this.#schedule();
  }

  /** When its next tick is due (the schedule is drift-free: start + ticks × interval). */
  get due(): number {
    return this.#startedAt + this.#ticks * this.settings.intervalMs;
  }

  /**
   * The timer's delivery of a tick into the mailbox (only the timer calls it):
   * queued when the mailbox is empty, else skipped and counted late.
   */
  run(): void {
    this.#state &= ~SCHEDULED;
    this.#ticks++;
    const running = (this.#state & (STOPPING | STOPPED | FAILED)) === 0;
    if (!running || this.#state & QUEUED) this.#late++;
    else {
      this.#state |= QUEUED;
      // Handled on a microtask, never inside the timer's call (as an actor's mailbox would).
      if (runQueue.push(this) === 1) queueMicrotask(Sensor.#drainQueue);
    }
    if (running) this.#schedule();
  }

  static #drainQueue() {
    let i = 0;
    try {
      // A handler never queues a tick (only the timer does), but read the length each time anyway.
      while (i < runQueue.length) runQueue[i++]!.#drain();
    } finally {
      // Should a handler throw past #drain(), the others still get their ticks (and it is reported).
      runQueue.splice(0, i);
      if (runQueue.length > 0) queueMicrotask(Sensor.#drainQueue);
    }
  }

  /** seq of the last reading emitted (0 before the first). */
  get seq(): number {
    return this.#seq;
  }

  /** Ticks that emitted nothing because no granted seq was left. */
  get stalled(): number {
    return this.#stalled;
  }

  /** Ticks skipped because the previous one was still being handled. */
  get late(): number {
    return this.#late;
  }

  /** Ticks waiting in the mailbox (at most one). */
  get mailboxDepth(): number {
    return this.#state & QUEUED ? 1 : 0;
  }

  get running(): boolean {
    return (this.#state & (STOPPING | STOPPED | FAILED)) === 0;
  }

  /** Ticks a dropout fault silenced (no seq taken, nothing sent). */
  get silenced(): number {
    return this.#silenced;
  }

  /**
   * Heats the sensor towards `temperature` with thermal lag until `readings`
   * readings reported at or above its high threshold, then lets it cool back
   * (see `heat_burst.ts`).
   */
  overheat(order: { readonly readings: number; readonly temperature: number }): void {
    this.#burst = heatBurst({
      readings: order.readings,
      target: order.temperature,
      high: this.settings.rule.high,
    });
  }

  /**
   * Runs under `spec`'s rule from the next reading on (a spec that differs in its rule only):
   * every reading made after this call carries the new thresholds.
   */
  adoptRule(spec: SensorSpec): void {
    this.settings = spec;
  }

  /** Adds a fault (replacing one of the same kind) from the next tick on. */
  injectFault(order: FaultOrder): void {
    this.#faults = injectFault(this.#faults ?? NO_FAULTS, order, { now: this.#deps.now() });
  }

  /** Ends the faults of `kind`, or all; readings already held back are still sent late. */
  clearFaults(kind?: FaultKind): void {
    if (this.#faults === null) return;
    const next = clearFaults(this.#faults, kind);
    this.#faults = isIdle(next) ? null : next;
  }

  /** True while a fault is in effect or a late reading is held. */
  get faulty(): boolean {
    return this.#faults !== null;
  }

  /** The faults in effect. */
  get faults(): FaultInfo[] {
    return this.#faults === null ? [] : describeFaults(this.#faults);
  }

  /** Stops ticking; a tick already queued is handled first. Resolves once stopped or failed. */
  stop(): Promise<void> {
    this.#cancel();
    if (this.running) {
      this.#state |= STOPPING;
      if ((this.#state & (BUSY | QUEUED)) === 0) this.#finish(STOPPED);
    }
    if ((this.#state & STOPPING) === 0) return Promise.resolve();
    this.#stopped ??= Promise.withResolvers<void>();
    return this.#stopped.promise;
  }

  #schedule() {
    this.#deps.timer.add(this);
    this.#state |= SCHEDULED;
  }

  #drain() {
    if ((this.#state & QUEUED) === 0) return;
    this.#state = (this.#state & ~QUEUED) | BUSY;
    try {
      this.#receive(TICK);
    } catch (error) {
      this.#state &= ~BUSY;
      this.#cancel();
      this.#finish(FAILED);
      this.#parent.exit({ type: "failed", error }, this);
      return;
    }
    this.#state &= ~BUSY;
    if (this.#state & STOPPING) this.#finish(STOPPED);
  }

  #finish(final: typeof STOPPED | typeof FAILED) {
    this.#state = final;
    this.#stopped?.resolve();
  }

  #cancel() {
    if (this.#state & SCHEDULED) this.#deps.timer.cancel(this);
    this.#state &= ~SCHEDULED;
  }

  #receive(msg: SensorMsg) {
    switch (msg.type) {
      case "tick":
        return this.#tick();
      default:
        return msg.type satisfies never;
    }
  }

  #tick() {
    const next = nextSample(this.#signal);
    if (next === null) {
      // A scripted series is done: a normal exit, so a transient sensor is not restarted.
      void this.stop().then(() => this.#parent.exit({ type: "normal" }, this));
      return;
    }
    if (this.#faults !== null) {
      const gated = gate(this.#faults, this.#deps.now());
      this.#faults = isIdle(gated.state) ? null : gated.state;
      if (gated.silent) {
        // A dropout is silence: the world goes on, but no seq is used and nothing is sent.
        this.#signal = next.state;
        this.#silenced++;
        this.#deps.onSilenced?.();
        return;
      }
    }
    const seq = this.#parent.take();
    if (seq === undefined) {
      // Never invent a seq: skip the tick; the signal does not advance either.
      this.#stalled++;
      return;
    }
    this.#signal = next.state;
    const { sample } = next;
    let { temperature, humidity } = sample;
    if (this.#burst !== null) {
      const heated = applyHeatBurst(this.#burst, sample);
      this.#burst = heated.burst;
      temperature = heated.temperature;
      humidity = heated.humidity;
    }
    const reading: Reading = {
      deviceId: this.settings.id,
      seq,
      ts: isoAt(this.#deps.now()),
      temperature,
      humidity,
      location: sample.location,
      ...(this.settings.customRule ? { thresholds: this.settings.rule } : {}),
      offlineAfterMs: this.settings.offlineAfterMs ??
        defaultOfflineAfterMs(this.settings.intervalMs),
    };
    this.#seq = reading.seq;
    if (this.#faults === null) {
      this.#deps.onEmit?.(reading);
      this.#publish(reading);
      return;
    }
    const faulty = deliver(this.#faults, reading);
    this.#faults = isIdle(faulty.state) ? null : faulty.state;
    this.#deps.onEmit?.(faulty.reading);
    for (const r of faulty.send) this.#publish(r);
  }

  #publish(reading: Reading) {
    if (!this.#deps.sink.publish(reading)) this.#deps.onDropped?.(this.settings.id);
  }
}
