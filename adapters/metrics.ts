/**
 * Prometheus metrics (prom-client) for `GET /metrics`. Each app creates its
 * own registry, so several apps can run in one process (as the tests do).
 * Latencies are observed as they happen, through the two hooks the store
 * writer and the processors call; everything else — counters, gauges, lag,
 * mailbox depths, restarts — is read from the components' live stats on each
 * scrape, so the actors and the supervisor know nothing of Prometheus.
 *
 * @module
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { ProcessorStats } from "../actors/processor_supervisor.ts";
import type { StoreWriterStats } from "../actors/store_writer.ts";
import type { OfflineWatchStats } from "../actors/offline_watch.ts";
import type { WebhookDispatcherStats } from "../actors/webhook_dispatcher.ts";
import type { WriteBatch } from "../actors/device_store.ts";
import type { ProducerStats } from "../actors/reading_sink.ts";

/** The live components a scrape reads; each is absent while its role is not running. */
export interface MetricSources {
  readonly fleet?: {
    readonly stats: {
      readonly running: number;
      readonly emitted: number;
      readonly dropped: number;
      readonly stalled: number;
      readonly seqBlocks: number;
      readonly seqLedgerFailures: number;
      readonly restarts: number;
      readonly mailboxDepth: number;
      /** Ticks a dropout fault silenced. */
      readonly silenced?: number;
      /** Sensors with a fault of each kind in effect (docs/faults.md). */
      readonly faultsActive?: Readonly<Record<string, number>>;
      /** Faults injected so far, per kind. */
      readonly faultsInjected?: Readonly<Record<string, number>>;
    };
  };
  readonly producer?: { readonly stats: ProducerStats };
  readonly processors?: { readonly stats: ProcessorStats };
  readonly writer?: { readonly stats: StoreWriterStats };
  readonly offline?: { readonly stats: OfflineWatchStats };
  readonly webhooks?: { readonly stats: WebhookDispatcherStats };
  readonly source?: { lag(): ReadonlyMap<number, number> };
}

export interface Metrics {
  /** The exposition format's content type, for the response header. */
  readonly contentType: string;
  /** Every series in the Prometheus text format. */
  scrape(): Promise<string>;
  /** Hook for the store writer: emit → stored latency of each reading in an acknowledged write. */
  readingsStored(batch: WriteBatch, ackedAtMs: number): void;
  /** Hook for the processors: the reading that raised an alert → the alert stored. */
  raiseStored(readingTs: string, storedAtMs: number): void;
  /** Hook for the HTTP API: one answered request, with bounded labels, and its duration. */
  httpRequest(request: HttpRequestLabels, seconds: number): void;
}

/** An answered request as the API reports it: route template, never the raw path. */
export interface HttpRequestLabels {
  readonly method: string;
  readonly route: string;
  readonly status: number;
}

/** From 1 ms (a probe) to 30 s (the request timeout). */
const HTTP_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** From 5 ms (embedded, idle) to a minute (a backlog after an outage). */
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/**
 * Default process metrics that cannot work under Deno without `--allow-all`
 * (prom-client reads `/proc/self/*`, which Deno guards) or that Deno's Node
 * layer does not feed (GC observer, libuv handles): they would report zeros.
 */
const UNSUPPORTED_DEFAULTS = [
  "process_resident_memory_bytes",
  "process_virtual_memory_bytes",
  "process_heap_bytes",
  "process_open_fds",
  "process_max_fds",
  "nodejs_gc_duration_seconds",
  "nodejs_active_handles",
  "nodejs_active_handles_total",
  "nodejs_active_requests",
  "nodejs_active_requests_total",
  "nodejs_active_resources",
  "nodejs_active_resources_total",
];

export interface MetricsOptions {
  /** The app's version, for `iot_build_info` (default "unknown"). */
  readonly version?: string;
}

