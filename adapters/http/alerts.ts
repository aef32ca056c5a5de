/**
 * `/alerts`: list stored alerts by status, device, type and acknowledgement, and acknowledge
 * one. Needs the store's queries.
 *
 * @module
 */
import { Hono } from "@hono/hono";
import { ApiError } from "../http_errors.ts";
import {
  available,
  DEFAULT_PAGE,
  idParam,
  intParam,
  jsonBody,
  limitBody,
  MAX_PAGE,
  quote,
} from "./helpers.ts";
import { ALERT_ID_PATTERN, parseAckRequest } from "../../schemas/ack_request.ts";
import { ALERT_TYPES, type AlertStatus } from "../../schemas/documents.ts";
import type { StoreQueries } from "../../actors/store_queries.ts";

const ALERT_STATUSES: readonly AlertStatus[] = ["active", "cleared"];

export interface AlertRoutesOptions {
  /** The store's queries; absent: every route answers 503. */
  readonly port: StoreQueries | undefined;
  /** The store is yet to be connected: the 503 says "not connected yet". */
  readonly connecting: boolean;
  /** The acknowledgement's time. */
  readonly now: () => Date;
}

/** The `/alerts` sub-app. */
export function alertRoutes({ port, connecting, now }: AlertRoutesOptions): Hono {
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
