"""Trends and the heatmap across runs (charts.py): rows of the reduced runs and the
history view the page draws, on runs built event by event."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as hs
from synthetic import MIB, T0, Run, state_of

from atroz_monitor.view import charts


def test_heatmap_levels_are_log2_of_value_over_the_phase_median() -> None:
    """Three runs of 100, 200, 400 ms: median 200, levels -1, 0, +1, ratios 0.5, 1, 2 (the
    heatmap tooltip's, computed here, not in insights.js); absent runs are None."""
    rows = [
        {"run": "a", "start": 1.0, "status": "completed", "plan": ["P00", "P01"],
         "phases": {"P00": {"status": "completed", "duration_ms": 100.0, "peak_rss_bytes": 10},
                    "P01": {"status": "completed", "duration_ms": 50.0}}},
        {"run": "b", "start": 2.0, "status": "completed", "plan": ["P00", "P01"],
         "phases": {"P00": {"status": "completed", "duration_ms": 200.0, "peak_rss_bytes": 20}}},
        {"run": "c", "start": 3.0, "status": "failed", "plan": ["P00", "P01"],
         "phases": {"P00": {"status": "completed", "duration_ms": 400.0, "peak_rss_bytes": 40},
                    "P01": {"status": "failed", "duration_ms": 9.0}}},
    ]  # fmt: skip
    view = charts.history_view(rows)
    assert [r["run"] for r in view["runs"]] == ["a", "b", "c"]
    assert [p["key"] for p in view["phases"]] == ["P00", "P01"]
    p00 = view["phases"][0]["metrics"]["duration_ms"]
    assert p00["values"] == [100.0, 200.0, 400.0]
    assert p00["median"] == 200.0
    assert p00["level"] == [-1.0, 0.0, 1.0]
    assert p00["ratio"] == [0.5, 1.0, 2.0]
    assert p00["trend"]["direction"] == "slower"
    p01 = view["phases"][1]
    assert p01["status"] == ["completed", None, "failed"]
    # A failed run's figure is no reference: only the completed 50 ms counts.
    assert p01["metrics"]["duration_ms"]["values"] == [50.0, None, None]
    assert p01["metrics"]["duration_ms"]["level"] == [0.0, None, None]
    assert p01["metrics"]["duration_ms"]["ratio"] == [1.0, None, None]
    assert view["phases"][0]["metrics"]["peak_rss_bytes"]["level"] == [-1.0, 0.0, 1.0]


def test_heatmap_clamps_at_twice_and_half_the_median() -> None:
    """A value ten times the median is level 1, a tenth of it -1 (the scale ends there)."""
    rows = [
        {"run": str(i), "start": float(i), "phases": {"P": {"status": "completed",
                                                            "duration_ms": v}}}
        for i, v in enumerate([10.0, 100.0, 100.0, 1000.0])
    ]  # fmt: skip
    level = charts.history_view(rows)["phases"][0]["metrics"]["duration_ms"]["level"]
    assert level == [-1.0, 0.0, 0.0, 1.0]


@settings(max_examples=60, deadline=None)
@given(
    hs.lists(
        hs.dictionaries(
            hs.sampled_from(["P00", "P01", "P02"]),
            hs.fixed_dictionaries(
                {
                    "status": hs.sampled_from(["completed", "failed", "skipped"]),
                    "duration_ms": hs.one_of(hs.none(), hs.floats(0, 1e7)),
                    "peak_rss_bytes": hs.one_of(hs.none(), hs.integers(0, 2**40)),
                }
            ),
        ),
        max_size=30,
    ),
    hs.integers(1, 25),
)
def test_history_view_shape_holds_for_any_rows(phases: list[dict[str, Any]], limit: int) -> None:
    """Any rows: one value, level and status per shown run, levels within [-1, 1]."""
    rows = [{"run": f"r{i}", "start": float(i), "phases": p} for i, p in enumerate(phases)]
    view = charts.history_view(rows, limit=limit)
    assert len(view["runs"]) == min(limit, len(rows))
    for p in view["phases"]:
        assert len(p["status"]) == len(view["runs"])
        for m in p["metrics"].values():
            assert len(m["values"]) == len(m["level"]) == len(m["ratio"]) == len(view["runs"])
            assert all(lv is None or -1.0 <= lv <= 1.0 for lv in m["level"])


def test_rows_from_state_match_the_reduced_runs() -> None:
    """Rows of the runs up to the subject, oldest first: figures of each key, top flags,
    and the outputs of a phase with an artifact."""
    runs = []
    for i, ms in enumerate((100, 150, 200)):
        r = Run(f"r{i}", T0 + i * 100)
        s = r.phase("P00", 0.0, ms / 1000, cpu_ms=ms / 2, items=5, peak_rss_bytes=(i + 1) * MIB)
        r.ev("artifact", 0.05, path=f"/x/{i}/out.bin", bytes=64, span=s, phase="P00")
        r.phase("P00.sub", 0.01, 0.02, parent=s)
        runs.append(r.end(1.0))
    st = state_of(*runs)
    rows = charts.rows_from_state(st, "r1")
    assert [r["run"] for r in rows] == ["r0", "r1"]
    p00 = rows[1]["phases"]["P00"]
    assert p00["duration_ms"] == 150.0
    assert p00["cpu_ms"] == 75.0
    assert p00["peak_rss_bytes"] == 2 * MIB
    assert p00["items_per_s"] == 33.33
    assert p00["top"] is True and rows[1]["phases"]["P00.sub"]["top"] is False
    # The artifact's directory differs per run; its name, size and the items do not.
    assert p00["outputs"] == "out.bin:64|items=5"
    assert rows[0]["phases"]["P00"]["outputs"] == p00["outputs"]
    view = charts.history_view(charts.rows_from_state(st, None))
    assert [p["key"] for p in view["phases"]] == ["P00"]


def test_rows_from_state_keeps_the_newest_runs_up_to_the_subject() -> None:
    """Runs 0-5 read in shuffled order, limit 3: up to run 3 gives runs 1, 2, 3; with no
    subject the newest three, 3, 4, 5; limit 0 gives nothing."""
    runs = {}
    for i in range(6):
        r = Run(f"q{i}", T0 + i * 100)
        r.phase("P00", 0.0, 0.1)
        runs[i] = r.end(0.2)
    st = state_of(*(runs[i] for i in (4, 0, 5, 2, 1, 3)))
    assert [r["run"] for r in charts.rows_from_state(st, "q3", limit=3)] == ["q1", "q2", "q3"]
    assert [r["run"] for r in charts.rows_from_state(st, None, limit=3)] == ["q3", "q4", "q5"]
    assert [r["run"] for r in charts.rows_from_state(st, "q1", limit=3)] == ["q0", "q1"]
    assert charts.rows_from_state(st, "q3", limit=0) == []
