"""Pipeline shapes: skipped and cached phases, retries, resume after a crash, run tags."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from helpers import of_kind, read_log

from atroz_monitor import Monitor
from atroz_monitor.read.loader import load_state
from atroz_monitor.view.views import snapshot

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_skipped_and_cached_are_recorded_and_kept_out_of_statistics(tmp_path):
    """p.skip()/p.cached() end a phase with that status and reason; they count as done in
    the flow and are not part of the key's duration statistics."""
    log = tmp_path / "r.jsonl"
    with Monitor(log, plan=["A", "B", "C"], sample_interval=None, alert_rules=[]) as mon:
        with mon.phase("A"):
            time.sleep(0.01)
        with mon.phase("B") as p:
            p.cached("inputs unchanged")
        mon.skip_phase("C", "no new documents")
        with mon.phase("A") as p:
            p.skip("already done")
    ends = {(e["phase"], e["status"]): e for e in of_kind(read_log(log), "phase_end")}
    assert ends[("B", "cached")]["reason"] == "inputs unchanged"
    assert ends[("C", "skipped")]["reason"] == "no new documents"
    st, _ = load_state([log])
    snap = snapshot(st, mon.run_id, now=time.time())
    assert [(f["id"], f["status"]) for f in snap["flow"]] == [
        ("A", "skipped"),
        ("B", "cached"),
        ("C", "skipped"),
    ]
    assert snap["progress"]["done"] == 3
    a = snap["keys"]["A"]
    assert a["count"] == 2 and a["skipped"] == 1 and a["min_ms"] == a["max_ms"] >= 10


def test_a_skip_inside_a_failing_block_is_a_failure(tmp_path):
    """An exception wins over an earlier skip(): the phase is failed."""
    log = tmp_path / "r.jsonl"
    with Monitor(log, sample_interval=None, alert_rules=[]) as mon:
        with pytest.raises(KeyError):
            with mon.phase("A") as p:
                p.skip("maybe")
                raise KeyError("x")
    assert of_kind(read_log(log), "phase_end")[0]["status"] == "failed"


def test_retries_record_every_attempt_and_the_outcome_is_the_last(tmp_path):
    """attempts(): each attempt is a phase with its number; failures before the last are
    recorded and swallowed; the flow shows the last attempt and the attempt counts."""
    log = tmp_path / "r.jsonl"
    calls = []
    with Monitor(log, plan=["P03"], sample_interval=None, alert_rules=[]) as mon:
        for attempt in mon.attempts("P03", 4):
            with attempt as p:
                calls.append(p.attempt)
                if p.attempt < 3:
                    raise ConnectionError("flaky upstream")

        @mon.retry("P04", attempts=2)
        def always_fails():
            raise ValueError("no")

        with pytest.raises(ValueError):
            always_fails()
    assert calls == [1, 2, 3]
    ends = [(e["phase"], e["attempt"], e["status"]) for e in of_kind(read_log(log), "phase_end")]
    assert ends == [
        ("P03", 1, "failed"),
        ("P03", 2, "failed"),
        ("P03", 3, "completed"),
        ("P04", 1, "failed"),
        ("P04", 2, "failed"),
    ]
    st, _ = load_state([log])
    flow = snapshot(st, mon.run_id, now=time.time())["flow"]
    assert flow[0]["status"] == "completed" and flow[0]["attempts"] == 3
    assert flow[0]["failed_attempts"] == 2


def test_bad_attempt_arguments_fail_fast(tmp_path):
    """attempt=0, attempts=0 and negative backoff are ValueErrors."""
    mon = Monitor(tmp_path / "r.jsonl", sample_interval=None)
    with pytest.raises(ValueError, match="attempt"):
        mon.phase("A", attempt=0)
    with pytest.raises(ValueError, match="attempts"):
        mon.attempts("A", 0)
    with pytest.raises(ValueError, match="backoff"):
        mon.attempts("A", 2, backoff=-1)


