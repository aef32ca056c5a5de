import assert from "node:assert/strict";
import { SharedTimer } from "../actors/shared_timer.ts";
import { FakeTime } from "./fake_time.ts";

Deno.test("SharedTimer runs callbacks in due order, same-millisecond ones in scheduling order", () => {
  using time = new FakeTime();
  using timer = new SharedTimer(time);
  const ran: string[] = [];
  const t0 = time.now();
  timer.schedule(t0 + 30, () => ran.push("c"));
  timer.schedule(t0 + 10, () => ran.push("a1"));
  timer.schedule(t0 + 20, () => ran.push("b"));
  timer.schedule(t0 + 10, () => ran.push("a2"));
  time.tick(30);
  assert.deepEqual(ran, ["a1", "a2", "b", "c"]);
  assert.equal(timer.size, 0);
  assert.equal(time.pending, 0, "no timer is left armed");
});

Deno.test("SharedTimer never runs a callback before it is due, and runs it when it is", () => {
  using time = new FakeTime();
  using timer = new SharedTimer(time);
  const ranAt: number[] = [];
  const t0 = time.now();
  for (const offset of [5, 15, 25, 35]) timer.schedule(t0 + offset, () => ranAt.push(time.now()));
  time.tick(4);
  assert.deepEqual(ranAt, []);
  time.tick(1);
  assert.deepEqual(ranAt, [t0 + 5]);
  time.tick(9);
  assert.deepEqual(ranAt, [t0 + 5]);
  time.tick(21);
  assert.deepEqual(ranAt, [t0 + 5, t0 + 15, t0 + 25, t0 + 35]);
});

Deno.test("SharedTimer rounds a fractional due time up, never running early", () => {
  using time = new FakeTime();
  using timer = new SharedTimer(time);
  let ran = false;
  timer.schedule(time.now() + 9.2, () => ran = true);
  time.tick(9);
  assert.equal(ran, false);
  time.tick(1);
  assert.equal(ran, true);
});

Deno.test("SharedTimer.cancel() forgets a callback and releases the timer when none is left", () => {
  using time = new FakeTime();
  const timer = new SharedTimer(time);
  let ran = false;
  const entry = timer.schedule(time.now() + 20, () => ran = true);
  assert.equal(timer.size, 1);
  assert.equal(time.pending, 1);
  timer.cancel(entry);
  timer.cancel(entry); // twice is harmless
  assert.equal(timer.size, 0);
  assert.equal(time.pending, 0, "the underlying timer is released");
  time.tick(40);
  assert.equal(ran, false);
});

Deno.test("SharedTimer.cancel() of one callback keeps the others of its millisecond", () => {
  using time = new FakeTime();
  using timer = new SharedTimer(time);
  const ran: string[] = [];
  const due = time.now() + 10;
  timer.schedule(due, () => ran.push("a"));
  const b = timer.schedule(due, () => ran.push("b"));
  timer.schedule(due, () => ran.push("c"));
  timer.cancel(b);
  time.tick(10);
  assert.deepEqual(ran, ["a", "c"]);
});

Deno.test("SharedTimer lets a callback schedule its next run (a periodic tick)", () => {
  using time = new FakeTime();
  using timer = new SharedTimer(time);
  const start = time.now();
  const ticks: number[] = [];
  const tick = () => {
    ticks.push(time.now() - start);
    if (ticks.length < 5) timer.schedule(start + ticks.length * 5, tick);
  };
  timer.schedule(start, tick);
  time.tick(19);
  assert.deepEqual(ticks, [0, 5, 10, 15], "the fifth tick is due 20 ms after the first");
  time.tick(1);
  assert.deepEqual(ticks, [0, 5, 10, 15, 20]);
  time.tick(100);
  assert.equal(ticks.length, 5);
  assert.equal(time.pending, 0);
});

Deno.test("SharedTimer follows the clock it is given", () => {
  // Due times refer to the injected clock (here ten years ahead), not to the timers' clock.
  using time = new FakeTime();
  const offset = 10 * 365 * 86_400_000;
  using timer = new SharedTimer(time, () => time.now() + offset);
  let ran = false;
  timer.schedule(time.now() + offset + 10, () => ran = true);
  time.tick(9);
  assert.equal(ran, false);
  time.tick(1);
  assert.equal(ran, true);
});

Deno.test("SharedTimer yields to other timers when its callbacks keep it busy", () => {
  using time = new FakeTime();
  using timer = new SharedTimer(time);
  let ran = 0;
  const busy = () => {
    const until = performance.now() + 5;
    while (performance.now() < until) { /* a sensor tick that takes 5 ms */ }
    ran++;
  };
  const now = time.now();
  for (let i = 0; i < 12; i++) timer.schedule(now, busy);
  let ranBeforeOtherTimer = -1;
  time.setTimeout(() => ranBeforeOtherTimer = ran, 0);
  time.tick(0);
  assert.equal(ran, 12);
  assert.ok(
    ranBeforeOtherTimer >= 0 && ranBeforeOtherTimer < 12,
    `another timer ran only after all ${ranBeforeOtherTimer} callbacks`,
  );
});
