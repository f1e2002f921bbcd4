"""Per-phase history across runs, as pure views of run summaries.

Every view takes ``runs``: the catalog's run summaries (``catalog.summarize``), oldest first
by start, or a reducer ``State`` (summarised once per state version). A phase key's history
is one row per earlier run in which that key ended: its mean duration per occurrence, CPU
time, peak RSS and items/s, from the run's per-key aggregate (so folded repeats and
compacted history runs count exactly). Statistics, trends, anomalies and the ETA come from
``analysis``. Reading summaries, not logs, is what keeps history's cost flat as runs
accumulate (issue 13).

These functions compute from scratch. ``Index`` gives the same answers (``summary``,
``phase_history``, ``phase_trends``) from aggregates folded once per run, for ``serve``,
where a pass over 10,000 summaries per answer would cost every first visitor.
"""

from __future__ import annotations

import bisect
import math
import weakref
from array import array
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
    t = Totals()
    statuses = statuses or {}
    for s in as_summaries(runs):
        t.fold(s, statuses.get(s["run"], s.get("status") or "running"))
    return t.view()


# -- the maintained aggregates ----------------------------------------------------------------

_EXP = 1074
"""Every finite float is an integer number of 2**-1074: sums kept in that unit are exact."""
_UNIT = 1 << _EXP


def _exact(x: Any) -> int | None:
    """``x`` in units of 2**-1074 (None for a non-finite or non-number value). Sums of these
    are exact, so a total folded in any order, and with runs taken out again, is the same
    number as one added up from scratch."""
    if type(x) is bool:
        return int(x) << _EXP
    try:
        n, d = x.as_integer_ratio()
    except (AttributeError, OverflowError, ValueError):
        return None
    return int(n) << (_EXP + 1 - int(d).bit_length())


class _Sum:
    """An exact sum of durations, updatable both ways. A value on the millisecond grid the
    catalog writes (``round(x, 3)``, the float nearest some n / 1000) counts as n / 1000 and
    is added up as the integer n; any other finite value is added exactly in units of
    2**-1074; non-finite ones are counted apart. The same runs give the same sum in any
    order, and taking a run out restores the sum before it."""

    __slots__ = ("milli", "exact", "odd")

    def __init__(self) -> None:
        self.milli = 0
        self.exact = 0
        self.odd: dict[str, int] | None = None  # "inf", "-inf", "nan", "other" -> count

    def add(self, x: Any, sign: int) -> None:
        if type(x) is float and -1e15 < x < 1e15:
            m = round(x * 1000.0)
            if m / 1000 == x:
                self.milli += m if sign > 0 else -m
                return
        elif type(x) is int:
            self.milli += 1000 * x if sign > 0 else -1000 * x
            return
        e = _exact(x)
        if e is not None:
            self.exact += e if sign > 0 else -e
            return
        k = "other" if not isinstance(x, float) else "nan" if x != x else repr(x)
        odd = self.odd if self.odd is not None else {}
        odd[k] = odd.get(k, 0) + sign
        self.odd = {a: b for a, b in odd.items() if b} or None

    def value(self) -> float:
        try:  # int / int: correctly rounded
            v = (self.milli * _UNIT + 1000 * self.exact) / (1000 * _UNIT)
        except OverflowError:
            v = math.inf if self.milli * _UNIT + 1000 * self.exact > 0 else -math.inf
        odd = self.odd
        if odd:
            if "other" in odd or "nan" in odd or ("inf" in odd and "-inf" in odd):
                return math.nan
            v += math.inf if "inf" in odd else -math.inf
        return v

    def copy(self) -> _Sum:
        c = _Sum()
        c.milli, c.exact, c.odd = self.milli, self.exact, dict(self.odd) if self.odd else None
        return c


def _key_totals(ph: Any) -> Iterable[tuple[str, Any, Any, Any]]:
    """(key, count, timed, total_ms) of each phase key of a summary."""
    if isinstance(ph, catalog.Phases):
        return ph.totals()
    return (
        (k, p.get("count") or 0, p.get("timed") or 0, p.get("total_ms") or 0.0)
        for k, p in ph.items()
    )


_STATUSES = ("running", "completed", "failed", "interrupted", "cancelled")
_SEVERITIES = ("info", "warning", "critical")


