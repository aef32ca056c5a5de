import assert from "node:assert/strict";
import { KvSeqLedger } from "../adapters/kv_seq_ledger.ts";
import type { SeqBlock } from "../domain/seq_block.ts";
import { testWith } from "./needs.ts";

/** For the tests that keep the ledger in a file (read and write access). */
const permitted = await testWith();

async function tempKv(): Promise<{ path: string } & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "seq-ledger-" });
  return {
    path: `${dir}/iot.kv`,
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}

function assertDisjoint(blocks: readonly SeqBlock[]) {
  const sorted = [...blocks].sort((a, b) => a.first - b.first);
  for (let i = 1; i < sorted.length; i++) {
    assert.ok(
      sorted[i]!.first > sorted[i - 1]!.last,
      `overlap: ${JSON.stringify(sorted[i - 1])} and ${JSON.stringify(sorted[i])}`,
    );
  }
}

permitted.test("KvSeqLedger reserves consecutive blocks per device, above a floor when given", async () => {
  await using kv = await tempKv();
  await using ledger = await KvSeqLedger.open(kv.path);
  const first = await ledger.reserve([{ deviceId: "a", size: 10 }, {
    deviceId: "b",
    size: 5,
    floor: 41,
  }]);
  assert.deepEqual(first, new Map([["a", { first: 1, last: 10 }], ["b", { first: 42, last: 46 }]]));
  const second = await ledger.reserve([{ deviceId: "a", size: 10, floor: 3 }]);
  assert.deepEqual(second.get("a"), { first: 11, last: 20 }, "a floor below the ceiling is moot");
});

Deno.test("KvSeqLedger refuses a call that names a device twice", async () => {
  await using ledger = await KvSeqLedger.open(":memory:");
  await assert.rejects(
    () => ledger.reserve([{ deviceId: "a", size: 1 }, { deviceId: "a", size: 1 }]),
    /names a device twice: "a"/,
  );
});

permitted.test("KvSeqLedger: two ledgers on one KV racing never hand out overlapping blocks", async () => {
  await using kv = await tempKv();
  using db = await Deno.openKv(kv.path);
  await using one = new KvSeqLedger(db);
  await using two = new KvSeqLedger(db);
  // 250 devices: more than one atomic operation's worth of checks.
  const ids = Array.from({ length: 250 }, (_, i) => `d${i}`);
  const calls = Array.from(
    { length: 6 },
    (_, i) => (i % 2 === 0 ? one : two).reserve(ids.map((deviceId) => ({ deviceId, size: 7 }))),
  );
  const results = await Promise.all(calls);
  for (const id of ids) {
    const blocks = results.map((r) => r.get(id)!);
    assertDisjoint(blocks);
    assert.equal(Math.max(...blocks.map((b) => b.last)), 42, `${id}: six blocks of 7`);
  }
});

permitted.test("KvSeqLedger reopened resumes above every block reserved before", async () => {
  await using kv = await tempKv();
  {
    await using ledger = await KvSeqLedger.open(kv.path);
    await ledger.reserve([{ deviceId: "a", size: 100 }]);
    await ledger.reserve([{ deviceId: "a", size: 100 }]);
  }
  await using reopened = await KvSeqLedger.open(kv.path);
  assert.equal(await reopened.ceiling("a"), 200);
  assert.deepEqual(
    (await reopened.reserve([{ deviceId: "a", size: 100 }])).get("a"),
    { first: 201, last: 300 },
  );
});
