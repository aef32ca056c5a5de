/**
 * A forced overheat laid over any signal: for the next `remaining` samples
 * the temperature is at least `temperature`, then the sensor's own signal
 * takes over again. Pure, like the signals it overrides.
 *
 * @module
 */

/** An overheat still to play out. */
export interface HeatBurst {
  /** Samples still to emit hot. */
  readonly remaining: number;
  /** The lowest temperature a hot sample reports, in °C. */
  readonly temperature: number;
}

/**
 * The temperature to report and the burst left afterwards (null once spent).
 * A sample already hotter than the burst keeps its own value.
 */
export function applyHeatBurst(
  burst: HeatBurst | null,
  temperature: number,
): { readonly temperature: number; readonly burst: HeatBurst | null } {
  if (burst === null || burst.remaining <= 0) return { temperature, burst: null };
  const remaining = burst.remaining - 1;
  return {
    temperature: Math.max(temperature, burst.temperature),
    burst: remaining > 0 ? { ...burst, remaining } : null,
  };
}
