// The live dashboard: renders the snapshots pushed over /dashboard/events and
// sends commands through the sensor API; lists the stored alert episodes and
// acknowledges them through the alert API. No framework and no build step; the
// map's geometry is in map.js.
// The API token, when one is needed, lives in this tab's sessionStorage only.

import {
  deviceState,
  fitView,
  outlinePaths,
  sameView,
  scaleBar,
  STATES,
  thresholdLines,
} from "/dashboard/map.js";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "iot-api-token";
const OPERATOR_KEY = "iot-operator";
const EPISODES = 20;
/** Episodes fetched when filtering by type, of which the first EPISODES of that type show. */
const EPISODES_TYPED = 200;
const PAGE = 50;

/** The latest value of each snapshot section; events carry only the changed ones. */
const state = { at: Date.now(), counters: null, map: null, table: null, alerts: null };
const view = {
  offset: 0,
  filter: "all",
  search: "",
  selected: "",
  episodes: { type: "all", status: "all", acked: "all" },
};
let source;

// --- live updates ---------------------------------------------------------------

function connect() {
  source?.close();
  const params = new URLSearchParams({
    offset: String(view.offset),
    limit: String(PAGE),
    filter: view.filter,
    search: view.search,
  });
  source = new EventSource(`/dashboard/events?${params}`);
  setConnection("connecting", "connecting…");
  source.addEventListener("open", () => setConnection("live", "live"));
  source.addEventListener("error", () => setConnection("lost", "reconnecting…"));
  source.addEventListener("snapshot", (event) => {
    const diff = JSON.parse(event.data);
    Object.assign(state, diff);
    render(diff);
  });
}

function setConnection(status, text) {
  const el = $("connection");
  el.dataset.state = status;
  el.textContent = text;
}

function render(diff) {
  const note = $("note");
  note.hidden = !diff.note;
  note.textContent = diff.note ?? "";
  if (diff.counters) renderCounters(diff.counters);
  if (diff.map) renderMap(diff.map);
  if (diff.alerts) {
    renderAlerts(diff.alerts);
    refreshEpisodes();
    refreshActive();
  }
  // Every event: "time in state" moves on even when the rows did not change.
  if (state.table) renderTable(state.table);
}

function renderCounters(c) {
  $("count-sensors").textContent = c.sensors.toLocaleString();
  $("count-rate").textContent = c.readingsPerSecond.toLocaleString();
  $("count-critical").textContent = c.criticalDevices.toLocaleString();
  $("count-critical").classList.toggle("alarm", c.criticalDevices > 0);
  $("count-lag").textContent = c.lagMs === null ? "–" : `${(c.lagMs / 1000).toFixed(1)} s`;
}

// --- map: devices over land and borders, fitted to the fleet, with a scale bar ------

const SVG_NS = "http://www.w3.org/2000/svg";
const MAP_W = 600;
const MAP_H = 400;
/** Draw order: critical devices last, so they are on top. */
const DRAW_ORDER = { normal: 0, acknowledged: 1, offline: 2, critical: 3 };

/** Outlines from /dashboard/world.json once loaded, and the paths drawn for the current view. */
const map = { world: null, view: null, paths: null };

async function loadWorld() {
  try {
    const res = await fetch("/dashboard/world.json");
    if (!res.ok) throw new Error(`${res.status}`);
    map.world = await res.json();
    map.paths = null;
    if (state.map) renderMap(state.map);
  } catch (error) {
    $("map-caption").title = `No outlines: ${error.message}`;
  }
}

