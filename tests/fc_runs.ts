/** Property-test run count: `FC_NUM_RUNS` (as `deno task test:props` sets it), else `fallback`. */
export function numRuns(fallback: number): number {
  // A bare `deno test` grants no env access: the pure property tests still run, with the fallback.
  const access = Deno.permissions.querySync({ name: "env", variable: "FC_NUM_RUNS" }).state;
  const raw = access === "granted" ? Deno.env.get("FC_NUM_RUNS") : undefined;
  if (raw === undefined || raw === "") return fallback;
  const runs = Number(raw);
  if (!Number.isInteger(runs) || runs < 1) {
    throw new Error(`FC_NUM_RUNS must be a positive integer: received "${raw}"`);
  }
  return runs;
}
