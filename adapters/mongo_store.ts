/**
 * The MongoDB adapter: idempotent batched writes of readings, alerts and
 * device states, the device-state lookups a processor needs to resume, and
 * the read queries of the HTTP API.
 *
 * Every document has a deterministic `_id`: readings are inserted if absent
 * (a stored reading is never replaced; one with the same `_id` but other
 * content is refused as a conflict and reported to the caller), alert snapshots and device states never replace a newer stored copy
 * (`asOfSeq`, `lastSeq`), so replaying a batch after a crash changes nothing
 * and a stale owner after a rebalance cannot move a device backwards. Device
 * states are written last. Why the writes are shaped for FerretDB:
 * docs/local-stack.md#ferretdb-notes.
 *
 * @module
 */
import {
  type AnyBulkWriteOperation,
  type Collection,
  type Db,
  type Filter,
  MongoBulkWriteError,
  MongoClient,
} from "mongodb";
import {
  type AlertDoc,
  type AlertStatus,
  type AlertType,
  COLLECTIONS,
  type DeviceDoc,
  type ReadingDoc,
} from "../schemas/documents.ts";
import type { Logger } from "../actors/logger.ts";
import type { StoreQueries } from "../actors/store_queries.ts";
import {
  type DeviceStore,
  type Refusal,
  refusalOf,
  type SeqLookup,
  type WriteBatch,
  type WriteResult,
} from "../actors/device_store.ts";

const DUPLICATE_KEY = 11000;
/** Write-ahead copies of device states being replaced (normally empty). */
const PENDING_DEVICES = "devices_pending";

interface PendingDevice {
  readonly _id: string;
  readonly checkpointId: string;
  readonly doc: DeviceDoc;
}

export class MongoStore implements DeviceStore, StoreQueries, SeqLookup, AsyncDisposable {
  readonly #client: MongoClient;
  readonly #db: Db;

  private constructor(client: MongoClient, db: Db) {
    this.#client = client;
    this.#db = db;
  }

  /** Connects and creates the indexes the queries rely on. */
  static async open(url: string, dbName: string, logger: Logger): Promise<MongoStore> {
    const client = new MongoClient(url, {
      serverSelectionTimeoutMS: 5000,
      connectTimeoutMS: 5000,
      appName: "iot-pipeline",
    });
    await client.connect();
    const store = new MongoStore(client, client.db(dbName));
    try {
      await store.#ensureIndexes();
      const recovered = await store.#recover();
      if (recovered > 0) logger.warn("finished interrupted device-state writes", { recovered });
    } catch (err) {
      await client.close();
      throw err;
    }
    return store;
  }

