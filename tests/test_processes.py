"""Real processes: worker pools and subprocesses joining a run, fork, crash, concurrency."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from helpers import of_kind, phase_starts, read_log

import atroz_monitor
from atroz_monitor import Monitor
from atroz_monitor.read.loader import liveness, load_state
from atroz_monitor.view.views import snapshot


def _pool_task(args):
    """Runs in a pool worker: records a phase under the parent span it was handed."""
    i, parent = args
    with atroz_monitor.phase("worker", f"task {i}", parent=parent) as p:
        p.add_items(1)
    return os.getpid()


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_pool_workers_join_the_run(tmp_path, method):
    """A multiprocessing pool (fork and spawn) records into the parent's run: one run, the
    workers' phases under the parent span, each worker its own pid, one run_end."""
    log = tmp_path / "run.jsonl"
    ctx = mp.get_context(method)
    with Monitor(log, sample_interval=None, run_id="pool-1") as mon:
        with mon.phase("P03") as p:
            with ctx.Pool(2) as pool:
                pids = pool.map(_pool_task, [(i, p.span) for i in range(6)])
    evs = read_log(log)
    assert {e["run"] for e in evs} == {"pool-1"}
    workers = [e for e in of_kind(evs, "phase_end") if e["phase"] == "worker"]
    assert len(workers) == 6
    assert all(e["parent"] == p.span for e in workers)
    assert {e["pid"] for e in workers} == set(pids)
    assert os.getpid() not in set(pids)
    assert len(of_kind(evs, "run_end")) == 1 and len(of_kind(evs, "run_start")) == 1
    starts = of_kind(evs, "process_start")
    assert {e["pid"] for e in starts} == set(pids)
    spans = [e["span"] for e in of_kind(evs, "phase_start")]
    assert len(spans) == len(set(spans))  # unique across processes
    st, _ = load_state([log])
    snap = snapshot(st, "pool-1", now=time.time())
    parent = next(ph for ph in snap["phases"] if ph["span"] == p.span)
    assert len(parent["children"]) == 6


def test_python_subprocess_joins_and_stands_in_its_own_lane(tmp_path):
    """A Python subprocess started during the run records into it with its own pid, its
    phases at the top level of its own process lane; it writes process_start/end only."""
    log = tmp_path / "run.jsonl"
    code = textwrap.dedent(
        """
        import atroz_monitor
        with atroz_monitor.phase("child", "Child step") as p:
            p.add_items(3)
        """
    )
    with Monitor(log, sample_interval=None, run_id="sub-1") as mon:
        with mon.phase("P00"):
            r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    evs = read_log(log)
    child = [e for e in of_kind(evs, "phase_end") if e["phase"] == "child"]
    assert len(child) == 1
    assert child[0]["parent"] is None and child[0]["pid"] != os.getpid()
    assert child[0]["items"] == 3
    kinds = [e["ev"] for e in evs if e["pid"] == child[0]["pid"]]
    assert kinds == ["process_start", "phase_start", "phase_end", "process_end"]
    assert [e["ev"] for e in evs].count("run_end") == 1


def test_fork_while_sampling_does_not_deadlock(tmp_path):
    """A child forked while the sampler thread runs records under its own pid and exits
    (bounded by a timeout), while the parent's phase is not ended by the child."""
    log = tmp_path / "run.jsonl"
    with Monitor(log, sample_interval=0.001) as mon:
        with mon.phase("parent") as p:
            children = []
            for _ in range(5):
                pid = os.fork()
                if pid == 0:  # the child: record, then leave without cleanup
                    try:
                        with mon.phase("in-child"):
                            pass
                    finally:
                        os._exit(0)
                children.append(pid)
            deadline = time.monotonic() + 20
            for pid in children:
                while True:
                    done, status = os.waitpid(pid, os.WNOHANG)
                    if done:
                        assert os.waitstatus_to_exitcode(status) == 0
                        break
                    assert time.monotonic() < deadline, "forked child deadlocked"
                    time.sleep(0.01)
    evs = read_log(log)
    ends = of_kind(evs, "phase_end")
    in_child = [e for e in ends if e["phase"] == "in-child"]
    assert sorted(e["pid"] for e in in_child) == sorted(children)
    assert all(e["parent"] is None for e in in_child)  # the parent's span is not theirs
    parent_ends = [e for e in ends if e["span"] == p.span]
    assert len(parent_ends) == 1 and parent_ends[0]["pid"] == os.getpid()


