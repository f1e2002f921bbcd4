"""Ground truth: each recorded figure against the kernel's own measure, in the same run.

Every test takes an independent measure (``getrusage``, ``/proc/self/statm``, ``wait4``,
psutil) around or inside the recorded phase and compares. Tolerances (issue 12): CPU within
5% or 20 ms, RSS within 5% or 2 MiB, whichever is larger. With ``ATROZ_TRUTH_TABLE=path`` the
suite writes the errors it measured as a Markdown table (docs/ACCURACY.md quotes one).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import resource
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import child_env, of_kind, phase_ends, read_log

import atroz_monitor
from atroz_monitor import Monitor
from atroz_monitor.probe import cgroup

pytestmark = pytest.mark.skipif(
    not os.path.exists(f"/proc/{os.getpid()}/statm"), reason="ground truth needs Linux /proc"
)

MiB = 1 << 20
PAGE = os.sysconf("SC_PAGE_SIZE")
_rows: list[tuple[str, str, float, float, str]] = []


@pytest.fixture(scope="module", autouse=True)
def _table() -> Iterator[None]:
    yield
    path = os.environ.get("ATROZ_TRUTH_TABLE")
    if path and _rows:
        with open(path, "w", encoding="utf-8") as f:
            f.write("| figure | case | ground truth | recorded | error |\n|---|---|---|---|---|\n")
            for fig, case, truth, got, unit in _rows:
                err = got - truth
                pct = f" ({err / truth * 100:+.1f}%)" if truth >= 10 else ""
                f.write(f"| {fig} | {case} | {truth:.1f} {unit} | {got:.1f} {unit} "
                        f"| {err:+.1f} {unit}{pct} |\n")  # fmt: skip


def cpu_close(fig: str, case: str, recorded_ms: float, truth_ms: float) -> None:
    """CPU within 5% or 20 ms of the kernel's figure (and the row kept for the table)."""
    _rows.append((fig, case, truth_ms, recorded_ms, "ms"))
    assert abs(recorded_ms - truth_ms) <= max(0.05 * truth_ms, 20.0), (recorded_ms, truth_ms)


def rss_close(fig: str, case: str, recorded: int, truth: int) -> None:
    """RSS within 5% or 2 MiB of the kernel's figure."""
    _rows.append((fig, case, truth / MiB, recorded / MiB, "MiB"))
    assert abs(recorded - truth) <= max(0.05 * truth, 2 * MiB), (recorded / MiB, truth / MiB)


def statm_rss() -> int:
    with open(f"/proc/{os.getpid()}/statm", "rb") as f:
        return int(f.read().split()[1]) * PAGE


def self_cpu_ms() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return (r.ru_utime + r.ru_stime) * 1000


def children_cpu_ms() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (r.ru_utime + r.ru_stime) * 1000


def burn(seconds: float) -> None:
    """Use ``seconds`` of this thread's CPU."""
    t = time.thread_time()
    while time.thread_time() - t < seconds:
        pass


def touch(n: int) -> bytearray:
    """``n`` bytes made resident (every page written)."""
    block = bytearray(n)
    block[::PAGE] = b"x" * len(range(0, n, PAGE))
    return block


