"""The pure views (views.py): a run's status from its end line, liveness or silence; one
phase as JSON (names from the plan, CPU average, durations of interrupted phases, rates);
the errors counted once; the latest run; and the snapshot's independence from the state."""

from __future__ import annotations

import copy
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from atroz_monitor.read import state as S
from atroz_monitor.view import views


def _reduce(events, **kw):
    s = S.State(**kw)
    for e in events:
        S.apply(s, e)
    return s


def test_run_without_end_is_running_or_interrupted_by_liveness_and_silence():
    """A log without run_end is running while its writer lives, interrupted once it does
    not; with unknown liveness, silence beyond max(3 x interval, 10 s) means interrupted."""
    evs = [
        {
            "ev": "run_start",
            "ts": 100.0,
            "run": "r",
            "pid": 1,
            "seq": 1,
            "v": 1,
            "sample_interval": 1.0,
        },
        {
            "ev": "phase_start",
            "ts": 101.0,
            "run": "r",
            "pid": 1,
            "seq": 2,
            "span": "1.1",
            "phase": "P00",
            "name": "P00",
            "parent": None,
        },
    ]
    s = _reduce(evs)
    assert views.snapshot(s, "r", now=500.0, alive=True)["run"]["status"] == "running"
    snap = views.snapshot(s, "r", now=105.0, alive=False)
    assert snap["run"]["status"] == "interrupted"
    assert snap["phases"][0]["status"] == "interrupted"
    assert views.snapshot(s, "r", now=110.0)["run"]["status"] == "running"
    assert views.snapshot(s, "r", now=111.5)["run"]["status"] == "interrupted"


def test_an_interrupted_phase_spans_its_children():
    """kill -9 during P03: P03 has no end line, its child P03.pool ran 3.59 s; P03's
    duration is at least until the child's end, and marked a lower bound."""
    evs = [
        {"ev": "run_start", "ts": 10.0, "run": "r", "pid": 1, "seq": 1},
        {"ev": "phase_start", "ts": 10.5, "run": "r", "pid": 1, "seq": 2, "span": "1.1",
         "phase": "P03", "parent": None},
        {"ev": "phase_start", "ts": 10.6, "run": "r", "pid": 1, "seq": 3, "span": "1.2",
         "phase": "P03.pool", "parent": "1.1"},
        {"ev": "phase_end", "ts": 14.19, "run": "r", "pid": 1, "seq": 4, "span": "1.2",
         "phase": "P03.pool", "parent": "1.1", "status": "completed", "duration_ms": 3590.0},
    ]  # fmt: skip
    st = S.State()
    S.apply_all(st, evs)
    snap = views.snapshot(st, "r", now=100.0, alive=False)
    p03 = snap["phases"][0]
    assert (p03["status"], p03["duration_ms"], p03["duration_lower_bound"]) == (
        "interrupted",
        3690.0,
        True,
    )


def test_an_interrupted_phase_lasts_until_the_last_sample_that_saw_it_open():
    """A run ended with P open and no child: P lasted at least until the last sample that
    listed it (2.5 s), not zero."""
    evs = [
        {"ev": "run_start", "ts": 10.0, "run": "r", "pid": 1, "seq": 1},
        {"ev": "phase_start", "ts": 10.5, "run": "r", "pid": 1, "seq": 2, "span": "1.1",
         "phase": "P", "parent": None},
        {"ev": "sample", "ts": 13.0, "run": "r", "pid": 1, "seq": 3, "spans": ["1.1"]},
        {"ev": "run_end", "ts": 13.2, "run": "r", "pid": 1, "seq": 4, "status": "failed"},
    ]  # fmt: skip
    st = S.State()
    S.apply_all(st, evs)
    p = views.snapshot(st, "r", now=100.0)["phases"][0]
    assert (p["status"], p["duration_ms"]) == ("interrupted", 2500.0)


def test_a_nested_failure_is_one_error_and_each_failed_phase_shows_it():
    """An exception raised in P07.rules fails P07.rules, P07 and the run: the run counts
    1 error (plus 1 logged), each failed phase's own count includes its exception, and
    the exceptions list names the phase that raised it."""
    err = {"type": "DemoFailure", "msg": "rule R-17", "tb": "..."}
    evs = [
        {"ev": "run_start", "ts": 1.0, "run": "r", "pid": 1, "seq": 1},
        {"ev": "phase_start", "ts": 1.1, "run": "r", "pid": 1, "seq": 2, "span": "1.1",
         "phase": "P07", "parent": None},
        {"ev": "phase_start", "ts": 1.2, "run": "r", "pid": 1, "seq": 3, "span": "1.2",
         "phase": "P07.rules", "parent": "1.1"},
        {"ev": "log", "ts": 1.25, "run": "r", "pid": 1, "seq": 4, "level": "error",
         "msg": "row 7", "span": "1.2"},
        {"ev": "phase_end", "ts": 1.3, "run": "r", "pid": 1, "seq": 5, "span": "1.2",
         "phase": "P07.rules", "parent": "1.1", "status": "failed", "error": err},
        {"ev": "phase_end", "ts": 1.4, "run": "r", "pid": 1, "seq": 6, "span": "1.1",
         "phase": "P07", "parent": None, "status": "failed", "error": err},
        {"ev": "run_end", "ts": 1.5, "run": "r", "pid": 1, "seq": 7, "status": "failed",
         "error": err},
    ]  # fmt: skip
    st = S.State()
    S.apply_all(st, evs)
    assert S.error_count(st.runs["r"]) == 2
    snap = views.snapshot(st, "r", now=2.0)
    assert (snap["errors"]["count"], snap["errors"]["logged"]) == (2, 1)
    assert [x["span"] for x in snap["errors"]["exceptions"]] == ["1.2"]
    assert [(p["span"], p["errors"]) for p in snap["phases"]] == [("1.1", 1), ("1.2", 2)]


