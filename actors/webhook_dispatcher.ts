/**
 * Delivers the outbox's events to the webhook subscriptions that want them:
 * at least once, each POST carrying the event id as `Idempotency-Key` and an
 * HMAC-SHA256 signature of the body. A failed attempt is retried after an
 * exponential backoff with full jitter; after `maxAttempts` the delivery goes
 * to the subscription's dead letters. An event is settled once every
 * subscription it matches has an outcome (delivered or dead).
 *
 * Nothing is held only in memory but which attempts are in flight: each
 * attempt's count, next time and error are stored on the event, so a
 * restarted dispatcher continues the backoff and the dead-letter bound holds
 * across restarts. Of several dispatchers on one store only the holder of the
 * store's lease delivers; its writes carry the lease's fencing token, which
 * the store refuses once another dispatcher took the lease over. The holder
 * also prunes events settled longer ago than the retention (docs/webhooks.md).
 *
 * @module
 */
import { Actor } from "./actor.ts";
import type { TimerId, Timers } from "./timers.ts";
import type { Logger } from "./logger.ts";
import type { DeliveryState, PendingEvent, WebhookStore } from "./webhook_store.ts";
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

/** Port: why a URL must not be called (SSRF guard), or undefined when it may. */
export type WebhookTargetCheck = (url: string) => Promise<string | undefined>;

export type WebhookDispatcherMsg =
  /** Time to renew the lease and look for pending events and due retries. */
  | { readonly type: "poll" }
  /** An attempt ended: `error` unset means delivered. */
  | {
    readonly type: "attempted";
    readonly event: OutboxEvent;
    readonly subscriptionId: string;
    /** Attempts stored before this one. */
    readonly before: number;
    /** The lease token the attempt was made under. */
    readonly fence: number;
    readonly error?: string;
  };

export interface WebhookDispatcherStats {
  readonly delivered: number;
  readonly failedAttempts: number;
  readonly deadLettered: number;
  /** Events not settled at the last poll (at most the poll's batch). */
  readonly pending: number;
  readonly inFlight: number;
  /** Whether this dispatcher holds the store's lease (only the holder delivers). */
  readonly leader: boolean;
  /** Settled events deleted after the retention. */
  readonly pruned: number;
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
  /** How long a lease lasts unless renewed; renewed every third of it. */
  readonly leaseMs: number;
  /** Settled events older than this are deleted. */
  readonly retentionMs: number;
  /** Checked before every attempt; a refusal is a failed attempt (default: none). */
  readonly checkTarget?: WebhookTargetCheck;
  /** Events read per poll (default 100). */
  readonly batch?: number;
  /** How often the holder prunes (default 60 000 ms). */
  readonly pruneEveryMs?: number;
  /** This dispatcher's lease owner id (default: a random UUID). */
  readonly owner?: string;
  readonly random?: () => number;
}

/** Settled events deleted per prune; a full batch prunes again at the next poll. */
const PRUNE_BATCH = 1000;

export class WebhookDispatcher implements AsyncDisposable {
  readonly #options: WebhookDispatcherOptions;
  readonly #owner: string;
  readonly #actor: Actor<WebhookDispatcherMsg>;
  readonly #interval: TimerId;
  readonly #abort = new AbortController();
  /** `<subscriptionId>|<eventId>` of the attempts not recorded yet. */
  readonly #inFlight = new Set<string>();
  /** The lease while held: its token and until when (this dispatcher's clock). */
  #lease: { readonly token: number; readonly expiresAt: number; readonly renewAt: number } | null =
    null;
  #nextPruneAt = 0;
  #delivered = 0;
  #failedAttempts = 0;
  #deadLettered = 0;
  #pending = 0;
  #pruned = 0;
  #polling = false;

