/**
 * One batching producer for all sensors of a process. `publish()` is
 * synchronous and never blocks a sensor: readings go into a bounded buffer
 * that a single flush loop sends in batches (by size or linger time). One send
 * in flight at a time keeps each device's readings in order. A failed send
 * keeps its readings at the head of the buffer and is retried; a full buffer
 * refuses new readings, and the caller counts them as dropped.
 *
 * @module
 */
import type { ICustomPartitioner, Kafka, Message, Producer } from "kafkajs";
import { FastDefaultPartitioner } from "./kafka_partitioner.ts";
import { encodeReading, type Reading } from "../schemas/reading.ts";
import type { Logger } from "../actors/logger.ts";
import type { ProducerStats, ReadingSink } from "../actors/reading_sink.ts";

export interface KafkaReadingProducerOptions {
  readonly topic: string;
  readonly logger: Logger;
  /** Readings held while Kafka is slow or down; beyond this `publish()` refuses. */
  readonly maxBuffered?: number;
  readonly batchSize?: number;
  readonly lingerMs?: number;
  /** Where keys go (default: kafkajs's DefaultPartitioner placement, computed faster). */
  readonly createPartitioner?: ICustomPartitioner;
  /** Called after every send attempt (e.g. to report the counters). */
  readonly onSent?: () => void;
}

export class KafkaReadingProducer implements ReadingSink, AsyncDisposable {
  readonly #producer: Producer;
  readonly #topic: string;
  readonly #log: Logger;
  readonly #maxBuffered: number;
  readonly #batchSize: number;
  readonly #lingerMs: number;
  readonly #onSent: (() => void) | undefined;
  #buffer: Message[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  #flushing: Promise<void> | undefined;
  #closed = false;
  #sent = 0;
  #dropped = 0;
  #failedSends = 0;
  #retryDelayMs = 0;

  constructor(kafka: Kafka, options: KafkaReadingProducerOptions) {
    const { topic, logger, maxBuffered = 200_000, batchSize = 2000, lingerMs = 20 } = options;
    this.#producer = kafka.producer({
      createPartitioner: options.createPartitioner ?? FastDefaultPartitioner,
      allowAutoTopicCreation: false,
    });
    this.#topic = topic;
    this.#log = logger.child({ component: "producer" });
    this.#maxBuffered = maxBuffered;
    this.#batchSize = batchSize;
    this.#lingerMs = lingerMs;
    this.#onSent = options.onSent;
  }

  async connect(): Promise<void> {
    await this.#producer.connect();
  }

  get stats(): ProducerStats {
    return {
      sent: this.#sent,
      dropped: this.#dropped,
      buffered: this.#buffer.length,
      failedSends: this.#failedSends,
    };
  }

  publish(reading: Reading): boolean {
    return this.publishEncoded(reading.deviceId, encodeReading(reading));
  }

  /** `publish()` of a reading already encoded (`encodeReading()`), keyed by its device id. */
  publishEncoded(key: string, value: string): boolean {
    if (this.#closed || this.#buffer.length >= this.#maxBuffered) {
      this.#dropped++;
      return false;
    }
    this.#buffer.push({ key, value });
    this.#schedule();
    return true;
  }

  /** Resolves once everything published so far has been acknowledged by Kafka. */
  async flush(): Promise<void> {
    while (this.#buffer.length > 0 || this.#flushing) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
      await (this.#flushing ?? this.#startFlush());
    }
  }

  /** Sends what is buffered (retrying failed sends up to `deadlineMs`), then disconnects. */
  async close(deadlineMs = 10_000): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<"timeout">((r) =>
      timer = setTimeout(() => r("timeout"), deadlineMs)
    );
    const outcome = await Promise.race([this.flush().then(() => "flushed" as const), deadline]);
    clearTimeout(timer);
    if (outcome === "timeout") {
      this.#log.error("producer closed with unsent readings", { unsent: this.#buffer.length });
    }
    clearTimeout(this.#timer);
    await this.#producer.disconnect();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #schedule() {
    if (this.#flushing || this.#timer !== undefined) return;
    const delay = this.#buffer.length >= this.#batchSize ? 0 : this.#lingerMs;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#startFlush();
    }, delay);
  }

  #startFlush(): Promise<void> {
    this.#flushing ??= this.#sendOne().finally(() => {
      this.#flushing = undefined;
      if (this.#buffer.length > 0 && !this.#closed) this.#schedule();
    });
    return this.#flushing;
  }

  async #sendOne(): Promise<void> {
    const batch = this.#buffer.slice(0, this.#batchSize);
    if (batch.length === 0) return;
    try {
      await this.#producer.send({ topic: this.#topic, acks: -1, messages: batch });
      this.#buffer.splice(0, batch.length);
      this.#sent += batch.length;
      this.#retryDelayMs = 0;
    } catch (err) {
      // Keep the batch at the head so order is kept and nothing is lost; back off.
      this.#failedSends++;
      this.#retryDelayMs = Math.min(Math.max(this.#retryDelayMs * 2, 200), 5000);
      this.#log.warn("send failed, will retry", {
        error: err as Error,
        buffered: this.#buffer.length,
        retryInMs: this.#retryDelayMs,
      });
      await new Promise((r) => setTimeout(r, this.#retryDelayMs));
    } finally {
      this.#onSent?.();
    }
  }
}
