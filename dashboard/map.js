// The map's geometry, pure and without the DOM so tests can import it: a local
// equirectangular projection fitted to the fleet, clipping of the outlines to
// the view, a distance scale bar, and which colour a device gets.

/**
 * @typedef {readonly [number, number]} Point `[lon, lat]` in degrees, or `[x, y]` in the view
 * @typedef {readonly number[]} Box `[x0, y0, x1, y1]`, or `[west, south, east, north]`
 * @typedef {{ land: Point[][][], borders: Point[][] }} World as /dashboard/world.json serves it
 * @typedef {{
 *   width: number,
 *   height: number,
 *   pxPerKm: number,
 *   center: Point,
 *   project: (p: Point) => [number, number],
 *   bounds: (padPx?: number) => [number, number, number, number],
 * }} View
 */

/** Mean Earth radius (km): one degree of latitude is about 111.2 km. */
const EARTH_RADIUS_KM = 6371.0088;
const KM_PER_DEGREE = (Math.PI * EARTH_RADIUS_KM) / 180;

/**
 * A projection that fits `points` (`[lon, lat]` pairs) in a `width` × `height` view: centred
 * on their bounds, widened by `margin` (a fraction of the span, each side) and never smaller
 * than `minSpanKm` across, so one device or a tight cluster still shows its surroundings.
 * Distances are true along the centre's parallel and every meridian (fine at a fleet's scale;
 * the antimeridian is not handled).
 *
 * @param {readonly Point[]} points
 * @param {{ width: number, height: number, margin?: number, minSpanKm?: number }} options
 * @returns {View}
 */
export function fitView(points, { width, height, margin = 0.15, minSpanKm = 2 }) {
  let [west, south, east, north] = [Infinity, Infinity, -Infinity, -Infinity];
  for (const [lon, lat] of points) {
    west = Math.min(west, lon);
    east = Math.max(east, lon);
    south = Math.min(south, lat);
    north = Math.max(north, lat);
  }
  if (points.length === 0) [west, south, east, north] = [-10, 35, 30, 60];
  const lon0 = (west + east) / 2;
  const lat0 = (south + north) / 2;
  const cos0 = Math.max(Math.cos((lat0 * Math.PI) / 180), 0.01);
  const spanXKm = Math.max((east - west) * cos0 * KM_PER_DEGREE * (1 + 2 * margin), minSpanKm);
  const spanYKm = Math.max((north - south) * KM_PER_DEGREE * (1 + 2 * margin), minSpanKm);
  const pxPerKm = Math.min(width / spanXKm, height / spanYKm);
  const kx = cos0 * KM_PER_DEGREE * pxPerKm;
  const ky = KM_PER_DEGREE * pxPerKm;
  return {
    width,
    height,
    pxPerKm,
    center: [lon0, lat0],
    project: ([lon, lat]) => [width / 2 + (lon - lon0) * kx, height / 2 - (lat - lat0) * ky],
    /** The view's bounds in degrees, `[west, south, east, north]`, widened by `padPx`. */
    bounds(padPx = 0) {
      const dLon = (width / 2 + padPx) / kx;
      const dLat = (height / 2 + padPx) / ky;
      return [lon0 - dLon, lat0 - dLat, lon0 + dLon, lat0 + dLat];
    },
  };
}

/**
 * True when two views differ by less than `tolerance` of the view in scale and in centre.
 *
 * @param {View | null} a
 * @param {View | null} b
 */
export function sameView(a, b, tolerance = 0.05) {
  if (!a || !b || a.width !== b.width || a.height !== b.height) return false;
  const [x, y] = a.project(b.center);
  return Math.abs(a.pxPerKm / b.pxPerKm - 1) < tolerance &&
    Math.abs(x - a.width / 2) < tolerance * a.width &&
    Math.abs(y - a.height / 2) < tolerance * a.height;
}

/**
 * True when the ring or line (`[lon, lat]` pairs) may cross `[west, south, east, north]`.
 *
 * @param {readonly Point[]} coords
 * @param {Box} bounds
 */
function touches(coords, [west, south, east, north]) {
  let [w, s, e, n] = [Infinity, Infinity, -Infinity, -Infinity];
  for (const [lon, lat] of coords) {
    if (lon < w) w = lon;
    if (lon > e) e = lon;
    if (lat < s) s = lat;
    if (lat > n) n = lat;
  }
  return w <= east && e >= west && s <= north && n >= south;
}

/**
 * Clips a closed polygon (view coordinates) to the box `[x0, y0, x1, y1]` (Sutherland–Hodgman).
 *
 * @param {readonly Point[]} ring
 * @param {Box} box
 * @returns {Point[]}
 */
export function clipPolygon(ring, [x0, y0, x1, y1]) {
  const edges = [
    [(p) => p[0] >= x0, (a, b) => at(a, b, (x0 - a[0]) / (b[0] - a[0]))],
    [(p) => p[0] <= x1, (a, b) => at(a, b, (x1 - a[0]) / (b[0] - a[0]))],
    [(p) => p[1] >= y0, (a, b) => at(a, b, (y0 - a[1]) / (b[1] - a[1]))],
    [(p) => p[1] <= y1, (a, b) => at(a, b, (y1 - a[1]) / (b[1] - a[1]))],
  ];
  let out = ring;
  for (const [inside, cross] of edges) {
    const input = out;
    out = [];
    for (let i = 0; i < input.length; i++) {
      const current = input[i];
      const previous = input[(i + input.length - 1) % input.length];
      if (inside(current)) {
        if (!inside(previous)) out.push(cross(previous, current));
        out.push(current);
      } else if (inside(previous)) out.push(cross(previous, current));
    }
    if (out.length === 0) break;
  }
  return out;
}

