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
import { HTTPException } from "@hono/hono/http-exception";
import { matchedRoutes } from "@hono/hono/route";
import { ApiError, errorBody, type ErrorCode, errorFor } from "./http_errors.ts";
import { type HealthReport, readiness } from "./health.ts";
import { openApiDocument } from "./openapi.ts";
import { PAGE_LIMIT } from "../schemas/http_api.ts";
import { DEVICE_ID_PATTERN } from "../schemas/reading.ts";
import { parseSensorRequest } from "../schemas/sensor_request.ts";
import { parseOverheatRequest } from "../schemas/overheat_request.ts";
import { ALERT_ID_PATTERN, parseAckRequest } from "../schemas/ack_request.ts";
import { parseBacktestRequest } from "../schemas/backtest_request.ts";
import { parseRulePatch } from "../schemas/rule_request.ts";
import {
  ALERT_TYPES,
  type AlertDoc,
  alertId,
  type AlertStatus,
  type ReadingDoc,
} from "../schemas/documents.ts";
import { backtest, type BacktestEpisode } from "../domain/backtest.ts";
import { parseFaultKind, parseFaultRequest } from "../schemas/fault_request.ts";
import { FAULT_KINDS } from "../domain/sensor_faults.ts";
import type { Logger } from "../actors/logger.ts";
import { realTimers, type TimerId, type Timers } from "../actors/timers.ts";
import type { SensorControl } from "../actors/sensor_control.ts";
import type { StoreQueries } from "../actors/store_queries.ts";
import type { WebhookStore } from "../actors/webhook_store.ts";
import type { WebhookTargetCheck } from "../actors/webhook_dispatcher.ts";
import { parseWebhookRequest, webhookView } from "../schemas/webhook.ts";

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

/** How much one backtest may do. */
export interface BacktestBounds {
  /** Most readings one backtest replays; a window holding more is refused. */
  readonly maxReadings: number;
  /** Most time one backtest may take, reading the store included. */
  readonly deadlineMs: number;
}

export const BACKTEST_BOUNDS: BacktestBounds = { maxReadings: 100_000, deadlineMs: 10_000 };

/** Probe answers describe this instant: caches and proxies must not keep them. */
const NO_STORE = { "Cache-Control": "no-store" };

