"""``report``: evaluate finished, running or crashed runs from their logs.

``build()`` turns reducer state into one report model (a plain dict: the ``--format json``
output, documented in docs/REPORT.md); ``render_text`` and ``render_markdown`` are pure
views of it; ``--format html`` is the dashboard page in static mode (``page.py``).
``main()`` is the command: reading streams the logs through the reducer, so memory stays
bounded however large the input.
"""

from __future__ import annotations

import gc
import json
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ..events import cpu_avg_pct, items_per_s, json_safe
from ..read.state import State
from ..view import analysis, history, views
from ..view.alerts import merge_alerts, with_alerts

REPORT_SCHEMA = 1
STATUS_MARK = {
    "completed": "ok",
    "failed": "FAIL",
    "cancelled": "cancel",
    "interrupted": "intr",
    "running": "run",
    "pending": "-",
    "skipped": "skip",
    "cached": "cache",
}
METRICS = {  # --metric name -> (phase field, history metric, higher is worse, default floor)
    "duration": ("duration_ms", "duration_ms", True, 5.0),
    "cpu": ("cpu_ms", "cpu_ms", True, 5.0),
    "rss": ("peak_rss_bytes", "peak_rss_bytes", True, 1024.0 * 1024),
    "items_per_s": ("items_per_s", "items_per_s", False, 0.0),
}


class ReportError(Exception):
    """Input that yields no report: one line on stderr, exit 2."""


# -- formatting ---------------------------------------------------------------------------


def fmt_ms(ms: float | None, signed: bool = False) -> str:
    """A duration in the unit that fits its size, the sign kept ("-516.4ms", not
    "-516394us"); ``signed`` writes "+" on positive values too (a change). The unit is
    chosen on the rounded value, so 999.96 ms reads "1.00s", never "1000.0ms"."""
    if ms is None:
        return "-"
    sign = "-" if ms < 0 else ("+" if signed and ms > 0 else "")
    ms = abs(ms)
    if ms < 0.9995:
        return f"{sign}{ms * 1000:.0f}us"
    if ms < 999.95:
        return f"{sign}{ms:.1f}ms"
    s = ms / 1000
    if s < 59.995:
        return f"{sign}{s:.2f}s"
    tenths = round(s * 10)
    if tenths < 36000:
        m, t = divmod(tenths, 600)
        return f"{sign}{m}m{t / 10:04.1f}s"
    h, m = divmod(round(s / 60), 60)
    return f"{sign}{h}h{m:02d}m"


