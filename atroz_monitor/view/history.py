"""Per-phase history across runs, as pure views of run summaries.

Every view takes ``runs``: the catalog's run summaries (``catalog.summarize``), oldest first
by start, or a reducer ``State`` (summarised once per state version). A phase key's history
is one row per earlier run in which that key ended: its mean duration per occurrence, CPU
time, peak RSS and items/s, from the run's per-key aggregate (so folded repeats and
compacted history runs count exactly). Statistics, trends, anomalies and the ETA come from
``analysis``. Reading summaries, not logs, is what keeps history's cost flat as runs
accumulate (issue 13).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ..events import DONE_STATUSES
from ..read import catalog
from ..read.state import RunState, State
from . import analysis

# metric -> higher is worse
METRICS: dict[str, bool] = {
    "duration_ms": True,
    "cpu_ms": True,
    "peak_rss_bytes": True,
    "items_per_s": False,
}
HISTORY_LIMIT = 200

Summary = Mapping[str, Any]
Runs = State | Sequence[Summary]
"""Catalog summaries oldest first, or a state (its runs summarised)."""

# state -> (run id -> (events applied when summarised, summary)), (token, sorted list)
_cache: weakref.WeakKeyDictionary[State, dict[str, Any]] = weakref.WeakKeyDictionary()


def as_summaries(runs: Runs) -> Sequence[Summary]:
    """``runs`` as summaries oldest first. A state's runs are summarised once each and
    again only when events were applied to them, so a live run does not make every other
    run of the state cost again."""
    if not isinstance(runs, State):
        return runs
    c = _cache.get(runs)
    if c is None:
        c = _cache[runs] = {"runs": {}, "token": None, "list": []}
    per: dict[str, tuple[int, dict[str, Any]]] = c["runs"]
    changed = len(per) != len(runs.runs)
    for rid, r in runs.runs.items():
        hit = per.get(rid)
        if hit is None or hit[0] != r.events:
            per[rid] = (r.events, catalog.summarize(r))
            changed = True
    if changed:
        for rid in [rid for rid in per if rid not in runs.runs]:
            del per[rid]
        c["list"] = sorted((v[1] for v in per.values()), key=catalog.start_of)
    return c["list"]  # type: ignore[no-any-return]


def _start(s: Summary) -> float:
    return catalog.start_of(s)


def run_tags(r: RunState) -> dict[str, str]:
    """The run's tags (``run_start`` ``tags``): ``{}`` when absent or not a mapping.

    The log is input, so entries are kept only with a string key; a number or boolean
    value (a hand-written log) is compared as its JSON text, so ``n=1000`` matches ``1000``.
    """
    return catalog.clean_tags(r.info.get("tags"))


def matches(r: RunState | Summary, tags: Mapping[str, str] | None) -> bool:
    """Whether the run's tags (a ``RunState`` or a summary) include every ``key=value`` of
    ``tags`` (None or {}: any run)."""
    if not tags:
        return True
    have = run_tags(r) if isinstance(r, RunState) else (r.get("tags") or {})
    return all(have.get(k) == v for k, v in tags.items())


def subset(state: State, keep: Callable[[RunState], bool]) -> State:
    """A state holding only the runs ``keep`` accepts, sharing their ``RunState`` objects.

    Restricting what the views see (to runs with some tags, to a baseline without its
    subject) is cheaper and safer as a narrower state than as a filter threaded through
    each function. Read only: never feed it events.
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
    runs: Runs, run_id: str | None = None, tags: Mapping[str, str] | None = None
) -> list[Summary]:
    """Runs that started before ``run_id`` (all runs if None or not among ``runs``), oldest
    first; with ``tags``, only runs whose tags include all those ``key=value`` pairs."""
    seq = as_summaries(runs)
    limit: float | None = None
    if run_id is not None:
        for s in seq:
            if s["run"] == run_id:
                limit = _start(s)
                break
    out = [
        s
        for s in seq
        if s["run"] != run_id and (limit is None or _start(s) <= limit) and matches(s, tags)
    ]
    out.sort(key=_start)
    return out


def key_row(s: Summary | RunState, key: str) -> dict[str, Any] | None:
    """One run's figures for one phase key, or None if the key never ended in it."""
    if isinstance(s, RunState):
        s = catalog.summarize(s)
    p = (s.get("phases") or {}).get(key)
    if p is None or not p.get("count"):
        return None
    return {
        "run": s["run"],
        "start": s.get("start"),
        "status": p["status"],
        "count": p["count"],
        "duration_ms": p.get("duration_ms"),
        "cpu_ms": p.get("cpu_ms"),
        "peak_rss_bytes": p.get("peak_rss_bytes"),
        "items": p.get("items", 0),
        "items_per_s": p.get("items_per_s"),
    }