def test_an_exception_outside_every_phase_is_the_runs_error():
    """A run failing with an exception no phase failed with counts it: 1 error."""
    err = {"type": "KeyError", "msg": "'x'"}
    evs = [
        {"ev": "run_start", "ts": 1.0, "run": "r", "pid": 1, "seq": 1},
        {"ev": "run_end", "ts": 1.5, "run": "r", "pid": 1, "seq": 2, "status": "failed",
         "error": err},
    ]  # fmt: skip
    st = S.State()
    S.apply_all(st, evs)
    snap = views.snapshot(st, "r", now=2.0)
    assert snap["errors"]["count"] == 1
    assert snap["errors"]["exceptions"][0]["error"]["type"] == "KeyError"


def test_plan_names_name_phases_that_have_none_of_their_own():
    """phase("P01") under a plan naming P01 "Text Extraction" is shown by that name; a
    phase given its own name keeps it."""
    evs = [
        {"ev": "run_start", "ts": 1.0, "run": "r", "pid": 1, "seq": 1,
         "plan": [{"id": "P01", "name": "Text Extraction"}, {"id": "P02", "name": "Norm"}]},
        {"ev": "phase_start", "ts": 1.1, "run": "r", "pid": 1, "seq": 2, "span": "1.1",
         "phase": "P01", "name": "P01", "parent": None},
        {"ev": "phase_start", "ts": 1.2, "run": "r", "pid": 1, "seq": 3, "span": "1.2",
         "phase": "P02", "name": "Normalise v2", "parent": None},
    ]  # fmt: skip
    st = S.State()
    S.apply_all(st, evs)
    snap = views.snapshot(st, "r", now=2.0)
    assert [p["name"] for p in snap["phases"]] == ["Text Extraction", "Normalise v2"]


def test_cpu_average_needs_a_phase_of_one_clock_tick():
    """A 5 us phase with 6.65 us of CPU has no CPU average (not "133%"); a 100 ms phase
    with 50 ms has 50%."""
    evs = [
        {"ev": "phase_end", "ts": 1.0, "run": "r", "pid": 1, "seq": 1, "span": "1.1",
         "phase": "A", "status": "completed", "duration_ms": 0.005, "cpu_ms": 0.00665},
        {"ev": "phase_end", "ts": 2.0, "run": "r", "pid": 1, "seq": 2, "span": "1.2",
         "phase": "B", "status": "completed", "duration_ms": 100.0, "cpu_ms": 50.0},
    ]  # fmt: skip
    st = S.State()
    S.apply_all(st, evs)
    snap = views.snapshot(st, "r", now=3.0)
    assert [p["cpu_pct"] for p in snap["phases"]] == [None, 50.0]


def test_latest_run_is_the_one_that_started_last() -> None:
    """Runs starting at 5, 9 and 7 s: the latest is the one of 9 s; no runs: None."""
    evs = [{"ev": "run_start", "ts": ts, "run": rid, "pid": 1, "seq": 1}
           for rid, ts in (("a", 5.0), ("b", 9.0), ("c", 7.0))]  # fmt: skip
    assert views.latest_run(_reduce(evs)) == "b"
    assert views.latest_run(S.State()) is None


def _one_phase(**end: object) -> S.State:
    return _reduce(
        [
            {"ev": "run_start", "ts": 10.0, "run": "r", "pid": 1, "seq": 1},
            {"ev": "phase_start", "ts": 11.5, "run": "r", "pid": 1, "seq": 2, "span": "1.1",
             "phase": "P", "parent": None},
            {"ev": "phase_end", "ts": 13.5, "run": "r", "pid": 1, "seq": 3, "span": "1.1",
             "phase": "P", "parent": None, "status": "completed", **end},
        ]
    )  # fmt: skip


