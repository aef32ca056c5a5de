/**
 * The API's one error type and its JSON shape `{"error":{"code","message"}}`.
 * Handlers throw `ApiError`; `app.onError` renders it. Anything else becomes a
 * 500 without a stack trace.
 *
 * @module
 */
import type { ContentfulStatusCode } from "@hono/hono/utils/http-status";

export type ErrorCode =
  | "bad_request"
  | "unauthorized"
  | "not_found"
  | "conflict"
  | "payload_too_large"
  | "limit_exceeded"
  | "rate_limited"
  | "unavailable"
  | "internal";

export class ApiError extends Error {
  override name = "ApiError";
  constructor(
    readonly status: ContentfulStatusCode,
    readonly code: ErrorCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

export interface ErrorBody {
  readonly error: { readonly code: ErrorCode; readonly message: string };
}

export function errorBody(code: ErrorCode, message: string): ErrorBody {
  return { error: { code, message } };
}
