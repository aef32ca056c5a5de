/**
 * The processors' side of the readings consumer group. For each partition
 * batch it validates the records (invalid ones go to the dead-letter sink with
 * their reason), hands each device's readings — in partition order — to that
 * device's processor (`DeviceRegistry`), and hands the readings and the alerts
 * to the store writer's two lanes (`#write`). A batch counts as handled only
 * when its dead letters and both writes are durable; the device states it produced then wait for
 * the next checkpoint (`Checkpointer`). Where the source allows it (Kafka), the handler resolves
 * earlier, handing the batch on once its writes went out, so the next batches are fetched while
 * the store writes; batches then count as stored in partition order (`#handOn`,
 * docs/reliability.md#batches-handed-on-before-they-are-stored).
 *
 * Stored readings are never replaced. A reading the store refuses — its
 * deviceId and seq are stored with other content (a conflict), or it was
 * skipped as already applied and is not stored at all (late) — goes to the
 * dead-letter sink with its reason, is counted and logged; a skipped reading
 * found stored as it is counts as a duplicate.
 *
 * With `rollForward` (the embedded queue, which cannot replay what a crash
 * lost), a restored device first applies its stored readings past its restored
 * state (see `DeviceRegistry`), so its state and alerts cover them before the
 * batch's own readings. Those readings are stored already: they are not
 * written again, and count as `rolledForward` — not as readings, duplicates,
 * conflicts or late — and their transitions are not counted or timed again.
 *
 * If anything in a batch fails, the processors of the devices it touched are
 * discarded before the error propagates (their in-memory state may be ahead of
 * what was stored), so the retry restores them from their last safe state and
 * replays. On a partition reassignment the devices and unsaved states of lost
 * partitions are released, because another member may have moved on; so are
 * the devices of kept partitions that may be ahead of the store (in a batch in
 * flight, or of a batch not stored), and a batch whose handling began before
 * the assignment adds nothing: the member reads again from the committed offsets.
 *
 * @module
 */
import type { DeviceOutput } from "./processor.ts";
import type { StoreWriter } from "./store_writer.ts";
import type { AlarmRule, AlarmState } from "../domain/hysteresis.ts";
import { decodeReading, type Reading } from "../schemas/reading.ts";
import {
  type DeviceDoc,
  readingDifferences,
  type ReadingDoc,
  toReadingDoc,
} from "../schemas/documents.ts";
import type { DeviceStore, Refusal, WriteBatch } from "./device_store.ts";
import type { Logger } from "./logger.ts";
import type {
  BatchContext,
  DeadLetter,
  DeadLetterSink,
  HandedOn,
  RawRecord,
  ReadingSource,
  RecordBatch,
} from "./reading_source.ts";
import { realTimers, type Timers } from "./timers.ts";
import { Checkpointer } from "./checkpointer.ts";
import { DeviceRegistry } from "./device_registry.ts";
import type { DeviceView } from "./device_view.ts";

export interface ProcessorSupervisorOptions {
  /** Loads device states; checkpoints write them directly, beside the readings' queue. */
  readonly store: Pick<DeviceStore, "loadDevices" | "write" | "readingsAfter" | "devicesIn">;
  readonly writer: StoreWriter;
  readonly deadLetters: DeadLetterSink;
  readonly rule: AlarmRule;
  readonly passivateAfterMs: number;
  /**
   * The source cannot replay readings stored after the last checkpoint (the
   * embedded queue): roll restored devices forward from the store (default false).
   */
  readonly rollForward?: boolean;
  /** Time between two checkpoints of device states and offsets (default 1000). */
  readonly checkpointMs?: number;
  readonly logger: Logger;
  /** The processors' clock (default: the timers' clock). */
  readonly now?: () => number;
  /** Drive the checkpoints and the passivation sweep (default: the runtime's). */
  readonly timers?: Timers;
  /**
   * Called once the alert raised by the reading with event time `readingTs` is
   * stored, at `storedAtMs` (for the detection-latency metric).
   */
  readonly onRaiseStored?: (readingTs: string, storedAtMs: number) => void;
  /**
   * Sees what each batch of `partition` produced once it is stored (e.g. the dashboard's live
   * view, the offline watch).
   */
  readonly onProcessed?: (outputs: readonly DeviceOutput[], partition: number) => void;
  /** The offline limit of readings that carry none (docs/offline.md); unset: no offline rule. */
  readonly offlineAfterMs?: number;
  /** Fed with the device states each checkpoint stored, reset at each assignment. */
  readonly view?: Pick<DeviceView, "assign" | "written">;
}