def forked_burner(seconds: float) -> int:
    """A forked child that burns ``seconds`` of CPU and exits without cleanup; its pid."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            burn(seconds)
        finally:
            os._exit(0)
    return pid


def the_end(log: Path, key: str) -> dict[str, Any]:
    return phase_ends(read_log(log))[key]


# ---------------------------------------------------------------------------------------------
# The process's own CPU


def test_busy_loop_cpu_matches_getrusage(tmp_path: Path) -> None:
    """A 0.3 s busy loop: the phase's cpu_ms is the process's CPU (getrusage) over the phase."""
    log = tmp_path / "run.jsonl"
    with Monitor(log) as mon:
        before = self_cpu_ms()
        with mon.phase("busy"):
            burn(0.3)
        after = self_cpu_ms()
    cpu_close("cpu_ms", "busy loop 0.3 s", the_end(log, "busy")["cpu_ms"], after - before)


def test_threads_burning_cpu_count_every_thread(tmp_path: Path) -> None:
    """Two threads hashing outside the GIL (as BLAS threads do): cpu_ms counts both threads'
    CPU, as getrusage does, which is more than the wall time when both cores are free."""
    data = os.urandom(8 * MiB)

    def work() -> None:
        t = time.thread_time()
        while time.thread_time() - t < 0.3:
            hashlib.sha256(data).digest()  # releases the GIL for large inputs

    log = tmp_path / "run.jsonl"
    with Monitor(log) as mon:
        before = self_cpu_ms()
        with mon.phase("threads"):
            threads = [threading.Thread(target=work) for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        after = self_cpu_ms()
    end = the_end(log, "threads")
    cpu_close("cpu_ms", "2 threads x 0.3 s", end["cpu_ms"], after - before)
    assert end["cpu_ms"] >= 600 * 0.95  # each thread used its 0.3 s


def test_sleep_uses_no_cpu(tmp_path: Path) -> None:
    """A 0.2 s sleep: cpu_ms matches getrusage (near zero) and duration the monotonic clock."""
    log = tmp_path / "run.jsonl"
    with Monitor(log) as mon:
        before, t0 = self_cpu_ms(), time.perf_counter()
        with mon.phase("sleep"):
            time.sleep(0.2)
        after, t1 = self_cpu_ms(), time.perf_counter()
    end = the_end(log, "sleep")
    cpu_close("cpu_ms", "sleep 0.2 s", end["cpu_ms"], after - before)
    assert 200 <= end["duration_ms"] <= (t1 - t0) * 1000


# ---------------------------------------------------------------------------------------------
# RSS at boundaries and peaks


def test_short_phase_after_a_free_has_its_own_rss(tmp_path: Path) -> None:
    """A 1 ms phase right after a phase that freed 500 MB: its start, end and peak RSS are the
    process's RSS then (statm), not the 500 MB the sampler saw last."""
    log = tmp_path / "run.jsonl"
    with Monitor(log, sample_interval=0.5) as mon:
        with mon.phase("alloc"):
            block = touch(500 * MiB)
            high = statm_rss()
            del block
        before = statm_rss()
        with mon.phase("short"):
            time.sleep(0.001)
        after = statm_rss()
    ends = phase_ends(read_log(log))
    short = ends["short"]
    assert high - before > 400 * MiB  # the free really returned the memory
    rss_close("rss_start_bytes", "1 ms phase after a 500 MB free", short["rss_start_bytes"], before)
    rss_close("rss_bytes", "1 ms phase after a 500 MB free", short["rss_bytes"], after)
    rss_close("peak_rss_bytes", "1 ms phase after a 500 MB free", short["peak_rss_bytes"], after)
    # The allocating phase ends after its free: its end is low, its start too.
    rss_close("rss_bytes", "500 MB allocate-free, end", ends["alloc"]["rss_bytes"], before)


def test_phase_freeing_at_its_end_records_the_end_rss(tmp_path: Path) -> None:
    """A phase that frees 300 MB just before it ends: rss_bytes is the RSS after the free."""
    log = tmp_path / "run.jsonl"
    with Monitor(log, sample_interval=0.02) as mon:
        with mon.phase("frees"):
            block = touch(300 * MiB)
            time.sleep(0.1)  # samples see the block
            del block
            truth = statm_rss()
    end = the_end(log, "frees")
    rss_close("rss_bytes", "phase freeing 300 MB at its end", end["rss_bytes"], truth)
    assert end["peak_rss_bytes"] >= truth + 250 * MiB  # the sampler saw the block


def test_memory_touched_between_two_phases_is_read_again(tmp_path: Path) -> None:
    """Two phases with 64 MiB made resident between them (outside both, far longer than
    REUSE_NS): the second starts from the RSS after it (statm), not the first one's end."""
    log = tmp_path / "run.jsonl"
    with Monitor(log, sample_interval=None) as mon:
        with mon.phase("first"):
            pass
        block = touch(64 * MiB)
        truth = statm_rss()
        with mon.phase("second"):
            pass
        del block
    ends = phase_ends(read_log(log))
    assert truth - ends["first"]["rss_bytes"] > 60 * MiB  # the block really moved the RSS
    rss_close("rss_start_bytes", "after 64 MiB touched between phases",
              ends["second"]["rss_start_bytes"], truth)  # fmt: skip


