/**
 * The scenarios whose load is the harness's own producer: each names the
 * processors it runs and the faults it injects, at a fraction of the load.
 * {@linkcode runScenario} in `run.ts` runs one.
 *
 * @module
 */
import type { Kafka } from "./kafka.ts";
import { injectBadRecords, type Ledger } from "./load.ts";
import { type AppProcess, killService, outage, sleep, stack } from "./processes.ts";

/** KAFKA_GIVE_UP_MS of the `broker-gone` scenario's processor. */
const GIVE_UP_MS = 10_000;

export interface Fault<Context> {
  /** Fraction of the load sent when the fault starts. */
  readonly at: number;
  readonly name: string;
  readonly run: (ctx: Context) => Promise<void>;
}

export interface Scenario {
  readonly id: string;
  readonly title: string;
  readonly processors: number;
  readonly faults: readonly Fault<RunContext>[];
  /** Scenarios that stop a service need it to be the harness's own stack. */
  readonly needsLocalStack?: boolean;
  /**
   * Who produces the load: the harness's own producer (default, a ledger of acknowledged
   * records), or the app's sensors role (scripted sensors; the ledger is every reading they emit).
   */
  readonly load?: "harness" | "sensors";
  /** Extra settings for the processor processes. */
  readonly processorEnv?: Readonly<Record<string, string>>;
}

export interface RunContext {
  readonly processors: readonly AppProcess[];
  readonly kafka: Kafka;
  readonly topic: string;
  readonly ledger: Ledger;
  note(event: string): void;
}

export const SCENARIOS: readonly Scenario[] = [
  {
    id: "kill9",
    title: "1. kill -9 of the only processor mid-stream, restart",
    processors: 1,
    faults: [{
      at: 0.4,
      name: "SIGKILL processor",
      run: async (ctx) => {
        await ctx.processors[0]!.kill("SIGKILL");
        await sleep(1000);
        ctx.processors[0]!.start();
      },
    }],
  },
  {
    id: "rebalance",
    title: "2. two processors; kill -9 one (rebalance), later restart it (rebalance back)",
    processors: 2,
    faults: [
      {
        at: 0.3,
        name: "SIGKILL processor 2",
        run: async (ctx) => void await ctx.processors[1]!.kill("SIGKILL"),
      },
      {
        at: 0.6,
        name: "restart processor 2",
        run: (ctx) => Promise.resolve(ctx.processors[1]!.start()),
      },
    ],
  },
  {
    id: "freeze",
    title: "3. a processor frozen (SIGSTOP) beyond the session timeout, then resumed",
    processors: 2,
    faults: [{
      at: 0.3,
      name: "SIGSTOP processor 1 for 40 s",
      run: async (ctx) => {
        ctx.processors[0]!.signal("SIGSTOP");
        await sleep(40_000);
        ctx.processors[0]!.signal("SIGCONT");
      },
    }],
  },
  {
    id: "broker",
    title: "4. broker restart mid-stream",
    processors: 1,
    needsLocalStack: true,
    faults: [{
      at: 0.4,
      name: "restart Kafka",
      run: async () => {
        await stack("down", "kafka");
        await stack("up");
      },
    }],
  },
  {
    id: "broker-outage",
    title: "4b. Kafka down for 60 s while the app's own sensors produce (the producer buffer)",
    processors: 1,
    needsLocalStack: true,
    load: "sensors",
    faults: [{
      at: 0.25,
      name: "stop Kafka for 60 s",
      run: outage("kafka", 60_000),
    }],
  },
  {
    id: "broker-gone",
    title: "4c. Kafka gone beyond KAFKA_GIVE_UP_MS: /health says so, the processor exits 1",
    processors: 1,
    needsLocalStack: true,
    processorEnv: { KAFKA_GIVE_UP_MS: String(GIVE_UP_MS) },
    faults: [{
      at: 0.4,
      name: `stop Kafka until the processor gives up (KAFKA_GIVE_UP_MS=${GIVE_UP_MS})`,
      run: async (ctx) => {
        const processor = ctx.processors[0]!;
        const exitsBefore = processor.exitCodes.length;
        await stack("down", "kafka");
        const stoppedAt = Date.now();
        // Shutdown after giving up may wait for its 30 s deadline with the broker gone.
        const deadline = stoppedAt + GIVE_UP_MS + 45_000;
        let reported = false;
        let reason = false;
        // Overlapping polls: a health check waits for its Kafka probe to time out. Until the
        // process gives up, /health must say 503 with the Kafka check failing.
        const polls: Promise<void>[] = [];
        while (processor.exitCodes.length === exitsBefore && Date.now() < deadline) {
          polls.push(
            fetch(processor.healthUrl).then(async (res) => {
              const body = await res.json();
              if (res.status === 503 && body.checks?.kafka?.ok === false) reported = true;
              if (/no Kafka broker answered/.test(body.checks?.pipeline?.error ?? "")) {
                reason = true;
              }
            }, () => {}),
          );
          await sleep(250);
        }
        await Promise.all(polls);
        const code = processor.exitCodes[exitsBefore];
        ctx.note(
          `processor exit code ${code ?? "none"} after ${
            ((Date.now() - stoppedAt) / 1000).toFixed(1)
          } s; /health answered 503: ${reported}, named the reason: ${reason}`,
        );
        await stack("up");
        if (code !== 1) throw new Error(`expected exit code 1, got ${code ?? "none (still up)"}`);
        if (!reported) throw new Error("/health never reported Kafka down before the exit");
      },
    }],
  },
  {
    id: "store-outage",
    title: "5b. FerretDB down for 60 s mid-stream",
    processors: 1,
    needsLocalStack: true,
    faults: [{
      at: 0.3,
      name: "stop FerretDB for 60 s",
      run: outage("ferretdb", 60_000),
    }],
  },
  {
    id: "store",
    title: "5. FerretDB restart mid-stream",
    processors: 1,
    needsLocalStack: true,
    faults: [{
      at: 0.4,
      name: "restart FerretDB",
      run: outage("ferretdb", 5000),
    }],
  },
  {
    id: "bad-records",
    title: "6. malformed, oversized, duplicated and out-of-order records injected",
    processors: 1,
    faults: [0.2, 0.5, 0.8].map((at) => ({
      at,
      name: "inject bad records",
      run: (ctx: RunContext) => injectBadRecords(ctx.kafka, ctx.topic, ctx.ledger, ctx.note),
    })),
  },
  {
    id: "cold-start",
    title: "7. the whole system killed (SIGKILL) and cold-started",
    processors: 1,
    needsLocalStack: true,
    faults: [{
      at: 0.5,
      name: "SIGKILL processor, Kafka and FerretDB; start all again",
      run: async (ctx) => {
        await ctx.processors[0]!.kill("SIGKILL");
        await killService("kafka");
        await killService("ferretdb");
        await sleep(1000);
        await stack("up");
        ctx.processors[0]!.start();
      },
    }],
  },
];
