/**
 * Simulated sensor signals as pure functions over plain, JSON-serializable
 * state: `initialSignal()` resolves the options into a state and
 * `nextSample()` returns the next reading with the advanced state. No clock
 * and no `Math.random()`: the same seed and options always give the same
 * sequence, and a stored state continues exactly where it left off.
 *
 * @module
 */
import { gaussian, nextRandom } from "./random.ts";
import type { AlarmRule } from "./hysteresis.ts";
import { dewPoint, relativeHumidity } from "./humidity.ts";

/** Every profile, in a stable order: the one list config, HTTP bodies and the fleet use. */
export const PROFILES = Object.freeze(
  ["normal", "overheat", "flapping", "mobile", "scripted"] as const,
);

/** The behaviour a simulated sensor follows. */
export type Profile = (typeof PROFILES)[number];

/** The profiles that need no script: what a fleet can be seeded with from the command line. */
export const RANDOM_PROFILES = Object.freeze(["normal", "overheat", "flapping", "mobile"] as const);

/** A position in decimal degrees. */
export interface GeoPoint {
  readonly lat: number;
  readonly lon: number;
}

/** Alarm thresholds a signal aims at: the rule's two temperatures. */
export type Band = Pick<AlarmRule, "high" | "low">;

/** How to simulate one sensor. */
export interface SignalOptions {
  readonly profile: Profile;
  /** A uint32; the same seed and options give an identical sequence. */
  readonly seed: number;
  /** Starting position. */
  readonly location: GeoPoint;
  /** Time between samples, which sets thermal lag and distance travelled. */
  readonly intervalMs: number;
  /** Scripted only: emitted exactly, in order. */
  readonly temperatures?: readonly number[];
  /** Scripted only, optional: humidity per step, otherwise derived from temperature. */
  readonly humidity?: readonly number[];
  /** Thresholds the overheat and flapping profiles aim at; defaults to {@linkcode DEFAULT_BAND}. */
  readonly band?: Band;
}

/** The band used when the options name none. */
export const DEFAULT_BAND: Band = Object.freeze({ high: 80, low: 70 });

/** One reading: temperature in °C, relative humidity in %RH, position in degrees. */
export interface Sample {
  readonly temperature: number;
  readonly humidity: number;
  readonly location: GeoPoint;
}

/** What every random profile carries: its generator, step count and climate. */
interface Climate {
  /** The generator state (see `random.ts`). */
  readonly rng: number;
  /** Samples emitted so far. */
  readonly step: number;
  /** The room temperature the signal returns to, in °C. */
  readonly ambient: number;
  /** Relative humidity at the ambient temperature, in %RH. */
  readonly humidityBase: number;
  /** The current temperature, unrounded. */
  readonly temperature: number;
}

/** A mean-reverting walk around the ambient temperature at a fixed place. */
export interface NormalState extends Climate {
  readonly profile: "normal";
  readonly home: GeoPoint;
  /** Per-step mean reversion factor, exp(-interval / time constant). */
  readonly decay: number;
  /** Per-step noise that keeps the walk's spread independent of the interval. */
  readonly noise: number;
}

/** Where an overheating sensor is in its heat–hold–cool–rest cycle. */
export type OverheatPhase = "heating" | "hot" | "cooling" | "cool";

/** Repeated heating above the band and cooling below it, with thermal lag. */
export interface OverheatState extends Climate {
  readonly profile: "overheat";
  readonly home: GeoPoint;
  readonly high: number;
  readonly low: number;
  readonly hotTarget: number;
  readonly coolTarget: number;
  readonly heatDecay: number;
  readonly coolDecay: number;
  readonly phase: OverheatPhase;
  /** Samples still to emit in the "hot" or "cool" phase. */
  readonly remaining: number;
}

/** A noisy oscillation across the band. */
export interface FlappingState extends Climate {
  readonly profile: "flapping";
  readonly home: GeoPoint;
  readonly centre: number;
  readonly amplitude: number;
  readonly noise: number;
  /** Current phase of the oscillation, in radians within [0, 2π). */
  readonly angle: number;
  readonly angleStep: number;
}

/** A normal climate on a moving position. */
export interface MobileState extends Climate {
  readonly profile: "mobile";
  readonly decay: number;
  readonly noise: number;
  /** The current position, unrounded. */
  readonly position: GeoPoint;
  /** Direction of travel in radians clockwise from north. */
  readonly heading: number;
  /** Change of heading per step in radians; mean-reverting so turns are smooth. */
  readonly turn: number;
  /** Metres per second. */
  readonly speed: number;
  readonly cruiseSpeed: number;
  readonly intervalSeconds: number;
  /** Largest distance one step may cover, leaving room for coordinate rounding. */
  readonly maxStepMetres: number;
}

