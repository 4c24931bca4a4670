// Riffle's dashboard page: panels drawn with ECharts from the metrics API, kept live by
// one server-sent-events connection (/v1/stream: windows, and alert transitions as marks),
// edited in place and saved as a new version (/v1/dashboards). No build step: plain
// browser JavaScript.
"use strict";

const S = {
  key: null, share: null, render: null,
  dash: null, version: null, metrics: {}, zone: "UTC",
  range: { start: "-1h", end: "now" }, vars: {}, values: {},
  refresh: "off", timer: null, edit: false,
  panels: {}, marks: { anomalies: [], alerts: [] },
  stream: null, lastId: null,
};
const $ = (sel) => document.querySelector(sel);
const fmt = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });
const compact = new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 1 });
const STEP_MS = { "1m": 60000, "1h": 3600000, "1d": 86400000 };
const LINE_TYPES = new Set(["timeseries", "area", "bar", "stat", "table", "quantiles", "forecast"]);

// ---------- HTTP ----------
function headers() {
  if (S.share) return { "X-Share-Token": S.share };
  return S.key ? { Authorization: `Bearer ${S.key}` } : {};
}
function apiPath(path) {
  if (!S.share) return path;
  if (path.startsWith("/v1/metrics/")) return "/v1/shared" + path.slice(3);
  if (path.startsWith("/v1/stream")) return "/v1/shared" + path.slice(3);
  return path;
}
async function api(path, params, init) {
  const url = new URL(apiPath(path), location.origin);
  for (const [k, v] of params || []) if (v !== null && v !== undefined && v !== "") url.searchParams.append(k, v);
  const res = await fetch(url, { ...(init || {}), headers: { ...headers(), ...((init || {}).headers || {}) } });
  if (res.status === 401 && !S.share) { localStorage.removeItem("riffle.key"); }
  if (!res.ok) {
    let message = `${res.status}`;
    try { message = (await res.json()).error.message; } catch (e) { /* not JSON */ }
    const err = new Error(message); err.status = res.status; throw err;
  }
  return res;
}
const getJson = async (path, params) => (await api(path, params)).json();

function showMessage(text) {
  const box = $("#message");
  box.textContent = text || ""; box.hidden = !text;
}

// ---------- time ----------
function zoned(ms, opts) {
  return new Intl.DateTimeFormat(undefined, { timeZone: S.zone, ...opts }).format(new Date(ms));
}
function zoneParts(ms) {
  const parts = new Intl.DateTimeFormat("en-US", {
    timeZone: S.zone, hourCycle: "h23", weekday: "short", year: "numeric", month: "2-digit",
    day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit",
  }).formatToParts(new Date(ms));
  return Object.fromEntries(parts.map((p) => [p.type, p.value]));
}
// A datetime-local value read as a wall-clock time in the tenant's zone -> RFC 3339 UTC.
function zonedToIso(local) {
  const guess = Date.parse(local + "Z");
  const p = zoneParts(guess);
  const shown = Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour, +p.minute, +p.second);
  return new Date(guess - (shown - guess)).toISOString();
}
function rangeMs() {
  const now = Date.now();
  const one = (b) => {
    if (b === "now") return now;
    const m = /^-(\d+)(ms|s|m|h|d)$/.exec(b);
    if (m) return now - +m[1] * { ms: 1, s: 1e3, m: 6e4, h: 36e5, d: 864e5 }[m[2]];
    return /^\d+$/.test(b) ? +b : Date.parse(b);
  };
  return [one(S.range.start), one(S.range.end)];
}
function stepFor(panel) {
  const [a, b] = rangeMs();
  const metric = S.metrics[panel.query.metric];
  const windowMs = metric ? metric.window_seconds * 1000 : 60000;
  if (panel.type === "heatmap") return "1h";
  if (panel.query.step) return panel.query.step;
  for (const [name, size] of Object.entries(STEP_MS)) {
    if (size >= windowMs && (b - a) / size <= 360) return name;
  }
  return "1d";
}

// ---------- variables ----------
function filtersFor(panel) {
  const dims = (S.metrics[panel.query.metric] || {}).dimensions || [];
  const out = { ...(panel.query.filters || {}) };
  for (const [name, value] of Object.entries(S.vars)) {
    if (value && dims.includes(name)) out[name] = [value];
  }
  return out;
}
async function loadVariables() {
  const box = $("#vars"); box.textContent = "";
  for (const v of S.dash.variables || []) {
    const select = document.createElement("select");
    select.dataset.var = v.name; select.title = v.label || v.name;
    select.append(new Option(`${v.label || v.name}: all`, ""));
    const metric = Object.values(S.metrics).find((m) => (m.dimensions || []).includes(v.name)
      && S.dash.panels.some((p) => p.query.metric === m.name));
    if (metric) {
      try {
        const top = await getJson(`/v1/metrics/${metric.name}/top`,
          [["by", v.name], ["limit", "20"], ["start", S.range.start], ["end", S.range.end]]);
        for (const item of top.items) select.append(new Option(`${v.label || v.name}: ${item[v.name]}`, item[v.name]));
      } catch (e) { /* a variable without values still filters nothing */ }
    }
    if (!(v.name in S.vars)) S.vars[v.name] = (v.default || [])[0] || "";
    select.value = S.vars[v.name];
    select.addEventListener("change", () => { S.vars[v.name] = select.value; reloadAll(true); });
    box.append(select);
  }
}

