/**
 * The durable fleet of one process (embedded mode): the fleet registry says
 * which sensors should run, the sensor supervisor runs them. Every change is
 * recorded in the registry before it is applied and before the API answers,
 * so a restart recreates exactly the fleet that was running: `restore()`
 * starts what the registry holds, seeding it once from `--sensors N`.
 *
 * Writes are serialized: each add checks ids and the cap against the fleet
 * as the previous write left it, so concurrent requests cannot overshoot.
 *
 * @module
 */
import type { SensorFleet } from "./sensor_supervisor.ts";
import type { FleetRegistry } from "./fleet_registry.ts";
import type { Logger } from "./logger.ts";
import { resolveSensorRequest, type SpecDefaults } from "../domain/sensor_specs.ts";
import type { SensorRequest } from "../schemas/sensor_request.ts";
import type { OverheatRequest } from "../schemas/overheat_request.ts";
import type {
  AddSensorsResult,
  OverheatResult,
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

  /** Runs `write` after every earlier write settled. */
  #serialized<T>(write: () => Promise<T>): Promise<T> {
    const result = this.#writes.then(write);
    this.#writes = result.catch(() => {});
    return result;
  }
}
