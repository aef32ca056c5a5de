/**
 * Port: the read side of the store, as the API and the dashboard query it,
 * and the one write an operator makes there: acknowledging an alert.
 * MongoDB and Deno KV adapters implement it.
 *
 * @module
 */
import type {
  AlertAck,
  AlertDoc,
  AlertStatus,
  DeviceDoc,
  ReadingDoc,
} from "../schemas/documents.ts";

/** What `alerts()` keeps; every field narrows the result. */
export interface AlertFilter {
  readonly status?: AlertStatus;
  readonly deviceId?: string;
  /** Only alerts of this type (`overheat`, ...). */
  readonly type?: AlertDoc["type"];
  /** True: only acknowledged alerts; false: only unacknowledged ones. */
  readonly acked?: boolean;
  /** Raised at or after this instant. */
  readonly raisedFrom?: Date;
  /** Raised before this instant. */
  readonly raisedTo?: Date;
  readonly limit: number;
}

/** What `readingsBetween()` returns: stored readings whose `ts` is in `[from, to)`. */
export interface ReadingWindow {
  /** One device's readings; absent: every device's. */
  readonly deviceId?: string;
  readonly from: Date;
  readonly to: Date;
  /** At most this many readings. */
  readonly limit: number;
  /** Aborting it ends the query, which then rejects with the signal's reason. */
  readonly signal?: AbortSignal;
}

/** The outcome of an acknowledgement: null for an unknown alert. */
export interface AckOutcome {
  /** The alert as stored after the call, with the acknowledgement in force. */
  readonly alert: AlertDoc;
  /** False when it was acknowledged already: the first acknowledgement was kept. */
  readonly recorded: boolean;
}

/** Port: read side of the store, plus alert acknowledgements. */
export interface StoreQueries {
  device(id: string): Promise<DeviceDoc | null>;
  /** Newest first. */
  readings(deviceId: string, limit: number): Promise<readonly ReadingDoc[]>;
  /** Newest raised first. */
  alerts(filter: AlertFilter): Promise<readonly AlertDoc[]>;
  /**
   * Readings by device id, then ascending seq (the order the processors applied them), for
   * replaying a rule over them. Stores check `signal` while they scan.
   */
  readingsBetween(window: ReadingWindow): Promise<readonly ReadingDoc[]>;
  /**
   * Records who acknowledged alert `id` and when, unless it is acknowledged already (the first
   * acknowledgement wins, so a retried or concurrent request changes nothing). Any alert type.
   */
  acknowledge(id: string, ack: AlertAck): Promise<AckOutcome | null>;
}
