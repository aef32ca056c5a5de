/**
 * The durable fleet. `DurableFleet` is one process's (embedded mode): the fleet registry says
 * which sensors should run, the sensor supervisor runs them. Every change is
 * recorded in the registry before it is applied and before the API answers,
 * so a restart recreates exactly the fleet that was running: `restore()`
 * starts what the registry holds, seeding it once from `--sensors N`.
 * `SharedFleet` is the same promise over a registry that several processes
 * share (Kafka mode).
 *
 * Writes are serialized: each add checks ids and the cap against the fleet
 * as the previous write left it, so concurrent requests cannot overshoot.
 *
 * @module
 */
import { FLEET_GAVE_UP, type SensorFleet } from "./sensor_supervisor.ts";
import type { FleetRegistry, RegistryView } from "./fleet_registry.ts";
import type { Logger } from "./logger.ts";
import { resolveSensorRequest, type SpecDefaults } from "../domain/sensor_specs.ts";
import type { SensorRequest } from "../schemas/sensor_request.ts";
import { OVERHEAT_MARGIN, type OverheatRequest } from "../schemas/overheat_request.ts";
import { TEMPERATURE_RANGE } from "../schemas/reading.ts";
import { type FaultRequest, resolveFault } from "../schemas/fault_request.ts";
import type { FaultKind } from "../domain/sensor_faults.ts";
import { mergeRule, type RulePatch } from "../schemas/rule_request.ts";
import { type SensorSpec, withRule } from "../schemas/sensor_spec.ts";
import type {
  AddSensorsResult,
  ClearFaultsResult,
  FaultResult,
  FleetCommands,
  FleetPlacement,
  OverheatResult,
  RuleResult,
  SensorControl,
  SensorDetail,
  SensorInfo,
} from "./sensor_control.ts";

export interface DurableFleetOptions {
  readonly registry: FleetRegistry;
  readonly fleet: SensorFleet;
  readonly defaults: SpecDefaults;
  readonly cap: number;
  readonly logger: Logger;
}

export class DurableFleet implements SensorControl {
  readonly #registry: FleetRegistry;
  readonly #fleet: SensorFleet;
  readonly #opts: DurableFleetOptions;
  readonly #log: Logger;
  #writes: Promise<unknown> = Promise.resolve();
  #nextNumber = 1;

  constructor(options: DurableFleetOptions) {
    this.#registry = options.registry;
    this.#fleet = options.fleet;
    this.#opts = options;
    this.#log = options.logger.child({ component: "fleet" });
  }

  /**
   * Starts every sensor the registry holds. When the registry was never
   * seeded, first records `seed` (the `--sensors N` fleet) and marks it seeded,
   * so later starts do not add those sensors again.
   */
  restore(seed?: SensorRequest): Promise<void> {
    return this.#serialized(async () => {
      let { specs, seeded } = await this.#registry.load();
      if (!seeded && seed) {
        const taken = new Set(specs.map((s) => s.id));
        const resolved = resolveSensorRequest(seed, {
          defaults: this.#opts.defaults,
          taken: (id) => taken.has(id),
          size: taken.size,
          cap: this.#opts.cap,
          nextNumber: 1,
        });
        if (!resolved.ok) throw new Error(`Cannot seed the fleet: ${resolved.message}`);
        await this.#registry.put(resolved.specs, { seeded: true });
        specs = [...specs, ...resolved.specs];
        seeded = true;
        this.#log.info("fleet seeded", { count: resolved.specs.length });
      }
      for (const spec of specs) await this.#fleet.start(spec);
      this.#log.info("fleet restored", { sensors: specs.length, seeded });
    });
  }

  get size(): number {
    return this.#fleet.size;
  }

  get cap(): number {
    return this.#opts.cap;
  }

  add(request: SensorRequest): Promise<AddSensorsResult> {
    return this.#serialized(async () => {
      // The only fleet is gone and this process with it: nothing would run the new sensors.
      if (this.#fleet.gaveUp) return { ok: false, code: "unavailable", message: FLEET_GAVE_UP };
      const resolved = resolveSensorRequest(request, {
        defaults: this.#opts.defaults,
        taken: (id) => this.#fleet.has(id),
        size: this.#fleet.size,
        cap: this.#opts.cap,
        nextNumber: this.#nextNumber,
      });
      if (!resolved.ok) return resolved;
      this.#nextNumber = resolved.nextNumber;
      await this.#registry.put(resolved.specs);
      for (const spec of resolved.specs) await this.#fleet.start(spec);
      this.#log.info("sensors added", {
        count: resolved.specs.length,
        first: resolved.specs[0]!.id,
        running: this.#fleet.size,
      });
      return { ok: true, ids: resolved.specs.map((s) => s.id) } as const;
    });
  }

  remove(id: string): Promise<boolean> {
    return this.#serialized(async () => {
      if (!this.#fleet.has(id)) return false;
      await this.#registry.remove(id);
      return await this.#fleet.remove(id);
    });
  }

  list(offset: number, limit: number): readonly SensorInfo[] {
    return this.#fleet.list(offset, limit);
  }

  get(id: string): SensorDetail | undefined {
    return this.#fleet.get(id);
  }

  overheat(id: string, request: OverheatRequest): OverheatResult {
    return this.#fleet.overheat(id, request);
  }

  fault(id: string, request: FaultRequest): FaultResult {
    return this.#fleet.fault(id, request);
  }

  clearFaults(id: string, kind?: FaultKind): ClearFaultsResult {
    return this.#fleet.clearFaults(id, kind);
  }

  /**
   * Records the sensor's new rule in the registry, then has the running sensor adopt it in
   * place: a restart recreates it with the new rule, and the answer says the last seq emitted
   * under the old one.
   */
  setRule(id: string, patch: RulePatch): Promise<RuleResult> {
    return this.#serialized(async () => {
      const spec = this.#fleet.spec(id);
      if (!spec) return { ok: false, code: "not_found", message: `Unknown sensor: "${id}"` };
      const merged = mergeRule(spec.rule, patch);
      if (!merged.ok) return { ok: false, code: "invalid", message: merged.message } as const;
      await this.#registry.put([withRule(spec, merged.rule)]);
      return this.#fleet.setRule(id, patch);
    });
  }

  /** Runs `write` after every earlier write settled. */
  #serialized<T>(write: () => Promise<T>): Promise<T> {
    const result = this.#writes.then(write);
    this.#writes = result.catch(() => {});
    return result;
  }
}

