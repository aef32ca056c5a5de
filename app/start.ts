/**
 * Start-up and shutdown of one process. The HTTP API answers at once (so
 * `/health` works while dependencies come up); then the roles this process
 * runs are started one by one — store, processors, sensors — each returning
 * an `AsyncDisposable` kept on one stack, each step retried on its own until
 * connected or until start-up gives up (`KAFKA_GIVE_UP_MS`).
 * Stopping releases the stack in reverse: sensors stop, the producer flushes,
 * in-flight batches finish and commit, the store closes.
 *
 * @module
 */
import type { Hono } from "@hono/hono";
import type { Config } from "../schemas/config.ts";
import { createLogger } from "../adapters/log.ts";
import { createHealth } from "../adapters/health.ts";
import { createMetrics } from "../adapters/metrics.ts";
import { createApi } from "../adapters/http_api.ts";
import { CachedQueries } from "../adapters/cached_queries.ts";
import { viewedQueries } from "../actors/device_view.ts";
import { dashboardRoutes } from "../adapters/dashboard_routes.ts";
import { LiveView } from "../adapters/live_view.ts";
import { storeSnapshot } from "../adapters/store_snapshot.ts";
import { describeStore } from "../adapters/ports.ts";
import type { Logger } from "../actors/logger.ts";
import { healthChecks, type PipelineStatus } from "./health_checks.ts";
import { serveHttp } from "./http_server.ts";
import { createRetry, StartCancelledError, StartFailedError } from "./retry.ts";
import { connect, type Parts, type Pipeline } from "./pipeline.ts";
import { configuredTargetCheck } from "../adapters/webhook_target.ts";

/** The program's name and version: `--version`, `/health` and the `iot_build_info` metric. */
export const NAME = "iot-pipeline";
export const VERSION = "0.2.0";

export interface App extends AsyncDisposable {
  /** Base URL of the HTTP API, e.g. `http://127.0.0.1:8080`. */
  readonly url: string;
  /** Resolves once every role is connected and running; rejects if start-up gave up. */
  readonly ready: Promise<void>;
  /** Resolves when the app has stopped; its value is the exit code (non-zero after a failure). */
  readonly finished: Promise<number>;
  /** Live components, for tests and diagnostics; empty until ready, partial for some roles. */
  readonly parts: Readonly<Parts>;
}

export interface StartOptions {
  readonly logger?: Logger;
  /** Attempts per start-up step before giving up (default: until `kafkaGiveUpMs` has passed). */
  readonly connectAttempts?: number;
  /** Wait before start-up attempt `n + 1` after attempt `n` failed (default 0.5 s doubling). */
  readonly connectBackoffMs?: (attempt: number) => number;
}

