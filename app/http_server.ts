/**
 * The HTTP server, started before anything else so `/health` answers while
 * the dependencies come up. It answers with the start-up API until the
 * pipeline is connected, then with the full one.
 *
 * @module
 */
import type { Hono } from "@hono/hono";
import type { Config } from "../schemas/config.ts";

export interface HttpServer {
  /** Base URL, e.g. `http://127.0.0.1:8080`. */
  readonly url: string;
  /** Answers every later request with `api`. */
  serve(api: Hono): void;
  /** Stops taking requests and waits for those in flight; idempotent. */
  close(): Promise<void>;
}

export function serveHttp(config: Pick<Config, "host" | "port">, api: Hono): HttpServer {
  let current = api;
  const server = Deno.serve(
    { hostname: config.host, port: config.port, onListen: () => {} },
    (request, info) => current.fetch(request, info),
  );
  let closing: Promise<void> | undefined;
  return {
    url: `http://${config.host}:${server.addr.port}`,
    serve(next) {
      current = next;
    },
    close() {
      closing ??= server.shutdown();
      return closing;
    },
  };
}
