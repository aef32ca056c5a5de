/**
 * Checkpoints of the processors' device states. A state becomes eligible
 * once it covers only stored readings; every `everyMs` the eligible states
 * are written, and then the offsets processed before that moment are
 * committed. A restart resumes from the committed offsets with states at
 * least that new; replayed readings are duplicates or recomputed identically.
 * This keeps store writes per device bounded however many readings a device
 * sends.
 *
 * @module
 */
import type { DeviceDoc } from "../schemas/documents.ts";
import type { DeviceStore } from "./device_store.ts";
import type { Logger } from "./logger.ts";
import type { ReadingSource } from "./reading_source.ts";
import { realTimers, type TimerId, type Timers } from "./timers.ts";

/**
 * The most of the time checkpoints may take. On FerretDB a checkpoint scans
 * the devices collection for every changed device (`_id: {$in}` is not
 * indexed there), so with thousands of devices one takes seconds and holds
 * the store's write lock; back to back they starved the readings' writes
 * (bench/RESULTS.md). Spacing them out trades a longer replay after a crash
 * for readings that keep flowing.
 */
const CHECKPOINT_SHARE = 0.25;
/**
 * However slow checkpoints get, offsets are committed at least this often (less to replay), unless
 * a checkpoint would write more than `STATES_PER_READING_LATE` states per reading stored since the
 * last: then it waits until `LONGEST_SPACING_MS`.
 */
const MAX_CHECKPOINT_SPACING_MS = 30_000;
/**
 * Device states written per reading stored, at most, once a checkpoint would
 * write this many: with a large fleet every device changes between two
 * checkpoints, and writing each of their states every second cost the store
 * almost as much as the readings (bench/RESULTS.md). A checkpoint then waits
 * until ten readings were stored per changed device (or the longest spacing),
 * which trades a longer replay after a crash for readings that keep flowing.
 */
const STATES_PER_READING = 0.1;
const STATE_BUDGET_FROM = 1000;
/**
 * Past `MAX_CHECKPOINT_SPACING_MS`, a checkpoint still waits while it would write more states than
 * half the readings stored since the last, up to `LONGEST_SPACING_MS`. Devices that report less
 * than twice in 30 s are a fleet larger than the store keeps up with (100 000 devices draining a
 * backlog): a 30 s checkpoint then wrote about one state per reading and doubled the store's work
 * (bench/RESULTS.md). The price is a replay of up to two minutes after a crash, for such fleets only.
 */
const STATES_PER_READING_LATE = 0.5;
const LONGEST_SPACING_MS = 120_000;

export interface CheckpointerOptions {
  /** Written directly, beside the readings' queue: a long checkpoint must not hold up readings. */
  readonly store: Pick<DeviceStore, "write">;
  /** Time between two checkpoints (default 1000). */
  readonly everyMs?: number;
  readonly logger: Logger;
  /** Clock that measures how long a checkpoint took (default: the timers' clock). */
  readonly now?: () => number;
  /** What the periodic checkpoints are scheduled on (default: the runtime's). */
  readonly timers?: Timers;
  /**
   * Sees each checkpoint's device states once its write settled: `stored` true with the states
   * of the partitions still owned when it succeeded, false with every state it tried when it
   * failed (the store may hold them or not). What the API's device view is fed from.
   */
  readonly onWritten?: (states: readonly DeviceDoc[], stored: boolean) => void;
}

interface Pending {
  readonly doc: DeviceDoc;
  readonly partition: number;
}

export class Checkpointer {
  readonly #opts: CheckpointerOptions;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #timers: Timers;
  /** Latest state of each changed device whose readings are all stored, not yet checkpointed. */
  #dirty = new Map<string, Pending>();
  /** Readings stored since the last checkpoint started. */
  #readings = 0;
  #lastCheckpoint = 0;
  /**
   * The states the running checkpoint is writing: until that write succeeds they are
   * newer than the stored ones, so a device restored meanwhile starts from them.
   */
  #saving = new Map<string, Pending>();
  #source: Pick<ReadingSource, "processed" | "commit"> | undefined;
  #timer: TimerId | undefined;
  #running: Promise<void> | undefined;
  #checkpoints = 0;
  #failed = 0;

  constructor(options: CheckpointerOptions) {
    this.#opts = options;
    this.#log = options.logger;
    const timers = options.timers ?? realTimers;
    this.#timers = timers;
    this.#now = options.now ?? (() => timers.now());
  }

  get stats() {
    return {
      checkpoints: this.#checkpoints,
      failedCheckpoints: this.#failed,
      pendingStates: this.#dirty.size,
    };
  }

