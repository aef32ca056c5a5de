import "./env_guard.ts";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import fc from "fast-check";
import kafkajsProduceV3 from "kafkajs/src/protocol/requests/produce/v3/request.js";
import {
  crc32c,
  encodeProduceRequest,
  type ProduceMessage,
  RECORDS,
  RecordSetError,
} from "../adapters/kafka_produce_encoding.ts";
import { leanProduceRequests, useLeanProduceEncoding } from "../adapters/kafka_lean_produce.ts";
import { numRuns } from "./fc_runs.ts";
import { needs } from "./needs.ts";
import { tempTopic, testKafka, uniqueName } from "./fixtures.ts";
import { until } from "./wait.ts";

const NUM_RUNS = numRuns(300);

/** kafkajs 2.2.4's own bytes for the same request (its `Date.now()` replaced by `now`). */
async function kafkajsBytes(args: Record<string, unknown>, now: number): Promise<Uint8Array> {
  const realNow = Date.now;
  Date.now = () => now;
  try {
    const encoder = await (kafkajsProduceV3 as (a: unknown) => {
      encode(): Promise<{ buffer: Uint8Array }>;
    })(args).encode();
    return new Uint8Array(encoder.buffer);
  } finally {
    Date.now = realNow;
  }
}

Deno.test("crc32c() matches the CRC-32C check value", () => {
  assert.equal(crc32c(new TextEncoder().encode("123456789")), 0xe3069283);
  assert.equal(crc32c(new Uint8Array(0)), 0);
});

const text = fc.oneof(
  fc.string({ maxLength: 80 }),
  fc.string({ unit: "grapheme", maxLength: 40 }),
  fc.string({ unit: "binary", maxLength: 20 }),
  // Long enough that a record's length varint takes 3 bytes.
  fc.string({ minLength: 9000, maxLength: 9100 }),
);
const bytes = fc.uint8Array({ maxLength: 100 }).map((a) => Buffer.from(a));
const payload = fc.oneof(text, bytes);

const message: fc.Arbitrary<ProduceMessage> = fc.record(
  {
    key: fc.oneof(payload, fc.constant(null)),
    value: fc.oneof({ weight: 4, arbitrary: payload }, fc.constant(null)),
    headers: fc.dictionary(
      fc.string({ minLength: 1, maxLength: 10 }),
      fc.oneof(payload, fc.array(payload, { minLength: 1, maxLength: 3 })),
      { maxKeys: 3 },
    ),
    timestamp: fc.oneof(
      fc.integer({ min: 1_600_000_000_000, max: 1_900_000_000_000 }).map(String),
      fc.integer({ min: 1_600_000_000_000, max: 1_900_000_000_000 }),
    ),
  },
  { requiredKeys: ["value"] },
);

const request = fc.record({
  acks: fc.constantFrom(-1, 0, 1),
  timeout: fc.integer({ min: 0, max: 60_000 }),
  transactionalId: fc.oneof(fc.constant(null), fc.string({ minLength: 1, maxLength: 20 })),
  producerId: fc.oneof(fc.constant(-1), fc.integer({ min: 0, max: 2 ** 40 })),
  producerEpoch: fc.integer({ min: 0, max: 32_767 }),
  topicData: fc.array(
    fc.record({
      topic: fc.string({ minLength: 1, maxLength: 30 }),
      partitions: fc.array(
        fc.record({
          partition: fc.integer({ min: 0, max: 1000 }),
          firstSequence: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
          messages: fc.array(message, { minLength: 1, maxLength: 12 }),
        }),
        { minLength: 1, maxLength: 3 },
      ),
    }),
    { minLength: 1, maxLength: 2 },
  ),
  now: fc.integer({ min: 1_600_000_000_000, max: 1_900_000_000_000 }),
});

Deno.test("encodeProduceRequest() writes the bytes kafkajs 2.2.4's own encoder writes", async () => {
  await fc.assert(
    fc.asyncProperty(request, async ({ now, ...args }) => {
      const ours = encodeProduceRequest(args, () => now);
      assert.deepEqual(Buffer.from(ours), Buffer.from(await kafkajsBytes(args, now)));
    }),
    { numRuns: NUM_RUNS },
  );
});

Deno.test("encodeProduceRequest() writes a reading batch byte for byte as kafkajs does", async () => {
  const messages = Array.from({ length: 2000 }, (_, i) => ({
    key: `bench-${String(i).padStart(6, "0")}`,
    value: JSON.stringify({
      deviceId: `bench-${String(i).padStart(6, "0")}`,
      seq: i + 1,
      ts: new Date(1_700_000_000_000 + i).toISOString(),
      temperature: 21.5 + i / 100,
      humidity: 40,
      location: { lat: 48.8566, lon: 2.3522 },
      offlineAfterMs: 30_000,
    }),
  }));
  const args = {
    acks: -1,
    timeout: 30_000,
    topicData: [{
      topic: "readings",
      partitions: [0, 1, 2].map((partition) => ({
        partition,
        messages: messages.filter((_, i) => i % 3 === partition),
      })),
    }],
  };
  const now = 1_700_000_000_123;
  const ours = encodeProduceRequest(args, () => now);
  assert.deepEqual(Buffer.from(ours), Buffer.from(await kafkajsBytes(args, now)));
});

