/** Property-test run count: `FC_NUM_RUNS` (as `deno task test:props` sets it), else `fallback`. */
export function numRuns(fallback: number): number {
  const raw = Deno.env.get("FC_NUM_RUNS");
  if (raw === undefined || raw === "") return fallback;
  const runs = Number(raw);
  if (!Number.isInteger(runs) || runs < 1) {
    throw new Error(`FC_NUM_RUNS must be a positive integer: received "${raw}"`);
  }
  return runs;
}
