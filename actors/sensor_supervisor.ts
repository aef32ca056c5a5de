/**
 * The sensor fleet: spawns, stops and restarts sensor actors under a
 * one_for_one supervisor and routes their readings into one sink (the
 * batching Kafka producer). Implements the API's `SensorControl` port.
 *
 * `add()` is synchronous, so the id checks and the fleet cap are atomic under
 * concurrent requests. A device's `seq` continues across remove/add (and, when
 * seeded with the store's last seqs, across process restarts).
 *
 * @module
 */
import { Supervisor } from "./supervisor.ts";
import { Sensor, type SensorSettings } from "./sensor.ts";
import { SharedTimer } from "./shared_timer.ts";
import { realTimers, type Timers } from "./timers.ts";
import type { AlarmRule } from "../domain/hysteresis.ts";
import { seedFrom } from "../domain/random.ts";
import { type GeoLocation, type Reading, TEMPERATURE_RANGE } from "../schemas/reading.ts";
import { OVERHEAT_MARGIN, type OverheatRequest } from "../schemas/overheat_request.ts";
import type { SensorRequest, SensorTemplate } from "../schemas/sensor_request.ts";
import type { Logger } from "./logger.ts";
import type { ReadingSink } from "./reading_sink.ts";
import type {
  AddSensorsResult,
  OverheatResult,
  SensorControl,
  SensorDetail,
  SensorInfo,
  SensorStatus,
} from "./sensor_control.ts";

export interface SensorFleetOptions {
  readonly sink: ReadingSink;
  readonly logger: Logger;
  readonly cap: number;
  readonly defaults: {
    readonly intervalMs: number;
    readonly rule: AlarmRule;
    readonly seed: number;
    readonly location?: GeoLocation;
  };
  /** Last seq per device already used, e.g. from the store, so sequences continue. */
  readonly lastSeqs?: ReadonlyMap<string, number>;
  /** The sensors' wall clock (their readings' `ts`); by default the timers' clock. */
  readonly now?: () => number;
  /** What the sensors' shared timer schedules on; tests pass a fake. */
  readonly timers?: Timers;
}

interface Entry {
  readonly settings: SensorSettings;
  sensor: Sensor | undefined;
  status: SensorStatus;
  lastReading: Reading | null;
  removing: boolean;
}

const DEFAULT_LOCATION: GeoLocation = { lat: 48.8566, lon: 2.3522 };

export class SensorFleet implements SensorControl, AsyncDisposable {
  readonly #supervisor: Supervisor;
  readonly #entries = new Map<string, Entry>();
  /** Last seq of every device this process has known, running or removed. */
  readonly #lastSeq: Map<string, number>;
  readonly #opts: SensorFleetOptions;
  readonly #log: Logger;
  readonly #now: () => number;
  /** One timer for every sensor: per-sensor timers dominated CPU and heap at 100 000 sensors. */
  readonly #timer: SharedTimer;
  #nextNumber = 1;
  #dropped = 0;
  #emitted = 0;

