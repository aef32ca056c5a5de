/**
 * The processors' side of Kafka: a consumer-group member that hands each
 * partition batch to a handler and records the batch as processed once the
 * handler resolved (its writes are durable). Offsets are committed only by
 * `commit()`, which the processors call at a checkpoint, after the device
 * states covering those offsets are stored (at-least-once into an idempotent
 * store). Also the dead-letter sink.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { type Admin, type Consumer, type Kafka, Partitioners, type Producer } from "kafkajs";
import type { Logger } from "../actors/logger.ts";
import type { Timers } from "../actors/timers.ts";
import { SilenceWatchdog } from "./silence_watchdog.ts";
import type {
  BatchHandler,
  DeadLetter,
  DeadLetterSink,
  Offsets,
  RawRecord,
  ReadingSource,
  SourceEvents,
} from "../actors/reading_source.ts";

export interface KafkaReadingSourceOptions {
  readonly topic: string;
  readonly groupId: string;
  readonly logger: Logger;
  /** Partitions processed at once by this member. */
  readonly concurrency?: number;
  /**
   * Gives up when no broker answered any request for this long. kafkajs itself
   * restarts a consumer after retriable errors forever, which would leave a
   * process that looks alive but consumes nothing.
   */
  readonly giveUpMs?: number;
  /** The clock and timers of the give-up watchdog; tests pass a fake. */
  readonly timers?: Timers;
}

export class KafkaReadingSource implements ReadingSource {
  readonly #kafka: Kafka;
  readonly #consumer: Consumer;
  readonly #options: KafkaReadingSourceOptions;
  readonly #log: Logger;
  #processed = new Map<number, string>();
  #committed = new Map<number, string>();
  #assigned = new Set<number>();
  #lag = new Map<number, number>();
  #inFlight = 0;
  /** Partitions with a batch being handled. */
  readonly #busy = new Set<number>();
  /** For `caughtUp()`: connected on first use. */
  #admin: Promise<Admin> | undefined;
  #idle: PromiseWithResolvers<void> | undefined;
  #watchdog: SilenceWatchdog | undefined;

