/**
 * Port: where sensors hand their readings (the batching Kafka producer, or
 * the embedded queue). Declared beside the sensors; transports implement it.
 *
 * @module
 */
import type { Reading } from "../schemas/reading.ts";

/** Port: where sensors hand their readings. */
export interface ReadingSink {
  /** False when the reading could not be accepted (buffer full or sink closed). */
  publish(reading: Reading): boolean;
}

export interface ProducerStats {
  readonly sent: number;
  readonly dropped: number;
  readonly buffered: number;
  readonly failedSends: number;
}
