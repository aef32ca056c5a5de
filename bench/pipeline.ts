/**
 * Runs the real program (`start()` from main.ts) in the benchmark process
 * with its own topic, group and database, and observes it from outside the
 * pipeline's code: the store writer's acknowledgements give emit → stored
 * latency (reading `ts` to the moment its write is acknowledged) and alert
 * latency (the raising reading's `ts` to the alert's first acknowledged
 * write); the producer's and writer's counters give rates and backlog.
 *
 * @module
 */
import { type App, start } from "../main.ts";
import { parseConfig } from "../schemas/config.ts";
import { createLogger, silentLogger } from "../adapters/log.ts";
import type { Reading } from "../schemas/reading.ts";
import { Histogram } from "./stats.ts";
import { runName, type Services } from "./services.ts";
import { removeResources } from "../tests/fixtures.ts";
import type { WriteBatch } from "../actors/device_store.ts";

export interface PipelineRun extends AsyncDisposable {
  readonly app: App;
  readonly topic: string;
  /** emit (`ts`) → store acknowledgement, per reading; replace to start a new window. */
  stored: Histogram;
  /** raising reading's `ts` → alert first acknowledged by the store. */
  alerts: Histogram;
  /** Readings acknowledged by the store so far. */
  readonly storedCount: number;
  /** When (`performance.now()`) the first write was handed to the store writer; 0 before. */
  firstWriteAt: number;
  /** When (`performance.now()`) the store last acknowledged a write of readings; 0 before. */
  lastStoredAt: number;
  /** Readings acknowledged by Kafka so far (0 when this process runs no sensors). */
  readonly sentCount: number;
  /** Called with each reading a sensor publishes, before the producer sees it. */
  onPublish: ((reading: Reading, now: number) => void) | undefined;
  /**
   * With `BENCH_LATENCY_PARTS` set, emit → stored per reading in three parts (replace to start a
   * new window): `toWriter` from `ts` until its batch is handed to the store writer (Kafka, the
   * consumer, the processors), `queued` until the write holding it goes out (waiting in its lane),
   * `writing` until that write is acknowledged; `alerts` the same for each alert's first stored
   * snapshot, from its raising reading's `ts`.
   */
  parts: LatencyParts | undefined;
}

export interface LatencyParts extends PartsOfWrite {
  readonly alerts: PartsOfWrite;
}

interface PartsOfWrite {
  readonly toWriter: Histogram;
  readonly queued: Histogram;
  readonly writing: Histogram;
}

export function latencyParts(): LatencyParts {
  const parts = () => ({
    toWriter: new Histogram(),
    queued: new Histogram(),
    writing: new Histogram(),
  });
  return { ...parts(), alerts: parts() };
}

export interface PipelineOptions {
  readonly role: "all" | "sensors" | "processors";
  readonly partitions: number;
  /** Extra settings, as environment variables (see docs/configuration.md). */
  readonly settings?: Readonly<Record<string, string>>;
  /** Reuse this topic (e.g. one pre-filled by the benchmark) instead of a fresh one. */
  readonly topic?: string;
}

