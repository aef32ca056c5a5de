/**
 * Retrying what a broker legitimately refuses for a while: right after a restart Kafka answers
 * "This server does not host this topic-partition" or refuses connections.
 *
 * @module
 */
import { sleep } from "./processes.ts";

/**
 * Runs `fn` until it succeeds or `timeoutMs` has passed, backing off between attempts; the last
 * error is rethrown with what was being done.
 */
export async function retrying<T>(
  what: string,
  fn: () => Promise<T>,
  timeoutMs = 90_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (let attempt = 0;; attempt++) {
    try {
      return await fn();
    } catch (error) {
      if (Date.now() > deadline) {
        throw new Error(`Kafka kept failing for ${timeoutMs / 1000} s: ${what}`, { cause: error });
      }
      await sleep(Math.min(2000, 100 * 2 ** Math.min(attempt, 5)));
    }
  }
}
