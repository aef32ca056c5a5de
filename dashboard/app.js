// The live dashboard: renders the snapshots pushed over /dashboard/events and
// sends commands through the sensor API; lists the stored alert episodes and
// acknowledges them through the alert API. No framework and no build step.
// The API token, when one is needed, lives in this tab's sessionStorage only.

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "iot-api-token";
const OPERATOR_KEY = "iot-operator";
const EPISODES = 20;
const PAGE = 50;

/** The latest value of each snapshot section; events carry only the changed ones. */
const state = { at: Date.now(), counters: null, map: null, table: null, alerts: null };
const view = { offset: 0, filter: "all", search: "", selected: "", acked: "all" };
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

// --- map: an equirectangular scatter of lat/lon, fitted to the devices ----------

const SVG_NS = "http://www.w3.org/2000/svg";
const MAP_W = 600;
const MAP_H = 400;
const MAP_PAD = 20;

function renderMap(map) {
  const svg = $("map");
  const points = map.points;
  $("map-caption").textContent = points.length < map.total
    ? `(${points.length} of ${map.total} shown, every critical one included)`
    : `(${map.total})`;
  const fragment = document.createDocumentFragment();
  for (let i = 1; i < 6; i++) {
    fragment.append(line(0, (MAP_H * i) / 6, MAP_W, (MAP_H * i) / 6));
    fragment.append(line((MAP_W * i) / 6, 0, (MAP_W * i) / 6, MAP_H));
  }
  if (points.length > 0) {
    const lats = points.map((p) => p[1]);
    const lons = points.map((p) => p[2]);
    const [minLat, maxLat] = [Math.min(...lats), Math.max(...lats)];
    const [minLon, maxLon] = [Math.min(...lons), Math.max(...lons)];
    // Degrees of longitude shrink with latitude; scale them so distances look right.
    const squash = Math.cos((((minLat + maxLat) / 2) * Math.PI) / 180) || 1;
    const spanX = Math.max((maxLon - minLon) * squash, 1e-4);
    const spanY = Math.max(maxLat - minLat, 1e-4);
    const scale = Math.min((MAP_W - 2 * MAP_PAD) / spanX, (MAP_H - 2 * MAP_PAD) / spanY);
    const offX = (MAP_W - spanX * scale) / 2;
    const offY = (MAP_H - spanY * scale) / 2;
    const radius = points.length > 500 ? 2.5 : 5;
    // Critical devices last, so they are drawn on top.
    const ordered = [...points].sort((a, b) => a[3] - b[3]);
    for (const [id, lat, lon, critical] of ordered) {
      const dot = document.createElementNS(SVG_NS, "circle");
      dot.setAttribute("cx", (offX + (lon - minLon) * squash * scale).toFixed(1));
      dot.setAttribute("cy", (MAP_H - offY - (lat - minLat) * scale).toFixed(1));
      dot.setAttribute("r", String(radius));
      dot.dataset.id = id;
      dot.classList.toggle("critical", critical === 1);
      dot.classList.toggle("selected", id === view.selected);
      const title = document.createElementNS(SVG_NS, "title");
      title.textContent = `${id} (${critical ? "critical" : "normal"}) ${lat}, ${lon}`;
      dot.append(title);
      fragment.append(dot);
    }
  }
  svg.replaceChildren(fragment);
}

function line(x1, y1, x2, y2) {
  const el = document.createElementNS(SVG_NS, "line");
  el.setAttribute("class", "grid");
  for (const [k, v] of Object.entries({ x1, y1, x2, y2 })) el.setAttribute(k, String(v));
  return el;
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
  const params = new URLSearchParams({ limit: String(EPISODES) });
  if (view.acked !== "all") params.set("acked", view.acked);
  try {
    const res = await fetch(`/alerts?${params}`);
    const body = await res.json();
    if (!res.ok) throw new Error(body?.error?.message ?? `${res.status}`);
    renderEpisodes(body.alerts);
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
    empty.textContent = "No episodes.";
    list.replaceChildren(empty);
    return;
  }
  list.replaceChildren(...alerts.map((a) => {
    const li = document.createElement("li");
    li.dataset.id = a._id;
    li.dataset.device = a.deviceId;
    li.dataset.status = a.status;
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
    await refreshEpisodes();
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
    const badge = `<span class="badge${d.critical ? " critical" : ""}">${
      d.critical ? "critical" : "normal"
    }</span>`;
    tr.innerHTML = `<td></td><td class="num">${d.temperature.toFixed(1)}</td>` +
      `<td class="num">${d.humidity.toFixed(1)}</td><td>${badge}</td>` +
      `<td class="num">${duration(state.at - d.since)}</td><td>${sparkline(d.spark)}</td>` +
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
}

function sparkline(values) {
  if (values.length < 2) return "";
  const min = Math.min(...values);
  const max = Math.max(...values);
  const span = Math.max(max - min, 0.5);
  const points = values.map((v, i) =>
    `${((i / (values.length - 1)) * 118 + 1).toFixed(1)},${
      (23 - ((v - min) / span) * 22).toFixed(1)
    }`
  );
  return `<svg class="spark" viewBox="0 0 120 24"><polyline points="${points.join(" ")}"/></svg>`;
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
    await api("DELETE", `/sensors/${encodeURIComponent(id)}`);
    return `Removed ${id}`;
  });

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

$("episode-filter").addEventListener("change", () => {
  view.acked = $("episode-filter").value;
  refreshEpisodes();
});

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