def test_resume_continues_a_crashed_run_as_one_run_with_a_gap(tmp_path):
    """A run whose owner was SIGKILLed is continued with resume=: one run, a resumed event,
    the phase the dead owner left open interrupted, one run_end; unknown or finished runs
    cannot be resumed."""
    d = tmp_path / "runs"
    code = textwrap.dedent(f"""
        import time
        from atroz_monitor import Monitor
        with Monitor({str(d)!r}, plan=["A", "B"], run_id="nightly", sample_interval=None) as m:
            with m.phase("A"):
                pass
            with m.phase("B"):
                print("in B", flush=True)
                time.sleep(60)
    """)
    p = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, env=dict(os.environ, PYTHONPATH=ROOT)
    )
    assert p.stdout.readline().strip() == b"in B"
    os.kill(p.pid, signal.SIGKILL)
    p.wait(10)
    with Monitor(d, resume="nightly", sample_interval=None, alert_rules=[]) as mon:
        with mon.phase("B"):
            pass
    evs = read_log(d / "nightly.jsonl")
    assert [e["ev"] for e in evs].count("run_start") == 1
    assert [e["ev"] for e in evs].count("run_end") == 1
    res = of_kind(evs, "resumed")[0]
    assert res["prev_pid"] == p.pid and res["pid"] == os.getpid() and res["gap_s"] >= 0
    st, _ = load_state([d])
    snap = snapshot(st, "nightly", now=time.time())
    assert snap["run"]["status"] == "completed"
    assert [(x["phase"], x["status"]) for x in snap["phases"]] == [
        ("A", "completed"),
        ("B", "interrupted"),
        ("B", "completed"),
    ]
    assert snap["run"]["resumed"][0]["prev_pid"] == p.pid
    with pytest.raises(ValueError, match="already ended"):
        Monitor(d, resume="nightly")
    with pytest.raises(ValueError, match="no run 'other'"):
        Monitor(d, resume="other")


def test_tags_from_arguments_and_environment(tmp_path, monkeypatch):
    """tags= and ATROZ_MONITOR_TAGS land in run_start (arguments win); bad ones fail."""
    monkeypatch.setenv("ATROZ_MONITOR_TAGS", "git=abc123, dataset=n=1e6")
    log = tmp_path / "r.jsonl"
    with Monitor(log, sample_interval=None, tags={"git": "def456", "host_class": "m5"}) as mon:
        pass
    start = read_log(log)[0]
    assert start["tags"] == {"git": "def456", "dataset": "n=1e6", "host_class": "m5"}
    st, _ = load_state([log])
    assert snapshot(st, mon.run_id, now=time.time())["run"]["tags"]["dataset"] == "n=1e6"
    monkeypatch.setenv("ATROZ_MONITOR_TAGS", "novalue")
    with pytest.raises(ValueError, match="ATROZ_MONITOR_TAGS"):
        Monitor(tmp_path / "x.jsonl")


def test_dag_plan_is_validated():
    """A DAG plan's 'after' must name planned phases and form no cycle."""
    ok = [
        {"id": "A"},
        {"id": "B", "after": ["A"]},
        {"id": "C", "after": ["A"]},
        {"id": "D", "after": ["B", "C"]},
    ]
    Monitor("/dev/full", plan=ok, sample_interval=None)
    with pytest.raises(ValueError, match="'Z', which is not in the plan"):
        Monitor("/dev/full", plan=[{"id": "A", "after": ["Z"]}])
    with pytest.raises(ValueError, match="cycle: A -> B -> A|cycle: B -> A -> B"):
        Monitor("/dev/full", plan=[{"id": "A", "after": ["B"]}, {"id": "B", "after": ["A"]}])
    with pytest.raises(ValueError, match="list of phase ids"):
        Monitor("/dev/full", plan=[{"id": "A", "after": "B"}])


def _dag_run(st_events, rid, t0, durations, running=None):
    from atroz_monitor.read import state as S

    plan = [
        {"id": "A", "name": "A"},
        {"id": "B", "name": "B", "after": ["A"]},
        {"id": "C", "name": "C", "after": ["A"]},
        {"id": "D", "name": "D", "after": ["B", "C"]},
    ]
    S.apply(st_events, {"ev": "run_start", "run": rid, "pid": 1, "ts": t0, "v": 1, "plan": plan})
    for k, (start, dur) in durations.items():
        S.apply(
            st_events,
            {
                "ev": "phase_start",
                "run": rid,
                "pid": 1,
                "ts": t0 + start,
                "span": f"{rid}.{k}",
                "phase": k,
                "name": k,
                "parent": None,
            },
        )
        if dur is not None:
            S.apply(
                st_events,
                {
                    "ev": "phase_end",
                    "run": rid,
                    "pid": 1,
                    "ts": t0 + start + dur,
                    "span": f"{rid}.{k}",
                    "phase": k,
                    "name": k,
                    "parent": None,
                    "status": "completed",
                    "duration_ms": dur * 1000,
                },
            )


