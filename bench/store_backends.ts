/**
 * FerretDB's storage backends side by side (docs/local-stack.md#choosing-the-ferretdb-backend):
 * the operations the pipeline asks of its store, each against two or more
 * MongoDB-protocol servers in the same run, alternating which goes first.
 *
 *   deno run -P bench/store_backends.ts \
 *     --target sqlite=mongodb://127.0.0.1:37217/ --target pg=mongodb://127.0.0.1:37218/ --runs 3
 *
 * Per target and run: the raw `insertMany` ceiling with the readings index
 * (`storeCeiling` from bench/ceilings.ts, the same figure `deno task bench`
 * uses); then for each collection size, `_id` equality reads and
 * `_id: {$in: [100 ids]}` reads of the app's reading documents; then 10 000
 * device-state documents written as `replaceOne` upserts (new, then existing)
 * and as the app's checkpoint (`$in` read, `deleteMany $in`, `insertMany`).
 * Slow operations are bounded by a time budget and reported per second over
 * what was done. Prints a Markdown table of medians with their ratios and
 * writes bench/results/store-backends-<date>.json.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { type AnyBulkWriteOperation, type Collection, MongoClient } from "mongodb";
import {
  type DeviceDoc,
  type ReadingDoc,
  toDeviceDoc,
  toReadingDoc,
} from "../schemas/documents.ts";
import { DEFAULT_RULE, INITIAL_ALARM_STATE } from "../domain/hysteresis.ts";
import { sampleReading, storeCeiling } from "./ceilings.ts";
import { runName, type Services } from "./services.ts";
import { formatNumber, round } from "./stats.ts";
import { handleSignals, interruption } from "./interrupt.ts";

const HELP =
  `Usage: deno run -P bench/store_backends.ts --target NAME=URL [--target NAME=URL ...] [options]

  --target NAME=URL   a MongoDB-protocol server to measure (at least one; the first is the baseline)
  --sizes LIST        reading collection sizes for the _id reads (default 20000,200000)
  --devices N         device-state documents written (default 10000)
  --in-size N         ids per $in read (default 50)
  --changed N         device states per checkpoint (default 100)
  --runs N            repetitions, alternating target order (default 3)
  --ceiling-seconds S raw insertMany loop duration (default 10)
  --budget-seconds S  time budget of each bounded operation (default 8)
  --help`;

export interface StoreOptions {
  readonly targets: readonly { readonly name: string; readonly url: string }[];
  readonly sizes: readonly number[];
  readonly devices: number;
  readonly inSize: number;
  readonly changed: number;
  readonly runs: number;
  readonly ceilingMs: number;
  readonly budgetMs: number;
}

/** Parses the command line, reporting every problem at once. */
export function parseStoreOptions(args: string[]): StoreOptions | { problems: string[] } {
  const { values } = parseArgs({
    args,
    options: {
      target: { type: "string", multiple: true, default: [] },
      sizes: { type: "string", default: "20000,200000" },
      devices: { type: "string", default: "10000" },
      "in-size": { type: "string", default: "50" },
      changed: { type: "string", default: "100" },
      runs: { type: "string", default: "3" },
      "ceiling-seconds": { type: "string", default: "10" },
      "budget-seconds": { type: "string", default: "8" },
    },
  });
  const problems: string[] = [];
  const int = (name: string, raw: string) => {
    const x = Number(raw);
    if (!Number.isInteger(x) || x < 1) problems.push(`--${name}: "${raw}" is not an integer ≥ 1`);
    return x;
  };
  const targets = values.target.map((raw) => {
    const at = raw.indexOf("=");
    if (at < 1 || !/^mongodb(\+srv)?:\/\//.test(raw.slice(at + 1))) {
      problems.push(`--target: "${raw}" is not NAME=mongodb://…`);
    }
    return { name: raw.slice(0, at), url: raw.slice(at + 1) };
  });
  if (targets.length === 0) problems.push("--target: at least one is needed");
  if (new Set(targets.map((t) => t.name)).size !== targets.length) {
    problems.push("--target: names must differ");
  }
  const options = {
    targets,
    sizes: values.sizes.split(",").map((x) => int("sizes", x.trim())),
    devices: int("devices", values.devices),
    inSize: int("in-size", values["in-size"]),
    changed: int("changed", values.changed),
    runs: int("runs", values.runs),
    ceilingMs: int("ceiling-seconds", values["ceiling-seconds"]) * 1000,
    budgetMs: int("budget-seconds", values["budget-seconds"]) * 1000,
  };
  return problems.length > 0 ? { problems } : options;
}

