import "./env_guard.ts";
import assert from "node:assert/strict";
import { ensureTopics } from "../adapters/kafka_client.ts";
import { KafkaSeqLedger, seqTopicSpec } from "../adapters/kafka_seq_ledger.ts";
import { silentLogger } from "../adapters/log.ts";
import type { SeqBlock } from "../domain/seq_block.ts";
import { decodeSeqRecord, encodeSeqRecord, type SeqRecord } from "../schemas/seq_record.ts";
import { type Kafka, requireServices, testKafka, uniqueName } from "./fixtures.ts";
import { needs } from "./needs.ts";
import { until } from "./wait.ts";

/** Options of the tests that need Kafka: ignored, with one line saying why, without it. */
const withKafka = await needs({ kafka: true });

interface LedgerTopic extends AsyncDisposable {
  readonly kafka: Kafka;
  readonly topic: string;
  open(): Promise<KafkaSeqLedger>;
}

/** A compacted ledger topic for one test; its ledgers are closed and it is deleted afterwards. */
async function ledgerTopic(partitions = 3): Promise<LedgerTopic> {
  await requireServices();
  const kafka = testKafka("seq-ledger-test");
  const topic = uniqueName("seqs");
  await ensureTopics(kafka, [seqTopicSpec(topic, partitions)]);
  const ledgers: KafkaSeqLedger[] = [];
  return {
    kafka,
    topic,
    async open() {
      const ledger = await KafkaSeqLedger.open(kafka, { topic, logger: silentLogger });
      ledgers.push(ledger);
      return ledger;
    },
    async [Symbol.asyncDispose]() {
      for (const l of ledgers) await l[Symbol.asyncDispose]();
      const admin = kafka.admin();
      await admin.connect();
      await admin.deleteTopics({ topics: [topic] }).catch(() => {});
      await admin.disconnect();
    },
  };
}

/** Every record of the topic, in partition order per device. */
async function records(kafka: Kafka, topic: string): Promise<Map<string, SeqRecord[]>> {
  const admin = kafka.admin();
  await admin.connect();
  const offsets = await admin.fetchTopicOffsets(topic);
  await admin.disconnect();
  const total = offsets.reduce((n, o) => n + Number(o.high) - Number(o.low), 0);
  const groupId = uniqueName("seq-reader");
  const consumer = kafka.consumer({ groupId, maxWaitTimeInMs: 100 });
  const out = new Map<string, SeqRecord[]>();
  let seen = 0;
  await consumer.connect();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      eachMessage: ({ message }) => {
        const d = decodeSeqRecord(message.key, message.value);
        if (d.ok) out.set(d.deviceId, [...(out.get(d.deviceId) ?? []), d.record]);
        seen++;
        return Promise.resolve();
      },
    });
    await until("the whole ledger topic", () => seen >= total ? true : undefined);
  } finally {
    await consumer.disconnect();
  }
  return out;
}

async function produce(kafka: Kafka, topic: string, deviceId: string, record: SeqRecord) {
  const producer = kafka.producer();
  await producer.connect();
  await producer.send({
    topic,
    acks: -1,
    messages: [{ key: deviceId, value: encodeSeqRecord(record) }],
  });
  await producer.disconnect();
}

function assertDisjoint(id: string, blocks: readonly SeqBlock[]) {
  const sorted = [...blocks].sort((a, b) => a.first - b.first);
  for (let i = 1; i < sorted.length; i++) {
    assert.ok(
      sorted[i]!.first > sorted[i - 1]!.last,
      `${id}: ${JSON.stringify(sorted[i - 1])} overlaps ${JSON.stringify(sorted[i])}`,
    );
  }
}

