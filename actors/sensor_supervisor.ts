/**
 * The sensor fleet: spawns, stops and restarts sensor actors and routes their
 * readings into one sink (the batching Kafka producer). Implements the API's
 * `SensorControl` port.
 *
 * The fleet is its sensors' one_for_one supervisor, with the generic
 * `Supervisor`'s restart intensity (`RestartWindow`) and escalation: a sensor
 * that fails is restarted alone (transient: a finished script is not), and
 * more than 100 restarts in 10 s stop every sensor and escalate. It keeps
 * the child record itself, in the device's entry, because a generic child
 * record, its spec and its `exit` closure cost about 250 B per sensor at
 * 100 000 sensors (bench/RESULTS.md).
 *
 * The fleet only runs sensors: which ones should run is the fleet registry's
 * business (`start(spec)` / `remove(id)` follow it). `add()` resolves a
 * request and starts it directly, for tests and tools without a registry; it
 * is synchronous, so the id checks and the cap are atomic under concurrent
 * calls. Seqs come from blocks reserved durably in a `SeqLedger` (one
 * ledger call at a time for the whole fleet): a sensor starts once its first
 * block is granted and asks for the next one while half of the current is
 * left, so a `(deviceId, seq)` pair is never produced twice, across
 * remove/add, restarts and processes (see docs/seq-ledger.md).
 *
 * @module
 */
import { isDeepStrictEqual } from "node:util";
import {
  type ChildExit,
  escalationError,
  type RestartIntensity,
  RestartWindow,
  type SupervisorEscalationError,
} from "./supervisor.ts";
import { Sensor, type SensorDeps, type SensorParent } from "./sensor.ts";
import { onlyRuleChanged, type SensorSpec, withRule } from "../schemas/sensor_spec.ts";
import { mergeRule, type RulePatch } from "../schemas/rule_request.ts";
import { SeqReserver, type SeqReserverOptions } from "./seq_reserver.ts";
import type { SeqLedger } from "./seq_ledger.ts";
import {
  granted,
  INITIAL_SEQ_ALLOCATION,
  refill,
  refused,
  type SeqAllocation,
  take,
} from "../domain/seq_block.ts";
import { SharedTimer } from "./shared_timer.ts";
import { LastReadings } from "./last_readings.ts";
import { realTimers, type Timers } from "./timers.ts";
import { TEMPERATURE_RANGE } from "../schemas/reading.ts";
import { OVERHEAT_MARGIN, type OverheatRequest } from "../schemas/overheat_request.ts";
import type { SensorRequest } from "../schemas/sensor_request.ts";
import { type FaultRequest, resolveFault } from "../schemas/fault_request.ts";
import { FAULT_KINDS, type FaultKind, type FaultOrder } from "../domain/sensor_faults.ts";
import { resolveSensorRequest, type SpecDefaults } from "../domain/sensor_specs.ts";
import type { Logger } from "./logger.ts";
import type { ReadingSink } from "./reading_sink.ts";
import type {
  AddSensorsResult,
  ClearFaultsResult,
  FaultResult,
  OverheatResult,
  RuleResult,
  SensorControl,
  SensorDetail,
  SensorInfo,
  SensorOwner,
  SensorStatus,
} from "./sensor_control.ts";

export interface SensorFleetOptions {
  readonly sink: ReadingSink;
  readonly logger: Logger;
  readonly cap: number;
  readonly defaults: SpecDefaults;
  /** The process that runs this fleet, shown as each sensor's `owner`. */
  readonly owner?: SensorOwner;
  /** Where sensors reserve their seqs. */
  readonly ledger: SeqLedger;
  /** Seqs per reserved block. */
  readonly seqBlock: number;
  /**
   * Seqs devices may have used before the ledger knew them (the store's
   * lastSeqs, when upgrading): their first block starts above.
   */
  readonly seqFloors?: ReadonlyMap<string, number>;
  /** Attempts and backoff of a failing ledger call. */
  readonly seqRetry?: SeqReserverOptions["retry"];
  /** The sensors' wall clock (their readings' `ts`); by default the timers' clock. */
  readonly now?: () => number;
  /** Called once a removed sensor has stopped (the dashboard drops it at once). */
  readonly onRemoved?: (id: string) => void;
  /**
   * Called once if sensors keep failing and the fleet's supervisor gives up: every sensor is
   * stopped and the fleet refuses new ones. Without it the fleet only logs the error.
   */
  readonly onEscalate?: (error: SupervisorEscalationError) => void;
  /** What the sensors' shared timer and the ledger retries are scheduled on; tests pass a fake. */
  readonly timers?: Timers;
}

