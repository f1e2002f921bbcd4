"""Hot-loop aggregation, a core feature: ``mon.phase()`` entered many times with one key
folds into an aggregate (counts by status, total/min/max durations, CPU, items, errors),
written as ``aggregate`` events, folded again by the reducer beyond ``max_phases``, and the
state replayed from the log equals the live state. (The page's aggregate rows are drawn in
test_page.py::test_hot_loop_shows_one_aggregate_row_with_the_exact_count.)"""

from __future__ import annotations

import multiprocessing as mp
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest
from helpers import of_kind, read_log
from hypothesis import given, settings
from hypothesis import strategies as hs

import atroz_monitor
from atroz_monitor import Monitor
from atroz_monitor.read import state as S
from atroz_monitor.read.loader import load_state
from atroz_monitor.view import views
from atroz_monitor.view.views import snapshot


def _reduce(events, **kw):
    s = S.State(**kw)
    for e in events:
        S.apply(s, e)
    return s


# ------------------------------------------------------------------ the writer (monitor.py)


def test_a_million_calls_in_a_hot_loop_are_a_few_exact_lines(tmp_path):
    """1,000,000 calls of one key: with detail="auto" the loop switches to aggregates
    after 100 calls; the log stays small and count, items and failures are exact."""
    log = tmp_path / "hot.jsonl"
    n = 1_000_000
    with Monitor(log, sample_interval=None, alert_rules=[]) as mon:
        with mon.phase("P00"):
            for i in range(n):
                try:
                    with mon.phase("item") as p:
                        p.add_items(3)
                        if i % 100_000 == 99_999:
                            raise ValueError(i)
                except ValueError:
                    pass
    evs = read_log(log)
    assert len(evs) < 1_000
    aggs = of_kind(evs, "aggregate")
    single = [e for e in of_kind(evs, "phase_end") if e["phase"] == "item"]
    assert sum(a["count"] for a in aggs) + len(single) == n
    assert len(single) == 100
    st, _ = load_state([log])
    k = st.runs[mon.run_id].keys["item"]
    assert k.count == n and k.items == 3 * n and k.failed == 10
    assert (
        abs(k.total_ms - (sum(a["total_ms"] for a in aggs) + sum(e["duration_ms"] for e in single)))
        < 1e-6 * n
    )
    snap = snapshot(st, mon.run_id, now=time.time())
    assert snap["quality"]["calls_aggregated"] == n - 100


def test_detail_all_and_aggregate_per_phase(tmp_path):
    """detail="all" records every call; detail="aggregate" sums from the first call,
    also when set on one phase only."""
    log = tmp_path / "d.jsonl"
    with Monitor(log, sample_interval=None, alert_rules=[], detail="all") as mon:
        for _ in range(500):
            with mon.phase("every"):
                pass
        for _ in range(50):
            with mon.phase("summed", detail="aggregate"):
                pass
    evs = read_log(log)
    assert len([e for e in of_kind(evs, "phase_end") if e["phase"] == "every"]) == 500
    aggs = [e for e in of_kind(evs, "aggregate") if e["phase"] == "summed"]
    assert sum(a["count"] for a in aggs) == 50
    assert not [e for e in of_kind(evs, "phase_end") if e["phase"] == "summed"]
    with pytest.raises(ValueError, match="detail"):
        Monitor(tmp_path / "x.jsonl", detail="some")


def _hot_task(args: tuple[int, str]) -> int:
    _, parent = args
    with atroz_monitor.phase("item", parent=parent):
        pass
    return os.getpid()


