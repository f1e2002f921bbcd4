"""Comparing two runs (compare.py): per-phase figures and deltas, on runs built event by
event, and a property test over any two runs."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from synthetic import MIB, PHASES, T0, Run, random_run, snap_of, state_of

from atroz_monitor.read.state import State
from atroz_monitor.view.compare import MAX_BARS, compare_runs


def _two_runs() -> State:
    a = Run("A")
    s = a.phase("P00", 0.0, 1.0, cpu_ms=900.0, peak_rss_bytes=100 * MIB, items=50)
    a.phase("P00.x", 0.1, 0.5, parent=s, cpu_ms=400.0)
    a.phase("P01", 1.0, 3.0, cpu_ms=1000.0, status="failed", error={"type": "E", "msg": "m"})
    b = Run("B", T0 - 1000)
    s = b.phase("P00", 0.0, 2.0, cpu_ms=1800.0, peak_rss_bytes=50 * MIB, items=50)
    b.phase("P00.x", 0.2, 1.0, parent=s, cpu_ms=800.0)
    b.phase("P01", 2.0, 2.0, cpu_ms=500.0)
    b.phase("P02", 4.0, 0.5)
    return state_of(a.end(4.0), b.end(4.5))


def test_compare_runs_gives_per_phase_figures_and_deltas_against_b() -> None:
    """A against B: A's P00 took 1 s against 2 s (-50%), RSS doubled, items/s doubled, P01
    failed where it completed, P02 only in B; both timelines on B's 4.5 s axis."""
    st = _two_runs()
    c = compare_runs(snap_of(st, "A"), snap_of(st, "B"))
    assert [r["key"] for r in c["phases"]] == ["P00", "P00.x", "P01", "P02"]
    p00 = c["phases"][0]
    assert p00["a"]["duration_ms"] == 1000.0 and p00["b"]["duration_ms"] == 2000.0
    assert p00["delta"]["duration_ms"] == -1000.0
    assert p00["delta_pct"]["duration_ms"] == -50.0
    assert p00["delta_pct"]["cpu_ms"] == -50.0
    assert p00["delta"]["peak_rss_bytes"] == 50 * MIB
    assert p00["delta_pct"]["peak_rss_bytes"] == 100.0
    assert p00["a"]["items_per_s"] == 50.0 and p00["b"]["items_per_s"] == 25.0
    assert p00["delta_pct"]["items_per_s"] == 100.0
    assert c["phases"][1]["depth"] == 1
    assert c["phases"][1]["delta_pct"]["duration_ms"] == -50.0
    p01 = c["phases"][2]
    assert p01["status_changed"] is True
    assert (p01["a"]["status"], p01["b"]["status"]) == ("failed", "completed")
    assert p01["delta_pct"]["duration_ms"] == 50.0
    assert c["phases"][3]["only"] == "b" and c["phases"][3]["a"] is None
    assert c["totals"]["duration_pct"] == -11.1
    assert c["totals"]["status_changed"] == ["P01"]
    assert c["axis_ms"] == 4500.0
    assert [(b["phase"], b["offset_ms"]) for b in c["gantt"]["b"]] == [
        ("P00", 0.0), ("P00.x", 200.0), ("P01", 2000.0), ("P02", 4000.0)
    ]  # fmt: skip
    top = compare_runs(snap_of(st, "A"), snap_of(st, "B"), depth=0)
    assert [r["key"] for r in top["phases"]] == ["P00", "P01", "P02"]


@settings(max_examples=60, deadline=None)
@given(PHASES, PHASES)
def test_compare_runs_of_any_two_runs_is_consistent(
    pa: list[tuple[Any, ...]], pb: list[tuple[Any, ...]]
) -> None:
    """Any two runs: every key of either run has one row, deltas are a - b where both have
    a figure, and a run against itself has no change at all."""
    st = state_of(random_run("A", T0, pa), random_run("B", T0 - 500, pb))
    sa, sb = snap_of(st, "A"), snap_of(st, "B")
    c = compare_runs(sa, sb)
    keys = {p["phase"] for p in sa["phases"]} | {p["phase"] for p in sb["phases"]}
    assert sorted(r["key"] for r in c["phases"]) == sorted(keys | {"P00", "P01"})
    for r in c["phases"]:
        for f, d in r["delta"].items():
            x, y = (r["a"] or {}).get(f), (r["b"] or {}).get(f)
            if d is not None:
                assert d == pytest.approx(x - y, abs=1e-3)
    same = compare_runs(sa, sa)
    assert all(not r["status_changed"] for r in same["phases"])
    assert all(d in (None, 0.0) for r in same["phases"] for d in r["delta"].values())


def test_a_key_run_in_a_loop_is_compared_as_a_whole() -> None:
    """P00 three times for 1 s in A against once for 1 s in B: A's row sums 3 s over 3
    calls, +2 s (+200%) against B."""
    a = Run("A")
    for i in range(3):
        a.phase("P00", float(i), 1.0)
    b = Run("B", T0 - 1000)
    b.phase("P00", 0.0, 1.0)
    st = state_of(a.end(3.0), b.end(1.0))
    (row,) = [r for r in compare_runs(snap_of(st, "A"), snap_of(st, "B"))["phases"]
              if r["key"] == "P00"]  # fmt: skip
    assert (row["a"]["count"], row["a"]["duration_ms"], row["b"]["count"]) == (3, 3000.0, 1)
    assert (row["delta"]["duration_ms"], row["delta_pct"]["duration_ms"]) == (2000.0, 200.0)


def test_a_retried_key_has_its_latest_status() -> None:
    """P01 failed, then completed on a second attempt, in A; completed in B: no status
    change (a retry that succeeded is completed)."""
    a = Run("A")
    a.phase("P01", 0.0, 1.0, status="failed", error={"type": "E", "msg": "m"})
    a.phase("P01", 1.0, 1.0)
    b = Run("B", T0 - 1000)
    b.phase("P01", 0.0, 1.0)
    st = state_of(a.end(2.0), b.end(1.0))
    c = compare_runs(snap_of(st, "A"), snap_of(st, "B"))
    (row,) = [r for r in c["phases"] if r["key"] == "P01"]
    assert (row["a"]["status"], row["status_changed"]) == ("completed", False)
    assert c["totals"]["status_changed"] == []


def test_a_planned_key_that_never_ran_has_no_figures() -> None:
    """P01 is in A's plan but A stopped before it: its row is pending with no figures and
    no deltas."""
    a = Run("A")
    a.phase("P00", 0.0, 1.0)
    b = Run("B", T0 - 1000)
    b.phase("P00", 0.0, 1.0)
    b.phase("P01", 1.0, 1.0)
    st = state_of(a.end(1.0), b.end(2.0))
    (row,) = [r for r in compare_runs(snap_of(st, "A"), snap_of(st, "B"))["phases"]
              if r["key"] == "P01"]  # fmt: skip
    assert (row["a"]["count"], row["a"]["duration_ms"], row["only"]) == (0, None, None)
    assert set(row["delta"].values()) == {None}


def test_the_timelines_keep_the_first_max_bars_phases() -> None:
    """A run of 400 top-level phases: each timeline holds the first MAX_BARS (300)."""
    a = Run("A")
    for i in range(400):
        a.phase(f"K{i:03}", i * 0.01, 0.01)
    st = state_of(a.end(4.0))
    snap = snap_of(st, "A")
    g = compare_runs(snap, snap)["gantt"]
    assert len(g["a"]) == len(g["b"]) == MAX_BARS == 300
    assert g["a"][-1]["phase"] == "K299"
