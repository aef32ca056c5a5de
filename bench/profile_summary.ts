/**
 * Self time per function of a V8 `.cpuprofile` (as `deno run --cpu-prof` writes one per
 * thread: the main thread's and each Worker's), as shares of the samples:
 *
 *   deno run --allow-read bench/profile_summary.ts bench/profiles/CPU.*.cpuprofile [--top 25]
 *
 * Functions are grouped by name and file (not line), so a hot function split over several
 * inlined copies is one row; "(garbage collector)", "(idle)" and "(program)" are V8's own.
 *
 * @module
 */
import { parseArgs } from "node:util";

interface ProfileNode {
  readonly id: number;
  readonly callFrame: {
    readonly functionName: string;
    readonly url: string;
    readonly lineNumber: number;
  };
}

interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
  readonly startTime: number;
  readonly endTime: number;
}

/** Rows of `[label, share of samples]`, largest first. */
export function selfTimes(profile: CpuProfile): [string, number][] {
  const label = new Map<number, string>();
  for (const { id, callFrame: { functionName, url } } of profile.nodes) {
    const file = url.replace(/^.*\/(registry\.npmjs\.org|node_modules)\//, "npm:")
      .replace(/^file:\/\/.*?\/(adapters|actors|domain|schemas|bench|app)\//, "$1/")
      .replace(/^ext:/, "ext:");
    label.set(id, `${functionName || "(anonymous)"}${file ? ` ${file}` : ""}`);
  }
  const counts = new Map<string, number>();
  for (const id of profile.samples) {
    const name = label.get(id) ?? "?";
    counts.set(name, (counts.get(name) ?? 0) + 1);
  }
  const total = profile.samples.length || 1;
  return [...counts].map(([name, n]) => [name, n / total] as [string, number])
    .sort((a, b) => b[1] - a[1]);
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: { top: { type: "string", default: "25" } },
  });
  for (const path of positionals) {
    const profile = JSON.parse(Deno.readTextFileSync(path)) as CpuProfile;
    const seconds = (profile.endTime - profile.startTime) / 1e6;
    console.log(`\n${path}: ${profile.samples.length} samples over ${seconds.toFixed(1)} s`);
    for (const [name, share] of selfTimes(profile).slice(0, Number(values.top))) {
      console.log(`${(share * 100).toFixed(1).padStart(5)} %  ${name}`);
    }
  }
}
