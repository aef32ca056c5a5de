/**
 * An OTP-style one_for_one supervisor: children are declared as data, a child
 * that ends is restarted alone according to its restart type, and too many
 * restarts in a short window make the supervisor give up and escalate.
 *
 * @module
 */

/** permanent: always restarted; transient: only after a failure; temporary: never. */
export type RestartType = "permanent" | "transient" | "temporary";

/** How a child ended by itself. */
export type ChildExit =
  | { readonly type: "normal" }
  | { readonly type: "failed"; readonly error: unknown };

/** What the supervisor needs to stop a running child. */
export interface ChildHandle {
  stop(): Promise<void>;
}

/** A child declared as data: an id, a restart type and how to start it. */
export interface ChildSpec {
  readonly id: string;
  readonly restart: RestartType;
  /**
   * Starts the child; it must call `exit` exactly once when it ends by itself.
   * Exits caused by stop() are ignored. A throw/rejection counts as a failure.
   */
  start(exit: (e: ChildExit) => void): ChildHandle | Promise<ChildHandle>;
}

/** Lifecycle of a supervisor; "stopped" and "escalated" are final. */
export type SupervisorStatus = "running" | "stopping" | "stopped" | "escalated";

/** At most `maxRestarts` restarts within any `withinMs` window before escalating. */
export interface RestartIntensity {
  readonly maxRestarts: number;
  readonly withinMs: number;
}

/** Options for {@linkcode Supervisor}. */
export interface SupervisorOptions {
  readonly name?: string;
  /** Defaults to OTP's 3 restarts in 5 s. */
  readonly intensity?: RestartIntensity;
  /**
   * Called once, after every child was stopped, when restart intensity is exceeded.
   * Without it the error goes to `reportError`, so giving up is never silent.
   */
  readonly onEscalate?: (error: SupervisorEscalationError) => void;
  /** Clock (ms) for restart-intensity accounting, injectable for tests; default Date.now. */
  readonly now?: () => number;
  /** Delay (ms) before a restart, given the restarts in the window including it; default 0. */
  readonly backoffMs?: (recentRestarts: number) => number;
  /** Observability hook called for every restart; `error` is undefined after a normal exit. */
  readonly onRestart?: (id: string, error: unknown) => void;
}

/**
 * Reports that a supervisor gave up; `cause` is the last child error and `stopErrors` holds
 * whatever failed while it stopped its children, so nothing is lost on the way up.
 */
export class SupervisorEscalationError extends Error {
  override name = "SupervisorEscalationError";
  stopErrors: readonly unknown[] = [];
}

/**
 * Restart-intensity accounting: the restarts within the last `withinMs`. A
 * supervisor gives up when `record()` says more than `maxRestarts`.
 */
export class RestartWindow {
  readonly #withinMs: number;
  #recent: number[] = [];

  constructor(intensity: RestartIntensity) {
    this.#withinMs = intensity.withinMs;
  }

  /** Records a restart at `now`; returns the restarts in the window, this one included. */
  record(now: number): number {
    this.#recent = this.#recent.filter((at) => now - at < this.#withinMs);
    this.#recent.push(now);
    return this.#recent.length;
  }
}

/** The error a supervisor named `name` escalates with after child `id` failed once too often. */
export function escalationError(
  name: string,
  intensity: RestartIntensity,
  id: string,
  cause: unknown,
): SupervisorEscalationError {
  const { maxRestarts, withinMs } = intensity;
  return new SupervisorEscalationError(
    `Supervisor "${name}" gave up: more than ${maxRestarts} restarts within ` +
      `${withinMs} ms, last by child "${id}"`,
    { cause },
  );
}

/** Bookkeeping for one child id; survives restarts so the child keeps its start position. */
interface Child {
  readonly spec: ChildSpec;
  /** Incarnation counter: exits reported by an older incarnation are ignored. */
  run: number;
  handle: ChildHandle | undefined;
  starting: Promise<void> | undefined;
  timer: ReturnType<typeof setTimeout> | undefined;
  stopped: Promise<void> | undefined;
}