  constructor(options: SensorFleetOptions) {
    this.#opts = options;
    this.#log = options.logger.child({ component: "sensors" });
    const timers = options.timers ?? realTimers;
    this.#now = options.now ?? (() => timers.now());
    this.#timer = new SharedTimer(timers, this.#now);
    this.#lastSeq = new Map(options.lastSeqs ?? []);
    this.#supervisor = new Supervisor({
      name: "sensors",
      // A sensor that keeps failing must not take the fleet down: many restarts, then escalate.
      intensity: { maxRestarts: 100, withinMs: 10_000 },
      onRestart: (id, error) => this.#log.warn("sensor restarted", { id, error: error as Error }),
      onEscalate: (error) =>
        this.#log.error("sensor supervisor gave up", { error: error.cause as Error }),
    });
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
    for (const entry of this.#entries.values()) {
      if (entry.status === "running") running++;
      mailboxDepth += entry.sensor?.mailboxDepth ?? 0;
    }
    return {
      running,
      emitted: this.#emitted,
      dropped: this.#dropped,
      restarts: this.#supervisor.restarts,
      mailboxDepth,
    };
  }

  add(request: SensorRequest): AddSensorsResult {
    const ids = request.kind === "one"
      ? [request.id ?? this.#freshIds("sensor", 1)[0]!]
      : this.#freshIds(request.idPrefix ?? "sensor", request.count);
    const taken = ids.find((id) => this.#entries.has(id));
    if (taken) {
      return { ok: false, code: "conflict", message: `Sensor already running: "${taken}"` };
    }
    if (this.#entries.size + ids.length > this.#opts.cap) {
      return {
        ok: false,
        code: "cap",
        message: `Sensor cap reached: ${this.#entries.size} running + ${ids.length} requested ` +
          `exceeds the limit of ${this.#opts.cap}`,
      };
    }
    let settings: SensorSettings[];
    try {
      settings = ids.map((id) => this.#settings(id, request.template));
    } catch (err) {
      return { ok: false, code: "invalid", message: (err as Error).message };
    }
    for (const s of settings) this.#start(s);
    this.#log.info("sensors added", {
      count: ids.length,
      first: ids[0],
      profile: settings[0]!.profile,
      running: this.#entries.size,
    });
    return { ok: true, ids };
  }

  async remove(id: string): Promise<boolean> {
    const entry = this.#entries.get(id);
    if (!entry || entry.removing) return false;
    entry.removing = true;
    // Stop the timer first: the sensor must not emit once remove() was called.
    const stopping = entry.sensor?.stop();
    await this.#supervisor.stopChild(id);
    await stopping;
    // Only now may the id be reused: until here add() answers "conflict".
    this.#entries.delete(id);
    this.#log.info("sensor removed", {
      id,
      seq: this.#lastSeq.get(id),
      running: this.#entries.size,
    });
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

  /** The last seq a device emitted in this process, running or removed. */
  lastSeq(id: string): number | undefined {
    return this.#lastSeq.get(id);
  }

  get(id: string): SensorDetail | undefined {
    const entry = this.#entries.get(id);
    return entry && { ...this.#info(entry), lastReading: entry.lastReading };
  }

  overheat(id: string, request: OverheatRequest): OverheatResult {
    const entry = this.#entries.get(id);
    if (!entry || entry.removing) {
      return { ok: false, code: "not_found", message: `Unknown sensor: "${id}"` };
    }
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
    if (entry.status !== "running" || !entry.sensor) {
      return { ok: false, code: "not_running", message: `Sensor is ${entry.status}: "${id}"` };
    }
    entry.sensor.overheat({ remaining: request.readings, temperature });
    this.#log.info("overheat triggered", { id, readings: request.readings, temperature });
    return { ok: true, readings: request.readings, temperature };
  }

  /** Stops every sensor (reverse start order). */
  async stop(): Promise<void> {
    await this.#supervisor.stop();
    this.#timer[Symbol.dispose]();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  #info(entry: Entry): SensorInfo {
    const { id, profile, intervalMs, rule } = entry.settings;
    return {
      id,
      profile,
      intervalMs,
      seq: this.#lastSeq.get(id) ?? 0,
      status: entry.status,
      thresholds: rule,
    };
  }

  #freshIds(prefix: string, count: number): string[] {
    const ids: string[] = [];
    while (ids.length < count) {
      const id = `${prefix}-${String(this.#nextNumber++).padStart(4, "0")}`;
      if (!this.#entries.has(id)) ids.push(id);
    }
    return ids;
  }

  #settings(id: string, t: SensorTemplate): SensorSettings {
    const { defaults } = this.#opts;
    const rule: AlarmRule = { ...defaults.rule, ...t.thresholds };
    if (rule.low >= rule.high) {
      throw new Error(
        `thresholds: low (${rule.low}) must be below high (${rule.high}) once merged with the defaults`,
      );
    }
    const seed = t.seed ?? seedFrom(`${defaults.seed}:${id}`);
    const base = defaults.location ?? DEFAULT_LOCATION;
    // Spread generated sensors over a few km around the base location, reproducibly.
    const location = t.location ?? {
      lat: round6(base.lat + ((seed % 1000) / 1000 - 0.5) * 0.1),
      lon: round6(base.lon + ((Math.floor(seed / 1000) % 1000) / 1000 - 0.5) * 0.1),
    };
    return {
      id,
      profile: t.profile ?? "normal",
      intervalMs: t.intervalMs ?? defaults.intervalMs,
      seed,
      location,
      rule,
      customRule: t.thresholds !== undefined,
      ...(t.temperatures ? { temperatures: t.temperatures } : {}),
      ...(t.humidity ? { humidity: t.humidity } : {}),
    };
  }

  #start(settings: SensorSettings) {
    const entry: Entry = {
      settings,
      sensor: undefined,
      status: "running",
      lastReading: null,
      removing: false,
    };
    this.#entries.set(settings.id, entry);
    void this.#supervisor.startChild({
      id: settings.id,
      restart: "transient",
      start: (exit) => {
        entry.status = "running";
        entry.sensor = new Sensor(settings, this.#lastSeq.get(settings.id) ?? 0, {
          sink: this.#opts.sink,
          now: this.#now,
          timer: this.#timer,
          onDropped: () => this.#dropped++,
          onEmit: (reading) => {
            entry.lastReading = reading;
            this.#lastSeq.set(settings.id, reading.seq);
            this.#emitted++;
          },
        }, (e) => {
          entry.status = e.type === "normal" ? "completed" : "failed";
          exit(e);
        });
        return entry.sensor;
      },
    }).catch((error) => {
      entry.status = "failed";
      this.#log.error("sensor failed to start", { id: settings.id, error });
    });
  }
}

function round6(x: number): number {
  return Math.round(x * 1e6) / 1e6;
}
