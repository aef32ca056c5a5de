/**
 * Webhooks: the body of `POST /webhooks`, the stored subscription, and the outbox event a
 * subscription receives (the JSON body of each delivery). Event ids are deterministic
 * (`<alertId>:<event>`), so a replayed alert transition writes the same event again and the
 * receiver sees one idempotency key per event, however often it is delivered.
 *
 * @module
 */
import { z } from "zod";
import { describeIssues } from "./json_value.ts";
import { findForbiddenKey } from "./sensor_request.ts";
import type { AlertDoc } from "./documents.ts";

export const WEBHOOK_EVENTS = ["raise", "clear", "offline", "ack"] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENTS)[number];

export const WEBHOOK_URL_MAX = 2048;
export const WEBHOOK_SECRET_MIN = 16;
export const WEBHOOK_SECRET_MAX = 256;

export const WebhookRequestSchema = z.strictObject({
  /** Where events are POSTed: an http(s) URL. */
  url: z.string().max(WEBHOOK_URL_MAX).refine(isHttpUrl, { message: "must be an http(s) URL" }),
  /** The events this subscription receives, at least one, each once. */
  events: z.array(z.enum(WEBHOOK_EVENTS)).min(1).max(WEBHOOK_EVENTS.length)
    .refine((e) => new Set(e).size === e.length, { message: "must not repeat an event" }),
  /** Key of the HMAC-SHA256 signature of each body; never returned. */
  secret: z.string().min(WEBHOOK_SECRET_MIN).max(WEBHOOK_SECRET_MAX),
});

export type WebhookRequest = z.infer<typeof WebhookRequestSchema>;

export type WebhookRequestResult =
  | { readonly ok: true; readonly request: WebhookRequest }
  | { readonly ok: false; readonly message: string };

/** Validates a parsed JSON body. Never throws. */
export function parseWebhookRequest(body: unknown): WebhookRequestResult {
  const badKey = findForbiddenKey(body);
  if (badKey) return { ok: false, message: `Forbidden key: "${badKey}"` };
  const parsed = WebhookRequestSchema.safeParse(body);
  if (!parsed.success) return { ok: false, message: describeIssues(parsed.error) };
  return { ok: true, request: parsed.data };
}

function isHttpUrl(value: string): boolean {
  if (!URL.canParse(value)) return false;
  const { protocol } = new URL(value);
  return protocol === "http:" || protocol === "https:";
}

/** A stored subscription. */
export interface WebhookDoc {
  readonly _id: string;
  readonly url: string;
  readonly events: readonly WebhookEventType[];
  readonly secret: string;
  readonly createdAt: Date;
}

/** A subscription as the API shows it: never its secret. */
export type WebhookView = Omit<WebhookDoc, "secret">;

export function webhookView(doc: WebhookDoc): WebhookView {
  const { secret: _secret, ...view } = doc;
  return view;
}

/** One event in the outbox; its `_id` is the idempotency key. */
export interface OutboxEvent {
  readonly _id: string;
  readonly event: WebhookEventType;
  readonly alertId: string;
  /** When the transition happened (event time: the alert's own timestamps). */
  readonly occurredAt: Date;
  /** The alert as of the transition. */
  readonly alert: AlertDoc;
}

export function outboxEventId(alertId: string, event: WebhookEventType): string {
  return `${alertId}:${event}`;
}

/**
 * The events an alert snapshot stands for. A cleared snapshot stands for its raise too: the
 * store writer may merge a raise and its clear into one write, and the ids make a repeat harmless.
 */
export function outboxEventsOf(alert: AlertDoc): OutboxEvent[] {
  const opened: WebhookEventType = alert.type === "offline" ? "offline" : "raise";
  const events = [outboxEvent(alert, opened, alert.raisedAt)];
  if (alert.status === "cleared") {
    events.push(outboxEvent(alert, "clear", alert.clearedAt ?? alert.raisedAt));
  }
  return events;
}

/** The ack event of an acknowledged alert. */
export function ackEventOf(alert: AlertDoc): OutboxEvent | null {
  if (!alert.ackedAt) return null;
  return outboxEvent(alert, "ack", alert.ackedAt);
}

function outboxEvent(alert: AlertDoc, event: WebhookEventType, occurredAt: Date): OutboxEvent {
  return { _id: outboxEventId(alert._id, event), event, alertId: alert._id, occurredAt, alert };
}

/** The JSON body of a delivery. */
export function deliveryBody(e: OutboxEvent): string {
  return JSON.stringify({
    id: e._id,
    event: e.event,
    occurredAt: e.occurredAt.toISOString(),
    alert: e.alert,
  });
}