class Totals:
    """What ``summary`` adds up over runs, folded one run at a time and exactly undoable:
    runs by status, open alerts by severity, per phase key its count, timed count and
    total duration (an exact sum: the same whatever order runs came and went in)."""

    __slots__ = ("runs", "statuses", "alerts", "keys")

    def __init__(self) -> None:
        self.runs = 0
        self.statuses: dict[str, int] = {}
        self.alerts: dict[str, int] = {}
        self.keys: dict[str, list[Any]] = {}  # key -> [entries, count, timed, _Sum]

    def fold(self, s: Summary, status: str, sign: int = 1) -> None:
        """Add (``sign`` 1) or take out (-1) one run's summary, counted as ``status``."""
        self.fold_run(s, status, sign)
        for k, count, timed, total in _key_totals(s.get("phases") or {}):
            self.fold_key(k, count, timed, total, sign)

    def fold_run(self, s: Summary, status: str, sign: int) -> None:
        """The run's part of ``fold``: its status and open alerts."""
        self.runs += sign
        self.statuses[status] = self.statuses.get(status, 0) + sign
        for a in s.get("alerts") or ():
            if a.get("state") in ("raised", "acknowledged") and not a.get("cleared"):
                self.alerts["open"] = self.alerts.get("open", 0) + sign
                sev = a.get("severity")
                if isinstance(sev, str):
                    self.alerts[sev] = self.alerts.get(sev, 0) + sign

    def fold_key(self, k: str, count: Any, timed: Any, total: Any, sign: int) -> None:
        """One phase key's part of ``fold``."""
        row = self.keys.get(k)
        if row is None:
            row = self.keys[k] = [0, 0, 0, _Sum()]
        row[0] += sign
        row[1] += sign * count
        row[2] += sign * timed  # skipped and cached ones have no duration
        row[3].add(total, sign)
        if not row[0]:
            del self.keys[k]

    def copy(self) -> Totals:
        c = Totals()
        c.runs = self.runs
        c.statuses = dict(self.statuses)
        c.alerts = dict(self.alerts)
        c.keys = {k: [r[0], r[1], r[2], r[3].copy()] for k, r in self.keys.items()}
        return c

    def view(self) -> dict[str, Any]:
        """The ``summary`` answer."""
        counts = {st: self.statuses.get(st, 0) for st in _STATUSES}
        counts.update(sorted((k, v) for k, v in self.statuses.items() if v and k not in counts))
        alerts = {"open": self.alerts.get("open", 0)}
        alerts.update((sev, self.alerts.get(sev, 0)) for sev in _SEVERITIES)
        alerts.update(sorted((k, v) for k, v in self.alerts.items() if v and k not in alerts))
        phases = {}
        for k in sorted(self.keys):
            _, count, timed, total = self.keys[k]
            if count:
                phases[k] = {
                    "count": int(count),
                    "mean_ms": round(total.value() / timed, 3) if timed else None,
                }
        return {
            "runs": {"total": self.runs, "active": counts["running"], **counts},
            "alerts": alerts,
            "phases": phases,
        }


Figures = tuple[Any, Any, Any, Any, Any, Any]
"""(status, count, duration_ms, cpu_ms, peak_rss_bytes, items_per_s) of a run's key."""
_METRIC_AT = {"duration_ms": 2, "cpu_ms": 3, "peak_rss_bytes": 4, "items_per_s": 5}
_FULL = 17
"""Fields of a phase key's array as ``catalog.summarize`` writes it."""


def _figures(s: Summary, key: str) -> Figures | None:
    """A run's figures for ``key``, or None if the key never ended in it (``key_row``'s
    rule), without building the row."""
    ph = s.get("phases")
    if isinstance(ph, catalog.Phases):
        raw = ph.raw.get(key)
        if raw is None:
            return None
        f = catalog.figures(raw)
    else:
        p = (ph or {}).get(key)
        if p is None:
            return None
        f = (
            p.get("status"),
            p.get("count"),
            p.get("duration_ms"),
            p.get("cpu_ms"),
            p.get("peak_rss_bytes"),
            p.get("items_per_s"),
        )
    return f if f[1] else None


def _value(f: Figures, metric: str) -> float | None:
    """The figure ``_series`` takes of a row (completed, a number), or None."""
    if f[0] != "completed":
        return None
    v = f[_METRIC_AT[metric]]
    return v if isinstance(v, (int, float)) else None


