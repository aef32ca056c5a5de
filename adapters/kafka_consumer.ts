/**
 * The processors' side of Kafka: a consumer-group member that hands each
 * partition batch to a handler and records the batch as processed once its
 * writes are durable: when the handler resolved, or, for a batch it handed on
 * (`HandedOn`), once its `stored` resolved — kafkajs fetches the next batches
 * meanwhile, so the store need not wait for a fetch. A handed-on batch that was
 * not stored makes the member read its partition again from that batch, once
 * nothing of the partition is being handled or stored and the handler forgot
 * what it applied (`SourceEvents.onRewind`). Offsets are committed only by
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
  HandedOn,
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

/** Where a partition's handed-on batches stand. */
interface Flow {
  /** Handed-on batches whose `stored` has not settled. */
  handed: number;
  /** A handed-on batch was not stored: the offset to read the partition again from. */
  rewindTo?: string;
  /** The handler is forgetting what it applied (`onRewind`). */
  rewinding?: boolean;
  /** Read again from here (sought): a batch fetched from elsewhere was fetched before. */
  expect?: string;
}

export class KafkaReadingSource implements ReadingSource {
  readonly #kafka: Kafka;
  readonly #consumer: Consumer;
  readonly #options: KafkaReadingSourceOptions;
  readonly #log: Logger;
  #processed = new Map<number, string>();
  #committed = new Map<number, string>();
  #assigned = new Set<number>();
  /** In the group: joined, and not crashed since (kafkajs then rejoins as a new member). */
  #joined = false;
  #lag = new Map<number, number>();
  #inFlight = 0;
  /** Partitions with a batch being handled. */
  readonly #busy = new Set<number>();
  readonly #flows = new Map<number, Flow>();
  /** Bumped by every assignment: a batch stored after one does not move `processed()`. */
  #generation = 0;
  #events: SourceEvents | undefined;
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
    this.#events = events;
    c.on(c.events.GROUP_JOIN, ({ payload }) => {
      const partitions = payload.memberAssignment[topic] ?? [];
      // Offsets of partitions we lost can no longer be committed by us.
      this.#assigned = new Set(partitions);
      this.#joined = true;
      // Every partition is read again from its committed offset, and the handler forgets the
      // batches handed on before (their end adds nothing): nothing is left to read again.
      this.#generation++;
      for (const flow of this.#flows.values()) {
        flow.rewindTo = undefined;
        flow.expect = undefined;
      }
      // Positions handled before the rejoin overstate where reading resumes: until a batch of
      // the new generation is stored, a partition counts from its committed offset (an offline
      // watch that took the old position for caught up raised every replaying device).
      this.#processed.clear();
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
      // Out of the group until it rejoins: it reads nothing, so nothing it owned is caught up.
      // (After a broker restart, producers' held-up readings reach the topic a few seconds
      // later: an offline watch told otherwise would raise every device, then withdraw them.)
      this.#joined = false;
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
        const partition = batch.partition;
        const flow = this.#flow(partition);
        // Being read again from an earlier batch: this one was fetched before the seek.
        if (flow.rewindTo !== undefined) return;
        if (flow.expect !== undefined) {
          if (fetchedFrom(batch) !== flow.expect) return;
          flow.expect = undefined;
        }
        const records: RawRecord[] = batch.messages.map((m) => ({
          key: m.key ?? null,
          value: m.value ?? null,
          offset: m.offset,
          timestamp: m.timestamp,
        }));
        const first = batch.messages[0]!.offset;
        const last = batch.messages[batch.messages.length - 1]!.offset;
        const next = (BigInt(last) + 1n).toString();
        // kafkajs 2.2.4 rejoins only once every batch of the fetch left this handler (its fetch
        // manager waits for them): a handler call never spans an assignment. A handed-on batch's
        // `stored` may: it is tied to the generation it began in.
        const generation = this.#generation;
        this.#inFlight++;
        this.#busy.add(partition);
        try {
          let handed: HandedOn | void;
          try {
            handed = await handler(
              { topic: batch.topic, partition, records },
              { heartbeat, isStale, handOn: true },
            );
          } finally {
            this.#busy.delete(partition);
          }
          if (handed) this.#whenStored(partition, first, next, handed.stored, generation);
          // A batch handed on before this one was not stored meanwhile: the partition is read
          // again from that one, this batch included.
          if (flow.rewindTo !== undefined) return;
          // Fetching goes on from here; committing waits for the next checkpoint.
          resolveOffset(last);
          if (!handed && !isStale()) this.#processed.set(partition, next);
          // From the high watermark the fetch returned: no extra request, at most one fetch old.
          if (!isStale()) this.#lag.set(partition, Number(batch.offsetLag()));
        } finally {
          await this.#rewind(partition);
          this.#settled();
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

  #flow(partition: number): Flow {
    let flow = this.#flows.get(partition);
    if (!flow) this.#flows.set(partition, flow = { handed: 0 });
    return flow;
  }

  #settled() {
    this.#inFlight--;
    if (this.#inFlight === 0) this.#idle?.resolve();
  }

  /**
   * Counts a handed-on batch (`first` to `next` - 1) processed once stored; if it is not, reads
   * its partition again from `first` once the partition is quiet (see `#rewind`).
   */
  #whenStored(
    partition: number,
    first: string,
    next: string,
    stored: Promise<void>,
    generation: number,
  ) {
    const flow = this.#flow(partition);
    flow.handed++;
    this.#inFlight++;
    stored.then(
      () => {
        if (flow.rewindTo !== undefined || generation !== this.#generation) return;
        const seen = this.#processed.get(partition);
        if (seen === undefined || BigInt(seen) < BigInt(next)) this.#processed.set(partition, next);
      },
      (error) => {
        // Later batches of the partition reject after it: the earliest is where to read from.
        if (flow.rewindTo !== undefined || generation !== this.#generation) return;
        flow.rewindTo = first;
        this.#log.warn("handed-on batch not stored; reading its partition again from it", {
          partition,
          offset: first,
          error: error as Error,
        });
      },
    ).finally(() => {
      flow.handed--;
      void this.#rewind(partition).finally(() => this.#settled());
    });
  }

  /**
   * Once no batch of `partition` is being handled or stored, lets the handler forget what it
   * applied of the batches not stored, then reads the partition again from the first of them.
   * Batches fetched before that are dropped (`Flow.expect`).
   */
  async #rewind(partition: number) {
    const flow = this.#flow(partition);
    const to = flow.rewindTo;
    if (to === undefined || flow.rewinding || flow.handed > 0 || this.#busy.has(partition)) return;
    const generation = this.#generation;
    flow.rewinding = true;
    try {
      await this.#events?.onRewind?.(partition);
    } catch (error) {
      // The handler could not forget what it applied: reading on would build on it.
      this.#events?.onFatal(error);
      return;
    } finally {
      flow.rewinding = false;
    }
    // A rebalance meanwhile reads every partition again from its committed offset.
    if (generation !== this.#generation || flow.rewindTo !== to) return;
    flow.rewindTo = undefined;
    flow.expect = to;
    this.#consumer.seek({ topic: this.#options.topic, partition, offset: to });
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
    const owned = [...this.#assigned].filter((p) => this.#atRest(p));
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
      // Re-checked after the awaits: a batch may have been handled or handed on meanwhile, or
      // the member crashed.
      if (!owned.includes(partition) || !this.#atRest(partition)) continue;
      const stored = committed.get(partition);
      const position = this.#processed.get(partition) ??
        (stored === undefined || stored === "-1" ? low : stored);
      if (BigInt(position) >= BigInt(high)) out.add(partition);
    }
    return out;
  }

  /**
   * In the group, and no batch of `partition` being handled, handed on and not stored yet, or
   * to read again: its handled position is where reading stands.
   */
  #atRest(partition: number): boolean {
    if (!this.#joined || this.#busy.has(partition)) return false;
    const flow = this.#flows.get(partition);
    return !flow || (flow.handed === 0 && flow.rewindTo === undefined && !flow.rewinding);
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

/**
 * The offset a batch was fetched from (kafkajs keeps it on the batch, untyped); its first
 * record's when unknown.
 */
function fetchedFrom(batch: { readonly messages: readonly { offset: string }[] }): string {
  const fetched = (batch as { readonly fetchedOffset?: unknown }).fetchedOffset;
  return typeof fetched === "string" ? fetched : batch.messages[0]!.offset;
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