// ---------- panels ----------
function panelEl(panel) {
  const el = document.createElement("section");
  el.className = "panel"; el.dataset.panel = panel.id;
  el.innerHTML = `<header><h4></h4><span class="unit"></span><span class="tools">
      <button data-act="png" title="PNG">PNG</button><button data-act="svg" title="SVG">SVG</button>
      <button data-act="csv" title="CSV">CSV</button>
      <button data-act="edit" class="ed" title="Edit query">✎</button>
      <button data-act="remove" class="ed" title="Remove">×</button></span></header>
    <div class="body"><div class="chart"></div></div><div class="resize"></div>`;
  el.querySelector("h4").textContent = panel.title;
  el.querySelector(".unit").textContent = panel.unit || (S.metrics[panel.query.metric] || {}).unit || "";
  place(el, panel.layout);
  el.querySelector(".tools").addEventListener("click", (ev) => panelAction(panel.id, ev.target.dataset.act));
  el.querySelector("header").addEventListener("pointerdown", (ev) => startDrag(ev, panel, "move"));
  el.querySelector(".resize").addEventListener("pointerdown", (ev) => startDrag(ev, panel, "resize"));
  if (S.share || S.render) el.querySelectorAll(".tools button").forEach((b) => b.remove());
  return el;
}
function place(el, l) {
  el.style.gridColumn = `${l.x + 1} / span ${l.w}`;
  el.style.gridRow = `${l.y + 1} / span ${l.h}`;
}
function buildGrid() {
  for (const p of Object.values(S.panels)) if (p.chart) p.chart.dispose();
  S.panels = {};
  const grid = $("#grid"); grid.textContent = "";
  const one = S.render && S.render.panel;
  const panels = one ? S.dash.panels.filter((p) => p.id === S.render.panel) : S.dash.panels;
  showMessage(S.dash.panels.length ? "" : `${S.dash.title} has no panels yet${S.share ? "." : ": Edit, then Add panel."}`);
  for (const panel of panels) {
    const view = one ? { ...panel, layout: { x: 0, y: 0, w: 12, h: panel.layout.h } } : panel;
    const el = panelEl(view);
    grid.append(el);
    S.panels[panel.id] = { panel, el, groups: new Map(), chart: null, stepMs: 60000, items: [] };
  }
  updateEditTools();
}
function chartOf(state) {
  if (!state.chart) {
    const host = state.el.querySelector(".chart");
    state.chart = echarts.init(host, theme() === "dark" ? "dark" : null,
      { renderer: S.render && S.render.svg ? "svg" : "canvas" });
  }
  return state.chart;
}
function theme() { return document.documentElement.dataset.theme; }

async function loadPanel(id) {
  const state = S.panels[id]; if (!state) return;
  const { panel } = state; const q = panel.query;
  const params = [["start", S.range.start], ["end", S.range.end]];
  for (const [dim, values] of Object.entries(filtersFor(panel))) for (const v of values) params.push([dim, v]);
  try {
    if (q.kind === "top" || panel.type === "topk") {
      params.push(["by", q.by[0]], ["limit", String(q.limit || 10)], ["compare", "previous_period"]);
      const body = await getJson(`/v1/metrics/${q.metric}/top`, params);
      state.items = body.items; state.by = body.by;
    } else {
      const step = stepFor(panel);
      params.push(["step", step]);
      if (q.by.length) params.push(["by", q.by.join(",")]);
      if (panel.type === "stat" || q.compare) params.push(["compare", "previous_period"]);
      const body = await getJson(`/v1/metrics/${q.metric}/query`, params);
      if (body.time_zone) { S.zone = body.time_zone; $("#zone").textContent = S.zone; }
      state.stepMs = body.step_seconds * 1000;
      state.groups = new Map();
      for (const g of body.groups) {
        const points = new Map();
        for (const p of g.points) points.set(Date.parse(p.start), { ...p, partial: !!p.partial });
        state.groups.set(groupKey(g.dims), { dims: g.dims, points });
      }
      if (panel.type === "forecast" && !S.share) {
        try { state.forecasts = (await getJson(`/v1/forecasts/${q.metric}`)).forecasts; } catch (e) { state.forecasts = []; }
      }
    }
    state.error = null;
  } catch (e) {
    state.error = e.message;
  }
  draw(id);
}
const groupKey = (dims) => JSON.stringify(Object.keys(dims).sort().map((k) => [k, dims[k]]));
const label = (dims) => Object.values(dims).join(" · ") || "all";

