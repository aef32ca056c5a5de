/**
 * A small actor runtime: one handler, a bounded FIFO mailbox and a lifecycle.
 * Actor logic stays in the handler; this file only decides when it runs.
 *
 * @module
 */

/** Lifecycle of an actor; "stopped" and "failed" are final. */
export type ActorStatus = "running" | "stopping" | "stopped" | "failed";

/** Options for {@linkcode Actor}. */
export interface ActorOptions<M> {
  /** Mailbox capacity; send() waits (backpressure) and trySend() returns false when full. */
  readonly capacity?: number;
  /**
   * Called once when the handler throws/rejects; the actor is then "failed" and drops its mailbox.
   * Without it the error goes to `reportError`, so a failure is never silent.
   */
  readonly onFailure?: (error: unknown) => void;
  /** Called once when the actor has stopped normally (after stop() drained it). */
  readonly onStop?: () => void;
  /** Used in error messages. */
  readonly name?: string;
}

/** Thrown to senders and askers once an actor no longer accepts or answers messages. */
export class ActorStoppedError extends Error {
  override name = "ActorStoppedError";
}

/** A sender parked while the mailbox is full. */
interface Blocked<M> {
  readonly msg: M;
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
}

/**
 * Runs `handler` for each message strictly one at a time, in arrival order.
 * The processing loop exists only while messages are queued, so an idle actor holds no promise
 * or timer and 100 000 of them are cheap.
 */
export class Actor<M> implements AsyncDisposable {
  readonly #handler: (msg: M) => void | Promise<void>;
  readonly #capacity: number;
  readonly #options: ActorOptions<M>;
  #status: ActorStatus = "running";
  #mailbox: M[] = [];
  #head = 0;
  #blocked: Blocked<M>[] = [];
  #busy = false;
  #stopped: PromiseWithResolvers<void> | undefined;
  #watchers: Set<() => void> | undefined;

  constructor(handler: (msg: M) => void | Promise<void>, options: ActorOptions<M> = {}) {
    const { capacity = 1000 } = options;
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(
        `Cannot create actor: capacity must be a positive integer, received ${capacity}`,
      );
    }
    this.#handler = handler;
    this.#capacity = capacity;
    this.#options = options;
  }

  get name(): string | undefined {
    return this.#options.name;
  }

  get status(): ActorStatus {
    return this.#status;
  }

  /** Messages waiting in the mailbox (not counting the one being handled). */
  get depth(): number {
    return this.#mailbox.length - this.#head;
  }

  /** Enqueues, waiting while the mailbox is full; rejects with ActorStoppedError unless running. */
  async send(msg: M): Promise<void> {
    if (this.#status !== "running") throw this.#notRunning();
    if (this.#blocked.length === 0 && this.depth < this.#capacity) return this.#enqueue(msg);
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    this.#blocked.push({ msg, resolve, reject });
    await promise;
  }

  /** Enqueues `msg` without waiting; false when the mailbox is full or the actor is not running. */
  trySend(msg: M): boolean {
    if (this.#status !== "running" || this.depth >= this.#capacity) return false;
    this.#enqueue(msg);
    return true;
  }

  /**
   * Stops accepting messages (rejecting blocked senders), handles the queued ones, then stops.
   * Resolves when stopped or failed; do not await it inside the handler, which it waits for.
   */
  stop(): Promise<void> {
    if (this.#status === "running") {
      this.#status = "stopping";
      this.#rejectBlocked();
      if (!this.#busy) this.#finish();
    }
    if (this.#status !== "stopping") return Promise.resolve();
    this.#stopped ??= Promise.withResolvers<void>();
    return this.#stopped.promise;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  /**
   * Calls `listener` once the actor has stopped or failed (at once if it already has), like an
   * Erlang monitor; returns a function that cancels the watch.
   */
  watch(listener: () => void): () => void {
    if (this.#status === "stopped" || this.#status === "failed") {
      listener();
      return () => {};
    }
    const watchers = this.#watchers ??= new Set();
    const watcher = () => listener();
    watchers.add(watcher);
    return () => void watchers.delete(watcher);
  }

  #enqueue(msg: M): void {
    this.#mailbox.push(msg);
    if (this.#busy) return;
    this.#busy = true;
    // Start on a microtask so a handler never runs inside its sender's call.
    queueMicrotask(() => void this.#drain());
  }

  async #drain(): Promise<void> {
    while (this.depth > 0) {
      try {
        await this.#handler(this.#take());
      } catch (error) {
        return this.#fail(error);
      }
    }
    this.#busy = false;
    if (this.#status === "stopping") this.#finish();
  }

  #take(): M {
    const msg = this.#mailbox[this.#head++] as M;
    if (this.#head === this.#mailbox.length) {
      this.#mailbox = [];
      this.#head = 0;
    } else if (this.#head >= 1024 && this.#head * 2 >= this.#mailbox.length) {
      this.#mailbox = this.#mailbox.slice(this.#head);
      this.#head = 0;
    }
    const next = this.#blocked.shift();
    if (next) {
      this.#mailbox.push(next.msg);
      next.resolve();
    }
    return msg;
  }

  #fail(error: unknown): void {
    this.#status = "failed";
    this.#busy = false;
    this.#mailbox = [];
    this.#head = 0;
    this.#rejectBlocked();
    this.#settle();
    if (this.#options.onFailure) this.#options.onFailure(error);
    else reportError(error);
  }

  #finish(): void {
    this.#status = "stopped";
    this.#settle();
    this.#options.onStop?.();
  }

  #settle(): void {
    this.#stopped?.resolve();
    const watchers = this.#watchers;
    this.#watchers = undefined;
    for (const watcher of watchers ?? []) watcher();
  }

  #rejectBlocked(): void {
    const blocked = this.#blocked;
    this.#blocked = [];
    for (const sender of blocked) sender.reject(this.#notRunning());
  }

  #notRunning(): ActorStoppedError {
    return new ActorStoppedError(`${label(this.name)} is ${this.#status}`);
  }
}

/** Options for {@linkcode ask}. */
export interface AskOptions {
  /** Gives up waiting (e.g. `AbortSignal.timeout(ms)`); ask() then rejects with the reason. */
  readonly signal?: AbortSignal;
}

/**
 * Sends a message built around a reply callback and resolves with the reply.
 * Rejects with ActorStoppedError if the actor stops or fails before replying.
 */
export async function ask<M, R>(
  actor: Actor<M>,
  build: (reply: (value: R) => void) => M,
  options: AskOptions = {},
): Promise<R> {
  const { signal } = options;
  signal?.throwIfAborted();
  const { promise, resolve, reject } = Promise.withResolvers<R>();
  let unwatch = () => {};
  const onAbort = () => {
    cleanup();
    reject(signal?.reason);
  };
  const cleanup = () => {
    unwatch();
    signal?.removeEventListener("abort", onAbort);
  };
  const msg = build((value) => {
    cleanup();
    resolve(value);
  });
  signal?.addEventListener("abort", onAbort, { once: true });
  unwatch = actor.watch(() => {
    cleanup();
    reject(new ActorStoppedError(`${label(actor.name)} ${actor.status} before replying`));
  });
  actor.send(msg).catch((error) => {
    cleanup();
    reject(error);
  });
  return await promise;
}

function label(name: string | undefined): string {
  return name === undefined ? "Actor" : `Actor "${name}"`;
}