def _find(starts: Sequence[float], ids: list[str], start: float, rid: str) -> int:
    """Where (start, rid) is, or would go, in lists ordered by (start, run id)."""
    i = bisect.bisect_left(starts, start)
    n = len(starts)
    while i < n and starts[i] == start and ids[i] < rid:
        i += 1
    return i


class _Ordered:
    """Items ordered by (start, run id), as three parallel sequences (bisect on the starts).
    ``values``: the items are numbers, kept as doubles in an array (8 bytes each, no object:
    a key's four series over 10,000 runs are ~1.3 MB, not ~2.2)."""

    __slots__ = ("starts", "ids", "items")

    def __init__(self, values: bool = False) -> None:
        self.starts = array("d")
        self.ids: list[str] = []
        self.items: Any = array("d") if values else []

    def insert(self, start: float, rid: str, item: Any) -> None:
        starts = self.starts
        if not starts or start > starts[-1] or (start == starts[-1] and rid > self.ids[-1]):
            i = len(starts)  # the common case: runs come in start order
        else:
            i = _find(starts, self.ids, start, rid)
        starts.insert(i, start)
        self.ids.insert(i, rid)
        self.items.insert(i, item)

    def remove(self, start: float, rid: str) -> Any:
        i = _find(self.starts, self.ids, start, rid)
        if i < len(self.ids) and self.ids[i] == rid:
            del self.starts[i]
            del self.ids[i]
            return self.items.pop(i)
        return None

    def index(self, start: float, rid: str) -> int | None:
        i = _find(self.starts, self.ids, start, rid)
        return i if i < len(self.ids) and self.ids[i] == rid else None

    def __len__(self) -> int:
        return len(self.ids)


class _Key:
    """One phase key's rows (runs where it ended) and, once asked for, each metric's
    series (completed rows with a number), in run order and sorted."""

    __slots__ = ("rows", "series", "sorted", "stats")

    def __init__(self) -> None:
        self.rows = _Ordered()  # items: summaries
        self.series: dict[str, _Ordered] | None = None  # items: values
        self.sorted: dict[str, Any] = {}  # metric -> array of its values, sorted
        self.stats: dict[str, Any] = {}  # metric -> describe of every folded row

    def build_series(self, key: str) -> dict[str, _Ordered]:
        """The metric series, built on first use in one pass over the rows, then kept up
        to date run by run (``add``/``remove``)."""
        if self.series is None:
            series = {m: _Ordered(values=True) for m in METRICS}
            d, c, p, r = (series[m] for m in ("duration_ms", "cpu_ms", "peak_rss_bytes",
                                              "items_per_s"))  # fmt: skip
            rows = self.rows
            for start, rid, s in zip(rows.starts, rows.ids, rows.items, strict=True):
                ph = s.get("phases")
                raw = ph.raw.get(key) if type(ph) is catalog.Phases else None
                if raw is not None and len(raw) == _FULL:
                    # A catalog array, inline: ``catalog.figures`` and ``_value`` per metric
                    # cost five calls a row, and a key's first request reads 10,000 rows.
                    if raw[1] != "completed":
                        continue
                    timed = raw[3] or 0
                    total = raw[8] or 0.0
                    if timed:
                        v = round(total / timed, 3)
                        d.starts.append(start)
                        d.ids.append(rid)
                        d.items.append(v)
                        v = round((raw[11] or 0.0) / timed, 3)
                        c.starts.append(start)
                        c.ids.append(rid)
                        c.items.append(v)
                    v = raw[13]
                    if isinstance(v, (int, float)):
                        p.starts.append(start)
                        p.ids.append(rid)
                        p.items.append(v)
                    items = raw[14] or 0
                    secs = total / 1000.0
                    if items and secs > 0:
                        r.starts.append(start)
                        r.ids.append(rid)
                        r.items.append(round(items / secs, 2))
                    continue
                f = _figures(s, key)
                if f is not None:
                    for m, ser in series.items():
                        v = _value(f, m)
                        if v is not None:
                            ser.starts.append(start)
                            ser.ids.append(rid)
                            ser.items.append(v)
            self.series = series
        return self.series

    def sorted_values(self, metric: str) -> Any:
        """The metric's values sorted (shared: read only)."""
        out = self.sorted.get(metric)
        if out is None:
            assert self.series is not None
            out = self.sorted[metric] = array("d", sorted(self.series[metric].items))
        return out

    def fold(self, start: float, rid: str, s: Summary, key: str, sign: int) -> None:
        rows = self.rows
        if sign > 0:
            starts = rows.starts
            if not starts or start > starts[-1]:
                starts.append(start)  # the common case, inline: a catalog loads in start order
                rows.ids.append(rid)
                rows.items.append(s)
            else:
                rows.insert(start, rid, s)
        else:
            self.rows.remove(start, rid)
        self.stats.clear()
        if self.series is None:
            return  # built from the rows when first asked for
        f = _figures(s, key)
        assert f is not None
        for m, ser in self.series.items():
            v = _value(f, m)
            if v is None:
                continue
            if sign > 0:
                ser.insert(start, rid, v)
            else:
                ser.remove(start, rid)
            vals = self.sorted.get(m)
            if vals is not None:
                if sign > 0:
                    bisect.insort(vals, v)
                else:
                    del vals[bisect.bisect_left(vals, v)]


