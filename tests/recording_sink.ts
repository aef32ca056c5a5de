/**
 * A reading sink for unit tests: records what it is offered and accepts while
 * `accepting` is true.
 *
 * @module
 */
import type { Reading } from "../schemas/reading.ts";
import type { ReadingSink } from "../actors/reading_sink.ts";

export class RecordingSink implements ReadingSink {
  readonly readings: Reading[] = [];
  accepting = true;

  publish(reading: Reading): boolean {
    this.readings.push(reading);
    return this.accepting;
  }

  /** The readings offered for one device, in order. */
  of(id: string): Reading[] {
    return this.readings.filter((r) => r.deviceId === id);
  }
}
