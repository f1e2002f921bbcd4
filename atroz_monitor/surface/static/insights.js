"use strict";
/*
 * atroz monitor dashboard, insights panels: suggestions, trends across runs, the phase x run
 * heatmap and the side-by-side comparison of two runs.
 *
 * Every figure comes from Python (charts.history_view, suggestions.suggest,
 * compare.compare_runs): live from api/v1/insights and api/v1/compare, static from the
 * report's embedded "insights" and "compare". This file only draws, with the page's own
 * helpers (app.js exposes them as window.atrozUI), text through textContent only.
 * app.js announces the shown run with an "atroz:run" event; nothing here polls: the
 * insights are fetched again when the run or its status changes.
 */
(() => {
  const UI = window.atrozUI;
  if (!UI) return;
  const { el, sv, clear, fmtMs, fmtBytes, badge } = UI;
  const num = (v) => typeof v === "number" && Number.isFinite(v);
  const $ = (id) => document.getElementById(id);

  const METRICS = {
    duration_ms: { label: "duration", fmt: fmtMs },
    cpu_ms: { label: "CPU time", fmt: fmtMs },
    peak_rss_bytes: { label: "peak RSS", fmt: fmtBytes },
  };
  const RULES = {
    parallelise: "Parallelise",
    io_wait: "Waiting on I/O",
    memory_limit: "Near the memory limit",
    dominant_subphase: "One sub-phase dominates",
    cacheable: "Could be cached",
    hot_loop: "Monitoring costs more than the work",
    getting_slower: "Slower run after run",
    growing_memory: "Memory grows run after run",
  };

  const I = {
    mode: "live",
    data: null,
    run: null, // {id, status}
    runs: [],
    sig: "",
    insights: null,
    compare: null,
    compareId: new URLSearchParams(location.search).get("compare"),
    metric: "duration_ms",
    seq: 0,
  };

  const pct = (v) => (num(v) ? `${v > 0 ? "+" : ""}${Math.round(v)}%` : "–");

  async function getJSON(url) {
    const resp = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    if (!resp.ok) throw new Error(`${url}: HTTP ${resp.status}`);
    return resp.json();
  }

  // ---------------------------------------------------------------- data in
  function onRun(ev) {
    const d = ev.detail || {};
    if (!d.id) return;
    I.mode = d.mode || "live";
    I.runs = Array.isArray(d.runs) ? d.runs : [];
    const sig = `${d.id}\n${d.status}`;
    renderPicker();
    if (sig === I.sig) return;
    const changedRun = !I.run || I.run.id !== d.id;
    I.sig = sig;
    I.run = { id: d.id, status: d.status };
    if (I.mode === "static") {
      const data = d.data || {};
      I.insights = data.insights || null;
      I.compare = data.compare || null;
      if (I.compare && I.compare.b) I.compareId = I.compare.b.id;
      renderAll();
      return;
    }
    if (changedRun && I.compareId === d.id) I.compareId = null;
    loadInsights();
    loadCompare();
  }

  function loadInsights() {
    const seq = ++I.seq;
    getJSON(`api/v1/insights?run=${encodeURIComponent(I.run.id)}`)
      .then((body) => {
        if (seq !== I.seq) return;
        I.insights = body;
        renderInsights();
      })
      .catch(() => {
        if (seq !== I.seq) return;
        I.insights = null;
        renderInsights("The history could not be loaded.");
      });
  }

  function loadCompare() {
    if (!I.compareId || !I.run) {
      I.compare = null;
      renderCompare();
      return;
    }
    const want = `${I.run.id}\n${I.compareId}`;
    getJSON(`api/v1/compare?a=${encodeURIComponent(I.run.id)}&b=${encodeURIComponent(I.compareId)}`)
      .then((body) => {
        if (`${I.run.id}\n${I.compareId}` !== want) return;
        I.compare = body;
        renderCompare();
      })
      .catch(() => {
        I.compare = null;
        renderCompare(`Run ${I.compareId} could not be compared.`);
      });
  }

  function setCompare(id) {
    I.compareId = id || null;
    const url = new URL(location.href);
    if (I.compareId) url.searchParams.set("compare", I.compareId);
    else url.searchParams.delete("compare");
    history.replaceState(null, "", url);
    renderPicker();
    if (I.mode === "live") loadCompare();
  }

  // ---------------------------------------------------------------- render
  function renderAll() {
    renderPicker();
    renderInsights();
    renderCompare();
  }

  function renderPicker() {
    const picker = $("compare-picker");
    if (!picker || !I.run) return;
    const runs = I.mode === "static" ? (I.compare ? [I.compare.b] : []) : I.runs.filter((r) => r.id !== I.run.id);
    const sig = JSON.stringify([runs.map((r) => r.id), I.compareId, I.run.id]);
    if (picker.dataset.sig === sig) return;
    picker.dataset.sig = sig;
    clear(picker);
    picker.append(el("option", { value: "", text: "Compare with… (no comparison)" }));
    for (const r of runs) {
      const label = `${r.name && r.name !== r.id ? `${r.name} · ` : ""}${r.id} (${r.status || "?"})`;
      picker.append(el("option", { value: r.id, text: label, selected: r.id === I.compareId }));
    }
    picker.disabled = I.mode === "static";
  }

  function renderInsights(problem) {
    renderSuggestions(problem);
    renderTrends(problem);
    renderHeatmap(problem);
  }

  // ---- suggestions
  function evidenceText(k, v, metric) {
    const unit = ["first", "last", "current"].includes(k) ? metric || "" : k;
    if (!num(v)) return String(v);
    if (unit.endsWith("_ms")) return fmtMs(v);
    if (unit.endsWith("bytes") || unit.endsWith("bytes_per_s")) return fmtBytes(v) + (unit.endsWith("_per_s") ? "/s" : "");
    if (k.endsWith("_pct") || k === "pct_per_run") return `${v.toFixed(1)}%`;
    return Number.isInteger(v) ? v.toLocaleString("en-US") : String(Number(v.toPrecision(4)));
  }

  function renderSuggestions(problem) {
    const list = $("suggestions");
    const panel = $("suggest-panel");
    if (!list) return;
    const items = (I.insights && I.insights.suggestions) || [];
    $("suggest-count").textContent = String(items.length);
    clear(list);
    if (problem) {
      list.append(el("li", { class: "empty", text: problem }));
      return;
    }
    if (!items.length) {
      const running = I.run && I.run.status === "running";
      list.append(el("li", { class: "empty", text: running ? "Suggestions come when the run is over." : "Nothing to suggest for this run." }));
      return;
    }
    for (const s of items) {
      const ev = s.evidence || {};
      const facts = Object.entries(ev)
        .filter(([k]) => k !== "metric")
        .map(([k, v]) => el("span", { class: "chip ev" }, el("span", { class: "muted", text: `${k.replace(/_/g, " ")}: ` }), el("span", { text: evidenceText(k, v, ev.metric) })));
      list.append(
        el(
          "li",
          { class: "suggestion", "data-rule": s.rule },
          el("span", { class: "rule", text: RULES[s.rule] || s.rule }),
          el("span", { class: "msg", text: s.finding }),
          el("span", { class: "advice", text: s.advice }),
          el("span", { class: "evidence" }, facts),
        ),
      );
    }
    panel.hidden = false;
  }

  // ---- trends
  function spark(values, fmt, label) {
    const W = 160;
    const H = 34;
    const pts = values.map((v, i) => [i, v]).filter(([, v]) => num(v));
    const g = sv("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label, preserveAspectRatio: "none" });
    if (!pts.length) return g;
    const vals = pts.map(([, v]) => v);
    // At least +-10% of the middle value in view: noise of a few percent draws nearly flat.
    const mid = (Math.max(...vals) + Math.min(...vals)) / 2;
    const hi = Math.max(...vals, mid * 1.1);
    const lo = Math.min(...vals, mid * 0.9);
    const pad = (hi - lo) * 0.1 || hi * 0.1 || 1;
    const X = (i) => 3 + (i / Math.max(1, values.length - 1)) * (W - 6);
    const Y = (v) => H - 3 - ((v - (lo - pad)) / (hi - lo + 2 * pad)) * (H - 6);
    g.append(sv("path", { class: "line", d: pts.map(([i, v], n) => `${n ? "L" : "M"}${X(i).toFixed(1)},${Y(v).toFixed(1)}`).join("") }));
    const [li, lv] = pts[pts.length - 1];
    g.append(sv("circle", { class: "pt current", cx: X(li), cy: Y(lv), r: 2.5 }, sv("title", { text: `latest: ${fmt(lv)}` })));
    return g;
  }

  function trendText(t) {
    if (!t || t.direction === "insufficient") return el("span", { class: "muted", text: "too few runs" });
    const cls = t.direction === "slower" ? "trend worse" : t.direction === "faster" ? "trend better" : "trend";
    const word = t.direction === "slower" ? "rising" : t.direction === "faster" ? "falling" : "stable";
    return el("span", { class: cls, text: `${word}${num(t.pct_per_run) ? ` ${pct(t.pct_per_run)}/run` : ""}` });
  }

  function lastValue(values) {
    for (let i = values.length - 1; i >= 0; i -= 1) if (num(values[i])) return values[i];
    return null;
  }

  function renderTrends(problem) {
    const box = $("trends");
    if (!box) return;
    clear(box);
    const h = I.insights && I.insights.history;
    const runs = (h && h.runs) || [];
    if (problem || !h || runs.length < 2) {
      box.append(el("p", { class: "muted", text: problem || "Trends need at least two runs of this pipeline in the logs served." }));
      return;
    }
    $("trends-sub").textContent = `last ${runs.length} runs, this one last`;
    for (const p of h.phases) {
      const row = el("div", { class: "trend-row", "data-key": p.key });
      row.append(el("div", { class: "trend-name" }, el("span", { class: "key", text: p.key }), el("span", { class: "muted", text: p.name !== p.key ? ` ${p.name}` : "" })));
      for (const m of ["duration_ms", "peak_rss_bytes"]) {
        const s = p.metrics[m];
        const fmt = METRICS[m].fmt;
        row.append(
          el(
            "div",
            { class: `trend-cell m-${m}` },
            el("div", { class: "spark" }, spark(s.values, fmt, `${p.key} ${METRICS[m].label} per run`)),
            el("div", { class: "trend-fig" }, el("span", { text: `${METRICS[m].label} ${fmt(lastValue(s.values))} ` }), trendText(s.trend)),
          ),
        );
      }
      box.append(row);
    }
  }

  // ---- heatmap
  function heatFill(level) {
    if (!num(level)) return null;
    return level >= 0 ? "var(--heat-hot)" : "var(--heat-cold)";
  }

  function renderHeatmap(problem) {
    const box = $("heatmap");
    if (!box) return;
    clear(box);
    const h = I.insights && I.insights.history;
    const runs = (h && h.runs) || [];
    if (problem || !h || runs.length < 2 || !h.phases.length) {
      box.append(el("p", { class: "muted", text: problem || "The heatmap needs at least two runs of this pipeline." }));
      return;
    }
    const m = I.metric;
    const LW = 58;
    // Cells as wide as the panel allows (16 to 36 px): at 390 px twenty runs still fit.
    const CW = Math.max(14, Math.min(36, Math.floor(((box.clientWidth || 360) - LW - 8) / runs.length)));
    const RH = CW > 20 ? 22 : 18;
    const top = 4;
    const W = LW + runs.length * CW + 4;
    const H = top + h.phases.length * RH + 16;
    const g = sv("svg", { class: "heat", width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `${METRICS[m].label} per phase and run, against each phase's median` });
    h.phases.forEach((p, r) => {
      const y = top + r * RH;
      g.append(sv("text", { class: "heat-label", x: LW - 6, y: y + RH / 2 + 4, "text-anchor": "end", text: p.key.length > 8 ? `${p.key.slice(0, 7)}…` : p.key }, sv("title", { text: `${p.key} ${p.name}` })));
      const s = p.metrics[m];
      runs.forEach((run, c) => {
        const x = LW + c * CW;
        const v = s.values[c];
        const lvl = s.level[c];
        const status = p.status[c];
        const fill = heatFill(lvl);
        const rect = sv("rect", {
          class: `cell${fill ? "" : " none"}${status === "failed" ? " failed" : ""}`,
          x: x + 1,
          y: y + 1,
          width: CW - 2,
          height: RH - 2,
          rx: 2,
          fill: fill || undefined,
          "fill-opacity": fill ? (0.12 + 0.88 * Math.abs(lvl)).toFixed(2) : undefined,
          "data-run": run.run,
          "data-key": p.key,
          "data-level": num(lvl) ? String(lvl) : "",
        });
        const r = (s.ratio || [])[c]; // charts.history_view
        const ratio = num(r) ? ` (${r.toFixed(2)}× the median ${METRICS[m].fmt(s.median)})` : "";
        rect.append(sv("title", { text: `${p.key} · run ${run.run}: ${num(v) ? METRICS[m].fmt(v) : status || "absent"}${ratio}` }));
        if (I.mode === "live" && run.run !== I.run.id) rect.addEventListener("click", () => setCompare(run.run));
        g.append(rect);
      });
    });
    // This run (the last column) outlined.
    const cx = LW + (runs.length - 1) * CW;
    g.append(sv("rect", { class: "heat-current", x: cx + 0.5, y: top + 0.5, width: CW - 1, height: h.phases.length * RH - 1, fill: "none" }));
    g.append(sv("text", { class: "heat-label", x: cx + CW / 2, y: H - 3, "text-anchor": "middle", text: "this" }));
    g.append(sv("text", { class: "heat-label", x: LW + 1, y: H - 3, text: "older" }));
    box.append(el("div", { class: "heat-wrap" }, g));
  }

  // ---- comparison
  /** This run, that run, the change; ``up`` is the bad direction (-1 for items/s). */
  function compareCell(x, y, f, fmt, d, up = 1) {
    const bad = num(d) && d * up > 0;
    const good = num(d) && d * up < 0;
    return [
      el("td", { text: fmt(x ? x[f] : null) }),
      el("td", { class: "muted", text: fmt(y ? y[f] : null) }),
      el("td", { class: bad ? "worse" : good ? "better" : "", text: pct(d) }),
    ];
  }

  function renderCompare(problem) {
    const panel = $("compare-panel");
    if (!panel) return;
    const c = I.compare;
    panel.hidden = !c && !problem;
    const body = clear($("compare"));
    if (problem) {
      body.append(el("p", { class: "muted", text: problem }));
      return;
    }
    if (!c) return;
    $("compare-sub").textContent = `this run against ${c.b.id}`;
    const t = c.totals;
    body.append(
      el(
        "p",
        { class: "compare-head" },
        el("span", { text: `This run ${c.a.status}, ${fmtMs(c.a.duration_ms)}; ` }),
        el("span", { text: `${c.b.name && c.b.name !== c.b.id ? `${c.b.name} ` : ""}${c.b.id} ${c.b.status}, ${fmtMs(c.b.duration_ms)} ` }),
        el("strong", { text: `(${pct(t.duration_pct)})` }),
      ),
    );
    const head = el(
      "tr",
      {},
      ["phase", "status", "duration", "that", "Δ", "CPU", "that", "Δ", "peak RSS", "that", "Δ", "items/s", "that", "Δ"].map((h) => el("th", { scope: "col", text: h })),
    );
    const rows = c.phases.map((r) => {
      const x = r.a;
      const y = r.b;
      const st = el("td", { class: "c-status" }, badge(x ? x.status : "pending"));
      if (r.status_changed || r.only) st.append(el("span", { class: "muted", text: ` was ${y ? y.status : "absent"}` }));
      const rate = (v) => (num(v) ? v.toFixed(1) : "–");
      return el(
        "tr",
        { class: `depth-${Math.min(r.depth, 3)}${r.status_changed ? " changed" : ""}`, "data-key": r.key },
        el("td", { class: "c-key", text: r.key }),
        st,
        compareCell(x, y, "duration_ms", fmtMs, r.delta_pct.duration_ms),
        compareCell(x, y, "cpu_ms", fmtMs, r.delta_pct.cpu_ms),
        compareCell(x, y, "peak_rss_bytes", fmtBytes, r.delta_pct.peak_rss_bytes),
        compareCell(x, y, "items_per_s", rate, r.delta_pct.items_per_s, -1),
      );
    });
    body.append(el("div", { class: "table-wrap" }, el("table", { class: "phases compare-table" }, el("thead", {}, head), el("tbody", {}, rows))));
    body.append(compareGantt(c));
  }

  function compareGantt(c) {
    const keys = [];
    const bars = { a: new Map(), b: new Map() };
    for (const side of ["a", "b"]) {
      for (const bar of c.gantt[side]) {
        if (bar.depth !== 0) continue;
        if (!keys.includes(bar.phase)) keys.push(bar.phase);
        if (!bars[side].has(bar.phase)) bars[side].set(bar.phase, []);
        bars[side].get(bar.phase).push(bar);
      }
    }
    // Drawn at the panel's width (not scaled down: labels stay readable at 390 px).
    const W = Math.max(300, Math.min(1400, ($("compare") || {}).clientWidth || 720));
    const LW = 64;
    const RH = 22;
    const H = keys.length * RH + 22;
    const T = c.axis_ms || 1;
    const X = (ms) => LW + (ms / T) * (W - LW - 8);
    const g = sv("svg", { class: "cmp-gantt", width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "Both runs' timelines on one time axis: this run above, the other below" });
    const step = Math.max(1, Math.ceil(T / 1000 / 6));
    for (let s = 0; s * 1000 <= T; s += step) {
      g.append(sv("line", { class: "grid", x1: X(s * 1000), x2: X(s * 1000), y1: 0, y2: H - 16 }));
      g.append(sv("text", { class: "axis", x: X(s * 1000), y: H - 4, "text-anchor": "middle", text: `${s}s` }));
    }
    keys.forEach((k, i) => {
      const y = i * RH;
      g.append(sv("text", { class: "heat-label", x: LW - 6, y: y + RH / 2 + 4, "text-anchor": "end", text: k.length > 8 ? `${k.slice(0, 7)}…` : k }));
      for (const [side, dy, cls] of [["a", 2, "bar-a"], ["b", RH / 2, "bar-b"]]) {
        for (const bar of bars[side].get(k) || []) {
          const x = X(bar.offset_ms);
          const w = Math.max(1.5, X(bar.offset_ms + bar.duration_ms) - x);
          g.append(
            sv(
              "rect",
              { class: `${cls} st-${bar.status}`, x, y: y + dy, width: w, height: RH / 2 - 3, rx: 2, "data-side": side, "data-key": k },
              sv("title", { text: `${side === "a" ? "this run" : "that run"} · ${k}: starts ${fmtMs(bar.offset_ms)}, lasts ${fmtMs(bar.duration_ms)} (${bar.status})` }),
            ),
          );
        }
      }
    });
    return el(
      "div",
      { class: "cmp-gantt-box" },
      el("p", { class: "legend" }, el("span", { class: "key" }, el("span", { class: "sw bar-a" }), "this run"), el("span", { class: "key" }, el("span", { class: "sw bar-b" }), "that run"), el("span", { class: "muted", text: `one axis: ${fmtMs(T)}` })),
      g,
    );
  }

  // ---------------------------------------------------------------- wiring
  function wire() {
    const picker = $("compare-picker");
    if (picker) picker.addEventListener("change", (ev) => setCompare(ev.target.value));
    const metric = $("heat-metric");
    if (metric) {
      metric.addEventListener("change", (ev) => {
        I.metric = METRICS[ev.target.value] ? ev.target.value : "duration_ms";
        renderHeatmap();
      });
    }
    document.addEventListener("atroz:run", onRun);
    let width = window.innerWidth;
    window.addEventListener("resize", () => {
      if (window.innerWidth === width) return;
      width = window.innerWidth;
      if (I.compare) renderCompare();
      if (I.insights) renderHeatmap();
    });
    // app.js may have rendered already (a static report renders at once).
    const cur = UI.current();
    if (cur) onRun({ detail: cur });
  }

  // Inlined in a static report, this runs in <head> before the panels exist.
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", wire);
  else wire();
})();
