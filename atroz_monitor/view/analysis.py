"""Pure statistics over per-phase history: summaries, trends, anomalies, regressions, ETA.

Every function here takes plain numbers and mappings and returns plain dicts: no I/O, no clock,
no threads. Values are assumed finite (the reducer drops NaN/inf before they get here); units are
whatever the caller feeds in, and results come back in the same unit.
"""

from __future__ import annotations

import bisect
import itertools
import math
import operator
from collections.abc import Collection, Mapping, Sequence
from typing import Any

__all__ = [
    "ANOMALY_Z",
    "anomaly",
    "compare",
    "critical_path",
    "describe",
    "describe_sorted",
    "eta",
    "eta_dag",
    "percentile",
    "progress",
    "regression",
    "robust_z",
    "shares",
    "theil_sen",
    "trend",
]

#: |modified z| above which a value is an outlier (Iglewicz & Hoaglin, 1993).
ANOMALY_Z = 3.5

# 0.6745 is the 0.75 quantile of the standard normal: it makes MAD comparable to a stddev.
_MAD_Z = 0.6745
# sqrt(pi/2): the same role for the mean absolute deviation (IBM SPSS's fallback constant).
_MEANAD_Z = 1.253314


# --- summaries -----------------------------------------------------------------------------------


def _percentile_sorted(s: Sequence[float], q: float) -> float:
    """Percentile q (0..100) of already-sorted, non-empty s; see percentile()."""
    n = len(s)
    # (n-1)*q is exact for integer q, so h lands exactly on a rank when it should.
    h = (n - 1) * q / 100.0
    lo = math.floor(h)
    frac = h - lo
    if frac == 0.0 or lo + 1 >= n:
        return float(s[min(lo, n - 1)])
    a, b = s[lo], s[lo + 1]
    return float(a + (b - a) * frac)


def _median_sorted(s: Sequence[float]) -> float:
    """Median of already-sorted, non-empty s (mean of the middle two for even n)."""
    n = len(s)
    mid = n // 2
    if n % 2:
        return float(s[mid])
    return (s[mid - 1] + s[mid]) / 2.0


def _mad_sorted(s: Sequence[float], med: float) -> float:
    """Unscaled median absolute deviation of sorted s around its median med."""
    # Deviations of a sorted series form one descending then one ascending run; timsort
    # merges such runs in near-linear time, so this second sort stays cheap.
    return _median_sorted(sorted(map(abs, map(operator.sub, s, itertools.repeat(med)))))


def _check_q(q: float) -> None:
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q must be within 0..100, got {q!r}")


def percentile(values: Sequence[float], q: float) -> float:
    """Percentile q (0..100) by linear interpolation between closest ranks.

    With s sorted and h = (n-1)*q/100, the result is s[floor(h)] + frac(h) * (s[floor(h)+1] -
    s[floor(h)]): numpy's default ("linear") and ``statistics.quantiles(method="inclusive")``.
    One value gives that value. Raises ValueError on empty input or q outside 0..100.
    """
    _check_q(q)
    if not values:
        raise ValueError("percentile of an empty sequence")
    return _percentile_sorted(sorted(values), q)


def describe(values: Sequence[float]) -> dict[str, float]:
    """Summary of a series: count, mean, median, p95, stddev, min, max, mad, last.

    stddev is the sample standard deviation (n-1 divisor; 0.0 for one value); mad is the
    unscaled median absolute deviation; p95 is ``percentile(values, 95)``, i.e. linear
    interpolation at rank h = (n-1)*0.95 (one value gives that value). ``last`` is the final
    value in input order. Empty input gives ``{"count": 0}`` only.
    """
    if not values:
        return {"count": 0}
    return describe_sorted(sorted(values), values[-1])


def describe_sorted(s: Sequence[float], last: float) -> dict[str, float]:
    """``describe`` of a series given already sorted (``s``, non-empty) and its ``last``
    value in input order: what a maintained sorted series (``history.Index``) reads without
    sorting it again. Every pass here runs in C (``fsum``, ``map``, ``sorted``)."""
    n = len(s)
    mean = math.fsum(s) / n
    # Two-pass variance with fsum: the one-pass formula cancels badly for large, tight values.
    if n > 1:
        dev = list(map(operator.sub, s, itertools.repeat(mean)))
        stddev = math.sqrt(math.fsum(map(operator.mul, dev, dev)) / (n - 1))
    else:
        stddev = 0.0
    med = _median_sorted(s)
    return {
        "count": n,
        "mean": mean,
        "median": med,
        "p95": _percentile_sorted(s, 95.0),
        "stddev": stddev,
        "min": float(s[0]),
        "max": float(s[-1]),
        "mad": _mad_sorted(s, med),
        "last": float(last),
    }


