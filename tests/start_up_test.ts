/** Start-up as `app/start.ts` runs it in-process: what it says first. */
import "./env_guard.ts";
import assert from "node:assert/strict";
import { start } from "../main.ts";
import { createLogger } from "../adapters/log.ts";
import { testWith } from "./needs.ts";
import { EMBEDDED, testConfig, testEnv } from "./test_app.ts";

const permitted = await testWith();

permitted.test("the first log line says which adapters are in use and how to switch", async () => {
  await using env = await testEnv("start-first-line", EMBEDDED);
  const lines: string[] = [];
  await using app = start(testConfig(env), {
    logger: createLogger({ write: (line) => lines.push(line) }),
  });
  await app.ready;
  const first = JSON.parse(lines[0]!);
  assert.equal(first.level, "info");
  assert.match(first.msg, /^using the embedded in-process queue \(set KAFKA_BROKERS=/);
  assert.match(first.msg, /the embedded Deno KV store .* \(set MONGO_URL=/);
  assert.deepEqual({ transport: first.transport, store: first.store }, {
    transport: "embedded",
    store: "kv",
  });
});
