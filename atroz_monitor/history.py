"""Per-phase history across runs, as pure views of reducer state.

A phase key's history is one row per earlier run in which that key ended: its mean
duration per occurrence, CPU time, peak RSS and items/s, from the run's per-key aggregate
(so folded repeats and compacted history runs count exactly). Statistics, trends,
anomalies and the ETA come from ``analysis``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from . import analysis
from .events import DONE_STATUSES
from .state import RunState, State

# metric -> higher is worse
METRICS: dict[str, bool] = {
    "duration_ms": True,
    "cpu_ms": True,
    "peak_rss_bytes": True,
    "items_per_s": False,
}
HISTORY_LIMIT = 200


def _start(r: RunState) -> float:
    return r.start if r.start is not None else (r.first_ts or 0.0)


def run_tags(r: RunState) -> dict[str, str]:
    """The run's tags (``run_start`` ``tags``): ``{}`` when absent or not a mapping.

    The log is input, so entries are kept only with a string key; a number or boolean
    value (a hand-written log) is compared as its JSON text, so ``n=1000`` matches ``1000``.
    """
    raw = r.info.get("tags")
    if not isinstance(raw, dict):
        return {}
    out: dict[str, str] = {}
    for k, v in raw.items():
        if not isinstance(k, str):
            continue
        if isinstance(v, str):
            out[k] = v
        elif isinstance(v, (int, float, bool)):
            out[k] = json.dumps(v)
    return out


def matches(r: RunState, tags: Mapping[str, str] | None) -> bool:
    """Whether the run's tags include every ``key=value`` of ``tags`` (None or {}: any run)."""
    if not tags:
        return True
    have = run_tags(r)
    return all(have.get(k) == v for k, v in tags.items())


def subset(state: State, keep: Callable[[RunState], bool]) -> State:
    """A state holding only the runs ``keep`` accepts, sharing their ``RunState`` objects.

    Every view here takes a state, so restricting what they see (to runs with some tags,
    to a baseline without its subject) is cheaper and safer as a narrower state than as a
    filter threaded through each function. Read only: never feed it events.
    """
    out = State(
        max_phases=state.max_phases,
        max_samples=state.max_samples,
        max_logs=state.max_logs,
        max_artifacts=state.max_artifacts,
    )
    out.runs = {rid: r for rid, r in state.runs.items() if keep(r)}
    return out


def runs_before(
    state: State, run_id: str | None, tags: Mapping[str, str] | None = None
) -> list[RunState]:
    """Runs that started before ``run_id`` (all runs if None), oldest first; with ``tags``,
    only runs whose tags include all those ``key=value`` pairs."""
    cur = state.runs.get(run_id) if run_id is not None else None
    limit = _start(cur) if cur is not None else None
    out = [
        r
        for r in state.runs.values()
        if r.id != run_id and (limit is None or _start(r) <= limit) and matches(r, tags)
    ]
    out.sort(key=_start)
    return out


def key_row(r: RunState, key: str) -> dict[str, Any] | None:
    """One run's figures for one phase key, or None if the key never ended in it."""
    agg = r.keys.get(key)
    if agg is None or agg.count == 0:
        return None
    timed = agg.timed  # occurrences that ran: skipped and cached ones have no duration
    if agg.failed:
        status = "failed"
    elif agg.cancelled:
        status = "cancelled"
    elif timed == 0:
        status = "skipped" if agg.skipped else "cached"
    else:
        status = "completed"  # skipped or cached repeats beside completed ones do not count
    n = timed or 1
    return {
        "run": r.id,
        "start": r.start,
        "status": status,
        "count": agg.count,
        "duration_ms": round(agg.total_ms / n, 3) if timed else None,
        "cpu_ms": round(agg.cpu_ms / n, 3) if timed else None,
        "peak_rss_bytes": agg.peak_rss_bytes,
        "items": agg.items,
        "items_per_s": round(agg.items / (agg.total_ms / 1000.0), 2)
        if agg.items and agg.total_ms > 0
        else None,
    }


