"""`import atroz_monitor`: time and RSS it adds to a bare interpreter in a clean virtual
environment, against prometheus_client measured the same way in the same venv and run.

The venv (``~/.cache/atroz_monitor/import-venv-<python>``, or ``$ATROZ_BENCH_VENV``;
created on first use, reused after) holds only the two packages, laid out as an installed
wheel lays them out (the package directories copied into site-packages, no ``.pth`` file,
so ``site`` preloads nothing of ours) and compiled to bytecode; this needs no network.
prometheus_client is copied from the running interpreter's installation (pure Python, no
dependencies). Each child runs ``-I`` (the
working directory is not on sys.path, PYTHON* variables are ignored) and reports the time
around the import (perf_counter) and VmRSS from /proc/self/status before and after it.
Each figure is the median over fresh interpreters.
Targets (issue 15): <= 1 MiB RSS added, <= 0.1x prometheus_client's import time.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import venv

from .common import Figure

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Outside the checkout (linters and tests walk it), one per Python version.
VENV = os.environ.get("ATROZ_BENCH_VENV") or os.path.join(
    os.path.expanduser("~"),
    ".cache",
    "atroz_monitor",
    f"import-venv-{sys.implementation.cache_tag}",
)

_CHILD = """
import time
def rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0
r0 = rss()
t0 = time.perf_counter()
if {mod!r}:
    __import__({mod!r})
t = time.perf_counter() - t0
r1 = rss()
print('{{"t": %r, "rss": %d}}' % (t, r1 - r0))
"""


def _copy_pkg(src: str, site: str) -> None:
    dst = os.path.join(site, os.path.basename(src))
    if os.path.exists(dst):
        shutil.rmtree(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def prepare() -> tuple[str, bool]:
    """The venv's python, with this checkout's atroz_monitor (refreshed on every run) and
    prometheus_client; False when prometheus_client is not installed here."""
    py = os.path.join(VENV, "bin", "python")
    if not os.path.exists(py):
        venv.create(VENV, with_pip=False, clear=True)
    site = subprocess.run(
        [py, "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    _copy_pkg(os.path.join(ROOT, "atroz_monitor"), site)
    have_prom = True
    try:
        import prometheus_client
    except ImportError:
        have_prom = False
    else:
        _copy_pkg(os.path.dirname(prometheus_client.__file__), site)
    subprocess.run([py, "-I", "-m", "compileall", "-q", site], check=True)
    return py, have_prom


def measure(py: str, mod: str, n: int) -> tuple[float, float]:
    ts, rs = [], []
    for _ in range(n):
        out = subprocess.run(
            [py, "-I", "-c", _CHILD.format(mod=mod)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        d = json.loads(out)
        ts.append(d["t"])
        rs.append(d["rss"])
    return statistics.median(ts), statistics.median(rs)


def run(quick: bool = False) -> list[Figure]:
    n = 7 if quick else 25
    py, have_prom = prepare()
    bare_t, bare_rss = measure(py, "", n)
    ours_t, ours_rss = measure(py, "atroz_monitor", n)
    figures = [
        Figure(
            "import atroz_monitor (clean venv): RSS added",
            (ours_rss - bare_rss) / 2**20,
            "MiB",
            target="<= 1 MiB",
        ),
    ]
    if not have_prom:
        print("  (prometheus_client not installed: pip install -e '.[bench]')")
        return figures
    t, r = measure(py, "prometheus_client", n)
    figures.append(
        Figure(
            "import time vs prometheus_client (clean venv)",
            (ours_t - bare_t) * 1000,
            "ms",
            "import prometheus_client",
            (t - bare_t) * 1000,
            "<= 0.1x",
        )
    )
    figures.append(
        Figure(
            "import RSS vs prometheus_client (clean venv)",
            (ours_rss - bare_rss) / 2**20,
            "MiB",
            "import prometheus_client",
            (r - bare_rss) / 2**20,
        )
    )
    return figures


if __name__ == "__main__":
    for fig in run("--quick" in sys.argv):
        print(fig.line())
