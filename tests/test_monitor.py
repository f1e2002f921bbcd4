"""The Monitor API: runs, phases (sync, async, decorator, explicit), handles, nesting."""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading

import pytest
from helpers import of_kind, phase_ends, poll, read_log

import atroz_monitor
from atroz_monitor import Monitor


def test_run_start_and_end_frame_the_run(tmp_path):
    """A with-block writes run_start with the metadata and plan, then run_end completed."""
    log = tmp_path / "run.jsonl"
    with Monitor(log, plan=[("P00", "Assembly")], meta={"dataset": "x"}, sample_interval=None):
        pass
    evs = read_log(log)
    assert [e["ev"] for e in evs] == ["run_start", "run_end"]
    start, end = evs
    assert start["v"] == 1
    assert start["meta"] == {"dataset": "x"}
    assert start["plan"] == [{"id": "P00", "name": "Assembly"}]
    assert start["pid"] == os.getpid() and start["seq"] == 1 and end["seq"] == 2
    assert end["status"] == "completed"
    assert end["counters"]["write_errors"] == 0


def test_exception_escaping_the_run_fails_it_and_propagates(tmp_path):
    """An exception leaving the Monitor block ends the run failed and is the same object."""
    log = tmp_path / "run.jsonl"
    err = RuntimeError("boom")
    with pytest.raises(RuntimeError) as info:
        with Monitor(log, sample_interval=None):
            raise err
    assert info.value is err
    end = of_kind(read_log(log), "run_end")[0]
    assert end["status"] == "failed"
    assert end["error"]["type"] == "RuntimeError" and end["error"]["msg"] == "boom"


def test_phase_records_fixed_fields_and_duration(tmp_path):
    """A phase writes start and end lines with span, phase, name, parent, status, duration."""
    log = tmp_path / "run.jsonl"
    with Monitor(log, sample_interval=None) as mon:
        with mon.phase("P00", name="Document Assembly", meta={"k": 1}) as p:
            sum(range(10000))
    evs = read_log(log)
    st = of_kind(evs, "phase_start")[0]
    en = of_kind(evs, "phase_end")[0]
    assert st["span"] == en["span"] == p.span
    assert st["phase"] == en["phase"] == "P00"
    assert st["name"] == en["name"] == "Document Assembly"
    assert st["parent"] is None and en["parent"] is None
    assert st["meta"] == {"k": 1}
    assert st["thread"] == "MainThread"
    assert en["status"] == "completed"
    assert en["duration_ms"] > 0 and en["cpu_ms"] >= 0
    assert p.status == "completed"


def test_nested_phases_are_sub_phases(tmp_path):
    """A phase entered inside another records the outer span as its parent."""
    log = tmp_path / "run.jsonl"
    with Monitor(log, sample_interval=None) as mon:
        with mon.phase("P00") as outer:
            with mon.phase("P00.a") as a:
                with mon.phase("P00.a.x") as x:
                    pass
            with mon.phase("P00.b") as b:
                pass
    ends = phase_ends(read_log(log))
    assert ends["P00"]["parent"] is None
    assert ends["P00.a"]["parent"] == outer.span
    assert ends["P00.a.x"]["parent"] == a.span
    assert ends["P00.b"]["parent"] == outer.span
    assert len({outer.span, a.span, x.span, b.span}) == 4


def test_phase_handle_records_items_artifacts_metrics_logs(tmp_path):
    """The handle's calls become events attributed to the phase, and counts in phase_end."""
    log = tmp_path / "run.jsonl"
    out = tmp_path / "out.bin"
    out.write_bytes(b"x" * 1234)
    with Monitor(log, sample_interval=None) as mon:
        with mon.phase("P00") as p:
            p.set_total(10)
            p.add_items(4)
            p.add_items(6)
            p.artifact(out)
            p.artifact(tmp_path / "missing.txt")
            p.metric("signals", 12)
            p.metric("ratio", float("nan"))
            p.warning("careful")
            p.error("bad")
    evs = read_log(log)
    end = phase_ends(evs)["P00"]
    assert end["items"] == 10 and end["total"] == 10
    assert end["warnings"] == 1 and end["errors"] == 1
    arts = of_kind(evs, "artifact")
    assert arts[0]["path"] == str(out) and arts[0]["bytes"] == 1234 and arts[0]["span"] == p.span
    assert arts[1]["exists"] is False and "bytes" not in arts[1]
    mets = {m["name"]: m["value"] for m in of_kind(evs, "metric")}
    assert mets == {"signals": 12, "ratio": None}
    logs = of_kind(evs, "log")
    assert [(g["level"], g["msg"], g["span"]) for g in logs] == [
        ("warning", "careful", p.span),
        ("error", "bad", p.span),
    ]
    prog = of_kind(evs, "progress")
    assert prog[0]["total"] == 10