/** Supervises children one_for_one; every child event is O(1) so it scales to many children. */
export class Supervisor implements AsyncDisposable {
  readonly #name: string;
  readonly #intensity: RestartIntensity;
  readonly #options: SupervisorOptions;
  readonly #children = new Map<string, Child>();
  readonly #window: RestartWindow;
  #restarts = 0;
  #status: SupervisorStatus = "running";
  #shutdown: Promise<unknown[]> | undefined;

  constructor(options: SupervisorOptions = {}) {
    const { name = "supervisor", intensity = { maxRestarts: 3, withinMs: 5000 } } = options;
    // A zero window would never count a restart, allowing an endless restart loop.
    if (!(Number.isInteger(intensity.maxRestarts) && intensity.maxRestarts >= 0)) {
      throw new RangeError(
        `Cannot create supervisor "${name}": maxRestarts must be a non-negative integer, ` +
          `received ${intensity.maxRestarts}`,
      );
    }
    if (!(intensity.withinMs > 0)) {
      throw new RangeError(
        `Cannot create supervisor "${name}": withinMs must be positive, ` +
          `received ${intensity.withinMs}`,
      );
    }
    this.#name = name;
    this.#intensity = intensity;
    this.#window = new RestartWindow(intensity);
    this.#options = options;
  }

  /** Total restarts performed. */
  get restarts(): number {
    return this.#restarts;
  }

  get status(): SupervisorStatus {
    return this.#status;
  }

  get size(): number {
    return this.#children.size;
  }

  has(id: string): boolean {
    return this.#children.has(id);
  }

