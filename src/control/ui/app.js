// The dashboard: reads trellis-control's API with the user's token every few
// seconds and draws what it says. Rates and percentiles are the difference
// between two readings of the proxies' counters (GET /v1/golden), as
// `trellis stat` computes them; totals are the counters themselves.
"use strict";

const REFRESH_MS = 5000;
const TOKEN_KEY = "trellis-token";

let token = null;
let previous = null;  // {at: ms, series: Map(key -> series)}
let timer = null;

const $ = (id) => document.getElementById(id);

// ---- token ----------------------------------------------------------------

// A token handed over in the address (#token=...) is moved to this tab's
// storage and taken off the address at once, so it stays out of the history.
function takeToken() {
  const hash = location.hash.slice(1);
  const params = new URLSearchParams(hash.includes("=") ? hash : "");
  if (params.has("token")) {
    sessionStorage.setItem(TOKEN_KEY, params.get("token"));
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + (rest ? "#" + rest : "#services"));
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  token = null;
  previous = null;
  clearTimeout(timer);
  document.querySelectorAll(".view").forEach((v) => (v.hidden = true));
  $("sign-in").hidden = false;
  $("sign-out").hidden = true;
  $("sign-in-error").textContent = message || "";
  $("state").textContent = "Not signed in";
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path) {
  const response = await fetch(path, {headers: {Authorization: "Bearer " + token}, cache: "no-store"});
  let body = null;
  try {
    body = await response.json();
  } catch (e) {
    throw new ApiError(response.status, `${path}: answered ${response.status} without JSON`);
  }
  if (!response.ok) throw new ApiError(response.status, body && body.error ? body.error : `${path}: ${response.status}`);
  return body;
}

// ---- numbers --------------------------------------------------------------

// The latency below which a share q of the requests ended, interpolated in
// its bucket as Prometheus' histogram_quantile does; null without requests.
function quantile(buckets, bounds, q) {
  const total = buckets.reduce((a, b) => a + b, 0);
  if (total <= 0) return null;
  const rank = q * total;
  let below = 0, lower = 0;
  for (let i = 0; i < buckets.length; i++) {
    const upper = i < bounds.length ? bounds[i] : bounds[bounds.length - 1];
    if (below + buckets[i] >= rank) {
      if (i >= bounds.length) return upper;
      return lower + (upper - lower) * (buckets[i] > 0 ? (rank - below) / buckets[i] : 0);
    }
    below += buckets[i];
    lower = upper;
  }
  return bounds[bounds.length - 1];
}

function emptyCounts() {
  return {success: 0, failure: 0, tls: 0, buckets: [], codes: {}};
}

function addCounts(into, s, sign = 1) {
  into.success += sign * (s.success || 0);
  into.failure += sign * (s.failure || 0);
  if (s.tls) into.tls += sign * ((s.success || 0) + (s.failure || 0));
  const b = s.duration_buckets || [];
  while (into.buckets.length < b.length) into.buckets.push(0);
  b.forEach((n, i) => (into.buckets[i] += sign * n));
  for (const [code, n] of Object.entries(s.status_codes || {})) into.codes[code] = (into.codes[code] || 0) + sign * n;
}

// The change of series `s` since the previous reading (all of it when the
// series is new or its proxy restarted and counts from zero again).
function deltaOf(key, s) {
  const d = emptyCounts();
  addCounts(d, s);
  const was = previous && previous.series.get(key);
  if (was && s.success + s.failure >= was.success + was.failure) addCounts(d, was, -1);
  return d;
}

const name = (ns, service) => (service ? `${ns || "default"}/${service}` : "unknown");
const percent = (part, whole) => (whole > 0 ? (100 * part / whole).toFixed(2) + "%" : "-");
const millis = (s) => (s === null ? "-" : s < 0.01 ? (s * 1000).toFixed(2) + "ms" : (s * 1000).toFixed(0) + "ms");
const rate = (n, seconds) => (seconds ? (n / seconds).toFixed(1) : "-");

