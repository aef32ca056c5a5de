/**
 * The control API's load in the `api` scenario: open-loop clients at fixed rates, on a worker
 * thread of their own (`startApiLoad`). Before they ran on the event loop of the process they
 * measured, beside its sensors, processors and HTTP server, so their own work counted as the API's
 * cost; an operator's tools never run inside the app.
 *
 * @module
 */
import { Histogram, type LatencySummary } from "./stats.ts";

export interface RouteLoad {
  readonly perSec: number;
  readonly latencyMs: LatencySummary;
  /** Answered with an error (not 2xx, nor a 404 of a device not stored yet), or no answer. */
  readonly errors: number;
  /**
   * Not sent: `API_LOAD.maxOutstanding` requests were waiting for their answers already (the
   * server answers slower than the offered rate). Absent in results before 2026-12-01 21:20, which
   * counted these as errors.
   */
  readonly notSent?: number;
}

export interface ApiLoadResult {
  /** Every GET, whatever the route. */
  readonly get: RouteLoad;
  readonly post: RouteLoad;
  /** Each GET route of the mix (`API_LOAD.gets`), by its name there. */
  readonly routes?: Readonly<Record<string, RouteLoad>>;
}

/**
 * Offered API load: fixed rates, so it measures the API and not the load generator. The GETs
 * are what an operator's tools ask: a sensor's status (`GET /sensors/:id`), a device's stored
 * state (`GET /devices/:id`, round-robin over the fleet) and the active episodes the dashboard
 * polls (`GET /alerts?status=active`); `weight` is each route's share of `getPerSec`.
 */
export const API_LOAD = {
  getPerSec: 200,
  postPerSec: 20,
  maxOutstanding: 256,
  gets: [
    { name: "GET /sensors/:id", weight: 0.5 },
    { name: "GET /devices/:id", weight: 0.3 },
    { name: "GET /alerts?status=active", weight: 0.2 },
  ],
} as const;

type GetRoute = typeof API_LOAD.gets[number]["name"];

/**
 * Open-loop clients at fixed rates (`API_LOAD`), round-robin over the fleet's ids (`hot-0001`…,
 * `e2e-0091`…), and `POST /sensors` adding a scripted sensor that emits one reading and
 * completes (so the adds barely change the offered load). Requests are issued on schedule
 * whether or not earlier ones were answered. Runs on the calling thread: `startApiLoad` runs it
 * on a worker of its own.
 */
export function runApiLoad(url: string, fleet: readonly string[]) {
  let running = true;
  const t0 = performance.now();
  const stats = () => ({ latency: new Histogram(), count: 0, errors: 0, notSent: 0 });
  type Stats = ReturnType<typeof stats>;
  const get = stats();
  const post = stats();
  const routes = new Map<GetRoute, Stats>(API_LOAD.gets.map((g) => [g.name, stats()]));
  let outstanding = 0;
  let added = 0;
  let nth = 0;
  const deviceId = () => fleet[nth++ % fleet.length]!;
  const path = (route: GetRoute): string => {
    switch (route) {
      case "GET /sensors/:id":
        return `/sensors/${deviceId()}`;
      case "GET /devices/:id":
        return `/devices/${deviceId()}`;
      case "GET /alerts?status=active":
        return "/alerts?status=active&limit=100";
      default:
        return route satisfies never;
    }
  };
  const issue = async (all: readonly Stats[], request: () => Promise<Response>) => {
    if (outstanding >= API_LOAD.maxOutstanding) {
      for (const x of all) x.notSent++;
      return;
    }
    outstanding++;
    const started = performance.now();
    let failed = false;
    try {
      const res = await request();
      await res.body?.cancel();
      // A device whose first state is not stored yet is a 404, which is an answer.
      failed = !res.ok && res.status !== 404;
    } catch {
      failed = true;
    } finally {
      outstanding--;
    }
    const ms = performance.now() - started;
    for (const x of all) {
      if (failed) x.errors++;
      x.latency.add(ms);
      x.count++;
    }
  };
  const inFlight = new Set<Promise<void>>();
  const track = (p: Promise<void>) => {
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p));
  };
  const pacer = (async () => {
    const gets = new Map<GetRoute, number>(API_LOAD.gets.map((g) => [g.name, 0]));
    let posts = 0;
    while (running) {
      const elapsed = (performance.now() - t0) / 1000;
      for (const { name, weight } of API_LOAD.gets) {
        let n = gets.get(name)!;
        for (; n < elapsed * API_LOAD.getPerSec * weight; n++) {
          const target = `${url}${path(name)}`;
          track(issue([get, routes.get(name)!], () => fetch(target)));
        }
        gets.set(name, n);
      }
      for (; posts < elapsed * API_LOAD.postPerSec; posts++) {
        track(issue([post], () =>
          fetch(`${url}/sensors`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({
              id: `api-${++added}`,
              profile: "scripted",
              temperatures: [21],
              intervalMs: 1000,
            }),
          })));
      }
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  })();
  return {
    async stop(): Promise<ApiLoadResult> {
      running = false;
      await pacer;
      await Promise.all(inFlight);
      const s = (performance.now() - t0) / 1000;
      const result = (x: Stats): RouteLoad => ({
        perSec: Math.round(x.count / s),
        latencyMs: x.latency.summary(),
        errors: x.errors,
        notSent: x.notSent,
      });
      return {
        get: result(get),
        post: result(post),
        routes: Object.fromEntries([...routes].map(([name, x]) => [name, result(x)])),
      };
    },
  };
}

/** Messages to the load's worker (`api_load_worker.ts`). */
export type ToApiLoadWorker =
  | { readonly type: "start"; readonly url: string; readonly fleet: readonly string[] }
  | { readonly type: "stop" };

/** The load's result, or why it failed. */
export type FromApiLoadWorker =
  | { readonly type: "result"; readonly result: ApiLoadResult }
  | { readonly type: "failed"; readonly message: string };

/** `runApiLoad` on a worker thread of its own; `stop()` ends it and answers what it measured. */
export function startApiLoad(url: string, fleet: readonly string[]) {
  const worker = new Worker(new URL("./api_load_worker.ts", import.meta.url), {
    type: "module",
    name: "api-load",
  });
  const done = Promise.withResolvers<ApiLoadResult>();
  worker.onmessage = (e: MessageEvent<FromApiLoadWorker>) => {
    if (e.data.type === "result") done.resolve(e.data.result);
    else done.reject(new Error(`API load failed: ${e.data.message}`));
  };
  worker.onerror = (e: ErrorEvent) => {
    e.preventDefault();
    done.reject(new Error(`API load worker failed: ${e.message}`));
  };
  const post = (msg: ToApiLoadWorker) => worker.postMessage(msg);
  post({ type: "start", url, fleet });
  return {
    async stop(): Promise<ApiLoadResult> {
      post({ type: "stop" });
      try {
        return await done.promise;
      } finally {
        worker.terminate();
      }
    },
  };
}
