/**
 * The HTTP API's own wire shapes, defined once: the error body every error
 * answers with, the path and query parameters, and the small response bodies
 * that have no other home. Request bodies live beside their parsers
 * (`sensor_request.ts`, `overheat_request.ts`, `dashboard.ts`). The OpenAPI
 * document (`adapters/openapi.ts`) is generated from these schemas.
 *
 * @module
 */
import { z } from "zod";
import { DeviceIdSchema } from "./reading.ts";
import { ALERT_ID_PATTERN } from "./ack_request.ts";
import { ALERT_TYPES } from "./documents.ts";

/** Every `error.code` the API answers with. */
export const ERROR_CODES = [
  "bad_request",
  "unauthorized",
  "not_found",
  "method_not_allowed",
  "conflict",
  "payload_too_large",
  "uri_too_long",
  "limit_exceeded",
  "headers_too_large",
  "rate_limited",
  "timeout",
  "unavailable",
  "internal",
] as const;

export const ErrorCodeSchema = z.enum(ERROR_CODES);
export type ErrorCode = z.infer<typeof ErrorCodeSchema>;

/** `{"error":{"code","message"}}`: the one shape of every error answer. */
export const ErrorBodySchema = z.strictObject({
  error: z.strictObject({
    code: ErrorCodeSchema,
    /** Sentence case, detail after a colon, client values quoted; never a stack trace. */
    message: z.string(),
  }),
});
export type ErrorBody = z.infer<typeof ErrorBodySchema>;

/** A page of a list route: `limit` from 1 to 1000, default 100. */
export const PAGE_LIMIT = { min: 1, max: 1000, fallback: 100 } as const;

const limit = z.int().min(PAGE_LIMIT.min).max(PAGE_LIMIT.max).default(PAGE_LIMIT.fallback);

/** `:id` of `/sensors/:id` and `/devices/:id`. */
export const IdParamsSchema = z.strictObject({ id: DeviceIdSchema });

/** `:id` of `/alerts/:id/ack`: the alert's `_id`, `<deviceId>:<type>:<raisedSeq>`. */
export const AlertIdParamsSchema = z.strictObject({
  id: z.string().regex(ALERT_ID_PATTERN, "must be <deviceId>:<type>:<raisedSeq>"),
});

/** `GET /sensors?offset=&limit=`. */
export const SensorsQuerySchema = z.strictObject({
  offset: z.int().min(0).max(Number.MAX_SAFE_INTEGER).default(0),
  limit,
});

/** `GET /devices/:id/readings?limit=`. */
export const ReadingsQuerySchema = z.strictObject({ limit });

/** `GET /alerts?status=&acked=&deviceId=&limit=`. */
export const AlertsQuerySchema = z.strictObject({
  status: z.enum(["active", "cleared"]).optional(),
  /** `false`: only the episodes nobody has acknowledged yet. */
  acked: z.enum(["true", "false"]).optional(),
  type: z.enum(ALERT_TYPES).optional(),
  deviceId: DeviceIdSchema.optional(),
  limit,
});

/** `/livez` and `/readyz`. */
export const ProbeBodySchema = z.object({
  status: z.enum(["ok", "degraded"]),
  checks: z.record(z.string(), z.unknown()).optional(),
});

/** `201` of `POST /sensors`. */
export const CreatedSensorsSchema = z.strictObject({ ids: z.array(DeviceIdSchema).min(1) });

/** `202` of `POST /sensors/:id/overheat`. */
export const OverheatAcceptedSchema = z.strictObject({
  id: DeviceIdSchema,
  readings: z.int(),
  temperature: z.number(),
});
