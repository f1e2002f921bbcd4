"""Phases as wall-clock intervals (view/timeline.py), the times both trace formats draw: an
ended phase lasts its monotonic duration, an open one ends at the run's last event, and a
value that is not a finite JSON number is no time at all."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from atroz_monitor.view.timeline import finite, owner_pid, phase_interval

RUN = {"start": 100.0, "last_event": 107.5, "pid": 42}


def _snap(**run: Any) -> dict[str, Any]:
    return {"run": {**RUN, **run}}


def test_an_ended_phase_lasts_its_duration_not_its_wall_end() -> None:
    """start 101 s, duration 2,000 ms, a wall-clock end of 105 s (the clock stepped): the
    interval is 101-103 s and ended."""
    p = {"status": "completed", "start": 101.0, "duration_ms": 2000.0, "end": 105.0}
    assert phase_interval(p, _snap()) == (101.0, 103.0, True)


def test_an_open_phase_ends_at_the_runs_last_event() -> None:
    """A running phase from 104 s, and an interrupted one from 110 s (after the last event):
    the first ends at 107.5 s, the second has no length; neither is ended."""
    assert phase_interval({"status": "running", "start": 104.0}, _snap()) == (104.0, 107.5, False)
    late = {"status": "interrupted", "start": 110.0}
    assert phase_interval(late, _snap()) == (110.0, 110.0, False)


def test_a_phase_without_start_is_placed_by_its_offset() -> None:
    """No start, offset 1,500 ms in a run started at 100 s: it starts at 101.5 s."""
    p = {"status": "completed", "offset_ms": 1500.0, "duration_ms": 10.0}
    assert phase_interval(p, _snap()) == (101.5, 101.51, True)


def test_owner_pid_is_an_int_or_none() -> None:
    """The run's pid when the log holds an int; None for anything else (a damaged log)."""
    assert owner_pid(_snap()) == 42
    assert owner_pid(_snap(pid="42")) is None and owner_pid(_snap(pid=True)) is None


@given(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text()))
def test_finite_keeps_only_finite_numbers(v: Any) -> None:
    """finite(): ints and finite floats as floats; bools, NaN, infinities and others None."""
    got = finite(v)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        assert got is None
    else:
        assert got == float(v) and type(got) is float
