/**
 * `/sensors`: list, add, read and remove the simulated sensors, and command one (overheat,
 * inject or clear faults). Needs the sensors role's `SensorControl`.
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
  MAX_BODY_BYTES,
  MAX_PAGE,
  optionalJsonBody,
  quote,
  refused,
} from "./helpers.ts";
import { parseSensorRequest } from "../../schemas/sensor_request.ts";
import { parseOverheatRequest } from "../../schemas/overheat_request.ts";
import { parseFaultKind, parseFaultRequest } from "../../schemas/fault_request.ts";
import { FAULT_KINDS } from "../../domain/sensor_faults.ts";
import type { SensorControl } from "../../actors/sensor_control.ts";

export interface SensorRoutesOptions {
  /** The sensors role's control; absent: every route answers 503. */
  readonly port: SensorControl | undefined;
  /** The port is yet to be connected: the 503 says "not connected yet". */
  readonly connecting: boolean;
}

/** The `/sensors` sub-app. */
export function sensorRoutes({ port, connecting }: SensorRoutesOptions): Hono {
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
