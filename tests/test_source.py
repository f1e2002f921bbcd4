"""FileSource and MonitorSource: following files, versions, deltas, availability."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from test_api import append

from atroz_monitor import Monitor
from atroz_monitor.store.source import CHANGES, FileSource, MonitorSource


def wait_for(pred: Callable[[], object], timeout: float = 5.0) -> bool:
    """Poll ``pred`` until true or ``timeout`` (a bounded wait, never a bare sleep)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return bool(pred())


def start(run: str, t: float | None = None) -> dict[str, object]:
    return {
        "ev": "run_start",
        "ts": t or time.time(),
        "run": run,
        "pid": 1,
        "plan": [{"id": "A"}, {"id": "B"}],
    }


def phase(run: str, span: str, key: str, end: bool = False) -> dict[str, object]:
    ev = {
        "ev": "phase_end" if end else "phase_start",
        "ts": time.time(),
        "run": run,
        "pid": 1,
        "span": span,
        "phase": key,
    }
    if end:
        ev.update(status="completed", duration_ms=1.0)
    return ev


def test_file_appended_by_subprocess_is_followed(tmp_path: Path) -> None:
    """A log another process appends to shows its new phase after refresh."""
    log = tmp_path / "run.jsonl"
    append(log, start("S"))
    src = FileSource([log])
    try:
        assert src.snapshot("S")["phases"] == []
        code = textwrap.dedent(f"""
            import json, time
            with open({str(log)!r}, "a") as f:
                f.write(json.dumps({phase("S", "1.1", "A")!r}) + "\\n")
        """)
        subprocess.run([sys.executable, "-c", code], check=True, timeout=30)
        v = src.version
        assert src.refresh() and src.version == v + 1
        assert [p["phase"] for p in src.snapshot("S")["phases"]] == ["A"]
    finally:
        src.close()


def test_nothing_new_keeps_the_version(tmp_path: Path) -> None:
    """refresh() with no new bytes changes nothing and returns False."""
    log = tmp_path / "run.jsonl"
    append(log, start("S"), phase("S", "1.1", "A"))
    src = FileSource([log])
    try:
        v = src.version
        src._last_status = time.monotonic()  # no status re-check due now
        assert src.refresh() is False and src.version == v
    finally:
        src.close()


def test_new_file_in_directory_appears(tmp_path: Path) -> None:
    """A run log created in a served directory becomes a run, and the version moves."""
    d = tmp_path / "runs"
    d.mkdir()
    append(d / "a.jsonl", start("A", time.time() - 10))
    src = FileSource([d])
    try:
        assert src.run_ids() == ["A"]
        append(d / "b.jsonl", start("B"))
        os.utime(d, ns=(time.time_ns(), time.time_ns() + 1_000_000))  # coarse mtime clocks
        assert src.refresh()
        assert [r["id"] for r in src.runs()] == ["B", "A"]
        assert src.resolve("latest") == "B"
        (change,) = [c for c in src._changes if c.version == src.version]
        assert change.new_runs and change.runs_changed
    finally:
        src.close()


def test_truncation_rebuilds_state(tmp_path: Path) -> None:
    """A truncated and rewritten log is read again from the start: old runs are gone."""
    log = tmp_path / "run.jsonl"
    append(log, start("OLD"), phase("OLD", "1.1", "A"))
    src = FileSource([log])
    try:
        assert src.run_ids() == ["OLD"]
        with open(log, "w") as f:
            f.write("")
        append(log, start("NEW"))
        assert src.refresh()
        assert src.run_ids() == ["NEW"]
        assert src._changes[-1].reset
        assert src.delta("NEW", src.version - 1)[0] is None  # deltas never cross a rebuild
    finally:
        src.close()


