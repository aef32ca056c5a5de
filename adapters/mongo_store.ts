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
 * states are written last, appended to a journal (`device_states`) that is
 * folded into `devices` now and then: a checkpoint costs one insert of the
 * changed devices, on MongoDB and on FerretDB alike, and a reader takes the
 * newest state of a device in either. Why the writes are
 * shaped for FerretDB: docs/local-stack.md#ferretdb-notes.
 *
 * @module
 */
import {
  type AnyBulkWriteOperation,
  type Collection,
  type Db,
  type Document,
  type Filter,
  MongoBulkWriteError,
  MongoClient,
  MongoServerError,
} from "mongodb";
import {
  ACK_FIELDS,
  type AlertAck,
  type AlertDoc,
  COLLECTIONS,
  type DeviceDoc,
  type ReadingDoc,
} from "../schemas/documents.ts";
import type { Logger } from "../actors/logger.ts";
import type {
  DeadLetter,
  DeliveryState,
  Lease,
  PendingEvent,
  WebhookStore,
} from "../actors/webhook_store.ts";
import {
  ackEventOf,
  type OutboxEvent,
  outboxEventsOf,
  type WebhookDoc,
} from "../schemas/webhook.ts";
import type {
  AckOutcome,
  AlertFilter,
  ReadingWindow,
  StoreQueries,
} from "../actors/store_queries.ts";
import {
  type DeviceStore,
  type Refusal,
  refusalOf,
  type SeqLookup,
  type WriteBatch,
  type WriteResult,
} from "../actors/device_store.ts";

const DUPLICATE_KEY = 11000;
/** Write-ahead copies of device states being replaced (left by versions before the journal). */
const PENDING_DEVICES = "devices_pending";
/**
 * Device states appended by checkpoints, up to {@linkcode STATES_PER_ENTRY} of one partition per
 * entry ({@linkcode JournalEntry}), each entry with `writer` (one id per opened store), `n` (that
 * writer's running count) and `_id` `<writer>:<n>`. Only inserts, so a checkpoint costs O(changed
 * devices) even on FerretDB, where every filtered update, delete or read scans the collection. A
 * writer's entries are inserted in order, one write at a time, so what a reader sees of a writer
 * is always a prefix of its entries: a fold may delete `n` up to the highest it saw without
 * missing one.
 */
const DEVICE_JOURNAL = COLLECTIONS.deviceStates;
/**
 * The most device states one journal entry holds. FerretDB's cost of an insert follows the number
 * of documents and fields far more than their bytes: 9 000 states as one entry each cost it
 * 460–500 ms of CPU, as 18 entries of 500 50–100 ms (a probe); live at 3 000 readings/s such a
 * checkpoint held its one SQLite writer, and so the readings, 0.7–1.5 s, now 0.25–0.4 s
 * (bench/RESULTS.md, "Checkpoints in few journal entries"). A reader of one device parses the
 * whole entry (about 150 KB at 500 states).
 */
const STATES_PER_ENTRY = 500;
/**
 * This process folds the journal into `devices` once it appended this many
 * states, or four times as many as there are devices: a fold reads both
 * collections and rewrites `devices`, so its cost per appended state stays
 * bounded however large the fleet. The fleet is known from the last fold, or from the largest
 * checkpoint since (a fresh store's first checkpoint of 100 000 devices once made a fold of all
 * of them due after 50 000 states, in the middle of a drain: bench/RESULTS.md).
 */
const FOLD_AFTER_STATES = 50_000;
const FOLD_AFTER_DEVICES = 4;

/**
 * Whether a fold is due after `sinceFold` appended states, with at least `fleet` devices
 * stored. `exactly` (tests) folds after that many states whatever the fleet.
 */
export function foldDue(
  sinceFold: number,
  fleet: number,
  options: { readonly exactly?: number } = {},
): boolean {
  if (options.exactly !== undefined) return sinceFold >= options.exactly;
  return sinceFold >= Math.max(FOLD_AFTER_STATES, FOLD_AFTER_DEVICES * fleet);
}
/**
 * Device states a fold writes per statement, and so the most work a stop waits for: a stop ends the
 * fold at its next statement (at 100 000 devices a whole fold kept a stop busy for minutes). Few,
 * and a fold in the background pauses {@linkcode FOLD_PAUSE_MS} after each: at 5 000 per statement
 * the fold of 9 000 devices stalled the readings' writes for 1–2.6 s in a live run at 3 000
 * readings/s, on either FerretDB backend (bench/RESULTS.md, "The fold, paced").
 */
const FOLD_CHUNK = 500;
/** The pause after each statement of a fold in the background, so the readings' writes go between. */
const FOLD_PAUSE_MS = 50;
/**
 * Journal entries deleted per statement: FerretDB 1.24 (SQLite) deletes what a filter matched
 * with one SQL statement of as many variables, which fails past 32 766 ("too many SQL variables").
 */
const DELETE_CHUNK = 20_000;

interface PendingDevice {
  readonly _id: string;
  readonly checkpointId: string;
  readonly doc: DeviceDoc;
}

/**
 * A journal entry: the states of up to {@linkcode STATES_PER_ENTRY} devices of one partition (or
 * of none), packed into one JSON string (`states`), with the fields readers filter on at the top
 * level. FerretDB's cost of an insert follows the number of documents and fields more than the
 * bytes. Entries of earlier versions hold one device each, packed ({@linkcode PackedEntry}) or
 * whole ({@linkcode LegacyEntry}); readers take all three ({@linkcode fromJournal}).
 */
interface JournalEntry {
  readonly _id: string;
  /** The devices whose states it holds: what a lookup filters on (MongoDB: a multikey index). */
  readonly deviceIds: readonly string[];
  /** The partition of all its states, absent for none: an assignment's read filters on it. */
  readonly partition?: number;
  readonly writer: string;
  readonly n: number;
  /** JSON: an array of device documents without `_id`. */
  readonly states: string;
}

/** The filter of journal entries that may hold a state of one of `ids`, in any format. */
function journaledFilter(ids: readonly string[]): Filter<StoredEntry> {
  const any = { $in: [...ids] };
  return { $or: [{ deviceIds: any }, { deviceId: any }] } as Filter<StoredEntry>;
}

