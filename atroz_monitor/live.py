"""The live view of a monitor's own runs: the reducer following the run logs.

The log is the source of truth, so the live view is built exactly as a replay is: by
following the files (worker processes append to them too) and applying each event. The
work happens only when someone asks (``snapshot()``, the embedded server), never on the
pipeline's hot path, and memory stays bounded because the file is the buffer.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from . import state as S
from . import views
from .reader import Follower, ReadStats

if TYPE_CHECKING:
    from .monitor import Monitor


class LiveView:
    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        self.state = S.State(max_phases=monitor.max_phases)
        self._followers: dict[str, Follower] = {}
        self._lock = threading.Lock()

    def catch_up(self) -> None:
        """Apply everything written since the last call."""
        with self._lock:
            for run in self.monitor.runs():
                if run.path not in self._followers:
                    self._followers[run.path] = Follower(run.path)
            for f in self._followers.values():
                while True:
                    reset, evs = f.poll()
                    if reset:
                        # The file was truncated or replaced: rebuild from scratch.
                        self.state = S.State(max_phases=self.monitor.max_phases)
                        for other in self._followers.values():
                            if other is not f:
                                other.close()
                        self._followers = {f.path: f}
                    apply = S.apply
                    st = self.state
                    for ev in evs:
                        apply(st, ev)
                    if not getattr(f, "more", False):
                        break

    def quality(self) -> dict[str, Any]:
        total = ReadStats(path="")
        for f in self._followers.values():
            total.merge(f.stats)
        q = total.to_dict()
        q.pop("path", None)
        return q

    def snapshot(self, run_id: str) -> dict[str, Any]:
        self.catch_up()
        mon = self.monitor
        with self._lock:
            if run_id not in self.state.runs:
                raise KeyError(f"no events of run {run_id!r} yet")
            run = next((r for r in mon.runs() if r.id == run_id), None)
            alive = True if run is not None and run.live and not run.ended else None
            health = run.health() if run is not None else {}
            return views.snapshot(
                self.state,
                run_id,
                now=time.time(),
                alive=alive,
                quality=self.quality(),
                monitor=health,
            )