/** A fixed series played back exactly. */
export interface ScriptedState {
  readonly profile: "scripted";
  readonly step: number;
  readonly temperatures: readonly number[];
  /** Humidity per step; steps beyond its end derive humidity from temperature. */
  readonly humidity: readonly number[];
  readonly location: GeoPoint;
}

/** Plain data, safe to store as JSON and resume from. */
export type SignalState =
  | NormalState
  | OverheatState
  | FlappingState
  | MobileState
  | ScriptedState;

/** A sample and the state to draw the next one from. */
export interface SignalStep {
  readonly state: SignalState;
  readonly sample: Sample;
}

// Climate shared by the random profiles.
const AMBIENT_MIN = 20;
const AMBIENT_RANGE = 10;
const NORMAL_MIN = 18;
const NORMAL_MAX = 35;
const NORMAL_SPREAD = 1.2;
const NORMAL_TIME_CONSTANT_S = 600;
const HUMIDITY_BASE_MIN = 40;
const HUMIDITY_BASE_RANGE = 20;
const HUMIDITY_NOISE = 0.4;
const SCRIPTED_HUMIDITY_BASE = 50;
const SCRIPTED_REFERENCE = 20;
// About a metre of GPS noise for sensors that stay put.
const JITTER_DEGREES = 1e-5;

// Overheat: one cycle takes roughly 25–45 samples at the 3 s default interval.
const OVERHEAT_ABOVE = 15;
const OVERHEAT_COOL_BELOW = 10;
const OVERHEAT_HEAT_TAU_MIN_S = 30;
const OVERHEAT_COOL_TAU_MIN_S = 60;
const OVERHEAT_TAU_RANGE_S = 20;
const OVERHEAT_NOISE = 0.25;
const OVERHEAT_HOLD_MIN = 3;
const OVERHEAT_HOLD_RANGE = 4;
// Keeps a hot or cool sample on its side of the band after rounding to 0.1.
const ROUNDING_MARGIN = 0.1;

// Flapping: a 5–9 sample wave whose peaks only just reach the thresholds.
const FLAPPING_PERIOD_MIN = 4;
const FLAPPING_PERIOD_RANGE = 2;
const FLAPPING_NOISE = 0.3;
const FLAPPING_ANGLE_JITTER = 0.2;

// Mobile: road speeds, bounded; smooth heading changes.
const MAX_SPEED_MPS = 30;
const MOBILE_SPEED_LIMIT = 28;
const MOBILE_CRUISE_MIN = 5;
const MOBILE_CRUISE_RANGE = 15;
const MOBILE_SPEED_KEEP = 0.9;
const MOBILE_SPEED_NOISE = 0.8;
const MOBILE_TURN_KEEP = 0.7;
const MOBILE_TURN_NOISE = 0.05;
// Rounding both ends of a step to 6 decimals moves it by at most ~0.16 m.
const ROUNDING_SLACK_METRES = 0.25;
const EARTH_RADIUS_METRES = 6_371_008.8;

const TAU = 2 * Math.PI;
const DEGREES = 180 / Math.PI;
const RADIANS = Math.PI / 180;

/**
 * Resolves options into the state a sensor starts from.
 *
 * @throws {RangeError} If an option is out of range, e.g. a non-positive
 * interval, a band whose high is not above its low, or a scripted profile
 * without temperatures.
 */