  constructor(kafka: Kafka, options: KafkaReadingSourceOptions) {
    this.#kafka = kafka;
    this.#options = options;
    this.#log = options.logger.child({ component: "consumer" });
    this.#consumer = kafka.consumer({
      groupId: options.groupId,
      sessionTimeout: 30_000,
      heartbeatInterval: 3000,
      maxBytesPerPartition: 1 << 20,
      maxWaitTimeInMs: 100,
      retry: { retries: 10, initialRetryTime: 300, maxRetryTime: 10_000 },
    });
  }

  async start(handler: BatchHandler, events: SourceEvents): Promise<void> {
    const { topic } = this.#options;
    const c = this.#consumer;
    c.on(c.events.GROUP_JOIN, ({ payload }) => {
      const partitions = payload.memberAssignment[topic] ?? [];
      // Offsets of partitions we lost can no longer be committed by us.
      this.#assigned = new Set(partitions);
      for (const p of [...this.#processed.keys()]) {
        if (!this.#assigned.has(p)) this.#processed.delete(p);
      }
      for (const p of [...this.#lag.keys()]) if (!this.#assigned.has(p)) this.#lag.delete(p);
      this.#log.info("partitions assigned", {
        memberId: payload.memberId,
        leader: payload.isLeader,
        partitions,
      });
      events.onAssignment(partitions);
    });
    let gaveUp = false;
    const giveUp = (error: unknown) => {
      if (gaveUp) return;
      gaveUp = true;
      this.#watchdog?.[Symbol.dispose]();
      events.onFatal(error);
    };
    c.on(c.events.CRASH, ({ payload }) => {
      this.#log.error("consumer crashed", { error: payload.error, restart: payload.restart });
      if (!payload.restart) giveUp(payload.error);
    });
    // Every broker response (fetches every few hundred ms, heartbeats, commits) is a sign of life,
    // also while consumption is paused or a slow store write holds a batch.
    c.on(c.events.REQUEST, () => this.#watchdog?.heard());
    await c.connect();
    await c.subscribe({ topic, fromBeginning: true });
    await c.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: this.#options.concurrency ?? 3,
      eachBatch: async ({ batch, heartbeat, isRunning, isStale, resolveOffset }) => {
        if (!isRunning() || isStale() || batch.messages.length === 0) return;
        const records: RawRecord[] = batch.messages.map((m) => ({
          key: m.key ?? null,
          value: m.value ?? null,
          offset: m.offset,
          timestamp: m.timestamp,
        }));
        this.#inFlight++;
        this.#busy.add(batch.partition);
        try {
          await handler(
            { topic: batch.topic, partition: batch.partition, records },
            { heartbeat, isStale },
          );
        } finally {
          this.#busy.delete(batch.partition);
          this.#inFlight--;
          if (this.#inFlight === 0) this.#idle?.resolve();
        }
        const last = batch.messages[batch.messages.length - 1]!.offset;
        // Fetching goes on from here; committing waits for the next checkpoint.
        resolveOffset(last);
        if (!isStale()) {
          this.#processed.set(batch.partition, (BigInt(last) + 1n).toString());
          // From the high watermark the fetch returned: no extra request, at most one fetch old.
          this.#lag.set(batch.partition, Number(batch.offsetLag()));
        }
        await heartbeat();
      },
    });
    const { giveUpMs, timers } = this.#options;
    if (giveUpMs !== undefined) {
      this.#watchdog = new SilenceWatchdog({
        giveUpMs,
        ...(timers ? { timers } : {}),
        onSilent: (silentMs) => {
          this.#log.error("no Kafka broker answered; giving up", { silentMs, giveUpMs });
          giveUp(new Error(`no Kafka broker answered for ${Math.round(silentMs / 1000)} s`));
        },
      });
    }
  }

  processed(): Offsets {
    const pending = new Map<number, string>();
    for (const [p, offset] of this.#processed) {
      if (this.#committed.get(p) !== offset) pending.set(p, offset);
    }
    return pending;
  }

  lag(): ReadonlyMap<number, number> {
    return this.#lag;
  }

  /**
   * The owned partitions whose handled position has reached the high watermark the broker
   * reports now (a partition not handled since its assignment counts from its committed
   * offset): every record acknowledged before the call has been handled.
   */
  async caughtUp(): Promise<ReadonlySet<number>> {
    const { topic, groupId } = this.#options;
    const owned = [...this.#assigned].filter((p) => !this.#busy.has(p));
    if (owned.length === 0) return new Set();
    const admin = await this.#connectedAdmin();
    const [highs, groups] = await Promise.all([
      admin.fetchTopicOffsets(topic),
      admin.fetchOffsets({ groupId, topics: [topic] }),
    ]);
    const committed = new Map(
      (groups.find((g) => g.topic === topic)?.partitions ?? []).map((p) => [p.partition, p.offset]),
    );
    const out = new Set<number>();
    for (const { partition, high, low } of highs) {
      if (!owned.includes(partition) || this.#busy.has(partition)) continue;
      const stored = committed.get(partition);
      const position = this.#processed.get(partition) ??
        (stored === undefined || stored === "-1" ? low : stored);
      if (BigInt(position) >= BigInt(high)) out.add(partition);
    }
    return out;
  }

  #connectedAdmin(): Promise<Admin> {
    if (!this.#admin) {
      const admin = this.#kafka.admin();
      this.#admin = admin.connect().then(() => admin);
      // A failed connect is tried again next time.
      this.#admin.catch(() => (this.#admin = undefined));
    }
    return this.#admin;
  }

  async commit(offsets: Offsets): Promise<void> {
    const owned = [...offsets].filter(([p]) => this.#assigned.has(p));
    if (owned.length === 0) return;
    await this.#consumer.commitOffsets(
      owned.map(([partition, offset]) => ({ topic: this.#options.topic, partition, offset })),
    );
    for (const [p, offset] of owned) this.#committed.set(p, offset);
  }

  async drain(): Promise<void> {
    this.#consumer.pause([{ topic: this.#options.topic }]);
    while (this.#inFlight > 0) {
      this.#idle = Promise.withResolvers<void>();
      await this.#idle.promise;
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#watchdog?.[Symbol.dispose]();
    const admin = this.#admin;
    this.#admin = undefined;
    await admin?.then((a) => a.disconnect()).catch(() => {});
    // disconnect() waits for the running batches to finish and commit.
    await this.#consumer.disconnect();
  }
}

export class KafkaDeadLetterSink implements DeadLetterSink, AsyncDisposable {
  readonly #producer: Producer;
  readonly #topic: string;
  readonly #sourceTopic: string;

  constructor(kafka: Kafka, options: { readonly topic: string; readonly sourceTopic: string }) {
    this.#producer = kafka.producer({
      createPartitioner: Partitioners.DefaultPartitioner,
      allowAutoTopicCreation: false,
    });
    this.#topic = options.topic;
    this.#sourceTopic = options.sourceTopic;
  }

  connect(): Promise<void> {
    return this.#producer.connect();
  }

  async send(letters: readonly DeadLetter[]): Promise<void> {
    if (letters.length === 0) return;
    await this.#producer.send({
      topic: this.#topic,
      acks: -1,
      messages: letters.map(({ record, partition, reason }) => ({
        key: record.key ? Buffer.from(record.key) : null,
        value: record.value ? Buffer.from(record.value) : null,
        headers: {
          "dlq.reason": reason,
          "dlq.source.topic": this.#sourceTopic,
          "dlq.source.partition": String(partition),
          "dlq.source.offset": record.offset,
          "dlq.source.timestamp": record.timestamp,
        },
      })),
    });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.#producer.disconnect();
  }
}