  /**
   * `doc` covers only stored readings (`readings` of them new): it goes into the next checkpoint,
   * unless a newer state of the device (a higher `lastSeq`) is waiting or being written already.
   * Two batches of a partition may be stored out of order when one was fetched before a rebalance.
   */
  add(doc: DeviceDoc, partition: number, readings = 1): void {
    this.#readings += readings;
    const pending = this.#dirty.get(doc.deviceId) ?? this.#saving.get(doc.deviceId);
    if (pending && pending.doc.lastSeq > doc.lastSeq) return;
    this.#dirty.set(doc.deviceId, { doc, partition });
  }

  /** The devices whose unsaved states this checkpointer holds. */
  pending(): string[] {
    return [...this.#dirty.keys(), ...this.#saving.keys()];
  }

  /**
   * The state of `id` not yet stored, if any. It is newer than the stored one and just as
   * safe: it covers only stored readings, and the offsets after it are already being fetched,
   * so the stored state would silently skip readings.
   */
  unsaved(id: string): DeviceDoc | undefined {
    return (this.#dirty.get(id) ?? this.#saving.get(id))?.doc;
  }

  /** Forgets the states of partitions this member no longer owns: their new owner resumes. */
  keepOnly(partitions: ReadonlySet<number>): void {
    for (const [id, d] of this.#dirty) if (!partitions.has(d.partition)) this.#dirty.delete(id);
    for (const [id, d] of this.#saving) if (!partitions.has(d.partition)) this.#saving.delete(id);
  }

  /**
   * Starts periodic checkpoints against `source`: every `everyMs`, or less often when
   * checkpoints are slow, so they take at most `CHECKPOINT_SHARE` of the time.
   */
  attach(source: Pick<ReadingSource, "processed" | "commit">): void {
    this.#source = source;
    const every = this.#opts.everyMs ?? 1000;
    this.#lastCheckpoint = this.#now();
    const loop = (delay: number) => {
      this.#timer = this.#timers.setTimeout(async () => {
        const started = this.#now();
        if (this.#overBudget(started)) {
          if (this.#source) loop(every);
          return;
        }
        const ok = await this.checkpoint().then(() => true, (error) => {
          this.#log.warn("checkpoint failed; will retry", { error: error as Error });
          return false;
        });
        const took = this.#now() - started;
        // Only a checkpoint that worked says how long the next will take: one that hung
        // through a store outage must not push the next far past the recovery.
        const spaced = Math.min(took * (1 / CHECKPOINT_SHARE - 1), MAX_CHECKPOINT_SPACING_MS);
        if (this.#source) loop(ok ? Math.max(every, spaced) : every);
      }, delay);
    };
    loop(every);
  }

  /** Whether this checkpoint would write more states than the readings since justify. */
  #overBudget(now: number): boolean {
    const states = this.#dirty.size;
    if (states < STATE_BUDGET_FROM || states <= this.#readings * STATES_PER_READING) return false;
    const since = now - this.#lastCheckpoint;
    if (since < MAX_CHECKPOINT_SPACING_MS) return true;
    return since < LONGEST_SPACING_MS && states > this.#readings * STATES_PER_READING_LATE;
  }

  /**
   * Stores the changed device states, then commits the offsets processed
   * before them. Both snapshots are taken in one synchronous step.
   */
  checkpoint(): Promise<void> {
    const run = async () => {
      const source = this.#source;
      if (!source) return;
      const offsets = source.processed();
      const pending = this.#dirty;
      this.#dirty = new Map();
      this.#readings = 0;
      this.#lastCheckpoint = this.#now();
      if (pending.size > 0) {
        this.#saving = pending;
        const devices = [...pending.values()].map((d) => d.doc);
        try {
          await this.#opts.store.write({ readings: [], alerts: [], devices });
        } catch (error) {
          // Put them back unless a newer state arrived meanwhile (a moved partition's entries
          // were already taken out of `#saving` by keepOnly()).
          for (const [id, d] of this.#saving) if (!this.#dirty.has(id)) this.#dirty.set(id, d);
          this.#failed++;
          this.#opts.onWritten?.(devices, false);
          throw error;
        } finally {
          this.#saving = new Map();
        }
        // `pending` lost the states of partitions revoked during the write (keepOnly()).
        this.#opts.onWritten?.([...pending.values()].map((d) => d.doc), true);
      }
      if (offsets.size > 0) await source.commit(offsets);
      this.#checkpoints++;
    };
    // One checkpoint at a time; a caller arriving during one waits for a fresh one.
    const next = (this.#running ?? Promise.resolve()).catch(() => {}).then(run);
    this.#running = next;
    // The caller observes the outcome; this branch only tidies up and must not reject.
    next.catch(() => {}).finally(() => {
      if (this.#running === next) this.#running = undefined;
    });
    return next;
  }

  /** Ends the periodic checkpoints (detaching the source) and waits for one in progress. */
  async stop(): Promise<void> {
    this.#source = undefined;
    this.#timers.clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#running?.catch(() => {});
  }
}
