/**
 * The one start-up retry: connect, and on failure wait with capped
 * exponential back-off and connect again, until it works, the attempts run
 * out, a missing permission makes waiting pointless, or shutdown cancels it.
 * Each attempt cleans up after itself (its roles are disposed on failure), so
 * a retry starts from nothing.
 *
 * @module
 */
import { setTimeout as delay } from "node:timers/promises";
import type { Logger } from "../actors/logger.ts";

export interface RetryOptions {
  /** Attempts before giving up (default: keep trying). */
  readonly attempts?: number;
  /** Aborted by shutdown: no further attempt, and the wait in between ends at once. */
  readonly signal: AbortSignal;
  readonly logger: Logger;
  /** Wait before attempt `n + 1` after attempt `n` failed (default 0.5 s doubling, at most 10 s). */
  readonly backoffMs?: (attempt: number) => number;
}

/** Start-up was cancelled by a shutdown before it completed. */
export class StartCancelledError extends Error {
  override name = "StartCancelledError";
  constructor() {
    super("Start-up cancelled by shutdown");
  }
}

/** Runs `attempt` until it resolves; rejects with its last error when retrying is pointless. */
export async function retryStart<T>(
  attempt: () => Promise<T>,
  options: RetryOptions,
): Promise<T> {
  const { attempts = Infinity, signal, logger, backoffMs = defaultBackoff } = options;
  for (let n = 1;; n++) {
    try {
      return await attempt();
    } catch (error) {
      if (signal.aborted) throw new StartCancelledError();
      if (n >= attempts || hopeless(error)) throw error;
      const retryInMs = backoffMs(n);
      logger.warn("start-up failed; retrying", { attempt: n, retryInMs, error: error as Error });
      await delay(retryInMs, undefined, { signal }).catch(() => {});
      if (signal.aborted) throw new StartCancelledError();
    }
  }
}

function defaultBackoff(attempt: number): number {
  return Math.min(10_000, 500 * 2 ** Math.min(attempt - 1, 5));
}

/** A missing permission will not appear by waiting. */
function hopeless(error: unknown): boolean {
  return error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied;
}
