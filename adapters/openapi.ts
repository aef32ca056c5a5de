/**
 * The API's contract as an OpenAPI 3.1 document, served at `GET /openapi.json`
 * and generated from the zod schemas the handlers validate with
 * (`z.toJSONSchema()`; OpenAPI 3.1 schemas are JSON Schema 2020-12).
 *
 * Every route is one entry of `OPERATIONS`, keyed exactly as it is registered
 * with Hono (`"POST /sensors/:id/overheat"`). A test compares the keys with the
 * app's routes both ways, so a route added without its entry (or an entry left
 * behind) fails the suite; another compares them with docs/http-api.md.
 *
 * @module
 */
import { z } from "zod";
import { SensorRequestSchema } from "../schemas/sensor_request.ts";
import { OverheatRequestSchema } from "../schemas/overheat_request.ts";
import {
  FaultAcceptedSchema,
  FaultRequestSchema,
  FaultsQuerySchema,
} from "../schemas/fault_request.ts";
import { DashboardQuerySchema } from "../schemas/dashboard.ts";
import { AckRequestSchema } from "../schemas/ack_request.ts";
import { BacktestRequestSchema } from "../schemas/backtest_request.ts";
import { RuleAcceptedSchema, RulePatchSchema } from "../schemas/rule_request.ts";
import { WebhookRequestSchema } from "../schemas/webhook.ts";
import { DASHBOARD_FILES } from "./dashboard_routes.ts";
import {
  AlertIdParamsSchema,
  AlertsQuerySchema,
  CreatedSensorsSchema,
  ErrorBodySchema,
  IdParamsSchema,
  OverheatAcceptedSchema,
  ProbeBodySchema,
  ReadingsQuerySchema,
  SensorsQuerySchema,
} from "../schemas/http_api.ts";

/** A success answer: a JSON body with its schema, a body of other media types, or none. */
export type Answer =
  | { readonly description: string; readonly json: z.ZodType }
  | { readonly description: string; readonly media: readonly string[] }
  | { readonly description: string };

export interface Operation {
  readonly summary: string;
  /** Groups operations in viewers: the first path segment, by convention. */
  readonly tag: string;
  /** Path parameters: one property per `:name` of the route. */
  readonly params?: z.ZodObject;
  readonly query?: z.ZodObject;
  readonly body?: { readonly schema: z.ZodType; readonly required: boolean };
  /** Answers with their own bodies, by status (successes, and probes' 503). */
  readonly ok: Readonly<Record<number, Answer>>;
  /** Error statuses this route answers on purpose, with why (all in the one error shape). */
  readonly errors?: Readonly<Record<number, string>>;
}

type Method = "GET" | "POST" | "PUT" | "PATCH" | "DELETE";
/** `"<METHOD> <Hono path>"`, exactly as the route is registered. */
export type RouteKey = `${Method} /${string}`;

/** A JSON object whose fields the schemas of `schemas/documents.ts` and the ports describe. */
const anObject = z.looseObject({});