/** The `Date` fields of a device document: JSON carries them as ISO strings. */
const DEVICE_DATES = ["since", "lastTs", "updatedAt"] as const;
type DateFields<T> = { [K in keyof T]-?: NonNullable<T[K]> extends Date ? K : never }[keyof T];
// A Date field added to DeviceDoc must be listed above, or it would come back as a string.
const _allDatesListed: DateFields<DeviceDoc> extends (typeof DEVICE_DATES)[number] ? true : never =
  true;

/** Subscriptions (`POST /webhooks`). */
const WEBHOOKS = "webhooks";
/**
 * Pending outbox events (`StoredEvent`), `_id` `<alertId>:<event>`, each with where its
 * deliveries stand (`deliveries.<subscriptionId>`: attempts, next attempt, last error, outcome)
 * and the fencing token of the last dispatcher that wrote it. Only events not settled yet: on
 * FerretDB every filtered read and update scans its collection (no index is used: explain says
 * `SCAN`, `filterPushdown: false`), so the dispatcher's poll and writes cost what is pending, not
 * what was ever sent.
 */
const OUTBOX = "webhook_outbox";
/** Settled events, moved out of the outbox with `settledAt`, kept for the retention. */
const SETTLED = "webhook_settled";
/** The dispatcher lease: one document, `_id` {@linkcode LEASE_ID}. */
const LEASES = "webhook_lease";
const LEASE_ID = "dispatcher";
/** The expiry of a lease handed back: its holder stopped, so the next one need not fence it. */
const RELEASED = new Date(0);

interface StoredEvent extends OutboxEvent {
  readonly pending: boolean;
  /** The highest lease token that wrote this event (0: none yet). */
  readonly fence: number;
  readonly deliveries?: Record<string, DeliveryState>;
  /** The subscriptions whose delivery is dead-lettered (indexed: `deadLetters()`). */
  readonly dead?: string[];
  readonly settledAt?: Date;
}

interface StoredLease extends Lease {
  readonly _id: string;
}

