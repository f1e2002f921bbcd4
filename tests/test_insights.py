"""Run comparison, trends and heatmap across runs, and suggestions with evidence: the pure
functions on runs built event by event, the API routes, ``report --compare`` through the CLI,
and the demo's normal run (no suggestion)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from atroz_monitor import Monitor, api, charts, cli, demo, suggestions, views
from atroz_monitor.compare import compare_runs
from atroz_monitor.loader import load_state
from atroz_monitor.source import FileSource
from atroz_monitor.state import State, apply_all

MIB = 2**20
T0 = 1_800_000_000.0


class Run:
    """A run written event by event with chosen figures (times in seconds from ``t0``)."""

    def __init__(self, rid: str, t0: float = T0, **info: Any) -> None:
        self.rid, self.t0, self.seq, self.n = rid, t0, 0, 0
        self.events: list[dict[str, Any]] = []
        plan = info.pop("plan", [{"id": "P00", "name": "Load"}, {"id": "P01", "name": "Work"}])
        self.ev("run_start", 0.0, v=1, name="syn", plan=plan, ncpu=4, sample_interval=1.0, **info)

    def ev(self, kind: str, at: float, **fields: Any) -> None:
        self.seq += 1
        self.events.append(
            {"ev": kind, "ts": self.t0 + at, "run": self.rid, "pid": 7, "seq": self.seq, **fields}
        )

    def phase(
        self, key: str, start: float, dur: float, *, parent: str | None = None, **end: Any
    ) -> str:
        """A phase from ``start`` lasting ``dur`` seconds; ``end`` fields go to phase_end."""
        self.n += 1
        span = f"7.{self.n}"
        meta = end.pop("meta", None)
        self.ev("phase_start", start, span=span, phase=key, name=key, parent=parent,
                **({"meta": meta} if meta else {}))  # fmt: skip
        end.setdefault("status", "completed")
        end.setdefault("duration_ms", dur * 1000.0)
        self.ev("phase_end", start + dur, span=span, phase=key, name=key, parent=parent, **end)
        return span

    def end(self, at: float) -> list[dict[str, Any]]:
        self.ev("run_end", at, status="completed", duration_ms=at * 1000.0)
        return self.events


def state_of(*runs: list[dict[str, Any]]) -> State:
    st = State()
    for evs in runs:
        apply_all(st, evs)
    return st


def snap_of(st: State, rid: str) -> dict[str, Any]:
    return views.snapshot(st, rid, now=T0 + 10_000)


def rules(st: State, rid: str) -> list[tuple[str, str | None]]:
    rows = charts.rows_from_state(st, rid)
    return [(s["rule"], s["phase"]) for s in suggestions.suggest(snap_of(st, rid), rows)]


# ---------------------------------------------------------------------------- trends, heatmap


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


# ---------------------------------------------------------------------------- comparison


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


_PHASES = hs.lists(
    hs.tuples(
        hs.sampled_from(["P00", "P01", "P02", "P01.x"]),
        hs.floats(0, 50),
        hs.floats(0, 20),
        hs.sampled_from(["completed", "failed", "skipped", "cancelled"]),
        hs.one_of(hs.none(), hs.integers(0, 2**33)),
        hs.one_of(hs.none(), hs.floats(0, 1e5)),
    ),
    max_size=12,
)


def _random_run(rid: str, t0: float, phases: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    r = Run(rid, t0)
    last: dict[str, str] = {}
    for key, start, dur, status, rss, cpu in phases:
        parent = last.get("P01") if key == "P01.x" else None
        span = r.phase(key, start, dur, parent=parent, status=status,
                       **({"peak_rss_bytes": rss} if rss is not None else {}),
                       **({"cpu_ms": cpu} if cpu is not None else {}))  # fmt: skip
        r.ev("sample", start + dur / 2, cpu_pct=cpu or 0.0, sys_cpu_pct=30.0, spans=[span],
             io_read_bytes=int(start * MIB))  # fmt: skip
        last[key] = span
    return r.end(80.0)


@settings(max_examples=60, deadline=None)
@given(_PHASES, _PHASES)
def test_compare_runs_of_any_two_runs_is_consistent(
    pa: list[tuple[Any, ...]], pb: list[tuple[Any, ...]]
) -> None:
    """Any two runs: every key of either run has one row, deltas are a - b where both have
    a figure, and a run against itself has no change at all."""
    st = state_of(_random_run("A", T0, pa), _random_run("B", T0 - 500, pb))
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


@settings(max_examples=60, deadline=None)
@given(_PHASES, hs.integers(0, 4))
def test_suggest_on_any_run_returns_well_formed_items(
    phases: list[tuple[Any, ...]], earlier: int
) -> None:
    """Any run and history: each suggestion names a known rule, has text, and evidence of
    plain numbers and strings (JSON-ready)."""
    hist = [_random_run(f"h{i}", T0 - 1000 * (i + 1), phases) for i in range(earlier)]
    st = state_of(*hist, _random_run("X", T0, phases))
    got = suggestions.suggest(snap_of(st, "X"), charts.rows_from_state(st, "X"))
    for s in got:
        assert s["rule"] in suggestions.RULES
        assert s["finding"] and s["advice"]
        assert all(isinstance(v, (int, float, str)) for v in s["evidence"].values())
    json.dumps(got, allow_nan=False)


# ---------------------------------------------------------------------------- suggestions


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


def test_demo_normal_run_has_no_suggestion(tmp_path: Path) -> None:
    """The demo pipeline, completed in a fresh directory: every rule stays silent."""
    plan = [(k, name) for k, name, _ in demo.PLAN]
    mon = Monitor(tmp_path / "runs", plan=plan, sample_interval=0.1, capture=False)
    with mon:
        demo.run_pipeline(mon, 6.0, None, str(tmp_path / "out"))
    st, _ = load_state([tmp_path / "runs"])
    snap = views.snapshot(st, mon.run_id, now=time.time())
    assert snap["run"]["status"] == "completed"
    got = suggestions.suggest(snap, charts.rows_from_state(st, mon.run_id))
    assert [(g["rule"], g["phase"], g["finding"]) for g in got] == []


def test_demo_counts_its_earlier_runs_by_name_only(tmp_path: Path) -> None:
    """The demo's index grows with the logs already there (parts are no extra run)."""
    for name in ("a.jsonl", "b.jsonl.gz", "b.part2.jsonl", "notes.txt"):
        (tmp_path / name).write_text("")
    assert demo._earlier_runs(str(tmp_path)) == 2
    assert demo._earlier_runs(str(tmp_path / "missing")) == 0


