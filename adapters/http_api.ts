/**
 * The HTTP control API (Hono). Routes are grouped by resource; each handler
 * validates its input with the shared schemas and answers JSON. The API
 * declares the two ports it needs — sensor control and store queries — and
 * knows nothing of Kafka or MongoDB.
 *
 * @module
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { type Context, Hono, type MiddlewareHandler } from "@hono/hono";
import { bodyLimit } from "@hono/hono/body-limit";
import { ApiError, errorBody } from "./http_errors.ts";
import { type HealthReport, readiness } from "./health.ts";
import { DEVICE_ID_PATTERN } from "../schemas/reading.ts";
import { parseSensorRequest } from "../schemas/sensor_request.ts";
import { parseOverheatRequest } from "../schemas/overheat_request.ts";
import { ALERT_TYPES, type AlertStatus } from "../schemas/documents.ts";
import type { Logger } from "../actors/logger.ts";
import type { SensorControl } from "../actors/sensor_control.ts";
import type { StoreQueries } from "../actors/store_queries.ts";

export interface ApiDeps {
  readonly health: () => Promise<HealthReport>;
  readonly info: { readonly role: string; readonly version: string; readonly mode?: unknown };
  readonly logger: Logger;
  /** Absent when this process does not run the sensors role: sensor routes answer 503. */
  readonly sensors?: SensorControl;
  /** Absent when this process has no store: device and alert routes answer 503. */
  readonly queries?: StoreQueries;
  /**
   * Ports this process will serve once start-up has connected them: until then their routes
   * answer 503 "not connected yet" instead of "this process does not run it".
   */
  readonly connecting?: { readonly sensors: boolean; readonly store: boolean };
  /** When set, POST/DELETE/PATCH/PUT need `Authorization: Bearer <token>`. */
  readonly apiToken?: string;
  /** Prometheus exposition for `GET /metrics` (open like `/health`); absent: no route. */
  readonly metrics?: { readonly contentType: string; scrape(): Promise<string> };
  /** Live counters of the running roles, shown in `/health`. */
  readonly stats?: () => Record<string, unknown>;
  /**
   * Token bucket on POST/DELETE/PATCH/PUT, per token when `apiToken` is set,
   * else per client address. Absent or `perMinute: 0`: no limit.
   */
  readonly rateLimit?: { readonly perMinute: number; readonly now?: () => number };
  /** The live dashboard's routes (page, assets, event stream), mounted at `/`. */
  readonly dashboard?: Hono;
}

/** Probe answers describe this instant: caches and proxies must not keep them. */
const NO_STORE = { "Cache-Control": "no-store" };

/** Largest accepted request body. */
export const MAX_BODY_BYTES = 2 * 1024 * 1024;
/** Largest `limit` any list route accepts. */
export const MAX_PAGE = 1000;
const DEFAULT_PAGE = 100;

/**
 * The HTTP API. Sensor routes need `deps.sensors` and device/alert routes
 * `deps.queries`; without them those routes answer 503.
 */
export function createApi(deps: ApiDeps): Hono {
  const app = new Hono();

  // Auth first: a flood without the right token gets a cheap 401 and uses no bucket.
  if (deps.apiToken !== undefined) app.use(bearerToken({ token: deps.apiToken }));
  if (deps.rateLimit && deps.rateLimit.perMinute > 0) {
    app.use(rateLimit({ ...deps.rateLimit, byToken: deps.apiToken !== undefined }));
  }

  // Liveness answers from the handler alone: if it runs, the event loop turns. It never looks
  // at Kafka or the store, so a broker outage does not get the pod restarted.
  app.get("/livez", (c) => c.json({ status: "ok" }, 200, NO_STORE));
  // Readiness: the same checks as /health, without the stats, for load balancers and probes.
  app.get("/readyz", async (c) => {
    const report = await deps.health();
    return c.json(readiness(report), report.ok ? 200 : 503, NO_STORE);
  });
  app.get("/health", async (c) => {
    const report = await deps.health();
    return c.json(
      {
        status: report.ok ? "ok" : "degraded",
        ...deps.info,
        ...report,
        ...(deps.stats ? { stats: deps.stats() } : {}),
      },
      report.ok ? 200 : 503,
    );
  });
  const metrics = deps.metrics;
  if (metrics) {
    app.get(
      "/metrics",
      async (c) => c.body(await metrics.scrape(), 200, { "Content-Type": metrics.contentType }),
    );
  }
  const storeConnecting = deps.connecting?.store ?? false;
  app.route("/sensors", sensorRoutes(deps.sensors, deps.connecting?.sensors ?? false));
  app.route("/devices", deviceRoutes(deps.queries, storeConnecting));
  app.route("/alerts", alertRoutes(deps.queries, storeConnecting));
  if (deps.dashboard) app.route("/", deps.dashboard);

  app.notFound((c) =>
    c.json(errorBody("not_found", `No route for ${c.req.method} ${c.req.path}`), 404)
  );
  app.onError((err, c) => {
    if (err instanceof ApiError) return c.json(errorBody(err.code, err.message), err.status);
    deps.logger.error("request failed", { method: c.req.method, path: c.req.path, error: err });
    return c.json(errorBody("internal", "Internal error"), 500);
  });
  return app;
}

