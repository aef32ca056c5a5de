import assert from "node:assert/strict";
import fc from "fast-check";
import {
  granted,
  INITIAL_SEQ_ALLOCATION,
  refill,
  refused,
  remaining,
  type SeqAllocation,
  type SeqBlock,
  take,
} from "../domain/seq_block.ts";
import { numRuns } from "./fc_runs.ts";

const NUM_RUNS = numRuns(300);

function state(overrides: Partial<SeqAllocation> = {}): SeqAllocation {
  return { ...INITIAL_SEQ_ALLOCATION, ...overrides };
}

const B1: SeqBlock = { first: 1, last: 10 };
const B2: SeqBlock = { first: 11, last: 20 };

Deno.test("take() gives nothing without a block and asks for one once", () => {
  const first = take(INITIAL_SEQ_ALLOCATION, 5);
  assert.equal(first.seq, undefined);
  assert.equal(first.refill, true);
  assert.equal(first.state.pending, true);
  const second = take(first.state, 5);
  assert.equal(second.seq, undefined);
  assert.equal(second.refill, false, "a request is already pending");
});

const takeCases: readonly {
  readonly name: string;
  readonly before: SeqAllocation;
  readonly seq: number | undefined;
  readonly refill: boolean;
  readonly after: Partial<SeqAllocation>;
}[] = [
  {
    name: "takes the next seq of the current block",
    before: state({ current: B1, next: 1, above: 10 }),
    seq: 1,
    refill: false,
    after: { next: 2 },
  },
  {
    name: "asks for a block once fewer than the low water remain",
    before: state({ current: B1, next: 6, above: 10 }),
    seq: 6,
    refill: true,
    after: { next: 7, pending: true },
  },
  {
    name: "does not ask again while a request is pending",
    before: state({ current: B1, next: 7, pending: true, above: 10 }),
    seq: 7,
    refill: false,
    after: { next: 8 },
  },
  {
    name: "does not ask while a spare block is waiting",
    before: state({ current: B1, next: 9, spare: B2, above: 20 }),
    seq: 9,
    refill: false,
    after: { next: 10 },
  },
  {
    name: "takes the last seq of a block",
    before: state({ current: B1, next: 10, spare: B2, above: 20 }),
    seq: 10,
    refill: false,
    after: { next: 11 },
  },
  {
    name: "moves to the spare block once the current one is used up",
    before: state({ current: B1, next: 11, spare: B2, above: 20 }),
    seq: 11,
    refill: false,
    after: { current: B2, next: 12, spare: null },
  },
  {
    name: "gives nothing once every block is used up, and asks",
    before: state({ current: B1, next: 11, above: 10 }),
    seq: undefined,
    refill: true,
    after: { pending: true },
  },
  {
    name: "gives nothing when used up with a request pending, and does not ask again",
    before: state({ current: B1, next: 11, pending: true, above: 10 }),
    seq: undefined,
    refill: false,
    after: {},
  },
];

for (const c of takeCases) {
  Deno.test(`take() ${c.name}`, () => {
    const result = take(Object.freeze(c.before), 5);
    assert.equal(result.seq, c.seq);
    assert.equal(result.refill, c.refill);
    assert.deepEqual(result.state, { ...c.before, ...c.after });
  });
}

