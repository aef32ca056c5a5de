/**
 * A replica of the fleet registry topic, partition by partition, as one
 * consumer sees it. Pure: it is fed assignments, high watermarks and records,
 * and answers which sensors to start and stop.
 *
 * Nothing is ever committed, so every assignment reads each of its partitions
 * from the beginning. A partition is `loading` until the replica has read up
 * to the high watermark seen at assignment; only then is its content compared
 * with what runs and applied (start the new and changed, stop the missing), so
 * replaying a partition's history never stops and restarts a running sensor.
 * A `live` partition applies each later put and tombstone at once.
 *
 * @module
 */
import { isDeepStrictEqual } from "node:util";
import type { SensorSpec } from "../schemas/sensor_spec.ts";

/** One registry record, decoded. `offset` is the record's offset in its partition. */
export type RegistryRecord =
  | { readonly offset: number; readonly type: "put"; readonly spec: SensorSpec }
  | { readonly offset: number; readonly type: "remove"; readonly id: string }
  /** The fleet was seeded from `--sensors N` (a marker record, not a sensor). */
  | { readonly offset: number; readonly type: "seeded" }
  /** A record this version cannot read: it only moves the position on. */
  | { readonly offset: number; readonly type: "skip" };

/** What the runner does when the replica's view of its partitions changes. */
export type FleetChange =
  | { readonly type: "start"; readonly spec: SensorSpec }
  | { readonly type: "stop"; readonly id: string };

interface PartitionState {
  /** What runs (the last caught-up content, with live changes applied). */
  current: Map<string, SensorSpec>;
  /** Loading: the content read so far in this assignment. Live: undefined. */
  loading: Map<string, SensorSpec> | undefined;
  /** Offset of the next record to read; -1 before the first record of this assignment. */
  next: number;
  /** The high watermark at assignment; undefined until known. */
  target: number | undefined;
}

export class RegistryReplica {
  readonly #partitions = new Map<number, PartitionState>();
  #seeded = false;

  /** Partitions owned now (loading or live). */
  get partitions(): readonly number[] {
    return [...this.#partitions.keys()].sort((a, b) => a - b);
  }

  /** True once any partition showed the seed marker. */
  get seeded(): boolean {
    return this.#seeded;
  }

  /** True when the partition is owned and caught up. */
  isLive(partition: number): boolean {
    const state = this.#partitions.get(partition);
    return state !== undefined && state.loading === undefined;
  }

  /** The offset this replica will read next in the partition (-1: none read yet). */
  position(partition: number): number {
    return this.#partitions.get(partition)?.next ?? -1;
  }

  /** Every sensor of the owned partitions, as currently applied. */
  *specs(): IterableIterator<SensorSpec> {
    for (const state of this.#partitions.values()) yield* state.current.values();
  }

  /** The applied spec of a sensor, wherever it is among the owned partitions. */
  spec(id: string): SensorSpec | undefined {
    for (const state of this.#partitions.values()) {
      const spec = state.current.get(id);
      if (spec) return spec;
    }
    return undefined;
  }

  get size(): number {
    let n = 0;
    for (const state of this.#partitions.values()) n += state.current.size;
    return n;
  }

  /**
   * A new assignment: revoked partitions stop their sensors; every assigned
   * partition (kept ones too: they are read again from the start) loads anew.
   */
  assign(partitions: readonly number[]): FleetChange[] {
    const changes: FleetChange[] = [];
    const assigned = new Set(partitions);
    for (const [p, state] of this.#partitions) {
      if (assigned.has(p)) continue;
      for (const id of state.current.keys()) changes.push({ type: "stop", id });
      this.#partitions.delete(p);
    }
    for (const p of assigned) {
      const current = this.#partitions.get(p)?.current ?? new Map();
      this.#partitions.set(p, { current, loading: new Map(), next: -1, target: undefined });
    }
    return changes;
  }

  /** The partition's offsets at assignment: it is caught up once read to `high`. */
  target(partition: number, low: number, high: number): FleetChange[] {
    const state = this.#partitions.get(partition);
    if (!state || state.loading === undefined) return [];
    // Everything below `low` is gone: a partition emptied by retention is caught up at once.
    state.target = high;
    if (state.next < low) state.next = Math.max(state.next, low);
    return this.#settle(state);
  }

  /** Applies records of a partition, in offset order. */
  apply(partition: number, records: readonly RegistryRecord[]): FleetChange[] {
    const state = this.#partitions.get(partition);
    if (!state) return [];
    const changes: FleetChange[] = [];
    for (const record of records) {
      if (record.offset < state.next) continue;
      state.next = record.offset + 1;
      const into = state.loading ?? state.current;
      switch (record.type) {
        case "put":
          if (
            state.loading === undefined && !isDeepStrictEqual(into.get(record.spec.id), record.spec)
          ) {
            changes.push({ type: "start", spec: record.spec });
          }
          into.set(record.spec.id, record.spec);
          break;
        case "remove":
          if (state.loading === undefined && into.has(record.id)) {
            changes.push({ type: "stop", id: record.id });
          }
          into.delete(record.id);
          break;
        case "seeded":
          this.#seeded = true;
          break;
        case "skip":
          break;
        default:
          record satisfies never;
      }
    }
    changes.push(...this.#settle(state));
    return changes;
  }

  /** Turns a caught-up loading partition live: the difference to what runs is the change. */
  #settle(state: PartitionState): FleetChange[] {
    if (state.loading === undefined || state.target === undefined) return [];
    if (state.next < state.target) return [];
    const changes: FleetChange[] = [];
    for (const id of state.current.keys()) {
      if (!state.loading.has(id)) changes.push({ type: "stop", id });
    }
    for (const [id, spec] of state.loading) {
      if (!isDeepStrictEqual(state.current.get(id), spec)) changes.push({ type: "start", spec });
    }
    state.current = state.loading;
    state.loading = undefined;
    return changes;
  }
}