function renderMap(section) {
  const svg = $("map");
  const points = section.points;
  $("map-caption").textContent = points.length < section.total
    ? `(${points.length} of ${section.total} shown, every critical one included)`
    : `(${section.total})`;
  const fitted = fitView(points.map((p) => [p[2], p[1]]), {
    width: MAP_W,
    height: MAP_H,
  });
  // Keep the view while the fleet barely moves: the background is redrawn only on a real change.
  if (!sameView(map.view, fitted)) {
    map.view = fitted;
    map.paths = null;
  }
  const proj = map.view;
  if (map.world && !map.paths) map.paths = outlinePaths(map.world, proj);
  const fragment = document.createDocumentFragment();
  const water = svgEl("rect", { class: "water", width: MAP_W, height: MAP_H });
  fragment.append(water);
  if (map.paths) {
    fragment.append(svgEl("path", { class: "land", d: map.paths.land }));
    fragment.append(svgEl("path", { class: "border", d: map.paths.borders }));
  }
  const radius = points.length > 500 ? 2.5 : 5;
  const counts = Object.fromEntries(STATES.map((s) => [s, 0]));
  const dots = points.map(([id, lat, lon, critical]) => {
    const status = deviceState(critical === 1, active.byDevice.get(id));
    counts[status]++;
    return { id, lat, lon, status };
  }).sort((a, b) => DRAW_ORDER[a.status] - DRAW_ORDER[b.status]);
  for (const { id, lat, lon, status } of dots) {
    const [x, y] = proj.project([lon, lat]);
    const dot = svgEl("circle", { cx: x.toFixed(1), cy: y.toFixed(1), r: radius, class: status });
    dot.dataset.id = id;
    dot.dataset.state = status;
    dot.classList.toggle("selected", id === view.selected);
    const title = document.createElementNS(SVG_NS, "title");
    title.textContent = `${id} (${status}) ${lat}, ${lon}`;
    dot.append(title);
    fragment.append(dot);
  }
  fragment.append(scaleBarGroup(proj));
  svg.replaceChildren(fragment);
  for (const [status, count] of Object.entries(counts)) {
    const el = document.querySelector(`#legend [data-state="${status}"] .count`);
    if (el) el.textContent = String(count);
  }
}

/** A bar of a round distance, at most a quarter of the map wide, bottom left. */
function scaleBarGroup(proj) {
  const bar = scaleBar(proj.pxPerKm, MAP_W / 4);
  const [x, y] = [12, MAP_H - 14];
  const g = svgEl("g", { id: "scale-bar", class: "scale" });
  g.dataset.km = String(bar.km);
  g.append(
    svgEl("path", { d: `M${x},${y - 5}V${y}H${(x + bar.px).toFixed(1)}V${y - 5}` }),
    svgEl("text", { x, y: y - 8 }),
  );
  g.lastChild.textContent = bar.label;
  return g;
}

function svgEl(name, attributes) {
  const el = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attributes)) el.setAttribute(k, String(v));
  return el;
}

// --- active episodes: what colours the devices ---------------------------------------

/** Active stored episodes by device, from `GET /alerts?status=active`. */
const active = { byDevice: new Map(), loading: undefined, again: false };
const ACTIVE_LIMIT = 1000;
const ACTIVE_EVERY_MS = 5000;

/** Reloads the active episodes; calls during a load make one more load after it. */
function refreshActive() {
  if (active.loading) {
    active.again = true;
    return active.loading;
  }
  active.loading = loadActive().finally(() => {
    active.loading = undefined;
    if (active.again) {
      active.again = false;
      refreshActive();
    }
  });
  return active.loading;
}

async function loadActive() {
  try {
    const res = await fetch(`/alerts?status=active&limit=${ACTIVE_LIMIT}`);
    if (!res.ok) return; // no store in this process: the live levels alone
    const byDevice = new Map();
    for (const a of (await res.json()).alerts) {
      if (a.status !== "active") continue;
      byDevice.set(a.deviceId, [...(byDevice.get(a.deviceId) ?? []), a]);
    }
    active.byDevice = byDevice;
    if (state.map) renderMap(state.map);
    if (state.table) renderTable(state.table);
  } catch {
    // Offline or restarting: keep the last picture, the next round tries again.
  }
}

// --- alert feed -------------------------------------------------------------------

function renderAlerts(alerts) {
  const list = $("alerts");
  if (alerts.length === 0) {
    const empty = document.createElement("li");
    empty.className = "empty";
    empty.textContent = "No alerts yet.";
    list.replaceChildren(empty);
    return;
  }
  list.replaceChildren(...alerts.map((a) => {
    const li = document.createElement("li");
    li.dataset.device = a.deviceId;
    li.dataset.type = a.type;
    const kind = document.createElement("span");
    kind.className = "kind";
    if (a.alert === "offline") li.dataset.alert = "offline";
    kind.textContent = a.alert === "offline"
      ? (a.type === "raised" ? "⏸ offline" : "▶ back online")
      : a.type === "raised"
      ? "▲ raised"
      : "▼ cleared";
    const when = document.createElement("span");
    when.className = "when";
    when.textContent = new Date(a.ts).toLocaleTimeString();
    const detail = a.alert === "offline"
      ? ` ${a.deviceId}`
      : a.type === "raised"
      ? ` ${a.deviceId} at ${a.temperature.toFixed(1)} °C`
      : ` ${a.deviceId} at ${a.temperature.toFixed(1)} °C (peak ${
        a.peakTemperature.toFixed(1)
      } °C)`;
    li.append(when, kind, detail);
    return li;
  }));
}

