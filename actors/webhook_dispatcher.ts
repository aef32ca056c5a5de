/**
 * Delivers the outbox's events to the webhook subscriptions that want them:
 * at least once, each POST carrying the event id as `Idempotency-Key` and an
 * HMAC-SHA256 signature of the body. A failed attempt is retried after an
 * exponential backoff with full jitter; after `maxAttempts` the delivery goes
 * to the subscription's dead letters. An event is settled once every
 * subscription it matches has an outcome (delivered or dead). Nothing is held
 * only in memory but the attempt counts: a restart resumes from the store,
 * counting attempts anew (docs/webhooks.md).
 *
 * @module
 */
import { Actor } from "./actor.ts";
import type { TimerId, Timers } from "./timers.ts";
import type { Logger } from "./logger.ts";
import type { WebhookStore } from "./webhook_store.ts";
import { backoffDelayMs, type BackoffOptions, signatureOf } from "../domain/webhook_delivery.ts";
import { deliveryBody, type OutboxEvent, type WebhookDoc } from "../schemas/webhook.ts";

/** One POST as the transport makes it. */
export interface WebhookRequest {
  readonly url: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
  readonly signal: AbortSignal;
}

/** Port: sends one POST; resolves with the status, rejects when no answer came. */
export type WebhookTransport = (request: WebhookRequest) => Promise<{ readonly status: number }>;

export type WebhookDispatcherMsg =
  /** Time to look for pending events and due retries. */
  | { readonly type: "poll" }
  /** An attempt ended: `error` unset means delivered. */
  | {
    readonly type: "attempted";
    readonly event: OutboxEvent;
    readonly subscriptionId: string;
    readonly error?: string;
  };

export interface WebhookDispatcherStats {
  readonly delivered: number;
  readonly failedAttempts: number;
  readonly deadLettered: number;
  /** Events not settled at the last poll (at most the poll's batch). */
  readonly pending: number;
  readonly inFlight: number;
}

export interface WebhookDispatcherOptions {
  readonly store: WebhookStore;
  readonly transport: WebhookTransport;
  readonly timers: Timers;
  readonly logger: Logger;
  readonly pollMs: number;
  readonly maxAttempts: number;
  readonly backoff: BackoffOptions;
  /** How long one attempt may wait for an answer. */
  readonly timeoutMs: number;
  /** Events read per poll (default 100). */
  readonly batch?: number;
  readonly random?: () => number;
}

interface Delivery {
  attempts: number;
  nextAt: number;
  inFlight: boolean;
}

export class WebhookDispatcher implements AsyncDisposable {
  readonly #options: WebhookDispatcherOptions;
  readonly #actor: Actor<WebhookDispatcherMsg>;
  readonly #interval: TimerId;
  readonly #abort = new AbortController();
  /** By `<subscriptionId>|<eventId>`: deliveries without an outcome yet. */
  readonly #deliveries = new Map<string, Delivery>();
  /** By event id: the subscriptions with an outcome, as loaded from the store and since. */
  readonly #done = new Map<string, Set<string>>();
  #delivered = 0;
  #failedAttempts = 0;
  #deadLettered = 0;
  #pending = 0;
  #inFlight = 0;
  #polling = false;