def rows(
    state: State, key: str, before: str | None = None, tags: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """``key_row`` of each earlier run (with ``tags``: of matching runs) where ``key`` ended."""
    out = []
    for r in runs_before(state, before, tags):
        row = key_row(r, key)
        if row is not None:
            out.append(row)
    return out


def _series(rows_: Iterable[Mapping[str, Any]], metric: str) -> list[float]:
    return [
        float(row[metric])
        for row in rows_
        if row["status"] == "completed" and isinstance(row.get(metric), (int, float))
    ]


def phase_history(
    state: State,
    key: str,
    *,
    before: str | None = None,
    limit: int = HISTORY_LIMIT,
    tags: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Every earlier run's figures for ``key`` and their statistics (completed runs); with
    ``tags``, only runs carrying all those tags."""
    rs = rows(state, key, before, tags)
    return {
        "phase": key,
        "runs": rs[-limit:],
        "count": len(rs),
        "stats": {m: analysis.describe(_series(rs, m)) for m in METRICS},
    }


def phase_trends(
    state: State,
    key: str,
    *,
    before: str | None = None,
    k: int = 10,
    tags: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Trend of each metric over the last ``k`` completed runs of ``key`` (with ``tags``,
    runs carrying all those tags)."""
    rs = rows(state, key, before, tags)
    return {
        "phase": key,
        "runs": len(rs),
        **{m: analysis.trend(_series(rs, m), k=k, higher_is_worse=hi) for m, hi in METRICS.items()},
    }


def durations_by_key(
    state: State, before: str | None = None, tags: Mapping[str, str] | None = None
) -> dict[str, list[float]]:
    """Each phase key's mean duration (ms) per earlier completed run, oldest first (with
    ``tags``, runs carrying all those tags)."""
    out: dict[str, list[float]] = {}
    for r in runs_before(state, before, tags):
        for k in r.keys:
            row = key_row(r, k)
            if row is not None and row["status"] == "completed":
                out.setdefault(k, []).append(row["duration_ms"])
    return out


def medians_s(
    state: State,
    keys: Iterable[str],
    before: str | None,
    tags: Mapping[str, str] | None = None,
) -> dict[str, float]:
    """Median duration in seconds of each key over earlier completed runs (keys with none
    are absent; with ``tags``, runs carrying all those tags)."""
    wanted = set(keys)
    per: dict[str, list[float]] = {k: [] for k in wanted}
    for r in runs_before(state, before, tags):
        for k in wanted:
            row = key_row(r, k)
            if row is not None and row["status"] == "completed":
                per[k].append(row["duration_ms"])
    return {k: analysis.describe(v)["median"] / 1000.0 for k, v in per.items() if v}


def evaluate(state: State, run_id: str, snap: dict[str, Any], now: float) -> None:
    """Add ETA, weighted progress and anomalies against history to a snapshot (in place)."""
    flow = snap.get("flow") or []
    plan = [f["id"] for f in flow]
    done = [f["id"] for f in flow if f["status"] in DONE_STATUSES]
    medians = medians_s(state, plan, run_id)
    prog = snap["progress"]
    weighted = analysis.progress(plan, done, medians) if plan else {}
    prog["pct_weighted"] = weighted.get("pct_weighted")
    if snap["run"]["status"] == "running" and plan:
        phases = {p["span"]: p for p in snap["phases"]}
        running: dict[str, dict[str, float]] = {}
        for f in flow:
            p = phases.get(f["span"]) if f["status"] == "running" else None
            if p is None:
                continue
            elapsed = max(0.0, now - p["start"]) if p.get("start") is not None else 0.0
            running[f["id"]] = {"elapsed": elapsed, "items": p.get("items") or 0}
            if p.get("total"):
                running[f["id"]]["total"] = p["total"]
        e = analysis.eta(plan, done, running, medians)
        if any(f.get("after") for f in flow) and e["eta_s"] is not None:
            # A DAG plan: the longest remaining path, not the sum (branches overlap).
            rem: dict[str, float | None] = {}
            for k in plan:
                if k in done:
                    rem[k] = 0.0
                else:
                    one = analysis.eta([k], [], {k: running[k]} if k in running else {},
                                       medians)  # fmt: skip
                    rem[k] = one["eta_s"]
            e["eta_s"] = analysis.eta_dag({f["id"]: f.get("after") or [] for f in flow}, rem)
        prog["eta_s"] = None if e["eta_s"] is None else round(e["eta_s"], 3)
        prog["eta_basis"] = e.get("basis")
        prog["missing_history"] = e.get("missing_history", [])
        prog["overdue"] = e.get("overdue", [])
    else:
        prog["eta_s"] = 0.0 if snap["run"]["status"] != "running" else None
        prog["eta_basis"] = None
        prog["missing_history"] = []
        prog["overdue"] = []
    prog["history_runs"] = len(runs_before(state, run_id))
    anomalies = []
    for p in snap["phases"]:
        if p.get("depth") or p["status"] != "completed" or p.get("duration_ms") is None:
            continue
        hist = _series(rows(state, p["phase"], run_id), "duration_ms")
        a = analysis.anomaly(p["duration_ms"], hist)
        if a is not None and a.get("flag"):
            anomalies.append(
                {
                    "span": p["span"],
                    "phase": p["phase"],
                    "metric": "duration_ms",
                    "value": p["duration_ms"],
                    **a,
                }
            )
    snap["anomalies"] = anomalies


def summary(state: State, statuses: Mapping[str, str], now: float | None = None) -> dict[str, Any]:
    """All runs at a glance: counts by status, open alerts by severity, phase averages."""
    counts = {"running": 0, "completed": 0, "failed": 0, "interrupted": 0, "cancelled": 0}
    alerts = {"open": 0, "info": 0, "warning": 0, "critical": 0}
    keys: dict[str, dict[str, float]] = {}
    for r in state.runs.values():
        st = statuses.get(r.id, r.status)
        counts[st] = counts.get(st, 0) + 1
        for a in r.alerts.values():
            if a.get("state") in ("raised", "acknowledged"):
                alerts["open"] += 1
                sev = a.get("severity")
                if isinstance(sev, str):
                    alerts[sev] = alerts.get(sev, 0) + 1
        for k, agg in r.keys.items():
            row = keys.setdefault(k, {"count": 0, "timed": 0, "total_ms": 0.0})
            row["count"] += agg.count
            row["timed"] += agg.timed  # skipped and cached ones have no duration
            row["total_ms"] += agg.total_ms
    return {
        "runs": {"total": len(state.runs), "active": counts["running"], **counts},
        "alerts": alerts,
        "phases": {
            k: {
                "count": v["count"],
                "mean_ms": round(v["total_ms"] / v["timed"], 3) if v["timed"] else None,
            }
            for k, v in sorted(keys.items())
            if v["count"]
        },
    }


Statuses = Callable[[RunState], str]
