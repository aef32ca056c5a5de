/**
 * The scenarios whose load is the app's own sensors (issue 11): the fault
 * hits the processes that produce the readings, and the checker holds every
 * (deviceId, seq) to "produced at most once, with one content; stored as
 * produced; never overwritten". {@linkcode runSensorScenario} in
 * `sensor_run.ts` runs one.
 *
 * @module
 */
import type { AppProcess } from "./processes.ts";
import { killService, sleep, stack } from "./processes.ts";
import type { Fault } from "./scenarios.ts";

export interface SensorScenario {
  readonly id: string;
  readonly title: string;
  /** Kafka + MongoDB protocol (processes per role), or embedded (one `--role all` process). */
  readonly mode: "kafka" | "embedded";
  /** `--role sensors` processes (Kafka mode). */
  readonly sensorsProcesses: number;
  /**
   * Add the fleet once with `POST /sensors` to a `--role api` process, every sensors process
   * started with `--sensors 0` (the fleet registry shares it out). Otherwise the only sensors
   * process is started with `--sensors N`, on every start.
   */
  readonly fleetViaApi?: boolean;
  /** Scenarios that stop a service need it to be the harness's own stack. */
  readonly needsLocalStack?: boolean;
  readonly faults: readonly Fault<SensorContext>[];
}

export interface SensorContext {
  /** The sensors processes; in embedded mode the one `--role all` process. */
  readonly sensors: readonly AppProcess[];
  /** The processors processes (none in embedded mode). */
  readonly processors: readonly AppProcess[];
  /** Records the stored readings now; the end state must still hold each unchanged. */
  snapshot(label: string): Promise<void>;
  /** Readings on the topic not yet committed by the processors. */
  backlog(): Promise<number>;
  /** Readings per second the fleet emits. */
  readonly rate: number;
  note(event: string): void;
}

/** kill -9, a snapshot of the store once the process is gone, and a restart a second later. */
function kill9(pick: (ctx: SensorContext) => AppProcess) {
  return async (ctx: SensorContext) => {
    const victim = pick(ctx);
    await victim.kill("SIGKILL");
    await ctx.snapshot(`after SIGKILL of ${victim.name}`);
    await sleep(1000);
    victim.start();
  };
}

const the = (ctx: SensorContext) => ctx.sensors[0]!;

/** The lag the processors must have when the sensors restart (issue 11: at least 10 s). */
const MIN_LAG_MS = 10_000;
/** How long the processors are held back before the sensors restart. */
const LAG_MS = MIN_LAG_MS + 2000;

export const SENSOR_SCENARIOS: readonly SensorScenario[] = [
  {
    id: "sensors-kill9",
    title: "9. the app's sensors: kill -9 of the only sensors process, three times, restarted",
    mode: "kafka",
    sensorsProcesses: 1,
    faults: [0.25, 0.5, 0.75].map((at) => ({
      at,
      name: "SIGKILL the sensors process, restart it",
      run: kill9(the),
    })),
  },
  {
    id: "sensors-kill9-of-3",
    title:
      "10. the app's sensors: fleet added over the API, spread over three sensors processes; " +
      "kill -9 one (its sensors move), later restart it",
    mode: "kafka",
    sensorsProcesses: 3,
    fleetViaApi: true,
    faults: [
      {
        at: 0.15,
        name: "check that the fleet spread over the three sensors processes",
        run: async (ctx) => {
          const running = await Promise.all(
            ctx.sensors.map(async (p) => (await p.stats())?.sensors?.running ?? 0),
          );
          ctx.note(`sensors running per process: ${running.join(", ")}`);
          if (running.filter((n) => n > 0).length < 2) {
            throw new Error(
              `The fleet did not spread over the sensors processes: running per process ` +
                `"${running.join(", ")}"`,
            );
          }
        },
      },
      {
        at: 0.4,
        name: "SIGKILL sensors process 2",
        run: async (ctx) => {
          await ctx.sensors[1]!.kill("SIGKILL");
          await ctx.snapshot("after SIGKILL of sensors process 2");
        },
      },
      {
        at: 0.7,
        name: "restart sensors process 2",
        run: (ctx) => Promise.resolve(ctx.sensors[1]!.start()),
      },
    ],
  },
  {
    id: "sensors-lag-restart",
    title: `11. the app's sensors: graceful restart of the sensors process while the processors ` +
      `lag by at least ${MIN_LAG_MS / 1000} s`,
    mode: "kafka",
    sensorsProcesses: 1,
    faults: [{
      at: 0.3,
      name: `stop the processors; ${LAG_MS / 1000} s later restart the sensors (SIGTERM), ` +
        "then start the processors",
      run: async (ctx) => {
        const stoppedAt = Date.now();
        await ctx.processors[0]!.kill("SIGTERM");
        await sleep(LAG_MS - (Date.now() - stoppedAt));
        const backlog = await ctx.backlog();
        ctx.note(
          `processors stopped ${((Date.now() - stoppedAt) / 1000).toFixed(1)} s ago; backlog ` +
            `${backlog} readings (${(backlog / ctx.rate).toFixed(1)} s of load)`,
        );
        // The processors have consumed nothing since they stopped: they lag by that long.
        if (backlog === 0) throw new Error("The sensors produced nothing while the processors lag");
        await ctx.snapshot("with the processors stopped");
        const code = await the(ctx).kill("SIGTERM");
        ctx.note(`sensors process exited with ${code}`);
        the(ctx).start();
        ctx.processors[0]!.start();
      },
    }],
  },
  {
    id: "sensors-cold",
    title: "12. the app's sensors: everything killed (SIGKILL: sensors, processors, Kafka, " +
      "FerretDB) and cold-started",
    mode: "kafka",
    sensorsProcesses: 1,
    needsLocalStack: true,
    faults: [{
      at: 0.5,
      name: "SIGKILL sensors, processors, Kafka and FerretDB; start all again",
      run: async (ctx) => {
        await Promise.all([...ctx.sensors, ...ctx.processors].map((p) => p.kill("SIGKILL")));
        await killService("kafka");
        await killService("ferretdb");
        await sleep(1000);
        await stack("up");
        await ctx.snapshot("after the cold start of Kafka and FerretDB");
        ctx.processors.forEach((p) => p.start());
        ctx.sensors.forEach((p) => p.start());
      },
    }],
  },
  {
    id: "sensors-embedded",
    title: "13. the app's sensors, embedded mode: kill -9 of the `--role all` process four " +
      "times, restarted",
    mode: "embedded",
    sensorsProcesses: 1,
    faults: [0.2, 0.4, 0.6, 0.8].map((at) => ({
      at,
      name: "SIGKILL the app, restart it",
      run: kill9(the),
    })),
  },
];
