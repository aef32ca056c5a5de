/** The Kafka reading source against the real broker: batches handed on before they are stored. */
import "./env_guard.ts";
import assert from "node:assert/strict";
import { KafkaReadingSource } from "../adapters/kafka_consumer.ts";
import { silentLogger } from "../adapters/log.ts";
import type { HandedOn, RecordBatch } from "../actors/reading_source.ts";
import { tempTopic, testKafka, testProducer, uniqueName } from "./fixtures.ts";
import { testWith } from "./needs.ts";
import { until } from "./wait.ts";

const kafka = await testWith({ kafka: true });

kafka.test("KafkaReadingSource reads on past a handed-on batch, counts it processed only once stored, and reads its partition again from one that was not", async () => {
  await using topic = await tempTopic("handed-on", 1);
  const client = testKafka();
  const producer = testProducer(client);
  await producer.connect();
  const produce = async (from: number, to: number) => {
    const messages = [];
    for (let i = from; i < to; i++) messages.push({ key: "d", value: `r${i}` });
    await producer.send({ topic: topic.name, acks: -1, messages });
  };
  await using source = new KafkaReadingSource(client, {
    topic: topic.name,
    groupId: uniqueName("handed-on"),
    logger: silentLogger,
  });
  const calls: { batch: RecordBatch; stored: PromiseWithResolvers<void> | undefined }[] = [];
  const events: string[] = [];
  /** Each call's batch as the offsets of its first and last record. */
  const spans = () =>
    calls.map(({ batch }) => `${batch.records[0]!.offset}-${batch.records.at(-1)!.offset}`);
  let handOn = true;
  try {
    await source.start((batch, ctx): Promise<void | HandedOn> => {
      assert.equal(ctx.handOn, true);
      const stored = handOn ? Promise.withResolvers<void>() : undefined;
      stored?.promise.catch(() => {});
      calls.push({ batch, stored });
      events.push(`batch ${spans().at(-1)}`);
      return Promise.resolve(stored ? { stored: stored.promise } : undefined);
    }, {
      onAssignment: () => {},
      onFatal: (error) => events.push(`fatal ${error}`),
      onRewind: (partition) => {
        events.push(`rewind ${partition}`);
        return Promise.resolve();
      },
    });
    await produce(0, 10);
    await until("the first batch", () => calls.length === 1);
    assert.deepEqual([...source.processed()], [], "handed on, not stored yet");
    calls[0]!.stored!.resolve();
    await until("the first batch counted", () => source.processed().get(0) === "10");

    // The next batches are fetched while the one before is still being stored.
    await produce(10, 20);
    await until("the second batch", () => calls.length === 2);
    await produce(20, 30);
    await until("the third batch, read while the second is not stored", () => calls.length === 3);
    assert.deepEqual(spans(), ["0-9", "10-19", "20-29"]);
    // The third is stored first: it counts only once the one before it is.
    calls[1]!.stored!.reject(new Error("Store write failed: not primary"));
    calls[2]!.stored!.reject(new Error("Batch not stored: an earlier batch of it was not stored"));
    handOn = false;
    assert.equal(source.processed().get(0), "10", "nothing past the batch not stored");
    await until("the partition read again", () => calls.length >= 4);
    assert.deepEqual(spans()[3], "10-29", "read again from the batch that was not stored");
    assert.deepEqual(events.slice(0, 5), [
      "batch 0-9",
      "batch 10-19",
      "batch 20-29",
      "rewind 0",
      "batch 10-29",
    ]);
    await until("the batch read again counted", () => source.processed().get(0) === "30");
    assert.equal(events.filter((e) => e.startsWith("fatal")).length, 0);
  } finally {
    await producer.disconnect();
  }
});