export interface SharedFleetOptions {
  readonly registry: RegistryView;
  readonly placement: FleetPlacement;
  readonly commands: FleetCommands;
  /** The sensors this process runs, if it runs any: their seq and last reading are known here. */
  readonly local?: SensorFleet;
  readonly defaults: SpecDefaults;
  readonly cap: number;
  readonly logger: Logger;
}

/**
 * The fleet as any process of a Kafka deployment drives it: adds and removes
 * are registry writes, checked against a caught-up view of the registry; the
 * sensors processes that own the record's partition start or stop the sensor.
 * Overheat travels as a command to whichever process runs the sensor.
 *
 * Writes of one process are serialized, and adds waiting for a write go together in the next
 * one. Two processes that add the same new id
 * at the same moment can both pass the check; the later record wins (one
 * sensor, the later spec) and both answer 201.
 */
export class SharedFleet implements SensorControl {
  readonly #opts: SharedFleetOptions;
  readonly #registry: RegistryView;
  readonly #log: Logger;
  #writes: Promise<unknown> = Promise.resolve();
  /** Adds waiting for the next registry write, in arrival order. */
  #adds: { request: SensorRequest; waiter: PromiseWithResolvers<AddSensorsResult> }[] = [];
  #nextNumber = 1;

  constructor(options: SharedFleetOptions) {
    this.#opts = options;
    this.#registry = options.registry;
    this.#log = options.logger.child({ component: "fleet" });
  }

  get size(): number {
    return this.#registry.size;
  }

  get cap(): number {
    return this.#opts.cap;
  }

