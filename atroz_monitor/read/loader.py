"""From log files to reducer state, and whether a run's writer still lives.

The only module between the reader and the reducer: it reads, applies, and asks /proc
whether a run without ``run_end`` is still being written (the reducer and the views take
that answer as an input, so they stay pure).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from . import reader, state
from .state import RunState, State

_HOST = os.uname().nodename if hasattr(os, "uname") else None


def load_state(
    paths: Iterable[str | os.PathLike[str]], st: State | None = None, **state_kw: Any
) -> tuple[State, reader.ReadStats]:
    """Read every log under ``paths`` (files or directories) into one state."""
    st = st if st is not None else State(**state_kw)
    total = reader.ReadStats(path="")
    for path in reader.discover(paths):
        stats = reader.ReadStats(path=path)
        state.apply_all(st, reader.iter_events(path, stats))
        total = total.merge(stats)
    return st, total


def liveness(r: RunState, proc: str = "/proc") -> bool | None:
    """True if the run's owner process still runs, False if it is gone, None if unknown."""
    if r.end is not None:
        return None
    if _HOST is None or r.info.get("host") != _HOST:
        return None
    owner = next((p for p in r.processes.values() if p.get("owner")), None)
    if owner is None:
        return None
    from ..probe.procfs import process_alive

    start = owner.get("pid_start")
    return process_alive(owner["pid"], start if isinstance(start, int) else None, proc)