const grantCases: readonly {
  readonly name: string;
  readonly before: SeqAllocation;
  readonly block: SeqBlock;
  readonly after: Partial<SeqAllocation>;
}[] = [
  {
    name: "makes the first block current",
    before: state({ pending: true }),
    block: B1,
    after: { current: B1, next: 1, pending: false, above: 10 },
  },
  {
    name: "keeps a block as spare while the current one has seqs",
    before: state({ current: B1, next: 7, pending: true, above: 10 }),
    block: B2,
    after: { spare: B2, pending: false, above: 20 },
  },
  {
    name: "makes a block current when the current one is used up",
    before: state({ current: B1, next: 11, pending: true, above: 10 }),
    block: { first: 15, last: 24 },
    after: { current: { first: 15, last: 24 }, next: 15, pending: false, above: 24 },
  },
  {
    name: "ignores a block that does not start above the blocks before",
    before: state({ current: B1, next: 7, pending: true, above: 10 }),
    block: { first: 10, last: 19 },
    after: { pending: false },
  },
  {
    name: "ignores an empty block",
    before: state({ pending: true }),
    block: { first: 5, last: 4 },
    after: { pending: false },
  },
  {
    name: "ignores a block whose bounds are not integers",
    before: state({ pending: true }),
    block: { first: 1.5, last: 4 },
    after: { pending: false },
  },
  {
    name: "replaces a spare with a newer block (its seqs become a gap)",
    before: state({ current: B1, next: 3, spare: B2, above: 20 }),
    block: { first: 21, last: 30 },
    after: { spare: { first: 21, last: 30 }, above: 30 },
  },
];

for (const c of grantCases) {
  Deno.test(`granted() ${c.name}`, () => {
    assert.deepEqual(granted(Object.freeze(c.before), c.block), { ...c.before, ...c.after });
  });
}

Deno.test("refused() clears the pending request so the next take() asks again", () => {
  const asked = take(INITIAL_SEQ_ALLOCATION, 5).state;
  const after = refused(asked);
  assert.equal(after.pending, false);
  assert.equal(take(after, 5).refill, true);
  assert.equal(refused(INITIAL_SEQ_ALLOCATION), INITIAL_SEQ_ALLOCATION);
});

Deno.test("refill() asks only below the low water", () => {
  assert.equal(refill(state({ current: B1, next: 6, above: 10 }), 5).refill, false);
  assert.equal(refill(state({ current: B1, next: 7, above: 10 }), 5).refill, true);
  assert.equal(remaining(state({ current: B1, next: 7, spare: B2, above: 20 })), 14);
});

Deno.test("a sensor never waits in steady state: with a prompt ledger every take() gives a seq", () => {
  let s = granted(INITIAL_SEQ_ALLOCATION, { first: 1, last: 100 });
  let ceiling = 100;
  for (let i = 1; i <= 1000; i++) {
    const t = take(s, 50);
    assert.equal(t.seq, i);
    s = t.state;
    if (t.refill) {
      s = granted(s, { first: ceiling + 1, last: ceiling + 100 });
      ceiling += 100;
    }
  }
});

type Op =
  | { readonly type: "take" }
  | { readonly type: "grant"; readonly first: number; readonly size: number }
  | { readonly type: "refuse" };

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.constant({ type: "take" } as const) },
  {
    weight: 2,
    arbitrary: fc.record({
      type: fc.constant("grant" as const),
      first: fc.integer({ min: -5, max: 400 }),
      size: fc.integer({ min: -1, max: 30 }),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ type: "refuse" } as const) },
);

Deno.test("seqs taken are strictly increasing and each within a granted block", () => {
  fc.assert(
    fc.property(fc.array(op, { maxLength: 200 }), fc.integer({ min: 1, max: 20 }), (ops, low) => {
      let s = INITIAL_SEQ_ALLOCATION;
      const blocks: SeqBlock[] = [];
      let last = 0;
      for (const o of ops) {
        switch (o.type) {
          case "take": {
            const t = take(s, low);
            s = t.state;
            if (t.seq !== undefined) {
              assert.ok(t.seq > last, `seq ${t.seq} after ${last}`);
              assert.ok(blocks.some((b) => b.first <= t.seq! && t.seq! <= b.last));
              last = t.seq;
            }
            break;
          }
          case "grant": {
            const block = { first: o.first, last: o.first + o.size - 1 };
            const before = s.above;
            s = granted(s, block);
            // Only blocks the allocation accepted count as granted.
            if (s.above !== before) blocks.push(block);
            break;
          }
          case "refuse":
            s = refused(s);
            break;
          default:
            o satisfies never;
        }
      }
    }),
    { numRuns: NUM_RUNS },
  );
});