def test_exception_fails_phase_with_bounded_traceback(tmp_path):
    """An exception escaping a phase marks it failed with type, message and traceback, and
    re-raises the very same object."""
    log = tmp_path / "run.jsonl"
    err = ValueError("x" * 10_000)
    with Monitor(log, sample_interval=None) as mon:
        with pytest.raises(ValueError) as info:
            with mon.phase("P00"):
                raise err
    assert info.value is err
    end = phase_ends(read_log(log))["P00"]
    assert end["status"] == "failed"
    assert end["error"]["type"] == "ValueError"
    assert len(end["error"]["msg"]) <= 4000
    assert "Traceback" in end["error"]["tb"] or "cut" in end["error"]["tb"]
    assert len(end["error"]["tb"]) <= 8_100


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), SystemExit(3), asyncio.CancelledError()])
def test_interrupts_mark_the_phase_cancelled(tmp_path, exc):
    """KeyboardInterrupt, SystemExit and CancelledError mark the phase cancelled."""
    log = tmp_path / "run.jsonl"
    mon = Monitor(log, sample_interval=None).start()
    with pytest.raises(type(exc)):
        with mon.phase("P00"):
            raise exc
    mon.close()
    assert phase_ends(read_log(log))["P00"]["status"] == "cancelled"


def test_decorator_records_every_call(tmp_path):
    """A decorated function is a phase on every call and returns its value."""
    log = tmp_path / "run.jsonl"
    with Monitor(log, sample_interval=None) as mon:

        @mon.phase("P01", name="Step")
        def step(x):
            return x * 2

        assert step(2) == 4 and step(5) == 10
    ends = [e for e in read_log(log) if e["ev"] == "phase_end"]
    assert [(e["phase"], e["name"], e["status"]) for e in ends] == [
        ("P01", "Step", "completed")
    ] * 2
    assert ends[0]["span"] != ends[1]["span"]


def test_async_decorator_and_async_context_manager(tmp_path):
    """async def decorated and async with both record phases, nested by task."""
    log = tmp_path / "run.jsonl"
    with Monitor(log, sample_interval=None) as mon:

        @mon.phase("P02.leaf")
        async def leaf(i):
            await asyncio.sleep(0)
            return i

        async def main():
            async with mon.phase("P02") as p:
                got = await asyncio.gather(leaf(1), leaf(2))
            return p, got

        p, got = asyncio.run(main())
    assert got == [1, 2]
    ends = [e for e in read_log(log) if e["ev"] == "phase_end"]
    leaves = [e for e in ends if e["phase"] == "P02.leaf"]
    assert len(leaves) == 2 and all(e["parent"] == p.span for e in leaves)


def test_asyncio_tasks_keep_their_own_nesting(tmp_path):
    """Concurrent tasks each nest under their own phase, not each other's."""
    log = tmp_path / "run.jsonl"
    spans: dict[str, str] = {}
    with Monitor(log, sample_interval=None) as mon:

        async def job(name):
            async with mon.phase(name) as p:
                spans[name] = p.span
                await asyncio.sleep(0.001)
                async with mon.phase(name + ".sub"):
                    await asyncio.sleep(0.001)

        async def main():
            await asyncio.gather(job("A"), job("B"), job("C"))

        asyncio.run(main())
    ends = phase_ends(read_log(log))
    for name in "ABC":
        assert ends[name + ".sub"]["parent"] == spans[name]


