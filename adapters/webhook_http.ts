/**
 * The webhook transport over HTTP (`fetch`): one POST, redirects not
 * followed (a redirect is a failed attempt), the response body discarded.
 *
 * @module
 */
import type { WebhookRequest, WebhookTransport } from "../actors/webhook_dispatcher.ts";

export const httpWebhookTransport: WebhookTransport = async (request: WebhookRequest) => {
  const response = await fetch(request.url, {
    method: "POST",
    headers: request.headers,
    body: request.body,
    signal: request.signal,
    redirect: "manual",
  });
  await response.body?.cancel();
  return { status: response.status };
};
