/**
 * Scenario `outbox`, what webhooks cost: a topic pre-filled with readings that raise and clear
 * an overheat episode every few readings of every device (a high alert rate), drained twice by
 * the `processors` role into fresh databases of the same store — first with no webhook
 * subscription (the outbox is written either way: its events are settled undelivered), then
 * with one subscription to a local receiver that answers 204 at once. Each drain is timed from
 * the processors' launch to the acknowledgement of the write that stored its last reading: a
 * small topic is drained while the role starts, before a poll could see a first reading. The
 * second drain's readings/s divided by the first's, in the same run, is the cost of delivering;
 * the time until the receiver holds every event is the delivery lag.
 *
 * @module
 */
import { startPipeline } from "./pipeline.ts";
import { runName, type Services } from "./services.ts";
import { removeResources } from "../tests/fixtures.ts";
import { fillTopic } from "./fill_topic.ts";
import { round } from "./stats.ts";
import { sleep } from "./interrupt.ts";
import { MongoStore } from "../adapters/mongo_store.ts";
import { silentLogger } from "../adapters/log.ts";

/** Readings per episode cycle of a device: 3 hot (raised after 2), 3 cool (cleared after 2). */
const CYCLE = 6;

export interface OutboxDrain {
  readonly subscribed: boolean;
  readonly readingsPerSec: number;
  /** From the processors' launch to the last reading stored. */
  readonly drainS: number;
  /** Events the receiver got (distinct keys), and from the launch until it had all. */
  readonly delivered: number;
  readonly deliveredS?: number;
  readonly completed: boolean;
}

export interface WebhookOutboxResult {
  readonly readings: number;
  readonly devices: number;
  /** Alert transitions in the topic: one raise and one clear per cycle. */
  readonly events: number;
  readonly pollMs: number;
  readonly without: OutboxDrain;
  readonly with: OutboxDrain;
  /** `with.readingsPerSec / without.readingsPerSec`. */
  readonly ratio: number;
  /** The 1-minute load average before and after. */
  readonly load: readonly [number, number];
}

export async function webhookOutbox(
  services: Services,
  options: {
    readings: number;
    devices: number;
    pollMs: number;
    timeoutMs: number;
    log: (line: string) => void;
  },
): Promise<WebhookOutboxResult> {
  const { readings, devices, pollMs, log } = options;
  const partitions = 6;
  const load0 = Deno.loadavg()[0]!;
  const events = 2 * devices * Math.floor(readings / devices / CYCLE);
  // One topic per drain, filled alike: a drain's pipeline deletes its topic when it stops.
  const drain = async (subscribed: boolean) => {
    const topic = runName("outbox");
    try {
      await prefill(services, topic, { readings, devices, partitions });
      return await drainOnce(services, {
        topic,
        partitions,
        readings,
        events,
        pollMs,
        subscribed,
        timeoutMs: options.timeoutMs,
        log,
      });
    } finally {
      await removeResources({ topics: [topic] }, services);
    }
  };
  log(`  ${readings} readings per drain, ${events} alert events`);
  const without = await drain(false);
  log(`  without a subscription: ${without.readingsPerSec}/s, ${without.drainS} s`);
  const withHook = await drain(true);
  log(
    `  with a subscription: ${withHook.readingsPerSec}/s, ${withHook.drainS} s, ` +
      `${withHook.delivered}/${events} delivered after ${withHook.deliveredS ?? "—"} s`,
  );
  return {
    readings,
    devices,
    events,
    pollMs,
    without,
    with: withHook,
    ratio: round(withHook.readingsPerSec / Math.max(1, without.readingsPerSec), 2),
    load: [load0, Deno.loadavg()[0]!],
  };
}

async function drainOnce(
  services: Services,
  o: {
    topic: string;
    partitions: number;
    readings: number;
    events: number;
    pollMs: number;
    subscribed: boolean;
    timeoutMs: number;
    log: (line: string) => void;
  },
): Promise<OutboxDrain> {
  const db = runName("outbox-db").replaceAll("-", "_").slice(0, 60);
  const group = `${runName("outbox-group")}`;
  const keys = new Set<string>();
  const receiver = Deno.serve(
    { port: 0, hostname: "127.0.0.1", onListen: () => {} },
    async (req) => {
      await req.body?.cancel();
      keys.add(req.headers.get("idempotency-key") ?? "");
      return new Response(null, { status: 204 });
    },
  );
  try {
    if (o.subscribed) {
      await using store = await MongoStore.open(services.mongoUrl, db, silentLogger);
      await store.addWebhook({
        _id: crypto.randomUUID(),
        url: `http://127.0.0.1:${receiver.addr.port}/hook`,
        events: ["raise", "clear"],
        secret: "bench-outbox-secret-0123",
        createdAt: new Date(),
      });
    }
    const t0 = performance.now();
    await using run = await startPipeline(services, {
      role: "processors",
      partitions: o.partitions,
      topic: o.topic,
      settings: {
        KAFKA_GROUP: group,
        MONGO_DB: db,
        WEBHOOK_POLL_MS: String(o.pollMs),
        WEBHOOK_ALLOW_NETWORKS: "127.0.0.1",
      },
    });
    let last = 0;
    let deliveredAt = 0;
    let lastLog = t0;
    while (performance.now() - t0 < o.timeoutMs) {
      const stored = run.storedCount;
      const now = performance.now();
      if (now - lastLog >= 10_000) {
        lastLog = now;
        o.log(
          `  t=${round((now - t0) / 1000, 1)}s stored ${stored}/${o.readings}, ` +
            `delivered ${keys.size}/${o.subscribed ? o.events : 0}`,
        );
      }
      if (stored >= o.readings && last === 0) last = run.lastStoredAt || now;
      if (keys.size >= o.events && deliveredAt === 0) deliveredAt = now;
      if (last && (!o.subscribed || deliveredAt)) break;
      await sleep(100);
    }
    const end = last || performance.now();
    const seconds = (end - t0) / 1000;
    return {
      subscribed: o.subscribed,
      readingsPerSec: Math.round(run.storedCount / seconds),
      drainS: round(seconds, 1),
      delivered: keys.size,
      ...(deliveredAt ? { deliveredS: round((deliveredAt - t0) / 1000, 1) } : {}),
      completed: last > 0 && (!o.subscribed || deliveredAt > 0),
    };
  } finally {
    await receiver.shutdown();
    await removeResources({ groups: [group], db }, services);
  }
}

/** Readings round-robin over the devices, each device cycling hot and cool (in order per key). */
async function prefill(
  services: Services,
  topic: string,
  o: { readings: number; devices: number; partitions: number },
) {
  await fillTopic(services, topic, {
    ...o,
    reading: (device, seq, tsMs) => ({
      deviceId: `hot-${String(device).padStart(5, "0")}`,
      seq,
      ts: new Date(tsMs).toISOString(),
      temperature: (seq - 1) % CYCLE < CYCLE / 2 ? 90 : 40,
      humidity: 40,
      location: { lat: 48.85, lon: 2.35 },
    }),
  });
}
