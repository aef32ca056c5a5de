/**
 * Composition root: parses the configuration once, serves the HTTP API at
 * once (so `/health` answers while dependencies come up), then connects the
 * adapters and starts the actors of the configured role. On SIGINT/SIGTERM it
 * stops taking requests, then releases everything in reverse start order:
 * sensors stop, the producer flushes, in-flight batches finish and commit,
 * clients close. `start()` is exported so tests run the real program
 * in-process.
 *
 * @module
 */
import { setTimeout as delay } from "node:timers/promises";
import { type Config, helpText, parseConfig } from "./schemas/config.ts";
import { createLogger } from "./adapters/log.ts";
import { createHealth, type HealthCheck } from "./adapters/health.ts";
import { createMetrics } from "./adapters/metrics.ts";
import { createApi } from "./adapters/http_api.ts";
import { ApiError } from "./adapters/http_errors.ts";
import { dashboardRoutes } from "./adapters/dashboard_routes.ts";
import { LiveView } from "./adapters/live_view.ts";
import { storeSnapshot } from "./adapters/store_snapshot.ts";
import { probeKafka, probeMongo } from "./adapters/probe.ts";
import { kafkaSecurity, securityConfig } from "./adapters/kafka_client.ts";
import {
  describeStore,
  openStore,
  openTransport,
  type Producer,
  type Store,
  type Transport,
} from "./adapters/ports.ts";
import type { MemoryTransport } from "./adapters/memory_transport.ts";
import { SensorFleet } from "./actors/sensor_supervisor.ts";
import { ProcessorSupervisor } from "./actors/processor_supervisor.ts";
import { StoreWriter } from "./actors/store_writer.ts";
import type { AlarmRule } from "./domain/hysteresis.ts";
import type { Logger } from "./actors/logger.ts";
import type { ReadingSource } from "./actors/reading_source.ts";
import type { SensorControl } from "./actors/sensor_control.ts";
import type { StoreQueries } from "./actors/store_queries.ts";

export const VERSION = "0.2.0";

export interface App extends AsyncDisposable {
  /** Base URL of the HTTP API, e.g. `http://127.0.0.1:8080`. */
  readonly url: string;
  /** Resolves once every role is connected and running; rejects if start-up gave up. */
  readonly ready: Promise<void>;
  /** Resolves when the app has stopped; its value is the exit code. */
  readonly finished: Promise<number>;
  /** Live components, for tests and diagnostics; undefined until ready or for other roles. */
  readonly parts: Readonly<Parts>;
}

export interface Parts {
  store?: Store;
  transport?: Transport;
  source?: ReadingSource;
  fleet?: SensorFleet;
  producer?: Producer;
  processors?: ProcessorSupervisor;
  writer?: StoreWriter;
}

export interface StartOptions {
  readonly logger?: Logger;
  /** Attempts to connect at start-up before giving up (default: keep trying). */
  readonly connectAttempts?: number;
}

type Cleanup = readonly [name: string, run: () => PromiseLike<void> | void];

