"""Suggestions with evidence (suggestions.py): each rule fires on the run shape it names
and stays silent otherwise, and any run gives well-formed items."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as hs
from synthetic import MIB, PHASES, T0, Run, random_run, rules, snap_of, state_of

from atroz_monitor.view import charts, suggestions, views


@settings(max_examples=60, deadline=None)
@given(PHASES, hs.integers(0, 4))
def test_suggest_on_any_run_returns_well_formed_items(
    phases: list[tuple[Any, ...]], earlier: int
) -> None:
    """Any run and history: each suggestion names a known rule, has text, and evidence of
    plain numbers and strings (JSON-ready)."""
    hist = [random_run(f"h{i}", T0 - 1000 * (i + 1), phases) for i in range(earlier)]
    st = state_of(*hist, random_run("X", T0, phases))
    got = suggestions.suggest(snap_of(st, "X"), charts.rows_from_state(st, "X"))
    for s in got:
        assert s["rule"] in suggestions.RULES
        assert s["finding"] and s["advice"]
        assert all(isinstance(v, (int, float, str)) for v in s["evidence"].values())
    json.dumps(got, allow_nan=False)


def test_parallelise_fires_on_one_busy_core_with_three_idle() -> None:
    """A 10 s phase at 100% of one core on 4 cores whose machine was 26% busy: parallelise,
    with the other cores' load (1.3%) and the saving (75%) as evidence."""
    r = Run("p")
    s = r.phase("P00", 0.0, 10.0, cpu_ms=10_000.0)
    for i in range(1, 10):
        r.ev("sample", float(i), cpu_pct=100.0, sys_cpu_pct=26.0, rss_bytes=MIB, spans=[s])
    r.phase("P01", 10.0, 1.0, cpu_ms=100.0)
    st = state_of(r.end(11.0))
    got = suggestions.suggest(snap_of(st, "p"), charts.rows_from_state(st, "p"))
    assert [(g["rule"], g["phase"]) for g in got] == [("parallelise", "P00")]
    ev = got[0]["evidence"]
    assert ev["cpu_pct"] == 100.0 and ev["cores"] == 4.0
    assert ev["others_busy_pct"] == 1.333
    assert ev["saving_ms"] == 7500.0
    assert "10.0 s" in got[0]["finding"] and "3 core(s)" in got[0]["finding"]


def test_parallelise_is_silent_when_the_other_cores_are_busy() -> None:
    """The same phase on a machine 90% busy: nothing to gain, no suggestion."""
    r = Run("p")
    s = r.phase("P00", 0.0, 10.0, cpu_ms=10_000.0)
    for i in range(1, 10):
        r.ev("sample", float(i), cpu_pct=100.0, sys_cpu_pct=90.0, rss_bytes=MIB, spans=[s])
    st = state_of(r.end(10.5))
    assert rules(st, "p") == []


def test_io_wait_fires_on_a_phase_moving_data_without_cpu() -> None:
    """4 s at 5% CPU while 64 MiB of storage I/O moved (16 MiB/s): io_wait."""
    r = Run("w")
    s = r.phase("P00", 0.0, 4.0, cpu_ms=200.0)
    for i in range(0, 5):
        r.ev("sample", float(i), io_read_bytes=i * 16 * MIB, io_write_bytes=0, spans=[s])
    st = state_of(r.end(4.5))
    got = suggestions.suggest(snap_of(st, "w"), [])
    assert [(g["rule"], g["phase"]) for g in got] == [("io_wait", "P00")]
    assert got[0]["evidence"]["io_bytes"] == 64 * MIB
    assert got[0]["evidence"]["io_bytes_per_s"] == 16 * MIB
    assert got[0]["evidence"]["cpu_pct"] == 5.0


def test_memory_limit_fires_at_90_percent_of_the_container_limit() -> None:
    """A tree peak of 900 MiB under a 1000 MiB cgroup limit: memory_limit, naming P01."""
    r = Run("m", limits={"memory_max_bytes": 1000 * MIB, "source": "cgroup"})
    r.phase("P00", 0.0, 1.0, peak_rss_bytes=200 * MIB)
    s = r.phase("P01", 1.0, 1.0, peak_rss_bytes=800 * MIB)
    r.ev("sample", 1.5, rss_bytes=800 * MIB, children_rss_bytes=100 * MIB, spans=[s])
    st = state_of(r.end(2.0))
    got = suggestions.suggest(snap_of(st, "m"), [])
    assert [(g["rule"], g["phase"]) for g in got] == [("memory_limit", "P01")]
    assert got[0]["evidence"]["used_pct"] == 90.0


