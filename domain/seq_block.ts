/**
 * One sensor's seqs, as a pure state machine: it hands out the seqs of the
 * blocks the ledger granted, in order, and asks for the next block while a
 * low-water share of the current one is still left, so in steady state a
 * sensor never waits for the ledger. With no seq left it hands out nothing
 * (the tick is skipped); it never invents a seq.
 *
 * @module
 */

/** Seqs `first..last`, both included, reserved for one device. */
export interface SeqBlock {
  readonly first: number;
  readonly last: number;
}

export interface SeqAllocation {
  /** The block seqs are taken from; null before the first grant or once used up. */
  readonly current: SeqBlock | null;
  /** Next seq of `current` to hand out. */
  readonly next: number;
  /** A granted block waiting for `current` to be used up. */
  readonly spare: SeqBlock | null;
  /** A block was asked for and not answered yet. */
  readonly pending: boolean;
  /** Highest seq of every block accepted so far (0: none); a grant must start above it. */
  readonly above: number;
}

export const INITIAL_SEQ_ALLOCATION: SeqAllocation = {
  current: null,
  next: 0,
  spare: null,
  pending: false,
  above: 0,
};

/** Seqs still available without a new grant. */
export function remaining(state: SeqAllocation): number {
  const current = state.current ? state.current.last - state.next + 1 : 0;
  const spare = state.spare ? state.spare.last - state.spare.first + 1 : 0;
  return current + spare;
}

/**
 * Whether to ask for a block now: none asked yet, none spare, and fewer than
 * `lowWater` seqs left. When it says yes, the state records the request.
 */
export function refill(
  state: SeqAllocation,
  lowWater: number,
): { readonly state: SeqAllocation; readonly refill: boolean } {
  if (state.pending || state.spare !== null || remaining(state) >= lowWater) {
    return { state, refill: false };
  }
  return { state: { ...state, pending: true }, refill: true };
}

export interface Take {
  readonly state: SeqAllocation;
  /** The seq to use; undefined when no granted seq is left (the tick is skipped). */
  readonly seq: number | undefined;
  /** True when the caller must ask the ledger for a block (see `refill()`). */
  readonly refill: boolean;
}

/** Takes the next seq, moving to the spare block when the current one is used up. */
export function take(state: SeqAllocation, lowWater: number): Take {
  let s = state;
  if ((s.current === null || s.next > s.current.last) && s.spare !== null) {
    s = { ...s, current: s.spare, next: s.spare.first, spare: null };
  }
  let seq: number | undefined;
  if (s.current !== null && s.next <= s.current.last) {
    seq = s.next;
    s = { ...s, next: s.next + 1 };
  }
  const after = refill(s, lowWater);
  return { state: after.state, seq, refill: after.refill };
}

/**
 * Accepts a granted block. A block that does not start above every block
 * accepted before is ignored (a correct ledger never sends one): the
 * allocation then asks again.
 */
export function granted(state: SeqAllocation, block: SeqBlock): SeqAllocation {
  const valid = Number.isSafeInteger(block.first) && Number.isSafeInteger(block.last) &&
    block.first > state.above && block.last >= block.first;
  if (!valid) return { ...state, pending: false };
  const used = state.current === null || state.next > state.current.last;
  if (used && state.spare === null) {
    return { ...state, current: block, next: block.first, pending: false, above: block.last };
  }
  if (state.spare === null) return { ...state, spare: block, pending: false, above: block.last };
  // Both slots full (only a caller asking twice gets here): keep the current block and the
  // newer grant; the older spare's seqs become a gap.
  return { ...state, spare: block, pending: false, above: block.last };
}

/** The ledger could not grant a block: the next `take()` asks again. */
export function refused(state: SeqAllocation): SeqAllocation {
  return state.pending ? { ...state, pending: false } : state;
}
