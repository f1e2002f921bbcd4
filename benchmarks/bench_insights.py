"""Insights cost against history size (issue 16).

What the page's ``/api/v1/insights`` does per request (rows of the newest 20 runs,
``charts.history_view``, ``suggestions.suggest``), with 10,000 earlier runs against the
same with 10 earlier runs, in one process, interleaved rounds. The runs are compacted, as a
long-lived reader keeps earlier runs; 10 phase keys each. The snapshot is built once: its
cost does not depend on history here.
"""

from __future__ import annotations

import statistics
import sys
import time

from .common import Figure


def _state(runs: int) -> tuple[object, str]:
    from atroz_monitor.read import state as S

    keys = [f"P{i:02d}" for i in range(10)]
    st = S.State()
    seq = 0
    for r in range(runs + 1):
        rid = f"r{r:05d}"
        base = r * 100.0
        evs = [{"ev": "run_start", "run": rid, "pid": 1, "seq": 1, "ts": base, "v": 1}]
        for i, k in enumerate(keys):
            for kind, at in (("phase_start", 0.0), ("phase_end", 0.5)):
                seq += 1
                evs.append(
                    {"ev": kind, "run": rid, "pid": 1, "seq": seq, "ts": base + i + at,
                     "span": f"{rid}.{i}", "phase": k, "name": k, "parent": None,
                     "status": "completed", "duration_ms": 500.0 + (r % 13), "cpu_ms": 100.0,
                     "items": 10}
                )  # fmt: skip
        evs.append({"ev": "run_end", "run": rid, "pid": 1, "seq": seq + 1, "ts": base + 11,
                    "status": "completed"})  # fmt: skip
        S.apply_all(st, evs)
        if r < runs:
            st.compact(rid)
    return st, f"r{runs:05d}"


def run(quick: bool = False) -> list[Figure]:
    from atroz_monitor.view import charts, suggestions, views

    big_n = 2_000 if quick else 10_000
    big, big_id = _state(big_n)
    small, small_id = _state(10)
    snaps = {
        id(big): views.snapshot(big, big_id, now=1e9),  # type: ignore[arg-type]
        id(small): views.snapshot(small, small_id, now=1e9),  # type: ignore[arg-type]
    }

    def once(st: object, rid: str) -> float:
        t0 = time.thread_time()
        rows = charts.rows_from_state(st, rid, limit=20)  # type: ignore[arg-type]
        charts.history_view(rows)
        suggestions.suggest(snaps[id(st)], rows)
        return time.thread_time() - t0

    vals: dict[str, list[float]] = {"big": [], "small": []}
    for _ in range(5 if quick else 15):
        vals["big"].append(once(big, big_id) * 1000)
        vals["small"].append(once(small, small_id) * 1000)
    return [
        Figure(
            f"insights request with {big_n:,} earlier runs",
            statistics.median(vals["big"]),
            "ms",
            "with 10 earlier runs",
            statistics.median(vals["small"]),
            "",
        )
    ]


if __name__ == "__main__":
    for fig in run("--quick" in sys.argv):
        print(fig.line())
