/**
 * The two small Kafka wire formats of a distributed fleet besides the registry
 * record (`sensor_spec.ts`):
 *
 * - a command to the process that runs a sensor, on the commands topic
 *   (key = sensor id; every sensors process reads it from the latest offset):
 *     {"type":"overheat","id":"boiler-1","readings":10,"temperature":90}
 *     {"type":"fault","id":"boiler-1","fault":{"kind":"dropout","readings":5}}
 *     {"type":"clear-faults","id":"boiler-1","kind":"dropout"}   (no kind: every fault)
 * - the status a sensors process publishes periodically on the compacted
 *   status topic (key = its instance id; a null value when it stops):
 *     {"instance":"…","member":"…","host":"h","pid":42,"partitions":[0,3],
 *      "running":120,"sensors":121,"at":"2026-11-30T10:00:00.000Z"}
 *
 * @module
 */
import { z } from "zod";
import { DeviceIdSchema, TemperatureSchema } from "./reading.ts";
import { type Decoded, decodeJson } from "./json_value.ts";
import { OVERHEAT_READINGS } from "./overheat_request.ts";
import { FaultKindSchema, FaultOrderSchema } from "./fault_request.ts";

export const SensorCommandSchema = z.discriminatedUnion("type", [
  z.object({
    type: z.literal("overheat"),
    id: DeviceIdSchema,
    readings: z.int().min(OVERHEAT_READINGS.min).max(OVERHEAT_READINGS.max),
    temperature: TemperatureSchema,
  }),
  z.object({ type: z.literal("fault"), id: DeviceIdSchema, fault: FaultOrderSchema }),
  z.object({
    type: z.literal("clear-faults"),
    id: DeviceIdSchema,
    kind: FaultKindSchema.optional(),
  }),
]);
export type SensorCommand = z.infer<typeof SensorCommandSchema>;

export const FleetStatusSchema = z.object({
  instance: z.string().min(1).max(200),
  member: z.string().max(300),
  host: z.string().max(300),
  pid: z.int().min(0),
  /** Registry partitions this process owns and has caught up with (its sensors run). */
  partitions: z.array(z.int().min(0)),
  running: z.int().min(0),
  sensors: z.int().min(0),
  at: z.iso.datetime({ offset: true }),
});
export type FleetStatus = z.infer<typeof FleetStatusSchema>;

export function decodeCommand(value: Uint8Array): Decoded<SensorCommand> {
  return decodeJson(SensorCommandSchema, value);
}

export function decodeStatus(value: Uint8Array): Decoded<FleetStatus> {
  return decodeJson(FleetStatusSchema, value);
}