// --- alert episodes, from the store: acknowledgements ------------------------------

let episodesLoading;
let episodesAgain = false;

/** Reloads the stored episodes; calls during a load make one more load after it. */
function refreshEpisodes() {
  if (episodesLoading) {
    episodesAgain = true;
    return episodesLoading;
  }
  episodesLoading = loadEpisodes().finally(() => {
    episodesLoading = undefined;
    if (episodesAgain) {
      episodesAgain = false;
      refreshEpisodes();
    }
  });
  return episodesLoading;
}

async function loadEpisodes() {
  const { type, status, acked } = view.episodes;
  // The type is filtered here too, over a longer page, in case the API does not filter by it.
  const params = new URLSearchParams({ limit: String(type === "all" ? EPISODES : EPISODES_TYPED) });
  if (type !== "all") params.set("type", type);
  if (status !== "all") params.set("status", status);
  if (acked !== "all") params.set("acked", acked);
  try {
    const res = await fetch(`/alerts?${params}`);
    const body = await res.json();
    if (!res.ok) throw new Error(body?.error?.message ?? `${res.status}`);
    const shown = body.alerts.filter((a) => type === "all" || a.type === type);
    renderEpisodes(shown.slice(0, EPISODES));
  } catch (error) {
    const li = document.createElement("li");
    li.className = "empty";
    li.textContent = `Episodes unavailable: ${error.message}`;
    $("episodes").replaceChildren(li);
  }
}

function renderEpisodes(alerts) {
  const list = $("episodes");
  if (alerts.length === 0) {
    const empty = document.createElement("li");
    empty.className = "empty";
    empty.textContent = "No episodes match.";
    list.replaceChildren(empty);
    return;
  }
  list.replaceChildren(...alerts.map((a) => {
    const li = document.createElement("li");
    li.dataset.id = a._id;
    li.dataset.device = a.deviceId;
    li.dataset.status = a.status;
    li.dataset.type = a.type;
    li.dataset.acked = String(a.ackedAt !== undefined);
    const kind = document.createElement("span");
    kind.className = "kind";
    kind.textContent = a.status === "active" ? `● ${a.type}` : `○ ${a.type}`;
    const when = document.createElement("span");
    when.className = "when";
    when.textContent = new Date(a.raisedAt).toLocaleTimeString();
    const peak = typeof a.peakTemperature === "number"
      ? ` (peak ${a.peakTemperature.toFixed(1)} °C)`
      : "";
    li.append(when, kind, ` ${a.deviceId} ${a.status}${peak}`);
    const ack = document.createElement("span");
    ack.className = "ack";
    if (a.ackedAt !== undefined) {
      ack.textContent = `✓ acknowledged by ${a.ackedBy} at ${
        new Date(a.ackedAt).toLocaleTimeString()
      }${a.note ? `: ${a.note}` : ""}`;
    } else {
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.action = "ack";
      button.textContent = "Acknowledge";
      li.append(button);
      ack.textContent = "not acknowledged";
    }
    li.append(ack);
    return li;
  }));
}

/** Asks who acknowledges (remembered in this tab) and an optional note; null when cancelled. */
function askAck(id) {
  const dialog = $("ack-dialog");
  $("ack-alert").textContent = id;
  $("ack-by").value = sessionStorage.getItem(OPERATOR_KEY) ?? "";
  $("ack-note").value = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      const by = $("ack-by").value.trim();
      const note = $("ack-note").value.trim();
      if (dialog.returnValue !== "ok" || !by) return resolve(null);
      sessionStorage.setItem(OPERATOR_KEY, by);
      resolve(note ? { by, note } : { by });
    }, { once: true });
  });
}

const acknowledge = (id) =>
  run(async () => {
    const body = await askAck(id);
    if (!body) return "";
    const alert = await api("POST", `/alerts/${encodeURIComponent(id)}/ack`, body);
    await Promise.all([refreshEpisodes(), refreshActive()]);
    return alert.ackedBy === body.by
      ? `Acknowledged ${alert._id}`
      : `${alert._id} was already acknowledged by ${alert.ackedBy}`;
  });

// --- device table -------------------------------------------------------------------

