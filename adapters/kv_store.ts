/**
 * The embedded store: Deno KV (SQLite underneath, built into Deno) holding the
 * same three collections' worth of data as MongoDB, under the same
 * deterministic ids, and answering the same queries for the HTTP API.
 *
 *   ["readings", deviceId, seq]              → ReadingDoc
 *   ["alerts", alertId]                      → AlertDoc
 *   ["alerts_by_time", raisedAtMs, alertId]  → alertId   (newest-first listing)
 *   ["alerts_by_status", status, raisedAtMs, alertId] → alertId (the same, one status)
 *   ["alerts_by_status_built"]               → true      (the status index covers every alert)
 *   ["alerts_by_device", deviceId, raisedSeq] → alertId   (overheat)
 *   ["alerts_by_device", deviceId, raisedSeq, "offline"] → alertId
 *   ["alert_acks", alertId]                  → AlertAck  (who acknowledged it, when)
 *   ["devices", deviceId]                    → DeviceDoc
 *   ["devices_by_partition", partition, deviceId] → DeviceDoc (a copy, read per assignment)
 *   ["devices_unpartitioned", deviceId]      → DeviceDoc (a copy of one without a partition)
 *   ["devices_indexed"]                      → true once the two copies above are complete
 *   ["webhooks", id]                         → WebhookDoc
 *   ["outbox", eventId]                      → OutboxEvent (set in the commit of its alert), then
 *                                              with `deliveries` (where each subscription's
 *                                              delivery stands) and `fence` (lease token)
 *   ["outbox_pending", occurredAtMs, eventId] → eventId   (until settled)
 *   ["outbox_settled", settledAtMs, eventId] → eventId   (from settled until pruned)
 *   ["webhook_dead", subscriptionId, eventId] → DeliveryOutcome (dead letters, until pruned)
 *   ["webhook_lease"]                        → Lease     (the webhook dispatcher's)
 *   ["readings_guard"]                       → bumped by every commit of readings
 *
 * Readings are insert-once: a stored reading is never replaced, not even by
 * another writer of the same file (the guard key makes its commit fail). A
 * replayed identical reading is a no-op; one with the same key but other
 * content is refused as a conflict and reported to the caller. Knowing each
 * device's highest stored seq, a new reading is set without being read
 * first. Alerts and device states are sets by key: one process owns the file,
 * so they need no stale-owner guard. An alert's acknowledgement is kept under
 * its own key, set once, so the processors' snapshots cannot overwrite it; the
 * queries return it on the alert, as MongoDB stores it.
 *
 * @module
 */