function draw(id) {
  const state = S.panels[id]; if (!state) return;
  const { panel } = state;
  const body = state.el.querySelector(".body");
  body.querySelectorAll(".error,.stat,.tablewrap").forEach((n) => n.remove());
  if (state.error) {
    const div = document.createElement("div"); div.className = "error"; div.textContent = state.error;
    body.append(div); return;
  }
  const unit = panel.unit || (S.metrics[panel.query.metric] || {}).unit || "";
  if (panel.type === "stat") return drawStat(state, body, unit);
  if (panel.type === "table") return drawTable(state, body);
  const chart = chartOf(state);
  let option;
  if (panel.type === "topk") option = topOption(state);
  else if (panel.type === "heatmap") option = heatmapOption(state);
  else if (panel.type === "quantiles") option = quantileOption(state);
  else option = seriesOption(state);
  option.backgroundColor = "transparent";
  option.animation = !S.render;
  chart.setOption(option, { notMerge: true, lazyUpdate: !S.render });
}

function timeAxis() {
  const [a, b] = rangeMs();
  return {
    type: "time", min: a, max: b,
    axisLabel: { hideOverlap: true, formatter: (v) => zoned(v, (b - a) > 2 * 864e5
      ? { month: "short", day: "numeric" } : { hour: "2-digit", minute: "2-digit", hour12: false }) },
  };
}
function valueAxis() {
  return { type: "value", scale: false, axisLabel: { formatter: (v) => compact.format(v) },
    splitLine: { lineStyle: { opacity: 0.35 } } };
}
function tooltip() {
  return { trigger: "axis", valueFormatter: (v) => (v === null || v === undefined ? "–" : fmt.format(v)) };
}
function sortedGroups(state) {
  return [...state.groups.values()].sort((x, y) => label(x.dims).localeCompare(label(y.dims))).slice(0, 12);
}
function seriesOption(state) {
  const { panel } = state;
  const series = [];
  const stacked = panel.type === "area" || panel.type === "bar";
  const groups = sortedGroups(state);
  // Stacks add up point by point: every group gets every time (0 where it had no window).
  const times = [...new Set(groups.flatMap((g) => [...g.points.keys()]))].sort((x, y) => x - y);
  for (const g of groups) {
    const pts = stacked
      ? times.map((t) => [t, g.points.get(t) || { value: 0, partial: false }])
      : [...g.points.entries()].sort((x, y) => x[0] - y[0]);
    // Only the trailing run of partial points is still filling; earlier ones are corrections.
    let tail = pts.length;
    while (tail > 0 && pts[tail - 1][1].partial) tail -= 1;
    const name = label(g.dims);
    if (panel.type === "bar") {
      series.push({ name, type: "bar", stack: "all", barMaxWidth: 28, data: pts.map(([t, p], i) => ({
        value: [t, p.value],
        itemStyle: i >= tail ? { opacity: 0.45, decal: { symbol: "rect", dashArrayX: [1, 0], dashArrayY: [2, 3], rotation: -0.7 } } : undefined,
      })) });
      continue;
    }
    const solid = pts.slice(0, tail).map(([t, p]) => [t, p.value]);
    series.push({ name, type: "line", showSymbol: solid.length < 3, data: solid, stack: stacked ? "all" : undefined,
      areaStyle: stacked ? { opacity: 0.35 } : undefined, emphasis: { focus: "series" } });
    if (tail < pts.length) {
      const open = pts.slice(Math.max(0, tail - 1)).map(([t, p]) => [t, p.value]);
      series.push({ name, type: "line", data: open, symbol: "emptyCircle", symbolSize: 7,
        lineStyle: { type: "dashed", width: 2 }, stack: stacked ? "partial" : undefined,
        tooltip: { valueFormatter: (v) => `${fmt.format(v)} (partial)` }, z: 3 });
    }
  }
  if (panel.type === "forecast") series.push(...forecastSeries(state));
  if (series.length) addMarks(series[0], panel.query.metric);
  return {
    tooltip: tooltip(), legend: { type: "scroll", top: 0, textStyle: { fontSize: 11 } },
    grid: { left: 8, right: 16, top: 28, bottom: 8, containLabel: true },
    xAxis: timeAxis(), yAxis: valueAxis(), series,
  };
}
function forecastSeries(state) {
  const out = [];
  for (const f of state.forecasts || []) {
    let pts = f.points; if (typeof pts === "string") pts = JSON.parse(pts);
    if (!pts || !pts.length) continue;
    const lower = pts.map((p) => [p[0], p[2]]);
    const width = pts.map((p) => [p[0], p[3] - p[2]]);
    out.push({ name: "forecast low", type: "line", data: lower, stack: "band", symbol: "none", lineStyle: { opacity: 0 } });
    out.push({ name: "forecast interval", type: "line", data: width, stack: "band", symbol: "none",
      lineStyle: { opacity: 0 }, areaStyle: { opacity: 0.25 } });
    out.push({ name: "forecast", type: "line", data: pts.map((p) => [p[0], p[1]]), symbol: "none", lineStyle: { type: "dotted" } });
    break;
  }
  return out;
}
function quantileOption(state) {
  const g = sortedGroups(state)[0];
  const series = [];
  if (g) {
    const pts = [...g.points.entries()].sort((x, y) => x[0] - y[0]).filter(([, p]) => p.detail);
    const keys = pts.length ? Object.keys(pts[0][1].detail).sort((a, b) => parseFloat(a.slice(1)) - parseFloat(b.slice(1))) : [];
    if (keys.length >= 2) {
      const lo = keys[0]; const hi = keys[keys.length - 1]; const mid = keys[Math.floor(keys.length / 2)];
      series.push({ name: lo, type: "line", stack: "q", symbol: "none", lineStyle: { opacity: 0 }, data: pts.map(([t, p]) => [t, p.detail[lo]]) });
      series.push({ name: `${lo}–${hi}`, type: "line", stack: "q", symbol: "none", lineStyle: { opacity: 0 }, areaStyle: { opacity: 0.3 },
        data: pts.map(([t, p]) => [t, p.detail[hi] - p.detail[lo]]) });
      series.push({ name: mid, type: "line", showSymbol: pts.length < 3, data: pts.map(([t, p]) => [t, p.detail[mid]]) });
      series.push({ name: hi, type: "line", showSymbol: false, lineStyle: { type: "dashed", width: 1 }, data: pts.map(([t, p]) => [t, p.detail[hi]]) });
    }
  }
  return { tooltip: tooltip(), legend: { top: 0 }, grid: { left: 8, right: 16, top: 28, bottom: 8, containLabel: true },
    xAxis: timeAxis(), yAxis: valueAxis(), series };
}
function topOption(state) {
  const items = [...(state.items || [])].reverse();
  const by = state.by;
  return {
    tooltip: { trigger: "axis", axisPointer: { type: "shadow" } },
    grid: { left: 8, right: 40, top: 8, bottom: 8, containLabel: true },
    xAxis: { type: "value", axisLabel: { formatter: (v) => compact.format(v) } },
    yAxis: { type: "category", data: items.map((i) => i[by]), axisLabel: { width: 110, overflow: "truncate" } },
    series: [{ type: "bar", data: items.map((i) => i.value),
      label: { show: true, position: "right", formatter: (p) => compact.format(p.value) } }],
  };
}
function heatmapOption(state) {
  const days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
  const cells = new Map();
  for (const g of state.groups.values()) {
    for (const [t, p] of g.points) {
      if (p.value === null) continue;
      const z = zoneParts(t);
      const key = `${+z.hour % 24},${days.indexOf(z.weekday)}`;
      const c = cells.get(key) || { sum: 0, n: 0 }; c.sum += p.value; c.n += 1; cells.set(key, c);
    }
  }
  const data = [...cells.entries()].map(([k, c]) => [...k.split(",").map(Number), c.sum / c.n]);
  const max = Math.max(1, ...data.map((d) => d[2]));
  return {
    tooltip: { position: "top", valueFormatter: (v) => fmt.format(v) },
    grid: { left: 8, right: 70, top: 8, bottom: 8, containLabel: true },
    xAxis: { type: "category", data: [...Array(24).keys()].map((h) => `${h}`), splitArea: { show: true } },
    yAxis: { type: "category", data: days, splitArea: { show: true } },
    visualMap: { min: 0, max, calculable: true, orient: "vertical", right: 4, top: "middle", itemHeight: 90,
      textStyle: { fontSize: 10 }, formatter: (v) => compact.format(v) },
    series: [{ type: "heatmap", data }],
  };
}
function drawStat(state, body, unit) {
  const g = sortedGroups(state)[0];
  const pts = g ? [...g.points.entries()].sort((x, y) => x[0] - y[0]) : [];
  const last = pts.length ? pts[pts.length - 1][1] : null;
  const div = document.createElement("div"); div.className = "stat";
  const big = document.createElement("div"); big.className = "big" + (last && last.partial ? " partial" : "");
  big.textContent = last && last.value !== null ? fmt.format(last.value) : "–";
  big.title = last && last.partial ? "partial: the window is still open" : "final";
  const change = document.createElement("div"); change.className = "change";
  if (last && last.previous !== null && last.previous !== undefined && last.value !== null) {
    const pct = last.previous === 0 ? null : ((last.value - last.previous) / Math.abs(last.previous)) * 100;
    change.className += pct === null ? "" : pct >= 0 ? " up" : " down";
    change.textContent = pct === null ? `previous period ${fmt.format(last.previous)}`
      : `${pct >= 0 ? "▲" : "▼"} ${fmt.format(Math.abs(pct))} % vs previous period`;
  } else change.textContent = unit;
  const spark = document.createElement("div"); spark.className = "spark";
  div.append(big, change, spark); body.append(div);
  body.querySelector(".chart").style.display = "none";
  const chart = echarts.init(spark, theme() === "dark" ? "dark" : null, { renderer: S.render && S.render.svg ? "svg" : "canvas" });
  if (state.chart) state.chart.dispose();
  state.chart = chart;
  chart.setOption({ backgroundColor: "transparent", animation: false, grid: { left: 0, right: 0, top: 2, bottom: 2 },
    xAxis: { type: "time", show: false }, yAxis: { type: "value", show: false, scale: true },
    series: [{ type: "line", showSymbol: false, areaStyle: { opacity: 0.2 }, data: pts.map(([t, p]) => [t, p.value]) }] });
}
function drawTable(state, body) {
  body.querySelector(".chart").style.display = "none";
  const wrap = document.createElement("div"); wrap.className = "tablewrap";
  const table = document.createElement("table"); table.className = "data";
  const dims = state.panel.query.by;
  table.innerHTML = `<thead><tr>${dims.map((d) => `<th></th>`).join("")}<th>latest</th><th>total</th></tr></thead><tbody></tbody>`;
  table.querySelectorAll("th").forEach((th, i) => { if (i < dims.length) th.textContent = dims[i]; });
  for (const g of sortedGroups(state)) {
    const pts = [...g.points.entries()].sort((x, y) => x[0] - y[0]);
    const last = pts.length ? pts[pts.length - 1][1] : null;
    const total = pts.reduce((s, [, p]) => s + (p.value || 0), 0);
    const tr = document.createElement("tr");
    for (const d of dims) { const td = document.createElement("td"); td.textContent = g.dims[d]; tr.append(td); }
    for (const v of [last ? last.value : null, total]) {
      const td = document.createElement("td"); td.className = "num"; td.textContent = v === null ? "–" : fmt.format(v); tr.append(td);
    }
    table.tBodies[0].append(tr);
  }
  wrap.append(table); body.append(wrap);
}

