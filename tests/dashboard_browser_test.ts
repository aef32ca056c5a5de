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
    // Hot for far longer than the test: the episode stays active.
    await call("/sensors/sensor-0001/overheat", { readings: 1000 });

    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const sent: (string | undefined)[] = [];
    page.on("request", (r) => {
      if (r.method() === "POST") sent.push(r.headers()["authorization"]);
    });
    await page.goto(app.url);
    const episode = page.locator(
      '#episodes li[data-device="sensor-0001"][data-status=active][data-acked=false]',
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
