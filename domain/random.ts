/**
 * A tiny seeded pseudo-random generator as pure functions over a plain uint32
 * state (mulberry32), so a generator can be stored with the rest of an actor's
 * state and a run reproduced exactly. Not for cryptography.
 *
 * The period is 2^32 and every seed is a position on the same cycle, which is
 * plenty for simulated sensor noise.
 *
 * @module
 */

/** A drawn value and the state to draw the next one from. */
export interface Draw {
  readonly state: number;
  readonly value: number;
}

const GOLDEN_GAMMA = 0x6d2b79f5;
const TWO_POW_32 = 4294967296;

/** Draws a uniform value in [0, 1) and advances the state (mulberry32). */
export function nextRandom(state: number): Draw {
  const next = (state + GOLDEN_GAMMA) >>> 0;
  let t = Math.imul(next ^ (next >>> 15), next | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return { state: next, value: ((t ^ (t >>> 14)) >>> 0) / TWO_POW_32 };
}

/** Draws a standard normal value (mean 0, standard deviation 1) with Box–Muller. */
export function gaussian(state: number): Draw {
  const first = nextRandom(state);
  const second = nextRandom(first.state);
  // 1 - value lies in (0, 1], so the logarithm stays finite.
  const radius = Math.sqrt(-2 * Math.log(1 - first.value));
  return { state: second.state, value: radius * Math.cos(2 * Math.PI * second.value) };
}

const FNV_OFFSET_BASIS = 0x811c9dc5;
const FNV_PRIME = 0x01000193;
const encoder = new TextEncoder();

/**
 * Hashes the UTF-8 bytes of `text` with 32-bit FNV-1a, e.g. to derive a
 * per-device seed from a fleet seed and a device id.
 */
export function seedFrom(text: string): number {
  let hash = FNV_OFFSET_BASIS;
  for (const byte of encoder.encode(text)) {
    hash = Math.imul(hash ^ byte, FNV_PRIME);
  }
  return hash >>> 0;
}
