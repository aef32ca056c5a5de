/**
 * Drives the live dashboard in a real browser (Debian's Chromium through
 * playwright-core) against the app in embedded mode. Skipped, with the
 * reason, when Chromium is missing or playwright-core cannot load under the
 * granted permissions (run `deno task test:browser`); with REQUIRE_BROWSER=1,
 * as in CI, those reasons fail the test instead.
 *
 * @module
 */
import "./env_guard.ts";
import assert from "node:assert/strict";
import type { Browser, Page } from "playwright-core";
import { EMBEDDED, startApp, testEnv } from "./test_app.ts";
import { envOr, needs } from "./needs.ts";
import { until } from "./wait.ts";

const CHROMIUM = envOr("CHROMIUM_PATH", "/usr/bin/chromium");
const REQUIRED = envOr("REQUIRE_BROWSER") === "1";
const ARTIFACTS = new URL("../test-artifacts/", import.meta.url);
const TOKEN = "dashboard-test-token";

const { chromium, unavailable } = (await needs()).ignore
  ? { chromium: undefined, unavailable: "no permissions: run `deno task test:browser`" }
  : await loadBrowser();
if (unavailable && !REQUIRED) console.warn(`Browser tests skipped: ${unavailable}`);

async function loadBrowser() {
  try {
    await Deno.stat(CHROMIUM);
  } catch {
    return {
      chromium: undefined,
      unavailable: `no Chromium at ${CHROMIUM} (apt-get install -y chromium, or set CHROMIUM_PATH)`,
    };
  }
  try {
    return { chromium: (await import("playwright-core")).chromium, unavailable: undefined };
  } catch (error) {
    return {
      chromium: undefined,
      unavailable: `playwright-core did not load (${(error as Error).message.split("\n")[0]}); ` +
        "it needs --allow-all under Deno: run deno task test:browser",
    };
  }
}

/** A browser test, ignored with its reason when there is no browser, failing when one is required. */
function browserTest(name: string, fn: (browser: Browser) => Promise<void>) {
  Deno.test({
    name,
    ignore: unavailable !== undefined && !REQUIRED,
    // Playwright keeps its pipe to the browser open between tests of the same process.
    sanitizeOps: false,
    sanitizeResources: false,
    async fn() {
      if (!chromium) throw new Error(`REQUIRE_BROWSER=1 but ${unavailable}`);
      const browser = await chromium.launch({
        executablePath: CHROMIUM,
        // Root in a container has no user namespace for Chromium's sandbox.
        args: ["--no-sandbox"],
      });
      try {
        await fn(browser);
      } finally {
        await browser.close();
      }
    },
  });
}

async function screenshot(page: Page, name: string) {
  await Deno.mkdir(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: new URL(name, ARTIFACTS).pathname, fullPage: true });
}

