"""The Chrome/Perfetto trace (surface/chrome_trace.py) of real demo logs: every phase, times
against the log, a lane per process, counters and instants, overlapping phases on separate
tracks; an open phase ends at the run's last event in both trace formats.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from helpers import phase_starts

from atroz_monitor.surface import chrome_trace, otlp_json
from atroz_monitor.view import views


def _x_events(trace: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in trace["traceEvents"] if e["ph"] == "X"]


def test_chrome_trace_is_json_with_every_phase_of_the_log(demo: dict[str, Any]) -> None:
    """The trace survives a JSON round trip and has one complete event per phase_end line,
    in milliseconds display, with the run id in otherData."""
    for name in ("ok", "bad"):
        snap, evs = demo[name]["snap"], demo[name]["events"]
        trace = json.loads(otlp_json.encode_json(chrome_trace.chrome_trace(snap)))
        ends = {e["span"] for e in evs if e["ev"] == "phase_end"}
        xs = _x_events(trace)
        assert {e["args"]["span"] for e in xs} == ends
        assert len(xs) == len(ends)
        assert trace["displayTimeUnit"] == "ms"
        assert trace["otherData"]["run"] == snap["run"]["id"]
        keys = {e["phase"] for e in evs if e["ev"] == "phase_end"}
        assert {e["args"]["phase"] for e in xs} == keys


def test_chrome_trace_times_match_the_log_and_children_nest(demo: dict[str, Any]) -> None:
    """ts is the phase_start time in microseconds from run_start, dur its duration_ms; a
    sub-phase on its parent's track lies within the parent's slice."""
    evs = demo["ok"]["events"]
    t0 = next(e["ts"] for e in evs if e["ev"] == "run_start")
    starts = {e["span"]: e["ts"] for e in phase_starts(evs)}
    ends = {e["span"]: e for e in evs if e["ev"] == "phase_end"}
    xs = {e["args"]["span"]: e for e in _x_events(chrome_trace.chrome_trace(demo["ok"]["snap"]))}
    for span, x in xs.items():
        assert x["ts"] == pytest.approx((starts[span] - t0) * 1e6, abs=50)
        assert x["dur"] == pytest.approx(ends[span]["duration_ms"] * 1000, abs=50)
    threads = {e["span"]: (e["pid"], e["thread"]) for e in phase_starts(evs)}
    same_lane = [s for s, e in ends.items() if e["parent"] and threads[s] == threads[e["parent"]]]
    nested = 0
    for span, x in xs.items():
        parent = xs.get(ends[span]["parent"])
        if parent is not None and (parent["pid"], parent["tid"]) == (x["pid"], x["tid"]):
            assert parent["ts"] <= x["ts"]
            assert x["ts"] + x["dur"] <= parent["ts"] + parent["dur"] + 0.001
            nested += 1
    assert nested == len(same_lane) >= 19  # sub-phases under each of P00-P09


def test_chrome_trace_each_process_is_its_own_lane(demo: dict[str, Any]) -> None:
    """Worker processes' phases sit on their own pid tracks, each process and thread is
    named by metadata, and a flow arrow links each worker phase to its parent."""
    evs = demo["ok"]["events"]
    owner = next(e["pid"] for e in evs if e["ev"] == "run_start")
    workers = {e["pid"] for e in evs if e["ev"] == "process_start"}
    assert workers and owner not in workers
    trace = chrome_trace.chrome_trace(demo["ok"]["snap"])
    xs = _x_events(trace)
    assert {e["pid"] for e in xs if e["args"]["phase"] == "P03.worker"} == workers
    assert {e["pid"] for e in xs if e["args"]["phase"] == "P03"} == {owner}
    meta = [e for e in trace["traceEvents"] if e["ph"] == "M"]
    names = {e["pid"]: e["args"]["name"] for e in meta if e["name"] == "process_name"}
    assert set(names) == workers | {owner}
    assert names[owner].endswith(f"(pid {owner}, owner)")
    threads = {(e["pid"], e["tid"]) for e in meta if e["name"] == "thread_name"}
    assert {(e["pid"], e["tid"]) for e in xs} <= threads
    starts = [e for e in trace["traceEvents"] if e["ph"] == "s"]
    finishes = [e for e in trace["traceEvents"] if e["ph"] == "f"]
    assert len(starts) == len(finishes) == 4  # the demo's four worker chunks
    assert {e["pid"] for e in starts} == {owner}
    assert {e["pid"] for e in finishes} == workers


def test_chrome_trace_counters_and_instant_events(demo: dict[str, Any]) -> None:
    """Samples become CPU and memory counter tracks; warnings, the failed phase's error and
    its log lines become instant events."""
    evs = demo["ok"]["events"]
    trace = chrome_trace.chrome_trace(demo["ok"]["snap"])
    counters = [e for e in trace["traceEvents"] if e["ph"] == "C"]
    samples = [e for e in evs if e["ev"] == "sample"]
    mem = [e for e in counters if e["name"] == "Memory bytes"]
    assert len(mem) == len(samples)
    assert mem[0]["args"]["rss"] == samples[0]["rss_bytes"]
    cpu = [e for e in counters if e["name"] == "CPU %"]
    assert len(cpu) == len([s for s in samples if "cpu_pct" in s]) > 0
    warnings = [e for e in trace["traceEvents"] if e["ph"] == "i" and e["cat"] == "warning"]
    assert len(warnings) == len([e for e in evs if e["ev"] == "log"]) == 5
    assert all(e["s"] == "p" for e in warnings)
    bad = chrome_trace.chrome_trace(demo["bad"]["snap"])
    errors = [e for e in bad["traceEvents"] if e["ph"] == "i" and e["cat"] == "error"]
    assert {e["args"]["phase"] for e in errors} == {"P07", "P07.rules"}
    assert all("R-17" in e["name"] for e in errors)
    failed = [e for e in _x_events(bad) if e["args"]["status"] == "failed"]
    assert {e["args"]["phase"] for e in failed} == {"P07", "P07.rules"}


def _state(events: list[dict[str, Any]]) -> Any:
    from atroz_monitor.read.state import State, apply

    st = State()
    for seq, ev in enumerate(events, 1):
        apply(st, {"run": "r1", "pid": 7, "seq": seq, **ev})
    return st


def test_chrome_trace_overlapping_phases_on_one_thread_get_separate_tracks() -> None:
    """Two top-level phases that overlap on one thread (asyncio tasks) go to two tracks, so
    every track's slices nest."""
    st = _state(
        [
            {"ev": "run_start", "ts": 100.0, "name": "n", "plan": []},
            {"ev": "phase_start", "ts": 100.1, "span": "7.1", "phase": "A", "thread": "Main"},
            {"ev": "phase_start", "ts": 100.2, "span": "7.2", "phase": "B", "thread": "Main"},
            {"ev": "phase_end", "ts": 100.3, "span": "7.1", "phase": "A", "duration_ms": 200.0},
            {"ev": "phase_end", "ts": 100.5, "span": "7.2", "phase": "B", "duration_ms": 300.0},
            {"ev": "run_end", "ts": 100.6, "status": "completed"},
        ]
    )
    trace = chrome_trace.chrome_trace(views.snapshot(st, "r1", now=200.0))
    xs = {e["name"]: e for e in _x_events(trace)}
    assert (xs["A"]["tid"], xs["B"]["tid"]) == (1, 2)
    assert xs["A"]["ts"] == pytest.approx(100_000.0)
    assert xs["B"]["dur"] == pytest.approx(300_000.0)
    tnames = {
        e["tid"]: e["args"]["name"] for e in trace["traceEvents"] if e["name"] == "thread_name"
    }
    assert tnames == {1: "Main", 2: "Main (2)"}


