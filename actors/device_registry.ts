/**
 * The processors of the devices this member holds: one actor per device,
 * spawned on first sight from the device's last safe state — not yet
 * checkpointed, being checkpointed, or stored, newest first — and released
 * when discarded (after a failed batch, or when their partition moved) or
 * idle for `passivateAfterMs` (a sweep checks every quarter of that).
 *
 * A processor that fails is forgotten, not restarted: its next batch spawns
 * it again from its last safe state, which is what a restart would do.
 *
 * On a partition assignment the stored states of the assigned partitions are
 * read once (`prefetch()`), if the store can: a batch meeting a device seen
 * for the first time then spawns it from that snapshot instead of waiting for
 * a lookup. The snapshot serves a device only once, only for the partition it
 * was recorded on (or an unknown one), and never a device this member held or
 * had unsaved states of when it was taken: after that, only the store (or the
 * unsaved state) is at least as new as what this member committed.
 *
 * With `rollForward` (a source that cannot replay: the embedded queue), a
 * restored device's stored readings past its state — stored, but not yet
 * checkpointed when the process died — are read back and handed to the caller,
 * to be applied before the batch's own readings.
 *
 * @module
 */
import { type Actor, ask } from "./actor.ts";
import { createProcessor, type DeviceOutput, type ProcessorMsg } from "./processor.ts";
import { type AlarmRule, type AlarmState, INITIAL_ALARM_STATE } from "../domain/hysteresis.ts";
import { RuleSchema } from "../schemas/reading.ts";
import type { Reading } from "../schemas/reading.ts";
import { type DeviceDoc, fromReadingDoc, restoreAlarmState } from "../schemas/documents.ts";
import type { DeviceStore } from "./device_store.ts";
import type { Logger } from "./logger.ts";
import { realTimers, type TimerId, type Timers } from "./timers.ts";

/** Stored readings read back at a time when rolling a device forward. */
const ROLL_FORWARD_PAGE = 500;

export interface DeviceRegistryOptions {
  readonly store: Pick<DeviceStore, "loadDevices" | "readingsAfter" | "devicesIn">;
  /** The rule of a device without its own. */
  readonly rule: AlarmRule;
  /** A device's state not yet stored, preferred over the stored one. */
  readonly unsaved: (id: string) => DeviceDoc | undefined;
  readonly passivateAfterMs: number;
  /**
   * The source cannot replay what was stored after the last checkpoint: roll a
   * restored device forward from the store's readings instead (default false).
   */
  readonly rollForward?: boolean;
  readonly logger: Logger;
  /** The clock idleness is measured on (default: the timers' clock). */
  readonly now?: () => number;
  /** What the passivation sweep is scheduled on (default: the runtime's). */
  readonly timers?: Timers;
}

interface Device {
  readonly actor: Actor<ProcessorMsg>;
  readonly partition: number;
  lastActive: number;
  /** Batches using this device now: it is not passivated meanwhile. */
  busy: number;
}

export class DeviceRegistry {
  readonly #opts: DeviceRegistryOptions;
  readonly #log: Logger;
  readonly #timers: Timers;
  readonly #now: () => number;
  readonly #devices = new Map<string, Device>();
  /** Processors being stopped; a device may only be spawned again once its old actor is gone. */
  readonly #stopping = new Map<string, Promise<unknown>>();
  /** Stored states read on the last assignment, and the devices they may no longer serve. */
  #snapshot:
    | { readonly docs: Promise<Map<string, DeviceDoc>>; readonly used: Set<string> }
    | undefined;
  #sweep: TimerId | undefined;
  #stopped = false;
  #passivated = 0;
  #failures = 0;

  constructor(options: DeviceRegistryOptions) {
    if (options.rollForward && !options.store.readingsAfter) {
      throw new TypeError(
        "Cannot roll devices forward: the store cannot list readings after a seq",
      );
    }
    this.#opts = options;
    this.#log = options.logger;
    const timers = options.timers ?? realTimers;
    this.#timers = timers;
    this.#now = options.now ?? (() => timers.now());
    this.#armSweep();
  }

  get size(): number {
    return this.#devices.size;
  }