def test_demo_picks_the_newest_other_logs(tmp_path: Path) -> None:
    """The demo's history for its suggestions: the n newest logs by name, not its own, no
    parts."""
    for name in ("20260101-a.jsonl", "20260102-b.jsonl", "20260102-b.part2.jsonl",
                 "20260103-c.jsonl", "20260104-own.jsonl"):  # fmt: skip
        (tmp_path / name).write_text("")
    own = str(tmp_path / "20260104-own.jsonl")
    got = demo._recent_logs(str(tmp_path), own, 2)
    assert [os.path.basename(p) for p in got] == ["20260102-b.jsonl", "20260103-c.jsonl"]


def test_demo_prints_suggestions_against_its_history(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Five earlier runs whose P05 took 20-100 ms: a demo run (P05 of about 300 ms) prints
    its history line and the getting_slower suggestion for P05 after its summary."""
    out = tmp_path / "runs"
    out.mkdir()
    now = time.time()
    for i in range(5):
        r = Run(f"20000101-00000{i}-old", now - 1000 * (5 - i), plan=[{"id": "P05"}])
        r.phase("P05", 0.0, 0.02 + 0.02 * i)
        (out / f"20000101-00000{i}-old.jsonl").write_text(
            "".join(json.dumps(e) + "\n" for e in r.end(0.1))
        )
    assert demo.main(duration=2.0, out=str(out), interval=0.2) == 0
    text = capsys.readouterr().out
    assert f"history: 5 earlier run(s) in {out}" in text
    assert "getting_slower: P05 (Cross-Referencing) got slower run after run" in text


# ---------------------------------------------------------------------------- API, CLI


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    """Two synthetic runs (B, then A) written as a log directory."""
    d = tmp_path / "logs"
    d.mkdir()
    a = Run("A")
    a.phase("P00", 0.0, 1.0, cpu_ms=900.0, peak_rss_bytes=100 * MIB, items=50)
    a.phase("P01", 1.0, 3.0, cpu_ms=1000.0)
    b = Run("B", T0 - 1000)
    b.phase("P00", 0.0, 2.0, cpu_ms=1800.0, peak_rss_bytes=50 * MIB, items=50)
    b.phase("P01", 2.0, 2.0, cpu_ms=500.0)
    for name, evs in (("b.jsonl", b.end(4.0)), ("a.jsonl", a.end(4.0))):
        (d / name).write_text("".join(json.dumps(e) + "\n" for e in evs))
    return d


def test_compare_route_serves_compare_runs(logs: Path) -> None:
    """GET /api/v1/compare?a=A&b=B is compare_runs of the two snapshots; a missing b is a
    400, an unknown run a 404."""
    src = FileSource([str(logs)])
    try:
        resp = api.route(src, "GET", "/api/v1/compare", "a=A&b=B")
        assert resp.status == 200
        body = json.loads(resp.body)
        assert (body["a"]["id"], body["b"]["id"]) == ("A", "B")
        assert body["phases"][0]["delta_pct"]["duration_ms"] == -50.0
        assert api.route(src, "GET", "/api/v1/compare", "a=A").status == 400
        assert api.route(src, "GET", "/api/v1/compare", "a=A&b=nope").status == 404
    finally:
        src.close()


def test_insights_route_serves_history_view_and_suggestions(logs: Path) -> None:
    """GET /api/v1/insights?run=A: the two runs' heatmap cells (B then A) and a list of
    suggestions; runs=0 is a 400."""
    src = FileSource([str(logs)])
    try:
        body = json.loads(api.route(src, "GET", "/api/v1/insights", "run=A").body)
        assert body["run"] == "A"
        assert [r["run"] for r in body["history"]["runs"]] == ["B", "A"]
        p00 = body["history"]["phases"][0]
        assert p00["metrics"]["duration_ms"]["values"] == [2000.0, 1000.0]
        assert body["suggestions"] == []
        assert api.route(src, "GET", "/api/v1/insights", "run=A&runs=0").status == 400
    finally:
        src.close()


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_report_compare_in_every_format(logs: Path, tmp_path: Path, capsys: Any) -> None:
    """report --run A --compare B: the comparison in text, markdown, json and html."""
    base = ["report", str(logs), "--run", "A", "--compare", "B"]
    code, out, _ = _cli(base, capsys)
    assert code == 0
    assert "compared with run B" in out
    line = next(x for x in out.splitlines() if x.strip().startswith("P00") and "-50%" in x)
    assert "1.00s" in line and "2.00s" in line
    code, out, _ = _cli([*base, "--format", "markdown"], capsys)
    assert "### Compared with run `B`" in out
    assert "| P00 | completed / completed | 1.00s | 2.00s | -50% |" in out
    code, out, _ = _cli([*base, "--format", "json"], capsys)
    model = json.loads(out)
    assert model["compare"]["b"]["id"] == "B"
    assert model["compare"]["phases"][0]["delta_pct"]["duration_ms"] == -50.0
    assert model["suggestions"] == []
    assert [r["run"] for r in model["charts"]["runs"]] == ["B", "A"]
    html = tmp_path / "r.html"
    code, _, _ = _cli([*base, "--format", "html", "-o", str(html)], capsys)
    text = html.read_text()
    assert code == 0 and '"compare":{"a":{' in text and '"insights":{' in text


def test_report_compare_with_a_log_path(logs: Path, tmp_path: Path, capsys: Any) -> None:
    """--compare PATH compares with that log's latest run."""
    other = tmp_path / "other"
    other.mkdir()
    (other / "b.jsonl").write_bytes((logs / "b.jsonl").read_bytes())
    os.remove(logs / "b.jsonl")
    code, out, _ = _cli(["report", str(logs), "--compare", str(other)], capsys)
    assert code == 0 and "compared with run B" in out


@pytest.mark.parametrize(
    ("target", "message"),
    [("A", "is the run being reported"), ("nope", "no run 'nope' in the input")],
)
def test_report_compare_bad_target_exits_2(
    logs: Path, capsys: Any, target: str, message: str
) -> None:
    """--compare naming the subject or nothing known: one line on stderr, exit 2."""
    code, out, err = _cli(["report", str(logs), "--run", "A", "--compare", target], capsys)
    assert code == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1
