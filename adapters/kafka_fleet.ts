/**
 * The fleet on Kafka. Three topics next to the readings topic:
 *
 * - the registry (`<readings>.sensors`, compacted): key = sensor id, value =
 *   its spec, a null value (tombstone) removes it; the key `#seeded` marks the
 *   `--sensors N` seed. Each record goes to the partition kafkajs's default
 *   partitioner picks for its key, computed here once (`partitionFor`) so the
 *   API maps a sensor to its partition exactly as the producer did.
 * - the status topic (`<registry>.status`, compacted): each sensors process
 *   publishes which partitions it runs, every few seconds.
 * - the commands topic (`<registry>.commands`): overheat orders, read from the
 *   latest offset by every sensors process.
 *
 * Sensors processes form one consumer group on the registry; each runs the
 * sensors of the partitions it owns (`KafkaFleetMember`). Every process keeps
 * a replica of the whole registry under a group of its own
 * (`KafkaRegistryView`) to answer the API. Nothing is ever committed: every
 * assignment reads its partitions from the beginning.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import type {
  Admin,
  Consumer,
  EachBatchPayload,
  Kafka,
  KafkaMessage,
  PartitionMetadata,
  Producer,
} from "kafkajs";
import { Partitioners } from "kafkajs";
import type { Logger } from "../actors/logger.ts";
import type { RegistrySnapshot, RegistryView } from "../actors/fleet_registry.ts";
import {
  type FleetChange,
  type RegistryRecord,
  RegistryReplica,
} from "../actors/registry_replica.ts";
import type { SensorFleet } from "../actors/sensor_supervisor.ts";
import type { FleetCommands, FleetPlacement, SensorOwner } from "../actors/sensor_control.ts";
import type { FaultKind, FaultOrder } from "../domain/sensor_faults.ts";
import { decodeSpec, encodeSpec, type SensorSpec } from "../schemas/sensor_spec.ts";
import {
  decodeCommand,
  decodeStatus,
  type FleetStatus,
  type SensorCommand,
} from "../schemas/fleet_messages.ts";

/** The registry key of the seed marker: not a valid sensor id, so it never names a sensor. */
export const SEEDED_KEY = "#seeded";
/** Records per produce request: large batches stay under the broker's batch size limit. */
const SEND_CHUNK = 2000;

export interface FleetTopics {
  readonly registry: string;
  readonly status: string;
  readonly commands: string;
}

/** The registry, status and commands topics of a registry topic name. */
export function fleetTopics(registry: string): FleetTopics {
  return { registry, status: `${registry}.status`, commands: `${registry}.commands` };
}

/** Topic configs: the registry and status topics keep the last record per key. */
export const FLEET_TOPIC_CONFIGS = {
  registry: [{ name: "cleanup.policy", value: "compact" }],
  status: [{ name: "cleanup.policy", value: "compact" }],
  commands: [{ name: "retention.ms", value: String(60 * 60 * 1000) }],
} as const;

const defaultPartitioner = Partitioners.DefaultPartitioner();

/** The partition kafkajs's default partitioner picks for a key among `partitions`. */
export function partitionFor(key: string, partitions: number): number {
  const partitionMetadata = Array.from({ length: partitions }, (_, partitionId) => ({
    partitionErrorCode: 0,
    partitionId,
    leader: 0,
    replicas: [0],
    isr: [0],
  } satisfies PartitionMetadata));
  return defaultPartitioner({
    topic: "registry",
    partitionMetadata,
    message: { key, value: null },
  });
}

/** A registry record as the replica reads it; an unreadable one is skipped, not fatal. */
export function decodeRegistryRecord(message: KafkaMessage, log?: Logger): RegistryRecord {
  const offset = Number(message.offset);
  const key = message.key?.toString("utf8");
  if (key === SEEDED_KEY) return { offset, type: "seeded" };
  if (!key) return { offset, type: "skip" };
  if (!message.value || message.value.length === 0) return { offset, type: "remove", id: key };
  const decoded = decodeSpec(message.value);
  if (decoded.ok && decoded.spec.id === key) return { offset, type: "put", spec: decoded.spec };
  log?.error("unreadable registry record skipped", {
    key: key.slice(0, 80),
    offset: message.offset,
    reason: decoded.ok ? `key does not match id "${decoded.spec.id}"` : decoded.reason,
  });
  return { offset, type: "skip" };
}

export class RegistryTimeoutError extends Error {
  override name = "RegistryTimeoutError";
}

