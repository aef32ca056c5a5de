/**
 * What a test needs to run, declared as `Deno.test(name, await needs(...), fn)`:
 * the suite's permissions (the default set in deno.json, which `deno test -P`
 * grants) and, for integration tests, Kafka and a MongoDB-protocol store.
 * Without them a test is skipped with one line saying how to run it, so a bare
 * `deno test` runs what needs no permission and names the right command.
 *
 * @module
 */

/** The permissions the suite needs: the default set in deno.json. */
const SUITE_PERMISSIONS = ["env", "net", "read", "write", "sys"] as const;

/** What a test needs besides the suite's permissions. */
export interface Needs {
  readonly kafka?: boolean;
  readonly mongo?: boolean;
  /** Runs the `deno` binary as a subprocess (the default set grants `run: ["deno"]`). */
  readonly deno?: boolean;
}

/** An environment variable, or `fallback` when it is unset or env access is not granted. */
export function envOr(name: string, fallback: string): string;
export function envOr(name: string, fallback?: string): string | undefined;
export function envOr(name: string, fallback?: string): string | undefined {
  if (Deno.permissions.querySync({ name: "env", variable: name }).state !== "granted") {
    return fallback;
  }
  return Deno.env.get(name) || fallback;
}

/** Per service, what is wrong with it (undefined: it answers); probed once per file. */
const problems = new Map<"kafka" | "mongo", Promise<string | undefined>>();

function problemWith(service: "kafka" | "mongo"): Promise<string | undefined> {
  let problem = problems.get(service);
  if (!problem) {
    // Loaded only here: the fixture brings kafkajs and the MongoDB driver.
    problem = import("./fixtures.ts").then(async ({ serviceProblems }) =>
      (await serviceProblems(undefined, { [service]: true }))[0]
    );
    problems.set(service, problem);
  }
  return problem;
}

/** The skip lines already printed in this file. */
const noted = new Set<string>();

/**
 * Options for `Deno.test(name, options, fn)`: the test runs when the suite's
 * permissions are granted and the services it needs answer; otherwise it is
 * ignored, with one line per file and reason saying how to run it.
 */
export async function needs(what: Needs = {}): Promise<{ ignore: boolean }> {
  const missing: string[] = SUITE_PERMISSIONS.filter((name) =>
    Deno.permissions.querySync({ name }).state !== "granted"
  );
  if (
    what.deno && Deno.permissions.querySync({ name: "run", command: "deno" }).state !== "granted"
  ) {
    missing.push("run (deno)");
  }
  let reason: string | undefined;
  let needed = "permissions";
  if (missing.length > 0) {
    reason = `no ${missing.join("/")} access: run \`deno test -P\` (the permissions are the ` +
      "default set in deno.json) or `deno task test`";
  } else if (what.kafka || what.mongo) {
    const wanted = (["kafka", "mongo"] as const).filter((service) => what[service]);
    const found = (await Promise.all(wanted.map(problemWith))).filter((p) => p !== undefined);
    if (found.length > 0) {
      reason = `${found.join("; ")}: run \`deno task test\`, which brings the local stack up, ` +
        "or point KAFKA_BROKERS / MONGO_URL at running servers";
    }
    needed = wanted.map((service) => service === "kafka" ? "Kafka" : "MongoDB").join(" and ");
  }
  if (reason === undefined) return { ignore: false };
  const line = `Skipping the tests that need ${needed}: ${reason}`;
  if (!noted.has(line)) {
    noted.add(line);
    console.log(line);
  }
  return { ignore: true };
}

/** `test(name, fn)` registers a test like `Deno.test`, ignored when `needs()` says so. */
export interface TestRegistrar {
  test(name: string, fn: (t: Deno.TestContext) => void | Promise<void>): void;
}

/**
 * `needs(what)` as a registrar, e.g. `const mongo = await testWith({ mongo: true });` then
 * `mongo.test("name", async () => {...})` in place of `Deno.test("name", async () => {...})`.
 */
export async function testWith(what: Needs = {}): Promise<TestRegistrar> {
  const options = await needs(what);
  return { test: (name, fn) => Deno.test(name, options, fn) };
}
