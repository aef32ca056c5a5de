import assert from "node:assert/strict";
import { parseStoreOptions, storeTable } from "../bench/store_backends.ts";

Deno.test("parseStoreOptions() reads named targets and sizes, the first target the baseline", () => {
  const o = parseStoreOptions([
    "--target",
    "sqlite=mongodb://127.0.0.1:37217/",
    "--target",
    "pg=mongodb://127.0.0.1:37218/",
    "--sizes",
    "20000, 200000",
    "--runs",
    "2",
  ]);
  assert.ok(!("problems" in o));
  assert.deepEqual(o.targets, [
    { name: "sqlite", url: "mongodb://127.0.0.1:37217/" },
    { name: "pg", url: "mongodb://127.0.0.1:37218/" },
  ]);
  assert.deepEqual([o.sizes, o.runs, o.devices, o.inSize], [[20_000, 200_000], 2, 10_000, 50]);
});

Deno.test("parseStoreOptions() reports every problem at once", () => {
  const o = parseStoreOptions(["--target", "pg", "--target", "x=mongodb://h/", "--runs", "0"]);
  assert.ok("problems" in o);
  assert.equal(o.problems.length, 2);
  assert.ok(o.problems.includes(`--target: "pg" is not NAME=mongodb://…`));
  assert.ok(o.problems.includes(`--runs: "0" is not an integer ≥ 1`));
  assert.ok("problems" in parseStoreOptions([]), "no target is a problem");
});

Deno.test("storeTable() gives medians, ratios to each run's own ceiling and to the baseline's same run", () => {
  const figures = new Map([
    ["sqlite", [
      { "ceiling insertMany docs/s": 1000, "_id = at 20000 reads/s": 2 },
      { "ceiling insertMany docs/s": 2000, "_id = at 20000 reads/s": 1 },
    ]],
    ["pg", [
      { "ceiling insertMany docs/s": 1000, "_id = at 20000 reads/s": 100 },
      { "ceiling insertMany docs/s": 1000, "_id = at 20000 reads/s": 60 },
    ]],
  ]);
  const lines = storeTable(["sqlite", "pg"], figures).split("\n");
  assert.equal(
    lines[0],
    "| per second (median, min–max) | sqlite | sqlite ÷ its ceiling | pg | pg ÷ its ceiling | pg ÷ sqlite |",
  );
  assert.equal(
    lines.find((l) => l.startsWith("| _id =")),
    "| _id = at 20000 reads/s | 1.50 (1.00–2.00) | 0.0013 (0.00050–0.0020) | 80.0 (60.0–100) | 0.080 (0.060–0.10) | 55.0 (50.0–60.0) |",
  );
});
