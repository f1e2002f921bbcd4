"""Insights cost against history size (issue 16).

What the page's ``/api/v1/insights`` computes for a request its cache does not answer
(``api._insights``): rows of the newest ``need`` runs from the catalog summaries that
``serve`` holds for finished runs (``charts.rows_from_summaries``), the subject's own row
from its state (``charts.row_of``), ``charts.history_view`` and ``suggestions.suggest``.
With 10,000 earlier runs against the same with just enough earlier runs to fill the
window, so both requests build the same number of rows and only the history's size
differs; one process, interleaved rounds. The snapshot is built once: its cost does not
depend on history here.

Before, this timed ``charts.rows_from_state`` (what ``report`` does over a state holding
every run) against 10 earlier runs: not the route's path (a pass over every run of the
state, where the route reads the summaries), and a baseline with 11 rows against 20, so
the ratio mixed the rows a request builds with the history it skips.
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

from .common import Figure


def _history(runs: int) -> tuple[list[dict[str, Any]], Any, str]:
    """Catalog summaries of ``runs`` earlier runs and the subject (the newest), oldest
    first, and a state holding the subject, as ``serve`` holds them; 10 phase keys each."""
    from atroz_monitor.read import catalog
    from atroz_monitor.read import state as S

    keys = [f"P{i:02d}" for i in range(10)]
    summaries = []
    subject = S.State()
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
        st = subject if r == runs else S.State()
        S.apply_all(st, evs)
        # Every run has its summary, the subject too (``source.summaries`` holds live ones).
        summaries.append(catalog.summarize(st.runs[rid]))
    return summaries, subject, f"r{runs:05d}"


def run(quick: bool = False) -> list[Figure]:
    from atroz_monitor.view import charts, suggestions, views

    need = max(charts.RUNS_SHOWN, suggestions.SLOW_WINDOW)  # as api._insights asks
    big_n = 2_000 if quick else 10_000
    cases = {"big": _history(big_n), "small": _history(need)}
    snaps = {k: views.snapshot(st, rid, now=1e9) for k, (_, st, rid) in cases.items()}

    def once(case: str) -> float:
        summaries, st, rid = cases[case]
        t0 = time.thread_time()
        rows = charts.rows_from_summaries(summaries, rid, limit=need)
        own = charts.row_of(st.runs[rid])
        rows = [*(r for r in rows if r["run"] != rid), own][-need:]
        charts.history_view(rows, limit=charts.RUNS_SHOWN)
        suggestions.suggest(snaps[case], rows)
        return time.thread_time() - t0

    vals: dict[str, list[float]] = {"big": [], "small": []}
    for _ in range(5 if quick else 15):
        vals["big"].append(once("big") * 1000)
        vals["small"].append(once("small") * 1000)
    return [
        Figure(
            f"insights request with {big_n:,} earlier runs",
            statistics.median(vals["big"]),
            "ms",
            f"with {need} earlier runs",
            statistics.median(vals["small"]),
            "about 1x (history costs nothing)",
        )
    ]


if __name__ == "__main__":
    for fig in run("--quick" in sys.argv):
        print(fig.line())