export class MongoStore
  implements DeviceStore, StoreQueries, SeqLookup, WebhookStore, AsyncDisposable {
  readonly #client: MongoClient;
  readonly #db: Db;
  readonly #log: Logger;
  /** Fold after exactly this many states (tests); undefined: `foldDue()`'s rule. */
  readonly #foldAfter: number | undefined;
  /** This store's journal writer id, and how many entries it appended. */
  readonly #writer = crypto.randomUUID();
  #appended = 0;
  /** States appended since the last fold. */
  #sinceFold = 0;
  /** Devices at least stored: after the last fold, or in the largest checkpoint since. */
  #fleet = 0;
  /** The fold running in the background, if any (one at a time). */
  #folding: Promise<void> | null = null;
  /** Set by a stop: a running fold ends at its next statement; the next start folds. */
  #stopping = false;
  /**
   * Whether device states without a partition (written before states recorded it) may be
   * stored: `devicesIn()` then also reads those. Found at open, set by any such write.
   */
  #unpartitioned = true;
  /** Bumped before and after every write of partition-less states (see `#recheckUnpartitioned`). */
  #unpartitionedWrites = 0;
  /** How this server finds documents by `_id` fastest: probed at open (`idLookupOf`). */
  #idLookup: IdLookup = "in";

  private constructor(
    client: MongoClient,
    db: Db,
    logger: Logger,
    foldAfter: number | undefined,
  ) {
    this.#client = client;
    this.#db = db;
    this.#log = logger;
    this.#foldAfter = foldAfter;
  }

  /**
   * Connects, creates the indexes the queries rely on and folds the device-state journal.
   * `foldAfterStates` (tests) folds after exactly that many appended states, whatever the
   * fleet (default: 50 000, or four times the devices if more). `idLookup` (tests, bench) finds
   * documents by `_id` so instead of the way the server's explain shows to be fastest.
   */
  static async open(
    url: string,
    dbName: string,
    logger: Logger,
    options: { readonly foldAfterStates?: number; readonly idLookup?: IdLookup } = {},
  ): Promise<MongoStore> {
    const client = new MongoClient(url, {
      serverSelectionTimeoutMS: 5000,
      connectTimeoutMS: 5000,
      appName: "iot-pipeline",
    });
    await client.connect();
    const store = new MongoStore(
      client,
      client.db(dbName),
      logger,
      options.foldAfterStates,
    );
    try {
      await store.#ensureIndexes();
      store.#idLookup = options.idLookup ?? await idLookupOf(store.#db);
      const recovered = await store.#recover();
      if (recovered > 0) logger.warn("finished interrupted device-state writes", { recovered });
      // Here rather than at the last stop (which leaves a due fold: `asyncDispose`), and before
      // the store is used: an assignment's read (`devicesIn`) then finds every moved device once.
      await store.#fold();
      store.#unpartitioned = await store.#anyUnpartitioned();
    } catch (err) {
      await client.close();
      throw err;
    }
    return store;
  }

  async #ensureIndexes() {
    if (!await secondaryIndexesServe(this.#db)) {
      this.#log.info("secondary indexes skipped: this server answers no query from them");
      return;
    }
    await Promise.all([
      this.#readings().createIndex({ deviceId: 1, ts: -1 }, { name: "deviceId_ts" }),
      this.#alerts().createIndex({ deviceId: 1, raisedAt: -1 }, { name: "deviceId_raisedAt" }),
      this.#alerts().createIndex({ status: 1, raisedAt: -1 }, { name: "status_raisedAt" }),
      this.#journal().createIndex({ deviceIds: 1 }, { name: "deviceIds" }),
      // Entries of earlier versions (one device each), while such a version still writes.
      this.#journal().createIndex({ deviceId: 1, lastSeq: -1 }, { name: "deviceId_lastSeq" }),
      this.#journal().createIndex({ writer: 1, n: 1 }, { name: "writer_n" }),
      // The dispatcher's poll, retention's prune and the dead-letter listing.
      this.#outbox().createIndex({ pending: 1, occurredAt: 1, _id: 1 }, {
        name: "pending_occurredAt",
      }),
      this.#settled().createIndex({ settledAt: 1 }, { name: "settledAt" }),
      this.#outbox().createIndex({ dead: 1 }, { name: "dead" }),
      this.#settled().createIndex({ dead: 1 }, { name: "dead" }),
      this.#devices().createIndex({ partition: 1 }, { name: "partition" }),
      this.#journal().createIndex({ partition: 1 }, { name: "partition" }),
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
  /** Entries as stored: several states each, or one each as earlier versions wrote them. */
  #journal() {
    return this.#db.collection<StoredEntry>(DEVICE_JOURNAL);
  }

  async ping(): Promise<void> {
    await this.#db.command({ ping: 1 });
  }

  /**
   * The newest stored state of each of `ids`: a read of `devices` by `_id` and one read of the
   * journal for all of them (FerretDB scans the journal once per read, whatever the number of
   * ids; MongoDB uses the `deviceIds` index). The entries found also hold other devices' states,
   * which are left out.
   */
  async loadDevices(ids: readonly string[]): Promise<Map<string, DeviceDoc>> {
    const found = new Map<string, DeviceDoc>();
    if (ids.length === 0) return found;
    const [folded, entries] = await Promise.all([
      findByIds(this.#devices(), ids, this.#idLookup),
      this.#journal().find(journaledFilter(ids)).toArray(),
    ]);
    for (const doc of folded) keepNewest(found, doc);
    const wanted = new Set(ids);
    for (const entry of entries) {
      for (const doc of fromJournal(entry)) if (wanted.has(doc.deviceId)) keepNewest(found, doc);
    }
    return found;
  }

  /**
   * Every stored device state, in one read of each collection (what members prefetched on an
   * assignment before states recorded their partition; kept for comparison: bench/).
   */
  async allDevices(): Promise<Map<string, DeviceDoc>> {
    const found = new Map<string, DeviceDoc>();
    const [folded, journaled] = await Promise.all([
      this.#devices().find({}).toArray(),
      this.#journal().find({}).toArray(),
    ]);
    for (const doc of folded) keepNewest(found, doc);
    for (const entry of journaled) for (const doc of fromJournal(entry)) keepNewest(found, doc);
    return found;
  }

  /**
   * The stored states recorded on `partitions` (and those recorded on none), newest of both
   * collections, in one query per collection: MongoDB answers it from the `partition` index.
   * FerretDB 1.24 (SQLite) filters only `_id` in its backend (explain: `filterPushdown: false`),
   * so it still reads every state, but only these are sent and decoded here — one query, not one
   * per partition, so it reads them once. Documents without a partition are asked for only while
   * some may be stored (see `#unpartitioned`).
   */
  async devicesIn(partitions: readonly number[]): Promise<Map<string, DeviceDoc>> {
    const assigned = { partition: { $in: [...new Set(partitions)] } };
    const filter: Filter<DeviceDoc> = this.#unpartitioned
      ? { $or: [assigned, { partition: { $exists: false } }] }
      : assigned;
    const found = new Map<string, DeviceDoc>();
    const [folded, journaled] = await Promise.all([
      this.#devices().find(filter).toArray(),
      this.#journal().find(filter as Filter<StoredEntry>).toArray(),
    ]);
    for (const doc of folded) keepNewest(found, doc);
    for (const entry of journaled) for (const doc of fromJournal(entry)) keepNewest(found, doc);
    return found;
  }

  /** Whether any stored device state lacks its partition. */
  async #anyUnpartitioned(): Promise<boolean> {
    const filter = { partition: { $exists: false } };
    const [folded, journaled] = await Promise.all([
      this.#devices().findOne(filter, { projection: { _id: 1 } }),
      this.#journal().findOne(filter, { projection: { _id: 1 } }),
    ]);
    return folded !== null || journaled !== null;
  }

  async write(batch: WriteBatch): Promise<WriteResult> {
    // Readings and alerts first; device states only once those are durable,
    // so a stored state never claims readings that were not stored.
    // The outbox events of the alert transitions go with them, before the device states: a
    // crash before the states are durable replays the readings, which rewrites both (ids are
    // deterministic, so a replay adds no event).
    const [refused] = await Promise.all([
      this.#writeReadings(batch.readings, batch.skipped ?? []),
      this.#writeAlerts(batch.alerts),
      this.#writeOutbox(batch.alerts.flatMap(outboxEventsOf)),
    ]);
    await this.#writeDevices(batch.devices);
    return { refused };
  }

  /**
   * Inserts the readings not stored yet in one unordered insert. Only the
   * ones it finds stored already, and the skipped ones, are then read back by
   * `_id` and compared: a batch without either costs no extra round trip. On
   * FerretDB on SQLite that read scans the readings collection (see `IdLookup`): a batch
   * replayed after a crash costs up to 32 SQLite scans, or one slower scan.
   */
  async #writeReadings(
    readings: readonly ReadingDoc[],
    skipped: readonly ReadingDoc[],
  ): Promise<Refusal[]> {
    const existing = await insertNew(this.#readings(), inIdOrder(readings));
    if (existing.length === 0 && skipped.length === 0) return [];
    const ids = [...new Set([...existing, ...skipped].map((r) => r._id))];
    const stored = new Map(
      (await findByIds(this.#readings(), ids, this.#idLookup)).map((d) => [d._id, d]),
    );
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
   * Alert documents are deterministic snapshots of an episode, and every field a later snapshot
   * changes moves one way only (see `joinOf`), so a snapshot is applied as a join: the stored
   * document becomes the newest of the two field by field, in any order, as a stale owner's
   * would after a rebalance. The join filters on `_id` alone, the one filter FerretDB 1.24 hands
   * to SQLite; a filter with any other field (an `asOfSeq` guard) makes it read and decode every
   * stored alert, so each clear would cost a scan of a collection that grows for the whole
   * retention (docs/local-stack.md#ferretdb-notes).
   *
   * A snapshot that opens its episode (its raise: `asOfSeq` = `raisedSeq`) is inserted, cheap on
   * FerretDB; the others (clears, new peaks) were most likely stored before and are joined. Either
   * guess may be wrong — a raise stored before, or a raise and its clear in one batch — and is
   * fixed by the other step: a duplicate key is joined, a join that matched nothing is inserted.
   * Only the snapshot's own fields are set, so an acknowledgement survives the clear.
   */
  async #writeAlerts(alerts: readonly AlertDoc[]): Promise<void> {
    if (alerts.length === 0) return;
    const opening = alerts.filter(opensEpisode);
    const later = alerts.filter((a) => !opensEpisode(a));
    const stored = await insertNew(this.#alerts(), opening.map(newSnapshotOf));
    const joins = [...later, ...stored];
    if ((await bulk(this.#alerts(), joins.map(joinOf))).matched < joins.length) {
      // Some were not stored yet: insert them; any stored meanwhile (another owner) is joined.
      const found = await insertNew(this.#alerts(), joins.map(newSnapshotOf));
      await bulk(this.#alerts(), found.map(joinOf));
    }
    await bulk(this.#alerts(), alerts.filter(changedRule).map(ruleUpdateOf));
  }

  /**
   * Appends device states to the journal: one insert of a few entries, whose cost follows the
   * changed devices, not the stored ones. A reader takes the newest state of a device, so a stale
   * owner's older state never wins.
   */
  async #writeDevices(devices: readonly DeviceDoc[]) {
    if (devices.length === 0) return;
    const unpartitioned = devices.some((d) => d.partition === undefined);
    if (unpartitioned) {
      this.#unpartitioned = true;
      this.#unpartitionedWrites++;
    }
    try {
      await this.#append(this.#writer, devices);
    } finally {
      if (unpartitioned) this.#unpartitionedWrites++;
    }
    this.#sinceFold += devices.length;
    this.#fleet = Math.max(this.#fleet, devices.length);
    const exactly = this.#foldAfter;
    if (!foldDue(this.#sinceFold, this.#fleet, exactly === undefined ? {} : { exactly })) return;
    // The states are durable already: the fold is not the checkpoint's (nor a stop's) to wait for.
    this.#foldInBackground();
  }

  /**
   * Starts a fold unless one is running or the store is stopping. A failed fold leaves a longer
   * journal, not a failed checkpoint (whose retry would append the states again); it is tried
   * again after as many entries. A stopped one is finished by the next start.
   */
  #foldInBackground(): void {
    if (this.#folding || this.#stopping) return;
    this.#sinceFold = 0;
    this.#folding = this.#fold({ pauseMs: FOLD_PAUSE_MS }).then(() => this.#recheckUnpartitioned())
      .catch((error) => {
        if (error instanceof FoldStopped) {
          this.#log.debug("device-state journal fold stopped; the next start folds");
        } else {
          this.#log.warn("device-state journal fold failed; will retry", { error: error as Error });
        }
      }).finally(() => {
        this.#folding = null;
      });
  }

  /**
   * After a fold, whether partition-less states are still stored: a fold keeps only each device's
   * newest state, so once every device was checkpointed with its partition, an assignment's read
   * (`devicesIn`) no longer asks for them. A write of such states while the check runs (the
   * counter moved) keeps the flag set.
   */
  async #recheckUnpartitioned(): Promise<void> {
    if (!this.#unpartitioned) return;
    const writes = this.#unpartitionedWrites;
    const any = await this.#anyUnpartitioned();
    if (this.#unpartitionedWrites === writes) this.#unpartitioned = any;
  }

  /** Ends a fold at a stop, between two of its statements (each safe to interrupt: `#fold`). */
  #unlessStopping(): void {
    if (this.#stopping) throw new FoldStopped();
  }

  /**
   * Inserts the states as entries of `writer` in order (see `DEVICE_JOURNAL`), in one ordered
   * insert, and answers how many entries; `from` numbers the entries of a writer other than this
   * store's (a fold's, appended in chunks).
   */
  async #append(
    writer: string,
    devices: readonly DeviceDoc[],
    { from = 0 } = {},
  ): Promise<number> {
    const first = writer === this.#writer ? this.#appended : from;
    const entries = entriesOf(devices).map((states, i): JournalEntry => {
      const n = first + i;
      const partition = states[0]!.partition;
      return {
        _id: `${writer}:${n}`,
        deviceIds: states.map((d) => d.deviceId),
        ...(partition === undefined ? {} : { partition }),
        writer,
        n,
        states: JSON.stringify(states.map(({ _id: _, ...state }) => state)),
      };
    });
    if (writer === this.#writer) this.#appended += entries.length;
    await this.#journal().insertMany(entries, { ordered: true });
    return entries.length;
  }

  /**
   * Folds the journal into `devices`: reads both, appends the newest state of
   * every device under a writer of its own, rewrites `devices` with them, and
   * only then deletes the journal entries it read. Every state it deletes is
   * kept by a copy at least as new, so a crash (or a fold in another process)
   * at any point loses nothing; readers take the newest of both collections.
   * A stop ends it between two statements, which is such a point: the fold
   * writer's entries are appended in order (a prefix of them, if stopped), all
   * of them before `devices` is dropped, and nothing is deleted before
   * `devices` is whole again.
   */
  async #fold({ pauseMs = 0 } = {}): Promise<void> {
    const statementDone = () =>
      pauseMs > 0 ? new Promise<void>((resolve) => setTimeout(resolve, pauseMs)) : undefined;
    // Each phase's duration is logged: a fold is the store's largest piece of work after the
    // readings' (bench/RESULTS.md, "The fold, paced").
    const phases: Record<string, number> = {};
    let phaseStart = performance.now();
    const phaseDone = (name: string) => {
      const now = performance.now();
      phases[name] = Math.round(now - phaseStart);
      phaseStart = now;
    };
    const newest = new Map<string, DeviceDoc>();
    for await (const doc of this.#devices().find({})) {
      this.#unlessStopping();
      keepNewest(newest, doc);
    }
    const seen = new Map<string, number>();
    for await (const entry of this.#journal().find({})) {
      this.#unlessStopping();
      for (const doc of fromJournal(entry)) keepNewest(newest, doc);
      if ((seen.get(entry.writer) ?? -1) < entry.n) seen.set(entry.writer, entry.n);
    }
    this.#fleet = newest.size;
    if (seen.size === 0) return;
    phaseDone("readMs");
    const states = [...newest.values()];
    const writer = crypto.randomUUID();
    for (let i = 0, appended = 0; i < states.length; i += FOLD_CHUNK) {
      this.#unlessStopping();
      appended += await this.#append(writer, states.slice(i, i + FOLD_CHUNK), { from: appended });
      await statementDone();
    }
    phaseDone("appendMs");
    this.#unlessStopping();
    // Dropped rather than emptied: FerretDB deletes what a filter matched with one SQL statement
    // of as many variables, which fails past 32 766 documents. The journal holds every state now.
    await this.#devices().drop().catch((error) => {
      if (!(error instanceof MongoServerError && error.codeName === "NamespaceNotFound")) {
        throw error;
      }
    });
    for (let i = 0; i < states.length; i += FOLD_CHUNK) {
      this.#unlessStopping();
      await insertOnce(this.#devices(), states.slice(i, i + FOLD_CHUNK));
      await statementDone();
    }
    phaseDone("rewriteMs");
    for (const [writer, last] of seen) {
      for (let from = 0; from <= last; from += DELETE_CHUNK) {
        this.#unlessStopping();
        await this.#journal().deleteMany({
          writer,
          n: { $gte: from, $lte: Math.min(last, from + DELETE_CHUNK - 1) },
        });
      }
    }
    phaseDone("deleteMs");
    this.#log.info("device-state journal folded", {
      devices: states.length,
      writers: seen.size,
      ...phases,
    });
  }

  /**
   * Finishes device-state writes that a crash interrupted in versions before
   * the journal (which replaced `devices` behind a write-ahead copy in
   * `devices_pending`): the copies are appended to the journal.
   */
  async #recover(): Promise<number> {
    const entries = await this.#pending().find({}).toArray();
    if (entries.length === 0) return 0;
    await this.#append(this.#writer, entries.map((e) => e.doc));
    await this.#pending().deleteMany({});
    return entries.length;
  }

  async lastSeqs(): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    const keep = ({ deviceId, lastSeq }: { deviceId: string; lastSeq: number }) => {
      if ((out.get(deviceId) ?? -1) < lastSeq) out.set(deviceId, lastSeq);
    };
    for await (const d of this.#devices().find({}, { projection: { deviceId: 1, lastSeq: 1 } })) {
      keep(d);
    }
    for await (const entry of this.#journal().find({})) fromJournal(entry).forEach(keep);
    return out;
  }

  async device(id: string): Promise<DeviceDoc | null> {
    return (await this.loadDevices([id])).get(id) ?? null;
  }

  /** The stored states of several devices, for the API's batched lookups (see `loadDevices`). */
  devices(ids: readonly string[]): Promise<Map<string, DeviceDoc>> {
    return this.loadDevices(ids);
  }

  /** Used only with the embedded transport (Kafka replays instead), so no index of its own. */
  readingsAfter(deviceId: string, afterSeq: number, limit: number): Promise<ReadingDoc[]> {
    return this.#readings().find({ deviceId, seq: { $gt: afterSeq } }).sort({ seq: 1 })
      .limit(limit).toArray();
  }

  readings(deviceId: string, limit: number): Promise<ReadingDoc[]> {
    return this.#readings().find({ deviceId }).sort({ ts: -1, seq: -1 }).limit(limit).toArray();
  }

  alerts(filter: AlertFilter): Promise<AlertDoc[]> {
    const raisedAt = {
      ...(filter.raisedFrom ? { $gte: filter.raisedFrom } : {}),
      ...(filter.raisedTo ? { $lt: filter.raisedTo } : {}),
    };
    const query: Filter<AlertDoc> = {
      ...(filter.status ? { status: filter.status } : {}),
      ...(filter.deviceId ? { deviceId: filter.deviceId } : {}),
      ...(filter.type ? { type: filter.type } : {}),
      ...(filter.acked === undefined ? {} : { ackedAt: { $exists: filter.acked } }),
      ...(Object.keys(raisedAt).length > 0 ? { raisedAt } : {}),
    };
    return this.#alerts().find(query).sort({ raisedAt: -1 }).limit(filter.limit).toArray();
  }

  /**
   * One query, sorted by the server; on FerretDB it scans the readings collection (no index
   * helps it there), so the caller's deadline (`signal`) is what bounds it.
   */
  async readingsBetween(window: ReadingWindow): Promise<ReadingDoc[]> {
    const { signal } = window;
    signal?.throwIfAborted();
    const cursor = this.#readings()
      .find({
        ...(window.deviceId ? { deviceId: window.deviceId } : {}),
        ts: { $gte: window.from, $lt: window.to },
      })
      .sort({ deviceId: 1, seq: 1 })
      .limit(window.limit);
    const out: ReadingDoc[] = [];
    const aborted = Promise.withResolvers<never>();
    const onAbort = () => aborted.reject(signal?.reason);
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      const read = (async () => {
        for await (const doc of cursor) {
          if (signal?.aborted) break;
          out.push(doc);
        }
      })();
      // Past the deadline the read is left to fail on the closed cursor.
      read.catch(() => {});
      await Promise.race([read, aborted.promise]);
      signal?.throwIfAborted();
      return out;
    } finally {
      signal?.removeEventListener("abort", onAbort);
      aborted.promise.catch(() => {});
      await cursor.close().catch(() => {});
    }
  }

  /**
   * One conditional update (only while `ackedAt` is unset), so of two concurrent
   * acknowledgements the first wins; the processors' snapshots `$set` only their own fields.
   */
  async acknowledge(id: string, ack: AlertAck): Promise<AckOutcome | null> {
    const result = await this.#alerts().updateOne(
      { _id: id, ackedAt: { $exists: false } },
      { $set: ack },
    );
    const alert = await this.#alerts().findOne({ _id: id });
    if (!alert) return null;
    // Inserted if absent on every call, so a retried request repairs a crash in between.
    const event = ackEventOf(alert);
    if (event) await this.#writeOutbox([event]);
    return { alert, recorded: result.modifiedCount === 1 };
  }

  #webhooks() {
    return this.#db.collection<WebhookDoc>(WEBHOOKS);
  }
  #outbox() {
    return this.#db.collection<StoredEvent>(OUTBOX);
  }
  #settled() {
    return this.#db.collection<StoredEvent>(SETTLED);
  }
  #leases() {
    return this.#db.collection<StoredLease>(LEASES);
  }

  async #writeOutbox(events: readonly OutboxEvent[]): Promise<void> {
    await insertNew(this.#outbox(), events.map((e) => ({ ...e, pending: true, fence: 0 })));
  }

  async addWebhook(doc: WebhookDoc): Promise<void> {
    await this.#webhooks().insertOne(doc);
  }

  webhooks(): Promise<WebhookDoc[]> {
    return this.#webhooks().find({}).sort({ createdAt: 1 }).toArray();
  }

  async removeWebhook(id: string): Promise<boolean> {
    return (await this.#webhooks().deleteOne({ _id: id })).deletedCount === 1;
  }

  /**
   * Compare-and-set on the stored owner and token (one conditional update, which MongoDB and
   * FerretDB apply to one document atomically): of two dispatchers taking an expired lease at
   * once, one wins. The new owner then stamps the pending events with its token, so the writes
   * of the one before it are refused from then on — unless there is no one before it that could
   * still write: the first lease (token 1), or one handed back (`releaseLease`, after its holder
   * stopped). On FerretDB the stamp is an update of every pending event, each scanning the outbox:
   * 63 s for 2 000 pending events, during which the processors' writes wait.
   */
  async acquireLease(owner: string, now: Date, ttlMs: number): Promise<Lease> {
    const expiresAt = new Date(now.getTime() + ttlMs);
    const leases = this.#leases();
    const current = await leases.findOne({ _id: LEASE_ID });
    if (!current) {
      const fresh: StoredLease = { _id: LEASE_ID, owner, token: 1, expiresAt };
      if ((await insertNew(leases, [fresh])).length === 0) return leaseOf(fresh);
      return leaseOf((await leases.findOne({ _id: LEASE_ID }))!);
    }
    const mine = current.owner === owner;
    if (!mine && current.expiresAt.getTime() > now.getTime()) return leaseOf(current);
    const next: StoredLease = {
      ...current,
      owner,
      expiresAt,
      token: current.token + (mine ? 0 : 1),
    };
    const swapped = await leases.updateOne(
      { _id: LEASE_ID, owner: current.owner, token: current.token },
      { $set: { owner, expiresAt, token: next.token } },
    );
    if (swapped.matchedCount === 0) return leaseOf((await leases.findOne({ _id: LEASE_ID }))!);
    if (!mine && current.expiresAt.getTime() !== RELEASED.getTime()) await this.#stamp(next.token);
    return leaseOf(next);
  }

  async releaseLease(owner: string, token: number): Promise<void> {
    // The token stays: it only ever grows.
    await this.#leases().updateOne({ _id: LEASE_ID, owner, token }, {
      $set: { expiresAt: RELEASED },
    });
  }

  async #stamp(token: number): Promise<void> {
    await this.#outbox().updateMany({ pending: true, fence: { $lt: token } }, {
      $set: { fence: token },
    });
  }

  /**
   * An event not attempted yet may be the replay of one settled already (a crash replays the
   * readings since the last checkpoint): one read of the settled collection per poll that meets
   * such events finds them, and they leave the outbox without being delivered again. Only events
   * a subscription would be sent are looked for: without subscriptions a poll reads no settled.
   */
  async pendingEvents(
    limit: number,
    deliverable: (event: OutboxEvent) => boolean = () => true,
  ): Promise<PendingEvent[]> {
    const found = await this.#outbox().find({ pending: true }).sort({ occurredAt: 1, _id: 1 })
      .limit(limit).toArray();
    const fresh = found.filter((d) => d.deliveries === undefined && deliverable(pendingOf(d).event))
      .map((d) => d._id);
    if (fresh.length === 0) return found.map(pendingOf);
    const replayed = new Set(
      (await findByIds(this.#settled(), fresh, this.#idLookup, { _id: 1 })).map((d) => d._id),
    );
    if (replayed.size > 0) {
      await this.#outbox().deleteMany({
        _id: { $in: [...replayed] },
        deliveries: { $exists: false },
      });
    }
    return found.filter((d) => !replayed.has(d._id)).map(pendingOf);
  }

  async recordDelivery(
    eventId: string,
    subscriptionId: string,
    state: DeliveryState,
    fence: number,
  ): Promise<boolean> {
    const field = `deliveries.${subscriptionId}`;
    const result = await this.#outbox().updateOne(
      {
        _id: eventId,
        fence: { $lte: fence },
        [`${field}.status`]: { $nin: ["delivered", "dead"] },
      },
      {
        $set: { [field]: state, fence },
        ...(state.status === "dead" ? { $addToSet: { dead: subscriptionId } } : {}),
      },
    );
    return result.matchedCount === 1;
  }

  /**
   * Moves the events to the settled collection in two statements whatever their number: copied
   * first (one insert), so a crash in between loses none, then deleted from the outbox where no
   * later lease holder stamped them (one delete). A stale holder may leave a copy (outcomes are
   * final, so it is the same) but cannot remove a pending event.
   */
  async settle(events: readonly PendingEvent[], at: Date, fence: number): Promise<number> {
    if (events.length === 0) return 0;
    await insertNew(
      this.#settled(),
      events.map(({ event, deliveries }) => {
        const dead = Object.keys(deliveries).filter((id) => deliveries[id]!.status === "dead");
        return {
          ...event,
          deliveries: { ...deliveries },
          ...(dead.length > 0 ? { dead } : {}),
          pending: false,
          settledAt: at,
          fence,
        };
      }),
    );
    const { deletedCount } = await this.#outbox().deleteMany({
      _id: { $in: events.map((e) => e.event._id) },
      fence: { $lte: fence },
    });
    return deletedCount;
  }

  async prune(before: Date, limit: number): Promise<number> {
    const settled = await this.#settled()
      .find({ settledAt: { $lt: before } }, { projection: { _id: 1 } })
      .limit(limit).toArray();
    if (settled.length === 0) return 0;
    const ids = settled.map((d) => d._id);
    const { deletedCount } = await this.#settled().deleteMany({ _id: { $in: ids } });
    return deletedCount;
  }

  /** Settled events' dead letters first (oldest first), then those of events still pending. */
  async deadLetters(subscriptionId: string, limit: number): Promise<DeadLetter[]> {
    const out: DeadLetter[] = [];
    for (const collection of [this.#settled(), this.#outbox()]) {
      if (out.length >= limit) break;
      const found = await collection.find({ dead: subscriptionId })
        .sort({ occurredAt: 1, _id: 1 }).limit(limit - out.length).toArray();
      for (const doc of found) {
        const outcome = doc.deliveries?.[subscriptionId];
        if (outcome?.status === "dead") out.push({ subscriptionId, eventId: doc._id, outcome });
      }
    }
    return out;
  }

  /**
   * Stops: a running fold ends at its next statement (the journal holds every state already, so
   * the next start folds), then the connection closes.
   */
  async [Symbol.asyncDispose](): Promise<void> {
    this.#stopping = true;
    await this.#folding;
    await this.#client.close();
  }
}