def test_back_to_back_phases_cpu_within_the_reuse_window(tmp_path: Path) -> None:
    """300 back-to-back phases of 0-200 us of CPU, sampling off (one thread): each cpu_ms is
    within REUSE_NS of the CPU measured inside it (a reading is reused only if younger), and
    together they add up to the process's CPU across the sequence (nothing counted twice)."""
    from atroz_monitor.record.monitor import REUSE_NS

    log = tmp_path / "run.jsonl"
    inner: list[float] = []
    with Monitor(log, sample_interval=None, detail="all") as mon:
        outer0 = time.process_time_ns()
        for i in range(300):
            with mon.phase(f"p{i}"):
                c0 = time.process_time_ns()
                burn((i % 5) * 50e-6)
                inner.append((time.process_time_ns() - c0) / 1e6)
        outer = (time.process_time_ns() - outer0) / 1e6
    ends = phase_ends(read_log(log))
    window_ms = REUSE_NS / 1e6
    lows = [ends[f"p{i}"]["cpu_ms"] - inner[i] for i in range(300)]
    # Lower bound: the end's reading may be up to REUSE_NS older than the exit (one thread
    # runs here), rounding to 1 us. The upper side adds the monitor's own few microseconds.
    assert min(lows) >= -(window_ms + 0.001), min(lows)
    assert sorted(lows)[150] <= window_ms + 0.05, sorted(lows)[150]
    total = sum(e["cpu_ms"] for e in ends.values())
    cpu_close("cpu_ms", "300 back-to-back phases (sum)", total, outer)
    assert total <= outer + window_ms  # the first phase's start may predate outer0


def test_exact_peak_catches_a_short_spike_in_the_phase_and_its_parent(tmp_path: Path) -> None:
    """exact_peak=True: a 200 MB spike held 200 ms, between two samples 5 s apart, is the peak
    of its phase and of the enclosing one (folded before each reset), within 2 MiB."""
    log = tmp_path / "run.jsonl"
    with Monitor(log, sample_interval=5.0, exact_peak=True) as mon:
        with mon.phase("outer"):
            with mon.phase("before"):
                pass
            with mon.phase("spike"):
                block = touch(200 * MiB)
                time.sleep(0.2)
                truth = statm_rss()
                del block
            with mon.phase("after"):
                pass
    ends = phase_ends(read_log(log))
    for key in ("spike", "outer"):
        assert ends[key]["peak_rss_method"] == "hwm"
        rss_close(
            "peak_rss_bytes",
            f"200 ms spike, exact_peak ({key})",
            ends[key]["peak_rss_bytes"],
            truth,
        )
    # The phase after the spike starts after it: its peak is its own.
    assert ends["after"]["peak_rss_bytes"] < truth - 150 * MiB
    # The snapshot says how each peak was measured.
    methods = {ph["phase"]: ph["peak_rss_method"] for ph in mon.snapshot()["phases"]}
    assert methods == {"outer": "hwm", "before": "hwm", "spike": "hwm", "after": "hwm"}


def test_sampled_peak_is_never_below_the_boundaries(tmp_path: Path) -> None:
    """Without exact_peak, a phase's peak is at least its start and end RSS (read there)."""
    log = tmp_path / "run.jsonl"
    with Monitor(log, sample_interval=5.0) as mon:
        block = touch(100 * MiB)
        with mon.phase("drop"):
            del block
    end = the_end(log, "drop")
    assert end["peak_rss_method"] == "sampled"
    assert end["peak_rss_bytes"] == end["rss_start_bytes"]
    assert end["rss_start_bytes"] - end["rss_bytes"] > 90 * MiB


# ---------------------------------------------------------------------------------------------
# Children's CPU, each case in a fresh process: the test runner's own descendants (servers,
# browsers other tests started) would add their CPU to the tree's and not to the ground truth.

PRELUDE = """
import json, os, resource, subprocess, sys, time
from atroz_monitor import Monitor

def burn(seconds):
    t = time.thread_time()
    while time.thread_time() - t < seconds:
        pass

def forked_burner(seconds):
    pid = os.fork()
    if pid == 0:
        try:
            burn(seconds)
        finally:
            os._exit(0)
    return pid

def children_cpu_ms():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (r.ru_utime + r.ru_stime) * 1000

log = sys.argv[1]
"""


