/**
 * The last reading of each sensor of a fleet, for `GET /sensors/:id`, kept
 * as a struct of arrays: one slot per sensor in a `Float64Array` (seq, time,
 * temperature, humidity, position, offline limit) and the rule it carried.
 * A `Reading` object per sensor (its location, its boxed numbers and its ISO
 * string) cost about 240 B at 100 000 sensors; a slot costs 64 B. `get()`
 * rebuilds the reading as the sensor emitted it.
 *
 * @module
 */
import type { Reading } from "../schemas/reading.ts";

/** Doubles per slot: seq, ts (epoch ms), temperature, humidity, lat, lon, offlineAfterMs. */
const FIELDS = 7;
/** offlineAfterMs when the reading had none. */
const NONE = -1;

export class LastReadings {
  #values = new Float64Array(FIELDS * 1024);
  /** The reading's `thresholds` (undefined: it carried none). */
  #rules: Reading["thresholds"][] = [];
  /** 1 when the slot holds a reading. */
  #filled = new Uint8Array(1024);
  readonly #free: number[] = [];
  #next = 0;

  /** A slot for a new sensor, empty. */
  alloc(): number {
    const slot = this.#free.pop() ?? this.#next++;
    if (slot >= this.#filled.length) this.#grow();
    this.#filled[slot] = 0;
    this.#rules[slot] = undefined;
    return slot;
  }

  /** Gives back a removed sensor's slot. */
  release(slot: number): void {
    this.#filled[slot] = 0;
    this.#rules[slot] = undefined;
    this.#free.push(slot);
  }

  set(slot: number, reading: Reading): void {
    const v = this.#values;
    const at = slot * FIELDS;
    v[at] = reading.seq;
    v[at + 1] = Date.parse(reading.ts);
    v[at + 2] = reading.temperature;
    v[at + 3] = reading.humidity;
    v[at + 4] = reading.location.lat;
    v[at + 5] = reading.location.lon;
    v[at + 6] = reading.offlineAfterMs ?? NONE;
    this.#rules[slot] = reading.thresholds;
    this.#filled[slot] = 1;
  }

  /** The seq of the reading last `set()` in `slot`; undefined before the first. */
  seq(slot: number): number | undefined {
    return this.#filled[slot] === 1 ? this.#values[slot * FIELDS] : undefined;
  }

  /** The reading last `set()` in `slot`, for device `deviceId`; null before the first. */
  get(slot: number, deviceId: string): Reading | null {
    if (this.#filled[slot] !== 1) return null;
    const v = this.#values;
    const at = slot * FIELDS;
    const thresholds = this.#rules[slot];
    const offlineAfterMs = v[at + 6]!;
    return {
      deviceId,
      seq: v[at]!,
      ts: new Date(v[at + 1]!).toISOString(),
      temperature: v[at + 2]!,
      humidity: v[at + 3]!,
      location: { lat: v[at + 4]!, lon: v[at + 5]! },
      ...(thresholds ? { thresholds } : {}),
      ...(offlineAfterMs !== NONE ? { offlineAfterMs } : {}),
    };
  }

  #grow() {
    const size = this.#filled.length * 2;
    const values = new Float64Array(FIELDS * size);
    values.set(this.#values);
    this.#values = values;
    const filled = new Uint8Array(size);
    filled.set(this.#filled);
    this.#filled = filled;
  }
}
