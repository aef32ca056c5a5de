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

/** The HTTP API cannot listen where the config says; the message says why and what to change. */
export class ListenError extends Error {
  override name = "ListenError";
  constructor(address: string, reason: string, options: { cause: unknown }) {
    super(`Cannot listen on "${address}": ${reason}`, options);
  }
}

/** Starts listening at once; throws a {@linkcode ListenError} when it cannot. */
export function serveHttp(config: Pick<Config, "host" | "port">, api: Hono): HttpServer {
  let current = api;
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve(
      { hostname: config.host, port: config.port, onListen: () => {} },
      (request, info) => current.fetch(request, info),
    );
  } catch (error) {
    const address = config.host.includes(":")
      ? `[${config.host}]:${config.port}`
      : `${config.host}:${config.port}`;
    throw new ListenError(address, listenProblem(error), { cause: error });
  }
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

/** Why listening failed, in words an operator can act on. */
function listenProblem(error: unknown): string {
  if (error instanceof Deno.errors.AddrInUse) {
    return "the address is already in use (set PORT to another port, or stop what holds it)";
  }
  if (error instanceof Deno.errors.AddrNotAvailable) {
    return "the address is not one of this machine's (set HOST to a local address or 0.0.0.0)";
  }
  if (error instanceof Deno.errors.PermissionDenied) {
    return "the system refuses it (ports below 1024 need privileges: set PORT to 1024 or above)";
  }
  if (error instanceof Deno.errors.NotCapable) {
    return `Deno's permissions refuse it (run with --allow-net): ${(error as Error).message}`;
  }
  return error instanceof Error ? error.message : String(error);
}
