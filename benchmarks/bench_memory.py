"""Memory over a long run: RSS growth of a process recording many phases.

1,000,000 phases (100,000 with --quick) in one run, sampling on, as ten top-level phases
each looping over sub-phases: the process's RSS growth from after the first 1,000 phases
to the end. Target (issue 2): <= 10 MiB for 1M phases. Baseline: the same loop with a
bare `contextlib.nullcontext`, so interpreter noise is visible in the same run.
"""

from __future__ import annotations

import contextlib
import os
import tempfile

from .common import Figure


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run(quick: bool = False) -> list[Figure]:
    from atroz_monitor import Monitor

    n = 100_000 if quick else 1_000_000
    tmp = tempfile.mkdtemp(prefix="atroz-bench-")
    log = os.path.join(tmp, "mem.jsonl")

    base0 = _rss()
    for _ in range(n):
        with contextlib.nullcontext():
            pass
    base_growth = (_rss() - base0) / 2**20

    # detail="all": every phase written and reduced one by one (the default would aggregate
    # this loop, which costs less still).
    with Monitor(log, sample_interval=0.5, detail="all") as mon:
        per = n // 10
        start = None
        for p in range(10):
            with mon.phase(f"P{p:02d}"):
                for i in range(per):
                    with mon.phase("item"):
                        pass
                    if start is None and i == 1000:
                        start = _rss()
        end = _rss()
    size = os.path.getsize(log)
    os.unlink(log)
    return [
        Figure(
            f"RSS growth over {n:,} phases",
            (end - (start or end)) / 2**20,
            "MiB",
            "bare loop growth",
            base_growth,
            "<= 10 MiB",
        ),
        Figure("  log size per phase", size / n, "bytes"),
    ]


if __name__ == "__main__":
    import sys

    for fig in run("--quick" in sys.argv):
        print(fig.line())