class Index:
    """The cross-run aggregates that ``summary``, ``phase_history`` and ``phase_trends``
    read, folded once per run as it is added (a catalogued run loaded, a run that
    finished) and taken out exactly when it leaves: a request reads them, it never walks
    every run (issue 13). ``live`` (the few runs still followed, summarised by the caller)
    are laid over the folded runs per request, replacing a folded run of the same id.

    Runs are ordered by (start, run id). A phase key's metric series are built on the
    first request for that key (one pass over its rows) and kept up to date after. Not
    thread-safe: the caller guards it."""

    def __init__(self) -> None:
        self._runs: dict[str, Summary] = {}
        self._all = _Ordered()  # items: summaries
        self.totals = Totals()
        self._keys: dict[str, _Key] = {}

    @classmethod
    def of(cls, runs: Iterable[Summary]) -> Index:
        """An index of ``runs`` folded from scratch."""
        idx = cls()
        for s in runs:
            idx.add(s)
        return idx

    def __len__(self) -> int:
        return len(self._runs)

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._runs

    def get(self, run_id: str) -> Summary | None:
        return self._runs.get(run_id)

    def summaries(self) -> list[Any]:
        """Every folded summary, oldest first (a copy of the list; the dicts are shared)."""
        return list(self._all.items)

    def before(self, start: float, n: int) -> list[Any]:
        """The latest ``n`` summaries that started before ``start``, oldest first."""
        i = bisect.bisect_left(self._all.starts, start)
        return list(self._all.items[max(0, i - n) : i])

    def keys(self) -> Iterable[str]:
        """Every phase key of a folded run."""
        return self.totals.keys.keys()

    def add(self, s: Summary) -> None:
        """Fold one run's summary in (replacing the one of the same id)."""
        rid = s["run"]
        if rid in self._runs:
            self.remove(rid)
        self._runs[rid] = s
        self._fold(s, 1)

    def remove(self, run_id: str) -> Summary | None:
        """Take one run out; its summary, or None if it was not folded."""
        s = self._runs.pop(run_id, None)
        if s is not None:
            self._fold(s, -1)
        return s

    def _fold(self, s: Summary, sign: int) -> None:
        rid, start = s["run"], _start(s)
        if sign > 0:
            self._all.insert(start, rid, s)
        else:
            self._all.remove(start, rid)
        ph = s.get("phases") or {}
        t = self.totals
        if not isinstance(ph, catalog.Phases):
            t.fold(s, s.get("status") or "running", sign)
            for key in [k for k in ph if _figures(s, k) is not None]:
                self._fold_key(key, start, rid, s, sign)
            return
        # One pass over the compact arrays for the totals and the rows (``Totals.fold``'s
        # and ``_figures``' rules, inline): no figures computed per run and key while a
        # catalog of 10,000 runs loads (a key's series are built when first asked for).
        t.fold_run(s, s.get("status") or "running", sign)
        for key, raw in ph.raw.items():
            n = len(raw)
            if n > 8:
                t.fold_key(key, raw[2] or 0, raw[3] or 0, raw[8] or 0.0, sign)
            if n > 2 and raw[2]:
                self._fold_key(key, start, rid, s, sign)

    def _fold_key(self, key: str, start: float, rid: str, s: Summary, sign: int) -> None:
        k = self._keys.get(key)
        if k is None:
            if sign < 0:
                return
            k = self._keys[key] = _Key()
        k.fold(start, rid, s, key, sign)
        if sign < 0 and not k.rows.ids:
            del self._keys[key]

    # -- answers ----------------------------------------------------------------------------
    def summary(
        self, live: Sequence[Summary] = (), statuses: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """``summary`` over the folded runs and ``live`` (``statuses`` overrides a live
        run's status by id)."""
        t = self.totals
        if live:
            t = t.copy()
            statuses = statuses or {}
            for s in live:
                rid = s["run"]
                old = self._runs.get(rid)
                if old is not None:
                    t.fold(old, old.get("status") or "running", -1)
                t.fold(s, statuses.get(rid, s.get("status") or "running"))
        return t.view()

    def _scope(
        self, key: str, before: str | None, live: Sequence[Summary]
    ) -> tuple[_Key | None, int, set[str], list[tuple[float, Summary, Figures]], float | None]:
        """What ``runs_before(before)`` keeps of ``key``'s rows: the folded rows up to
        position ``i`` but the ``excluded`` ids, and the live rows to lay over them."""
        limit: float | None = None
        if before is not None:
            for s in live:
                if s["run"] == before:
                    limit = _start(s)
                    break
            else:
                s0 = self._runs.get(before)
                if s0 is not None:
                    limit = _start(s0)
        k = self._keys.get(key)
        excluded = {s["run"] for s in live if s["run"] in self._runs}
        if before is not None:
            excluded.add(before)
        over = []
        for s in live:
            st = _start(s)
            if s["run"] == before or (limit is not None and st > limit):
                continue
            f = _figures(s, key)
            if f is not None:
                over.append((st, s, f))
        over.sort(key=lambda t: t[0])  # stable: live runs keep their order at a tie
        i = 0
        if k is not None:
            starts = k.rows.starts
            i = len(starts) if limit is None else bisect.bisect_right(starts, limit)
        return k, i, excluded, over, limit

    def _rows(
        self, k: _Key | None, i: int, excluded: set[str], over: list[tuple[float, Summary, Any]]
    ) -> tuple[Any, list[Any]]:
        """The rows in scope, in order: (starts, items)."""
        if k is None:
            starts, items = array("d"), []
        else:
            starts, items = k.rows.starts[:i], k.rows.items[:i]
            drop = []
            for rid in excluded:
                s = self._runs.get(rid)
                j = k.rows.index(_start(s), rid) if s is not None else None
                if j is not None and j < i:
                    drop.append(j)
            for j in sorted(drop, reverse=True):
                del starts[j]
                del items[j]
        for st, s, _ in over:
            j = bisect.bisect_right(starts, st)  # after folded rows of the same start
            starts.insert(j, st)
            items.insert(j, s)
        return starts, items

    def _metric(
        self,
        k: _Key,
        key: str,
        metric: str,
        limit: float | None,
        excluded: set[str],
        over: list[tuple[float, Summary, Figures]],
    ) -> tuple[Any, Any]:
        """The metric's series in scope: (values in run order, the same sorted). The run
        order list holds only what ``trend`` and ``last`` need when the scope is every
        folded run (then the sorted list is the maintained one)."""
        ser = k.build_series(key)[metric]
        n = len(ser.ids)
        i = n if limit is None else bisect.bisect_right(ser.starts, limit)
        drop = []
        for rid in excluded:
            s = self._runs.get(rid)
            j = ser.index(_start(s), rid) if s is not None else None
            if j is not None and j < i:
                drop.append(j)
        extra = [(st, v) for st, _, f in over if (v := _value(f, metric)) is not None]
        if i == n and not drop and not extra:
            return ser.items, k.sorted_values(metric)  # the common scope: every folded run
        starts, vals = ser.starts[:i], ser.items[:i]
        for j in sorted(drop, reverse=True):
            del starts[j]
            del vals[j]
        for st, v in extra:
            j = bisect.bisect_right(starts, st)
            starts.insert(j, st)
            vals.insert(j, v)
        if i == n and len(drop) + len(extra) <= 64:
            srt = list(k.sorted_values(metric))
            for j in drop:
                del srt[bisect.bisect_left(srt, ser.items[j])]
            for _, v in extra:
                bisect.insort(srt, v)
        else:
            srt = sorted(vals)
        return vals, srt

    def phase_history(
        self,
        key: str,
        *,
        before: str | None = None,
        limit: int = HISTORY_LIMIT,
        tags: Mapping[str, str] | None = None,
        live: Sequence[Summary] = (),
        skip: int = 0,
    ) -> dict[str, Any]:
        """``phase_history`` over the folded runs and ``live``; ``runs`` is the page of
        ``limit`` rows that ends ``skip`` rows before the newest."""
        k, i, excluded, over, lim = self._scope(key, before, live)
        if tags:
            return self._filtered(k, i, excluded, over, key, tags, limit, skip)
        starts, items = self._rows(k, i, excluded, over)
        count = len(items)
        end = max(0, count - skip)
        page = [key_row(s, key) for s in items[max(0, end - limit) : end]]
        stats: dict[str, Any] = {}
        for m in METRICS:
            if k is None:
                vals = [v for _, _, f in over if (v := _value(f, m)) is not None]
                srt = sorted(vals)
            else:
                full = lim is None and not excluded and not over
                hit = k.stats.get(m) if full else None
                if hit is not None:
                    stats[m] = hit
                    continue
                vals, srt = self._metric(k, key, m, lim, excluded, over)
            stats[m] = analysis.describe_sorted(srt, vals[-1]) if srt else {"count": 0}
            if k is not None and full:
                k.stats[m] = stats[m]
        return {"phase": key, "runs": page, "count": count, "stats": stats}

    def phase_trends(
        self,
        key: str,
        *,
        before: str | None = None,
        k: int = 10,
        tags: Mapping[str, str] | None = None,
        live: Sequence[Summary] = (),
    ) -> dict[str, Any]:
        """``phase_trends`` over the folded runs and ``live``."""
        kk, i, excluded, over, lim = self._scope(key, before, live)
        if tags:
            _, items = self._rows(kk, i, excluded, over)
            return phase_trends([s for s in items if matches(s, tags)], key, k=k)
        count = len(self._rows(kk, i, excluded, over)[1]) if excluded or over else i
        out: dict[str, Any] = {"phase": key, "runs": count}
        for m, hi in METRICS.items():
            if kk is None:
                vals = [v for _, _, f in over if (v := _value(f, m)) is not None]
            else:
                vals = self._tail(kk, key, m, lim, excluded, over, k)
            out[m] = analysis.trend(vals, k=k, higher_is_worse=hi)
        return out

    def _tail(
        self,
        kk: _Key,
        key: str,
        metric: str,
        limit: float | None,
        excluded: set[str],
        over: list[tuple[float, Summary, Figures]],
        k: int,
    ) -> list[float]:
        """The metric's last ``k`` values in scope, in run order."""
        ser = kk.build_series(key)[metric]
        i = len(ser.ids) if limit is None else bisect.bisect_right(ser.starts, limit)
        lo = max(0, i - k - len(excluded))
        tail = [
            (ser.starts[j], 0, j, ser.items[j]) for j in range(lo, i) if ser.ids[j] not in excluded
        ]
        for n, (st, _, f) in enumerate(over):
            v = _value(f, metric)
            if v is not None:
                tail.append((st, 1, n, v))
        tail.sort(key=lambda t: t[:3])
        return [t[3] for t in tail[-k:]]

    def _filtered(
        self,
        k: _Key | None,
        i: int,
        excluded: set[str],
        over: list[tuple[float, Summary, Figures]],
        key: str,
        tags: Mapping[str, str],
        limit: int,
        skip: int,
    ) -> dict[str, Any]:
        """With tags: the rows in scope filtered (a pass over the key's rows: tags are
        not indexed)."""
        _, items = self._rows(k, i, excluded, over)
        rs = [r for s in items if matches(s, tags) and (r := key_row(s, key)) is not None]
        end = max(0, len(rs) - skip)
        return {
            "phase": key,
            "runs": rs[max(0, end - limit) : end],
            "count": len(rs),
            "stats": {m: analysis.describe(_series(rs, m)) for m in METRICS},
        }


Statuses = Callable[[RunState], str]
