/**
 * What a partition assignment reads of the stored device states, before and
 * after states recorded their partition (docs/offline.md#crashes-and-restarts):
 * every stored state (`MongoStore.allDevices()`, what the processors read
 * before) against the assigned partitions' only (`devicesIn()`), in the same
 * run, alternating which goes first.
 *
 *   deno run --allow-net --allow-env --allow-read --allow-write --allow-sys bench/prefetch.ts \
 *     [--devices 100000] [--partitions 6] [--runs 3] [--mongo URL] [--no-kv]
 *
 * Fills a fresh database (and a Deno KV file) with `--devices` states spread
 * over `--partitions` partitions: MongoDB as a fold leaves them (every state
 * in `devices`, the journal empty), Deno KV through the store's write path. Per run it times an
 * assignment of one and of two partitions both ways and prints the medians,
 * the documents each read returns and the ratio before ÷ after. The database
 * and the file are removed afterwards.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { MongoClient } from "mongodb";
import { MongoStore } from "../adapters/mongo_store.ts";
import { KvStore } from "../adapters/kv_store.ts";
import { silentLogger } from "../adapters/log.ts";
import { type DeviceDoc, toDeviceDoc } from "../schemas/documents.ts";
import { DEFAULT_RULE, INITIAL_ALARM_STATE } from "../domain/hysteresis.ts";

const WRITE_CHUNK = 5000;

interface Target {
  readonly name: string;
  /** Every stored state (before). */
  all(): Promise<Map<string, DeviceDoc>>;
  /** The assigned partitions' states (after). */
  some(partitions: readonly number[]): Promise<Map<string, DeviceDoc>>;
}

function states(devices: number, partitions: number): DeviceDoc[] {
  const at = Date.UTC(2026, 10, 30, 12);
  return Array.from({ length: devices }, (_, i) => {
    const id = `bench-${String(i).padStart(6, "0")}`;
    const state = {
      ...INITIAL_ALARM_STATE,
      lastSeq: 10,
      lastTs: new Date(at + i).toISOString(),
      counters: { ...INITIAL_ALARM_STATE.counters, readings: 10 },
    };
    return {
      ...toDeviceDoc(id, state, DEFAULT_RULE, new Date(at), 1, 3000),
      partition: i % partitions,
    };
  });
}

async function fill(store: { write: MongoStore["write"] }, docs: readonly DeviceDoc[]) {
  for (let i = 0; i < docs.length; i += WRITE_CHUNK) {
    await store.write({ readings: [], alerts: [], devices: docs.slice(i, i + WRITE_CHUNK) });
  }
}

async function timed(read: () => Promise<Map<string, DeviceDoc>>) {
  const started = performance.now();
  const found = await read();
  return { ms: performance.now() - started, states: found.size };
}

function median(xs: readonly number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

async function measure(target: Target, runs: number, assigned: readonly number[][]) {
  const before: number[] = [];
  const after = new Map<string, number[]>(assigned.map((p) => [p.join(","), []]));
  let beforeStates = 0;
  const afterStates = new Map<string, number>();
  for (let run = 0; run < runs; run++) {
    const measureAfter = async () => {
      for (const partitions of assigned) {
        const r = await timed(() => target.some(partitions));
        after.get(partitions.join(","))!.push(r.ms);
        afterStates.set(partitions.join(","), r.states);
        console.log(`  run ${run + 1} [${partitions}]: ${r.ms.toFixed(0)} ms, ${r.states} states`);
      }
    };
    const measureBefore = async () => {
      const r = await timed(() => target.all());
      before.push(r.ms);
      beforeStates = r.states;
      console.log(`  run ${run + 1} every state: ${r.ms.toFixed(0)} ms, ${r.states} states`);
    };
    if (run % 2 === 0) {
      await measureBefore();
      await measureAfter();
    } else {
      await measureAfter();
      await measureBefore();
    }
  }
  const b = median(before);
  console.log(
    `\n${target.name}: every state (before) ${b.toFixed(0)} ms for ${beforeStates} ` +
      `states (min ${Math.min(...before).toFixed(0)}, max ${Math.max(...before).toFixed(0)})`,
  );
  for (const [key, list] of after) {
    const a = median(list);
    console.log(
      `  partitions [${key}] (after): ${a.toFixed(0)} ms for ${afterStates.get(key)} states ` +
        `(min ${Math.min(...list).toFixed(0)}, max ${Math.max(...list).toFixed(0)}); ` +
        `before/after ${(b / a).toFixed(1)}x time, ${
          (beforeStates / afterStates.get(key)!)
            .toFixed(1)
        }x states`,
    );
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      devices: { type: "string", default: "100000" },
      partitions: { type: "string", default: "6" },
      runs: { type: "string", default: "3" },
      mongo: { type: "string", default: Deno.env.get("MONGO_URL") ?? "mongodb://127.0.0.1:27017/" },
      "no-kv": { type: "boolean", default: false },
      "no-mongo": { type: "boolean", default: false },
    },
  });
  const devices = Number(values.devices);
  const partitions = Number(values.partitions);
  const runs = Number(values.runs);
  const docs = states(devices, partitions);
  const assigned = [[0], [0, 1]];
  console.log(
    `${devices} stored device states over ${partitions} partitions, ${runs} runs, ` +
      `load average ${Deno.loadavg().map((l) => l.toFixed(2)).join(" ")}`,
  );
  if (!values["no-mongo"]) {
    const dbName = `bench_prefetch_${Date.now()}`;
    const client = new MongoClient(values.mongo);
    await client.connect();
    try {
      // Filled as a fold leaves them: every state once in `devices`, the journal empty (writing
      // them through the journal would fold 100 000 states twice first: minutes on FerretDB).
      const started = performance.now();
      for (let i = 0; i < docs.length; i += WRITE_CHUNK) {
        await client.db(dbName).collection<DeviceDoc>("devices")
          .insertMany(docs.slice(i, i + WRITE_CHUNK), { ordered: false });
      }
      console.log(`MongoDB protocol: filled in ${(performance.now() - started).toFixed(0)} ms`);
      await using store = await MongoStore.open(values.mongo, dbName, silentLogger);
      await measure(
        {
          name: "MongoDB protocol",
          all: () => store.allDevices(),
          some: (p) => store.devicesIn(p),
        },
        runs,
        assigned,
      );
    } finally {
      await client.db(dbName).dropDatabase().catch(() => {});
      await client.close();
    }
  }
  if (!values["no-kv"]) {
    const dir = await Deno.makeTempDir({ prefix: "bench-prefetch-" });
    try {
      {
        await using store = await KvStore.open(`${dir}/iot.kv`);
        await fill(store, docs);
      }
      await using store = await KvStore.open(`${dir}/iot.kv`);
      await measure(
        {
          name: "Deno KV",
          // Before: every state was a full list of the devices.
          all: async () => {
            const found = new Map<string, DeviceDoc>();
            for await (const e of store.kv.list<DeviceDoc>({ prefix: ["devices"] })) {
              found.set(e.value._id, e.value);
            }
            return found;
          },
          some: (p) => store.devicesIn(p),
        },
        runs,
        assigned,
      );
    } finally {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  }
}