export interface ProcessorStats {
  readonly batches: number;
  /** Records of the batches handled, valid or not. */
  readonly records: number;
  readonly readings: number;
  /** Stored readings applied again to restored devices that had not seen them (embedded mode). */
  readonly rolledForward: number;
  /** Readings skipped as already applied and found stored with the same content. */
  readonly duplicates: number;
  /** Readings whose deviceId and seq were stored with other content: dead-lettered. */
  readonly conflicts: number;
  /** Readings skipped as already applied but never stored: dead-lettered. */
  readonly late: number;
  /** Applied readings whose `ts` went backwards for their device. */
  readonly outOfOrder: number;
  /** Applied readings whose seq skipped some (a sensor restarted or moved: the rest of its block). */
  readonly gaps: number;
  /** Seqs skipped by those gaps. */
  readonly skippedSeqs: number;
  /** Records sent to the dead-letter sink: invalid, conflicting or late. */
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
  readonly failedBatches: number;
  readonly checkpoints: number;
  readonly failedCheckpoints: number;
  /** Devices whose state changed since the last checkpoint. */
  readonly pendingStates: number;
}

export class ProcessorSupervisor implements AsyncDisposable {
  readonly #opts: ProcessorSupervisorOptions;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #checkpoints: Checkpointer;
  readonly #devices: DeviceRegistry;
  #assignment: readonly number[] = [];
  /** The stored states of the assigned partitions, read at the last assignment. */
  #prefetched: Promise<Map<string, DeviceDoc>> | undefined;
  /** Partitions owned; undefined until the first assignment (then every partition counts). */
  #owned: Set<number> | undefined;
  /** Per partition, the last batch handed on and not settled yet (`ctx.handOn`). */
  readonly #tails = new Map<number, Promise<void>>();
  /** Per partition, how often it was read again (`rewind()`): older batches add nothing. */
  readonly #epochs = new Map<number, number>();
  /** Bumped by every assignment: batches whose handling began before one add nothing. */
  #generation = 0;
  /** Partitions with a handed-on batch that was not stored, until they are read again. */
  readonly #notStored = new Set<number>();
  /** Partition of each owned device currently critical, as of its last stored batch. */
  readonly #critical = new Map<string, number>();
  #stats = {
    batches: 0,
    records: 0,
    readings: 0,
    rolledForward: 0,
    duplicates: 0,
    conflicts: 0,
    late: 0,
    outOfOrder: 0,
    gaps: 0,
    skippedSeqs: 0,
    deadLettered: 0,
    alertsRaised: 0,
    alertsCleared: 0,
    failedBatches: 0,
  };

  constructor(options: ProcessorSupervisorOptions) {
    this.#opts = options;
    this.#log = options.logger.child({ component: "processors" });
    const timers = options.timers ?? realTimers;
    this.#now = options.now ?? (() => timers.now());
    this.#checkpoints = new Checkpointer({
      store: options.store,
      ...(options.checkpointMs !== undefined ? { everyMs: options.checkpointMs } : {}),
      logger: this.#log,
      now: this.#now,
      timers,
      ...(options.view ? { onWritten: options.view.written.bind(options.view) } : {}),
    });
    this.#devices = new DeviceRegistry({
      store: options.store,
      rule: options.rule,
      unsaved: (id) => this.#checkpoints.unsaved(id),
      passivateAfterMs: options.passivateAfterMs,
      ...(options.rollForward ? { rollForward: true } : {}),
      logger: this.#log,
      now: this.#now,
      timers,
    });
  }

  /** Partitions this member owns since the last rebalance. */
  get assignment(): readonly number[] {
    return this.#assignment;
  }

  get stats(): ProcessorStats {
    return {
      ...this.#stats,
      ...this.#devices.stats,
      ...this.#checkpoints.stats,
      activeDevices: this.#devices.size,
      criticalDevices: this.#critical.size,
    };
  }

  /**
   * The batch handler for the reading source. Where the source allows it (`ctx.handOn`: Kafka),
   * a batch is handed on once applied and its writes started, so the source fetches the next
   * batches while the store writes (see `#handOn`); otherwise it resolves once durable.
   */
  readonly handleBatch = async (
    batch: RecordBatch,
    ctx: BatchContext,
  ): Promise<void | HandedOn> => {
    const { byDevice, recordOf, letters } = decodeBatch(batch, this.#opts.offlineAfterMs);
    const ids = [...byDevice.keys()];
    const partition = batch.partition;
    const current = this.#current(partition);
    // The partition's batch handed on before this one, if not stored yet.
    const previous = ctx.handOn ? this.#tails.get(partition) : undefined;
    let release = () => {};
    let handed = false;
    try {
      const unseen = await this.#devices.ensure(ids, partition);
      // An assignment during the lookup: the member reads again from the committed offsets, and
      // the devices this batch found may have been discarded as ahead of the store.
      if (!current()) return;
      // The highest seq rolled forward per device: those readings and transitions are not new.
      const rolledTo = new Map<string, number>();
      for (const [id, readings] of unseen) {
        byDevice.set(id, [...readings, ...byDevice.get(id)!]);
        // Stored readings do not keep the limit they came with: they get the default.
        const limit = this.#opts.offlineAfterMs;
        if (limit !== undefined) { for (const r of readings) r.offlineAfterMs ??= limit; }
        rolledTo.set(id, readings[readings.length - 1]!.seq);
      }
      release = this.#devices.hold(ids);
      const processedAt = new Date(this.#now());
      const outputs = await Promise.all(
        ids.map((id) => this.#devices.apply(id, byDevice.get(id)!, processedAt)),
      );
      if (ctx.isStale()) {
        // Reassigned meanwhile: the new owner replays from the store; our states ran ahead.
        await this.#devices.discard(ids);
        return;
      }
      // An assignment while they applied it discarded its (held) devices: nothing to write.
      if (!current()) return;
      const { writes, origins } = toWrite(outputs, processedAt, recordOf, rolledTo);
      let alertsStoredAt: number | undefined;
      const started = Promise.withResolvers<void>();
      const writing = Promise.all([
        this.#opts.deadLetters.send(letters),
        this.#write(writes, started.resolve).then(({ refused, alertsStoredAt: at }) => {
          alertsStoredAt = at;
          return { refused };
        }),
      ]);
      const done = { batch, ids, outputs, letters, origins, rolledTo };
      if (ctx.handOn) {
        const stored = this.#handOn(
          done,
          ctx,
          writing,
          previous,
          current,
          () => alertsStoredAt,
          release,
        );
        handed = true;
        // The source fetches on once this batch's write went out, not while it is queued: the
        // next batches are applied while it is written and queue behind it (so the store has
        // the next write ready), and what waits for the store stays bounded.
        await keepingMembership(ctx, Promise.race([started.promise, stored.catch(() => {})]));
        return { stored };
      }
      const [, { refused }] = await keepingMembership(ctx, writing);
      await this.#afterStored(done, ctx, refused, alertsStoredAt);
    } catch (error) {
      if (handed) throw error;
      // A device restored now must start from the state the batch before left, once stored.
      await previous?.catch(() => {});
      // Their in-memory states may be ahead of the store: the retry restores and replays them.
      await this.#failed(batch, ids, error);
      throw error;
    } finally {
      if (!handed) release();
    }
  };

  /**
   * A handed-on batch's end, once its writes and those of the partition's batch before it
   * settled: resolves when both were stored and its device states became checkpointable; rejects
   * when either was not (or the partition is read again since its handling began: an assignment
   * or `rewind()`; `current`), adding nothing.
   * So the batches of a partition are counted stored in order, and none after one that was not
   * (the source then reads the partition again from that one). Its devices stay held until then:
   * none is passivated, nor restored from an older state, while its readings are being written.
   */
  #handOn(
    done: Done,
    ctx: BatchContext,
    writing: Promise<readonly [void, { readonly refused: readonly Refusal[] }]>,
    previous: Promise<void> | undefined,
    current: () => boolean,
    alertsStoredAt: () => number | undefined,
    release: () => void,
  ): Promise<void> {
    const partition = done.batch.partition;
    const stored = (async () => {
      // Both settle before this one does: a batch read again must not race a write of it.
      const [before, own] = await Promise.allSettled([previous, writing]);
      // Its devices stay ahead until the partition is read again from the first batch not stored
      // (`rewind()`, or an assignment): the batches after it build on them meanwhile.
      const notStored = () => {
        if (current()) this.#notStored.add(partition);
      };
      if (own.status === "rejected") {
        notStored();
        this.#stats.failedBatches++;
        this.#log.warn("handed-on batch failed; its partition is read again from it", {
          partition,
          firstOffset: done.batch.records[0]?.offset,
          devices: done.ids.length,
          error: own.reason as Error,
        });
        throw own.reason;
      }
      if (!current()) {
        throw new BatchNotStored(partition, "the partition is being read again");
      }
      if (before.status === "rejected") {
        notStored();
        throw new BatchNotStored(partition, "an earlier batch of it was not stored");
      }
      if (ctx.isStale() || !this.#owns(partition)) {
        // The partition moved during the write: its new owner resumes from the checkpoint.
        await this.#devices.discard(done.ids);
        return;
      }
      await this.#afterStored(done, ctx, own.value[1].refused, alertsStoredAt());
    })().finally(release);
    this.#tails.set(partition, stored);
    // The tail is dropped once settled, unless a later batch took its place.
    stored.catch(() => {}).finally(() => {
      if (this.#tails.get(partition) === stored) this.#tails.delete(partition);
    });
    return stored;
  }

  /**
   * Forgets what was applied of a partition's batches that were not stored: the source reads it
   * again from the first of them, and no batch of it is being handled or stored meanwhile
   * (`SourceEvents.onRewind`). Its devices start again from their last safe state.
   */
  async rewind(partition: number): Promise<void> {
    this.#epochs.set(partition, (this.#epochs.get(partition) ?? 0) + 1);
    this.#tails.delete(partition);
    this.#notStored.delete(partition);
    await this.#devices.discard(this.#devices.inPartition(partition));
  }

  /** A stored batch's dead letters of refused readings, device states and counts. */
  async #afterStored(
    done: Done,
    ctx: BatchContext,
    refused: readonly Refusal[],
    alertsStoredAt: number | undefined,
  ) {
    const { batch, ids, outputs, letters, origins, rolledTo } = done;
    if (ctx.isStale() || !this.#owns(batch.partition)) {
      // The partition moved during the write: its new owner resumes from the checkpoint.
      await this.#devices.discard(ids);
      return;
    }
    const refusedLetters = refused.map((r) => refusalLetter(r, origins, batch.partition));
    if (refusedLetters.length > 0) {
      await keepingMembership(ctx, this.#opts.deadLetters.send(refusedLetters));
      letters.push(...refusedLetters);
    }
    // These states now cover only stored readings: eligible for the next checkpoint.
    for (const o of outputs) this.#stored(o, batch.partition);
    this.#account(
      batch,
      outputs,
      letters,
      refused.map((r) => ({ type: r.type, skipped: origins.get(r.reading)!.skipped })),
      rolledTo,
      alertsStoredAt,
    );
    this.#opts.onProcessed?.(outputs, batch.partition);
  }

  /**
   * After a rebalance, forget the devices of partitions this member lost (and
   * their unsaved states: the new owner resumes from the last checkpoint), and
   * those of kept partitions that may be ahead of the store.
   */
  async onAssignment(partitions: readonly number[]): Promise<void> {
    this.#assignment = [...partitions].sort((a, b) => a - b);
    const kept = new Set(partitions);
    this.#owned = kept;
    // The member reads every partition again from its committed offset. Batches whose handling
    // began before add nothing (`#current`): their devices, held (in flight) or of a partition
    // with a batch not stored (left ahead for the batches after it), start again from their last
    // safe state. Batches handed on may still be being stored meanwhile.
    this.#generation++;
    const replayed = new Set([...this.#tails.keys(), ...this.#notStored]);
    this.#tails.clear();
    this.#notStored.clear();
    const ahead = [
      ...this.#devices.held(),
      ...[...replayed].filter((p) => kept.has(p)).flatMap((p) => this.#devices.inPartition(p)),
    ];
    this.#checkpoints.keepOnly(kept);
    this.#opts.view?.assign(this.#assignment);
    for (const [id, p] of this.#critical) if (!kept.has(p)) this.#critical.delete(id);
    const lost = this.#devices.outside(kept);
    this.#prefetched = this.#devices.prefetch(this.#assignment, this.#checkpoints.pending());
    await this.#devices.discard([...new Set([...lost, ...ahead])]);
    if (lost.length > 0) {
      this.#log.info("device states released after rebalance", { count: lost.length, partitions });
    }
  }

  /**
   * The stored states of the partitions assigned last, as read at that assignment (undefined
   * when the store cannot list them): what the offline watch resumes from.
   */
  prefetched(): Promise<Map<string, DeviceDoc>> | undefined {
    return this.#prefetched;
  }

  /** Starts periodic checkpoints against the source whose batches this supervisor handles. */
  attach(source: Pick<ReadingSource, "processed" | "commit">): void {
    this.#checkpoints.attach(source);
  }

  /** Stores the changed device states, then commits the offsets processed before them. */
  checkpoint(): Promise<void> {
    return this.#checkpoints.checkpoint();
  }

  /** Releases processors idle for longer than `passivateAfterMs`. */
  passivateIdle(): Promise<number> {
    return this.#devices.passivateIdle();
  }

  /** The in-memory alarm state of a device, if its processor is active. */
  state(deviceId: string): Promise<AlarmState | undefined> {
    return this.#devices.state(deviceId);
  }

  async stop(): Promise<void> {
    await this.#checkpoints.stop();
    await this.#devices.stop();
    this.#critical.clear();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  /**
   * Whether a batch of `partition` whose handling begins now is still current when asked: no
   * assignment, and no `rewind()` of the partition, came in between.
   */
  #current(partition: number): () => boolean {
    const generation = this.#generation;
    const epoch = this.#epochs.get(partition) ?? 0;
    return () => this.#generation === generation && (this.#epochs.get(partition) ?? 0) === epoch;
  }

  #owns(partition: number): boolean {
    return this.#owned === undefined || this.#owned.has(partition);
  }

  async #failed(batch: RecordBatch, ids: readonly string[], error: unknown) {
    this.#stats.failedBatches++;
    this.#log.warn("batch failed; its devices will be restored from their last safe state", {
      partition: batch.partition,
      firstOffset: batch.records[0]?.offset,
      devices: ids.length,
      error: error as Error,
    });
    await this.#devices.discard(ids);
  }

  /**
   * Stores what a batch produced: its readings in the writer's readings lane, its alerts (and
   * with them their webhook outbox events) in the alerts' lane, so an alert does not queue
   * behind other batches' bulk reading writes. Resolves once both are durable, with when the
   * alerts were.
   *
   * Why an alert may be stored before its readings when the source replays (Kafka): this
   * batch counts as handled, its device states become checkpointable (`#stored`) and its
   * offsets committable only after both writes are acknowledged. If either fails, or the
   * process dies first, the batch is replayed from the last committed offsets over device
   * states that do not cover it, which recomputes the same alert snapshot (deterministic `_id`,
   * never replacing a newer `asOfSeq`) and outbox events (inserted once), and inserts the
   * readings: the store ends with the same documents, and no checkpoint ever covers an alert
   * whose readings are not stored. The embedded queue cannot replay (`rollForward`): there a
   * crash between the two would leave an alert whose readings are lost, so its alerts are
   * written only once its readings are durable (docs/reliability.md#write-lanes).
   */
  async #write(
    batch: WriteBatch,
    onStart?: () => void,
  ): Promise<{ refused: readonly Refusal[]; alertsStoredAt?: number }> {
    const { writer } = this.#opts;
    const started = onStart ? { onStart } : {};
    if (batch.alerts.length === 0) return await writer.write(batch, started);
    const readings = { ...batch, alerts: [] };
    const alerts: WriteBatch = { readings: [], alerts: batch.alerts, devices: [] };
    const hasReadings = batch.readings.length > 0 || (batch.skipped?.length ?? 0) > 0;
    if (!hasReadings) {
      await writer.write(alerts, started);
      return { refused: [], alertsStoredAt: this.#now() };
    }
    if (this.#opts.rollForward) {
      const { refused } = await writer.write(readings, started);
      await writer.write(alerts);
      return { refused, alertsStoredAt: this.#now() };
    }
    let alertsStoredAt = 0;
    // Both settle before a failure is passed on: the retry must not race a write of this batch.
    const [stored, alertsStored] = await Promise.allSettled([
      writer.write(readings, started),
      writer.write(alerts).then(() => void (alertsStoredAt = this.#now())),
    ]);
    if (stored.status === "rejected") throw stored.reason;
    if (alertsStored.status === "rejected") throw alertsStored.reason;
    return { refused: stored.value.refused, alertsStoredAt };
  }

  #stored(output: DeviceOutput, partition: number) {
    // The partition goes with the state: the next owner of the partition reads only its own.
    const device = { ...output.device, partition };
    this.#checkpoints.add(device, partition, output.readings.length);
    if (device.level === "critical") this.#critical.set(device.deviceId, partition);
    else this.#critical.delete(device.deviceId);
  }

  #account(
    batch: RecordBatch,
    outputs: readonly DeviceOutput[],
    letters: readonly DeadLetter[],
    refused: readonly { readonly type: Refusal["type"]; readonly skipped: boolean }[],
    rolledTo: ReadonlyMap<string, number>,
    alertsStoredAt: number | undefined,
  ) {
    const storedAt = alertsStoredAt ?? this.#now();
    this.#stats.batches++;
    this.#stats.records += batch.records.length;
    this.#stats.deadLettered += letters.length;
    let skipped = 0;
    for (const out of outputs) skipped += out.skipped.length;
    this.#stats.duplicates += skipped - refused.filter((r) => r.skipped).length;
    for (const r of refused) this.#stats[r.type === "conflict" ? "conflicts" : "late"]++;
    for (const letter of letters) {
      this.#log.warn("record dead-lettered", {
        partition: letter.partition,
        offset: letter.record.offset,
        reason: letter.reason,
      });
    }
    for (const out of outputs) {
      const deviceId = out.device.deviceId;
      const rolled = rolledTo.get(deviceId) ?? 0;
      const rolledCount = out.applied.filter((r) => r.seq <= rolled).length;
      this.#stats.rolledForward += rolledCount;
      this.#stats.readings += out.readings.length - rolledCount;
      this.#stats.outOfOrder += out.outOfOrder;
      this.#stats.gaps += out.gaps;
      this.#stats.skippedSeqs += out.skippedSeqs;
      for (const t of out.transitions) {
        if (t.seq <= rolled) continue;
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

/** What a batch produced, for its end once stored. */
interface Done {
  readonly batch: RecordBatch;
  readonly ids: readonly string[];
  readonly outputs: readonly DeviceOutput[];
  readonly letters: DeadLetter[];
  readonly origins: ReadonlyMap<ReadingDoc, Origin>;
  readonly rolledTo: ReadonlyMap<string, number>;
}

/** A handed-on batch that was not stored because of something else (never leaves the module). */
class BatchNotStored extends Error {
  override name = "BatchNotStored";
  constructor(partition: number, why: string) {
    super(`Batch of partition "${partition}" not stored: ${why}`);
  }
}

/**
 * Groups a batch's valid readings by device, in partition order, with the
 * record of each; the rest are dead letters.
 */
function decodeBatch(batch: RecordBatch, offlineAfterMs: number | undefined): {
  byDevice: Map<string, Reading[]>;
  recordOf: Map<Reading, RawRecord>;
  letters: DeadLetter[];
} {
  const byDevice = new Map<string, Reading[]>();
  const recordOf = new Map<Reading, RawRecord>();
  const letters: DeadLetter[] = [];
  for (const record of batch.records) {
    const decoded = decodeReading(record.value, record.key);
    if (decoded.ok) {
      if (offlineAfterMs !== undefined) decoded.reading.offlineAfterMs ??= offlineAfterMs;
      recordOf.set(decoded.reading, record);
      const list = byDevice.get(decoded.reading.deviceId);
      if (list) list.push(decoded.reading);
      else byDevice.set(decoded.reading.deviceId, [decoded.reading]);
    } else {
      letters.push({ record, partition: batch.partition, reason: decoded.reason });
    }
  }
  return { byDevice, recordOf, letters };
}

/** Where a reading of a write came from, to dead-letter it if the store refuses it. */
interface Origin {
  readonly record: RawRecord;
  /** Whether the processor skipped it as already applied (else it was applied). */
  readonly skipped: boolean;
  /** Its device's last applied seq after the batch. */
  readonly lastSeq: number;
}

/**
 * The store write for what a batch produced, and the origin of each reading in
 * it. Readings rolled forward (seq up to `rolledTo` of their device) were read
 * from the store: only their alerts are written.
 */
function toWrite(
  outputs: readonly DeviceOutput[],
  processedAt: Date,
  recordOf: ReadonlyMap<Reading, RawRecord>,
  rolledTo: ReadonlyMap<string, number>,
): { writes: WriteBatch; origins: Map<ReadingDoc, Origin> } {
  const origins = new Map<ReadingDoc, Origin>();
  const readings: ReadingDoc[] = [];
  const skipped: ReadingDoc[] = [];
  for (const o of outputs) {
    const lastSeq = o.device.lastSeq;
    const rolled = rolledTo.get(o.device.deviceId) ?? 0;
    o.readings.forEach((doc, i) => {
      if (doc.seq <= rolled) return;
      readings.push(doc);
      origins.set(doc, { record: recordOf.get(o.applied[i]!)!, skipped: false, lastSeq });
    });
    for (const reading of o.skipped) {
      // Only compared with the stored reading, whose own flags stand.
      const doc = toReadingDoc(reading, false, processedAt);
      skipped.push(doc);
      origins.set(doc, { record: recordOf.get(reading)!, skipped: true, lastSeq });
    }
  }
  return {
    writes: {
      readings,
      skipped,
      alerts: outputs.flatMap((o) => o.alerts),
      devices: [],
    },
    origins,
  };
}

/** The dead letter for a reading the store refused, saying why. */
function refusalLetter(
  refusal: Refusal,
  origins: ReadonlyMap<ReadingDoc, Origin>,
  partition: number,
): DeadLetter {
  const { reading } = refusal;
  const origin = origins.get(reading)!;
  const which = `reading "${reading.deviceId}" seq "${reading.seq}"`;
  const reason = refusal.type === "conflict"
    ? `conflict: ${which} is stored already with other content: ${
      readingDifferences(reading, refusal.stored).join(", ")
    }`
    : `late: ${which} is not above its device's last applied seq "${origin.lastSeq}" ` +
      "and was never stored";
  return { record: origin.record, partition, reason };
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
