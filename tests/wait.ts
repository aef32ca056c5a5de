/**
 * The tests' one way to wait for something that happens on its own time (a
 * server, a consumer group, an actor's mailbox). Code driven by a timer takes
 * injected timers instead and is moved with `tests/fake_time.ts`.
 *
 * @module
 */

/** Lets every pending promise reaction and zero-delay timer run: one turn of the event loop. */
export function settle(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/**
 * Polls `check` until it returns something other than `undefined` or `false`
 * and resolves with that; a check that throws is tried again. Fails after
 * `timeoutMs`, naming `what` and the last error. The pause between polls grows
 * from 1 ms to 100 ms, so a quick condition is seen at once and a slow one
 * does not keep a busy machine busier.
 */
export async function until<T>(
  what: string,
  check: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let pause = 1;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() >= deadline) {
      throw new Error(
        `Timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${last}` : ""}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, pause));
    pause = Math.min(pause * 2, 100);
  }
}