def test_phase_view_derives_offset_rate_and_rss_change() -> None:
    """A phase starting 1.5 s into the run, 2 s long, 500 items, RSS 100 -> 300 bytes:
    offset 1500 ms, 250 items/s, RSS change +200 bytes."""
    s = _one_phase(duration_ms=2000.0, items=500, rss_start_bytes=100, rss_bytes=300)
    (p,) = views.snapshot(s, "r", now=20.0)["phases"]
    got = (p["offset_ms"], p["duration_ms"], p["items_per_s"], p["rss_delta_bytes"])
    assert got == (1500.0, 2000.0, 250.0, 200)


def test_phase_view_of_a_running_phase_lasts_until_now() -> None:
    """A phase open in a running run lasts until ``now`` (3.25 s after its start); the same
    phase in a run known dead is interrupted, with no running duration."""
    s = _reduce(
        [
            {"ev": "run_start", "ts": 10.0, "run": "r", "pid": 1, "seq": 1},
            {"ev": "phase_start", "ts": 11.5, "run": "r", "pid": 1, "seq": 2, "span": "1.1",
             "phase": "P", "parent": None},
        ]
    )  # fmt: skip
    rec = s.runs["r"].phases["1.1"]
    live = views.phase_view(rec, 10.0, 14.75, "running")
    assert (live["status"], live["duration_ms"]) == ("running", 3250.0)
    dead = views.phase_view(rec, 10.0, 14.75, "interrupted")
    assert (dead["status"], dead["duration_ms"]) == ("interrupted", None)


def test_run_status_keeps_the_end_lines_status() -> None:
    """A run with run_end is what run_end says, whatever liveness or silence claim."""
    s = _reduce(
        [
            {"ev": "run_start", "ts": 1.0, "run": "r", "pid": 1, "seq": 1},
            {"ev": "run_end", "ts": 2.0, "run": "r", "pid": 1, "seq": 2, "status": "cancelled"},
        ]
    )
    r = s.runs["r"]
    assert [views.run_status(r, 1e9, a) for a in (True, False, None)] == ["cancelled"] * 3


def test_a_snapshot_shares_nothing_mutable_with_the_state() -> None:
    """Changing a snapshot does not change the next one, and events applied after a
    snapshot do not change it."""
    s = _one_phase(duration_ms=2000.0, items=5)
    S.apply(s, {"ev": "metric", "ts": 13.0, "run": "r", "pid": 1, "seq": 4, "span": "1.1",
                "name": "m", "value": 1.0})  # fmt: skip
    first = views.snapshot(s, "r", now=20.0)
    kept = copy.deepcopy(first)
    first["phases"][0]["metrics"]["m"] = 99
    first["phases"][0]["children"].append("x")
    first["keys"]["P"]["count"] = 99
    assert views.snapshot(s, "r", now=20.0) == kept
    S.apply(s, {"ev": "phase_start", "ts": 14.0, "run": "r", "pid": 1, "seq": 5, "span": "1.2",
                "phase": "Q", "parent": "1.1"})  # fmt: skip
    assert kept == copy.deepcopy(kept) and len(kept["phases"]) == 1
    assert len(views.snapshot(s, "r", now=20.0)["phases"]) == 2


_PHASES = st.lists(
    st.tuples(st.floats(0.0, 1e7, allow_nan=False), st.integers(0, 10**9)), max_size=15
)


@settings(max_examples=150, deadline=None)
@given(_PHASES)
def test_any_run_gives_durations_and_rates_from_its_end_lines(phases) -> None:
    """Any list of completed phases (duration, items): each view carries the duration to
    three decimals, items/s to two (none without items or under the writer's 1 us
    resolution: a subnormal duration divided by zero here once), and the snapshot is strict
    JSON."""
    evs = [{"ev": "run_start", "ts": 1.0, "run": "r", "pid": 1, "seq": 1}]
    for i, (d, n) in enumerate(phases, 2):
        evs.append({"ev": "phase_end", "ts": 2.0, "run": "r", "pid": 1, "seq": i,
                    "span": f"1.{i}", "phase": f"K{i}", "status": "completed",
                    "duration_ms": d, "items": n})  # fmt: skip
    snap = views.snapshot(_reduce(evs), "r", now=3.0)
    got = {p["phase"]: (p["duration_ms"], p["items_per_s"]) for p in snap["phases"]}
    want = {
        f"K{i}": (round(d, 3), round(n / (d / 1000.0), 2) if n and d >= 0.001 else None)
        for i, (d, n) in enumerate(phases, 2)
    }
    assert got == want
    json.dumps(snap, allow_nan=False)


def test_plan_progress_is_the_one_percentage_of_planned_phases_done() -> None:
    """1 of 3 planned phases done is 33.3 %; no plan gives no percentage; the snapshot's
    progress and the run lists (store.source) carry this same dict."""
    assert views.plan_progress(3, 1) == {"planned": 3, "done": 1, "pct": 33.3}
    assert views.plan_progress(0, 0) == {"planned": 0, "done": 0, "pct": None}
    assert views.plan_progress(8, 8)["pct"] == 100.0
