/**
 * End to end: faults injected through `POST /sensors/:id/faults` into the
 * app's own sensors, through the transport (Kafka or the embedded queue) and
 * the processors into the store, and what the processors make of each: gaps,
 * late and duplicate readings counted, what is stored, no alert from spikes.
 */
import "./env_guard.ts";
import assert from "node:assert/strict";
import type { App } from "../main.ts";
import type { ReadingDoc } from "../schemas/documents.ts";
import type { FaultKind } from "../domain/sensor_faults.ts";
import { testWith } from "./needs.ts";
import { until } from "./wait.ts";
import { EMBEDDED, KAFKA_MONGO, startApp, testEnv } from "./test_app.ts";

const INTERVAL_MS = 100;
const STEPS = 80;

function send(url: string, method: string, body?: unknown) {
  return fetch(url, {
    method,
    ...(body === undefined
      ? {}
      : { headers: { "content-type": "application/json" }, body: JSON.stringify(body) }),
  });
}

async function addScripted(app: App, id: string, temperatures: readonly number[]) {
  const res = await send(`${app.url}/sensors`, "POST", {
    id,
    temperatures,
    intervalMs: INTERVAL_MS,
  });
  assert.equal(res.status, 201, await res.text());
}

/** Every stored reading of a device, oldest first. */
async function stored(app: App, id: string): Promise<ReadingDoc[]> {
  return [...await app.parts.store!.readings(id, 100_000)].reverse();
}

/**
 * Posts a fault and waits until the sensor has it. In Kafka mode it travels
 * as a command read from the latest offset, so one sent while the command
 * consumer is still joining is lost, as for overheat: post again then.
 */
async function inject(app: App, id: string, fault: { kind: FaultKind } & Record<string, unknown>) {
  const injected = () => app.parts.fleet!.stats.faultsInjected[fault.kind];
  const before = injected();
  for (let attempt = 1;; attempt++) {
    const res = await send(`${app.url}/sensors/${id}/faults`, "POST", fault);
    assert.equal(res.status, 202, await res.clone().text());
    const body = await res.json();
    assert.equal(body.id, id);
    assert.equal(body.fault.kind, fault.kind);
    try {
      await until(`${id} to get its ${fault.kind} fault`, () => injected() > before, 5000);
      return;
    } catch (error) {
      if (attempt === 3) throw error;
    }
  }
}

async function readingsStored(app: App, id: string, n: number) {
  await until(`${n} readings of ${id} stored`, async () => (await stored(app, id)).length >= n);
}

async function completed(app: App, id: string) {
  await until(`${id} to complete`, async () => {
    const body = await (await fetch(`${app.url}/sensors/${id}`)).json();
    return body.status === "completed";
  }, 60_000);
}

/** The device as the processors left it, once its last reading `lastSeq` is applied. */
async function deviceAt(app: App, id: string, lastSeq: number) {
  return await until(`${id} applied up to seq ${lastSeq}`, async () => {
    const device = await app.parts.store!.device(id);
    return device?.lastSeq === lastSeq ? device : undefined;
  }, 30_000);
}

const ramp = Array.from({ length: STEPS }, (_, i) => 20 + i / 2);
const flat = Array.from({ length: STEPS }, () => 25);

