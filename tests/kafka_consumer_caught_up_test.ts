/**
 * `KafkaReadingSource.caughtUp()`'s bookkeeping across the consumer's group events, with kafkajs
 * replaced by a stand-in that only records listeners and answers fixed offsets: a crashed member
 * is caught up on nothing until it has rejoined (chaos `broker` covers the same against a real
 * broker restart, but only when the race happens).
 */
import assert from "node:assert/strict";
import type { Kafka } from "kafkajs";
import { KafkaReadingSource } from "../adapters/kafka_consumer.ts";
import { silentLogger } from "../adapters/log.ts";

const TOPIC = "readings";

/** A kafkajs client whose consumer never fetches; the test fires its group events. */
function standIn(offsets: { high: string; committed: string }) {
  const listeners = new Map<string, (event: { payload: unknown }) => void>();
  const consumer = {
    events: { GROUP_JOIN: "group_join", CRASH: "crash", REQUEST: "request" },
    on(event: string, listener: (event: { payload: unknown }) => void) {
      listeners.set(event, listener);
      return () => listeners.delete(event);
    },
    connect: () => Promise.resolve(),
    subscribe: () => Promise.resolve(),
    run: () => Promise.resolve(),
    disconnect: () => Promise.resolve(),
  };
  const admin = {
    connect: () => Promise.resolve(),
    disconnect: () => Promise.resolve(),
    fetchTopicOffsets: () =>
      Promise.resolve([{ partition: 0, offset: offsets.high, high: offsets.high, low: "0" }]),
    fetchOffsets: () =>
      Promise.resolve([{
        topic: TOPIC,
        partitions: [{ partition: 0, offset: offsets.committed }],
      }]),
  };
  const fire = (event: string, payload: unknown) => listeners.get(event)!({ payload });
  const kafka = { consumer: () => consumer, admin: () => admin } as unknown as Kafka;
  return { kafka, fire };
}

/** A reading source on the stand-in, started with a handler that only resolves. */
async function started(kafka: Kafka): Promise<KafkaReadingSource> {
  const source = new KafkaReadingSource(kafka, {
    topic: TOPIC,
    groupId: "g",
    logger: silentLogger,
  });
  await source.start(() => Promise.resolve(), {
    onAssignment: () => {},
    onFatal: (error) => {
      throw error;
    },
  });
  return source;
}

const join = { memberAssignment: { [TOPIC]: [0] }, memberId: "m", isLeader: true };

Deno.test("KafkaReadingSource is caught up on nothing after a crash until it rejoins", async () => {
  const { kafka, fire } = standIn({ high: "5", committed: "5" });
  await using source = await started(kafka);
  assert.deepEqual([...await source.caughtUp()], [], "nothing before the first assignment");
  fire("group_join", join);
  assert.deepEqual([...await source.caughtUp()], [0], "committed offset at the high watermark");
  fire("crash", { error: new Error("coordinator loading"), restart: true });
  assert.deepEqual([...await source.caughtUp()], [], "out of the group after the crash");
  fire("group_join", join);
  assert.deepEqual([...await source.caughtUp()], [0], "caught up again once rejoined");
});

Deno.test("KafkaReadingSource is not caught up where the committed offset is below the high watermark", async () => {
  const { kafka, fire } = standIn({ high: "9", committed: "5" });
  await using source = await started(kafka);
  fire("group_join", join);
  assert.deepEqual([...await source.caughtUp()], []);
});
