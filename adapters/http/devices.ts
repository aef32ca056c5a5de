/**
 * `/devices`: a device's stored state and latest readings (the store's queries), and
 * `PATCH /devices/:id/rule`, which changes the rule its sensor carries (the sensor fleet).
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
  refused,
} from "./helpers.ts";
import { parseRulePatch } from "../../schemas/rule_request.ts";
import type { SensorControl } from "../../actors/sensor_control.ts";
import type { StoreQueries } from "../../actors/store_queries.ts";

export interface DeviceRoutesOptions {
  /** The store's queries; absent: the reads answer 503. */
  readonly port: StoreQueries | undefined;
  /** The store is yet to be connected: the 503 says "not connected yet". */
  readonly connecting: boolean;
  /** The sensor fleet, which carries a device's rule; absent: `PATCH /:id/rule` answers 503. */
  readonly fleet: { readonly port: SensorControl | undefined; readonly connecting: boolean };
}

/** The `/devices` sub-app. */
export function deviceRoutes({ port, connecting, fleet }: DeviceRoutesOptions): Hono {
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
