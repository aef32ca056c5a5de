/**
 * Ceilings measured against the same services in the same run, so pipeline
 * figures can be read as ratios on a noisy machine: Kafka's own performance
 * tools (ProducerPerformance, ConsumerPerformance, EndToEndLatency from the
 * `kafka-tools` jar) at the pipeline's message size, and a raw batched,
 * unordered `insertMany` loop into the store with the readings' index.
 *
 * @module
 */
import { MongoClient } from "mongodb";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { KAFKA_VERSION } from "../stack/stack.ts";
import { type ReadingDoc, toReadingDoc } from "../schemas/documents.ts";
import { encodeReading, type Reading } from "../schemas/reading.ts";
import { interruption } from "./interrupt.ts";
import { runName, type Services } from "./services.ts";
import { removeResources, testKafka } from "../tests/fixtures.ts";
import { ensureTopics } from "../adapters/kafka_client.ts";
import { storeCpuTime, storeProcesses } from "./store_cpu.ts";
import { secondaryIndexesServe } from "../adapters/mongo_store.ts";

const POM = fileURLToPath(new URL("./kafka_tools/pom.xml", import.meta.url));
const CACHE = join(
  Deno.env.get("XDG_CACHE_HOME") ?? join(Deno.env.get("HOME") ?? "/tmp", ".cache"),
  "iot-pipeline-stack",
);

export interface BrokerCeiling {
  readonly messageBytes: number;
  readonly records: number;
  /** ProducerPerformance, acks=all, unthrottled. */
  readonly producePerSec: number;
  /** ConsumerPerformance over what was just produced. */
  readonly consumePerSec: number;
  /** EndToEndLatency: produce → consume round trip, one message at a time. */
  readonly endToEndMs: { readonly p50: number; readonly p99: number };
}

export interface StoreCeiling {
  readonly batchSize: number;
  readonly inserted: number;
  readonly insertsPerSec: number;
  /** The store server's CPU per 10 000 inserted documents (NaN when its process is unknown). */
  readonly storeCpuMsPer10k?: number;
}

/** A typical reading, as sensors produce it: its encoded size is the benchmark's message size. */
export function sampleReading(deviceId: string, seq: number, ts = Date.now()): Reading {
  return {
    deviceId,
    seq,
    ts: new Date(ts).toISOString(),
    temperature: 23.41,
    humidity: 51.27,
    location: { lat: 48.856613, lon: 2.352222 },
  };
}

export function messageBytes(): number {
  return new TextEncoder().encode(encodeReading(sampleReading("sensor-0001", 12345))).length;
}

export async function brokerCeiling(
  services: Services,
  options: {
    records: number;
    partitions: number;
    log: (line: string) => void;
    /** Only ProducerPerformance (the sensor scenario's ceiling); the other figures are NaN. */
    producerOnly?: boolean;
  },
): Promise<BrokerCeiling> {
  const cp = await toolsClasspath(options.log);
  const topic = runName("ceiling");
  await ensureTopics(testKafka("iot-bench", services), [{
    topic,
    numPartitions: options.partitions,
  }]);
  const size = messageBytes();
  try {
    options.log(`ceiling: Kafka ProducerPerformance, ${options.records} × ${size} B, acks=all`);
    const produced = await java(cp, "org.apache.kafka.tools.ProducerPerformance", [
      "--topic",
      topic,
      "--num-records",
      String(options.records),
      "--record-size",
      String(size),
      "--throughput",
      "-1",
      "--producer-props",
      `bootstrap.servers=${services.brokers}`,
      "acks=all",
      "linger.ms=20",
      "batch.size=262144",
    ]);
    const producePerSec = number(/([\d.]+) records\/sec/.exec(lastLine(produced))?.[1]);
    if (options.producerOnly) {
      return {
        messageBytes: size,
        records: options.records,
        producePerSec,
        consumePerSec: NaN,
        endToEndMs: { p50: NaN, p99: NaN },
      };
    }
    options.log(`ceiling: Kafka ConsumerPerformance`);
    const consumed = await java(cp, "org.apache.kafka.tools.ConsumerPerformance", [
      "--topic",
      topic,
      "--messages",
      String(options.records),
      "--bootstrap-server",
      services.brokers,
      "--timeout",
      "30000",
    ]);
    // CSV: start, end, MB, MB/s, nMsg, nMsg/s, rebalance ms, fetch ms, fetch MB/s, fetch nMsg/s
    const consumePerSec = number(lastLine(consumed).split(",")[5]);
    return {
      messageBytes: size,
      records: options.records,
      producePerSec,
      consumePerSec,
      endToEndMs: await endToEndLatency(cp, services, topic, options.log),
    };
  } finally {
    await removeResources({ topics: [topic] }, services);
  }
}

/**
 * Kafka's own EndToEndLatency alone (produce → consume round trip, acks=all, one message at a
 * time, on a fresh topic): the floor under the pipeline's emit → stored and alert latency,
 * measured in the same run as them.
 */
