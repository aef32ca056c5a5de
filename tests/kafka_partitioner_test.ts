import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import fc from "fast-check";
import { Partitioners, type PartitionMetadata } from "kafkajs";
import { FastDefaultPartitioner, keyPartition } from "../adapters/kafka_partitioner.ts";
import { numRuns } from "./fc_runs.ts";

const NUM_RUNS = numRuns(500);

function metadata(partitions: number): PartitionMetadata[] {
  return Array.from({ length: partitions }, (_, partitionId) => ({
    partitionErrorCode: 0,
    partitionId,
    leader: 1,
    replicas: [1],
    isr: [1],
  }));
}

Deno.test("keyPartition() places every key where kafkajs's DefaultPartitioner does", () => {
  const kafkajs = Partitioners.DefaultPartitioner();
  fc.assert(
    fc.property(
      fc.oneof(fc.string({ maxLength: 300 }), fc.string({ unit: "grapheme", maxLength: 200 })),
      fc.integer({ min: 1, max: 64 }),
      (key, partitions) => {
        const expected = kafkajs({
          topic: "t",
          partitionMetadata: metadata(partitions),
          message: { key, value: "v" },
        });
        assert.equal(keyPartition(key, partitions), expected);
      },
    ),
    { numRuns: NUM_RUNS },
  );
});

Deno.test("keyPartition() agrees with kafkajs on device ids of every length", () => {
  const kafkajs = Partitioners.DefaultPartitioner();
  for (let n = 0; n < 2000; n++) {
    const key = `sensor-${String(n).padStart(n % 9, "0")}`;
    const expected = kafkajs({
      topic: "t",
      partitionMetadata: metadata(6),
      message: { key, value: "v" },
    });
    assert.equal(keyPartition(key, 6), expected, key);
  }
});

Deno.test("FastDefaultPartitioner keeps an explicit partition and leaves Buffer keys to kafkajs", () => {
  const partition = FastDefaultPartitioner();
  const partitionMetadata = metadata(6);
  assert.equal(
    partition({ topic: "t", partitionMetadata, message: { key: "a", value: "v", partition: 4 } }),
    4,
  );
  const kafkajs = Partitioners.DefaultPartitioner();
  const message = { key: Buffer.from("bench-000123"), value: "v" };
  assert.equal(
    partition({ topic: "t", partitionMetadata, message }),
    kafkajs({ topic: "t", partitionMetadata, message }),
  );
  assert.equal(
    partition({ topic: "t", partitionMetadata, message: { key: "bench-000123", value: "v" } }),
    kafkajs({ topic: "t", partitionMetadata, message }),
  );
});
