/**
 * The deployment files agree with the code they ship: the image runs the program the way
 * `deno task start` does, on the Deno CI uses; the Helm chart names only real settings and the
 * app's version; compose keeps Kafka's data on its volume and starts the services without a
 * token. The tools themselves (hadolint, helm, kubernetes-validate, promtool) run in
 * `deploy/check.sh`.
 */
import assert from "node:assert/strict";
import { SETTINGS } from "../schemas/config.ts";
import { VERSION } from "../main.ts";

const read = (path: string) => Deno.readTextFile(new URL(`../${path}`, import.meta.url));
const CHART = "deploy/helm/iot-pipeline";

/** The `--allow-*` and `--unstable-*` flags of a command line, sorted. */
function permissionFlags(args: readonly string[]): string[] {
  return args.filter((a) => /^--(allow|deny|unstable)-/.test(a)).sort();
}

Deno.test("the image's entrypoint has the permissions of `deno task start`, no more", async () => {
  const dockerfile = await read("Dockerfile");
  const line = dockerfile.split("\n").find((l) => l.startsWith("ENTRYPOINT "));
  assert.ok(line, "the Dockerfile has an exec-form ENTRYPOINT");
  const entrypoint: string[] = JSON.parse(line.slice("ENTRYPOINT ".length));
  const deno = JSON.parse(await read("deno.json"));
  const start: string[] = deno.tasks.start.command.split(/\s+/);
  assert.deepEqual(permissionFlags(entrypoint), permissionFlags(start));
  assert.ok(!entrypoint.includes("-A") && !entrypoint.includes("--allow-all"));
  assert.ok(entrypoint.includes("--cached-only"), "no download at start");
  assert.equal(entrypoint.at(-1), "main.ts");
});

Deno.test("the image's .dockerignore lets in every module main.ts imports and the dashboard", async () => {
  const allowed = (await read(".dockerignore")).split("\n")
    .filter((l) => l.startsWith("!")).map((l) => l.slice(1).replace(/\/$/, ""));
  // Walk the relative imports from main.ts (static and dynamic), as the image must hold them.
  const root = new URL("../", import.meta.url);
  const seen = new Set<string>();
  const queue = [new URL("main.ts", root)];
  for (let url = queue.pop(); url; url = queue.pop()) {
    if (seen.has(url.href)) continue;
    seen.add(url.href);
    const source = await Deno.readTextFile(url);
    for (const [, spec] of source.matchAll(/(?:from|import)\s*\(?\s*"(\.{1,2}\/[^"]+)"/g)) {
      queue.push(new URL(spec!, url));
    }
  }
  const tops = new Set([...seen].map((href) => href.slice(root.href.length).split("/")[0]!));
  tops.add("dashboard"); // served from disk: new URL("./dashboard/", ...)
  assert.ok(tops.size >= 5 && tops.has("adapters"), [...tops].join(", "));
  for (const top of tops) assert.ok(allowed.includes(top), `.dockerignore lets in ${top}`);
});

Deno.test("the image uses the Deno version CI pins, as a non-root numeric user", async () => {
  const dockerfile = await read("Dockerfile");
  const ci = await read(".ci/run");
  const pinned = /^DENO_VERSION="([^"]+)"/m.exec(ci)?.[1];
  assert.ok(pinned);
  assert.match(
    dockerfile,
    new RegExp(`^FROM denoland/deno:${pinned.replaceAll(".", "\\.")}$`, "m"),
  );
  const user = /^USER (\S+)$/m.exec(dockerfile)?.[1];
  assert.ok(user && /^[1-9][0-9]*:[1-9][0-9]*$/.test(user), `USER ${user} is numeric, not root`);
  const instructions = dockerfile.replaceAll("\\\n", " ");
  assert.match(instructions, /^HEALTHCHECK .*CMD .*\/livez/m);
});

Deno.test("the chart's values schema names only real settings, and its appVersion is the app's", async () => {
  const schema = JSON.parse(await read(`${CHART}/values.schema.json`));
  const envs = new Set(SETTINGS.map((s) => s.env));
  const named = Object.keys(schema.properties.config.properties);
  for (const name of named) assert.ok(envs.has(name), `${name} is a setting of schemas/config.ts`);
  // Every secret setting is refused under `config`: it must come from a Secret.
  for (const s of SETTINGS.filter((s) => s.secret)) {
    assert.deepEqual(schema.properties.config.properties[s.env]?.not, {}, `${s.env} is refused`);
  }
  const configMap = await read(`${CHART}/templates/configmap.yaml`);
  const deployment = await read(`${CHART}/templates/deployment.yaml`);
  const set = [
    ...configMap.matchAll(/^ {2}([A-Z][A-Z0-9_]+):/gm),
    ...deployment.matchAll(/- name: ([A-Z][A-Z0-9_]+)$/gm),
  ].map((m) => m[1]!);
  assert.ok(set.length >= 10);
  for (const name of set) assert.ok(envs.has(name), `the chart sets ${name}, not a setting`);
  const chart = await read(`${CHART}/Chart.yaml`);
  assert.equal(/^appVersion: "([^"]+)"$/m.exec(chart)?.[1], VERSION);
});

Deno.test("compose keeps Kafka's log on its volume and needs no token for kafka and mongo", async () => {
  const compose = (await read("compose.yaml")).replace(/^\s*#.*$/gm, "");
  const mount = /- kafka-data:(\S+)/.exec(compose)?.[1];
  assert.ok(mount);
  assert.match(compose, new RegExp(`KAFKA_LOG_DIRS: ${mount}$`, "m"));
  // Compose interpolates the whole file: a `:?` form would fail `up -d kafka mongo` too.
  assert.doesNotMatch(compose, /\$\{[A-Z_]+:\?/);
  assert.match(compose, /^ {4}build:/m, "the app is built from the Dockerfile");
});
