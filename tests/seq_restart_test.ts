/**
 * The user's path through a crash: the real program in embedded mode, run as
 * a subprocess, killed with SIGKILL while its sensors emit, started again,
 * then stopped gracefully. Its KV store must show that no `(deviceId, seq)`
 * was produced twice: every reading stored after the restart has a seq above
 * the seq ledger's ceiling at the crash, and no stored reading changed.
 *
 * Needs `run` access to `deno` besides the suite's permissions (deno.json's
 * default set grants it: `deno test -P`, `deno task test`).
 *
 * @module
 */
import assert from "node:assert/strict";
import type { ReadingDoc } from "../schemas/documents.ts";
import { needs } from "./needs.ts";
import { until } from "./wait.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const SENSORS = 20;

interface Run {
  readonly child: Deno.ChildProcess;
  readonly url: string;
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** Starts `main.ts` in embedded mode on the KV file at `kvPath`. */
function startApp(dir: string, kvPath: string): Run {
  const env = Deno.env.toObject();
  delete env.KAFKA_BROKERS;
  delete env.MONGO_URL;
  const port = freePort();
  const child = new Deno.Command("deno", {
    args: [
      "run",
      "--allow-net",
      "--allow-env",
      "--allow-read",
      `--allow-write=${dir}`,
      "--allow-sys",
      "main.ts",
      "--port",
      String(port),
      "--sensors",
      String(SENSORS),
      "--interval-ms",
      "100",
      "--checkpoint-ms",
      "200",
      "--log-level",
      "error",
    ],
    cwd: ROOT,
    clearEnv: true,
    env: { ...env, KV_PATH: kvPath },
    stdin: "null",
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  return { child, url: `http://127.0.0.1:${port}` };
}

/** Waits until the processors of `run` stored at least `count` readings. */
async function stored(run: Run, count: number) {
  await until(`${count} readings stored`, async () => {
    const res = await fetch(`${run.url}/health`).catch(() => undefined);
    if (!res) return undefined;
    const body = await res.json();
    return (body?.stats?.processors?.readings ?? 0) >= count ? true : undefined;
  }, 60_000);
}

interface Snapshot {
  readonly readings: Map<string, ReadingDoc>;
  readonly ceilings: Map<string, number>;
}

async function snapshot(kvPath: string): Promise<Snapshot> {
  using kv = await Deno.openKv(kvPath);
  const readings = new Map<string, ReadingDoc>();
  for await (const e of kv.list<ReadingDoc>({ prefix: ["readings"] })) {
    readings.set(e.value._id, e.value);
  }
  const ceilings = new Map<string, number>();
  for await (const e of kv.list<number>({ prefix: ["seq_ceilings"] })) {
    ceilings.set(e.key[1] as string, e.value);
  }
  return { readings, ceilings };
}

function content(r: ReadingDoc) {
  return { ts: r.ts.toISOString(), temperature: r.temperature, humidity: r.humidity };
}

Deno.test({
  ...await needs({ deno: true }),
  name: "main.ts embedded: after kill -9 and a restart, sensors resume above every seq used before",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "seq-restart-" });
    const kvPath = `${dir}/iot.kv`;
    try {
      const first = startApp(dir, kvPath);
      try {
        await stored(first, 300);
      } finally {
        first.child.kill("SIGKILL");
        await first.child.status;
      }
      const before = await snapshot(kvPath);
      assert.equal(before.ceilings.size, SENSORS, "one ledger entry per sensor");

      const second = startApp(dir, kvPath);
      try {
        await stored(second, 300);
      } finally {
        second.child.kill("SIGTERM");
      }
      assert.equal((await second.child.status).code, 0, "a graceful stop");
      const after = await snapshot(kvPath);

      let resumed = 0;
      const devices = new Set<string>();
      for (const [id, doc] of after.readings) {
        devices.add(doc.deviceId);
        const old = before.readings.get(id);
        if (old) {
          assert.deepEqual(content(doc), content(old), `${id}: stored once, never overwritten`);
          continue;
        }
        const ceiling = before.ceilings.get(doc.deviceId) ?? 0;
        assert.ok(doc.seq > ceiling, `${id}: above the ledger's ceiling at the crash (${ceiling})`);
        resumed++;
      }
      assert.equal(devices.size, SENSORS);
      assert.ok(resumed >= 300, `readings stored after the restart: ${resumed}`);
      for (const [device, ceiling] of before.ceilings) {
        const seqs = [...before.readings.values()].filter((r) => r.deviceId === device)
          .map((r) => r.seq);
        assert.ok(seqs.every((s) => s <= ceiling), `${device}: used only reserved seqs`);
        assert.ok((after.ceilings.get(device) ?? 0) > ceiling, `${device}: a new block`);
      }
    } finally {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