/** What an entry asks of its fleet (one object per fleet, shared by every entry). */
interface EntryHost {
  take(entry: Entry): number | undefined;
  exited(entry: Entry, e: ChildExit): void;
}

/** A sensor that keeps failing must not take the fleet down: many restarts, then escalate. */
const INTENSITY: RestartIntensity = { maxRestarts: 100, withinMs: 10_000 };

/**
 * One device of the fleet, kept across restarts of its sensor: its child
 * record, and its sensor's parent (seqs, exit), so a running sensor costs no
 * closures of its own.
 */
class Entry implements SensorParent {
  /** Replaced only by a rule change (`#adoptRule()`). */
  settings: SensorSpec;
  sensor: Sensor | undefined = undefined;
  status: SensorStatus = "running";
  /** Where its last reading is kept (`LastReadings`). */
  readonly slot: number;
  removing = false;
  /** Settles once a started removal is done. */
  removed: Promise<void> | undefined = undefined;
  /** The device's seqs; kept across restarts of its sensor. */
  seqs: SeqAllocation;
  /** Its sensor was started (it had a first block). */
  launched = false;
  /** Orders (overheat, faults) given before its first block: applied once it starts. */
  pending: ((sensor: Sensor) => void)[] | undefined = undefined;
  readonly #host: EntryHost;

  constructor(settings: SensorSpec, seqs: SeqAllocation, slot: number, host: EntryHost) {
    this.settings = settings;
    this.slot = slot;
    this.seqs = seqs;
    this.#host = host;
  }

  get id(): string {
    return this.settings.id;
  }

  /** SensorParent: the next granted seq. */
  take(): number | undefined {
    return this.#host.take(this);
  }

  /** SensorParent: the sensor ended by itself (an earlier incarnation's word is ignored). */
  exit(e: ChildExit, sensor: Sensor): void {
    if (sensor !== this.sensor) return;
    this.status = e.type === "normal" ? "completed" : "failed";
    this.#host.exited(this, e);
  }
}

/** Why a fleet whose supervisor gave up refuses new sensors. */
export const FLEET_GAVE_UP =
  "Sensor fleet stopped: its supervisor gave up after repeated sensor failures; see /health";

export class SensorFleet implements SensorControl, AsyncDisposable {
  readonly #window = new RestartWindow(INTENSITY);
  #restarts = 0;
  /** The fleet gave up and is stopping its sensors (then `#escalated` is set). */
  #givingUp = false;
  readonly #timers: Timers;
  readonly #entries = new Map<string, Entry>();
  /** Last seq of every device this process has known and removed (running ones: `#last`). */
  readonly #lastSeq: Map<string, number>;
  readonly #opts: SensorFleetOptions;
  readonly #log: Logger;
  readonly #now: () => number;
  /** One timer for every sensor: per-sensor timers dominated CPU and heap at 100 000 sensors. */
  readonly #timer: SharedTimer;
  readonly #reserver: SeqReserver;
  readonly #lowWater: number;
  /** Shared by every sensor and entry: no closures per sensor. */
  readonly #deps: SensorDeps;
  readonly #host: EntryHost;
  /** Each sensor's last reading, by its entry's slot. */
  readonly #last = new LastReadings();
  #nextNumber = 1;
  /** Set once the supervisor gave up: the fleet is stopped for good. */
  #escalated: SupervisorEscalationError | undefined;
  #dropped = 0;
  #emitted = 0;
  #stalled = 0;
  #silenced = 0;
  #stopped = false;
  /** Faults injected so far, per kind. */
  readonly #faultsInjected = Object.fromEntries(FAULT_KINDS.map((k) => [k, 0])) as Record<
    FaultKind,
    number
  >;