Deno.test({
  ...withKafka,
  name: "KafkaSeqLedger: two ledgers racing on the same devices never grant overlapping blocks, " +
    "and a new ledger resumes above all of them",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using t = await ledgerTopic();
    const [one, two] = await Promise.all([t.open(), t.open()]);
    const ids = Array.from({ length: 20 }, (_, i) => `dev-${i}`);
    const requests = ids.map((deviceId) => ({ deviceId, size: 10 }));
    // Three rounds of both ledgers at once, on the same devices.
    const granted: Map<string, SeqBlock>[] = [];
    for (let round = 0; round < 3; round++) {
      granted.push(...await Promise.all([one.reserve(requests), two.reserve(requests)]));
    }
    let highest = 0;
    for (const id of ids) {
      const blocks = granted.map((g) => g.get(id)!);
      assert.equal(blocks.length, 6);
      assertDisjoint(id, blocks);
      highest = Math.max(highest, ...blocks.map((b) => b.last));
    }
    const three = await t.open();
    const next = await three.reserve([{ deviceId: "dev-0", size: 10 }]);
    const above = Math.max(...granted.map((g) => g.get("dev-0")!.last));
    assert.ok(next.get("dev-0")!.first > above, `${next.get("dev-0")!.first} <= ${above}`);
    assert.ok(highest >= 60);
  },
});

Deno.test({
  ...withKafka,
  name: "KafkaSeqLedger burns a stale proposal, re-asserts the ceiling after it, and grants above",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using t = await ledgerTopic();
    const owner = await t.open();
    await owner.reserve([{ deviceId: "boiler", size: 100 }]);
    await owner.reserve([{ deviceId: "boiler", size: 100 }]);
    // A paused process wakes up and writes the proposals it made long ago: the first one reaches
    // the ceiling (no regression), the second one is below it.
    await produce(t.kafka, t.topic, "boiler", { first: 101, last: 200, by: "zombie:7" });
    await produce(t.kafka, t.topic, "boiler", { first: 1, last: 100, by: "zombie:8" });
    await until("the owner to re-assert", () => owner.stats.reasserted === 1 || undefined);
    const log = await until("the re-assertion in the topic", async () => {
      const all = (await records(t.kafka, t.topic)).get("boiler") ?? [];
      return all.length >= 5 ? all : undefined;
    });
    // What compaction would keep (the key's last record) still carries the true ceiling.
    assert.equal(log.at(-1)!.last, 200, JSON.stringify(log));
    const fresh = await t.open();
    assert.equal(fresh.ceiling("boiler"), 200);
    assert.deepEqual(
      (await fresh.reserve([{ deviceId: "boiler", size: 100 }])).get("boiler"),
      { first: 201, last: 300 },
    );
    assert.deepEqual((await owner.reserve([{ deviceId: "boiler", size: 5 }])).get("boiler"), {
      first: 301,
      last: 305,
    }, "the owner lost its first proposal to the fresh ledger's and proposed again");
  },
});

Deno.test({
  ...withKafka,
  name: "KafkaSeqLedger starts a device above its floor, and the floor is moot below the ceiling",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using t = await ledgerTopic();
    const ledger = await t.open();
    const first = await ledger.reserve([{ deviceId: "old", size: 10, floor: 500 }, {
      deviceId: "new",
      size: 10,
    }]);
    assert.deepEqual(first.get("old"), { first: 501, last: 510 });
    assert.deepEqual(first.get("new"), { first: 1, last: 10 });
    const second = await ledger.reserve([{ deviceId: "old", size: 10, floor: 500 }]);
    assert.deepEqual(second.get("old"), { first: 511, last: 520 });
  },
});

Deno.test({
  ...withKafka,
  name: "KafkaSeqLedger reserves for thousands of devices with long ids in one call",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    // One partition: one produce request for all of them would pass the brokers' 1 MB limit.
    await using t = await ledgerTopic(1);
    const ledger = await t.open();
    const ids = Array.from({ length: 8000 }, (_, i) => `${"d".repeat(58)}-${i}`.slice(-64));
    const blocks = await ledger.reserve(ids.map((deviceId) => ({ deviceId, size: 100 })));
    assert.equal(blocks.size, ids.length);
    assert.ok(ids.every((id) => blocks.get(id)?.first === 1 && blocks.get(id)?.last === 100));
  },
});
