/**
 * Composition root: parses the configuration once, starts the roles it asks
 * for (`app/start.ts`) and stops them on SIGINT/SIGTERM. The exit code says
 * how it ended: 0 after a requested stop, 1 when start-up gave up or the
 * pipeline failed for good, 2 for a bad configuration. `start()` is exported
 * so tests run the real program in-process.
 *
 * @module
 */
import { helpText, parseConfig } from "./schemas/config.ts";
import { createLogger } from "./adapters/log.ts";
import { start } from "./app/start.ts";

export { type App, start, type StartOptions, VERSION } from "./app/start.ts";
export type { Parts } from "./app/pipeline.ts";

/** However long a store or broker hangs, a requested stop ends the process within this. */
const SHUTDOWN_LIMIT_MS = 30_000;

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
  const { config } = parsed;
  const logger = createLogger({ level: config.logLevel, format: config.logFormat });
  const app = start(config, { logger });
  const onSignal = () => {
    setTimeout(() => {
      logger.error("shutdown took over 30 s; exiting", { limitMs: SHUTDOWN_LIMIT_MS });
      Deno.exit(1);
    }, SHUTDOWN_LIMIT_MS);
    void app[Symbol.asyncDispose]();
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  Deno.exit(await app.finished);
}