/** Ends a fold when the store stops (never leaves the adapter). */
class FoldStopped extends Error {
  override name = "FoldStopped";
  constructor() {
    super("Device-state journal fold stopped: the store is closing");
  }
}

function leaseOf({ owner, token, expiresAt }: Lease): Lease {
  return { owner, token, expiresAt };
}

function pendingOf(doc: StoredEvent): PendingEvent {
  const { _id, event, alertId, occurredAt, alert, deliveries = {} } = doc;
  return { event: { _id, event, alertId, occurredAt, alert }, deliveries };
}

/** Keeps in `found` the newer of its state of `doc`'s device and `doc`. */
function keepNewest(found: Map<string, DeviceDoc>, doc: DeviceDoc): void {
  const seen = found.get(doc.deviceId);
  if (seen && seen.lastSeq >= doc.lastSeq) return;
  found.set(doc.deviceId, doc);
}

/**
 * A journal entry as versions before several states per entry wrote it: one device, the fields
 * readers filtered on at the top level and the rest packed into one JSON string (`state`).
 */
interface PackedEntry {
  readonly _id: string;
  readonly deviceId: string;
  readonly lastSeq: number;
  readonly partition?: number;
  readonly writer: string;
  readonly n: number;
  readonly state: string;
}

/** A journal entry written before entries were packed: a device document plus `writer` and `n`. */
interface LegacyEntry extends Omit<DeviceDoc, "_id"> {
  readonly _id: string;
  readonly writer: string;
  readonly n: number;
}

