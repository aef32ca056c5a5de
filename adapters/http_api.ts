/**
 * The HTTP control API (Hono). Routes are grouped by resource, one sub-app per
 * group in `adapters/http/` mounted here with `app.route()`; each handler
 * validates its input with the shared schemas and answers JSON. This file
 * composes them with the middleware (`adapters/http/middleware.ts`), the
 * probes, the 404/405 answers and the one error handler. The API declares the
 * ports it needs — sensor control, store queries, webhook subscriptions — and
 * knows nothing of Kafka or MongoDB.
 *
 * @module
 */
import { Hono } from "@hono/hono";
import { HTTPException } from "@hono/hono/http-exception";
import { errorBody, errorFor } from "./http_errors.ts";
import { type HealthReport, readiness } from "./health.ts";
import { openApiDocument } from "./openapi.ts";
import { NO_STORE, quote } from "./http/helpers.ts";
import {
  bearerToken,
  httpMetrics,
  rateLimit,
  requestLimits,
  requestTimeout,
  type ServedRequest,
} from "./http/middleware.ts";
import { sensorRoutes } from "./http/sensors.ts";
import { deviceRoutes } from "./http/devices.ts";
import { alertRoutes } from "./http/alerts.ts";
import { BACKTEST_BOUNDS, type BacktestBounds, ruleRoutes } from "./http/rules.ts";
import { webhookRoutes } from "./http/webhooks.ts";
import type { Logger } from "../actors/logger.ts";
import type { Timers } from "../actors/timers.ts";
import type { SensorControl } from "../actors/sensor_control.ts";
import type { StoreQueries } from "../actors/store_queries.ts";
import type { WebhookStore } from "../actors/webhook_store.ts";
import type { WebhookTargetCheck } from "../actors/webhook_dispatcher.ts";

export interface ApiDeps {
  readonly health: () => Promise<HealthReport>;
  readonly info: { readonly role: string; readonly version: string; readonly mode?: unknown };
  readonly logger: Logger;
  /** Absent when this process does not run the sensors role: sensor routes answer 503. */
  readonly sensors?: SensorControl;
  /** Absent when this process has no store: device and alert routes answer 503. */
  readonly queries?: StoreQueries;
  /** Absent when this process has no store: webhook routes answer 503. */
  readonly webhooks?: WebhookStore;
  /** Refuses webhook URLs a subscription must not name (SSRF guard); absent: none refused. */
  readonly checkWebhookUrl?: WebhookTargetCheck;
  /**
   * Ports this process will serve once start-up has connected them: until then their routes
   * answer 503 "not connected yet" instead of "this process does not run it".
   */
  readonly connecting?: { readonly sensors: boolean; readonly store: boolean };
  /** When set, POST/DELETE/PATCH/PUT need `Authorization: Bearer <token>`. */
  readonly apiToken?: string;
  /**
   * Prometheus exposition for `GET /metrics` (open like `/health`); absent: no route. Its
   * `httpRequest` hook, when present, is told about every request (RED metrics).
   */
  readonly metrics?: {
    readonly contentType: string;
    scrape(): Promise<string>;
    httpRequest?(request: ServedRequest, seconds: number): void;
  };
  /** Longest a request may take before it is answered 503 `timeout` (default 30 000 ms). */
  readonly requestTimeoutMs?: number;
  /** Timers for the request timeout; tests pass a fake. */
  readonly timers?: Timers;
  /** Live counters of the running roles, shown in `/health`. */
  readonly stats?: () => Record<string, unknown>;
  /**
   * Token bucket on POST/DELETE/PATCH/PUT, per token when `apiToken` is set,
   * else per client address. Absent or `perMinute: 0`: no limit.
   */
  readonly rateLimit?: { readonly perMinute: number; readonly now?: () => number };
  /** The live dashboard's routes (page, assets, event stream), mounted at `/`. */
  readonly dashboard?: Hono;
  /** Bounds of `POST /rules/backtest` (default {@linkcode BACKTEST_BOUNDS}). */
  readonly backtest?: BacktestBounds;
  /** The acknowledgement's time (default: the wall clock). */
  readonly now?: () => Date;
}

/** Default of `ApiDeps.requestTimeoutMs`. */
export const REQUEST_TIMEOUT_MS = 30_000;
/**
 * Largest request target (path and query) and header section the app answers itself, with 414
 * and 431 in the JSON error shape. Deno's server refuses larger ones before the app sees them
 * (a target over 64 KiB, a header over about 64 KiB: `400` with an empty body), so these limits
 * sit well below its own.
 */