# --- trends --------------------------------------------------------------------------------------


def theil_sen(ys: Sequence[float], xs: Sequence[float] | None = None) -> float | None:
    """Theil-Sen slope: the median of all pairwise slopes (y_j - y_i) / (x_j - x_i).

    xs defaults to 0..n-1 (slope per run). Pairs with equal x are skipped; None when fewer than
    two values or no pair has distinct x. O(n^2) pairs: meant for recent windows, not all history.
    """
    n = len(ys)
    if xs is None:
        xs = range(n)
    elif len(xs) != n:
        raise ValueError(f"xs has {len(xs)} values, ys has {n}")
    if n < 2:
        return None
    slopes = [
        (ys[j] - ys[i]) / (xs[j] - xs[i])
        for i in range(n - 1)
        for j in range(i + 1, n)
        if xs[j] != xs[i]
    ]
    if not slopes:
        return None
    slopes.sort()
    return _median_sorted(slopes)


def trend(
    values: Sequence[float],
    k: int = 10,
    higher_is_worse: bool = True,
    stable_pct: float = 2.0,
) -> dict[str, Any]:
    """Direction of the last k values: ``runs``, ``slope``, ``pct_per_run``, ``direction``.

    slope is the Theil-Sen slope in units per run (robust to a single outlier run);
    pct_per_run = slope / |median of the window| * 100 (None when that median is 0).
    direction is "slower" when the metric moves the bad way by more than stable_pct % per run,
    "faster" when it moves the good way by more than that, else "stable". The bad way is up for
    higher_is_worse metrics (durations, CPU, RSS) and down otherwise (items/s). With a zero
    median only the slope's sign decides. Fewer than 3 values give "insufficient" (slope and
    pct_per_run None). Raises ValueError for k < 3, which could never yield a trend.
    """
    if k < 3:
        raise ValueError(f"k must be >= 3, got {k!r}")
    window = list(values[-k:])
    runs = len(window)
    if runs < 3:
        return {"runs": runs, "slope": None, "pct_per_run": None, "direction": "insufficient"}
    slope = theil_sen(window)
    assert slope is not None  # three values on distinct x always give slopes
    med = _median_sorted(sorted(window))
    # abs(): a negative median would otherwise flip the sign of the relative change.
    pct = slope / abs(med) * 100.0 if med != 0 else None
    change = pct if pct is not None else slope
    limit = stable_pct if pct is not None else 0.0
    worse = change if higher_is_worse else -change
    if worse > limit:
        direction = "slower"
    elif worse < -limit:
        direction = "faster"
    else:
        direction = "stable"
    return {"runs": runs, "slope": slope, "pct_per_run": pct, "direction": direction}


# --- anomalies -----------------------------------------------------------------------------------


def _robust(value: float, history: Sequence[float]) -> tuple[float, float, float] | None:
    """(z, median, mad) for robust_z/anomaly, or None with fewer than 3 history values."""
    if len(history) < 3:
        return None
    s = sorted(history)
    med = _median_sorted(s)
    mad = _mad_sorted(s, med)
    diff = value - med
    if mad > 0:
        return _MAD_Z * diff / mad, med, mad
    # More than half the history equals the median (common for quantised timings); MAD is 0,
    # so fall back to the mean absolute deviation as IBM SPSS does.
    mean_ad = math.fsum(abs(x - med) for x in s) / len(s)
    if mean_ad > 0:
        return diff / (_MEANAD_Z * mean_ad), med, mad
    if diff == 0:
        return 0.0, med, mad
    return math.copysign(math.inf, diff), med, mad