/** One measurement of one target in one run: operations (or documents) per second. */
type Figures = Record<string, number>;

const log = (line: string) => console.error(`[store] ${line}`);

async function measure(name: string, url: string, o: StoreOptions): Promise<Figures> {
  const figures: Figures = {};
  const services = {
    brokers: "",
    mongoUrl: url,
    versions: { kafka: "", store: name },
    async [Symbol.asyncDispose]() {},
  } satisfies Services;
  const ceiling = await storeCeiling(services, { durationMs: o.ceilingMs, batchSize: 2000, log });
  figures[CEILING] = ceiling.insertsPerSec;
  log(`${name}: ceiling ${ceiling.insertsPerSec} docs/s`);
  const client = new MongoClient(url);
  try {
    for (const size of o.sizes) {
      const db = client.db(runName(`store-${name}`).replaceAll("-", "_"));
      try {
        const readings = db.collection<ReadingDoc>("readings");
        await readings.createIndex({ deviceId: 1, ts: -1 }, { name: "deviceId_ts" });
        const fill = await timed(() => fillReadings(readings, size));
        figures[`fill to ${size} docs/s`] = size / fill.s;
        const ids = (i: number) => readingIdAt(i);
        const one = await bounded(o.budgetMs, 1, async (n) => {
          const doc = await readings.findOne({ _id: ids(pick(n, size)) });
          if (!doc) throw new Error(`Missing reading: "${ids(pick(n, size))}"`);
        });
        figures[`_id = at ${size} reads/s`] = one.perSec;
        // One $in may take minutes where it scans: at least one, not three.
        const many = await bounded(o.budgetMs, o.inSize, async (n) => {
          const wanted = Array.from(
            { length: o.inSize },
            (_, k) => ids(pick(n * o.inSize + k, size)),
          );
          const docs = await readings.find({ _id: { $in: wanted } }).toArray();
          if (docs.length === 0) throw new Error(`No readings found for $in: "${wanted[0]}"…`);
        }, { minSteps: 1 });
        figures[`_id $in at ${size} docs/s`] = many.perSec;
        log(
          `${name}: ${size} docs filled at ${round(size / fill.s, 0)}/s; _id = ${
            round(one.perSec, 2)
          } reads/s (${one.done}); $in ${round(many.perSec, 3)} docs/s (${many.done})`,
        );
      } finally {
        await db.dropDatabase().catch(() => {});
      }
    }
    const db = client.db(runName(`states-${name}`).replaceAll("-", "_"));
    try {
      const devices = db.collection<DeviceDoc>("devices");
      const docs = Array.from({ length: o.devices }, (_, i) => deviceDoc(i));
      const fresh = await bulkUpserts(devices, docs, o.budgetMs * 2);
      figures[`upsert ${o.devices} new docs/s`] = fresh.perSec;
      // Whatever the budget left unwritten still has to exist for the "existing" round.
      await devices.deleteMany({});
      await devices.insertMany(docs, { ordered: false });
      const existing = await bulkUpserts(devices, docs, o.budgetMs * 2);
      figures[`upsert ${o.devices} existing docs/s`] = existing.perSec;
      // The adapter's checkpoint of `changed` devices among all (adapters/mongo_store.ts).
      const checkpoint = await bounded(o.budgetMs, o.changed, async (n) => {
        const changed = Array.from(
          { length: o.changed },
          (_, k) => docs[pick(n * o.changed + k, docs.length)]!,
        );
        const ids = [...new Set(changed.map((d) => d._id))];
        await devices.find({ _id: { $in: ids } }, { projection: { _id: 1, lastSeq: 1 } }).toArray();
        await devices.deleteMany({ _id: { $in: ids } });
        await devices.insertMany(ids.map((id) => changed.find((d) => d._id === id)!), {
          ordered: false,
        });
      }, { minSteps: 1 });
      figures[`checkpoint ${o.changed} of ${o.devices} docs/s`] = checkpoint.perSec;
      log(
        `${name}: upserts new ${round(fresh.perSec, 1)}/s (${fresh.done}), existing ${
          round(existing.perSec, 1)
        }/s (${existing.done}); checkpoint ${
          round(checkpoint.perSec, 2)
        } docs/s (${checkpoint.done})`,
      );
    } finally {
      await db.dropDatabase().catch(() => {});
    }
  } finally {
    await client.close();
  }
  return figures;
}