def test_threads_nest_independently_and_copy_context_carries_parent(tmp_path):
    """A new thread starts at the top level; copy_context().run carries the parent in."""
    log = tmp_path / "run.jsonl"
    with Monitor(log, sample_interval=None) as mon:
        with mon.phase("P03") as p:

            def work(key):
                with mon.phase(key):
                    pass

            t1 = threading.Thread(target=work, args=("plain",))
            ctx = contextvars.copy_context()
            t2 = threading.Thread(target=ctx.run, args=(work, "carried"))
            t1.start(), t2.start()
            t1.join(), t2.join()
    ends = phase_ends(read_log(log))
    assert ends["plain"]["parent"] is None
    assert ends["carried"]["parent"] == p.span


def test_explicit_form_start_complete_fail(tmp_path):
    """start_phase / complete_phase / fail_phase record like with-blocks, nesting included."""
    log = tmp_path / "run.jsonl"
    art = tmp_path / "a.txt"
    art.write_text("hello")
    with Monitor(log, sample_interval=None) as mon:
        h = mon.start_phase("P03", name="Orchestrated")
        with mon.phase("P03.inner"):
            pass
        mon.complete_phase("P03", artifacts=[art], metrics={"m": 1.5}, items=7)
        mon.start_phase("P04")
        mon.fail_phase("P04", RuntimeError("upstream failed"))
    evs = read_log(log)
    ends = phase_ends(evs)
    assert ends["P03"]["status"] == "completed" and ends["P03"]["items"] == 7
    assert ends["P03.inner"]["parent"] == h.span
    assert ends["P04"]["status"] == "failed"
    assert ends["P04"]["error"]["msg"] == "upstream failed"
    assert of_kind(evs, "artifact")[0]["bytes"] == 5
    assert of_kind(evs, "metric")[0]["value"] == 1.5
    assert ends["P04"]["parent"] is None


def test_explicit_misuse_raises_clear_value_errors(tmp_path):
    """Completing a phase never started or twice, or a bad key, is a ValueError; earlier
    events are untouched."""
    log = tmp_path / "run.jsonl"
    with Monitor(log, sample_interval=None) as mon:
        with pytest.raises(ValueError, match="never started"):
            mon.complete_phase("P09")
        mon.start_phase("P01")
        mon.complete_phase("P01")
        with pytest.raises(ValueError, match="already completed"):
            mon.complete_phase("P01")
        with pytest.raises(ValueError, match="non-empty string"):
            mon.start_phase("")
        with pytest.raises(ValueError, match="non-empty string"):
            mon.phase(42)  # type: ignore[arg-type]
    evs = read_log(log)
    assert [e["ev"] for e in evs] == ["run_start", "phase_start", "phase_end", "run_end"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"sample_interval": 0}, "sample_interval"),
        ({"sample_interval": -1}, "sample_interval"),
        ({"sample_interval": "fast"}, "sample_interval"),
        ({"plan": "P00"}, "plan"),
        ({"plan": [("P00", "a"), ("P00", "b")]}, "twice"),
        ({"plan": [42]}, "plan entry 0"),
        ({"meta": [1, 2]}, "meta"),
        ({"run_id": "../escape"}, "run_id"),
    ],
)
def test_bad_construction_fails_fast(tmp_path, kwargs, match):
    """Bad arguments raise ValueError at construction, naming the argument."""
    with pytest.raises(ValueError, match=match):
        Monitor(tmp_path / "run.jsonl", **kwargs)


def test_unwritable_path_fails_at_construction():
    """A log that cannot be created (even by root: /proc takes no new files) fails at
    construction with the path named."""
    with pytest.raises(OSError, match="/proc/atroz-test.jsonl"):
        Monitor("/proc/atroz-test.jsonl")


def test_directory_is_not_a_file(tmp_path):
    """A .jsonl path that is a directory (no file can be created there) is an OSError
    naming it. (A missing parent directory is created: see test_counters.py.)"""
    (tmp_path / "dir.jsonl").mkdir()
    with pytest.raises(OSError, match="cannot write the run log"):
        Monitor(tmp_path / "dir.jsonl")