def fmt_bytes(n: float | None, signed: bool = False) -> str:
    if n is None:
        return "-"
    sign = "-" if n < 0 else ("+" if signed and n > 0 else "")
    n = abs(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{sign}{n:.0f}{unit}" if unit == "B" else f"{sign}{n:.1f}{unit}"
        n /= 1024
    return f"{sign}{n:.1f}TiB"


def _num(v: float | None, fmt: str = "{:.0f}") -> str:
    return "-" if v is None else fmt.format(v)


def clean(text: Any, width: int | None = None) -> str:
    """User text for a terminal: control characters (escape sequences included) shown as
    ``?``, cut to ``width``."""
    s = "" if text is None else str(text)
    s = "".join(ch if ch.isprintable() else "?" for ch in s)
    if width is not None and len(s) > width:
        s = s[: max(width - 1, 0)] + "~"
    return s


def _ts(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


# -- the model ----------------------------------------------------------------------------


def _ordered(snap: dict[str, Any], depth: int) -> list[dict[str, Any]]:
    """Phases in plan order, then start order; sub-phases beneath their parent."""
    plan_ids = [p.get("id") for p in snap["run"].get("plan") or [] if isinstance(p, dict)]
    order = {k: i for i, k in enumerate(plan_ids)}
    rows = [p for p in snap["phases"] if p.get("depth", 0) <= depth]
    kids: dict[str, list[dict[str, Any]]] = {}
    spans = {p["span"] for p in rows}
    top = []
    for p in rows:
        if p.get("depth", 0) > 0 and p.get("parent") in spans:
            kids.setdefault(p["parent"], []).append(p)
        else:
            top.append(p)
    top.sort(key=lambda p: (order.get(p["phase"], len(order)), p.get("start") or 0.0))
    out: list[dict[str, Any]] = []

    def walk(p: dict[str, Any]) -> None:
        out.append(p)
        children = kids.get(p["span"], [])
        counts: dict[str, int] = {}
        for c in children:
            counts[c["phase"]] = counts.get(c["phase"], 0) + 1
        seen: dict[str, int] = {}
        rest: dict[str, list[dict[str, Any]]] = {}
        for c in children:
            n = seen[c["phase"]] = seen.get(c["phase"], 0) + 1
            if n <= REPEAT_ROWS or counts[c["phase"]] <= COLLAPSE_OVER:
                walk(c)
            else:
                rest.setdefault(c["phase"], []).append(c)
        folded = p.get("folded") or {}
        for key in list(rest) + [k for k in folded if k not in rest]:
            out.append(_repeat_row(p, key, rest.get(key, []), folded.get(key)))

    for p in top:
        walk(p)
    # Top-level keys recorded as aggregates (hot loops at the top of the run).
    run_level = {"span": "run", "depth": -1, "offset_ms": 0.0}
    for key, agg in (snap.get("folded") or {}).items():
        out.append(_repeat_row(run_level, key, [], agg))
    run_ms = snap["run"].get("duration_ms")
    for row in out:
        if row.get("aggregate"):  # a phase's share is the snapshot's; a summed row's alike
            row["share_pct"] = views.share_pct(row["duration_ms"], run_ms)
    return out


def run_counts(rows: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Runs by status (the page's run cards; the server's ``counts`` in live mode)."""
    out: dict[str, int] = {}
    for r in rows:
        st = str(r.get("status"))
        out[st] = out.get(st, 0) + 1
    return out


def static_history(st: State, run_id: str, keys: list[str]) -> dict[str, Any]:
    """What ``report --format html`` embeds for the page's history of each key in ``keys``
    (``history``, ``trends``, and with the run's tags ``history_same_tags``,
    ``trends_same_tags``): the runs before ``run_id``, computed here, never in the page."""
    out: dict[str, Any] = {
        "history": {k: history.phase_history(st, k, before=run_id) for k in keys},
        "trends": {k: history.phase_trends(st, k, before=run_id) for k in keys},
    }
    tags = st.runs[run_id].info.get("tags")
    if isinstance(tags, dict) and tags:
        same = {str(k): str(v) for k, v in tags.items()}
        out["history_same_tags"] = {
            k: history.phase_history(st, k, before=run_id, tags=same) for k in keys
        }
        out["trends_same_tags"] = {
            k: history.phase_trends(st, k, before=run_id, tags=same) for k in keys
        }
    return out


# More than COLLAPSE_OVER repeats of one key under one parent (a loop): the first
# REPEAT_ROWS are shown one by one and the rest as one summed row.
COLLAPSE_OVER = 8
REPEAT_ROWS = 3


def _repeat_row(
    parent: dict[str, Any], key: str, recs: list[dict[str, Any]], folded: dict[str, Any] | None
) -> dict[str, Any]:
    """One row standing for many repeats of ``key`` under ``parent`` (a loop): the records
    beyond the first few plus what the reducer folded into aggregates."""
    agg = views.repeat_aggregate(recs, folded)  # counted where the page's rows are
    n, dur, cpu, failed, items = agg.count, agg.total_ms, agg.cpu_ms, agg.failed, agg.items
    starts = [r["offset_ms"] for r in recs if r.get("offset_ms") is not None]
    ends = [
        r["offset_ms"] + (r.get("duration_ms") or 0.0)
        for r in recs
        if r.get("offset_ms") is not None
    ]
    first = min(starts) if starts else parent.get("offset_ms")
    last = max(ends) if ends else None
    return {
        "span": f"{parent['span']}/{key}*",
        "phase": key,
        "name": f"x{n:,} more" + (f" ({failed} failed)" if failed else ""),
        "parent": parent["span"],
        "depth": parent.get("depth", 0) + 1,
        "status": "failed" if failed else "completed",
        "aggregate": True,
        "count": n,
        "offset_ms": first,
        "duration_ms": round(dur, 3),
        "extent_ms": round(last - first, 3) if last is not None and first is not None else None,
        "cpu_ms": round(cpu, 3),
        "cpu_pct": cpu_avg_pct(cpu, dur),
        "items": items,
        "items_per_s": items_per_s(items, dur),
        "warnings": sum(r.get("warnings") or 0 for r in recs),
        "errors": sum(r.get("errors") or 0 for r in recs),
        "artifacts": [],
    }


def _samples_series(samples: list[dict[str, Any]]) -> dict[str, list[Any]]:
    ts, cpu, rss = [], [], []
    for s in samples:
        t = s.get("ts")
        if not isinstance(t, (int, float)):
            continue
        ts.append(t)
        c = s.get("cpu_pct")
        cc = s.get("children_cpu_pct")
        cpu.append(None if c is None else c + (cc or 0.0))
        r = s.get("rss_bytes")
        rc = s.get("children_rss_bytes")
        rss.append(None if r is None else r + (rc or 0))
    return {"ts": ts, "cpu_pct": cpu, "rss_bytes": rss}


def build(
    state: State,
    run_id: str,
    *,
    now: float,
    alive: bool | None = None,
    quality: dict[str, Any] | None = None,
    baseline: history.Runs | None = None,
    metric: str = "duration",
    threshold: float | None = None,
    noise_floor: float | None = None,
    replay_alerts: list[dict[str, Any]] | None = None,
    depth: int = 99,
    tags: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The report of one run (the others in ``state`` are its history). With ``tags``,
    history and baseline are only the runs carrying every one of those tags."""
    if tags:
        # Like with like: a run on another dataset or machine class is no reference. The
        # narrower state also keeps the snapshot's anomalies and ETA to those runs.
        state = history.subset(state, lambda r: r.id == run_id or history.matches(r, tags))
        if baseline is not None:
            baseline = [s for s in history.as_summaries(baseline) if history.matches(s, tags)]
    snap = views.snapshot(state, run_id, now=now, alive=alive, quality=quality)
    if replay_alerts is not None:
        with_alerts(snap, merge_alerts(snap["alerts"], replay_alerts))
    run = snap["run"]
    rows = _ordered(snap, depth)
    top = [p for p in rows if p.get("depth", 0) == 0]
    comparison = None
    if baseline is not None:
        comparison = compare(snap, baseline, metric, threshold, noise_floor)
    runs_table = None
    if baseline is None and len(state.runs) > 1:
        runs_table = run_by_run(state)
    logs = snap["logs"]["items"]
    return {
        "report": REPORT_SCHEMA,
        "generated": now,
        "run": run,
        "quality": snap["quality"],
        "monitor": snap["monitor"],
        "progress": snap["progress"],
        "flow": snap["flow"],
        "phases": rows,
        "critical_path": _critical_rows(snap),
        "slowest": _slowest_rows(top),
        "errors": _errors_section(snap),
        "warnings": {
            "count": snap["logs"]["warnings"],
            "items": [g for g in logs if g.get("level") == "warning"],
        },
        "alerts": snap["alerts"],
        "error_groups": snap.get("error_groups"),
        "counters": snap.get("counters") or {},
        "anomalies": snap["anomalies"],
        "history": _history_rows(state, run_id, top),
        "resources": {
            **_samples_series(snap["resources"]["samples"]),
            "peak_rss_bytes": snap["resources"]["peak_rss_bytes"],
            "peak_tree_rss_bytes": snap["resources"]["peak_tree_rss_bytes"],
        },
        "comparison": comparison,
        "runs_table": runs_table,
        "baseline_tags": dict(tags or {}),
        "snapshot": snap,
    }


def _critical_rows(snap: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The top-level phases on the run's critical path."""
    chain = analysis.critical_path(
        [
            {"span": p["span"], "parent": p["parent"], "start": p["start"], "end": p["end"]}
            for p in snap["phases"]
            if p.get("start") is not None and not p.get("late")  # after the run: not its path
        ]
    )
    by_span = {p["span"]: p for p in snap["phases"]}
    crit = [by_span[s] for s in chain if s in by_span and by_span[s].get("depth", 0) == 0]
    return [
        {
            "span": p["span"],
            "phase": p["phase"],
            "name": p["name"],
            "duration_ms": p["duration_ms"],
        }
        for p in crit
    ]


def _slowest_rows(top: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The five slowest top-level phases, each with its share of the run."""
    slowest = sorted(
        (p for p in top if p.get("duration_ms") is not None),
        key=lambda p: -(p["duration_ms"] or 0),
    )[:5]
    return [
        {
            "span": p["span"],
            "phase": p["phase"],
            "name": p["name"],
            "duration_ms": p["duration_ms"],
            "share_pct": p.get("share_pct"),  # views: none for a late phase
        }
        for p in slowest
    ]


def _errors_section(snap: Mapping[str, Any]) -> dict[str, Any]:
    """The report's errors: the one count, the error lines, each exception once."""
    logs = snap["logs"]["items"]
    return {
        # The one count (views.errors_view): error log lines plus each exception once.
        "count": snap["errors"]["count"],
        "logged": snap["errors"]["logged"],
        "items": [g for g in logs if g.get("level") == "error"],
        # Each exception once, at the phase that raised it (then the run's own).
        "failed_phases": [
            {"span": x["span"], "phase": x["phase"] or "run", "error": x["error"]}
            for x in snap["errors"]["exceptions"]
        ],
    }


def _history_rows(state: State, run_id: str, top: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per top-level key with earlier runs: median, p95, this run's value, change, trend."""
    hist: dict[str, Any] = {}
    for key in dict.fromkeys(p["phase"] for p in top):
        h = history.phase_history(state, key, before=run_id)
        if not h["count"]:
            continue
        tr = history.phase_trends(state, key, before=run_id)
        cur = next((p for p in reversed(top) if p["phase"] == key), None)
        d = h["stats"]["duration_ms"]
        hist[key] = {
            "runs": h["count"],
            "median_ms": d.get("median"),
            "p95_ms": d.get("p95"),
            "current_ms": cur.get("duration_ms") if cur else None,
            "delta_pct": (cur["duration_ms"] - d["median"]) / d["median"] * 100
            if cur and cur.get("duration_ms") is not None and d.get("median")
            else None,
            "trend": tr["duration_ms"],
            "series_ms": [r["duration_ms"] for r in h["runs"]][-20:],
        }
    return hist


def compare(
    snap: dict[str, Any],
    baseline: history.Runs,
    metric: str = "duration",
    threshold: float | None = None,
    noise_floor: float | None = None,
) -> dict[str, Any]:
    """Per top-level phase key: the subject against the baseline runs (a state, or the
    catalog's summaries of a baseline directory)."""
    field, hmetric, higher_is_worse, floor = METRICS[metric]
    current: dict[str, float] = {}
    for p in snap["phases"]:
        if p.get("depth", 0) == 0 and p["status"] == "completed":
            v = p.get(field)
            if isinstance(v, (int, float)):
                current[p["phase"]] = float(v)
    base: dict[str, list[float]] = {}
    base_top: set[str] = set()
    runs = history.as_summaries(baseline)
    for s in runs:
        for k, p in (s.get("phases") or {}).items():
            if p.get("top"):
                base_top.add(k)
            row = history.key_row(s, k)
            if row is None or row["status"] != "completed":
                continue
            v = row.get(hmetric)
            if isinstance(v, (int, float)):
                base.setdefault(k, []).append(float(v))
    # Only top-level keys: a key's figure in the snapshot is its top-level phase.
    top_keys = {p["phase"] for p in snap["phases"] if p.get("depth", 0) == 0}
    base = {k: v for k, v in base.items() if k in top_keys or k in base_top}
    kw: dict[str, Any] = {
        "higher_is_worse": higher_is_worse,
        "noise_floor": floor if noise_floor is None else noise_floor,
    }
    if threshold is not None:
        kw["tolerance"] = kw["single_tolerance"] = threshold / 100.0
    res = analysis.compare(current, base, **kw)
    res["metric"] = metric
    res["field"] = field
    res["baseline_runs"] = len(runs)
    res["noise_floor"] = kw["noise_floor"]
    res["tolerance_pct"] = None if threshold is None else threshold
    return res


def run_by_run(state: history.Runs, limit: int = 6) -> dict[str, Any]:
    """Several runs, no baseline: each top-level key's duration in each run (newest last)."""
    runs = history.runs_before(state, None)[-limit:]
    keys: list[str] = []
    for s in runs:
        for k, p in (s.get("phases") or {}).items():
            if p.get("top") and k not in keys:
                keys.append(k)
    table = {k: [(history.key_row(s, k) or {}).get("duration_ms") for s in runs] for k in keys}
    return {"runs": [s["run"] for s in runs], "phases": table}


# -- text ---------------------------------------------------------------------------------

_BLOCKS = "▁▂▃▄▅▆▇█"
_ASCII = " .:-=+*#"


class _Style:
    def __init__(self, color: bool) -> None:
        self.color = color

    def __call__(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text

    def status(self, st: str, width: int = 0) -> str:
        mark = STATUS_MARK.get(st, st)
        padded = f"{mark:<{width}}" if width else mark
        code = {
            "completed": "32",
            "failed": "1;31",
            "running": "33",
            "interrupted": "35",
            "cancelled": "35",
        }.get(st)
        return self(padded, code) if code else padded


def sparkline(values: Sequence[float | None], width: int, unicode: bool = True) -> str:
    """Values resampled to ``width`` columns (max per column), scaled to the maximum."""
    chars = _BLOCKS if unicode else _ASCII
    vals = [v for v in values]
    if not vals:
        return ""
    n = len(vals)
    cols = []
    for i in range(min(width, n)):
        lo, hi = i * n // min(width, n), (i + 1) * n // min(width, n)
        chunk = [v for v in vals[lo : max(hi, lo + 1)] if v is not None]
        cols.append(max(chunk) if chunk else None)
    top = max((v for v in cols if v is not None), default=0) or 1
    return "".join(
        " " if v is None else chars[min(len(chars) - 1, int(v / top * (len(chars) - 1) + 0.5))]
        for v in cols
    )


def timeline(
    ts: Sequence[float],
    values: Sequence[float | None],
    t0: float,
    t1: float,
    width: int,
    unicode: bool = True,
) -> str:
    """A sparkline on the run's time axis: column i covers [t0, t1] / width; several samples
    in a column show their maximum, a column with none repeats the one before."""
    cols: list[float | None] = [None] * width
    span = (t1 - t0) or 1.0
    for t, v in zip(ts, values, strict=False):
        if v is None:
            continue
        i = min(width - 1, max(0, int((t - t0) / span * width)))
        c = cols[i]
        cols[i] = v if c is None or v > c else c
    last = None
    for i, v in enumerate(cols):
        if v is None:
            cols[i] = last
        else:
            last = v
    return sparkline(cols, width, unicode)


def _bar(start: float | None, dur: float | None, run_ms: float, width: int, unicode: bool) -> str:
    if start is None or dur is None or run_ms <= 0:
        return " " * width
    a = max(0, min(width - 1, int(start / run_ms * width)))
    b = max(a + 1, min(width, int(math.ceil((start + dur) / run_ms * width))))
    fill = "█" if unicode else "#"
    return " " * a + fill * (b - a) + " " * (width - b)


def render_text(
    model: dict[str, Any], *, color: bool = False, unicode: bool = True, errors_max: int = 10
) -> str:
    """The terminal report, fitting 100 columns."""
    st = _Style(color)
    out = _header_text(model, st)
    out += _phase_tables_text(model, st, unicode)
    out += _resources_text(model, st, unicode)
    out += _highlights_text(model, st)
    out += _errors_text(model, st, errors_max)
    out += _groups_text(model.get("error_groups"), st, errors_max)
    if model.get("counters"):
        out += ["", st("counters", "1") + "  " + clean(_counters(model["counters"]), 88)]
    out += _alerts_text(model, st, errors_max)
    out += _history_text(model, st, unicode)
    if model["comparison"] is not None:
        out += _comparison_text(model["comparison"], st)
    if model["runs_table"] is not None:
        out += _runs_table_text(model["runs_table"])
    out += _suggestions_text(model.get("suggestions") or [], st)
    if model.get("compare") is not None:
        out += _compare_text(model["compare"], st, unicode)
    return "\n".join(out)


def _header_text(model: Mapping[str, Any], st: _Style) -> list[str]:
    """The run's header: identity, command, tags, limits, resumes, progress, quality, error."""
    run = model["run"]
    q = model["quality"]
    mon = model["monitor"]
    out: list[str] = []
    out.append(st(f"run {clean(run['id'], 40)}", "1") + f"  {clean(run.get('name'), 40)}")
    argv = run.get("argv") or []
    argv = argv if isinstance(argv, list) else [argv]
    out.append(
        f"status {st.status(run['status'])}  start {_ts(run.get('start'))}  "
        f"duration {fmt_ms(run.get('duration_ms'))}  host {clean(run.get('host'), 24)}  "
        f"pid {run.get('pid') or '-'}"
    )
    if argv:
        out.append("command " + clean(" ".join(str(a) for a in argv), 90))
    if run.get("tags"):
        out.append("tags " + clean(", ".join(f"{k}={v}" for k, v in run["tags"].items()), 94))
    lim = run.get("limits")
    if isinstance(lim, dict) and (lim.get("memory_max_bytes") or lim.get("cpu_quota")):
        out.append(
            "container limits: memory "
            + (fmt_bytes(lim["memory_max_bytes"]) if lim.get("memory_max_bytes") else "-")
            + ", CPU "
            + (f"{lim['cpu_quota']:g}" if lim.get("cpu_quota") else "-")
            + f" ({clean(lim.get('source'), 30)})"
        )
    if model.get("baseline_tags"):
        out.append("history and baseline: only runs tagged " + _tag_list(model["baseline_tags"]))
    for res in run.get("resumed") or []:
        gap = res.get("gap_s")
        out.append(
            f"resumed by pid {res.get('pid')} after pid {res.get('prev_pid')} stopped"
            + (f" (a gap of {fmt_ms(gap * 1000)})" if isinstance(gap, (int, float)) else "")
        )
    prog = model["progress"]
    if run["status"] == "running":
        eta = prog.get("eta_s")
        out.append(
            f"progress {prog.get('done')}/{prog.get('planned')} phases"
            + (
                f", ETA {fmt_ms(eta * 1000)}"
                if eta is not None
                else ", ETA: no history for "
                + ", ".join(clean(k, 12) for k in prog.get("missing_history") or [])
            )
        )
    out.append("data quality: " + quality_line(q, mon))
    if isinstance(run.get("error"), dict):
        e = run["error"]
        out.append(st("error ", "31") + clean(f"{e.get('type')}: {e.get('msg')}", 90))
    return out


def _phase_tables_text(model: Mapping[str, Any], st: _Style, unicode: bool) -> list[str]:
    """The phases twice: times with a timeline bar, then resources, items and counts."""
    run = model["run"]
    out: list[str] = []
    rows = model["phases"]
    run_ms = run.get("duration_ms") or 0.0
    pending = [f for f in model["flow"] if f["status"] == "pending"]
    out.append("")
    out.append(st("phases", "1") + f" ({len(rows)} shown; timeline = the run's {fmt_ms(run_ms)})")
    bw = 30
    out.append(
        f"{'phase':<12} {'name':<20} {'status':<6} {'start':>8} {'duration':>9} "
        f"{'share':>5}  {'timeline':<{bw}}"
    )
    for p in rows:
        ind = "  " * p.get("depth", 0)
        extent = p.get("extent_ms", p.get("duration_ms"))
        pct = p.get("share_pct") if p.get("depth", 0) == 0 else None
        share = f"{pct:.0f}%" if pct is not None else ""
        out.append(
            f"{clean(ind + p['phase'], 12):<12} {clean(_label(p), 20):<20} "
            f"{st.status(p['status'], 6)} {fmt_ms(p.get('offset_ms')):>8} "
            f"{_dur(p):>9} {share:>5}  "
            f"{_bar(p.get('offset_ms'), extent, run_ms, bw, unicode)}"
        )
    for f in pending:
        out.append(
            f"{clean(f['id'], 12):<12} {clean(f.get('name'), 20):<20} {st.status('pending', 6)}"
        )
    out.append("")
    out.append(
        f"{'phase':<12} {'cpu avg':>7} {'cpu pk':>6} {'peak rss':>9} {'rss chg':>9} "
        f"{'child cpu':>9} {'items':>7} {'items/s':>9} {'warn':>4} {'err':>4} {'art':>4}"
    )
    for p in rows:
        ind = "  " * p.get("depth", 0)
        out.append(
            f"{clean(ind + p['phase'], 12):<12} {_num(p.get('cpu_pct'), '{:.0f}%'):>7} "
            f"{_num(p.get('cpu_peak_pct'), '{:.0f}%'):>6} "
            f"{fmt_bytes(p.get('peak_rss_bytes')):>9} "
            f"{fmt_bytes(p.get('rss_delta_bytes'), signed=True):>9} "
            f"{fmt_ms(p.get('children_cpu_ms')):>9} {p.get('items') or '':>7} "
            f"{_num(p.get('items_per_s'), '{:.1f}'):>9} {p.get('warnings') or '':>4} "
            f"{p.get('errors') or '':>4} {len(p.get('artifacts') or []) or '':>4}"
        )
    return out


def _resources_text(model: Mapping[str, Any], st: _Style, unicode: bool) -> list[str]:
    """CPU and RSS over the run on one time axis, with the top-level phases' starts marked."""
    run = model["run"]
    rows = model["phases"]
    run_ms = run.get("duration_ms") or 0.0
    out: list[str] = []
    res = model["resources"]
    if res["ts"]:
        out.append("")
        w = 80
        t0 = run.get("start") or res["ts"][0]
        cpu = [v for v in res["cpu_pct"] if v is not None]
        rss = [v for v in res["rss_bytes"] if v is not None]
        out.append(
            st("resources", "1") + f" over the run ({len(res['ts'])} samples; "
            "| = a top-level phase starts)"
        )
        t1 = max(res["ts"][-1], t0 + run_ms / 1000)
        span_s = (t1 - t0) or 1.0
        out.append(
            f"cpu {_num(max(cpu) if cpu else None, '{:.0f}%'):>9} "
            + timeline(res["ts"], res["cpu_pct"], t0, t1, w, unicode)
        )
        out.append(
            f"rss {fmt_bytes(max(rss) if rss else None):>9} "
            + timeline(res["ts"], res["rss_bytes"], t0, t1, w, unicode)
        )
        marks = [" "] * w
        labels = [" "] * w
        for p in rows:
            if p.get("depth", 0) or p.get("start") is None:
                continue
            i = min(w - 1, max(0, int((p["start"] - t0) / span_s * w)))
            marks[i] = "|"
            key = clean(p["phase"])
            if all(c == " " for c in labels[i : i + len(key) + 1]):
                labels[i : i + len(key)] = list(key[: w - i])
        out.append(" " * 14 + "".join(marks))
        out.append(" " * 14 + "".join(labels)[:w])
    return out


def _highlights_text(model: Mapping[str, Any], st: _Style) -> list[str]:
    """The critical path and the slowest phases."""
    run_ms = model["run"].get("duration_ms") or 0.0
    out: list[str] = []
    if model["critical_path"] or model["slowest"]:
        out.append("")
        chain = model["critical_path"]
        if chain:
            total = sum(c["duration_ms"] or 0 for c in chain)
            out.append(
                st("critical path", "1")
                + f" ({fmt_ms(total)}"
                + (f", {total / run_ms * 100:.0f}% of the run)" if run_ms else ")")
            )
            out.append("  " + clean(" > ".join(c["phase"] for c in chain), 96))
        if model["slowest"]:
            out.append(
                st("slowest", "1")
                + "  "
                + clean(
                    ", ".join(
                        f"{s['phase']} {fmt_ms(s['duration_ms'])}"
                        + (f" ({s['share_pct']:.0f}%)" if s.get("share_pct") is not None else "")
                        for s in model["slowest"][:4]
                    ),
                    90,
                )
            )
    return out


def _errors_text(model: Mapping[str, Any], st: _Style, errors_max: int) -> list[str]:
    """Failed phases, then error and warning lines in time order, at most ``errors_max``."""
    out: list[str] = []
    errs, warns = model["errors"], model["warnings"]
    if errs["count"] or warns["count"] or errs["failed_phases"]:
        out.append("")
        out.append(
            st("errors and warnings", "1") + f" ({errs['count']} errors, {warns['count']} warnings)"
        )
        for f in errs["failed_phases"][:errors_max]:
            e = f.get("error") or {}
            out.append(
                st("  failed ", "31")
                + clean(f"{f['phase']}: {e.get('type', '?')}: {e.get('msg', '')}", 88)
            )
        shown = errs["items"] + warns["items"]
        shown.sort(key=lambda g: g.get("ts") or 0)
        for g in shown[:errors_max]:
            lvl = "error" if g.get("level") == "error" else "warn"
            out.append(
                f"  {st(f'{lvl:<5}', '31' if lvl == 'error' else '33')} "
                f"{clean(g.get('phase') or '-', 10):<10} {clean(g.get('msg'), 80)}"
            )
        more = errs["logged"] + warns["count"] - min(len(shown), errors_max)
        if more > 0:
            out.append(f"  ... and {more} more")
    return out


def _alerts_text(model: Mapping[str, Any], st: _Style, errors_max: int) -> list[str]:
    """The alerts, at most ``errors_max``, each with who acknowledged it."""
    out: list[str] = []
    if model["alerts"]:
        out.append("")
        out.append(st("alerts", "1") + f" ({len(model['alerts'])})")
        for a in model["alerts"][:errors_max]:
            sev = a.get("severity", "?")
            code = {"critical": "1;31", "warning": "33"}.get(sev, "36")
            state = a.get("state", "?") + (" (ack)" if a.get("acknowledged") else "")
            out.append(f"  {st(f'{sev:<8}', code)} {state:<14} {clean(a.get('msg'), 70)}")
            ack = _ack_text(a)
            if ack:
                out.append("  " + " " * 24 + clean(ack, 74))
    return out


def _history_text(model: Mapping[str, Any], st: _Style, unicode: bool) -> list[str]:
    """Each top-level key against its history: median, change, trend, sparkline, anomaly."""
    out: list[str] = []
    if model["history"] or model["anomalies"]:
        out.append("")
        out.append(st("against history", "1"))
        out.append(
            f"  {'phase':<12} {'runs':>4} {'median':>9} {'this run':>9} {'change':>7} "
            f"{'trend':<10} sparkline"
        )
        anomalous = {a["phase"] for a in model["anomalies"]}
        for k, h in model["history"].items():
            delta = h.get("delta_pct")
            flag = st(" anomaly", "1;31") if k in anomalous else ""
            tr = h["trend"]
            trend = tr.get("direction", "-")
            if tr.get("pct_per_run") is not None and trend != "insufficient":
                trend += f" {tr['pct_per_run']:+.0f}%"
            out.append(
                f"  {clean(k, 12):<12} {h['runs']:>4} {fmt_ms(h.get('median_ms')):>9} "
                f"{fmt_ms(h.get('current_ms')):>9} "
                f"{_num(delta, '{:+.0f}%'):>7} {clean(trend, 10):<10} "
                f"{sparkline(h['series_ms'], 20, unicode)}{flag}"
            )
    return out


def _counters(counters: Mapping[str, Any]) -> str:
    """``signals 1,005, pages 12``: each p.count() counter's sum over the run."""
    return ", ".join(
        f"{k} {v:,.0f}" if isinstance(v, (int, float)) and float(v).is_integer() else f"{k} {v}"
        for k, v in counters.items()
    )


def _ack_text(a: Mapping[str, Any]) -> str | None:
    """Who acknowledged or cleared an alert (the ``ack`` command), when, and why."""
    if a.get("cleared"):
        return f"cleared by {a.get('cleared_by') or '?'} {_ts(a.get('cleared_ts'))}"
    if a.get("acknowledged") and a.get("ack_by"):
        note = f": {a['ack_note']}" if a.get("ack_note") else ""
        return f"acknowledged by {a['ack_by']} {_ts(a.get('ack_ts'))}{note}"
    return None


def _across(g: Mapping[str, Any]) -> str:
    if not g.get("recent_runs"):
        return ""
    if g.get("new"):
        return "new"
    return f"{g.get('seen_runs')}/{g.get('recent_runs')} runs"


def _groups_text(eg: Mapping[str, Any] | None, st: _Style, limit: int) -> list[str]:
    """Errors and warnings by fingerprint (errgroups.py): one line per group."""
    if not eg or not (eg.get("groups") or eg.get("gone")):
        return []
    groups = eg.get("groups") or []
    against = f"; against the last {eg['recent_runs']} run(s)" if eg.get("recent_runs") else ""
    out = [
        "",
        st("error groups", "1")
        + f" ({len(groups)} groups, {eg.get('total', 0)} occurrences{against})",
    ]
    if groups:
        out.append(f"  {'count':>6} {'level':<5} {'seen':<9} {'phases':<12} group")
    for g in groups[:limit]:
        lvl = "error" if g.get("level") == "error" else "warn"
        kind = f"{g['type']}: " if g.get("type") else ""
        where = f" (at {g['frame']})" if g.get("frame") else ""
        out.append(
            f"  {g.get('count', 0):>6} {st(f'{lvl:<5}', '31' if lvl == 'error' else '33')} "
            f"{_across(g):<9} {clean(','.join(g.get('phases') or []) or '-', 12):<12} "
            + clean(kind + str(g.get("template")) + where, 60)
        )
    if len(groups) > limit:
        out.append(f"  ... and {len(groups) - limit} more groups")
    gone = eg.get("gone") or []
    if gone:
        out.append(
            f"  gone since the previous run ({len(gone)}): "
            + clean("; ".join(str(g.get("template")) for g in gone[:3]), 60)
        )
    return out


def _groups_markdown(eg: Mapping[str, Any] | None) -> list[str]:
    if not eg or not (eg.get("groups") or eg.get("gone")):
        return []
    out = [
        "",
        f"### Error groups ({len(eg.get('groups') or [])})",
        "",
        "| count | level | type | group | frame | phases | first | last | across runs |",
        "|--:|---|---|---|---|---|---|---|---|",
    ]
    for g in (eg.get("groups") or [])[:50]:
        across = _across(g) or "-"
        out.append(
            f"| {g.get('count')} | {_md(g.get('level'))} | {_md(g.get('type') or '-')} "
            f"| {_md(g.get('template'))} | {_md(g.get('frame') or '-')} "
            f"| {_md(', '.join(g.get('phases') or []) or '-')} | {_ts(g.get('first_ts'))} "
            f"| {_ts(g.get('last_ts'))} | {across} |"
        )
    for g in eg.get("gone") or []:
        out.append(
            f"| 0 | {_md(g.get('level'))} | {_md(g.get('type') or '-')} "
            f"| {_md(g.get('template'))} | {_md(g.get('frame') or '-')} | | | | gone |"
        )
    return out


def _tag_list(tags: Mapping[str, Any]) -> str:
    """``k=v, k2=v2``, as user text for a terminal (sorted: the same tags read the same)."""
    return clean(", ".join(f"{k}={v}" for k, v in sorted(tags.items())), 90)


def _dur(p: dict[str, Any]) -> str:
    """A phase's duration; ">" before the least an interrupted phase is known to have
    lasted (it has no end line)."""
    return (">" if p.get("duration_lower_bound") else "") + fmt_ms(p.get("duration_ms"))


def _label(p: dict[str, Any]) -> str:
    """A phase's name, with its attempt number and the reason it was skipped or cached."""
    name = str(p.get("name") or p["phase"])
    if p.get("attempt"):
        name += f" #{p['attempt']}"
    if p.get("reason"):
        name += f" ({p['reason']})"
    if p.get("late"):
        name += " (late)"  # started after the run ended
    return name


def quality_line(q: dict[str, Any], mon: dict[str, Any]) -> str:
    parts = []
    if q.get("torn"):
        parts.append(f"torn last line at byte {q.get('torn_offset')} (skipped)")
    if q.get("corrupt"):
        lines = ", ".join(str(n) for n in (q.get("corrupt_lines") or [])[:5])
        parts.append(
            f"{q['corrupt']} corrupt line(s) skipped (line {lines}"
            + (" ..." if q["corrupt"] > 5 else "")
            + ")"
        )
    if q.get("newer_schema"):
        parts.append(f"schema v{q['newer_schema']} is newer than this reader: known parts read")
    if q.get("seq_gaps"):
        parts.append(f"{q['seq_gaps']} event(s) missing (sequence gaps)")
    if q.get("bad_values"):
        parts.append(f"{q['bad_values']} value(s) of a wrong type or out of range read as missing")
    for k, label in (
        ("samples_dropped", "samples dropped from memory"),
        ("phases_folded", "repeated phases folded into aggregates"),
    ):
        if q.get(k):
            parts.append(f"{q[k]} {label}")
    if mon.get("write_errors"):
        parts.append(
            f"{mon['write_errors']} monitor write error(s) ({mon.get('events_lost', 0)} "
            "events lost)"
        )
    if mon.get("internal_errors"):
        parts.append(f"{mon['internal_errors']} monitor internal error(s)")
    if mon.get("samples_missed"):
        parts.append(f"{mon['samples_missed']} sample ticks missed")
    undelivered = [
        f"{mon[k]} {label}"
        for k, label in (("notify_failed", "failed"), ("notify_dropped", "dropped"))
        if mon.get(k)
    ]
    if undelivered:
        parts.append("alert notifications not delivered: " + ", ".join(undelivered))
    return "; ".join(parts) if parts else "ok"


def _comparison_text(c: dict[str, Any], st: _Style) -> list[str]:
    unit_ms = c["field"] in ("duration_ms", "cpu_ms")

    def fmt(v: float | None, signed: bool = False) -> str:
        if unit_ms:
            return fmt_ms(v, signed)
        if c["field"] == "peak_rss_bytes":
            return fmt_bytes(v, signed)
        return _num(v, "{:+.1f}" if signed else "{:.1f}")

    out = [
        "",
        st("comparison", "1") + f" with {c['baseline_runs']} baseline run(s), metric "
        f"{c['metric']}, noise floor {c['noise_floor']:g}",
    ]
    out.append(
        f"  {'phase':<12} {'baseline':>10} {'rule':<7} {'this run':>10} {'change':>10} "
        f"{'%':>7}  verdict"
    )
    for k, r in c["phases"].items():
        verdict = st("REGRESSED", "1;31") if r["regressed"] else "ok"
        if r["rule"] == "no-baseline":
            verdict = "new"
        delta = r.get("delta")
        change = fmt(delta, signed=True)
        out.append(
            f"  {clean(k, 12):<12} {fmt(r.get('reference')):>10} {r['rule']:<7} "
            f"{fmt(r.get('current')):>10} {change:>10} "
            f"{_num(r.get('delta_pct'), '{:+.0f}%'):>7}  {verdict}"
        )
    for k in c["missing"]:
        out.append(f"  {clean(k, 12):<12} {'':>10} {'':<7} {'-':>10} {'':>10} {'':>7}  missing")
    n = len(c["regressions"])
    out.append(f"  {n} regression(s)" + (": " + ", ".join(c["regressions"]) if n else ""))
    return out


def _runs_table_text(t: dict[str, Any]) -> list[str]:
    runs = t["runs"]
    out = ["", f"run by run (duration; {len(runs)} most recent runs, newest last)"]
    out.append(f"  {'phase':<12} " + " ".join(f"{clean(r[-13:], 13):>13}" for r in runs))
    for k, vals in t["phases"].items():
        out.append(f"  {clean(k, 12):<12} " + " ".join(f"{fmt_ms(v):>13}" for v in vals))
    return out


def phase_table(snap: dict[str, Any], depth: int = 0) -> str:
    """The short per-phase summary the demo prints: status, duration, share, CPU, RSS,
    items and items/s per phase, then the data-quality line."""
    run = snap["run"]
    rows = _ordered(snap, depth)
    dur = run.get("duration_ms")
    lines = [
        f"run {clean(run['id'])}  {run.get('status')}  {fmt_ms(dur)}  "
        f"host {clean(run.get('host') or '-')}",
        f"{'phase':<12} {'name':<24} {'status':<7} {'duration':>9} {'share':>6} "
        f"{'cpu%':>6} {'peak rss':>9} {'items':>7} {'items/s':>9} {'w/e':>5}",
    ]
    for p in rows:
        indent = "  " * p.get("depth", 0)
        pct = p.get("share_pct") if p.get("depth", 0) == 0 else None
        share = f"{pct:.0f}%" if pct is not None else ""
        lines.append(
            f"{clean(indent + p['phase'], 12):<12} {clean(_label(p), 24):<24} "
            f"{STATUS_MARK.get(p['status'], p['status']):<7} {_dur(p):>9} "
            f"{share:>6} {_num(p.get('cpu_pct')):>6} {fmt_bytes(p.get('peak_rss_bytes')):>9} "
            f"{p.get('items') or '':>7} {_num(p.get('items_per_s'), '{:.1f}'):>9} "
            f"{p.get('warnings', 0)}/{p.get('errors', 0):<3}"
        )
    for f in snap["flow"]:
        if f["status"] == "pending":
            lines.append(f"{clean(f['id'], 12):<12} {clean(f.get('name'), 24):<24} {'-':<7}")
    res, logs = snap["resources"], snap["logs"]
    lines.append(
        f"peak rss {fmt_bytes(res.get('peak_rss_bytes'))} (tree "
        f"{fmt_bytes(res.get('peak_tree_rss_bytes'))}), {res.get('total', 0)} samples, "
        f"{logs.get('warnings', 0)} warnings, {snap['errors']['count']} errors"
    )
    lines.append("data quality: " + quality_line(snap["quality"], snap["monitor"]))
    err = run.get("error")
    if isinstance(err, dict):
        lines.append(f"error: {clean(err.get('type'), 40)}: {clean(err.get('msg'), 50)}")
    return "\n".join(lines)


# -- markdown -------------------------------------------------------------------------------


def _md(text: Any) -> str:
    """A table cell: pipes escaped, newlines and control characters flattened."""
    s = clean(text).replace("\\", "\\\\").replace("|", "\\|")
    for ch in "<>*_`[]":
        s = s.replace(ch, "\\" + ch)
    return s


def render_markdown(model: dict[str, Any]) -> str:
    """GitHub-flavoured Markdown, for $GITHUB_STEP_SUMMARY and pull-request comments."""
    out = _md_header(model)
    out += _md_phases(model)
    out += _md_errors(model)
    out += _groups_markdown(model.get("error_groups"))
    if model.get("counters"):
        out += ["", f"**Counters:** {_md(_counters(model['counters']))}"]
    out += _md_alerts(model)
    out += _md_history(model)
    out += _md_comparison(model)
    out += _md_runs_table(model)
    out += _suggestions_markdown(model.get("suggestions") or [])
    if model.get("compare") is not None:
        out += _compare_markdown(model["compare"])
    return "\n".join(out) + "\n"


def _md_header(model: Mapping[str, Any]) -> list[str]:
    """The title and the run's one-paragraph summary, its tags and the baseline's."""
    run = model["run"]
    out = [
        f"## atroz_monitor: run `{clean(run['id']).replace('`', '')}` {run['status']}",
        "",
        f"**{_md(run.get('name'))}** on {_md(run.get('host'))}, started "
        f"{_ts(run.get('start'))}, took **{fmt_ms(run.get('duration_ms'))}**. "
        f"Data quality: {_md(quality_line(model['quality'], model['monitor']))}.",
        "",
    ]
    if run.get("tags"):
        out += [f"Tags: {_md(_tag_list(run['tags']))}.", ""]
    if model.get("baseline_tags"):
        out += [
            f"History and baseline: only runs tagged {_md(_tag_list(model['baseline_tags']))}.",
            "",
        ]
    return out


def _md_phases(model: Mapping[str, Any]) -> list[str]:
    """The phase table (pending planned phases last) and the critical path."""
    run = model["run"]
    out: list[str] = []
    out += [
        "| phase | name | status | start | duration | share | cpu avg | peak rss | rss change "
        "| items | items/s | warnings | errors |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    run_ms = run.get("duration_ms") or 0
    for p in model["phases"]:
        ind = "&nbsp;&nbsp;" * p.get("depth", 0)
        share = (
            f"{p['duration_ms'] / run_ms * 100:.0f}%"
            if run_ms
            and p.get("duration_ms") is not None
            and not p.get("depth")
            and not p.get("late")
            else ""
        )
        out.append(
            f"| {ind}{_md(p['phase'])} | {_md(_label(p))} "
            f"| {STATUS_MARK.get(p['status'], p['status'])} "
            f"| {fmt_ms(p.get('offset_ms'))} | {_dur(p)} | {share} "
            f"| {_num(p.get('cpu_pct'), '{:.0f}%')} | {fmt_bytes(p.get('peak_rss_bytes'))} "
            f"| {fmt_bytes(p.get('rss_delta_bytes'), signed=True)} | {p.get('items') or ''} "
            f"| {_num(p.get('items_per_s'), '{:.1f}')} | {p.get('warnings') or ''} "
            f"| {p.get('errors') or ''} |"
        )
    for f in model["flow"]:
        if f["status"] == "pending":
            out.append(f"| {_md(f['id'])} | {_md(f.get('name'))} | pending | | | | | | | | | | |")
    if model["critical_path"]:
        out += [
            "",
            "**Critical path:** "
            + " → ".join(
                f"{_md(c['phase'])} ({fmt_ms(c['duration_ms'])})" for c in model["critical_path"]
            ),
        ]
    return out


def _md_errors(model: Mapping[str, Any]) -> list[str]:
    """Failed phases, then up to 20 error and warning lines."""
    out: list[str] = []
    failed = model["errors"]["failed_phases"]
    if failed or model["errors"]["items"] or model["warnings"]["items"]:
        out += [
            "",
            f"### Errors and warnings ({model['errors']['count']} errors, "
            f"{model['warnings']['count']} warnings)",
            "",
            "| level | phase | message |",
            "|---|---|---|",
        ]
        for f in failed:
            e = f.get("error") or {}
            out.append(
                f"| failed | {_md(f['phase'])} | {_md(e.get('type'))}: {_md(e.get('msg'))} |"
            )
        for g in (model["errors"]["items"] + model["warnings"]["items"])[:20]:
            out.append(f"| {g.get('level')} | {_md(g.get('phase') or '-')} | {_md(g.get('msg'))} |")
    return out


def _md_alerts(model: Mapping[str, Any]) -> list[str]:
    """The alerts table."""
    out: list[str] = []
    if model["alerts"]:
        out += [
            "",
            f"### Alerts ({len(model['alerts'])})",
            "",
            "| severity | state | rule | phase | value | threshold | message |",
            "|---|---|---|---|--:|--:|---|",
        ]
        for a in model["alerts"]:
            out.append(
                f"| {_md(a.get('severity'))} | {_md(a.get('state'))} | {_md(a.get('rule'))} "
                f"| {_md(a.get('phase') or '-')} | {_md(a.get('value'))} "
                f"| {_md(a.get('threshold'))} | {_md(a.get('msg'))} |"
            )
    return out


def _md_history(model: Mapping[str, Any]) -> list[str]:
    """Each top-level key against its history."""
    out: list[str] = []
    if model["history"]:
        out += [
            "",
            "### Against history",
            "",
            "| phase | runs | median | this run | change | trend | anomaly |",
            "|---|--:|--:|--:|--:|---|---|",
        ]
        anomalous = {a["phase"] for a in model["anomalies"]}
        for k, h in model["history"].items():
            out.append(
                f"| {_md(k)} | {h['runs']} | {fmt_ms(h.get('median_ms'))} "
                f"| {fmt_ms(h.get('current_ms'))} | {_num(h.get('delta_pct'), '{:+.0f}%')} "
                f"| {h['trend'].get('direction')} | {'yes' if k in anomalous else ''} |"
            )
    return out


def _md_comparison(model: Mapping[str, Any]) -> list[str]:
    """The ``--baseline`` verdict per key, and the count of regressions."""
    out: list[str] = []
    c = model["comparison"]
    if c is not None:
        out += [
            "",
            f"### Comparison with {c['baseline_runs']} baseline run(s) ({c['metric']})",
            "",
            "| phase | baseline | rule | this run | change | % | verdict |",
            "|---|--:|---|--:|--:|--:|---|",
        ]
        for k, r in c["phases"].items():
            verdict = (
                "**REGRESSED**"
                if r["regressed"]
                else ("new" if r["rule"] == "no-baseline" else "ok")
            )
            out.append(
                f"| {_md(k)} | {_md(_round(r.get('reference')))} | {r['rule']} "
                f"| {_md(_round(r.get('current')))} | {_md(_round(r.get('delta')))} "
                f"| {_num(r.get('delta_pct'), '{:+.1f}%')} | {verdict} |"
            )
        for k in c["missing"]:
            out.append(f"| {_md(k)} | | | | | | missing |")
        out += ["", f"{len(c['regressions'])} regression(s)."]
    return out


def _md_runs_table(model: Mapping[str, Any]) -> list[str]:
    """Several runs without a baseline: each key's duration run by run."""
    out: list[str] = []
    t = model["runs_table"]
    if t is not None:
        out += [
            "",
            "### Run by run (duration)",
            "",
            "| phase | " + " | ".join(_md(r) for r in t["runs"]) + " |",
            "|---|" + "--:|" * len(t["runs"]),
        ]
        for k, vals in t["phases"].items():
            out.append(f"| {_md(k)} | " + " | ".join(fmt_ms(v) for v in vals) + " |")
    return out


def _round(v: Any) -> Any:
    return round(v, 3) if isinstance(v, float) else v


# -- the command ----------------------------------------------------------------------------


def _progress_reader(paths: list[str], st: State, total_bytes: int, show: bool) -> Any:
    from itertools import islice

    from ..read import reader
    from ..read.state import apply_all

    stats = reader.ReadStats(path="")
    done = 0
    for path in paths:
        s = reader.ReadStats(path=path)
        files: list[Any] = []
        events = reader.iter_events(path, s, files.append)
        if not show:
            apply_all(st, events)
        else:
            # In slices, with a progress line between them; the bytes read so far come from
            # the file's position (the stats settle only when the reader ends).
            n = 0
            while True:
                got = apply_all(st, islice(events, 0x10000))
                n += got
                if got < 0x10000:
                    break
                raw = getattr(files[0], "fileobj", files[0])  # a .gz: its compressed bytes
                try:
                    pos = raw.tell()
                except (OSError, ValueError):
                    pos = 0
                pct = min((done + pos) / total_bytes * 100, 100.0)
                sys.stderr.write(
                    f"\rreading {os.path.basename(path)}: {pct:5.1f}% ({stats.events + n:,} events)"
                )
                sys.stderr.flush()
        done += s.bytes
        stats = stats.merge(s)
    if show:
        sys.stderr.write("\r" + " " * 70 + "\r")
    return stats


def load_summaries(paths: Sequence[str], *, follow_symlinks: bool = False) -> list[dict[str, Any]]:
    """Run summaries of ``paths``, oldest first: a directory's from its catalog (built or
    brought up to date from the logs, so a baseline of years of runs reads no log twice),
    a file's by reading it. ReportError when nothing usable is there."""
    from ..read.catalog import Catalog, start_of

    out: list[dict[str, Any]] = []
    files: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            out.extend(Catalog(p).summaries())
        else:
            files.append(p)
    if files:
        st, _, _ = load(files, follow_symlinks=follow_symlinks)
        out.extend(dict(x) for x in history.as_summaries(st))
    if not out:
        raise ReportError(f"no run logs (*.jsonl, *.jsonl.gz) in {', '.join(paths)}")
    out.sort(key=start_of)
    return out


def load(
    paths: Sequence[str], max_phases: int = 10_000, *, follow_symlinks: bool = False
) -> tuple[State, Any, list[str]]:
    """Read ``paths`` into state; ReportError when nothing usable is there. Symlinks inside
    a directory are skipped unless ``follow_symlinks`` (``reader.discover``)."""
    from ..read import reader

    try:
        files = reader.discover(paths, follow_symlinks=follow_symlinks)
    except FileNotFoundError as exc:
        raise ReportError(f"no such file or directory: {exc.filename}") from None
    if not files:
        raise ReportError(f"no run logs (*.jsonl, *.jsonl.gz) in {', '.join(paths)}")
    total = 0
    for f in files:
        try:
            total += os.path.getsize(f)
        except OSError:
            pass
    st = State(max_phases=max_phases)
    show = total > 50 * 2**20 and sys.stderr.isatty()
    try:
        stats = _progress_reader(files, st, total, show)
    except OSError as exc:
        raise ReportError(f"cannot read {exc.filename}: {exc.strerror}") from None
    if not st.runs:
        parts = []
        if stats.corrupt:
            parts.append(f"{stats.corrupt} not JSON events of this format")
        if stats.torn:
            parts.append("a torn line")
        if stats.events:
            parts.append(f"{stats.events} event(s) without a run id")
        detail = f"{stats.lines} line(s) read" + (": " + ", ".join(parts) if parts else "")
        raise ReportError(f"no atroz_monitor events in {', '.join(paths)} ({detail})")
    return st, stats, files


def _quality(stats: Any) -> dict[str, Any]:
    q: dict[str, Any] = stats.to_dict()
    q.pop("path", None)
    return q


def parse_tags(texts: Sequence[str] | None, option: str = "--baseline-tag") -> dict[str, str]:
    """``KEY=VALUE`` strings as a dict, split at the first ``=`` (``dataset=n=1e6`` is
    key ``dataset``, value ``n=1e6``); ReportError on bad syntax or a key given twice."""
    out: dict[str, str] = {}
    for text in texts or ():
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise ReportError(f"{option}: expected KEY=VALUE, got {text!r}")
        if key in out and out[key] != value:
            # AND of two values for one key matches no run: surely a mistake.
            raise ReportError(f"{option}: {key!r} given twice ({out[key]!r} and {value!r})")
        out[key] = value
    return out


def main(args: Any) -> int:
    """The ``report`` command (arguments parsed by cli.py)."""
    # The reader and the reducer make no reference cycles, so the cyclic collector finds
    # nothing, yet over a 1M-event log it ran about 1,500 times while loading (6% of the
    # time) and 150 more while the model was built: off for this short-lived command. Not
    # in load(), which also serves atroz_monitor.load() inside other people's programs.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _main(args)
    finally:
        if was_enabled:
            gc.enable()


# Earlier runs the gate needs without --baseline: those an anomaly needs (analysis).
MIN_HISTORY_FOR_GATE = 3


def _main(args: Any) -> int:
    from ..read.loader import liveness

    tags = parse_tags(getattr(args, "baseline_tag", None))
    follow = bool(getattr(args, "follow_symlinks", False))
    st, stats, files = load(args.paths, follow_symlinks=follow)
    run_id = _subject(st, args.run)
    compare_snap = _compare_target(getattr(args, "compare", None), st, run_id)
    baseline: history.Runs | None = None
    if args.baseline:
        baseline = [
            s for s in load_summaries(args.baseline, follow_symlinks=follow) if s["run"] != run_id
        ]
    if tags:
        # Before anything reads it: the html page's runs list and history follow too.
        st = history.subset(st, lambda r: r.id == run_id or history.matches(r, tags))
    if args.fail_on_regression and baseline is None:
        _check_gate_history(st, run_id)
    replay = _replay_alerts(args.alerts, st, run_id) if args.alerts else None
    now = time.time()
    model = build(
        st,
        run_id,
        now=now,
        alive=liveness(st.runs[run_id]),
        quality=_quality(stats),
        baseline=baseline,
        metric=args.metric,
        threshold=args.threshold,
        noise_floor=args.noise_floor,
        replay_alerts=replay,
        depth=args.depth,
        tags=tags,
    )
    add_insights(model, st, run_id, compare_snap, depth=args.depth)
    _write(args.output, _render(args, model, st, files, run_id, now))
    if args.fail_on_regression:
        return _gate_verdict(model, st, run_id)
    return 0


def _subject(st: State, run: str | None) -> str:
    """The run reported: ``--run``, else the latest; ReportError for an unknown id."""
    if run:
        if run not in st.runs:
            known = ", ".join(sorted(st.runs)[:8])
            raise ReportError(f"--run: no run {run!r} in the input (runs: {known})")
        return run
    return views.latest_run(st) or next(iter(st.runs))


def _check_gate_history(st: State, run_id: str) -> None:
    """``--fail-on-regression`` without ``--baseline`` judges the anomalies against the
    input's own history, which needs as many earlier runs as an anomaly does: fewer would be
    a gate that never fails."""
    earlier = len(history.runs_before(st, run_id))
    if earlier < MIN_HISTORY_FOR_GATE:
        raise ReportError(
            f"--fail-on-regression needs --baseline PATH or at least "
            f"{MIN_HISTORY_FOR_GATE} earlier runs in the input to compare with "
            f"(found {earlier})"
        )


def _replay_alerts(path: str, st: State, run_id: str) -> list[dict[str, Any]]:
    """The alerts the rules in ``path`` raise on replay of the run."""
    from ..view.alerts import evaluate_replay, load_rules

    try:
        rules = load_rules(path)
    except ValueError as exc:
        raise ReportError(str(exc)) from None
    return evaluate_replay(st, run_id, rules)


def _render(
    args: Any, model: dict[str, Any], st: State, files: Sequence[str], run_id: str, now: float
) -> str:
    """The report in ``args.format``."""
    fmt = args.format
    if fmt == "json":
        try:
            return json.dumps(model, indent=1, default=repr, allow_nan=False) + "\n"
        except ValueError:  # a NaN or infinity (a hostile log, an infinite z): null
            return json.dumps(json_safe(model), indent=1, allow_nan=False) + "\n"
    if fmt == "markdown":
        return render_markdown(model)
    if fmt == "html":
        return _render_html(model, st, files, run_id, now)
    out_tty = args.output is None and sys.stdout.isatty()
    color = (args.color == "always" or (args.color == "auto" and out_tty)) and not os.environ.get(
        "NO_COLOR"
    )
    enc = (sys.stdout.encoding or "").lower() if args.output is None else "utf-8"
    return render_text(model, color=color, unicode="utf" in enc, errors_max=args.errors) + "\n"


def _render_html(
    model: dict[str, Any], st: State, files: Sequence[str], run_id: str, now: float
) -> str:
    """The static page: the snapshot, the runs list, history and insights embedded."""
    from . import page

    own = [f for f in files if os.path.basename(f).startswith(run_id)] or (
        files if len(files) == 1 else []
    )
    if own:  # the page's ack command names the log (exactly, when it is known)
        model["snapshot"]["quality"].setdefault("files", [os.path.abspath(f) for f in own])
    rows = [
        _run_row(st, r, now) for r in sorted(st.runs, key=lambda x: _start(st, x), reverse=True)
    ]
    data = {
        "snapshot": model["snapshot"],
        "runs": rows,
        "run_counts": run_counts(rows),
        # The runs before this one, as the live page asks for (?before=) and as the text
        # report's history reads; with the run's tags, also those runs carrying them (the
        # page's "same tags only" switch shows these, computing nothing).
        **static_history(st, run_id, list(model["history"])),
        "generated": now,
        "insights": {"history": model["charts"], "suggestions": model["suggestions"]},
        "compare": model["compare"],
    }
    return page.render_static(data)


def _write(output: str | None, text: str) -> None:
    """``text`` to ``--output`` (never through a planted link), else to stdout."""
    if output:
        from ..record.sinks import nofollow_opener

        try:
            with open(output, "w", encoding="utf-8", opener=nofollow_opener) as f:
                f.write(text)
        except OSError as exc:
            raise ReportError(f"--output: cannot write {output}: {exc.strerror}") from None
    else:
        sys.stdout.write(text)


def _gate_verdict(model: Mapping[str, Any], st: State, run_id: str) -> int:
    """``--fail-on-regression``: 1 (and the regressed keys on stderr) when the baseline
    comparison, or without one the anomalies, flag a key as worse; else 0."""
    if model["comparison"] is not None:
        failed = list(model["comparison"]["regressions"])
        basis = "the baseline"
    else:
        worse = (a for a in model["anomalies"] if a.get("direction") == "worse")
        failed = list(dict.fromkeys(str(a["phase"]) for a in worse))
        basis = f"{len(history.runs_before(st, run_id))} earlier runs (anomaly)"
    if failed:
        sys.stderr.write(f"atroz_monitor report: regression against {basis}: {', '.join(failed)}\n")
        return 1
    return 0


def _start(st: State, rid: str) -> float:
    r = st.runs[rid]
    return r.start if r.start is not None else (r.first_ts or 0.0)


def _run_row(st: State, rid: str, now: float) -> dict[str, Any]:
    from ..read.loader import liveness

    r = st.runs[rid]
    end = r.end if r.end is not None else r.last_ts
    return {
        "id": rid,
        "name": r.info.get("name", rid),
        "status": views.run_status(r, now, liveness(r)),
        "start": r.start,
        "end": r.end,
        "duration_ms": round((end - r.start) * 1000, 3) if end and r.start else None,
        "host": r.info.get("host"),
        "tags": r.info.get("tags") if isinstance(r.info.get("tags"), dict) else {},
    }


# -- insights: trends and heatmap, suggestions, comparison with another run -----------------


def _compare_target(target: str | None, st: State, run_id: str) -> dict[str, Any] | None:
    """The snapshot ``--compare`` names: a run of the input, else the latest run of a log
    file or directory; ReportError when it is neither (or is the subject itself)."""
    from ..read.loader import liveness

    if not target:
        return None
    if target == run_id:
        raise ReportError(f"--compare: {target!r} is the run being reported")
    src = st
    rid: str | None = target
    if target not in st.runs:
        if not os.path.exists(target):
            known = ", ".join(sorted(st.runs)[:8])
            raise ReportError(
                f"--compare: no run {target!r} in the input and no such file (runs: {known})"
            )
        src, _, _ = load([target])
        rid = views.latest_run(src)
        if rid is None or rid == run_id:
            raise ReportError(f"--compare: {target} holds no other run than the subject")
    assert rid is not None
    return views.snapshot(src, rid, now=time.time(), alive=liveness(src.runs[rid]))


def add_insights(
    model: dict[str, Any],
    st: State,
    run_id: str,
    compare_snap: dict[str, Any] | None = None,
    depth: int = 1,
) -> None:
    """Add ``charts`` (trends and heatmap over the runs up to this one), ``suggestions``
    and ``compare`` (with ``compare_snap``: ``compare.compare_runs``) to a report model."""
    from ..view import charts, suggestions
    from ..view.compare import compare_runs

    rows = charts.rows_from_state(st, run_id, limit=max(charts.RUNS_SHOWN, suggestions.SLOW_WINDOW))
    model["charts"] = charts.history_view(rows)
    model["suggestions"] = suggestions.suggest(model["snapshot"], rows)
    model["compare"] = (
        compare_runs(model["snapshot"], compare_snap, depth=depth)
        if compare_snap is not None
        else None
    )


def _evidence_text(ev: Mapping[str, Any]) -> str:
    parts = []
    for k, v in ev.items():
        if isinstance(v, float):
            # first/last/current are in the unit of the rule's metric.
            unit = str(ev.get("metric", "")) if k in ("first", "last", "current") else k
            if unit.endswith("_ms"):
                v = fmt_ms(v)
            elif unit.endswith("_bytes") or unit.endswith("_per_s") and "bytes" in unit:
                v = fmt_bytes(v)
            elif k.endswith("_pct") or k == "pct_per_run":
                v = f"{v:.1f}%"
            else:
                v = f"{v:g}"
        parts.append(f"{k}={v}")
    return ", ".join(parts)


def _suggestions_text(items: Sequence[Mapping[str, Any]], st: _Style) -> list[str]:
    import textwrap

    if not items:
        return []
    out = ["", st("suggestions", "1") + f" ({len(items)})"]
    for s in items:
        out += textwrap.wrap(
            clean(f"{s['rule']}: {s['finding']}"),
            96,
            initial_indent="  ",
            subsequent_indent="    ",
        )
        out += textwrap.wrap(
            clean(s["advice"]), 96, initial_indent="    ", subsequent_indent="    "
        )
        out += textwrap.wrap(
            clean("evidence: " + _evidence_text(s["evidence"])),
            96,
            initial_indent="    ",
            subsequent_indent="      ",
        )
    return out


def suggestion_lines(items: Sequence[Mapping[str, Any]]) -> list[str]:
    """The text report's suggestions section, without colour (the demo prints it)."""
    return _suggestions_text(items, _Style(False))


def _suggestions_markdown(items: Sequence[Mapping[str, Any]]) -> list[str]:
    if not items:
        return []
    out = ["", f"### Suggestions ({len(items)})", ""]
    out += ["| rule | phase | finding | advice | evidence |", "|---|---|---|---|---|"]
    for s in items:
        out.append(
            f"| {_md(s['rule'])} | {_md(s.get('phase') or '-')} | {_md(s['finding'])} "
            f"| {_md(s['advice'])} | {_md(_evidence_text(s['evidence']))} |"
        )
    return out


def _pct(v: float | None) -> str:
    return _num(v, "{:+.0f}%")


def _compare_text(c: Mapping[str, Any], st: _Style, unicode: bool) -> list[str]:
    a, b = c["a"], c["b"]
    t = c["totals"]
    out = [
        "",
        st("compared with run", "1") + f" {clean(b['id'], 40)}  {clean(b.get('name'), 30)}",
        f"  this run {STATUS_MARK.get(a['status'], a['status'])} {fmt_ms(a['duration_ms'])}, "
        f"that run {STATUS_MARK.get(b['status'], b['status'])} {fmt_ms(b['duration_ms'])} "
        f"({_pct(t['duration_pct'])}); peak rss {fmt_bytes(a['peak_rss_bytes'])} vs "
        f"{fmt_bytes(b['peak_rss_bytes'])}",
        f"  {'phase':<12} {'status':<12} {'this':>9} {'that':>9} {'dur':>6} {'cpu':>9} "
        f"{'cpu':>6} {'peak rss':>9} {'rss chg':>9} {'items/s':>8}",
    ]
    for r in c["phases"]:
        x, y = r["a"] or {}, r["b"] or {}
        sa, sb = str(x.get("status") or "-"), str(y.get("status") or "-")
        stat = (
            f"{STATUS_MARK.get(sa, sa)}>{STATUS_MARK.get(sb, sb)}"
            if r["status_changed"] or r["only"]
            else STATUS_MARK.get(sa, sa)
        )
        d = r["delta"]
        p = r["delta_pct"]
        out.append(
            f"  {clean('  ' * r['depth'] + r['key'], 12):<12} {clean(stat, 12):<12} "
            f"{fmt_ms(x.get('duration_ms')):>9} {fmt_ms(y.get('duration_ms')):>9} "
            f"{_pct(p['duration_ms']):>6} {fmt_ms(x.get('cpu_ms')):>9} {_pct(p['cpu_ms']):>6} "
            f"{fmt_bytes(x.get('peak_rss_bytes')):>9} "
            f"{fmt_bytes(d['peak_rss_bytes'], signed=True):>9} {_pct(p['items_per_s']):>8}"
        )
    axis = c["axis_ms"] or 0.0
    w = 38
    out.append("")
    out.append(f"  timelines on one axis ({fmt_ms(axis)}): this run, then that run")
    bars: dict[str, list[str]] = {}
    for side in ("a", "b"):
        for bar in c["gantt"][side]:
            if bar["depth"] == 0:
                cells = bars.setdefault(bar["phase"], [" " * w, " " * w])
                i = 0 if side == "a" else 1
                cells[i] = _merge_bars(
                    cells[i], _bar(bar["offset_ms"], bar["duration_ms"], axis, w, unicode)
                )
    for key, (ba, bb) in bars.items():
        out.append(f"  {clean(key, 12):<12} |{ba}| |{bb}|")
    return out


def _merge_bars(old: str, new: str) -> str:
    """Two bars of one key (a retry, a repeat) in one row of the text timeline."""
    return "".join(
        n if n != " " else o for o, n in zip(old, new[: len(old)].ljust(len(old)), strict=True)
    )


def _compare_markdown(c: Mapping[str, Any]) -> list[str]:
    a, b = c["a"], c["b"]
    out = [
        "",
        f"### Compared with run `{clean(b['id']).replace('`', '')}`",
        "",
        f"This run {a['status']} in {fmt_ms(a['duration_ms'])}, that run {b['status']} in "
        f"{fmt_ms(b['duration_ms'])} ({_pct(c['totals']['duration_pct'])}).",
        "",
        "| phase | status (this / that) | duration this | that | change | cpu this | that "
        "| change | peak rss this | that | items/s this | that | change |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in c["phases"]:
        x, y = r["a"] or {}, r["b"] or {}
        p = r["delta_pct"]
        ind = "&nbsp;&nbsp;" * r["depth"]
        out.append(
            f"| {ind}{_md(r['key'])} | {x.get('status') or '-'} / {y.get('status') or '-'}"
            f"{' **changed**' if r['status_changed'] else ''} "
            f"| {fmt_ms(x.get('duration_ms'))} | {fmt_ms(y.get('duration_ms'))} "
            f"| {_pct(p['duration_ms'])} | {fmt_ms(x.get('cpu_ms'))} | {fmt_ms(y.get('cpu_ms'))} "
            f"| {_pct(p['cpu_ms'])} | {fmt_bytes(x.get('peak_rss_bytes'))} "
            f"| {fmt_bytes(y.get('peak_rss_bytes'))} | {_num(x.get('items_per_s'), '{:.1f}')} "
            f"| {_num(y.get('items_per_s'), '{:.1f}')} | {_pct(p['items_per_s'])} |"
        )
    return out
