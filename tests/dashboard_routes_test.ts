import assert from "node:assert/strict";
import {
  dashboardRoutes,
  type DashboardSource,
  diffSnapshot,
  type SnapshotDiff,
} from "../adapters/dashboard_routes.ts";
import { createApi } from "../adapters/http_api.ts";
import { createLogger, silentLogger } from "../adapters/log.ts";
import type { DashboardQuery, DashboardSnapshot } from "../schemas/dashboard.ts";
import { firstEvents } from "./sse.ts";
import { testWith } from "./needs.ts";

/** Registrar for tests that need only the suite's permissions (reading the page's files). */
const permitted = await testWith();

const ASSETS = new URL("../dashboard/", import.meta.url);

function snapshot(overrides: Partial<DashboardSnapshot> = {}): DashboardSnapshot {
  return {
    at: 1_000,
    live: true,
    counters: { sensors: 2, readingsPerSecond: 4, criticalDevices: 0, lagMs: 12 },
    map: { total: 1, points: [["a", 1, 2, 0]] },
    table: { total: 0, offset: 0, limit: 50, rows: [] },
    alerts: [],
    ...overrides,
  };
}

/** A source that hands out the queued snapshots (the last one repeats) and records the queries. */
class QueuedSource implements DashboardSource {
  readonly queries: DashboardQuery[] = [];
  constructor(readonly queue: DashboardSnapshot[]) {}
  snapshot(query: DashboardQuery): DashboardSnapshot {
    this.queries.push(query);
    return this.queue.length > 1 ? this.queue.shift()! : this.queue[0]!;
  }
}

/** The API as main.ts builds it, with the dashboard mounted. */
function api(source: DashboardSource, signal?: AbortSignal, pushEveryMs = 5) {
  return createApi({
    health: () => Promise.resolve({ ok: true, checks: {} }),
    info: { role: "all", version: "test" },
    logger: silentLogger,
    dashboard: dashboardRoutes({
      source,
      assets: ASSETS,
      pushEveryMs,
      ...(signal ? { signal } : {}),
    }),
  });
}

permitted.test("GET / serves the dashboard page and /dashboard/ its script and styles", async () => {
  const app = api(new QueuedSource([snapshot()]));
  const page = await app.request("/");
  assert.equal(page.status, 200);
  assert.equal(page.headers.get("Content-Type"), "text/html; charset=utf-8");
  const html = await page.text();
  assert.match(html, /<script type="module" src="\/dashboard\/app.js">/);
  for (const [path, type] of [["app.js", "text/javascript"], ["style.css", "text/css"]] as const) {
    const res = await app.request(`/dashboard/${path}`);
    assert.equal(res.status, 200, path);
    assert.match(res.headers.get("Content-Type")!, new RegExp(`^${type};`));
    assert.deepEqual(
      new Uint8Array(await res.arrayBuffer()),
      await Deno.readFile(new URL(path, ASSETS)),
    );
  }
});

Deno.test("GET /dashboard/<other file> answers 404, whatever the path tries", async () => {
  const app = api(new QueuedSource([snapshot()]));
  for (const path of ["/dashboard/secret.txt", "/dashboard/..%2Fmain.ts", "/dashboard/index.htm"]) {
    const res = await app.request(path);
    assert.equal(res.status, 404, path);
    assert.equal((await res.json()).error.code, "not_found");
  }
});

Deno.test("GET /dashboard/<built-in object property> answers 404 and logs no error", async () => {
  const lines: string[] = [];
  const app = createApi({
    health: () => Promise.resolve({ ok: true, checks: {} }),
    info: { role: "all", version: "test" },
    logger: createLogger({ write: (line) => lines.push(line) }),
    dashboard: dashboardRoutes({ source: new QueuedSource([snapshot()]), assets: ASSETS }),
  });
  const names = [
    "constructor",
    "__proto__",
    "toString",
    "hasOwnProperty",
    "valueOf",
    "isPrototypeOf",
  ];
  for (const name of names) {
    const res = await app.request(`/dashboard/${name}`);
    assert.equal(res.status, 404, name);
    assert.deepEqual(await res.json(), {
      error: { code: "not_found", message: `No dashboard file: "${name}"` },
    });
  }
  assert.deepEqual(lines, [], "no log line at all");
});

Deno.test("GET /dashboard/events sends a whole snapshot, then only the sections that changed", async () => {
  const first = snapshot();
  const second = snapshot({ at: 2_000, counters: { ...first.counters, readingsPerSecond: 5 } });
  const third = snapshot({ at: 3_000, counters: second.counters, alerts: [] });
  const source = new QueuedSource([first, second, third]);
  const res = await api(source).request("/dashboard/events?limit=10&filter=critical&search=ab");
  assert.equal(res.status, 200);
  assert.match(res.headers.get("Content-Type")!, /^text\/event-stream/);
  const got = await firstEvents(res, 3);
  assert.deepEqual(got.map((e) => e.event), ["snapshot", "snapshot", "snapshot"]);
  assert.deepEqual(got[0]!.data, JSON.parse(JSON.stringify(first)));
  assert.deepEqual(got[1]!.data, { at: 2_000, live: true, counters: second.counters });
  assert.deepEqual(got[2]!.data, { at: 3_000, live: true });
  assert.deepEqual(source.queries[0], { offset: 0, limit: 10, filter: "critical", search: "ab" });
});

Deno.test("GET /dashboard/events answers 400 for a bad query", async () => {
  const app = api(new QueuedSource([snapshot()]));
  for (const query of ["limit=0", "limit=201", "offset=-1", "filter=hot", "page=2"]) {
    const res = await app.request(`/dashboard/events?${query}`);
    assert.equal(res.status, 400, query);
    assert.equal((await res.json()).error.code, "bad_request");
  }
});

Deno.test("GET /dashboard/events ends its stream when the shutdown signal fires", async () => {
  const shutdown = new AbortController();
  const source = new QueuedSource([snapshot()]);
  const res = await api(source, shutdown.signal, 60_000).request("/dashboard/events");
  const reader = res.body!.getReader();
  assert.equal((await reader.read()).done, false, "the first event");
  shutdown.abort();
  while (!(await reader.read()).done) { /* drain */ }
  // Waiting for the next push would have taken a second snapshot 60 s later (and the test
  // sanitizer fails a test that leaves its 60 s timer behind).
  assert.equal(source.queries.length, 1, "ended without waiting for the next push");
});

Deno.test("diffSnapshot() always carries at, live and note, and a section only when it changed", () => {
  const sent = new Map();
  const partial = snapshot({ live: false, note: "no processors here" });
  const first: SnapshotDiff = diffSnapshot(sent, partial);
  assert.deepEqual(Object.keys(first).sort(), [
    "alerts",
    "at",
    "counters",
    "live",
    "map",
    "note",
    "table",
  ]);
  const map = { total: 2, points: [["a", 1, 2, 0], ["b", 3, 4, 1]] as const };
  const second = diffSnapshot(sent, { ...partial, at: 5, map });
  assert.deepEqual(second, { at: 5, live: false, note: "no processors here", map });
});
