/**
 * The device states this process's processors stored, for the partitions it
 * owns, so that `GET /devices/:id` is answered from memory instead of the
 * store (on FerretDB 1.24 the store read scans the device-state journal). It
 * holds only what a checkpoint of this process stored successfully — never a
 * state still waiting for its write — and a lookup it cannot answer exactly
 * goes to the store. Why its answer is the store's, and where it is not:
 * docs/http-api.md#get-devicesid-from-the-processors-view.
 *
 * @module
 */
import type { DeviceDoc } from "../schemas/documents.ts";
import type { StoreQueries } from "./store_queries.ts";

/** The states last stored by this process's checkpoints, per device of an owned partition. */
export class DeviceView {
  /** Partitions owned since the last assignment; none before the first. */
  #owned: ReadonlySet<number> = new Set();
  readonly #states = new Map<string, DeviceDoc>();
  #hits = 0;
  #misses = 0;

  /** Devices answered. */
  get size(): number {
    return this.#states.size;
  }

  /** Devices held, and the lookups answered (`hits`) or left to the store (`misses`) so far. */
  get stats(): { readonly devices: number; readonly hits: number; readonly misses: number } {
    return { devices: this.#states.size, hits: this.#hits, misses: this.#misses };
  }

  /**
   * A rebalance: forgets every state, kept partitions' too. A device that moved partition (the
   * partition count changed, which causes a rebalance) may have a newer state stored by its new
   * partition's owner, which this process would never hear of.
   */
  assign(partitions: readonly number[]): void {
    this.#owned = new Set(partitions);
    this.#states.clear();
  }

  /** This process no longer answers for any partition (it is stopping or lost its consumer). */
  clear(): void {
    this.assign([]);
  }

  /**
   * A checkpoint's write settled. `stored`: the states of partitions owned all through the
   * write, now stored; each replaces the device's state only if newer (`lastSeq`), as the store
   * picks the newest — one as old as the held one is a tie the stores break differently (MongoDB
   * keeps the first stored, Deno KV the last), so the device is forgotten and read from the
   * store. Not `stored`: the write failed, and the store may hold these states or not: they are
   * forgotten until a later write stores them.
   */
  written(states: readonly DeviceDoc[], stored: boolean): void {
    for (const state of states) {
      const id = state.deviceId;
      const held = this.#states.get(id);
      const owned = state.partition !== undefined && this.#owned.has(state.partition);
      if (stored && owned && (!held || held.lastSeq < state.lastSeq)) this.#states.set(id, state);
      else this.#states.delete(id);
    }
  }

  /** The stored state of `id`, when this process stored it and owns its partition. */
  get(id: string): DeviceDoc | undefined {
    return this.#states.get(id);
  }

  /** `get()` for a lookup of the API, counted as a hit or a miss. */
  lookup(id: string): DeviceDoc | undefined {
    const held = this.#states.get(id);
    if (held) this.#hits++;
    else this.#misses++;
    return held;
  }
}

/** `queries` whose device lookups `view` answers when it holds the device. */
export function viewedQueries(
  queries: StoreQueries,
  view: Pick<DeviceView, "lookup">,
): StoreQueries {
  return {
    device: (id) => {
      const held = view.lookup(id);
      return held ? Promise.resolve(held) : queries.device(id);
    },
    readings: (deviceId, limit) => queries.readings(deviceId, limit),
    alerts: (filter) => queries.alerts(filter),
    readingsBetween: (window) => queries.readingsBetween(window),
    acknowledge: (id, ack) => queries.acknowledge(id, ack),
  };
}