export function initialSignal(options: SignalOptions): SignalState {
  const { profile, seed, location, intervalMs, band = DEFAULT_BAND } = options;
  validate(options, band);
  // Shared, not copied: a GeoPoint is read-only, and a fleet keeps one per sensor already.
  const home: GeoPoint = location;
  if (profile === "scripted") {
    return {
      profile,
      step: 0,
      // Copied once; adding 0 turns -0 into 0 so the state survives JSON exactly.
      temperatures: (options.temperatures ?? []).map((value) => value + 0),
      humidity: (options.humidity ?? []).map((value) => value + 0),
      location: home,
    };
  }
  const intervalSeconds = intervalMs / 1000;
  let rng = seed;
  const ambientDraw = nextRandom(rng);
  const humidityDraw = nextRandom(ambientDraw.state);
  rng = humidityDraw.state;
  const ambient = AMBIENT_MIN + AMBIENT_RANGE * ambientDraw.value;
  const climate = {
    rng,
    step: 0,
    ambient,
    humidityBase: HUMIDITY_BASE_MIN + HUMIDITY_BASE_RANGE * humidityDraw.value,
    temperature: ambient,
  };
  const decay = Math.exp(-intervalSeconds / NORMAL_TIME_CONSTANT_S);
  const noise = NORMAL_SPREAD * Math.sqrt(1 - decay * decay);
  switch (profile) {
    case "normal":
      // Every field spelled out (no spread): V8 then keeps all nine inside the object, and so do
      // the copies each step makes, instead of an extra property array per state.
      return {
        profile,
        rng: climate.rng,
        step: climate.step,
        ambient: climate.ambient,
        humidityBase: climate.humidityBase,
        temperature: climate.temperature,
        home,
        decay,
        noise,
      };
    case "overheat": {
      const heatTau = nextRandom(rng);
      const coolTau = nextRandom(heatTau.state);
      return {
        profile,
        ...climate,
        rng: coolTau.state,
        home,
        high: band.high,
        low: band.low,
        hotTarget: band.high + OVERHEAT_ABOVE,
        coolTarget: Math.min(ambient, band.low - OVERHEAT_COOL_BELOW),
        heatDecay: Math.exp(
          -intervalSeconds / (OVERHEAT_HEAT_TAU_MIN_S + OVERHEAT_TAU_RANGE_S * heatTau.value),
        ),
        coolDecay: Math.exp(
          -intervalSeconds / (OVERHEAT_COOL_TAU_MIN_S + OVERHEAT_TAU_RANGE_S * coolTau.value),
        ),
        phase: "heating",
        remaining: 0,
      };
    }
    case "flapping": {
      const period = nextRandom(rng);
      const angle = nextRandom(period.state);
      const halfWidth = (band.high - band.low) / 2;
      const centre = band.low + halfWidth;
      return {
        profile,
        ...climate,
        rng: angle.state,
        temperature: centre,
        home,
        centre,
        amplitude: halfWidth,
        noise: FLAPPING_NOISE * halfWidth,
        angle: TAU * angle.value,
        angleStep: TAU / (FLAPPING_PERIOD_MIN + FLAPPING_PERIOD_RANGE * period.value),
      };
    }
    case "mobile": {
      const heading = nextRandom(rng);
      const cruise = nextRandom(heading.state);
      const cruiseSpeed = MOBILE_CRUISE_MIN + MOBILE_CRUISE_RANGE * cruise.value;
      return {
        profile,
        ...climate,
        rng: cruise.state,
        decay,
        noise,
        position: home,
        heading: TAU * heading.value,
        turn: 0,
        speed: cruiseSpeed,
        cruiseSpeed,
        intervalSeconds,
        maxStepMetres: Math.max(0, MAX_SPEED_MPS * intervalSeconds - ROUNDING_SLACK_METRES),
      };
    }
    default:
      profile satisfies never;
      throw new RangeError(`Invalid signal profile: "${profile}"`);
  }
}

/**
 * The next sample and the advanced state; null once a scripted series is
 * exhausted (random profiles never end).
 */
export function nextSample(state: SignalState): SignalStep | null {
  switch (state.profile) {
    case "normal":
      return stepNormal(state);
    case "overheat":
      return stepOverheat(state);
    case "flapping":
      return stepFlapping(state);
    case "mobile":
      return stepMobile(state);
    case "scripted":
      return stepScripted(state);
    default:
      state satisfies never;
      throw new TypeError(
        `Cannot step signal: unknown profile "${(state as { profile: unknown }).profile}"`,
      );
  }
}

function stepNormal(state: NormalState): SignalStep {
  const { temperature, humidity, rng } = meanReverting(state);
  const lat = gaussian(rng);
  const lon = gaussian(lat.state);
  return {
    state: { ...state, rng: lon.state, step: state.step + 1, temperature },
    sample: homeSample(state.home, temperature, humidity, lat.value, lon.value),
  };
}

