import assert from "node:assert/strict";
import { retrying } from "../chaos/retry.ts";

Deno.test("retrying() retries a call that fails until it succeeds", async () => {
  let calls = 0;
  const value = await retrying("a flaky call", () => {
    calls++;
    if (calls < 3) {
      return Promise.reject(new Error("This server does not host this topic-partition"));
    }
    return Promise.resolve("metadata");
  });
  assert.equal(value, "metadata");
  assert.equal(calls, 3);
});

Deno.test("retrying() gives up after its deadline, naming the call and keeping the cause", async () => {
  const cause = new Error("Connection refused");
  const error = await retrying("fetch the offsets", () => Promise.reject(cause), 0).then(
    () => assert.fail("expected a rejection"),
    (e: Error) => e,
  );
  assert.match(error.message, /fetch the offsets/);
  assert.equal(error.cause, cause);
});