def test_open_phase_ends_at_the_last_event_in_both_trace_formats() -> None:
    """A phase with no end line (its writer died) ends at the run's last event, marked open
    in the Chrome trace and with atroz.phase.ended=false and unset status in OTLP."""
    st = _state(
        [
            {"ev": "run_start", "ts": 100.0, "name": "n", "host": "elsewhere", "plan": []},
            {"ev": "phase_start", "ts": 100.5, "span": "7.1", "phase": "A", "thread": "Main"},
            {"ev": "sample", "ts": 102.0, "rss_bytes": 1000, "spans": ["7.1"]},
        ]
    )
    snap = views.snapshot(st, "r1", now=1000.0)
    assert snap["phases"][0]["status"] == "interrupted"
    x = _x_events(chrome_trace.chrome_trace(snap))[0]
    assert (x["ts"], x["dur"], x["args"]["open"]) == (500_000.0, 1_500_000.0, True)
    span = otlp_json.otlp_json(snap)["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert span["endTimeUnixNano"] == "102000000000"
    assert span["status"] == {"code": 0}
    attrs = {a["key"]: a["value"] for a in span["attributes"]}
    assert attrs["atroz.phase.ended"] == {"boolValue": False}
    assert attrs["atroz.phase.status"] == {"stringValue": "interrupted"}