/** Every route of the API. Adding a route: add its entry here (the route test says so). */
export const OPERATIONS: Readonly<Record<RouteKey, Operation>> = {
  "GET /livez": {
    summary: "Liveness: the process answers (never looks at Kafka or the store)",
    tag: "probes",
    ok: { 200: { description: "Alive", json: ProbeBodySchema } },
  },
  "GET /readyz": {
    summary: "Readiness: every dependency check passes",
    tag: "probes",
    ok: {
      200: { description: "Ready", json: ProbeBodySchema },
      503: { description: "A check fails; the body names it", json: ProbeBodySchema },
    },
  },
  "GET /health": {
    summary: "Checks, mode, version and live counters, for humans",
    tag: "probes",
    ok: {
      200: { description: "Healthy", json: anObject },
      503: { description: "Degraded; the body names the failing check", json: anObject },
    },
  },
  "GET /metrics": {
    summary: "Prometheus metrics (text exposition format)",
    tag: "probes",
    ok: { 200: { description: "Every series", media: ["text/plain"] } },
  },
  "GET /openapi.json": {
    summary: "This document",
    tag: "probes",
    ok: { 200: { description: "OpenAPI 3.1", json: anObject } },
  },
  "GET /sensors": {
    summary: "A page of the sensor fleet",
    tag: "sensors",
    query: SensorsQuerySchema,
    ok: { 200: { description: "`{total, offset, limit, sensors}`", json: anObject } },
    errors: { 400: "Bad offset or limit" },
  },
  "POST /sensors": {
    summary: "Add one sensor, or a batch of `count` sensors",
    tag: "sensors",
    body: { schema: SensorRequestSchema, required: true },
    ok: {
      201: { description: "Created; `Location` names a single sensor", json: CreatedSensorsSchema },
    },
    errors: {
      400: "Malformed body",
      409: "Existing id, or the sensor cap is reached",
      413: "Body over 2 MiB",
    },
  },
  "GET /sensors/:id": {
    summary: "One sensor with its last reading",
    tag: "sensors",
    params: IdParamsSchema,
    ok: { 200: { description: "The sensor", json: anObject } },
    errors: { 404: "Unknown sensor" },
  },
  "DELETE /sensors/:id": {
    summary: "Stop and remove a sensor",
    tag: "sensors",
    params: IdParamsSchema,
    ok: { 204: { description: "Removed; it emits no more" } },
    errors: { 404: "Unknown sensor" },
  },
  "POST /sensors/:id/overheat": {
    summary: "Make a running sensor report overheating readings",
    tag: "sensors",
    params: IdParamsSchema,
    body: { schema: OverheatRequestSchema, required: false },
    ok: { 202: { description: "Accepted", json: OverheatAcceptedSchema } },
    errors: {
      400: "Bad body, or a temperature below the sensor's high threshold",
      404: "Unknown sensor",
      409: "Sensor not running",
      413: "Body over 4 KiB",
    },
  },
  "POST /sensors/:id/faults": {
    summary: "Inject a fault into a running sensor: stuck, spike, dropout, late or duplicate",
    tag: "sensors",
    params: IdParamsSchema,
    body: { schema: FaultRequestSchema, required: true },
    ok: {
      202: { description: "Accepted, with every default resolved", json: FaultAcceptedSchema },
    },
    errors: {
      400: "Malformed body: unknown kind or field, both readings and durationMs, out of range",
      404: "Unknown sensor",
      409: "Sensor not running",
      413: "Body over 4 KiB",
    },
  },
  "DELETE /sensors/:id/faults": {
    summary: "End a sensor's faults, all or one kind",
    tag: "sensors",
    params: IdParamsSchema,
    query: FaultsQuerySchema,
    ok: { 204: { description: "Cleared; readings already held back are still sent late" } },
    errors: { 400: "Unknown kind", 404: "Unknown sensor" },
  },
  "GET /devices/:id": {
    summary: "Processor-side state of a device",
    tag: "devices",
    params: IdParamsSchema,
    ok: {
      200: {
        description:
          "`level`, `since`, `lastSeq`, `lastTs`, `counters`, `thresholds`, `ruleSeq`, `partition`, `offlineAfterMs`",
        json: anObject,
      },
    },
    errors: { 404: "Unknown device" },
  },
  "PATCH /devices/:id/rule": {
    summary: "Change a device's alarm rule: its readings carry it from the next one on",
    tag: "devices",
    params: IdParamsSchema,
    body: { schema: RulePatchSchema, required: true },
    ok: {
      202: {
        description: "Recorded; `appliesAfterSeq`: last seq under the old rule, or null",
        json: RuleAcceptedSchema,
      },
    },
    errors: {
      400: "Malformed body, unknown field, out of range, or low not below high once merged",
      404: "No sensor has this id",
      413: "Body over 4 KiB",
    },
  },
  "GET /devices/:id/readings": {
    summary: "Latest stored readings of a device, newest first",
    tag: "devices",
    params: IdParamsSchema,
    query: ReadingsQuerySchema,
    ok: { 200: { description: "`{deviceId, readings}`", json: anObject } },
    errors: { 400: "Bad limit" },
  },
  "GET /alerts": {
    summary: "Alert episodes, newest first",
    tag: "alerts",
    query: AlertsQuerySchema,
    ok: { 200: { description: "`{alerts}`", json: anObject } },
    errors: { 400: "Bad status, type, acked, deviceId or limit" },
  },
  "POST /alerts/:id/ack": {
    summary: "Acknowledge an alert episode (the first acknowledgement wins)",
    tag: "alerts",
    params: AlertIdParamsSchema,
    body: { schema: AckRequestSchema, required: true },
    ok: {
      200: { description: "The alert, with `ackedBy`, `ackedAt` and `note`", json: anObject },
    },
    errors: { 400: "Malformed body or id", 404: "Unknown alert", 413: "Body over 16 KiB" },
  },
  "GET /webhooks": {
    summary: "List webhook subscriptions (never their secrets)",
    tag: "webhooks",
    ok: { 200: { description: "`{webhooks: [{_id, url, events, createdAt}]}`", json: anObject } },
  },
  "POST /webhooks": {
    summary: "Subscribe a URL to alert events (raise, clear, offline, ack)",
    tag: "webhooks",
    body: { schema: WebhookRequestSchema, required: true },
    ok: { 201: { description: "The subscription, without its secret", json: anObject } },
    errors: {
      400: "Malformed body, non-http(s) URL, unknown event, or a non-public host (SSRF guard)",
      413: "Body over 16 KiB",
    },
  },
  "GET /webhooks/:id/dead-letters": {
    summary: "The deliveries to one subscription given up after the last attempt",
    tag: "webhooks",
    params: z.object({ id: z.string() }),
    query: ReadingsQuerySchema,
    ok: {
      200: {
        description: "`{deadLetters: [{subscriptionId, eventId, outcome}]}`",
        json: anObject,
      },
    },
    errors: { 400: "Bad limit", 404: "Unknown subscription" },
  },
  "DELETE /webhooks/:id": {
    summary: "Remove a webhook subscription",
    tag: "webhooks",
    params: z.object({ id: z.string() }),
    ok: { 204: { description: "Removed; it receives no more events" } },
    errors: { 404: "Unknown subscription" },
  },
  "POST /rules/backtest": {
    summary: "Replay stored readings through a candidate rule, next to the stored episodes",
    tag: "rules",
    body: { schema: BacktestRequestSchema, required: true },
    ok: {
      200: {
        description: "`{from, to, rule, readings, devices, summary, candidate, stored}`",
        json: anObject,
      },
    },
    errors: {
      400: "Malformed body or rule",
      413: "Body over 4 KiB",
      422: "`limit_exceeded`: more readings in the window than the bound, or past the deadline",
    },
  },
  "GET /": {
    summary: "The live dashboard page",
    tag: "dashboard",
    ok: { 200: { description: "The page", media: ["text/html"] } },
  },
  "GET /dashboard/events": {
    summary: "The dashboard's Server-Sent Events stream of snapshots",
    tag: "dashboard",
    query: DashboardQuerySchema,
    ok: { 200: { description: "`snapshot` events", media: ["text/event-stream"] } },
    errors: { 400: "Bad query" },
  },
  "GET /dashboard/:file": {
    summary: "The dashboard's page, scripts, styles and map outlines",
    tag: "dashboard",
    params: z.strictObject({ file: z.enum(DASHBOARD_FILES) }),
    ok: {
      200: {
        description: "The file",
        media: ["text/javascript", "text/css", "text/html", "application/json"],
      },
    },
    errors: { 404: "No such file" },
  },
};