type StoredEntry = JournalEntry | PackedEntry | LegacyEntry;

/**
 * The states of one append as entries: by partition (an assignment's read filters on it), at most
 * {@linkcode STATES_PER_ENTRY} each, by device within. The sort is stable, so a device twice in one
 * append keeps its order.
 */
function entriesOf(devices: readonly DeviceDoc[]): DeviceDoc[][] {
  const byPartition = new Map<number | undefined, DeviceDoc[]>();
  for (const doc of devices.toSorted(byDeviceId)) {
    const group = byPartition.get(doc.partition);
    if (group) group.push(doc);
    else byPartition.set(doc.partition, [doc]);
  }
  const entries: DeviceDoc[][] = [];
  for (const group of byPartition.values()) {
    for (let i = 0; i < group.length; i += STATES_PER_ENTRY) {
      entries.push(group.slice(i, i + STATES_PER_ENTRY));
    }
  }
  return entries;
}

/** The `devices` documents a journal entry holds, whichever version wrote it. */
function fromJournal(entry: StoredEntry): DeviceDoc[] {
  if ("states" in entry && typeof entry.states === "string") {
    return (JSON.parse(entry.states) as Record<string, unknown>[]).map((state) =>
      deviceOf(state, state.deviceId as string)
    );
  }
  if ("state" in entry && typeof entry.state === "string") {
    const { deviceId, lastSeq, partition } = entry;
    const state = JSON.parse(entry.state) as Record<string, unknown>;
    return [
      deviceOf({ ...state, lastSeq, ...(partition === undefined ? {} : { partition }) }, deviceId),
    ];
  }
  const { writer: _w, n: _n, ...doc } = entry as LegacyEntry;
  return [{ ...doc, _id: doc.deviceId }];
}