for (const mode of [KAFKA_MONGO, EMBEDDED]) {
  const inMode = await testWith(mode);
  inMode.test(`faults (${mode.name}): stuck, spike, dropout, late and duplicate readings as the processors see them`, async () => {
    await using env = await testEnv("e2e-faults", mode);
    await using app = await startApp(env);
    await addScripted(app, "stuck-1", ramp);
    await addScripted(app, "spike-1", flat);
    await addScripted(app, "dropout-1", flat);
    await addScripted(app, "late-1", ramp);
    await addScripted(app, "dup-1", ramp);
    for (const id of ["stuck-1", "spike-1", "dropout-1", "late-1", "dup-1"]) {
      await readingsStored(app, id, 2);
    }
    await inject(app, "stuck-1", { kind: "stuck", readings: 8 });
    await inject(app, "spike-1", { kind: "spike", count: 3, temperature: 150 });
    await inject(app, "dropout-1", { kind: "dropout", readings: 10 });
    await inject(app, "late-1", { kind: "late", readings: 1, by: 2 });
    await inject(app, "dup-1", { kind: "duplicate", readings: 3, copies: 1 });
    for (const id of ["stuck-1", "spike-1", "dropout-1", "late-1", "dup-1"]) {
      await completed(app, id);
    }

    // Stuck: fresh seqs, no gap, one run of exactly 8 equal values in a rising series.
    const stuckDevice = await deviceAt(app, "stuck-1", STEPS);
    assert.deepEqual(stuckDevice.counters, {
      readings: STEPS,
      duplicates: 0,
      gaps: 0,
      outOfOrder: 0,
    });
    const stuck = await stored(app, "stuck-1");
    assert.deepEqual(stuck.map((r) => r.seq), ramp.map((_, i) => i + 1));
    const runs: number[] = [];
    for (const [i, r] of stuck.entries()) {
      if (i > 0 && r.temperature === stuck[i - 1]!.temperature) runs[runs.length - 1]!++;
      else runs.push(1);
    }
    assert.deepEqual(runs.filter((n) => n > 1), [8], `one stuck run: ${runs}`);
    const at = runs.findIndex((n) => n > 1);
    const frozen = stuck.slice(at, at + 8);
    assert.ok(frozen.every((r) => r.humidity === frozen[0]!.humidity), "humidity stuck too");

    // Spikes: three single readings at 150 °C, never adjacent, and no alert from any.
    const spikeDevice = await deviceAt(app, "spike-1", STEPS);
    const spike = await stored(app, "spike-1");
    const spikes = spike.flatMap((r, i) => (r.temperature === 150 ? [i] : []));
    assert.equal(spikes.length, 3, `three spikes: ${spikes}`);
    assert.ok(spikes.every((i, k) => k === 0 || i - spikes[k - 1]! === 2), `${spikes}`);
    assert.ok(spike.every((r) => !r.is_critical), "a spike is never critical");
    assert.equal(spikeDevice.level, "normal");
    // Overheat only: a 100 ms sensor stalled 300 ms by a busy machine is rightly offline.
    assert.deepEqual(
      await app.parts.store!.alerts({ deviceId: "spike-1", type: "overheat", limit: 10 }),
      [],
    );

    // Dropout: silence, not a gap. 10 ticks sent nothing and used no seq.
    const dropoutDevice = await deviceAt(app, "dropout-1", STEPS - 10);
    assert.deepEqual(dropoutDevice.counters, {
      readings: STEPS - 10,
      duplicates: 0,
      gaps: 0,
      outOfOrder: 0,
    });
    const dropout = await stored(app, "dropout-1");
    assert.deepEqual(dropout.map((r) => r.seq), flat.slice(10).map((_, i) => i + 1));
    const pauses = dropout.slice(1).map((r, i) => r.ts.getTime() - dropout[i]!.ts.getTime());
    const silences = pauses.filter((ms) => ms >= 10 * INTERVAL_MS);
    assert.equal(silences.length, 1, `one window without readings: ${pauses}`);
    // The silence is longer than the device's offlineAfterMs (3 intervals by default): one offline
    // episode from the last reading before it, cleared by the first one after it (event time, so
    // recorded even when only the closing reading shows it: docs/offline.md).
    const before = dropout[pauses.findIndex((ms) => ms >= 10 * INTERVAL_MS)]!;
    const episode = await until("the dropout's offline episode, cleared", async () => {
      const res = await fetch(`${app.url}/alerts?type=offline&deviceId=dropout-1&limit=100`);
      const { alerts } = await res.json() as { alerts: Record<string, unknown>[] };
      return alerts.find((a) => a.raisedSeq === before.seq && a.status === "cleared");
    });
    assert.equal(episode.clearedSeq, before.seq + 1);

    // Late: its seq arrives after two later ones, so the processors counted a gap when those
    // came, and then refused the late reading (dead-lettered, never stored).
    const lateDevice = await deviceAt(app, "late-1", STEPS);
    assert.deepEqual(lateDevice.counters, {
      readings: STEPS - 1,
      duplicates: 1,
      gaps: 1,
      outOfOrder: 0,
    });
    const late = await stored(app, "late-1");
    const missing = ramp.map((_, i) => i + 1).filter((seq) => !late.some((r) => r.seq === seq));
    assert.equal(missing.length, 1, `one seq not stored: ${missing}`);

    // Duplicates: each repeated reading dropped as a duplicate; every seq stored once.
    const dupDevice = await deviceAt(app, "dup-1", STEPS);
    assert.deepEqual(dupDevice.counters, {
      readings: STEPS,
      duplicates: 3,
      gaps: 0,
      outOfOrder: 0,
    });
    assert.deepEqual((await stored(app, "dup-1")).map((r) => r.seq), ramp.map((_, i) => i + 1));

    const stats = app.parts.processors!.stats;
    assert.equal(stats.late, 1, "the late reading, refused");
    assert.equal(stats.duplicates, 3, "the repeated readings");
    assert.equal(stats.gaps, 1);
    assert.equal(stats.skippedSeqs, 1);
    assert.equal(stats.conflicts, 0);
    assert.equal(stats.deadLettered, 1);
    assert.equal(stats.alertsRaised, 0);

    const metrics = await (await fetch(`${app.url}/metrics`)).text();
    for (const kind of ["stuck", "spike", "dropout", "late", "duplicate"]) {
      assert.match(
        metrics,
        new RegExp(`^iot_sensor_faults_injected_total\\{kind="${kind}"\\} \\d`, "m"),
      );
    }
  });

  inMode.test(`faults (${mode.name}): an active fault shows in the sensor's status and metrics until cleared`, async () => {
    await using env = await testEnv("e2e-fault-status", mode);
    await using app = await startApp(env, { SENSOR_INTERVAL_MS: "100" });
    const add = await send(`${app.url}/sensors`, "POST", { id: "probe-1" });
    assert.equal(add.status, 201);
    await add.body?.cancel();
    await readingsStored(app, "probe-1", 1);
    await inject(app, "probe-1", { kind: "dropout", durationMs: 600_000 });
    const detail = await (await fetch(`${app.url}/sensors/probe-1`)).json();
    assert.equal(detail.faults.length, 1);
    assert.equal(detail.faults[0].kind, "dropout");
    assert.equal(detail.faults[0].remaining, null);
    assert.ok(Date.parse(detail.faults[0].until) > Date.now() + 500_000);
    const list = await (await fetch(`${app.url}/sensors`)).json();
    assert.deepEqual(list.sensors[0].faults, detail.faults);
    assert.match(
      await (await fetch(`${app.url}/metrics`)).text(),
      /^iot_sensor_faults_active\{kind="dropout"\} 1$/m,
    );
    // Silent while it lasts: ticks go by, no seq is used.
    const seq = app.parts.fleet!.lastSeq("probe-1");
    await until("three silenced ticks", () => app.parts.fleet!.stats.silenced >= 3);
    assert.equal(app.parts.fleet!.lastSeq("probe-1"), seq);
    assert.match(
      await (await fetch(`${app.url}/metrics`)).text(),
      /^iot_sensor_ticks_silenced_total [1-9]\d*$/m,
    );

    const clear = await send(`${app.url}/sensors/probe-1/faults?kind=dropout`, "DELETE");
    assert.equal(clear.status, 204);
    await until("the fault to clear", async () => {
      const body = await (await fetch(`${app.url}/sensors/probe-1`)).json();
      return body.faults.length === 0;
    });
    await until("readings again", () => (app.parts.fleet!.lastSeq("probe-1") ?? 0) > seq!);
    assert.match(
      await (await fetch(`${app.url}/metrics`)).text(),
      /^iot_sensor_faults_active\{kind="dropout"\} 0$/m,
    );
  });
}
