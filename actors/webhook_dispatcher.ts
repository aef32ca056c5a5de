/**
 * Delivers the outbox's events to the webhook subscriptions that want them:
 * at least once, each POST carrying the event id as `Idempotency-Key` and an
 * HMAC-SHA256 signature of the body. A failed attempt is retried after an
 * exponential backoff with full jitter; after `maxAttempts` the delivery goes
 * to the subscription's dead letters. An event is settled once every
 * subscription it matches has an outcome (delivered or dead).
 *
 * Nothing is held only in memory but the attempts in flight and their
 * outcomes until written: each failed attempt's count, next time and error
 * are stored on the event, so a restarted dispatcher continues the backoff and
 * the dead-letter bound holds across restarts. An event delivered to every
 * subscription it matches is settled with its outcomes, in one write for all
 * such events at once rather than an update of each (on FerretDB each update
 * scans the outbox); a crash before that write repeats the delivery, with the
 * same key.
 *
 * Of several dispatchers on one store only the holder of the store's lease
 * delivers; its writes carry the lease's fencing token, which the store
 * refuses once another dispatcher took the lease over. The holder also prunes
 * events settled longer ago than the retention (docs/webhooks.md).
 *
 * @module
 */
import { Actor } from "./actor.ts";
import type { TimerId, Timers } from "./timers.ts";
import type { Logger } from "./logger.ts";
import type { DeliveryState, PendingEvent, WebhookStore } from "./webhook_store.ts";
import { backoffDelayMs, type BackoffOptions, signatureOf } from "../domain/webhook_delivery.ts";
import { deliveryBody, type WebhookDoc } from "../schemas/webhook.ts";

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
  /** An attempt of a poll's round ended: `error` unset means delivered. */
  | {
    readonly type: "attempted";
    readonly round: Round;
    readonly subscriptionId: string;
    /** Attempts stored before this one. */
    readonly before: number;
    readonly error?: string;
  }
  /** Time to store the outcomes of the rounds whose attempts all ended. */
  | { readonly type: "record" };

/**
 * The attempts one poll started for one event, and their outcomes as they come back. Once all
 * ended, the event is settled if it was then delivered to every subscription it matched;
 * otherwise each outcome is recorded on the event (failures are the rare case).
 */
interface Round {
  readonly pending: PendingEvent;
  /** The subscriptions the event matched at the poll. */
  readonly wanted: readonly string[];
  /** The lease token the attempts were made under. */
  readonly fence: number;
  /** Attempts not ended yet. */
  waiting: number;
  readonly outcomes: Map<string, DeliveryState>;
}

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
  /** Events read per poll (default 500): on FerretDB a poll reads the whole outbox whatever its size. */
  readonly batch?: number;
  /** Attempts made at once; the others of a poll wait for a free slot (default 100). */
  readonly concurrency?: number;
  /**
   * How often the holder prunes (default: a tenth of the retention, at least 60 000 ms; see
   * {@linkcode PRUNE_EVERY_OF_RETENTION}).
   */
  readonly pruneEveryMs?: number;
  /** This dispatcher's lease owner id (default: a random UUID). */
  readonly owner?: string;
  readonly random?: () => number;
}

/** Settled events deleted per prune; a full batch prunes again at the next poll. */
const PRUNE_BATCH = 1000;
/**
 * The holder prunes every this fraction of the retention (at least every minute): an event is
 * kept for the retention and at most a tenth more. On FerretDB 1.24 a prune reads every settled
 * event (it pushes no `settledAt: {$lt}` down): 8.5 s over 50 000 on PostgreSQL, which once a
 * minute cost 14 % of a core and grew with every event of the retention (bench/RESULTS.md,
 * "Webhook retention's prune"). MongoDB answers it from the `settledAt` index either way.
 */
const PRUNE_EVERY_OF_RETENTION = 0.1;

