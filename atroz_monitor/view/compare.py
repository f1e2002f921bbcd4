"""Two runs side by side: per-phase figures, their differences, and both timelines.

``compare_runs(a, b)`` is a pure function of two snapshots (``views.snapshot``): run ``a``
is the subject, ``b`` the reference, so a delta is ``a - b`` and a percentage is relative to
``b`` (as ``report --baseline`` measures the subject against its baseline). The page
(``/?run=A&compare=B``, ``/api/v1/compare``) and ``report A --compare B`` show what this
returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..events import items_per_s

__all__ = ["FIGURES", "MAX_BARS", "compare_runs"]

#: The figures compared per phase key (all higher-is-worse except items/s).
FIGURES = ("duration_ms", "cpu_ms", "peak_rss_bytes", "items_per_s")
#: Timeline bars kept per run (the first ones in time order).
MAX_BARS = 300


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _key_figures(snap: Mapping[str, Any], depth: int) -> dict[str, dict[str, Any]]:
    """Per phase key with a record at ``depth`` or less: status, the sums over its
    occurrences (a key run in a loop or retried is compared as a whole) and its place."""
    plan = [p.get("id") for p in snap["run"].get("plan") or [] if isinstance(p, dict)]
    keys = snap.get("keys") or {}
    key_of = {p["span"]: p["phase"] for p in snap["phases"]}
    out: dict[str, dict[str, Any]] = {}
    for p in snap["phases"]:
        d = p.get("depth", 0)
        if d > depth:
            continue
        k = p["phase"]
        row = out.get(k)
        if row is None:
            agg = keys.get(k) or {}
            total = _num(agg.get("total_ms"))
            timed = (agg.get("count") or 0) - (agg.get("skipped") or 0) - (agg.get("cached") or 0)
            items = agg.get("items") or 0
            row = out[k] = {
                "key": k,
                "name": p.get("name") or k,
                "depth": d,
                "offset_ms": p.get("offset_ms"),
                "count": agg.get("count") or 0,
                "duration_ms": total if timed else p.get("duration_ms"),
                "cpu_ms": _num(agg.get("cpu_ms")) if timed else p.get("cpu_ms"),
                "peak_rss_bytes": agg.get("peak_rss_bytes", p.get("peak_rss_bytes")),
                "items_per_s": items_per_s(items, total)
                if items and total
                else p.get("items_per_s"),
                "status": p["status"],
                "plan": plan.index(k) if k in plan else len(plan),
                "parent": key_of.get(p.get("parent")) if d else None,
            }
        else:
            row["depth"] = min(row["depth"], d)
            # The key's status is its latest record's (a retry that succeeded is completed).
            row["status"] = p["status"]
    for f in snap.get("flow") or []:
        if f["id"] not in out:
            out[f["id"]] = {
                "key": f["id"],
                "name": f.get("name") or f["id"],
                "depth": 0,
                "offset_ms": None,
                "count": 0,
                "duration_ms": None,
                "cpu_ms": None,
                "peak_rss_bytes": None,
                "items_per_s": None,
                "status": f["status"],
                "plan": plan.index(f["id"]),
                "parent": None,
            }
    return out


def _bars(snap: Mapping[str, Any], depth: int) -> list[dict[str, Any]]:
    bars = [
        {
            "span": p["span"],
            "phase": p["phase"],
            "name": p.get("name") or p["phase"],
            "depth": p.get("depth", 0),
            "offset_ms": p["offset_ms"],
            "duration_ms": p.get("duration_ms") or 0.0,
            "status": p["status"],
        }
        for p in snap["phases"]
        if p.get("depth", 0) <= depth and p.get("offset_ms") is not None
    ]
    return bars[:MAX_BARS]


def _run(snap: Mapping[str, Any]) -> dict[str, Any]:
    r = snap["run"]
    res = snap.get("resources") or {}
    return {
        "id": r["id"],
        "name": r.get("name"),
        "status": r.get("status"),
        "start": r.get("start"),
        "duration_ms": r.get("duration_ms"),
        "host": r.get("host"),
        "tags": r.get("tags") or {},
        "peak_rss_bytes": res.get("peak_tree_rss_bytes") or res.get("peak_rss_bytes"),
        "errors": (snap.get("logs") or {}).get("errors", 0),
    }


def _delta(a: float | None, b: float | None) -> tuple[float | None, float | None]:
    if a is None or b is None:
        return None, None
    return round(a - b, 3), (round((a - b) / b * 100.0, 1) if b else None)


def compare_runs(a: Mapping[str, Any], b: Mapping[str, Any], *, depth: int = 1) -> dict[str, Any]:
    """Run ``a`` against run ``b`` (two snapshots), phase key by phase key.

    ``phases``: one row per key with a record at ``depth`` or less in either run (plan
    order, then as they ran in ``a``, then ``b``): ``key``, ``name``, ``depth``, ``a`` and
    ``b`` (``status``, ``count``, ``duration_ms``, ``cpu_ms``, ``peak_rss_bytes``,
    ``items_per_s``, ``offset_ms``; None where absent), ``delta`` (per figure ``a - b``)
    and ``delta_pct`` (per figure, relative to ``b``), ``status_changed``, and ``only``
    ("a", "b" or None). Durations and CPU are sums over the key's occurrences. ``gantt``:
    each run's bars (``offset_ms``, ``duration_ms``, ``depth``, ``status``) on one shared
    axis of ``axis_ms`` (the longer run). ``a`` and ``b`` hold each run's header (id, name,
    status, start, duration, host, tags, peak RSS of the process tree, errors) and ``totals``
    compares them whole (duration and peak RSS changes, keys whose status changed).
    """
    fa, fb = _key_figures(a, depth), _key_figures(b, depth)
    ra, rb = _run(a), _run(b)
    rows = [_row(k, fa.get(k), fb.get(k)) for k in _key_order(fa, fb)]
    bars_a, bars_b = _bars(a, depth), _bars(b, depth)
    ends = [bar["offset_ms"] + bar["duration_ms"] for bar in bars_a + bars_b]
    axis = max([_num(ra["duration_ms"]) or 0.0, _num(rb["duration_ms"]) or 0.0, *ends])
    dur_d, dur_p = _delta(_num(ra["duration_ms"]), _num(rb["duration_ms"]))
    rss_d, rss_p = _delta(_num(ra["peak_rss_bytes"]), _num(rb["peak_rss_bytes"]))
    return {
        "a": ra,
        "b": rb,
        "depth": depth,
        "totals": {
            "duration_ms": dur_d,
            "duration_pct": dur_p,
            "peak_rss_bytes": rss_d,
            "peak_rss_pct": rss_p,
            "status_changed": [r["key"] for r in rows if r["status_changed"]],
        },
        "phases": rows,
        "axis_ms": round(axis, 3),
        "gantt": {"a": bars_a, "b": bars_b},
    }


def _key_order(
    fa: Mapping[str, Mapping[str, Any]], fb: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """Top-level keys in plan order, then as they ran (in ``a``, then ``b``); each key's
    sub-phase keys beneath it."""

    def rank(k: str) -> tuple[Any, ...]:
        x, y = fa.get(k), fb.get(k)
        first = x or y or {}
        return (
            min(x["plan"] if x else 10**9, y["plan"] if y else 10**9),
            0 if x else 1,
            _num(first.get("offset_ms")) or 0.0,
            k,
        )

    kids: dict[str | None, list[str]] = {}
    for k in set(fa) | set(fb):
        parent = (fa.get(k) or fb[k]).get("parent")
        kids.setdefault(parent if parent != k else None, []).append(k)
    order: list[str] = []
    seen: set[str] = set()
    stack = sorted(kids.get(None, []), key=rank, reverse=True)
    while stack:
        k = stack.pop()
        if k in seen:
            continue
        seen.add(k)
        order.append(k)
        stack.extend(sorted(kids.get(k, []), key=rank, reverse=True))
    order += sorted((k for k in set(fa) | set(fb) if k not in seen), key=rank)
    return order


def _row(k: str, x: Mapping[str, Any] | None, y: Mapping[str, Any] | None) -> dict[str, Any]:
    """Key ``k`` in both runs (``x`` in ``a``, ``y`` in ``b``; None where it did not run)."""
    side = {
        name: None
        if row is None
        else {
            f: row[f]
            for f in ("status", "count", "offset_ms", "duration_ms", "cpu_ms")
            + ("peak_rss_bytes", "items_per_s")
        }
        for name, row in (("a", x), ("b", y))
    }
    delta: dict[str, float | None] = {}
    pct: dict[str, float | None] = {}
    for f in FIGURES:
        delta[f], pct[f] = _delta(_num(x.get(f)) if x else None, _num(y.get(f)) if y else None)
    return {
        "key": k,
        "name": (x or y or {}).get("name", k),
        "depth": min(r["depth"] for r in (x, y) if r is not None),
        **side,
        "delta": delta,
        "delta_pct": pct,
        "status_changed": x is not None and y is not None and x["status"] != y["status"],
        "only": "a" if y is None else ("b" if x is None else None),
    }