  get stats() {
    let mailboxDepth = 0;
    for (const device of this.#devices.values()) mailboxDepth += device.actor.depth;
    return { mailboxDepth, passivated: this.#passivated, processorFailures: this.#failures };
  }

  /** The devices held for `partition`. */
  inPartition(partition: number): string[] {
    return [...this.#devices].filter(([, d]) => d.partition === partition).map(([id]) => id);
  }

  /** The devices a batch in flight uses (`hold()`): their states may be ahead of the store. */
  held(): string[] {
    return [...this.#devices].filter(([, d]) => d.busy > 0).map(([id]) => id);
  }

  /** The devices held for partitions not in `kept`. */
  outside(kept: ReadonlySet<number>): string[] {
    return [...this.#devices].filter(([, d]) => !kept.has(d.partition)).map(([id]) => id);
  }

  /**
   * Spawns the processors of `ids` that are not active, from their last safe
   * state. With `rollForward`, answers the stored readings each spawned device
   * has not seen, by ascending seq (devices with none are absent).
   */
  async ensure(ids: readonly string[], partition: number): Promise<Map<string, Reading[]>> {
    const now = this.#now();
    const missing = ids.filter((id) => {
      const device = this.#devices.get(id);
      // Active now: not passivated while the others are looked up (the batch holds it next).
      if (device) device.lastActive = now;
      return !device;
    });
    const unseen = new Map<string, Reading[]>();
    if (missing.length === 0) return unseen;
    await Promise.all(missing.map((id) => this.#stopping.get(id)));
    // Taken before the store is read, in one step: a checkpoint may store an unsaved state and
    // forget it during the read, which did not ask for it (docs/reliability.md#what-each-failure-does).
    const unsaved = new Map<string, DeviceDoc>();
    for (const id of missing) {
      const doc = this.#opts.unsaved(id);
      if (doc) unsaved.set(id, doc);
    }
    const stored = await this.#load(missing.filter((id) => !unsaved.has(id)), partition);
    for (const [id, doc] of unsaved) stored.set(id, doc);
    const restored = missing.map((id) => {
      const doc = stored.get(id);
      // The rule in force is the device's own when it has one (it came with its readings).
      const storedRule = RuleSchema.safeParse(doc?.thresholds);
      const state = doc ? this.#restore(id, doc) : INITIAL_ALARM_STATE;
      return {
        id,
        state,
        ownRule: storedRule.success ? storedRule.data : undefined,
        ruleSeq: storedRule.success && Number.isSafeInteger(doc?.ruleSeq)
          ? doc?.ruleSeq
          : undefined,
        offlineAfterMs: doc?.offlineAfterMs,
      };
    });
    if (this.#opts.rollForward) {
      // Read before spawning: if the store fails, nothing was spawned and the retry starts over.
      await Promise.all(restored.map(async ({ id, state, ownRule }) => {
        const readings = await this.#storedAfter(id, state.lastSeq, ownRule);
        if (readings.length > 0) unseen.set(id, readings);
      }));
    }
    for (const { id, state, ownRule, ruleSeq, offlineAfterMs } of restored) {
      // Spawned meanwhile by another batch (one fetched before a rebalance, still being handled
      // while its partition is read again): that processor may be ahead, and is kept.
      if (this.#devices.has(id)) {
        unseen.delete(id);
        continue;
      }
      const rule = { rule: ownRule ?? this.#opts.rule, since: ruleSeq, offlineAfterMs };
      this.#spawn(id, state, rule, partition);
    }
    if (unseen.size > 0) {
      let readings = 0;
      for (const list of unseen.values()) readings += list.length;
      this.#log.info("devices rolled forward from stored readings", {
        devices: unseen.size,
        readings,
      });
    }
    return unseen;
  }

  /**
   * Starts reading the stored states of `partitions` (when the store can), for the devices
   * spawned from now on (unless devices are rolled forward); `pending` are the devices with
   * unsaved states, which the snapshot must not serve. Answers the read, for the offline watch
   * (undefined when the store cannot).
   */
  prefetch(
    partitions: readonly number[],
    pending: Iterable<string>,
  ): Promise<Map<string, DeviceDoc>> | undefined {
    const { store } = this.#opts;
    if (!store.devicesIn) return undefined;
    const docs = store.devicesIn(partitions);
    // Observed by the batches that wait for it; a failed read falls back to lookups.
    docs.catch((error) => this.#log.warn("device-state prefetch failed", { error }));
    if (this.#opts.rollForward) return docs;
    const used = new Set([...this.#devices.keys(), ...pending]);
    this.#snapshot = { docs, used };
    return docs;
  }

  /**
   * Marks the (ensured) devices `ids` busy until the returned function is called, so they are
   * not passivated while their batch is in flight.
   */
  hold(ids: readonly string[]): () => void {
    const held = ids.map((id) => this.#devices.get(id)!);
    for (const device of held) {
      device.busy++;
      device.lastActive = this.#now();
    }
    return () => {
      for (const device of held) device.busy--;
    };
  }

  /** Hands a device its readings, in order; answers what they produced. */
  apply(id: string, readings: readonly Reading[], processedAt: Date): Promise<DeviceOutput> {
    const device = this.#devices.get(id)!;
    return ask<ProcessorMsg, DeviceOutput>(device.actor, (reply) => ({
      type: "apply",
      readings,
      processedAt,
      reply,
    }));
  }

  /** The in-memory alarm state of a device, if its processor is active. */
  async state(id: string): Promise<AlarmState | undefined> {
    const device = this.#devices.get(id);
    if (!device) return undefined;
    return await ask<ProcessorMsg, AlarmState>(device.actor, (reply) => ({ type: "state", reply }));
  }

  /** Stops and forgets these devices' processors (their in-memory state may be ahead). */
  async discard(ids: readonly string[]): Promise<void> {
    await Promise.all(ids.map((id) => {
      const device = this.#devices.get(id);
      this.#devices.delete(id);
      if (!device) return this.#stopping.get(id);
      const stopping = device.actor.stop().finally(() => {
        if (this.#stopping.get(id) === stopping) this.#stopping.delete(id);
      });
      this.#stopping.set(id, stopping);
      return stopping;
    }));
  }

  /** Releases processors idle for longer than `passivateAfterMs`; answers how many. */
  async passivateIdle(): Promise<number> {
    const cutoff = this.#now() - this.#opts.passivateAfterMs;
    const idle = [...this.#devices].filter(([, d]) => d.busy === 0 && d.lastActive < cutoff);
    await this.discard(idle.map(([id]) => id));
    this.#passivated += idle.length;
    if (idle.length > 0) this.#log.debug("passivated idle devices", { count: idle.length });
    return idle.length;
  }

  /** Stops the sweep and every processor (reverse spawn order). */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#timers.clearTimeout(this.#sweep);
    this.#sweep = undefined;
    await this.discard([...this.#devices.keys()].reverse());
    await Promise.all(this.#stopping.values());
  }

  #armSweep() {
    const every = Math.min(60_000, Math.max(1000, this.#opts.passivateAfterMs / 4));
    this.#sweep = this.#timers.setTimeout(async () => {
      await this.passivateIdle();
      if (!this.#stopped) this.#armSweep();
    }, every);
  }

  /**
   * The stored states of `ids`, met on `partition`: from the snapshot where it may serve them,
   * else looked up.
   */
  async #load(ids: readonly string[], partition: number): Promise<Map<string, DeviceDoc>> {
    const snapshot = this.#snapshot;
    const docs = snapshot && await snapshot.docs.catch(() => undefined);
    if (!snapshot || !docs) return await this.#opts.store.loadDevices(ids);
    const found = new Map<string, DeviceDoc>();
    const rest: string[] = [];
    for (const id of ids) {
      if (snapshot.used.has(id)) {
        rest.push(id);
        continue;
      }
      snapshot.used.add(id);
      const doc = docs.get(id);
      // Recorded on another partition: it moved, and its newest state may be that partition's.
      if (doc && doc.partition !== undefined && doc.partition !== partition) rest.push(id);
      else if (doc) found.set(id, doc);
    }
    if (rest.length > 0) {
      for (const [id, doc] of await this.#opts.store.loadDevices(rest)) found.set(id, doc);
    }
    return found;
  }

  /** Every stored reading of a device above `afterSeq`, under the device's rule in force. */
  async #storedAfter(id: string, afterSeq: number, rule: AlarmRule | undefined) {
    const { store } = this.#opts;
    const out: Reading[] = [];
    for (let after = afterSeq;;) {
      const page = await store.readingsAfter!(id, after, ROLL_FORWARD_PAGE);
      for (const doc of page) out.push(fromReadingDoc(doc, rule));
      if (page.length < ROLL_FORWARD_PAGE) return out;
      after = page[page.length - 1]!.seq;
    }
  }

  #restore(id: string, doc: DeviceDoc): AlarmState {
    const restored = restoreAlarmState(doc);
    if (restored.ok) return restored.state;
    // Keep lastSeq so replays stay idempotent even if the rest is unusable.
    this.#log.error("stored device state unusable; alarm restarts normal", {
      deviceId: id,
      reason: restored.reason,
    });
    return { ...INITIAL_ALARM_STATE, lastSeq: doc.lastSeq ?? 0 };
  }

  #spawn(
    id: string,
    initial: AlarmState,
    rule: {
      readonly rule: AlarmRule;
      readonly since: number | undefined;
      readonly offlineAfterMs: number | undefined;
    },
    partition: number,
  ) {
    const rules = {
      default: this.#opts.rule,
      current: rule.rule,
      since: rule.since,
      offlineAfterMs: rule.offlineAfterMs,
    };
    const actor = createProcessor(id, initial, rules, () => {
      this.#failures++;
      // Only the current incarnation is forgotten: a discarded one may fail while stopping.
      if (this.#devices.get(id)?.actor === actor) this.#devices.delete(id);
    });
    this.#devices.set(id, { actor, partition, lastActive: this.#now(), busy: 0 });
    this.#snapshot?.used.add(id);
  }
}
