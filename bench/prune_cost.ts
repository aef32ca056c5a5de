/**
 * What webhook retention's prune costs the store when nothing is old enough to delete (the first
 * retention period, and most prunes after it on a server that reads every settled event for it):
 * fills a fresh database's settled webhook events with N recent ones, in steps, and times
 * `MongoStore.prune()` twice at each step.
 *
 *   deno run -A bench/prune_cost.ts --settled 10000,50000
 *
 * MONGO_URL the store (default the local stack).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { MongoClient } from "mongodb";
import { MongoStore } from "../adapters/mongo_store.ts";
import { silentLogger } from "../adapters/log.ts";
import { runName } from "./services.ts";

const { values } = parseArgs({ options: { settled: { type: "string", default: "10000,50000" } } });
const steps = values.settled.split(",").map(Number).toSorted((a, b) => a - b);
const url = Deno.env.get("MONGO_URL") ?? "mongodb://127.0.0.1:27017/";
const name = runName("prune").replaceAll("-", "_");
const client = new MongoClient(url);
await using store = await MongoStore.open(url, name, silentLogger);
try {
  // The settled events' collection, as `MongoStore.settle()` fills it (documents of that shape).
  const settled = client.db(name).collection<{ _id: string }>("webhook_settled");
  const now = Date.now();
  let n = 0;
  for (const target of steps) {
    for (; n < target; n += 1000) {
      await settled.insertMany(Array.from({ length: Math.min(1000, target - n) }, (_, i) => ({
        _id: `sensor-${n + i}:overheat:${n + i}:raised`,
        event: "raise",
        deviceId: `sensor-${n + i}`,
        occurredAt: new Date(now - 1000),
        alert: { temperature: 85.2, thresholds: { raiseAt: 80, clearAt: 70 } },
        deliveries: {},
        pending: false,
        settledAt: new Date(now - 1000),
        fence: 1,
      })));
    }
    for (let round = 1; round <= 2; round++) {
      const t0 = performance.now();
      const pruned = await store.prune(new Date(now - 7 * 86_400_000), 1000);
      const ms = Math.round(performance.now() - t0);
      console.log(`${target} settled events, none old enough: prune deleted ${pruned} in ${ms} ms`);
    }
  }
} finally {
  await client.db(name).dropDatabase().catch(() => {});
  await client.close();
}