  constructor(options: WebhookDispatcherOptions) {
    this.#options = options;
    this.#owner = options.owner ?? crypto.randomUUID();
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
      inFlight: this.#inFlight.size,
      leader: this.#holds(this.#options.timers.now()),
      pruned: this.#pruned,
    };
  }

  /** True while a poll is queued or running or an attempt has not been recorded. */
  get busy(): boolean {
    return this.#polling || this.#inFlight.size > 0;
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
      else this.#inFlight.delete(`${msg.subscriptionId}|${msg.event._id}`);
    }
  }

  #holds(now: number): boolean {
    return this.#lease !== null && now < this.#lease.expiresAt;
  }

  /** Takes or renews the lease when due; answers its token while held. */
  async #leaseToken(now: number): Promise<number | undefined> {
    const { store, leaseMs, logger } = this.#options;
    if (this.#lease && now < this.#lease.renewAt) return this.#lease.token;
    const wasLeader = this.#holds(now);
    const lease = await store.acquireLease(this.#owner, new Date(now), leaseMs);
    if (lease.owner !== this.#owner) {
      if (this.#lease) logger.info("webhook dispatcher lease lost", { owner: lease.owner });
      this.#lease = null;
      return undefined;
    }
    if (!wasLeader) logger.info("webhook dispatcher lease taken", { token: lease.token });
    this.#lease = {
      token: lease.token,
      expiresAt: lease.expiresAt.getTime(),
      renewAt: now + Math.floor(leaseMs / 3),
    };
    return lease.token;
  }

  async #poll() {
    const { store, timers, batch = 100, retentionMs, pruneEveryMs = 60_000 } = this.#options;
    const now = timers.now();
    const fence = await this.#leaseToken(now);
    if (fence === undefined) {
      this.#pending = 0;
      return;
    }
    if (now >= this.#nextPruneAt) {
      const pruned = await store.prune(new Date(now - retentionMs), PRUNE_BATCH);
      this.#pruned += pruned;
      this.#nextPruneAt = pruned === PRUNE_BATCH ? now : now + pruneEveryMs;
    }
    // Subscriptions first: only events one of them wants are checked for replays, which costs a
    // read of the settled events per poll on FerretDB (none at all without subscriptions).
    const subscriptions = await store.webhooks();
    const events = await store.pendingEvents(
      batch,
      (event) => subscriptions.some((s) => s.events.includes(event.event)),
    );
    this.#pending = events.length;
    const settled: PendingEvent[] = [];
    for (const pending of events) {
      const { event, deliveries } = pending;
      const open = subscriptions.filter((s) =>
        s.events.includes(event.event) &&
        (deliveries[s._id] === undefined || deliveries[s._id]!.status === "retrying")
      );
      if (open.length === 0) {
        settled.push(pending);
        continue;
      }
      for (const subscription of open) {
        const key = `${subscription._id}|${event._id}`;
        const state = deliveries[subscription._id];
        if (this.#inFlight.has(key)) continue;
        if (state?.status === "retrying" && state.nextAt.getTime() > now) continue;
        this.#inFlight.add(key);
        void this.#attempt(event, subscription, state?.attempts ?? 0, fence);
      }
    }
    // All at once: on FerretDB each write scans the outbox, so one per poll, not one per event.
    if (settled.length > 0) await store.settle(settled, new Date(now), fence);
  }

  /** One POST; its outcome comes back as a message, so a slow receiver holds up no other. */
  async #attempt(event: OutboxEvent, subscription: WebhookDoc, before: number, fence: number) {
    const body = deliveryBody(event);
    let error: string | undefined;
    try {
      // Resolved again before every attempt: what a name points at can change (SSRF).
      error = await this.#options.checkTarget?.(subscription.url);
      if (error === undefined) {
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
      }
    } catch (err) {
      error = `No answer from the receiver: ${err instanceof Error ? err.message : String(err)}`;
    }
    if (this.#abort.signal.aborted) return;
    const msg: WebhookDispatcherMsg = {
      type: "attempted",
      event,
      subscriptionId: subscription._id,
      before,
      fence,
      ...(error === undefined ? {} : { error }),
    };
    await this.#actor.send(msg).catch(() => {}); // Stopped: the store still has it pending.
  }

  async #attempted(msg: Extract<WebhookDispatcherMsg, { type: "attempted" }>) {
    const { store, timers, maxAttempts, backoff, random, logger } = this.#options;
    const now = timers.now();
    // Outcomes queue up behind slow store writes: renew here too, not only when a poll gets through.
    if (this.#lease && now >= this.#lease.renewAt) await this.#leaseToken(now);
    const at = new Date(now);
    const attempts = msg.before + 1;
    let state: DeliveryState;
    if (msg.error === undefined) {
      this.#delivered++;
      state = { status: "delivered", attempts, at };
    } else {
      this.#failedAttempts++;
      state = attempts >= maxAttempts ? { status: "dead", attempts, at, error: msg.error } : {
        status: "retrying",
        attempts,
        nextAt: new Date(now + backoffDelayMs(attempts, backoff, random)),
        error: msg.error,
      };
    }
    const recorded = await store.recordDelivery(
      msg.event._id,
      msg.subscriptionId,
      state,
      msg.fence,
    );
    if (!recorded) {
      // Another dispatcher took the lease over, or an outcome was recorded first: theirs stands.
      logger.debug("webhook attempt not recorded", {
        subscriptionId: msg.subscriptionId,
        eventId: msg.event._id,
      });
      return;
    }
    if (state.status === "dead") {
      this.#deadLettered++;
      logger.warn("webhook delivery dead-lettered", {
        subscriptionId: msg.subscriptionId,
        eventId: msg.event._id,
        attempts,
        error: state.error,
      });
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#options.timers.clearInterval(this.#interval);
    this.#abort.abort();
    await this.#actor[Symbol.asyncDispose]();
    const lease = this.#lease;
    this.#lease = null;
    if (!lease) return;
    // Handed back so the next dispatcher need not wait for the expiry; failing, it waits.
    await this.#options.store.releaseLease(this.#owner, lease.token).catch((error) =>
      this.#options.logger.warn("webhook dispatcher lease not released; it expires instead", {
        error: error as Error,
      })
    );
  }
}
