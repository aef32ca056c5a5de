/**
 * Relative humidity as physics has it: air of a given moisture content has a
 * fixed dew point, and its relative humidity follows from the dew point and
 * the temperature by the Magnus formula (Sonntag 1990 coefficients over
 * water). Warming the same air lowers its relative humidity; cooling it to the
 * dew point saturates it. Pure functions, no state.
 *
 * The coefficients are fitted for -45 °C to 60 °C; beyond that (an overheat
 * at 90 °C) the formula still falls monotonically and stays within a few
 * tenths of a percent of the tabulated values, which is all a simulation needs.
 *
 * @module
 */

/** Magnus coefficient b (dimensionless). */
const MAGNUS_B = 17.62;
/** Magnus coefficient c, in °C. */
const MAGNUS_C = 243.12;

/** Lowest relative humidity a dew point is derived from: 0 %RH has no dew point. */
const MIN_RH = 0.01;

/**
 * The dew point in °C of air at `temperature` °C and `relativeHumidity` %RH
 * (clamped to [0.01, 100]).
 */
export function dewPoint(temperature: number, relativeHumidity: number): number {
  const rh = Math.min(100, Math.max(MIN_RH, relativeHumidity));
  const gamma = Math.log(rh / 100) + (MAGNUS_B * temperature) / (MAGNUS_C + temperature);
  return (MAGNUS_C * gamma) / (MAGNUS_B - gamma);
}

/**
 * Relative humidity in %RH of air whose dew point is `dew` °C, at
 * `temperature` °C: 100 at or below the dew point (saturated, the excess
 * condenses), falling as the air warms.
 */
export function relativeHumidity(dew: number, temperature: number): number {
  const exponent = (MAGNUS_B * dew) / (MAGNUS_C + dew) -
    (MAGNUS_B * temperature) / (MAGNUS_C + temperature);
  return Math.min(100, Math.max(0, 100 * Math.exp(exponent)));
}