def test_directory_mode_writes_one_file_per_run(tmp_path):
    """A Monitor given a directory writes <run_id>.jsonl per run, jobs included."""
    d = tmp_path / "runs"
    with Monitor(d, sample_interval=None, run_id="main-1") as mon:
        with mon.run(run_id="job-42", meta={"who": "a"}) as job:
            with job.phase("J0"):
                pass
        with mon.phase("P00"):
            pass
    assert sorted(os.listdir(d)) == [".atroz-catalog", "job-42.jsonl", "main-1.jsonl"]
    job_evs = read_log(d / "job-42.jsonl")
    assert {e["run"] for e in job_evs} == {"job-42"}
    assert job_evs[0]["ev"] == "run_start" and job_evs[0]["meta"] == {"who": "a"}
    assert [e["phase"] for e in of_kind(job_evs, "phase_end")] == ["J0"]
    main = read_log(d / "main-1.jsonl")
    assert [e["phase"] for e in of_kind(main, "phase_end")] == ["P00"]


def test_a_job_run_twice_gets_two_runs_of_one_name(tmp_path):
    """The README's jobs pattern in a pipeline run twice: two runs named "job-42" with
    distinct ids, no ValueError (which it raised into the user's thread before)."""
    d = tmp_path / "runs"
    for _ in range(2):
        with Monitor(d, sample_interval=None, alert_rules=[]) as mon:
            with mon.run("job-42", meta={"who": "a"}) as job:
                with job.phase("J0"):
                    pass
            with mon.run("job-42") as again:  # twice in one monitor too
                with again.phase("J0"):
                    pass
    starts = [read_log(f)[0] for f in sorted(d.glob("*.jsonl"))]
    jobs = [e for e in starts if e["name"] == "job-42"]
    assert len(jobs) == 4 and len({e["run"] for e in jobs}) == 4
    assert len(starts) == 6  # and the two main runs


def test_job_run_id_is_kept_and_must_be_new(tmp_path):
    """run_id= (or the older run("id", name=...)) picks the id; a taken one is a ValueError."""
    with Monitor(tmp_path / "runs", sample_interval=None, alert_rules=[]) as mon:
        with mon.run("j-1", name="Job") as job:
            assert (job.id, job.name) == ("j-1", "Job")
        with pytest.raises(ValueError, match="already exists"):
            mon.run(run_id="j-1")
        assert mon.run("nightly").name == "nightly"


