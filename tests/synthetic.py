"""Runs written event by event with chosen figures, for the tests of the pure views
(charts, compare, suggestions, insights): no clock, no process, exact expected values."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as hs

from atroz_monitor.read.state import State, apply_all
from atroz_monitor.view import charts, suggestions, views

MIB = 2**20
T0 = 1_800_000_000.0


class Run:
    """A run written event by event with chosen figures (times in seconds from ``t0``)."""

    def __init__(self, rid: str, t0: float = T0, **info: Any) -> None:
        self.rid, self.t0, self.seq, self.n = rid, t0, 0, 0
        self.events: list[dict[str, Any]] = []
        plan = info.pop("plan", [{"id": "P00", "name": "Load"}, {"id": "P01", "name": "Work"}])
        self.ev("run_start", 0.0, v=1, name="syn", plan=plan, ncpu=4, sample_interval=1.0, **info)

    def ev(self, kind: str, at: float, **fields: Any) -> None:
        self.seq += 1
        self.events.append(
            {"ev": kind, "ts": self.t0 + at, "run": self.rid, "pid": 7, "seq": self.seq, **fields}
        )

    def phase(
        self, key: str, start: float, dur: float, *, parent: str | None = None, **end: Any
    ) -> str:
        """A phase from ``start`` lasting ``dur`` seconds; ``end`` fields go to phase_end."""
        self.n += 1
        span = f"7.{self.n}"
        meta = end.pop("meta", None)
        self.ev("phase_start", start, span=span, phase=key, name=key, parent=parent,
                **({"meta": meta} if meta else {}))  # fmt: skip
        end.setdefault("status", "completed")
        end.setdefault("duration_ms", dur * 1000.0)
        self.ev("phase_end", start + dur, span=span, phase=key, name=key, parent=parent, **end)
        return span

    def end(self, at: float) -> list[dict[str, Any]]:
        self.ev("run_end", at, status="completed", duration_ms=at * 1000.0)
        return self.events


def state_of(*runs: list[dict[str, Any]]) -> State:
    st = State()
    for evs in runs:
        apply_all(st, evs)
    return st


def snap_of(st: State, rid: str) -> dict[str, Any]:
    return views.snapshot(st, rid, now=T0 + 10_000)


def rules(st: State, rid: str) -> list[tuple[str, str | None]]:
    rows = charts.rows_from_state(st, rid)
    return [(s["rule"], s["phase"]) for s in suggestions.suggest(snap_of(st, rid), rows)]


PHASES = hs.lists(
    hs.tuples(
        hs.sampled_from(["P00", "P01", "P02", "P01.x"]),
        hs.floats(0, 50),
        hs.floats(0, 20),
        hs.sampled_from(["completed", "failed", "skipped", "cancelled"]),
        hs.one_of(hs.none(), hs.integers(0, 2**33)),
        hs.one_of(hs.none(), hs.floats(0, 1e5)),
    ),
    max_size=12,
)


def random_run(rid: str, t0: float, phases: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    r = Run(rid, t0)
    last: dict[str, str] = {}
    for key, start, dur, status, rss, cpu in phases:
        parent = last.get("P01") if key == "P01.x" else None
        span = r.phase(key, start, dur, parent=parent, status=status,
                       **({"peak_rss_bytes": rss} if rss is not None else {}),
                       **({"cpu_ms": cpu} if cpu is not None else {}))  # fmt: skip
        r.ev("sample", start + dur / 2, cpu_pct=cpu or 0.0, sys_cpu_pct=30.0, spans=[span],
             io_read_bytes=int(start * MIB))  # fmt: skip
        last[key] = span
    return r.end(80.0)