export class WebhookDispatcher implements AsyncDisposable {
  readonly #options: WebhookDispatcherOptions;
  readonly #owner: string;
  readonly #actor: Actor<WebhookDispatcherMsg>;
  readonly #interval: TimerId;
  readonly #abort = new AbortController();
  /** `<subscriptionId>|<eventId>` of the attempts not recorded yet. */
  readonly #inFlight = new Set<string>();
  /** Attempts running, and the ones waiting for a slot (`concurrency`). */
  #running = 0;
  readonly #waiting: (() => void)[] = [];
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
  /** Whether the last poll read a full batch: settling some of it polls again at once. */
  #fullPoll = false;
  /** Set by a poll that settles part of a full batch itself: the next poll follows it at once. */
  #pollAgain = false;
  /** Rounds whose attempts all ended, not recorded yet. */
  #ended: Round[] = [];
  #recordQueued = false;

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

  /** True while a poll is queued or running or an attempt's outcome has not been recorded. */
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
          return this.#attempted(msg);
        case "record":
          return await this.#record();
        default:
          msg satisfies never;
      }
    } catch (error) {
      this.#options.logger.warn("webhook store failed; retrying on the next poll", {
        error: error as Error,
      });
    } finally {
      if (msg.type === "poll") {
        this.#polling = false;
        if (this.#pollAgain) {
          this.#pollAgain = false;
          this.poll();
        }
      }
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
    const { store, timers, batch = 500, retentionMs } = this.#options;
    const pruneEveryMs = this.#options.pruneEveryMs ??
      Math.max(60_000, retentionMs * PRUNE_EVERY_OF_RETENTION);
    // A record that could not be queued (a full mailbox) is made here rather than never.
    if (this.#ended.length > 0 && !this.#recordQueued) await this.#record();
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
    this.#fullPoll = events.length === batch;
    const settled: PendingEvent[] = [];
    for (const pending of events) {
      const { event, deliveries } = pending;
      const matching = subscriptions.filter((s) => s.events.includes(event.event));
      const open = matching.filter((s) =>
        deliveries[s._id] === undefined || deliveries[s._id]!.status === "retrying"
      );
      if (open.length === 0) {
        settled.push(pending);
        continue;
      }
      const due = open.filter((subscription) => {
        const state = deliveries[subscription._id];
        return !this.#inFlight.has(`${subscription._id}|${event._id}`) &&
          !(state?.status === "retrying" && state.nextAt.getTime() > now);
      });
      if (due.length === 0) continue;
      const round: Round = {
        pending,
        wanted: matching.map((s) => s._id),
        fence,
        waiting: due.length,
        outcomes: new Map(),
      };
      for (const subscription of due) {
        this.#inFlight.add(`${subscription._id}|${event._id}`);
        void this.#attempt(round, subscription, deliveries[subscription._id]?.attempts ?? 0);
      }
    }
    // All at once: on FerretDB each write scans the outbox, so one per poll, not one per event.
    // Events no subscription wants settle here, without an attempt: when they filled the batch,
    // the events behind them are read at once, not after the interval.
    if (settled.length > 0 && await store.settle(settled, new Date(now), fence) > 0) {
      this.#pollAgain = this.#fullPoll;
    }
  }

  /**
   * One POST once a slot is free; its outcome comes back as a message, so a slow receiver holds up
   * no other beyond the slots it takes.
   */
  async #attempt(round: Round, subscription: WebhookDoc, before: number) {
    await this.#slot();
    try {
      await this.#post(round, subscription, before);
    } finally {
      this.#release();
    }
  }

  async #slot(): Promise<void> {
    if (this.#running < (this.#options.concurrency ?? 100)) {
      this.#running++;
      return;
    }
    // The slot is handed over by `#release`: the running count stays.
    await new Promise<void>((resolve) => this.#waiting.push(resolve));
  }

  #release(): void {
    const next = this.#waiting.shift();
    if (next) next();
    else this.#running--;
  }

  async #post(round: Round, subscription: WebhookDoc, before: number) {
    if (this.#abort.signal.aborted) return;
    const { event } = round.pending;
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
      round,
      subscriptionId: subscription._id,
      before,
      ...(error === undefined ? {} : { error }),
    };
    await this.#actor.send(msg).catch(() => {}); // Stopped: the store still has it pending.
  }

  /** Notes the outcome; the round is recorded once its last attempt ended. */
  #attempted(msg: Extract<WebhookDispatcherMsg, { type: "attempted" }>): void {
    const { timers, maxAttempts, backoff, random } = this.#options;
    const now = timers.now();
    const attempts = msg.before + 1;
    let state: DeliveryState;
    if (msg.error === undefined) {
      this.#delivered++;
      state = { status: "delivered", attempts, at: new Date(now) };
    } else {
      this.#failedAttempts++;
      state = attempts >= maxAttempts
        ? { status: "dead", attempts, at: new Date(now), error: msg.error }
        : {
          status: "retrying",
          attempts,
          nextAt: new Date(now + backoffDelayMs(attempts, backoff, random)),
          error: msg.error,
        };
    }
    const { round } = msg;
    round.outcomes.set(msg.subscriptionId, state);
    if (--round.waiting > 0) return;
    this.#ended.push(round);
    if (this.#recordQueued) return;
    this.#recordQueued = true;
    // Queued behind the outcomes already in the mailbox, so one record takes them all.
    if (!this.#actor.trySend({ type: "record" })) this.#recordQueued = false;
  }

  /**
   * Stores the ended rounds' outcomes: the events they settle in one write per lease token, the
   * others one update each. Their attempts count as in flight until then, so no poll repeats them.
   */
  async #record() {
    this.#recordQueued = false;
    const rounds = this.#ended;
    this.#ended = [];
    try {
      const { store, timers } = this.#options;
      const now = timers.now();
      // Outcomes queue up behind slow store writes: renew here too, not only when a poll gets through.
      if (this.#lease && now >= this.#lease.renewAt) await this.#leaseToken(now);
      // Settling copies the event before the fenced delete: one that lost the lease (it stalled
      // past the expiry) settles nothing, and its fenced updates are refused once it was taken over.
      const holding = this.#holds(now);
      const settling = new Map<number, PendingEvent[]>();
      const updates: Round[] = [];
      for (const round of rounds) {
        const deliveries = { ...round.pending.deliveries, ...Object.fromEntries(round.outcomes) };
        const delivered = round.wanted.every((id) => deliveries[id]?.status === "delivered");
        if (!holding || !delivered) {
          updates.push(round);
          continue;
        }
        const events = settling.get(round.fence) ?? [];
        events.push({ event: round.pending.event, deliveries });
        settling.set(round.fence, events);
      }
      let settled = 0;
      for (const [fence, events] of settling) {
        settled += await store.settle(events, new Date(now), fence);
      }
      for (const round of updates) await this.#update(round);
      // What was read was all due: the events behind it are polled now, not after the interval.
      if (settled > 0 && this.#fullPoll) this.poll();
    } finally {
      for (const round of rounds) {
        for (const id of round.outcomes.keys()) {
          this.#inFlight.delete(`${id}|${round.pending.event._id}`);
        }
      }
    }
  }

  /** Records each outcome of a round on its event; the event settles at a later poll. */
  async #update(round: Round) {
    const { store, logger } = this.#options;
    const eventId = round.pending.event._id;
    for (const [subscriptionId, state] of round.outcomes) {
      const recorded = await store.recordDelivery(eventId, subscriptionId, state, round.fence);
      if (!recorded) {
        // Another dispatcher took the lease over, or an outcome was recorded first: theirs stands.
        logger.debug("webhook attempt not recorded", { subscriptionId, eventId });
        continue;
      }
      if (state.status === "dead") {
        this.#deadLettered++;
        logger.warn("webhook delivery dead-lettered", {
          subscriptionId,
          eventId,
          attempts: state.attempts,
          error: state.error,
        });
      }
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
