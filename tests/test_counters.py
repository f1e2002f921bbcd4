"""Counting metrics (``p.count``): summed per phase, per run and across processes, carried
through the log, the reducer, the report and /metrics; and log files in new directories."""

from __future__ import annotations

import multiprocessing
import os
import stat

import pytest
from helpers import of_kind, read_log
from hypothesis import given, settings
from hypothesis import strategies as hs

import atroz_monitor
from atroz_monitor import Monitor
from atroz_monitor.commands import report
from atroz_monitor.read import state
from atroz_monitor.surface import prometheus, report_text
from atroz_monitor.view import report_model, views


def test_count_sums_per_phase_and_per_run(tmp_path):
    """1,000 p.count() calls and a run-level count sum to exact totals in the snapshot."""
    log = tmp_path / "run.jsonl"
    with Monitor(log, sample_interval=None) as mon:
        with mon.phase("P00") as p:
            for _ in range(1000):
                p.count("signals")
            p.count("pages", 2.5)
        with mon.phase("P01") as p:
            p.count("signals", 7)
        mon.count("signals", 5)  # no phase open: the run's own
        snap = mon.snapshot()
    assert snap["counters"] == {"signals": 1012, "pages": 2.5}
    by_key = {p["phase"]: p for p in snap["phases"]}
    assert by_key["P00"]["counts"] == {"signals": 1000, "pages": 2.5}
    assert by_key["P01"]["counts"] == {"signals": 7}
    ends = [e for e in read_log(log) if e["ev"] == "phase_end"]
    assert ends[0]["counts"] == {"signals": 1000, "pages": 2.5}


def test_count_is_batched_not_one_line_per_call(tmp_path):
    """A tight loop of 10,000 counts writes at most a few lines, not one per call."""
    log = tmp_path / "run.jsonl"
    with Monitor(log, sample_interval=None) as mon:
        with mon.phase("P00") as p:
            for _ in range(10_000):
                p.count("signals")
    evs = read_log(log)
    assert len(of_kind(evs, "count")) <= 3  # a flush at most every 0.5 s
    assert [e["counts"] for e in of_kind(evs, "phase_end")] == [{"signals": 10_000}]


def test_count_events_during_a_long_phase_show_live(tmp_path):
    """A phase counting for longer than 0.5 s writes ``count`` increments before it ends."""
    import time

    log = tmp_path / "run.jsonl"
    with Monitor(log, sample_interval=None) as mon:
        with mon.phase("P00") as p:
            p.count("signals", 3)
            deadline = time.perf_counter() + 0.6
            while time.perf_counter() < deadline:
                pass
            p.count("signals", 4)  # 0.6 s after the first: flushes both
            live = mon.snapshot()
    assert live["counters"] == {"signals": 7}
    incs = [e["inc"] for e in of_kind(read_log(log), "count")]
    assert incs == [7]


def test_bad_count_is_counted_not_raised(tmp_path):
    """A negative or non-numeric count is an internal error counted, never raised."""
    log = tmp_path / "run.jsonl"
    with Monitor(log, sample_interval=None) as mon:
        with mon.phase("P00") as p:
            p.count("signals", -1)
            p.count("signals", "many")  # type: ignore[arg-type]
            p.count("signals", 2)
        snap = mon.snapshot()
    assert snap["counters"] == {"signals": 2}
    assert snap["monitor"]["internal_errors"] == 2


def _worker(n: int) -> None:
    with atroz_monitor.phase("P00.worker") as p:
        p.count("signals", n)


def test_counts_from_pool_workers_sum_into_the_run(tmp_path):
    """Worker processes that join the run add their counts to the run's total."""
    log = tmp_path / "run.jsonl"
    ctx = multiprocessing.get_context("fork")
    with Monitor(log, sample_interval=None) as mon:
        with mon.phase("P00") as p:
            p.count("signals", 1)
            with ctx.Pool(2) as pool:
                pool.map(_worker, [10, 20, 30])
        snap = mon.snapshot()
    assert snap["counters"] == {"signals": 61}


