"""Tests of the monitor's component protocol (component.py): start, close, health, fork."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from helpers import of_kind, read_log

from atroz_monitor import Monitor
from atroz_monitor.record.monitor import Run


class Recorder:
    """A component that records the calls it gets."""

    def __init__(self, name: str, closes_after_alerts: bool) -> None:
        self.name = name
        self.closes_after_alerts = closes_after_alerts
        self.calls: list[tuple[str, ...]] = []

    def start(self, run: Run) -> None:
        self.calls.append(("start", run.id))

    def close(self) -> None:
        self.calls.append(("close",))

    def health(self) -> dict[str, Any]:
        return {f"{self.name}_calls": len(self.calls)}

    def after_fork(self) -> None:
        self.calls.append(("after_fork",))


def _bare(tmp_path: Path, **kw: Any) -> Monitor:
    return Monitor(tmp_path / "r.jsonl", sample_interval=None, capture=False, **kw)


def test_the_parts_are_components_in_their_order(tmp_path: Path) -> None:
    """Each part asked for is one component, in start order; absent options add none."""
    full = Monitor(tmp_path / "a.jsonl", sample_interval=1.0, on_alert=lambda a: None)
    assert [type(c).__name__ for c in full._components] == [
        "Sampling",
        "LogCapture",
        "Notifier",
        "Alerting",
    ]
    bare = _bare(tmp_path, alert_rules=[])
    assert [type(c).__name__ for c in bare._components] == ["Alerting"]


def test_owned_runs_start_components_and_the_main_run_closes_them(tmp_path: Path) -> None:
    """start() comes for each owned run, close() once at the main run's end, before the
    run_end line whose counters carry every component's health()."""
    mon = _bare(tmp_path, alert_rules=[])
    early, late = Recorder("early", False), Recorder("late", True)
    mon._components += [early, late]
    with mon:
        with mon.run("job") as job:
            job_id = job.id
        with mon.phase("P00"):
            pass
    for rec in (early, late):
        assert rec.calls == [("start", mon.run_id), ("start", job_id), ("close",)]
    ends = {e["run"]: e for e in of_kind(read_log(mon.main.path), "run_end")}
    assert ends[mon.run_id]["counters"]["early_calls"] == 3
    assert ends[mon.run_id]["counters"]["late_calls"] == 3
    assert ends[job_id]["counters"]["late_calls"] == 2  # the job ended before the main run


def test_a_forked_child_tells_every_component(tmp_path: Path) -> None:
    """In a child forked after the monitor started, each component gets after_fork()."""
    mon = _bare(tmp_path, alert_rules=[])
    rec = Recorder("rec", False)
    mon._components.append(rec)
    with mon:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report what the component saw, then leave at once
            os.write(w, repr(rec.calls).encode())
            os._exit(0)
        os.close(w)
        _, status = os.waitpid(pid, 0)
        seen = os.read(r, 1000).decode()
        os.close(r)
    assert os.waitstatus_to_exitcode(status) == 0
    assert seen == repr([("start", mon.run_id), ("after_fork",)])
    assert rec.calls == [("start", mon.run_id), ("close",)]  # the parent's: no after_fork
