import "./env_guard.ts";
import assert from "node:assert/strict";
import { Partitioners } from "kafkajs";
import { ProducerWorkerError, WorkerReadingProducer } from "../adapters/worker_producer.ts";
import { silentLogger } from "../adapters/log.ts";
import { decodeReading, type Reading } from "../schemas/reading.ts";
import { needs } from "./needs.ts";
import { KAFKA_BROKERS, tempTopic, testKafka, uniqueName } from "./fixtures.ts";
import { until } from "./wait.ts";

function reading(deviceId: string, seq: number): Reading {
  return {
    deviceId,
    seq,
    ts: new Date(1_700_000_000_000 + seq * 1000).toISOString(),
    temperature: 21.5,
    humidity: 40,
    location: { lat: 48.85, lon: 2.35 },
  };
}

function producer(topic: string, options: { brokers?: string; maxBuffered?: number } = {}) {
  return new WorkerReadingProducer({
    kafka: { brokers: (options.brokers ?? KAFKA_BROKERS).split(","), clientId: "iot-test" },
    topic,
    maxBuffered: options.maxBuffered ?? 10_000,
    logger: silentLogger,
  });
}

Deno.test(
  "WorkerReadingProducer delivers every reading once, in order per device, and counts it as sent",
  await needs({ kafka: true }),
  async () => {
    await using topic = await tempTopic("worker-producer", 3);
    await using sink = producer(topic.name);
    await sink.connect();
    const devices = ["dev-a", "dev-b", "dev-c", "dev-d"];
    const perDevice = 250;
    for (let seq = 1; seq <= perDevice; seq++) {
      for (const id of devices) assert.equal(sink.publish(reading(id, seq)), true);
      // Several turns, so readings reach the worker in several messages.
      if (seq % 50 === 0) await new Promise((r) => setTimeout(r, 0));
    }
    await sink.flush();
    assert.deepEqual(sink.stats, {
      sent: devices.length * perDevice,
      dropped: 0,
      buffered: 0,
      failedSends: 0,
    });

    const seen = new Map<string, number[]>();
    const placed = new Map<string, Set<number>>();
    let total = 0;
    const consumer = testKafka().consumer({ groupId: uniqueName("worker-producer-check") });
    await consumer.connect();
    try {
      await consumer.subscribe({ topic: topic.name, fromBeginning: true });
      await consumer.run({
        eachMessage: ({ partition, message }) => {
          const decoded = decodeReading(message.value, message.key);
          assert.ok(decoded.ok, decoded.ok ? "" : decoded.reason);
          const partitions = placed.get(decoded.reading.deviceId) ?? new Set();
          placed.set(decoded.reading.deviceId, partitions.add(partition));
          const seqs = seen.get(decoded.reading.deviceId) ?? [];
          seqs.push(decoded.reading.seq);
          seen.set(decoded.reading.deviceId, seqs);
          total++;
          return Promise.resolve();
        },
      });
      await until("every reading is on the topic", () => total >= devices.length * perDevice);
    } finally {
      await consumer.disconnect();
    }
    const expected = Array.from({ length: perDevice }, (_, i) => i + 1);
    for (const id of devices) assert.deepEqual(seen.get(id), expected, id);
    assert.equal(total, devices.length * perDevice);
    // Placed where kafkajs's own DefaultPartitioner places the key (the processors rely on it).
    const kafkajs = Partitioners.DefaultPartitioner();
    const partitionMetadata = [0, 1, 2].map((partitionId) => ({
      partitionErrorCode: 0,
      partitionId,
      leader: 1,
      replicas: [1],
      isr: [1],
    }));
    for (const id of devices) {
      const expectedPartition = kafkajs({
        topic: topic.name,
        partitionMetadata,
        message: { key: id, value: "" },
      });
      assert.deepEqual([...placed.get(id)!], [expectedPartition], id);
    }
  },
);

Deno.test(
  "WorkerReadingProducer refuses readings beyond its bound and counts them as dropped",
  await needs({ kafka: true }),
  async () => {
    await using topic = await tempTopic("worker-producer-bound", 1);
    await using sink = producer(topic.name, { maxBuffered: 10 });
    await sink.connect();
    const accepted = Array.from({ length: 15 }, (_, i) => sink.publish(reading("dev-a", i + 1)));
    assert.deepEqual(accepted, [...Array(10).fill(true), ...Array(5).fill(false)]);
    assert.equal(sink.stats.dropped, 5);
    await sink.flush();
    assert.equal(sink.stats.sent, 10);
    assert.equal(sink.stats.buffered, 0);
    // Acknowledged readings free the bound again.
    assert.equal(sink.publish(reading("dev-a", 16)), true);
  },
);

Deno.test(
  "WorkerReadingProducer: connect() rejects when Kafka cannot be reached, and publish() then refuses",
  await needs(),
  async () => {
    await using sink = producer("unreachable", { brokers: "127.0.0.1:1" });
    await assert.rejects(sink.connect(), ProducerWorkerError);
    assert.ok(sink.failure instanceof ProducerWorkerError, "the failure stays visible to /health");
    assert.equal(sink.publish(reading("dev-a", 1)), false);
    assert.equal(sink.stats.dropped, 1);
  },
);