browserTest(
  "the dashboard shows sensors added from the page and an overheat triggered from it",
  async (browser) => {
    await using env = await testEnv("dashboard-browser", EMBEDDED);
    await using app = await startApp(env, { SENSOR_INTERVAL_MS: "200" });
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await page.goto(app.url);
    await page.locator("#connection[data-state=live]").waitFor();

    await page.fill("#add-count", "4");
    await page.selectOption("#add-profile", "normal");
    await page.click("#add-form button[type=submit]");
    await page.locator("#message", { hasText: "Added 4 normal sensor(s)" }).waitFor();
    const rows = page.locator("#devices tr[data-id]");
    await page.waitForFunction('document.querySelectorAll("#devices tr[data-id]").length === 4');
    assert.deepEqual(
      await Promise.all((await rows.all()).map((row) => row.getAttribute("data-state"))),
      ["normal", "normal", "normal", "normal"],
    );
    await page.waitForFunction('document.querySelectorAll("#map circle").length === 4');
    assert.equal(await page.textContent("#count-sensors"), "4");

    await page.click('#devices tr[data-id="sensor-0002"] button[data-action=overheat]');
    await page.locator("#message", { hasText: "Overheating sensor-0002" }).waitFor();
    await page.locator('#devices tr[data-id="sensor-0002"][data-state=critical]').waitFor({
      timeout: 10_000,
    });
    await page.locator('#alerts li[data-device="sensor-0002"][data-type=raised]').waitFor();
    await page.locator("#map circle.critical").waitFor();
    assert.equal(await page.textContent("#count-critical"), "1");
    assert.equal(
      await page.getAttribute('#devices tr[data-id="sensor-0001"]', "data-state"),
      "normal",
      "only the chosen sensor overheats",
    );
    // The page went through the API, so the store has the alert too.
    const alerts = await (await fetch(`${app.url}/alerts?deviceId=sensor-0002`)).json();
    assert.equal(alerts.alerts[0]?.status, "active");
    await screenshot(page, "dashboard.png");

    await page.click('#devices tr[data-id="sensor-0004"] button[data-action=remove]');
    await page.click('#confirm-dialog[open] button[value="ok"]');
    await page.locator('#devices tr[data-id="sensor-0004"]').waitFor({ state: "detached" });
    const sensors = await (await fetch(`${app.url}/sensors`)).json();
    assert.deepEqual(sensors.sensors.map((s: { id: string }) => s.id), [
      "sensor-0001",
      "sensor-0002",
      "sensor-0003",
    ]);
  },
);

browserTest(
  "with an API token the dashboard asks for it and sends it, never embedding it",
  async (browser) => {
    await using env = await testEnv("dashboard-token", EMBEDDED);
    await using app = await startApp(env, { API_TOKEN: TOKEN, SENSOR_INTERVAL_MS: "200" });
    const page = await browser.newPage();
    const html = await (await fetch(app.url)).text();
    assert.ok(!html.includes(TOKEN));
    const sent: (string | undefined)[] = [];
    page.on("request", (r) => {
      if (r.method() === "POST") sent.push(r.headers()["authorization"]);
    });
    await page.goto(app.url);
    await page.fill("#add-count", "1");
    await page.click("#add-form button[type=submit]");
    await page.locator("#token-dialog[open]").waitFor();
    await page.fill("#token-input", TOKEN);
    await page.click('#token-dialog button[value="ok"]');
    await page.locator("#message", { hasText: "Added 1 normal sensor(s)" }).waitFor();
    assert.deepEqual(sent, [undefined, `Bearer ${TOKEN}`], "asked after the 401, then retried");
    await page.locator('#devices tr[data-id="sensor-0001"]').waitFor();
  },
);