/** Answers any route may give besides its own: all in the one error shape. */
const COMMON_ERRORS: Readonly<Record<number, string>> = {
  414: "Request target over 8 KiB",
  431: "Request headers over 32 KiB",
  500: "Internal error (no details)",
  503: "Timed out (`timeout`), or the role or store is not connected (`unavailable`)",
};
/** Answers of routes that need the bearer token when `API_TOKEN` is set. */
const UNSAFE_ERRORS: Readonly<Record<number, string>> = {
  401: "Missing or invalid bearer token (only when API_TOKEN is set)",
  429: "Rate limit reached; see Retry-After",
};

export interface OpenApiOptions {
  /** The app's version, for `info.version`. */
  readonly version: string;
}

type Json = Record<string, unknown>;

/** The OpenAPI 3.1 document of `operations` (default: the whole API). */
export function openApiDocument(
  { version }: OpenApiOptions,
  operations: Readonly<Record<RouteKey, Operation>> = OPERATIONS,
): Json {
  const paths: Record<string, Record<string, Json>> = {};
  for (const [key, operation] of Object.entries(operations) as [RouteKey, Operation][]) {
    const [method, route] = splitKey(key);
    const path = route.replace(/:(\w+)/g, "{$1}");
    (paths[path] ??= {})[method.toLowerCase()] = describe(key, method, route, operation);
  }
  return {
    openapi: "3.1.0",
    info: {
      title: "IoT pipeline HTTP API",
      version,
      description: "Control and query API of the IoT streaming pipeline; see docs/http-api.md.",
      license: { name: "Apache-2.0", identifier: "Apache-2.0" },
    },
    paths,
    components: {
      schemas: { Error: jsonSchema(ErrorBodySchema) },
      responses: {
        Error: {
          description: "An error, in the one error shape",
          content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } },
        },
      },
      securitySchemes: {
        bearer: {
          type: "http",
          scheme: "bearer",
          description: "Required on POST, PUT, PATCH and DELETE when API_TOKEN is set",
        },
      },
    },
  };
}

