/**
 * The seq ledger on a compacted Kafka topic keyed by device id (see
 * schemas/seq_record.ts and docs/seq-ledger.md). Concurrency between
 * processes — a new owner of a device and a paused "zombie" one — is resolved
 * by log order: every process reads the whole topic with a consumer of its
 * own (a unique group, from the beginning, never committing) and applies the
 * records in partition order, the same way in every process:
 *
 * - a record is valid iff its `first` is above the device's ceiling (the
 *   highest `last` applied before it); either way the ceiling becomes
 *   `max(ceiling, last)`, so the block of an invalid record is burned (a gap);
 * - `reserve()` waits until its consumer has caught up with the high
 *   watermarks, proposes `ceiling+1 .. ceiling+size` under a unique `by`,
 *   produces with acks=all, waits until its consumer applied its own
 *   records, grants the valid ones and proposes again for the others.
 *
 * Valid blocks of a device are therefore disjoint and increasing in log
 * order, whichever process wrote them. Compaction keeps only a key's latest
 * record: if that is a stale proposal with a lower `last`, the ceiling would
 * regress for a reader starting later. The process that wrote the ceiling
 * re-asserts it when it sees such a record, and the topic is created with a
 * long `min.compaction.lag.ms`; the residual window is in the docs.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import type { Admin, Consumer, Kafka, Producer } from "kafkajs";
import type { Logger } from "../actors/logger.ts";
import type { SeqBlock } from "../domain/seq_block.ts";
import {
  assertDistinct,
  type SeqLedger,
  SeqLedgerError,
  type SeqRequest,
} from "../actors/seq_ledger.ts";
import { decodeSeqRecord, encodeSeqRecord, type SeqRecord } from "../schemas/seq_record.ts";
import type { TopicSpec } from "./kafka_client.ts";
import { FastDefaultPartitioner } from "./kafka_partitioner.ts";

/** Records per produce request: at most ~200 bytes each, so ~400 KB. */
const RECORDS_PER_SEND = 2000;

/** A stale proposal must stay readable long after it is superseded: a week. */
export const MIN_COMPACTION_LAG_MS = 7 * 24 * 3600 * 1000;

/** How the ledger topic is created (compacted; see MIN_COMPACTION_LAG_MS). */
export function seqTopicSpec(topic: string, numPartitions: number): TopicSpec {
  return {
    topic,
    numPartitions,
    configEntries: [
      { name: "cleanup.policy", value: "compact" },
      { name: "min.compaction.lag.ms", value: String(MIN_COMPACTION_LAG_MS) },
    ],
  };
}

export interface KafkaSeqLedgerOptions {
  readonly topic: string;
  readonly logger: Logger;
  /** Names this process's proposals; unique per process start (default: a random UUID). */
  readonly processId?: string;
  /** Proposals per device per call before giving up (each lost to another process). */
  readonly maxAttempts?: number;
  /** How long a call waits for the ledger's consumer (catching up, seeing its own records). */
  readonly timeoutMs?: number;
}

interface Waiter {
  readonly resolve: (valid: boolean) => void;
  readonly reject: (error: Error) => void;
}

export class KafkaSeqLedger implements SeqLedger, AsyncDisposable {
  readonly #opts: KafkaSeqLedgerOptions;
  readonly #log: Logger;
  readonly #pid: string;
  /** `by` of this process's records starts with it. */
  readonly #byPrefix: string;
  readonly #admin: Admin;
  readonly #producer: Producer;
  readonly #consumer: Consumer;
  readonly #groupId: string;
  /**
   * Per device, the highest `last` applied: negative when this process wrote it (it then
   * re-asserts it, see #apply()). A number, not a record with its `by`: at 100 000 devices
   * the record and its string cost about 110 B each.
   */
  readonly #ceilings = new Map<string, number>();
  /** Next offset to apply, per partition. */
  readonly #position = new Map<number, number>();
  readonly #waiters = new Map<string, Waiter>();
  /** Checked after every applied batch. */
  readonly #progress = new Set<() => void>();
  #proposals = 0;
  #failure: unknown;
  #stats = { proposals: 0, lost: 0, reasserted: 0, skipped: 0 };