@pytest.mark.faults  # a row of docs/RELIABILITY.md's fault table: runs with -m faults
def test_pool_hot_loop_aggregates_stay_under_their_parent(tmp_path: Path) -> None:
    """A pool worker's hot-loop calls all reach the log, each counted under its own parent."""
    log = tmp_path / "run.jsonl"
    ctx = mp.get_context("fork")
    with Monitor(
        log, sample_interval=None, run_id="hot", aggregate_above=50, alert_rules=[]
    ) as mon:
        pool = ctx.Pool(1)
        spans = []
        for k in range(2):
            with mon.phase(f"parent{k}") as p:
                pool.map(_hot_task, [(i, p.span) for i in range(300)], chunksize=50)
            spans.append(p.span)
        pool.close()  # a graceful end: the worker finishes and exits (no terminate)
        pool.join()
    evs = read_log(log)
    counts = Counter()
    for e in evs:
        if e["ev"] == "phase_end" and e["phase"] == "item":
            counts[e["parent"]] += 1
        elif e["ev"] == "aggregate" and e["phase"] == "item":
            counts[e["parent"]] += e["count"]
    assert sum(counts.values()) == 600, (
        f"{sum(counts.values())} of 600 calls in the log: a worker's summed calls are written "
        "once a second or at run end, and a pool worker never reaches run end (os._exit)"
    )
    assert counts == {spans[0]: 300, spans[1]: 300}, (
        f"per parent {dict(counts)}: a worker's hot-loop table is keyed by phase key only, "
        "so calls under the second parent are summed into the first parent's aggregate"
    )


# ------------------------------------------------------------------ the reducer (state.py)


def test_a_million_repeats_fold_into_bounded_state():
    """Beyond max_phases, repeats fold into their parent's aggregate: bounded records,
    exact counts and totals."""
    s = S.State(max_phases=100)
    apply = S.apply
    apply(
        s,
        {
            "ev": "phase_start",
            "run": "r",
            "pid": 1,
            "span": "p",
            "phase": "loop",
            "name": "loop",
            "parent": None,
            "ts": 0.0,
        },
    )
    n = 20_000
    for i in range(n):
        span = f"c{i}"
        apply(
            s,
            {
                "ev": "phase_start",
                "run": "r",
                "pid": 1,
                "span": span,
                "phase": "item",
                "name": "item",
                "parent": "p",
                "ts": 1.0,
            },
        )
        apply(
            s,
            {
                "ev": "phase_end",
                "run": "r",
                "pid": 1,
                "span": span,
                "phase": "item",
                "name": "item",
                "parent": "p",
                "ts": 1.0,
                "status": "completed",
                "duration_ms": 2.0,
            },
        )
    r = s.runs["r"]
    assert len(r.phases) <= 101
    assert r.keys["item"].count == n and r.keys["item"].total_ms == 2.0 * n
    parent = r.phases["p"]
    kept = sum(1 for c in parent.children if r.phases[c].phase == "item")
    assert parent.folded["item"].count + kept == n
    assert r.folded_count == parent.folded["item"].count
    assert r.phases["c0"].phase == "item"  # the first one of the key keeps its detail


def test_a_failure_in_a_folded_repeat_is_counted_once():
    """Beyond max_phases, a loop's repeat that fails (folded away at once, or kept light)
    counts 1 error; its parent failing with the same exception adds none; a repeat whose
    failure the parent caught still counts 1."""
    err = {"type": "IOError", "msg": "disk"}

    def run(parent_fails: bool) -> int:
        evs = [{"ev": "phase_start", "ts": 1.0, "span": "1.1", "phase": "P", "parent": None}]
        for i in range(2, 12):
            last = i == 11
            evs += [
                {"ev": "phase_start", "ts": 1.0 + i / 100, "span": f"1.{i}", "phase": "L",
                 "parent": "1.1"},
                {"ev": "phase_end", "ts": 1.005 + i / 100, "span": f"1.{i}", "phase": "L",
                 "parent": "1.1", "status": "failed" if last else "completed",
                 **({"error": err} if last else {})},
            ]  # fmt: skip
        evs.append({"ev": "phase_end", "ts": 2.0, "span": "1.1", "phase": "P", "parent": None,
                    "status": "failed" if parent_fails else "completed",
                    **({"error": err} if parent_fails else {})})  # fmt: skip
        for i, e in enumerate(evs, 1):
            e.update(run="r", pid=1, seq=i)
        st = S.State(max_phases=4)
        S.apply_all(st, evs)
        assert st.runs["r"].folded_count > 0
        return S.error_count(st.runs["r"])

    assert (run(True), run(False)) == (1, 1)