  constructor(options: SensorFleetOptions) {
    this.#opts = options;
    this.#log = options.logger.child({ component: "sensors" });
    const timers = options.timers ?? realTimers;
    this.#timers = timers;
    this.#now = options.now ?? (() => timers.now());
    this.#timer = new SharedTimer(timers, this.#now);
    this.#lastSeq = new Map();
    this.#lowWater = Math.ceil(options.seqBlock / 2);
    this.#reserver = new SeqReserver({
      ledger: options.ledger,
      blockSize: options.seqBlock,
      ...(options.seqFloors ? { floors: options.seqFloors } : {}),
      ...(options.seqRetry ? { retry: options.seqRetry } : {}),
      timers,
      // Sensors keep asking on their next ticks; until then they stall, counted.
      onFailure: (error) =>
        this.#log.error("seq ledger keeps failing; sensors without seqs skip ticks", { error }),
    });
    this.#deps = {
      sink: options.sink,
      now: this.#now,
      timer: this.#timer,
      onDropped: () => this.#dropped++,
      onSilenced: () => this.#silenced++,
      onEmit: (reading) => {
        const entry = this.#entries.get(reading.deviceId);
        if (entry) this.#last.set(entry.slot, reading);
        this.#emitted++;
      },
    };
    this.#host = {
      take: (entry) => this.#takeSeq(entry),
      exited: (entry, e) => this.#exited(entry, e),
    };
  }

  get size(): number {
    return this.#entries.size;
  }

  get cap(): number {
    return this.#opts.cap;
  }

  get stats() {
    let running = 0;
    let mailboxDepth = 0;
    const faultsActive = Object.fromEntries(FAULT_KINDS.map((k) => [k, 0])) as Record<
      FaultKind,
      number
    >;
    for (const entry of this.#entries.values()) {
      if (entry.status === "running") running++;
      mailboxDepth += entry.sensor?.mailboxDepth ?? 0;
      if (entry.sensor?.faulty) {
        for (const fault of entry.sensor.faults) faultsActive[fault.kind]++;
      }
    }
    const seqs = this.#reserver.stats;
    return {
      running,
      emitted: this.#emitted,
      dropped: this.#dropped,
      /** Ticks skipped because the sensor had no granted seq left. */
      stalled: this.#stalled,
      /** Seq blocks granted by the ledger. */
      seqBlocks: seqs.reservations,
      /** Ledger calls that failed (each retried, bounded). */
      seqLedgerFailures: seqs.failedCalls,
      restarts: this.#restarts,
      mailboxDepth,
      /** Ticks a dropout fault silenced. */
      silenced: this.#silenced,
      /** Sensors with a fault of each kind in effect. */
      faultsActive,
      /** Faults injected so far, per kind. */
      faultsInjected: { ...this.#faultsInjected },
    };
  }

  /** True once its supervisor gave up: the fleet runs no more sensors. */
  get gaveUp(): boolean {
    return this.#escalated !== undefined;
  }

  /** True when the fleet has a sensor under this id (running, completed or failed). */
  has(id: string): boolean {
    return this.#entries.has(id);
  }

  /** Resolves a request into specs (see `resolveSensorRequest()`) and starts them. */
  add(request: SensorRequest): AddSensorsResult {
    if (this.#escalated) return { ok: false, code: "unavailable", message: FLEET_GAVE_UP };
    const resolved = resolveSensorRequest(request, {
      defaults: this.#opts.defaults,
      taken: (id) => this.#entries.has(id),
      size: this.#entries.size,
      cap: this.#opts.cap,
      nextNumber: this.#nextNumber,
    });
    if (!resolved.ok) return resolved;
    this.#nextNumber = resolved.nextNumber;
    for (const spec of resolved.specs) this.#start(spec);
    this.#log.info("sensors added", {
      count: resolved.specs.length,
      first: resolved.specs[0]!.id,
      profile: resolved.specs[0]!.profile,
      running: this.#entries.size,
    });
    return { ok: true, ids: resolved.specs.map((s) => s.id) };
  }

  /**
   * Runs the sensor a registry spec describes: starts it when the fleet does
   * not have it, has it adopt a new rule in place when only its rule changed
   * ("ruled"), restarts it when anything else changed, else leaves it alone.
   * No cap check: the registry's writer checked it.
   */
  async start(spec: SensorSpec): Promise<"started" | "restarted" | "ruled" | "unchanged"> {
    const entry = this.#entries.get(spec.id);
    if (entry && !entry.removing && isDeepStrictEqual(entry.settings, spec)) return "unchanged";
    if (entry && !entry.removing && onlyRuleChanged(entry.settings, spec)) {
      this.#adoptRule(entry, spec);
      return "ruled";
    }
    // Being removed: wait until it is gone, then start the new one.
    await entry?.removed;
    const restarted = entry !== undefined && !entry.removing && await this.remove(spec.id);
    // A concurrent start of the same id won the race while we stopped the old one.
    if (this.#entries.has(spec.id)) return "unchanged";
    this.#start(spec);
    return restarted ? "restarted" : "started";
  }

  async remove(id: string): Promise<boolean> {
    const entry = this.#entries.get(id);
    if (!entry || entry.removing) return false;
    entry.removing = true;
    const removed = Promise.withResolvers<void>();
    entry.removed = removed.promise;
    // Stop the timer first: the sensor must not emit once remove() was called.
    const stopping = entry.sensor?.stop();
    try {
      await stopping;
      // Only now may the id be reused: until here add() answers "conflict".
      this.#entries.delete(id);
      const seq = this.#last.seq(entry.slot);
      if (seq !== undefined) this.#lastSeq.set(id, seq);
      this.#last.release(entry.slot);
    } finally {
      removed.resolve();
    }
    this.#log.info("sensor removed", {
      id,
      seq: this.lastSeq(id),
      running: this.#entries.size,
    });
    this.#opts.onRemoved?.(id);
    return true;
  }

  list(offset: number, limit: number): readonly SensorInfo[] {
    const out: SensorInfo[] = [];
    let i = 0;
    for (const entry of this.#entries.values()) {
      if (i++ < offset) continue;
      if (out.length >= limit) break;
      out.push(this.#info(entry));
    }
    return out;
  }

  /** The spec a sensor of this fleet runs (its rule as last changed). */
  spec(id: string): SensorSpec | undefined {
    const entry = this.#entries.get(id);
    return entry && !entry.removing ? entry.settings : undefined;
  }

  /** The last seq a device emitted in this process, running or removed. */
  lastSeq(id: string): number | undefined {
    const entry = this.#entries.get(id);
    return (entry && this.#last.seq(entry.slot)) ?? this.#lastSeq.get(id);
  }

  get(id: string): SensorDetail | undefined {
    const entry = this.#entries.get(id);
    return entry && { ...this.#info(entry), lastReading: this.#last.get(entry.slot, id) };
  }

  overheat(id: string, request: OverheatRequest): OverheatResult {
    const entry = this.#entries.get(id);
    if (!entry || entry.removing) {
      return { ok: false, code: "not_found", message: `Unknown sensor: "${id}"` };
    }
    if (this.#escalated) return { ok: false, code: "unavailable", message: FLEET_GAVE_UP };
    const { high } = entry.settings.rule;
    const temperature = request.temperature ??
      Math.min(high + OVERHEAT_MARGIN, TEMPERATURE_RANGE.max);
    if (temperature < high) {
      return {
        ok: false,
        code: "invalid",
        message:
          `temperature: ${temperature} would not overheat "${id}": its high threshold is ${high}`,
      };
    }
    if (entry.status !== "running") {
      return { ok: false, code: "not_running", message: `Sensor is ${entry.status}: "${id}"` };
    }
    this.#order(entry, (sensor) => sensor.overheat({ readings: request.readings, temperature }));
    this.#log.info("overheat triggered", { id, readings: request.readings, temperature });
    return { ok: true, readings: request.readings, temperature };
  }

  /** Resolves a fault request against the sensor's thresholds and injects it. */
  fault(id: string, request: FaultRequest): FaultResult {
    const entry = this.#entries.get(id);
    if (!entry || entry.removing) {
      return { ok: false, code: "not_found", message: `Unknown sensor: "${id}"` };
    }
    const order = resolveFault(request, {
      high: entry.settings.rule.high,
      maxTemperature: TEMPERATURE_RANGE.max,
    });
    return this.injectFault(id, order);
  }

  /** Injects a resolved fault (what a fault command carries) into a running sensor. */
  injectFault(id: string, order: FaultOrder): FaultResult {
    const entry = this.#entries.get(id);
    if (!entry || entry.removing) {
      return { ok: false, code: "not_found", message: `Unknown sensor: "${id}"` };
    }
    if (this.#escalated) return { ok: false, code: "unavailable", message: FLEET_GAVE_UP };
    if (entry.status !== "running") {
      return { ok: false, code: "not_running", message: `Sensor is ${entry.status}: "${id}"` };
    }
    this.#order(entry, (sensor) => sensor.injectFault(order));
    this.#faultsInjected[order.kind]++;
    this.#log.info("fault injected", { id, ...order });
    return { ok: true, fault: order };
  }

  clearFaults(id: string, kind?: FaultKind): ClearFaultsResult {
    const entry = this.#entries.get(id);
    if (!entry || entry.removing) {
      return { ok: false, code: "not_found", message: `Unknown sensor: "${id}"` };
    }
    entry.sensor?.clearFaults(kind);
    this.#log.info("faults cleared", { id, kind: kind ?? "all" });
    return { ok: true };
  }

  /**
   * Changes a sensor's rule in place (no registry: tests and tools); the answer's
   * `appliesAfterSeq` is the last seq emitted under the old rule.
   */
  setRule(id: string, patch: RulePatch): RuleResult {
    const entry = this.#entries.get(id);
    if (!entry || entry.removing) {
      return { ok: false, code: "not_found", message: `Unknown sensor: "${id}"` };
    }
    if (this.#escalated) return { ok: false, code: "unavailable", message: FLEET_GAVE_UP };
    const merged = mergeRule(entry.settings.rule, patch);
    if (!merged.ok) return { ok: false, code: "invalid", message: merged.message };
    return this.#adoptRule(entry, withRule(entry.settings, merged.rule));
  }

  /** Stops every sensor (reverse start order). */
  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#stopSensors();
    await this.#reserver.stop();
    this.#timer[Symbol.dispose]();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  /**
   * Applies `order` to the entry's sensor, or — when the sensor still waits
   * for its first seq block (just added) — once it starts.
   */
  #order(entry: Entry, order: (sensor: Sensor) => void) {
    if (entry.sensor) order(entry.sensor);
    else (entry.pending ??= []).push(order);
  }

  /**
   * The sensor (or, before it starts or after a restart, its spec) runs under `spec`'s rule
   * from its next reading on. Synchronous between two ticks, so the readings up to
   * `appliesAfterSeq` carry the old rule and every later one the new.
   */
  #adoptRule(entry: Entry, spec: SensorSpec): RuleResult & { ok: true } {
    entry.settings = spec;
    entry.sensor?.adoptRule(spec);
    const appliesAfterSeq = this.lastSeq(spec.id) ?? 0;
    this.#log.info("rule changed", { id: spec.id, appliesAfterSeq, ...spec.rule });
    return { ok: true, rule: spec.rule, appliesAfterSeq };
  }

  /** Stops every sensor, one after another in reverse start order; collects what failed. */
  async #stopSensors(): Promise<unknown[]> {
    const errors: unknown[] = [];
    for (const entry of [...this.#entries.values()].reverse()) {
      await entry.sensor?.stop().catch((error) => errors.push(error));
    }
    return errors;
  }

  /** A sensor ended by itself: restarted after a failure, bounded (see the module comment). */
  #exited(entry: Entry, e: ChildExit) {
    if (!this.#current(entry) || this.#givingUp) return;
    if (e.type === "normal") return; // transient: a finished script stays completed
    if (this.#window.record(this.#timers.now()) > INTENSITY.maxRestarts) {
      return this.#giveUp(entry.id, e.error);
    }
    this.#restarts++;
    this.#log.warn("sensor restarted", { id: entry.id, error: e.error as Error });
    // Never re-enter a sensor's start from inside its own exit call.
    queueMicrotask(() => {
      if (!this.#current(entry) || this.#givingUp) return;
      try {
        this.#newSensor(entry);
      } catch (error) {
        entry.status = "failed";
        this.#exited(entry, { type: "failed", error });
      }
    });
  }

  #giveUp(id: string, cause: unknown) {
    this.#givingUp = true;
    const error = escalationError("sensors", INTENSITY, id, cause);
    void this.#stopSensors().then((stopErrors) => {
      error.stopErrors = stopErrors;
      this.#escalate(error);
    });
  }

  #escalate(error: SupervisorEscalationError) {
    this.#escalated = error;
    for (const entry of this.#entries.values()) {
      if (entry.status === "running") entry.status = "failed";
    }
    if (this.#opts.onEscalate) this.#opts.onEscalate(error);
    else this.#log.error("sensor supervisor gave up", { error: error.cause as Error });
  }

  #info(entry: Entry): SensorInfo {
    const { id, profile, intervalMs, rule } = entry.settings;
    return {
      id,
      profile,
      intervalMs,
      seq: this.lastSeq(id) ?? 0,
      status: entry.status,
      thresholds: rule,
      owner: this.#opts.owner ?? null,
      emitting: entry.status === "running",
      faults: entry.status === "running" ? entry.sensor?.faults ?? [] : [],
    };
  }

  #start(settings: SensorSpec) {
    const asked = refill(INITIAL_SEQ_ALLOCATION, this.#lowWater);
    const entry = new Entry(settings, asked.state, this.#last.alloc(), this.#host);
    this.#entries.set(settings.id, entry);
    // The sensor starts only once its first block is granted.
    this.#askForSeqs(entry);
  }

  #askForSeqs(entry: Entry) {
    const { id } = entry.settings;
    this.#reserver.request(id, {
      granted: (block) => {
        entry.seqs = granted(entry.seqs, block);
        if (!entry.launched) this.#launch(entry);
      },
      refused: (error) => {
        entry.seqs = refused(entry.seqs);
        if (entry.launched || !this.#current(entry)) return;
        // Not started yet: nothing ticks to ask again, so ask after one interval.
        entry.status = "failed";
        this.#log.warn("sensor waits for its first seq block", { id, error });
        this.#timer.schedule(this.#now() + entry.settings.intervalMs, () => {
          if (entry.launched || !this.#current(entry)) return;
          const again = refill(entry.seqs, this.#lowWater);
          entry.seqs = again.state;
          if (again.refill) this.#askForSeqs(entry);
        });
      },
    });
  }

  /** The entry is still the fleet's for its id and neither removed nor stopped. */
  #current(entry: Entry): boolean {
    return !this.#stopped && !entry.removing && this.#entries.get(entry.settings.id) === entry;
  }

  #takeSeq(entry: Entry): number | undefined {
    const result = take(entry.seqs, this.#lowWater);
    entry.seqs = result.state;
    if (result.refill) this.#askForSeqs(entry);
    if (result.seq === undefined) this.#stalled++;
    return result.seq;
  }

  #launch(entry: Entry) {
    if (!this.#current(entry)) return;
    entry.launched = true;
    if (this.#givingUp) {
      entry.status = "failed";
      return;
    }
    try {
      this.#newSensor(entry);
    } catch (error) {
      entry.status = "failed";
      this.#log.error("sensor failed to start", { id: entry.id, error: error as Error });
    }
  }

  /** A new incarnation of the entry's sensor, under its spec as of now. */
  #newSensor(entry: Entry): Sensor {
    entry.status = "running";
    // The spec as of now: a restarted sensor keeps a rule changed while it ran.
    const sensor = new Sensor(entry.settings, entry, this.#deps);
    entry.sensor = sensor;
    const pending = entry.pending;
    entry.pending = undefined;
    if (pending) { for (const order of pending) order(sensor); }
    return sensor;
  }
}