Deno.test("encodeProduceRequest() writes a record set as kafkajs writes its records one by one", async () => {
  const records = fc.array(fc.tuple(fc.string({ maxLength: 30 }), fc.string({ maxLength: 200 })), {
    minLength: 1,
    maxLength: 20,
  });
  const item = fc.oneof(
    message.map((m) => ({ plain: m })),
    records.map((r) => ({ set: r })),
  );
  await fc.assert(
    fc.asyncProperty(
      fc.array(item, { minLength: 1, maxLength: 6 }),
      fc.integer({ min: 1_600_000_000_000, max: 1_900_000_000_000 }),
      async (items, now) => {
        const ours: ProduceMessage[] = [];
        const theirs: ProduceMessage[] = [];
        for (const it of items) {
          if ("plain" in it) {
            ours.push(it.plain);
            theirs.push(it.plain);
          } else {
            ours.push({
              value: "ignored",
              [RECORDS]: { keys: it.set.map(([k]) => k), values: it.set.map(([, v]) => v) },
            });
            for (const [key, value] of it.set) theirs.push({ key, value });
          }
        }
        const fields = (messages: ProduceMessage[]) => ({
          acks: -1,
          timeout: 30_000,
          topicData: [{ topic: "t", partitions: [{ partition: 2, messages }] }],
        });
        assert.deepEqual(
          Buffer.from(encodeProduceRequest(fields(ours), () => now)),
          Buffer.from(await kafkajsBytes(fields(theirs), now)),
        );
      },
    ),
    { numRuns: NUM_RUNS },
  );
});

Deno.test("encodeProduceRequest() refuses a record set from an idempotent producer", () => {
  assert.throws(
    () =>
      encodeProduceRequest({
        acks: -1,
        timeout: 30_000,
        producerId: 7,
        topicData: [{
          topic: "t",
          partitions: [{
            partition: 0,
            messages: [{ value: "", [RECORDS]: { keys: ["a"], values: ["b"] } }],
          }],
        }],
      }),
    RecordSetError,
  );
});

Deno.test(
  "kafkajs producers encode through the lean encoder, and a consumer reads back every field",
  await needs({ kafka: true }),
  async () => {
    useLeanProduceEncoding();
    await using topic = await tempTopic("lean-produce", 3);
    const kafka = testKafka();
    // Idempotent: the broker checks the producer id and sequences this encoder writes, and a
    // send kafkajs retries after a partial failure is not stored twice.
    const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    const sent = Array.from({ length: 300 }, (_, i) => ({
      key: i % 7 === 0 ? null : `dev-${i % 11}-é`,
      value: i % 5 === 0 ? Buffer.from([0, 255, i % 256]) : `{"n":${i},"s":"ü€😀"}`,
      headers: i % 3 === 0 ? { trace: `t-${i}`, multi: ["a", Buffer.from([1, 2])] } : undefined,
      timestamp: String(1_700_000_000_000 + i * 10),
      partition: i % 3,
    }));
    const before = leanProduceRequests();
    try {
      for (let i = 0; i < sent.length; i += 100) {
        await producer.send({ topic: topic.name, acks: -1, messages: sent.slice(i, i + 100) });
      }
    } finally {
      await producer.disconnect();
    }
    assert.ok(leanProduceRequests() >= before + 3, "the sends went through the lean encoder");

    const received = new Map<string, unknown>();
    const consumer = kafka.consumer({ groupId: uniqueName("lean-produce-check") });
    await consumer.connect();
    try {
      await consumer.subscribe({ topic: topic.name, fromBeginning: true });
      await consumer.run({
        eachMessage: ({ partition, message: m }) => {
          const headers = Object.fromEntries(
            Object.entries(m.headers ?? {}).map(([k, v]) => [k, v]),
          );
          received.set(`${partition}:${m.offset}`, {
            partition,
            key: m.key,
            value: m.value,
            timestamp: m.timestamp,
            headers,
          });
          return Promise.resolve();
        },
      });
      await until("every record read back", () => received.size >= sent.length, 30_000);
    } finally {
      await consumer.disconnect();
    }
    // Offsets per partition follow the send order.
    const next = [0, 0, 0];
    for (const m of sent) {
      const got = received.get(`${m.partition}:${next[m.partition]!++}`);
      assert.deepEqual(got, {
        partition: m.partition,
        key: m.key === null ? null : Buffer.from(m.key),
        value: Buffer.from(m.value),
        timestamp: m.timestamp,
        headers: m.headers
          ? { trace: Buffer.from(m.headers.trace), multi: [Buffer.from("a"), Buffer.from([1, 2])] }
          : {},
      });
    }
    assert.equal(received.size, sent.length);
  },
);