  private constructor(kafka: Kafka, options: KafkaSeqLedgerOptions) {
    this.#opts = options;
    this.#log = options.logger.child({ component: "seq-ledger" });
    this.#pid = options.processId ?? crypto.randomUUID();
    this.#byPrefix = `${this.#pid}:`;
    this.#groupId = `${options.topic}.ledger.${this.#pid}`;
    this.#admin = kafka.admin();
    this.#producer = kafka.producer({
      idempotent: true,
      maxInFlightRequests: 1,
      // kafkajs's placement, without its 64-bit Long murmur2 (start-up writes 100 000 records).
      createPartitioner: FastDefaultPartitioner,
    });
    this.#consumer = kafka.consumer({
      groupId: this.#groupId,
      sessionTimeout: 30_000,
      heartbeatInterval: 3000,
      maxWaitTimeInMs: 250,
      retry: { retries: 10, initialRetryTime: 300, maxRetryTime: 10_000 },
    });
  }

  /** Connects, starts reading the topic (which must exist) and resolves once caught up. */
  static async open(kafka: Kafka, options: KafkaSeqLedgerOptions): Promise<KafkaSeqLedger> {
    const ledger = new KafkaSeqLedger(kafka, options);
    try {
      await ledger.#start();
    } catch (err) {
      await ledger[Symbol.asyncDispose]();
      throw err;
    }
    return ledger;
  }

  get stats() {
    return { ...this.#stats, devices: this.#ceilings.size };
  }

  /** Highest seq reserved for `deviceId` as this process has read it (0: none). */
  ceiling(deviceId: string): number {
    return Math.abs(this.#ceilings.get(deviceId) ?? 0);
  }

  async reserve(requests: readonly SeqRequest[]): Promise<Map<string, SeqBlock>> {
    assertDistinct(requests);
    if (this.#failure) {
      throw new SeqLedgerError("Seq ledger consumer stopped", { cause: this.#failure });
    }
    const deadline = Date.now() + (this.#opts.timeoutMs ?? 30_000);
    await this.#catchUp(deadline);
    const out = new Map<string, SeqBlock>();
    let todo = requests;
    const maxAttempts = this.#opts.maxAttempts ?? 5;
    for (let attempt = 1; todo.length > 0; attempt++) {
      if (attempt > maxAttempts) {
        throw new SeqLedgerError(
          `Seq ledger lost ${maxAttempts} proposals in a row to other processes: ` +
            `${todo.length} devices, first "${todo[0]!.deviceId}"`,
        );
      }
      const proposals = todo.map((request) => {
        const first = Math.max(this.ceiling(request.deviceId), request.floor ?? 0) + 1;
        const record: SeqRecord = {
          first,
          last: first + request.size - 1,
          by: `${this.#pid}:${++this.#proposals}`,
        };
        return { request, record, valid: this.#expect(record.by) };
      });
      try {
        // Chunks keep each request well under the brokers' default 1 MB batch limit.
        for (let i = 0; i < proposals.length; i += RECORDS_PER_SEND) {
          await this.#producer.send({
            topic: this.#opts.topic,
            acks: -1,
            messages: proposals.slice(i, i + RECORDS_PER_SEND).map(({ request, record }) => ({
              key: request.deviceId,
              value: encodeSeqRecord(record),
            })),
          });
        }
        this.#stats.proposals += proposals.length;
        const verdicts = await this.#within(Promise.all(proposals.map((p) => p.valid)), deadline);
        const lost: SeqRequest[] = [];
        proposals.forEach(({ request, record }, i) => {
          if (verdicts[i]) out.set(request.deviceId, { first: record.first, last: record.last });
          else lost.push(request);
        });
        this.#stats.lost += lost.length;
        todo = lost;
      } catch (err) {
        for (const { record } of proposals) this.#waiters.delete(record.by);
        throw err instanceof SeqLedgerError
          ? err
          : new SeqLedgerError(`Seq ledger write failed: ${(err as Error).message}`, {
            cause: err,
          });
      }
    }
    return out;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#fail(new SeqLedgerError("Seq ledger closed"));
    await this.#consumer.disconnect().catch(() => {});
    await this.#producer.disconnect().catch(() => {});
    // The group only ever served this process: remove it rather than leave it to expire.
    await this.#admin.deleteGroups([this.#groupId]).catch(() => {});
    await this.#admin.disconnect().catch(() => {});
  }

  async #start() {
    const { topic } = this.#opts;
    const c = this.#consumer;
    c.on(c.events.CRASH, ({ payload }) => {
      this.#log.error("seq ledger consumer crashed", {
        error: payload.error,
        restart: payload.restart,
      });
      if (!payload.restart) this.#fail(payload.error);
    });
    await this.#admin.connect();
    await this.#producer.connect();
    await c.connect();
    await c.subscribe({ topic, fromBeginning: true });
    await c.run({
      autoCommit: false,
      partitionsConsumedConcurrently: 1,
      eachBatch: ({ batch }) => {
        let position = this.#position.get(batch.partition) ?? 0;
        for (const m of batch.messages) {
          const offset = Number(m.offset);
          // A restarted consumer reads from the beginning again: apply each record once.
          if (offset < position) continue;
          this.#apply(m.key, m.value);
          position = offset + 1;
        }
        if (batch.messages.length > 0) {
          position = Math.max(position, Number(batch.lastOffset()) + 1);
        }
        this.#position.set(batch.partition, position);
        for (const check of this.#progress) check();
        return Promise.resolve();
      },
    });
    await this.#catchUp(Date.now() + (this.#opts.timeoutMs ?? 30_000) * 2);
    this.#log.info("seq ledger loaded", { topic, devices: this.#ceilings.size });
  }

  #apply(key: Buffer | null, value: Buffer | null) {
    const decoded = decodeSeqRecord(key, value);
    if (!decoded.ok) {
      this.#stats.skipped++;
      this.#log.warn("seq ledger record skipped", { reason: decoded.reason });
      return;
    }
    const { deviceId, record } = decoded;
    const before = this.#ceilings.get(deviceId);
    const ceiling = Math.abs(before ?? 0);
    const valid = record.first > ceiling;
    const mine = record.by.startsWith(this.#byPrefix);
    if (record.last > ceiling) this.#ceilings.set(deviceId, mine ? -record.last : record.last);
    const waiter = this.#waiters.get(record.by);
    if (waiter) {
      this.#waiters.delete(record.by);
      waiter.resolve(valid);
    }
    // A stale proposal now follows the ceiling: if compaction kept only it, the ceiling would
    // regress. The writer of the ceiling writes it again, after the stale record.
    if (before !== undefined && before < 0 && record.last < ceiling) {
      this.#reassert(deviceId, ceiling);
    }
  }

  #reassert(deviceId: string, last: number) {
    this.#stats.reasserted++;
    const record: SeqRecord = { first: last, last, by: `${this.#pid}:ceiling` };
    this.#producer.send({
      topic: this.#opts.topic,
      acks: -1,
      messages: [{ key: deviceId, value: encodeSeqRecord(record) }],
    }).catch((error) =>
      this.#log.error("seq ceiling not re-asserted; see docs/seq-ledger.md", {
        deviceId,
        last,
        error,
      })
    );
  }

  /** Resolves with the validity of the record `by`, once the consumer applied it. */
  #expect(by: string): Promise<boolean> {
    const { promise, resolve, reject } = Promise.withResolvers<boolean>();
    this.#waiters.set(by, { resolve, reject });
    // Observed through Promise.all below; a failure before then must not go unhandled.
    promise.catch(() => {});
    return promise;
  }

  async #catchUp(deadline: number) {
    const offsets = await this.#highWatermarks(deadline);
    await this.#until(
      () => offsets.every((o) => (this.#position.get(o.partition) ?? 0) >= Number(o.high)),
      deadline,
      "catching up with the topic",
    );
  }

  /** The topic's high watermarks; retried until `deadline` (a new topic has no leader yet). */
  async #highWatermarks(deadline: number) {
    for (let attempt = 1;; attempt++) {
      try {
        return await this.#admin.fetchTopicOffsets(this.#opts.topic);
      } catch (err) {
        if (Date.now() + 200 * attempt > deadline) {
          throw new SeqLedgerError(
            `Seq ledger cannot read the topic's offsets: "${this.#opts.topic}"`,
            {
              cause: err,
            },
          );
        }
        await new Promise((r) => setTimeout(r, 200 * attempt));
      }
    }
  }

  async #within<T>(work: Promise<T>, deadline: number): Promise<T> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new SeqLedgerError(
              `Seq ledger timed out reading its own records back: topic "${this.#opts.topic}"`,
            ),
          ),
        Math.max(0, deadline - Date.now()),
      );
    });
    try {
      return await Promise.race([work, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** The consumer stopped for good: every waiting call fails. */
  #fail(error: unknown) {
    this.#failure ??= error;
    const failed = new SeqLedgerError("Seq ledger consumer stopped", { cause: error });
    for (const waiter of this.#waiters.values()) waiter.reject(failed);
    this.#waiters.clear();
    for (const check of this.#progress) check();
  }

  /** Resolves once `condition` holds after some batch; rejects at `deadline` or on failure. */
  #until(condition: () => boolean, deadline: number, what: string): Promise<void> {
    if (condition()) return Promise.resolve();
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    const done = () => {
      clearTimeout(timer);
      this.#progress.delete(check);
    };
    const check = () => {
      if (this.#failure) {
        done();
        reject(new SeqLedgerError("Seq ledger consumer stopped", { cause: this.#failure }));
      } else if (condition()) {
        done();
        resolve();
      }
    };
    const timer = setTimeout(() => {
      done();
      reject(new SeqLedgerError(`Seq ledger timed out ${what}: topic "${this.#opts.topic}"`));
    }, Math.max(0, deadline - Date.now()));
    this.#progress.add(check);
    return promise;
  }
}
