/**
 * Port: webhook subscriptions and the outbox of events they receive. The
 * store writes outbox events together with the alert transitions they stand
 * for (`DeviceStore.write`) and with acknowledgements (`StoreQueries.acknowledge`);
 * the webhook dispatcher reads them here and records, on each event, every
 * attempt and outcome of its delivery to each subscription. MongoDB and Deno
 * KV adapters implement it.
 *
 * One dispatcher per store delivers: the one holding the **lease** (one
 * document in the store: owner, expiry, fencing token). Every write a
 * dispatcher makes to an event carries its token (`fence`), and the store
 * refuses it (answers false) once a later owner took over, so a dispatcher
 * that lost the lease without knowing cannot mark events (docs/webhooks.md).
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

/** Where the delivery of one event to one subscription stands, stored on the event. */
export type DeliveryState =
  | DeliveryOutcome
  | {
    readonly status: "retrying";
    /** Attempts made so far (all failed). */
    readonly attempts: number;
    /** Not attempted again before this. */
    readonly nextAt: Date;
    /** Why the last attempt failed. */
    readonly error: string;
  };

/** A pending event with where each of its deliveries stands, by subscription id. */
export interface PendingEvent {
  readonly event: OutboxEvent;
  readonly deliveries: Readonly<Record<string, DeliveryState>>;
}

/** A dead-lettered delivery, as `deadLetters()` lists it. */
export interface DeadLetter {
  readonly subscriptionId: string;
  readonly eventId: string;
  readonly outcome: DeliveryOutcome;
}

/** The dispatcher lease as stored. */
export interface Lease {
  readonly owner: string;
  /** Grows by one at every change of owner: the fencing token of the owner's writes. */
  readonly token: number;
  readonly expiresAt: Date;
}

export interface WebhookStore {
  addWebhook(doc: WebhookDoc): Promise<void>;
  /** Oldest first. */
  webhooks(): Promise<readonly WebhookDoc[]>;
  /** False when there was no such subscription. */
  removeWebhook(id: string): Promise<boolean>;
  /**
   * Takes the lease for `owner` until `now + ttlMs` if it is free, expired or `owner`'s already;
   * answers the lease as stored afterwards (someone else's when it was not free). A change of
   * owner raises the token and stamps every pending event with it before answering.
   */
  acquireLease(owner: string, now: Date, ttlMs: number): Promise<Lease>;
  /** Gives the lease up if `owner` still holds it with `token`, so the next owner need not wait. */
  releaseLease(owner: string, token: number): Promise<void>;
  /**
   * Events not settled yet, oldest `occurredAt` first, at most `limit`. An event never attempted
   * may be the replay of one settled already (a crash replays readings); those `deliverable`
   * says a subscription would be sent (default: all) are looked for among the settled and
   * dropped if found; the others are answered unchecked, as settling one again changes nothing
   * (on FerretDB each lookup reads the whole settled collection).
   */
  pendingEvents(
    limit: number,
    deliverable?: (event: OutboxEvent) => boolean,
  ): Promise<readonly PendingEvent[]>;
  /**
   * Records where the delivery of `eventId` to `subscriptionId` stands, unless an outcome is
   * recorded already (the first outcome wins). False when refused: a later lease holder
   * (token above `fence`) wrote the event.
   */
  recordDelivery(
    eventId: string,
    subscriptionId: string,
    state: DeliveryState,
    fence: number,
  ): Promise<boolean>;
  /**
   * Marks these events settled at `at` (every subscription each matched has an outcome, as read
   * by `pendingEvents`); answers how many were, the others being refused by the fence.
   */
  settle(events: readonly PendingEvent[], at: Date, fence: number): Promise<number>;
  /**
   * Deletes events settled before `before`, with their outcomes and dead letters, at most `limit`
   * events; answers how many went.
   */
  prune(before: Date, limit: number): Promise<number>;
  /** The dead letters of one subscription, at most `limit`. */
  deadLetters(subscriptionId: string, limit: number): Promise<readonly DeadLetter[]>;
}