// ---- one reading ------------------------------------------------------------

// Services (inbound series by callee) and edges (inbound series by caller
// and callee), each with its totals and its change over the window.
function summarize(golden, status) {
  const now = Date.now();
  const seconds = previous ? (now - previous.at) / 1000 : null;
  const services = new Map(), edges = new Map(), series = new Map(), unreachable = [];
  const entry = (map, key, fields) => {
    if (!map.has(key)) map.set(key, Object.assign({total: emptyCounts(), window: emptyCounts()}, fields));
    return map.get(key);
  };
  for (const p of status.proxies) {
    if (p.service) entry(services, name(p.namespace, p.service), {instances: new Set()}).instances.add(p.node_id);
  }
  for (const p of golden.proxies) {
    if (p.error) {
      unreachable.push(`${p.node_id}: ${p.error}`);
      continue;
    }
    for (const s of p.series) {
      if (s.direction !== "inbound") continue;
      const key = [p.node_id, s.source_service, s.source_namespace, s.destination_service,
        s.destination_namespace, s.route, s.tls].join("|");
      series.set(key, s);
      const to = name(s.destination_namespace, s.destination_service);
      const from = name(s.source_namespace, s.source_service);
      const d = deltaOf(key, s);
      for (const e of [entry(services, to, {instances: new Set()}), entry(edges, from + " -> " + to, {from, to})]) {
        addCounts(e.total, s);
        addCounts(e.window, {success: d.success, failure: d.failure, tls: s.tls, duration_buckets: d.buckets,
          status_codes: d.codes});
      }
    }
  }
  previous = {at: now, series};
  return {seconds, services, edges, unreachable, bounds: golden.bucket_bounds_seconds};
}

// ---- drawing ----------------------------------------------------------------

function row(cells, attributes = {}) {
  const tr = document.createElement("tr");
  for (const [k, v] of Object.entries(attributes)) tr.setAttribute(k, v);
  for (const c of cells) {
    const td = document.createElement("td");
    if (c instanceof Node) td.append(c);
    else td.textContent = c;
    tr.append(td);
  }
  return tr;
}

function fill(tbody, rows, empty) {
  tbody.replaceChildren(...(rows.length ? rows : [row([empty])]));
  if (!rows.length) tbody.firstChild.firstChild.colSpan = tbody.closest("table").tHead.rows[0].cells.length;
}

function drawServices(view) {
  const rows = [...view.services.entries()].sort().map(([key, s]) => {
    const [ns, service] = key.split("/");
    const t = s.total.success + s.total.failure, w = s.window.success + s.window.failure;
    return row([ns, service, String(s.instances.size), String(t), percent(s.window.success, w),
      rate(w, view.seconds), millis(quantile(s.window.buckets, view.bounds, 0.5)),
      millis(quantile(s.window.buckets, view.bounds, 0.95)), millis(quantile(s.window.buckets, view.bounds, 0.99)),
      percent(s.window.tls, w)], {"data-service": key, "data-requests": t, "data-failures": s.total.failure});
  });
  fill($("service-rows"), rows, "No service has registered an instance yet.");

  const errors = [];
  for (const e of [...view.edges.values()].sort((a, b) => (a.from + a.to).localeCompare(b.from + b.to))) {
    for (const [code, n] of Object.entries(e.total.codes).sort()) {
      if ((code !== "0" && Number(code) < 400) || n <= 0) continue;
      errors.push(row([e.from, e.to, code === "0" ? "no answer" : code, String(n), String(e.window.codes[code] || 0)],
        {"data-edge": `${e.from} -> ${e.to}`, "data-status": code, "data-count": n}));
    }
  }
  fill($("error-rows"), errors, "No errors or denials.");
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attributes, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attributes)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

