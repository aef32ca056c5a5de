/**
 * Fills a fresh topic with readings for a drain to consume (the processor-throughput and
 * webhook-outbox scenarios): round-robin over the devices, one reading per ms of event time
 * ending about now, in sends of 10 000 acknowledged by every replica, one send at a time —
 * concurrent sends could reorder a partition, and out-of-order readings are counted as such
 * instead of stored.
 *
 * @module
 */
import { encodeReading, type Reading } from "../schemas/reading.ts";
import type { Services } from "./services.ts";
import { testKafka, testProducer } from "../tests/fixtures.ts";
import { ensureTopics } from "../adapters/kafka_client.ts";

export interface FillOptions {
  readonly readings: number;
  readonly devices: number;
  readonly partitions: number;
  /**
   * Reading `i` of the fill: from device number `i % devices`, its `1 + floor(i / devices)`-th
   * (`seq`), at `tsMs`, 1 ms after reading `i - 1`. Keyed by its `deviceId`.
   */
  readonly reading: (device: number, seq: number, tsMs: number) => Reading;
}

/**
 * Creates `topic` with `partitions` partitions and fills it. Returns the seconds the sends took,
 * from the connected producer's first send to the last acknowledgement.
 */
export async function fillTopic(
  services: Services,
  topic: string,
  options: FillOptions,
): Promise<number> {
  const { readings, devices, partitions, reading } = options;
  const kafka = testKafka("iot-bench", services);
  await ensureTopics(kafka, [{ topic, numPartitions: partitions }]);
  const producer = testProducer(kafka, { allowAutoTopicCreation: false });
  await producer.connect();
  const t0 = performance.now();
  const start = Date.now() - readings; // one reading per ms of event time, in the past
  const batch = 10_000;
  try {
    for (let i = 0; i < readings; i += batch) {
      const messages = [];
      for (let j = i; j < Math.min(readings, i + batch); j++) {
        const r = reading(j % devices, 1 + Math.floor(j / devices), start + j);
        messages.push({ key: r.deviceId, value: encodeReading(r) });
      }
      await producer.send({ topic, acks: -1, messages });
    }
  } finally {
    await producer.disconnect();
  }
  return (performance.now() - t0) / 1000;
}
