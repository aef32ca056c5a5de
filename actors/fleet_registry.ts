/**
 * Port: the fleet registry — the durable record of which sensors should run
 * and how (one `SensorSpec` per sensor). Deno KV implements it in embedded
 * mode, a compacted Kafka topic in Kafka mode. A write resolves only once it
 * is durable, so the API answers after the fleet would survive a crash.
 *
 * @module
 */
import type { SensorSpec } from "../schemas/sensor_spec.ts";

/** What the registry holds: the desired fleet, and whether `--sensors N` ever seeded it. */
export interface RegistrySnapshot {
  readonly specs: readonly SensorSpec[];
  readonly seeded: boolean;
}

/** Port: the durable desired fleet. */
export interface FleetRegistry {
  /** Everything recorded, as of now (Kafka: caught up with every write acknowledged so far). */
  load(): Promise<RegistrySnapshot>;
  /** Records (or replaces) these specs; with `seeded`, also marks the registry as seeded. */
  put(specs: readonly SensorSpec[], options?: { readonly seeded?: boolean }): Promise<void>;
  /** Records that the sensor is removed. */
  remove(id: string): Promise<void>;
}

/**
 * Port: a registry every process can read (Kafka mode): a replica of the
 * whole registry that follows every write.
 */
export interface RegistryView extends FleetRegistry {
  /** Resolves once the view includes every write acknowledged before the call. */
  catchUp(): Promise<void>;
  /** The sensor's spec as the view has it. */
  spec(id: string): SensorSpec | undefined;
  /** Every sensor id, sorted. */
  ids(): readonly string[];
  readonly size: number;
  /** The registry partition the sensor's record lives in (decides which process runs it). */
  partitionOf(id: string): number;
}