// ---------- anomaly and alert marks ----------
async function loadMarks() {
  if (S.share) return;
  const params = [["start", S.range.start], ["end", S.range.end]];
  try { S.marks.anomalies = (await getJson("/v1/anomalies", [...params, ["label", "anomaly"], ["limit", "200"]])).anomalies; } catch (e) { S.marks.anomalies = []; }
  try { S.marks.alerts = (await getJson("/v1/alerts/history", [...params, ["limit", "200"]])).transitions; } catch (e) { S.marks.alerts = []; }
}
function addMarks(series, metric) {
  const anomalies = S.marks.anomalies.filter((a) => a.metric === metric);
  const alerts = S.marks.alerts.filter((a) => a.metric === metric);
  if (anomalies.length) {
    series.markPoint = { symbol: "pin", symbolSize: 26, itemStyle: { color: "#ff6b6b" }, label: { show: false },
      data: anomalies.map((a) => ({ name: "anomaly", coord: [a.window_start, a.value ?? null], value: `anomaly ${fmt.format(a.score)}` })) };
  }
  if (alerts.length) {
    series.markLine = { symbol: "none", silent: false, label: { formatter: (p) => p.name, fontSize: 10, position: "insideStartTop" },
      data: alerts.map((a) => ({ name: `${a.rule}: ${a.to_state}`, xAxis: a.at,
        lineStyle: { color: a.to_state === "firing" ? "#ff6b6b" : "#3ccf91", type: "dashed" } })) };
  }
}