function renderTable(table) {
  const rows = table.rows.map((d) => {
    const tr = document.createElement("tr");
    tr.dataset.id = d.id;
    tr.dataset.state = d.critical ? "critical" : "normal";
    const status = deviceState(d.critical, active.byDevice.get(d.id));
    tr.dataset.alarm = status;
    const badge = `<span class="badge ${status}">${status}</span>`;
    tr.innerHTML = `<td></td><td class="num">${d.temperature.toFixed(1)}</td>` +
      `<td class="num">${d.humidity.toFixed(1)}</td><td>${badge}</td>` +
      `<td class="num">${duration(state.at - d.since)}</td>` +
      `<td>${sparkline(d.spark, rules.get(d.id)?.rule)}</td>` +
      `<td class="actions"><button type="button" data-action="overheat">Overheat</button> ` +
      `<button type="button" data-action="remove" class="danger">Remove</button></td>`;
    // Ids go in as text, never as HTML.
    tr.firstElementChild.textContent = d.id;
    return tr;
  });
  $("devices").replaceChildren(...rows);
  const last = Math.min(table.offset + table.rows.length, table.total);
  $("table-caption").textContent = table.total === 0
    ? "(none yet)"
    : `(${table.offset + 1}–${last} of ${table.total})`;
  $("prev").disabled = table.offset === 0;
  $("next").disabled = last >= table.total;
  loadRules(table.rows.map((d) => d.id));
}

/**
 * Recent temperatures as a line, with the device's rule (when known) as two dashed lines:
 * raise at `high` (red), clear at `low` (green). The range always takes in both thresholds,
 * so the eye reads how close a device runs to raising.
 */
function sparkline(values, rule) {
  if (values.length < 2) return "";
  const all = rule ? [...values, rule.high, rule.low] : values;
  const min = Math.min(...all);
  const max = Math.max(min + 0.5, ...all);
  const [top, bottom] = [2, 22];
  const y = (v) => bottom - ((v - min) / (max - min)) * (bottom - top);
  const points = values.map((v, i) =>
    `${((i / (values.length - 1)) * 118 + 1).toFixed(1)},${y(v).toFixed(1)}`
  );
  let lines = "";
  if (rule) {
    const at = thresholdLines(rule, { min, max, top, bottom });
    for (const [name, yy] of Object.entries(at)) {
      if (yy === null) continue;
      lines += `<line class="threshold ${name}" data-value="${rule[name]}" x1="0" x2="120" ` +
        `y1="${yy.toFixed(1)}" y2="${yy.toFixed(1)}"><title>${
          name === "high" ? "raise" : "clear"
        } ` +
        `at ${rule[name]} °C</title></line>`;
    }
  }
  return `<svg class="spark" viewBox="0 0 120 24">${lines}<polyline points="${
    points.join(" ")
  }"/></svg>`;
}

// --- each device's rule, for its sparkline: GET /devices/:id, cached briefly ------------

/** Rule by device id, and when it was fetched; a rule changed at run time shows within RULE_TTL_MS. */
const rules = new Map();
const RULE_TTL_MS = 30_000;
const RULE_RETRY_MS = 5_000;
const RULE_FETCHES = 4;
let rulesLoading = false;

async function loadRules(ids) {
  if (rulesLoading) return;
  const now = Date.now();
  const stale = ids.filter((id) => !(now - (rules.get(id)?.at ?? -Infinity) < RULE_TTL_MS));
  if (stale.length === 0) return;
  rulesLoading = true;
  let changed = false;
  try {
    const queue = [...stale];
    const worker = async () => {
      for (let id = queue.shift(); id !== undefined; id = queue.shift()) {
        const res = await fetch(`/devices/${encodeURIComponent(id)}`).catch(() => null);
        const doc = res?.ok ? await res.json() : null;
        const rule = doc?.thresholds;
        const known = rules.get(id)?.rule;
        // Not stored yet (404) or no store here: ask again sooner, a new device is stored soon.
        rules.set(id, {
          rule: rule ?? known,
          at: Date.now() - (rule ? 0 : RULE_TTL_MS - RULE_RETRY_MS),
        });
        if (rule && (rule.high !== known?.high || rule.low !== known?.low)) changed = true;
      }
    };
    await Promise.all(Array.from({ length: RULE_FETCHES }, worker));
  } finally {
    rulesLoading = false;
  }
  if (rules.size > 5 * PAGE) {
    for (const id of rules.keys()) if (rules.size > 5 * PAGE) rules.delete(id);
  }
  if (changed && state.table) renderTable(state.table);
}

