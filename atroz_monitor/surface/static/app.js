"use strict";
/*
 * atroz monitor dashboard: one code path, two data sources.
 *
 * Live: GET api/v1/runs, then an EventSource on api/v1/stream?run=<id> (event "snapshot"
 * replaces everything, "update" merges, "runs" refreshes the picker). Static: the report
 * embeds {snapshot, runs, history, trends, generated} as <script type="application/json"
 * id="atroz-data"> and nothing touches the network.
 *
 * Every string that comes from a run log reaches the DOM through textContent or
 * setAttribute, never innerHTML (a phase may be named "<img src=x onerror=...>").
 * Nothing here polls: the page redraws only the parts an event changed, coalesced to one
 * animation frame, and a 1 s local clock advances running bars and the elapsed time.
 */
(() => {
  const SVGNS = "http://www.w3.org/2000/svg";
  const MAX_SAMPLES = 20000;
  const MAX_LOGS = 2000;
  const MAX_LIST = 500;
  const MAX_GANTT_ROWS = 400;
  // A phase in one of these is over (events.DONE_STATUSES): skipped and cached count as done.
  const FINISHED = new Set(["completed", "failed", "cancelled", "skipped", "cached"]);

  // State glyphs: state is shown by text and icon as well as colour.
  const STATUS = {
    completed: "✓",
    running: "▶",
    failed: "✕",
    pending: "○",
    interrupted: "◐",
    cancelled: "⊘",
    skipped: "↷",
    cached: "◆",
  };
  const SEVERITY = { critical: "✖", error: "✕", warning: "▲", info: "ℹ" };

  const S = {
    mode: "live",
    data: null, // static mode: the embedded document
    runs: [],
    runsTotal: null, // every run the server knows (the stream carries the newest 100)
    runCounts: null, // {status: runs} over every run, from the server
    runFilter: "", // the picker's filter text (live mode: asks the server)
    found: null, // {runs, next} the server's answer to the filter, or null (no filter)
    runsSig: "",
    runId: null,
    followLatest: true,
    snap: null,
    spans: new Map(), // span -> phase view, in snapshot (tree) order
    order: [], // phase views in tree order, depth recomputed
    samples: [],
    logs: [],
    skew: 0, // client clock minus the server's, seconds
    sort: { col: null, dir: 1 },
    selected: null,
    opener: null,
    history: new Map(), // key -> {history, trends} | "loading" | "error"
    dirty: new Set(),
    frame: 0,
    es: null,
    streamArg: "latest",
    retryMs: 1000,
    retryTimer: 0,
    ticker: 0,
    flowNodes: new Map(),
    attempts: new Map(), // span -> its retry group (snapshot.attempts)
    aggs: new Map(), // parent span ("" top level) -> aggregate rows (snapshot.aggregates)
    aggCalls: new Map(), // parent span -> every call aggregated under it
    derivedSig: "", // the aggregates and attempts last indexed
    sameTags: false, // history restricted to runs with this run's tags
    expanded: new Set(), // aggregate rows whose individually recorded calls are listed
    rowNodes: new Map(),
    rowOrder: [],
    downloadUrl: null,
  };

  // ---------------------------------------------------------------- DOM helpers
  const $ = (id) => document.getElementById(id);

  function setProps(node, props) {
    for (const [k, v] of Object.entries(props || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.setAttribute("class", v);
      else if (k === "text") node.textContent = String(v);
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
  }

  function add(node, kids) {
    for (const kid of kids.flat(Infinity)) {
      if (kid === null || kid === undefined || kid === false) continue;
      node.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return node;
  }

  function el(tag, props, ...kids) {
    const node = document.createElement(tag);
    setProps(node, props);
    return add(node, kids);
  }

  function sv(tag, props, ...kids) {
    const node = document.createElementNS(SVGNS, tag);
    setProps(node, props);
    return add(node, kids);
  }

  function setText(node, text) {
    const t = text === null || text === undefined ? "" : String(text);
    if (node.textContent !== t) node.textContent = t;
  }

  function clear(node) {
    node.replaceChildren();
    return node;
  }

  // ---------------------------------------------------------------- formatting
  const num = (v) => typeof v === "number" && Number.isFinite(v);

  function fmtMs(ms) {
    if (!num(ms)) return "–";
    // Hot-loop means are often far below a millisecond: keep two significant places.
    if (ms > 0 && ms < 0.001) return `${(ms * 1000).toFixed(2)} µs`;
    if (ms > 0 && ms < 0.1) return `${ms.toFixed(3)} ms`;
    if (ms < 1) return `${ms.toFixed(2)} ms`;
    if (ms < 1000) return `${Math.round(ms)} ms`;
    const s = ms / 1000;
    if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m}m ${String(Math.floor(s % 60)).padStart(2, "0")}s`;
    return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, "0")}m`;
  }

  function fmtBytes(n) {
    if (!num(n)) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let v = Math.abs(n);
    let i = 0;
    while (v >= 1024 && i < units.length - 1) {
      v /= 1024;
      i += 1;
    }
    const sign = n < 0 ? "-" : "";
    return i === 0 ? `${sign}${v} B` : `${sign}${v.toFixed(1)} ${units[i]}`;
  }

  function fmtDelta(n) {
    if (!num(n)) return "–";
    return n > 0 ? `+${fmtBytes(n)}` : fmtBytes(n);
  }

  function fmtInt(n) {
    return num(n) ? Math.round(n).toLocaleString("en-US") : "–";
  }

  function fmtNum(n) {
    if (!num(n)) return "–";
    if (Math.abs(n) >= 1000) return fmtInt(n);
    if (Number.isInteger(n)) return String(n);
    return String(Number(n.toPrecision(4)));
  }

  const fmtPct = (v) => (num(v) ? `${Math.round(v)}%` : "–");
  const fmtRate = (v) => (num(v) ? (v >= 1000 ? fmtInt(v) : v.toFixed(1)) : "–");

  function fmtClock(ts) {
    if (!num(ts)) return "–";
    const d = new Date(ts * 1000);
    const p = (x) => String(x).padStart(2, "0");
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
  }

  function fmtAxis(sec, span) {
    if (span < 10) return `${sec.toFixed(1)}s`;
    if (span < 180) return `${Math.round(sec)}s`;
    const m = Math.floor(sec / 60);
    return `${m}m${String(Math.round(sec % 60)).padStart(2, "0")}`;
  }

  function niceStep(raw) {
    if (!(raw > 0)) return 1;
    const p = 10 ** Math.floor(Math.log10(raw));
    for (const m of [1, 2, 5, 10]) if (raw <= m * p) return m * p;
    return 10 * p;
  }

  /** Axis labels: whole numbers where the tick allows ("256 MiB", "1.5 GiB"). */
  function axisBytes(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let v = n;
    let i = 0;
    while (v >= 1024 && i < units.length - 1) {
      v /= 1024;
      i += 1;
    }
    return `${Number.isInteger(v) ? v : v.toFixed(1)} ${units[i]}`;
  }

  function niceBytes(max) {
    let unit = 1;
    while (max / unit >= 1024) unit *= 1024;
    return niceStep(max / unit / 4) * unit;
  }

  const statusClass = (s) => (Object.prototype.hasOwnProperty.call(STATUS, s) ? `st-${s}` : "st-unknown");
  const statusText = (s) => (typeof s === "string" && s ? s : "unknown");

  function badge(status, cls) {
    return el(
      "span",
      { class: `badge ${cls || statusClass(status)}` },
      el("span", { class: "icon", "aria-hidden": "true", text: STATUS[status] || SEVERITY[status] || "?" }),
      el("span", { class: "text", text: statusText(status) }),
    );
  }

  function setBadge(node, status, cls) {
    node.setAttribute("class", `badge ${cls || statusClass(status)}`);
    setText(node.querySelector(".icon"), STATUS[status] || SEVERITY[status] || "?");
    setText(node.querySelector(".text"), statusText(status));
  }

  // ---------------------------------------------------------------- model
  const run = () => (S.snap && S.snap.run) || {};
  const runRunning = () => run().status === "running";
  const nowServer = () => Date.now() / 1000 - S.skew;

  function syncClock(info) {
    if (info && info.status === "running" && num(info.start) && num(info.duration_ms)) {
      S.skew = Date.now() / 1000 - (info.start + info.duration_ms / 1000);
    }
  }

  /** Duration that keeps growing for a running phase between two events. */
  function liveDuration(p) {
    if (p.status === "running" && S.mode === "live" && runRunning() && num(p.start)) {
      return Math.max(p.duration_ms || 0, (nowServer() - p.start) * 1000);
    }
    return p.duration_ms;
  }

  function runDurationMs() {
    const r = run();
    if (S.mode === "live" && runRunning() && num(r.start)) {
      return Math.max(r.duration_ms || 0, (nowServer() - r.start) * 1000);
    }
    return r.duration_ms;
  }

  function rebuildOrder() {
    const kids = new Map();
    const roots = [];
    for (const p of S.spans.values()) {
      // A late phase (started after the run ended) is not nested under its finished parent.
      if (p.parent && S.spans.has(p.parent) && p.parent !== p.span && !p.late) {
        if (!kids.has(p.parent)) kids.set(p.parent, []);
        kids.get(p.parent).push(p);
      } else {
        roots.push(p);
      }
    }
    const out = [];
    const seen = new Set();
    const walk = (p, depth) => {
      if (seen.has(p.span)) return;
      seen.add(p.span);
      p.depth = depth;
      out.push(p);
      for (const c of kids.get(p.span) || []) walk(c, depth + 1);
    };
    for (const r of roots) walk(r, 0);
    // A parent cycle in a corrupt log leaves phases unreached: show them at top level.
    for (const p of S.spans.values()) walk(p, 0);
    S.order = out;
  }

  // ---------------------------------------------------------------- attempts and aggregates
  /**
   * Lookups over what the snapshot computed (views.aggregates_view and attempts_view):
   * hot-loop aggregate rows per parent span ("" for the top level), and each retried
   * record's group. Nothing is counted here.
   */
  function indexDerived() {
    const aggs = new Map();
    const calls = new Map();
    for (const [parent, g] of Object.entries((S.snap && S.snap.aggregates) || {})) {
      aggs.set(parent, ((g && g.rows) || []).map((a) => ({ ...a, agg: true })));
      calls.set(parent, num(g && g.calls) ? g.calls : 0);
    }
    S.aggs = aggs;
    S.aggCalls = calls;
    const attempts = new Map();
    for (const g of (S.snap && S.snap.attempts) || []) for (const span of (g && g.spans) || []) attempts.set(span, g);
    S.attempts = attempts;
  }

  /** ``{n, of, failed, all}`` for a retried phase record (attempt n of the ``of`` recorded). */
  function attemptOf(p) {
    const g = num(p.attempt) ? S.attempts.get(p.span) : null;
    if (!g) return null;
    return { n: p.attempt, of: g.of, failed: g.failed, all: g.spans.map((s) => S.spans.get(s)).filter(Boolean) };
  }

  function attemptText(a) {
    return a ? `attempt ${a.n}/${a.of}` : "";
  }

  /** "item ×199,900: mean 0.009 ms, 199 failed" */
  function aggregateText(a) {
    const parts = [`mean ${fmtMs(a.mean_ms)}`];
    for (const st of ["failed", "cancelled", "skipped", "cached"]) if (a[st]) parts.push(`${fmtInt(a[st])} ${st}`);
    return `${a.name} ×${fmtInt(a.count)}: ${parts.join(", ")}`;
  }

  function aggregateTip(a) {
    return [
      aggregateText(a),
      `total ${fmtMs(a.total_ms)} · min ${fmtMs(a.min_ms)} · max ${fmtMs(a.max_ms)} · CPU ${fmtMs(a.cpu_ms)}`,
      `${fmtInt(a.aggregated)} calls recorded as aggregates, ${fmtInt(a.individual)} one by one`,
    ].join("\n");
  }

  /** Every call aggregated under ``span`` (the count badge on its Gantt bar). */
  function aggregatedCalls(span) {
    return S.aggCalls.get(span) || 0;
  }

  function flowItems() {
    const flow = (S.snap && S.snap.flow) || [];
    if (flow.length) return flow;
    // No plan recorded: the top-level phases are the flow.
    return S.order
      .filter((p) => p.depth === 0)
      .map((p) => {
        const a = attemptOf(p);
        return { id: p.phase, name: p.name, status: p.status, span: p.span, duration_ms: p.duration_ms, tries: a && a.of > 1 ? a : null };
      });
  }

  function sortRuns(list) {
    return [...(Array.isArray(list) ? list : [])].sort((a, b) => (b.start || 0) - (a.start || 0));
  }

  // ---------------------------------------------------------------- scheduling
  function mark(...parts) {
    for (const p of parts) S.dirty.add(p);
    if (!S.frame) S.frame = requestAnimationFrame(flush);
  }

  const RENDER = [
    ["header", renderHeader],
    ["cards", renderCards],
    ["flow", renderFlow],
    ["gantt", renderGantt],
    ["charts", renderCharts],
    ["table", renderTable],
    ["detail", renderDetail],
    ["alerts", renderAlerts],
    ["logs", renderLogs],
    ["groups", renderGroups],
    ["info", renderInfo],
    ["tick", renderTick],
  ];

  function flush() {
    S.frame = 0;
    const dirty = S.dirty;
    S.dirty = new Set();
    if (!S.snap) return;
    for (const [name, fn] of RENDER) if (dirty.has(name)) fn();
  }

  /** Once a second while a run is live: what grows with time alone (no event arrived). */
  function renderTick() {
    renderCards();
    renderFlow();
    renderGantt();
    for (const span of (S.snap.progress && S.snap.progress.running) || []) {
      const node = S.rowNodes.get(span);
      const p = S.spans.get(span);
      if (node && p) updateRow(node, p);
    }
    const sel = S.selected && S.spans.get(S.selected);
    if (sel && sel.status === "running") renderDetail();
  }

  function renderAll() {
    S.dirty = new Set(RENDER.map(([name]) => name).filter((name) => name !== "tick"));
    flush();
  }

  function updateTicker() {
    const want = S.mode === "live" && runRunning();
    if (want && !S.ticker) {
      S.ticker = setInterval(() => mark("tick"), 1000);
    } else if (!want && S.ticker) {
      clearInterval(S.ticker);
      S.ticker = 0;
    }
  }

  // ---------------------------------------------------------------- data in
  function setSnapshot(snap) {
    if (!snap || typeof snap !== "object" || !snap.run) return;
    S.snap = snap;
    S.runId = snap.run.id;
    S.spans = new Map((snap.phases || []).map((p) => [p.span, p]));
    rebuildOrder();
    indexDerived();
    S.derivedSig = JSON.stringify([snap.aggregates, snap.attempts]);
    S.samples = ((snap.resources && snap.resources.samples) || []).slice(-MAX_SAMPLES);
    S.logs = ((snap.logs && snap.logs.items) || []).slice(-MAX_LOGS);
    syncClock(snap.run);
    if (S.selected && !S.spans.has(S.selected)) closeDetail();
    updateTicker();
    renderAll();
  }

  function applyUpdate(u) {
    if (!S.snap || !u || u.run !== S.snap.run.id) return;
    const snap = S.snap;
    const parts = new Set(["header", "cards", "info"]);
    if (u.run_info) {
      snap.run = u.run_info;
      syncClock(u.run_info);
    }
    if (u.progress) snap.progress = u.progress;
    if (Array.isArray(u.flow)) {
      snap.flow = u.flow;
      parts.add("flow");
    }
    if (Array.isArray(u.phases) && u.phases.length) {
      for (const p of u.phases) if (p && p.span) S.spans.set(p.span, p);
      rebuildOrder();
      snap.phases = S.order;
      ["flow", "gantt", "table", "charts"].forEach((x) => parts.add(x));
      if (u.phases.some((p) => p && (p.span === S.selected || p.parent === S.selected))) parts.add("detail");
    }
    if (Array.isArray(u.samples) && u.samples.length) {
      S.samples = S.samples.concat(u.samples).slice(-MAX_SAMPLES);
      parts.add("charts");
    }
    if (Array.isArray(u.logs) && u.logs.length) {
      S.logs = S.logs.concat(u.logs).slice(-MAX_LOGS);
      parts.add("logs");
      parts.add("detail");
    }
    if (Array.isArray(u.alerts)) {
      snap.alerts = u.alerts;
      parts.add("alerts");
    }
    if (u.alerts_open !== undefined) snap.alerts_open = u.alerts_open;
    if (u.error_groups && typeof u.error_groups === "object") {
      snap.error_groups = u.error_groups;
      parts.add("groups");
    }
    if (u.counters && typeof u.counters === "object") snap.counters = u.counters;
    if (u.folded && typeof u.folded === "object") {
      // Top-level keys recorded as aggregates (hot loops at the top of the run).
      snap.folded = u.folded;
      parts.add("table");
    }
    // The rest of the snapshot comes whole in every update, so each panel shows live what
    // a reload would show (Run panel, errors, alerts, cards).
    for (const k of ["quality", "monitor", "processes", "errors", "anomalies", "keys", "metrics"]) {
      if (u[k] !== undefined) snap[k] = u[k];
    }
    if (u.aggregates !== undefined || u.attempts !== undefined) {
      if (u.aggregates !== undefined) snap.aggregates = u.aggregates;
      if (u.attempts !== undefined) snap.attempts = u.attempts;
      // Every update carries them whole: redraw only when they changed.
      const sig = JSON.stringify([snap.aggregates, snap.attempts]);
      if (sig !== S.derivedSig) {
        S.derivedSig = sig;
        indexDerived();
        ["flow", "gantt", "table", "detail"].forEach((x) => parts.add(x));
      }
    }
    if (u.resources) snap.resources = { ...u.resources, samples: [] };
    if (u.log_counts) snap.logs = { ...u.log_counts, items: [] };
    if (u.artifacts) snap.artifacts = u.artifacts;
    ["alerts", "logs", "info"].forEach((x) => parts.add(x));
    updateTicker();
    mark(...parts);
  }

  function setRuns(list, total, counts) {
    // Following "latest" needs nothing here: the server sends a snapshot of a new run.
    S.runs = sortRuns(list);
    S.runsTotal = num(total) ? total : null;
    S.runCounts = counts && typeof counts === "object" ? counts : null;
    mark("header", "cards");
  }

  // ---------------------------------------------------------------- header
  function renderHeader() {
    const r = run();
    const name = r.name || r.id || "run";
    setText($("run-name"), name);
    $("run-name").setAttribute("title", `${name} (${r.id || ""})`);
    setBadge($("run-status"), r.status);
    renderTags($("run-tags"), r.tags);
    document.title = `${STATUS[r.status] || ""} ${name} · atroz monitor`.trim();
    renderPicker();
    renderDownload();
    document.dispatchEvent(new CustomEvent("atroz:run", { detail: shownRun() }));
  }

  /** The run shown, for the insights panels (insights.js): announced on each header render. */
  function shownRun() {
    return S.snap ? { id: run().id, status: run().status, mode: S.mode, runs: S.runs, data: S.data } : null;
  }

  function tagEntries(tags) {
    if (!tags || typeof tags !== "object") return [];
    return Object.entries(tags).map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)]);
  }

  function tagChips(tags) {
    return tagEntries(tags).map(([k, v]) =>
      el("span", { class: "chip tag", title: `${k}=${v}` }, el("span", { class: "tag-k", text: `${k}=` }), el("span", { class: "tag-v", text: v })),
    );
  }

  function renderTags(node, tags) {
    const sig = JSON.stringify(tagEntries(tags));
    if (node.dataset.sig === sig) return;
    node.dataset.sig = sig;
    add(clear(node), tagChips(tags));
    node.hidden = sig === "[]";
  }

  const PICKER_MORE = "\u0000more"; // an option value no run id can have

  /** Runs as picker groups: by pipeline name, then by day (local time), newest first. */
  function pickerGroups(runs) {
    const groups = new Map();
    for (const x of runs) {
      const day = num(x.start) ? new Date(x.start * 1000).toLocaleDateString(undefined, { year: "numeric", month: "short", day: "numeric" }) : "no start";
      const name = x.name && x.name !== x.id ? x.name : "unnamed runs";
      const label = `${name} · ${day}`;
      if (!groups.has(label)) groups.set(label, []);
      groups.get(label).push(x);
    }
    return groups;
  }

  function renderPicker() {
    const picker = $("run-picker");
    const found = S.found;
    const base = S.runs.length ? S.runs : [{ id: run().id, name: run().name, status: run().status }];
    const runs = found ? found.runs : base;
    const sig = JSON.stringify(runs.map((x) => [x.id, x.name, x.status, x.start])) + S.runId + S.mode + S.followLatest + (found ? found.next : "");
    if (sig === S.runsSig) return;
    S.runsSig = sig;
    clear(picker);
    if (S.mode === "live") {
      picker.append(el("option", { value: "latest", text: "Latest run (follow new runs)", selected: S.followLatest }));
    }
    if (!runs.some((x) => x.id === S.runId) && S.runId && !S.followLatest) {
      picker.append(el("option", { value: S.runId, text: `${run().name || S.runId} (shown)`, selected: true }));
    }
    for (const [label, members] of pickerGroups(runs)) {
      const group = el("optgroup", { label });
      for (const x of members) {
        const time = num(x.start) ? new Date(x.start * 1000).toLocaleTimeString() : "";
        const opt = el("option", { value: x.id, text: `${time} ${x.id} (${statusText(x.status)})`.trim() });
        if (x.id === S.runId && !S.followLatest) opt.selected = true;
        // A static report embeds one run: the others are listed for context only.
        if (S.mode === "static" && x.id !== S.runId) opt.disabled = true;
        group.append(opt);
      }
      picker.append(group);
    }
    const total = found ? found.total : S.runsTotal;
    if (S.mode === "live" && ((found && found.next) || (!found && num(total) && total > runs.length))) {
      const more = num(total) ? ` (${fmtInt(total - runs.length)} more)` : "";
      picker.append(el("option", { value: PICKER_MORE, text: `Older runs…${more}` }));
    }
    const filter = $("run-filter");
    if (filter) filter.hidden = S.mode !== "live";
  }

  /** The picker's filter and "older runs": pages of api/v1/runs (limit + cursor). */
  async function findRuns(more) {
    if (S.mode !== "live") return;
    const q = S.runFilter.trim();
    const prev = more ? S.found : null;
    if (!q && !more) {
      S.found = null;
      S.runsSig = null;
      mark("header");
      return;
    }
    let cursor = prev ? prev.next : null;
    if (more && !prev) {
      // "Older runs" without a filter: continue after the newest runs the stream gave.
      const last = S.runs[S.runs.length - 1];
      if (!last) return;
      const page = await getJSON(`api/v1/runs?limit=${S.runs.length}`).catch(() => null);
      cursor = page && page.next_cursor;
      if (!cursor) return;
    }
    const args = new URLSearchParams({ limit: "200" });
    if (q) args.set("q", q);
    if (cursor) args.set("cursor", cursor);
    const asked = S.runFilter;
    const page = await getJSON(`api/v1/runs?${args}`).catch(() => null);
    if (!page || asked !== S.runFilter) return; // a newer filter was typed meanwhile
    const before = prev ? prev.runs : more ? S.runs : [];
    S.found = { runs: [...before, ...(page.runs || [])], next: page.next_cursor || null, total: num(page.total) ? page.total + before.length : null };
    S.runsSig = null;
    mark("header");
  }

  function renderDownload() {
    const a = $("download");
    const id = run().id || "run";
    a.setAttribute("download", `atroz-${id}.json`);
    if (S.mode === "live") {
      a.setAttribute("href", `api/v1/runs/${encodeURIComponent(id)}/export`);
      return;
    }
    if (!S.downloadUrl) {
      const blob = new Blob([JSON.stringify(S.data.snapshot, null, 2)], { type: "application/json" });
      S.downloadUrl = URL.createObjectURL(blob);
    }
    a.setAttribute("href", S.downloadUrl);
  }

  function setConn(state, detail) {
    const node = $("conn");
    const text = {
      live: "live",
      reconnecting: "reconnecting…",
      offline: "offline",
      static: "static report",
      connecting: "connecting…",
    };
    node.setAttribute("class", `conn conn-${state}`);
    node.dataset.state = state;
    setText(node.querySelector(".text"), text[state] || state);
    node.setAttribute("title", detail || text[state] || state);
  }

  function notice(msg) {
    const n = $("notice");
    n.hidden = !msg;
    setText(n, msg || "");
  }

  // ---------------------------------------------------------------- cards
  function card(id, value, sub, tone) {
    const node = $(id);
    setText(node.querySelector(".card-value"), value);
    setText(node.querySelector(".card-sub"), sub);
    node.setAttribute("class", `card${tone ? ` tone-${tone}` : ""}`);
  }

  function etaText(prog) {
    if (!runRunning()) return `finished ${fmtClock(run().end || run().last_event).slice(11)}`;
    if (prog.missing_history && prog.missing_history.length) return "ETA: no history";
    const overdue = (prog.overdue || []).length ? ` · ${prog.overdue.join(", ")} overdue` : "";
    if (num(prog.eta_s)) return `ETA ${fmtMs(prog.eta_s * 1000)}${overdue}`;
    return `ETA –${overdue}`;
  }

  function renderCards() {
    const r = run();
    const prog = S.snap.progress || {};
    const tone = { completed: "ok", running: "run", failed: "fail", interrupted: "warn", cancelled: "warn" }[r.status];
    card("card-elapsed", fmtMs(runDurationMs()), etaText(prog), tone);
    const running = (prog.running || []).map((s) => S.spans.get(s)).filter(Boolean);
    const pctText = num(prog.pct) ? `${Math.round(prog.pct)}%` : "–";
    const runningText = running.length ? `running ${running.map((p) => p.phase).join(", ")}` : "of planned phases";
    card("card-progress", `${prog.done ?? 0}/${prog.planned ?? 0}`, `${pctText} ${runningText}`, tone);
    renderAvgCard();
    renderAlertCard();
    renderRunCounts();
  }

  function renderAvgCard() {
    const prog = S.snap.progress || {};
    const slow = prog.slowest_top;
    if (!num(prog.mean_top_ms) || !slow) {
      card("card-avg", "–", "no finished phase yet");
      return;
    }
    card("card-avg", fmtMs(prog.mean_top_ms), `slowest ${slow.phase} ${fmtMs(slow.duration_ms)}`, "info");
  }

  function renderAlertCard() {
    const o = S.snap.alerts_open || {}; // alerts.open_summary
    const n = num(o.open) ? o.open : 0;
    const sub = n ? `${o.critical || 0} critical · ${o.warning || 0} warning` : "none open";
    card("card-alerts", String(n), sub, n ? (o.critical ? "fail" : "warn") : "ok");
  }

  function renderRunCounts() {
    // The server counts every run (the page holds only the newest); a report counts its own.
    const counts = S.runCounts || {};
    const count = (st) => (num(counts[st]) ? counts[st] : 0);
    const n = num(S.runsTotal) ? S.runsTotal : S.runs.length;
    const total = `of ${fmtInt(n)} run${n === 1 ? "" : "s"}`;
    card("card-active", String(count("running")), total, count("running") ? "run" : null);
    card("card-completed", String(count("completed")), total, "ok");
    const interrupted = count("interrupted") + count("cancelled");
    const failSub = interrupted ? `${total} · ${interrupted} interrupted/cancelled` : total;
    card("card-failed", String(count("failed")), failSub, count("failed") ? "fail" : null);
  }

  // ---------------------------------------------------------------- pipeline flow
  function flowNode(f) {
    const parts = {
      id: el("span", { class: "flow-id" }),
      icon: el("span", { class: "flow-icon", "aria-hidden": "true" }),
      status: el("span", { class: "flow-status" }),
      name: el("span", { class: "flow-name" }),
      dur: el("span", { class: "flow-dur" }),
      tries: el("span", { class: "chip tries" }),
      bar: el("span"),
    };
    const button = el(
      "button",
      { type: "button", class: "flow-card" },
      el("span", { class: "flow-top" }, parts.id, parts.dur),
      parts.name,
      el("span", { class: "flow-meta" }, el("span", {}, parts.icon, " ", parts.status), parts.tries),
      el("span", { class: "flow-bar", "aria-hidden": "true" }, parts.bar),
    );
    button.addEventListener("click", () => {
      const span = button.dataset.span;
      if (span) openDetail(span, button);
    });
    const li = el("li", { class: "flow-step", "data-phase": f.id }, button);
    return { li, button, parts };
  }

  function renderFlow() {
    const list = $("flow");
    const items = flowItems();
    const longest = Math.max(1, ...items.map((f) => durationOfFlow(f) || 0));
    const layout = dagLayout(items);
    list.classList.toggle("dag", Boolean(layout));
    const seen = new Set();
    items.forEach((f, i) => {
      const key = `${f.id}`;
      seen.add(key);
      let node = S.flowNodes.get(key);
      if (!node) {
        node = flowNode(f);
        S.flowNodes.set(key, node);
      }
      if (list.children[i] !== node.li) list.insertBefore(node.li, list.children[i] || null);
      updateFlowNode(node, f, longest);
      placeFlowNode(node, layout, f.id);
    });
    for (const [key, node] of S.flowNodes) {
      if (!seen.has(key)) {
        node.li.remove();
        S.flowNodes.delete(key);
      }
    }
    drawFlowEdges(layout);
    renderProgress();
  }

  /**
   * A plan with ``after`` links as columns by dependency depth (a phase sits one column
   * right of its deepest prerequisite); within a column, phases are ordered by the mean
   * row of their prerequisites so edges cross less. Null for a plain list (linear flow).
   */
  function dagLayout(items) {
    const byId = new Map(items.map((f) => [f.id, f]));
    const preds = (f) => (Array.isArray(f.after) ? f.after : []).filter((a) => a !== f.id && byId.has(a));
    if (!items.some((f) => preds(f).length)) return null;
    const depth = new Map();
    const visiting = new Set();
    const depthOf = (id) => {
      if (depth.has(id)) return depth.get(id);
      if (visiting.has(id)) return 0; // a cycle in a hand-written plan: cut it here
      visiting.add(id);
      const ps = preds(byId.get(id));
      const d = ps.length ? 1 + Math.max(...ps.map(depthOf)) : 0;
      visiting.delete(id);
      depth.set(id, d);
      return d;
    };
    const cols = [];
    for (const f of items) {
      const d = depthOf(f.id);
      (cols[d] = cols[d] || []).push(f);
    }
    const row = new Map();
    cols.forEach((col, c) => {
      const centre = (f) => {
        const rs = preds(f).filter((a) => row.has(a)).map((a) => row.get(a));
        return rs.length ? rs.reduce((x, y) => x + y, 0) / rs.length : 0;
      };
      if (c > 0) col.sort((a, b) => centre(a) - centre(b));
      col.forEach((f, r) => row.set(f.id, r));
    });
    const edges = items.flatMap((f) => preds(f).map((a) => [a, f.id]));
    return { depth, row, edges };
  }

  function placeFlowNode(node, layout, id) {
    // Grid placement through the CSSOM (allowed under CSP, unlike a style attribute in markup).
    node.li.style.gridColumnStart = layout ? String(layout.depth.get(id) + 1) : "";
    node.li.style.gridRowStart = layout ? String(layout.row.get(id) + 1) : "";
  }

  /** One arrow per ``after`` link, drawn behind the cards from their measured boxes. */
  function drawFlowEdges(layout) {
    const svgNode = clear($("flow-edges"));
    if (!layout) return;
    const box = $("flow-box");
    const origin = box.getBoundingClientRect();
    const W = box.scrollWidth;
    const H = box.scrollHeight;
    setProps(svgNode, { viewBox: `0 0 ${W} ${H}`, width: W, height: H });
    const marker = sv("marker", { id: "flow-arrow", viewBox: "0 0 8 8", refX: 7, refY: 4, markerWidth: 7, markerHeight: 7, orient: "auto" });
    marker.append(sv("path", { class: "arrow-head", d: "M0,0 L8,4 L0,8 Z" }));
    svgNode.append(sv("defs", {}, marker));
    const at = (id) => {
      const node = S.flowNodes.get(id);
      return node ? node.button.getBoundingClientRect() : null;
    };
    for (const [from, to] of layout.edges) {
      const a = at(from);
      const b = at(to);
      if (!a || !b) continue;
      const x1 = a.right - origin.left + box.scrollLeft;
      const y1 = a.top + a.height / 2 - origin.top;
      const x2 = b.left - origin.left + box.scrollLeft - 1;
      const y2 = b.top + b.height / 2 - origin.top;
      const dx = Math.max(12, (x2 - x1) / 2);
      const src = (S.flowNodes.get(from).li.dataset.status || "pending");
      svgNode.append(
        sv("path", {
          class: `edge ${FINISHED.has(src) ? "done" : "todo"}`,
          d: `M${x1.toFixed(1)},${y1.toFixed(1)} C${(x1 + dx).toFixed(1)},${y1.toFixed(1)} ${(x2 - dx).toFixed(1)},${y2.toFixed(1)} ${x2.toFixed(1)},${y2.toFixed(1)}`,
          "marker-end": "url(#flow-arrow)",
          "data-from": from,
          "data-to": to,
        }),
      );
    }
  }

  function durationOfFlow(f) {
    const p = f.span ? S.spans.get(f.span) : null;
    return p ? liveDuration(p) : f.duration_ms;
  }

  function updateFlowNode(node, f, longest) {
    const status = f.status || "pending";
    const dur = durationOfFlow(f);
    node.li.setAttribute("class", `flow-step ${statusClass(status)}`);
    node.li.dataset.status = status;
    setText(node.parts.id, f.id);
    setText(node.parts.icon, STATUS[status] || "?");
    setText(node.parts.status, statusText(status));
    setText(node.parts.name, f.name || f.id);
    node.parts.name.setAttribute("title", f.name || f.id || "");
    setText(node.parts.dur, num(dur) ? fmtMs(dur) : "–");
    const p = f.span ? S.spans.get(f.span) : null;
    const tries = f.tries || null; // views.flow_view's retry badge
    setText(node.parts.tries, tries ? `↻ ${attemptText(tries)}${tries.failed ? ` · ${tries.failed} failed` : ""}` : "");
    node.parts.tries.hidden = !tries;
    node.parts.tries.classList.toggle("bad", Boolean(tries && tries.failed));
    const reason = p && p.reason ? ` (${p.reason})` : "";
    const attempts = tries ? `, ${attemptText(tries)}, ${tries.failed} failed` : "";
    const sh = p ? shareOf(p) : null;
    const share = num(sh) ? `, ${Math.round(sh * 100)}% of the run` : "";
    node.parts.bar.style.width = num(dur) ? `${Math.max(2, (dur / longest) * 100)}%` : "0";
    node.button.dataset.span = f.span || "";
    node.button.disabled = !f.span;
    const after = Array.isArray(f.after) && f.after.length ? `, after ${f.after.join(", ")}` : "";
    const label = `${f.id} ${f.name || ""}: ${statusText(status)}${reason}${num(dur) ? `, ${fmtMs(dur)}` : ""}${share}${attempts}${after}`;
    node.button.setAttribute("aria-label", label);
    node.button.setAttribute("title", label);
  }

  function renderProgress() {
    const b = (S.snap.progress || {}).bar || {}; // views.progress_view
    const pct = num(b.pct) ? b.pct : 0;
    const bar = $("progress");
    bar.setAttribute("aria-valuenow", String(Math.round(pct)));
    bar.classList.toggle("failed", Boolean(b.failed));
    bar.querySelector(".progress-bar").style.width = `${pct}%`;
    const running = Array.isArray(b.running) ? b.running : [];
    setText($("progress-text"), `${b.done || 0} of ${b.total || 0} done${running.length ? ` · running ${running.join(", ")}` : ""}`);
  }


  // ---------------------------------------------------------------- tooltips
  function phaseTip(p) {
    const dur = liveDuration(p);
    const lines = [
      `${p.phase} · ${p.name || ""} — ${statusText(p.status)}`,
      `start +${fmtMs(p.offset_ms)} · duration ${fmtMs(dur)}`,
      `CPU ${fmtPct(p.cpu_pct)} (peak ${fmtPct(p.cpu_peak_pct)}) · peak RSS ${fmtBytes(p.peak_rss_bytes)}`,
    ];
    if (p.items) lines.push(`${fmtInt(p.items)} items · ${fmtRate(p.items_per_s)} items/s`);
    if (p.errors || p.warnings) lines.push(`${p.errors || 0} errors · ${p.warnings || 0} warnings`);
    if (p.reason) lines.push(`${statusText(p.status)}: ${p.reason}`);
    if (p.late) lines.push("late: started after the run ended");
    if (p.duration_lower_bound) lines.push("no end recorded: lasted at least this long");
    const a = attemptOf(p);
    if (a) lines.push(`${attemptText(a)} (${a.failed} failed)`);
    const calls = aggregatedCalls(p.span);
    if (calls) lines.push(`${fmtInt(calls)} calls of hot loops recorded as aggregates (see the table)`);
    if (p.error && p.error.msg) lines.push(`${p.error.type || "error"}: ${p.error.msg}`);
    lines.push(`pid ${p.pid ?? "?"} · ${p.thread || ""}`);
    return lines.join("\n");
  }

  // ---------------------------------------------------------------- Gantt
  function ganttRows() {
    const showSubs = $("gantt-subs").checked;
    const phases = S.order.filter((p) => (showSubs || p.depth === 0) && !inCollapsedAggregate(p));
    const pids = [...new Set(phases.map((p) => p.pid))];
    if (pids.length <= 1) return phases.map((p) => ({ phase: p }));
    // Several processes recorded phases: one lane per process, the run's owner first; in a
    // resumed run the owners in the order they took over (the timeline reads left to right).
    const owner = run().pid;
    const before = new Set((run().resumed || []).map((r) => r && r.prev_pid));
    const first = (pid) => Math.min(...phases.filter((p) => p.pid === pid).map((p) => (num(p.offset_ms) ? p.offset_ms : Infinity)));
    const rank = (pid) => (pid === owner || before.has(pid) ? 0 : 1);
    pids.sort((a, b) => rank(a) - rank(b) || (before.size ? first(a) - first(b) : a === owner ? -1 : b === owner ? 1 : (a || 0) - (b || 0)));
    const rows = [];
    for (const pid of pids) {
      const mine = phases.filter((p) => p.pid === pid);
      const role = pid === owner ? (before.size ? " (main, resumed)" : " (main)") : before.has(pid) ? " (main until the gap)" : "";
      rows.push({ lane: `process ${pid ?? "?"}${role} · ${mine.length} phase${mine.length === 1 ? "" : "s"}` });
      for (const p of mine) rows.push({ phase: p });
    }
    return rows;
  }

  function timeDomainMs() {
    let t = runDurationMs() || 0;
    for (const p of S.order) {
      const d = liveDuration(p);
      if (num(p.offset_ms) && num(d)) t = Math.max(t, p.offset_ms + d);
    }
    return Math.max(t, 1);
  }

  function renderGantt() {
    const box = $("gantt");
    let rows = ganttRows();
    if (!rows.length) {
      clear(box).append(el("p", { class: "empty", text: "No phases recorded yet." }));
      return;
    }
    const cut = rows.length - MAX_GANTT_ROWS;
    if (cut > 0) rows = rows.slice(0, MAX_GANTT_ROWS);
    const W = Math.max(320, box.clientWidth || 800);
    const labelW = W < 600 ? 120 : 240;
    const plotX = labelW + 8;
    const plotW = W - plotX - 56;
    const rowH = 20;
    const top = 22;
    const H = top + rows.length * rowH + 4;
    const T = timeDomainMs();
    const x = (ms) => plotX + (ms / T) * plotW;
    const svgNode = sv("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-label": "Timeline of phases" });
    svgNode.append(ganttAxis(T, x, top, H, plotW));
    svgNode.append(resumeGaps(x, top, H));
    let stripe = -1;
    rows.forEach((row, i) => {
      const y = top + i * rowH;
      if (row.lane) {
        svgNode.append(sv("text", { class: "lane", x: 4, y: y + 14, text: row.lane }));
        return;
      }
      if (row.phase.depth === 0) stripe += 1;
      if (stripe % 2 === 0) svgNode.append(sv("rect", { class: "row-alt", x: 0, y, width: W, height: rowH }));
      svgNode.append(ganttLabel(row.phase, y, labelW));
      svgNode.append(ganttBar(row.phase, y, rowH, x, W));
    });
    if (S.mode === "live" && runRunning()) {
      const nx = x(runDurationMs() || 0);
      svgNode.append(sv("line", { class: "now-line", x1: nx, x2: nx, y1: top - 4, y2: H }));
    }
    const kids = [svgNode];
    if (cut > 0) kids.push(el("p", { class: "muted", text: `${cut} more phases are listed in the table below.` }));
    clear(box).append(...kids);
  }

  function ganttAxis(T, x, top, H, plotW) {
    const g = sv("g", {});
    const sec = T / 1000;
    const step = niceStep(sec / Math.max(2, Math.floor(plotW / 90)));
    for (let t = 0; t <= sec + 1e-9; t += step) {
      const px = x(t * 1000);
      g.append(sv("line", { class: "grid", x1: px, x2: px, y1: top - 4, y2: H }));
      g.append(sv("text", { x: px, y: 12, "text-anchor": "middle", text: fmtAxis(t, sec) }));
    }
    return g;
  }

  function clip(text, chars) {
    return text.length > chars ? `${text.slice(0, Math.max(1, chars - 1))}…` : text;
  }

  function ganttLabel(p, y, labelW) {
    const indent = 6 + Math.min(p.depth, 4) * 12;
    const chars = Math.floor((labelW - indent - 14) / 6.4);
    // The key identifies the phase: it gets the room first, the name what is left.
    const key = clip(String(p.phase), Math.max(4, chars));
    const room = chars - key.length - 1;
    const same = !p.name || p.name === p.phase;
    const a = attemptOf(p);
    const full = `${same ? "" : p.name}${a ? ` (${a.n}/${a.of})` : ""}`.trim();
    const name = room >= 4 && full ? clip(full, room) : "";
    const glyph = STATUS[p.status] || "?";
    return sv(
      "text",
      { class: "label", x: indent, y: y + 14 },
      sv("tspan", { class: `glyph-${p.status}`, text: `${glyph} ` }),
      sv("tspan", { class: "label-key", text: key }),
      sv("tspan", { text: name ? ` ${name}` : "" }),
      sv("title", { text: phaseTip(p) }),
    );
  }

  function ganttBar(p, y, rowH, x, W) {
    const g = sv("g", { "data-span": p.span });
    const dur = liveDuration(p);
    if (!num(p.offset_ms)) return g;
    const x0 = x(p.offset_ms);
    const w = Math.max(2, x(p.offset_ms + (num(dur) ? dur : 0)) - x0);
    const sub = p.depth > 0;
    const h = sub ? rowH - 10 : rowH - 6;
    const cls = `bar ${statusClass(p.status)}${sub ? " sub" : ""}`;
    g.append(sv("rect", { class: cls, x: x0, y: y + (rowH - h) / 2, width: w, height: h, rx: 3 }, sv("title", { text: phaseTip(p) })));
    const label = fmtMs(dur);
    const tx = x0 + w + 4;
    if (tx + label.length * 6 < W) g.append(sv("text", { class: "bar-text", x: tx, y: y + 14, text: label }));
    const calls = aggregatedCalls(p.span);
    if (calls) g.append(countPill(`×${fmtInt(calls)}`, Math.min(tx + label.length * 6 + 4, W - 60), y + 3, rowH - 6));
    g.addEventListener("click", () => openDetail(p.span, null));
    return g;
  }

  /** "×2,000" after a bar: calls of its hot loops, recorded as aggregates (no bars of their own). */
  function countPill(text, x, y, h) {
    const w = text.length * 6.2 + 8;
    return sv(
      "g",
      { class: "count-pill" },
      sv("rect", { x, y, width: w, height: h, rx: h / 2 }),
      sv("text", { x: x + w / 2, y: y + h - 4, "text-anchor": "middle", text }),
      sv("title", { text: "calls recorded as aggregates: see the phase table" }),
    );
  }

  /** Resumed runs: the time no process was recording, as a hatched band with its length. */
  function resumeGaps(x, top, H) {
    const g = sv("g", { class: "gaps" });
    const start = run().start;
    const gaps = (run().resumed || []).filter((r) => num(r.ts) && num(r.gap_s) && r.gap_s > 0 && num(start));
    if (!gaps.length) return g;
    const hatch = sv("pattern", { id: "gap-hatch", width: 6, height: 6, patternUnits: "userSpaceOnUse", patternTransform: "rotate(45)" });
    hatch.append(sv("line", { class: "hatch-line", x1: 0, y1: 0, x2: 0, y2: 6 }));
    g.append(sv("defs", {}, hatch));
    for (const r of gaps) {
      const x1 = x(Math.max(0, (r.ts - start) * 1000));
      const x0 = x(Math.max(0, (r.ts - r.gap_s - start) * 1000));
      const text = `resumed after ${fmtMs(r.gap_s * 1000)} gap (pid ${r.prev_pid ?? "?"} → ${r.pid ?? "?"})`;
      const band = sv("rect", { class: "gap", x: x0, y: top - 4, width: Math.max(3, x1 - x0), height: H - top + 4, fill: "url(#gap-hatch)" });
      band.append(sv("title", { text }));
      g.append(band, sv("text", { class: "gap-label", x: x1 + 3, y: top + 10, text: `${fmtMs(r.gap_s * 1000)} gap, resumed` }));
    }
    return g;
  }

  // ---------------------------------------------------------------- CPU and memory charts
  function seriesOf(key, scale) {
    const start = run().start;
    const out = [];
    for (const s of S.samples) {
      const v = typeof key === "function" ? key(s) : s[key];
      if (num(v) && num(s.ts)) out.push([s.ts - start, v * (scale || 1)]);
    }
    return out;
  }

  /** At most ~2 points per pixel column, keeping each column's peak. */
  function thin(points, columns) {
    if (points.length <= columns * 2) return points;
    const t0 = points[0][0];
    const span = points[points.length - 1][0] - t0 || 1;
    const out = [];
    let bucket = -1;
    let best = null;
    for (const pt of points) {
      const b = Math.floor(((pt[0] - t0) / span) * columns);
      if (b !== bucket) {
        if (best) out.push(best);
        bucket = b;
        best = pt;
      } else if (pt[1] > best[1]) best = pt;
    }
    if (best) out.push(best);
    return out;
  }

  function cpuSpec() {
    const ncpu = num(run().ncpu) ? run().ncpu : 1;
    return {
      id: "cpu",
      series: [
        { cls: "cpu", label: "process", area: true, pts: seriesOf("cpu_pct") },
        { cls: "cpu2", label: "children", pts: seriesOf("children_cpu_pct") },
        { cls: "cpu3", label: `system (${ncpu} core${ncpu === 1 ? "" : "s"})`, pts: seriesOf("sys_cpu_pct", ncpu) },
      ],
      limit: cpuLimit(),
      floor: 100,
      step: (max) => niceStep(max / 4),
      fmt: (v) => `${Math.round(v)}%`,
      axis: (v) => `${Math.round(v)}%`,
    };
  }

  function memSpec() {
    const tree = (s) => (num(s.tree_rss_bytes) ? s.tree_rss_bytes : null); // state._sample sums it
    return {
      id: "mem",
      series: [
        { cls: "mem", label: "process", area: true, pts: seriesOf("rss_bytes") },
        { cls: "mem2", label: "process + children", pts: seriesOf(tree) },
      ],
      floor: 1024 * 1024,
      step: niceBytes,
      fmt: fmtBytes,
      axis: axisBytes,
      limit: memLimit(),
    };
  }

  /** The container's CPU quota as a line on the CPU chart (``run.limits``; 100% = one CPU). */
  function cpuLimit() {
    const lim = run().limits;
    const q = lim && typeof lim === "object" ? lim.cpu_quota : null;
    return num(q) && q > 0 ? { value: q * 100, label: `quota ${fmtNum(q)} CPU${q === 1 ? "" : "s"}` } : null;
  }

  /** The container memory limit as a line on the memory chart (``run.limits``). */
  function memLimit() {
    const lim = run().limits;
    const v = lim && typeof lim === "object" ? lim.memory_max_bytes : null;
    return num(v) && v > 0 ? { value: v, label: `limit ${fmtBytes(v)}` } : null;
  }

  function renderCharts() {
    for (const spec of [cpuSpec(), memSpec()]) drawChart(spec);
  }

  function legend(id, series) {
    const box = $(`${id}-legend`);
    if (box.childElementCount === series.length) return;
    clear(box);
    for (const s of series) {
      const line = sv("line", { class: `line ${s.cls}`, x1: 1, x2: 21, y1: 4, y2: 4 });
      const swatch = sv("svg", { viewBox: "0 0 22 8", "aria-hidden": "true" }, line);
      box.append(el("span", { class: "key" }, swatch, s.label));
    }
  }

  function drawChart(spec) {
    const box = $(`${spec.id}-chart`);
    legend(spec.id, spec.series);
    const shown = spec.series.filter((s) => s.pts.length);
    if (!shown.length) {
      clear(box).append(el("p", { class: "empty", text: "No resource samples recorded." }));
      setText($(`${spec.id}-readout`), "");
      return;
    }
    const W = Math.max(300, box.clientWidth || 600);
    const H = 190;
    const pad = { l: 60, r: 10, t: 16, b: 22 };
    const pw = W - pad.l - pad.r;
    const ph = H - pad.t - pad.b;
    const T = Math.max(timeDomainMs() / 1000, ...shown.map((s) => s.pts[s.pts.length - 1][0]), 0.001);
    const dataPeak = Math.max(spec.floor, ...shown.flatMap((s) => s.pts.map((p) => p[1])));
    // A limit far above the data would flatten it: then it is named, not drawn to scale.
    const limitShown = spec.limit && spec.limit.value <= dataPeak * 4;
    const peak = limitShown ? Math.max(dataPeak, spec.limit.value) : dataPeak;
    const step = spec.step(peak);
    const yMax = Math.ceil(peak / step) * step;
    const X = (t) => pad.l + (Math.max(0, t) / T) * pw;
    const Y = (v) => pad.t + ph - (v / yMax) * ph;
    const label = `${spec.id === "cpu" ? "CPU" : "Memory"} over time`;
    const svgNode = sv("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-label": label });
    svgNode.append(chartBands(X, pad.t, ph));
    svgNode.append(chartAxes(spec, X, Y, yMax, step, T, pad, W, H));
    for (const s of shown) {
      const pts = thin(s.pts, pw);
      const d = pts.map((p, i) => `${i ? "L" : "M"}${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join("");
      if (s.area) {
        const base = Y(0).toFixed(1);
        const area = `${d}L${X(pts[pts.length - 1][0]).toFixed(1)},${base}L${X(pts[0][0]).toFixed(1)},${base}Z`;
        svgNode.append(sv("path", { class: `area ${s.cls}`, d: area }));
      }
      svgNode.append(sv("path", { class: `line ${s.cls}`, d }));
    }
    if (spec.limit) svgNode.append(limitLine(spec.limit, limitShown ? Y(spec.limit.value) : null, pad, W));
    const cursor = sv("line", { class: "cursor", x1: -10, x2: -10, y1: pad.t, y2: pad.t + ph });
    svgNode.append(cursor);
    svgNode.addEventListener("mousemove", (ev) => chartHover(ev, svgNode, spec, shown, X, T, pad, pw, cursor));
    svgNode.addEventListener("mouseleave", () => {
      cursor.setAttribute("x1", "-10");
      cursor.setAttribute("x2", "-10");
      chartReadout(spec, shown, null);
    });
    clear(box).append(svgNode);
    chartReadout(spec, shown, null);
  }

  function limitLine(limit, y, pad, W) {
    const g = sv("g", { class: "limit" });
    if (y === null) {
      g.append(sv("text", { class: "limit-label", x: W - pad.r - 4, y: pad.t + 10, "text-anchor": "end", text: `${limit.label} (off scale)` }));
      return g;
    }
    g.append(sv("line", { class: "limit-line", x1: pad.l, x2: W - pad.r, y1: y, y2: y }));
    // Under the line: above it are the phase labels of the bands.
    g.append(sv("text", { class: "limit-label", x: W - pad.r - 4, y: y + 12, "text-anchor": "end", text: limit.label }));
    return g;
  }

  function chartBands(X, top, ph) {
    const g = sv("g", {});
    const tops = S.order.filter((p) => p.depth === 0 && num(p.offset_ms));
    tops.forEach((p, i) => {
      const x0 = X(p.offset_ms / 1000);
      const x1 = X((p.offset_ms + (liveDuration(p) || 0)) / 1000);
      const band = sv("rect", { class: i % 2 ? "band-b" : "band-a", x: x0, y: top, width: Math.max(1, x1 - x0), height: ph });
      band.append(sv("title", { text: `${p.phase} · ${p.name || ""} (${fmtMs(liveDuration(p))})` }));
      g.append(band);
      g.append(sv("line", { class: "band-line", x1: x0, x2: x0, y1: top, y2: top + ph }));
      const label = String(p.phase);
      if (x1 - x0 > label.length * 6.5 + 4) {
        g.append(sv("text", { class: "band-label", x: x0 + 3, y: top - 4, text: label }));
      }
    });
    return g;
  }

  function chartAxes(spec, X, Y, yMax, step, T, pad, W, H) {
    const g = sv("g", {});
    for (let v = 0; v <= yMax + step / 1e6; v += step) {
      const y = Y(v);
      g.append(sv("line", { class: "grid", x1: pad.l, x2: W - pad.r, y1: y, y2: y }));
      g.append(sv("text", { x: pad.l - 6, y: y + 4, "text-anchor": "end", text: spec.axis(v) }));
    }
    const xs = niceStep(T / Math.max(2, Math.floor((W - pad.l) / 80)));
    for (let t = 0; t <= T + 1e-9; t += xs) {
      g.append(sv("text", { x: X(t), y: H - 6, "text-anchor": "middle", text: fmtAxis(t, T) }));
    }
    return g;
  }

  function nearest(pts, t) {
    let lo = 0;
    let hi = pts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (pts[mid][0] < t) lo = mid + 1;
      else hi = mid;
    }
    if (lo > 0 && Math.abs(pts[lo - 1][0] - t) < Math.abs(pts[lo][0] - t)) lo -= 1;
    return pts[lo];
  }

  function chartHover(ev, svgNode, spec, shown, X, T, pad, pw, cursor) {
    const rect = svgNode.getBoundingClientRect();
    const scale = rect.width ? svgNode.viewBox.baseVal.width / rect.width : 1;
    const px = (ev.clientX - rect.left) * scale;
    const t = Math.min(T, Math.max(0, ((px - pad.l) / pw) * T));
    const cx = X(t);
    cursor.setAttribute("x1", String(cx));
    cursor.setAttribute("x2", String(cx));
    chartReadout(spec, shown, t);
  }

  function phaseAt(tSec) {
    const ms = tSec * 1000;
    return S.order.find((p) => p.depth === 0 && num(p.offset_ms) && ms >= p.offset_ms && ms <= p.offset_ms + (liveDuration(p) || 0));
  }

  function chartReadout(spec, shown, t) {
    const at = t === null ? null : t;
    const parts = shown.map((s) => {
      const pt = at === null ? s.pts[s.pts.length - 1] : nearest(s.pts, at);
      return `${s.label} ${spec.fmt(pt[1])}`;
    });
    const when = at === null ? "latest" : `at ${fmtAxis(at, 1)}`;
    const p = at === null ? null : phaseAt(at);
    setText($(`${spec.id}-readout`), `${when}: ${parts.join(" · ")}${p ? ` · in ${p.phase} ${p.name || ""}` : ""}`);
  }

  // ---------------------------------------------------------------- phase table
  const COLS = [
    { id: "phase", label: "Phase", cls: "c-key", val: (p) => p.phase, fmt: (v) => v },
    { id: "name", label: "Name", cls: "c-name", val: (p) => (p.late ? `${p.name || p.phase} (late)` : p.name), fmt: (v) => v || "" },
    { id: "status", label: "Status", cls: "c-status", val: (p) => p.status, badge: true },
    { id: "offset_ms", label: "Start", val: (p) => p.offset_ms, fmt: (v) => (num(v) ? `+${fmtMs(v)}` : "–") },
    { id: "duration_ms", label: "Duration", val: (p) => liveDuration(p), fmt: fmtMs },
    { id: "share", label: "Share", val: (p) => shareOf(p), fmt: (v) => (num(v) ? `${Math.round(v * 100)}%` : "–"), bar: true },
    { id: "cpu_pct", label: "CPU avg", val: (p) => p.cpu_pct, fmt: fmtPct },
    { id: "cpu_peak_pct", label: "CPU peak", val: (p) => p.cpu_peak_pct, fmt: fmtPct },
    { id: "cpu_ms", label: "CPU time", val: (p) => p.cpu_ms, fmt: fmtMs },
    { id: "children_cpu_ms", label: "Children CPU", val: (p) => p.children_cpu_ms, fmt: fmtMs },
    { id: "peak_rss_bytes", label: "Peak RSS", val: (p) => p.peak_rss_bytes, fmt: fmtBytes },
    { id: "rss_delta_bytes", label: "RSS Δ", val: (p) => p.rss_delta_bytes, fmt: fmtDelta },
    { id: "items", label: "Items", val: (p) => p.items, fmt: fmtInt },
    { id: "items_per_s", label: "Items/s", val: (p) => p.items_per_s, fmt: fmtRate },
    { id: "warnings", label: "Warn", val: (p) => p.warnings, fmt: fmtInt },
    { id: "errors", label: "Err", val: (p) => p.errors, fmt: fmtInt },
    { id: "artifacts", label: "Artifacts", val: (p) => (p.artifacts || []).length, fmt: fmtInt },
    { id: "pid", label: "PID", val: (p) => p.pid, fmt: (v) => (num(v) ? String(v) : "–") },
  ];

  /** A phase's share of the run, as a fraction: the snapshot's ``share_pct`` (views.share_pct).
   * While a live run runs, its duration grows between updates: the share follows the live
   * clock there, with the same formula (as the durations do, liveDuration). */
  function shareOf(p) {
    if (p.late) return null; // it ran after the run: no share of it
    if (S.mode === "live" && runRunning()) {
      const total = runDurationMs();
      const d = liveDuration(p);
      return num(d) && total > 0 ? d / total : null;
    }
    return num(p.share_pct) ? p.share_pct / 100 : null;
  }

  function buildHead() {
    const head = $("phase-head");
    for (const c of COLS) {
      const button = el("button", { type: "button" }, c.label, el("span", { class: "arrow", "aria-hidden": "true", text: "↕" }));
      button.addEventListener("click", () => sortBy(c.id));
      head.append(el("th", { scope: "col", class: c.cls || "", "data-col": c.id, "aria-sort": "none" }, button));
    }
  }

  function sortBy(col) {
    const s = S.sort;
    if (s.col !== col) {
      s.col = col;
      s.dir = col === "phase" || col === "name" || col === "offset_ms" ? 1 : -1;
    } else if (s.dir === (col === "phase" || col === "name" || col === "offset_ms" ? 1 : -1)) {
      s.dir = -s.dir;
    } else {
      s.col = null; // third click: back to the run's own order
    }
    for (const th of $("phase-head").children) {
      const on = th.dataset.col === s.col;
      th.setAttribute("aria-sort", on ? (s.dir > 0 ? "ascending" : "descending") : "none");
      setText(th.querySelector(".arrow"), on ? (s.dir > 0 ? "▲" : "▼") : "↕");
    }
    mark("table");
  }

  function compare(col, dir) {
    const c = COLS.find((x) => x.id === col);
    return (a, b) => {
      const va = c.val(a);
      const vb = c.val(b);
      const na = va === null || va === undefined;
      const nb = vb === null || vb === undefined;
      if (na || nb) return na === nb ? 0 : na ? 1 : -1; // missing values last either way
      if (typeof va === "number" && typeof vb === "number") return (va - vb) * dir;
      return String(va).localeCompare(String(vb), "en", { numeric: true }) * dir;
    };
  }

  /**
   * Rows in display order: the tree, siblings sorted by the chosen column; each phase's
   * aggregate rows (hot loops) right under it, top-level aggregates last.
   */
  function tableOrder() {
    const out = [];
    const withAggs = (p) => {
      if (inCollapsedAggregate(p)) return;
      out.push(p);
      out.push(...(S.aggs.get(p.span) || []).map((a) => ({ ...a, depth: p.depth + 1 })));
    };
    phaseOrder().forEach(withAggs);
    out.push(...(S.aggs.get("") || []).map((a) => ({ ...a, depth: 0 })));
    return out;
  }

  /**
   * The calls of a hot loop recorded one by one before aggregation began are counted in
   * its aggregate row, and listed only when that row is expanded (a hundred identical
   * rows would bury the rest of the table).
   */
  function inCollapsedAggregate(p) {
    if (p.depth === 0 || !S.aggs.has(p.parent)) return false;
    const a = S.aggs.get(p.parent).find((x) => x.phase === p.phase);
    return Boolean(a) && !S.expanded.has(a.span);
  }

  function phaseOrder() {
    if (!S.sort.col) return S.order;
    const cmp = compare(S.sort.col, S.sort.dir);
    const kids = new Map();
    const roots = [];
    for (const p of S.order) {
      if (p.depth > 0 && p.parent) {
        if (!kids.has(p.parent)) kids.set(p.parent, []);
        kids.get(p.parent).push(p);
      } else roots.push(p);
    }
    const out = [];
    const walk = (list) => {
      for (const p of [...list].sort(cmp)) {
        out.push(p);
        walk(kids.get(p.span) || []);
      }
    };
    walk(roots);
    return out;
  }

  function rowNode(p) {
    if (p.agg) return aggRowNode(p);
    const cells = new Map();
    const tr = el("tr", { tabindex: "0", "data-span": p.span });
    for (const c of COLS) {
      const td = el("td", { class: c.cls || "" });
      if (c.badge) td.append(badge(p.status), el("span", { class: "chip tries" }), el("span", { class: "reason" }));
      if (c.bar) td.append(el("span"), el("span", { class: "share", "aria-hidden": "true" }, el("span")));
      cells.set(c.id, td);
      tr.append(td);
    }
    const open = () => openDetail(p.span, tr);
    tr.addEventListener("click", open);
    tr.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" || ev.key === " ") {
        ev.preventDefault();
        open();
      }
    });
    return { tr, cells };
  }

  function updateRow(node, p) {
    if (p.agg) {
      updateAggRow(node, p);
      return;
    }
    const showSubs = $("table-subs").checked;
    node.tr.hidden = !showSubs && p.depth > 0;
    node.tr.setAttribute("class", `depth-${Math.min(p.depth, 3)}${S.selected === p.span ? " selected" : ""}`);
    node.tr.dataset.status = p.status;
    node.tr.dataset.phase = p.phase;
    for (const c of COLS) {
      const td = node.cells.get(c.id);
      const v = c.val(p);
      if (c.badge) updateStatusCell(td, p);
      else if (c.bar) {
        setText(td.firstChild, c.fmt(v));
        td.lastChild.firstChild.style.width = num(v) ? `${Math.min(100, v * 100)}%` : "0";
      } else setText(td, c.fmt(v));
    }
    node.cells.get("errors").classList.toggle("has-err", (p.errors || 0) > 0);
    node.cells.get("warnings").classList.toggle("has-warn", (p.warnings || 0) > 0);
    node.cells.get("name").setAttribute("title", p.name || "");
  }

  function updateStatusCell(td, p) {
    const [b, tries, reason] = td.children;
    setBadge(b, p.status);
    const a = attemptOf(p);
    setText(tries, a ? attemptText(a) : "");
    tries.hidden = !a;
    tries.classList.toggle("bad", p.status === "failed");
    setText(reason, p.reason || "");
    reason.hidden = !p.reason;
    td.setAttribute("title", [statusText(p.status), p.reason, a ? attemptText(a) : null].filter(Boolean).join(" · "));
  }

  /** A hot loop's aggregate: its calls summed, under the phase that ran it; no timeline. */
  function aggRowNode(a) {
    const cells = new Map();
    const tr = el("tr", { "data-agg": a.span, class: "agg" });
    for (const c of COLS) {
      const td = el("td", { class: c.cls || "" });
      cells.set(c.id, td);
      tr.append(td);
    }
    const icon = el("span", { class: "icon", "aria-hidden": "true", text: "Σ" });
    cells.get("status").append(el("span", { class: "badge st-aggregate" }, icon, el("span", { class: "text", text: "aggregate" })));
    if (a.parent && a.individual) cells.get("status").append(expandButton(a));
    if (a.parent) {
      tr.setAttribute("tabindex", "0");
      const open = () => openDetail(a.parent, tr);
      tr.addEventListener("click", open);
      tr.addEventListener("keydown", (ev) => {
        if (ev.key === "Enter" || ev.key === " ") {
          ev.preventDefault();
          open();
        }
      });
    }
    return { tr, cells };
  }

  function expandButton(a) {
    const b = el("button", { type: "button", class: "link expand", "aria-expanded": "false" });
    b.addEventListener("click", (ev) => {
      ev.stopPropagation();
      if (S.expanded.has(a.span)) S.expanded.delete(a.span);
      else S.expanded.add(a.span);
      mark("table", "gantt");
    });
    return b;
  }

  function updateAggRow(node, a) {
    const b = node.cells.get("status").querySelector(".expand");
    if (b) {
      const open = S.expanded.has(a.span);
      b.setAttribute("aria-expanded", String(open));
      setText(b, `${open ? "▾ hide" : "▸ show"} ${fmtInt(a.individual)} recorded one by one`);
    }
    node.tr.hidden = !$("table-subs").checked && a.depth > 0;
    node.tr.setAttribute("class", `agg depth-${Math.min(a.depth, 3)}`);
    node.tr.setAttribute("title", aggregateTip(a));
    node.tr.dataset.count = String(a.count);
    const text = {
      phase: a.phase,
      name: aggregateText(a),
      offset_ms: "–",
      duration_ms: fmtMs(a.total_ms),
      cpu_ms: fmtMs(a.cpu_ms),
      items: a.items ? fmtInt(a.items) : "–",
      share: num(a.share_pct) ? `${Math.round(a.share_pct)}%` : "–", // views.aggregates_view
    };
    for (const c of COLS) {
      if (c.id === "status") continue;
      setText(node.cells.get(c.id), text[c.id] ?? "–");
    }
    node.cells.get("name").classList.toggle("has-err", a.failed > 0);
  }

  function renderTable() {
    const body = $("phase-body");
    const order = tableOrder();
    const seen = new Set();
    for (const p of order) {
      let node = S.rowNodes.get(p.span);
      if (!node) {
        node = rowNode(p);
        S.rowNodes.set(p.span, node);
      }
      node.phase = p;
      seen.add(p.span);
      updateRow(node, p);
    }
    for (const [span, node] of S.rowNodes) {
      if (!seen.has(span)) {
        node.tr.remove();
        S.rowNodes.delete(span);
      }
    }
    const spans = order.map((p) => p.span);
    if (spans.join("\n") !== S.rowOrder.join("\n")) {
      body.append(...spans.map((s) => S.rowNodes.get(s).tr));
      S.rowOrder = spans;
    }
  }

  // ---------------------------------------------------------------- detail panel
  function openDetail(span, opener) {
    if (!S.spans.has(span)) return;
    S.selected = span;
    S.opener = opener || S.opener;
    const panel = $("detail");
    panel.hidden = false;
    renderDetail();
    mark("table");
    $("detail-title").focus({ preventScroll: true });
  }

  function closeDetail() {
    const panel = $("detail");
    if (panel.hidden) return;
    panel.hidden = true;
    S.selected = null;
    mark("table");
    const back = S.opener;
    S.opener = null;
    if (back && back.isConnected) back.focus();
  }

  function figs(pairs) {
    return el("dl", { class: "figs" }, pairs.map(([k, v]) => el("div", {}, el("dt", { text: k }), el("dd", { text: v }))));
  }

  function kvList(pairs, empty) {
    if (!pairs.length) return el("p", { class: "muted", text: empty });
    return el("ul", { class: "kv" }, pairs.map(([k, v]) => el("li", {}, el("span", { text: k }), el("span", { text: v }))));
  }

  function renderDetail() {
    const panel = $("detail");
    if (panel.hidden || !S.selected) return;
    const p = S.spans.get(S.selected);
    if (!p) return;
    setText($("detail-title"), `${p.phase} · ${p.name || ""}`);
    const body = $("detail-body");
    const keepScroll = panel.scrollTop;
    const focused = body.contains(document.activeElement) ? document.activeElement.id : "";
    const a = attemptOf(p);
    add(clear(body), [
      el(
        "p",
        {},
        badge(p.status),
        a ? el("span", { class: `chip tries${p.status === "failed" ? " bad" : ""}`, text: attemptText(a) }) : null,
        " ",
        el("span", { class: "muted", text: `span ${p.span} · pid ${p.pid ?? "?"} · ${p.thread || ""}` }),
      ),
      p.reason ? el("p", { class: `reason-line ${statusClass(p.status)}`, text: `${STATUS[p.status] || ""} ${statusText(p.status)}: ${p.reason}` }) : null,
      p.late ? el("p", { class: "reason-line", text: "Late: started after the run ended (not counted in the run's time)." }) : null,
      detailFigures(p),
      detailError(p),
      a ? [el("h3", { text: "Attempts" }), detailAttempts(p, a)] : null,
      S.aggs.has(p.span) ? [el("h3", { text: "Aggregated calls" }), detailAggregates(S.aggs.get(p.span))] : null,
      el("h3", { text: "Sub-phases" }),
      detailChildren(p),
      el("h3", { text: "Metrics" }),
      kvList(Object.entries(p.metrics || {}).map(([k, v]) => [k, typeof v === "number" ? fmtNum(v) : String(v)]), "No metrics."),
      Object.keys(p.counts || {}).length ? [el("h3", { text: "Counters" }), kvList(Object.entries(p.counts).map(([k, v]) => [k, fmtNum(v)]), "")] : null,
      el("h3", { text: "Artifacts" }),
      kvList((p.artifacts || []).map((a) => [String(a.path ?? ""), fmtBytes(a.bytes)]), "No artifacts."),
      el("h3", { text: "Errors and warnings" }),
      detailLogs(p),
      el("h3", { text: "History" }),
      detailHistory(p),
    ]);
    panel.scrollTop = keepScroll;
    if (focused && $(focused)) $(focused).focus({ preventScroll: true });
  }

  function detailFigures(p) {
    const dur = liveDuration(p);
    return figs([
      ["Start", num(p.offset_ms) ? `+${fmtMs(p.offset_ms)} (${fmtClock(p.start).slice(11)})` : "–"],
      // No end line: the least it is known to have lasted (its sub-phases, its last sample).
      ["Duration", `${p.duration_lower_bound ? "≥ " : ""}${fmtMs(dur)}`],
      ["Share of run", num(shareOf(p)) ? `${Math.round(shareOf(p) * 100)}%` : "–"],
      ["CPU avg / peak", `${fmtPct(p.cpu_pct)} / ${fmtPct(p.cpu_peak_pct)}`],
      ["CPU time", fmtMs(p.cpu_ms)],
      ["Children CPU", fmtMs(p.children_cpu_ms)],
      ["RSS start → end", `${fmtBytes(p.rss_start_bytes)} → ${fmtBytes(p.rss_bytes)}`],
      ["Peak RSS", fmtBytes(p.peak_rss_bytes)],
      ["Items", p.total ? `${fmtInt(p.items)} of ${fmtInt(p.total)}` : fmtInt(p.items)],
      ["Items/s", fmtRate(p.items_per_s)],
      ["Warnings / errors", `${p.warnings || 0} / ${p.errors || 0}`],
      ["Artifacts", String((p.artifacts || []).length)],
    ]);
  }

  function detailError(p) {
    if (!p.error) return null;
    const e = p.error;
    return el(
      "div",
      { class: "errbox", role: "note" },
      el("strong", { text: `${STATUS.failed} ${e.type || "Error"}` }),
      ": ",
      el("span", { text: e.msg || "" }),
      e.tb ? el("pre", { class: "tb", text: e.tb }) : null,
    );
  }

  function phaseLink(span, text) {
    const b = el("button", { type: "button", class: "link", text });
    b.addEventListener("click", () => openDetail(span, null));
    return b;
  }

  function detailChildren(p) {
    const all = (p.children || []).map((s) => S.spans.get(s)).filter(Boolean);
    const kids = all.filter((c) => !inCollapsedAggregate(c));
    const folded = all.length - kids.length;
    const note = folded ? el("p", { class: "muted", text: `${fmtInt(folded)} calls recorded one by one are counted in the aggregates above.` }) : null;
    if (!kids.length) return note || el("p", { class: "muted", text: "No sub-phases." });
    return el(
      "div",
      {},
      note,
      el(
      "ul",
      { class: "kv" },
      kids.map((c) =>
        el(
          "li",
          {},
          el("span", {}, phaseLink(c.span, c.phase), ` ${c.name || ""}`),
          el("span", {}, badge(c.status), ` ${fmtMs(liveDuration(c))}`),
        ),
      ),
      ),
    );
  }

  /** Every attempt of a retried phase; the last one is its outcome. */
  function detailAttempts(p, a) {
    return el(
      "ul",
      { class: "kv attempts" },
      a.all.map((x) => {
        const why = x.error ? `${x.error.type || "Error"}: ${x.error.msg || ""}` : x.reason || "";
        const me = x.span === p.span ? " (this record)" : "";
        return el(
          "li",
          { "data-span": x.span },
          el("span", {}, phaseLink(x.span, `attempt ${x.attempt}/${a.of}`), me, why ? el("span", { class: "muted", text: ` ${why}` }) : null),
          el("span", {}, badge(x.status), ` ${fmtMs(liveDuration(x))}`),
        );
      }),
    );
  }

  function detailAggregates(aggs) {
    return el(
      "div",
      { class: "aggs" },
      aggs.map((g) =>
        el(
          "div",
          { class: "agg-box", "data-key": g.phase },
          el("p", { class: g.failed ? "agg-title bad" : "agg-title" }, el("span", { class: "mono", text: g.phase }), " ", aggregateText(g)),
          figs([
            ["Calls", fmtInt(g.count)],
            ["Completed / failed", `${fmtInt(g.completed)} / ${fmtInt(g.failed)}`],
            ["Skipped / cached / cancelled", `${fmtInt(g.skipped)} / ${fmtInt(g.cached)} / ${fmtInt(g.cancelled)}`],
            ["Total time", fmtMs(g.total_ms)],
            ["Mean / min / max", `${fmtMs(g.mean_ms)} / ${fmtMs(g.min_ms)} / ${fmtMs(g.max_ms)}`],
            ["CPU time", fmtMs(g.cpu_ms)],
            ["Items", fmtInt(g.items)],
            ["Recorded as", `${fmtInt(g.aggregated)} aggregated + ${fmtInt(g.individual)} one by one`],
          ]),
        ),
      ),
    );
  }

  function detailLogs(p) {
    const mine = S.logs.filter((l) => l.span === p.span);
    // A failed phase's exception is one of its errors (raised here or in a sub-phase).
    if (p.error) mine.push(exceptionItem({ ...p, ts: p.end }, "phase failed"));
    if (!mine.length) return el("p", { class: "muted", text: "None recorded in this phase." });
    return el("ul", { class: "list" }, mine.slice(-50).map(logItem));
  }

  // ---------------------------------------------------------------- history
  /** Whether the history shown is restricted to runs carrying this run's tags. */
  const sameTagsOn = () => S.sameTags && tagEntries(run().tags).length > 0;

  function historyFor(key) {
    const filtered = sameTagsOn();
    const cacheKey = `${S.runId}\n${key}\n${filtered}`;
    if (S.history.has(cacheKey)) return S.history.get(cacheKey);
    if (S.mode === "static") {
      // The report embeds both: the runs before this one, and those with its tags.
      const d = S.data || {};
      const [hk, tk] = filtered ? ["history_same_tags", "trends_same_tags"] : ["history", "trends"];
      const shown = { history: (d[hk] || {})[key] || null, trends: (d[tk] || {})[key] || null };
      S.history.set(cacheKey, shown);
      return shown;
    }
    S.history.set(cacheKey, "loading");
    const base = `api/v1/phases/${encodeURIComponent(key)}`;
    const tagArgs = filtered ? tagEntries(run().tags).map(([k, v]) => `&tag=${encodeURIComponent(`${k}=${v}`)}`) : [];
    const before = `?before=${encodeURIComponent(S.runId)}${tagArgs.join("")}`;
    Promise.all([getJSON(`${base}/history${before}`), getJSON(`${base}/trends${before}`)])
      .then(([history, trends]) => S.history.set(cacheKey, { history, trends }))
      .catch(() => S.history.set(cacheKey, "error"))
      .finally(() => mark("detail"));
    return "loading";
  }

  /** The "same tags only" switch of the history section. */
  function sameTagsToggle() {
    const tags = tagEntries(run().tags);
    const known = S.mode === "live" || Boolean(S.data && S.data.history_same_tags);
    const why = !tags.length ? "this run has no tags" : !known ? "this report does not list the tags of other runs" : "";
    const box = el("input", { type: "checkbox", id: "same-tags", checked: S.sameTags && !why, disabled: Boolean(why) });
    box.addEventListener("change", () => {
      S.sameTags = box.checked;
      mark("detail");
    });
    const label = tags.map(([k, v]) => `${k}=${v}`).join(", ");
    return el(
      "p",
      { class: "same-tags" },
      el("label", { class: "toggle" }, box, " same tags only", label ? el("span", { class: "muted", text: ` (${label})` }) : null),
      why ? el("span", { class: "muted", text: ` · ${why}` }) : null,
    );
  }

  function detailHistory(p) {
    return el("div", { class: "history" }, sameTagsToggle(), historyBody(p));
  }

  function historyBody(p) {
    const h = historyFor(p.phase);
    if (h === "loading") return el("p", { class: "muted", text: "Loading history…" });
    if (h === "error") return el("p", { class: "muted", text: "History could not be loaded." });
    const rows = ((h.history && h.history.runs) || []).filter((r) => r.run !== S.runId);
    const past = rows.filter((r) => r.status === "completed" && num(r.duration_ms));
    if (!past.length) {
      const text = `No earlier run of this phase${sameTagsOn() ? " with the same tags" : ""} to compare with.`;
      return el("p", { class: "muted", text });
    }
    const stats = (h.history.stats || {}).duration_ms || {};
    const cur = p.depth === 0 || p.status !== "running" ? liveDuration(p) : null;
    return el(
      "div",
      {},
      sparkline(past.map((r) => r.duration_ms), num(cur) ? cur : null, stats.median),
      figs([
        ["Earlier runs", fmtInt(num(stats.count) ? stats.count : past.length)],
        ["This run", fmtMs(cur)],
        ["Median", fmtMs(stats.median)],
        ["p95", fmtMs(stats.p95)],
      ]),
      trendLine(h.trends),
      anomalyLine(p),
    );
  }

  const SPARK_POINTS = 120;

  /** At most SPARK_POINTS points: consecutive runs averaged per bucket (the chart of 1,000
   * earlier runs stays readable and cheap); each point says which runs it stands for. */
  function downsample(values) {
    if (values.length <= SPARK_POINTS) return values.map((v, i) => ({ v, from: i, to: i }));
    const out = [];
    const size = values.length / SPARK_POINTS;
    for (let b = 0; b < SPARK_POINTS; b += 1) {
      const from = Math.floor(b * size);
      const to = Math.max(from, Math.floor((b + 1) * size) - 1);
      let sum = 0;
      for (let i = from; i <= to; i += 1) sum += values[i];
      out.push({ v: sum / (to - from + 1), from, to });
    }
    return out;
  }

  function sparkline(values, current, median) {
    const points = downsample(values);
    const all = current === null ? points.map((p) => p.v) : [...points.map((p) => p.v), current];
    const W = 360;
    const H = 56;
    // Scaled to the values' own range (labelled), so a 10% change is visible.
    const hi = Math.max(...all);
    const lo = Math.min(...all);
    const pad = (hi - lo) * 0.15 || hi * 0.1 || 1;
    const max = hi + pad;
    const min = Math.max(0, lo - pad);
    const X = (i) => 6 + (i / Math.max(1, all.length - 1)) * (W - 90);
    const Y = (v) => H - 6 - ((v - min) / (max - min || 1)) * (H - 12);
    const g = sv("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "Duration in earlier runs, this run last" });
    g.append(sv("text", { x: W - 4, y: Y(hi) + 4, "text-anchor": "end", text: `max ${fmtMs(hi)}` }));
    g.append(sv("text", { x: W - 4, y: Y(lo) + 4, "text-anchor": "end", text: `min ${fmtMs(lo)}` }));
    if (num(median)) g.append(sv("line", { class: "median", x1: 0, x2: W - 84, y1: Y(median), y2: Y(median) }));
    g.append(sv("path", { class: "line", d: all.map((v, i) => `${i ? "L" : "M"}${X(i).toFixed(1)},${Y(v).toFixed(1)}`).join("") }));
    all.forEach((v, i) => {
      const isCur = current !== null && i === all.length - 1;
      const p = points[i];
      const which = isCur ? "this run" : p.from === p.to ? `run ${p.from + 1}` : `runs ${p.from + 1}–${p.to + 1} (mean)`;
      const tip = sv("title", { text: `${which}: ${fmtMs(v)}` });
      g.append(sv("circle", { class: `pt${isCur ? " current" : ""}`, cx: X(i), cy: Y(v), r: isCur ? 4 : 2.5 }, tip));
    });
    return el("div", { class: "spark" }, g);
  }

  function trendLine(trends) {
    const t = trends && trends.duration_ms;
    if (!t) return null;
    // analysis.trend directions: "slower" is the bad way for the metric, "faster" the good.
    const words = {
      slower: "getting slower",
      faster: "getting faster",
      stable: "stable",
      insufficient: "not enough runs for a trend",
    };
    const dir = typeof t.direction === "string" ? t.direction : "insufficient";
    const pct = num(t.pct_per_run) ? ` (${t.pct_per_run > 0 ? "+" : ""}${t.pct_per_run.toFixed(1)}% per run)` : "";
    const cls = dir === "slower" ? "trend worse" : dir === "faster" ? "trend better" : "trend";
    return el("p", {}, "Trend: ", el("span", { class: cls, text: `${words[dir] || dir}${pct}` }));
  }

  function anomalyLine(p) {
    const a = ((S.snap && S.snap.anomalies) || []).find((x) => x.span === p.span);
    if (!a) return null;
    const z = num(a.z) ? a.z.toFixed(1) : "?";
    const text = `▲ Unusual duration: ${fmtMs(a.value)} against a median of ${fmtMs(a.median)} (z ${z})`;
    return el("p", { class: "trend worse", text });
  }

  // ---------------------------------------------------------------- alerts, logs
  /** A word of a shell command, quoted only when it must be (POSIX single quotes). */
  function shellWord(text) {
    const t = String(text);
    return /^[A-Za-z0-9_./:@%+=,-]+$/.test(t) ? t : `'${t.replace(/'/g, "'\\''")}'`;
  }

  /** The command that acknowledges an alert from a shell (the log is the record). */
  function ackCommand(a) {
    const files = (S.snap.quality && S.snap.quality.files) || [];
    const path = files.length ? files[0] : "atroz-runs";
    const words = ["python", "-m", "atroz_monitor", "ack", shellWord(path), shellWord(a.alert)];
    if (!files.length) words.push("--run", shellWord(S.snap.run.id));
    return words.join(" ");
  }

  function ackLine(a) {
    if (a.cleared) {
      return el("span", { class: "meta ack", text: `cleared by ${a.cleared_by || "?"} ${fmtClock(a.cleared_ts)}` });
    }
    if (a.acknowledged && a.ack_by) {
      const note = a.ack_note ? ` — “${a.ack_note}”` : "";
      return el("span", { class: "meta ack", text: `acknowledged by ${a.ack_by} ${fmtClock(a.ack_ts)}${note}` });
    }
    if (a.state !== "raised" || !a.alert) return null;
    const code = el("code", { class: "ack-cmd", text: ackCommand(a) });
    const copy = el("button", { type: "button", class: "copy", text: "Copy", "aria-label": "Copy the acknowledge command" });
    copy.addEventListener("click", () => {
      const text = code.textContent;
      const done = () => setText(copy, "Copied");
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(text).then(done, () => selectText(code));
      } else {
        selectText(code);
      }
    });
    return el("span", { class: "meta ack" }, "acknowledge: ", code, " ", copy);
  }

  function selectText(node) {
    const range = document.createRange();
    range.selectNodeContents(node);
    const sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
  }

  function alertItem(a) {
    const sev = typeof a.severity === "string" ? a.severity : "info";
    const state = a.cleared ? "cleared" : a.state === "acknowledged" || a.acknowledged ? "acknowledged" : statusText(a.state);
    const vs = num(a.value) || num(a.threshold) ? `value ${fmtNum(a.value)} vs threshold ${fmtNum(a.threshold)}` : null;
    const meta = [
      a.rule ? `rule ${a.rule}` : null,
      a.phase ? `phase ${a.phase}` : null,
      vs,
      `${state === "acknowledged" ? "✓ " : ""}${state}`,
      fmtClock(a.raised_ts),
    ];
    return el(
      "li",
      { "data-alert": a.alert || "", "data-state": state },
      el("span", {}, badge(sev, `sev-${["critical", "warning", "info"].includes(sev) ? sev : "info"}`)),
      el("span", { class: "msg", text: a.msg || a.rule || a.alert || "alert" }),
      el("span", { class: "meta", text: meta.filter(Boolean).join(" · ") }),
      ackLine(a),
    );
  }

  function renderAlerts() {
    const alerts = [...(S.snap.alerts || [])].reverse();
    const list = clear($("alerts"));
    setText($("alerts-count"), String((S.snap.alerts_open || {}).open || 0));
    if (!alerts.length) {
      list.append(el("li", { class: "empty", text: "No alerts for this run." }));
      return;
    }
    list.append(...alerts.slice(0, MAX_LIST).map(alertItem));
  }

  function logItem(l) {
    const level = l.level === "error" || l.level === "critical" ? "error" : l.level === "warning" ? "warning" : "info";
    const start = run().start;
    const when = num(l.ts) && num(start) ? `+${fmtMs((l.ts - start) * 1000)}` : "";
    const where = l.span && S.spans.has(l.span) ? phaseLink(l.span, String(l.phase || l.span)) : l.phase ? String(l.phase) : null;
    const meta = [when, l.logger || l.source || null, num(l.pid) ? `pid ${l.pid}` : null].filter(Boolean).join(" · ");
    return el(
      "li",
      { "data-level": level },
      el("span", {}, badge(level, `sev-${level}`)),
      el("span", { class: "msg", text: String(l.msg ?? "") }),
      el("span", { class: "meta" }, where, where ? " · " : null, meta),
      l.tb ? el("pre", { class: "tb", text: l.tb }) : null,
    );
  }

  /** An exception that failed a phase (or the run) as an item of the errors list. */
  function exceptionItem(x, source) {
    const e = x.error || {};
    return { ts: x.ts, level: "error", msg: `${e.type || "Error"}: ${e.msg || ""}`, span: x.span, phase: x.phase, pid: x.pid, source };
  }

  /** Logged warnings and errors, plus each exception that failed phases or the run, once
   * (the snapshot's ``errors.exceptions``: the same count as the report and /metrics). */
  function problems() {
    const out = S.logs.filter((l) => l.level !== "info" && l.level !== "debug");
    const errs = S.snap.errors || {};
    for (const x of errs.exceptions || []) out.push(exceptionItem(x, x.span ? "phase failed" : "run failed"));
    return out.sort((a, b) => (a.ts || 0) - (b.ts || 0));
  }

  function renderLogs() {
    const items = problems();
    const list = clear($("logs"));
    // The run's counts (errors counted once), not the items held: a ring may have dropped some.
    const errs = S.snap.errors || {};
    const warns = (S.snap.logs && S.snap.logs.warnings) || 0;
    setText($("logs-count"), String(num(errs.count) ? errs.count + warns : items.length));
    if (!items.length) {
      list.append(el("li", { class: "empty", text: "No errors or warnings." }));
      return;
    }
    const shown = items.slice(-MAX_LIST);
    list.append(...shown.map(logItem));
    if (items.length > shown.length) {
      const text = `${items.length - shown.length} earlier items not shown (download the run for all).`;
      list.append(el("li", { class: "empty", text }));
    }
  }

  /** Errors and warnings grouped by fingerprint (errgroups.py computes them). */
  function groupItem(g) {
    const level = g.level === "error" ? "error" : "warning";
    const start = run().start;
    const at = (ts) => (num(ts) && num(start) ? `+${fmtMs((ts - start) * 1000)}` : fmtClock(ts));
    const across = g.new
      ? "new in this run"
      : `seen in ${g.seen_runs} of the last ${g.recent_runs} runs`;
    const meta = [
      `${fmtInt(g.count)}×`,
      g.frame ? `at ${g.frame}` : null,
      (g.phases || []).length ? `phases ${g.phases.join(", ")}` : null,
      g.count > 1 ? `first ${at(g.first_ts)}, last ${at(g.last_ts)}` : at(g.first_ts),
      g.recent_runs ? across : null,
    ];
    const ex = g.example && g.example.msg !== g.template ? `e.g. ${g.example.msg}` : null;
    return el(
      "li",
      { "data-fingerprint": g.fingerprint || "", "data-new": g.new ? "1" : "0" },
      el("span", {}, badge(level, `sev-${level}`)),
      el("span", { class: "msg", text: g.type ? `${g.type}: ${g.template || ""}` : g.template || "" }),
      el("span", { class: "meta", text: meta.filter(Boolean).join(" · ") }),
      ex ? el("span", { class: "meta example", text: ex }) : null,
    );
  }

  function renderGroups() {
    const eg = S.snap.error_groups || { groups: [], gone: [] };
    const groups = eg.groups || [];
    const list = clear($("groups"));
    setText($("groups-count"), String(groups.length));
    if (!groups.length) list.append(el("li", { class: "empty", text: "No errors or warnings." }));
    list.append(...groups.slice(0, MAX_LIST).map(groupItem));
    if ((eg.gone || []).length) {
      const names = eg.gone.slice(0, 5).map((g) => g.template).join("; ");
      const text = `Gone since the previous run (${eg.gone.length}): ${names}`;
      list.append(el("li", { class: "empty gone", text }));
    }
  }

  function countersText(c) {
    const entries = Object.entries(c || {});
    return entries.length ? entries.map(([k, v]) => `${k} ${fmtNum(v)}`).join(" · ") : "–";
  }

  // ---------------------------------------------------------------- run info
  function qualityText(q) {
    const n = (v) => v || 0;
    return `${n(q.torn)} torn, ${n(q.corrupt)} corrupt lines, ${n(q.seq_gaps)} sequence gaps, ${n(q.samples_dropped)} samples dropped`;
  }

  function monitorText(m) {
    const n = (v) => v || 0;
    return `${n(m.write_errors)} write errors, ${n(m.events_lost)} events lost, ${n(m.internal_errors)} internal errors`;
  }

  function resumedText(list) {
    const gaps = Array.isArray(list) ? list.filter((x) => x && typeof x === "object") : [];
    if (!gaps.length) return "no";
    return gaps
      .map((g) => `after a ${num(g.gap_s) ? fmtMs(g.gap_s * 1000) : "?"} gap at ${fmtClock(g.ts).slice(11)} (pid ${g.prev_pid ?? "?"} → ${g.pid ?? "?"})`)
      .join("; ");
  }

  /** The container's limits (``run.limits``, from cgroups), when the run recorded them. */
  function limitRows(lim) {
    if (!lim || typeof lim !== "object") return [];
    const hasMem = num(lim.memory_max_bytes);
    const hasCpu = num(lim.cpu_quota);
    const src = lim.source === "cgroup" && num(lim.version) ? `cgroup v${lim.version}` : typeof lim.source === "string" ? lim.source : "";
    const mem = hasMem ? fmtBytes(lim.memory_max_bytes) : "no limit";
    const cpu = hasCpu ? `${fmtNum(lim.cpu_quota)} CPU${lim.cpu_quota === 1 ? "" : "s"}` : "no quota";
    const text = hasMem || hasCpu ? `memory ${mem} · CPU quota ${cpu}${src ? ` (${src})` : ""}` : "none (host figures used)";
    const rows = [["Container limits", text]];
    if (typeof lim.note === "string" && lim.note) rows.push(["Limits note", lim.note]);
    return rows;
  }

  function renderInfo() {
    const r = run();
    const q = S.snap.quality || {};
    const m = S.snap.monitor || {};
    const res = S.snap.resources || {};
    const qualityBad = (q.torn || 0) + (q.corrupt || 0) + (q.seq_gaps || 0) + (q.samples_dropped || 0) + (q.logs_dropped || 0);
    const monBad = (m.write_errors || 0) + (m.events_lost || 0) + (m.internal_errors || 0);
    const meta = Object.entries(r.meta || {}).map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`);
    const rows = [
      ["Run id", r.id],
      ["Status", statusText(r.status)],
      ["Host", r.host || "–"],
      ["PID", r.pid ?? "–"],
      ["Started", fmtClock(r.start)],
      ["Ended", r.end ? fmtClock(r.end) : "–"],
      ["Command", Array.isArray(r.argv) ? r.argv.join(" ") : "–"],
      ["Working directory", r.cwd || "–"],
      ["Python", r.python || "–"],
      ["CPUs / sample interval", `${r.ncpu ?? "–"} / ${num(r.sample_interval) ? `${r.sample_interval} s` : "–"}`],
      [
        "Samples",
        `${fmtInt(res.total ?? S.samples.length)} (${fmtInt(res.dropped || 0)} dropped) · ` +
          `peak RSS ${fmtBytes(res.peak_rss_bytes)}, tree ${fmtBytes(res.peak_tree_rss_bytes)}`,
      ],
      ["Processes", String((S.snap.processes || []).length)],
      ["Errors / warnings", `${fmtInt((S.snap.errors || {}).count || 0)} / ${fmtInt((S.snap.logs || {}).warnings || 0)}`],
      ["Tags", tagEntries(r.tags).length ? el("span", { class: "tags" }, tagChips(r.tags)) : "–"],
      ["Metadata", meta.length ? meta.join(", ") : "–"],
      ["Resumed", resumedText(r.resumed)],
      ["Counters", countersText(S.snap.counters)],
      ...limitRows(r.limits),
      ["Data quality", qualityBad ? qualityText(q) : "ok", qualityBad],
      ["Monitor", monBad ? monitorText(m) : "ok", monBad],
    ];
    if (r.error) rows.push(["Run error", `${r.error.type || "Error"}: ${r.error.msg || ""}`, true]);
    const dl = clear($("info"));
    for (const [k, v, bad] of rows) {
      const dd = v instanceof Node ? el("dd", {}, v) : el("dd", { class: bad ? "bad" : null, text: v ?? "–" });
      dl.append(el("div", { "data-row": k }, el("dt", { text: k }), dd));
    }
    const gen = S.mode === "static" && num(S.data.generated) ? `Static report generated ${fmtClock(S.data.generated)} · ` : "";
    setText($("foot"), `${gen}atroz monitor · schema ${S.snap.schema ?? "?"}`);
  }

  // ---------------------------------------------------------------- live mode
  async function getJSON(url) {
    const resp = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    if (!resp.ok) throw new Error(`${url}: HTTP ${resp.status}`);
    return resp.json();
  }

  function parse(text) {
    try {
      return JSON.parse(text);
    } catch (err) {
      return null;
    }
  }

  async function startLive() {
    setConn("connecting");
    let list;
    try {
      const page = await getJSON("api/v1/runs");
      list = page.runs;
      S.runsTotal = num(page.total) ? page.total : null;
      S.runCounts = page.counts && typeof page.counts === "object" ? page.counts : null;
    } catch (err) {
      setConn("offline", String(err.message || err));
      notice("The monitor server cannot be reached; retrying.");
      retryLater(startLive);
      return;
    }
    S.runs = sortRuns(list);
    const wanted = new URLSearchParams(location.search).get("run");
    S.followLatest = !wanted || wanted === "latest";
    if (!S.runs.length) notice("No run recorded yet: waiting for one to start.");
    connect(S.followLatest ? "latest" : wanted);
  }

  function retryLater(fn) {
    clearTimeout(S.retryTimer);
    S.retryTimer = setTimeout(fn, S.retryMs);
    S.retryMs = Math.min(S.retryMs * 2, 30000);
  }

  /** Opens the stream of run ``id`` ("latest" follows whichever run started last). */
  function connect(id) {
    if (S.es) S.es.close();
    clearTimeout(S.retryTimer);
    S.streamArg = id;
    if (id !== "latest") S.runId = id;
    const es = new EventSource(`api/v1/stream?run=${encodeURIComponent(id)}`);
    S.es = es;
    es.addEventListener("open", () => {
      if (es !== S.es) return;
      S.retryMs = 1000;
      setConn("live");
    });
    es.addEventListener("error", () => {
      if (es !== S.es) return;
      if (es.readyState === EventSource.CLOSED) {
        // The server refused the stream (404, 503...): EventSource gives up, so do it by hand.
        setConn("offline", "stream closed by the server");
        retryLater(() => connect(S.streamArg));
      } else {
        setConn("reconnecting");
      }
    });
    es.addEventListener("snapshot", (ev) => {
      if (es !== S.es) return;
      const snap = parse(ev.data);
      if (!snap) return;
      notice("");
      setConn("live");
      setSnapshot(snap);
    });
    es.addEventListener("update", (ev) => es === S.es && applyUpdate(parse(ev.data)));
    es.addEventListener("runs", (ev) => {
      const body = es === S.es ? parse(ev.data) : null;
      if (body) setRuns(body.runs, body.total, body.counts);
    });
  }

  function pickRun(id) {
    if (S.mode !== "live" || !id) return;
    if (id === PICKER_MORE) {
      S.runsSig = null; // put the selection back on the run shown
      mark("header");
      findRuns(true);
      return;
    }
    S.followLatest = id === "latest";
    const url = new URL(location.href);
    if (S.followLatest) url.searchParams.delete("run");
    else url.searchParams.set("run", id);
    history.replaceState(null, "", url);
    closeDetail();
    connect(id);
    mark("header");
  }

  // ---------------------------------------------------------------- static mode
  function startStatic(node) {
    S.mode = "static";
    const data = parse(node.textContent) || {};
    S.data = data;
    S.runs = sortRuns(data.runs);
    S.runCounts = data.run_counts && typeof data.run_counts === "object" ? data.run_counts : {}; // report.run_counts
    S.runsTotal = S.runs.length;
    S.followLatest = false;
    setConn("static", num(data.generated) ? `report generated ${fmtClock(data.generated)}` : "static report");
    if (!data.snapshot) {
      notice("This report holds no run.");
      return;
    }
    setSnapshot(data.snapshot);
  }

  // ---------------------------------------------------------------- wiring
  function wire() {
    buildHead();
    $("run-picker").addEventListener("change", (ev) => pickRun(ev.target.value));
    const filter = $("run-filter");
    if (filter) {
      let timer = null;
      filter.addEventListener("input", () => {
        clearTimeout(timer);
        timer = setTimeout(() => {
          S.runFilter = filter.value;
          findRuns(false);
        }, 250);
      });
    }
    $("detail-close").addEventListener("click", closeDetail);
    document.addEventListener("keydown", (ev) => {
      if (ev.key === "Escape") closeDetail();
    });
    $("gantt-subs").addEventListener("change", () => mark("gantt"));
    $("table-subs").addEventListener("change", () => mark("table"));
    let width = window.innerWidth;
    window.addEventListener("resize", () => {
      if (window.innerWidth === width) return;
      width = window.innerWidth;
      mark("flow", "gantt", "charts");
    });
  }

  // The helpers insights.js draws with (loaded after this file, sharing its look).
  window.atrozUI = Object.freeze({ el, sv, clear, fmtMs, fmtBytes, badge, current: shownRun });

  function main() {
    wire();
    const embedded = document.getElementById("atroz-data");
    if (embedded) startStatic(embedded);
    else startLive();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", main);
  else main();
})();