// ---------- live stream ----------
function subscriptions() {
  const subs = []; const index = new Map();
  for (const [id, state] of Object.entries(S.panels)) {
    const { panel } = state;
    if (!panel.live || !LINE_TYPES.has(panel.type) || panel.query.kind === "top") continue;
    const sub = { metric: panel.query.metric, group_by: panel.query.by, filters: filtersFor(panel) };
    const key = JSON.stringify(sub);
    if (!index.has(key)) { index.set(key, subs.length); subs.push({ sub, panels: [] }); }
    subs[index.get(key)].panels.push(id);
  }
  if (subs.length && !S.share) {  // alert transitions of the same metrics: live marks
    const metrics = [...new Set(subs.map((s) => s.sub.metric))];
    subs.push({ sub: { kind: "alerts", metrics }, panels: subs.flatMap((s) => s.panels) });
  }
  return subs;
}
function closeStream() {
  if (S.stream) { S.stream.abort(); S.stream = null; }
  $("#live").className = "live off";
}
async function openStream() {
  closeStream();
  const subs = subscriptions();
  if (!subs.length || !rangeIsLive()) return;
  const ctrl = new AbortController(); S.stream = ctrl;
  const params = subs.map((s) => ["sub", JSON.stringify(s.sub)]);
  const extra = S.lastId ? { "Last-Event-ID": S.lastId } : {};
  try {
    const res = await api("/v1/stream", params, { signal: ctrl.signal, headers: extra });
    $("#live").className = "live on";
    const reader = res.body.getReader(); const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
        if (S.stream === ctrl) onEvent(block, subs);
      }
    }
  } catch (e) {
    if (ctrl.signal.aborted) return;
  }
  if (S.stream === ctrl) { $("#live").className = "live off"; setTimeout(() => { if (S.stream === ctrl) openStream(); }, 1000); }
}
function onEvent(block, subs) {
  let kind = "message"; let data = ""; let id = null;
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue;
    const i = line.indexOf(":"); const name = i < 0 ? line : line.slice(0, i);
    const value = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
    if (name === "event") kind = value; else if (name === "data") data += value; else if (name === "id") id = value;
  }
  if (id) S.lastId = id;
  if (kind === "reset") { reloadAll(false); return; }
  if (kind === "alert") { applyAlert(JSON.parse(data), subs); return; }
  if (kind !== "window") return;
  const w = JSON.parse(data);
  for (const pid of (subs[w.sub] || { panels: [] }).panels) applyWindow(pid, w);
}
function applyAlert(a, subs) {
  if (!S.marks.alerts.some((m) => m.transition_id === a.transition_id)) S.marks.alerts.push(a);
  for (const id of (subs[a.sub] || { panels: [] }).panels) {
    if (S.panels[id] && S.panels[id].panel.query.metric === a.metric) pendingDraw.add(id);
  }
}
const pendingDraw = new Set(); const pendingLoad = new Set();
function applyWindow(id, w) {
  const state = S.panels[id]; if (!state) return;
  const size = w.window_end - w.window_start;
  if (size !== state.stepMs || w.window_start % state.stepMs !== 0) { pendingLoad.add(id); return; }
  const [a, b] = rangeMs();
  if (w.window_start < a - state.stepMs || w.window_start > b + state.stepMs) return;
  const key = groupKey(w.dims);
  let g = state.groups.get(key);
  if (!g) { g = { dims: w.dims, points: new Map() }; state.groups.set(key, g); }
  const old = g.points.get(w.window_start);
  if (w.retracted) g.points.delete(w.window_start);
  else if (!old || w.is_final || old.partial) {
    g.points.set(w.window_start, { ...(old || {}), value: w.value, count: w.count, sum: w.sum, detail: w.detail, partial: !w.is_final });
  }
  pendingDraw.add(id);
}
setInterval(() => { for (const id of pendingDraw) draw(id); pendingDraw.clear(); }, 500);
setInterval(() => { for (const id of pendingLoad) loadPanel(id); pendingLoad.clear(); }, 5000);
function rangeIsLive() { return S.range.end === "now"; }

