/**
 * What the API's route groups share: the port guard (503 while a port is absent or still
 * connecting), the table from a sensor command's refusal to its status and error code, body
 * limits and parsing, path and query parameters, and quoting client values in error messages.
 *
 * @module
 */
import type { Context } from "@hono/hono";
import { bodyLimit } from "@hono/hono/body-limit";
import { ApiError, type ErrorCode } from "../http_errors.ts";
import { PAGE_LIMIT } from "../../schemas/http_api.ts";
import { DEVICE_ID_PATTERN } from "../../schemas/reading.ts";

/** Probe answers describe this instant: caches and proxies must not keep them. */
export const NO_STORE = { "Cache-Control": "no-store" };

/** Largest accepted request body. */
export const MAX_BODY_BYTES = 2 * 1024 * 1024;
/** Largest `limit` any list route accepts. */
export const MAX_PAGE = PAGE_LIMIT.max;
/** `limit` of a list route that names none. */
export const DEFAULT_PAGE = PAGE_LIMIT.fallback;

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

/** The API's error for a command the sensors refused, by `REFUSAL_STATUS`. */
export function refused(code: SensorRefusal, message: string): ApiError {
  const [status, errorCode] = REFUSAL_STATUS[code];
  return new ApiError(status, errorCode, message);
}

/** A body limit of `bytes` whose 413 is in the one error shape, naming the limit. */
export function limitBody(bytes: number) {
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

/**
 * `port`, or a 503 `unavailable` saying why there is none: still connecting, or a role this
 * process does not run.
 */
export function available<T>(
  port: T | undefined,
  role: "sensors" | "store",
  connecting: boolean,
): T {
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
export async function jsonBody(c: Context): Promise<unknown> {
  requireJsonType(c);
  return parseJson(await c.req.text());
}

/**
 * Like `jsonBody()` for a route whose body is optional: an empty body is
 * `undefined`, whatever its Content-Type (clients often send
 * `application/json` with no body).
 */
export async function optionalJsonBody(c: Context): Promise<unknown> {
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

/** A path or query value that must be a device id (`DEVICE_ID_PATTERN`), or a 400 naming it. */
export function idParam(value: string, name: string): string {
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
export function intParam(
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
export function quote(value: string): string {
  return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value);
}
