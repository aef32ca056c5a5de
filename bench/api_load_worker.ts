/**
 * The worker that runs the API scenario's clients (`runApiLoad` in `api_load.ts`) off the
 * measured process's event loop.
 *
 * @module
 */
/// <reference lib="deno.worker" />
import { type FromApiLoadWorker, runApiLoad, type ToApiLoadWorker } from "./api_load.ts";

let load: ReturnType<typeof runApiLoad> | undefined;
const reply = (msg: FromApiLoadWorker) => self.postMessage(msg);

self.onmessage = async (e: MessageEvent<ToApiLoadWorker>) => {
  const msg = e.data;
  switch (msg.type) {
    case "start":
      load = runApiLoad(msg.url, msg.fleet);
      return;
    case "stop":
      try {
        if (!load) throw new Error("stopped before it started");
        reply({ type: "result", result: await load.stop() });
      } catch (error) {
        reply({ type: "failed", message: String(error) });
      }
      return;
    default:
      return msg satisfies never;
  }
};
