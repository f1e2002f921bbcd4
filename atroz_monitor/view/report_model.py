"""The report's model: one run's figures as plain data (phase rows with repeats folded,
critical path, slowest phases, errors, history per key, comparison with a baseline), built
from the snapshot every surface reads.

Pure: the text, markdown and HTML renderings (``surface.report_text``, ``surface.page``) and
``report --format json`` all read this model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..events import cpu_avg_pct, items_per_s
from ..read.state import State
from ..view import analysis, history, views
from .alerts import merge_alerts, with_alerts

REPORT_SCHEMA = 1


METRICS = {  # --metric name -> (phase field, history metric, higher is worse, default floor)
    "duration": ("duration_ms", "duration_ms", True, 5.0),
    "cpu": ("cpu_ms", "cpu_ms", True, 5.0),
    "rss": ("peak_rss_bytes", "peak_rss_bytes", True, 1024.0 * 1024),
    "items_per_s": ("items_per_s", "items_per_s", False, 0.0),
}


class ReportError(Exception):
    """Input that yields no report: one line on stderr, exit 2."""


def ordered_rows(snap: dict[str, Any], depth: int) -> list[dict[str, Any]]:
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
    rows = ordered_rows(snap, depth)
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
