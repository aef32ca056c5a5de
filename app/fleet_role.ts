/**
 * The fleet role: the durable fleet registry and the control the HTTP API
 * drives.
 *
 * - Embedded: the registry is in Deno KV; this process runs every sensor it
 *   holds, and `--sensors N` seeds it once.
 * - Kafka: every role keeps a replica of the registry topic and drives the
 *   shared fleet through it; a process that runs sensors also joins the
 *   sensors group and runs the sensors of the partitions it owns.
 *
 * @module
 */
import { DurableFleet, SharedFleet } from "../actors/fleet_control.ts";
import type { Logger } from "../actors/logger.ts";
import type { SensorControl } from "../actors/sensor_control.ts";
import type { SensorFleet } from "../actors/sensor_supervisor.ts";
import type { AlarmRule } from "../domain/hysteresis.ts";
import { KvFleetRegistry } from "../adapters/kv_fleet_registry.ts";
import {
  fleetTopics,
  KafkaFleetMember,
  type KafkaFleetOptions,
  KafkaRegistryView,
  RegistryTimeoutError,
} from "../adapters/kafka_fleet.ts";
import { ApiError } from "../adapters/http_errors.ts";
import { openFleetKafka } from "../adapters/ports.ts";
import type { Config } from "../schemas/config.ts";
import type { SensorRequest } from "../schemas/sensor_request.ts";

export interface FleetRole extends AsyncDisposable {
  /** What the HTTP API drives. */
  readonly control: SensorControl;
}

export interface FleetRoleOptions {
  readonly config: Config;
  readonly rule: AlarmRule;
  readonly logger: Logger;
  /** A registry consumer stopped for good: the process should exit. */
  readonly onFatal: (error: unknown) => void;
}

/**
 * Opens the registry and starts the control. `fleet` is this process's sensor
 * fleet when it runs sensors; embedded mode needs one.
 */
export async function startFleet(
  fleet: SensorFleet | undefined,
  options: FleetRoleOptions,
): Promise<FleetRole> {
  const { config, rule, logger, onFatal } = options;
  const defaults = {
    intervalMs: config.intervalMs,
    rule,
    seed: config.seed,
    ...(config.offlineAfterMs !== undefined ? { offlineAfterMs: config.offlineAfterMs } : {}),
  };
  const seed = seedRequest(config);
  await using stack = new AsyncDisposableStack();
  let control: SensorControl;
  if (config.kafkaBrokers) {
    const kafka = await openFleetKafka(config, logger);
    const kafkaOptions: KafkaFleetOptions = {
      topics: fleetTopics(config.kafkaSensorsTopic),
      group: config.kafkaSensorsGroup,
      sessionTimeoutMs: config.kafkaSensorsSessionTimeoutMs,
      logger,
      onFatal,
    };
    const view = new KafkaRegistryView(kafka, kafkaOptions);
    stack.use(view);
    await view.start();
    if (fleet) {
      const member = new KafkaFleetMember(kafka, {
        ...kafkaOptions,
        fleet,
        host: Deno.hostname(),
        pid: Deno.pid,
      });
      // Released first: stops the sensors, then leaves the group so others take them over.
      stack.use(member);
      await member.start();
    }
    const shared = new SharedFleet({
      registry: view,
      placement: view,
      commands: view,
      ...(fleet ? { local: fleet } : {}),
      defaults,
      cap: config.maxSensors,
      logger,
    });
    // Only processes that run sensors seed: `--sensors` defaults to 10 in every role.
    if (fleet && seed) await shared.seed(seed);
    control = unavailableOnIo(shared);
  } else {
    if (!fleet) throw new Error("The embedded fleet registry needs the sensors role");
    const registry = stack.use(await KvFleetRegistry.open(config.kvPath, logger));
    const durable = new DurableFleet({
      registry,
      fleet,
      defaults,
      cap: config.maxSensors,
      logger,
    });
    await durable.restore(seed);
    control = durable;
  }
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

/** A registry Kafka could not take or serve is a 503 to retry, not an internal error. */
function unavailableOnIo(control: SensorControl): SensorControl {
  const guard = async <T>(result: T | Promise<T>): Promise<T> => {
    try {
      return await result;
    } catch (error) {
      const name = (error as Error).name ?? "";
      if (error instanceof RegistryTimeoutError || name.startsWith("KafkaJS")) {
        throw new ApiError(
          503,
          "unavailable",
          `The fleet registry is unavailable: ${(error as Error).message}`,
          { cause: error },
        );
      }
      throw error;
    }
  };
  return {
    add: (request) => guard(control.add(request)),
    remove: (id) => guard(control.remove(id)),
    list: (offset, limit) => control.list(offset, limit),
    get: (id) => control.get(id),
    overheat: (id, request) => guard(control.overheat(id, request)),
    fault: (id, request) => guard(control.fault(id, request)),
    clearFaults: (id, kind) => guard(control.clearFaults(id, kind)),
    setRule: (id, patch) => guard(control.setRule(id, patch)),
    get size() {
      return control.size;
    },
    get cap() {
      return control.cap;
    },
  };
}