import type {
  AlertAck,
  AlertDoc,
  AlertStatus,
  DeviceDoc,
  ReadingDoc,
} from "../schemas/documents.ts";
import {
  type DeviceStore,
  type Refusal,
  refusalOf,
  type SeqLookup,
  type WriteBatch,
  type WriteResult,
} from "../actors/device_store.ts";
import type {
  AckOutcome,
  AlertFilter,
  ReadingWindow,
  StoreQueries,
} from "../actors/store_queries.ts";
import type {
  DeadLetter,
  DeliveryOutcome,
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

/** Deno KV allows at most 1000 mutations per atomic operation; stay well below. */
const MUTATIONS_PER_COMMIT = 400;
/** Readings per commit, beside the guard key. */
const READINGS_PER_COMMIT = MUTATIONS_PER_COMMIT - 1;
/**
 * Bumped by every commit of readings, so a writer can tell whether anyone
 * else stored readings since it last looked (see `KvStore.#insertAbsent`).
 */
const GUARD: Deno.KvKey = ["readings_guard"];
/** Devices whose highest stored seq is looked up at once, at first sight. */
const TOP_LOOKUPS_AT_ONCE = 64;
/** How often one write may find another writer's readings in its way before it gives up. */
const MAX_INSERT_ATTEMPTS = 10;
const GET_MANY_LIMIT = 10;
/** Set once every stored alert is in the status index (files written before it get it on open). */
const STATUS_INDEX_BUILT: Deno.KvKey = ["alerts_by_status_built"];
const ALERT_STATUSES: readonly AlertStatus[] = ["active", "cleared"];
const LEASE: Deno.KvKey = ["webhook_lease"];
/** Rounds of a fenced read-check-commit before giving up (another writer kept winning). */
const FENCED_ROUNDS = 10;

/** An outbox entry as stored: the event, where its deliveries stand, the last writer's token. */
interface StoredEvent extends OutboxEvent {
  readonly deliveries?: Record<string, DeliveryState>;
  readonly fence?: number;
  readonly settledAt?: Date;
}
/** Set once every stored device state has its copy by partition (see `KvStore.open`). */
const DEVICES_INDEXED: Deno.KvKey = ["devices_indexed"];

export class KvStore
  implements DeviceStore, StoreQueries, SeqLookup, WebhookStore, AsyncDisposable {
  readonly #kv: Deno.Kv;
  /**
   * The highest seq stored per device seen so far, valid while the guard key
   * is at `#guard`: a reading above it is absent and is set without being read.
   */
  readonly #top = new Map<string, number>();
  /** The guard key's versionstamp when this instance last saw it (null: absent; undefined: not read). */
  #guard: string | null | undefined;
  /** The partition each device state stored was last copied under (null: none), once known. */
  readonly #partitionOf = new Map<string, number | null>();
  /** The readings write in progress; the next one waits for it. */
  #readingsWrite: Promise<unknown> = Promise.resolve();

  private constructor(kv: Deno.Kv) {
    this.#kv = kv;
  }

  /** Opens (creating) the KV file at `path`, or an in-memory store for ":memory:". */
  static async open(path: string): Promise<KvStore> {
    if (path !== ":memory:") {
      const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) : ".";
      if (dir) await Deno.mkdir(dir, { recursive: true });
    }
    const store = new KvStore(await Deno.openKv(path));
    try {
      await store.#buildStatusIndex();
      await store.#indexDevices();
    } catch (err) {
      store.#kv.close();
      throw err;
    }
    return store;
  }

  /**
   * Indexes by status the alerts of a file written before the status index existed, once: from
   * then on every alert write keeps its entry in the same commit.
   */
  async #buildStatusIndex() {
    if ((await this.#kv.get(STATUS_INDEX_BUILT)).versionstamp !== null) return;
    const entries: (readonly [Deno.KvKey, unknown])[] = [];
    for await (const e of this.#kv.list<AlertDoc>({ prefix: ["alerts"] })) {
      entries.push([byStatusKey(e.value), e.value._id]);
    }
    await this.#commit(entries);
    await this.#kv.set(STATUS_INDEX_BUILT, true);
  }

  /**
   * Copies the device states stored before states had a partition copy (by an older version)
   * under `devices_unpartitioned`, once: `devicesIn()` then reads them with every assignment
   * until they are rewritten.
   */
  async #indexDevices(): Promise<void> {
    if ((await this.#kv.get(DEVICES_INDEXED)).value === true) return;
    const entries: (readonly [Deno.KvKey, unknown])[] = [];
    for await (const entry of this.#kv.list<DeviceDoc>({ prefix: ["devices"] })) {
      const doc = entry.value;
      if (doc?._id === undefined) continue;
      entries.push(...deviceEntries(doc, null));
      this.#partitionOf.set(doc._id, doc.partition ?? null);
    }
    await this.#commit(entries);
    await this.#commit([[DEVICES_INDEXED, true]]);
  }

  /** The open database, for the seq ledger kept in the same file (one SQLite connection). */
  get kv(): Deno.Kv {
    return this.#kv;
  }

  async ping(): Promise<void> {
    await this.#kv.get(["devices", "\u0000ping"]);
  }

  async loadDevices(ids: readonly string[]): Promise<Map<string, DeviceDoc>> {
    const found = new Map<string, DeviceDoc>();
    for (let i = 0; i < ids.length; i += GET_MANY_LIMIT) {
      const chunk = ids.slice(i, i + GET_MANY_LIMIT).map((id) => ["devices", id]);
      for (const entry of await this.#kv.getMany<DeviceDoc[]>(chunk)) {
        if (entry.value) found.set(entry.value._id, entry.value);
      }
    }
    return found;
  }

  async write(batch: WriteBatch): Promise<WriteResult> {
    // Readings, then alerts, then device states, each once the previous are durable. A crash
    // can leave readings without their alerts, never alerts without their readings: a
    // restarted embedded app regenerates the alerts from the stored readings.
    const refused = await this.#writeReadings(batch.readings, batch.skipped ?? []);
    const alerts = await this.#fresherAlerts(batch.alerts);
    // Each alert's outbox events go in the same atomic commit as the alert.
    const fresh = await this.#newEvents(alerts.flatMap(outboxEventsOf));
    await this.#commitGroups(alerts.map((a) => [
      [["alerts", a._id], a] as const,
      [["alerts_by_time", a.raisedAt.getTime(), a._id], a._id] as const,
      [byDeviceKey(a), a._id] as const,
      // Its entry under its status, and none under any other (a clear moves it).
      ...ALERT_STATUSES.map((status) =>
        [byStatusKey({ ...a, status }), status === a.status ? a._id : DELETE] as const
      ),
      ...outboxEntries(fresh.filter((e) => e.alertId === a._id)),
    ]));
    await this.#writeDevices(batch.devices);
    return { refused };
  }

  /**
   * Sets each device state and its copy under its partition, removing the copy under the
   * partition it was stored with before (looked up the first time a device is written here).
   */
  async #writeDevices(devices: readonly DeviceDoc[]) {
    if (devices.length === 0) return;
    const unknown = devices.map((d) => d._id).filter((id) => !this.#partitionOf.has(id));
    for (const [id, doc] of await this.loadDevices(unknown)) {
      this.#partitionOf.set(id, doc.partition ?? null);
    }
    await this.#commitGroups(devices.map((d) => {
      const before = this.#partitionOf.get(d._id);
      this.#partitionOf.set(d._id, d.partition ?? null);
      return deviceEntries(d, before);
    }));
  }

  /**
   * The stored states recorded on `partitions`, and those recorded on none: one range read of
   * each partition's copies.
   */
  async devicesIn(partitions: readonly number[]): Promise<Map<string, DeviceDoc>> {
    const found = new Map<string, DeviceDoc>();
    const prefixes: Deno.KvKey[] = [
      ...[...new Set(partitions)].map((p) => ["devices_by_partition", p]),
      ["devices_unpartitioned"],
    ];
    for (const prefix of prefixes) {
      for await (const entry of this.#kv.list<DeviceDoc>({ prefix }, { batchSize: 500 })) {
        const doc = entry.value;
        const seen = found.get(doc._id);
        if (!seen || seen.lastSeq < doc.lastSeq) found.set(doc._id, doc);
      }
    }
    return found;
  }

  /**
   * The alert snapshots not older (`asOfSeq`) than the stored ones: an offline alert raised on
   * the clock must not reopen one a reading closed meanwhile. Writes reach this store one at a
   * time (the processors' store writer), so reading first is enough.
   */
  async #fresherAlerts(alerts: readonly AlertDoc[]): Promise<readonly AlertDoc[]> {
    if (!alerts.some((a) => a.type === "offline")) return alerts;
    const stored = new Map<string, number>();
    for (let i = 0; i < alerts.length; i += GET_MANY_LIMIT) {
      const keys = alerts.slice(i, i + GET_MANY_LIMIT).map((a) => ["alerts", a._id]);
      for (const entry of await this.#kv.getMany<AlertDoc[]>(keys)) {
        if (entry.value) stored.set(entry.value._id, entry.value.asOfSeq);
      }
    }
    return alerts.filter((a) => (stored.get(a._id) ?? -1) <= a.asOfSeq);
  }

  /**
   * Inserts the readings whose key is absent; compares the others, and every
   * skipped reading, with the stored ones. One writer at a time per instance
   * (the processors' store writer already sends one write at a time).
   */
  #writeReadings(
    readings: readonly ReadingDoc[],
    skipped: readonly ReadingDoc[],
  ): Promise<Refusal[]> {
    const run = this.#readingsWrite.then(() => this.#insertReadings(readings, skipped));
    this.#readingsWrite = run.catch(() => {});
    return run;
  }

  async #insertReadings(
    readings: readonly ReadingDoc[],
    skipped: readonly ReadingDoc[],
  ): Promise<Refusal[]> {
    const refused: Refusal[] = [];
    // Repeats of a key within the batch: compared, once the first is in, with what is stored.
    const repeated: ReadingDoc[] = [];
    let pending = readings;
    for (let attempt = 1; pending.length > 0; attempt++) {
      if (attempt > MAX_INSERT_ATTEMPTS) {
        throw new Error(
          `Deno KV readings write kept racing another writer: gave up after "${MAX_INSERT_ATTEMPTS}" attempts`,
        );
      }
      const sorted = await this.#sortReadings(pending);
      for (const [reading, stored] of sorted.stored) {
        const refusal = refusalOf(reading, stored);
        if (refusal) refused.push(refusal);
      }
      repeated.push(...sorted.repeated);
      pending = await this.#insertAbsent(sorted.absent);
    }
    if (repeated.length === 0 && skipped.length === 0) return refused;
    const stored = await this.#storedReadings([...repeated, ...skipped]);
    for (const reading of [...repeated, ...skipped]) {
      const refusal = refusalOf(reading, stored.get(reading._id));
      if (refusal) refused.push(refusal);
    }
    return refused;
  }

  /**
   * Splits readings into those certainly absent, those stored (with what is
   * stored) and repeats of a key within `readings`. Only a reading at or below
   * its device's highest stored seq is read: on the normal path none is.
   */
  async #sortReadings(readings: readonly ReadingDoc[]) {
    if (this.#guard === undefined) this.#guard = (await this.#kv.get(GUARD)).versionstamp;
    const unknown = [...new Set(readings.map((r) => r.deviceId))].filter((d) => !this.#top.has(d));
    // A bounded number at a time: after a restart one batch may meet thousands of devices.
    for (let i = 0; i < unknown.length; i += TOP_LOOKUPS_AT_ONCE) {
      await Promise.all(
        unknown.slice(i, i + TOP_LOOKUPS_AT_ONCE).map(async (deviceId) => {
          let top = 0;
          const last = this.#kv.list<ReadingDoc>({ prefix: ["readings", deviceId] }, {
            reverse: true,
            limit: 1,
          });
          for await (const entry of last) top = entry.value.seq;
          this.#top.set(deviceId, top);
        }),
      );
    }
    const seen = new Set<string>();
    const repeated: ReadingDoc[] = [];
    const above: ReadingDoc[] = [];
    const below: ReadingDoc[] = [];
    for (const r of readings) {
      if (seen.has(r._id)) repeated.push(r);
      else (r.seq > this.#top.get(r.deviceId)! ? above : below).push(r);
      seen.add(r._id);
    }
    const found = below.length > 0 ? await this.#storedReadings(below) : new Map();
    return {
      absent: [...above, ...below.filter((r) => !found.has(r._id))],
      stored: below.filter((r) => found.has(r._id)).map((r) => [r, found.get(r._id)!] as const),
      repeated,
    };
  }

  /**
   * Sets readings known to be absent. Each commit checks that the guard key
   * is as this instance last saw it and bumps it, so if any other writer
   * stored readings meanwhile the commit fails instead of overwriting: what
   * this instance knew is dropped and the readings not committed are returned,
   * to be sorted again.
   */
  async #insertAbsent(readings: readonly ReadingDoc[]): Promise<readonly ReadingDoc[]> {
    for (let i = 0; i < readings.length; i += READINGS_PER_COMMIT) {
      const chunk = readings.slice(i, i + READINGS_PER_COMMIT);
      const op = this.#kv.atomic().check({ key: GUARD, versionstamp: this.#guard ?? null });
      for (const r of chunk) op.set(readingKey(r), r);
      const result = await op.set(GUARD, true).commit();
      if (!result.ok) {
        this.#guard = undefined;
        this.#top.clear();
        return readings.slice(i);
      }
      this.#guard = result.versionstamp;
      for (const r of chunk) {
        if (r.seq > this.#top.get(r.deviceId)!) this.#top.set(r.deviceId, r.seq);
      }
    }
    return [];
  }

  /** The stored readings under the keys of these, by `_id`. */
  async #storedReadings(readings: readonly ReadingDoc[]): Promise<Map<string, ReadingDoc>> {
    const chunks: Deno.KvKey[][] = [];
    for (let i = 0; i < readings.length; i += GET_MANY_LIMIT) {
      chunks.push(readings.slice(i, i + GET_MANY_LIMIT).map(readingKey));
    }
    const found = new Map<string, ReadingDoc>();
    for (const entries of await Promise.all(chunks.map((c) => this.#kv.getMany<ReadingDoc[]>(c)))) {
      for (const entry of entries) if (entry.value) found.set(entry.value._id, entry.value);
    }
    return found;
  }

  async lastSeqs(): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    for await (const entry of this.#kv.list<DeviceDoc>({ prefix: ["devices"] })) {
      out.set(entry.value._id, entry.value.lastSeq);
    }
    return out;
  }

  /** The stored states of several devices (the API's batched lookups). */
  devices(ids: readonly string[]): Promise<Map<string, DeviceDoc>> {
    return this.loadDevices(ids);
  }

  async device(id: string): Promise<DeviceDoc | null> {
    return (await this.#kv.get<DeviceDoc>(["devices", id])).value;
  }

  async readingsAfter(deviceId: string, afterSeq: number, limit: number): Promise<ReadingDoc[]> {
    const out: ReadingDoc[] = [];
    const iter = this.#kv.list<ReadingDoc>({
      prefix: ["readings", deviceId],
      start: ["readings", deviceId, afterSeq + 1],
    }, { limit });
    for await (const entry of iter) out.push(entry.value);
    return out;
  }

  async readings(deviceId: string, limit: number): Promise<ReadingDoc[]> {
    const out: ReadingDoc[] = [];
    const iter = this.#kv.list<ReadingDoc>({ prefix: ["readings", deviceId] }, {
      reverse: true,
      limit,
    });
    for await (const entry of iter) out.push(entry.value);
    return out;
  }

  async alerts(filter: AlertFilter): Promise<AlertDoc[]> {
    const from = filter.raisedFrom?.getTime();
    const to = filter.raisedTo?.getTime();
    // By time (all, or one status) the index is keyed by raisedAt, so a window is a key range:
    // the active episodes are read without the settled history. By device, filtered.
    const selector: Deno.KvListSelector = filter.deviceId
      ? { prefix: ["alerts_by_device", filter.deviceId] }
      : filter.status
      ? timeRange(["alerts_by_status", filter.status], from, to)
      : timeRange(["alerts_by_time"], from, to);
    const keep = (a: AlertDoc) =>
      (!filter.status || a.status === filter.status) &&
      (!filter.type || a.type === filter.type) &&
      (filter.acked === undefined || (a.ackedAt !== undefined) === filter.acked) &&
      (from === undefined || a.raisedAt.getTime() >= from) &&
      (to === undefined || a.raisedAt.getTime() < to);
    const out: AlertDoc[] = [];
    let ids: string[] = [];
    const flush = async () => {
      for (const a of await this.#alertsByIds(ids)) {
        if (a && keep(a) && out.length < filter.limit) out.push(a);
      }
      ids = [];
    };
    for await (const entry of this.#kv.list<string>(selector, { reverse: true })) {
      ids.push(entry.value);
      if (ids.length === GET_MANY_LIMIT / 2) await flush();
      if (out.length >= filter.limit) break;
    }
    if (ids.length > 0 && out.length < filter.limit) await flush();
    // By device the index is ordered by raisedSeq; order by time like the other store.
    return out.sort((a, b) => b.raisedAt.getTime() - a.raisedAt.getTime());
  }

  /** The alerts under these ids (null where none), each with its acknowledgement if any. */
  async #alertsByIds(ids: readonly string[]): Promise<(AlertDoc | null)[]> {
    const entries = await this.#kv.getMany<(AlertDoc | AlertAck)[]>(
      ids.flatMap((id) => [["alerts", id], ["alert_acks", id]]),
    );
    return ids.map((_, i) => {
      const alert = entries[2 * i]!.value as AlertDoc | null;
      const ack = entries[2 * i + 1]!.value as AlertAck | null;
      return alert && ack ? { ...alert, ...ack } : alert;
    });
  }

  /**
   * Walks the device's readings (or all of them) in key order, which is device id then seq,
   * keeping those in the window: there is no index by time, so the scan is what costs, and it
   * stops as soon as `signal` aborts.
   */
  async readingsBetween(window: ReadingWindow): Promise<ReadingDoc[]> {
    const { signal } = window;
    signal?.throwIfAborted();
    const from = window.from.getTime();
    const to = window.to.getTime();
    const prefix = window.deviceId ? ["readings", window.deviceId] : ["readings"];
    const out: ReadingDoc[] = [];
    for await (const entry of this.#kv.list<ReadingDoc>({ prefix }, { batchSize: 500 })) {
      signal?.throwIfAborted();
      const ts = entry.value.ts.getTime();
      if (ts >= from && ts < to) out.push(entry.value);
      if (out.length >= window.limit) break;
    }
    return out;
  }

  /** A check that the acknowledgement key is still unset makes the first one win. */
  async acknowledge(id: string, ack: AlertAck): Promise<AckOutcome | null> {
    const key: Deno.KvKey = ["alert_acks", id];
    // The second round finds the acknowledgement that beat this one.
    for (let round = 0; round < 2; round++) {
      const [alert] = await this.#alertsByIds([id]);
      if (!alert) return null;
      if (alert.ackedAt !== undefined) return { alert, recorded: false };
      const stored: AlertAck = ack.note === undefined
        ? { ackedBy: ack.ackedBy, ackedAt: ack.ackedAt }
        : ack;
      const acked = { ...alert, ...stored };
      // The ack event is committed with the acknowledgement.
      const op = this.#kv.atomic().check({ key, versionstamp: null }).set(key, stored);
      for (const [k, v] of outboxEntries(await this.#newEvents([ackEventOf(acked)!]))) op.set(k, v);
      const result = await op.commit();
      if (result.ok) return { alert: acked, recorded: true };
    }
    throw new Error(`Deno KV acknowledgement kept failing: alert "${id}"`);
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.#kv.close();
    return Promise.resolve();
  }

  /** The events of `events` not in the outbox yet (writes reach this store one at a time). */
  async #newEvents(events: readonly OutboxEvent[]): Promise<OutboxEvent[]> {
    const out: OutboxEvent[] = [];
    for (let i = 0; i < events.length; i += GET_MANY_LIMIT) {
      const chunk = events.slice(i, i + GET_MANY_LIMIT);
      const found = await this.#kv.getMany<OutboxEvent[]>(chunk.map((e) => ["outbox", e._id]));
      chunk.forEach((e, j) => {
        if (found[j]!.value === null) out.push(e);
      });
    }
    return out;
  }

  async addWebhook(doc: WebhookDoc): Promise<void> {
    await this.#kv.set(["webhooks", doc._id], doc);
  }

  async webhooks(): Promise<WebhookDoc[]> {
    const out: WebhookDoc[] = [];
    for await (const e of this.#kv.list<WebhookDoc>({ prefix: ["webhooks"] })) out.push(e.value);
    return out.sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime());
  }

  async removeWebhook(id: string): Promise<boolean> {
    const key: Deno.KvKey = ["webhooks", id];
    const found = await this.#kv.get(key);
    if (found.versionstamp === null) return false;
    await this.#kv.delete(key);
    return true;
  }

  /** A check of the lease key's versionstamp makes the first of two takers win. */
  async acquireLease(owner: string, now: Date, ttlMs: number): Promise<Lease> {
    const expiresAt = new Date(now.getTime() + ttlMs);
    for (let round = 0; round < FENCED_ROUNDS; round++) {
      const current = await this.#kv.get<Lease>(LEASE);
      const lease = current.value;
      let next: Lease;
      if (!lease) next = { owner, token: 1, expiresAt };
      else if (lease.owner === owner) next = { ...lease, expiresAt };
      else if (lease.expiresAt.getTime() <= now.getTime()) {
        next = { owner, token: lease.token + 1, expiresAt };
      } else return lease;
      if ((await this.#kv.atomic().check(current).set(LEASE, next).commit()).ok) return next;
    }
    throw new Error("Deno KV lease kept changing while being taken");
  }

  async releaseLease(owner: string, token: number): Promise<void> {
    const current = await this.#kv.get<Lease>(LEASE);
    if (current.value?.owner !== owner || current.value.token !== token) return;
    // The token stays: it only ever grows.
    await this.#kv.atomic().check(current).set(LEASE, { ...current.value, expiresAt: new Date(0) })
      .commit();
  }

  async pendingEvents(limit: number): Promise<PendingEvent[]> {
    const ids: string[] = [];
    for await (const e of this.#kv.list<string>({ prefix: ["outbox_pending"] }, { limit })) {
      ids.push(e.value);
    }
    const out: PendingEvent[] = [];
    for (let i = 0; i < ids.length; i += GET_MANY_LIMIT) {
      const keys = ids.slice(i, i + GET_MANY_LIMIT).map((id) => ["outbox", id]);
      for (const e of await this.#kv.getMany<StoredEvent[]>(keys)) {
        if (!e.value) continue;
        const { _id, event, alertId, occurredAt, alert, deliveries = {} } = e.value;
        out.push({ event: { _id, event, alertId, occurredAt, alert }, deliveries });
      }
    }
    return out;
  }

  /**
   * Reads the event and the lease, and commits only if neither changed since: a write by a
   * dispatcher whose token is below the lease's is refused in the same commit that makes it.
   */
  async #fenced(
    eventId: string,
    fence: number,
    change: (stored: StoredEvent, op: Deno.AtomicOperation) => boolean,
  ): Promise<boolean> {
    for (let round = 0; round < FENCED_ROUNDS; round++) {
      const [entry, lease] = await this.#kv.getMany<[StoredEvent, Lease]>([
        ["outbox", eventId],
        LEASE,
      ]);
      if (!entry.value || (entry.value.fence ?? 0) > fence) return false;
      if (lease.value && lease.value.token > fence) return false;
      const op = this.#kv.atomic().check(entry).check(lease);
      if (!change(entry.value, op)) return false;
      if ((await op.commit()).ok) return true;
    }
    throw new Error(`Deno KV outbox event kept changing while being written: "${eventId}"`);
  }

  recordDelivery(
    eventId: string,
    subscriptionId: string,
    state: DeliveryState,
    fence: number,
  ): Promise<boolean> {
    return this.#fenced(eventId, fence, (stored, op) => {
      const before = stored.deliveries?.[subscriptionId];
      if (before && before.status !== "retrying") return false; // The first outcome wins.
      const deliveries = { ...stored.deliveries, [subscriptionId]: state };
      op.set(["outbox", eventId], { ...stored, deliveries, fence });
      if (state.status === "dead") op.set(["webhook_dead", subscriptionId, eventId], state);
      return true;
    });
  }

  async settle(events: readonly PendingEvent[], at: Date, fence: number): Promise<number> {
    let settled = 0;
    for (const { event } of events) {
      const done = await this.#fenced(event._id, fence, (stored, op) => {
        op.delete(["outbox_pending", stored.occurredAt.getTime(), event._id])
          .set(["outbox", event._id], { ...stored, settledAt: at, fence })
          .set(["outbox_settled", at.getTime(), event._id], event._id);
        return true;
      });
      if (done) settled++;
    }
    return settled;
  }

  async prune(before: Date, limit: number): Promise<number> {
    const settled = this.#kv.list<string>({
      start: ["outbox_settled"],
      end: ["outbox_settled", before.getTime()],
    }, { limit });
    let pruned = 0;
    for await (const { key, value: eventId } of settled) {
      const stored = (await this.#kv.get<StoredEvent>(["outbox", eventId])).value;
      const op = this.#kv.atomic().delete(key).delete(["outbox", eventId]);
      for (const [subscriptionId, state] of Object.entries(stored?.deliveries ?? {})) {
        if (state.status === "dead") op.delete(["webhook_dead", subscriptionId, eventId]);
      }
      await op.commit();
      pruned++;
    }
    return pruned;
  }

  async deadLetters(subscriptionId: string, limit: number): Promise<DeadLetter[]> {
    const out: DeadLetter[] = [];
    const iter = this.#kv.list<DeliveryOutcome>({ prefix: ["webhook_dead", subscriptionId] }, {
      limit,
    });
    for await (const e of iter) {
      out.push({ subscriptionId, eventId: e.key[2] as string, outcome: e.value });
    }
    return out;
  }

  /** Commits each group atomically: several groups may share a commit, a group is never split. */
  async #commitGroups(groups: readonly (readonly (readonly [Deno.KvKey, unknown])[])[]) {
    let entries: (readonly [Deno.KvKey, unknown])[] = [];
    for (const group of groups) {
      if (entries.length + group.length > MUTATIONS_PER_COMMIT) {
        await this.#commit(entries);
        entries = [];
      }
      entries.push(...group);
    }
    await this.#commit(entries);
  }

  /** Sets the entries (deleting those whose value is `DELETE`), in commits of a bounded size. */
  async #commit(entries: readonly (readonly [Deno.KvKey, unknown])[]) {
    for (let i = 0; i < entries.length; i += MUTATIONS_PER_COMMIT) {
      const op = this.#kv.atomic();
      for (const [key, value] of entries.slice(i, i + MUTATIONS_PER_COMMIT)) {
        if (value === DELETE) op.delete(key);
        else op.set(key, value);
      }
      const result = await op.commit();
      if (!result.ok) throw new Error("Deno KV refused a write");
    }
  }
}

