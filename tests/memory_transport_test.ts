import assert from "node:assert/strict";
import { MemoryTransport } from "../adapters/memory_transport.ts";
import { silentLogger } from "../adapters/log.ts";
import { until } from "./wait.ts";

Deno.test("MemoryTransport.lag() counts the records of each partition not yet handled", async () => {
  await using queue = new MemoryTransport({ partitions: 3, logger: silentLogger });
  assert.deepEqual([...queue.lag()], [[0, 0], [1, 0], [2, 0]]);
  for (let i = 0; i < 5; i++) assert.ok(queue.publishRaw("device-a", `record ${i}`));
  const waiting = [...queue.lag().values()];
  assert.equal(waiting.reduce((a, b) => a + b, 0), 5);
  assert.equal(waiting.filter((n) => n > 0).length, 1, "one key, one partition");

  await queue.start(() => Promise.resolve(), { onAssignment: () => {}, onFatal: () => {} });
  await until(
    "the backlog handled",
    () => [...queue.lag().values()].every((n) => n === 0) ? true : undefined,
  );
});