def test_deleted_file_marks_its_run_unavailable(tmp_path: Path) -> None:
    """Deleting one of two logs marks only its run unavailable; its data is still served."""
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    append(a, start("A"), phase("A", "1.1", "A"))
    append(b, start("B"))
    src = FileSource([a, b])
    try:
        a.unlink()
        assert src.refresh()
        rows = {r["id"]: r for r in src.runs()}
        assert rows["A"]["available"] is False and rows["B"]["available"] is True
        q = src.snapshot("A")["quality"]
        assert q["available"] is False and q["unavailable"][0]["path"] == str(a)
        assert [p["phase"] for p in src.snapshot("A")["phases"]] == ["A"]
        assert src.health()["unavailable"] == 1
    finally:
        src.close()


def test_delta_lists_touched_spans_and_new_samples(tmp_path: Path) -> None:
    """delta() since a version names the spans touched and where new samples start."""
    log = tmp_path / "run.jsonl"
    append(
        log,
        start("S"),
        phase("S", "1.1", "A"),
        {"ev": "sample", "ts": time.time(), "run": "S", "pid": 1, "spans": ["1.1"]},
    )
    src = FileSource([log])
    try:
        v = src.version
        append(
            log,
            phase("S", "1.2", "B"),
            {"ev": "sample", "ts": time.time(), "run": "S", "pid": 1, "spans": []},
        )
        src.refresh()
        d, view = src.delta("S", v)
        assert d is not None and view is not None
        assert d.spans == {"1.2"} and d.samples_from == 1 and view.samples_total == 2
        append(log, phase("S", "1.2", "B", end=True))
        src.refresh()
        assert src.delta("S", v)[0].spans == {"1.2"}  # type: ignore[union-attr]
    finally:
        src.close()


def test_client_too_far_behind_gets_none(tmp_path: Path) -> None:
    """A version older than the delta ring yields None (the stream sends a snapshot)."""
    log = tmp_path / "run.jsonl"
    append(log, start("S"))
    src = FileSource([log])
    try:
        v = src.version
        for i in range(CHANGES + 1):
            append(log, phase("S", f"1.{i}", "A"))
            src.refresh()
        assert src.delta("S", v)[0] is None
        assert src.delta("S", src.version - 3)[0] is not None
    finally:
        src.close()


def test_run_end_is_a_runs_change_touching_every_span(tmp_path: Path) -> None:
    """run_end marks the run list changed and all spans touched (interrupted phases)."""
    log = tmp_path / "run.jsonl"
    append(log, start("S"), phase("S", "1.1", "A"))
    src = FileSource([log])
    try:
        v = src.version
        append(log, {"ev": "run_end", "ts": time.time(), "run": "S", "pid": 1, "status": "failed"})
        src.refresh()
        d, _ = src.delta("S", v)
        assert d is not None and d.spans is None and d.runs_changed
        assert src.runs()[0]["status"] == "failed"
        assert src.snapshot("S")["phases"][0]["status"] == "interrupted"
    finally:
        src.close()


def test_background_refresher_wakes_stream_writers(tmp_path: Path) -> None:
    """With a subscriber, the refresher thread picks up an append and notifies ``cond``."""
    log = tmp_path / "run.jsonl"
    append(log, start("S"))
    src = FileSource([log])
    try:
        src.subscribe()
        v = src.version
        append(log, phase("S", "1.1", "A"))
        with src.cond:
            assert src.cond.wait_for(lambda: src.version > v, timeout=5.0)
        src.unsubscribe()
    finally:
        src.close()


def test_monitor_source_serves_its_live_run_with_health(tmp_path: Path) -> None:
    """MonitorSource: a live run is running (alive), its monitor fields come from health()."""
    with Monitor(tmp_path / "runs", plan=["A"], sample_interval=None, capture=False) as m:
        src = MonitorSource(m)
        try:
            with m.phase("A"):
                pass
            src.refresh()
            snap = src.snapshot(m.run_id)
            assert snap["run"]["status"] == "running"
            assert snap["monitor"]["events_written"] >= 3
            assert [f["status"] for f in snap["flow"]] == ["completed"]
        finally:
            src.close()
