/**
 * Port: the read side of the store, as the API and the dashboard query it.
 * MongoDB and Deno KV adapters implement it.
 *
 * @module
 */
import type {
  AlertDoc,
  AlertStatus,
  AlertType,
  DeviceDoc,
  ReadingDoc,
} from "../schemas/documents.ts";

/** Port: read side of the store. */
export interface StoreQueries {
  device(id: string): Promise<DeviceDoc | null>;
  /** Newest first. */
  readings(deviceId: string, limit: number): Promise<readonly ReadingDoc[]>;
  /** Newest raised first. */
  alerts(
    filter: {
      readonly status?: AlertStatus;
      readonly deviceId?: string;
      readonly type?: AlertType;
      readonly limit: number;
    },
  ): Promise<readonly AlertDoc[]>;
}
