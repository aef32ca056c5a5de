/**
 * The processors' supervisor: a member of the readings consumer group. For
 * each partition batch it validates the records (invalid ones go to the
 * dead-letter sink with their reason), routes each device's readings — in
 * partition order — to that device's processor actor, creating it on first
 * sight from the state stored for it, and hands the readings and alerts to the
 * store writer. The batch handler resolves only when the dead letters and
 * those writes are durable.
 *
 * Device states are checkpointed, not written per batch: every
 * `checkpointMs` the states of the devices that changed — each one covering
 * only readings already stored — are written, and then the offsets processed
 * before that moment are committed. A restart resumes from the committed
 * offsets with states at least that new; replayed readings are duplicates or
 * recomputed identically. This keeps store writes per device bounded however
 * many readings a device sends.
 *
 * If anything in a batch fails, the processors of the devices it touched are
 * discarded before the error propagates (their in-memory state may be ahead of
 * what was stored), so the retry restores them from their last safe state —
 * unsaved, being checkpointed, or stored, newest first — and replays.
 * Processors idle for `passivateAfterMs` are released from memory; on a
 * partition reassignment those of lost partitions are, because another member
 * may have moved on.
 *
 * @module
 */
import { type Actor, ask } from "./actor.ts";
import { Supervisor } from "./supervisor.ts";
import { createProcessor, type DeviceOutput, type ProcessorMsg } from "./processor.ts";
import type { StoreWriter } from "./store_writer.ts";
import { type AlarmRule, type AlarmState, INITIAL_ALARM_STATE } from "../domain/hysteresis.ts";
import { decodeReading, type Reading, RuleSchema } from "../schemas/reading.ts";
import { restoreAlarmState } from "../schemas/documents.ts";
import type { DeviceDoc } from "../schemas/documents.ts";
import type { DeviceStore } from "./device_store.ts";
import type { Logger } from "./logger.ts";
import type {
  BatchContext,
  DeadLetter,
  DeadLetterSink,
  ReadingSource,
  RecordBatch,
} from "./reading_source.ts";

/**
 * The most of the time checkpoints may take. On FerretDB a checkpoint scans
 * the devices collection for every changed device (`_id: {$in}` is not
 * indexed there), so with thousands of devices one takes seconds and holds
 * the store's write lock; back to back they starved the readings' writes
 * (bench/RESULTS.md). Spacing them out trades a longer replay after a crash
 * for readings that keep flowing.
 */
const CHECKPOINT_SHARE = 0.25;
/** However slow checkpoints get, offsets are committed at least this often (less to replay). */
const MAX_CHECKPOINT_SPACING_MS = 30_000;

export interface ProcessorSupervisorOptions {
  /** Loads device states; checkpoints write them directly, beside the readings' queue. */
  readonly store: Pick<DeviceStore, "loadDevices" | "write">;
  readonly writer: StoreWriter;
  readonly deadLetters: DeadLetterSink;
  readonly rule: AlarmRule;
  readonly passivateAfterMs: number;
  /** Time between two checkpoints of device states and offsets (default 1000). */
  readonly checkpointMs?: number;
  readonly logger: Logger;
  readonly now?: () => number;
  /**
   * Called once the alert raised by the reading with event time `readingTs` is
   * stored, at `storedAtMs` (for the detection-latency metric).
   */
  readonly onRaiseStored?: (readingTs: string, storedAtMs: number) => void;
  /** Sees what each batch produced once it is stored (e.g. the dashboard's live view). */
  readonly onProcessed?: (outputs: readonly DeviceOutput[]) => void;
}

export interface ProcessorStats {
  readonly batches: number;
  /** Records of the batches handled, valid or not. */
  readonly records: number;
  readonly readings: number;
  readonly duplicates: number;
  /** Applied readings whose `ts` went backwards for their device. */
  readonly outOfOrder: number;
  readonly deadLettered: number;
  readonly alertsRaised: number;
  readonly alertsCleared: number;
  readonly activeDevices: number;
  /** Devices of the owned partitions whose last stored reading left them critical. */
  readonly criticalDevices: number;
  /** Messages waiting in the processors' mailboxes. */
  readonly mailboxDepth: number;
  readonly passivated: number;
  /** Processors that failed; each is started again from its stored state by its next batch. */
  readonly processorFailures: number;
  /** Restarts by the processors' supervisor (its children are temporary, so normally 0). */
  readonly restarts: number;
  readonly failedBatches: number;
  readonly checkpoints: number;
  readonly failedCheckpoints: number;
  /** Devices whose state changed since the last checkpoint. */
  readonly pendingStates: number;
}

interface Device {
  readonly actor: Actor<ProcessorMsg>;
  readonly partition: number;
  lastActive: number;
  busy: number;
}

