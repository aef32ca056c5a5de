/**
 * A forced overheat laid over any signal, with thermal lag: the reported
 * temperature approaches the burst's target along a first-order curve
 * (T ← target + (T − target)·e^(−1/τ) per sample), holds there until
 * `remaining` samples have reported at or above the sensor's high threshold,
 * then cools back towards the sensor's own signal the same way, after which
 * the own signal takes over again. Humidity follows the temperature at the
 * sample's own dew point (`humidity.ts`): heating the same air dries it.
 *
 * The time constants are counted in samples, not seconds, so an injection
 * looks alike at a 50 ms test interval and at the 3 s default: about four
 * samples to cross an 80 °C threshold from room temperature. Pure, like the
 * signals it overrides.
 *
 * @module
 */
import { dewPoint, relativeHumidity } from "./humidity.ts";

/** Heating time constant, in samples. */
export const HEAT_TAU_SAMPLES = 2;
/** Cooling time constant, in samples (cooling is slower than driven heating). */
export const COOL_TAU_SAMPLES = 3;
/** Within this many °C of where it heads, the curve is considered there (it is asymptotic). */
const ARRIVED = 0.1;
/** Cooling ends once the reported temperature is within this many °C of the own signal. */
const RECOVERED = 0.5;
/** Cooling lasts at most this many samples, whatever the own signal does. */
const MAX_COOLING_SAMPLES = 50;

const HEAT_DECAY = Math.exp(-1 / HEAT_TAU_SAMPLES);
const COOL_DECAY = Math.exp(-1 / COOL_TAU_SAMPLES);

/** An overheat still to play out. */
export interface HeatBurst {
  /** The temperature in °C heating approaches. */
  readonly target: number;
  /** The sensor's high threshold: a sample at or above it counts as hot. */
  readonly high: number;
  /** Hot samples still to emit before cooling starts. */
  readonly remaining: number;
  readonly phase: "heating" | "cooling";
  /** The last reported temperature, unrounded; null before the first sample. */
  readonly temperature: number | null;
  /** Samples spent cooling so far. */
  readonly cooled: number;
}

/** A burst of `readings` hot samples heading for `target`, as `overheat` orders it. */
export function heatBurst(
  order: { readonly readings: number; readonly target: number; readonly high: number },
): HeatBurst {
  return {
    target: order.target,
    high: order.high,
    remaining: order.readings,
    phase: "heating",
    temperature: null,
    cooled: 0,
  };
}

/** What a sample reports under a burst. */
export interface HeatedSample {
  readonly temperature: number;
  readonly humidity: number;
  /** The burst left afterwards; null once it has played out. */
  readonly burst: HeatBurst | null;
}

/**
 * The temperature and humidity to report for an own sample of `temperature`
 * and `humidity`, and the burst left afterwards. Without a burst the sample
 * passes through unchanged.
 */
export function applyHeatBurst(
  burst: HeatBurst | null,
  sample: { readonly temperature: number; readonly humidity: number },
): HeatedSample {
  if (burst === null) return { ...sample, burst: null };
  const from = burst.temperature ?? sample.temperature;
  if (burst.phase === "heating") {
    // A sample already hotter than the target keeps its own value.
    const target = Math.max(burst.target, sample.temperature);
    const next = approach(from, target, HEAT_DECAY);
    const reported = round1(next);
    const remaining = reported >= burst.high ? burst.remaining - 1 : burst.remaining;
    return {
      temperature: reported,
      humidity: humidityAt(sample, reported),
      burst: {
        ...burst,
        remaining,
        temperature: next,
        phase: remaining > 0 ? "heating" : "cooling",
      },
    };
  }
  const next = approach(from, sample.temperature, COOL_DECAY);
  const reported = round1(next);
  const cooled = burst.cooled + 1;
  const done = Math.abs(next - sample.temperature) < RECOVERED || cooled >= MAX_COOLING_SAMPLES;
  return {
    temperature: reported,
    humidity: humidityAt(sample, reported),
    burst: done ? null : { ...burst, temperature: next, cooled },
  };
}

/** One first-order step from `from` towards `to`, arriving once within 0.1 °C. */
function approach(from: number, to: number, decay: number): number {
  const next = to + (from - to) * decay;
  return Math.abs(next - to) < ARRIVED ? to : next;
}

/** The sample's air at the reported temperature: its own dew point, so the same moisture. */
function humidityAt(
  sample: { readonly temperature: number; readonly humidity: number },
  temperature: number,
): number {
  if (sample.humidity <= 0) return sample.humidity;
  return round1(relativeHumidity(dewPoint(sample.temperature, sample.humidity), temperature));
}

function round1(value: number): number {
  return Math.round(value * 10) / 10 + 0;
}
