/**
 * Dependency health for `/health` and `/readyz`: each check is a short probe with a timeout,
 * and results are cached briefly so a busy load balancer cannot turn health
 * checks into load on Kafka or MongoDB.
 *
 * @module
 */

export type CheckStatus = { readonly ok: true; readonly latencyMs: number } | {
  readonly ok: false;
  readonly error: string;
};

export interface HealthCheck {
  readonly name: string;
  /** Rejects (or throws) when the dependency is unhealthy. */
  readonly probe: () => Promise<unknown>;
}

export interface HealthReport {
  readonly ok: boolean;
  readonly checks: Readonly<Record<string, CheckStatus>>;
}

export interface HealthOptions {
  readonly timeoutMs?: number;
  readonly cacheMs?: number;
  readonly now?: () => number;
}

/** Returns a function that runs every check concurrently (cached for `cacheMs`). */
export function createHealth(
  checks: readonly HealthCheck[],
  { timeoutMs = 2000, cacheMs = 1000, now = Date.now }: HealthOptions = {},
): () => Promise<HealthReport> {
  let cached: { at: number; report: Promise<HealthReport> } | undefined;
  const runAll = async (): Promise<HealthReport> => {
    const results = await Promise.all(checks.map((c) => runOne(c, timeoutMs)));
    const entries = checks.map((c, i) => [c.name, results[i]!] as const);
    return { ok: results.every((r) => r.ok), checks: Object.fromEntries(entries) };
  };
  return () => {
    const t = now();
    if (!cached || t - cached.at >= cacheMs) cached = { at: t, report: runAll() };
    return cached.report;
  };
}

async function runOne(check: HealthCheck, timeoutMs: number): Promise<CheckStatus> {
  const started = performance.now();
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([
      Promise.resolve().then(check.probe),
      new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`no answer within ${timeoutMs} ms`)),
          timeoutMs,
        );
      }),
    ]);
    return { ok: true, latencyMs: Math.round(performance.now() - started) };
  } catch (err) {
    return { ok: false, error: err instanceof Error ? err.message : String(err) };
  } finally {
    clearTimeout(timer);
  }
}

/** The `/readyz` body: the verdict and each check, without the live stats `/health` adds. */
export function readiness(
  report: HealthReport,
): { readonly status: "ok" | "degraded"; readonly checks: HealthReport["checks"] } {
  return { status: report.ok ? "ok" : "degraded", checks: report.checks };
}