function sensorRoutes(port: SensorControl | undefined, connecting: boolean): Hono {
  const sensors = () => available(port, "sensors", connecting);
  return new Hono()
    .get("/", async (c) => {
      const fleet = sensors();
      const offset = intParam(c, "offset", { min: 0, max: Number.MAX_SAFE_INTEGER, fallback: 0 });
      const limit = intParam(c, "limit", { min: 1, max: MAX_PAGE, fallback: DEFAULT_PAGE });
      const page = await fleet.list(offset, limit);
      return c.json({ total: fleet.size, offset, limit, sensors: page });
    })
    .post(
      "/",
      bodyLimit({
        maxSize: MAX_BODY_BYTES,
        onError: () => {
          throw new ApiError(413, "payload_too_large", "Body is too large: the limit is 2 MiB");
        },
      }),
      async (c) => {
        const fleet = sensors();
        const parsed = parseSensorRequest(await jsonBody(c));
        if (!parsed.ok) throw new ApiError(400, "bad_request", parsed.message);
        const result = await fleet.add(parsed.request);
        if (!result.ok) {
          switch (result.code) {
            case "conflict":
              throw new ApiError(409, "conflict", result.message);
            case "cap":
              // The configured fleet size, not overload: retrying will not help.
              throw new ApiError(409, "conflict", result.message);
            case "invalid":
              throw new ApiError(400, "bad_request", result.message);
            case "unavailable":
              throw new ApiError(503, "unavailable", result.message);
            default:
              throw result.code satisfies never;
          }
        }
        const [only] = result.ids;
        if (result.ids.length === 1 && only !== undefined) {
          c.header("Location", `/sensors/${encodeURIComponent(only)}`);
        }
        return c.json({ ids: result.ids }, 201);
      },
    )
    .get("/:id", async (c) => {
      const fleet = sensors();
      const id = idParam(c.req.param("id"), "sensor id");
      const detail = await fleet.get(id);
      if (!detail) throw new ApiError(404, "not_found", `Unknown sensor: ${quote(id)}`);
      return c.json(detail);
    })
    .post(
      "/:id/overheat",
      bodyLimit({
        maxSize: 4096,
        onError: () => {
          throw new ApiError(413, "payload_too_large", "Body is too large: the limit is 4 KiB");
        },
      }),
      async (c) => {
        const fleet = sensors();
        const id = idParam(c.req.param("id"), "sensor id");
        const parsed = parseOverheatRequest(await optionalJsonBody(c));
        if (!parsed.ok) throw new ApiError(400, "bad_request", parsed.message);
        const result = await fleet.overheat(id, parsed.request);
        if (!result.ok) {
          switch (result.code) {
            case "not_found":
              throw new ApiError(404, "not_found", result.message);
            case "not_running":
              throw new ApiError(409, "conflict", result.message);
            case "invalid":
              throw new ApiError(400, "bad_request", result.message);
            case "unavailable":
              throw new ApiError(503, "unavailable", result.message);
            default:
              throw result.code satisfies never;
          }
        }
        // Accepted, not done: the readings are yet to be emitted and processed.
        return c.json({ id, readings: result.readings, temperature: result.temperature }, 202);
      },
    )
    .delete("/:id", async (c) => {
      const fleet = sensors();
      const id = idParam(c.req.param("id"), "sensor id");
      if (!(await fleet.remove(id))) {
        throw new ApiError(404, "not_found", `Unknown sensor: ${quote(id)}`);
      }
      return c.body(null, 204);
    });
}

function deviceRoutes(port: StoreQueries | undefined, connecting: boolean): Hono {
  const queries = () => available(port, "store", connecting);
  return new Hono()
    .get("/:id", async (c) => {
      const store = queries();
      const id = idParam(c.req.param("id"), "device id");
      const device = await store.device(id);
      if (!device) throw new ApiError(404, "not_found", `Unknown device: ${quote(id)}`);
      return c.json(device);
    })
    .get("/:id/readings", async (c) => {
      const store = queries();
      const deviceId = idParam(c.req.param("id"), "device id");
      const limit = intParam(c, "limit", { min: 1, max: MAX_PAGE, fallback: DEFAULT_PAGE });
      return c.json({ deviceId, readings: await store.readings(deviceId, limit) });
    });
}

