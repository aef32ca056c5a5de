import assert from "node:assert/strict";
import { SharedTimer } from "../actors/shared_timer.ts";
import { delay, until } from "./wait.ts";

Deno.test("SharedTimer runs callbacks in due order, same-millisecond ones in scheduling order", async () => {
  using timer = new SharedTimer();
  const ran: string[] = [];
  const t0 = Date.now();
  timer.schedule(t0 + 30, () => ran.push("c"));
  timer.schedule(t0 + 10, () => ran.push("a1"));
  timer.schedule(t0 + 20, () => ran.push("b"));
  timer.schedule(t0 + 10, () => ran.push("a2"));
  await until("all four", () => ran.length === 4);
  assert.deepEqual(ran, ["a1", "a2", "b", "c"]);
  assert.equal(timer.size, 0);
});

Deno.test("SharedTimer never runs a callback before it is due", async () => {
  using timer = new SharedTimer();
  const lateness: number[] = [];
  const t0 = Date.now();
  for (const offset of [5, 15, 25, 35]) {
    timer.schedule(t0 + offset, () => lateness.push(Date.now() - (t0 + offset)));
  }
  await until("all ran", () => lateness.length === 4);
  assert.ok(lateness.every((ms) => ms >= 0), `ran early: ${lateness}`);
});

Deno.test("SharedTimer.cancel() forgets a callback and releases the timer when none is left", async () => {
  // The test sanitizer fails this test if a timer is still armed at its end.
  const timer = new SharedTimer();
  let ran = false;
  const entry = timer.schedule(Date.now() + 20, () => ran = true);
  assert.equal(timer.size, 1);
  timer.cancel(entry);
  timer.cancel(entry); // twice is harmless
  assert.equal(timer.size, 0);
  await delay(40);
  assert.equal(ran, false);
});

Deno.test("SharedTimer lets a callback schedule its next run (a periodic tick)", async () => {
  using timer = new SharedTimer();
  const start = Date.now();
  let ticks = 0;
  const tick = () => {
    ticks++;
    if (ticks < 5) timer.schedule(start + ticks * 5, tick);
  };
  timer.schedule(start, tick);
  await until("five ticks", () => ticks === 5);
  assert.ok(Date.now() - start >= 20, "the fifth tick is due 20 ms after the first");
  await delay(20);
  assert.equal(ticks, 5);
});

Deno.test("SharedTimer follows the clock it is given", async () => {
  // Due times refer to the injected clock (here ten years ahead), not to Date.now().
  const offset = 10 * 365 * 86_400_000;
  using timer = new SharedTimer(() => Date.now() + offset);
  let ran = false;
  timer.schedule(Date.now() + offset + 10, () => ran = true);
  await until("ran", () => ran);
});

Deno.test("SharedTimer yields to other timers when its callbacks keep it busy", async () => {
  using timer = new SharedTimer();
  let ran = 0;
  const busy = () => {
    const until = performance.now() + 5;
    while (performance.now() < until) { /* a sensor tick that takes 5 ms */ }
    ran++;
  };
  const now = Date.now();
  for (let i = 0; i < 12; i++) timer.schedule(now, busy);
  let ranBeforeOtherTimer = -1;
  setTimeout(() => ranBeforeOtherTimer = ran, 0);
  await until("all callbacks", () => ran === 12);
  assert.ok(
    ranBeforeOtherTimer >= 0 && ranBeforeOtherTimer < 12,
    `another timer ran only after all ${ranBeforeOtherTimer} callbacks`,
  );
});