function stepOverheat(state: OverheatState): SignalStep {
  const heating = state.phase === "heating" || state.phase === "hot";
  const target = heating ? state.hotTarget : state.coolTarget;
  const decay = heating ? state.heatDecay : state.coolDecay;
  let draw = gaussian(state.rng);
  let temperature = target + (state.temperature - target) * decay + OVERHEAT_NOISE * draw.value;
  let phase = state.phase;
  let remaining = state.remaining;
  switch (state.phase) {
    case "heating":
      if (round1(temperature) >= state.high) {
        draw = nextRandom(draw.state);
        phase = "hot";
        remaining = holdSteps(draw.value) - 1;
      }
      break;
    case "hot":
      temperature = Math.max(temperature, state.high + ROUNDING_MARGIN);
      remaining -= 1;
      break;
    case "cooling":
      if (round1(temperature) <= state.low) {
        draw = nextRandom(draw.state);
        phase = "cool";
        remaining = holdSteps(draw.value) - 1;
      }
      break;
    case "cool":
      temperature = Math.min(temperature, state.low - ROUNDING_MARGIN);
      remaining -= 1;
      break;
    default:
      state.phase satisfies never;
  }
  if (phase === "hot" && remaining <= 0) phase = "cooling";
  else if (phase === "cool" && remaining <= 0) phase = "heating";
  const wet = gaussian(draw.state);
  const humidity = noisyHumidity(state, temperature, wet.value);
  const lat = gaussian(wet.state);
  const lon = gaussian(lat.state);
  return {
    state: {
      ...state,
      rng: lon.state,
      step: state.step + 1,
      temperature,
      phase,
      remaining: phase === "hot" || phase === "cool" ? remaining : 0,
    },
    sample: homeSample(state.home, temperature, humidity, lat.value, lon.value),
  };
}

function stepFlapping(state: FlappingState): SignalStep {
  const jitter = gaussian(state.rng);
  const angle = wrapAngle(state.angle + state.angleStep + FLAPPING_ANGLE_JITTER * jitter.value);
  const noise = gaussian(jitter.state);
  const temperature = state.centre + state.amplitude * Math.sin(angle) +
    state.noise * noise.value;
  const wet = gaussian(noise.state);
  const humidity = noisyHumidity(state, temperature, wet.value);
  const lat = gaussian(wet.state);
  const lon = gaussian(lat.state);
  return {
    state: { ...state, rng: lon.state, step: state.step + 1, temperature, angle },
    sample: homeSample(state.home, temperature, humidity, lat.value, lon.value),
  };
}

function stepMobile(state: MobileState): SignalStep {
  const { temperature, humidity, rng } = meanReverting(state);
  const steer = gaussian(rng);
  const turn = MOBILE_TURN_KEEP * state.turn + MOBILE_TURN_NOISE * steer.value;
  const heading = wrapAngle(state.heading + turn);
  const throttle = gaussian(steer.state);
  const speed = clamp(
    state.cruiseSpeed + (state.speed - state.cruiseSpeed) * MOBILE_SPEED_KEEP +
      MOBILE_SPEED_NOISE * throttle.value,
    0,
    MOBILE_SPEED_LIMIT,
  );
  const position = destination(
    state.position,
    heading,
    Math.min(speed * state.intervalSeconds, state.maxStepMetres),
  );
  return {
    state: {
      ...state,
      rng: throttle.state,
      step: state.step + 1,
      temperature,
      position,
      heading,
      turn,
      speed,
    },
    sample: {
      temperature: round1(temperature),
      humidity: round1(humidity),
      location: { lat: round6(position.lat), lon: round6(position.lon) },
    },
  };
}

/** A sample at a fixed home position with metre-level GPS jitter. */
function homeSample(
  home: GeoPoint,
  temperature: number,
  humidity: number,
  latNoise: number,
  lonNoise: number,
): Sample {
  return {
    temperature: round1(temperature),
    humidity: round1(humidity),
    location: jittered(home, latNoise, lonNoise),
  };
}

function stepScripted(state: ScriptedState): SignalStep | null {
  const temperature = state.temperatures[state.step];
  if (temperature === undefined) return null;
  const humidity = state.humidity[state.step] ??
    round1(humidityAt(temperature, SCRIPTED_HUMIDITY_BASE, SCRIPTED_REFERENCE));
  return {
    state: { ...state, step: state.step + 1 },
    sample: { temperature, humidity, location: state.location },
  };
}