// ---------- load / refresh ----------
async function reloadAll(restream) {
  if (restream) closeStream();  // the old subscriptions' events must not land on the reloaded panels
  await loadMarks();
  await Promise.all(Object.keys(S.panels).map(loadPanel));
  if (restream) openStream();  // resumes after the last id seen: nothing written meanwhile is missed
  document.body.dataset.ready = "1";
}
function setRefresh(value) {
  S.refresh = value; $("#refresh").value = value;
  if (S.timer) clearInterval(S.timer);
  const ms = { "5s": 5e3, "10s": 1e4, "30s": 3e4, "1m": 6e4, "5m": 3e5 }[value];
  S.timer = ms ? setInterval(() => reloadAll(false), ms) : null;
}
async function openDashboard(id) {
  closeStream();
  if (S.share) {
    const body = await getJson("/v1/shared/dashboard");
    S.dash = body.dashboard; S.metrics = body.metrics;
    const sel = $("#dashboard"); sel.textContent = "";  // the one dashboard shared
    sel.append(new Option(S.dash.title, S.dash.id)); sel.disabled = true;
  } else {
    const res = await api(`/v1/dashboards/${encodeURIComponent(id)}`);
    const body = await res.json();
    S.dash = body.dashboard; S.version = body.version;
    localStorage.setItem("riffle.dashboard", id);
  }
  S.range = { ...S.dash.time };
  S.vars = {};
  const preset = [...$("#range").options].some((o) => o.value === S.range.start) && S.range.end === "now";
  $("#range").value = preset ? S.range.start : "custom";
  $("#custom").hidden = preset;
  document.title = `${S.dash.title} · Riffle`;
  await loadVariables();
  buildGrid();
  setRefresh(S.render ? "off" : S.dash.refresh || "off");
  await reloadAll(!S.render);
}

