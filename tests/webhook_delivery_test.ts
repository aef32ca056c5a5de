/** Pure parts of webhook delivery: backoff with full jitter, the signature, the events of an alert. */
import "./env_guard.ts";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { backoffDelayMs, signatureOf } from "../domain/webhook_delivery.ts";
import {
  ackEventOf,
  outboxEventsOf,
  parseWebhookRequest,
  webhookView,
} from "../schemas/webhook.ts";
import type { AlertDoc } from "../schemas/documents.ts";

const BACKOFF = { baseMs: 1000, capMs: 30_000 };

Deno.test("backoffDelayMs() doubles its ceiling per failure up to the cap", () => {
  const top = (failures: number) => backoffDelayMs(failures, BACKOFF, () => 0.999_999_9);
  assert.deepEqual([1, 2, 3, 4, 5, 6, 7, 50].map(top), [
    1000,
    2000,
    4000,
    8000,
    16_000,
    30_000,
    30_000,
    30_000,
  ]);
});

Deno.test("backoffDelayMs() draws uniformly from zero to the ceiling (full jitter)", () => {
  assert.equal(backoffDelayMs(3, BACKOFF, () => 0), 0);
  assert.equal(backoffDelayMs(3, BACKOFF, () => 0.5), 2000);
  let seed = 7;
  const random = () => (seed = (seed * 16807) % 2147483647) / 2147483647;
  const draws = Array.from({ length: 2000 }, () => backoffDelayMs(4, BACKOFF, random));
  assert.ok(draws.every((d) => d >= 0 && d <= 8000 && Number.isInteger(d)));
  const mean = draws.reduce((a, b) => a + b, 0) / draws.length;
  assert.ok(mean > 3500 && mean < 4500, `mean ${mean}`);
});

Deno.test("backoffDelayMs() refuses a failure count below one", () => {
  assert.throws(() => backoffDelayMs(0, BACKOFF), RangeError);
  assert.throws(() => backoffDelayMs(1.5, BACKOFF), RangeError);
});

Deno.test("signatureOf() is the hex HMAC-SHA256 of the body, as node:crypto computes it", async () => {
  const body = JSON.stringify({ id: "d1:overheat:3:raise", event: "raise" });
  const expected = createHmac("sha256", "a-secret-of-16-chars").update(body).digest("hex");
  assert.equal(await signatureOf("a-secret-of-16-chars", body), `sha256=${expected}`);
  assert.notEqual(await signatureOf("another-secret-16ch", body), `sha256=${expected}`);
});

const ALERT: AlertDoc = {
  _id: "d1:overheat:3",
  deviceId: "d1",
  type: "overheat",
  status: "active",
  raisedAt: new Date("2026-11-30T12:00:03Z"),
  raisedSeq: 3,
  asOfSeq: 3,
};

Deno.test("outboxEventsOf() names each transition of an alert with a deterministic id", () => {
  assert.deepEqual(outboxEventsOf(ALERT).map((e) => [e._id, e.occurredAt.toISOString()]), [
    ["d1:overheat:3:raise", "2026-11-30T12:00:03.000Z"],
  ]);
  const cleared = {
    ...ALERT,
    status: "cleared" as const,
    clearedAt: new Date("2026-11-30T12:00:09Z"),
    clearedSeq: 9,
    asOfSeq: 9,
  };
  // A cleared snapshot stands for its raise too (a write can merge both).
  assert.deepEqual(outboxEventsOf(cleared).map((e) => e._id), [
    "d1:overheat:3:raise",
    "d1:overheat:3:clear",
  ]);
  const offline = { ...ALERT, _id: "d1:offline:3", type: "offline" as const };
  assert.deepEqual(outboxEventsOf(offline).map((e) => e.event), ["offline"]);
  assert.equal(ackEventOf(ALERT), null);
  const acked = { ...ALERT, ackedBy: "ana", ackedAt: new Date("2026-11-30T12:01:00Z") };
  assert.equal(ackEventOf(acked)?._id, "d1:overheat:3:ack");
});

Deno.test("parseWebhookRequest() accepts http(s) URLs and a subset of the events, and nothing else", () => {
  const good = {
    url: "https://example.com/hook",
    events: ["raise", "ack"],
    secret: "s".repeat(16),
  };
  assert.equal(parseWebhookRequest(good).ok, true);
  assert.equal(parseWebhookRequest({ ...good, url: "http://127.0.0.1:8080/x" }).ok, true);
  for (
    const bad of [
      { ...good, url: "ftp://example.com/hook" },
      { ...good, url: "file:///etc/passwd" },
      { ...good, url: "javascript:alert(1)" },
      { ...good, url: "not a url" },
      { ...good, events: [] },
      { ...good, events: ["raise", "raise"] },
      { ...good, events: ["explode"] },
      { ...good, secret: "short" },
      { ...good, extra: 1 },
      { url: good.url, events: good.events },
      null,
    ]
  ) {
    assert.equal(parseWebhookRequest(bad).ok, false, JSON.stringify(bad));
  }
});

Deno.test("webhookView() never shows the secret", () => {
  const view = webhookView({
    _id: "w1",
    url: "https://example.com/hook",
    events: ["raise"],
    secret: "s".repeat(16),
    createdAt: new Date(),
  });
  assert.equal("secret" in view, false);
});
