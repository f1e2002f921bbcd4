"""From log files to reducer state, and whether a run's writer still lives.

The only module between the reader and the reducer: it reads, applies, and asks /proc
whether a run without ``run_end`` is still being written (the reducer and the views take
that answer as an input, so they stay pure). ``load()`` is the one way from paths to state
for every reader of finished logs (``report``, ``export``, ``atroz_monitor.load()``); each
words its errors for its own audience. The live store follows files instead (``store``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from . import reader, state
from .state import RunState, State

_HOST = os.uname().nodename if hasattr(os, "uname") else None


class NoRuns(ValueError):
    """The input holds no atroz_monitor run: no log files, or none with an event of ours."""


Read = Callable[[list[str], State], reader.ReadStats]
"""How ``load()`` applies the files to the state (the report draws a progress line)."""


def read_files(files: Iterable[str], st: State) -> reader.ReadStats:
    """Apply every event of ``files`` to ``st``; the read counters summed."""
    total = reader.ReadStats(path="")
    for path in files:
        stats = reader.ReadStats(path=path)
        state.apply_all(st, reader.iter_events(path, stats))
        total = total.merge(stats)
    return total


def load(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    max_phases: int = 10_000,
    *,
    follow_symlinks: bool = False,
    read: Read | None = None,
) -> tuple[State, reader.ReadStats, list[str]]:
    """Every log under ``paths`` (files or directories) read into one state, with the read
    counters and the files read. FileNotFoundError for a path that does not exist, another
    OSError for one that cannot be read, NoRuns when nothing usable is there. Symlinks
    inside a directory are skipped unless ``follow_symlinks`` (``reader.discover``)."""
    if isinstance(paths, (str, os.PathLike)):  # a single path, not its characters
        names = [os.fsdecode(paths)]
    else:
        names = [os.fsdecode(p) for p in paths]
    files = reader.discover(names, follow_symlinks=follow_symlinks)
    if not files:
        raise NoRuns(f"no run logs (*.jsonl, *.jsonl.gz) in {', '.join(names)}")
    st = State(max_phases=max_phases)
    stats = (read or read_files)(files, st)
    if not st.runs:
        parts = []
        if stats.corrupt:
            parts.append(f"{stats.corrupt} not JSON events of this format")
        if stats.torn:
            parts.append("a torn line")
        if stats.events:
            parts.append(f"{stats.events} event(s) without a run id")
        detail = f"{stats.lines} line(s) read" + (": " + ", ".join(parts) if parts else "")
        raise NoRuns(f"no atroz_monitor events in {', '.join(names)} ({detail})")
    return st, stats, files


def load_state(
    paths: Iterable[str | os.PathLike[str]], st: State | None = None, **state_kw: Any
) -> tuple[State, reader.ReadStats]:
    """Every log under ``paths`` into one state (``st`` or a new one), empty input allowed:
    for callers that add to a state or expect nothing yet (the demo, ``ack``)."""
    st = st if st is not None else State(**state_kw)
    return st, read_files(reader.discover(paths), st)


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
