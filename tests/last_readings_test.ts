import "./env_guard.ts";
import assert from "node:assert/strict";
import { LastReadings } from "../actors/last_readings.ts";
import type { Reading } from "../schemas/reading.ts";

function reading(deviceId: string, seq: number, extra: Partial<Reading> = {}): Reading {
  return {
    deviceId,
    seq,
    ts: new Date(1_764_000_000_123 + seq * 3000).toISOString(),
    temperature: 21.7 + seq / 10,
    humidity: 43.1,
    location: { lat: 48.856613, lon: -2.352222 },
    offlineAfterMs: 9000,
    ...extra,
  };
}

Deno.test("LastReadings.get() rebuilds the reading last set, field for field", () => {
  const last = new LastReadings();
  const a = last.alloc();
  const b = last.alloc();
  assert.equal(last.get(a, "a"), null, "nothing before the first reading");
  assert.equal(last.seq(a), undefined);
  const thresholds = { high: 60, low: 50, raiseAfter: 2, clearAfter: 3 };
  last.set(a, reading("a", 7, { thresholds }));
  last.set(a, reading("a", 8, { thresholds }));
  last.set(b, reading("b", 1, { offlineAfterMs: undefined }));
  assert.deepEqual(last.get(a, "a"), reading("a", 8, { thresholds }));
  assert.equal(last.seq(a), 8);
  const { offlineAfterMs: _, ...withoutLimit } = reading("b", 1);
  assert.deepEqual(last.get(b, "b"), withoutLimit, "no offlineAfterMs when it had none");
});

Deno.test("LastReadings reuses a released slot empty and grows past its first capacity", () => {
  const last = new LastReadings();
  const slots = Array.from({ length: 3000 }, () => last.alloc());
  assert.equal(new Set(slots).size, 3000);
  for (const slot of slots) last.set(slot, reading(`d${slot}`, slot + 1));
  assert.deepEqual(last.get(slots[2999]!, "d2999"), reading("d2999", 3000));
  assert.deepEqual(last.get(slots[5]!, "d5"), reading("d5", 6), "kept across growth");
  last.release(slots[5]!);
  const again = last.alloc();
  assert.equal(again, slots[5]);
  assert.equal(last.get(again, "new"), null, "a reused slot starts empty");
});
