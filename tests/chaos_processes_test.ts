import assert from "node:assert/strict";
import { isStackAddress } from "../chaos/processes.ts";

Deno.test("isStackAddress() accepts the default local stack's addresses", () => {
  assert.equal(isStackAddress("127.0.0.1:9092", "mongodb://127.0.0.1:27017/", {}), true);
  assert.equal(isStackAddress("127.0.0.1:9092", "mongodb://127.0.0.1:27017", {}), true);
});

Deno.test("isStackAddress() accepts a second stack on the STACK_*_PORT ports", () => {
  const env = { STACK_KAFKA_PORT: "19092", STACK_MONGO_PORT: "27018" };
  assert.equal(isStackAddress("127.0.0.1:19092", "mongodb://127.0.0.1:27018/", env), true);
});

Deno.test("isStackAddress() refuses services that are not that stack", () => {
  const env = { STACK_KAFKA_PORT: "19092", STACK_MONGO_PORT: "27018" };
  // The shared stack, while this checkout's stack runs on other ports.
  assert.equal(isStackAddress("127.0.0.1:9092", "mongodb://127.0.0.1:27017/", env), false);
  assert.equal(isStackAddress("127.0.0.1:19092", "mongodb://127.0.0.1:27017/", env), false);
  assert.equal(isStackAddress("kafka.example:9092", "mongodb://127.0.0.1:27017/", {}), false);
  assert.equal(
    isStackAddress("127.0.0.1:9092", "mongodb://user:secret@127.0.0.1:27017/", {}),
    false,
  );
});