// ---------- editing ----------
function updateEditTools() {
  $("#grid").classList.toggle("editing", S.edit);
  $("#add").hidden = !S.edit; $("#save").hidden = !S.edit;
  $("#edit").textContent = S.edit ? "Done" : "Edit";
  document.querySelectorAll(".panel .ed").forEach((b) => { b.hidden = !S.edit; });
}
function startDrag(ev, panel, mode) {
  if (!S.edit || ev.target.tagName === "BUTTON") return;
  ev.preventDefault();
  const grid = $("#grid").getBoundingClientRect();
  const colW = grid.width / 12; const rowH = 90;
  const start = { x: ev.clientX, y: ev.clientY, l: { ...panel.layout } };
  const el = S.panels[panel.id].el;
  const move = (e) => {
    const dx = Math.round((e.clientX - start.x) / colW); const dy = Math.round((e.clientY - start.y) / rowH);
    const l = { ...start.l };
    if (mode === "move") { l.x = Math.min(12 - l.w, Math.max(0, l.x + dx)); l.y = Math.max(0, l.y + dy); }
    else { l.w = Math.min(12 - l.x, Math.max(1, l.w + dx)); l.h = Math.min(20, Math.max(1, l.h + dy)); }
    panel.layout = l; place(el, l);
  };
  const up = () => {
    window.removeEventListener("pointermove", move); window.removeEventListener("pointerup", up);
    const state = S.panels[panel.id]; if (state.chart) state.chart.resize();
  };
  window.addEventListener("pointermove", move); window.addEventListener("pointerup", up);
}
function editPanel(panel) {
  const form = $("#panel-form");
  const select = form.elements.metric; select.textContent = "";
  for (const name of Object.keys(S.metrics).sort()) select.append(new Option(name, name));
  form.elements.title.value = panel ? panel.title : "";
  form.elements.type.value = panel ? panel.type : "timeseries";
  form.elements.metric.value = panel ? panel.query.metric : Object.keys(S.metrics)[0];
  form.elements.by.value = panel ? panel.query.by.join(",") : "";
  form.elements.unit.value = panel ? panel.unit || "" : "";
  const dialog = $("#editor");
  dialog.onclose = () => {
    if (dialog.returnValue !== "ok") return;
    const by = form.elements.by.value.split(",").map((s) => s.trim()).filter(Boolean);
    const type = form.elements.type.value;
    const query = { kind: type === "topk" ? "top" : "query", metric: form.elements.metric.value,
      by: type === "topk" && !by.length ? [(S.metrics[form.elements.metric.value].dimensions || [])[0]].filter(Boolean) : by,
      filters: {}, limit: type === "topk" ? 10 : null, step: null, compare: null };
    const bottom = Math.max(0, ...S.dash.panels.map((p) => p.layout.y + p.layout.h));
    const next = { id: panel ? panel.id : `panel-${Date.now().toString(36)}`, title: form.elements.title.value,
      type, query, layout: panel ? panel.layout : { x: 0, y: bottom, w: 6, h: 4 },
      unit: form.elements.unit.value || null, live: true };
    const i = S.dash.panels.findIndex((p) => p.id === next.id);
    if (i >= 0) S.dash.panels[i] = next; else S.dash.panels.push(next);
    buildGrid(); reloadAll(true);
  };
  dialog.showModal();
}
function panelAction(id, act) {
  const state = S.panels[id]; if (!state || !act) return;
  if (act === "remove") { S.dash.panels = S.dash.panels.filter((p) => p.id !== id); buildGrid(); reloadAll(true); }
  else if (act === "edit") editPanel(state.panel);
  else download(`/v1/dashboards/${S.dash.id}/panels/${id}/export.${act}`, [["start", S.range.start], ["end", S.range.end]], `${id}.${act}`);
}
async function save() {
  try {
    const res = await api(`/v1/dashboards/${encodeURIComponent(S.dash.id)}`, null, {
      method: "PUT", body: JSON.stringify(S.dash),
      headers: { "Content-Type": "application/json", "If-Match": `"${S.version}"` } });
    const body = await res.json(); S.version = body.version;
    showMessage(""); flash(`Saved as version ${S.version}`);
  } catch (e) {
    showMessage(e.status === 412 ? `Not saved: someone saved a newer version (${e.message}). Reload to see it.` : `Not saved: ${e.message}`);
  }
}
function flash(text) { const live = $("#zone"); const old = live.textContent; live.textContent = text; setTimeout(() => { live.textContent = old; }, 2500); }
async function download(path, params, name) {
  try {
    const blob = await (await api(path, params)).blob();
    const a = document.createElement("a"); a.href = URL.createObjectURL(blob); a.download = name; a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 5000);
  } catch (e) { showMessage(`Export failed: ${e.message}`); }
}
async function share() {
  $("#share-url").value = "";
  $("#share-dialog").showModal();
}
async function createShare() {
  try {
    const body = await (await api(`/v1/dashboards/${S.dash.id}/shares`, null, { method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ time: S.range, expires_in: $("#share-ttl").value }) })).json();
    $("#share-url").value = body.url;
  } catch (e) { $("#share-url").value = `Not shared: ${e.message}`; }
}