/** Largest accepted request body. */
export const MAX_BODY_BYTES = 2 * 1024 * 1024;
/** Largest `limit` any list route accepts. */
export const MAX_PAGE = PAGE_LIMIT.max;
const DEFAULT_PAGE = PAGE_LIMIT.fallback;
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
  app.route("/sensors", sensorRoutes(deps.sensors, deps.connecting?.sensors ?? false));
  app.route(
    "/devices",
    deviceRoutes(deps.queries, storeConnecting, {
      port: deps.sensors,
      connecting: deps.connecting?.sensors ?? false,
    }),
  );
  app.route("/alerts", alertRoutes(deps.queries, storeConnecting, deps.now ?? (() => new Date())));
  app.route("/rules", ruleRoutes(deps.queries, storeConnecting, deps.backtest ?? BACKTEST_BOUNDS));
  app.route(
    "/webhooks",
    webhookRoutes(
      deps.webhooks,
      storeConnecting,
      deps.now ?? (() => new Date()),
      deps.checkWebhookUrl,
    ),
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

/** Why the sensors refused a command (`actors/sensor_control.ts`), and what the API answers. */
type SensorRefusal = "conflict" | "cap" | "invalid" | "not_found" | "not_running" | "unavailable";

const REFUSAL_STATUS: Readonly<Record<SensorRefusal, readonly [400 | 404 | 409 | 503, ErrorCode]>> =
  {
    conflict: [409, "conflict"],
    // The configured fleet size, not overload: retrying will not help.
    cap: [409, "conflict"],
    invalid: [400, "bad_request"],
    not_found: [404, "not_found"],
    not_running: [409, "conflict"],
    unavailable: [503, "unavailable"],
  };

function refused(code: SensorRefusal, message: string): ApiError {
  const [status, errorCode] = REFUSAL_STATUS[code];
  return new ApiError(status, errorCode, message);
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
      limitBody(MAX_BODY_BYTES),
      async (c) => {
        const fleet = sensors();
        const parsed = parseSensorRequest(await jsonBody(c));
        if (!parsed.ok) throw new ApiError(400, "bad_request", parsed.message);
        const result = await fleet.add(parsed.request);
        if (!result.ok) throw refused(result.code, result.message);
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
      limitBody(4096),
      async (c) => {
        const fleet = sensors();
        const id = idParam(c.req.param("id"), "sensor id");
        const parsed = parseOverheatRequest(await optionalJsonBody(c));
        if (!parsed.ok) throw new ApiError(400, "bad_request", parsed.message);
        const result = await fleet.overheat(id, parsed.request);
        if (!result.ok) throw refused(result.code, result.message);
        // Accepted, not done: the readings are yet to be emitted and processed.
        return c.json({ id, readings: result.readings, temperature: result.temperature }, 202);
      },
    )
    .post(
      "/:id/faults",
      limitBody(4096),
      async (c) => {
        const fleet = sensors();
        const id = idParam(c.req.param("id"), "sensor id");
        const parsed = parseFaultRequest(await jsonBody(c));
        if (!parsed.ok) throw new ApiError(400, "bad_request", parsed.message);
        const result = await fleet.fault(id, parsed.request);
        if (!result.ok) throw refused(result.code, result.message);
        // Accepted, not done: the sensor applies it from its next tick.
        return c.json({ id, fault: result.fault }, 202);
      },
    )
    .delete("/:id/faults", async (c) => {
      const fleet = sensors();
      const id = idParam(c.req.param("id"), "sensor id");
      const rawKind = c.req.query("kind");
      const kind = rawKind === undefined ? undefined : parseFaultKind(rawKind);
      if (rawKind !== undefined && kind === undefined) {
        throw new ApiError(
          400,
          "bad_request",
          `Invalid kind: ${quote(rawKind)} must be one of ${FAULT_KINDS.join(", ")}`,
        );
      }
      const result = await fleet.clearFaults(id, kind);
      if (!result.ok) throw refused(result.code, result.message);
      return c.body(null, 204);
    })
    .delete("/:id", async (c) => {
      const fleet = sensors();
      const id = idParam(c.req.param("id"), "sensor id");
      if (!(await fleet.remove(id))) {
        throw new ApiError(404, "not_found", `Unknown sensor: ${quote(id)}`);
      }
      return c.body(null, 204);
    });
}

function deviceRoutes(
  port: StoreQueries | undefined,
  connecting: boolean,
  fleet: { readonly port: SensorControl | undefined; readonly connecting: boolean },
): Hono {
  const queries = () => available(port, "store", connecting);
  return new Hono()
    // A device's rule is its sensor's: the sensor carries it in every reading from now on.
    .patch(
      "/:id/rule",
      limitBody(4096),
      async (c) => {
        const sensors = available(fleet.port, "sensors", fleet.connecting);
        const id = idParam(c.req.param("id"), "device id");
        const parsed = parseRulePatch(await jsonBody(c));
        if (!parsed.ok) throw new ApiError(400, "bad_request", parsed.message);
        const result = await sensors.setRule(id, parsed.patch);
        if (!result.ok) {
          throw refused(
            result.code,
            result.code === "not_found"
              ? `Unknown device: no sensor has id ${quote(id)}`
              : result.message,
          );
        }
        // Accepted: recorded for good; the processors apply it from the sensor's next reading.
        return c.json({ id, rule: result.rule, appliesAfterSeq: result.appliesAfterSeq }, 202);
      },
    )
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

function alertRoutes(
  port: StoreQueries | undefined,
  connecting: boolean,
  now: () => Date,
): Hono {
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
      const rawAcked = c.req.query("acked");
      if (rawAcked !== undefined && rawAcked !== "true" && rawAcked !== "false") {
        throw new ApiError(
          400,
          "bad_request",
          `Invalid acked: ${quote(rawAcked)} must be "true" or "false"`,
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
        ...(rawAcked === undefined ? {} : { acked: rawAcked === "true" }),
        ...(type === undefined ? {} : { type }),
      };
      return c.json({ alerts: await store.alerts(filter) });
    })
    .post(
      "/:id/ack",
      limitBody(16 * 1024),
      async (c) => {
        const store = queries();
        const id = c.req.param("id");
        if (!ALERT_ID_PATTERN.test(id)) {
          throw new ApiError(
            400,
            "bad_request",
            `Invalid alert id: ${quote(id)} must be <deviceId>:<type>:<raisedSeq>`,
          );
        }
        const parsed = parseAckRequest(await jsonBody(c));
        if (!parsed.ok) throw new ApiError(400, "bad_request", parsed.message);
        const { by, note } = parsed.request;
        const outcome = await store.acknowledge(id, {
          ackedBy: by,
          ackedAt: now(),
          ...(note === undefined ? {} : { note }),
        });
        if (!outcome) throw new ApiError(404, "not_found", `Unknown alert: ${quote(id)}`);
        // Acknowledged already: the first acknowledgement stands, and is what the caller sees.
        return c.json(outcome.alert);
      },
    );
}

/** Webhook subscriptions (docs/webhooks.md): their secrets are never answered. */
function webhookRoutes(
  port: WebhookStore | undefined,
  connecting: boolean,
  now: () => Date,
  checkUrl: WebhookTargetCheck = () => Promise.resolve(undefined),
): Hono {
  const webhooks = () => available(port, "store", connecting);
  return new Hono()
    .get("/", async (c) => {
      const store = webhooks();
      return c.json({ webhooks: (await store.webhooks()).map(webhookView) }, 200, NO_STORE);
    })
    .post(
      "/",
      limitBody(16 * 1024),
      async (c) => {
        const store = webhooks();
        const parsed = parseWebhookRequest(await jsonBody(c));
        if (!parsed.ok) throw new ApiError(400, "bad_request", parsed.message);
        const refused = await checkUrl(parsed.request.url);
        if (refused !== undefined) throw new ApiError(400, "bad_request", refused);
        const doc = { _id: crypto.randomUUID(), ...parsed.request, createdAt: now() };
        await store.addWebhook(doc);
        return c.json(webhookView(doc), 201, { location: `/webhooks/${doc._id}` });
      },
    )
    .get("/:id/dead-letters", async (c) => {
      const store = webhooks();
      const id = c.req.param("id");
      const limit = intParam(c, "limit", { min: 1, max: MAX_PAGE, fallback: DEFAULT_PAGE });
      const known = WEBHOOK_ID_PATTERN.test(id) &&
        (await store.webhooks()).some((w) => w._id === id);
      if (!known) throw new ApiError(404, "not_found", `Unknown webhook: ${quote(id)}`);
      return c.json({ deadLetters: await store.deadLetters(id, limit) }, 200, NO_STORE);
    })
    .delete("/:id", async (c) => {
      const store = webhooks();
      const id = c.req.param("id");
      if (!WEBHOOK_ID_PATTERN.test(id) || !(await store.removeWebhook(id))) {
        throw new ApiError(404, "not_found", `Unknown webhook: ${quote(id)}`);
      }
      return c.body(null, 204);
    });
}

const WEBHOOK_ID_PATTERN = /^[0-9a-f-]{36}$/;

/** A backtest's episode in the stored alerts' shape, so both lists read alike. */
function episodeView(e: BacktestEpisode) {
  return {
    _id: alertId(e.deviceId, e.raisedSeq),
    deviceId: e.deviceId,
    type: "overheat",
    status: e.cleared ? "cleared" : "active",
    raisedAt: e.raisedAt,
    raisedSeq: e.raisedSeq,
    peakTemperature: e.peakTemperature,
    ...(e.cleared ? { clearedAt: e.cleared.ts, clearedSeq: e.cleared.seq } : {}),
  };
}

function ruleRoutes(
  port: StoreQueries | undefined,
  connecting: boolean,
  bounds: BacktestBounds,
): Hono {
  const queries = () => available(port, "store", connecting);
  const narrow = "narrow the window (from, to) or name a deviceId";
  return new Hono()
    .post(
      "/backtest",
      limitBody(4096),
      async (c) => {
        const store = queries();
        const parsed = parseBacktestRequest(await jsonBody(c));
        if (!parsed.ok) throw new ApiError(400, "bad_request", parsed.message);
        const { deviceId, from, to, rule } = parsed.request;
        const signal = AbortSignal.timeout(bounds.deadlineMs);
        const overdue = () =>
          new ApiError(
            422,
            "limit_exceeded",
            `Backtest took longer than the deadline: the limit is ${bounds.deadlineMs} ms; ${narrow}`,
          );
        const window = { ...(deviceId === undefined ? {} : { deviceId }), from, to };
        let readings: readonly ReadingDoc[];
        let stored: readonly AlertDoc[];
        try {
          // One more than the bound tells a window at the bound from one past it.
          readings = await store.readingsBetween({
            ...window,
            limit: bounds.maxReadings + 1,
            signal,
          });
          if (readings.length > bounds.maxReadings) {
            throw new ApiError(
              422,
              "limit_exceeded",
              `Backtest window holds more readings than the limit of ${bounds.maxReadings}: ${narrow}`,
            );
          }
          // Every stored overheat episode of the window was raised by one of its readings.
          stored = await beforeAbort(
            store.alerts({
              ...(deviceId === undefined ? {} : { deviceId }),
              type: "overheat",
              raisedFrom: from,
              raisedTo: to,
              limit: bounds.maxReadings + 1,
            }),
            signal,
          );
        } catch (err) {
          if (signal.aborted && !(err instanceof ApiError)) throw overdue();
          throw err;
        }
        const result = backtest(
          readings.map((r) => ({
            deviceId: r.deviceId,
            seq: r.seq,
            ts: new Date(r.ts).toISOString(),
            temperature: r.temperature,
          })),
          rule,
        );
        if (signal.aborted) throw overdue();
        const candidate = result.episodes.map(episodeView);
        const storedEpisodes = [...stored].sort((a, b) =>
          a.deviceId < b.deviceId ? -1 : a.deviceId > b.deviceId ? 1 : a.raisedSeq - b.raisedSeq
        );
        const byId = new Map(storedEpisodes.map((a) => [a._id, a]));
        const same = candidate.filter((e) => {
          const s = byId.get(e._id);
          return s !== undefined && s.clearedSeq === e.clearedSeq;
        }).length;
        return c.json({
          ...(deviceId === undefined ? {} : { deviceId }),
          from: from.toISOString(),
          to: to.toISOString(),
          rule,
          readings: result.readings,
          devices: result.devices,
          summary: { candidate: candidate.length, stored: storedEpisodes.length, same },
          candidate,
          stored: storedEpisodes,
        });
      },
    );
}

/** A body limit of `bytes` whose 413 is in the one error shape, naming the limit. */
function limitBody(bytes: number) {
  const limit = bytes % (1024 * 1024) === 0
    ? `${bytes / (1024 * 1024)} MiB`
    : `${bytes / 1024} KiB`;
  return bodyLimit({
    maxSize: bytes,
    onError: () => {
      throw new ApiError(413, "payload_too_large", `Body is too large: the limit is ${limit}`);
    },
  });
}

/** `promise`, unless `signal` aborts first: then its reason. */
function beforeAbort<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  signal.throwIfAborted();
  const { promise: aborted, reject } = Promise.withResolvers<never>();
  const onAbort = () => reject(signal.reason);
  signal.addEventListener("abort", onAbort, { once: true });
  return Promise.race([promise, aborted]).finally(() =>
    signal.removeEventListener("abort", onAbort)
  );
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
  requireJsonType(c);
  return parseJson(await c.req.text());
}

/**
 * Like `jsonBody()` for a route whose body is optional: an empty body is
 * `undefined`, whatever its Content-Type (clients often send
 * `application/json` with no body).
 */
async function optionalJsonBody(c: Context): Promise<unknown> {
  const text = await c.req.text();
  if (text === "") return undefined;
  requireJsonType(c);
  return parseJson(text);
}

function requireJsonType(c: Context): void {
  const type = c.req.header("Content-Type") ?? "";
  if (!/^application\/([\w.+-]+\+)?json\s*(;|$)/i.test(type)) {
    throw new ApiError(
      400,
      "bad_request",
      `Unsupported Content-Type: ${quote(type)} must be application/json`,
    );
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ApiError(400, "bad_request", `Body is not valid JSON: ${(err as Error).message}`, {
      cause: err,
    });
  }
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
