/**
 * Imported first by the test files whose imports read the environment as they
 * load: kafkajs reads `NODE_ENV` at import. A bare `deno test` grants no
 * permission, so that read would fail the whole file with a stack trace
 * before its tests could be skipped; while env access is not granted, reads
 * through `process.env` answer `undefined` instead. With env access (`deno
 * test -P`, `deno task test`) this does nothing.
 *
 * @module
 */
import process from "node:process";

if (Deno.permissions.querySync({ name: "env" }).state !== "granted") {
  Object.defineProperty(process, "env", { value: {}, configurable: true, writable: true });
}