const ALERT_STATUSES: readonly AlertStatus[] = ["active", "cleared"];

function alertRoutes(port: StoreQueries | undefined, connecting: boolean): Hono {
  const queries = () => available(port, "store", connecting);
  return new Hono()
    .get("/", async (c) => {
      const store = queries();
      const rawStatus = c.req.query("status");
      const status = ALERT_STATUSES.find((s) => s === rawStatus);
      if (rawStatus !== undefined && status === undefined) {
        throw new ApiError(
          400,
          "bad_request",
          `Invalid status: ${quote(rawStatus)} must be "active" or "cleared"`,
        );
      }
      const rawType = c.req.query("type");
      const type = ALERT_TYPES.find((t) => t === rawType);
      if (rawType !== undefined && type === undefined) {
        throw new ApiError(
          400,
          "bad_request",
          `Invalid type: ${quote(rawType)} must be ${
            ALERT_TYPES.map((t) => `"${t}"`).join(" or ")
          }`,
        );
      }
      const rawDevice = c.req.query("deviceId");
      const deviceId = rawDevice === undefined ? undefined : idParam(rawDevice, "deviceId");
      const limit = intParam(c, "limit", { min: 1, max: MAX_PAGE, fallback: DEFAULT_PAGE });
      const filter = {
        limit,
        ...(status === undefined ? {} : { status }),
        ...(deviceId === undefined ? {} : { deviceId }),
        ...(type === undefined ? {} : { type }),
      };
      return c.json({ alerts: await store.alerts(filter) });
    });
}

export interface BearerTokenOptions {
  /** The token every unsafe request must present. */
  readonly token: string;
  /** Methods that need no token. */
  readonly openMethods?: readonly string[];
}

/**
 * Requires `Authorization: Bearer <token>` on every request whose method is
 * not open (by default everything but GET, HEAD and OPTIONS).
 */
export function bearerToken(
  { token, openMethods = ["GET", "HEAD", "OPTIONS"] }: BearerTokenOptions,
): MiddlewareHandler {
  const expected = sha256(token);
  return async function bearerToken(c, next) {
    if (openMethods.includes(c.req.method)) return await next();
    const presented = bearerOf(c);
    if (presented === undefined) {
      c.header("WWW-Authenticate", `Bearer realm="api"`);
      throw new ApiError(
        401,
        "unauthorized",
        "Missing bearer token: send Authorization: Bearer <token>",
      );
    }
    // Equal-length digests, so the comparison time says nothing about the token.
    if (!timingSafeEqual(sha256(presented), expected)) {
      c.header("WWW-Authenticate", `Bearer realm="api", error="invalid_token"`);
      throw new ApiError(401, "unauthorized", "Invalid bearer token");
    }
    await next();
  };
}

