/**
 * One batching producer for all sensors of a process. `publish()` is
 * synchronous and never blocks a sensor: readings go into a bounded buffer
 * that a single flush loop sends in batches (by size or linger time). One send
 * in flight at a time keeps each device's readings in order. A failed send
 * keeps its readings at the head of the buffer and is retried; a full buffer
 * refuses new readings, and the caller counts them as dropped.
 *
 * With the default placement, a batch goes to kafkajs as one message per
 * partition (`recordSetMessage()`, encoded by kafka_produce_encoding.ts): the
 * readings are placed here, where kafkajs's DefaultPartitioner would place
 * them, and kafkajs handles one message per partition instead of 2 000 (its
 * per-message grouping is quadratic in the batch). The partition count comes
 * from the topic's metadata before the first send and from every placement
 * kafkajs makes afterwards.
 *
 * @module
 */
import type { Admin, ICustomPartitioner, Kafka, Message, Producer } from "kafkajs";
import { FastDefaultPartitioner, keyPartition } from "./kafka_partitioner.ts";
import { leanProduceInstalled, recordSetMessage } from "./kafka_lean_produce.ts";
import { RecordSetError } from "./kafka_produce_encoding.ts";
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
  /** Present when readings are placed here and sent as record sets (the default placement). */
  readonly #admin: Admin | undefined;
  /** The topic's partition count as last seen (metadata, or kafkajs placing a message). */
  #partitions: number | undefined;
  /** Buffered readings: keys and encoded values, oldest first. */
  #keys: string[] = [];
  #values: string[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  #flushing: Promise<void> | undefined;
  #closed = false;
  #sent = 0;
  #dropped = 0;
  #failedSends = 0;
  #retryDelayMs = 0;

  constructor(kafka: Kafka, options: KafkaReadingProducerOptions) {
    const { topic, logger, maxBuffered = 200_000, batchSize = 2000, lingerMs = 20 } = options;
    const recordSets = options.createPartitioner === undefined && leanProduceInstalled();
    this.#admin = recordSets ? kafka.admin() : undefined;
    this.#producer = kafka.producer({
      createPartitioner: recordSets
        ? this.#countingPartitioner()
        : (options.createPartitioner ?? FastDefaultPartitioner),
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
    await this.#admin?.connect();
  }

  get stats(): ProducerStats {
    return {
      sent: this.#sent,
      dropped: this.#dropped,
      buffered: this.#keys.length,
      failedSends: this.#failedSends,
    };
  }

  publish(reading: Reading): boolean {
    return this.publishEncoded(reading.deviceId, encodeReading(reading));
  }

  /** `publish()` of a reading already encoded (`encodeReading()`), keyed by its device id. */
  publishEncoded(key: string, value: string): boolean {
    if (this.#closed || this.#keys.length >= this.#maxBuffered) {
      this.#dropped++;
      return false;
    }
    this.#keys.push(key);
    this.#values.push(value);
    this.#schedule();
    return true;
  }

  /** Resolves once everything published so far has been acknowledged by Kafka. */
  async flush(): Promise<void> {
    while (this.#keys.length > 0 || this.#flushing) {
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
      this.#log.error("producer closed with unsent readings", { unsent: this.#keys.length });
    }
    clearTimeout(this.#timer);
    await this.#producer.disconnect();
    await this.#admin?.disconnect();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #schedule() {
    if (this.#flushing || this.#timer !== undefined) return;
    const delay = this.#keys.length >= this.#batchSize ? 0 : this.#lingerMs;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#startFlush();
    }, delay);
  }

  #startFlush(): Promise<void> {
    this.#flushing ??= this.#sendOne().finally(() => {
      this.#flushing = undefined;
      if (this.#keys.length > 0 && !this.#closed) this.#schedule();
    });
    return this.#flushing;
  }

  async #sendOne(): Promise<void> {
    const n = Math.min(this.#batchSize, this.#keys.length);
    if (n === 0) return;
    try {
      const messages = this.#admin ? await this.#recordSets(n) : this.#messages(n);
      await this.#producer.send({ topic: this.#topic, acks: -1, messages });
      this.#keys.splice(0, n);
      this.#values.splice(0, n);
      this.#sent += n;
      this.#retryDelayMs = 0;
    } catch (err) {
      // Keep the batch at the head so order is kept and nothing is lost; back off.
      this.#failedSends++;
      this.#retryDelayMs = Math.min(Math.max(this.#retryDelayMs * 2, 200), 5000);
      this.#log.warn("send failed, will retry", {
        error: err as Error,
        buffered: this.#keys.length,
        retryInMs: this.#retryDelayMs,
      });
      await new Promise((r) => setTimeout(r, this.#retryDelayMs));
    } finally {
      this.#onSent?.();
    }
  }

  /** The oldest `n` readings as one kafkajs message each (kafkajs places them). */
  #messages(n: number): Message[] {
    const messages: Message[] = new Array(n);
    for (let i = 0; i < n; i++) messages[i] = { key: this.#keys[i]!, value: this.#values[i]! };
    return messages;
  }

  /** The oldest `n` readings placed as kafkajs would place them, one record set per partition. */
  async #recordSets(n: number): Promise<Message[]> {
    this.#partitions ??= await this.#partitionCount();
    const count = this.#partitions;
    const keys: string[][] = Array.from({ length: count }, () => []);
    const values: string[][] = Array.from({ length: count }, () => []);
    for (let i = 0; i < n; i++) {
      const key = this.#keys[i]!;
      const p = keyPartition(key, count);
      keys[p]!.push(key);
      values[p]!.push(this.#values[i]!);
    }
    const messages: Message[] = [];
    for (let p = 0; p < count; p++) {
      if (keys[p]!.length > 0) messages.push(recordSetMessage(p, keys[p]!, values[p]!));
    }
    return messages;
  }

  async #partitionCount(): Promise<number> {
    const { topics } = await this.#admin!.fetchTopicMetadata({ topics: [this.#topic] });
    const count = topics[0]?.partitions.length ?? 0;
    if (count === 0) throw new RecordSetError(`Topic has no partitions: "${this.#topic}"`);
    return count;
  }

  /** kafkajs's placement of a record set: its own partition; remembers the count it saw. */
  #countingPartitioner(): ICustomPartitioner {
    return () => {
      const place = FastDefaultPartitioner();
      return (args) => {
        this.#partitions = args.partitionMetadata.length;
        return place(args);
      };
    };
  }
}
