/**
 * The embedded store: Deno KV (SQLite underneath, built into Deno) holding the
 * same three collections' worth of data as MongoDB, under the same
 * deterministic ids, and answering the same queries for the HTTP API.
 *
 *   ["readings", deviceId, seq]              → ReadingDoc
 *   ["alerts", alertId]                      → AlertDoc
 *   ["alerts_by_time", raisedAtMs, alertId]  → alertId   (newest-first listing)
 *   ["alerts_by_device", deviceId, raisedSeq] → alertId
 *   ["devices", deviceId]                    → DeviceDoc
 *
 * Writes are idempotent sets by key. One process owns the file, so device
 * states need no stale-owner guard; a replayed reading is recomputed
 * identically and only its `processedAt` is refreshed.
 *
 * @module
 */
import type { AlertDoc, AlertStatus, DeviceDoc, ReadingDoc } from "../schemas/documents.ts";
import type { DeviceStore, SeqLookup, WriteBatch } from "../actors/device_store.ts";
import type { StoreQueries } from "../actors/store_queries.ts";

/** Deno KV allows at most 1000 mutations per atomic operation; stay well below. */
const MUTATIONS_PER_COMMIT = 400;
const GET_MANY_LIMIT = 10;

export class KvStore implements DeviceStore, StoreQueries, SeqLookup, AsyncDisposable {
  readonly #kv: Deno.Kv;

  private constructor(kv: Deno.Kv) {
    this.#kv = kv;
  }

  /** Opens (creating) the KV file at `path`, or an in-memory store for ":memory:". */
  static async open(path: string): Promise<KvStore> {
    if (path !== ":memory:") {
      const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) : ".";
      if (dir) await Deno.mkdir(dir, { recursive: true });
    }
    return new KvStore(await Deno.openKv(path));
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

  async write(batch: WriteBatch): Promise<void> {
    // Readings and alerts first; device states only once those are durable.
    await this.#commit([
      ...batch.readings.map((r) => [["readings", r.deviceId, r.seq], r] as const),
      ...batch.alerts.flatMap((a) => [
        [["alerts", a._id], a] as const,
        [["alerts_by_time", a.raisedAt.getTime(), a._id], a._id] as const,
        [["alerts_by_device", a.deviceId, a.raisedSeq], a._id] as const,
      ]),
    ]);
    await this.#commit(batch.devices.map((d) => [["devices", d._id], d] as const));
  }

  async lastSeqs(): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    for await (const entry of this.#kv.list<DeviceDoc>({ prefix: ["devices"] })) {
      out.set(entry.value._id, entry.value.lastSeq);
    }
    return out;
  }

  async device(id: string): Promise<DeviceDoc | null> {
    return (await this.#kv.get<DeviceDoc>(["devices", id])).value;
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

  async alerts(
    filter: { readonly status?: AlertStatus; readonly deviceId?: string; readonly limit: number },
  ): Promise<AlertDoc[]> {
    const prefix = filter.deviceId ? ["alerts_by_device", filter.deviceId] : ["alerts_by_time"];
    const out: AlertDoc[] = [];
    let ids: string[] = [];
    const flush = async () => {
      for (const entry of await this.#kv.getMany<AlertDoc[]>(ids.map((id) => ["alerts", id]))) {
        const a = entry.value;
        if (a && (!filter.status || a.status === filter.status) && out.length < filter.limit) {
          out.push(a);
        }
      }
      ids = [];
    };
    for await (const entry of this.#kv.list<string>({ prefix }, { reverse: true })) {
      ids.push(entry.value);
      if (ids.length === GET_MANY_LIMIT) await flush();
      if (out.length >= filter.limit) break;
    }
    if (ids.length > 0 && out.length < filter.limit) await flush();
    // By device the index is ordered by raisedSeq; order by time like the other store.
    return out.sort((a, b) => b.raisedAt.getTime() - a.raisedAt.getTime());
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.#kv.close();
    return Promise.resolve();
  }

  async #commit(entries: readonly (readonly [Deno.KvKey, unknown])[]) {
    for (let i = 0; i < entries.length; i += MUTATIONS_PER_COMMIT) {
      const op = this.#kv.atomic();
      for (const [key, value] of entries.slice(i, i + MUTATIONS_PER_COMMIT)) op.set(key, value);
      const result = await op.commit();
      if (!result.ok) throw new Error("Deno KV refused a write");
    }
  }
}
