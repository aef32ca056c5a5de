/**
 * What `/health` checks in this process: Kafka when it is the transport, the
 * store when the role uses one, the sensors' producer when the role runs
 * sensors (a producer worker that crashed refuses every reading, counted as
 * dropped: the process is degraded, not merely slow), and whether the
 * pipeline is running (or why it stopped).
 *
 * @module
 */
import type { HealthCheck } from "../adapters/health.ts";
import { kafkaSecurity, securityConfig } from "../adapters/kafka_client.ts";
import { describeStore, type Store } from "../adapters/ports.ts";
import { probeKafka, probeMongo } from "../adapters/probe.ts";
import type { Config } from "../schemas/config.ts";

/** The pipeline as `/health` reports it. */
export type PipelineStatus =
  | { readonly type: "starting" }
  | { readonly type: "running" }
  | { readonly type: "stopped"; readonly reason: unknown };

export interface HealthSources {
  /** The open store, once start-up opened it. */
  readonly store: () => Store | undefined;
  readonly pipeline: () => PipelineStatus;
  /** The sensors' producer, once start-up opened it. */
  readonly producer?: () => { readonly failure?: Error | undefined } | undefined;
}

export function healthChecks(config: Config, sources: HealthSources): HealthCheck[] {
  const checks: HealthCheck[] = [];
  const { kafkaBrokers, mongoUrl } = config;
  if (config.role !== "api" && kafkaBrokers) {
    const brokers = kafkaBrokers.join(",");
    // Read the CA bundle once, on the first probe, not on every health check.
    let security: ReturnType<typeof securityConfig> | undefined;
    checks.push({
      name: "kafka",
      probe: () => {
        security ??= securityConfig(kafkaSecurity(config, (path) => Deno.readTextFileSync(path)));
        return probeKafka(brokers, 2000, security);
      },
    });
  }
  if (config.role !== "sensors") {
    checks.push({
      name: describeStore(config).kind,
      probe: () => {
        const store = sources.store();
        if (store) return store.ping();
        return mongoUrl ? probeMongo(mongoUrl, 2000) : Promise.reject(new Error("not open"));
      },
    });
  }
  if (config.role === "all" || config.role === "sensors") {
    checks.push({
      name: "producer",
      probe: () => {
        const failure = sources.producer?.()?.failure;
        return failure ? Promise.reject(failure) : Promise.resolve();
      },
    });
  }
  checks.push({
    name: "pipeline",
    probe: () => {
      const status = sources.pipeline();
      switch (status.type) {
        case "running":
          return Promise.resolve();
        case "starting":
          return Promise.reject(new Error("starting"));
        case "stopped":
          return Promise.reject(new Error(`stopped: ${String(status.reason)}`));
        default:
          return status satisfies never;
      }
    },
  });
  return checks;
}