export const MAX_URL_BYTES = 8 * 1024;
export const MAX_HEADER_BYTES = 32 * 1024;

/**
 * The HTTP API. Sensor routes need `deps.sensors` and device/alert routes
 * `deps.queries`; without them those routes answer 503.
 */
export function createApi(deps: ApiDeps): Hono {
  const app = new Hono();

  // Counted first, so every answer (401, 404, 405, 429, timeouts) is in the RED metrics.
  const observe = deps.metrics?.httpRequest;
  if (observe) app.use(httpMetrics({ observe: observe.bind(deps.metrics) }));
  app.use(requestLimits({ maxUrlBytes: MAX_URL_BYTES, maxHeaderBytes: MAX_HEADER_BYTES }));
  app.use(requestTimeout({
    ms: deps.requestTimeoutMs ?? REQUEST_TIMEOUT_MS,
    ...(deps.timers ? { timers: deps.timers } : {}),
  }));
  // Auth next: a flood without the right token gets a cheap 401 and uses no bucket.
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
  // The API's contract, generated from the same schemas the handlers validate with.
  let contract: Record<string, unknown> | undefined;
  app.get("/openapi.json", (c) => {
    contract ??= openApiDocument({ version: deps.info.version });
    return c.json(contract);
  });
  const storeConnecting = deps.connecting?.store ?? false;
  const sensorsConnecting = deps.connecting?.sensors ?? false;
  app.route("/sensors", sensorRoutes({ port: deps.sensors, connecting: sensorsConnecting }));
  app.route(
    "/devices",
    deviceRoutes({
      port: deps.queries,
      connecting: storeConnecting,
      fleet: { port: deps.sensors, connecting: sensorsConnecting },
    }),
  );
  app.route(
    "/alerts",
    alertRoutes({
      port: deps.queries,
      connecting: storeConnecting,
      now: deps.now ?? (() => new Date()),
    }),
  );
  app.route(
    "/rules",
    ruleRoutes({
      port: deps.queries,
      connecting: storeConnecting,
      bounds: deps.backtest ?? BACKTEST_BOUNDS,
    }),
  );
  app.route(
    "/webhooks",
    webhookRoutes({
      port: deps.webhooks,
      connecting: storeConnecting,
      now: deps.now ?? (() => new Date()),
      checkUrl: deps.checkWebhookUrl,
    }),
  );
  if (deps.dashboard) app.route("/", deps.dashboard);

  // No route for this method: 405 with `Allow` when the path has routes for other methods.
  let allowed: ((path: string) => string[]) | undefined;
  app.notFound((c) => {
    allowed ??= allowedMethods(app.routes);
    const methods = allowed(c.req.path);
    if (methods.length === 0) {
      return c.json(errorBody("not_found", `No route for ${c.req.method} ${c.req.path}`), 404);
    }
    c.header("Allow", methods.join(", "));
    if (c.req.method === "OPTIONS") return c.body(null, 204);
    return c.json(
      errorBody(
        "method_not_allowed",
        `Method not allowed: ${quote(c.req.method)} on ${c.req.path} takes ${methods.join(", ")}`,
      ),
      405,
    );
  });
  app.onError((err, c) => {
    if (err instanceof HTTPException) {
      const { status, code, message } = errorFor(err);
      return c.json(errorBody(code, message), status);
    }
    deps.logger.error("request failed", { method: c.req.method, path: c.req.path, error: err });
    return c.json(errorBody("internal", "Internal error"), 500);
  });
  return app;
}

/**
 * For a path no route of the request's method matches: the methods that do
 * match it (with HEAD beside GET, and OPTIONS), or none for an unknown path.
 */
export function allowedMethods(
  routes: readonly { readonly method: string; readonly path: string }[],
): (path: string) => string[] {
  const table = routes
    .filter((r) => r.method !== "ALL")
    .map((r) => ({ method: r.method, pattern: pathPattern(r.path) }));
  return (path) => {
    const methods = new Set(table.filter((r) => r.pattern.test(path)).map((r) => r.method));
    if (methods.size === 0) return [];
    if (methods.has("GET")) methods.add("HEAD");
    methods.add("OPTIONS");
    return [...methods].sort();
  };
}

/** A Hono route template (`/sensors/:id`, `/files/*`) as an anchored regular expression. */
function pathPattern(template: string): RegExp {
  const parts = template.split("/").map((segment) =>
    segment.startsWith(":")
      ? "[^/]+"
      : segment === "*"
      ? ".*"
      : segment.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")
  );
  return new RegExp(`^${parts.join("/")}$`);
}