function readingIdAt(i: number): string {
  return toReadingDoc(
    sampleReading(`sensor-${i % 10_000}`, 1 + Math.floor(i / 10_000)),
    false,
    new Date(0),
  )._id;
}

/** A spread of positions that is the same for every target. */
function pick(n: number, size: number): number {
  return (n * 7919 + 13) % size;
}

async function fillReadings(readings: Collection<ReadingDoc>, size: number) {
  const processedAt = new Date();
  for (let i = 0; i < size; i += 2000) {
    if (interruption.aborted) throw interruption.reason;
    const docs = [];
    for (let n = i; n < Math.min(size, i + 2000); n++) {
      docs.push(
        toReadingDoc(
          sampleReading(`sensor-${n % 10_000}`, 1 + Math.floor(n / 10_000)),
          false,
          processedAt,
        ),
      );
    }
    await readings.insertMany(docs, { ordered: false });
  }
}

function deviceDoc(i: number): DeviceDoc {
  const id = `dev-${String(i).padStart(6, "0")}`;
  return toDeviceDoc(id, { ...INITIAL_ALARM_STATE, lastSeq: 1 }, DEFAULT_RULE, new Date());
}

/**
 * Unordered bulkWrites of `replaceOne` upserts, 50 at a time as the adapter
 * sends them (FerretDB's SQLite backend never answers an `update` command of
 * 100 or more statements), until done or out of budget.
 */
async function bulkUpserts(
  devices: Collection<DeviceDoc>,
  docs: readonly DeviceDoc[],
  budgetMs: number,
) {
  return await bounded(budgetMs, UPSERT_CHUNK, async (n) => {
    const chunk = docs.slice(n * UPSERT_CHUNK, (n + 1) * UPSERT_CHUNK);
    const ops: AnyBulkWriteOperation<DeviceDoc>[] = chunk.map((d) => ({
      replaceOne: { filter: { _id: d._id }, replacement: d, upsert: true },
    }));
    await devices.bulkWrite(ops, { ordered: false });
  }, { limit: Math.ceil(docs.length / UPSERT_CHUNK) });
}

const UPSERT_CHUNK = 50;

async function timed(f: () => Promise<void>): Promise<{ s: number }> {
  const t0 = performance.now();
  await f();
  return { s: (performance.now() - t0) / 1000 };
}

/**
 * Runs `step(0)`, `step(1)`, … until `budgetMs` is spent (after at least
 * `minSteps`) or `limit` steps are done; each step handles `per` items.
 */
async function bounded(
  budgetMs: number,
  per: number,
  step: (n: number) => Promise<void>,
  { limit = Infinity, minSteps = 3 }: { limit?: number; minSteps?: number } = {},
): Promise<{ perSec: number; done: number }> {
  const t0 = performance.now();
  let n = 0;
  while (n < limit && (n < minSteps || performance.now() - t0 < budgetMs)) {
    if (interruption.aborted) throw interruption.reason;
    await step(n++);
  }
  const s = (performance.now() - t0) / 1000;
  return { perSec: (n * per) / s, done: n * per };
}