def test_sigkill_mid_run_keeps_every_returned_phase(tmp_path):
    """A pipeline killed with SIGKILL: every phase whose with-block returned is in the file,
    and the reader reports the run interrupted."""
    log = tmp_path / "run.jsonl"
    marks = tmp_path / "marks.txt"
    code = textwrap.dedent(
        f"""
        import os
        from atroz_monitor import Monitor
        with Monitor({str(log)!r}, sample_interval=0.01, run_id="killed") as mon:
            i = 0
            while True:
                with mon.phase(f"P{{i}}"):
                    sum(range(2000))
                # the phase has returned: note it (after the fact, like a caller would)
                with open({str(marks)!r}, "a") as f:
                    f.write(f"P{{i}}\\n")
                i += 1
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 30
    while not (marks.exists() and marks.read_text().count("\n") >= 50):
        assert time.monotonic() < deadline, "the child recorded too little"
        assert proc.poll() is None, "the child died on its own"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    returned = marks.read_text().split()
    st, stats = load_state([log])
    r = st.runs["killed"]
    ended = {rec.phase for rec in r.phases.values() if rec.status == "completed"}
    assert set(returned) <= ended
    assert stats.corrupt == 0
    assert liveness(r) is False
    snap = snapshot(st, "killed", now=time.time(), alive=liveness(r))
    assert snap["run"]["status"] == "interrupted"
    assert all(p["status"] in ("completed", "interrupted") for p in snap["phases"])


def test_threads_nested_phases_exact(tmp_path):
    """16 threads x 1,000 nested phases: every event present exactly once, parents right
    (detail="all": every call recorded, no hot-loop aggregation)."""
    log = tmp_path / "run.jsonl"
    with Monitor(log, sample_interval=0.01, detail="all") as mon:

        def work(t):
            for _ in range(500):
                with mon.phase(f"t{t}") as outer:
                    with mon.phase(f"t{t}.inner") as inner:
                        pass
                    assert inner.parent == outer.span

        ts = [threading.Thread(target=work, args=(t,)) for t in range(16)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    evs = read_log(log)
    starts = phase_starts(evs)
    ends = of_kind(evs, "phase_end")
    assert len(starts) == len(ends) == 16_000
    assert {e["span"] for e in starts} == {e["span"] for e in ends}
    assert len({e["span"] for e in ends}) == 16_000
    parent_key = {e["span"]: e["phase"] for e in ends}
    for e in ends:
        if e["phase"].endswith(".inner"):
            assert parent_key[e["parent"]] + ".inner" == e["phase"]
    seqs = [e["seq"] for e in evs]
    assert seqs == list(range(1, len(evs) + 1))


_APPENDER = textwrap.dedent(
    """
    import sys
    from atroz_monitor import Monitor
    mon = Monitor(sys.argv[1], sample_interval=None, run_id="shared", _join=True)
    for i in range(int(sys.argv[2])):
        mon.metric("n", i)
    mon.close()
    """
)


def test_processes_appending_to_one_file_never_tear_lines(tmp_path):
    """4 processes x 5,000 events appended to one file: every line parses, counts exact."""
    log = tmp_path / "run.jsonl"
    procs = [
        subprocess.Popen([sys.executable, "-c", _APPENDER, str(log), "5000"]) for _ in range(4)
    ]
    for p in procs:
        assert p.wait(120) == 0
    evs = read_log(log)  # strict: any torn or interleaved line fails here
    metrics = of_kind(evs, "metric")
    assert len(metrics) == 20_000
    by_pid: dict[int, list[int]] = {}
    for e in metrics:
        by_pid.setdefault(e["pid"], []).append(e["value"])
    assert len(by_pid) == 4
    assert all(v == list(range(5000)) for v in by_pid.values())
