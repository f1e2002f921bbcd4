"""Suggestions with evidence: rules that read a run's figures and say what could be done.

``suggest(snap, rows)`` is pure: ``snap`` is the run's snapshot (``views.snapshot``) and
``rows`` the per-run rows of its history, oldest first, the run itself last when known
(``charts.rows_from_state`` or catalog summaries). Each suggestion names the rule, the
phase, a one-line finding with the numbers that triggered it, the advice, and the numbers
themselves (``evidence``). The thresholds are module constants, documented with each rule
in docs/SUGGESTIONS.md; every rule stays silent on the demo's normal run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from . import analysis

__all__ = ["RULES", "suggest"]

RULES = (
    "parallelise",
    "io_wait",
    "memory_limit",
    "dominant_subphase",
    "cacheable",
    "hot_loop",
    "getting_slower",
    "growing_memory",
)

# parallelise: a phase long enough to matter, one core busy, the others idle.
PAR_MIN_MS = 5_000.0
PAR_MIN_SHARE = 0.20
PAR_ONE_CORE = (80.0, 120.0)  # process CPU % (100 = one core)
PAR_CHILDREN_MAX = 10.0  # children's CPU %, at most
PAR_OTHERS_MAX = 25.0  # the other cores' mean busy %, at most
# io_wait: most of the wall time without CPU, while storage I/O flowed.
WAIT_MIN_MS = 1_000.0
WAIT_MIN_SHARE = 0.05
WAIT_CPU_MAX = 25.0  # process + children CPU % of the wall time
WAIT_IO_MIN_BYTES = 16 * 2**20
WAIT_IO_MIN_RATE = 2**20  # bytes per second of the phase
# memory_limit: the peak of the process tree against the container's memory limit.
MEM_LIMIT_SHARE = 0.80
# dominant_subphase: one child key holding nearly all of a sizeable parent's time.
DOM_SHARE = 0.85
DOM_PARENT_MIN_MS = 1_000.0
DOM_PARENT_MIN_SHARE = 0.10
# cacheable: the same outputs run after run from a phase worth skipping.
CACHE_RUNS = 3  # this run and the two before it
CACHE_MIN_MS = 1_000.0
CACHE_MIN_SHARE = 0.05
# hot_loop: calls so short that recording them costs more than they do. 4 us is the cost of
# one call recorded as part of an aggregate (docs/PERFORMANCE.md: a third of 11 us), the
# cheapest way the monitor records a call.
HOT_CALL_COST_MS = 0.004
HOT_MIN_CALLS = 1_000
# getting_slower / growing_memory: a rise across the recent runs, not one bad run.
SLOW_WINDOW = 8
SLOW_MIN_RUNS = 5
SLOW_MIN_PCT_PER_RUN = 3.0
SLOW_MIN_RISE = 0.20  # the last three runs' median over the first three's
SLOW_FLOOR_MS = 50.0
GROW_FLOOR_BYTES = 8 * 2**20


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _ms(ms: float) -> str:
    return f"{ms / 1000:.1f} s" if ms >= 1000 else f"{ms:.0f} ms"


def _mib(n: float) -> str:
    return f"{n / 2**20:.0f} MiB" if n < 2**30 else f"{n / 2**30:.2f} GiB"


def _label(p: Mapping[str, Any]) -> str:
    name = p.get("name")
    return f"{p['phase']} ({name})" if name and name != p["phase"] else str(p["phase"])


def _item(
    rule: str, p: Mapping[str, Any] | None, finding: str, advice: str, **evidence: Any
) -> dict[str, Any]:
    return {
        "rule": rule,
        "phase": p.get("phase") if p else None,
        "span": p.get("span") if p else None,
        "finding": finding,
        "advice": advice,
        "evidence": {k: (round(v, 3) if isinstance(v, float) else v) for k, v in evidence.items()},
    }


def _window(samples: Sequence[Mapping[str, Any]], p: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The samples taken while ``p`` ran, with the last one before it (the baseline of the
    cumulative counters)."""
    start, end = _num(p.get("start")), _num(p.get("end"))
    if start is None or end is None:
        return []
    before = None
    out = []
    for s in samples:
        t = _num(s.get("ts"))
        if t is None:
            continue
        if t < start:
            before = s
        elif t <= end:
            out.append(s)
    return ([before] if before is not None else []) + out


def _cores(snap: Mapping[str, Any]) -> float | None:
    run = snap["run"]
    lim = run.get("limits") if isinstance(run.get("limits"), dict) else {}
    return _num(lim.get("cpu_effective")) or _num(run.get("ncpu"))


