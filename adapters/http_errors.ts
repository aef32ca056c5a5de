/**
 * The API's one error type and its JSON shape `{"error":{"code","message"}}`
 * (`schemas/http_api.ts`). Handlers throw `ApiError`; `app.onError` renders
 * it, and any other `HTTPException` (Hono's own middleware) in the same shape
 * through `errorFor()`. Anything else becomes a 500 without a stack trace.
 *
 * @module
 */
import { HTTPException } from "@hono/hono/http-exception";
import type { ContentfulStatusCode } from "@hono/hono/utils/http-status";
import type { ErrorBody, ErrorCode } from "../schemas/http_api.ts";

export type { ErrorBody, ErrorCode };

/** An `HTTPException` with the API's error code, so Hono's middleware can throw it too. */
export class ApiError extends HTTPException {
  override name = "ApiError";
  constructor(
    status: ContentfulStatusCode,
    readonly code: ErrorCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(status, { message, ...(options?.cause === undefined ? {} : { cause: options.cause }) });
  }
}

export function errorBody(code: ErrorCode, message: string): ErrorBody {
  return { error: { code, message } };
}

/** The code of an `HTTPException` thrown by a Hono middleware, from its status. */
const CODE_BY_STATUS: Readonly<Record<number, ErrorCode>> = {
  400: "bad_request",
  401: "unauthorized",
  404: "not_found",
  405: "method_not_allowed",
  408: "timeout",
  409: "conflict",
  413: "payload_too_large",
  414: "uri_too_long",
  422: "limit_exceeded",
  429: "rate_limited",
  431: "headers_too_large",
  503: "unavailable",
  504: "timeout",
};

/** Status, code and message of an `HTTPException`, whoever threw it. */
export function errorFor(
  err: HTTPException,
): { status: ContentfulStatusCode; code: ErrorCode; message: string } {
  if (err instanceof ApiError) return { status: err.status, code: err.code, message: err.message };
  const status = err.status;
  const code = Object.hasOwn(CODE_BY_STATUS, status)
    ? CODE_BY_STATUS[status]!
    : status >= 500
    ? "internal"
    : "bad_request";
  return { status, code, message: err.message || `HTTP ${status}` };
}