/**
 * Clips a polyline (view coordinates) to the box: the runs inside it (Liang–Barsky per segment).
 *
 * @param {readonly Point[]} line
 * @param {Box} box
 * @returns {Point[][]}
 */
export function clipLine(line, [x0, y0, x1, y1]) {
  const runs = [];
  let run = [];
  for (let i = 1; i < line.length; i++) {
    const a = line[i - 1];
    const b = line[i];
    const dx = b[0] - a[0];
    const dy = b[1] - a[1];
    let t0 = 0;
    let t1 = 1;
    const bounds = [[-dx, a[0] - x0], [dx, x1 - a[0]], [-dy, a[1] - y0], [dy, y1 - a[1]]];
    let visible = true;
    for (const [p, q] of bounds) {
      if (p === 0) {
        if (q < 0) visible = false;
      } else if (p < 0) t0 = Math.max(t0, q / p);
      else t1 = Math.min(t1, q / p);
    }
    if (!visible || t0 > t1) {
      if (run.length > 1) runs.push(run);
      run = [];
      continue;
    }
    if (run.length === 0 || t0 > 0) {
      if (run.length > 1) runs.push(run);
      run = [at(a, b, t0)];
    }
    run.push(at(a, b, t1));
    if (t1 < 1) {
      runs.push(run);
      run = [];
    }
  }
  if (run.length > 1) runs.push(run);
  return runs;
}

/**
 * @param {Point} a
 * @param {Point} b
 * @param {number} t
 * @returns {Point}
 */
function at(a, b, t) {
  return [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t];
}

/**
 * SVG path data for the outlines (`{ land, borders }` as served by /dashboard/world.json)
 * inside the view, clipped to it widened by `padPx`: `{ land, borders }`, each "" when none.
 *
 * @param {World} world
 * @param {View} view
 * @returns {{ land: string, borders: string }}
 */
export function outlinePaths(world, view, padPx = 10) {
  const bounds = view.bounds(padPx);
  const box = [-padPx, -padPx, view.width + padPx, view.height + padPx];
  const land = [];
  for (const polygon of world.land) {
    for (const ring of polygon) {
      if (!touches(ring, bounds)) continue;
      const clipped = clipPolygon(ring.map(view.project), box);
      if (clipped.length > 2) land.push(`M${clipped.map(xy).join("L")}Z`);
    }
  }
  const borders = [];
  for (const line of world.borders) {
    if (!touches(line, bounds)) continue;
    for (const run of clipLine(line.map(view.project), box)) {
      borders.push(`M${run.map(xy).join("L")}`);
    }
  }
  return { land: land.join(""), borders: borders.join("") };
}

/** @param {Point} point */
function xy([x, y]) {
  return `${x.toFixed(1)},${y.toFixed(1)}`;
}

/**
 * The longest round distance (1, 2 or 5 × 10ⁿ km) drawn within `maxPx` at `pxPerKm`:
 * `{ km, px, label }`, labelled in m below 1 km.
 *
 * @param {number} pxPerKm
 * @param {number} maxPx
 */
export function scaleBar(pxPerKm, maxPx) {
  const maxKm = maxPx / pxPerKm;
  const magnitude = 10 ** Math.floor(Math.log10(maxKm));
  const km = [5, 2, 1].map((n) => n * magnitude).find((d) => d <= maxKm) ?? magnitude;
  const label = km >= 1 ? `${+km.toPrecision(3)} km` : `${+(km * 1000).toPrecision(3)} m`;
  return { km, px: km * pxPerKm, label };
}

/** What a device shows: offline wins (its last values are stale), then the overheat alarm. */
export const STATES = ["normal", "critical", "acknowledged", "offline"];

/**
 * A device's state from its live alarm level and its active stored episodes
 * (`{ type, ackedAt? }`, any number, any type): `offline` with an active offline episode;
 * `critical` while raised, unless every active overheat episode was acknowledged.
 *
 * @param {boolean} critical
 * @param {ReadonlyArray<{ type: string, ackedAt?: unknown }>} [episodes]
 * @returns {"normal" | "critical" | "acknowledged" | "offline"}
 */
export function deviceState(critical, episodes = []) {
  if (episodes.some((e) => e.type === "offline")) return "offline";
  const overheat = episodes.filter((e) => e.type === "overheat");
  const raised = critical || overheat.length > 0;
  if (!raised) return "normal";
  return overheat.length > 0 && overheat.every((e) => e.ackedAt !== undefined)
    ? "acknowledged"
    : "critical";
}

/**
 * The y of each of a rule's thresholds on a sparkline whose values span `[min, max]`
 * drawn from y = `bottom` (min) to y = `top` (max), or null for a threshold off that range.
 *
 * @param {{ high: number, low: number }} rule
 * @param {{ min: number, max: number, top: number, bottom: number }} range
 */
export function thresholdLines(rule, { min, max, top, bottom }) {
  const y = (v) => bottom - ((v - min) / (max - min)) * (bottom - top);
  return {
    high: rule.high >= min && rule.high <= max ? y(rule.high) : null,
    low: rule.low >= min && rule.low <= max ? y(rule.low) : null,
  };
}