  constructor(options: WebhookDispatcherOptions) {
    this.#options = options;
    this.#actor = new Actor((msg) => this.#handle(msg), {
      name: "webhook-dispatcher",
      capacity: 10_000,
      onFailure: (error) =>
        options.logger.error("webhook dispatcher failed", { error: error as Error }),
    });
    this.#interval = options.timers.setInterval(() => this.poll(), options.pollMs);
  }

  get stats(): WebhookDispatcherStats {
    return {
      delivered: this.#delivered,
      failedAttempts: this.#failedAttempts,
      deadLettered: this.#deadLettered,
      pending: this.#pending,
      inFlight: this.#inFlight,
    };
  }

  /** True while a poll is queued or running or an attempt has not been recorded. */
  get busy(): boolean {
    return this.#polling || this.#inFlight > 0;
  }

  /** Asks for a poll now (one at a time: a poll already queued makes this a no-op). */
  poll(): void {
    if (this.#polling) return;
    this.#polling = true;
    if (!this.#actor.trySend({ type: "poll" })) this.#polling = false;
  }

  /**
   * A store failure does not stop delivery: what it left unrecorded is still pending in the
   * store, and the next poll retries it (a repeat reaches the receiver with the same key).
   */
  async #handle(msg: WebhookDispatcherMsg): Promise<void> {
    try {
      switch (msg.type) {
        case "poll":
          return await this.#poll();
        case "attempted":
          return await this.#attempted(msg);
        default:
          msg satisfies never;
      }
    } catch (error) {
      this.#options.logger.warn("webhook store failed; retrying on the next poll", {
        error: error as Error,
      });
    } finally {
      if (msg.type === "poll") this.#polling = false;
    }
  }

  async #poll() {
    const { store, timers, batch = 100 } = this.#options;
    const [events, subscriptions] = await Promise.all([
      store.pendingEvents(batch),
      store.webhooks(),
    ]);
    this.#pending = events.length;
    // Retry state of deleted subscriptions and settled events goes.
    const pending = new Set(events.map((e) => e._id));
    const current = new Set(subscriptions.map((s) => s._id));
    for (const [key, delivery] of this.#deliveries) {
      const [subscriptionId, eventId] = splitKey(key);
      if (!delivery.inFlight && (!current.has(subscriptionId) || !pending.has(eventId))) {
        this.#deliveries.delete(key);
      }
    }
    const now = timers.now();
    for (const event of events) {
      const matching = subscriptions.filter((s) => s.events.includes(event.event));
      let done = this.#done.get(event._id);
      if (!done) {
        done = new Set((await store.outcomes(event._id)).keys());
        this.#done.set(event._id, done);
      }
      const open = matching.filter((s) => !done.has(s._id));
      if (open.length === 0) {
        await store.settle(event._id);
        this.#done.delete(event._id);
        continue;
      }
      for (const subscription of open) {
        const key = `${subscription._id}|${event._id}`;
        let delivery = this.#deliveries.get(key);
        if (!delivery) {
          delivery = { attempts: 0, nextAt: now, inFlight: false };
          this.#deliveries.set(key, delivery);
        }
        if (delivery.inFlight || delivery.nextAt > now) continue;
        delivery.inFlight = true;
        this.#inFlight++;
        void this.#attempt(event, subscription);
      }
    }
  }

  /** One POST; its outcome comes back as a message, so a slow receiver holds up no other. */
  async #attempt(event: OutboxEvent, subscription: WebhookDoc) {
    const body = deliveryBody(event);
    let error: string | undefined;
    try {
      const signal = AbortSignal.any([
        this.#abort.signal,
        AbortSignal.timeout(this.#options.timeoutMs),
      ]);
      const { status } = await this.#options.transport({
        url: subscription.url,
        headers: {
          "content-type": "application/json",
          "idempotency-key": event._id,
          "x-signature-256": await signatureOf(subscription.secret, body),
          "x-webhook-event": event.event,
        },
        body,
        signal,
      });
      if (status < 200 || status > 299) error = `Receiver answered: status ${status}`;
    } catch (err) {
      error = `No answer from the receiver: ${err instanceof Error ? err.message : String(err)}`;
    }
    if (this.#abort.signal.aborted) return;
    const msg: WebhookDispatcherMsg = error === undefined
      ? { type: "attempted", event, subscriptionId: subscription._id }
      : { type: "attempted", event, subscriptionId: subscription._id, error };
    await this.#actor.send(msg).catch(() => {}); // Stopped: the store still has it pending.
  }

  async #attempted(msg: Extract<WebhookDispatcherMsg, { type: "attempted" }>) {
    const key = `${msg.subscriptionId}|${msg.event._id}`;
    const delivery = this.#deliveries.get(key) ?? { attempts: 0, nextAt: 0, inFlight: true };
    delivery.inFlight = false;
    delivery.attempts++;
    try {
      await this.#outcome(msg, key, delivery);
    } finally {
      this.#inFlight--;
    }
  }

  async #outcome(
    msg: Extract<WebhookDispatcherMsg, { type: "attempted" }>,
    key: string,
    delivery: Delivery,
  ) {
    const { store, timers, maxAttempts, backoff, random, logger } = this.#options;
    const at = new Date(timers.now());
    if (msg.error === undefined) {
      await store.recordOutcome(msg.event._id, msg.subscriptionId, {
        status: "delivered",
        attempts: delivery.attempts,
        at,
      });
      this.#delivered++;
      this.#finished(key, msg);
      return;
    }
    this.#failedAttempts++;
    if (delivery.attempts >= maxAttempts) {
      await store.recordOutcome(msg.event._id, msg.subscriptionId, {
        status: "dead",
        attempts: delivery.attempts,
        at,
        error: msg.error,
      });
      this.#deadLettered++;
      logger.warn("webhook delivery dead-lettered", {
        subscriptionId: msg.subscriptionId,
        eventId: msg.event._id,
        attempts: delivery.attempts,
        error: msg.error,
      });
      this.#finished(key, msg);
      return;
    }
    delivery.nextAt = timers.now() + backoffDelayMs(delivery.attempts, backoff, random);
    this.#deliveries.set(key, delivery);
  }

  #finished(key: string, msg: Extract<WebhookDispatcherMsg, { type: "attempted" }>) {
    this.#deliveries.delete(key);
    this.#done.get(msg.event._id)?.add(msg.subscriptionId);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#options.timers.clearInterval(this.#interval);
    this.#abort.abort();
    await this.#actor[Symbol.asyncDispose]();
  }
}

/** `<subscriptionId>|<eventId>` apart (subscription ids are UUIDs, without `|`). */
function splitKey(key: string): [string, string] {
  const at = key.indexOf("|");
  return [key.slice(0, at), key.slice(at + 1)];
}
