import assert from "node:assert/strict";
import { SilenceWatchdog } from "../adapters/silence_watchdog.ts";
import { FakeTime } from "./fake_time.ts";

function watch(giveUpMs: number) {
  const time = new FakeTime();
  const silences: number[] = [];
  const watchdog = new SilenceWatchdog({
    giveUpMs,
    timers: time,
    onSilent: (ms) => silences.push(ms),
  });
  return { time, silences, watchdog };
}

Deno.test("SilenceWatchdog gives up once the peer was silent for giveUpMs, and only once", () => {
  const { time, silences, watchdog } = watch(8000);
  using _ = watchdog;
  time.tick(7999);
  assert.deepEqual(silences, []);
  time.tick(2000);
  assert.deepEqual(silences, [8000], "noticed at the first check past the limit");
  time.tick(60_000);
  assert.deepEqual(silences, [8000]);
  assert.equal(time.pending, 0, "the check timer is released after giving up");
});

Deno.test("SilenceWatchdog starts the silence over on every sign of life", () => {
  const { time, silences, watchdog } = watch(8000);
  using _ = watchdog;
  for (let i = 0; i < 10; i++) {
    time.tick(7000);
    watchdog.heard();
  }
  assert.deepEqual(silences, []);
  time.tick(8000);
  assert.deepEqual(silences, [8000]);
});

Deno.test("SilenceWatchdog checks at most every 5 s, so a long limit is not overshot by more", () => {
  const { time, silences, watchdog } = watch(60_000);
  using _ = watchdog;
  time.tick(64_999);
  assert.deepEqual(silences, [60_000]);
});

Deno.test("SilenceWatchdog never calls onSilent once disposed", () => {
  const { time, silences, watchdog } = watch(1000);
  watchdog[Symbol.dispose]();
  time.tick(10_000);
  assert.deepEqual(silences, []);
  assert.equal(time.pending, 0);
});
