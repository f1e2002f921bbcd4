"""From logs to state (read/loader.py): load() and load_state read files and directories
into one state with the read counters summed, and liveness asks /proc whether a run without
run_end is still written, checked with real child processes (alive, then killed and
reaped)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import child_env, poll

from atroz_monitor import Monitor
from atroz_monitor.read.loader import NoRuns, liveness, load, load_state

# A child owning a run it never ends: it records one phase, says so, then waits.
OWNER = textwrap.dedent(
    """
    import sys, time
    from atroz_monitor import Monitor
    mon = Monitor(sys.argv[1], sample_interval=None, capture=False, run_id="held")
    mon.start()
    with mon.phase("P"):
        pass
    print("ready", flush=True)
    time.sleep(60)
    """
)


def _run(path: Path, rid: str, n: int) -> None:
    with Monitor(path, sample_interval=None, capture=False, run_id=rid) as mon:
        for i in range(n):
            with mon.phase(f"P{i}"):
                pass


def test_files_and_directories_load_into_one_state(tmp_path: Path) -> None:
    """A directory of two runs plus a file elsewhere: three runs, and the read counters are
    the sum of the files' lines (3 + 2n lines per run of n phases)."""
    d = tmp_path / "runs"
    d.mkdir()
    _run(d / "a.jsonl", "a", 2)
    _run(d / "b.jsonl", "b", 3)
    _run(tmp_path / "c.jsonl", "c", 1)
    st, stats = load_state([d, tmp_path / "c.jsonl"])
    assert sorted(st.runs) == ["a", "b", "c"]
    assert [len(st.runs[r].phases) for r in ("a", "b", "c")] == [2, 3, 1]
    lines = sum(len(p.read_text().splitlines()) for p in [*d.iterdir(), tmp_path / "c.jsonl"])
    assert stats.lines == lines == (2 + 4) + (2 + 6) + (2 + 2)


def test_a_given_state_accumulates_and_state_settings_apply(tmp_path: Path) -> None:
    """Loading into an existing state adds runs; max_phases= reaches the new state."""
    _run(tmp_path / "a.jsonl", "a", 1)
    with Monitor(tmp_path / "b.jsonl", sample_interval=None, capture=False, run_id="b",
                 detail="all") as mon:  # fmt: skip
        with mon.phase("P"):
            for _ in range(30):
                with mon.phase("item"):
                    pass
    st, _ = load_state([tmp_path / "a.jsonl"])
    st2, _ = load_state([tmp_path / "b.jsonl"], st)
    assert st2 is st and sorted(st.runs) == ["a", "b"]
    assert len(st.runs["b"].phases) == 31
    small, _ = load_state([tmp_path / "b.jsonl"], max_phases=10)
    assert (len(small.runs["b"].phases), small.runs["b"].folded_count) == (10, 21)


def test_a_missing_path_is_an_error_naming_it(tmp_path: Path) -> None:
    """A path that does not exist is a FileNotFoundError naming the path (a typo must not
    read as an empty history)."""
    with pytest.raises(FileNotFoundError, match="no such log file or directory"):
        load_state([tmp_path / "nope"])


def test_load_takes_one_path_or_many_and_returns_the_files_read(tmp_path: Path) -> None:
    """load(): one path (not its characters) or a list; the state, the summed counters and
    the files read, in the reader's order."""
    _run(tmp_path / "a.jsonl", "a", 2)
    _run(tmp_path / "b.jsonl", "b", 1)
    st, stats, files = load(str(tmp_path / "a.jsonl"))
    assert sorted(st.runs) == ["a"] and files == [str(tmp_path / "a.jsonl")]
    assert stats.lines == 2 + 4
    st, _, files = load([tmp_path])
    assert sorted(st.runs) == ["a", "b"] and len(files) == 2


def test_load_says_why_nothing_usable_is_there(tmp_path: Path) -> None:
    """No logs in a directory, or a log without one event of ours: NoRuns (a ValueError)
    naming the input and what was read; a missing path stays a FileNotFoundError."""
    (tmp_path / "empty").mkdir()
    with pytest.raises(NoRuns, match=r"no run logs \(\*\.jsonl, \*\.jsonl\.gz\) in "):
        load([tmp_path / "empty"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('not json\n{"ev": "phase_start"}\n')
    with pytest.raises(ValueError, match=r"no atroz_monitor events in .*2 line\(s\) read"):
        load([bad])
    with pytest.raises(FileNotFoundError):
        load([tmp_path / "nope"])


def test_liveness_follows_a_real_owner_process(tmp_path: Path) -> None:
    """A child owning a run without run_end: alive while it runs, not alive once killed
    and reaped (its pid and start time no longer match)."""
    log = tmp_path / "held.jsonl"
    child = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(log)], env=child_env(), stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        st, _ = load_state([log])
        r = st.runs["held"]
        assert r.end is None and liveness(r) is True
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        poll(lambda: liveness(r) is False, 10, "the owner seen gone")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(30)


def test_liveness_is_unknown_for_an_ended_or_foreign_run(tmp_path: Path) -> None:
    """A run with run_end, one written on another host, and one whose owner is not in the
    log: None (nothing to ask /proc)."""
    _run(tmp_path / "done.jsonl", "done", 1)
    start = {"ev": "run_start", "ts": 1.0, "run": "x", "pid": os.getpid(), "seq": 1, "v": 1}
    (tmp_path / "far.jsonl").write_text(
        json.dumps({**start, "run": "far", "host": "elsewhere"}) + "\n"
    )
    (tmp_path / "bare.jsonl").write_text(
        json.dumps({"ev": "phase_start", "ts": 1.0, "run": "bare", "pid": 1, "seq": 1,
                    "span": "1.1", "phase": "P"}) + "\n"
    )  # fmt: skip
    st, _ = load_state([tmp_path])
    assert [liveness(st.runs[r]) for r in ("done", "far", "bare")] == [None, None, None]