browserTest(
  "an operator acknowledges an alert episode from the page, with the token, and sees who did",
  async (browser) => {
    await using env = await testEnv("dashboard-ack", EMBEDDED);
    await using app = await startApp(env, { API_TOKEN: TOKEN, SENSOR_INTERVAL_MS: "200" });
    const auth = { Authorization: `Bearer ${TOKEN}`, "Content-Type": "application/json" };
    const call = async (path: string, body: unknown) => {
      const res = await fetch(`${app.url}${path}`, {
        method: "POST",
        headers: auth,
        body: JSON.stringify(body),
      });
      assert.ok(res.ok, await res.text());
    };
    await call("/sensors", { count: 1, profile: "normal" });
    // Hot for far longer than the test: the episode stays active. A sensor added a moment ago
    // may not have started yet ("Sensor is running" with no sensor behind it: 409): try again.
    await until("the new sensor to take an overheat", async () => {
      const res = await fetch(`${app.url}/sensors/sensor-0001/overheat`, {
        method: "POST",
        headers: auth,
        body: JSON.stringify({ readings: 1000 }),
      });
      await res.body?.cancel();
      return res.ok;
    });
    // Stored before the page opens: a slow pipeline on a busy machine is told apart from a page
    // that does not show what the API answers.
    await until("the overheat episode to be stored", async () => {
      const { alerts } = await (await fetch(`${app.url}/alerts?deviceId=sensor-0001`)).json();
      return alerts.find((a: { type?: string; status: string }) =>
        (a.type ?? "overheat") === "overheat" && a.status === "active"
      );
    }, 60_000);

    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const sent: (string | undefined)[] = [];
    page.on("request", (r) => {
      if (r.method() === "POST") sent.push(r.headers()["authorization"]);
    });
    await page.goto(app.url);
    const episode = page.locator(
      '#episodes li[data-device="sensor-0001"][data-type=overheat][data-status=active][data-acked=false]',
    );
    await episode.waitFor({ timeout: 15_000 });
    const id = await episode.getAttribute("data-id");
    assert.equal(id, "sensor-0001:overheat:" + id!.split(":")[2]);

    await episode.locator("button[data-action=ack]").click();
    await page.locator("#ack-dialog[open]").waitFor();
    await page.fill("#ack-by", "ana");
    await page.fill("#ack-note", "fan replaced");
    await page.click('#ack-dialog button[value="ok"]');
    await page.locator("#token-dialog[open]").waitFor();
    await page.fill("#token-input", TOKEN);
    await page.click('#token-dialog button[value="ok"]');
    await page.locator("#message", { hasText: `Acknowledged ${id}` }).waitFor();
    assert.deepEqual(sent, [undefined, `Bearer ${TOKEN}`], "asked after the 401, then retried");

    const acked = page.locator(`#episodes li[data-id="${id}"][data-acked=true]`);
    await acked.waitFor();
    assert.match(await acked.textContent() ?? "", /acknowledged by ana at .*: fan replaced/);
    assert.equal(await acked.getAttribute("data-status"), "active", "still raised");
    assert.equal(await acked.locator("button[data-action=ack]").count(), 0);
    const stored = await (await fetch(`${app.url}/alerts?acked=true`)).json();
    assert.deepEqual(
      stored.alerts.map((a: { _id: string; ackedBy: string; note: string }) => [
        a._id,
        a.ackedBy,
        a.note,
      ]),
      [[id, "ana", "fan replaced"]],
    );

    await page.selectOption("#episode-filter", "false");
    await page.locator(`#episodes li[data-id="${id}"]`).waitFor({ state: "detached" });
    await page.selectOption("#episode-filter", "true");
    await acked.waitFor();
    await screenshot(page, "dashboard-ack.png");
  },
);

/** Four sensors along the Provence coast: the view takes in land, sea and the Italian border. */
const COAST = {
  avignon: { lat: 43.9493, lon: 4.8055 },
  toulon: { lat: 43.1242, lon: 5.928 },
  nice: { lat: 43.7102, lon: 7.262 },
  menton: { lat: 43.7747, lon: 7.4975 },
} as const;

/** An offline episode as the offline detector stores them: same collection, its own type. */
const OFFLINE = {
  _id: "nice:offline:7",
  deviceId: "nice",
  type: "offline",
  status: "active",
  raisedAt: new Date().toISOString(),
  raisedSeq: 7,
};

/** Great-circle distance in km. */
function haversineKm(a: { lat: number; lon: number }, b: { lat: number; lon: number }) {
  const rad = Math.PI / 180;
  const h = Math.sin(((b.lat - a.lat) * rad) / 2) ** 2 +
    Math.cos(a.lat * rad) * Math.cos(b.lat * rad) * Math.sin(((b.lon - a.lon) * rad) / 2) ** 2;
  return 2 * 6371.0088 * Math.asin(Math.sqrt(h));
}