/** `"POST /sensors"` → `["POST", "/sensors"]`. */
export function splitKey(key: RouteKey): [Method, string] {
  const space = key.indexOf(" ");
  return [key.slice(0, space) as Method, key.slice(space + 1)];
}

function describe(key: RouteKey, method: Method, route: string, op: Operation): Json {
  const unsafe = method !== "GET";
  const parameters = [
    ...pathParameters(key, route, op.params),
    ...(op.query ? objectParameters(op.query, "query") : []),
  ];
  const errors = { ...COMMON_ERRORS, ...(unsafe ? UNSAFE_ERRORS : {}), ...op.errors };
  const responses: Record<string, Json> = {};
  for (const [status, why] of Object.entries(errors)) {
    responses[status] = {
      description: why,
      content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } },
    };
  }
  for (const [status, answer] of Object.entries(op.ok)) responses[status] = response(answer);
  responses.default = { $ref: "#/components/responses/Error" };
  return {
    operationId: operationId(method, route),
    summary: op.summary,
    tags: [op.tag],
    ...(parameters.length ? { parameters } : {}),
    ...(op.body
      ? {
        requestBody: {
          required: op.body.required,
          content: { "application/json": { schema: jsonSchema(op.body.schema) } },
          ...(op.body.required
            ? {}
            : { description: "May be empty, with or without a Content-Type" }),
        },
      }
      : {}),
    ...(unsafe ? { security: [{ bearer: [] }, {}] } : {}),
    responses,
  };
}

function response(answer: Answer): Json {
  if ("json" in answer) {
    return {
      description: answer.description,
      content: { "application/json": { schema: jsonSchema(answer.json) } },
    };
  }
  if ("media" in answer) {
    return {
      description: answer.description,
      content: Object.fromEntries(answer.media.map((m) => [m, { schema: { type: "string" } }])),
    };
  }
  return { description: answer.description };
}

/** One parameter per `:name`, each described by `params`; a name it lacks is a bug here. */
function pathParameters(key: RouteKey, route: string, params: z.ZodObject | undefined): Json[] {
  const names = [...route.matchAll(/:(\w+)/g)].map((m) => m[1]!);
  const described = params ? objectParameters(params, "path") : [];
  const missing = names.filter((n) => !described.some((p) => p.name === n));
  const extra = described.filter((p) => !names.includes(p.name as string));
  if (missing.length || extra.length) {
    throw new Error(
      `Path parameters disagree for ${key}: route has ${JSON.stringify(names)}, params describe ${
        JSON.stringify(described.map((p) => p.name))
      }`,
    );
  }
  return described.map((p) => ({ ...p, required: true }));
}

function objectParameters(schema: z.ZodObject, where: "path" | "query"): Json[] {
  const json = jsonSchema(schema) as { properties?: Record<string, Json>; required?: string[] };
  return Object.entries(json.properties ?? {}).map(([name, property]) => ({
    name,
    in: where,
    required: where === "path" || (json.required ?? []).includes(name),
    schema: property,
  }));
}

/** A request-side JSON Schema (defaults make a field optional), without `$schema`. */
function jsonSchema(schema: z.ZodType): Json {
  const { $schema: _, ...rest } = z.toJSONSchema(schema, {
    io: "input",
    unrepresentable: "any",
  }) as Json;
  return rest;
}

/** `POST /sensors/:id/overheat` → `postSensorsIdOverheat`. */
function operationId(method: Method, route: string): string {
  const words = route.split(/[^A-Za-z0-9]+/).filter(Boolean);
  if (words.length === 0) words.push("root");
  return method.toLowerCase() +
    words.map((w) => w[0]!.toUpperCase() + w.slice(1)).join("");
}
