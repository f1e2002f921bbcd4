"""Performance charts across runs: per-phase trends and the phase x run heatmap.

Pure views over *per-run rows*, oldest first, each ``{"run", "start", "status", "phases":
{key: {"name", "top", "status", "duration_ms", "cpu_ms", "peak_rss_bytes", "items",
"items_per_s"}}}``: the shape of a catalog summary, so a directory's catalog and a reducer
state (``rows_from_state``) feed the same functions. The page and the HTML report draw what
``history_view`` returns; nothing is computed in the browser.
"""

from __future__ import annotations

import heapq
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from ..read import catalog
from ..read.state import RunState, State
from . import analysis, history

__all__ = ["HEAT_METRICS", "RUNS_SHOWN", "history_view", "row_of", "rows_from_state"]

#: Metrics the heatmap can show, and whether a trend chart is drawn for them.
HEAT_METRICS = ("duration_ms", "cpu_ms", "peak_rss_bytes")
#: Runs shown by default (the newest; the subject last).
RUNS_SHOWN = 20
# The colour scale: log2(value / the phase's median) clamped to +-LEVEL_RANGE, so twice the
# median is the hottest cell and noise of a few percent stays pale whatever the phase's size.
LEVEL_RANGE = 1.0


def _start(r: RunState) -> float:
    return r.start if r.start is not None else (r.first_ts or 0.0)


def _outputs(r: RunState) -> dict[str, str]:
    """Per key, what its phases produced: the artifacts (file name and size), the items and
    the ``inputs`` the code declared in the phase's ``meta``. Equal text in two runs means
    the same outputs: the evidence of the "cacheable" suggestion. Keys without artifacts or
    declared inputs have none (items alone say too little)."""
    parts: dict[str, list[str]] = {}
    items: dict[str, int] = {}
    for rec in r.phases.values():
        if rec.end is None:
            continue
        arts = [
            f"{os.path.basename(str(a.get('path')))}:{a.get('bytes')}"
            for a in rec.artifacts or ()
            if isinstance(a, dict)
        ]
        meta = rec.meta if isinstance(rec.meta, dict) else {}
        inputs = meta.get("inputs")
        if arts or inputs is not None:
            parts.setdefault(rec.phase, []).extend(arts)
            if inputs is not None:
                parts[rec.phase].append(f"inputs={inputs!r}")
        items[rec.phase] = items.get(rec.phase, 0) + rec.items
    return {k: "|".join(sorted(v)) + f"|items={items.get(k, 0)}" for k, v in parts.items()}


def row_of(r: RunState) -> dict[str, Any]:
    """One run as a per-run row (the keys of a catalog summary that the charts and the
    suggestions read, plus ``outputs`` where the run's records still hold them)."""
    top = {rec.phase for span in r.roots if (rec := r.phases.get(span)) is not None}
    top.update(r.folded)
    names = {rec.phase: rec.name for rec in r.phases.values()}
    outputs = _outputs(r) if r.phases else {}
    phases: dict[str, dict[str, Any]] = {}
    summary = catalog.summarize(r)  # once: each key_row of a RunState would summarise it again
    for key in r.keys:
        row = history.key_row(summary, key)
        if row is None:
            continue
        entry = {
            "name": names.get(key, key),
            "top": key in top or not r.phases,
            "status": row["status"],
            "duration_ms": row["duration_ms"],
            "cpu_ms": row["cpu_ms"],
            "peak_rss_bytes": row["peak_rss_bytes"],
            "items": row["items"],
            "items_per_s": row["items_per_s"],
        }
        if key in outputs:
            entry["outputs"] = outputs[key]
        phases[key] = entry
    plan = r.info.get("plan")
    return {
        "run": r.id,
        "name": r.info.get("name") if isinstance(r.info.get("name"), str) else None,
        "start": _start(r),
        "status": r.status if r.end is not None else "running",
        "detail": bool(r.phases),  # False: a compacted run, which cannot tell sub-phases
        "plan": [p["id"] for p in plan if isinstance(p, dict) and isinstance(p.get("id"), str)]
        if isinstance(plan, list)
        else [],
        "phases": phases,
    }


_ROW_FIELDS = ("name", "top", "status", "duration_ms", "cpu_ms", "peak_rss_bytes", "items",
               "items_per_s")  # fmt: skip


