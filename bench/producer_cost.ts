/**
 * What producing a reading costs the sensors' thread: publishes R readings
 * of 100 000 devices (the benchmark's sample reading) through each producer
 * variant as fast as it acknowledges them, and reads the CPU time of the
 * main thread (where the sensors tick) and of the whole process from
 * /proc, so the figure does not depend on how much CPU the machine leaves
 * the run. Variants alternate in rounds; each round also measures Kafka's
 * ProducerPerformance ceiling.
 *
 *   deno run -A bench/producer_cost.ts --readings 200000 --rounds 3
 *
 * `--batch N` sets the producers' batch size (default 2000, the pipeline's).
 *
 * Variants: `kafkajs` (the in-thread producer with kafkajs's partitioner, as
 * before), `fast` (in-thread, 32-bit murmur2 partitioner), `worker` (the
 * producer in a Deno Worker, as the sensors role runs it by default).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { Partitioners } from "kafkajs";
import { KafkaReadingProducer } from "../adapters/kafka_producer.ts";
import { WorkerReadingProducer } from "../adapters/worker_producer.ts";
import { createKafka, ensureTopics } from "../adapters/kafka_client.ts";
import { silentLogger } from "../adapters/log.ts";
import { brokerCeiling, sampleReading } from "./ceilings.ts";
import { openServices, runName } from "./services.ts";
import { removeResources, testKafka } from "../tests/fixtures.ts";
import { formatSpread, round, spread } from "./stats.ts";

type Variant = "kafkajs" | "fast" | "worker";

interface Sample {
  readonly variant: Variant;
  readonly perSec: number;
  readonly mainCpuMsPer10k: number;
  readonly processCpuMsPer10k: number;
  readonly ceilingPerSec: number;
}

/** utime + stime of a /proc stat file, in ms (clock ticks of 10 ms). */
async function cpuOf(path: string): Promise<number> {
  const text = await Deno.readTextFile(path);
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}
const mainCpu = () => cpuOf(`/proc/self/task/${Deno.pid}/stat`);
const processCpu = () => cpuOf("/proc/self/stat");

async function measure(
  variant: Variant,
  services: { brokers: string; mongoUrl: string },
  readings: number,
  ceilingPerSec: number,
  batchSize: number,
): Promise<Sample> {
  const topic = runName("producer-cost");
  await ensureTopics(testKafka("iot-bench", services), [{ topic, numPartitions: 6 }]);
  const brokers = services.brokers.split(",");
  const producer = variant === "worker"
    ? new WorkerReadingProducer({
      kafka: { brokers, clientId: "iot-bench" },
      topic,
      maxBuffered: 200_000,
      batchSize,
      logger: silentLogger,
    })
    : new KafkaReadingProducer(
      createKafka({ brokers, clientId: "iot-bench", logger: silentLogger }),
      {
        topic,
        maxBuffered: 200_000,
        batchSize,
        logger: silentLogger,
        ...(variant === "kafkajs" ? { createPartitioner: Partitioners.DefaultPartitioner } : {}),
      },
    );
  try {
    await producer.connect();
    const ts = Date.now();
    const m0 = await mainCpu();
    const p0 = await processCpu();
    const t0 = performance.now();
    let seq = 0;
    for (let i = 0; i < readings;) {
      // At most 50 000 unacknowledged, in chunks of 1 000 per turn, like a fleet's timer turns.
      if (producer.stats.buffered > 50_000) {
        await new Promise((r) => setTimeout(r, 5));
        continue;
      }
      for (const end = Math.min(readings, i + 1000); i < end; i++) {
        const n = i % 100_000;
        if (n === 0) seq++;
        producer.publish(sampleReading(`bench-${String(n).padStart(6, "0")}`, seq, ts));
      }
      await new Promise((r) => setTimeout(r, 0));
    }
    await producer.flush();
    const seconds = (performance.now() - t0) / 1000;
    const main = (await mainCpu()) - m0;
    const all = (await processCpu()) - p0;
    if (producer.stats.sent !== readings) {
      throw new Error(
        `Sent ${producer.stats.sent} of ${readings} (dropped ${producer.stats.dropped})`,
      );
    }
    return {
      variant,
      perSec: Math.round(readings / seconds),
      mainCpuMsPer10k: round(main / readings * 10_000, 0),
      processCpuMsPer10k: round(all / readings * 10_000, 0),
      ceilingPerSec,
    };
  } finally {
    await producer.close();
    await removeResources({ topics: [topic] }, services);
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      readings: { type: "string", default: "200000" },
      rounds: { type: "string", default: "3" },
      variants: { type: "string", default: "kafkajs,fast,worker" },
      batch: { type: "string", default: "2000" },
    },
  });
  const log = (line: string) =>
    console.log(`[producer-cost ${new Date().toISOString().slice(11, 19)}] ${line}`);
  const readings = Number(values.readings);
  const variants = values.variants.split(",") as Variant[];
  await using services = await openServices(log);
  const samples: Sample[] = [];
  for (let round_ = 1; round_ <= Number(values.rounds); round_++) {
    const ceiling = await brokerCeiling(services, {
      records: 500_000,
      partitions: 6,
      log,
      producerOnly: true,
    });
    for (const variant of variants) {
      const s = await measure(
        variant,
        services,
        readings,
        ceiling.producePerSec,
        Number(values.batch),
      );
      samples.push(s);
      log(`round ${round_} ${JSON.stringify(s)} load ${Deno.loadavg()[0]!.toFixed(1)}`);
    }
  }
  for (const variant of variants) {
    const mine = samples.filter((s) => s.variant === variant);
    const f = (xs: number[], d = 0) => formatSpread(spread(xs), d);
    log(
      `${variant}: ${f(mine.map((s) => s.perSec))} readings/s acked, ` +
        `${f(mine.map((s) => s.perSec / s.ceilingPerSec), 2)} of the ceiling; main thread ${
          f(mine.map((s) => s.mainCpuMsPer10k))
        } CPU-ms per 10 000 readings, process ${f(mine.map((s) => s.processCpuMsPer10k))}`,
    );
  }
  Deno.exit(0);
}
