/**
 * Ctrl-C for the benchmark: the first SIGINT/SIGTERM aborts `interruption`,
 * which makes every `sleep()` reject, so each scenario unwinds through its
 * `await using` clean-ups (app stopped, topics and databases removed, a stack
 * this run started stopped). A second signal exits at once.
 *
 * @module
 */
const controller = new AbortController();
export const interruption: AbortSignal = controller.signal;

export class Interrupted extends Error {
  override name = "Interrupted";
}

/** Installs the signal handlers; call once from the entry point. */
export function handleSignals(log: (line: string) => void): void {
  const onSignal = () => {
    if (controller.signal.aborted) Deno.exit(130);
    log("interrupted: cleaning up (signal again to exit at once)");
    controller.abort(new Interrupted("Benchmark interrupted"));
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
}

/** Waits `ms`, or rejects as soon as the run is interrupted. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    if (interruption.aborted) return reject(interruption.reason);
    const timer = setTimeout(() => {
      interruption.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    function onAbort() {
      clearTimeout(timer);
      reject(interruption.reason);
    }
    interruption.addEventListener("abort", onAbort, { once: true });
  });
}
