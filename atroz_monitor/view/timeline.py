"""A phase of a snapshot as a wall-clock interval, for the trace formats (Chrome trace, OTLP
JSON): ended phases last their monotonic duration, open ones end at the run's last event.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def finite(v: Any) -> float | None:
    """A JSON number as a float; None for anything else (bools, NaN, infinities included)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def phase_interval(p: Mapping[str, Any], snap: Mapping[str, Any]) -> tuple[float, float, bool]:
    """(start, end, ended) of a phase in Unix seconds. An ended phase lasts its monotonic
    ``duration_ms``; an open one (running, or interrupted by a dead writer) ends at the run's
    last event, the last moment the log vouches for."""
    run = snap["run"]
    start = finite(p.get("start"))
    if start is None:
        off = finite(p.get("offset_ms"))
        base = finite(run.get("start")) or 0.0
        start = base + (off or 0.0) / 1000.0
    ended = p.get("status") not in ("running", "interrupted")
    dur = finite(p.get("duration_ms"))
    if ended and dur is not None:
        return start, start + max(0.0, dur) / 1000.0, True
    end = finite(p.get("end"))
    if ended and end is not None:
        return start, max(start, end), True
    last = finite(run.get("last_event"))
    return start, max(start, last if last is not None else start), False


def owner_pid(snap: Mapping[str, Any]) -> int | None:
    """The pid of the process that owns the run (its lane or resource), when the log says."""
    pid = snap["run"].get("pid")
    return pid if type(pid) is int else None