def row_from_summary(s: Mapping[str, Any]) -> dict[str, Any]:
    """One run as a per-run row from its catalog summary (``catalog.summarize``): what
    ``serve`` holds for a finished run, so the charts never reduce a log for history."""
    ph = s.get("phases") or {}
    phases = {}
    for key in ph:
        d = ph[key]
        phases[key] = {f: d.get(f) for f in _ROW_FIELDS}
    start = s.get("start")
    plan = s.get("plan")
    return {
        "run": s.get("run"),
        "name": s.get("name"),
        "start": float(start) if isinstance(start, (int, float)) else 0.0,
        "status": s.get("status"),
        "detail": True,  # a summary keeps each key's top-level flag
        "plan": list(plan) if isinstance(plan, list) else [],
        "phases": phases,
    }


def rows_from_summaries(
    summaries: Sequence[Mapping[str, Any]], upto: str, *, limit: int = RUNS_SHOWN
) -> list[dict[str, Any]]:
    """Rows of the ``limit`` newest runs of ``summaries`` (oldest first) up to and including
    ``upto``; only those are converted. An unknown ``upto``: the newest runs."""
    end = len(summaries)
    for i in range(len(summaries) - 1, -1, -1):
        if summaries[i].get("run") == upto:
            end = i + 1
            break
    return [row_from_summary(s) for s in summaries[max(0, end - limit) : end]]


def rows_from_state(
    state: State, upto: str | None = None, *, limit: int = RUNS_SHOWN
) -> list[dict[str, Any]]:
    """Rows of the ``limit`` newest runs that started no later than ``upto`` (the subject,
    included; None: every run), oldest first. Only those runs are summarised."""
    cur = state.runs.get(upto) if upto is not None else None
    edge = _start(cur) if cur is not None else math.inf
    if limit <= 0:
        return []
    # The newest runs only (a heap of `limit`): 10,000 earlier runs cost a pass, no sort.
    runs = heapq.nlargest(
        limit, (r for r in state.runs.values() if _start(r) <= edge and r is not cur), key=_start
    )
    runs.reverse()
    if cur is not None:
        runs = runs[1:] + [cur] if len(runs) >= limit else runs + [cur]
    return [row_of(r) for r in runs]


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _order(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Top-level keys: the newest run's plan order, then first appearance (newest run first,
    so a phase removed long ago sorts last)."""
    keys: dict[str, None] = {}
    for row in reversed(rows):
        for k in row.get("plan") or ():
            keys.setdefault(k, None)
    for row in reversed(rows):
        for k, p in (row.get("phases") or {}).items():
            if p.get("top", True):
                keys.setdefault(k, None)
    # A run without its records (compacted) marks every key top-level: trust the others.
    judged = [row for row in rows if row.get("detail", True)] or rows
    present = {
        k for row in judged for k, p in (row.get("phases") or {}).items() if p.get("top", True)
    }
    return [k for k in keys if k in present]


def history_view(
    rows: Sequence[Mapping[str, Any]], *, limit: int = RUNS_SHOWN, trend_k: int = 10
) -> dict[str, Any]:
    """Trends and heatmap cells of every top-level phase over the last ``limit`` rows.

    Per phase and metric (``HEAT_METRICS``): ``values`` (one per run, None where the phase
    did not complete there), ``median`` of those values, ``level`` per run (log2 of value /
    median, clamped to +-1: 0 is typical, 1 twice the median, -1 half; None without a
    value), ``ratio`` per run (value / median, 2 decimals: the cell's tooltip) and ``trend``
    (``analysis.trend`` of the values, Theil-Sen over ``trend_k``).
    ``status`` per run is the phase's status there (None: absent).
    """
    shown = list(rows[-limit:]) if limit > 0 else []
    runs = [
        {"run": r.get("run"), "start": r.get("start"), "status": r.get("status")} for r in shown
    ]
    phases = []
    for key in _order(shown):
        cells = [(r.get("phases") or {}).get(key) for r in shown]
        name = next((c.get("name") for c in reversed(cells) if c and c.get("name")), key)
        entry: dict[str, Any] = {
            "key": key,
            "name": name,
            "status": [c.get("status") if c else None for c in cells],
            "metrics": {},
        }
        for m in HEAT_METRICS:
            values = [
                _num(c.get(m)) if c and c.get("status") == "completed" else None for c in cells
            ]
            present = [v for v in values if v is not None]
            med = analysis.describe(present)["median"] if present else None
            level = [
                None
                if v is None or not med
                else round(max(-LEVEL_RANGE, min(LEVEL_RANGE, math.log2(max(v, 1e-9) / med))), 3)
                for v in values
            ]
            entry["metrics"][m] = {
                "values": values,
                "median": med,
                "level": level,
                "ratio": [None if v is None or not med else round(v / med, 2) for v in values],
                "trend": analysis.trend(present, k=trend_k),
            }
        phases.append(entry)
    return {"runs": runs, "phases": phases, "metrics": list(HEAT_METRICS)}
