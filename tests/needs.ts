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

let services: Promise<string | undefined> | undefined;
const noted = new Set<string>();

/**
 * Options for `Deno.test(name, options, fn)`: the test runs when the suite's
 * permissions are granted and the services it needs answer; otherwise it is
 * ignored, with one line per file and reason saying how to run it.
 */
export async function needs(what: Needs = {}): Promise<{ ignore: boolean }> {
  const missing = SUITE_PERMISSIONS.filter((name) =>
    Deno.permissions.querySync({ name }).state !== "granted"
  );
  let reason: string | undefined;
  let needed = "permissions";
  if (missing.length > 0) {
    reason = `no ${missing.join("/")} access: run \`deno test -P\` (the permissions are the ` +
      "default set in deno.json) or `deno task test`";
  } else if (what.kafka || what.mongo) {
    // Loaded only here: the fixture brings kafkajs and the MongoDB driver.
    services ??= import("./fixtures.ts").then(async ({ serviceProblems }) => {
      const problems = await serviceProblems(undefined, { kafka: true, mongo: true });
      return problems.length > 0
        ? `${problems.join("; ")}: run \`deno task test\`, which brings the local stack up, ` +
          "or point KAFKA_BROKERS / MONGO_URL at running servers"
        : undefined;
    });
    reason = await services;
    needed = "Kafka and MongoDB";
  }
  if (reason === undefined) return { ignore: false };
  if (!noted.has(reason)) {
    noted.add(reason);
    console.log(`Skipping the tests that need ${needed}: ${reason}`);
  }
  return { ignore: true };
}
