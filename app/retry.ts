/**
 * The one start-up retry, one step at a time: each dependency (the store,
 * Kafka, the consumer, …) is connected by its own step, and only a step that
 * fails is tried again — what earlier steps opened stays open. A failed step
 * waits with capped exponential back-off and tries again until it works, its
 * attempts run out, start-up has failed for longer than the give-up time
 * (`KAFKA_GIVE_UP_MS`), a missing permission makes waiting pointless, or
 * shutdown cancels it.
 *
 * @module
 */
import type { Logger } from "../actors/logger.ts";
import { realTimers, type Timers } from "../actors/timers.ts";

export interface RetryOptions {
  /** Attempts per step before giving up (default: no limit but `giveUpMs`). */
  readonly attempts?: number;
  /** Start-up gives up once a step fails this long after the retrier was made (default: never). */
  readonly giveUpMs?: number;
  /** Aborted by shutdown: no further attempt, and the wait in between ends at once. */
  readonly signal: AbortSignal;
  readonly logger: Logger;
  /** Wait before attempt `n + 1` after attempt `n` failed (default 0.5 s doubling, at most 10 s). */
  readonly backoffMs?: (attempt: number) => number;
  /** The clock and timers the give-up time and the waits are measured with. */
  readonly timers?: Pick<Timers, "now" | "setTimeout" | "clearTimeout">;
}

/** Runs one step of start-up, e.g. `retry('connecting to Kafka at "k:9092"', () => …)`. */
export type Retry = <T>(step: string, attempt: () => Promise<T>) => Promise<T>;

/** Start-up was cancelled by a shutdown before it completed. */
export class StartCancelledError extends Error {
  override name = "StartCancelledError";
  constructor() {
    super("Start-up cancelled by shutdown");
  }
}

/** Start-up gave up on a step; the message is one sentence naming the step, the limit and the cause. */
export class StartFailedError extends Error {
  override name = "StartFailedError";
  /** `reason` follows "failed": e.g. `: <cause>`, ` 3 times: <cause>`. */
  constructor(readonly step: string, reason: string, options: { cause: unknown }) {
    super(`Cannot start: ${step} failed${reason}`, options);
  }
}

/** A retrier for one start-up: the give-up time counts from this call. */
export function createRetry(options: RetryOptions): Retry {
  const {
    attempts = Infinity,
    giveUpMs = Infinity,
    signal,
    logger,
    backoffMs = defaultBackoff,
    timers = realTimers,
  } = options;
  const startedAt = timers.now();
  return async function retry<T>(step: string, attempt: () => Promise<T>): Promise<T> {
    for (let n = 1;; n++) {
      try {
        return await attempt();
      } catch (error) {
        if (signal.aborted) throw new StartCancelledError();
        const elapsed = timers.now() - startedAt;
        const detail = messageOf(error);
        if (hopeless(error)) throw new StartFailedError(step, `: ${detail}`, { cause: error });
        if (n >= attempts) {
          const times = n === 1 ? "" : ` ${n} times`;
          throw new StartFailedError(step, `${times}: ${detail}`, { cause: error });
        }
        if (elapsed >= giveUpMs) {
          throw new StartFailedError(
            step,
            ` for ${seconds(elapsed)} (KAFKA_GIVE_UP_MS=${giveUpMs}): ${detail}`,
            { cause: error },
          );
        }
        const retryInMs = Math.min(backoffMs(n), giveUpMs - elapsed);
        logger.warn("start-up failed; retrying", { step, attempt: n, retryInMs, error: detail });
        await wait(retryInMs, signal, timers);
        if (signal.aborted) throw new StartCancelledError();
      }
    }
  };
}

function defaultBackoff(attempt: number): number {
  return Math.min(10_000, 500 * 2 ** Math.min(attempt - 1, 5));
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function wait(
  ms: number,
  signal: AbortSignal,
  timers: Pick<Timers, "setTimeout" | "clearTimeout">,
) {
  return new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      timers.clearTimeout(id);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const id = timers.setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

/** A missing permission will not appear by waiting. */
function hopeless(error: unknown): boolean {
  return error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;
}