export interface RateLimitOptions {
  /** Requests a caller may make per minute, which is also the largest burst. */
  readonly perMinute: number;
  /** Methods never limited. */
  readonly openMethods?: readonly string[];
  /**
   * Key callers by their bearer token (hashed) instead of their address. Only
   * safe after `bearerToken()` has checked it: otherwise every made-up token
   * would get a fresh bucket.
   */
  readonly byToken?: boolean;
  /** Clock in milliseconds; tests inject one. */
  readonly now?: () => number;
  /** Buckets kept in memory; past it, full buckets go first, then the least recently used. */
  readonly maxBuckets?: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

/**
 * A token bucket per caller on every request whose method is not open: it
 * holds `perMinute` tokens and refills continuously. An empty bucket answers
 * 429 with `Retry-After`. The caller is the client address from
 * `Deno.serve`'s connection info, or "anonymous" when there is none.
 */
export function rateLimit(
  {
    perMinute,
    openMethods = ["GET", "HEAD", "OPTIONS"],
    byToken = false,
    now = Date.now,
    maxBuckets = 10_000,
  }: RateLimitOptions,
): MiddlewareHandler {
  if (!Number.isFinite(perMinute) || perMinute <= 0) {
    throw new RangeError(`Invalid perMinute: ${perMinute} must be a positive number`);
  }
  const perMs = perMinute / 60_000;
  const keep = Math.floor(maxBuckets * 0.9);
  // Insertion order is recency order: a used bucket is moved to the end.
  const buckets = new Map<string, Bucket>();
  const level = (bucket: Bucket, t: number) =>
    Math.min(perMinute, bucket.tokens + Math.max(0, t - bucket.at) * perMs);
  const evict = (t: number) => {
    // A full bucket is the same as no bucket, so dropping it forgets nothing.
    for (const [key, bucket] of buckets) {
      if (level(bucket, t) >= perMinute) buckets.delete(key);
    }
    // Still crowded: forget the least recently used (they start over full);
    // trimming below the cap spreads the cost of the sweep over many requests.
    for (const key of buckets.keys()) {
      if (buckets.size <= keep) break;
      buckets.delete(key);
    }
  };
  return async function rateLimit(c, next) {
    if (openMethods.includes(c.req.method)) return await next();
    const token = byToken ? bearerOf(c) : undefined;
    const key = token === undefined
      ? `address:${clientAddress(c.env)}`
      : `token:${createHash("sha256").update(token, "utf8").digest("base64")}`;
    const t = now();
    let bucket = buckets.get(key);
    if (bucket) {
      buckets.delete(key);
    } else {
      if (buckets.size >= maxBuckets) evict(t);
      bucket = { tokens: perMinute, at: t };
    }
    buckets.set(key, bucket);
    bucket.tokens = level(bucket, t);
    bucket.at = t;
    if (bucket.tokens < 1) {
      const seconds = Math.max(1, Math.ceil((1 - bucket.tokens) / perMs / 1000));
      c.header("Retry-After", String(seconds));
      throw new ApiError(
        429,
        "rate_limited",
        `Too many requests: the limit is ${perMinute} per minute, retry in ${seconds} s`,
      );
    }
    bucket.tokens -= 1;
    await next();
  };
}

/** The token of `Authorization: Bearer <token>`, if well formed. */
function bearerOf(c: Context): string | undefined {
  return /^Bearer +(\S+) *$/i.exec(c.req.header("Authorization") ?? "")?.[1];
}

/**
 * The peer address `Deno.serve` passes as the handler's second argument
 * (Hono's `c.env`). Read directly: `getConnInfo` from `hono/deno` is
 * deprecated and throws when there is no connection info, as in `app.request()`.
 */
function clientAddress(env: unknown): string {
  const addr = (env as { remoteAddr?: { hostname?: unknown } } | undefined)?.remoteAddr;
  return typeof addr?.hostname === "string" ? addr.hostname : "anonymous";
}

function sha256(text: string): Uint8Array {
  return createHash("sha256").update(text, "utf8").digest();
}

function available<T>(port: T | undefined, role: "sensors" | "store", connecting: boolean): T {
  if (port !== undefined) return port;
  if (connecting) {
    const what = role === "sensors" ? "The sensor fleet" : "The store";
    throw new ApiError(503, "unavailable", `${what} is not connected yet; see /health`);
  }
  throw new ApiError(
    503,
    "unavailable",
    role === "sensors"
      ? "This process does not run the sensors role"
      : "This process has no store: device and alert queries are unavailable",
  );
}

/** The body parsed as JSON, or a 400 naming what is wrong. */
async function jsonBody(c: Context): Promise<unknown> {
  const type = c.req.header("Content-Type") ?? "";
  if (!/^application\/([\w.+-]+\+)?json\s*(;|$)/i.test(type)) {
    throw new ApiError(
      400,
      "bad_request",
      `Unsupported Content-Type: ${quote(type)} must be application/json`,
    );
  }
  const text = await c.req.text();
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ApiError(400, "bad_request", `Body is not valid JSON: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

/** Like `jsonBody()`, but an empty body without a Content-Type is `undefined`. */
function optionalJsonBody(c: Context): Promise<unknown> {
  const empty = c.req.header("Content-Type") === undefined &&
    (c.req.header("Content-Length") ?? "0") === "0" &&
    c.req.header("Transfer-Encoding") === undefined;
  return empty ? Promise.resolve(undefined) : jsonBody(c);
}

function idParam(value: string, name: string): string {
  if (DEVICE_ID_PATTERN.test(value)) return value;
  throw new ApiError(
    400,
    "bad_request",
    `Invalid ${name}: ${
      quote(value)
    } must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit`,
  );
}

/** A query-string integer in `[min, max]`, `fallback` when absent. */
function intParam(
  c: Context,
  name: string,
  { min, max, fallback }: { min: number; max: number; fallback: number },
): number {
  const raw = c.req.query(name);
  if (raw === undefined) return fallback;
  const value = /^\d{1,16}$/.test(raw) ? Number(raw) : NaN;
  if (Number.isSafeInteger(value) && value >= min && value <= max) return value;
  const range = max === Number.MAX_SAFE_INTEGER ? `of ${min} or more` : `from ${min} to ${max}`;
  throw new ApiError(
    400,
    "bad_request",
    `Invalid ${name}: ${quote(raw)} must be an integer ${range}`,
  );
}

/** A client-supplied value for an error message: quoted, escaped and short. */
function quote(value: string): string {
  return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value);
}
