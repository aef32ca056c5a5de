/** The structured logger: levels, and stacks only for whoever asked for debug. */
import assert from "node:assert/strict";
import { createLogger } from "../adapters/log.ts";

Deno.test("createLogger() prints an error field's stack at debug level only", () => {
  const error = new Error("Injected failure");
  const info: string[] = [];
  createLogger({ write: (l) => info.push(l) }).error("Cannot start: injected", { error });
  assert.deepEqual(JSON.parse(info[0]!).error, { name: "Error", message: "Injected failure" });
  const debug: string[] = [];
  createLogger({ level: "debug", write: (l) => debug.push(l) }).error("Cannot start: injected", {
    error,
  });
  const logged = JSON.parse(debug[0]!).error;
  assert.equal(logged.message, "Injected failure");
  assert.match(logged.stack, /Injected failure\n\s+at /);
});

Deno.test("createLogger() drops lines below its level", () => {
  const lines: string[] = [];
  const logger = createLogger({ level: "warn", write: (l) => lines.push(l) });
  logger.debug("d");
  logger.info("i");
  logger.warn("w");
  logger.error("e");
  assert.deepEqual(lines.map((l) => JSON.parse(l).msg), ["w", "e"]);
});
