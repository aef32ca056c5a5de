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
import {
  clipLine,
  clipPolygon,
  deviceState,
  fitView,
  outlinePaths,
  sameView,
  scaleBar,
  thresholdLines,
} from "../dashboard/map.js";
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
  for (
    const [path, type] of [
      ["app.js", "text/javascript"],
      ["map.js", "text/javascript"],
      ["style.css", "text/css"],
    ] as const
  ) {
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

Deno.test("GET /dashboard/world.json serves land and borders from the bundled atlas, the same each time", async () => {
  const app = api(new QueuedSource([snapshot()]));
  const res = await app.request("/dashboard/world.json");
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("Content-Type"), "application/json");
  const bytes = await res.arrayBuffer();
  const world = JSON.parse(new TextDecoder().decode(bytes));
  assert.ok(world.land.length > 100, "land polygons");
  assert.ok(world.borders.length > 100, "border lines");
  for (const [lon, lat] of [...world.land.flat(2), ...world.borders.flat()]) {
    assert.ok(Math.abs(lon) <= 180 && Math.abs(lat) <= 90, `${lon}, ${lat}`);
  }
  // The French-Italian border reaches the sea at Menton.
  const near = world.borders.flat().some(([lon, lat]: [number, number]) =>
    Math.hypot(lon - 7.53, lat - 43.78) < 0.1
  );
  assert.ok(near, "a border vertex at Menton");
  const again = await app.request("/dashboard/world.json");
  assert.deepEqual(new Uint8Array(await again.arrayBuffer()), new Uint8Array(bytes));
});

Deno.test("fitView() centres the fleet with a margin, and never shows less than minSpanKm", () => {
  const one = fitView([[2.35, 48.85]], { width: 600, height: 400, minSpanKm: 2 });
  assert.deepEqual(one.project([2.35, 48.85]), [300, 200]);
  assert.equal(one.pxPerKm, 200, "2 km across the shorter side");
  const points: [number, number][] = [[4.8, 43.9], [7.5, 43.8], [5.9, 43.1]];
  const view = fitView(points, { width: 600, height: 400, margin: 0.15 });
  const xs = points.map((p) => view.project(p)[0]);
  const ys = points.map((p) => view.project(p)[1]);
  assert.ok(Math.min(...xs) > 0 && Math.max(...xs) < 600, "inside");
  assert.ok(Math.min(...ys) > 0 && Math.max(...ys) < 400, "inside");
  assert.ok(Math.abs((Math.max(...xs) - Math.min(...xs)) - 600 / 1.3) < 1, "the margin each side");
  assert.ok(view.project([5, 44])[1] < view.project([5, 43])[1], "north is up");
  const [west, south, east, north] = view.bounds();
  assert.ok(west < 4.8 && east > 7.5 && south < 43.1 && north > 43.9);
});

Deno.test("sameView() holds a view through small moves and lets a real change through", () => {
  const a = fitView([[2.3, 48.8], [2.4, 48.9]], { width: 600, height: 400 });
  const jitter = fitView([[2.3, 48.8], [2.4001, 48.9]], { width: 600, height: 400 });
  const wider = fitView([[2.3, 48.8], [2.6, 48.9]], { width: 600, height: 400 });
  assert.equal(sameView(a, jitter), true);
  assert.equal(sameView(a, wider), false);
  assert.equal(sameView(null, a), false);
});

Deno.test("clipPolygon() cuts a polygon to the box and drops one outside it", () => {
  const box = [0, 0, 10, 10];
  assert.deepEqual(clipPolygon([[-5, -5], [15, -5], [15, 15], [-5, 15]], box), [
    [0, 10],
    [0, 0],
    [10, 0],
    [10, 10],
  ]);
  assert.deepEqual(clipPolygon([[20, 20], [30, 20], [30, 30]], box), []);
  const inside: [number, number][] = [[1, 1], [2, 1], [2, 2]];
  assert.deepEqual(clipPolygon(inside, box), inside);
});

Deno.test("clipLine() keeps the runs inside the box, including a segment crossing it", () => {
  const box = [0, 0, 10, 10];
  assert.deepEqual(clipLine([[-5, 5], [15, 5]], box), [[[0, 5], [10, 5]]]);
  assert.deepEqual(clipLine([[-5, -5], [-1, -1]], box), []);
  assert.deepEqual(clipLine([[5, 5], [15, 5], [15, 8], [5, 8]], box), [
    [[5, 5], [10, 5]],
    [[10, 8], [5, 8]],
  ]);
});

Deno.test("outlinePaths() draws only what reaches the view, clipped to it", () => {
  const view = fitView([[2.35, 48.85]], { width: 600, height: 400, minSpanKm: 2 });
  type Ring = [number, number][];
  const world: { land: Ring[][]; borders: Ring[] } = {
    land: [[[[2, 48], [3, 48], [3, 49], [2, 49], [2, 48]]], [[[100, 0], [101, 0], [101, 1]]]],
    borders: [[[2.35, 48], [2.35, 49]], [[100, 0], [101, 1]]],
  };
  const paths = outlinePaths(world, view, 10);
  assert.equal(paths.land, "M-10.0,-10.0L-10.0,410.0L610.0,410.0L610.0,-10.0Z", "the whole view");
  assert.equal(paths.borders, "M300.0,410.0L300.0,-10.0", "one line through the middle");
});

Deno.test("scaleBar() picks the longest round distance that fits, in m below 1 km", () => {
  assert.deepEqual(scaleBar(2, 150), { km: 50, px: 100, label: "50 km" });
  assert.deepEqual(scaleBar(1000, 150), { km: 0.1, px: 100, label: "100 m" });
  assert.equal(scaleBar(0.1, 150).label, "1000 km");
  assert.equal(scaleBar(0.4, 150).label, "200 km");
});

Deno.test("deviceState(): offline first, then raised (acknowledged when every overheat is)", () => {
  const overheat = { type: "overheat" };
  const acked = { type: "overheat", ackedAt: "2026-11-30T12:00:00Z" };
  const offline = { type: "offline" };
  const table: [boolean, { type: string; ackedAt?: string }[], string][] = [
    [false, [], "normal"],
    [true, [], "critical"],
    [true, [overheat], "critical"],
    [true, [acked], "acknowledged"],
    [false, [acked], "acknowledged"],
    [true, [acked, overheat], "critical"],
    [true, [offline], "offline"],
    [false, [{ ...offline, ackedAt: "2026-11-30T12:00:00Z" }], "offline"],
  ];
  for (const [critical, episodes, want] of table) {
    assert.equal(deviceState(critical, episodes), want, JSON.stringify([critical, episodes]));
  }
  assert.equal(deviceState(false), "normal");
});

Deno.test("thresholdLines() places raise above clear, and none off the range", () => {
  const at = thresholdLines({ high: 80, low: 70 }, { min: 20, max: 80, top: 2, bottom: 22 });
  assert.deepEqual(at, { high: 2, low: 22 - (50 / 60) * 20 });
  assert.deepEqual(
    thresholdLines({ high: 80, low: 70 }, { min: 0, max: 75, top: 2, bottom: 22 }).high,
    null,
  );
});
