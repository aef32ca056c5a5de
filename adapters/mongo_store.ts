/**
 * The MongoDB adapter: idempotent batched writes of readings, alerts and
 * device states, the device-state lookups a processor needs to resume, and
 * the read queries of the HTTP API.
 *
 * Every write is an upsert keyed by a deterministic `_id`, so replaying a
 * batch after a crash changes nothing. Device states are written last and
 * only when they are not older than what is stored (`lastSeq`), so a stale
 * owner after a rebalance cannot move a device backwards.
 *
 * @module
 */
import {
  type AnyBulkWriteOperation,
  type Collection,
  type Db,
  MongoBulkWriteError,
  MongoClient,
} from "mongodb";
import {
  type AlertDoc,
  type AlertStatus,
  COLLECTIONS,
  type DeviceDoc,
  type ReadingDoc,
} from "../schemas/documents.ts";
import type { StoreQueries } from "./http_api.ts";
import type { Logger } from "./log.ts";

export interface WriteBatch {
  readonly readings: readonly ReadingDoc[];
  readonly alerts: readonly AlertDoc[];
  readonly devices: readonly DeviceDoc[];
}

/** Port: what the processors need of a store. */
export interface DeviceStore {
  /** Stored device documents for these ids (missing ids are absent from the map). */
  loadDevices(ids: readonly string[]): Promise<Map<string, DeviceDoc>>;
  /** Makes a batch durable; rejects if any part could not be written. */
  write(batch: WriteBatch): Promise<void>;
}

/** Port: last applied seq per device, so a re-added sensor continues its sequence. */
export interface SeqLookup {
  lastSeqs(): Promise<Map<string, number>>;
}

const DUPLICATE_KEY = 11000;

export class MongoStore implements DeviceStore, StoreQueries, SeqLookup, AsyncDisposable {
  readonly #client: MongoClient;
  readonly #db: Db;

  private constructor(client: MongoClient, db: Db) {
    this.#client = client;
    this.#db = db;
  }

  /** Connects and creates the indexes the queries rely on. */
  static async open(url: string, dbName: string, _logger: Logger): Promise<MongoStore> {
    const client = new MongoClient(url, {
      serverSelectionTimeoutMS: 5000,
      connectTimeoutMS: 5000,
      appName: "iot-pipeline",
    });
    await client.connect();
    const store = new MongoStore(client, client.db(dbName));
    try {
      await store.#ensureIndexes();
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

  async ping(): Promise<void> {
    await this.#db.command({ ping: 1 });
  }

  async loadDevices(ids: readonly string[]): Promise<Map<string, DeviceDoc>> {
    const found = new Map<string, DeviceDoc>();
    if (ids.length === 0) return found;
    const docs = await this.#devices().find({ _id: { $in: [...ids] } }).toArray();
    for (const doc of docs) found.set(doc._id, doc);
    return found;
  }

  async write(batch: WriteBatch): Promise<void> {
    // Readings and alerts first; device states only once those are durable,
    // so a stored state never claims readings that were not stored.
    await Promise.all([
      bulk(this.#readings(), batch.readings.map(insertOnce)),
      // Alert documents are full, deterministic snapshots: the latest wins.
      bulk(
        this.#alerts(),
        batch.alerts.map((a) => ({
          replaceOne: { filter: { _id: a._id }, replacement: a, upsert: true },
        })),
      ),
    ]);
    await bulk(
      this.#devices(),
      batch.devices.map((d) => ({
        updateOne: {
          filter: { _id: d._id, lastSeq: { $lte: d.lastSeq } },
          update: { $set: withoutId(d) },
          upsert: true,
        },
      })),
      // An upsert that matched nothing because a newer state is stored fails
      // with a duplicate key: that newer state is the one to keep.
      true,
    );
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

  readings(deviceId: string, limit: number): Promise<ReadingDoc[]> {
    return this.#readings().find({ deviceId }).sort({ ts: -1, seq: -1 }).limit(limit).toArray();
  }

  alerts(
    filter: { readonly status?: AlertStatus; readonly deviceId?: string; readonly limit: number },
  ): Promise<AlertDoc[]> {
    const query: Record<string, string> = {};
    if (filter.status) query.status = filter.status;
    if (filter.deviceId) query.deviceId = filter.deviceId;
    return this.#alerts().find(query).sort({ raisedAt: -1 }).limit(filter.limit).toArray();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.#client.close();
  }
}

function insertOnce(doc: ReadingDoc): AnyBulkWriteOperation<ReadingDoc> {
  // $setOnInsert: a replayed reading keeps the document (and processedAt) it first got.
  return {
    updateOne: { filter: { _id: doc._id }, update: { $setOnInsert: withoutId(doc) }, upsert: true },
  };
}

function withoutId<T extends { _id: string }>(doc: T): Omit<T, "_id"> {
  const { _id, ...rest } = doc;
  return rest;
}

async function bulk<T extends { _id: string }>(
  collection: Collection<T>,
  ops: AnyBulkWriteOperation<T>[],
  tolerateDuplicateKeys = false,
): Promise<void> {
  if (ops.length === 0) return;
  try {
    await collection.bulkWrite(ops, { ordered: false });
  } catch (err) {
    if (
      tolerateDuplicateKeys && err instanceof MongoBulkWriteError &&
      err.writeErrors && toArray(err.writeErrors).every((e) => e.code === DUPLICATE_KEY)
    ) {
      return;
    }
    throw err;
  }
}

function toArray<T>(x: T | readonly T[]): readonly T[] {
  return Array.isArray(x) ? x : [x as T];
}