def test_dominant_subphase_fires_at_95_percent_of_its_parent() -> None:
    """P00.parse covers 9.5 s of a 10 s P00 beside a 0.3 s sibling: dominant_subphase."""
    r = Run("d")
    s = r.phase("P00", 0.0, 10.0, cpu_ms=1000.0)
    r.phase("P00.read", 0.1, 0.3, parent=s)
    r.phase("P00.parse", 0.45, 9.5, parent=s)
    st = state_of(r.end(10.0))
    got = suggestions.suggest(snap_of(st, "d"), [])
    assert [(g["rule"], g["phase"]) for g in got] == [("dominant_subphase", "P00")]
    assert got[0]["evidence"]["child"] == "P00.parse"
    assert got[0]["evidence"]["share_pct"] == 95.0


def test_cacheable_fires_after_three_runs_of_the_same_outputs() -> None:
    """P00 wrote out.bin of 4096 bytes and 10 items in three runs in a row, 2 s each:
    cacheable; with two such runs, or a different size in the middle, silent."""

    def run(i: int, size: int) -> list[dict[str, Any]]:
        r = Run(f"c{i}", T0 + i * 100)
        s = r.phase("P00", 0.0, 2.0, cpu_ms=1000.0, items=10)
        r.ev("artifact", 1.0, path=f"/o/{i}/out.bin", bytes=size, span=s, phase="P00")
        r.phase("P01", 2.0, 1.0)
        return r.end(3.0)

    st = state_of(run(0, 4096), run(1, 4096), run(2, 4096))
    got = suggestions.suggest(snap_of(st, "c2"), charts.rows_from_state(st, "c2"))
    assert [(g["rule"], g["phase"]) for g in got] == [("cacheable", "P00")]
    assert got[0]["evidence"] == {"runs": 3, "duration_ms": 2000.0, "files": 1, "items": 10}
    assert rules(st, "c1") == []
    st = state_of(run(0, 4096), run(1, 5000), run(2, 4096))
    assert rules(st, "c2") == []


def test_hot_loop_fires_when_calls_cost_less_than_recording_them() -> None:
    """200,000 aggregated calls of 0.5 us each: hot_loop, monitoring about 800 ms."""
    r = Run("h")
    s = r.phase("P00", 0.0, 1.0)
    r.ev("aggregate", 0.9, phase="P00.tick", name="tick", parent=s, count=200_000,
         completed=200_000, total_ms=100.0, min_ms=0.0001, max_ms=0.01, cpu_ms=100.0,
         items=0, first_ts=T0)  # fmt: skip
    st = state_of(r.end(1.0))
    got = suggestions.suggest(snap_of(st, "h"), [])
    assert [(g["rule"], g["phase"]) for g in got] == [("hot_loop", "P00.tick")]
    ev = got[0]["evidence"]
    assert ev["calls"] == 200_000 and ev["mean_us"] == 0.5 and ev["monitoring_ms"] == 800.0


def test_getting_slower_and_growing_memory_over_six_runs() -> None:
    """P00 at 1.0, 1.2, ... 2.0 s and 100 + 20k MiB over six runs: both rules fire on the
    last run; on a run back at 1.0 s (faster than the median) they are silent."""

    def run(i: int, secs: float, rss: int) -> list[dict[str, Any]]:
        r = Run(f"s{i}", T0 + i * 100)
        r.phase("P00", 0.0, secs, peak_rss_bytes=rss)
        return r.end(secs)

    hist = [run(i, 1.0 + 0.2 * i, (100 + 20 * i) * MIB) for i in range(6)]
    st = state_of(*hist)
    got = suggestions.suggest(snap_of(st, "s5"), charts.rows_from_state(st, "s5"))
    assert [(g["rule"], g["phase"]) for g in got] == [
        ("getting_slower", "P00"),
        ("growing_memory", "P00"),
    ]
    slow = got[0]["evidence"]
    assert (slow["first"], slow["last"], slow["runs"]) == (1200.0, 1800.0, 6)
    assert slow["pct_per_run"] == 13.333
    st = state_of(*hist, run(6, 1.0, 100 * MIB))
    assert rules(st, "s6") == []


def test_no_suggestion_for_a_running_run() -> None:
    """Figures of a run still going are not final: no suggestion."""
    r = Run("run")
    s = r.phase("P00", 0.0, 10.0, cpu_ms=10_000.0)
    r.ev("sample", 5.0, cpu_pct=100.0, sys_cpu_pct=26.0, spans=[s])
    st = state_of(r.events)
    snap = views.snapshot(st, "run", now=T0 + 11, alive=True)
    assert snap["run"]["status"] == "running"
    assert suggestions.suggest(snap, charts.rows_from_state(st, "run")) == []