def robust_z(value: float, history: Sequence[float]) -> float | None:
    """Modified z-score of value against history: 0.6745 * (x - median) / MAD.

    When MAD is 0: (x - median) / (1.253314 * meanAD), meanAD being the mean absolute deviation
    from the median. When both are 0 (constant history): 0.0 if x equals the median, else +/-inf
    with the sign of x - median. None with fewer than 3 history values.
    """
    r = _robust(value, history)
    return None if r is None else r[0]


def anomaly(
    value: float, history: Sequence[float], higher_is_worse: bool = True
) -> dict[str, Any] | None:
    """Outlier check: ``{"z", "median", "mad", "flag", "direction"}``, None with < 3 history.

    flag is |z| > ANOMALY_Z in either direction; direction says "worse" or "better" for the
    metric's polarity (None when value equals the median). A phase that suddenly gets much faster
    is flagged too: it often means it skipped its work; callers wanting only bad news filter on
    direction == "worse".
    """
    r = _robust(value, history)
    if r is None:
        return None
    z, med, mad = r
    direction: str | None = None
    if value != med:
        direction = "worse" if (value > med) == higher_is_worse else "better"
    return {"z": z, "median": med, "mad": mad, "flag": abs(z) > ANOMALY_Z, "direction": direction}


# --- regressions ---------------------------------------------------------------------------------


def regression(
    current: float,
    baseline: Sequence[float],
    *,
    tolerance: float = 0.10,
    single_tolerance: float = 0.25,
    noise_floor: float = 5.0,
    min_runs: int = 5,
    higher_is_worse: bool = True,
) -> dict[str, Any]:
    """Is current a regression against the baseline runs?

    With >= min_runs baseline runs the reference is the baseline p95 (rule "p95") and current
    regresses above p95 * (1 + tolerance). With fewer, the reference is the baseline median
    (rule "median"; "single" for one run) and the limit is reference * (1 + single_tolerance).
    Either way |current - reference| must also exceed noise_floor (same unit as the values; the
    default 5.0 suits milliseconds), so sub-noise jitter on tiny phases never counts.
    For lower-is-worse metrics (items/s) it mirrors: reference p5 (rule "p5"), regressed below
    reference * (1 - tolerance). Empty baseline: not regressed, rule "no-baseline".
    Returns regressed, rule, reference, threshold, delta (current - reference), delta_pct
    (None when the reference is 0) and runs (baseline size).
    """
    if tolerance < 0 or single_tolerance < 0 or noise_floor < 0:
        raise ValueError("tolerance, single_tolerance and noise_floor must be >= 0")
    if min_runs < 1:
        raise ValueError(f"min_runs must be >= 1, got {min_runs!r}")
    n = len(baseline)
    if n == 0:
        return {
            "regressed": False,
            "rule": "no-baseline",
            "reference": None,
            "threshold": None,
            "delta": None,
            "delta_pct": None,
            "runs": 0,
        }
    s = sorted(baseline)
    sign = 1.0 if higher_is_worse else -1.0
    if n >= min_runs:
        rule = "p95" if higher_is_worse else "p5"
        reference = _percentile_sorted(s, 95.0 if higher_is_worse else 5.0)
        tol = tolerance
    else:
        rule = "single" if n == 1 else "median"
        reference = _median_sorted(s)
        tol = single_tolerance
    threshold = reference * (1.0 + sign * tol)
    delta = current - reference
    beyond = (current - threshold) * sign > 0
    return {
        "regressed": beyond and abs(delta) > noise_floor,
        "rule": rule,
        "reference": reference,
        "threshold": threshold,
        "delta": delta,
        "delta_pct": delta / reference * 100.0 if reference != 0 else None,
        "runs": n,
    }


def compare(
    current: Mapping[str, float],
    baseline: Mapping[str, Sequence[float]],
    *,
    tolerance: float = 0.10,
    single_tolerance: float = 0.25,
    noise_floor: float = 5.0,
    min_runs: int = 5,
    higher_is_worse: bool = True,
) -> dict[str, Any]:
    """regression() for every key of current; keyword arguments as for regression().

    Returns ``phases`` (per key, sorted: the regression dict plus ``current`` and ``baseline`` =
    describe() of its baseline runs), ``regressions`` (sorted keys that regressed), ``new`` (keys
    of current with no baseline runs, absent or empty) and ``missing`` (baseline keys absent from
    current).
    """
    phases: dict[str, dict[str, Any]] = {}
    for key in sorted(current):
        runs = baseline.get(key, ())
        result = regression(
            current[key],
            runs,
            tolerance=tolerance,
            single_tolerance=single_tolerance,
            noise_floor=noise_floor,
            min_runs=min_runs,
            higher_is_worse=higher_is_worse,
        )
        result["current"] = current[key]
        result["baseline"] = describe(runs)
        phases[key] = result
    return {
        "phases": phases,
        "regressions": [k for k, r in phases.items() if r["regressed"]],
        "new": [k for k, r in phases.items() if r["runs"] == 0],
        "missing": sorted(k for k in baseline if k not in current),
    }


