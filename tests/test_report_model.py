"""The report's model (view/report_model.py) built from synthetic runs with chosen figures:
phase rows in tree order with a loop folded into one row, the critical path, the slowest
phases with the snapshot's share, the one error count, and a comparison with a baseline."""

from __future__ import annotations

from typing import Any

from synthetic import T0, Run, state_of

from atroz_monitor.view import report_model


def _loop_run(rid: str = "r1", loop: int = 30) -> list[dict[str, Any]]:
    """P00 for 1 s, then P01 for 3 s holding ``loop`` sub-phases of 50 ms each."""
    r = Run(rid)
    r.phase("P00", 0.0, 1.0)
    parent = r.phase("P01", 1.0, 3.0)
    for i in range(loop):
        r.phase("P01.x", 1.0 + i * 0.1, 0.05, parent=parent)
    return r.end(4.0)


def test_rows_fold_a_loop_into_one_row_after_the_first_repeats() -> None:
    """30 repeats of P01.x under P01: the first three keep their own rows, the other 27 are
    one aggregate row whose count and summed duration are exactly those of the 27 lines."""
    m = report_model.build(state_of(_loop_run()), "r1", now=T0 + 100)
    rows = [(p["phase"], p["depth"], p.get("aggregate"), p.get("count")) for p in m["phases"]]
    assert rows[:2] == [("P00", 0, None, None), ("P01", 0, None, None)]
    singles = [r for r in rows[2:] if not r[2]]
    folded = [p for p in m["phases"] if p.get("aggregate")]
    assert len(singles) == report_model.REPEAT_ROWS
    assert len(folded) == 1 and folded[0]["count"] == 30 - report_model.REPEAT_ROWS
    assert folded[0]["duration_ms"] == 50.0 * (30 - report_model.REPEAT_ROWS)


def test_critical_path_slowest_and_share_come_from_the_snapshot() -> None:
    """Top-level phases of 1 s and 3 s in a 4 s run: both on the critical path in start
    order; the slowest first with 75 % and 25 %, the same shares the snapshot carries."""
    m = report_model.build(state_of(_loop_run()), "r1", now=T0 + 100)
    assert [p["phase"] for p in m["critical_path"]] == ["P00", "P01"]
    assert [(p["phase"], p["share_pct"]) for p in m["slowest"]] == [("P01", 75.0), ("P00", 25.0)]
    snap_share = {p["phase"]: p["share_pct"] for p in m["snapshot"]["phases"] if p["depth"] == 0}
    assert snap_share == {"P00": 25.0, "P01": 75.0}


def test_a_failed_phase_is_counted_once_in_the_errors() -> None:
    """A phase that failed with an exception and no error log line: one error, the phase
    listed once among the failed phases."""
    r = Run("r1")
    r.phase("P00", 0.0, 1.0, status="failed", error={"type": "KeyError", "message": "x"})
    m = report_model.build(state_of(r.end(1.5)), "r1", now=T0 + 100)
    assert m["errors"]["count"] == 1 and m["errors"]["logged"] == 0
    assert [p["phase"] for p in m["errors"]["failed_phases"]] == ["P00"]


def test_compare_flags_a_phase_slower_than_its_baseline_beyond_the_threshold() -> None:
    """Baseline runs with P01 at 3 s; this run's P01 at 6 s with a 25 % threshold (percent) is a
    regression of +3,000 ms; P00, unchanged at 1 s, is not."""
    base = [_loop_run(f"b{i}", loop=0) for i in range(3)]
    slow = Run("cur", t0=T0 + 1000)
    slow.phase("P00", 0.0, 1.0)
    slow.phase("P01", 1.0, 6.0)
    st = state_of(*base, slow.end(7.0))
    m = report_model.build(st, "cur", now=T0 + 2000, baseline=state_of(*base), threshold=25)
    rows = m["comparison"]["phases"]
    assert rows["P01"]["regressed"] is True and rows["P01"]["delta"] == 3000.0
    assert rows["P01"]["reference"] == 3000.0 and rows["P01"]["current"] == 6000.0
    assert rows["P00"]["regressed"] is False and m["comparison"]["regressions"] == ["P01"]
