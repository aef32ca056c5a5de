/**
 * Composition root: parses the configuration once, starts the roles it asks
 * for (`app/start.ts`) and stops them on SIGINT/SIGTERM. The exit code says
 * how it ended: 0 after a requested stop, 1 when start-up gave up or the
 * pipeline failed for good, 2 for a bad configuration. `start()` is exported
 * so tests run the real program in-process.
 *
 * @module
 */
import { helpText, LOG_FORMATS, LOG_LEVELS, parseConfig } from "./schemas/config.ts";
import { createLogger } from "./adapters/log.ts";
import { type App, NAME, start, VERSION } from "./app/start.ts";
import { ListenError } from "./app/http_server.ts";
import type { Logger } from "./actors/logger.ts";

export { type App, NAME, start, type StartOptions, VERSION } from "./app/start.ts";
export type { Parts } from "./app/pipeline.ts";

/** However long a store or broker hangs, a requested stop ends the process within this. */
const SHUTDOWN_LIMIT_MS = 30_000;

/** The exit codes, documented in docs/operations.md. */
export const EXIT = { stopped: 0, failed: 1, badConfig: 2 } as const;

if (import.meta.main) {
  const env = Deno.env.toObject();
  const parsed = parseConfig(Deno.args, env);
  if (!parsed.ok && parsed.help) {
    console.log(parsed.show === "version" ? `${NAME} ${VERSION}` : helpText());
    Deno.exit(EXIT.stopped);
  }
  // A bad configuration is reported in the format the environment asks for, where it is valid.
  const logger = parsed.ok
    ? createLogger({ level: parsed.config.logLevel, format: parsed.config.logFormat })
    : createLogger({
      level: LOG_LEVELS.find((l) => l === env.LOG_LEVEL) ?? "info",
      format: LOG_FORMATS.find((f) => f === env.LOG_FORMAT) ?? "json",
    });
  // Whatever escapes is a defect, yet it still ends in one line through the logger and exit 1.
  globalThis.addEventListener("unhandledrejection", (event) => {
    event.preventDefault();
    exitWith(logger, event.reason, "Stopped by an unexpected failure");
  });
  globalThis.addEventListener("error", (event) => {
    event.preventDefault();
    exitWith(logger, event.error, "Stopped by an unexpected failure");
  });
  if (!parsed.ok) {
    logger.error(`Cannot start: ${parsed.errors.join("; ")} (see --help)`, {
      errors: parsed.errors,
    });
    Deno.exit(EXIT.badConfig);
  }
  let app: App;
  try {
    app = start(parsed.config, { logger });
  } catch (error) {
    // A `ListenError` says it all; anything else is unexpected.
    exitWith(logger, error, error instanceof ListenError ? undefined : "Cannot start");
  }
  const onSignal = () => {
    setTimeout(() => {
      logger.error("Shutdown took over 30 s; exiting", { limitMs: SHUTDOWN_LIMIT_MS });
      Deno.exit(EXIT.failed);
    }, SHUTDOWN_LIMIT_MS);
    void app[Symbol.asyncDispose]();
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  Deno.exit(await app.finished);
}

/** Logs the error's message (after `prefix: `) as one line, its stack at debug level, and exits 1. */
function exitWith(logger: Logger, error: unknown, prefix?: string): never {
  const message = error instanceof Error ? error.message : String(error);
  logger.error(prefix ? `${prefix}: ${message}` : message, {
    error: error instanceof Error ? error : message,
  });
  Deno.exit(EXIT.failed);
}
