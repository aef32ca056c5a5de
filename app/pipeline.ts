/**
 * Start-up: the roles this process runs, in start order — store, processors,
 * sensors — each an `AsyncDisposable` on one stack, so releasing the pipeline
 * runs them in reverse and a start-up that gives up leaves nothing open. Each
 * step is retried on its own (`retry.ts`): a step that fails does not reopen
 * what the steps before it opened.
 *
 * @module
 */
import type { Config } from "../schemas/config.ts";
import type { Metrics } from "../adapters/metrics.ts";
import type { LiveView } from "../adapters/live_view.ts";
import {
  describeStore,
  openSeqLedger,
  openTransport,
  type Producer,
  type Store,
  type Transport,
} from "../adapters/ports.ts";
import type { SensorFleet } from "../actors/sensor_supervisor.ts";
import type { ProcessorSupervisor } from "../actors/processor_supervisor.ts";
import type { StoreWriter } from "../actors/store_writer.ts";
import type { ReadingSource } from "../actors/reading_source.ts";
import type { Logger } from "../actors/logger.ts";
import type { AlarmRule } from "../domain/hysteresis.ts";
import { openStoreRole } from "./store_role.ts";
import { startProcessors } from "./processors_role.ts";
import type { OfflineWatch } from "../actors/offline_watch.ts";
import { startSensors } from "./sensors_role.ts";
import { startFleet } from "./fleet_role.ts";
import type { SensorControl } from "../actors/sensor_control.ts";
import type { Retry } from "./retry.ts";
import type { WebhookDispatcher } from "../actors/webhook_dispatcher.ts";
import type { DeviceView } from "../actors/device_view.ts";

export interface Parts {
  readonly store?: Store;
  readonly transport?: Transport;
  readonly source?: ReadingSource;
  readonly fleet?: SensorFleet;
  /** The fleet as the HTTP API drives it: the registry plus the sensors this process runs. */
  readonly control?: SensorControl;
  readonly producer?: Producer;
  readonly processors?: ProcessorSupervisor;
  readonly writer?: StoreWriter;
  readonly offline?: OfflineWatch;
  readonly webhooks?: WebhookDispatcher;
  /** The device states the processors of this process stored (where they run). */
  readonly deviceView?: DeviceView;
}

/** The roles start-up connected, released in reverse start order. */
export interface Pipeline extends AsyncDisposable {
  readonly parts: Parts;
}

export interface ConnectDeps {
  readonly logger: Logger;
  readonly metrics: Pick<Metrics, "readingsStored" | "raiseStored">;
  readonly live: LiveView | undefined;
  /** A role failed for good: `message` says which, and the process must go. */
  readonly fail: (message: string, error: unknown) => void;
  /** Connects one step, retrying it until it works or start-up gives up. */
  readonly retry: Retry;
}

/** Every role of this process, or (when start-up gives up) nothing left open. */
export async function connect(config: Config, deps: ConnectDeps): Promise<Pipeline> {
  const { logger, metrics, live, fail, retry } = deps;
  const steps = stepNames(config);
  const { role } = config;
  await using stack = new AsyncDisposableStack();
  const release = <T extends AsyncDisposable>(name: string, resource: T) =>
    releasing(stack, name, resource, logger);
  const store = role === "sensors"
    ? undefined
    : release("store", await retry(steps.store, () => openStoreRole(config, logger)));
  const transport = role === "api"
    ? undefined
    : await retry(steps.transport, () => openTransport(config, logger));
  const rule = alarmRule(config);
  let parts: Parts = { ...(store ? { store } : {}), ...(transport ? { transport } : {}) };
  if ((role === "all" || role === "processors") && transport && store) {
    const processors = release(
      "processors",
      await retry(steps.consumer, () =>
        startProcessors({ transport, store }, {
          config,
          rule,
          logger,
          metrics,
          ...(live
            ? {
              onProcessed: (outputs) => live.record(outputs),
              onOffline: (event, doc) => live.recordOffline(event, doc),
            }
            : {}),
          onFatal: (error) =>
            fail("consumer stopped for good; exiting so a supervisor restarts us", error),
        })),
    );
    const { source, writer, offline, webhooks, view } = processors;
    parts = {
      ...parts,
      source,
      processors: processors.processors,
      writer,
      offline,
      webhooks,
      deviceView: view,
    };
  }
  if ((role === "all" || role === "sensors") && transport) {
    // Released after the sensors: they stop before their ledger closes.
    const ledger = release(
      "seq ledger",
      await retry(steps.ledger, () => openSeqLedger(config, logger, store)),
    );
    const sensors = release(
      "sensors",
      await retry(
        steps.producer,
        () =>
          startSensors({ transport, ledger, ...(store ? { seqs: store } : {}) }, {
            config,
            rule,
            logger,
            // Gone from the dashboard at once, not when the live view expires it.
            ...(live ? { onRemoved: (id) => live.forget(id) } : {}),
            onFatal: (error) =>
              fail("sensor supervisor gave up; exiting so a supervisor restarts us", error),
          }),
      ),
    );
    parts = { ...parts, fleet: sensors.fleet, producer: sensors.producer };
  }
  // Kafka: every role drives the shared fleet; embedded: only the process that runs it.
  if (parts.fleet || config.kafkaBrokers) {
    // Released before the sensors role: a Kafka member stops the sensors, then leaves its group.
    const fleet = release(
      "fleet",
      await retry(steps.fleet, () =>
        startFleet(parts.fleet, {
          config,
          rule,
          logger,
          onFatal: (error) =>
            fail("fleet registry stopped for good; exiting so a supervisor restarts us", error),
        })),
    );
    parts = { ...parts, control: fleet.control };
  }
  const started = stack.move();
  return { parts, [Symbol.asyncDispose]: () => started.disposeAsync() };
}

/** Puts `resource` on `stack`; a failure to release it is logged, and the rest still run. */
function releasing<T extends AsyncDisposable>(
  stack: AsyncDisposableStack,
  name: string,
  resource: T,
  logger: Logger,
): T {
  stack.defer(async () => {
    try {
      await resource[Symbol.asyncDispose]();
    } catch (error) {
      logger.error("cleanup failed", { resource: name, error: error as Error });
    }
  });
  return resource;
}

/** What each start-up step connects to, as a failure message names it. */
function stepNames(config: Config) {
  const { kind, where } = describeStore(config);
  const kafka = config.kafkaBrokers ? `Kafka at "${config.kafkaBrokers.join(",")}"` : undefined;
  return {
    store: kind === "kv"
      ? `opening the Deno KV store "${where}"`
      : `connecting to MongoDB (${where})`,
    transport: kafka ? `connecting to ${kafka}` : "opening the embedded queue",
    consumer: kafka
      ? `joining consumer group "${config.kafkaGroup}" on ${kafka}`
      : "starting the processors",
    ledger: kafka
      ? `opening the seq topic "${config.kafkaSeqTopic}" on ${kafka}`
      : `opening the seq ledger in "${config.kvPath}"`,
    producer: kafka ? `connecting the producer to ${kafka}` : "starting the sensors",
    fleet: kafka
      ? `joining the fleet registry "${config.kafkaSensorsTopic}" on ${kafka}`
      : `opening the fleet registry in "${config.kvPath}"`,
  };
}

function alarmRule(config: Config): AlarmRule {
  return {
    high: config.alarmHigh,
    low: config.alarmLow,
    raiseAfter: config.alarmRaiseAfter,
    clearAfter: config.alarmClearAfter,
  };
}
