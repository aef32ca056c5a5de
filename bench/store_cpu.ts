/**
 * The store server's own CPU time, read from `/proc/<pid>/stat` without
 * asking the server anything (a `collStats` or `count` costs FerretDB a scan):
 * the benchmark compares the store CPU the processors cost per reading with a
 * plain indexed insert of the same documents in the same run. Linux only. The
 * store is the local stack's FerretDB serving `MONGO_URL`'s port (this
 * checkout's, else any on this machine listening there) and, on its `pg`
 * backend, the PostgreSQL server it writes to with every process that server
 * forked (about 40 % of the store's CPU in a raw insert loop); or
 * `BENCH_STORE_PID`'s process and its children.
 *
 * @module
 */
import { fileURLToPath } from "node:url";

const runFile = (name: string) =>
  fileURLToPath(new URL(`../.stack/run/${name}.pid`, import.meta.url));

/** The processes whose CPU time is the store's: each counted with every process it forked. */
export interface StoreProcesses {
  readonly pids: readonly number[];
}

/** The FerretDB process serving `mongoUrl` on this machine, if any. */
async function ferretdbServing(mongoUrl: string): Promise<number | undefined> {
  const port = /:(\d+)\/?/.exec(mongoUrl.replace(/^mongodb:\/\//, ""))?.[1];
  if (!port) return undefined;
  return await findProcess(
    runFile("ferretdb"),
    (args) => args.includes("ferretdb") && args.includes(`-addr=127.0.0.1:${port}`),
  );
}

/** The storage backend (`--handler`: `pg`, `sqlite`) of the FerretDB serving `mongoUrl` here. */
export async function ferretdbBackend(mongoUrl: string): Promise<string | undefined> {
  const pid = await ferretdbServing(mongoUrl);
  if (pid === undefined) return undefined;
  const args = (await read(`/proc/${pid}/cmdline`)).replaceAll("\0", " ");
  return /--handler[= ](\w+)/.exec(args)?.[1];
}

/** The store server behind `mongoUrl`, if it runs on this machine and is found. */
export async function storeProcesses(mongoUrl: string): Promise<StoreProcesses | undefined> {
  const given = Number(Deno.env.get("BENCH_STORE_PID"));
  if (Number.isInteger(given) && given > 0) return { pids: [given] };
  const ferretdb = await ferretdbServing(mongoUrl);
  if (ferretdb === undefined) return undefined;
  // `--postgresql-url=postgres://user@host:port/db`: the postmaster is the one listening there.
  const pgPort = /--postgresql-url=postgres(?:ql)?:\/\/[^ ]*?:(\d+)\//.exec(
    (await read(`/proc/${ferretdb}/cmdline`)).replaceAll("\0", " "),
  )?.[1];
  const postgres = pgPort === undefined ? undefined : await findProcess(
    runFile("postgres"),
    (args) => args.includes("postgres") && args.includes(`port=${pgPort}`),
  );
  return { pids: postgres === undefined ? [ferretdb] : [ferretdb, postgres] };
}

/**
 * The process in `pidFile` if `matches` its command line, else any on this machine that does (a
 * stack started from another checkout).
 */
async function findProcess(
  pidFile: string,
  matches: (args: string) => boolean,
): Promise<number | undefined> {
  const serves = async (pid: number) => matches(await read(`/proc/${pid}/cmdline`));
  const pid = Number(await Deno.readTextFile(pidFile).catch(() => ""));
  if (Number.isInteger(pid) && pid > 0 && await serves(pid)) return pid;
  for await (const entry of Deno.readDir("/proc")) {
    const other = Number(entry.name);
    if (Number.isInteger(other) && other > 0 && await serves(other)) return other;
  }
  return undefined;
}

/** The store's CPU time so far, in ms (NaN when unknown), each process with those it forked. */
export async function storeCpuTime(store: StoreProcesses | undefined): Promise<number> {
  if (store === undefined) return NaN;
  let sum = 0;
  for (const pid of store.pids) sum += await treeCpuMs(pid);
  return sum;
}

/**
 * User + system CPU of a process and of every process it forked, living or ended, so far, in ms
 * (NaN when unknown): its own, its ended children's (which the kernel adds to its `cutime` and
 * `cstime` once reaped) and its living children's, likewise. PostgreSQL works in a process per
 * connection. Read through `cat`: Deno lets only --allow-all read another process's `/proc`
 * files.
 */
async function treeCpuMs(pid: number): Promise<number> {
  const stat = await read(`/proc/${pid}/stat`);
  if (stat === "") return NaN;
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // utime, stime, cutime, cstime: fields 14–17 of proc(5), counted from the state (field 3).
  const ticks = [11, 12, 13, 14].reduce((sum, i) => sum + Number(fields[i]), 0);
  if (!Number.isFinite(ticks)) return NaN;
  let ms = ticks * 10; // USER_HZ is 100 on Linux
  const children = (await read(`/proc/${pid}/task/${pid}/children`)).trim();
  for (const child of children === "" ? [] : children.split(/\s+/).map(Number)) {
    const childMs = await treeCpuMs(child);
    if (Number.isFinite(childMs)) ms += childMs; // NaN: it ended since (now in our `cutime`)
  }
  return ms;
}

/** The machine's CPU time so far, from `/proc/stat` (see `machineBusyMs`). */
export interface MachineCpu {
  /** Every core's user, system, interrupt and steal time, not idle or waiting for I/O (NaN: unknown). */
  readonly busyMs: number;
  /** Every core's time in any state, idle included: the cores times the time they ran. */
  readonly allMs: number;
  readonly cores: number;
}

/**
 * CPU time the whole machine spent busy so far, and its cores: what a window's processes together
 * could use, so a figure can be read against the machine's ceiling.
 */
export async function machineBusyMs(): Promise<MachineCpu> {
  const lines = (await read("/proc/stat")).split("\n");
  const cores = lines.filter((line) => /^cpu\d+ /.test(line)).length;
  const ticks = (lines[0] ?? "").trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is counted in user already).
  const known = ticks.length >= 8;
  const busy = ticks.slice(0, 8).reduce((sum, t, i) => (i === 3 || i === 4 ? sum : sum + t), 0);
  const all = ticks.slice(0, 8).reduce((sum, t) => sum + t, 0);
  return { busyMs: known ? busy * 10 : NaN, allMs: known ? all * 10 : NaN, cores: cores || NaN };
}

/**
 * Cores busy on average between two readings: the busy share of all the machine's CPU time in
 * between, times its cores. Taken from the counters alone, not from a clock read beside them, which
 * the reads of many `/proc` files after a window on a loaded machine put seconds apart (2.43 busy
 * cores of 2 were printed that way).
 */
export function busyCoresBetween(before: MachineCpu, after: MachineCpu): number {
  const all = after.allMs - before.allMs;
  return all > 0 ? (after.busyMs - before.busyMs) / all * after.cores : NaN;
}

async function read(path: string): Promise<string> {
  try {
    const out = await new Deno.Command("cat", { args: [path] }).output();
    return new TextDecoder().decode(out.stdout);
  } catch {
    return "";
  }
}