/** The Markdown table: medians (min–max) per target, each ÷ its ceiling and ÷ the baseline. */
export function storeTable(
  names: readonly string[],
  figures: ReadonlyMap<string, readonly Figures[]>,
): string {
  const rows = [...new Set(names.flatMap((n) => (figures.get(n) ?? []).flatMap(Object.keys)))];
  const runs = (name: string) => figures.get(name) ?? [];
  const value = (name: string, row: string) => runs(name).map((f) => f[row] ?? NaN);
  const perCeiling = (name: string, row: string) =>
    runs(name).map((f) => (f[row] ?? NaN) / (f[CEILING] ?? NaN));
  const [base, ...others] = names;
  const perBase = (name: string, row: string) =>
    runs(name).map((f, i) => (f[row] ?? NaN) / (runs(base!)[i]?.[row] ?? NaN));
  const header = [
    "| per second (median, min–max) |",
    ...names.map((n) => ` ${n} | ${n} ÷ its ceiling |`),
    ...others.map((n) => ` ${n} ÷ ${base} |`),
  ].join("");
  const line = `|---|${names.map(() => "---|---|").join("")}${others.map(() => "---|").join("")}`;
  const body = rows.map((row) => {
    const cells = names.map((n) => ` ${cell(value(n, row))} | ${cell(perCeiling(n, row))} |`);
    const ratios = others.map((n) => ` ${cell(perBase(n, row))} |`);
    return `| ${row} |${cells.join("")}${ratios.join("")}`;
  });
  return [header, line, ...body].join("\n");
}

const CEILING = "ceiling insertMany docs/s";

/** `median (min–max)` with two significant digits at least, unrounded before formatting. */
function cell(values: readonly number[]): string {
  const xs = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (xs.length === 0) return "n/a";
  const mid = xs.length >> 1;
  const median = xs.length % 2 === 1 ? xs[mid]! : (xs[mid - 1]! + xs[mid]!) / 2;
  const f = (x: number) => {
    const digits = Math.abs(x) >= 100 ? 0 : Math.abs(x) >= 10 ? 1 : Math.abs(x) >= 1 ? 2 : 0;
    return digits === 0 && Math.abs(x) < 1 ? x.toPrecision(2) : formatNumber(x, digits);
  };
  return xs.length > 1 && xs[0] !== xs.at(-1)
    ? `${f(median)} (${f(xs[0]!)}–${f(xs.at(-1)!)})`
    : f(median);
}

if (import.meta.main) {
  if (Deno.args.includes("--help")) {
    console.log(HELP);
    Deno.exit(0);
  }
  const options = parseStoreOptions(Deno.args);
  if ("problems" in options) {
    console.error(`Bad options:\n${options.problems.map((p) => `  - ${p}`).join("\n")}\n\n${HELP}`);
    Deno.exit(2);
  }
  handleSignals(log);
  const names = options.targets.map((t) => t.name);
  const figures = new Map<string, Figures[]>(names.map((n) => [n, []]));
  const started = new Date();
  const file = `bench/results/store-backends-${
    started.toISOString().slice(0, 19).replaceAll(":", "-")
  }Z.json`;
  // Written after every measurement, so an interrupted run keeps what it measured.
  const save = (table?: string) =>
    Deno.writeTextFile(
      file,
      JSON.stringify({ started, options, figures: Object.fromEntries(figures), table }, null, 2) +
        "\n",
    );
  for (let run = 0; run < options.runs; run++) {
    // Alternate the order so neither target always meets the warmer (or busier) machine.
    const order = run % 2 === 0 ? options.targets : [...options.targets].reverse();
    for (const t of order) {
      log(`run ${run + 1}/${options.runs}: ${t.name} (${t.url})`);
      figures.get(t.name)!.push(await measure(t.name, t.url, options));
      await save();
    }
  }
  const table = storeTable(names, figures);
  console.log(table);
  await save(table);
  log(`wrote ${file}`);
  Deno.exit(0);
}