/** A device document from its JSON form (dates as ISO strings, no `_id`). */
function deviceOf(state: Record<string, unknown>, deviceId: string): DeviceDoc {
  for (const field of DEVICE_DATES) {
    if (typeof state[field] === "string") state[field] = new Date(state[field]);
  }
  return { ...state, _id: deviceId, deviceId } as DeviceDoc;
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
 * `docs` sorted by `_id`, for an unordered insert. FerretDB inserts a write's documents one by one
 * in the order given, in one SQLite transaction: in `_id` order (by device first) each index's
 * pages are visited in order instead of at random, which at thousands of readings per write costs
 * the store about a quarter less CPU per reading and stores a third more readings per second
 * (bench/RESULTS.md, "The live store cost on FerretDB"). MongoDB is indifferent.
 */
function inIdOrder<T extends { _id: string }>(docs: readonly T[]): readonly T[] {
  return docs.length < 2 ? docs : docs.toSorted((a, b) => compare(a._id, b._id));
}

function byDeviceId(a: DeviceDoc, b: DeviceDoc): number {
  return compare(a.deviceId, b.deviceId);
}

/** Code-unit order, as MongoDB and FerretDB compare strings (not `localeCompare`). */
function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * How a server finds documents by `_id` fastest, as its explain shows:
 * - `in`: one `$in` answered from its `_id` index (MongoDB).
 * - `points`: an `_id` equality is answered from an index, but `$in` is not pushed down at all
 *   (FerretDB 1.24 on PostgreSQL with the local stack's `_id` index): one lookup per id,
 *   {@linkcode POINTS_AT_ONCE} at a time. A `$in` there reads and decodes every document of the
 *   collection in FerretDB, about 260 µs each here: a batch of readings replayed over 240 000
 *   stored ones held the writer for minutes (bench/RESULTS.md, "Replayed readings on PostgreSQL").
 * - `scan`: neither (FerretDB 1.24 on SQLite, where an `_id` equality reads every document too,
 *   docs/local-stack.md#ferretdb-notes): up to {@linkcode POINT_LOOKUPS_UP_TO} ids one by one,
 *   more with one `$in`.
 */
export type IdLookup = "in" | "points" | "scan";

export async function idLookupOf(db: Db): Promise<IdLookup> {
  const any = await readingsPlan(db, { _id: { $in: ["", "-"] } });
  if (any.filterPushdown !== false) return "in";
  const one = await readingsPlan(db, { _id: "" });
  return one.filterPushdown === true && readsIndex(one) ? "points" : "scan";
}

/**
 * Where an `_id` equality reads every document (`scan`), up to this many ids are fetched one by
 * one, concurrently; more with one `$in`. There FerretDB reads every document for either: an
 * `_id` equality is filtered in SQLite (explain: `SCAN`), about 25 µs per stored document here,
 * `$in` in FerretDB, about 650 µs per stored document but once for all the ids. On 20 000
 * readings: one `_id` lookup 0.45 s, one `$in` of 50 ids 13 s, of 2 000 ids 23 s.
 */
const POINT_LOOKUPS_UP_TO = 32;
/** Indexed lookups in flight at once (`points`): a share of the pool, not all of it. */
const POINTS_AT_ONCE = 32;

async function findByIds<T extends { _id: string }>(
  collection: Collection<T>,
  ids: readonly string[],
  lookup: IdLookup,
  projection?: Record<string, 1>,
): Promise<T[]> {
  const options = projection ? { projection } : {};
  // Every document here is a T (its _id is a string), so read the stored ones as T.
  if (lookup === "in" || (lookup === "scan" && ids.length > POINT_LOOKUPS_UP_TO)) {
    const filter = { _id: { $in: [...ids] } } as Filter<T>;
    return await collection.find(filter, options).toArray() as T[];
  }
  const found: T[] = [];
  for (let i = 0; i < ids.length; i += POINTS_AT_ONCE) {
    const some = await Promise.all(
      ids.slice(i, i + POINTS_AT_ONCE).map((id) =>
        collection.findOne({ _id: id } as Filter<T>, options) as Promise<T | null>
      ),
    );
    for (const doc of some) if (doc !== null) found.push(doc);
  }
  return found;
}

/**
 * Whether the server answers queries from secondary indexes. FerretDB 1.24 does not: on SQLite it
 * filters only `_id` in SQLite and everything else itself (explain: `filterPushdown: false`, plan
 * `SCAN`; a `deviceId` query took the same 95–99 ms over 2 000 readings with its index and
 * without); on PostgreSQL it filters `_jsonb->'deviceId' @> …`, which its btree indexes cannot
 * answer (plan `Seq Scan`). Yet it updates every index at every insert: the readings' index alone
 * cost 14 % of the raw insert rate (bench/RESULTS.md). MongoDB's explain has no `filterPushdown`:
 * indexes serve there. A FerretDB plan counts only if it reads an index, which before the index
 * exists it cannot: a FerretDB that could use them would still get none.
 */
export async function secondaryIndexesServe(db: Db): Promise<boolean> {
  const plan = await readingsPlan(db, { deviceId: "" });
  return plan.filterPushdown === undefined || (plan.filterPushdown === true && readsIndex(plan));
}

/**
 * Explain's plan of a query of the readings collection, which is made first if missing: FerretDB
 * explains a missing collection with an empty plan and `filterPushdown: false`, so a probe at a
 * fresh database's first start would differ from one at its next.
 */
async function readingsPlan(db: Db, filter: Filter<{ _id: string }>): Promise<Document> {
  await db.createCollection(COLLECTIONS.readings).catch((error) => {
    if (!(error instanceof MongoServerError && error.codeName === "NamespaceExists")) throw error;
  });
  return await db.collection<{ _id: string }>(COLLECTIONS.readings).find(filter).explain();
}

/** Whether a FerretDB plan reads an index (PostgreSQL: `Index Cond`; SQLite: `USING INDEX`). */
function readsIndex(plan: Document): boolean {
  return /index/i.test(JSON.stringify(plan.queryPlanner ?? {}));
}

/** FerretDB 1.24 hangs on 100+ update statements (docs/local-stack.md#ferretdb-notes). */
const UPDATE_CHUNK = 50;

/** The snapshot of an episode's raise, before any later reading changed it. */
function opensEpisode(a: AlertDoc): boolean {
  return a.status === "active" && a.asOfSeq === a.raisedSeq;
}

/**
 * Brings a stored snapshot of the same episode up to `a`, whichever is newer: within an episode
 * `asOfSeq` and `peakTemperature` only grow, `status` only goes from `active` to `cleared` (which
 * sorts after it, so `$max` keeps it), and `clearedAt`, `clearedSeq` and `withdrawn` are set once,
 * from the same reading in every snapshot that has them. The other fields are fixed at the raise,
 * except the rule, which `ruleUpdateOf` applies. Filtered by `_id` alone (see `#writeAlerts`).
 */
export function joinOf(a: AlertDoc): AnyBulkWriteOperation<AlertDoc> {
  const max: Partial<AlertDoc> = {
    asOfSeq: a.asOfSeq,
    status: a.status,
    ...(a.peakTemperature === undefined ? {} : { peakTemperature: a.peakTemperature }),
  };
  const once: Partial<AlertDoc> = {
    ...(a.clearedAt === undefined ? {} : { clearedAt: a.clearedAt }),
    ...(a.clearedSeq === undefined ? {} : { clearedSeq: a.clearedSeq }),
    ...(a.withdrawn === undefined ? {} : { withdrawn: a.withdrawn }),
  };
  const update = Object.keys(once).length === 0 ? { $max: max } : { $max: max, $set: once };
  return { updateOne: { filter: { _id: a._id }, update } };
}

/**
 * A snapshot whose rule came into force after its raise (`ruleSeq` > `raisedSeq`): the stored
 * document may still hold the rule of the raise. Rare (a rule changed during an episode).
 */
function changedRule(a: AlertDoc): boolean {
  return a.ruleSeq !== undefined && a.ruleSeq > a.raisedSeq;
}

/**
 * Sets the rule of `a` unless the stored one came into force later. Guarded on `ruleSeq`, so on
 * FerretDB a scan of the alerts (see `#writeAlerts`); only for `changedRule` snapshots.
 */
function ruleUpdateOf(a: AlertDoc): AnyBulkWriteOperation<AlertDoc> {
  return {
    updateOne: {
      filter: {
        _id: a._id,
        $or: [{ ruleSeq: { $exists: false } }, { ruleSeq: { $lt: a.ruleSeq! } }],
      } as Filter<AlertDoc>,
      update: { $set: { thresholds: a.thresholds, ruleSeq: a.ruleSeq } },
    },
  };
}

/**
 * A processor's snapshot of a new alert, as inserted: without acknowledgement fields (a snapshot
 * has none, and one that did must still not stand for an operator's).
 */
function newSnapshotOf(a: AlertDoc): AlertDoc {
  const fields: Record<string, unknown> = { ...a };
  for (const name of ACK_FIELDS) delete fields[name];
  return fields as unknown as AlertDoc;
}

/** Applies `ops` in chunks; answers how many documents their filters matched. */
async function bulk<T extends { _id: string }>(
  collection: Collection<T>,
  ops: AnyBulkWriteOperation<T>[],
): Promise<{ matched: number }> {
  let matched = 0;
  for (let i = 0; i < ops.length; i += UPDATE_CHUNK) {
    matched += (await collection.bulkWrite(ops.slice(i, i + UPDATE_CHUNK), { ordered: false }))
      .matchedCount;
  }
  return { matched };
}

function onlyDuplicateKeys(err: unknown): boolean {
  return err instanceof MongoBulkWriteError && err.writeErrors !== undefined &&
    toArray(err.writeErrors).length > 0 &&
    toArray(err.writeErrors).every((e) => e.code === DUPLICATE_KEY);
}

function toArray<T>(x: T | readonly T[]): readonly T[] {
  return Array.isArray(x) ? x : [x as T];
}
