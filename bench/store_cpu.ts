/**
 * The store server's own CPU time, read from `/proc/<pid>/stat` without
 * asking the server anything (a `collStats` or `count` costs FerretDB a scan):
 * the benchmark compares the store CPU the processors cost per reading with a
 * plain indexed insert of the same documents in the same run. Linux only; the
 * process is the local stack's FerretDB serving `MONGO_URL`'s port (this
 * checkout's, else any on this machine listening there), or `BENCH_STORE_PID`.
 *
 * @module
 */
import { fileURLToPath } from "node:url";

const STACK_PID = fileURLToPath(new URL("../.stack/run/ferretdb.pid", import.meta.url));

/** The pid of the store server behind `mongoUrl`, if it runs on this machine and is known. */
export async function storePid(mongoUrl: string): Promise<number | undefined> {
  const given = Number(Deno.env.get("BENCH_STORE_PID"));
  if (Number.isInteger(given) && given > 0) return given;
  const port = /:(\d+)\/?/.exec(mongoUrl.replace(/^mongodb:\/\//, ""))?.[1];
  if (!port) return undefined;
  const serves = async (pid: number) => {
    const cmdline = await read(`/proc/${pid}/cmdline`);
    return cmdline.includes("ferretdb") && cmdline.includes(`-addr=127.0.0.1:${port}`);
  };
  const pid = Number(await Deno.readTextFile(STACK_PID).catch(() => ""));
  if (Number.isInteger(pid) && pid > 0 && await serves(pid)) return pid;
  // A stack started from another checkout: its FerretDB, found by the address it listens on.
  for await (const entry of Deno.readDir("/proc")) {
    const other = Number(entry.name);
    if (Number.isInteger(other) && other > 0 && await serves(other)) return other;
  }
  return undefined;
}

/**
 * User + system CPU of a process so far, in ms (NaN when unknown). Read through `cat`: Deno
 * lets only --allow-all read another process's `/proc/<pid>` files.
 */
export async function processCpuMs(pid: number | undefined): Promise<number> {
  if (pid === undefined) return NaN;
  const stat = await read(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14 and 15)
  return Number.isFinite(ticks) ? ticks * 10 : NaN; // USER_HZ is 100 on Linux
}

/**
 * CPU time the whole machine spent busy so far (every core's user, system, interrupt and steal
 * time, not idle or waiting for I/O), in ms (NaN when unknown), and its cores: what a window's
 * processes together could use, so a figure can be read against the machine's ceiling.
 */
export async function machineBusyMs(): Promise<{ busyMs: number; cores: number }> {
  const lines = (await read("/proc/stat")).split("\n");
  const cores = lines.filter((line) => /^cpu\d+ /.test(line)).length;
  const ticks = (lines[0] ?? "").trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is counted in user already).
  const busy = ticks.slice(0, 8).reduce((sum, t, i) => (i === 3 || i === 4 ? sum : sum + t), 0);
  return { busyMs: ticks.length >= 8 ? busy * 10 : NaN, cores: cores || NaN };
}

async function read(path: string): Promise<string> {
  try {
    const out = await new Deno.Command("cat", { args: [path] }).output();
    return new TextDecoder().decode(out.stdout);
  } catch {
    return "";
  }
}