def test_repeats_open_beyond_max_phases_are_counted_folded_at_run_end():
    """Repeats started beyond max_phases and never ended (kept light) are dropped at
    run_end and counted in folded_count (quality.phases_folded), never lost silently."""
    env = {"run": "r", "pid": 1}
    evs = [{"ev": "run_start", "ts": 1.0, **env},
           {"ev": "phase_start", "ts": 1.0, "span": "p", "phase": "loop", **env}]  # fmt: skip
    for i in range(6):  # started, never ended: 2 get records (max 3 with the parent), 4 light
        evs.append({"ev": "phase_start", "ts": 2.0, "span": f"c{i}", "phase": "item",
                    "parent": "p", **env})  # fmt: skip
    evs.append({"ev": "run_end", "ts": 3.0, "status": "failed", **env})
    s = _reduce(evs, max_phases=3)
    r = s.runs["r"]
    assert len(r.phases) == 3 and not r.lite
    assert r.folded_count == 4
    assert views.snapshot(s, "r", now=4.0)["quality"]["phases_folded"] == 4


# ------------------------------------------------------------------ writer and reader agree


def _log_counts(evs: list[dict], key: str) -> Counter:
    """Calls of ``key`` in a log by status: phase_end lines one by one plus aggregate sums;
    items only of the calls that ran, as the reducer counts them."""
    c: Counter = Counter()
    for e in evs:
        if e.get("phase") != key:
            continue
        if e["ev"] == "phase_end":
            c[e["status"]] += 1
            c["count"] += 1
            if e["status"] not in ("skipped", "cached"):  # kept out of statistics
                c["items"] += e.get("items", 0)
        elif e["ev"] == "aggregate":
            for f in ("count", "completed", "failed", "cancelled", "skipped", "cached", "items"):
                c[f] += e[f]
    return +c


def test_the_first_aggregate_above_calls_keep_their_detail(tmp_path: Path) -> None:
    """With aggregate_above=5, 40 calls under one parent: exactly 5 phase_end lines, the
    other 35 in aggregate events, and quality.calls_aggregated is 35."""
    log = tmp_path / "a.jsonl"
    with Monitor(log, sample_interval=None, alert_rules=[], aggregate_above=5) as mon:
        with mon.phase("P"):
            for _ in range(40):
                with mon.phase("item"):
                    pass
    evs = read_log(log)
    assert len([e for e in of_kind(evs, "phase_end") if e["phase"] == "item"]) == 5
    assert sum(a["count"] for a in of_kind(evs, "aggregate") if a["phase"] == "item") == 35
    st, _ = load_state([log])
    assert snapshot(st, mon.run_id, now=time.time())["quality"]["calls_aggregated"] == 35


def test_every_status_and_the_items_are_counted_exactly(tmp_path: Path) -> None:
    """detail="aggregate", 100 calls: 20 raise, 20 skip, 20 are cached, 40 complete, each
    adds i items: the aggregate, the reducer's key and the caller all agree exactly; items
    count only for the 60 calls that ran (as for calls recorded one by one)."""
    log = tmp_path / "a.jsonl"
    caught = 0
    with Monitor(log, sample_interval=None, alert_rules=[]) as mon:
        with mon.phase("P"):
            for i in range(100):
                try:
                    with mon.phase("item", detail="aggregate") as p:
                        p.add_items(i)
                        if i % 5 == 0:
                            raise KeyError(i)
                        if i % 5 == 1:
                            p.skip("seen")
                        elif i % 5 == 2:
                            p.cached("hit")
                except KeyError:
                    caught += 1
    evs = read_log(log)
    assert caught == 20
    assert not [e for e in of_kind(evs, "phase_end") if e["phase"] == "item"]
    want = {"count": 100, "completed": 40, "failed": 20, "skipped": 20, "cached": 20,
            "items": 2990}  # fmt: skip  # i % 5 in (0, 3, 4): 950 + 1010 + 1030
    assert _log_counts(evs, "item") == want
    st, _ = load_state([log])
    k = st.runs[mon.run_id].keys["item"]
    got = (k.count, k.completed, k.failed, k.skipped, k.cached, k.items)
    assert got == (100, 40, 20, 20, 20, 2990)


