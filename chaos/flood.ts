/**
 * Scenario 8, the API flood: thousands of concurrent add-sensor calls against
 * a real app process in embedded mode (the API is what is under test).
 *
 * @module
 */
import { embeddedEnv, freePort, sleep, spawnApp } from "./processes.ts";

export interface FloodResult {
  readonly requests: number;
  readonly statuses: Record<string, number>;
  readonly serverErrors: number;
  readonly sensorsRunning: number;
  readonly cap: number;
  readonly healthyAfter: boolean;
  readonly durationMs: number;
}

/**
 * 8. Thousands of concurrent add-sensor calls, a quarter with a wrong token,
 * against a real app process (embedded mode: the API is what is under test).
 */
export async function apiFlood(
  requests: number,
  { rateLimitPerMinute, wrongTokens }: {
    readonly rateLimitPerMinute: number;
    readonly wrongTokens: boolean;
  },
): Promise<FloodResult> {
  const token = crypto.randomUUID();
  const cap = 500;
  const dir = await Deno.makeTempDir({ prefix: "chaos-flood-" });
  const port = freePort();
  const child = spawnApp({
    flags: ["--sensors", "0"],
    env: {
      ...embeddedEnv(Deno.env.toObject()),
      API_TOKEN: token,
      MAX_SENSORS: String(cap),
      RATE_LIMIT_PER_MINUTE: String(rateLimitPerMinute),
      KV_PATH: `${dir}/iot.kv`,
    },
    log: `${dir}/app.log`,
    port,
    writable: dir,
    logLevel: "error",
  });
  const base = `http://127.0.0.1:${port}`;
  const started = Date.now();
  try {
    for (let i = 0; i < 100; i++) {
      if (await fetch(`${base}/health`).then((r) => r.ok, () => false)) break;
      await sleep(100);
    }
    const statuses: Record<string, number> = {};
    let next = 0;
    const worker = async () => {
      while (next < requests) {
        const i = next++;
        const valid = !wrongTokens || i % 4 !== 0;
        const res = await fetch(`${base}/sensors`, {
          method: "POST",
          headers: {
            "content-type": "application/json",
            authorization: `Bearer ${valid ? token : "wrong-token"}`,
          },
          body: JSON.stringify({ count: 1 + (i % 5), intervalMs: 3_600_000 }),
        }).catch(() => undefined);
        const key = res ? String(res.status) : "network error";
        await res?.body?.cancel();
        statuses[key] = (statuses[key] ?? 0) + 1;
      }
    };
    await Promise.all(Array.from({ length: 200 }, worker));
    const list = await (await fetch(`${base}/sensors?limit=1`)).json();
    const healthyAfter = (await fetch(`${base}/health`).then((r) => r.status, () => 0)) === 200;
    const serverErrors = Object.entries(statuses)
      .filter(([status]) => !/^[234]/.test(status))
      .reduce((n, [, c]) => n + c, 0);
    return {
      requests,
      statuses,
      serverErrors,
      sensorsRunning: list.total,
      cap,
      healthyAfter,
      durationMs: Date.now() - started,
    };
  } finally {
    child.kill("SIGTERM");
    await child.status;
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

export const FLOODS = [
  {
    title: "8. API flood: concurrent add-sensor calls, a quarter with a wrong token, " +
      "rate limit raised so the cap is what stops them",
    options: { rateLimitPerMinute: 100_000, wrongTokens: true },
  },
  {
    title: "8b. API flood: the same calls, all with the valid token, at the default rate " +
      "limit (600 per minute)",
    options: { rateLimitPerMinute: 600, wrongTokens: false },
  },
] as const;

/** A flood fails on any 5xx or network error, a fleet above its cap, or an unhealthy app after. */
export function floodFailed(f: FloodResult): boolean {
  return f.serverErrors > 0 || f.sensorsRunning > f.cap || !f.healthyAfter;
}

export function describeFlood(title: string, f: FloodResult): string {
  return `${title}: ${f.requests} requests in ${(f.durationMs / 1000).toFixed(1)} s, statuses ${
    JSON.stringify(f.statuses)
  }, 5xx or errors ${f.serverErrors}, sensors running ${f.sensorsRunning} (cap ${f.cap}), ` +
    `healthy after: ${f.healthyAfter}`;
}