/** In a list of entries to commit: delete the key instead of setting it. */
const DELETE = Symbol("delete");

function outboxEntries(events: readonly OutboxEvent[]): (readonly [Deno.KvKey, unknown])[] {
  return events.flatMap((e) => [
    [["outbox", e._id], e] as const,
    [["outbox_pending", e.occurredAt.getTime(), e._id], e._id] as const,
  ]);
}

/** Keys under `prefix` whose next part is in `[from, to)` (each bound optional). */
function timeRange(prefix: Deno.KvKey, from?: number, to?: number): Deno.KvListSelector {
  if (from !== undefined && to !== undefined) {
    return { start: [...prefix, from], end: [...prefix, to] };
  }
  if (from !== undefined) return { prefix, start: [...prefix, from] };
  if (to !== undefined) return { prefix, end: [...prefix, to] };
  return { prefix };
}

function readingKey(r: ReadingDoc): Deno.KvKey {
  return ["readings", r.deviceId, r.seq];
}

/** An alert's key in the status index. */
function byStatusKey(a: Pick<AlertDoc, "_id" | "status" | "raisedAt">): Deno.KvKey {
  return ["alerts_by_status", a.status, a.raisedAt.getTime(), a._id];
}

/** An alert's key in the per-device index: an offline episode may share its raisedSeq. */
function byDeviceKey(a: AlertDoc): Deno.KvKey {
  return a.type === "overheat"
    ? ["alerts_by_device", a.deviceId, a.raisedSeq]
    : ["alerts_by_device", a.deviceId, a.raisedSeq, a.type];
}

/**
 * The mutations that store device state `doc` and its one copy (under its partition, or
 * unpartitioned), removing the copy it had under `before` (undefined: not stored).
 */
function deviceEntries(
  doc: DeviceDoc,
  before: number | null | undefined,
): (readonly [Deno.KvKey, unknown])[] {
  const after = doc.partition ?? null;
  const copyKey = (p: number | null): Deno.KvKey =>
    p === null ? ["devices_unpartitioned", doc._id] : ["devices_by_partition", p, doc._id];
  return [
    [["devices", doc._id], doc],
    [copyKey(after), doc],
    ...(before !== undefined && before !== after ? [[copyKey(before), DELETE] as const] : []),
  ];
}
