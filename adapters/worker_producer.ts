/**
 * The sensors' Kafka producer on a second core: `publish()` stays synchronous
 * on the sensors' event loop, encodes the reading (`encodeReading()`) and
 * queues it; once per turn the queued readings go to a Deno Worker in one
 * message, where a `KafkaReadingProducer` (its own kafkajs client) batches,
 * sends and retries them exactly as it does in-thread. kafkajs's record
 * encoding (many small `Buffer`s per record) and its garbage then cost the
 * worker's thread, not the sensors' timers.
 *
 * Order is kept: one worker, messages handled in the order posted, one send
 * in flight there. The buffer bound covers everything not yet acknowledged,
 * here and in the worker, so a full pipe refuses (and the caller counts the
 * reading as dropped) instead of growing without bound.
 *
 * @module
 */
import { encodeReading, type Reading } from "../schemas/reading.ts";
import type { LogFields, Logger } from "../actors/logger.ts";
import type { ProducerStats } from "../actors/reading_sink.ts";
import type { KafkaClientOptions } from "./kafka_client.ts";
import type { Producer } from "./ports.ts";

/** What the worker needs to build its client and producer (plain data: it is cloned). */
export interface WorkerProducerConfig {
  readonly kafka: Omit<KafkaClientOptions, "logger">;
  readonly topic: string;
  readonly maxBuffered: number;
  readonly batchSize?: number;
  readonly lingerMs?: number;
}

/** Messages to the worker. */
export type ToProducerWorker =
  | { readonly type: "open"; readonly config: WorkerProducerConfig }
  | { readonly type: "publish"; readonly keys: string[]; readonly values: string[] }
  | { readonly type: "flush"; readonly id: number }
  | { readonly type: "close"; readonly id: number; readonly deadlineMs: number };

/** Messages from the worker. */
export type FromProducerWorker =
  | { readonly type: "opened" }
  | { readonly type: "failed"; readonly error: unknown }
  | { readonly type: "stats"; readonly stats: ProducerStats }
  | { readonly type: "done"; readonly id: number; readonly stats: ProducerStats }
  | {
    readonly type: "log";
    readonly level: "debug" | "info" | "warn" | "error";
    readonly msg: string;
    readonly fields?: LogFields;
  };

/** The producer worker stopped working (it threw, or could not connect). */
export class ProducerWorkerError extends Error {
  override name = "ProducerWorkerError";
}

const NO_STATS: ProducerStats = { sent: 0, dropped: 0, buffered: 0, failedSends: 0 };

export interface WorkerReadingProducerOptions extends WorkerProducerConfig {
  readonly logger: Logger;
}

export class WorkerReadingProducer implements Producer, AsyncDisposable {
  readonly #worker: Worker;
  readonly #log: Logger;
  readonly #maxBuffered: number;
  #keys: string[] = [];
  #values: string[] = [];
  #posting: ReturnType<typeof setTimeout> | undefined;
  /** Readings handed to the worker so far. */
  #posted = 0;
  /** The worker's latest counters. */
  #remote: ProducerStats = NO_STATS;
  /** Refused here: the worker never sees them. */
  #dropped = 0;
  #closed = false;
  #failure: ProducerWorkerError | undefined;
  #nextId = 1;
  readonly #replies = new Map<number, PromiseWithResolvers<void>>();
  readonly #opened = Promise.withResolvers<void>();

  constructor(options: WorkerReadingProducerOptions) {
    const { logger, ...config } = options;
    this.#log = logger.child({ component: "producer" });
    this.#maxBuffered = config.maxBuffered;
    this.#worker = new Worker(new URL("./kafka_producer_worker.ts", import.meta.url), {
      type: "module",
      name: "kafka-producer",
    });
    this.#worker.onmessage = (e: MessageEvent<FromProducerWorker>) => this.#receive(e.data);
    this.#worker.onerror = (e: ErrorEvent) => {
      e.preventDefault();
      this.#fail(new ProducerWorkerError(`Producer worker failed: ${e.message}`));
    };
    // A failure after connect() resolved must not surface as an unhandled rejection.
    this.#opened.promise.catch(() => {});
    this.#post({ type: "open", config });
  }

  /** Resolves once the worker's producer is connected; rejects if it could not connect. */
  connect(): Promise<void> {
    return this.#opened.promise;
  }

  /** Why the worker stopped working (it threw, or could not connect); /health reports it. */
  get failure(): ProducerWorkerError | undefined {
    return this.#failure;
  }

  get stats(): ProducerStats {
    const r = this.#remote;
    const inTransit = this.#posted - r.sent - r.dropped - r.buffered;
    return {
      sent: r.sent,
      dropped: r.dropped + this.#dropped,
      buffered: this.#keys.length + inTransit + r.buffered,
      failedSends: r.failedSends,
    };
  }

  publish(reading: Reading): boolean {
    const r = this.#remote;
    const unacked = this.#keys.length + this.#posted - r.sent - r.dropped;
    if (this.#closed || this.#failure || unacked >= this.#maxBuffered) {
      this.#dropped++;
      return false;
    }
    this.#keys.push(reading.deviceId);
    this.#values.push(encodeReading(reading));
    // Everything published in this turn (a timer firing for many sensors) goes in one message.
    this.#posting ??= setTimeout(() => this.#postQueued(), 0);
    return true;
  }

  /** Resolves once everything published so far has been acknowledged by Kafka. */
  flush(): Promise<void> {
    this.#postQueued();
    return this.#ask((id) => ({ type: "flush", id }));
  }

  /** Sends what is buffered (retrying failed sends up to `deadlineMs`), then stops the worker. */
  async close(deadlineMs = 10_000): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#postQueued();
    try {
      if (!this.#failure) await this.#ask((id) => ({ type: "close", id, deadlineMs }));
    } finally {
      this.#worker.terminate();
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #postQueued() {
    clearTimeout(this.#posting);
    this.#posting = undefined;
    if (this.#keys.length === 0 || this.#failure) return;
    const keys = this.#keys;
    const values = this.#values;
    this.#keys = [];
    this.#values = [];
    this.#posted += keys.length;
    this.#post({ type: "publish", keys, values });
  }

  #ask(build: (id: number) => ToProducerWorker): Promise<void> {
    if (this.#failure) return Promise.reject(this.#failure);
    const id = this.#nextId++;
    const reply = Promise.withResolvers<void>();
    this.#replies.set(id, reply);
    this.#post(build(id));
    return reply.promise;
  }

  #post(msg: ToProducerWorker) {
    this.#worker.postMessage(msg);
  }

  #receive(msg: FromProducerWorker) {
    switch (msg.type) {
      case "opened":
        return this.#opened.resolve();
      case "failed":
        return this.#fail(
          new ProducerWorkerError("Producer worker failed", { cause: msg.error }),
        );
      case "stats":
        this.#remote = msg.stats;
        return;
      case "done": {
        this.#remote = msg.stats;
        const reply = this.#replies.get(msg.id);
        this.#replies.delete(msg.id);
        return reply?.resolve();
      }
      case "log":
        return this.#log[msg.level](msg.msg, msg.fields);
      default:
        return msg satisfies never;
    }
  }

  #fail(error: ProducerWorkerError) {
    if (this.#failure) return;
    this.#failure = error;
    this.#log.error("producer worker failed; readings are refused", { error });
    this.#opened.reject(error);
    for (const reply of this.#replies.values()) reply.reject(error);
    this.#replies.clear();
    this.#worker.terminate();
  }
}
