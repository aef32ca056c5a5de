/**
 * Proves the local service stack under Deno with the same clients the
 * pipeline uses: kafkajs against the real broker, the MongoDB driver against
 * the real MongoDB-protocol server.
 */
import "./env_guard.ts";
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  MONGO_URL,
  requireServices,
  tempDb,
  tempTopic,
  testKafka,
  testProducer,
  uniqueName,
} from "./fixtures.ts";
import { needs, testWith } from "./needs.ts";
import { settle } from "./wait.ts";

/** Registrars for tests that need Kafka, the MongoDB-protocol store, or only permissions. */
const withKafka = await testWith({ kafka: true });
const withMongo = await testWith({ mongo: true });
const permitted = await testWith();

withKafka.test("stack: Kafka keeps per-key order and commits offsets in a consumer group", async () => {
  await requireServices(undefined, { kafka: true });
  await using topic = await tempTopic("stack", 3);
  const kafka = testKafka();
  const producer = testProducer(kafka);
  await producer.connect();
  const messages = Array.from({ length: 30 }, (_, i) => ({
    key: `device-${i % 3}`,
    value: JSON.stringify({ n: i }),
  }));
  await producer.send({ topic: topic.name, acks: -1, messages });
  await producer.disconnect();

  const groupId = uniqueName("stack-group");
  const consumer = kafka.consumer({ groupId });
  await consumer.connect();
  await consumer.subscribe({ topic: topic.name, fromBeginning: true });
  const seen = new Map<string, number[]>();
  let count = 0;
  await new Promise<void>((resolve, reject) => {
    consumer.run({
      autoCommit: false,
      eachMessage: async ({ message, partition }) => {
        const key = message.key!.toString();
        seen.set(key, [...(seen.get(key) ?? []), JSON.parse(message.value!.toString()).n]);
        await consumer.commitOffsets([{
          topic: topic.name,
          partition,
          offset: (BigInt(message.offset) + 1n).toString(),
        }]);
        if (++count === messages.length) resolve();
      },
    }).catch(reject);
  });
  await consumer.disconnect();

  for (let d = 0; d < 3; d++) {
    const expected = messages.map((_, i) => i).filter((i) => i % 3 === d);
    assert.deepEqual(seen.get(`device-${d}`), expected, `order of device-${d}`);
  }
  const admin = kafka.admin();
  await admin.connect();
  const [offsets] = await admin.fetchOffsets({ groupId, topics: [topic.name] });
  await admin.deleteGroups([groupId]).catch(() => {});
  await admin.disconnect();
  // A partition that got no message reports offset -1.
  const committed = offsets!.partitions.reduce((sum, p) => sum + Math.max(0, Number(p.offset)), 0);
  assert.equal(committed, messages.length, "committed offsets cover every message");
});

withMongo.test("stack: MongoDB upsert by _id is idempotent and indexes, queries and aggregates work", async () => {
  await using tmp = await tempDb("stack");
  const readings = tmp.db.collection<{ _id: string; deviceId: string; seq: number; ts: Date }>(
    "readings",
  );
  await readings.createIndex({ deviceId: 1, ts: -1 });
  await readings.createIndex({ deviceId: 1, seq: 1 }, { unique: true });
  const doc = { deviceId: "d1", seq: 1, ts: new Date("2026-11-27T13:00:00Z") };
  for (let i = 0; i < 2; i++) {
    await readings.updateOne({ _id: "d1:1" }, { $setOnInsert: doc }, { upsert: true });
  }
  await readings.insertOne({
    _id: "d1:2",
    deviceId: "d1",
    seq: 2,
    ts: new Date("2026-11-27T13:00:03Z"),
  });
  await assert.rejects(
    readings.insertOne({ _id: "d1:2b", deviceId: "d1", seq: 2, ts: new Date() }),
    (err: { code?: number }) => err.code === 11000,
    "the unique index rejects a second (deviceId, seq)",
  );
  assert.equal(await readings.countDocuments({ deviceId: "d1" }), 2);
  const newest = await readings.find({ deviceId: "d1" }).sort({ ts: -1 }).limit(1).toArray();
  assert.equal(newest[0]?._id, "d1:2");
  const grouped = await readings.aggregate([
    { $match: { deviceId: "d1" } },
    { $group: { _id: "$deviceId", n: { $sum: 1 } } },
  ]).toArray();
  assert.deepEqual(grouped, [{ _id: "d1", n: 2 }]);
});

