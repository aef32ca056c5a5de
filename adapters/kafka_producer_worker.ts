/**
 * The worker side of `WorkerReadingProducer` (see worker_producer.ts): a
 * `KafkaReadingProducer` with its own kafkajs client, fed with readings the
 * sensors' thread already encoded. Its counters go back after every send
 * and with every flush or close reply; its log lines go back to the
 * process's logger.
 *
 * @module
 */
/// <reference lib="deno.worker" />
import { createKafka } from "./kafka_client.ts";
import { KafkaReadingProducer } from "./kafka_producer.ts";
import type { LogFields, Logger } from "../actors/logger.ts";
import type { FromProducerWorker, ToProducerWorker } from "./worker_producer.ts";

/** How often the counters go back while readings flow. */
const STATS_EVERY_MS = 50;

function post(msg: FromProducerWorker) {
  self.postMessage(msg);
}

function remoteLogger(base: LogFields = {}): Logger {
  const at = (level: "debug" | "info" | "warn" | "error") => (msg: string, fields?: LogFields) =>
    post({ type: "log", level, msg, fields: { ...base, ...fields } });
  return {
    debug: at("debug"),
    info: at("info"),
    warn: at("warn"),
    error: at("error"),
    child: (fields) => remoteLogger({ ...base, ...fields }),
  };
}

let producer: KafkaReadingProducer | undefined;
let statsTimer: ReturnType<typeof setTimeout> | undefined;

function sendStats() {
  statsTimer = undefined;
  if (producer) post({ type: "stats", stats: producer.stats });
}

/** Messages are handled one at a time, in order: a publish never overtakes an open. */
let queue: Promise<void> = Promise.resolve();

self.onmessage = (e: MessageEvent<ToProducerWorker>) => {
  queue = queue.then(() => handle(e.data)).catch((error) => post({ type: "failed", error }));
};

async function handle(msg: ToProducerWorker): Promise<void> {
  switch (msg.type) {
    case "open": {
      const { kafka, ...options } = msg.config;
      const logger = remoteLogger();
      producer = new KafkaReadingProducer(createKafka({ ...kafka, logger }), {
        ...options,
        logger,
        onSent: () => {
          statsTimer ??= setTimeout(sendStats, STATS_EVERY_MS);
        },
      });
      await producer.connect();
      return post({ type: "opened" });
    }
    case "publish": {
      const { keys, values } = msg;
      for (let i = 0; i < keys.length; i++) producer!.publishEncoded(keys[i]!, values[i]!);
      return;
    }
    case "flush":
      await producer!.flush();
      return post({ type: "done", id: msg.id, stats: producer!.stats });
    case "close":
      await producer!.close(msg.deadlineMs);
      clearTimeout(statsTimer);
      return post({ type: "done", id: msg.id, stats: producer!.stats });
    default:
      return msg satisfies never;
  }
}