// Services on a circle, callers and callees alike; an arrow per edge, its
// width by request rate, its colour by success.
function drawTopology(view) {
  const graph = $("graph");
  const nodes = new Set();
  for (const [key, s] of view.services) if (s.total.success + s.total.failure > 0 || s.instances.size) nodes.add(key);
  for (const e of view.edges.values()) {
    nodes.add(e.from);
    nodes.add(e.to);
  }
  const list = [...nodes].sort();
  const width = 960, height = Math.max(480, 260 + 30 * list.length), r = Math.min(width, height) / 2 - 70;
  graph.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const at = new Map(list.map((n, i) => {
    const angle = -Math.PI / 2 + (2 * Math.PI * i) / Math.max(list.length, 1);
    return [n, {x: width / 2 + r * Math.cos(angle), y: height / 2 + r * Math.sin(angle)}];
  }));
  const defs = svg("defs", {});
  const marker = svg("marker", {id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 12, markerHeight: 12,
    markerUnits: "userSpaceOnUse", orient: "auto-start-reverse"});
  marker.append(svg("path", {d: "M 0 0 L 10 5 L 0 10 z", class: "arrow"}));
  defs.append(marker);
  const parts = [defs];
  const maxRate = Math.max(1, ...[...view.edges.values()].map((e) => e.window.success + e.window.failure));
  for (const e of view.edges.values()) {
    const a = at.get(e.from), b = at.get(e.to);
    const len = Math.hypot(b.x - a.x, b.y - a.y) || 1, ux = (b.x - a.x) / len, uy = (b.y - a.y) / len;
    const w = e.window.success + e.window.failure, t = e.total.success + e.total.failure;
    const ok = w > 0 ? e.window.success / w : t > 0 ? e.total.success / t : 1;
    const g = svg("g", {class: "edge " + (ok < 0.95 ? "bad" : ok < 0.99 ? "warn" : "good"),
      "data-edge": `${e.from} -> ${e.to}`, "data-requests": t});
    g.append(svg("line", {x1: a.x + ux * 34, y1: a.y + uy * 34, x2: b.x - ux * 38, y2: b.y - uy * 38,
      "stroke-width": 1.5 + 4 * (w / maxRate), "marker-end": "url(#arrow)"}));
    const denied = (w ? e.window : e.total).codes["403"] || 0;
    g.append(svg("text", {x: (a.x + b.x) / 2 - uy * 14, y: (a.y + b.y) / 2 + ux * 14 + 4, "text-anchor": "middle"},
      `${rate(w, view.seconds)} rps · ${percent(w ? e.window.success : e.total.success, w || t)}` +
      (denied ? ` · ${denied} denied` : "")));
    parts.push(g);
  }
  for (const n of list) {
    const p = at.get(n);
    const s = view.services.get(n);
    const g = svg("g", {class: "node" + (s ? "" : " outside"), "data-node": n});
    g.append(svg("circle", {cx: p.x, cy: p.y, r: 30}));
    g.append(svg("text", {x: p.x, y: p.y + 48, "text-anchor": "middle"}, n));
    parts.push(g);
  }
  graph.replaceChildren(...parts);

  const rows = [...view.edges.values()].sort((a, b) => (a.from + a.to).localeCompare(b.from + b.to)).map((e) => {
    const t = e.total.success + e.total.failure, w = e.window.success + e.window.failure;
    return row([e.from, e.to, String(t), percent(w ? e.window.success : e.total.success, w || t),
      rate(w, view.seconds), millis(quantile(e.window.buckets, view.bounds, 0.99))],
    {"data-edge": `${e.from} -> ${e.to}`, "data-requests": t, "data-failures": e.total.failure});
  });
  fill($("edge-rows"), rows, "No requests yet.");
}

