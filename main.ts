/**
 * Composition root: parses the configuration once, builds the adapters and
 * actors, serves the HTTP API, and releases everything in reverse order on
 * SIGINT/SIGTERM. `start()` is exported so tests run the real program
 * in-process.
 *
 * @module
 */
import { type Config, helpText, parseConfig } from "./schemas/config.ts";
import { createLogger, type Logger } from "./adapters/log.ts";
import { createHealth } from "./adapters/health.ts";
import { createApi } from "./adapters/http_api.ts";
import { probeKafka, probeMongo, redactUrl } from "./adapters/probe.ts";

export const VERSION = "0.1.0";

export interface App extends AsyncDisposable {
  /** Base URL of the HTTP API, e.g. `http://127.0.0.1:8080`. */
  readonly url: string;
  /** Resolves when the app has been stopped (by a signal or dispose). */
  readonly finished: Promise<void>;
}

export interface StartOptions {
  readonly logger?: Logger;
}

/** Starts every role the config asks for; dispose the result to stop it. */
export async function start(config: Config, options: StartOptions = {}): Promise<App> {
  const logger = options.logger ??
    createLogger({ level: config.logLevel, format: config.logFormat });
  const cleanups: Array<[string, () => Promise<void> | void]> = [];

  const brokers = config.kafkaBrokers.join(",");
  const health = createHealth([
    { name: "kafka", probe: () => probeKafka(brokers, 2000) },
    { name: "mongodb", probe: () => probeMongo(config.mongoUrl, 2000) },
  ]);

  const api = createApi({ health, info: { role: config.role, version: VERSION }, logger });
  const server = Deno.serve({
    hostname: config.host,
    port: config.port,
    onListen: () => {},
  }, api.fetch);
  cleanups.push(["http", () => server.shutdown()]);
  const url = `http://${config.host}:${server.addr.port}`;
  logger.info("http api listening", { url, role: config.role });
  logger.info("dependencies", {
    kafka: brokers,
    mongo: redactUrl(config.mongoUrl),
    db: config.mongoDb,
  });
  // Start even when a dependency is down: /health names it, and it may come back.
  const initial = await health();
  for (const [name, check] of Object.entries(initial.checks)) {
    if (check.ok) logger.info("connected", { dependency: name, latencyMs: check.latencyMs });
    else logger.warn("dependency unreachable", { dependency: name, error: check.error });
  }

  let resolveFinished!: () => void;
  const finished = new Promise<void>((r) => (resolveFinished = r));
  let stopping: Promise<void> | undefined;
  const stop = () =>
    stopping ??= (async () => {
      logger.info("shutting down");
      for (const [name, cleanup] of cleanups.reverse()) {
        try {
          await cleanup();
        } catch (err) {
          logger.error("cleanup failed", { resource: name, error: err });
        }
      }
      logger.info("stopped");
      resolveFinished();
    })();

  return { url, finished, [Symbol.asyncDispose]: stop };
}

if (import.meta.main) {
  const parsed = parseConfig(Deno.args, Deno.env.toObject());
  if (!parsed.ok) {
    if (parsed.help) {
      console.log(helpText());
      Deno.exit(0);
    }
    console.error(`Cannot start:\n${parsed.errors.map((e) => `  - ${e}`).join("\n")}\nSee --help.`);
    Deno.exit(2);
  }
  const app = await start(parsed.config);
  const onSignal = () => void app[Symbol.asyncDispose]();
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  await app.finished;
  Deno.exit(0);
}
