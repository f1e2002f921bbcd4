"""p.count() in a loop against prometheus_client Counter.inc().

Both only add to a number most of the time; p.count() also writes the running total at most
every 0.5 s per name (a ``count`` line), so the figure includes those writes. Target
(issue 16, "allocation-light"): within 3x of Counter.inc(), which holds a lock per call.
"""

from __future__ import annotations

import os
import statistics
import tempfile

from .common import Figure, per_op_us


def run(quick: bool = False) -> list[Figure]:
    from atroz_monitor import Monitor

    n = 20_000 if quick else 200_000
    r = 3 if quick else 7
    tmp = tempfile.mkdtemp(prefix="atroz-bench-")
    mon = Monitor(os.path.join(tmp, "count.jsonl"), sample_interval=None, alert_rules=[])
    mon.start()
    phase = mon.phase("P00").__enter__()
    count = phase.count

    def mon_op() -> None:
        count("signals")

    ops = {"mon": mon_op}
    try:
        from prometheus_client import CollectorRegistry, Counter

        c = Counter("bench_signals", "x", registry=CollectorRegistry())
        inc = c.inc

        def prom_op() -> None:
            inc()

        ops["prom"] = prom_op
    except ImportError:
        print("  (prometheus_client not installed)")
    vals: dict[str, list[float]] = {k: [] for k in ops}
    for _ in range(r):
        for k, op in ops.items():
            vals[k].append(per_op_us(op, n))
    phase.__exit__(None, None, None)
    mon.close()
    med = {k: statistics.median(v) for k, v in vals.items()}
    spread = (max(vals["mon"]) - min(vals["mon"])) / med["mon"] * 100
    return [
        Figure(
            "p.count() in a loop",
            med["mon"],
            "us",
            "prometheus_client Counter.inc()" if "prom" in med else "",
            med.get("prom"),
            "<= 3x",
            spread,
        )
    ]


if __name__ == "__main__":
    import sys

    for fig in run("--quick" in sys.argv):
        print(fig.line())