# --- progress of a running run -------------------------------------------------------------------


def _unique(plan: Sequence[str]) -> list[str]:
    """Plan keys in order, each once: medians are per key, so a repeated key counts once."""
    return list(dict.fromkeys(plan))


def eta(
    plan: Sequence[str],
    done: Collection[str],
    running: Mapping[str, Mapping[str, float]],
    medians: Mapping[str, float],
) -> dict[str, Any]:
    """Remaining seconds of a running run, from history and item rates.

    Planned keys neither done nor running add their historical median. Each running key (with
    ``elapsed`` seconds, optional ``items``, ``total`` and ``items_elapsed``, the seconds elapsed
    when ``items`` was counted, default ``elapsed``) adds, when 0 < items < total, the time the
    rest takes at the rate items / items_elapsed, less what passed since the count:
    max(items_elapsed * (total - items) / items - (elapsed - items_elapsed), 0); else
    max(median - elapsed, 0); one already past its median adds 0 and is listed in ``overdue``.
    If any unfinished key has neither history nor an item rate, eta_s is None and
    ``missing_history`` lists it: no guessing. basis is "history", "items" or "mixed" by what
    the estimate used. Nothing left gives 0.0. Key lists are sorted.
    """
    total_s = 0.0
    used: set[str] = set()
    missing: list[str] = []
    overdue: list[str] = []
    for key in _unique(plan):
        if key in done or key in running:
            continue
        if key in medians:
            total_s += medians[key]
            used.add("history")
        else:
            missing.append(key)
    # Running keys count even when unplanned: the run cannot end before they do.
    for key, info in running.items():
        elapsed = max(float(info.get("elapsed", 0.0)), 0.0)
        items = float(info.get("items", 0.0))
        total = float(info.get("total", 0.0))
        if items > 0 and total > items:
            at = min(max(float(info.get("items_elapsed", elapsed)), 0.0), elapsed)
            total_s += max(at * (total - items) / items - (elapsed - at), 0.0)
            used.add("items")
        elif key in medians:
            if elapsed > medians[key]:
                overdue.append(key)
            total_s += max(medians[key] - elapsed, 0.0)
            used.add("history")
        else:
            missing.append(key)
    basis = "mixed" if len(used) == 2 else (used.pop() if used else "history")
    return {
        "eta_s": None if missing else total_s,
        "basis": basis,
        "missing_history": sorted(missing),
        "overdue": sorted(overdue),
    }


def eta_dag(
    after: Mapping[str, Sequence[str]], remaining: Mapping[str, float | None]
) -> float | None:
    """Seconds left in a DAG plan: the longest path through the remaining work, where each
    phase starts when all its ``after`` phases are finished (parallel branches overlap;
    they do not add up). ``remaining[key]`` is a phase's expected remaining seconds (0 when
    done), None when unknown (then the answer is None)."""
    if any(v is None for v in remaining.values()):
        return None
    finish: dict[str, float] = {}

    def fin(k: str, depth: int = 0) -> float:
        if k in finish:
            return finish[k]
        if depth > len(after) + 1:  # a cycle slipped through: do not recurse forever
            raise ValueError("the plan's dependencies form a cycle")
        start = max((fin(a, depth + 1) for a in after.get(k, ()) if a in remaining),
                    default=0.0)  # fmt: skip
        finish[k] = start + float(remaining.get(k) or 0.0)
        return finish[k]

    return max((fin(k) for k in remaining), default=0.0)


