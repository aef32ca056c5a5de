/**
 * Webhooks across a `kill -9` of the process that owns the outbox: the real
 * program in embedded mode, as a subprocess, raises an overheat while the
 * receiver is down, is killed with SIGKILL, and started again with the
 * receiver up: the event still arrives, with its one idempotency key.
 *
 * Needs `run` access to `deno` (deno.json's default set grants it: `deno test -P`).
 *
 * @module
 */
import assert from "node:assert/strict";
import { needs } from "./needs.ts";
import { until } from "./wait.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const TOKEN = "webhook-kill-token-0123456789";
const AUTH = { Authorization: `Bearer ${TOKEN}`, "Content-Type": "application/json" };
const SECRET = "webhook-kill-secret-0123";

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

function startApp(dir: string, kvPath: string) {
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
      "1",
      "--interval-ms",
      "100",
      "--log-level",
      "error",
    ],
    cwd: ROOT,
    clearEnv: true,
    env: {
      ...env,
      KV_PATH: kvPath,
      API_TOKEN: TOKEN,
      WEBHOOK_POLL_MS: "100",
      WEBHOOK_BACKOFF_BASE_MS: "100",
      WEBHOOK_BACKOFF_CAP_MS: "300",
      WEBHOOK_ALLOW_NETWORKS: "127.0.0.1",
      // Attempts count across restarts: a busy machine must not dead-letter the event first.
      WEBHOOK_MAX_ATTEMPTS: "1000",
      // The killed process keeps its lease until it expires: the restarted one waits that long.
      WEBHOOK_LEASE_MS: "3000",
    },
    stdin: "null",
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  return { child, url: `http://127.0.0.1:${port}` };
}

Deno.test({
  ...await needs({ deno: true }),
  name: "main.ts embedded: an event pending at a kill -9 is delivered after the restart",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "webhook-kill-" });
    const kvPath = `${dir}/iot.kv`;
    const state = { down: true, refused: 0, keys: [] as string[] };
    const server = Deno.serve(
      { port: 0, hostname: "127.0.0.1", onListen: () => {} },
      async (req) => {
        await req.body?.cancel();
        if (state.down) {
          state.refused++;
          return new Response(null, { status: 503 });
        }
        state.keys.push(req.headers.get("idempotency-key") ?? "");
        return new Response(null, { status: 200 });
      },
    );
    try {
      const first = startApp(dir, kvPath);
      let raise: string;
      try {
        const sensors = await until("the app up", async () => {
          const res = await fetch(`${first.url}/sensors`).catch(() => undefined);
          return res?.ok ? (await res.json()).sensors : undefined;
        }, 60_000);
        const id = sensors[0].id as string;
        const sub = await fetch(`${first.url}/webhooks`, {
          method: "POST",
          headers: AUTH,
          body: JSON.stringify({
            url: `http://127.0.0.1:${server.addr.port}/hook`,
            events: ["raise"],
            secret: SECRET,
          }),
        });
        assert.equal(sub.status, 201);
        await sub.body?.cancel();
        const heat = await fetch(`${first.url}/sensors/${id}/overheat`, {
          method: "POST",
          headers: AUTH,
          body: JSON.stringify({ readings: 50 }),
        });
        assert.equal(heat.status, 202);
        await heat.body?.cancel();
        const alert = await until("the raise stored", async () => {
          const res = await fetch(`${first.url}/alerts?type=overheat`);
          return (await res.json()).alerts[0];
        }, 60_000);
        raise = `${alert._id}:raise`;
        await until("a delivery refused", () => state.refused > 0, 60_000);
      } finally {
        first.child.kill("SIGKILL");
        await first.child.status;
      }
      assert.equal(state.keys.length, 0, "nothing delivered while down");

      state.down = false;
      const second = startApp(dir, kvPath);
      try {
        await until("the raise delivered", () => state.keys.includes(raise), 60_000);
      } finally {
        second.child.kill("SIGTERM");
        await second.child.status;
      }
      assert.ok(state.keys.every((k) => k.endsWith(":raise")), state.keys.join());
    } finally {
      await server.shutdown();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
