/**
 * Measurement helpers for the benchmark: a fixed-bin latency histogram that
 * costs one array increment per sample (so measuring does not slow what is
 * measured), and median / spread over repeated runs.
 *
 * @module
 */
import process from "node:process";

/** Latencies in whole milliseconds, 0 … `maxMs` (larger ones land in the last bin). */
export class Histogram {
  readonly #bins: Uint32Array;
  #count = 0;
  #sum = 0;
  #max = 0;

  constructor(maxMs = 120_000) {
    this.#bins = new Uint32Array(maxMs + 1);
  }

  add(ms: number): void {
    const bin = Math.min(this.#bins.length - 1, Math.max(0, Math.round(ms)));
    this.#bins[bin]!++;
    this.#count++;
    this.#sum += ms;
    if (ms > this.#max) this.#max = ms;
  }

  get count(): number {
    return this.#count;
  }

  /** The smallest latency at or below which `p` percent of the samples lie (NaN when empty). */
  percentile(p: number): number {
    if (this.#count === 0) return NaN;
    const rank = Math.max(1, Math.ceil((p / 100) * this.#count));
    let seen = 0;
    for (let i = 0; i < this.#bins.length; i++) {
      seen += this.#bins[i]!;
      if (seen >= rank) return i;
    }
    return this.#bins.length - 1;
  }

  summary(): LatencySummary {
    return {
      count: this.#count,
      mean: this.#count === 0 ? NaN : round(this.#sum / this.#count),
      p50: this.percentile(50),
      p95: this.percentile(95),
      p99: this.percentile(99),
      max: round(this.#max),
    };
  }
}

export interface LatencySummary {
  readonly count: number;
  readonly mean: number;
  readonly p50: number;
  readonly p95: number;
  readonly p99: number;
  readonly max: number;
}

/** Median and range of one figure over repeated runs. */
export interface Spread {
  readonly median: number;
  readonly min: number;
  readonly max: number;
  readonly runs: number;
}

export function spread(values: readonly number[]): Spread {
  const finite = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (finite.length === 0) return { median: NaN, min: NaN, max: NaN, runs: values.length };
  const mid = finite.length >> 1;
  const median = finite.length % 2 === 1 ? finite[mid]! : (finite[mid - 1]! + finite[mid]!) / 2;
  return {
    median: round(median),
    min: round(finite[0]!),
    max: round(finite.at(-1)!),
    runs: values.length,
  };
}

/** `12 345 (11 900–12 800)` style, or the single value for one run. */
export function formatSpread(s: Spread, digits = 0): string {
  if (!Number.isFinite(s.median)) return "n/a";
  const f = (x: number) => formatNumber(x, digits);
  return s.runs > 1 && s.min !== s.max ? `${f(s.median)} (${f(s.min)}–${f(s.max)})` : f(s.median);
}

export function formatNumber(x: number, digits = 0): string {
  if (!Number.isFinite(x)) return "n/a";
  return x.toLocaleString("en-US", {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  }).replaceAll(",", " ");
}

export function round(x: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** CPU time (user + system) of this process in ms, for "cores used" over a window. */
export function cpuMs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}