function validate(options: SignalOptions, band: Band): void {
  const { profile, seed, location, intervalMs } = options;
  if (!(PROFILES as readonly string[]).includes(profile)) {
    throw new RangeError(
      `Invalid signal profile: expected one of ${PROFILES.join(", ")}, received "${profile}"`,
    );
  }
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
    throw new RangeError(`Invalid signal seed: expected a uint32, received "${seed}"`);
  }
  if (!(intervalMs > 0) || !Number.isFinite(intervalMs)) {
    throw new RangeError(
      `Invalid signal interval: expected a positive number of milliseconds, received "${intervalMs}"`,
    );
  }
  if (!(Math.abs(location.lat) <= 90) || !(Math.abs(location.lon) <= 180)) {
    throw new RangeError(
      `Invalid signal location: expected lat in [-90, 90] and lon in [-180, 180], received "${location.lat}, ${location.lon}"`,
    );
  }
  if (!Number.isFinite(band.low) || !Number.isFinite(band.high) || band.high <= band.low) {
    throw new RangeError(
      `Invalid signal band: expected finite thresholds with high above low, received "high ${band.high}, low ${band.low}"`,
    );
  }
  if (profile !== "scripted") return;
  if (options.temperatures === undefined) {
    throw new RangeError("Invalid scripted signal: temperatures are required");
  }
  const temperature = options.temperatures.find((value) => !Number.isFinite(value));
  if (temperature !== undefined) {
    throw new RangeError(
      `Invalid scripted signal: temperatures must be finite, received "${temperature}"`,
    );
  }
  const humidity = options.humidity?.find((value) => !(value >= 0 && value <= 100));
  if (humidity !== undefined) {
    throw new RangeError(
      `Invalid scripted signal: humidity must be within [0, 100], received "${humidity}"`,
    );
  }
}

function holdSteps(value: number): number {
  return OVERHEAT_HOLD_MIN + Math.floor(OVERHEAT_HOLD_RANGE * value);
}

/**
 * Relative humidity of air that holds `base` %RH at `reference` °C, once at
 * `temperature`: the same moisture, so the same dew point (Magnus formula).
 */
function humidityAt(temperature: number, base: number, reference: number): number {
  return relativeHumidity(dewPoint(reference, base), temperature);
}

/**
 * The next temperature of a mean-reverting random walk around the ambient (the
 * `normal` and `mobile` profiles) and the humidity that goes with it, with the
 * random state after both draws.
 */
function meanReverting(
  state: Climate & Pick<NormalState, "decay" | "noise">,
): { readonly temperature: number; readonly humidity: number; readonly rng: number } {
  const drift = gaussian(state.rng);
  const temperature = clamp(
    state.ambient + (state.temperature - state.ambient) * state.decay +
      state.noise * drift.value,
    NORMAL_MIN,
    NORMAL_MAX,
  );
  const wet = gaussian(drift.state);
  return { temperature, humidity: noisyHumidity(state, temperature, wet.value), rng: wet.state };
}

function noisyHumidity(climate: Climate, temperature: number, noise: number): number {
  return clamp(
    humidityAt(temperature, climate.humidityBase, climate.ambient) + HUMIDITY_NOISE * noise,
    0,
    100,
  );
}

function jittered(home: GeoPoint, latNoise: number, lonNoise: number): GeoPoint {
  return {
    lat: round6(clamp(home.lat + JITTER_DEGREES * latNoise, -90, 90)),
    lon: round6(wrapLongitude(home.lon + JITTER_DEGREES * lonNoise)),
  };
}

/** The point `metres` away from `from` along `heading` on a spherical Earth. */
function destination(from: GeoPoint, heading: number, metres: number): GeoPoint {
  const distance = metres / EARTH_RADIUS_METRES;
  const lat1 = from.lat * RADIANS;
  const sinLat1 = Math.sin(lat1);
  const cosLat1 = Math.cos(lat1);
  const sinDistance = Math.sin(distance);
  const cosDistance = Math.cos(distance);
  // Rounding can push the sine just past ±1 near the poles.
  const sinLat2 = clamp(
    sinLat1 * cosDistance + cosLat1 * sinDistance * Math.cos(heading),
    -1,
    1,
  );
  const lon = from.lon * RADIANS + Math.atan2(
    Math.sin(heading) * sinDistance * cosLat1,
    cosDistance - sinLat1 * sinLat2,
  );
  return {
    lat: clamp(Math.asin(sinLat2) * DEGREES, -90, 90),
    lon: wrapLongitude(lon * DEGREES),
  };
}

function clamp(value: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, value));
}

/** Wraps into [-180, 180). */
function wrapLongitude(lon: number): number {
  return lon >= -180 && lon < 180 ? lon : ((lon + 180) % 360 + 360) % 360 - 180;
}

/** Wraps into [0, 2π). */
function wrapAngle(angle: number): number {
  return angle >= 0 && angle < TAU ? angle : (angle % TAU + TAU) % TAU;
}

// Adding 0 turns -0 into 0, so equal states print and compare equal.
function round1(value: number): number {
  return Math.round(value * 10) / 10 + 0;
}

function round6(value: number): number {
  return Math.round(value * 1e6) / 1e6 + 0;
}