interface FollowerOptions {
  readonly topic: string;
  readonly groupId: string;
  readonly sessionTimeoutMs: number;
  readonly logger: Logger;
  /** Applied one call at a time, in order; the next batch waits for it. */
  readonly onChanges?: (changes: readonly FleetChange[]) => Promise<void>;
  /** After each assignment, with the consumer-group member id. */
  readonly onAssignment?: (partitions: readonly number[], memberId: string) => void;
  /** After a partition caught up. */
  readonly onLive?: (partition: number) => void;
  /** The consumer stopped for good (kafkajs gave up restarting it). */
  readonly onFatal?: (error: unknown) => void;
}

/** A consumer-group member that keeps a `RegistryReplica` of the partitions it is assigned. */
class RegistryFollower {
  readonly replica = new RegistryReplica();
  readonly #consumer: Consumer;
  readonly #admin: Admin;
  readonly #opts: FollowerOptions;
  readonly #log: Logger;
  #applying: Promise<void> = Promise.resolve();
  #generation = 0;
  memberId = "";

  constructor(kafka: Kafka, admin: Admin, options: FollowerOptions) {
    this.#opts = options;
    this.#admin = admin;
    this.#log = options.logger;
    this.#consumer = kafka.consumer({
      groupId: options.groupId,
      sessionTimeout: options.sessionTimeoutMs,
      rebalanceTimeout: Math.max(options.sessionTimeoutMs, 10_000),
      heartbeatInterval: Math.max(500, Math.floor(options.sessionTimeoutMs / 10)),
      maxWaitTimeInMs: 100,
      retry: { retries: 10, initialRetryTime: 300, maxRetryTime: 10_000 },
    });
  }

  async start(): Promise<void> {
    const c = this.#consumer;
    const { topic } = this.#opts;
    c.on(c.events.GROUP_JOIN, ({ payload }) => {
      const partitions = payload.memberAssignment[topic] ?? [];
      this.memberId = payload.memberId;
      const generation = ++this.#generation;
      this.#enqueue(this.replica.assign(partitions));
      this.#log.info("registry partitions assigned", { memberId: payload.memberId, partitions });
      this.#opts.onAssignment?.(partitions, payload.memberId);
      void this.#fetchTargets(generation, partitions);
    });
    c.on(c.events.CRASH, ({ payload }) => {
      this.#log.error("registry consumer crashed", {
        error: payload.error,
        restart: payload.restart,
      });
      if (!payload.restart) this.#opts.onFatal?.(payload.error);
    });
    await c.connect();
    await c.subscribe({ topic, fromBeginning: true });
    await c.run({
      autoCommit: false,
      eachBatch: (payload) => this.#onBatch(payload),
    });
  }

  async #onBatch({ batch, isStale, heartbeat }: EachBatchPayload): Promise<void> {
    if (isStale() || batch.messages.length === 0) return;
    const records = batch.messages.map((m) => decodeRegistryRecord(m, this.#log));
    const wasLive = this.replica.isLive(batch.partition);
    this.#enqueue(this.replica.apply(batch.partition, records));
    if (!wasLive && this.replica.isLive(batch.partition)) this.#opts.onLive?.(batch.partition);
    await this.#applying;
    await heartbeat();
  }

  /** The high watermarks at assignment: each partition is live once read up to its own. */
  async #fetchTargets(generation: number, partitions: readonly number[]): Promise<void> {
    for (let attempt = 1;; attempt++) {
      try {
        const offsets = await this.#admin.fetchTopicOffsets(this.#opts.topic);
        if (generation !== this.#generation) return;
        for (const { partition, low, high } of offsets) {
          if (!partitions.includes(partition)) continue;
          const wasLive = this.replica.isLive(partition);
          this.#enqueue(this.replica.target(partition, Number(low), Number(high)));
          if (!wasLive && this.replica.isLive(partition)) this.#opts.onLive?.(partition);
        }
        return;
      } catch (error) {
        if (generation !== this.#generation) return;
        this.#log.warn("cannot read the registry's offsets; retrying", {
          attempt,
          error: error as Error,
        });
        await new Promise((r) => setTimeout(r, Math.min(5000, 200 * 2 ** attempt)));
      }
    }
  }

  #enqueue(changes: readonly FleetChange[]) {
    const apply = this.#opts.onChanges;
    if (changes.length === 0 || !apply) return;
    this.#applying = this.#applying.then(() => apply(changes)).catch((error) =>
      this.#log.error("applying registry changes failed", { error: error as Error })
    );
  }

  /** Waits for the changes handed out so far to be applied. */
  settled(): Promise<void> {
    return this.#applying;
  }

  async stop(): Promise<void> {
    this.#generation++;
    await this.#consumer.disconnect();
  }
}

