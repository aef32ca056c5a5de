/**
 * The OpenAPI document against the two things it must agree with: the routes
 * the app really registers (both ways), and the reference in docs/http-api.md.
 * The document's validity is checked by a real validator in CI
 * (`deploy/check.sh openapi`).
 */
import assert from "node:assert/strict";
import { Hono } from "@hono/hono";
import { createApi } from "../adapters/http_api.ts";
import { silentLogger } from "../adapters/log.ts";
import { createMetrics } from "../adapters/metrics.ts";
import { dashboardRoutes } from "../adapters/dashboard_routes.ts";
import { openApiDocument, OPERATIONS, type RouteKey, splitKey } from "../adapters/openapi.ts";
import { ERROR_CODES } from "../schemas/http_api.ts";
import { testWith } from "./needs.ts";

/** Registrar for tests that need only the suite's permissions (reading docs/). */
const permitted = await testWith();

/** The API with every optional part mounted, as a process running all roles serves it. */
function fullApi(): Hono {
  return createApi({
    health: () => Promise.resolve({ ok: true, checks: {} }),
    info: { role: "all", version: "test" },
    logger: silentLogger,
    metrics: createMetrics(() => ({})),
    dashboard: dashboardRoutes({
      source: {
        snapshot: () => {
          throw new Error("not asked in this test");
        },
      },
      assets: new URL("../dashboard/", import.meta.url),
    }),
  });
}

/** `"METHOD /path"` of every route (middleware excluded), as Hono registered it. */
function routeKeys(app: Hono): Set<string> {
  return new Set(app.routes.filter((r) => r.method !== "ALL").map((r) => `${r.method} ${r.path}`));
}

/** What one side has and the other lacks. */
function drift(routes: Set<string>, documented: Set<string>) {
  return {
    undocumented: [...routes].filter((k) => !documented.has(k)).sort(),
    unrouted: [...documented].filter((k) => !routes.has(k)).sort(),
  };
}

const DOCUMENTED = new Set(Object.keys(OPERATIONS));

Deno.test("every route of the app has an OpenAPI entry, and every entry a route", () => {
  assert.deepEqual(drift(routeKeys(fullApi()), DOCUMENTED), { undocumented: [], unrouted: [] });
});

Deno.test("a route added without an OpenAPI entry is caught, and so is an entry left behind", () => {
  const app = fullApi();
  app.post("/sensors/:id/reboot", (c) => c.body(null, 202));
  const routes = routeKeys(app);
  routes.delete("GET /alerts");
  assert.deepEqual(drift(routes, DOCUMENTED), {
    undocumented: ["POST /sensors/:id/reboot"],
    unrouted: ["GET /alerts"],
  });
});

Deno.test("GET /openapi.json serves the OpenAPI 3.1 document of the running version", async () => {
  const res = await fullApi().request("/openapi.json");
  assert.equal(res.status, 200);
  assert.match(res.headers.get("Content-Type") ?? "", /^application\/json/);
  const doc = await res.json();
  assert.equal(doc.openapi, "3.1.0");
  assert.equal(doc.info.version, "test");
  const overheat = doc.paths["/sensors/{id}/overheat"].post;
  assert.equal(overheat.requestBody.required, false, "the body may be empty");
  assert.deepEqual(overheat.parameters.map((p: { name: string; in: string }) => [p.name, p.in]), [
    ["id", "path"],
  ]);
  assert.deepEqual(overheat.security, [{ bearer: [] }, {}]);
  assert.equal(doc.paths["/health"].get.security, undefined, "reads need no token");
  assert.deepEqual(
    doc.paths["/alerts"].get.parameters.map((p: { name: string }) => p.name),
    ["status", "acked", "type", "deviceId", "limit"],
  );
  // Every error answer points at the one error shape.
  assert.deepEqual(doc.paths["/sensors"].post.responses["409"].content, {
    "application/json": { schema: { $ref: "#/components/schemas/Error" } },
  });
  assert.deepEqual(doc.components.schemas.Error.properties.error.properties.code.enum, [
    ...ERROR_CODES,
  ]);
  assert.deepEqual(doc, openApiDocument({ version: "test" }));
});

Deno.test("operation ids are unique", () => {
  const doc = openApiDocument({ version: "test" }) as {
    paths: Record<string, Record<string, { operationId: string }>>;
  };
  const ids = Object.values(doc.paths).flatMap((ops) =>
    Object.values(ops).map((o) => o.operationId)
  );
  assert.equal(new Set(ids).size, ids.length);
  assert.equal(ids.length, DOCUMENTED.size);
});

Deno.test("openApiDocument() refuses an entry whose path parameters are not all described", () => {
  assert.throws(
    () =>
      openApiDocument({ version: "x" }, {
        "GET /things/:id": { summary: "s", tag: "t", ok: { 200: { description: "d" } } },
      }),
    /Path parameters disagree for GET \/things\/:id/,
  );
});

/** `"METHOD /path"` of each row of the reference table in docs/http-api.md. */
function documentedInMarkdown(markdown: string): Set<string> {
  const keys = new Set<string>();
  for (const line of markdown.split("\n")) {
    const match = /^\| `(GET|POST|PUT|PATCH|DELETE) (\/[^`?\s]*)[^`]*` +\|/.exec(line);
    if (match) keys.add(`${match[1]} ${match[2]}`);
  }
  return keys;
}

permitted.test("docs/http-api.md lists every operation of the OpenAPI document, and no other", async () => {
  const markdown = await Deno.readTextFile(new URL("../docs/http-api.md", import.meta.url));
  const inDocs = documentedInMarkdown(markdown);
  assert.ok(inDocs.size > 10, "the table was found");
  assert.deepEqual(drift(inDocs, DOCUMENTED), { undocumented: [], unrouted: [] });
  // And the parser sees a row the document lacks.
  const extra = documentedInMarkdown(`${markdown}\n| \`PUT /nowhere?x=1\` | nothing |\n`);
  assert.deepEqual(drift(extra, DOCUMENTED).undocumented, ["PUT /nowhere"]);
});

Deno.test("splitKey() splits a route key at its first space", () => {
  assert.deepEqual(splitKey("POST /sensors/:id/overheat" satisfies RouteKey), [
    "POST",
    "/sensors/:id/overheat",
  ]);
});