@settings(max_examples=200, deadline=None)
@given(
    incs=hs.lists(hs.integers(min_value=0, max_value=10**6), max_size=20),
    flushed=hs.integers(min_value=0, max_value=20),
)
def test_reducer_sums_increments_and_end_totals_once(incs, flushed):
    """Whatever part of a phase's counts went out as ``count`` events before its end, the
    run total equals the phase's total (no double count, nothing lost)."""
    st = state.State()
    env = {"run": "r", "pid": 1}
    ev = [{"ev": "phase_start", "span": "1.1", "phase": "P", "ts": 1.0, **env}]
    k = min(flushed, len(incs))
    if k:
        ev.append({"ev": "count", "name": "s", "inc": sum(incs[:k]), "span": "1.1", **env})
    ev.append(
        {
            "ev": "phase_end",
            "span": "1.1",
            "phase": "P",
            "status": "completed",
            "duration_ms": 1.0,
            "counts": {"s": sum(incs)},
            "ts": 2.0,
            **env,
        }
    )
    state.apply_all(st, ev)
    total = sum(incs)
    r = st.runs["r"]
    assert r.counters.get("s", 0) == total
    assert (r.phases["1.1"].counts or {}).get("s", 0) == total


def test_counter_is_a_prometheus_counter(tmp_path):
    """/metrics carries each counter as ``atroz_count_total{run,name}`` of type counter."""
    log = tmp_path / "run.jsonl"
    with Monitor(log, sample_interval=None, run_id="r1") as mon:
        with mon.phase("P00") as p:
            p.count("signals", 41)
            p.count("signals")
    st, _, _ = report.load([str(log)])
    text = prometheus.render_prometheus(prometheus.collect(st))
    assert "# TYPE atroz_count_total counter" in text
    assert 'atroz_count_total{run="r1",name="signals"} 42' in text


def test_counter_passes_promtool(tmp_path):
    """promtool accepts the exposition with the counter family."""
    import subprocess

    from conftest import require_tool

    promtool = require_tool("promtool")
    log = tmp_path / "run.jsonl"
    with Monitor(log, sample_interval=None) as mon:
        mon.count("signals", 3)
    st, _, _ = report.load([str(log)])
    text = prometheus.render_prometheus(prometheus.collect(st))
    r = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert 'atroz_count_total{run="' in text
    assert r.returncode == 0, r.stdout + r.stderr


def test_report_shows_counters(tmp_path):
    """The text report prints each counter's sum; JSON carries them under ``counters``."""
    log = tmp_path / "run.jsonl"
    with Monitor(log, sample_interval=None) as mon:
        with mon.phase("P00") as p:
            p.count("signals", 1234)
    st, _, _ = report.load([str(log)])
    rid = views.latest_run(st)
    model = report_model.build(st, rid, now=0.0)
    assert model["counters"] == {"signals": 1234}
    assert "counters  signals 1,234" in report_text.render_text(model)
    assert "**Counters:** signals 1,234" in report_text.render_markdown(model)


def test_monitor_creates_missing_directories_of_a_log_file(tmp_path):
    """Monitor("new/dir/run.jsonl") creates new/ and new/dir/ (0700) and writes the log."""
    log = tmp_path / "new" / "dir" / "run.jsonl"
    with Monitor(log, sample_interval=None) as mon:
        with mon.phase("P00"):
            pass
    assert [e["ev"] for e in read_log(log)] == ["run_start", "phase_start", "phase_end", "run_end"]
    for d in (tmp_path / "new", tmp_path / "new" / "dir"):
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o700


def test_uncreatable_log_directory_fails_at_construction(tmp_path):
    """A directory that cannot be created is an OSError naming it, at construction."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError) as info:
        Monitor(blocker / "sub" / "run.jsonl", sample_interval=None)
    assert str(blocker / "sub") in str(info.value)
