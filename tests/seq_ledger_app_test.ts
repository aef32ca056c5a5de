/**
 * The seq ledger through the running program in Kafka mode: a `--role
 * sensors` process has no store to read a lastSeq from, so only the ledger
 * topic tells a restarted or moved sensor where to continue.
 *
 * @module
 */
import "./env_guard.ts";
import assert from "node:assert/strict";
import { KAFKA_MONGO, startApp, testEnv } from "./test_app.ts";
import { testWith } from "./needs.ts";
import { until } from "./wait.ts";

const services = await testWith(KAFKA_MONGO);

async function addSensor(url: string, id: string) {
  const res = await fetch(`${url}/sensors`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ id, intervalMs: 100 }),
  });
  assert.equal(res.status, 201, await res.text());
}

services.test("seq ledger (kafka): a sensor restarted in another sensors process continues above its blocks", async () => {
  await using env = await testEnv("seq-move", KAFKA_MONGO);
  const seqs: number[] = [];
  {
    await using first = await startApp(env, { ROLE: "sensors", SEQ_BLOCK: "10" });
    await addSensor(first.url, "mover");
    // Past the first block of 10, so the second one was reserved too.
    await until(
      "15 readings",
      () => (first.parts.fleet!.lastSeq("mover") ?? 0) >= 15 || undefined,
    );
    assert.ok(first.parts.fleet!.stats.seqBlocks >= 2);
    seqs.push(first.parts.fleet!.lastSeq("mover")!);
  }
  // Another process (same topics, its own ledger consumer) takes the sensor over from the
  // fleet registry.
  await using second = await startApp(env, { ROLE: "sensors", SEQ_BLOCK: "10" });
  const resumed = await until(
    "a reading from the second process",
    () => second.parts.fleet!.get("mover")?.lastReading?.seq,
    30_000,
  );
  assert.ok(resumed > seqs[0]!, `${resumed} after ${seqs[0]}`);
  // Every block the first process held lies below the second one's first seq.
  assert.ok(resumed > 20, `the first process held blocks up to at least 20: ${resumed}`);
});