function drawProxies(status) {
  const rows = [...status.proxies].sort((a, b) => a.node_id.localeCompare(b.node_id)).map((p) => {
    const sync = p.nack ? `refused version ${p.nack.version}: ${p.nack.error}`
      : p.in_sync ? `in sync (version ${p.acked_version})` : `behind (has ${p.acked_version}, sent ${p.sent_version})`;
    const show = document.createElement("button");
    show.textContent = "Configuration";
    show.addEventListener("click", () => showConfig(p.node_id));
    return row([p.node_id, name(p.namespace, p.service), p.identity || "-", sync, String(p.listeners),
      String(p.clusters), String(p.policies), new Date(p.connected_at_ms).toLocaleString(), show],
    {"data-node": p.node_id, "data-sync": p.nack ? "refused" : p.in_sync ? "in-sync" : "behind",
      class: p.nack ? "bad" : p.in_sync ? "" : "warn"});
  });
  fill($("proxy-rows"), rows, "No proxy is connected.");
}

// One proxy's configuration in force, asked of it through trellis-control.
async function showConfig(node) {
  $("proxy-config").hidden = false;
  $("proxy-config").dataset.node = node;
  $("proxy-config-title").textContent = `Configuration of ${node}`;
  $("proxy-config-body").textContent = "Reading...";
  try {
    const config = await api(`/v1/proxies/${encodeURIComponent(node)}/config`);
    $("proxy-config-body").textContent = JSON.stringify(config, null, 2);
  } catch (e) {
    $("proxy-config-body").textContent = e.message;
  }
}

function drawProblems(check) {
  const rows = check.findings.map((f) => row([f.severity, f.resource, f.field || "-", f.message],
    {class: f.severity === "error" ? "bad" : "warn", "data-severity": f.severity}));
  fill($("problem-rows"), rows, "Nothing wrong found.");
  const errors = check.findings.filter((f) => f.severity === "error").length;
  $("problem-count").textContent = check.findings.length ? `(${check.findings.length})` : "";
  $("problem-count").className = errors ? "bad" : "";
}

async function refresh() {
  try {
    const [golden, status, check] = await Promise.all([api("/v1/golden"), api("/v1/status"), api("/v1/check")]);
    const view = summarize(golden, status);
    drawServices(view);
    drawTopology(view);
    drawProxies(status);
    drawProblems(check);
    document.querySelectorAll(".window").forEach((w) => (w.textContent = view.seconds ? `${view.seconds.toFixed(1)}s` : "-"));
    let text = `Updated ${new Date().toLocaleTimeString()}` +
      (view.seconds ? `, rates over ${view.seconds.toFixed(1)}s` : ", rates from the next reading");
    if (view.unreachable.length) text += `; not counted: ${view.unreachable.join("; ")}`;
    $("state").textContent = text;
    document.body.dataset.readings = String(Number(document.body.dataset.readings || 0) + 1);
  } catch (e) {
    if (e.status === 401 || e.status === 403) return signOut(`The token was refused: ${e.message}`);
    $("state").textContent = `Cannot read the mesh: ${e.message}`;
  }
  timer = setTimeout(refresh, REFRESH_MS);
}

// ---- views ----------------------------------------------------------------

function show() {
  if (!token) return;
  const wanted = location.hash.slice(1) || "services";
  const view = document.getElementById(wanted) && document.getElementById(wanted).classList.contains("view")
    ? wanted : "services";
  document.querySelectorAll(".view").forEach((v) => (v.hidden = v.id !== view));
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("current", a.dataset.view === view));
}

function start() {
  $("sign-in").hidden = true;
  $("sign-out").hidden = false;
  $("state").textContent = "Reading the mesh...";
  show();
  refresh();
}

document.addEventListener("DOMContentLoaded", () => {
  token = takeToken();
  $("sign-in").addEventListener("submit", (event) => {
    event.preventDefault();
    token = $("token").value.trim();
    $("token").value = "";
    sessionStorage.setItem(TOKEN_KEY, token);
    start();
  });
  $("sign-out").addEventListener("click", () => signOut(""));
  window.addEventListener("hashchange", show);
  if (token) start();
  else signOut("");
});
