"""The process-wide default monitor (record/default.py): ``configure`` and ``shutdown``, the
environment building it at the first phase (and ending it at exit), the innermost
``with Monitor`` taking precedence, and a no-op handle with one warning when there is none."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from helpers import read_log

import atroz_monitor
from atroz_monitor import Monitor

REPO = Path(__file__).resolve().parent.parent


def test_configure_sets_the_process_default(tmp_path):
    """configure(path) makes atroz_monitor.phase record; shutdown ends the run."""
    d = tmp_path / "runs"
    atroz_monitor.configure(d, sample_interval=None, run_id="cfg-1")
    try:
        with atroz_monitor.phase("P00"):
            pass
    finally:
        atroz_monitor.shutdown()
    evs = read_log(d / "cfg-1.jsonl")
    assert [e["ev"] for e in evs] == ["run_start", "phase_start", "phase_end", "run_end"]


def test_unconfigured_phase_records_nothing_and_never_fails(tmp_path, capsys):
    """With no monitor and no environment, phase() is a no-op that warns once."""
    assert atroz_monitor.default_monitor() is None
    with atroz_monitor.phase("P00") as p:
        p.add_items(3)
        p.metric("m", 1)

    @atroz_monitor.phase("P01")
    def f():
        return 7

    assert f() == 7
    assert "no monitor configured" in capsys.readouterr().err


def test_the_environment_builds_the_default_and_exit_ends_its_run(tmp_path: Path) -> None:
    """ATROZ_MONITOR_LOG=DIR and a bare ``atroz_monitor.phase``: the run starts at the first
    phase and its run_end is written at interpreter exit, status completed."""
    code = "import atroz_monitor\nwith atroz_monitor.phase('P00'):\n    pass\n"
    env = {**os.environ, "PYTHONPATH": str(REPO), "ATROZ_MONITOR_LOG": str(tmp_path / "runs")}
    env.pop("ATROZ_MONITOR_RUN", None)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr
    (log,) = (tmp_path / "runs").glob("*.jsonl")
    evs = [e for e in read_log(log) if e["ev"] != "sample"]
    # A phase shorter than the sampler's interval is written whole, in one line.
    assert [e["ev"] for e in evs] == ["run_start", "phase_end", "run_end"]
    assert (evs[1]["phase"], evs[1]["thread"], evs[1]["status"]) == (
        "P00",
        "MainThread",
        "completed",
    )
    assert evs[-1]["status"] == "completed"


def test_the_innermost_with_monitor_takes_the_phases(tmp_path: Path) -> None:
    """Inside ``with Monitor(b)`` within ``with Monitor(a)``, ``atroz_monitor.phase`` records
    into b; after b's block, into a again."""
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    with Monitor(a, sample_interval=None):
        with Monitor(b, sample_interval=None):
            with atroz_monitor.phase("inner"):
                pass
        with atroz_monitor.phase("outer"):
            pass
    assert [e["phase"] for e in read_log(a) if e["ev"] == "phase_end"] == ["outer"]
    assert [e["phase"] for e in read_log(b) if e["ev"] == "phase_end"] == ["inner"]


def test_a_bad_joined_run_id_in_the_environment_is_one_message(tmp_path: Path) -> None:
    """ATROZ_MONITOR_RUN naming no valid run id: the phase runs unrecorded, stderr says
    why once, exit 0, no traceback."""
    code = "import atroz_monitor\nfor _ in range(3):\n    with atroz_monitor.phase('P'): pass\n"
    env = {**os.environ, "PYTHONPATH": str(REPO), "ATROZ_MONITOR_LOG": str(tmp_path / "runs"),
           "ATROZ_MONITOR_RUN": "../../etc"}  # fmt: skip
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=60)  # fmt: skip
    assert r.returncode == 0 and "Traceback" not in r.stderr
    assert r.stderr.count("cannot record") == 1 and "ATROZ_MONITOR_RUN" in r.stderr