/** Starts every role the config asks for; dispose the result to stop it. */
export function start(config: Config, options: StartOptions = {}): App {
  const logger = options.logger ??
    createLogger({ level: config.logLevel, format: config.logFormat });
  const cleanups: Cleanup[] = [];
  const parts: Parts = {};
  const runs = {
    sensors: config.role === "all" || config.role === "sensors",
    processors: config.role === "all" || config.role === "processors",
  };
  const usesTransport = config.role !== "api";
  const usesStore = config.role !== "sensors";
  const shutdown = new AbortController();
  let fatal: unknown;
  const store = describeStore(config);
  const mode = {
    transport: config.kafkaBrokers ? "kafka" : "embedded",
    store: store.kind,
  };

  const checks: HealthCheck[] = [];
  if (usesTransport && config.kafkaBrokers) {
    const brokers = config.kafkaBrokers.join(",");
    // Read the CA bundle once, on the first probe, not on every health check.
    let security: ReturnType<typeof securityConfig> | undefined;
    checks.push({
      name: "kafka",
      probe: () => {
        security ??= securityConfig(
          kafkaSecurity(config, (path) => Deno.readTextFileSync(path)),
        );
        return probeKafka(brokers, 2000, security);
      },
    });
  }
  if (usesStore) {
    checks.push({
      name: store.kind,
      probe: () =>
        parts.store
          ? parts.store.ping()
          : config.mongoUrl
          ? probeMongo(config.mongoUrl, 2000)
          : Promise.reject(new Error("not open")),
    });
  }
  checks.push({
    name: "pipeline",
    probe: () => {
      if (fatal) return Promise.reject(new Error(`stopped: ${String(fatal)}`));
      return started ? Promise.resolve() : Promise.reject(new Error("starting"));
    },
  });
  const health = createHealth(checks);
  // One registry per app: tests run several apps in one process.
  const metrics = createMetrics(() => parts);
  const sensorCount = runs.sensors ? () => parts.fleet?.size ?? 0 : undefined;
  // The live picture exists only where the processors run; elsewhere the store's alerts.
  const live = runs.processors
    ? new LiveView(sensorCount ? { sensors: sensorCount } : {})
    : undefined;
  const sensors = runs.sensors ? lazySensors(() => parts.fleet, live) : undefined;
  const queries = usesStore ? lazyQueries(() => parts.store) : undefined;

  const api = createApi({
    health,
    info: { role: config.role, version: VERSION, mode },
    logger,
    metrics,
    ...(sensors ? { sensors } : {}),
    ...(queries ? { queries } : {}),
    ...(config.apiToken ? { apiToken: config.apiToken } : {}),
    rateLimit: { perMinute: config.rateLimitPerMinute },
    stats: () => ({
      ...(parts.fleet ? { sensors: parts.fleet.stats } : {}),
      ...(parts.producer ? { producer: parts.producer.stats } : {}),
      ...(parts.processors ? { processors: parts.processors.stats } : {}),
      ...(parts.writer ? { store: parts.writer.stats } : {}),
    }),
    dashboard: dashboardRoutes({
      source: live ?? storeSnapshot({
        role: config.role,
        ...(queries ? { queries } : {}),
        ...(sensorCount ? { sensors: sensorCount } : {}),
      }),
      assets: new URL("./dashboard/", import.meta.url),
      signal: shutdown.signal,
    }),
  });
  const server = Deno.serve(
    { hostname: config.host, port: config.port, onListen: () => {} },
    api.fetch,
  );
  const url = `http://${config.host}:${server.addr.port}`;
  logger.info("http api listening", {
    url,
    role: config.role,
    auth: config.apiToken ? "bearer token" : "none",
  });
  logger.info(modeLine(config), { transport: mode.transport, store: mode.store });

  let started = false;
  const connect = async () => {
    if (usesStore) {
      parts.store = await openStore(config, logger);
      cleanups.push(["store", () => parts.store?.[Symbol.asyncDispose]()]);
      logger.info("store open", { store: store.kind, at: store.where });
    }
    const transport = usesTransport ? await openTransport(config, logger) : undefined;
    parts.transport = transport;
    const rule: AlarmRule = {
      high: config.alarmHigh,
      low: config.alarmLow,
      raiseAfter: config.alarmRaiseAfter,
      clearAfter: config.alarmClearAfter,
    };
    if (runs.processors && transport) {
      const { source, deadLetters } = await transport.consumer();
      cleanups.push(["dead-letter sink", () => deadLetters[Symbol.asyncDispose]()]);
      parts.source = source;
      parts.writer = new StoreWriter(parts.store!, { onStored: metrics.readingsStored });
      const processors = new ProcessorSupervisor({
        store: parts.store!,
        writer: parts.writer,
        deadLetters,
        rule,
        passivateAfterMs: config.passivateAfterMs,
        checkpointMs: config.checkpointMs,
        logger,
        onRaiseStored: metrics.raiseStored,
        ...(live ? { onProcessed: (outputs) => live.record(outputs) } : {}),
      });
      parts.processors = processors;
      cleanups.push(["processors", () => processors.stop()]);
      cleanups.push(["consumer", async () => {
        // Finish in-flight batches, store their device states, commit, then leave the group.
        await source.drain();
        await processors.checkpoint().catch((error) =>
          logger.error("final checkpoint failed; the next start replays from the last one", {
            error: error as Error,
          })
        );
        await source[Symbol.asyncDispose]();
      }]);
      await source.start(processors.handleBatch, {
        onAssignment: (partitions) => void processors.onAssignment(partitions),
        onFatal: (error) => {
          fatal = error;
          logger.error("consumer stopped for good; exiting so a supervisor restarts us", {
            error: error as Error,
          });
          void stop(1);
        },
      });
      processors.attach(source);
    }
    if (runs.sensors && transport) {
      const producer = await transport.producer();
      parts.producer = producer;
      cleanups.push(["producer", async () => {
        await producer.close();
        // Embedded: what the sensors produced last is still queued; let the processors drain it.
        if (transport.embedded) await waitForBacklog(transport.embedded, 10_000);
      }]);
      const fleet = new SensorFleet({
        sink: producer,
        logger,
        cap: config.maxSensors,
        defaults: { intervalMs: config.intervalMs, rule, seed: config.seed },
        ...(parts.store ? { lastSeqs: await parts.store.lastSeqs() } : {}),
      });
      parts.fleet = fleet;
      cleanups.push(["sensors", () => fleet.stop()]);
      if (config.sensors > 0) {
        fleet.add({
          kind: "batch",
          count: config.sensors,
          idPrefix: undefined,
          template: { profile: config.sensorProfile },
        });
      }
    }
    started = true;
    logger.info("pipeline running", { role: config.role });
  };

  const ready = (async () => {
    const attempts = options.connectAttempts ?? Infinity;
    for (let attempt = 1;; attempt++) {
      try {
        await connect();
        return;
      } catch (err) {
        // Undo the partial start before trying again.
        await runCleanups(cleanups.splice(0), logger);
        for (const key of Object.keys(parts) as (keyof Parts)[]) delete parts[key];
        if (shutdown.signal.aborted) throw new Error("Start-up cancelled by shutdown");
        // A missing permission will not appear by waiting.
        const hopeless = err instanceof Deno.errors.NotCapable ||
          err instanceof Deno.errors.PermissionDenied;
        if (attempt >= attempts || hopeless) throw err;
        const delayMs = Math.min(10_000, 500 * 2 ** Math.min(attempt - 1, 5));
        logger.warn("start-up failed; retrying", {
          attempt,
          retryInMs: delayMs,
          error: err as Error,
        });
        await abortableDelay(delayMs, shutdown.signal);
        if (shutdown.signal.aborted) throw new Error("Start-up cancelled by shutdown");
      }
    }
  })();
  ready.catch(() => {}); // observed through `app.ready` and /health

  const { promise: finished, resolve: resolveFinished } = Promise.withResolvers<number>();
  let stopping: Promise<void> | undefined;
  function stop(code = 0): Promise<void> {
    stopping ??= (async () => {
      logger.info("shutting down");
      shutdown.abort();
      await ready.catch(() => {});
      // A requested stop stops taking requests first, then releases the pipeline in reverse
      // start order. A fatal stop keeps answering (`/health`: 503 with the reason) while the
      // pipeline winds down, so probes and operators see why the process is going away.
      if (code === 0) await server.shutdown();
      await runCleanups(cleanups.splice(0), logger);
      if (code !== 0) await server.shutdown();
      logger.info("stopped", { exitCode: code });
      resolveFinished(code);
    })();
    return stopping;
  }

  return { url, ready, finished, parts, [Symbol.asyncDispose]: () => stop(0) };
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

async function waitForBacklog(queue: MemoryTransport, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  while (queue.backlog > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function runCleanups(cleanups: Cleanup[], logger: Logger) {
  for (const [name, cleanup] of cleanups.reverse()) {
    try {
      await cleanup();
    } catch (err) {
      logger.error("cleanup failed", { resource: name, error: err as Error });
    }
  }
}

/** Resolves after `ms`, or at once when `signal` aborts (never rejects). */
function abortableDelay(ms: number, signal: AbortSignal): Promise<void> {
  return delay(ms, undefined, { signal }).catch(() => {});
}

function notReady(what: string): never {
  throw new ApiError(503, "unavailable", `${what} is not connected yet; see /health`);
}

/** The fleet as the API sees it before and after start-up. */
function lazySensors(
  get: () => SensorControl | undefined,
  live: LiveView | undefined,
): SensorControl {
  const fleet = () => get() ?? notReady("The sensor fleet");
  return {
    add: (request) => fleet().add(request),
    remove: async (id) => {
      const removed = await fleet().remove(id);
      // Gone from the dashboard at once, not when the live view expires it.
      if (removed) live?.forget(id);
      return removed;
    },
    list: (offset, limit) => fleet().list(offset, limit),
    get: (id) => fleet().get(id),
    overheat: (id, request) => fleet().overheat(id, request),
    get size() {
      return get()?.size ?? 0;
    },
    get cap() {
      return get()?.cap ?? 0;
    },
  };
}

function lazyQueries(get: () => StoreQueries | undefined): StoreQueries {
  const store = () => get() ?? notReady("The store");
  return {
    device: (id) => store().device(id),
    readings: (id, limit) => store().readings(id, limit),
    alerts: (filter) => store().alerts(filter),
  };
}

if (import.meta.main) {
  const parsed = parseConfig(Deno.args, Deno.env.toObject());
  if (!parsed.ok) {
    if (parsed.help) {
      console.log(helpText());
      Deno.exit(0);
    }
    console.error(
      `Cannot start:\n${parsed.errors.map((e) => `  - ${e}`).join("\n")}\nSee --help.`,
    );
    Deno.exit(2);
  }
  const app = start(parsed.config);
  app.ready.catch((error) => {
    console.error(JSON.stringify({ level: "error", msg: "cannot start", error: String(error) }));
    void app[Symbol.asyncDispose]().then(() => Deno.exit(1));
  });
  const onSignal = () => {
    // A store or broker that hangs must not keep the process from exiting.
    setTimeout(() => {
      console.error(JSON.stringify({ level: "error", msg: "shutdown took over 30 s; exiting" }));
      Deno.exit(1);
    }, 30_000);
    void app[Symbol.asyncDispose]();
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  Deno.exit(await app.finished);
}
