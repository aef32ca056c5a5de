/**
 * The fleet registry in Deno KV (embedded mode), in the same file as the
 * embedded store:
 *
 *   ["fleet", "sensors", id] → SensorSpec
 *   ["fleet", "seeded"]      → { at, count }   (set once, with the `--sensors N` fleet)
 *
 * A batch of specs is written in atomic chunks of a few hundred: a crash in
 * the middle of a large batch keeps the chunks already committed, and the
 * API, which answers only after the last one, never said they were added.
 *
 * @module
 */
import type { FleetRegistry, RegistrySnapshot } from "../actors/fleet_registry.ts";
import type { Logger } from "../actors/logger.ts";
import { parseSpec, type SensorSpec } from "../schemas/sensor_spec.ts";

/** Deno KV allows at most 1000 mutations per atomic operation; stay well below. */
const MUTATIONS_PER_COMMIT = 400;
const SENSORS = ["fleet", "sensors"] as const;
const SEEDED = ["fleet", "seeded"] as const;

export class KvFleetRegistry implements FleetRegistry, AsyncDisposable {
  readonly #kv: Deno.Kv;
  readonly #log: Logger;

  private constructor(kv: Deno.Kv, logger: Logger) {
    this.#kv = kv;
    this.#log = logger.child({ component: "registry" });
  }

  /** Opens (creating) the KV file at `path`, or an in-memory registry for ":memory:". */
  static async open(path: string, logger: Logger): Promise<KvFleetRegistry> {
    if (path !== ":memory:") {
      const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) : ".";
      if (dir) await Deno.mkdir(dir, { recursive: true });
    }
    return new KvFleetRegistry(await Deno.openKv(path), logger);
  }

  async load(): Promise<RegistrySnapshot> {
    const specs: SensorSpec[] = [];
    for await (const entry of this.#kv.list({ prefix: SENSORS })) {
      const parsed = parseSpec(entry.value);
      if (parsed.ok) specs.push(parsed.spec);
      // A record this version cannot read must not stop the rest of the fleet.
      else {this.#log.error("unreadable sensor spec skipped", {
          key: entry.key.join("/"),
          reason: parsed.reason,
        });}
    }
    const seeded = (await this.#kv.get(SEEDED)).value !== null;
    return { specs, seeded };
  }

  async put(specs: readonly SensorSpec[], options: { seeded?: boolean } = {}): Promise<void> {
    for (let i = 0; i < specs.length || (i === 0 && options.seeded); i += MUTATIONS_PER_COMMIT) {
      const op = this.#kv.atomic();
      for (const spec of specs.slice(i, i + MUTATIONS_PER_COMMIT)) {
        op.set([...SENSORS, spec.id], spec);
      }
      // The marker goes with the last chunk: a seed cut short by a crash is seeded again.
      if (options.seeded && i + MUTATIONS_PER_COMMIT >= specs.length) {
        op.set(SEEDED, { at: new Date().toISOString(), count: specs.length });
      }
      const result = await op.commit();
      if (!result.ok) throw new Error("Deno KV refused a fleet registry write");
    }
  }

  async remove(id: string): Promise<void> {
    await this.#kv.delete([...SENSORS, id]);
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.#kv.close();
    return Promise.resolve();
  }
}
