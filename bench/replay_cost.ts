/**
 * What a replayed batch of readings costs the store: a processor that restarts, or takes over a
 * partition, writes again the readings it had not committed; they are found stored already and
 * read back by `_id` to be compared (a reading under the same seq with other content is refused).
 * Fills a fresh database with N readings by raw `insertMany`, then times `MongoStore.write()` of
 * batches of B readings stored already, for each way of finding documents by `_id`
 * (`adapters/mongo_store.ts` `IdLookup`), alternating them in rounds; a way that runs past the
 * budget stops after the batch it is in.
 *
 *   deno run -A bench/replay_cost.ts --stored 50000 --batch 2000 --rounds 3
 *
 * `--lookup points,in,scan` chooses the ways (default: all three); MONGO_URL the store (default
 * the local stack).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { MongoClient } from "mongodb";
import { type IdLookup, idLookupOf, MongoStore } from "../adapters/mongo_store.ts";
import { silentLogger } from "../adapters/log.ts";
import { type ReadingDoc, toReadingDoc } from "../schemas/documents.ts";
import { sampleReading } from "./ceilings.ts";
import { runName } from "./services.ts";
import { formatSpread, spread } from "./stats.ts";

const { values } = parseArgs({
  options: {
    stored: { type: "string", default: "50000" },
    batch: { type: "string", default: "2000" },
    rounds: { type: "string", default: "3" },
    lookup: { type: "string", default: "points,in,scan" },
    "budget-seconds": { type: "string", default: "120" },
  },
});
const stored = Number(values.stored);
const batch = Number(values.batch);
const rounds = Number(values.rounds);
const budgetMs = Number(values["budget-seconds"]) * 1000;
const lookups = values.lookup.split(",") as IdLookup[];
const mongoUrl = Deno.env.get("MONGO_URL") ?? "mongodb://127.0.0.1:27017/";
const devices = 10_000;

const log = (line: string) =>
  console.error(`[replay ${new Date().toISOString().slice(11, 19)}] ${line}`);
const db = runName("replay");
const client = new MongoClient(mongoUrl);
const processedAt = new Date();
const doc = (n: number) =>
  toReadingDoc(
    // The same content every time it is made: a replay, not a conflict.
    sampleReading(`sensor-${n % devices}`, 1 + Math.floor(n / devices), processedAt.getTime() - n),
    false,
    processedAt,
  );
try {
  const readings = client.db(db).collection<ReadingDoc>("readings");
  for (let n = 0; n < stored; n += 2000) {
    await readings.insertMany(
      Array.from({ length: Math.min(2000, stored - n) }, (_, i) => doc(n + i)),
      { ordered: false },
    );
  }
  log(`${stored} readings stored; the server's own choice: ${await idLookupOf(client.db(db))}`);
  const perBatchMs = new Map<IdLookup, number[]>(lookups.map((l) => [l, []]));
  for (let round = 0; round < rounds; round++) {
    for (const lookup of round % 2 === 0 ? lookups : lookups.toReversed()) {
      await using store = await MongoStore.open(mongoUrl, db, silentLogger, { idLookup: lookup });
      const t0 = performance.now();
      let batches = 0;
      // Batches of readings stored already, spread over the stored ones.
      while (performance.now() - t0 < budgetMs && batches < 3) {
        const from = Math.floor(
          ((round * 3 + batches) * 7919 * batch) % Math.max(1, stored - batch),
        );
        const replay = Array.from({ length: batch }, (_, i) => doc(from + i));
        const { refused } = await store.write({ readings: replay, alerts: [], devices: [] });
        if (refused.length > 0) throw new Error(`${lookup}: ${refused.length} refused`);
        batches++;
      }
      const ms = (performance.now() - t0) / batches;
      perBatchMs.get(lookup)!.push(Math.round(ms));
      log(`round ${round + 1}, ${lookup}: ${Math.round(ms)} ms per replayed batch of ${batch}`);
    }
  }
  console.log(
    `\nA replayed batch of ${batch} readings over ${stored} stored (${mongoUrl}), ${rounds} rounds:`,
  );
  for (const [lookup, ms] of perBatchMs) {
    console.log(`  ${lookup}: ${formatSpread(spread(ms))} ms per batch`);
  }
} finally {
  await client.db(db).dropDatabase().catch(() => {});
  await client.close();
}
