/**
 * The sensors role: the sensor fleet producing readings to the transport.
 * Which sensors it runs is the fleet registry's business (`fleet_role.ts`).
 * Disposing it stops the sensors, then flushes and closes the producer.
 *
 * Its sensors take their seqs from blocks reserved in the seq ledger; where
 * the process has the store, the store's last seqs are floors for devices
 * the ledger does not know yet (an upgrade; see docs/seq-ledger.md).
 *
 * @module
 */
import { SensorFleet } from "../actors/sensor_supervisor.ts";
import type { SeqLookup } from "../actors/device_store.ts";
import type { SeqLedger } from "../actors/seq_ledger.ts";
import type { Logger } from "../actors/logger.ts";
import type { AlarmRule } from "../domain/hysteresis.ts";
import type { MemoryTransport } from "../adapters/memory_transport.ts";
import type { Producer, Transport } from "../adapters/ports.ts";
import type { Config } from "../schemas/config.ts";

export interface SensorsRole extends AsyncDisposable {
  readonly fleet: SensorFleet;
  readonly producer: Producer;
}

export interface SensorsRoleOptions {
  readonly config: Pick<
    Config,
    "maxSensors" | "intervalMs" | "seed" | "seqBlock" | "offlineAfterMs"
  >;
  readonly rule: AlarmRule;
  readonly logger: Logger;
  /** Called once a removed sensor has stopped. */
  readonly onRemoved?: (id: string) => void;
  /** Sensors kept failing and the fleet's supervisor gave up: the process must go. */
  readonly onFatal: (error: unknown) => void;
}

/** Connects the producer and makes the (empty) fleet ready to run sensors. */
export async function startSensors(
  ports: {
    readonly transport: Transport;
    readonly ledger: SeqLedger;
    readonly seqs?: SeqLookup;
  },
  options: SensorsRoleOptions,
): Promise<SensorsRole> {
  const { config, rule, logger, onRemoved, onFatal } = options;
  const { transport, ledger, seqs } = ports;
  await using stack = new AsyncDisposableStack();
  const producer = await transport.producer();
  stack.defer(async () => {
    await producer.close();
    // Embedded: what the sensors produced last is still queued; let the processors drain it.
    if (transport.embedded) await waitForBacklog(transport.embedded, 10_000);
  });
  const fleet = stack.use(
    new SensorFleet({
      sink: producer,
      logger,
      cap: config.maxSensors,
      defaults: {
        intervalMs: config.intervalMs,
        rule,
        seed: config.seed,
        ...(config.offlineAfterMs !== undefined ? { offlineAfterMs: config.offlineAfterMs } : {}),
      },
      ledger,
      seqBlock: config.seqBlock,
      // Upgrade: devices stored before the ledger existed start above their stored lastSeq.
      ...(seqs ? { seqFloors: await seqs.lastSeqs() } : {}),
      ...(onRemoved ? { onRemoved } : {}),
      owner: { host: Deno.hostname(), pid: Deno.pid },
      onEscalate: onFatal,
    }),
  );
  const started = stack.move();
  return { fleet, producer, [Symbol.asyncDispose]: () => started.disposeAsync() };
}

async function waitForBacklog(queue: MemoryTransport, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  while (queue.backlog > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
  }
}