export interface KafkaFleetOptions {
  readonly topics: FleetTopics;
  /** The sensors processes' consumer group on the registry. */
  readonly group: string;
  readonly sessionTimeoutMs: number;
  readonly logger: Logger;
  /** How long a write waits for the view to catch up before failing. */
  readonly catchUpTimeoutMs?: number;
  /**
   * A registry consumer stopped for good: the process should exit so a
   * supervisor restarts it (its replica would silently go stale otherwise).
   */
  readonly onFatal?: (error: unknown) => void;
}

/**
 * The registry as every process sees it: a replica of all partitions (a
 * consumer group of its own), written with acks=all, plus the sensors
 * processes' status board and the command sender.
 */
export class KafkaRegistryView implements RegistryView, FleetPlacement, FleetCommands {
  readonly #kafka: Kafka;
  readonly #admin: Admin;
  readonly #producer: Producer;
  readonly #opts: KafkaFleetOptions;
  readonly #log: Logger;
  readonly #viewGroup: string;
  readonly #statusGroup: string;
  readonly #follower: RegistryFollower;
  readonly #statusConsumer: Consumer;
  readonly #statuses = new Map<string, FleetStatus>();
  #partitions = 1;
  #sortedIds: string[] | undefined;

  constructor(kafka: Kafka, options: KafkaFleetOptions) {
    this.#kafka = kafka;
    this.#opts = options;
    this.#log = options.logger.child({ component: "registry" });
    this.#admin = kafka.admin();
    this.#producer = kafka.producer({ allowAutoTopicCreation: false });
    const instance = crypto.randomUUID();
    this.#viewGroup = `${options.group}-view-${instance}`;
    this.#statusGroup = `${options.group}-status-${instance}`;
    this.#follower = new RegistryFollower(kafka, this.#admin, {
      topic: options.topics.registry,
      groupId: this.#viewGroup,
      sessionTimeoutMs: options.sessionTimeoutMs,
      logger: this.#log,
      ...(options.onFatal ? { onFatal: options.onFatal } : {}),
      onChanges: () => {
        this.#sortedIds = undefined;
        return Promise.resolve();
      },
    });
    this.#statusConsumer = kafka.consumer({
      groupId: this.#statusGroup,
      sessionTimeout: options.sessionTimeoutMs,
      heartbeatInterval: Math.max(500, Math.floor(options.sessionTimeoutMs / 10)),
      maxWaitTimeInMs: 200,
    });
  }

  async start(): Promise<void> {
    await this.#admin.connect();
    await this.#producer.connect();
    const { topics } = await this.#admin.fetchTopicMetadata({
      topics: [this.#opts.topics.registry],
    });
    this.#partitions = topics[0]?.partitions.length ?? 1;
    await this.#follower.start();
    await this.#statusConsumer.connect();
    await this.#statusConsumer.subscribe({ topic: this.#opts.topics.status, fromBeginning: true });
    await this.#statusConsumer.run({
      autoCommit: false,
      eachMessage: ({ message }) => {
        const key = message.key?.toString("utf8");
        if (!key) return Promise.resolve();
        if (!message.value || message.value.length === 0) {
          this.#statuses.delete(key);
          return Promise.resolve();
        }
        const decoded = decodeStatus(message.value);
        if (decoded.ok) this.#statuses.set(key, decoded.value);
        return Promise.resolve();
      },
    });
    await this.catchUp();
  }

  get partitions(): number {
    return this.#partitions;
  }

  async catchUp(): Promise<void> {
    const timeoutMs = this.#opts.catchUpTimeoutMs ?? 15_000;
    const deadline = Date.now() + timeoutMs;
    const offsets = await this.#admin.fetchTopicOffsets(this.#opts.topics.registry);
    const replica = this.#follower.replica;
    // Caught up: every partition live and read up to the high watermark seen now.
    const behind = () =>
      offsets.some(({ partition, high }) =>
        !replica.isLive(partition) || replica.position(partition) < Number(high)
      );
    while (behind()) {
      if (Date.now() > deadline) {
        throw new RegistryTimeoutError(
          `Fleet registry not caught up: "${this.#opts.topics.registry}" after ${timeoutMs} ms`,
        );
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async load(): Promise<RegistrySnapshot> {
    await this.catchUp();
    const replica = this.#follower.replica;
    return { specs: [...replica.specs()], seeded: replica.seeded };
  }

  async put(specs: readonly SensorSpec[], options: { seeded?: boolean } = {}): Promise<void> {
    const messages = specs.map((spec) => ({
      key: spec.id,
      value: encodeSpec(spec),
      partition: this.partitionOf(spec.id),
    }));
    if (options.seeded) {
      messages.push({
        key: SEEDED_KEY,
        value: JSON.stringify({ at: new Date().toISOString(), count: specs.length }),
        partition: this.partitionOf(SEEDED_KEY),
      });
    }
    await this.#send(this.#opts.topics.registry, messages);
    await this.catchUp();
  }

  async remove(id: string): Promise<void> {
    await this.#send(this.#opts.topics.registry, [
      { key: id, value: null, partition: this.partitionOf(id) },
    ]);
    await this.catchUp();
  }

  spec(id: string): SensorSpec | undefined {
    return this.#follower.replica.spec(id);
  }

  ids(): readonly string[] {
    this.#sortedIds ??= [...this.#follower.replica.specs()].map((s) => s.id).sort();
    return this.#sortedIds;
  }

  get size(): number {
    return this.#follower.replica.size;
  }

  partitionOf(id: string): number {
    return partitionFor(id, this.#partitions);
  }

  ownerOf(partition: number): SensorOwner | undefined {
    // A status older than a session timeout belongs to a process the group has dropped.
    const freshAfter = Date.now() - this.#opts.sessionTimeoutMs;
    let best: FleetStatus | undefined;
    for (const status of this.#statuses.values()) {
      if (!status.partitions.includes(partition)) continue;
      const at = Date.parse(status.at);
      if (at < freshAfter) continue;
      if (!best || at > Date.parse(best.at)) best = status;
    }
    return best && { host: best.host, pid: best.pid, member: best.member };
  }

  async overheat(id: string, order: { readings: number; temperature: number }): Promise<void> {
    const command: SensorCommand = { type: "overheat", id, ...order };
    await this.#send(this.#opts.topics.commands, [{ key: id, value: JSON.stringify(command) }]);
  }

  async fault(id: string, order: FaultOrder): Promise<void> {
    const command: SensorCommand = { type: "fault", id, fault: order };
    await this.#send(this.#opts.topics.commands, [{ key: id, value: JSON.stringify(command) }]);
  }

  async clearFaults(id: string, kind?: FaultKind): Promise<void> {
    const command: SensorCommand = { type: "clear-faults", id, ...(kind ? { kind } : {}) };
    await this.#send(this.#opts.topics.commands, [{ key: id, value: JSON.stringify(command) }]);
  }

  async #send(
    topic: string,
    messages: readonly { key: string; value: string | null; partition?: number }[],
  ): Promise<void> {
    for (let i = 0; i < messages.length; i += SEND_CHUNK) {
      await this.#producer.send({
        topic,
        acks: -1,
        messages: messages.slice(i, i + SEND_CHUNK).map((m) => ({
          key: m.key,
          value: m.value === null ? null : Buffer.from(m.value),
          ...(m.partition === undefined ? {} : { partition: m.partition }),
        })),
      });
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.#follower.stop().catch(() => {});
    await this.#statusConsumer.disconnect().catch(() => {});
    await this.#producer.disconnect().catch(() => {});
    // Groups of one process: remove them rather than leave them to expire.
    await this.#admin.deleteGroups([this.#viewGroup, this.#statusGroup]).catch(() => {});
    await this.#admin.disconnect();
  }
}