export class ProcessorSupervisor implements AsyncDisposable {
  readonly #opts: ProcessorSupervisorOptions;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #supervisor = new Supervisor({ name: "processors" });
  readonly #devices = new Map<string, Device>();
  /** Processors being stopped; a device may only be spawned again once its old actor is gone. */
  readonly #stopping = new Map<string, Promise<unknown>>();
  /** Latest state of each changed device whose readings are all stored, not yet checkpointed. */
  #dirty = new Map<string, { readonly doc: DeviceDoc; readonly partition: number }>();
  /**
   * The states the running checkpoint is writing: until that write succeeds they are
   * newer than the stored ones, so a device restored meanwhile starts from them.
   */
  #saving = new Map<string, { readonly doc: DeviceDoc; readonly partition: number }>();
  #source: Pick<ReadingSource, "processed" | "commit"> | undefined;
  #checkpointTimer: ReturnType<typeof setTimeout> | undefined;
  #checkpointing: Promise<void> | undefined;
  #sweep: ReturnType<typeof setInterval> | undefined;
  #assignment: readonly number[] = [];
  /** Partitions owned; undefined until the first assignment (then every partition counts). */
  #owned: Set<number> | undefined;
  /** Partition of each owned device currently critical, as of its last stored batch. */
  readonly #critical = new Map<string, number>();
  #stats = {
    batches: 0,
    records: 0,
    readings: 0,
    duplicates: 0,
    outOfOrder: 0,
    deadLettered: 0,
    alertsRaised: 0,
    alertsCleared: 0,
    passivated: 0,
    processorFailures: 0,
    failedBatches: 0,
    checkpoints: 0,
    failedCheckpoints: 0,
  };

  constructor(options: ProcessorSupervisorOptions) {
    this.#opts = options;
    this.#log = options.logger.child({ component: "processors" });
    this.#now = options.now ?? Date.now;
    const every = Math.min(60_000, Math.max(1000, options.passivateAfterMs / 4));
    this.#sweep = setInterval(() => void this.passivateIdle(), every);
  }

  /** Partitions this member owns since the last rebalance. */
  get assignment(): readonly number[] {
    return this.#assignment;
  }

  get stats(): ProcessorStats {
    let mailboxDepth = 0;
    for (const device of this.#devices.values()) mailboxDepth += device.actor.depth;
    return {
      ...this.#stats,
      activeDevices: this.#devices.size,
      criticalDevices: this.#critical.size,
      mailboxDepth,
      restarts: this.#supervisor.restarts,
      pendingStates: this.#dirty.size,
    };
  }

  /** The batch handler for the reading source. */
  readonly handleBatch = async (batch: RecordBatch, ctx: BatchContext): Promise<void> => {
    const byDevice = new Map<string, Reading[]>();
    const letters: DeadLetter[] = [];
    for (const record of batch.records) {
      const decoded = decodeReading(record.value, record.key);
      if (decoded.ok) {
        const list = byDevice.get(decoded.reading.deviceId);
        if (list) list.push(decoded.reading);
        else byDevice.set(decoded.reading.deviceId, [decoded.reading]);
      } else {
        letters.push({ record, partition: batch.partition, reason: decoded.reason });
      }
    }
    const ids = [...byDevice.keys()];
    const held: Device[] = [];
    try {
      await this.#ensure(ids, batch.partition);
      const processedAt = new Date(this.#now());
      const outputs = await Promise.all(ids.map((id) => {
        const device = this.#devices.get(id)!;
        device.busy++;
        held.push(device);
        device.lastActive = this.#now();
        return ask<ProcessorMsg, DeviceOutput>(device.actor, (reply) => ({
          type: "apply",
          readings: byDevice.get(id)!,
          processedAt,
          reply,
        }));
      }));
      if (ctx.isStale()) {
        // Reassigned meanwhile: the new owner replays from the store; our states ran ahead.
        await this.#discard(ids);
        return;
      }
      await keepingMembership(
        ctx,
        Promise.all([
          this.#opts.deadLetters.send(letters),
          this.#opts.writer.write({
            readings: outputs.flatMap((o) => o.readings),
            alerts: outputs.flatMap((o) => o.alerts),
            devices: [],
          }),
        ]),
      );
      if (ctx.isStale() || !this.#owns(batch.partition)) {
        // The partition moved during the write: its new owner resumes from the checkpoint.
        await this.#discard(ids);
        return;
      }
      // These states now cover only stored readings: eligible for the next checkpoint.
      for (const o of outputs) {
        this.#dirty.set(o.device.deviceId, { doc: o.device, partition: batch.partition });
        if (o.device.level === "critical") this.#critical.set(o.device.deviceId, batch.partition);
        else this.#critical.delete(o.device.deviceId);
      }
      this.#account(batch, outputs, letters);
      this.#opts.onProcessed?.(outputs);
    } catch (error) {
      this.#stats.failedBatches++;
      this.#log.warn("batch failed; its devices will be restored from their last safe state", {
        partition: batch.partition,
        firstOffset: batch.records[0]?.offset,
        devices: ids.length,
        error: error as Error,
      });
      await this.#discard(ids);
      throw error;
    } finally {
      for (const d of held) d.busy--;
    }
  };

  /**
   * After a rebalance, forget the devices of partitions this member lost (and
   * their unsaved states: the new owner resumes from the last checkpoint).
   */
  async onAssignment(partitions: readonly number[]): Promise<void> {
    this.#assignment = [...partitions].sort((a, b) => a - b);
    const kept = new Set(partitions);
    this.#owned = kept;
    for (const [id, d] of this.#dirty) if (!kept.has(d.partition)) this.#dirty.delete(id);
    for (const [id, d] of this.#saving) if (!kept.has(d.partition)) this.#saving.delete(id);
    for (const [id, p] of this.#critical) if (!kept.has(p)) this.#critical.delete(id);
    const lost = [...this.#devices].filter(([, d]) => !kept.has(d.partition)).map(([id]) => id);
    await this.#discard(lost);
    if (lost.length > 0) {
      this.#log.info("device states released after rebalance", { count: lost.length, partitions });
    }
  }

  /**
   * Starts periodic checkpoints against the source whose batches this
   * supervisor handles: every `checkpointMs`, or less often when checkpoints
   * are slow, so they take at most `CHECKPOINT_SHARE` of the time.
   */
  attach(source: Pick<ReadingSource, "processed" | "commit">): void {
    this.#source = source;
    const every = this.#opts.checkpointMs ?? 1000;
    const loop = (delay: number) => {
      this.#checkpointTimer = setTimeout(async () => {
        const started = performance.now();
        const ok = await this.checkpoint().then(() => true, (error) => {
          this.#log.warn("checkpoint failed; will retry", { error: error as Error });
          return false;
        });
        const took = performance.now() - started;
        // Only a checkpoint that worked says how long the next will take: one that hung
        // through a store outage must not push the next far past the recovery.
        const spaced = Math.min(took * (1 / CHECKPOINT_SHARE - 1), MAX_CHECKPOINT_SPACING_MS);
        if (this.#source) loop(ok ? Math.max(every, spaced) : every);
      }, delay);
    };
    loop(every);
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
      if (pending.size > 0) {
        this.#saving = pending;
        try {
          // Not through the writer's queue: a long checkpoint must not hold up readings.
          await this.#opts.store.write({
            readings: [],
            alerts: [],
            devices: [...pending.values()].map((d) => d.doc),
          });
        } catch (error) {
          // Put them back unless a newer state arrived or their partition moved meanwhile
          // (a moved partition's entries were already taken out of `#saving`).
          for (const [id, d] of this.#saving) {
            if (!this.#dirty.has(id) && this.#owns(d.partition)) this.#dirty.set(id, d);
          }
          this.#stats.failedCheckpoints++;
          throw error;
        } finally {
          this.#saving = new Map();
        }
      }
      if (offsets.size > 0) await source.commit(offsets);
      this.#stats.checkpoints++;
    };
    // One checkpoint at a time; a caller arriving during one waits for a fresh one.
    const next = (this.#checkpointing ?? Promise.resolve()).catch(() => {}).then(run);
    this.#checkpointing = next;
    // The caller observes the outcome; this branch only tidies up and must not reject.
    next.catch(() => {}).finally(() => {
      if (this.#checkpointing === next) this.#checkpointing = undefined;
    });
    return next;
  }

  /** Releases processors idle for longer than `passivateAfterMs`. */
  async passivateIdle(): Promise<number> {
    const cutoff = this.#now() - this.#opts.passivateAfterMs;
    const idle = [...this.#devices].filter(([, d]) => d.busy === 0 && d.lastActive < cutoff);
    await this.#discard(idle.map(([id]) => id));
    this.#stats.passivated += idle.length;
    if (idle.length > 0) this.#log.debug("passivated idle devices", { count: idle.length });
    return idle.length;
  }

  /** The in-memory alarm state of a device, if its processor is active. */
  async state(deviceId: string): Promise<AlarmState | undefined> {
    const device = this.#devices.get(deviceId);
    if (!device) return undefined;
    return await ask<ProcessorMsg, AlarmState>(device.actor, (reply) => ({ type: "state", reply }));
  }

  async stop(): Promise<void> {
    clearInterval(this.#sweep);
    this.#sweep = undefined;
    this.#source = undefined;
    clearTimeout(this.#checkpointTimer);
    await this.#checkpointing?.catch(() => {});
    await this.#supervisor.stop();
    this.#devices.clear();
    this.#critical.clear();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  #owns(partition: number): boolean {
    return this.#owned === undefined || this.#owned.has(partition);
  }

  async #ensure(ids: readonly string[], partition: number) {
    const missing = ids.filter((id) => !this.#devices.has(id));
    if (missing.length === 0) return;
    await Promise.all(missing.map((id) => this.#stopping.get(id)));
    // A state not yet checkpointed (or being checkpointed right now) is newer than the stored
    // one and just as safe: it covers only stored readings, and the offsets after it are
    // already being fetched, so the stored state would silently skip readings.
    const unsavedDoc = (id: string) => (this.#dirty.get(id) ?? this.#saving.get(id))?.doc;
    const stored = await this.#opts.store.loadDevices(missing.filter((id) => !unsavedDoc(id)));
    for (const id of missing) {
      const doc = unsavedDoc(id);
      if (doc) stored.set(id, doc);
    }
    for (const id of missing) {
      const doc = stored.get(id);
      let initial: AlarmState = INITIAL_ALARM_STATE;
      // The rule in force is the device's own when it has one (it came with its readings).
      const storedRule = RuleSchema.safeParse(doc?.thresholds);
      const rule = storedRule.success ? storedRule.data : this.#opts.rule;
      if (doc) {
        const restored = restoreAlarmState(doc);
        if (restored.ok) initial = restored.state;
        else {
          // Keep lastSeq so replays stay idempotent even if the rest is unusable.
          this.#log.error("stored device state unusable; alarm restarts normal", {
            deviceId: id,
            reason: restored.reason,
          });
          initial = { ...INITIAL_ALARM_STATE, lastSeq: doc.lastSeq ?? 0 };
        }
      }
      this.#spawn(id, initial, rule, partition);
    }
  }

  #spawn(id: string, initial: AlarmState, rule: AlarmRule, partition: number) {
    let actor!: Actor<ProcessorMsg>;
    this.#supervisor.startChild({
      id,
      restart: "temporary",
      start: (exit) => {
        actor = createProcessor(
          id,
          initial,
          { default: this.#opts.rule, current: rule },
          (error) => {
            this.#devices.delete(id);
            this.#stats.processorFailures++;
            exit({ type: "failed", error });
          },
        );
        return actor;
      },
    }).catch((error) => this.#log.error("processor failed to start", { deviceId: id, error }));
    // start() ran synchronously above, so the actor exists now.
    this.#devices.set(id, { actor, partition, lastActive: this.#now(), busy: 0 });
  }

  async #discard(ids: readonly string[]) {
    await Promise.all(ids.map((id) => {
      this.#devices.delete(id);
      const stopping = this.#supervisor.stopChild(id).finally(() => {
        if (this.#stopping.get(id) === stopping) this.#stopping.delete(id);
      });
      this.#stopping.set(id, stopping);
      return stopping;
    }));
  }

  #account(batch: RecordBatch, outputs: readonly DeviceOutput[], letters: readonly DeadLetter[]) {
    const storedAt = this.#now();
    this.#stats.batches++;
    this.#stats.records += batch.records.length;
    this.#stats.deadLettered += letters.length;
    for (const letter of letters) {
      this.#log.warn("record dead-lettered", {
        partition: letter.partition,
        offset: letter.record.offset,
        reason: letter.reason,
      });
    }
    for (const out of outputs) {
      this.#stats.readings += out.readings.length;
      this.#stats.duplicates += out.duplicates;
      this.#stats.outOfOrder += out.outOfOrder;
      for (const t of out.transitions) {
        const deviceId = out.device.deviceId;
        if (t.type === "raised") {
          this.#stats.alertsRaised++;
          this.#opts.onRaiseStored?.(t.ts, storedAt);
          this.#log.info("alert raised", { deviceId, seq: t.seq, temperature: t.temperature });
        } else {
          this.#stats.alertsCleared++;
          this.#log.info("alert cleared", {
            deviceId,
            seq: t.seq,
            raisedSeq: t.episode.raisedSeq,
            peakTemperature: t.episode.peakTemperature,
          });
        }
      }
    }
  }
}

/** Heartbeats while a slow write runs, so a slow store does not cost the group membership. */
async function keepingMembership<T>(ctx: BatchContext, work: Promise<T>): Promise<T> {
  const timer = setInterval(() => void ctx.heartbeat().catch(() => {}), 3000);
  try {
    return await work;
  } finally {
    clearInterval(timer);
  }
}