/** A registry with the pipeline's series, reading `sources()` on each scrape. */
export function createMetrics(
  sources: () => MetricSources,
  { version = "unknown" }: MetricsOptions = {},
): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  for (const name of UNSUPPORTED_DEFAULTS) registry.removeSingleMetric(name);
  const registers = [registry];

  // Resident memory from Deno itself, under the name dashboards expect.
  new Gauge({
    name: "process_resident_memory_bytes",
    help: "Resident memory size in bytes.",
    registers,
    collect() {
      this.set(Deno.memoryUsage().rss);
    },
  });

  // Always 1: the labels carry the information, so a query can join on them or count versions
  // during a rolling upgrade.
  new Gauge({
    name: "iot_build_info",
    help: "Build information of this process: app version, Deno, V8 and TypeScript versions.",
    labelNames: ["version", "deno", "v8", "typescript"],
    registers,
  }).set({
    version,
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    typescript: Deno.version.typescript,
  }, 1);

  /** A counter whose value is a running total some component already keeps. */
  const total = (name: string, help: string, read: (s: MetricSources) => number | undefined) =>
    new Counter({
      name,
      help,
      registers,
      collect() {
        this.reset();
        const value = read(sources());
        if (value !== undefined) this.inc(value);
      },
    });
  const level = (name: string, help: string, read: (s: MetricSources) => number | undefined) =>
    new Gauge({
      name,
      help,
      registers,
      collect() {
        this.reset();
        const value = read(sources());
        if (value !== undefined) this.set(value);
      },
    });

  total(
    "iot_readings_produced_total",
    "Readings emitted by the sensors of this process (including dropped ones).",
    (s) => s.fleet?.stats.emitted,
  );
  total(
    "iot_readings_dropped_total",
    "Readings refused by a full producer buffer or queue, so lost.",
    (s) => s.fleet?.stats.dropped,
  );
  total(
    "iot_readings_published_total",
    "Readings acknowledged by the transport (Kafka or the embedded queue).",
    (s) => s.producer?.stats.sent,
  );
  level(
    "iot_producer_buffered_readings",
    "Readings waiting in the producer buffer (embedded: the uncommitted queue).",
    (s) => s.producer?.stats.buffered,
  );
  total(
    "iot_readings_consumed_total",
    "Records of the batches the processors handled, valid or not.",
    (s) => s.processors?.stats.records,
  );
  total(
    "iot_readings_stored_total",
    "Readings written to the store and acknowledged (identical replays included, conflicts not).",
    (s) => s.writer?.stats.readings,
  );
  total(
    "iot_dead_letters_total",
    "Records sent to the dead-letter topic (embedded: kept in memory): invalid, conflicting or " +
      "late readings.",
    (s) => s.processors?.stats.deadLettered,
  );
  total(
    "iot_duplicates_dropped_total",
    "Readings ignored because their device had already applied their seq and the store holds " +
      "the same reading.",
    (s) => s.processors?.stats.duplicates,
  );
  total(
    "iot_readings_rolled_forward_total",
    "Stored readings applied again to devices restored after a crash of the embedded app (the " +
      "in-process queue cannot replay them).",
    (s) => s.processors?.stats.rolledForward,
  );
  total(
    "iot_reading_conflicts_total",
    "Readings refused because their deviceId and seq are stored with other content; the stored " +
      "reading is kept and the refused one dead-lettered.",
    (s) => s.processors?.stats.conflicts,
  );
  total(
    "iot_late_readings_total",
    "Readings whose device had already applied a later seq and that were never stored; " +
      "dead-lettered.",
    (s) => s.processors?.stats.late,
  );
  total(
    "iot_seq_gaps_total",
    "Readings whose seq skipped some of their device's seqs (a restarted or moved sensor).",
    (s) => s.processors?.stats.gaps,
  );
  total(
    "iot_seqs_skipped_total",
    "Seqs never produced: the unused rest of seq blocks (gaps are allowed; reuse never happens).",
    (s) => s.processors?.stats.skippedSeqs,
  );
  total(
    "iot_sensor_ticks_stalled_total",
    "Sensor ticks that emitted nothing because no reserved seq was left (seq ledger slow or down).",
    (s) => s.fleet?.stats.stalled,
  );
  total(
    "iot_sensor_ticks_silenced_total",
    "Sensor ticks a dropout fault silenced: no reading, no seq used (docs/faults.md).",
    (s) => s.fleet?.stats.silenced,
  );
  total(
    "iot_seq_blocks_reserved_total",
    "Seq blocks the sensors of this process reserved in the seq ledger.",
    (s) => s.fleet?.stats.seqBlocks,
  );
  total(
    "iot_seq_ledger_failures_total",
    "Seq ledger calls that failed (each retried with backoff).",
    (s) => s.fleet?.stats.seqLedgerFailures,
  );
  total(
    "iot_out_of_order_readings_total",
    "Readings whose timestamp is earlier than their device's previous reading.",
    (s) => s.processors?.stats.outOfOrder,
  );
  total(
    "iot_alerts_raised_total",
    "Overheat alerts raised.",
    (s) => s.processors?.stats.alertsRaised,
  );
  total(
    "iot_alerts_cleared_total",
    "Overheat alerts cleared.",
    (s) => s.processors?.stats.alertsCleared,
  );
  total(
    "iot_failed_batches_total",
    "Batches whose writes failed and were retried.",
    (s) => s.processors?.stats.failedBatches,
  );
  total(
    "iot_processor_failures_total",
    "Processor actors that failed (each is restored from the store by its next batch).",
    (s) => s.processors?.stats.processorFailures,
  );
  level(
    "iot_webhook_events_pending",
    "Outbox events not settled at the dispatcher's last poll (at most one poll's batch).",
    (s) => s.webhooks?.stats.pending,
  );
  total(
    "iot_webhook_deliveries_total",
    "Webhook deliveries a receiver accepted (2xx).",
    (s) => s.webhooks?.stats.delivered,
  );
  total(
    "iot_webhook_attempts_failed_total",
    "Webhook attempts that failed (no answer or a non-2xx status); each is retried or dead-lettered.",
    (s) => s.webhooks?.stats.failedAttempts,
  );
  total(
    "iot_webhook_dead_letters_total",
    "Webhook deliveries given up after the last attempt (WEBHOOK_MAX_ATTEMPTS).",
    (s) => s.webhooks?.stats.deadLettered,
  );
  level(
    "iot_webhook_dispatcher_leader",
    "1 while this process's webhook dispatcher holds the store's lease (the one that delivers).",
    (s) => s.webhooks === undefined ? undefined : Number(s.webhooks.stats.leader),
  );
  total(
    "iot_webhook_events_pruned_total",
    "Settled webhook outbox events deleted after WEBHOOK_RETENTION_MS.",
    (s) => s.webhooks?.stats.pruned,
  );
  level(
    "iot_devices_offline",
    "Devices of this member's partitions with an open offline alert (raised here, or before " +
      "the assignment and resumed from the store).",
    (s) => s.offline?.stats.devicesOffline,
  );
  new Counter({
    name: "iot_offline_episodes_total",
    help: "Offline alert episodes: raised while the device was silent, cleared by its next " +
      "reading (also episodes never noticed while open), withdrawn when the reading showed no " +
      "silence in event time.",
    labelNames: ["event"],
    registers,
    collect() {
      this.reset();
      const stats = sources().offline?.stats;
      if (!stats) return;
      this.inc({ event: "raised" }, stats.offlineRaised);
      this.inc({ event: "cleared" }, stats.offlineCleared);
      this.inc({ event: "withdrawn" }, stats.offlineWithdrawn);
    },
  });
  level("iot_active_sensors", "Sensors running in this process.", (s) => s.fleet?.stats.running);
  level(
    "iot_active_processors",
    "Device processors held in memory.",
    (s) => s.processors?.stats.activeDevices,
  );
  level(
    "iot_critical_devices",
    "Devices of this member's partitions currently critical.",
    (s) => s.processors?.stats.criticalDevices,
  );

  new Gauge({
    name: "iot_consumer_lag",
    help: "Records not yet handled per partition (Kafka: from the last fetch's high watermark; " +
      "embedded: queue depth).",
    labelNames: ["partition"],
    registers,
    collect() {
      this.reset();
      for (const [partition, lag] of sources().source?.lag() ?? []) {
        this.set({ partition: String(partition) }, lag);
      }
    },
  });
  new Gauge({
    name: "iot_mailbox_depth",
    help: "Messages waiting in actor mailboxes, summed per kind of actor.",
    labelNames: ["actors"],
    registers,
    collect() {
      this.reset();
      const s = sources();
      if (s.fleet) this.set({ actors: "sensors" }, s.fleet.stats.mailboxDepth);
      if (s.processors) this.set({ actors: "processors" }, s.processors.stats.mailboxDepth);
      if (s.writer) this.set({ actors: "store_writer" }, s.writer.stats.queued);
    },
  });
  new Gauge({
    name: "iot_sensor_faults_active",
    help: "Sensors of this process with an injected fault of each kind in effect.",
    labelNames: ["kind"],
    registers,
    collect() {
      this.reset();
      for (const [kind, n] of Object.entries(sources().fleet?.stats.faultsActive ?? {})) {
        this.set({ kind }, n);
      }
    },
  });
  new Counter({
    name: "iot_sensor_faults_injected_total",
    help: "Faults injected into the sensors of this process, per kind.",
    labelNames: ["kind"],
    registers,
    collect() {
      this.reset();
      for (const [kind, n] of Object.entries(sources().fleet?.stats.faultsInjected ?? {})) {
        this.inc({ kind }, n);
      }
    },
  });
  new Counter({
    name: "iot_supervisor_restarts_total",
    help: "Children restarted by a supervisor.",
    labelNames: ["supervisor"],
    registers,
    collect() {
      this.reset();
      const s = sources();
      if (s.fleet) this.inc({ supervisor: "sensors" }, s.fleet.stats.restarts);
    },
  });

  const emitToStored = new Histogram({
    name: "iot_emit_to_stored_seconds",
    help: "From a reading's ts (sensor event time) to the store acknowledging its write.",
    buckets: LATENCY_BUCKETS,
    registers,
  });
  const detection = new Histogram({
    name: "iot_detection_latency_seconds",
    help: "From the ts of the reading that completes the raise condition to the alert stored.",
    buckets: LATENCY_BUCKETS,
    registers,
  });

  // RED metrics of the HTTP API. Labels are bounded: a method from a fixed list, a route
  // template (all unmatched paths share one value) and a status code.
  const httpRequests = new Counter({
    name: "iot_http_requests_total",
    help: 'HTTP requests answered, by method, route template ("unmatched" when no route ' +
      "matched) and status code.",
    labelNames: ["method", "route", "code"],
    registers,
  });
  const httpDuration = new Histogram({
    name: "iot_http_request_duration_seconds",
    help: "Time from a request's arrival to its response (for a stream, its headers), by method " +
      "and route template.",
    labelNames: ["method", "route"],
    buckets: HTTP_BUCKETS,
    registers,
  });

  return {
    contentType: registry.contentType,
    httpRequest({ method, route, status }, seconds) {
      httpRequests.inc({ method, route, code: String(status) });
      httpDuration.observe({ method, route }, seconds);
    },
    scrape: () => registry.metrics(),
    readingsStored(batch, ackedAtMs) {
      for (const reading of batch.readings) {
        emitToStored.observe(Math.max(0, ackedAtMs - reading.ts.getTime()) / 1000);
      }
    },
    raiseStored(readingTs, storedAtMs) {
      detection.observe(Math.max(0, storedAtMs - Date.parse(readingTs)) / 1000);
    },
  };
}