// ---------- start ----------
async function start() {
  const params = new URLSearchParams(location.search);
  const savedTheme = params.get("theme") || localStorage.getItem("riffle.theme");
  if (savedTheme) document.documentElement.dataset.theme = savedTheme;
  if (params.get("panel") || params.get("print")) {
    S.render = { panel: params.get("panel"), svg: params.get("renderer") === "svg" || !!params.get("print") };
    document.body.classList.add("render");
  }
  if (location.pathname.endsWith("/shared")) {
    S.share = location.hash.slice(1);
    document.body.classList.add("shared");
  } else {
    S.key = localStorage.getItem("riffle.key");
  }
  wire();
  if (!S.share && !S.key) { $("#login").hidden = false; $("#bar").hidden = true; return; }
  try {
    if (S.share) { await openDashboard(null); return; }
    const metrics = await getJson("/v1/metrics");
    for (const m of metrics.metrics) S.metrics[m.name] = m;
    for (const r of metrics.ratios || []) S.metrics[r.name] = { ...r, window_seconds: 60, aggregation: "ratio" };
    const list = (await getJson("/v1/dashboards")).dashboards;
    const sel = $("#dashboard"); sel.textContent = "";
    for (const d of list) sel.append(new Option(d.title, d.id));
    if (!list.length) { showMessage("No dashboards yet: POST one to /v1/dashboards or run `riffle dashboards generate`."); return; }
    const wanted = params.get("dashboard") || localStorage.getItem("riffle.dashboard");
    const chosen = list.some((d) => d.id === wanted) ? wanted : list[0].id;
    sel.value = chosen;
    await openDashboard(chosen);
  } catch (e) {
    showMessage(e.message);
    if (e.status === 401) { $("#login").hidden = false; }
  }
}
function wire() {
  $("#login").addEventListener("submit", (ev) => {
    ev.preventDefault(); localStorage.setItem("riffle.key", $("#key").value.trim()); location.reload();
  });
  $("#dashboard").addEventListener("change", (ev) => openDashboard(ev.target.value));
  $("#range").addEventListener("change", (ev) => {
    if (ev.target.value === "custom") { $("#custom").hidden = false; return; }
    $("#custom").hidden = true; S.range = { start: ev.target.value, end: "now" }; reloadAll(true);
  });
  $("#apply-range").addEventListener("click", () => {
    if (!$("#from").value || !$("#to").value) return;
    S.range = { start: zonedToIso($("#from").value), end: zonedToIso($("#to").value) };
    closeStream(); reloadAll(false);
  });
  $("#refresh").addEventListener("change", (ev) => setRefresh(ev.target.value));
  $("#theme").addEventListener("click", () => {
    const next = theme() === "dark" ? "light" : "dark";
    document.documentElement.dataset.theme = next; localStorage.setItem("riffle.theme", next);
    for (const st of Object.values(S.panels)) { if (st.chart) { st.chart.dispose(); st.chart = null; } }
    for (const id of Object.keys(S.panels)) draw(id);
  });
  $("#edit").addEventListener("click", () => { S.edit = !S.edit; updateEditTools(); });
  $("#add").addEventListener("click", () => editPanel(null));
  $("#save").addEventListener("click", save);
  $("#share").addEventListener("click", share);
  $("#share-create").addEventListener("click", createShare);
  $("#pdf").addEventListener("click", () => download(`/v1/dashboards/${S.dash.id}/export.pdf`, [["start", S.range.start], ["end", S.range.end]], `${S.dash.id}.pdf`));
  window.addEventListener("resize", () => { for (const st of Object.values(S.panels)) if (st.chart) st.chart.resize(); });
}
window.riffleSvg = () => {
  const st = Object.values(S.panels)[0];
  return st && st.chart ? st.chart.renderToSVGString() : "";
};
start();