def isolated(tmp_path: Path, body: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run ``body`` (after PRELUDE) in a fresh Python; it records into ``log`` and prints one
    JSON object of ground truth. Returns (that object, the phase_end events by key)."""
    log = tmp_path / "run.jsonl"
    r = subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(body), str(log)],
        env=child_env(),
        capture_output=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    return json.loads(r.stdout.splitlines()[-1]), phase_ends(read_log(log))


def test_twenty_short_children_are_all_counted(tmp_path: Path) -> None:
    """20 children of 0.1 s CPU each, default sampling (0.5 s): children_cpu_ms is what
    RUSAGE_CHILDREN gained over the phase (the kernel sums every reaped child)."""
    truth, ends = isolated(
        tmp_path,
        """
        with Monitor(log) as mon:
            before = children_cpu_ms()
            with mon.phase("children"):
                for _ in range(5):
                    pids = [forked_burner(0.1) for _ in range(4)]
                    for pid in pids:
                        os.waitpid(pid, 0)
            after = children_cpu_ms()
        print(json.dumps({"ms": after - before}))
        """,
    )
    assert truth["ms"] >= 2000 * 0.95
    got = ends["children"]["children_cpu_ms"]
    cpu_close("children_cpu_ms", "20 children x 0.1 s", got, truth["ms"])


def test_twenty_short_children_with_sampling_off(tmp_path: Path) -> None:
    """With sampling off, children_cpu_ms is RUSAGE_CHILDREN's gain, as exact as with it on."""
    truth, ends = isolated(
        tmp_path,
        """
        with Monitor(log, sample_interval=None) as mon:
            before = children_cpu_ms()
            with mon.phase("children"):
                pids = [forked_burner(0.1) for _ in range(4)]
                for pid in pids:
                    os.waitpid(pid, 0)
            after = children_cpu_ms()
        print(json.dumps({"ms": after - before}))
        """,
    )
    got = ends["children"]["children_cpu_ms"]
    cpu_close("children_cpu_ms", "4 children, sampling off", got, truth["ms"])


def test_long_child_reaped_between_ticks_is_counted_once(tmp_path: Path) -> None:
    """A 2 s child seen alive by many samples (50 ms apart), then reaped between two ticks:
    its CPU is counted once and whole (RUSAGE_CHILDREN), not twice, not cut at a tick."""
    truth, ends = isolated(
        tmp_path,
        """
        with Monitor(log, sample_interval=0.05) as mon:
            before = children_cpu_ms()
            with mon.phase("long"):
                pid = forked_burner(2.0)
                os.waitpid(pid, 0)
            after = children_cpu_ms()
        print(json.dumps({"ms": after - before}))
        """,
    )
    evs = read_log(tmp_path / "run.jsonl")
    assert any(s.get("children", 0) >= 1 for s in of_kind(evs, "sample"))  # seen alive
    cpu_close("children_cpu_ms", "one 2 s child", ends["long"]["children_cpu_ms"], truth["ms"])


def test_grandchildren_through_sh_are_counted(tmp_path: Path) -> None:
    """`sh -c` starting two busy grandchildren and waiting for them: their CPU reaches the phase
    through sh's own RUSAGE_CHILDREN when sh is reaped."""
    truth, ends = isolated(
        tmp_path,
        """
        busy = "import time\\nt = time.process_time()\\nwhile time.process_time() - t < 0.3: pass"
        py = sys.executable
        script = f"{py} -S -c '{busy}' & {py} -S -c '{busy}' & wait"
        with Monitor(log) as mon:
            before = children_cpu_ms()
            with mon.phase("sh"):
                subprocess.run(["sh", "-c", script], check=True)
            after = children_cpu_ms()
        print(json.dumps({"ms": after - before}))
        """,
    )
    assert truth["ms"] >= 600
    got = ends["sh"]["children_cpu_ms"]
    cpu_close("children_cpu_ms", "2 grandchildren via sh -c", got, truth["ms"])


def test_live_child_cpu_counts_at_the_sampler_resolution(tmp_path: Path) -> None:
    """A child still running when its phase ends: its CPU so far is counted from the tree
    sampler, within one sample interval of CPU of psutil's figure for it."""
    pytest.importorskip("psutil")
    truth, ends = isolated(
        tmp_path,
        """
        import psutil
        with Monitor(log, sample_interval=0.05) as mon:
            pid = forked_burner(5.0)
            child = psutil.Process(pid)
            try:
                with mon.phase("live"):
                    deadline = time.monotonic() + 10
                    while sum(child.cpu_times()[:2]) < 0.4 and time.monotonic() < deadline:
                        time.sleep(0.01)
                t = child.cpu_times()
            finally:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
        print(json.dumps({"ms": (t.user + t.system) * 1000}))
        """,
    )
    got = ends["live"]["children_cpu_ms"]
    _rows.append(("children_cpu_ms", "live child at phase end", truth["ms"], got, "ms"))
    assert truth["ms"] - (50 + 40) <= got <= truth["ms"] + 20


# ---------------------------------------------------------------------------------------------
# run -- CMD


def test_run_xargs_command_figures_match_wait4(tmp_path: Path) -> None:
    """`run -- xargs -P2` starting 8 short Python processes: the command phase's cpu_ms is the
    command tree's CPU (wait4 of `run`, less run's own CPU), not the wrapper's."""
    busy = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.1: pass"
    out = tmp_path / "runs"
    argv = [sys.executable, "-m", "atroz_monitor", "run", "--out", str(out), "--"]
    argv += ["xargs", "-P2", "-n1", sys.executable, "-S", "-c", busy]
    proc = subprocess.Popen(argv, env=child_env(), stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL)  # fmt: skip
    assert proc.stdin is not None
    proc.stdin.write(b"".join(b"%d\n" % i for i in range(8)))
    proc.stdin.close()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0
    evs = read_log(next(out.glob("*.jsonl")))
    cmd = phase_ends(evs)["command"]
    assert cmd["figures_source"] == "wait4"
    own = max(s["cpu_s"] for s in of_kind(evs, "sample")) * 1000  # run's own CPU, last sample
    total = (usage.ru_utime + usage.ru_stime) * 1000
    cpu_close("command cpu_ms", "run -- xargs -P2 (8 processes)", cmd["cpu_ms"], total - own)
    assert cmd["cpu_ms"] >= 800 * 0.95
    assert 0 < cmd["max_rss_bytes"] <= usage.ru_maxrss * 1024
    assert cmd["peak_rss_bytes"] >= cmd["max_rss_bytes"]


# ---------------------------------------------------------------------------------------------
# Processes


def _worker_phase(parent: str | None) -> int:
    with atroz_monitor.phase("work", parent=parent):
        burn(0.01)
    return os.getpid()


def test_fork_pool_workers_write_process_end(tmp_path: Path) -> None:
    """Fork-started pool workers leave through os._exit: each still writes one process_end."""
    log = tmp_path / "run.jsonl"
    with Monitor(log, sample_interval=None) as mon:
        with mon.phase("pool") as p:
            pool = mp.get_context("fork").Pool(2)
            pids = set(pool.map(_worker_phase, [p.span] * 8))
            pool.close()
            pool.join()
    evs = read_log(log)
    ends = [e["pid"] for e in of_kind(evs, "process_end")]
    assert sorted(ends) == sorted({e["pid"] for e in of_kind(evs, "process_start")})
    assert set(ends) == pids and len(ends) == len(pids)


# ---------------------------------------------------------------------------------------------
# Rates


def test_cpu_hog_beside_the_sampler_never_exceeds_the_usable_cpus(tmp_path: Path) -> None:
    """Two hogging children and a busy main thread beside a 100 Hz sampler on a loaded box:
    no sample's cpu_pct or children_cpu_pct exceeds 100 x the usable CPUs."""
    ncpu = cgroup.cpu_count(cgroup.limits(), os.cpu_count())
    log = tmp_path / "run.jsonl"
    with Monitor(log, sample_interval=0.01) as mon:
        with mon.phase("hog"):
            pids = [forked_burner(0.6) for _ in range(2)]
            burn(0.6)
            for pid in pids:
                os.waitpid(pid, 0)
    samples = of_kind(read_log(log), "sample")
    cap = 100 * ncpu + 0.01  # two decimals of rounding
    rates = [s["cpu_pct"] for s in samples if "cpu_pct" in s]
    crates = [s["children_cpu_pct"] for s in samples if "children_cpu_pct" in s]
    assert len(rates) >= 10 and crates
    _rows.append(
        (
            "cpu_pct (highest)",
            "hog beside a 100 Hz sampler; truth: the cap",
            100 * ncpu,
            max(rates),
            "%",
        )
    )
    _rows.append(
        (
            "children_cpu_pct (highest)",
            "2 hogging children; truth: the cap",
            100 * ncpu,
            max(crates),
            "%",
        )
    )
    assert max(rates) <= cap and max(crates) <= cap, (max(rates), max(crates), ncpu)
