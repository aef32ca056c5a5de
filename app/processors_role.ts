/**
 * The processors role: joins the readings consumer group and hands each
 * batch to the processors' supervisor, which writes through the store writer.
 * An offline watch (docs/offline.md) sees each stored batch and raises the
 * alerts of devices that went silent. Disposing it stops the offline watch,
 * finishes the in-flight batches, stores their device states, commits, leaves
 * the group, then stops the processors and the dead-letter sink — the
 * reverse of how they were started. The webhook dispatcher runs here too, beside the writer
 * of the outbox it delivers (docs/webhooks.md); it is stopped first, without draining: what it
 * had not delivered is still pending in the store.
 *
 * @module
 */
import { ProcessorSupervisor } from "../actors/processor_supervisor.ts";
import { StoreWriter } from "../actors/store_writer.ts";
import { DeviceView } from "../actors/device_view.ts";
import { OfflineWatch, type OfflineWatchOptions } from "../actors/offline_watch.ts";
import { defaultOfflineAfterMs } from "../domain/offline.ts";
import type { DeviceOutput } from "../actors/processor.ts";
import type { ReadingSource } from "../actors/reading_source.ts";
import type { AlarmRule } from "../domain/hysteresis.ts";
import type { Logger } from "../actors/logger.ts";
import type { Metrics } from "../adapters/metrics.ts";
import type { Store, Transport } from "../adapters/ports.ts";
import type { Config } from "../schemas/config.ts";
import { WebhookDispatcher } from "../actors/webhook_dispatcher.ts";
import { httpWebhookTransport } from "../adapters/webhook_http.ts";
import { configuredTargetCheck } from "../adapters/webhook_target.ts";
import { realTimers, type Timers } from "../actors/timers.ts";

export interface ProcessorsRole extends AsyncDisposable {
  readonly source: ReadingSource;
  readonly processors: ProcessorSupervisor;
  readonly writer: StoreWriter;
  readonly offline: OfflineWatch;
  readonly webhooks: WebhookDispatcher;
  /** The device states this process's checkpoints stored, for `GET /devices/:id`. */
  readonly view: DeviceView;
}

export interface ProcessorsRoleOptions {
  readonly config: Pick<
    Config,
    | "passivateAfterMs"
    | "checkpointMs"
    | "offlineAfterMs"
    | "offlineGraceMs"
    | "intervalMs"
    | "webhookMaxAttempts"
    | "webhookBackoffBaseMs"
    | "webhookBackoffCapMs"
    | "webhookPollMs"
    | "webhookTimeoutMs"
    | "webhookLeaseMs"
    | "webhookRetentionMs"
    | "webhookAllowNetworks"
  >;
  /** The webhook dispatcher's clock (default: the real one). */
  readonly timers?: Timers;
  readonly rule: AlarmRule;
  readonly logger: Logger;
  readonly metrics: Pick<Metrics, "readingsStored" | "raiseStored">;
  /** Sees what each batch produced once stored (the dashboard's live view). */
  readonly onProcessed?: (outputs: readonly DeviceOutput[]) => void;
  /** Sees each offline episode raised, cleared or withdrawn (the dashboard's live view). */
  readonly onOffline?: OfflineWatchOptions["onEpisode"];
  /** The consumer gave up for good: the process must go. */
  readonly onFatal: (error: unknown) => void;
}

/** Open offline alerts loaded at an assignment, to withdraw any that never happened. */
const MAX_OPEN_OFFLINE = 10_000;

/** Starts consuming; resolves once the consumer runs. */
export async function startProcessors(
  ports: { readonly transport: Transport; readonly store: Store },
  options: ProcessorsRoleOptions,
): Promise<ProcessorsRole> {
  const { config, rule, logger, metrics, onProcessed, onOffline, onFatal } = options;
  await using stack = new AsyncDisposableStack();
  const { source, deadLetters } = await ports.transport.consumer();
  stack.use(deadLetters);
  const writer = new StoreWriter(ports.store, { onStored: metrics.readingsStored });
  const view = new DeviceView();
  const offline = new OfflineWatch({
    writer,
    graceMs: config.offlineGraceMs,
    activeAlerts: () =>
      ports.store.alerts({ type: "offline", status: "active", limit: MAX_OPEN_OFFLINE }),
    // Devices silent since before the assignment are resumed from their stored states.
    currentStates: (ids) => ports.store.loadDevices(ids),
    ...(ports.store.devicesIn
      ? { statesIn: (partitions: readonly number[]) => ports.store.devicesIn!(partitions) }
      : {}),
    ...(onOffline ? { onEpisode: onOffline } : {}),
    logger,
  });
  const processors = stack.use(
    new ProcessorSupervisor({
      store: ports.store,
      writer,
      deadLetters,
      rule,
      passivateAfterMs: config.passivateAfterMs,
      // The in-process queue loses what a crash left uncommitted: roll forward from the store.
      rollForward: ports.transport.kind === "embedded",
      checkpointMs: config.checkpointMs,
      logger,
      onRaiseStored: metrics.raiseStored,
      onProcessed: (outputs, partition) => {
        offline.observe(outputs, partition);
        onProcessed?.(outputs);
      },
      // Readings without their own limit (other producers): the global one, else 3 × the default
      // interval.
      offlineAfterMs: config.offlineAfterMs ?? defaultOfflineAfterMs(config.intervalMs),
      view,
    }),
  );
  stack.defer(async () => {
    // Finish in-flight batches, store their device states, commit, then leave the group.
    await source.drain();
    await processors.checkpoint().catch((error) =>
      logger.error("final checkpoint failed; the next start replays from the last one", {
        error: error as Error,
      })
    );
    // Before leaving the group: its partitions' next owners store newer states.
    view.clear();
    await source[Symbol.asyncDispose]();
  });
  await source.start(processors.handleBatch, {
    onAssignment: (partitions) => {
      void processors.onAssignment(partitions);
      // The states the processors just started reading: one read serves both.
      offline.onAssignment(partitions, processors.prefetched());
    },
    onRewind: (partition) => processors.rewind(partition),
    onFatal: (error) => {
      // The API keeps answering while the process winds down; the partitions go elsewhere.
      view.clear();
      onFatal(error);
    },
  });
  processors.attach(source);
  offline.attach(source);
  // Stopped first: nothing is raised once batches stop being observed.
  stack.use(offline);
  const webhooks = stack.use(
    new WebhookDispatcher({
      store: ports.store,
      transport: httpWebhookTransport,
      timers: options.timers ?? realTimers,
      logger,
      pollMs: config.webhookPollMs,
      maxAttempts: config.webhookMaxAttempts,
      backoff: { baseMs: config.webhookBackoffBaseMs, capMs: config.webhookBackoffCapMs },
      timeoutMs: config.webhookTimeoutMs,
      leaseMs: config.webhookLeaseMs,
      retentionMs: config.webhookRetentionMs,
      checkTarget: configuredTargetCheck(config.webhookAllowNetworks),
    }),
  );
  const started = stack.move();
  return {
    source,
    processors,
    writer,
    offline,
    webhooks,
    view,
    [Symbol.asyncDispose]: () => started.disposeAsync(),
  };
}