  /** Child ids in start order. */
  ids(): string[] {
    return [...this.#children.keys()];
  }

  /** Starts and records a child; if spec.start fails, the error goes to the caller, unrecorded. */
  async startChild(spec: ChildSpec): Promise<void> {
    if (this.#status !== "running") {
      throw new Error(
        `Cannot start child "${spec.id}": supervisor "${this.#name}" is ${this.#status}`,
      );
    }
    if (this.#children.has(spec.id)) {
      throw new Error(`Cannot start child "${spec.id}": a child with this id is already running`);
    }
    const child: Child = {
      spec,
      run: 0,
      handle: undefined,
      starting: undefined,
      timer: undefined,
      stopped: undefined,
    };
    this.#children.set(spec.id, child);
    try {
      await this.#launch(child, false);
    } catch (error) {
      if (this.#children.get(spec.id) === child) this.#children.delete(spec.id);
      throw error;
    }
  }

  /** Stops one child without restarting it; false when the id is unknown. */
  async stopChild(id: string): Promise<boolean> {
    const child = this.#children.get(id);
    if (!child) return false;
    await this.#stopChild(child);
    return true;
  }

  /**
   * Stops every child in reverse start order, one after another. Idempotent; rejects with an
   * AggregateError after the last child if any stop() failed.
   */
  async stop(): Promise<void> {
    if (this.#status === "running") this.#status = "stopping";
    const errors = await this.#stopAll();
    if (this.#status === "stopping") this.#status = "stopped";
    if (errors.length > 0) {
      throw new AggregateError(
        errors,
        `Cannot stop supervisor "${this.#name}": ${errors.length} children failed to stop`,
      );
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  /** Starts a new incarnation; a failing restart is reported through `exit`, not rejected. */
  #launch(child: Child, restarting: boolean): Promise<void> {
    const run = ++child.run;
    let ended = false;
    const exit = (e: ChildExit) => {
      if (ended) return;
      ended = true;
      this.#exited(child, run, e);
    };
    let started: ChildHandle | Promise<ChildHandle>;
    try {
      started = child.spec.start(exit);
    } catch (error) {
      child.starting = undefined;
      if (!restarting) return Promise.reject(error);
      exit({ type: "failed", error });
      return Promise.resolve();
    }
    if (!(started instanceof Promise)) {
      // Started synchronously: no promise is kept per child (100 000 sensors keep none).
      child.starting = undefined;
      if (!ended && child.run === run) child.handle = started;
      return Promise.resolve();
    }
    const starting = started.then((handle) => {
      if (!ended && child.run === run) child.handle = handle;
    });
    child.starting = starting;
    return restarting ? starting.catch((error) => exit({ type: "failed", error })) : starting;
  }

  #exited(child: Child, run: number, e: ChildExit): void {
    const { id, restart } = child.spec;
    const current = this.#children.get(id) === child && child.run === run;
    if (!current || child.stopped || this.#status !== "running") return;
    child.handle = undefined;
    if (restart === "temporary" || (restart === "transient" && e.type === "normal")) {
      this.#children.delete(id);
      return;
    }
    const error = e.type === "failed" ? e.error : undefined;
    const now = (this.#options.now ?? Date.now)();
    const recent = this.#window.record(now);
    if (recent > this.#intensity.maxRestarts) return this.#escalate(id, error);
    this.#restarts++;
    this.#options.onRestart?.(id, error);
    const delay = this.#options.backoffMs?.(recent) ?? 0;
    const relaunch = () => {
      child.timer = undefined;
      const wanted = this.#children.get(id) === child && !child.stopped;
      if (wanted && this.#status === "running") void this.#launch(child, true);
    };
    if (delay > 0) child.timer = setTimeout(relaunch, delay);
    else queueMicrotask(relaunch); // never re-enter start() from inside the child's exit call
  }

  #escalate(id: string, cause: unknown): void {
    this.#status = "escalated";
    const error = escalationError(this.#name, this.#intensity, id, cause);
    void this.#stopAll().then((stopErrors) => {
      error.stopErrors = stopErrors;
      if (this.#options.onEscalate) this.#options.onEscalate(error);
      else reportError(error);
    });
  }

  #stopAll(): Promise<unknown[]> {
    this.#shutdown ??= (async () => {
      const errors: unknown[] = [];
      for (const child of [...this.#children.values()].reverse()) {
        await this.#stopChild(child).catch((error) => errors.push(error));
      }
      return errors;
    })();
    return this.#shutdown;
  }

  #stopChild(child: Child): Promise<void> {
    child.stopped ??= (async () => {
      clearTimeout(child.timer);
      child.timer = undefined;
      // An in-flight start must finish first so there is a handle to stop; its error, if any,
      // already goes to startChild()'s caller or to `exit`.
      await child.starting?.catch(() => {});
      try {
        await child.handle?.stop();
      } finally {
        child.handle = undefined;
        if (this.#children.get(child.spec.id) === child) this.#children.delete(child.spec.id);
      }
    })();
    return child.stopped;
  }
}

/** Options for {@linkcode supervisorChild}: the nested supervisor's options and restart type. */
export interface SupervisorChildOptions extends Omit<SupervisorOptions, "onEscalate"> {
  /** Default "permanent". */
  readonly restart?: RestartType;
}

/**
 * Declares a nested supervisor as a child; its escalation is reported to the parent as a failure.
 * `init` adds the first children; if it throws, the nested supervisor is stopped and start fails.
 */
export function supervisorChild(
  id: string,
  init: (supervisor: Supervisor) => void | Promise<void>,
  options: SupervisorChildOptions = {},
): ChildSpec {
  const { restart = "permanent", ...supervisorOptions } = options;
  return {
    id,
    restart,
    async start(exit) {
      const supervisor = new Supervisor({
        name: id,
        ...supervisorOptions,
        onEscalate: (error) => exit({ type: "failed", error }),
      });
      try {
        await init(supervisor);
      } catch (error) {
        await supervisor.stop();
        throw error;
      }
      return supervisor;
    },
  };
}
