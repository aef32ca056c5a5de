/**
 * The processors' supervisor: a member of the readings consumer group. For
 * each partition batch it validates the records (invalid ones go to the
 * dead-letter sink with their reason), routes each device's readings — in
 * partition order — to that device's processor actor, creating it on first
 * sight from the state stored for it, and hands the results to the store
 * writer. The batch handler resolves only when the dead letters and the
 * writes are durable; only then does the source commit the offsets.
 *
 * If anything in a batch fails, the processors of the devices it touched are
 * discarded before the error propagates (their in-memory state may be ahead of
 * the store), so the retry restores them from the store and replays.
 * Processors idle for `passivateAfterMs` are released from memory; on a
 * partition reassignment all are, because another member may have moved on.
 *
 * @module
 */
import { type Actor, ask } from "./actor.ts";
import { Supervisor } from "./supervisor.ts";
import { createProcessor, type DeviceOutput, type ProcessorMsg } from "./processor.ts";
import type { StoreWriter } from "./store_writer.ts";
import { type AlarmRule, type AlarmState, INITIAL_ALARM_STATE } from "../domain/hysteresis.ts";
import { decodeReading, type Reading } from "../schemas/reading.ts";
import { restoreAlarmState } from "../schemas/documents.ts";
import type { DeviceStore } from "../adapters/mongo_store.ts";
import type {
  BatchContext,
  DeadLetter,
  DeadLetterSink,
  RecordBatch,
} from "../adapters/kafka_consumer.ts";
import type { Logger } from "../adapters/log.ts";

export interface ProcessorSupervisorOptions {
  readonly store: Pick<DeviceStore, "loadDevices">;
  readonly writer: StoreWriter;
  readonly deadLetters: DeadLetterSink;
  readonly rule: AlarmRule;
  readonly passivateAfterMs: number;
  readonly logger: Logger;
  readonly now?: () => number;
}

export interface ProcessorStats {
  readonly batches: number;
  readonly readings: number;
  readonly duplicates: number;
  readonly deadLettered: number;
  readonly alertsRaised: number;
  readonly alertsCleared: number;
  readonly activeDevices: number;
  readonly passivated: number;
  readonly failedBatches: number;
}

interface Device {
  readonly actor: Actor<ProcessorMsg>;
  lastActive: number;
  busy: number;
}

export class ProcessorSupervisor implements AsyncDisposable {
  readonly #opts: ProcessorSupervisorOptions;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #supervisor = new Supervisor({ name: "processors" });
  readonly #devices = new Map<string, Device>();
  #sweep: ReturnType<typeof setInterval> | undefined;
  #stats = {
    batches: 0,
    readings: 0,
    duplicates: 0,
    deadLettered: 0,
    alertsRaised: 0,
    alertsCleared: 0,
    passivated: 0,
    failedBatches: 0,
  };

  constructor(options: ProcessorSupervisorOptions) {
    this.#opts = options;
    this.#log = options.logger.child({ component: "processors" });
    this.#now = options.now ?? Date.now;
    const every = Math.min(60_000, Math.max(1000, options.passivateAfterMs / 4));
    this.#sweep = setInterval(() => void this.passivateIdle(), every);
  }

  get stats(): ProcessorStats {
    return { ...this.#stats, activeDevices: this.#devices.size };
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
      await this.#ensure(ids);
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
      if (ctx.isStale()) return; // reassigned meanwhile: leave it to the new owner
      await Promise.all([
        this.#opts.deadLetters.send(letters),
        this.#opts.writer.write({
          readings: outputs.flatMap((o) => o.readings),
          alerts: outputs.flatMap((o) => o.alerts),
          devices: outputs.map((o) => o.device),
        }),
      ]);
      this.#account(batch, outputs, letters);
    } catch (error) {
      this.#stats.failedBatches++;
      this.#log.warn("batch failed; its devices will be restored from the store", {
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

  /** Another member may own some of our devices now: forget every in-memory state. */
  async onAssignment(partitions: readonly number[]): Promise<void> {
    const count = this.#devices.size;
    await this.#discard([...this.#devices.keys()]);
    if (count > 0) this.#log.info("device states released after rebalance", { count, partitions });
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
    await this.#supervisor.stop();
    this.#devices.clear();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  async #ensure(ids: readonly string[]) {
    const missing = ids.filter((id) => !this.#devices.has(id));
    if (missing.length === 0) return;
    const stored = await this.#opts.store.loadDevices(missing);
    for (const id of missing) {
      const doc = stored.get(id);
      let initial: AlarmState = INITIAL_ALARM_STATE;
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
      this.#spawn(id, initial);
    }
  }

  #spawn(id: string, initial: AlarmState) {
    let actor!: Actor<ProcessorMsg>;
    void this.#supervisor.startChild({
      id,
      restart: "temporary",
      start: (exit) => {
        actor = createProcessor(id, initial, this.#opts.rule, (error) => {
          this.#devices.delete(id);
          exit({ type: "failed", error });
        });
        return actor;
      },
    });
    // start() ran synchronously above, so the actor exists now.
    this.#devices.set(id, { actor, lastActive: this.#now(), busy: 0 });
  }

  async #discard(ids: readonly string[]) {
    for (const id of ids) this.#devices.delete(id);
    await Promise.all(ids.map((id) => this.#supervisor.stopChild(id)));
  }

  #account(batch: RecordBatch, outputs: readonly DeviceOutput[], letters: readonly DeadLetter[]) {
    this.#stats.batches++;
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
      for (const t of out.transitions) {
        const deviceId = out.device.deviceId;
        if (t.type === "raised") {
          this.#stats.alertsRaised++;
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
    void batch;
  }
}