/** Starts every role the config asks for; dispose the result to stop it. */
export function start(config: Config, options: StartOptions = {}): App {
  const logger = options.logger ??
    createLogger({ level: config.logLevel, format: config.logFormat });
  const shutdown = new AbortController();
  let pipeline: Pipeline | undefined; // set once, when connected
  let status: PipelineStatus = { type: "starting" };
  const parts = (): Parts => pipeline?.parts ?? {};

  // One registry per app: tests run several apps in one process.
  const metrics = createMetrics(parts, { version: VERSION });
  const health = createHealth(
    healthChecks(config, {
      store: () => parts().store,
      pipeline: () => status,
      producer: () => parts().producer,
    }),
  );
  const runsSensors = config.role === "all" || config.role === "sensors";
  const sensorCount = runsSensors ? () => parts().fleet?.size ?? 0 : undefined;
  // The live picture exists only where the processors run; elsewhere the store's alerts.
  const live = config.role === "all" || config.role === "processors"
    ? new LiveView(sensorCount ? { sensors: sensorCount } : {})
    : undefined;
  const mode = {
    transport: config.kafkaBrokers ? "kafka" : "embedded",
    store: describeStore(config).kind,
  };

  /** The API over what is connected; before that, its sensor and store routes answer 503. */
  const api = (connected: Parts | undefined, signal: AbortSignal): Hono => {
    // The API's store reads: shared, briefly reused and batched (adapters/cached_queries.ts);
    // where the processors run, device lookups their checkpoints stored answered from memory
    // (docs/http-api.md#get-devicesid-from-the-processors-view).
    const cached = connected?.store
      ? new CachedQueries(connected.store, { ttlMs: config.apiReadCacheMs })
      : undefined;
    const view = connected?.deviceView;
    const queries = cached && view ? viewedQueries(cached, view) : cached;
    return createApi({
      health,
      info: { role: config.role, version: VERSION, mode },
      logger,
      metrics,
      ...(connected?.control ? { sensors: connected.control } : {}),
      ...(connected?.store && queries ? { queries, webhooks: connected.store } : {}),
      checkWebhookUrl: configuredTargetCheck(config.webhookAllowNetworks),
      ...(connected ? {} : {
        connecting: {
          sensors: runsSensors || config.kafkaBrokers !== undefined,
          store: config.role !== "sensors",
        },
      }),
      ...(config.apiToken ? { apiToken: config.apiToken } : {}),
      rateLimit: { perMinute: config.rateLimitPerMinute },
      requestTimeoutMs: config.requestTimeoutMs,
      stats: () => stats(parts()),
      dashboard: dashboardRoutes({
        source: live ?? storeSnapshot({
          role: config.role,
          ...(queries ? { queries } : {}),
          ...(sensorCount ? { sensors: sensorCount } : {}),
        }),
        assets: new URL("../dashboard/", import.meta.url),
        signal,
      }),
    });
  };

  // The first line says what is in use and how to switch (the README promises it).
  logger.info(modeLine(config), mode);
  // Dashboard streams opened during start-up end once connected; browsers reconnect.
  const connecting = new AbortController();
  // Throws a `ListenError` (one sentence) when the port is taken: nothing else has started yet.
  const http = serveHttp(
    config,
    api(undefined, AbortSignal.any([connecting.signal, shutdown.signal])),
  );
  logger.info("http api listening", {
    url: http.url,
    role: config.role,
    auth: config.apiToken ? "bearer token" : "none",
  });

  /** A failure the process cannot recover from: `/health` says why, and the process exits 1. */
  const fail = (message: string, error: unknown) => {
    status = { type: "stopped", reason: error };
    const cause = error instanceof Error && error.cause instanceof Error ? error.cause : undefined;
    logger.error(message, { error: error as Error, ...(cause ? { cause } : {}) });
    void stop(1);
  };

  const retry = createRetry({
    attempts: options.connectAttempts ?? Infinity,
    giveUpMs: config.kafkaGiveUpMs,
    signal: shutdown.signal,
    logger,
    ...(options.connectBackoffMs ? { backoffMs: options.connectBackoffMs } : {}),
  });
  const ready = connect(config, { logger, metrics, live, fail, retry }).then((connected) => {
    pipeline = connected;
    if (status.type === "starting") status = { type: "running" };
    http.serve(api(connected.parts, shutdown.signal));
    connecting.abort();
    logger.info("pipeline running", { role: config.role });
  });
  ready.catch((error) => {
    if (error instanceof StartFailedError) fail(error.message, error);
    else if (!(error instanceof StartCancelledError)) {
      fail(`Cannot start: ${error instanceof Error ? error.message : String(error)}`, error);
    }
  });

  const { promise: finished, resolve: resolveFinished } = Promise.withResolvers<number>();
  let stopping: Promise<void> | undefined;
  function stop(code: number): Promise<void> {
    stopping ??= (async () => {
      logger.info("shutting down");
      shutdown.abort();
      await ready.catch(() => {});
      // A requested stop stops taking requests first, then releases the pipeline in reverse
      // start order. A fatal stop keeps answering (`/health`: 503 with the reason) while the
      // pipeline winds down, so probes and operators see why the process is going away.
      if (code === 0) await http.close();
      await pipeline?.[Symbol.asyncDispose]();
      if (code !== 0) await http.close();
      logger.info("stopped", { exitCode: code });
      resolveFinished(code);
    })();
    return stopping;
  }

  return {
    url: http.url,
    ready,
    finished,
    get parts() {
      return parts();
    },
    [Symbol.asyncDispose]: () => stop(0),
  };
}

function stats(parts: Parts): Record<string, unknown> {
  return {
    ...(parts.fleet ? { sensors: parts.fleet.stats } : {}),
    ...(parts.producer ? { producer: parts.producer.stats } : {}),
    ...(parts.processors ? { processors: parts.processors.stats } : {}),
    ...(parts.writer ? { store: parts.writer.stats } : {}),
    ...(parts.offline ? { offline: parts.offline.stats } : {}),
    ...(parts.webhooks ? { webhooks: parts.webhooks.stats } : {}),
    ...(parts.deviceView ? { deviceView: parts.deviceView.stats } : {}),
  };
}

/** The one start-up line that says what is in use and how to switch. */
function modeLine(config: Config): string {
  const transport = config.kafkaBrokers
    ? `Kafka at ${config.kafkaBrokers.join(",")}`
    : "the embedded in-process queue (set KAFKA_BROKERS=127.0.0.1:9092 to use Kafka)";
  const store = config.mongoUrl
    ? "MongoDB"
    : `the embedded Deno KV store ${config.kvPath} (set MONGO_URL=mongodb://127.0.0.1:27017/ to use MongoDB)`;
  return `using ${transport} and ${store}`;
}
