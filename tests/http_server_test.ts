/**
 * The HTTP contract over a real socket: `serveHttp()` (Deno.serve) in front of
 * the API, spoken to in raw HTTP/1.1 so requests no `fetch` would send can be
 * sent. Also pins what Deno's server answers by itself before the app sees a
 * request (docs/http-api.md, "Limits and timeouts"): if a Deno upgrade changes
 * it, this test says so.
 */
import assert from "node:assert/strict";
import { createApi } from "../adapters/http_api.ts";
import { silentLogger } from "../adapters/log.ts";
import { serveHttp } from "../app/http_server.ts";
import { testWith } from "./needs.ts";

/** Registrar for tests that need only the suite's permissions (a loopback socket). */
const permitted = await testWith();

function serve() {
  const api = createApi({
    health: () => Promise.resolve({ ok: true, checks: {} }),
    info: { role: "all", version: "test" },
    logger: silentLogger,
  });
  const server = serveHttp({ host: "127.0.0.1", port: 0 }, api);
  const port = Number(new URL(server.url).port);
  return { server, port, [Symbol.asyncDispose]: () => server.close() };
}

interface RawAnswer {
  readonly status: number;
  readonly headers: ReadonlyMap<string, string>;
  readonly body: string;
}

/** Sends `request` as is and reads the answer until the server closes the connection. */
async function raw(port: number, request: string): Promise<RawAnswer> {
  using conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(new TextEncoder().encode(request));
  } catch {
    // The server may answer and close before it has read everything we send.
  }
  const chunks: Uint8Array[] = [];
  const buffer = new Uint8Array(64 * 1024);
  try {
    for (let n = await conn.read(buffer); n !== null; n = await conn.read(buffer)) {
      chunks.push(buffer.slice(0, n));
    }
  } catch (error) {
    // A reset after the answer (the server closes with our bytes unread) ends the read too.
    if (!(error instanceof Deno.errors.ConnectionReset)) throw error;
  }
  const text = new TextDecoder().decode(new Uint8Array(chunks.flatMap((c) => [...c])));
  const [head = "", body = ""] = text.split("\r\n\r\n", 2);
  const [statusLine = "", ...lines] = head.split("\r\n");
  const headers = new Map(
    lines.map((
      l,
    ) => [l.slice(0, l.indexOf(":")).toLowerCase(), l.slice(l.indexOf(":") + 1).trim()]),
  );
  return { status: Number(statusLine.split(" ")[1]), headers, body };
}

const get = (target: string, extra = "") =>
  `GET ${target} HTTP/1.1\r\nHost: test\r\n${extra}Connection: close\r\n\r\n`;

function errorCode(answer: RawAnswer): string {
  assert.match(answer.headers.get("content-type") ?? "", /^application\/json/);
  return JSON.parse(answer.body).error.code;
}

permitted.test("over a socket, a 10 KB request line answers 414 and a 40 KB header 431, as JSON", async () => {
  await using app = serve();
  const line = await raw(app.port, get(`/sensors/${"a".repeat(10_000)}`));
  assert.equal(line.status, 414);
  assert.equal(errorCode(line), "uri_too_long");
  const header = await raw(app.port, get("/health", `X-Big: ${"b".repeat(40_000)}\r\n`));
  assert.equal(header.status, 431);
  assert.equal(errorCode(header), "headers_too_large");
});

permitted.test("over a socket, a wrong method answers 405 with Allow", async () => {
  await using app = serve();
  const res = await fetch(`http://127.0.0.1:${app.port}/sensors`, { method: "PUT" });
  assert.equal(res.status, 405);
  assert.equal(res.headers.get("Allow"), "GET, HEAD, OPTIONS, POST");
  assert.equal((await res.json()).error.code, "method_not_allowed");
});

permitted.test("Deno's server answers a 100 KB request line or header itself: 400, empty body", async () => {
  await using app = serve();
  for (
    const request of [
      get(`/sensors/${"a".repeat(100_000)}`),
      get("/health", `X-Big: ${"b".repeat(100_000)}\r\n`),
    ]
  ) {
    const answer = await raw(app.port, request);
    // Not the app's answer (that would be 414/431 with a JSON body): Deno's, documented as such.
    assert.equal(answer.status, 400);
    assert.equal(answer.headers.get("content-length"), "0");
    assert.equal(answer.body, "");
  }
});
