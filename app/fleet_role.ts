/**
 * The fleet role: the durable fleet registry and the control the HTTP API
 * drives. Embedded, the registry is in Deno KV and this process runs every
 * sensor it holds; `--sensors N` seeds it once.
 *
 * @module
 */
import { DurableFleet } from "../actors/fleet_control.ts";
import type { Logger } from "../actors/logger.ts";
import type { SensorControl } from "../actors/sensor_control.ts";
import type { SensorFleet } from "../actors/sensor_supervisor.ts";
import type { AlarmRule } from "../domain/hysteresis.ts";
import { KvFleetRegistry } from "../adapters/kv_fleet_registry.ts";
import type { Config } from "../schemas/config.ts";
import type { SensorRequest } from "../schemas/sensor_request.ts";

export interface FleetRole extends AsyncDisposable {
  /** What the HTTP API drives. */
  readonly control: SensorControl;
}

export interface FleetRoleOptions {
  readonly config: Pick<
    Config,
    "kvPath" | "maxSensors" | "intervalMs" | "seed" | "sensors" | "sensorProfile"
  >;
  readonly rule: AlarmRule;
  readonly logger: Logger;
}

/** Opens the registry and starts the sensors it holds in `fleet`, seeding it once. */
export async function startFleet(
  fleet: SensorFleet,
  options: FleetRoleOptions,
): Promise<FleetRole> {
  const { config, rule, logger } = options;
  await using stack = new AsyncDisposableStack();
  const registry = stack.use(await KvFleetRegistry.open(config.kvPath, logger));
  const control = new DurableFleet({
    registry,
    fleet,
    defaults: { intervalMs: config.intervalMs, rule, seed: config.seed },
    cap: config.maxSensors,
    logger,
  });
  await control.restore(seedRequest(config));
  const started = stack.move();
  return { control, [Symbol.asyncDispose]: () => started.disposeAsync() };
}

/** The `--sensors N` fleet, recorded only into a registry that was never seeded. */
export function seedRequest(
  config: Pick<Config, "sensors" | "sensorProfile">,
): SensorRequest | undefined {
  return config.sensors > 0
    ? {
      kind: "batch",
      count: config.sensors,
      idPrefix: undefined,
      template: { profile: config.sensorProfile },
    }
    : undefined;
}