def test_concurrent_runs_in_threads_stay_apart(tmp_path):
    """Jobs recorded concurrently from threads each get only their own phases."""
    d = tmp_path / "runs"
    with Monitor(d, sample_interval=None) as mon:

        def job(i):
            with mon.run(f"job-{i}") as run:
                for k in range(20):
                    with run.phase(f"step{k}"):
                        with atroz_monitor.phase("inner"):  # the job's run, via the context
                            pass

        ts = [threading.Thread(target=job, args=(i,)) for i in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    by_name = {}
    for f in d.glob("*.jsonl"):
        evs = read_log(f)
        by_name[evs[0]["name"]] = evs
    for i in range(4):
        evs = by_name[f"job-{i}"]
        ends = of_kind(evs, "phase_end")
        assert len(ends) == 40
        spans = {e["span"] for e in ends if e["phase"].startswith("step")}
        assert all(e["parent"] in spans for e in ends if e["phase"] == "inner")


def test_environment_names_the_active_run_and_is_restored(tmp_path, monkeypatch):
    """While the run is active ATROZ_MONITOR_LOG/RUN are set; afterwards they are restored."""
    monkeypatch.setenv("ATROZ_MONITOR_RUN", "previous")
    log = tmp_path / "run.jsonl"
    with Monitor(log, sample_interval=None, run_id="r-1"):
        assert os.environ["ATROZ_MONITOR_LOG"] == str(log)
        assert os.environ["ATROZ_MONITOR_RUN"] == "r-1"
    assert os.environ["ATROZ_MONITOR_RUN"] == "previous"
    assert "ATROZ_MONITOR_LOG" not in os.environ


def test_module_level_phase_uses_the_active_monitor(tmp_path):
    """atroz_monitor.phase records into the innermost active Monitor."""
    log = tmp_path / "run.jsonl"
    with Monitor(log, sample_interval=None):
        with atroz_monitor.phase("P00") as p:
            with atroz_monitor.phase("P00.a"):
                pass
    ends = phase_ends(read_log(log))
    assert ends["P00.a"]["parent"] == p.span


def test_snapshot_is_the_replay_of_the_file(tmp_path):
    """mon.snapshot() equals the snapshot rebuilt from the log by the reader and reducer."""
    import time

    from atroz_monitor.read.loader import load_state
    from atroz_monitor.view import views

    log = tmp_path / "run.jsonl"
    with Monitor(log, plan=["P00", "P01", "P02"], sample_interval=0.02) as mon:
        with mon.phase("P00") as p:
            p.add_items(5)
            with mon.phase("P00.a"):
                sum(range(200_000))
        with mon.phase("P01"):
            p.warning("late warning on a closed phase")
    live = mon.snapshot()
    st, stats = load_state([log])
    replay = views.snapshot(st, mon.run_id, now=time.time())
    for key in ("phases", "flow", "keys", "resources", "logs", "artifacts", "metrics", "alerts"):
        assert live[key] == replay[key], key
    assert live["run"]["status"] == replay["run"]["status"] == "completed"
    assert [f["status"] for f in live["flow"]] == ["completed", "completed", "pending"]
    assert live["progress"]["done"] == 2 and live["progress"]["planned"] == 3


def test_live_snapshot_shows_running_phase(tmp_path):
    """During a run, snapshot() shows the open phase running with items so far."""
    log = tmp_path / "run.jsonl"
    with Monitor(log, plan=["P00", "P01"], sample_interval=None) as mon:
        with mon.phase("P00") as p:
            p.set_total(10)
            snap = mon.snapshot()
    assert snap["run"]["status"] == "running"
    assert snap["flow"][0]["status"] == "running" and snap["flow"][1]["status"] == "pending"
    ph = snap["phases"][0]
    assert ph["status"] == "running" and ph["total"] == 10
    assert snap["progress"]["running"] == [p.span]


def test_sampling_off_writes_no_samples(tmp_path):
    """sample_interval=None writes no sample events; phases still carry CPU time, and the RSS
    read at their boundaries (the peak is the higher of the two)."""
    log = tmp_path / "run.jsonl"
    with Monitor(log, sample_interval=None) as mon:
        with mon.phase("P00"):
            sum(range(100_000))
    evs = read_log(log)
    assert of_kind(evs, "sample") == []
    end = phase_ends(evs)["P00"]
    assert end["cpu_ms"] > 0 and end["rss_bytes"] > 1 << 20
    assert end["peak_rss_bytes"] == max(end["rss_bytes"], end["rss_start_bytes"])
    assert end["peak_rss_method"] == "sampled"


def test_sampling_gives_rss_and_peaks_per_phase(tmp_path):
    """With sampling on, phase_end carries RSS and a peak at least the memory allocated."""
    log = tmp_path / "run.jsonl"
    with Monitor(log, sample_interval=0.01) as mon:
        with mon.phase("alloc"):
            block = bytearray(64 * 1024 * 1024)
            block[::4096] = b"x" * len(block[::4096])
            # Wait for a sample taken while the block is held (bounded).
            mon._sampler._tick()
            del block
    evs = read_log(log)
    end = phase_ends(evs)["alloc"]
    assert end["peak_rss_bytes"] >= end["rss_start_bytes"] + 60 * 1024 * 1024
    samples = of_kind(evs, "sample")
    assert len(samples) >= 2
    assert all(s["rss_bytes"] > 0 for s in samples)
    assert any(end["span"] in s["spans"] for s in samples)


def test_history_is_the_earlier_runs_of_the_directory(tmp_path):
    """A directory monitor's snapshot counts the earlier runs there as history."""
    d = tmp_path / "runs"
    for i in range(3):
        with Monitor(d, plan=["P00"], sample_interval=None, run_id=f"r{i}") as mon:
            with mon.phase("P00"):
                pass
    snap = mon.snapshot()
    assert snap["progress"]["history_runs"] == 2
    mon2 = Monitor(d, sample_interval=None, history=[tmp_path / "elsewhere.jsonl"])
    assert mon2.history_paths == [str(tmp_path / "elsewhere.jsonl")]


def test_without_proc_phases_work_and_nothing_is_invented(tmp_path):
    """With no /proc (an injected root that does not exist), phases still record CPU time;
    samples come from os.times and carry no RSS figure rather than an invented one."""
    log = tmp_path / "run.jsonl"
    with Monitor(log, sample_interval=0.02, proc=str(tmp_path / "no-proc")) as mon:
        with mon.phase("P00"):
            sum(range(300_000))
    evs = read_log(log)
    end = phase_ends(evs)["P00"]
    assert end["cpu_ms"] > 0 and "rss_bytes" not in end and "peak_rss_bytes" not in end
    samples = of_kind(evs, "sample")
    assert samples and all("rss_bytes" not in s and "cpu_s" in s for s in samples)
    assert of_kind(evs, "run_end")[0]["counters"]["sample_source"] == "rusage"
    assert of_kind(evs, "run_start")[0]["pid_start"] is None


def test_current_phase_is_restored_when_a_phase_exits(tmp_path):
    """current_phase() is the innermost open phase, and the enclosing one again once a
    nested phase has exited (None outside every phase), also after a failure."""
    with Monitor(tmp_path / "r.jsonl", sample_interval=None, alert_rules=[]) as mon:
        assert atroz_monitor.current_phase() is None
        with mon.phase("P00") as outer:
            assert atroz_monitor.current_phase() is outer
            with mon.phase("P00.a") as inner:
                assert atroz_monitor.current_phase() is inner
            assert atroz_monitor.current_phase() is outer
            with pytest.raises(RuntimeError):
                with mon.phase("P00.b"):
                    raise RuntimeError("x")
            assert atroz_monitor.current_phase() is outer
        assert atroz_monitor.current_phase() is None


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_monitors_one_after_another_hold_no_descriptor_per_run(tmp_path):
    """A process running 40 pipelines one after another (sampled, half with exact_peak)
    holds as many descriptors after the 40th as after the 2nd: the log, statm, the OOM
    counter and the high-water files are closed or shared, not kept per run."""

    def one(i: int) -> None:
        with Monitor(tmp_path / "runs", sample_interval=0.02, exact_peak=i % 2 == 0) as m:
            with m.phase("P00"):
                pass

    one(0)
    one(1)
    before = _open_fds()
    for i in range(40):
        one(i)
    assert _open_fds() == before


def test_a_line_written_after_its_run_ended_is_not_lost(tmp_path):
    """The run's descriptor is released at run_end; an event the run writes afterwards
    (a phase that outlived its run) reopens the log and lands in it."""
    m = Monitor(tmp_path / "r.jsonl", sample_interval=None)
    with m:
        pass
    with m.phase("LATE"):
        pass
    evs = read_log(tmp_path / "r.jsonl")
    assert [e["ev"] for e in evs][-3:] == ["run_end", "phase_start", "phase_end"]
    assert [r.health()["events_lost"] for r in m.runs()] == [0]


# -- a phase written whole: one line when it ends before its start line is due -----------


def test_a_phase_shorter_than_a_tick_is_one_line_with_its_start(tmp_path):
    """With a sampler, a phase that ends before the next tick writes no phase_start: its
    phase_end carries the start's members (thread, meta) besides every end field, its
    start is ts - duration_ms, and the replay shows the same phase as two lines would."""
    import time

    log = tmp_path / "r.jsonl"
    with Monitor(log, sample_interval=60) as mon:
        w0 = time.time()
        with mon.phase("P00", "Load", meta={"rows": 3}, attempt=2) as p:
            p.add_items(5)
        w1 = time.time()
        snap = mon.snapshot()
    evs = read_log(log)
    assert of_kind(evs, "phase_start") == []
    (end,) = of_kind(evs, "phase_end")
    assert (end["phase"], end["name"], end["parent"], end["thread"]) == (
        "P00", "Load", None, "MainThread"
    )  # fmt: skip
    assert (end["meta"], end["attempt"], end["items"], end["status"]) == (
        {"rows": 3}, 2, 5, "completed"
    )  # fmt: skip
    for f in ("duration_ms", "cpu_ms", "rss_bytes", "peak_rss_bytes", "rss_start_bytes"):
        assert f in end
    start = end["ts"] - end["duration_ms"] / 1000
    assert w0 - 0.001 <= start <= end["ts"] <= w1 + 0.001
    (ph,) = snap["phases"]
    assert (ph["span"], ph["thread"], ph["meta"], ph["attempt"]) == (
        p.span, "MainThread", {"rows": 3}, 2
    )  # fmt: skip
    assert ph["start"] == pytest.approx(start, abs=1e-6)
    assert ph["duration_ms"] == end["duration_ms"]


def test_a_phase_still_running_at_a_tick_keeps_its_start_line(tmp_path):
    """A phase the sampler sees running gets its phase_start at that tick, with the time it
    started; its end line then is a plain end (no start members), and a child that ends
    inside a tick is one whole line under it."""
    import time

    log = tmp_path / "r.jsonl"
    with Monitor(log, sample_interval=0.02) as mon:
        w0 = time.time()
        with mon.phase("P01") as outer:
            poll(
                lambda: any(
                    e.get("span") == outer.span for e in of_kind(_lines(log), "phase_start")
                ),
                10,
                "the sampler to write the running phase's start line",
            )
            with mon.phase("P01.a"):
                pass
    evs = read_log(log)
    starts = of_kind(evs, "phase_start")
    assert [e["phase"] for e in starts] == ["P01"]
    assert w0 - 0.001 <= starts[0]["ts"] <= w0 + 0.05
    assert starts[0]["thread"] == "MainThread"
    ends = {e["phase"]: e for e in of_kind(evs, "phase_end")}
    assert "thread" not in ends["P01"]
    assert ends["P01.a"]["thread"] == "MainThread"
    assert ends["P01.a"]["parent"] == outer.span
    assert abs(starts[0]["ts"] - (ends["P01"]["ts"] - ends["P01"]["duration_ms"] / 1000)) < 0.005


def test_a_parents_start_line_precedes_its_childs_whole_line(tmp_path):
    """A child entering writes its parent's deferred start line first; the child, ending
    first, is one line; the parent ends with a plain end line."""
    log = tmp_path / "r.jsonl"
    with Monitor(log, sample_interval=60) as mon:
        with mon.phase("A") as a:
            with mon.phase("B"):
                pass
    evs = [e for e in read_log(log) if e["ev"].startswith("phase")]
    assert [(e["ev"], e["phase"], "thread" in e) for e in evs] == [
        ("phase_start", "A", True),
        ("phase_end", "B", True),
        ("phase_end", "A", False),
    ]
    assert evs[1]["parent"] == a.span


def test_without_a_sampler_every_phase_has_its_start_line(tmp_path):
    """sample_interval=None writes each start line as the phase starts (nothing defers it)."""
    log = tmp_path / "r.jsonl"
    with Monitor(log, sample_interval=None) as mon:
        with mon.phase("P00", meta={"k": "v"}, attempt=1):
            pass
    evs = [e for e in read_log(log) if e["ev"].startswith("phase")]
    assert [e["ev"] for e in evs] == ["phase_start", "phase_end"]
    assert (evs[0]["meta"], evs[0]["attempt"], evs[0]["thread"]) == ({"k": "v"}, 1, "MainThread")
    assert "thread" not in evs[1] and "meta" not in evs[1] and evs[1]["attempt"] == 1


def _lines(log):
    """The complete lines of a log being written (a partial last line is left out)."""
    import json

    with open(log, "rb") as f:
        data = f.read()
    return [json.loads(x) for x in data.split(b"\n")[:-1] if x]