  async #ensureIndexes() {
    await Promise.all([
      this.#readings().createIndex({ deviceId: 1, ts: -1 }, { name: "deviceId_ts" }),
      this.#alerts().createIndex({ deviceId: 1, raisedAt: -1 }, { name: "deviceId_raisedAt" }),
      this.#alerts().createIndex({ status: 1, raisedAt: -1 }, { name: "status_raisedAt" }),
    ]);
  }

  #readings() {
    return this.#db.collection<ReadingDoc>(COLLECTIONS.readings);
  }
  #alerts() {
    return this.#db.collection<AlertDoc>(COLLECTIONS.alerts);
  }
  #devices() {
    return this.#db.collection<DeviceDoc>(COLLECTIONS.devices);
  }
  #pending() {
    return this.#db.collection<PendingDevice>(PENDING_DEVICES);
  }

  async ping(): Promise<void> {
    await this.#db.command({ ping: 1 });
  }

  async loadDevices(ids: readonly string[]): Promise<Map<string, DeviceDoc>> {
    const found = new Map<string, DeviceDoc>();
    if (ids.length === 0) return found;
    const docs = await findByIds(this.#devices(), ids);
    for (const doc of docs) found.set(doc._id, doc);
    return found;
  }

  async write(batch: WriteBatch): Promise<WriteResult> {
    // Readings and alerts first; device states only once those are durable,
    // so a stored state never claims readings that were not stored.
    const [refused] = await Promise.all([
      this.#writeReadings(batch.readings, batch.skipped ?? []),
      this.#writeAlerts(batch.alerts),
    ]);
    await this.#writeDevices(batch.devices);
    return { refused };
  }

  /**
   * Inserts the readings not stored yet in one unordered insert. Only the
   * ones it finds stored already, and the skipped ones, are then read back by
   * `_id` and compared: a batch without either costs no extra round trip. On
   * FerretDB that read scans the readings collection (see `findByIds`): a batch
   * replayed after a crash costs up to 32 SQLite scans, or one slower scan.
   */
  async #writeReadings(
    readings: readonly ReadingDoc[],
    skipped: readonly ReadingDoc[],
  ): Promise<Refusal[]> {
    const existing = await insertNew(this.#readings(), readings);
    if (existing.length === 0 && skipped.length === 0) return [];
    const ids = [...new Set([...existing, ...skipped].map((r) => r._id))];
    const stored = new Map((await findByIds(this.#readings(), ids)).map((d) => [d._id, d]));
    const refused: Refusal[] = [];
    for (const reading of existing) {
      const found = stored.get(reading._id);
      // Reported as a duplicate key, so stored; `found` is missing only if it was deleted since.
      const refusal = found && refusalOf(reading, found);
      if (refusal) refused.push(refusal);
    }
    for (const reading of skipped) {
      const refusal = refusalOf(reading, stored.get(reading._id));
      if (refusal) refused.push(refusal);
    }
    return refused;
  }

  /**
   * Alert documents are full, deterministic snapshots: one replaces the stored
   * one unless that reflects a later reading (`asOfSeq`), as a stale owner's
   * would after a rebalance. Read-then-replace by `_id` (docs/local-stack.md#ferretdb-notes).
   */
  async #writeAlerts(alerts: readonly AlertDoc[]): Promise<void> {
    if (alerts.length === 0) return;
    const stored = await storedVersions(this.#alerts(), alerts, "asOfSeq");
    const fresh = alerts.filter((a) => (stored.get(a._id) ?? -1) <= a.asOfSeq);
    const raced: AlertDoc[] = [];
    for (let i = 0; i < fresh.length; i += UPDATE_CHUNK) {
      const chunk = fresh.slice(i, i + UPDATE_CHUNK);
      try {
        await this.#alerts().bulkWrite(
          chunk.map((a) => stored.has(a._id) ? guardedReplace(a) : upsert(a)),
          { ordered: false },
        );
      } catch (err) {
        // FerretDB's upsert is not atomic: of two owners upserting one new alert, one can lose
        // with a duplicate key. A guarded replace finishes it (docs/local-stack.md#ferretdb-notes).
        if (!(err instanceof MongoBulkWriteError) || !onlyDuplicateKeys(err)) throw err;
        for (const e of toArray(err.writeErrors)) raced.push(chunk[e.index]!);
      }
    }
    await bulk(this.#alerts(), raced.map(guardedReplace));
  }

  /**
   * Writes device states unless a newer one (higher `lastSeq`) is stored, as
   * one `deleteMany` + one `insertMany` rather than per-device upserts
   * (docs/local-stack.md#ferretdb-notes). The new states go first to a small
   * write-ahead collection, which `open()` replays if a crash fell between
   * the delete and the insert.
   */
  async #writeDevices(devices: readonly DeviceDoc[]) {
    if (devices.length === 0) return;
    const fresh = await notOlderThanStored(this.#devices(), devices, "lastSeq");
    if (fresh.length === 0) return;
    const checkpointId = crypto.randomUUID();
    await insertOnce(
      this.#pending(),
      fresh.map((d) => ({ _id: `${checkpointId}:${d._id}`, checkpointId, doc: d })),
    );
    await this.#replaceDevices(fresh);
    await this.#pending().deleteMany({ checkpointId });
  }

  async #replaceDevices(docs: readonly DeviceDoc[]) {
    await this.#devices().deleteMany({ _id: { $in: docs.map((d) => d._id) } });
    // A concurrent writer (a stale owner) may have inserted one meanwhile: keep either.
    await insertOnce(this.#devices(), docs);
  }

  /** Finishes device writes a crash interrupted (see `#writeDevices`). */
  async #recover(): Promise<number> {
    const entries = await this.#pending().find({}).toArray();
    if (entries.length === 0) return 0;
    const newest = new Map<string, DeviceDoc>();
    for (const { doc } of entries) {
      const seen = newest.get(doc._id);
      if (!seen || seen.lastSeq <= doc.lastSeq) newest.set(doc._id, doc);
    }
    const fresh = await notOlderThanStored(this.#devices(), [...newest.values()], "lastSeq");
    if (fresh.length > 0) await this.#replaceDevices(fresh);
    await this.#pending().deleteMany({});
    return fresh.length;
  }

  async lastSeqs(): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    const cursor = this.#devices().find({}, { projection: { _id: 1, lastSeq: 1 } });
    for await (const d of cursor) out.set(d._id, d.lastSeq);
    return out;
  }

  device(id: string): Promise<DeviceDoc | null> {
    return this.#devices().findOne({ _id: id });
  }

  /** Used only with the embedded transport (Kafka replays instead), so no index of its own. */
  readingsAfter(deviceId: string, afterSeq: number, limit: number): Promise<ReadingDoc[]> {
    return this.#readings().find({ deviceId, seq: { $gt: afterSeq } }).sort({ seq: 1 })
      .limit(limit).toArray();
  }

  readings(deviceId: string, limit: number): Promise<ReadingDoc[]> {
    return this.#readings().find({ deviceId }).sort({ ts: -1, seq: -1 }).limit(limit).toArray();
  }

  alerts(
    filter: {
      readonly status?: AlertStatus;
      readonly deviceId?: string;
      readonly type?: AlertType;
      readonly limit: number;
    },
  ): Promise<AlertDoc[]> {
    const query: Record<string, string> = {};
    if (filter.status) query.status = filter.status;
    if (filter.type) query.type = filter.type;
    if (filter.deviceId) query.deviceId = filter.deviceId;
    return this.#alerts().find(query).sort({ raisedAt: -1 }).limit(filter.limit).toArray();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.#client.close();
  }
}

/**
 * Inserts documents whose `_id` may already exist; an existing one is kept as
 * it is. An unordered insert reports the duplicates and inserts the rest.
 */
async function insertOnce<T extends { _id: string }>(
  collection: Collection<T>,
  docs: readonly T[],
): Promise<void> {
  await insertNew(collection, docs);
}

/** Like {@linkcode insertOnce}, answering the documents whose `_id` was stored already. */
async function insertNew<T extends { _id: string }>(
  collection: Collection<T>,
  docs: readonly T[],
): Promise<T[]> {
  if (docs.length === 0) return [];
  try {
    // deno-lint-ignore no-explicit-any
    await collection.insertMany(docs as any[], { ordered: false });
    return [];
  } catch (err) {
    if (!(err instanceof MongoBulkWriteError) || !onlyDuplicateKeys(err)) throw err;
    return toArray(err.writeErrors).map((e) => docs[e.index]!);
  }
}

/**
 * The documents whose `version` is not below the stored copy's (or that are
 * not stored yet): one query for the whole batch.
 */
async function notOlderThanStored<V extends string, T extends { _id: string } & Record<V, number>>(
  collection: Collection<T>,
  docs: readonly T[],
  version: V,
): Promise<T[]> {
  const storedVersion = await storedVersions(collection, docs, version);
  return docs.filter((d) => (storedVersion.get(d._id) ?? -1) <= d[version]);
}

/** The stored version of each of these documents that exists (-1 when it has none). */
async function storedVersions<V extends string, T extends { _id: string } & Record<V, number>>(
  collection: Collection<T>,
  docs: readonly T[],
  version: V,
): Promise<Map<string, number>> {
  const stored = await findByIds(collection, docs.map((d) => d._id), { [version]: 1 });
  return new Map(stored.map((d) => [d._id, d[version] ?? -1]));
}

/**
 * Up to this many ids are fetched one by one, concurrently; more with one
 * `$in`. FerretDB reads every document for either (docs/local-stack.md#ferretdb-notes):
 * an `_id` equality is filtered in SQLite (explain: `SCAN`), about 25 µs per
 * stored document here, `$in` in FerretDB, about 650 µs per stored document
 * but once for all the ids. On 20 000 readings: one `_id` lookup 0.45 s, one
 * `$in` of 50 ids 13 s, of 2 000 ids 23 s. MongoDB uses its index for both.
 */
const POINT_LOOKUPS_UP_TO = 32;

async function findByIds<T extends { _id: string }>(
  collection: Collection<T>,
  ids: readonly string[],
  projection?: Record<string, 1>,
): Promise<T[]> {
  const options = projection ? { projection } : {};
  // Every document here is a T (its _id is a string), so read the stored ones as T.
  if (ids.length > POINT_LOOKUPS_UP_TO) {
    const filter = { _id: { $in: [...ids] } } as Filter<T>;
    return await collection.find(filter, options).toArray() as T[];
  }
  const found: (T | null)[] = await Promise.all(
    ids.map((id) => collection.findOne({ _id: id } as Filter<T>, options) as Promise<T | null>),
  );
  return found.filter((doc) => doc !== null);
}

/** FerretDB 1.24 hangs on 100+ update statements (docs/local-stack.md#ferretdb-notes). */
const UPDATE_CHUNK = 50;

/** Replaces a stored alert snapshot unless it reflects a later reading. */
function guardedReplace(a: AlertDoc): AnyBulkWriteOperation<AlertDoc> {
  return { replaceOne: { filter: { _id: a._id, asOfSeq: { $lte: a.asOfSeq } }, replacement: a } };
}

function upsert(a: AlertDoc): AnyBulkWriteOperation<AlertDoc> {
  return { replaceOne: { filter: { _id: a._id }, replacement: a, upsert: true } };
}

async function bulk<T extends { _id: string }>(
  collection: Collection<T>,
  ops: AnyBulkWriteOperation<T>[],
): Promise<void> {
  for (let i = 0; i < ops.length; i += UPDATE_CHUNK) {
    await collection.bulkWrite(ops.slice(i, i + UPDATE_CHUNK), { ordered: false });
  }
}

function onlyDuplicateKeys(err: unknown): boolean {
  return err instanceof MongoBulkWriteError && err.writeErrors !== undefined &&
    toArray(err.writeErrors).length > 0 &&
    toArray(err.writeErrors).every((e) => e.code === DUPLICATE_KEY);
}

function toArray<T>(x: T | readonly T[]): readonly T[] {
  return Array.isArray(x) ? x : [x as T];
}
