/**
 * The seq ledger in Deno KV (embedded mode), in the store's KV file:
 *
 *   ["seq_ceilings", deviceId] → highest seq ever reserved (a number)
 *
 * Each reservation is a compare-and-set: read the ceilings, then commit the
 * raised ones with a versionstamp check per device, retrying the devices of
 * a chunk whose check failed (another ledger on the same file got there
 * first). Deno KV allows 100 checks per atomic operation and 10 keys per
 * `getMany()`, so requests go in chunks.
 *
 * @module
 */
import type { SeqBlock } from "../domain/seq_block.ts";
import {
  assertDistinct,
  type SeqLedger,
  SeqLedgerError,
  type SeqRequest,
} from "../actors/seq_ledger.ts";

/** Deno KV: at most 100 checks per atomic operation. */
const CHECKS_PER_COMMIT = 100;
/** Deno KV: at most 10 keys per getMany(). */
const GET_MANY_LIMIT = 10;
/** Commits lost to contention before a chunk gives up. */
const MAX_CONFLICTS = 50;

const PREFIX = "seq_ceilings";

export class KvSeqLedger implements SeqLedger, AsyncDisposable {
  readonly #kv: Deno.Kv;
  readonly #owned: boolean;

  /**
   * A ledger in an open KV database, e.g. the store's: share the store's
   * handle rather than opening the file twice (two SQLite connections
   * writing at once fail with "database is locked"). Disposing leaves it open.
   */
  constructor(kv: Deno.Kv, options: { readonly owned?: boolean } = {}) {
    this.#kv = kv;
    this.#owned = options.owned ?? false;
  }

  /** Opens (creating) a KV file of its own at `path`, or a private one for ":memory:". */
  static async open(path: string): Promise<KvSeqLedger> {
    if (path !== ":memory:") {
      const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) : ".";
      if (dir) await Deno.mkdir(dir, { recursive: true });
    }
    return new KvSeqLedger(await Deno.openKv(path), { owned: true });
  }

  async reserve(requests: readonly SeqRequest[]): Promise<Map<string, SeqBlock>> {
    assertDistinct(requests);
    const out = new Map<string, SeqBlock>();
    for (let i = 0; i < requests.length; i += CHECKS_PER_COMMIT) {
      await this.#reserveChunk(requests.slice(i, i + CHECKS_PER_COMMIT), out);
    }
    return out;
  }

  /** Highest seq reserved for `deviceId` (0: none). */
  async ceiling(deviceId: string): Promise<number> {
    return (await this.#kv.get<number>([PREFIX, deviceId])).value ?? 0;
  }

  [Symbol.asyncDispose](): Promise<void> {
    if (this.#owned) this.#kv.close();
    return Promise.resolve();
  }

  async #reserveChunk(chunk: readonly SeqRequest[], out: Map<string, SeqBlock>) {
    for (let conflicts = 0;; conflicts++) {
      const entries = await this.#read(chunk.map((r) => r.deviceId));
      const op = this.#kv.atomic();
      const blocks: [string, SeqBlock][] = [];
      chunk.forEach(({ deviceId, size, floor }, i) => {
        const entry = entries[i]!;
        const first = Math.max(entry.value ?? 0, floor ?? 0) + 1;
        const block = { first, last: first + size - 1 };
        op.check({ key: entry.key, versionstamp: entry.versionstamp });
        op.set(entry.key, block.last);
        blocks.push([deviceId, block]);
      });
      const result = await op.commit();
      if (result.ok) {
        for (const [id, block] of blocks) out.set(id, block);
        return;
      }
      if (conflicts >= MAX_CONFLICTS) {
        throw new SeqLedgerError(
          `Seq ledger gave up after ${MAX_CONFLICTS} conflicting commits: first device "${
            chunk[0]!.deviceId
          }"`,
        );
      }
    }
  }

  async #read(ids: readonly string[]): Promise<Deno.KvEntryMaybe<number>[]> {
    const reads: Promise<Deno.KvEntryMaybe<number>[]>[] = [];
    for (let i = 0; i < ids.length; i += GET_MANY_LIMIT) {
      reads.push(
        this.#kv.getMany<number[]>(ids.slice(i, i + GET_MANY_LIMIT).map((id) => [PREFIX, id])),
      );
    }
    return (await Promise.all(reads)).flat();
  }
}
