"""The live view of a monitor's own runs: the reducer following the run logs.

The log is the source of truth, so the live view is built exactly as a replay is: by
following the files (worker processes append to them too) and applying each event. It is a
``MonitorSource`` (the same one the embedded server reads), so ``Monitor.snapshot()`` and the
dashboard agree; the work happens only when someone asks, never on the pipeline's hot path,
and memory stays bounded because the file is the buffer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .source import MonitorSource

if TYPE_CHECKING:
    from ..read.state import State
    from .source import LiveMonitor


class LiveView:
    def __init__(self, monitor: LiveMonitor) -> None:
        self.monitor = monitor
        # Only its own runs: a snapshot() never reads the directory's other logs.
        self.source = MonitorSource(monitor, catalog=False)

    @property
    def state(self) -> State:
        return self.source.state

    def catch_up(self) -> None:
        """Apply everything written since the last call."""
        src = self.source
        while src.refresh() and src.backlog():
            pass

    def quality(self) -> dict[str, Any]:
        """Read quality of the monitor's main run."""
        return self.source.read(lambda st: self.source.run_quality(self.monitor.run_id))  # type: ignore[no-any-return]

    def snapshot(self, run_id: str) -> dict[str, Any]:
        self.catch_up()
        try:
            return self.source.snapshot(run_id)
        except KeyError:
            raise KeyError(f"no events of run {run_id!r} yet") from None