export async function startPipeline(
  services: Services,
  options: PipelineOptions,
): Promise<PipelineRun> {
  const topic = options.topic ?? runName(options.role);
  const group = `${topic}-group`;
  const db = runName("db").replaceAll("-", "_").slice(0, 60);
  const parsed = parseConfig(["--port", "0"], {
    ROLE: options.role,
    KAFKA_BROKERS: services.brokers,
    MONGO_URL: services.mongoUrl,
    KAFKA_TOPIC: topic,
    KAFKA_GROUP: group,
    KAFKA_PARTITIONS: String(options.partitions),
    MONGO_DB: db,
    SENSORS: "0",
    RATE_LIMIT_PER_MINUTE: "0",
    LOG_LEVEL: "error",
    ...options.settings,
  });
  if (!parsed.ok) throw new Error(`Bad benchmark settings: ${JSON.stringify(parsed)}`);
  const app = start(parsed.config, {
    logger: Deno.env.get("BENCH_APP_LOG") ? createLogger({ level: "info" }) : silentLogger,
  });
  const cleanup = () =>
    removeResources({
      topics: [topic, `${topic}.dlq`, `${topic}.seqs`],
      groups: [group],
      ...(options.role === "sensors" ? {} : { db }),
    }, services);
  try {
    await app.ready;
  } catch (err) {
    await app[Symbol.asyncDispose]();
    await cleanup();
    throw err;
  }
  const run: PipelineRun = {
    app,
    topic,
    stored: new Histogram(),
    alerts: new Histogram(),
    get storedCount() {
      return app.parts.writer?.stats.readings ?? 0;
    },
    firstWriteAt: 0,
    lastStoredAt: 0,
    get sentCount() {
      return app.parts.producer?.stats.sent ?? 0;
    },
    onPublish: undefined,
    parts: Deno.env.get("BENCH_LATENCY_PARTS") ? latencyParts() : undefined,
    async [Symbol.asyncDispose]() {
      await app[Symbol.asyncDispose]();
      await cleanup();
    },
  };
  observeWrites(app, run);
  observePublishes(app, run);
  const slowWriteMs = Number(Deno.env.get("BENCH_SLOW_WRITE_MS") ?? NaN);
  if (slowWriteMs >= 0) traceSlowWrites(app, slowWriteMs);
  return run;
}

/** Wraps the writer instance so each acknowledged write is timed against its readings' `ts`. */
function observeWrites(app: App, run: PipelineRun) {
  const writer = app.parts.writer;
  if (!writer) return;
  const write = writer.write.bind(writer);
  const seenAlerts = new Set<string>();
  writer.write = async (batch: WriteBatch, options?: { readonly onStart?: () => void }) => {
    if (run.firstWriteAt === 0) run.firstWriteAt = performance.now();
    const handed = Date.now();
    let wentOut = handed;
    const result = await write(batch, {
      ...options,
      onStart: () => {
        wentOut = Date.now();
        options?.onStart?.();
      },
    });
    const parts = run.parts;
    if (parts) {
      const acked = Date.now();
      const add = (into: PartsOfWrite, ts: Date) => {
        into.toWriter.add(handed - ts.getTime());
        into.queued.add(wentOut - handed);
        into.writing.add(acked - wentOut);
      };
      for (const r of batch.readings) add(parts, r.ts);
      for (const a of batch.alerts) if (!seenAlerts.has(a._id)) add(parts.alerts, a.raisedAt);
    }
    if (batch.readings.length > 0) run.lastStoredAt = performance.now();
    const now = Date.now();
    const stored = run.stored;
    for (const r of batch.readings) stored.add(now - r.ts.getTime());
    for (const a of batch.alerts) {
      if (seenAlerts.has(a._id)) continue;
      seenAlerts.add(a._id);
      run.alerts.add(now - a.raisedAt.getTime());
    }
    return result;
  };
}

function observePublishes(app: App, run: PipelineRun) {
  const producer = app.parts.producer;
  if (!producer) return;
  const publish = producer.publish.bind(producer);
  producer.publish = (reading: Reading) => {
    run.onPublish?.(reading, Date.now());
    return publish(reading);
  };
}

/**
 * With `BENCH_SLOW_WRITE_MS` set, prints every store write (the writer's and the checkpoints') that
 * took at least that long, with what it carried and when into the run: what found the writes that
 * hold FerretDB's one SQLite writer (bench/RESULTS.md, "Checkpoints in few journal entries").
 */
function traceSlowWrites(app: App, thresholdMs: number) {
  const store = app.parts.store;
  if (!store) return;
  const write = store.write.bind(store);
  const started = performance.now();
  store.write = async (batch: WriteBatch) => {
    const at = performance.now();
    try {
      return await write(batch);
    } finally {
      const ms = performance.now() - at;
      if (ms >= thresholdMs) {
        console.error(
          `[slow write] t=${((at - started) / 1000).toFixed(1)}s ${Math.round(ms)} ms: ` +
            `${batch.readings.length} readings, ${batch.alerts.length} alerts, ` +
            `${batch.devices.length} device states`,
        );
      }
    }
  };
}
