/**
 * The curl example of docs/http-api.md, run as written against the real
 * program (embedded, 10 sensors at launch like `deno task start`): every
 * call succeeds, and the ids its comment promises are the ones the app gives.
 *
 * @module
 */
import "./env_guard.ts";
import assert from "node:assert/strict";
import { testWith } from "./needs.ts";
import { EMBEDDED, startApp, testEnv } from "./test_app.ts";
import { SETTINGS } from "../schemas/config.ts";

const permitted = await testWith();
const DOC = new URL("../docs/http-api.md", import.meta.url);

interface Call {
  readonly method: string;
  readonly path: string;
  readonly headers: Record<string, string>;
  readonly body?: string;
  /** The status a trailing `# 204` comment promises. */
  readonly status?: number;
  /** The comment lines just above the command. */
  readonly comment: string;
}

/** Splits a shell line into words, honouring single and double quotes (enough for curl lines). */
function words(line: string): string[] {
  return [...line.matchAll(/'([^']*)'|"([^"]*)"|(\S+)/g)].map((m) => m[1] ?? m[2] ?? m[3]!);
}

/** The curl commands of the ```sh block holding `marker`, continuation lines joined. */
function curlCalls(markdown: string, marker: string): Call[] {
  const block = [...markdown.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!)
    .find((b) => b.includes(marker));
  assert.ok(block, `a sh block with ${marker}`);
  const calls: Call[] = [];
  let comment: string[] = [];
  for (const line of block.replace(/\\\n\s*/g, " ").split("\n")) {
    if (line.startsWith("#")) {
      comment.push(line);
      continue;
    }
    if (!line.startsWith("curl ")) continue;
    const [command, note] = line.split(/\s+#\s*/);
    const args = words(command!).slice(1);
    let method = "GET";
    let path = "";
    let body: string | undefined;
    const headers: Record<string, string> = {};
    for (let i = 0; i < args.length; i++) {
      const arg = args[i]!;
      if (arg.startsWith("-X")) method = arg.slice(2);
      else if (arg === "-H") {
        const [name, ...value] = args[++i]!.split(":");
        headers[name!.trim()] = value.join(":").trim();
      } else if (arg === "-d") body = args[++i];
      else if (arg === "-o" || arg === "-w") i++;
      else if (arg.startsWith("localhost:8080")) path = arg.slice("localhost:8080".length);
    }
    assert.ok(path, line);
    const status = note && /^\d{3}$/.test(note.trim()) ? Number(note.trim()) : undefined;
    calls.push({
      method,
      path,
      headers,
      ...(body === undefined ? {} : { body }),
      ...(status ? { status } : {}),
      comment: comment.join("\n"),
    });
    comment = [];
  }
  return calls;
}

/** Runs the calls in order: each succeeds (or answers the status its comment names). */
async function runExample(url: string, calls: readonly Call[], { fresh }: { fresh: boolean }) {
  for (const call of calls) {
    const res = await fetch(`${url}${call.path}`, {
      method: call.method,
      headers: call.headers,
      ...(call.body === undefined ? {} : { body: call.body }),
    });
    const text = await res.text();
    const what = `${call.method} ${call.path}: ${res.status} ${text}`;
    if (call.status) assert.equal(res.status, call.status, what);
    else assert.ok(res.ok, what);
    // On a fresh start, a comment naming the ids a batch gets must name the ones the app gave.
    const promised = /\((\w+-\d{4}) … (\w+-\d{4})/.exec(call.comment);
    if (promised && fresh) {
      const { ids } = JSON.parse(text) as { ids: string[] };
      assert.deepEqual([ids[0], ids.at(-1)], [promised[1], promised[2]], what);
    }
  }
}

permitted.test("the curl example of docs/http-api.md works as written on a fresh start", async () => {
  const calls = curlCalls(await Deno.readTextFile(DOC), '"idPrefix"');
  assert.ok(calls.length >= 5, JSON.stringify(calls));
  await using env = await testEnv("docs-example", EMBEDDED);
  // `deno task start`'s defaults: 10 sensors at launch.
  await using app = await startApp(env, { SENSORS: "10" });
  await runExample(app.url, calls, { fresh: true });
});

permitted.test("the curl example of docs/http-api.md works after sensors were added before", async () => {
  const calls = curlCalls(await Deno.readTextFile(DOC), '"idPrefix"');
  await using env = await testEnv("docs-example-later", EMBEDDED);
  await using app = await startApp(env, { SENSORS: "10" });
  // The dashboard's "add sensors" button: a batch with the default prefix moves the counter on.
  const earlier = await fetch(`${app.url}/sensors`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ count: 3 }),
  });
  assert.equal(earlier.status, 201);
  await earlier.body?.cancel();
  await runExample(app.url, calls, { fresh: false });
});

permitted.test("docs/configuration.md lists every setting's flag and variable, --help and --version", async () => {
  const doc = await Deno.readTextFile(new URL("../docs/configuration.md", import.meta.url));
  for (const s of SETTINGS) {
    assert.ok(doc.includes(`\`--${s.flag}\``), s.flag);
    assert.ok(doc.includes(`\`${s.env}\``), s.env);
  }
  assert.match(doc, /--help/);
  assert.match(doc, /--version/);
});
