"""Faults a real pipeline meets: kill -9 at random moments, a full or size-limited disk, an
unwritable log directory, an unreadable or vanishing /proc, 32 threads and 4 processes in one
run, fork in the middle of a phase, multiprocessing pools (fork and spawn).

Run alone with ``python -m pytest -m faults``; ``ATROZ_FAULT_TRIALS`` (default 50) sets the
number of kill -9 trials and scales the other randomised counts (docs/RELIABILITY.md).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from helpers import child_env, of_kind, phase_starts, poll, read_log

import atroz_monitor
from atroz_monitor import Monitor
from atroz_monitor.read.loader import liveness, load_state
from atroz_monitor.read.reader import ReadStats, iter_events
from atroz_monitor.view.views import snapshot

pytestmark = pytest.mark.faults

TRIALS = max(1, int(os.environ.get("ATROZ_FAULT_TRIALS", "50")))
EVENTS_PER_WRITER = 10_000


def _lines(path: Path) -> list[str]:
    """The complete (newline-terminated) lines of a side file; a torn last one is dropped."""
    if not path.exists():
        return []
    data = path.read_bytes()
    return data[: data.rfind(b"\n") + 1].decode().split()


def _read(path: str | os.PathLike[str]) -> tuple[list[dict[str, Any]], ReadStats]:
    stats = ReadStats(str(path))
    return list(iter_events(path, stats)), stats


# ------------------------------------------------------------------------------ kill -9

# The pipeline the kill trials interrupt. Every phase notes its span in a side file once its
# `with` block has returned (one O_APPEND write per line, as a caller would after the fact);
# pool workers do the same for theirs. "A" ends a line that notes a returned parent whose
# hot-loop calls (if any) must all be in the log.
_KILL_CHILD = textwrap.dedent(
    """
    import multiprocessing as mp, os, sys
    import atroz_monitor
    from atroz_monitor import Monitor

    log, marks, pool_on, agg_on, interval = sys.argv[1:6]
    fd = os.open(marks, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def note(text):
        os.write(fd, (text + "\\n").encode())

    def task(args):
        k, parent = args
        with atroz_monitor.phase("worker", f"task {k}", parent=parent) as w:
            w.add_items(1)
            sum(range(5000))
        if w.span is not None:  # None: summed as a hot loop (the worker's 21st call on)
            note(w.span)
        return k

    detail = "auto" if agg_on == "1" else "all"
    with Monitor(log, run_id="killed", sample_interval=float(interval), detail=detail,
                 aggregate_above=20, alert_rules=[]) as mon:
        pool = mp.get_context("fork").Pool(2) if pool_on == "1" else None
        note("ready")
        i = 0
        while True:
            with mon.phase(f"P{i}") as p:
                p.set_total(3)
                for j in range(3):
                    with mon.phase(f"P{i}.{j}") as s:
                        with mon.phase("leaf") as leaf:
                            sum(range(3000))
                            leaf.metric("m", j)
                        note(leaf.span)
                        s.add_items(1)
                    note(s.span)
                if pool is not None:
                    pool.map(task, [(k, p.span) for k in range(4)])
                if agg_on == "1":
                    for _ in range(60):  # 20 recorded one by one, then summed
                        with mon.phase("item") as it:
                            pass
                        if it.span is not None:
                            note(it.span)
            note(p.span)
            note("A" + p.span)
            i += 1
    """
)


def _kill_trial(tmp: Path, n: int, seed: int) -> dict[str, Any]:
    """One pipeline killed with SIGKILL (its whole process group: pool workers included) at
    a random moment; what the log kept, checked against what the pipeline saw returned."""
    rnd = random.Random(seed)
    pool_on = n % 3 == 1
    agg_on = n % 2 == 1
    interval = rnd.choice(["0.002", "0.01", "0.05"])
    d = tmp / f"t{n}"
    d.mkdir()
    log, marks = d / "run.jsonl", d / "marks.txt"
    with open(d / "stderr.txt", "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", _KILL_CHILD, str(log), str(marks), str(int(pool_on)),
             str(int(agg_on)), interval],
            env=child_env(), start_new_session=True, stderr=err,
        )  # fmt: skip
    try:
        poll(lambda: "ready" in _lines(marks) or proc.poll() is not None, 30, "the child")
        # The kill moment: after a random number of returned phases and a random delay.
        want = rnd.randrange(0, 40)
        at = time.monotonic() + rnd.uniform(0.0, 0.3)
        poll(
            lambda: (
                (len(_lines(marks)) > want and time.monotonic() >= at) or proc.poll() is not None
            ),
            30,
            f"{want} returned phases",
        )
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:  # the child and its workers already gone: said below
            pass
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL, (
        f"trial {n}: the child ended on its own: {(d / 'stderr.txt').read_text()[-2000:]}"
    )
    noted = _lines(marks)
    returned = {s for s in noted if s != "ready" and not s.startswith("A")}
    parents_done = {s[1:] for s in noted if s.startswith("A")}
    evs, stats = _read(log)
    ends = {e["span"]: e for e in evs if e["ev"] == "phase_end"}
    missing = sorted(returned - set(ends))
    assert not missing, f"trial {n} (seed {seed}): returned phases not in the log: {missing}"
    assert stats.corrupt == 0 and stats.torn <= 1, f"trial {n}: {stats}"
    # Hot-loop calls under a returned parent are all in the log: those recorded one by one
    # plus the aggregates flushed when the parent ended add up to 60.
    agg_exact = 0
    if agg_on:
        for span in parents_done:
            one_by_one = sum(
                1 for e in ends.values() if e["parent"] == span and e["phase"] == "item"
            )
            summed = sum(e["count"] for e in evs if e["ev"] == "aggregate" and e["parent"] == span)
            assert one_by_one + summed == 60, f"trial {n}: {span}: {one_by_one} + {summed}"
            agg_exact += 1
    st, _ = load_state([log])
    r = st.runs["killed"]
    alive = liveness(r)
    assert alive is False, f"trial {n}: liveness {alive}"
    snap = snapshot(st, "killed", now=time.time(), alive=alive)
    assert snap["run"]["status"] == "interrupted"
    bad = [p for p in snap["phases"] if p["status"] not in ("completed", "interrupted")]
    assert not bad, f"trial {n} (seed {seed}): {bad[:2]}"
    return {
        "returned": len(returned),
        "lines": stats.lines,
        "torn": stats.torn,
        "pool": pool_on,
        "agg": agg_on,
        "agg_parents": agg_exact,
    }


def test_kill9_at_random_moments_keeps_every_returned_phase(tmp_path: Path) -> None:
    """SIGKILL at random moments keeps every returned phase; logs read back; runs interrupted."""
    seed0 = int(os.environ.get("ATROZ_FAULT_SEED", str(random.SystemRandom().randrange(1 << 30))))
    with ThreadPoolExecutor(max_workers=2) as ex:
        futures = [ex.submit(_kill_trial, tmp_path, n, seed0 + n) for n in range(TRIALS)]
        results = [f.result() for f in futures]
    returned = sum(r["returned"] for r in results)
    print(
        f"\nkill -9: {TRIALS} trials (seed {seed0}), {returned} returned phases all found, "
        f"{sum(r['lines'] for r in results)} lines read, {sum(r['torn'] for r in results)} "
        f"torn, {sum(r['pool'] for r in results)} with a pool, "
        f"{sum(r['agg'] for r in results)} aggregating "
        f"({sum(r['agg_parents'] for r in results)} parents' hot loops exact)"
    )
    assert len(results) == TRIALS
    assert returned > 0


# ------------------------------------------------------------------------------ full disk


def test_dev_full_pipeline_completes_and_snapshot_shows_the_losses(capsys: Any) -> None:
    """On /dev/full the pipeline completes and snapshot()["monitor"] shows the counted losses."""
    import logging

    with Monitor("/dev/full", sample_interval=0.005, run_id="full", alert_rules=[]) as mon:
        total = 0
        for i in range(200):
            with mon.phase(f"P{i % 10}") as p:
                with mon.phase("sub") as s:
                    s.metric("m", i)
                    total += i
                p.add_items(1)
            if i == 100:
                logging.getLogger("faults").warning("disk is full")
        health = mon.main.health()
        snap = mon.snapshot()
    assert total == sum(range(200))  # the pipeline did all of its work
    assert health["events_written"] == 0
    assert health["write_errors"] >= 800 and health["events_lost"] >= 800
    assert "No space left on device" in str(health["last_write_error"])
    assert health["internal_errors"] == 0
    assert capsys.readouterr().err.count("cannot write to /dev/full") == 1
    # README: failures are "visible in snapshot()["monitor"]" (the log cannot be read back
    # here, so the counters must come from the monitor itself).
    assert "monitor" in snap, f"snapshot() over an unreadable log: {snap}"
    assert snap["monitor"]["write_errors"] >= 800


_REFILL = textwrap.dedent(
    """
    import json, os, resource, signal, sys
    from atroz_monitor import Monitor
    log = sys.argv[1]
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, resource.RLIM_INFINITY))
    full_seen = None
    with Monitor(log, sample_interval=0.005, run_id="refill", alert_rules=[]) as mon:
        i = 0
        while mon.main.health()["write_errors"] < 50:
            with mon.phase(f"F{i}"):
                pass
            i += 1
        full_seen = mon.snapshot()["monitor"]["write_errors"]
        resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)  # room again
        after = []
        for j in range(30):
            with mon.phase(f"A{j}") as p:
                pass
            after.append(p.span)
    print(json.dumps({"full_seen": full_seen, "after": after, "health": mon.main.health()}))
    """
)


def _fill_tmpfs_then_free(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """A 128 KiB tmpfs, most of it taken by a filler file: the run fills it, then the filler
    is deleted and the run goes on. Skips when the mount is refused (not root)."""
    mnt = tmp_path / "small-fs"
    mnt.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", str(mnt)],
        capture_output=True, text=True,
    )  # fmt: skip
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs: {r.stderr.strip() or r.returncode}")
    try:
        filler = mnt / "filler"
        filler.write_bytes(b"x" * 96_000)
        log = mnt / "run.jsonl"
        with Monitor(log, sample_interval=0.005, run_id="refill", alert_rules=[]) as mon:
            i = 0
            while mon.main.health()["write_errors"] < 50:
                with mon.phase(f"F{i}"):
                    pass
                i += 1
                assert i < 100_000, "the small file system never filled"
            full_seen = mon.snapshot()["monitor"]["write_errors"]
            filler.unlink()  # room again
            after = []
            for j in range(30):
                with mon.phase(f"A{j}") as p:
                    pass
                after.append(p.span)
        out = tmp_path / "run.jsonl"
        shutil.copyfile(log, out)
        return out, {"full_seen": full_seen, "after": after, "health": mon.main.health()}
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.mark.parametrize("how", ["tmpfs", "rlimit"])
def test_disk_full_then_room_again_loses_only_what_was_counted(tmp_path: Path, how: str) -> None:
    """A disk that fills then frees: losses in run_end; every written event reads back intact."""
    if how == "tmpfs":
        log, res = _fill_tmpfs_then_free(tmp_path)
    else:
        log = tmp_path / "run.jsonl"
        r = subprocess.run(
            [sys.executable, "-c", _REFILL, str(log)],
            env=child_env(), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["full_seen"] >= 50
    evs, stats = _read(log)
    ends = {e["span"] for e in evs if e["ev"] == "phase_end"}
    assert set(res["after"]) <= ends
    (run_end,) = [e for e in evs if e["ev"] == "run_end"]
    counters = run_end["counters"]
    assert counters["write_errors"] >= 50 and counters["events_lost"] >= 50
    assert counters["write_errors"] == res["health"]["write_errors"]
    assert stats.torn == 0
    # Every line the writer counted as written reads back intact; the part of a line cut by
    # ENOSPC/EFBIG is ended before the next write, so it is at most a corrupt line of its
    # own (a counted loss), never a prefix that spoils the next event.
    # (A two-line write cut after its first line counts both lost: the count may be high by
    # one line per failure, never low.)
    h = res["health"]
    assert h["events_written"] <= stats.events <= h["events_written"] + h["events_lost"], stats
    assert stats.corrupt <= counters["write_errors"]


def _make_read_only(d: Path) -> Any:
    """Make ``d`` refuse new files; return the undo. Root ignores permissions, so as root
    ``d`` becomes a read-only bind mount of itself (descriptors opened before keep
    writing, new files get EROFS, as after a remount read-only); otherwise chmod 0555."""
    if os.geteuid() != 0:
        os.chmod(d, 0o555)
        return lambda: os.chmod(d, 0o755)
    for cmd in (["mount", "--bind", str(d), str(d)], ["mount", "-o", "remount,ro,bind", str(d)]):
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            subprocess.run(["umount", str(d)], capture_output=True)
            pytest.skip(f"cannot make a read-only bind mount: {r.stderr.strip()}")
    # Lazy: the monitor's own reader still holds the log open through this mount.
    return lambda: subprocess.run(["umount", "-l", str(d)], capture_output=True)


def test_read_only_run_directory_does_not_stop_the_pipeline(tmp_path: Path) -> None:
    """A run directory turned read-only: the main run goes on and mon.run() does not raise."""
    d = tmp_path / "runs"
    raised = None
    with Monitor(d, run_id="first", sample_interval=0.005, alert_rules=[]) as mon:
        with mon.phase("P00"):
            pass
        undo = _make_read_only(d)
        try:
            with pytest.raises(OSError):
                (d / "probe").write_text("x")
            try:
                with mon.run("second") as job:
                    with job.phase("J00"):
                        pass
            except OSError as exc:
                raised = f"{type(exc).__name__}: {exc}"
            with mon.phase("P01"):
                pass
            live = mon.snapshot().get("monitor", {})
        finally:
            undo()
    evs = read_log(d / "first.jsonl")
    (end,) = of_kind(evs, "run_end")
    assert end["status"] == "completed"
    assert {e["phase"] for e in of_kind(evs, "phase_end")} == {"P00", "P01"}
    assert [f.name for f in d.glob("*.jsonl")] == ["first.jsonl"]
    assert raised is None, f"mon.run() raised into the host: {raised}"
    assert live["internal_errors"] + live["write_errors"] >= 1


# ------------------------------------------------------------------------------ /proc


def test_empty_proc_root_falls_back_and_says_so(tmp_path: Path) -> None:
    """An empty /proc root: samples from rusage, said in snapshot()["monitor"] and run_end."""
    empty = tmp_path / "proc"
    empty.mkdir()
    log = tmp_path / "run.jsonl"
    with Monitor(log, sample_interval=0.005, proc=str(empty), alert_rules=[]) as mon:
        for i in range(20):
            with mon.phase(f"P{i}"):
                sum(range(20_000))
        live = mon.snapshot()["monitor"]
    assert live["sample_source"] == "rusage" and live["samples"] >= 1
    evs = read_log(log)
    (end,) = of_kind(evs, "run_end")
    assert end["status"] == "completed"
    assert end["counters"]["sample_source"] == "rusage"
    assert end["counters"]["sample_errors"] == 0 and end["counters"]["internal_errors"] == 0
    assert len(of_kind(evs, "phase_end")) == 20
    assert all("rss_bytes" not in s for s in of_kind(evs, "sample"))
    assert of_kind(evs, "run_start")[0]["limits"]["note"]  # why host figures are used


def test_proc_files_vanishing_mid_run_are_counted(tmp_path: Path) -> None:
    """/proc files vanishing mid-run: no invented figures, and the failed readings counted."""
    root = tmp_path / "proc"
    root.mkdir()
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        os.symlink(f"/proc/{victim.pid}", root / str(os.getpid()))
        for name in ("stat", "meminfo"):
            os.symlink(f"/proc/{name}", root / name)
        log = tmp_path / "run.jsonl"
        with Monitor(log, sample_interval=0.005, proc=str(root), alert_rules=[]) as mon:
            with mon.phase("before"):
                poll(lambda: mon.snapshot()["monitor"]["samples"] >= 5, 10, "5 samples")
            victim.kill()
            victim.wait(10)
            n0 = mon.snapshot()["monitor"]["samples"]
            with mon.phase("after"):
                poll(lambda: mon.snapshot()["monitor"]["samples"] >= n0 + 10, 10, "10 more")
            live = mon.snapshot()["monitor"]
    finally:
        victim.kill()
        victim.wait(10)
    evs = read_log(log)
    (end,) = of_kind(evs, "run_end")
    assert end["status"] == "completed"
    ends = {e["phase"]: e for e in of_kind(evs, "phase_end")}
    assert "rss_bytes" in ends["before"] and "rss_bytes" not in ends["after"]
    after_ts = ends["after"]["ts"] - ends["after"]["duration_ms"] / 1000
    late = [s for s in of_kind(evs, "sample") if s["ts"] > after_ts]
    assert len(late) >= 10 and all("cpu_s" not in s and "rss_bytes" not in s for s in late)
    counters = end["counters"]
    assert counters["sample_source"] == "procfs"
    assert counters["sample_errors"] >= 10 and live["sample_errors"] >= 10, (
        f"{len(late)} samples could not read the process's /proc files, but "
        f"sample_errors is {counters['sample_errors']}: the failure is not counted"
    )


# ------------------------------------------------------------------------------ concurrency

_JOINER = textwrap.dedent(
    """
    import sys
    from atroz_monitor import Monitor
    mon = Monitor(sys.argv[1], sample_interval=None, run_id="crowd", _join=True, detail="all",
                  alert_rules=[])
    key = "p" + sys.argv[2]
    for i in range(int(sys.argv[3]) // 2):
        with mon.phase(key):
            pass
    mon.close()
    """
)


def test_32_threads_and_4_processes_write_one_run_exactly(tmp_path: Path) -> None:
    """32 threads + 4 processes x 10,000 events: exact counts, no torn line, seq contiguous."""
    log = tmp_path / "run.jsonl"
    n = EVENTS_PER_WRITER
    with Monitor(log, sample_interval=0.01, detail="all", run_id="crowd", alert_rules=[]) as mon:
        go = threading.Barrier(33)

        def work(t: int) -> None:
            go.wait()
            for _ in range(n // 2):  # a phase is two events
                with mon.phase(f"t{t}"):
                    pass

        threads = [threading.Thread(target=work, args=(t,), name=f"w{t}") for t in range(32)]
        for t in threads:
            t.start()
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", _JOINER, str(log), str(k), str(n)], env=child_env()
            )
            for k in range(4)
        ]
        go.wait()
        for t in threads:
            t.join(120)
        for p in procs:
            assert p.wait(120) == 0
    evs = read_log(log)  # strict: a torn or interleaved line fails here
    by_key = Counter(e["phase"] for e in phase_starts(evs))
    assert by_key == Counter(e["phase"] for e in of_kind(evs, "phase_end"))
    assert {k: v for k, v in by_key.items()} == {
        **{f"t{t}": n // 2 for t in range(32)},
        **{f"p{k}": n // 2 for k in range(4)},
    }
    threads_of = Counter(e["thread"] for e in phase_starts(evs) if e["pid"] == os.getpid())
    assert threads_of == {f"w{t}": n // 2 for t in range(32)}
    spans = [e["span"] for e in of_kind(evs, "phase_end")]
    assert len(spans) == len(set(spans)) == 36 * n // 2
    seqs: dict[int, list[int]] = {}
    for e in evs:
        seqs.setdefault(e["pid"], []).append(e["seq"])
    assert len(seqs) == 5
    for pid, s in seqs.items():
        assert s == list(range(1, len(s) + 1)), f"writer {pid}: seq not contiguous"
    st, stats = load_state([log])
    assert stats.corrupt == stats.torn == 0 and st.runs["crowd"].seq_gaps == 0
    print(f"\nconcurrency: {len(evs)} lines from 32 threads + 4 processes, no torn line")


# ------------------------------------------------------------------------------ fork, pools

_FORK_MID_PHASE = textwrap.dedent(
    """
    import os, sys
    from atroz_monitor import Monitor
    log, how = sys.argv[1], sys.argv[2]
    with Monitor(log, run_id="forked", sample_interval=0.002, alert_rules=[]) as mon:
        with mon.phase("outer") as outer:
            with mon.phase("inner"):
                pid = os.fork()
                if pid == 0:
                    # The child records, then leaves through the parent's open phases.
                    with mon.phase("child-work") as c:
                        with mon.phase("child-sub"):
                            c.add_items(2)
                    if how == "raise":
                        raise RuntimeError("the child fails")
                    sys.exit(0)
                _, status = os.waitpid(pid, 0)
                print(os.waitstatus_to_exitcode(status), pid, outer.span, flush=True)
    """
)


@pytest.mark.parametrize("how", ["exit", "raise"])
def test_fork_mid_phase_child_leaves_parent_phases_to_the_parent(tmp_path: Path, how: str) -> None:
    """A child forked mid-phase records its own phases; the parent's end once, by the parent."""
    log = tmp_path / "run.jsonl"
    r = subprocess.run(
        [sys.executable, "-c", _FORK_MID_PHASE, str(log), how],
        env=child_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    code, child, outer_span = r.stdout.split()
    assert int(code) == (1 if how == "raise" else 0)
    child_pid, parent_pid = int(child), None
    evs = read_log(log)
    ends = of_kind(evs, "phase_end")
    (run_start,) = of_kind(evs, "run_start")
    parent_pid = run_start["pid"]
    by_phase = {k: [e for e in ends if e["phase"] == k] for k in ("outer", "inner")}
    for k, es in by_phase.items():
        assert [(e["pid"], e["status"]) for e in es] == [(parent_pid, "completed")], k
    assert by_phase["outer"][0]["span"] == outer_span
    mine = [e for e in evs if e["pid"] == child_pid]
    assert [e["ev"] for e in mine if e["ev"] not in ("sample",)] == [
        "process_start", "phase_start", "phase_start", "phase_end", "phase_end", "process_end",
    ]  # fmt: skip
    work = next(e for e in mine if e["ev"] == "phase_end" and e["phase"] == "child-work")
    assert work["parent"] is None and work["items"] == 2
    (run_end,) = of_kind(evs, "run_end")
    assert run_end["pid"] == parent_pid and run_end["status"] == "completed"


def _pool_task(args: tuple[int, str]) -> int:
    """A pool task: a phase under the parent span with a sub-phase; every fifth one fails."""
    i, parent = args
    with atroz_monitor.phase("task", f"task {i}", parent=parent) as p:
        with atroz_monitor.phase("step"):
            p.add_items(i)
        if i % 5 == 4:
            raise ValueError(f"task {i} fails")
    return os.getpid()


def _safe_task(args: tuple[int, str]) -> int:
    try:
        return _pool_task(args)
    except ValueError:
        return -1


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_pool_of_20_tasks_records_every_task_once(tmp_path: Path, method: str) -> None:
    """A fork or spawn pool of 20 tasks: each task phase once, under its parent, failures kept."""
    log = tmp_path / "run.jsonl"
    ctx = mp.get_context(method)
    with Monitor(log, sample_interval=0.01, run_id="pool", detail="all", alert_rules=[]) as mon:
        with mon.phase("fan-out") as p:
            with ctx.Pool(3) as pool:
                res = list(pool.imap_unordered(_safe_task, [(i, p.span) for i in range(20)]))
    assert res.count(-1) == 4
    evs = read_log(log)
    tasks = [e for e in of_kind(evs, "phase_end") if e["phase"] == "task"]
    assert len(tasks) == 20 and {e["parent"] for e in tasks} == {p.span}
    assert sorted(e["name"] for e in tasks) == sorted(f"task {i}" for i in range(20))
    status = Counter(e["status"] for e in tasks)
    assert status == {"completed": 16, "failed": 4}
    assert all(e["error"]["type"] == "ValueError" for e in tasks if e["status"] == "failed")
    steps = [e for e in of_kind(evs, "phase_end") if e["phase"] == "step"]
    assert sorted(e["parent"] for e in steps) == sorted(e["span"] for e in tasks)
    workers = {e["pid"] for e in tasks}
    assert os.getpid() not in workers
    assert Counter(e["pid"] for e in of_kind(evs, "process_start")) == dict.fromkeys(workers, 1)
    assert len(of_kind(evs, "run_end")) == 1


# ------------------------------------------------------------------- dead webhooks


class _Silent:
    """A TCP server that accepts every connection and never answers."""

    def __init__(self) -> None:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns: list[Any] = []
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                self.conns.append(self.sock.accept()[0])
            except OSError:
                continue

    def close(self) -> None:
        self.stop.set()
        for c in self.conns:
            c.close()
        self.sock.close()


def _refused_port() -> int:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: connections are refused
    return port


def _alerting_pipeline(log: Path, webhook: str, n: int = 20) -> tuple[float, float, Monitor]:
    """``n`` failing phases (one phase_failed alert each); the body's own time (ms) and the
    time the ``with`` exit took (s)."""
    from atroz_monitor.view.alerts import rule

    mon = Monitor(log, sample_interval=None, alert_rules=[rule("phase_failed")], webhook=webhook)
    with mon:
        t0 = time.perf_counter()
        for i in range(n):
            try:
                with mon.phase(f"P{i:02d}"):
                    time.sleep(0.005)
                    raise RuntimeError("boom")
            except RuntimeError:
                pass
        t1 = time.perf_counter()
    t2 = time.perf_counter()
    return (t1 - t0) * 1000, t2 - t1, mon


@pytest.mark.parametrize("dead", ["refused", "silent"])
def test_dead_webhook_never_holds_the_run_and_every_alert_is_counted(
    tmp_path: Path, dead: str
) -> None:
    """A webhook on a refused port or one that never answers: the run's end waits at most the
    0.5 s budget (plus scheduling), that wait is not in duration_ms, and all 20 alerts are
    counted sent, failed or dropped in run_end, the snapshot and the report."""
    silent = _Silent() if dead == "silent" else None
    port = silent.port if silent else _refused_port()
    try:
        body_ms, exit_s, mon = _alerting_pipeline(tmp_path / "r.jsonl", f"http://127.0.0.1:{port}/")
    finally:
        if silent:
            silent.close()
    events = read_log(tmp_path / "r.jsonl")
    assert len(of_kind(events, "alert")) == 20
    end = of_kind(events, "run_end")[0]
    c = end["counters"]
    print(f"\n{dead}: body {body_ms:.0f} ms, run duration_ms {end['duration_ms']:.0f}, "
          f"exit {exit_s * 1000:.0f} ms, counters sent/failed/dropped "
          f"{c['notify_sent']}/{c['notify_failed']}/{c['notify_dropped']}")  # fmt: skip
    assert c["notify_sent"] == 0
    assert c["notify_failed"] + c["notify_dropped"] == 20
    assert c["notify_failed"] >= 1  # the one in flight (or given up on) when the wait ended
    # The body's own time, not the 0.5 s wait (before: 2,044 ms for a ~205 ms body).
    assert end["duration_ms"] < body_ms + 250
    assert exit_s < 0.5 + 1.0  # the budget plus room for a loaded machine; was 2-3 s
    snap = mon.snapshot()
    assert snap["monitor"]["notify_failed"] + snap["monitor"]["notify_dropped"] == 20
    from atroz_monitor.surface.report_text import quality_line

    assert "alert notifications not delivered:" in quality_line(snap["quality"], snap["monitor"])