def test_durations_are_bounded_by_an_independent_clock(tmp_path: Path) -> None:
    """total/min/max of 30 aggregated calls, each busy for a time measured inside the call
    with perf_counter (one for 20 ms): max >= 20 ms, total >= the measured busy times and
    <= the loop's wall time measured around it, min <= mean <= max."""
    log = tmp_path / "a.jsonl"
    inside = []
    with Monitor(log, sample_interval=None, alert_rules=[], detail="aggregate") as mon:
        w0 = time.perf_counter()
        for i in range(30):
            with mon.phase("busy"):
                t0 = time.perf_counter()
                while time.perf_counter() - t0 < (0.020 if i == 17 else 0.001):
                    pass
                inside.append((time.perf_counter() - t0) * 1000)
        wall_ms = (time.perf_counter() - w0) * 1000
    aggs = [a for a in of_kind(read_log(log), "aggregate") if a["phase"] == "busy"]
    total = sum(a["total_ms"] for a in aggs)
    lo = min(a["min_ms"] for a in aggs)
    hi = max(a["max_ms"] for a in aggs)
    assert sum(a["count"] for a in aggs) == 30
    assert hi >= max(inside) >= 20.0
    assert lo >= min(inside) - 0.001  # written to 3 decimals
    assert sum(inside) - 0.01 <= total <= wall_ms
    assert lo <= total / 30 <= hi


def test_skipped_and_cached_calls_stay_out_of_the_durations(tmp_path: Path) -> None:
    """Calls that skip (after 2 ms of work) are counted, their p.error() lines too, but add
    no duration: total 0, min and max null, so statistics describe work that ran."""
    log = tmp_path / "a.jsonl"
    with Monitor(log, sample_interval=None, alert_rules=[]) as mon:
        with mon.phase("P"):
            for _ in range(4):
                with mon.phase("s", detail="aggregate") as p:
                    t0 = time.perf_counter()
                    while time.perf_counter() - t0 < 0.002:
                        pass
                    p.skip("x")
                    p.error("bad input")
    (agg,) = [a for a in of_kind(read_log(log), "aggregate") if a["phase"] == "s"]
    assert (agg["count"], agg["skipped"], agg["errors"]) == (4, 4, 4)
    assert (agg["total_ms"], agg["min_ms"], agg["max_ms"]) == (0.0, None, None)


def test_an_exception_in_the_loop_reaches_the_caller_unchanged(tmp_path: Path) -> None:
    """Inside an aggregated call the pipeline's own exception propagates as the same object,
    and the call is counted failed (aggregation never swallows or replaces an error)."""
    log = tmp_path / "a.jsonl"
    err = ValueError("row 7 is bad")
    with Monitor(log, sample_interval=None, alert_rules=[], detail="aggregate") as mon:
        with pytest.raises(ValueError) as info:
            with mon.phase("item"):
                raise err
    assert info.value is err
    (agg,) = [a for a in of_kind(read_log(log), "aggregate") if a["phase"] == "item"]
    assert (agg["count"], agg["failed"]) == (1, 1)


def _nested(log: Path) -> Monitor:
    """P > 10 rows > 4 cells each, aggregate_above=3, row 7 raises after its cells."""
    with Monitor(log, sample_interval=None, alert_rules=[], aggregate_above=3) as mon:
        with mon.phase("P"):
            for i in range(10):
                try:
                    with mon.phase("row"):
                        for _ in range(4):
                            with mon.phase("cell"):
                                pass
                        if i == 7:
                            raise ValueError(i)
                except ValueError:
                    pass
    return mon


def test_nested_hot_loops_count_every_call_under_the_nearest_recorded_parent(
    tmp_path: Path,
) -> None:
    """Nested loops: 10 rows (3 recorded, 7 summed, 1 failed) of 4 cells: 40 cells in the
    log; the cells of the 3 recorded rows are under their row (4 each), the 28 cells of
    summed rows (which have no span) under P."""
    log = tmp_path / "a.jsonl"
    mon = _nested(log)
    evs = read_log(log)
    assert _log_counts(evs, "row") == {"count": 10, "completed": 9, "failed": 1}
    assert _log_counts(evs, "cell") == {"count": 40, "completed": 40}
    (p,) = [e for e in of_kind(evs, "phase_end") if e["phase"] == "P"]
    per_parent: Counter = Counter()
    for e in evs:
        if e.get("phase") == "cell":
            per_parent[e["parent"]] += (
                e["count"] if e["ev"] == "aggregate" else e["ev"] == "phase_end"
            )
    rows = [e["span"] for e in of_kind(evs, "phase_end") if e["phase"] == "row"]
    assert per_parent == {**dict.fromkeys(rows, 4), p["span"]: 28}
    st, _ = load_state([log])
    k = st.runs[mon.run_id].keys
    assert (k["row"].count, k["row"].failed, k["cell"].count) == (10, 1, 40)


