/**
 * The HTTP control API (Hono). Routes are grouped by resource; each handler
 * validates its input with the shared schemas and answers JSON.
 *
 * @module
 */
import { Hono } from "@hono/hono";
import { ApiError, errorBody } from "./http_errors.ts";
import type { HealthReport } from "./health.ts";
import type { Logger } from "./log.ts";

export interface ApiDeps {
  readonly health: () => Promise<HealthReport>;
  readonly info: { readonly role: string; readonly version: string };
  readonly logger: Logger;
}

export function createApi(deps: ApiDeps): Hono {
  const app = new Hono();

  app.get("/health", async (c) => {
    const report = await deps.health();
    return c.json(
      { status: report.ok ? "ok" : "degraded", ...deps.info, ...report },
      report.ok ? 200 : 503,
    );
  });

  app.notFound((c) =>
    c.json(errorBody("not_found", `No route for ${c.req.method} ${c.req.path}`), 404)
  );
  app.onError((err, c) => {
    if (err instanceof ApiError) return c.json(errorBody(err.code, err.message), err.status);
    deps.logger.error("request failed", { method: c.req.method, path: c.req.path, error: err });
    return c.json(errorBody("internal", "Internal error"), 500);
  });
  return app;
}