def _leaves_first(found: list[dict[str, Any]], by_span: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Drop a finding on a phase whose descendant has the same finding (the deeper phase
    is the one to act on)."""
    spans = {f["span"] for f in found}
    out = []
    for f in found:
        stack = list((by_span.get(f["span"]) or {}).get("children") or ())
        deeper = False
        while stack:
            s = stack.pop()
            if s in spans:
                deeper = True
                break
            stack.extend((by_span.get(s) or {}).get("children") or ())
        if not deeper:
            out.append(f)
    return out


def _parallelise(snap: Mapping[str, Any], run_ms: float) -> list[dict[str, Any]]:
    cores = _cores(snap)
    if cores is None or cores < 2:
        return []
    samples = snap["resources"]["samples"]
    found = []
    for p in snap["phases"]:
        dur = _num(p.get("duration_ms"))
        if p["status"] != "completed" or dur is None or dur < PAR_MIN_MS:
            continue
        if dur < PAR_MIN_SHARE * run_ms:
            continue
        cpu = (_num(p.get("cpu_ms")) or 0.0) / dur * 100.0
        kids = (_num(p.get("children_cpu_ms")) or 0.0) / dur * 100.0
        if not PAR_ONE_CORE[0] <= cpu <= PAR_ONE_CORE[1] or kids > PAR_CHILDREN_MAX:
            continue
        sys_pct = [
            v for s in _window(samples, p)[1:] if (v := _num(s.get("sys_cpu_pct"))) is not None
        ]
        if not sys_pct:
            continue  # no system-wide figure: whether the other cores idled is unknown
        busy = sum(sys_pct) / len(sys_pct) * cores  # in % of one core, all cores together
        others = max(0.0, busy - cpu - kids) / (cores - 1)
        if others > PAR_OTHERS_MAX:
            continue
        found.append(
            _item(
                "parallelise",
                p,
                f"{_label(p)} ran {_ms(dur)} ({dur / run_ms * 100:.0f}% of the run) on one "
                f"core ({cpu:.0f}% CPU) while the other {cores - 1:g} core(s) were "
                f"{others:.0f}% busy",
                "Split its work across processes (multiprocessing, concurrent.futures."
                "ProcessPoolExecutor) or a library that releases the GIL: with "
                f"{cores:g} cores it could take up to {(1 - 1 / cores) * 100:.0f}% less.",
                duration_ms=dur,
                share_pct=dur / run_ms * 100,
                cpu_pct=cpu,
                children_cpu_pct=kids,
                cores=cores,
                others_busy_pct=others,
                saving_ms=dur * (1 - 1 / cores),
            )
        )
    return found


def _io_wait(snap: Mapping[str, Any], run_ms: float) -> list[dict[str, Any]]:
    samples = snap["resources"]["samples"]
    found = []
    for p in snap["phases"]:
        dur = _num(p.get("duration_ms"))
        if p["status"] != "completed" or dur is None or dur < WAIT_MIN_MS:
            continue
        if dur < WAIT_MIN_SHARE * run_ms:
            continue
        cpu = ((_num(p.get("cpu_ms")) or 0.0) + (_num(p.get("children_cpu_ms")) or 0.0)) / dur
        cpu *= 100.0
        if cpu > WAIT_CPU_MAX:
            continue
        win = _window(samples, p)
        io = [
            (_num(s.get("io_read_bytes")) or 0.0) + (_num(s.get("io_write_bytes")) or 0.0)
            for s in win
            if s.get("io_read_bytes") is not None or s.get("io_write_bytes") is not None
        ]
        if len(io) < 2:
            continue
        moved = max(0.0, io[-1] - io[0])
        rate = moved / (dur / 1000.0)
        if moved < WAIT_IO_MIN_BYTES or rate < WAIT_IO_MIN_RATE:
            continue
        found.append(
            _item(
                "io_wait",
                p,
                f"{_label(p)} spent {100 - cpu:.0f}% of its {_ms(dur)} waiting (CPU {cpu:.0f}%) "
                f"while it moved {_mib(moved)} of storage I/O ({_mib(rate)}/s)",
                "Overlap the I/O with the work (a thread or asyncio reading ahead, "
                "prefetching the next batch), read and write in larger blocks, or move the "
                "data to faster storage.",
                duration_ms=dur,
                cpu_pct=cpu,
                io_bytes=moved,
                io_bytes_per_s=rate,
            )
        )
    return _leaves_first(found, {p["span"]: p for p in snap["phases"]})


def _memory_limit(snap: Mapping[str, Any]) -> list[dict[str, Any]]:
    run = snap["run"]
    lim = run.get("limits") if isinstance(run.get("limits"), dict) else {}
    limit = _num(lim.get("memory_max_bytes"))
    for s in snap["resources"]["samples"]:
        v = _num(s.get("mem_limit_bytes"))
        if v is not None and (limit is None or v < limit):
            limit = v
    res = snap["resources"]
    peak = _num(res.get("peak_tree_rss_bytes")) or _num(res.get("peak_rss_bytes"))
    if not limit or peak is None or peak < MEM_LIMIT_SHARE * limit:
        return []
    top = [p for p in snap["phases"] if _num(p.get("peak_rss_bytes")) is not None]
    worst = max(top, key=lambda p: p["peak_rss_bytes"], default=None)
    where = f", highest in {_label(worst)}" if worst else ""
    return [
        _item(
            "memory_limit",
            worst,
            f"memory peaked at {_mib(peak)}, {peak / limit * 100:.0f}% of the container's "
            f"{_mib(limit)} limit{where}",
            "Process the data in chunks or stream it, release large buffers as soon as a "
            "phase is done with them, or raise the limit before the kernel's OOM killer "
            "ends the run.",
            peak_bytes=peak,
            limit_bytes=limit,
            used_pct=peak / limit * 100,
        )
    ]


def _dominant(snap: Mapping[str, Any], run_ms: float) -> list[dict[str, Any]]:
    by_span = {p["span"]: p for p in snap["phases"]}
    found = []
    for p in snap["phases"]:
        dur = _num(p.get("duration_ms"))
        if p["status"] != "completed" or dur is None or dur < DOM_PARENT_MIN_MS:
            continue
        if dur < DOM_PARENT_MIN_SHARE * run_ms:
            continue
        # Wall time covered by each child key (intervals merged: concurrent children of
        # one key do not count twice), and folded repeats by their total.
        spans: dict[str, list[tuple[float, float]]] = {}
        for c in p.get("children") or ():
            k = by_span.get(c)
            off, d = (_num(k.get("offset_ms")), _num(k.get("duration_ms"))) if k else (None, None)
            if k is not None and off is not None and d is not None:
                spans.setdefault(k["phase"], []).append((off, off + d))
        cover: dict[str, float] = {}
        for key, iv in spans.items():
            iv.sort()
            total, cur_s, cur_e = 0.0, iv[0][0], iv[0][1]
            for s, e in iv[1:]:
                if s > cur_e:
                    total += cur_e - cur_s
                    cur_s, cur_e = s, e
                else:
                    cur_e = max(cur_e, e)
            cover[key] = total + cur_e - cur_s
        for key, agg in (p.get("folded") or {}).items():
            cover[key] = cover.get(key, 0.0) + (_num(agg.get("total_ms")) or 0.0)
        if len(cover) < 2:
            continue  # one child: it is the parent's work by construction
        key, ms = max(cover.items(), key=lambda kv: kv[1])
        share = ms / dur
        if share < DOM_SHARE:
            continue
        child = next((by_span[c] for c in p.get("children") or () if by_span.get(c, {}).get(
            "phase") == key), None)  # fmt: skip
        label = _label(child) if child else key
        found.append(
            _item(
                "dominant_subphase",
                p,
                f"{label} took {share * 100:.0f}% of {_label(p)} ({_ms(ms)} of {_ms(dur)}); "
                f"its {len(cover) - 1} sibling(s) share the rest",
                f"Optimise {key} first: nothing else in {p['phase']} can save as much. "
                f"Give it sub-phases of its own to see where its time goes.",
                parent_ms=dur,
                child=key,
                child_ms=ms,
                share_pct=share * 100,
                siblings=len(cover) - 1,
            )
        )
    return found


def _cacheable(
    snap: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], run_ms: float
) -> list[dict[str, Any]]:
    rid = snap["run"]["id"]
    if not rows or rows[-1].get("run") != rid:
        return []
    found = []
    for key, cur in (rows[-1].get("phases") or {}).items():
        sig = cur.get("outputs")
        dur = _num(cur.get("duration_ms"))
        if not sig or cur.get("status") != "completed" or dur is None:
            continue
        if dur < CACHE_MIN_MS or dur < CACHE_MIN_SHARE * run_ms:
            continue
        same = 1
        for row in reversed(rows[:-1]):
            prev = (row.get("phases") or {}).get(key)
            if not prev or prev.get("status") != "completed" or prev.get("outputs") != sig:
                break
            same += 1
        if same < CACHE_RUNS:
            continue
        p = next((p for p in snap["phases"] if p["phase"] == key), {"phase": key, "span": None})
        files = [part for part in sig.split("|") if ":" in part and "=" not in part]
        found.append(
            _item(
                "cacheable",
                p,
                f"{_label(p)} produced the same outputs ({len(files)} file(s) of the same "
                f"names and sizes, {cur.get('items') or 0} items) in each of the last {same} "
                f"runs, taking {_ms(dur)} in this one",
                "If its inputs did not change either, skip the work: check a fingerprint of "
                "the inputs and call p.cached('inputs unchanged') (declare it with "
                "meta={'inputs': fingerprint} to make the evidence exact).",
                runs=same,
                duration_ms=dur,
                files=len(files),
                items=cur.get("items") or 0,
            )
        )
    return found


def _hot_loop(snap: Mapping[str, Any]) -> list[dict[str, Any]]:
    found = []
    by_key: dict[str, Mapping[str, Any]] = {}
    for p in snap["phases"]:
        by_key.setdefault(p["phase"], p)
    for key, agg in (snap.get("keys") or {}).items():
        count = agg.get("count") or 0
        timed = count - (agg.get("skipped") or 0) - (agg.get("cached") or 0)
        total = _num(agg.get("total_ms")) or 0.0
        if timed < HOT_MIN_CALLS:
            continue
        mean = total / timed
        if mean >= HOT_CALL_COST_MS:
            continue
        cost = timed * HOT_CALL_COST_MS
        p = by_key.get(key) or {"phase": key, "span": None}
        found.append(
            _item(
                "hot_loop",
                p,
                f"{_label(p)} was entered {timed:,} times for {mean * 1000:.2f} us of work "
                f"each ({_ms(total)} in all): recording it costs at least "
                f"{HOT_CALL_COST_MS * 1000:.0f} us a call, about {_ms(cost)}",
                "Time the loop, not its body: wrap the whole loop in one phase and count the "
                "iterations with p.add_items(1) (items/s then shows the rate).",
                calls=timed,
                mean_us=mean * 1000,
                work_ms=total,
                monitoring_ms=cost,
            )
        )
    return found


def _rising(
    snap: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    metric: str,
    floor: float,
    rule: str,
) -> list[dict[str, Any]]:
    rid = snap["run"]["id"]
    if len(rows) < SLOW_MIN_RUNS or rows[-1].get("run") != rid:
        return []
    found = []
    for key, cur in (rows[-1].get("phases") or {}).items():
        if not cur.get("top", True) or cur.get("status") != "completed":
            continue
        series = [
            v
            for row in rows
            if (ph := (row.get("phases") or {}).get(key))
            and ph.get("status") == "completed"
            and (v := _num(ph.get(metric))) is not None
        ][-SLOW_WINDOW:]
        now = _num(cur.get(metric))
        if len(series) < SLOW_MIN_RUNS or now is None:
            continue
        tr = analysis.trend(series, k=SLOW_WINDOW)
        pct = tr.get("pct_per_run")
        if tr["direction"] != "slower" or pct is None or pct < SLOW_MIN_PCT_PER_RUN:
            continue
        first = analysis.describe(series[:3])["median"]
        last = analysis.describe(series[-3:])["median"]
        med = analysis.describe(series)["median"]
        if last < first * (1 + SLOW_MIN_RISE) or last - first < floor or now < med:
            continue
        p = next((p for p in snap["phases"] if p["phase"] == key), {"phase": key, "span": None})
        if metric == "duration_ms":
            finding = (
                f"{_label(p)} got slower run after run: {_ms(first)} to {_ms(last)} over "
                f"the last {len(series)} runs ({pct:+.0f}% a run)"
            )
            advice = (
                "Something it depends on grows with every run (an index, a cache, a table, "
                "accumulated files): look for what it reads that is bigger each time, and "
                "compare this run with an early one (report --compare)."
            )
        else:
            finding = (
                f"{_label(p)}'s peak memory grew run after run: {_mib(first)} to "
                f"{_mib(last)} over the last {len(series)} runs ({pct:+.0f}% a run)"
            )
            advice = (
                "A creeping leak or a data set that keeps growing: look for what it loads "
                "or keeps that is bigger each run (caches, accumulated results)."
            )
        found.append(
            _item(
                rule,
                p,
                finding,
                advice,
                runs=len(series),
                first=first,
                last=last,
                current=now,
                pct_per_run=pct,
                metric=metric,
            )
        )
    return found


def suggest(
    snap: Mapping[str, Any], rows: Sequence[Mapping[str, Any]] = ()
) -> list[dict[str, Any]]:
    """Every rule's suggestions for the run of ``snap``, in ``RULES`` order.

    ``rows``: per-run rows (``charts.row_of`` or catalog summaries), oldest first, ending
    with this run's; without them the rules over history (``cacheable``,
    ``getting_slower``, ``growing_memory``) are silent. A running run gets no suggestion:
    its figures are not final.
    """
    run = snap["run"]
    if run.get("status") == "running":
        return []
    run_ms = _num(run.get("duration_ms")) or 0.0
    return [
        *_parallelise(snap, run_ms),
        *_io_wait(snap, run_ms),
        *_memory_limit(snap),
        *_dominant(snap, run_ms),
        *_cacheable(snap, rows, run_ms),
        *_hot_loop(snap),
        *_rising(snap, rows, "duration_ms", SLOW_FLOOR_MS, "getting_slower"),
        *_rising(snap, rows, "peak_rss_bytes", GROW_FLOOR_BYTES, "growing_memory"),
    ]
