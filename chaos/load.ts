/**
 * The harness-driven loads: readings produced straight to Kafka with a ledger
 * of what the broker acknowledged, the scripted-sensor load of the broker
 * outage scenario, and the bad records injected into the stream.
 *
 * @module
 */
import { encodeReading } from "../schemas/reading.ts";
import { harnessProducer, type Kafka, type Message } from "./kafka.ts";
import { AppProcess, sleep } from "./processes.ts";

/** A temperature cycle that crosses the default alarm band both ways. */
export const CYCLE = [60, 81, 85, 90, 79, 75, 69, 65, 62, 72];

export interface LoadSettings {
  readonly readings: number;
  readonly devices: number;
  /** Readings per second. */
  readonly rate: number;
}

/** Highest seq Kafka acknowledged per device; sends are in order, so everything below too. */
export type Ledger = Map<string, number>;

export function readingValue(deviceId: string, index: number, seq: number): string {
  return encodeReading({
    deviceId,
    seq,
    ts: new Date(Date.UTC(2026, 0, 1) + seq * 1000).toISOString(),
    temperature: CYCLE[(seq + index) % CYCLE.length]!,
    humidity: 40,
    location: { lat: 48.85, lon: 2.35 },
  });
}

/** Produces `s.readings` readings for `s.devices` devices at `s.rate`, recording acks in `ledger`. */
export async function produce(
  kafka: Kafka,
  topic: string,
  s: LoadSettings,
  ledger: Ledger,
  onProgress: (fraction: number) => void,
): Promise<void> {
  const producer = harnessProducer(kafka);
  await producer.connect();
  const ids = Array.from({ length: s.devices }, (_, i) => `chaos-${String(i).padStart(4, "0")}`);
  const perTick = Math.max(1, Math.round(s.rate / 10));
  let sent = 0;
  let next = 0;
  while (sent < s.readings) {
    const started = Date.now();
    const messages: Message[] = [];
    const batchMax = new Map<string, number>();
    for (let i = 0; i < perTick && sent + messages.length < s.readings; i++) {
      const d = next++ % s.devices;
      const id = ids[d]!;
      const seq = (batchMax.get(id) ?? ledger.get(id) ?? 0) + 1;
      batchMax.set(id, seq);
      messages.push({ key: id, value: readingValue(id, d, seq) });
    }
    // Retry the same batch until the broker takes it: order is kept, duplicates are allowed.
    for (let attempt = 0;; attempt++) {
      try {
        await producer.send({ topic, acks: -1, messages });
        break;
      } catch {
        await sleep(Math.min(2000, 200 * 2 ** Math.min(attempt, 4)));
      }
    }
    for (const [id, seq] of batchMax) ledger.set(id, seq);
    sent += messages.length;
    onProgress(sent / s.readings);
    await sleep(Math.max(0, 100 - (Date.now() - started)));
  }
  await producer.disconnect().catch(() => {});
}

/** How long the scripted-sensor load lasts, so a 60 s outage lands mid-stream. */
const SCRIPTED_LOAD_MS = 100_000;

/**
 * The load from the app's own sensors role: scripted sensors, each emitting its script once.
 * Every reading a sensor emits must end up stored (the producer retries from its buffer), so the
 * ledger is the script length per device, and the sensors process must end with none dropped.
 */
export async function produceWithScriptedSensors(
  env: Record<string, string>,
  s: LoadSettings,
  ledger: Ledger,
  log: string,
  onProgress: (fraction: number) => void,
  note: (event: string) => void,
): Promise<void> {
  const perDevice = Math.max(1, Math.round(s.readings / s.devices));
  const intervalMs = Math.max(100, Math.round(SCRIPTED_LOAD_MS / perDevice));
  const sensors = new AppProcess("sensors", {
    flags: ["--role", "sensors", "--sensors", "0"],
    env,
    log,
  });
  const stats = async () => {
    const body = await (await fetch(sensors.healthUrl)).json();
    return body.stats as {
      sensors: { emitted: number; dropped: number };
      producer: { sent: number; dropped: number; buffered: number };
    };
  };
  try {
    sensors.start();
    await sensors.healthy();
    const res = await fetch(`${sensors.url}/sensors`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        count: s.devices,
        idPrefix: "chaos",
        profile: "scripted",
        intervalMs,
        temperatures: Array.from({ length: perDevice }, (_, i) => CYCLE[i % CYCLE.length]),
      }),
    });
    if (res.status !== 201) {
      throw new Error(`Add sensors failed: ${res.status} ${await res.text()}`);
    }
    const { ids } = await res.json() as { ids: string[] };
    for (const id of ids) ledger.set(id, perDevice);
    const total = ids.length * perDevice;
    const started = Date.now();
    let peakBuffered = 0;
    for (;;) {
      await sleep(500);
      const now = await stats().catch(() => undefined);
      if (!now) continue;
      peakBuffered = Math.max(peakBuffered, now.producer.buffered);
      onProgress(Math.min(0.999, (Date.now() - started) / (perDevice * intervalMs)));
      if (now.sensors.emitted >= total && now.producer.buffered === 0) {
        if (now.sensors.dropped > 0 || now.producer.dropped > 0) {
          throw new Error(`The sensors role dropped readings: "${now.sensors.dropped}"`);
        }
        break;
      }
    }
    note(
      `sensors emitted ${total} readings, none dropped; producer buffer peaked at ${peakBuffered}`,
    );
    onProgress(1);
  } finally {
    const code = await sensors.kill("SIGTERM");
    if (code !== 0) note(`sensors role exited with ${code}`);
  }
}

/** Malformed, oversized and replayed (duplicate, out-of-order) records, straight to the topic. */
export async function injectBadRecords(
  kafka: Kafka,
  topic: string,
  ledger: Ledger,
  note: (event: string) => void,
): Promise<void> {
  const producer = harnessProducer(kafka);
  await producer.connect();
  const acked = [...ledger].filter(([, seq]) => seq > 2).slice(0, 10);
  const messages: Message[] = [
    { key: "chaos-0000", value: "{not json" },
    { key: "chaos-0000", value: JSON.stringify({ deviceId: "chaos-0000", seq: "x" }) },
    { key: "chaos-0001", value: "x".repeat(300_000) },
    // Already acknowledged readings again: duplicates, and older than what follows them.
    ...acked.map(([id, seq]) => ({
      key: id,
      value: readingValue(id, Number(id.slice(6)), seq - 1),
    })),
  ];
  try {
    await producer.send({ topic, acks: -1, messages });
  } finally {
    await producer.disconnect().catch(() => {});
  }
  note(`injected 3 invalid + ${acked.length} replayed records`);
}