def test_replayed_state_equals_the_live_state(tmp_path: Path) -> None:
    """After a run of nested hot loops, the live snapshot's per-key aggregates, folded
    aggregates and aggregation counters equal those rebuilt from the log."""
    log = tmp_path / "a.jsonl"
    mon = _nested(log)
    live = mon.snapshot()
    st, _ = load_state([log])
    replay = views.snapshot(st, mon.run_id, now=time.time())
    assert live["keys"] == replay["keys"]
    assert live["keys"]["cell"]["count"] == 40
    assert [p.get("folded") for p in live["phases"]] == [p.get("folded") for p in replay["phases"]]
    assert live["quality"]["calls_aggregated"] == replay["quality"]["calls_aggregated"] == 35


def test_max_phases_folds_the_live_state_as_the_replay_does(tmp_path: Path) -> None:
    """detail="all" and max_phases=20: 200 calls are 200 lines, the live state keeps 20
    records and folds 181, exactly as a replay with the same max_phases; counts stay exact."""
    log = tmp_path / "a.jsonl"
    with Monitor(log, sample_interval=None, alert_rules=[], detail="all", max_phases=20) as mon:
        with mon.phase("P"):
            for _ in range(200):
                with mon.phase("item"):
                    pass
        live = mon.snapshot()
    assert len([e for e in of_kind(read_log(log), "phase_end") if e["phase"] == "item"]) == 200
    st, _ = load_state([log], max_phases=20)
    replay = views.snapshot(st, mon.run_id, now=time.time())
    assert (len(live["phases"]), live["quality"]["phases_folded"]) == (20, 181)
    assert (len(replay["phases"]), replay["quality"]["phases_folded"]) == (20, 181)
    assert live["keys"]["item"]["count"] == replay["keys"]["item"]["count"] == 200


_OUTCOME = hs.sampled_from(["ok", "fail", "skip", "cached"])
_OUTCOMES = hs.lists(hs.tuples(_OUTCOME, hs.integers(0, 9)), max_size=60)


@settings(max_examples=40, deadline=None)
@given(_OUTCOMES, hs.integers(1, 8), hs.sampled_from(["auto", "aggregate", "all"]))
def test_any_loop_is_counted_exactly_in_the_log_and_the_state(
    calls: list[tuple[str, int]], above: int, detail: str
) -> None:
    """Any sequence of call outcomes and items, any threshold and detail: the log (lines
    plus aggregates) and the reducer's key hold exactly the calls made, by status, and the
    items of the calls that ran, whichever way each call was recorded."""
    status = {"ok": "completed", "fail": "failed", "skip": "skipped", "cached": "cached"}
    want = Counter(status[o] for o, _ in calls)
    want.update(count=len(calls), items=sum(n for o, n in calls if o in ("ok", "fail")))
    with tempfile.TemporaryDirectory() as d:
        log = os.path.join(d, "a.jsonl")
        with Monitor(
            log, sample_interval=None, alert_rules=[], aggregate_above=above, detail=detail
        ) as mon:
            with mon.phase("P"):
                for outcome, n in calls:
                    try:
                        with mon.phase("item") as p:
                            p.add_items(n)
                            if outcome == "fail":
                                raise OSError(n)
                            if outcome == "skip":
                                p.skip()
                            elif outcome == "cached":
                                p.cached()
                    except OSError:
                        pass
        assert _log_counts(read_log(log), "item") == +want
        st, _ = load_state([log])
        keys = st.runs[mon.run_id].keys
        k = keys.get("item")
        got = (k.count, k.completed, k.failed, k.skipped, k.cached, k.items) if k else None
        fields = ("count", "completed", "failed", "skipped", "cached", "items")
        assert got == (tuple(want[f] for f in fields) if calls else None)
