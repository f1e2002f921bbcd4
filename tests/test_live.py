"""The live view (live.py): a monitor's own runs read back from their logs by the reducer,
as a replay would, including lines a real child process appended; unknown runs are a clear
KeyError, and the directory's other logs are never read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import child_env, poll, read_log

from atroz_monitor import Monitor
from atroz_monitor.store.live import LiveView

CHILD = "import atroz_monitor\nwith atroz_monitor.phase('from-child') as p:\n    p.add_items(7)\n"


def test_catch_up_sees_what_a_child_process_appended(tmp_path: Path) -> None:
    """A real child joins the run through its environment and records a phase: after
    catch_up the live view has it, with the child's pid and items."""
    with Monitor(tmp_path / "r.jsonl", sample_interval=None, capture=False) as m:
        lv = LiveView(m)
        lv.catch_up()
        before = len(lv.state.runs[m.run_id].phases)
        env = {**child_env(), **m.main.environ()}
        child = subprocess.run([sys.executable, "-c", CHILD], env=env, timeout=60)
        assert child.returncode == 0
        lv.catch_up()
        phases = lv.snapshot(m.run_id)["phases"]
    (p,) = [p for p in phases if p["phase"] == "from-child"]
    assert before == 0
    assert p["items"] == 7
    pids = {e["pid"] for e in read_log(tmp_path / "r.jsonl") if e.get("phase") == "from-child"}
    assert pids == {p["pid"]} and p["pid"] != os.getpid()


def test_an_unknown_run_is_a_key_error_naming_it(tmp_path: Path) -> None:
    """snapshot() of a run the logs do not hold raises KeyError saying so."""
    with Monitor(tmp_path / "r.jsonl", sample_interval=None, capture=False) as m:
        with pytest.raises(KeyError, match="no events of run 'nope' yet"):
            LiveView(m).snapshot("nope")


def test_quality_counts_the_lines_of_the_main_run(tmp_path: Path) -> None:
    """quality() is the read quality of the main run: as many lines and events as its log
    has lines, its size in bytes, none torn or corrupt."""
    with Monitor(tmp_path / "r.jsonl", sample_interval=None, capture=False) as m:
        with m.phase("A"):
            pass
        lv = LiveView(m)
        lv.catch_up()
        q = lv.quality()
        n = len(read_log(tmp_path / "r.jsonl"))
        size = (tmp_path / "r.jsonl").stat().st_size
    assert (q["lines"], q["read_events"], q["bytes"], q["torn"], q["corrupt"]) == (n, n, size, 0, 0)


def test_only_the_monitors_own_runs_are_read(tmp_path: Path) -> None:
    """A directory holding another run's log: the live view of a new monitor there reads
    only its own run."""
    d = tmp_path / "runs"
    d.mkdir()
    other = {"ev": "run_start", "ts": 1.0, "run": "other", "pid": 1, "seq": 1, "v": 1}
    (d / "other.jsonl").write_text(json.dumps(other) + "\n")
    with Monitor(d, sample_interval=None, capture=False) as m:
        lv = LiveView(m)
        lv.catch_up()
        assert set(lv.state.runs) == {m.run_id}


def test_live_view_and_monitor_snapshot_still_work(tmp_path: Path) -> None:
    """LiveView(monitor).snapshot/catch_up and Monitor.snapshot() read the run back."""
    with Monitor(tmp_path / "r.jsonl", plan=["A"], sample_interval=None, capture=False) as m:
        with m.phase("A") as p:
            p.add_items(3)
        lv = LiveView(m)
        lv.catch_up()
        assert m.run_id in lv.state.runs
        assert lv.snapshot(m.run_id)["phases"][0]["items"] == 3
        assert m.snapshot()["progress"]["done"] == 1
        poll(lambda: m.snapshot()["run"]["status"] == "running", 5, "the run seen running")