def test_dag_eta_and_critical_path_let_parallel_branches_overlap():
    """With B (4 s) and C (10 s) in parallel after A (2 s), then D (3 s): history gives an
    ETA for a run at A's end of max(4, 10) + 3 = 13 s, not 4 + 10 + 3; the critical path of
    a finished run is A > C > D."""
    from atroz_monitor.read import state as S
    from atroz_monitor.view import analysis

    st = S.State()
    for i in range(3):
        _dag_run(st, f"h{i}", 100.0 * i, {"A": (0, 2), "B": (2, 4), "C": (2, 10), "D": (12, 3)})
        S.apply(
            st,
            {
                "ev": "run_end",
                "run": f"h{i}",
                "pid": 1,
                "ts": 100.0 * i + 15,
                "status": "completed",
            },
        )
    _dag_run(st, "now", 1000.0, {"A": (0, 2)})
    snap = snapshot(st, "now", now=1002.0, alive=True)
    assert snap["progress"]["eta_s"] == 13.0
    assert [f.get("after") for f in snap["flow"]] == [None, ["A"], ["A"], ["B", "C"]]
    h0 = snapshot(st, "h0", now=2000.0)
    chain = analysis.critical_path(
        [
            {"span": p["span"], "parent": p["parent"], "start": p["start"], "end": p["end"]}
            for p in h0["phases"]
        ]
    )
    assert [s.split(".")[1] for s in chain] == ["A", "C", "D"]
    assert analysis.eta_dag({"A": [], "B": ["A"]}, {"A": 1.0, "B": None}) is None


def test_rotated_and_compressed_parts_read_back_as_one_log(tmp_path):
    """max_bytes rotates the log into parts no bigger than the bound (plus one line); the
    parts, plain or gzipped, read back as the one run the monitor recorded."""
    import gzip
    import shutil

    from atroz_monitor.read.reader import discover

    log = tmp_path / "big.jsonl"
    with Monitor(
        log, sample_interval=None, alert_rules=[], detail="all", max_bytes=64 * 1024
    ) as mon:
        for i in range(2000):
            with mon.phase(f"P{i % 7}"):
                pass
    parts = discover([log])
    assert len(parts) > 3 and parts[1] == str(tmp_path / "big.part2.jsonl")
    assert all(os.path.getsize(p) < 64 * 1024 + 1024 for p in parts)
    st, stats = load_state([log])
    r = st.runs[mon.run_id]
    assert r.status == "completed" and sum(a.count for a in r.keys.values()) == 2000
    assert r.seq_gaps == 0 and stats.corrupt == 0
    # Compress the finished middle parts: the same events come back.
    for p in parts[1:-1]:
        with open(p, "rb") as src, gzip.open(p + ".gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.unlink(p)
    st2, _ = load_state([log])
    r2 = st2.runs[mon.run_id]
    assert sum(a.count for a in r2.keys.values()) == 2000 and r2.seq_gaps == 0
    assert snapshot(st2, mon.run_id, now=1e10)["keys"] == snapshot(st, mon.run_id, now=1e10)["keys"]


def test_skipped_cached_and_retried_phases_through_the_api(tmp_path):
    """The API's flow and phases routes show skipped and cached phases with their reasons
    and every attempt of a retried phase, the flow holding the last attempt's outcome."""
    import json

    from atroz_monitor.store.source import FileSource
    from atroz_monitor.surface import api

    d = tmp_path / "runs"
    with Monitor(
        d, plan=["A", "B", "C"], sample_interval=None, alert_rules=[], run_id="shapes"
    ) as mon:
        mon.skip_phase("A", "nothing new")
        with mon.phase("B") as p:
            p.cached("same inputs")
        for attempt in mon.attempts("C", 3):
            with attempt as p:
                if p.attempt == 1:
                    raise TimeoutError("slow upstream")
    src = FileSource([d])
    try:
        r = api.route(src, "GET", "/api/v1/runs/shapes/progress", "", {"Host": "127.0.0.1"})
        assert r.status == 200
        flow = json.loads(r.body)["flow"]
        assert [(f["id"], f["status"], f["attempts"]) for f in flow] == [
            ("A", "skipped", 1),
            ("B", "cached", 1),
            ("C", "completed", 2),
        ]
        r = api.route(src, "GET", "/api/v1/runs/shapes/phases", "", {"Host": "127.0.0.1"})
        phases = json.loads(r.body)["phases"]
        assert [(p["phase"], p["status"], p["attempt"], p["reason"]) for p in phases] == [
            ("A", "skipped", None, "nothing new"),
            ("B", "cached", None, "same inputs"),
            ("C", "failed", 1, None),
            ("C", "completed", 2, None),
        ]
    finally:
        src.close()
