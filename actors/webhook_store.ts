/**
 * Port: webhook subscriptions and the outbox of events they receive. The
 * store writes outbox events together with the alert transitions they stand
 * for (`DeviceStore.write`) and with acknowledgements (`StoreQueries.acknowledge`);
 * the webhook dispatcher reads them here and records each delivery's outcome.
 * MongoDB and Deno KV adapters implement it.
 *
 * @module
 */
import type { OutboxEvent, WebhookDoc } from "../schemas/webhook.ts";

/** How a delivery of one event to one subscription ended. */
export type DeliveryOutcome =
  | { readonly status: "delivered"; readonly attempts: number; readonly at: Date }
  | {
    readonly status: "dead";
    readonly attempts: number;
    readonly at: Date;
    /** Why the last attempt failed. */
    readonly error: string;
  };

/** A dead-lettered delivery, as `deadLetters()` lists it. */
export interface DeadLetter {
  readonly subscriptionId: string;
  readonly eventId: string;
  readonly outcome: DeliveryOutcome;
}

export interface WebhookStore {
  addWebhook(doc: WebhookDoc): Promise<void>;
  /** Oldest first. */
  webhooks(): Promise<readonly WebhookDoc[]>;
  /** False when there was no such subscription. */
  removeWebhook(id: string): Promise<boolean>;
  /** Events not settled yet, oldest `occurredAt` first, at most `limit`. */
  pendingEvents(limit: number): Promise<readonly OutboxEvent[]>;
  /** The outcomes recorded for `eventId`, by subscription id. */
  outcomes(eventId: string): Promise<ReadonlyMap<string, DeliveryOutcome>>;
  /** Records how the delivery of `eventId` to `subscriptionId` ended (the first record wins). */
  recordOutcome(eventId: string, subscriptionId: string, outcome: DeliveryOutcome): Promise<void>;
  /** Marks `eventId` settled: every subscription it matched has an outcome. */
  settle(eventId: string): Promise<void>;
  /** The dead letters of one subscription, at most `limit`. */
  deadLetters(subscriptionId: string, limit: number): Promise<readonly DeadLetter[]>;
}
