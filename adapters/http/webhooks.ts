/**
 * `/webhooks`: add, list and remove webhook subscriptions, and read a subscription's dead
 * letters. Needs the store's `WebhookStore`.
 *
 * @module
 */
import { Hono } from "@hono/hono";
import { ApiError } from "../http_errors.ts";
import {
  available,
  DEFAULT_PAGE,
  intParam,
  jsonBody,
  limitBody,
  MAX_PAGE,
  NO_STORE,
  quote,
} from "./helpers.ts";
import type { WebhookStore } from "../../actors/webhook_store.ts";
import type { WebhookTargetCheck } from "../../actors/webhook_dispatcher.ts";
import { parseWebhookRequest, webhookView } from "../../schemas/webhook.ts";

export interface WebhookRoutesOptions {
  /** The store's subscriptions; absent: every route answers 503. */
  readonly port: WebhookStore | undefined;
  /** The store is yet to be connected: the 503 says "not connected yet". */
  readonly connecting: boolean;
  /** A new subscription's `createdAt`. */
  readonly now: () => Date;
  /** Refuses URLs a subscription must not name (SSRF guard); absent: none refused. */
  readonly checkUrl?: WebhookTargetCheck | undefined;
}

/** Webhook subscriptions (docs/webhooks.md): their secrets are never answered. */
export function webhookRoutes(
  { port, connecting, now, checkUrl = () => Promise.resolve(undefined) }: WebhookRoutesOptions,
): Hono {
  const webhooks = () => available(port, "store", connecting);
  return new Hono()
    .get("/", async (c) => {
      const store = webhooks();
      return c.json({ webhooks: (await store.webhooks()).map(webhookView) }, 200, NO_STORE);
    })
    .post(
      "/",
      limitBody(16 * 1024),
      async (c) => {
        const store = webhooks();
        const parsed = parseWebhookRequest(await jsonBody(c));
        if (!parsed.ok) throw new ApiError(400, "bad_request", parsed.message);
        const refused = await checkUrl(parsed.request.url);
        if (refused !== undefined) throw new ApiError(400, "bad_request", refused);
        const doc = { _id: crypto.randomUUID(), ...parsed.request, createdAt: now() };
        await store.addWebhook(doc);
        return c.json(webhookView(doc), 201, { location: `/webhooks/${doc._id}` });
      },
    )
    .get("/:id/dead-letters", async (c) => {
      const store = webhooks();
      const id = c.req.param("id");
      const limit = intParam(c, "limit", { min: 1, max: MAX_PAGE, fallback: DEFAULT_PAGE });
      const known = WEBHOOK_ID_PATTERN.test(id) &&
        (await store.webhooks()).some((w) => w._id === id);
      if (!known) throw new ApiError(404, "not_found", `Unknown webhook: ${quote(id)}`);
      return c.json({ deadLetters: await store.deadLetters(id, limit) }, 200, NO_STORE);
    })
    .delete("/:id", async (c) => {
      const store = webhooks();
      const id = c.req.param("id");
      if (!WEBHOOK_ID_PATTERN.test(id) || !(await store.removeWebhook(id))) {
        throw new ApiError(404, "not_found", `Unknown webhook: ${quote(id)}`);
      }
      return c.body(null, 204);
    });
}

const WEBHOOK_ID_PATTERN = /^[0-9a-f-]{36}$/;