def rows(
    runs: Runs, key: str, before: str | None = None, tags: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """``key_row`` of each earlier run (with ``tags``: of matching runs) where ``key`` ended."""
    out = []
    for s in runs_before(runs, before, tags):
        row = key_row(s, key)
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
    runs: Runs,
    key: str,
    *,
    before: str | None = None,
    limit: int = HISTORY_LIMIT,
    tags: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Every earlier run's figures for ``key`` and their statistics (completed runs); with
    ``tags``, only runs carrying all those tags."""
    rs = rows(runs, key, before, tags)
    return {
        "phase": key,
        "runs": rs[-limit:],
        "count": len(rs),
        "stats": {m: analysis.describe(_series(rs, m)) for m in METRICS},
    }


def phase_trends(
    runs: Runs,
    key: str,
    *,
    before: str | None = None,
    k: int = 10,
    tags: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Trend of each metric over the last ``k`` completed runs of ``key`` (with ``tags``,
    runs carrying all those tags)."""
    rs = rows(runs, key, before, tags)
    return {
        "phase": key,
        "runs": len(rs),
        **{m: analysis.trend(_series(rs, m), k=k, higher_is_worse=hi) for m, hi in METRICS.items()},
    }


def durations_by_key(
    runs: Runs, before: str | None = None, tags: Mapping[str, str] | None = None
) -> dict[str, list[float]]:
    """Each phase key's mean duration (ms) per earlier completed run, oldest first (with
    ``tags``, runs carrying all those tags)."""
    out: dict[str, list[float]] = {}
    for s in runs_before(runs, before, tags):
        for k, d in completed_ms(s):
            out.setdefault(k, []).append(d)
    return out


def completed_ms(s: Summary) -> Iterable[tuple[str, float]]:
    """(key, mean duration in ms) of each key that completed in the run."""
    ph = s.get("phases")
    if isinstance(ph, catalog.Phases):
        return ph.completed_ms()
    return [
        (k, p["duration_ms"])
        for k, p in (ph or {}).items()
        if p.get("status") == "completed" and p.get("duration_ms") is not None
    ]


def medians_s(
    runs: Runs,
    keys: Iterable[str],
    before: str | None,
    tags: Mapping[str, str] | None = None,
) -> dict[str, float]:
    """Median duration in seconds of each key over earlier completed runs (keys with none
    are absent; with ``tags``, runs carrying all those tags)."""
    wanted = set(keys)
    per: dict[str, list[float]] = {k: [] for k in wanted}
    for s in runs_before(runs, before, tags):
        for k, d in completed_ms(s):
            if k in wanted:
                per[k].append(d)
    return {k: analysis.describe(v)["median"] / 1000.0 for k, v in per.items() if v}


def evaluate(runs: Runs, run_id: str, snap: dict[str, Any], now: float) -> None:
    """Add ETA, weighted progress and anomalies against history (``runs``: the earlier runs'
    summaries; the current one may be among them) to a snapshot (in place)."""
    earlier = runs_before(runs, run_id)
    flow = snap.get("flow") or []
    plan = [f["id"] for f in flow]
    done = [f["id"] for f in flow if f["status"] in DONE_STATUSES]
    medians = medians_s(earlier, plan, None)
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
            if p.get("start") is not None and p.get("items_ts") is not None:
                # The item count is as of its progress line, not now: the rate divides it by
                # the time elapsed at that line (dividing by now's would swing and overshoot).
                running[f["id"]]["items_elapsed"] = min(
                    elapsed, max(0.0, p["items_ts"] - p["start"])
                )
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
    prog["history_runs"] = len(earlier)
    anomalies = []
    for p in snap["phases"]:
        if p.get("depth") or p["status"] != "completed" or p.get("duration_ms") is None:
            continue
        hist = _series(rows(earlier, p["phase"]), "duration_ms")
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


def summary(
    runs: Runs, statuses: Mapping[str, str] | None = None, now: float | None = None
) -> dict[str, Any]:
    """All runs at a glance: counts by status, open alerts by severity, phase averages.
    ``statuses`` overrides a run's status by id (liveness judged by the caller)."""
    counts = {"running": 0, "completed": 0, "failed": 0, "interrupted": 0, "cancelled": 0}
    alerts = {"open": 0, "info": 0, "warning": 0, "critical": 0}
    keys: dict[str, list[float]] = {}
    seq = as_summaries(runs)
    statuses = statuses or {}
    for s in seq:
        st = statuses.get(s["run"], s.get("status") or "running")
        counts[st] = counts.get(st, 0) + 1
        for a in s.get("alerts") or ():
            if a.get("state") in ("raised", "acknowledged") and not a.get("cleared"):
                alerts["open"] += 1
                sev = a.get("severity")
                if isinstance(sev, str):
                    alerts[sev] = alerts.get(sev, 0) + 1
        ph = s.get("phases") or {}
        # Catalog summaries add up from their compact arrays (no dict per key and run).
        totals = (
            ph.totals()
            if isinstance(ph, catalog.Phases)
            else (
                (k, p.get("count") or 0, p.get("timed") or 0, p.get("total_ms") or 0.0)
                for k, p in ph.items()
            )
        )
        for k, count, timed, total in totals:
            row = keys.setdefault(k, [0, 0, 0.0])
            row[0] += count
            row[1] += timed  # skipped and cached ones have no duration
            row[2] += total
    return {
        "runs": {"total": len(seq), "active": counts["running"], **counts},
        "alerts": alerts,
        "phases": {
            k: {
                "count": int(v[0]),
                "mean_ms": round(v[2] / v[1], 3) if v[1] else None,
            }
            for k, v in sorted(keys.items())
            if v[0]
        },
    }


Statuses = Callable[[RunState], str]
