/**
 * The live dashboard's HTTP side: the page and its assets (plain files from
 * `dashboard/`, no build step) and `GET /dashboard/events`, a Server-Sent
 * Events stream that pushes at most one event per `pushEveryMs`: the first
 * carries a whole snapshot, later ones only the sections that changed. The
 * page sends its commands through the ordinary sensor API, with its auth.
 * `GET /dashboard/world.json` serves the map's background: land and country
 * borders from the bundled `world-atlas` package (Natural Earth 1:50m), decoded
 * from TopoJSON with `topojson-client` once, on first request. Nothing is
 * fetched from the network at run time.
 *
 * @module
 */
import { setTimeout as delay } from "node:timers/promises";
import { Hono } from "@hono/hono";
import { streamSSE } from "@hono/hono/streaming";
// @ts-types="npm:@types/topojson-client@3.1.5"
import { merge, mesh } from "topojson-client";
import { ApiError } from "./http_errors.ts";
import {
  type DashboardQuery,
  type DashboardSnapshot,
  parseDashboardQuery,
} from "../schemas/dashboard.ts";

/** Where snapshots come from: the live view, or a partial view where there is none. */
export interface DashboardSource {
  snapshot(query: DashboardQuery): DashboardSnapshot | Promise<DashboardSnapshot>;
}

export interface DashboardOptions {
  readonly source: DashboardSource;
  /** The directory holding `index.html` and the assets it loads. */
  readonly assets: URL;
  /** Least time between two events on one stream (default 1000). */
  readonly pushEveryMs?: number;
  /** Ends every stream when aborted, so a shutdown does not wait for the browsers. */
  readonly signal?: AbortSignal;
}

/**
 * The only files served, with their types: nothing else under `assets` is reachable. A Map, not
 * an object literal, so a name like `constructor` or `__proto__` finds nothing.
 */
const ASSETS: ReadonlyMap<string, string> = new Map([
  ["index.html", "text/html; charset=utf-8"],
  ["app.js", "text/javascript; charset=utf-8"],
  ["style.css", "text/css; charset=utf-8"],
  ["map.js", "text/javascript; charset=utf-8"],
]);

/** The map's background, built from the atlas rather than read from `assets`. */
const WORLD = "world.json";

/** Every name `GET /dashboard/:file` answers (the OpenAPI document lists these). */
export const DASHBOARD_FILES: readonly [string, ...string[]] = [WORLD, ...ASSETS.keys()];

/** Digits kept in the outlines' degrees: 3 is about 100 m, finer than the 1:50m data. */
const OUTLINE_DIGITS = 3;

/**
 * The map's background as `{ land, borders }`: the land as MultiPolygon and the borders
 * between countries as MultiLineString coordinates, `[lon, lat]` in degrees (GeoJSON order).
 */
export async function worldOutlines(): Promise<string> {
  const { default: world } = await import("world-atlas/countries-50m.json", {
    with: { type: "json" },
  });
  // deno-lint-ignore no-explicit-any -- the package ships JSON, not types
  const topology = world as any;
  const countries = topology.objects.countries;
  const land = merge(topology, countries.geometries);
  const borders = mesh(topology, countries, (a, b) => a !== b);
  const unit = 10 ** OUTLINE_DIGITS;
  const round = (value: unknown): unknown =>
    Array.isArray(value)
      ? value.map(round)
      : typeof value === "number"
      ? Math.round(value * unit) / unit
      : value;
  return JSON.stringify({
    source: "Natural Earth 1:50m via world-atlas 2.0.2 (public domain data, ISC package)",
    land: round(land.coordinates),
    borders: round(borders.coordinates),
  });
}

/** Sections compared between two events; `at`, `live` and `note` always go out. */
const SECTIONS = ["counters", "map", "table", "alerts"] as const;
type Section = (typeof SECTIONS)[number];

/** What one event sends: the always-present fields and the changed sections. */
export type SnapshotDiff =
  & Pick<DashboardSnapshot, "at" | "live" | "note">
  & Partial<
    Pick<DashboardSnapshot, Section>
  >;

/**
 * The part of `next` that differs from the sections last sent (`sent`, JSON
 * per section, updated in place). The first call sends everything.
 */
export function diffSnapshot(sent: Map<Section, string>, next: DashboardSnapshot): SnapshotDiff {
  const diff: Record<string, unknown> = {
    at: next.at,
    live: next.live,
    ...(next.note === undefined ? {} : { note: next.note }),
  };
  for (const section of SECTIONS) {
    const json = JSON.stringify(next[section]);
    if (sent.get(section) === json) continue;
    sent.set(section, json);
    diff[section] = next[section];
  }
  return diff as SnapshotDiff;
}

export function dashboardRoutes(options: DashboardOptions): Hono {
  const { source, assets, pushEveryMs = 1000, signal } = options;
  const cache = new Map<string, Uint8Array<ArrayBuffer>>();
  const asset = async (name: string): Promise<Uint8Array<ArrayBuffer>> => {
    let bytes = cache.get(name);
    if (!bytes) {
      // Read on first request (nothing is read at import), then kept: the files are small.
      bytes = await Deno.readFile(new URL(name, assets));
      cache.set(name, bytes);
    }
    return bytes;
  };
  const serve = async (name: string) => {
    const type = ASSETS.get(name);
    if (type === undefined) throw new ApiError(404, "not_found", `No dashboard file: "${name}"`);
    return new Response(await asset(name), {
      headers: { "Content-Type": type, "Cache-Control": "no-cache" },
    });
  };

  let outlines: Promise<Uint8Array<ArrayBuffer>> | undefined;
  const world = () => {
    // A failure is not kept: the next request tries again.
    outlines ??= worldOutlines().then(
      (json) => new TextEncoder().encode(json),
      (error) => {
        outlines = undefined;
        throw error;
      },
    );
    return outlines;
  };

  return new Hono()
    .get("/", () => serve("index.html"))
    .get("/dashboard/events", (c) => {
      const parsed = parseDashboardQuery(c.req.query());
      if (!parsed.ok) throw new ApiError(400, "bad_request", parsed.message);
      const { query } = parsed;
      return streamSSE(c, async (stream) => {
        const sent = new Map<Section, string>();
        const wake = new AbortController();
        const stop = () => wake.abort();
        stream.onAbort(stop);
        signal?.addEventListener("abort", stop, { once: true });
        try {
          let id = 0;
          while (!wake.signal.aborted && !signal?.aborted) {
            const diff = diffSnapshot(sent, await source.snapshot(query));
            await stream.writeSSE({
              event: "snapshot",
              id: String(++id),
              data: JSON.stringify(diff),
            });
            await sleep(pushEveryMs, wake.signal);
          }
        } finally {
          signal?.removeEventListener("abort", stop);
        }
      });
    })
    .get("/dashboard/:file", async (c) => {
      const file = c.req.param("file");
      if (file !== WORLD) return serve(file);
      return new Response(await world(), {
        // The same bytes for the life of the process: let the browser keep them a day.
        headers: { "Content-Type": "application/json", "Cache-Control": "max-age=86400" },
      });
    });
}

/** Resolves after `ms`, or at once when `signal` aborts (never rejects). */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return delay(ms, undefined, { signal }).catch(() => {});
}
