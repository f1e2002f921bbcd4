"""`import atroz_monitor`: time and RSS it adds to a bare interpreter, against
prometheus_client and OpenTelemetry measured the same way in the same run.

Each figure is the median over fresh interpreters of (with import) - (bare), timed inside
the child with perf_counter around the import, RSS from /proc/self/status after it.
Targets (issue 2): <= 2 MiB RSS added, <= 1/4 of prometheus_client's import time.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

from .common import Figure

_CHILD = """
import time, sys
t0 = time.perf_counter()
if {mod!r}:
    __import__({mod!r})
t = time.perf_counter() - t0
rss = 0
for line in open("/proc/self/status"):
    if line.startswith("VmRSS:"):
        rss = int(line.split()[1]) * 1024
print('{{"t": %r, "rss": %d}}' % (t, rss))
"""


# Installed packages import from compiled bytecode; a development shell may forbid writing
# it (PYTHONDONTWRITEBYTECODE), which would time the compiler instead of the import.
_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def measure(mod: str, n: int) -> tuple[float, float]:
    ts, rs = [], []
    for i in range(n + 1):
        out = subprocess.run(
            [sys.executable, "-c", _CHILD.format(mod=mod)],
            capture_output=True,
            text=True,
            check=True,
            env=_ENV,
        ).stdout
        if i == 0:
            continue  # the warm-up run writes the bytecode
        d = json.loads(out)
        ts.append(d["t"])
        rs.append(d["rss"])
    return statistics.median(ts), statistics.median(rs)


def run(quick: bool = False) -> list[Figure]:
    n = 5 if quick else 15
    bare_t, bare_rss = measure("", n)
    ours_t, ours_rss = measure("atroz_monitor", n)
    figures = [
        Figure(
            "import atroz_monitor: RSS added",
            (ours_rss - bare_rss) / 2**20,
            "MiB",
            target="<= 2 MiB",
        ),
    ]
    for mod, label in (
        ("prometheus_client", "prometheus_client"),
        ("opentelemetry.sdk.trace", "opentelemetry-sdk"),
    ):
        try:
            t, r = measure(mod, n)
        except subprocess.CalledProcessError:
            print(f"  ({label} not installed: pip install -e '.[bench]')")
            continue
        figures.append(
            Figure(
                f"import time vs {label}",
                (ours_t - bare_t) * 1000,
                "ms",
                f"import {label}",
                (t - bare_t) * 1000,
                "<= 0.25x" if label == "prometheus_client" else "",
            )
        )
        figures.append(
            Figure(
                f"import RSS vs {label}",
                (ours_rss - bare_rss) / 2**20,
                "MiB",
                f"import {label}",
                (r - bare_rss) / 2**20,
            )
        )
    return figures


if __name__ == "__main__":
    for fig in run("--quick" in sys.argv):
        print(fig.line())