permitted.test("installAtomically() lets two first-time builds at once install one whole result and clean up", async () => {
  // Imported here: the stack script reads its settings from the environment as it loads.
  const { installAtomically } = await import("../stack/stack.ts");
  const cache = await Deno.makeTempDir({ prefix: "iot-stack-test-" });
  try {
    const libs = join(cache, "kafka-x", "libs");
    const jars = (run: string) => async (work: string) => {
      const out = join(work, "libs");
      await Deno.mkdir(out);
      for (let i = 0; i < 20; i++) {
        await Deno.writeTextFile(join(out, `lib-${i}.jar`), run);
        await settle(); // let the other build interleave
      }
      return out;
    };
    await Promise.all([installAtomically(libs, jars("a")), installAtomically(libs, jars("b"))]);
    const names = [...Deno.readDirSync(libs)].map((e) => e.name).sort();
    assert.equal(names.length, 20, "every file of one build");
    const owners = new Set(names.map((name) => Deno.readTextFileSync(join(libs, name))));
    assert.equal(owners.size, 1, "all from the same build, none mixed in");
    assert.deepEqual([...Deno.readDirSync(join(cache, "kafka-x"))].map((e) => e.name), ["libs"]);

    const bin = join(cache, "ferretdb-x", "ferretdb");
    const binary = (run: string) => async (work: string) => {
      await settle();
      await Deno.writeTextFile(join(work, "ferretdb"), `binary ${run}`);
      return join(work, "ferretdb");
    };
    await Promise.all([installAtomically(bin, binary("a")), installAtomically(bin, binary("b"))]);
    assert.match(await Deno.readTextFile(bin), /^binary [ab]$/);
    assert.deepEqual(
      [...Deno.readDirSync(join(cache, "ferretdb-x"))].map((e) => e.name),
      ["ferretdb"],
    );

    await assert.rejects(
      installAtomically(
        join(cache, "broken", "libs"),
        () => Promise.reject(new Error("Build failed")),
      ),
      /Build failed/,
    );
    assert.deepEqual([...Deno.readDirSync(join(cache, "broken"))], [], "no build folder left");
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
});

permitted.test("settingsFromEnv() defaults to the PostgreSQL backend on a port of its own", async () => {
  const { settingsFromEnv } = await import("../stack/stack.ts");
  const s = settingsFromEnv({});
  assert.equal(s.ferretBackend, "pg");
  assert.deepEqual(
    [s.kafkaPort, s.kafkaControllerPort, s.mongoPort, s.pgPort, s.pgBinDir],
    [9092, 9093, 27017, 54320, undefined],
  );
  const pg = settingsFromEnv({
    STACK_FERRETDB_BACKEND: "pg",
    STACK_PG_PORT: "55432",
    STACK_PG_BINDIR: "/opt/pg/bin",
  });
  assert.deepEqual([pg.ferretBackend, pg.pgPort, pg.pgBinDir], ["pg", 55432, "/opt/pg/bin"]);
  assert.equal(settingsFromEnv({ STACK_FERRETDB_BACKEND: "PostgreSQL" }).ferretBackend, "pg");
  assert.equal(settingsFromEnv({ STACK_FERRETDB_BACKEND: "sqlite" }).ferretBackend, "sqlite");
});

permitted.test("settingsFromEnv() reports every bad value at once", async () => {
  const { settingsFromEnv, StackError } = await import("../stack/stack.ts");
  assert.throws(
    () => settingsFromEnv({ STACK_FERRETDB_BACKEND: "mysql", STACK_PG_PORT: "70000" }),
    (err) =>
      err instanceof StackError &&
      err.message.includes(`STACK_FERRETDB_BACKEND: "mysql" is not one of sqlite, pg`) &&
      err.message.includes(`STACK_PG_PORT: "70000" is not a TCP port`),
  );
  // The PostgreSQL port only has to differ from the others when PostgreSQL runs.
  assert.equal(
    settingsFromEnv({ STACK_FERRETDB_BACKEND: "sqlite", STACK_PG_PORT: "9092" }).pgPort,
    9092,
  );
  assert.throws(
    () => settingsFromEnv({ STACK_PG_PORT: "27017" }),
    /the stack's ports must differ: "9092, 9093, 27017, 27017"/,
  );
});

permitted.test("ferretArgs() points FerretDB at SQLite files or at the stack's PostgreSQL", async () => {
  const { ferretArgs, postgresUrl, settingsFromEnv } = await import("../stack/stack.ts");
  const paths = { home: "/s/ferretdb", pgUrl: "postgres://ferretdb@127.0.0.1:55432/ferretdb" };
  const sqlite = ferretArgs(
    "/bin/ferretdb",
    settingsFromEnv({ STACK_FERRETDB_BACKEND: "sqlite", STACK_MONGO_PORT: "37217" }),
    paths,
  );
  assert.deepEqual(sqlite.slice(0, 3), [
    "/bin/ferretdb",
    "--handler=sqlite",
    "--sqlite-url=file:/s/ferretdb/data/?_pragma=synchronous(normal)",
  ]);
  assert.ok(sqlite.includes("--listen-addr=127.0.0.1:37217"));
  const s = settingsFromEnv({ STACK_FERRETDB_BACKEND: "pg", STACK_PG_PORT: "55432" });
  assert.equal(postgresUrl(s), `${paths.pgUrl}?pool_max_conns=150`);
  const pg = ferretArgs("/bin/ferretdb", s, paths);
  assert.deepEqual(pg.slice(1, 3), ["--handler=pg", `--postgresql-url=${paths.pgUrl}`]);
  assert.ok(!pg.some((a) => a.startsWith("--sqlite")));
});

permitted.test("postgresArgs() listens on loopback only, and asUser() drops root with setpriv", async () => {
  const { asUser, initdbArgs, postgresArgs, settingsFromEnv } = await import("../stack/stack.ts");
  const s = settingsFromEnv({ STACK_FERRETDB_BACKEND: "pg", STACK_PG_PORT: "55432" });
  const argv = postgresArgs("/pg/bin/postgres", s, "/s/postgres/data");
  assert.deepEqual(argv.slice(0, 3), ["/pg/bin/postgres", "-D", "/s/postgres/data"]);
  const settings = argv.slice(3).filter((_, i) => i % 2 === 1);
  assert.ok(argv.slice(3).every((a, i) => i % 2 === 1 || a === "-c"));
  for (const expected of ["listen_addresses=127.0.0.1", "port=55432", "unix_socket_directories="]) {
    assert.ok(settings.includes(expected), expected);
  }
  assert.ok(initdbArgs("/d").includes("--auth=trust"));
  assert.deepEqual(asUser(undefined, ["initdb", "-D", "/d"]), ["initdb", "-D", "/d"]);
  assert.deepEqual(asUser("postgres", ["initdb", "-D", "/d"]), [
    "setpriv",
    "--reuid=postgres",
    "--regid=postgres",
    "--init-groups",
    "--",
    "initdb",
    "-D",
    "/d",
  ]);
});

/** Whether the tests' store is the local stack's FerretDB on its PostgreSQL. */
const onStackPostgres = MONGO_URL.includes("127.0.0.1:27017") &&
  (await Deno.readTextFile(".stack/run/ferretdb.backend").catch(() => "")).trim() === "pg";

/** Rows of `sql` in the stack's PostgreSQL, through `stackSql()` in a `deno` child (runs psql). */
async function stackRows(sql: string): Promise<string[]> {
  const stack = new URL("../stack/stack.ts", import.meta.url).href;
  const code = `import { settingsFromEnv, stackSql } from ${JSON.stringify(stack)};
    console.log(await stackSql(settingsFromEnv(Deno.env.toObject()), "ferretdb", Deno.args[0]));`;
  const out = await new Deno.Command("deno", { args: ["eval", code, sql], stderr: "inherit" })
    .output();
  assert.ok(out.success, "psql through stack/stack.ts failed");
  return new TextDecoder().decode(out.stdout).trim().split("\n").filter((l) => l !== "");
}

Deno.test(
  "stack: each table FerretDB makes on PostgreSQL gets the `_id` GIN index and no statistics of its documents, and `_id` lookups still use the index after ANALYZE",
  { ignore: (await needs({ mongo: true, deno: true })).ignore || !onStackPostgres },
  async () => {
    await using tmp = await tempDb("stackpg");
    const { idLookupOf } = await import("../adapters/mongo_store.ts");
    const readings = tmp.db.collection<{ _id: string; n: number }>("readings");
    await readings.insertMany(Array.from({ length: 2000 }, (_, n) => ({ _id: `d:${n}`, n })));
    const tables = await stackRows(`
      SELECT c.relname, a.attstattarget, (SELECT count(*) FROM pg_indexes i
        WHERE i.schemaname = n.nspname AND i.tablename = c.relname AND i.indexdef LIKE '%USING gin%')
      FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = '${tmp.name}' AND c.relname LIKE 'readings%' AND a.attname = '_jsonb'`);
    const [table, ...setup] = tables[0]?.split("|") ?? [];
    assert.deepEqual(
      [tables.length, setup.join("|")],
      [1, "0|1"],
      "statistics target 0 and one GIN index",
    );
    await stackRows(`ANALYZE "${tmp.name}"."${table}"`);
    assert.equal(await idLookupOf(tmp.db), "points", "an `_id` equality reads the index");
  },
);