def progress(
    plan: Sequence[str], done: Collection[str], medians: Mapping[str, float]
) -> dict[str, Any]:
    """Share of the plan finished: ``done``, ``planned``, ``pct`` and ``pct_weighted``.

    pct is by count of distinct planned keys; pct_weighted weighs each key by its historical
    median and is None unless every planned key has history (and the total weight is > 0).
    With an empty plan both percentages are None: no plan, no percentage.
    """
    keys = _unique(plan)
    finished = [k for k in keys if k in done]
    pct = len(finished) / len(keys) * 100.0 if keys else None
    weighted = None
    if keys and all(k in medians for k in keys):
        weight = math.fsum(medians[k] for k in keys)
        if weight > 0:
            weighted = math.fsum(medians[k] for k in finished) / weight * 100.0
    return {"done": len(finished), "planned": len(keys), "pct": pct, "pct_weighted": weighted}


# --- critical path -------------------------------------------------------------------------------


def _ends(phases: Sequence[Mapping[str, Any]]) -> dict[Any, tuple[float, float]]:
    """span -> (start, end), a still-running phase (end None) ending at the latest end seen."""
    known = [p["end"] for p in phases if p.get("end") is not None]
    latest = max(known) if known else max((p["start"] for p in phases), default=0.0)
    return {
        p["span"]: (float(p["start"]), float(p["end"] if p.get("end") is not None else latest))
        for p in phases
    }


def _chain(group: list[Any], times: dict[Any, tuple[float, float]], slack: float) -> list[Any]:
    """Walk back from the latest-ending span of group through predecessors; chronological.

    O(n log n): the group is sorted once by end, and each step is a binary search for the
    latest phase that ended by the current one's start (a run of 10,000 sequential phases
    must not cost 10,000 passes over the pool).
    """
    # Ties on end go to the earlier start (the longer phase), then span id, for determinism.
    ordered = sorted(group, key=lambda sp: (times[sp][1], -times[sp][0], str(sp)))
    if not ordered:
        return []
    ends = [times[sp][1] for sp in ordered]
    taken = [False] * len(ordered)
    i = len(ordered) - 1
    chain = [ordered[i]]
    taken[i] = True
    while True:
        start = times[chain[-1]][0]
        # Slack absorbs clock granularity between a phase's end and the next one's start.
        j = bisect.bisect_right(ends, start + slack) - 1
        while j >= 0 and (taken[j] or times[ordered[j]][0] > start):
            j -= 1
        if j < 0:
            break
        taken[j] = True
        chain.append(ordered[j])
    chain.reverse()
    return chain


def critical_path(phases: Sequence[Mapping[str, Any]], *, slack: float = 0.001) -> list[Any]:
    """Span ids of the chain of phases that determined the run's wall time, in time order.

    Each phase has ``span``, ``parent`` (a span id or None), ``start`` and ``end`` (seconds; None
    while running, read as the latest end seen). A phase whose parent is None or not among the
    phases is top-level. From the latest-ending top-level phase, repeatedly take the latest-ending
    one that ended at or before the current one started (within slack); then descend into each
    chain phase's children the same way, inserting them right after their parent.
    """
    times = _ends(phases)
    children: dict[Any, list[Any]] = {}
    top: list[Any] = []
    for p in phases:
        parent = p.get("parent")
        if parent is None or parent not in times:
            top.append(p["span"])
        else:
            children.setdefault(parent, []).append(p["span"])
    out: list[Any] = []
    seen: set[Any] = set()

    def visit(group: list[Any]) -> None:
        for sp in _chain(group, times, slack):
            if sp in seen:  # a malformed parent cycle must not recurse forever
                continue
            seen.add(sp)
            out.append(sp)
            visit(children.get(sp, []))

    visit(top)
    return out


def shares(
    phases: Sequence[Mapping[str, Any]], run_start: float, run_end: float
) -> dict[Any, float]:
    """Each phase's duration as a percentage of the run (run_end - run_start).

    A still-running phase (end None) counts up to run_end; negative durations clamp to 0.
    A run of zero or negative length gives 0.0 for every phase.
    """
    wall = run_end - run_start
    out: dict[Any, float] = {}
    for p in phases:
        end = p.get("end")
        dur = max((run_end if end is None else float(end)) - float(p["start"]), 0.0)
        out[p["span"]] = dur / wall * 100.0 if wall > 0 else 0.0
    return out