  /** Records `seed` (the `--sensors N` fleet) unless the registry was seeded before. */
  seed(seed: SensorRequest): Promise<void> {
    return this.#serialized(async () => {
      const { seeded } = await this.#registry.load();
      if (seeded) return;
      // Generated ids are deterministic: two processes seeding at once write the same records.
      const resolved = resolveSensorRequest(seed, {
        defaults: this.#opts.defaults,
        taken: () => false,
        size: 0,
        cap: this.#opts.cap,
        nextNumber: 1,
      });
      if (!resolved.ok) throw new Error(`Cannot seed the fleet: ${resolved.message}`);
      await this.#registry.put(resolved.specs, { seeded: true });
      this.#log.info("fleet seeded", { count: resolved.specs.length });
    });
  }

  /**
   * Adds that arrive while another write is in flight wait for it and then go together: one
   * catch-up and one registry write for all of them (each a Kafka round trip), each checked
   * against the registry and the adds before it, in arrival order.
   */
  add(request: SensorRequest): Promise<AddSensorsResult> {
    const waiter = Promise.withResolvers<AddSensorsResult>();
    this.#adds.push({ request, waiter });
    if (this.#adds.length === 1) void this.#serialized(() => this.#addQueued()).catch(() => {});
    return waiter.promise;
  }

  async #addQueued(): Promise<void> {
    const adds = this.#adds.splice(0);
    try {
      await this.#registry.catchUp();
      const added = new Set<string>();
      const specs: SensorSpec[] = [];
      const results = adds.map(({ request }): AddSensorsResult => {
        const resolved = resolveSensorRequest(request, {
          defaults: this.#opts.defaults,
          taken: (id) => added.has(id) || this.#registry.spec(id) !== undefined,
          size: this.#registry.size + added.size,
          cap: this.#opts.cap,
          nextNumber: this.#nextNumber,
        });
        if (!resolved.ok) return resolved;
        this.#nextNumber = resolved.nextNumber;
        for (const spec of resolved.specs) added.add(spec.id);
        specs.push(...resolved.specs);
        return { ok: true, ids: resolved.specs.map((s) => s.id) };
      });
      if (specs.length > 0) {
        await this.#registry.put(specs);
        this.#log.info("sensors added", {
          count: specs.length,
          first: specs[0]!.id,
          requests: adds.length,
          total: this.#registry.size,
        });
      }
      adds.forEach(({ waiter }, i) => waiter.resolve(results[i]!));
    } catch (err) {
      for (const { waiter } of adds) waiter.reject(err);
    }
  }

  remove(id: string): Promise<boolean> {
    return this.#serialized(async () => {
      await this.#registry.catchUp();
      if (this.#registry.spec(id) === undefined) return false;
      await this.#registry.remove(id);
      this.#log.info("sensor removed", { id, total: this.#registry.size });
      return true;
    });
  }

  list(offset: number, limit: number): readonly SensorInfo[] {
    return this.#registry.ids().slice(offset, offset + limit).flatMap((id) => {
      const info = this.#detail(id);
      if (!info) return [];
      const { lastReading: _, ...rest } = info;
      return [rest];
    });
  }

  get(id: string): SensorDetail | undefined {
    return this.#detail(id);
  }

  async overheat(id: string, request: OverheatRequest): Promise<OverheatResult> {
    const detail = this.#detail(id);
    if (!detail) return { ok: false, code: "not_found", message: `Unknown sensor: "${id}"` };
    const { high } = detail.thresholds;
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
    if (detail.status !== "running") {
      return { ok: false, code: "not_running", message: `Sensor is ${detail.status}: "${id}"` };
    }
    await this.#opts.commands.overheat(id, { readings: request.readings, temperature });
    this.#log.info("overheat sent", { id, readings: request.readings, temperature });
    return { ok: true, readings: request.readings, temperature };
  }

  /** Resolves the fault here and sends it, as a command, to whichever process runs the sensor. */
  async fault(id: string, request: FaultRequest): Promise<FaultResult> {
    const detail = this.#detail(id);
    if (!detail) return { ok: false, code: "not_found", message: `Unknown sensor: "${id}"` };
    if (detail.status !== "running") {
      return { ok: false, code: "not_running", message: `Sensor is ${detail.status}: "${id}"` };
    }
    const order = resolveFault(request, {
      high: detail.thresholds.high,
      maxTemperature: TEMPERATURE_RANGE.max,
    });
    await this.#opts.commands.fault(id, order);
    this.#log.info("fault sent", { id, ...order });
    return { ok: true, fault: order };
  }

  async clearFaults(id: string, kind?: FaultKind): Promise<ClearFaultsResult> {
    if (!this.#registry.spec(id)) {
      return { ok: false, code: "not_found", message: `Unknown sensor: "${id}"` };
    }
    await this.#opts.commands.clearFaults(id, kind);
    this.#log.info("clear faults sent", { id, kind: kind ?? "all" });
    return { ok: true };
  }

  /**
   * Records the sensor's new rule in the registry. The registry is the command: the process
   * that runs the sensor follows it and has the sensor adopt the rule in place from its next
   * reading (`SensorFleet.start()`); so does any process that runs it later. The seq it takes
   * effect at is not known here (`appliesAfterSeq: null`): the processors record it on the
   * device (`ruleSeq`).
   */
  setRule(id: string, patch: RulePatch): Promise<RuleResult> {
    return this.#serialized(async () => {
      await this.#registry.catchUp();
      const spec = this.#registry.spec(id);
      if (!spec) return { ok: false, code: "not_found", message: `Unknown sensor: "${id}"` };
      const merged = mergeRule(spec.rule, patch);
      if (!merged.ok) return { ok: false, code: "invalid", message: merged.message } as const;
      await this.#registry.put([withRule(spec, merged.rule)]);
      this.#log.info("rule changed", { id, ...merged.rule });
      return { ok: true, rule: merged.rule, appliesAfterSeq: null } as const;
    });
  }

  #detail(id: string): SensorDetail | undefined {
    const spec = this.#registry.spec(id);
    if (!spec) return undefined;
    const owner = this.#opts.placement.ownerOf(this.#registry.partitionOf(id));
    const local = this.#opts.local?.get(id);
    // Run here: what the local fleet knows (seq, last reading) is exact.
    if (local) return owner ? { ...local, owner } : local;
    return {
      id,
      profile: spec.profile,
      intervalMs: spec.intervalMs,
      seq: null,
      status: owner ? "running" : "pending",
      thresholds: spec.rule,
      owner: owner ?? null,
      emitting: owner !== undefined,
      faults: null,
      lastReading: null,
    };
  }

  #serialized<T>(write: () => Promise<T>): Promise<T> {
    const result = this.#writes.then(write);
    this.#writes = result.catch(() => {});
    return result;
  }
}