export interface KafkaFleetMemberOptions extends KafkaFleetOptions {
  readonly fleet: SensorFleet;
  readonly host: string;
  readonly pid: number;
  /** Time between two status records. */
  readonly statusIntervalMs?: number;
}

/**
 * A sensors process: a member of the sensors group on the registry that runs
 * the sensors of the partitions it owns in its `SensorFleet`, applies
 * overheat commands to them and publishes its status.
 */
export class KafkaFleetMember implements AsyncDisposable {
  readonly #admin: Admin;
  readonly #producer: Producer;
  readonly #commands: Consumer;
  readonly #follower: RegistryFollower;
  readonly #opts: KafkaFleetMemberOptions;
  readonly #log: Logger;
  readonly #instance = crypto.randomUUID();
  readonly #commandsGroup: string;
  #timer: ReturnType<typeof setInterval> | undefined;
  #closing = false;

  constructor(kafka: Kafka, options: KafkaFleetMemberOptions) {
    this.#opts = options;
    this.#log = options.logger.child({ component: "fleet member" });
    this.#admin = kafka.admin();
    this.#producer = kafka.producer({ allowAutoTopicCreation: false });
    this.#commandsGroup = `${options.group}-commands-${this.#instance}`;
    this.#commands = kafka.consumer({
      groupId: this.#commandsGroup,
      sessionTimeout: options.sessionTimeoutMs,
      heartbeatInterval: Math.max(500, Math.floor(options.sessionTimeoutMs / 10)),
      maxWaitTimeInMs: 100,
    });
    this.#follower = new RegistryFollower(kafka, this.#admin, {
      topic: options.topics.registry,
      groupId: options.group,
      sessionTimeoutMs: options.sessionTimeoutMs,
      logger: this.#log,
      ...(options.onFatal ? { onFatal: options.onFatal } : {}),
      onChanges: (changes) => this.#apply(changes),
      onAssignment: () => void this.#publish(),
      onLive: () => void this.#follower.settled().then(() => this.#publish()),
    });
  }

  async start(): Promise<void> {
    await this.#admin.connect();
    await this.#producer.connect();
    await this.#commands.connect();
    await this.#commands.subscribe({ topic: this.#opts.topics.commands, fromBeginning: false });
    await this.#commands.run({
      autoCommit: false,
      eachMessage: ({ message }) => {
        if (message.value) this.#command(message.value);
        return Promise.resolve();
      },
    });
    await this.#follower.start();
    const every = this.#opts.statusIntervalMs ?? Math.max(500, this.#opts.sessionTimeoutMs / 4);
    this.#timer = setInterval(() => void this.#publish(), every);
  }

  /** Registry partitions this process owns and runs. */
  get partitions(): readonly number[] {
    const replica = this.#follower.replica;
    return replica.partitions.filter((p) => replica.isLive(p));
  }

  async #apply(changes: readonly FleetChange[]): Promise<void> {
    const { fleet } = this.#opts;
    let started = 0;
    let stopped = 0;
    for (const change of changes) {
      if (this.#closing) return;
      switch (change.type) {
        case "start":
          if (await fleet.start(change.spec) !== "unchanged") started++;
          break;
        case "stop":
          if (await fleet.remove(change.id)) stopped++;
          break;
        default:
          change satisfies never;
      }
    }
    if (started + stopped > 0) {
      this.#log.info("fleet changed", { started, stopped, running: fleet.size });
    }
  }

  #command(value: Uint8Array) {
    const decoded = decodeCommand(value);
    if (!decoded.ok) {
      this.#log.warn("unreadable sensor command skipped", { reason: decoded.reason });
      return;
    }
    const command = decoded.value;
    switch (command.type) {
      case "overheat": {
        if (!this.#opts.fleet.has(command.id)) return;
        const result = this.#opts.fleet.overheat(command.id, {
          readings: command.readings,
          temperature: command.temperature,
        });
        if (!result.ok) {
          this.#log.warn("overheat refused", { id: command.id, reason: result.message });
        }
        break;
      }
      case "fault": {
        if (!this.#opts.fleet.has(command.id)) return;
        const result = this.#opts.fleet.injectFault(command.id, command.fault);
        if (!result.ok) {
          this.#log.warn("fault refused", { id: command.id, reason: result.message });
        }
        break;
      }
      case "clear-faults":
        if (!this.#opts.fleet.has(command.id)) return;
        this.#opts.fleet.clearFaults(command.id, command.kind);
        break;
      default:
        command satisfies never;
    }
  }

  async #publish(): Promise<void> {
    if (this.#closing) return;
    const { fleet } = this.#opts;
    const status: FleetStatus = {
      instance: this.#instance,
      member: this.#follower.memberId,
      host: this.#opts.host,
      pid: this.#opts.pid,
      partitions: [...this.partitions],
      running: fleet.stats.running,
      sensors: fleet.size,
      at: new Date().toISOString(),
    };
    try {
      await this.#producer.send({
        topic: this.#opts.topics.status,
        acks: 1,
        messages: [{ key: this.#instance, value: JSON.stringify(status) }],
      });
    } catch (error) {
      this.#log.warn("cannot publish the fleet status", { error: error as Error });
    }
  }

  /** Stops the sensors first, then leaves the group so the others take them over. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.#closing = true;
    clearInterval(this.#timer);
    await this.#follower.settled();
    await this.#opts.fleet.stop();
    await this.#producer.send({
      topic: this.#opts.topics.status,
      acks: 1,
      messages: [{ key: this.#instance, value: null }],
    }).catch(() => {});
    await this.#follower.stop().catch(() => {});
    await this.#commands.disconnect().catch(() => {});
    await this.#producer.disconnect().catch(() => {});
    await this.#admin.deleteGroups([this.#commandsGroup]).catch(() => {});
    await this.#admin.disconnect();
  }
}