browserTest(
  "the map draws outlines fitted to the fleet with a scale, colours each state, and the feed filters",
  async (browser) => {
    await using env = await testEnv("dashboard-glance", EMBEDDED);
    // Real offline episodes off: a busy machine can delay 200 ms readings past 3 intervals, and
    // the one offline episode here is the test's own (below), so each filter's answer is exact.
    await using app = await startApp(env, {
      SENSOR_INTERVAL_MS: "200",
      OFFLINE_AFTER_MS: String(7 * 86_400_000),
    });
    const post = async (path: string, body: unknown) => {
      const res = await fetch(`${app.url}${path}`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      const text = await res.text();
      assert.ok(res.ok, text);
      return text ? JSON.parse(text) : null;
    };
    const hot = Array(1000).fill(90);
    // Scripted, so each state is certain: long enough to outlast the test (200 s at 200 ms).
    await post("/sensors", {
      id: "avignon",
      profile: "scripted",
      temperatures: hot,
      location: COAST.avignon,
    });
    await post("/sensors", {
      id: "toulon",
      profile: "scripted",
      temperatures: hot,
      location: COAST.toulon,
    });
    await post("/sensors", {
      id: "nice",
      profile: "scripted",
      temperatures: Array(1000).fill(25),
      location: COAST.nice,
    });
    await post("/sensors", {
      id: "menton",
      profile: "scripted",
      // Raised, then cleared: a cleared episode, and its own thresholds on its sparkline.
      temperatures: [90, 90, ...Array(998).fill(20)],
      thresholds: { high: 60, low: 50 },
      location: COAST.menton,
    });
    const alertOf = (deviceId: string, status: string) =>
      until(`a ${status} episode of ${deviceId}`, async () => {
        const { alerts } = await (await fetch(`${app.url}/alerts?deviceId=${deviceId}`)).json();
        return alerts.find((a: { status: string }) => a.status === status);
      });
    const toulon = await alertOf("toulon", "active");
    await post(`/alerts/${encodeURIComponent(toulon._id)}/ack`, { by: "ana" });
    await alertOf("avignon", "active");
    await alertOf("menton", "cleared");

    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    // The offline detector lands separately: its episodes are added to what the API answers.
    await page.route((url) => url.pathname === "/alerts", async (route) => {
      const response = await route.fetch();
      const body = await response.json();
      const query = new URL(route.request().url()).searchParams;
      const wanted = (key: string, value: string) => (query.get(key) ?? value) === value;
      if (wanted("type", "offline") && wanted("status", "active") && wanted("acked", "false")) {
        body.alerts.unshift(OFFLINE);
      }
      await route.fulfill({ response, json: body });
    });
    await page.goto(app.url);

    // Each device in its state's colour, the same as its legend swatch, four different colours.
    const expected = {
      avignon: "critical",
      toulon: "acknowledged",
      nice: "offline",
      menton: "normal",
    };
    for (const [id, status] of Object.entries(expected)) {
      await page.locator(`#map circle[data-id="${id}"][data-state="${status}"]`).waitFor({
        timeout: 15_000,
      });
      await page.locator(`#devices tr[data-id="${id}"][data-alarm="${status}"]`).waitFor();
    }
    // Browser-side code goes in as text: the type check has no DOM library.
    const colours: Record<string, { dot: string; swatch: string; count: string }> = await page
      .evaluate(`Object.fromEntries(${JSON.stringify(Object.values(expected))}.map((s) => [s, {
        dot: getComputedStyle(document.querySelector('#map circle[data-state="' + s + '"]')).fill,
        swatch: getComputedStyle(document.querySelector('#legend [data-state="' + s + '"] .swatch'))
          .backgroundColor,
        count: document.querySelector('#legend [data-state="' + s + '"] .count').textContent,
      }]))`);
    for (const [s, c] of Object.entries(colours)) {
      assert.equal(c.dot, c.swatch, `${s}: the dot has its legend's colour`);
      assert.equal(c.count, "1", `${s}: one device`);
    }
    assert.equal(new Set(Object.values(colours).map((c) => c.dot)).size, 4, "four colours");

    // Outlines: land (with the sea left out) and borders, inside the view; the fleet fills it.
    const map: {
      viewBox: string;
      landRings: number;
      borderLines: number;
      land: [number, number, number, number];
      borders: [number, number, number, number];
      dots: { id: string; x: number; y: number }[];
      bar: { km: number; px: [number, number, number, number]; label: string };
    } = await page.evaluate(`(() => {
      const svg = document.querySelector("#map");
      const land = svg.querySelector("path.land");
      const borders = svg.querySelector("path.border");
      const box = (el) => {
        const b = el.getBBox();
        return [b.x, b.y, b.x + b.width, b.y + b.height];
      };
      const bar = svg.querySelector("#scale-bar");
      return {
        viewBox: svg.getAttribute("viewBox"),
        landRings: (land.getAttribute("d").match(/M/g) ?? []).length,
        borderLines: (borders.getAttribute("d").match(/M/g) ?? []).length,
        land: box(land),
        borders: box(borders),
        dots: [...svg.querySelectorAll("circle")].map((c) => ({
          id: c.dataset.id,
          x: Number(c.getAttribute("cx")),
          y: Number(c.getAttribute("cy")),
        })),
        bar: { km: Number(bar.dataset.km), px: box(bar.querySelector("path")), label: bar.textContent },
      };
    })()`);
    assert.equal(map.viewBox, "0 0 600 400");
    assert.ok(map.landRings > 0, "land drawn");
    assert.ok(map.borderLines > 0, "the French-Italian border drawn");
    for (const [x0, y0, x1, y1] of [map.land, map.borders]) {
      assert.ok(
        x0 >= -11 && y0 >= -11 && x1 <= 611 && y1 <= 411,
        `clipped to the view: ${[x0, y0, x1, y1]}`,
      );
    }
    const xs = map.dots.map((d) => d.x);
    const ys = map.dots.map((d) => d.y);
    assert.ok(
      Math.min(...xs) > 0 && Math.max(...xs) < 600 && Math.min(...ys) > 0 && Math.max(...ys) < 400,
    );
    assert.ok(
      Math.max(...xs) - Math.min(...xs) > 0.6 * 600,
      "fitted: the fleet spans most of the width",
    );
    const dot = (id: string) => map.dots.find((d) => d.id === id)!;
    // Inland Avignon on land; the open sea south of Marseille is not.
    const [a, m] = [dot("avignon"), dot("menton")];
    const pxPerLon = (m.x - a.x) / (COAST.menton.lon - COAST.avignon.lon);
    const pxPerLat = (m.y - a.y) / (COAST.menton.lat - COAST.avignon.lat);
    const at = (lat: number, lon: number) =>
      [
        a.x + (lon - COAST.avignon.lon) * pxPerLon,
        a.y + (lat - COAST.avignon.lat) * pxPerLat,
      ] as const;
    const inLand = ([x, y]: readonly [number, number]) =>
      page.evaluate(
        `document.querySelector("#map path.land").isPointInFill(new DOMPoint(${x}, ${y}))`,
      );
    assert.equal(await inLand(at(COAST.avignon.lat, COAST.avignon.lon)), true, "Avignon on land");
    assert.equal(await inLand(at(42.9, 5.5)), false, "the sea off Marseille is not land");

    // Scale: the bar's px per km is the map's, measured between two sensors.
    const [bx0, , bx1] = map.bar.px;
    assert.match(map.bar.label ?? "", /^\d+ (km|m)$/);
    const barPxPerKm = (bx1 - bx0) / map.bar.km;
    const mapPxPerKm = Math.hypot(m.x - a.x, m.y - a.y) / haversineKm(COAST.avignon, COAST.menton);
    assert.ok(Math.abs(barPxPerKm / mapPxPerKm - 1) < 0.03, `${barPxPerKm} vs ${mapPxPerKm} px/km`);
    assert.ok(bx1 - bx0 > 20 && bx1 - bx0 <= 150, "a readable bar");

    // Thresholds on the sparklines: the device's own, else the global rule; raise above clear.
    const thresholds = (id: string): Promise<[string, number, number][]> =>
      page.evaluate(`[...document.querySelectorAll(
        '#devices tr[data-id="${id}"] svg.spark line.threshold',
      )].map((l) => [l.classList[1], Number(l.dataset.value), Number(l.getAttribute("y1"))])`);
    await page.locator('#devices tr[data-id="menton"] svg.spark line.threshold.high').waitFor({
      state: "attached",
    });
    const menton = await thresholds("menton");
    assert.deepEqual(menton.map(([k, v]) => [k, v]), [["high", 60], ["low", 50]]);
    assert.ok(
      (menton[0]![2] as number) < (menton[1]![2] as number),
      "the raise line above the clear line",
    );
    await page.locator('#devices tr[data-id="avignon"] svg.spark line.threshold.high').waitFor({
      state: "attached",
    });
    assert.deepEqual((await thresholds("avignon")).map(([k, v]) => [k, v]), [["high", 80], [
      "low",
      70,
    ]]);
    await screenshot(page, "dashboard-states.png");

    // The episode feed's filters: type, status, acknowledged, and together.
    const shown = async (filters: Record<string, string>, want: string[]) => {
      for (const [id, value] of Object.entries(filters)) await page.selectOption(`#${id}`, value);
      await until(`episodes ${JSON.stringify(filters)} to be ${want}`, async () => {
        const got: string[] = await page.evaluate(
          `[...document.querySelectorAll("#episodes li[data-device]")].map((li) => li.dataset.id)`,
        );
        const devices = got.map((id) => id.split(":")[0]).sort();
        // Thrown, so a timeout says what the list showed last.
        if (JSON.stringify(devices) !== JSON.stringify([...want].sort())) throw new Error(`${got}`);
        return true;
      }, 10_000);
    };
    const all = { "episode-type": "all", "episode-status": "all", "episode-filter": "all" };
    await shown(all, ["avignon", "menton", "nice", "toulon"]);
    await shown({ ...all, "episode-type": "offline" }, ["nice"]);
    await shown({ ...all, "episode-type": "overheat" }, ["avignon", "menton", "toulon"]);
    await shown({ ...all, "episode-status": "cleared" }, ["menton"]);
    await shown({ ...all, "episode-status": "active" }, ["avignon", "nice", "toulon"]);
    await shown({ ...all, "episode-filter": "true" }, ["toulon"]);
    await shown({ ...all, "episode-filter": "false" }, ["avignon", "menton", "nice"]);
    await shown({
      "episode-type": "overheat",
      "episode-status": "active",
      "episode-filter": "false",
    }, [
      "avignon",
    ]);
    assert.equal(await page.locator('#episodes li[data-type="offline"]').count(), 0);

    // Removing asks first: cancel keeps the sensor, confirm removes it.
    const ids = async () =>
      (await (await fetch(`${app.url}/sensors`)).json()).sensors.map((s: { id: string }) => s.id);
    await page.click('#devices tr[data-id="nice"] button[data-action=remove]');
    await page.locator("#confirm-dialog[open]", { hasText: "Remove sensor nice?" }).waitFor();
    await page.click('#confirm-dialog button[value="cancel"]');
    await page.locator("#message", { hasText: "Kept nice" }).waitFor();
    assert.deepEqual(await ids(), ["avignon", "toulon", "nice", "menton"]);
    await page.fill("#remove-id", "nice");
    await page.click("#remove-form button[type=submit]");
    await page.locator("#confirm-dialog[open]").waitFor();
    await page.click('#confirm-dialog button[value="ok"]');
    await page.locator("#message", { hasText: "Removed nice" }).waitFor();
    assert.deepEqual(await ids(), ["avignon", "toulon", "menton"]);
    await page.locator('#devices tr[data-id="nice"]').waitFor({ state: "detached" });
  },
);