function duration(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

// --- commands, through the sensor API ---------------------------------------------------

async function api(method, path, body) {
  for (let attempt = 0; attempt < 2; attempt++) {
    const headers = { ...(body === undefined ? {} : { "Content-Type": "application/json" }) };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = `Bearer ${token}`;
    const res = await fetch(path, {
      method,
      headers,
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    if (res.status === 401 && attempt === 0 && await askToken()) continue;
    const text = await res.text();
    const json = text ? JSON.parse(text) : null;
    if (!res.ok) throw new Error(json?.error?.message ?? `${res.status} ${res.statusText}`);
    return json;
  }
  throw new Error("An API token is required for changes");
}

/** Asks for the API token; resolves true when one was given. */
function askToken() {
  const dialog = $("token-dialog");
  $("token-input").value = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      const token = $("token-input").value.trim();
      if (dialog.returnValue === "ok" && token) {
        sessionStorage.setItem(TOKEN_KEY, token);
        resolve(true);
      } else resolve(false);
    }, { once: true });
  });
}

function say(text, isError = false) {
  const el = $("message");
  el.textContent = text;
  el.classList.toggle("error", isError);
}

async function run(action) {
  try {
    say(await action());
  } catch (error) {
    say(error.message, true);
  }
}

const overheat = (id, readings) =>
  run(async () => {
    const r = await api("POST", `/sensors/${encodeURIComponent(id)}/overheat`, { readings });
    return `Overheating ${r.id}: ${r.readings} readings at ${r.temperature} °C`;
  });

const remove = (id) =>
  run(async () => {
    if (
      !(await confirmAction(
        `Remove sensor ${id}?`,
        "It stops for good; its stored readings and alerts stay.",
        "Remove",
      ))
    ) {
      return `Kept ${id}`;
    }
    await api("DELETE", `/sensors/${encodeURIComponent(id)}`);
    return `Removed ${id}`;
  });

/** Asks in the page before a destructive action; resolves true only for its button. */
function confirmAction(question, detail, verb) {
  const dialog = $("confirm-dialog");
  $("confirm-question").textContent = question;
  $("confirm-detail").textContent = detail;
  $("confirm-ok").textContent = verb;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

function select(id) {
  view.selected = id;
  $("overheat-id").value = id;
  $("remove-id").value = id;
  for (const dot of $("map").querySelectorAll("circle")) {
    dot.classList.toggle("selected", dot.dataset.id === id);
  }
}

// --- wiring ---------------------------------------------------------------------------

$("add-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const count = Number($("add-count").value);
  const profile = $("add-profile").value;
  run(async () => {
    const r = await api("POST", "/sensors", { count, profile });
    return `Added ${r.ids.length} ${profile} sensor(s): ${r.ids.slice(0, 3).join(", ")}${
      r.ids.length > 3 ? ", …" : ""
    }`;
  });
});

$("overheat-form").addEventListener("submit", (event) => {
  event.preventDefault();
  overheat($("overheat-id").value.trim(), Number($("overheat-readings").value));
});

$("remove-form").addEventListener("submit", (event) => {
  event.preventDefault();
  remove($("remove-id").value.trim());
});

$("devices").addEventListener("click", (event) => {
  const button = event.target.closest("button[data-action]");
  const id = event.target.closest("tr")?.dataset.id;
  if (!id) return;
  select(id);
  if (button?.dataset.action === "overheat") overheat(id, Number($("overheat-readings").value));
  if (button?.dataset.action === "remove") remove(id);
});

$("map").addEventListener("click", (event) => {
  const id = event.target.closest("circle")?.dataset.id;
  if (id) select(id);
});

$("token-button").addEventListener("click", () => askToken());

$("episodes").addEventListener("click", (event) => {
  const id = event.target.closest("button[data-action=ack]")?.closest("li")?.dataset.id;
  if (id) acknowledge(id);
});

for (
  const [id, key] of [
    ["episode-filter", "acked"],
    ["episode-type", "type"],
    ["episode-status", "status"],
  ]
) {
  $(id).addEventListener("change", () => {
    view.episodes[key] = $(id).value;
    refreshEpisodes();
  });
}

let searchTimer;
$("search").addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => {
    view.search = $("search").value.trim();
    view.offset = 0;
    connect();
    refreshEpisodes();
  }, 300);
});

$("filter").addEventListener("change", () => {
  view.filter = $("filter").value;
  view.offset = 0;
  connect();
  refreshEpisodes();
});

$("prev").addEventListener("click", () => {
  view.offset = Math.max(0, view.offset - PAGE);
  connect();
  refreshEpisodes();
});

$("next").addEventListener("click", () => {
  view.offset += PAGE;
  connect();
  refreshEpisodes();
});

connect();
refreshEpisodes();
refreshActive();
loadWorld();
// Offline episodes open without a live transition: look at the active ones regularly.
setInterval(refreshActive, ACTIVE_EVERY_MS);
