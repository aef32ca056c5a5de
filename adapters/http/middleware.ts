/**
 * The API's middleware, each a factory taking an options object and returning a named
 * function: bearer-token auth, a per-caller rate limit, RED metrics per route, a request
 * timeout, and limits on the request target and headers. All refuse in the one error shape.
 *
 * @module
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { Context, MiddlewareHandler } from "@hono/hono";
import { matchedRoutes } from "@hono/hono/route";
import { ApiError } from "../http_errors.ts";
import { realTimers, type TimerId, type Timers } from "../../actors/timers.ts";

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

/** One answered request, labelled with bounded values only. */
export interface ServedRequest {
  /** The method, or "OTHER" for one no route uses. */
  readonly method: string;
  /** The route template (`/sensors/:id`), never the raw path; "unmatched" when none matched. */
  readonly route: string;
  readonly status: number;
}

export interface HttpMetricsOptions {
  /** Called once per answered request with its duration in seconds. */
  readonly observe: (request: ServedRequest, seconds: number) => void;
  /** Clock in milliseconds (default `performance.now`). */
  readonly now?: () => number;
}

const KNOWN_METHODS = new Set(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]);

/**
 * Reports every request's method, route template and status, and how long the
 * app took to produce its response (for a stream, until its headers).
 */
export function httpMetrics(
  { observe, now = performance.now.bind(performance) }: HttpMetricsOptions,
): MiddlewareHandler {
  return async function httpMetrics(c, next) {
    const started = now();
    try {
      await next();
    } finally {
      // The first route (not middleware) that matched is the one that answered: Hono dispatches
      // in registration order and no handler here passes the request on.
      const route = matchedRoutes(c).find((r) => r.method !== "ALL")?.path ?? "unmatched";
      const method = KNOWN_METHODS.has(c.req.method) ? c.req.method : "OTHER";
      observe({ method, route, status: c.res.status }, Math.max(0, now() - started) / 1000);
    }
  };
}

export interface RequestTimeoutOptions {
  /** Longest time to an answer, in milliseconds. */
  readonly ms: number;
  readonly timers?: Timers;
}

/**
 * Answers 503 `timeout` when the rest of the chain has not answered within
 * `ms` (like Hono's `timeout()`, on injectable timers and in the error shape).
 * The handler is not cancelled: its late answer is dropped.
 */
export function requestTimeout(
  { ms, timers = realTimers }: RequestTimeoutOptions,
): MiddlewareHandler {
  return async function requestTimeout(_c, next) {
    let timer: TimerId | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = timers.setTimeout(
        () => reject(new ApiError(503, "timeout", `Request timed out: no answer within ${ms} ms`)),
        ms,
      );
    });
    try {
      await Promise.race([next(), expired]);
    } finally {
      timers.clearTimeout(timer);
    }
  };
}

export interface RequestLimitsOptions {
  /** Longest request target (path and query), in bytes. */
  readonly maxUrlBytes: number;
  /** Largest header section (names, values and separators), in bytes. */
  readonly maxHeaderBytes: number;
}

/** Refuses an oversized request target (414) or header section (431) in the JSON error shape. */
export function requestLimits(
  { maxUrlBytes, maxHeaderBytes }: RequestLimitsOptions,
): MiddlewareHandler {
  return async function requestLimits(c, next) {
    // The target is what follows the origin (the URL is ASCII, percent-encoded, once parsed).
    const url = c.req.url;
    const path = url.indexOf("/", url.indexOf("://") + 3);
    const target = path < 0 ? 1 : url.length - path;
    if (target > maxUrlBytes) {
      throw new ApiError(
        414,
        "uri_too_long",
        `Request target is too long: ${target} bytes, the limit is ${maxUrlBytes}`,
      );
    }
    let headerBytes = 0;
    for (const [name, value] of c.req.raw.headers) headerBytes += name.length + value.length + 4;
    if (headerBytes > maxHeaderBytes) {
      throw new ApiError(
        431,
        "headers_too_large",
        `Request headers are too large: ${headerBytes} bytes, the limit is ${maxHeaderBytes}`,
      );
    }
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