export async function kafkaLatencyCeiling(
  services: Services,
  options: { partitions: number; log: (line: string) => void },
): Promise<BrokerCeiling["endToEndMs"]> {
  const cp = await toolsClasspath(options.log);
  const topic = runName("latency");
  await ensureTopics(testKafka("iot-bench", services), [{
    topic,
    numPartitions: options.partitions,
  }]);
  try {
    return await endToEndLatency(cp, services, topic, options.log);
  } finally {
    await removeResources({ topics: [topic] }, services);
  }
}

async function endToEndLatency(
  cp: string,
  services: Services,
  topic: string,
  log: (line: string) => void,
): Promise<BrokerCeiling["endToEndMs"]> {
  log(`ceiling: Kafka EndToEndLatency, 2000 messages`);
  const e2e = await java(cp, "org.apache.kafka.tools.EndToEndLatency", [
    services.brokers,
    topic,
    "2000",
    "all",
    String(messageBytes()),
  ]);
  const p = /50th = ([\d.]+), 99th = ([\d.]+)/.exec(e2e);
  return { p50: number(p?.[1]), p99: number(p?.[2]) };
}

export async function storeCeiling(
  services: Services,
  options: {
    durationMs: number;
    batchSize: number;
    log: (line: string) => void;
    /** Insert exactly this many documents (ignoring `durationMs`), as a drain of them would. */
    total?: number;
    /** Devices the documents come from (default 10 000). */
    devices?: number;
  },
): Promise<StoreCeiling> {
  const db = runName("store").replaceAll("-", "_");
  const client = new MongoClient(services.mongoUrl);
  options.log(
    `ceiling: raw insertMany of ${options.batchSize} readings for ${options.durationMs} ms`,
  );
  try {
    const readings = client.db(db).collection<ReadingDoc>("readings");
    // The app's readings index where the app makes it (not where the server cannot use it).
    if (await secondaryIndexesServe(client.db(db))) {
      await readings.createIndex({ deviceId: 1, ts: -1 }, { name: "deviceId_ts" });
    }
    let inserted = 0;
    const store = await storeProcesses(services.mongoUrl);
    const cpu0 = await storeCpuTime(store);
    const started = performance.now();
    const processedAt = new Date();
    const devices = options.devices ?? 10_000;
    const more = () =>
      options.total !== undefined
        ? inserted < options.total
        : performance.now() - started < options.durationMs;
    while (more()) {
      if (interruption.aborted) throw interruption.reason;
      const size = Math.min(options.batchSize, (options.total ?? Infinity) - inserted);
      const docs = Array.from({ length: size }, (_, i) => {
        const n = inserted + i;
        return toReadingDoc(
          sampleReading(`sensor-${n % devices}`, 1 + Math.floor(n / devices)),
          false,
          processedAt,
        );
      });
      await readings.insertMany(docs, { ordered: false });
      inserted += docs.length;
    }
    const seconds = (performance.now() - started) / 1000;
    const storeCpuMs = await storeCpuTime(store) - cpu0;
    return {
      batchSize: options.batchSize,
      inserted,
      insertsPerSec: Math.round(inserted / seconds),
      storeCpuMsPer10k: Math.round(storeCpuMs / inserted * 10_000),
    };
  } finally {
    await client.close();
    await removeResources({ db }, services);
  }
}

/** The kafka-tools jar and its dependencies, fetched with Maven on first use. */
async function toolsClasspath(log: (line: string) => void): Promise<string> {
  const libs = join(CACHE, `kafka-tools-${KAFKA_VERSION}`, "libs");
  const jar = join(libs, `kafka-tools-${KAFKA_VERSION}.jar`);
  const present = await Deno.stat(jar).then(() => true, () => false);
  if (!present) {
    log(`resolving kafka-tools ${KAFKA_VERSION} with Maven (first run only)`);
    const out = await new Deno.Command("mvn", {
      args: [
        "-q",
        "-B",
        "-f",
        POM,
        `-Dkafka.version=${KAFKA_VERSION}`,
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        `-DoutputDirectory=${libs}`,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) {
      throw new Error(`mvn failed: ${new TextDecoder().decode(out.stderr).slice(-2000)}`);
    }
  }
  return `${libs}/*`;
}

async function java(cp: string, main: string, args: string[]): Promise<string> {
  const home = Deno.env.get("JAVA_HOME");
  const out = await new Deno.Command(home ? join(home, "bin", "java") : "java", {
    args: ["-Xmx512m", "-cp", cp, main, ...args],
    stdout: "piped",
    stderr: "piped",
    signal: interruption,
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    throw new Error(`${main} failed: ${new TextDecoder().decode(out.stderr).slice(-2000)}`);
  }
  return text;
}

function lastLine(text: string): string {
  return text.trim().split("\n").at(-1) ?? "";
}

function number(raw: string | undefined): number {
  const n = Number(raw);
  return Number.isFinite(n) ? n : NaN;
}
