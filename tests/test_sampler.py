"""The sampling thread (sampler.py): a reading at start and at stop, one ``sample`` line per
tick naming the open phases, peaks raised in open phases, and real child processes seen in
the children figures. Figures are checked against /proc/self/statm and the child's own CPU."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from helpers import of_kind, poll, read_log

from atroz_monitor import Monitor

MIB = 2**20
PAGE = os.sysconf("SC_PAGE_SIZE")


def _statm_rss() -> int:
    """This process's resident set now, from /proc/self/statm (independent of procfs.py)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def _samples(log: Path) -> list[dict]:
    try:
        return of_kind(read_log(log), "sample")
    except (ValueError, AssertionError):  # a line being written right now
        return []


def test_a_run_shorter_than_one_interval_has_a_sample(tmp_path: Path) -> None:
    """sample_interval=60 and a run of a moment: the reading taken at start is written at
    once (after run_start, before the first phase, written whole in one line), and health()
    counts two readings from /proc, the one at start and the one at stop."""
    log = tmp_path / "a.jsonl"
    with Monitor(log, sample_interval=60, alert_rules=[]) as mon:
        with mon.phase("P"):
            pass
    kinds = [e["ev"] for e in read_log(log)]
    assert kinds[:3] == ["run_start", "sample", "phase_end"]  # the phase whole, in one line
    assert of_kind(read_log(log), "sample")[0]["spans"] == []
    h = mon.snapshot()["monitor"]
    assert (h["samples"], h["sample_errors"], h["sample_source"]) == (2, 0, "procfs")


def test_the_final_reading_is_written_before_run_end(tmp_path: Path) -> None:
    """The reading the sampler takes as the run ends is a ``sample`` line of that run, after
    the last phase and before ``run_end``, with the resident set /proc/self/statm shows then
    (memory allocated after the last tick is seen)."""
    log = tmp_path / "a.jsonl"
    with Monitor(log, sample_interval=60, alert_rules=[]) as mon:
        with mon.phase("P"):
            pass
        block = bytearray(64 * MIB)  # touched: resident from here to the end
        expect = _statm_rss()
    evs = read_log(log)
    kinds = [e["ev"] for e in evs]
    assert kinds[-2:] == ["sample", "run_end"]
    assert kinds.count("sample") == 2
    last = evs[-2]
    assert last["spans"] == []
    assert abs(last["rss_bytes"] - expect) <= 2 * MIB
    assert len(block) == 64 * MIB


def test_samples_name_the_open_phases_and_raise_their_peak(tmp_path: Path) -> None:
    """64 MiB touched inside a phase: a sample taken meanwhile names the phase's span and
    reads at least 60 MiB above the RSS before (statm), and the phase's peak is at least
    that sample's RSS."""
    log = tmp_path / "a.jsonl"
    r0 = _statm_rss()
    with Monitor(log, sample_interval=0.05, alert_rules=[]) as mon:
        with mon.phase("alloc") as p:
            block = bytearray(64 * MIB)
            for i in range(0, len(block), PAGE):
                block[i] = 1
            seen = poll(
                lambda: [s for s in _samples(log) if p.span in s["spans"]],
                30,
                "a sample during the phase",
            )
            del block
    (end,) = [e for e in of_kind(read_log(log), "phase_end") if e["phase"] == "alloc"]
    assert seen[0]["rss_bytes"] >= r0 + 60 * MIB
    assert end["peak_rss_bytes"] >= max(s["rss_bytes"] for s in seen)


def test_ticks_keep_coming_while_the_pipeline_blocks(tmp_path: Path) -> None:
    """The pipeline's thread blocked on an event: the sampling thread goes on writing
    samples (at least 5 at 20 ms), each naming the blocked phase."""
    log = tmp_path / "a.jsonl"
    gate = threading.Event()
    with Monitor(log, sample_interval=0.02, alert_rules=[]) as mon:
        with mon.phase("blocked") as p:
            poll(lambda: len([s for s in _samples(log) if p.span in s["spans"]]) >= 5, 30,
                 "5 samples while blocked")  # fmt: skip
            gate.set()
    during = [s for s in of_kind(read_log(log), "sample") if s["spans"] == [p.span]]
    assert len(during) >= 5 and gate.is_set()


def test_a_child_process_is_in_the_children_figures(tmp_path: Path) -> None:
    """A real child sleeping in a phase: some sample counts it among the children, with a
    resident set of its own (children_rss_bytes above zero)."""
    log = tmp_path / "a.jsonl"
    with Monitor(log, sample_interval=0.05, alert_rules=[]) as mon:
        with mon.phase("spawn"):
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
            try:
                seen = poll(
                    lambda: [s for s in _samples(log) if s.get("children", 0) >= 1],
                    30,
                    "a sample seeing the child",
                )
            finally:
                child.kill()
                child.wait(10)
    assert seen[0]["children_rss_bytes"] > 0


def test_real_child_cpu_shows_in_samples(tmp_path):
    """A child process burning 0.6 s of CPU shows up in the samples' children count and CPU %,
    and the last sample's children_cpu_s has all of it (however loaded the machine is)."""
    log = tmp_path / "run.jsonl"
    code = "import time\nt=time.process_time()\nwhile time.process_time()-t<0.6: pass"
    with Monitor(log, sample_interval=0.05) as mon:
        with mon.phase("spawn"):
            child = subprocess.Popen([sys.executable, "-c", code])
            child.wait(60)  # at least 0.6 s: a dozen samples see it
    samples = of_kind(read_log(log), "sample")
    assert max(s.get("children", 0) for s in samples) >= 1
    assert max(s.get("children_cpu_pct", 0) for s in samples) > 10
    assert samples[-1]["children_cpu_s"] >= 0.6
