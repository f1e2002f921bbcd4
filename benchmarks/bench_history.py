"""Years of history (issue 13): what a run, a loop of runs and a scrape cost as runs pile up.

Directories of 100, 1,000 and 10,000 earlier runs (20 and 100 with --quick) of a 10-phase
pipeline, made by copying one real run's log with new ids (the copy is fast), each
measured against an empty directory in the same invocation and printed as a growth curve:

- ``fig_catalog_build``: the one-off catalog build from the logs (what the first ``serve``,
  ``report --baseline DIR`` or ``prune`` after an upgrade pays), loading it in a new
  process, and a refresh of a loaded catalog with nothing changed (a listing and a stat per
  log), CPU seconds;
- ``fig_run_start``: a short 10-phase run (``with Monitor(dir)``, sampling on) in a fresh
  process: its CPU time and peak RSS over the process's state before the run. Target:
  <= +20 ms CPU and <= +5 MiB RSS over the empty directory;
- ``fig_loop``: one process running 1,000 runs (100 with --quick) of 10 phases, each a new
  ``Monitor`` on the same directory: RSS growth from run 100 to the last and the threads
  left behind. Baseline: the same loop giving each run an empty directory of its own.
  Target: <= 10 MiB, no thread;
- ``fig_metrics``: ``/metrics`` text (``exporters.prometheus`` over the catalog) bytes,
  series and CPU time. Target: <= 2 MB for 10,000 runs.

H4 adds the ``serve`` figures (ready time, route p99, RSS, descriptors, idle CPU) here as
more ``fig_*`` functions over the same directories (``history_dir(n)``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from .common import Figure

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TMP = tempfile.mkdtemp(prefix="atroz-bench-history-")
_DIRS: dict[int, str] = {}


def _template() -> tuple[bytes, str]:
    """One real 10-phase run's log (sampling on, sub-phases) and its run id."""
    d = os.path.join(_TMP, "template")
    if not os.path.isdir(d):
        env = dict(os.environ, PYTHONPATH=ROOT)
        code = (
            "import sys\nfrom atroz_monitor import Monitor\n"
            "with Monitor(sys.argv[1], name='nightly', sample_interval=0.01, run_id='tmpl-0',"
            " plan=[(f'P{i:02d}', f'step {i}') for i in range(10)]) as mon:\n"
            "    for i in range(10):\n"
            "        with mon.phase(f'P{i:02d}') as p:\n"
            "            for j in range(3):\n"
            "                with mon.phase(f'P{i:02d}.sub'):\n"
            "                    sum(range(20000))\n"
            "            p.add_items(100)\n"
        )
        subprocess.run([sys.executable, "-c", code, d], env=env, check=True)
    with open(os.path.join(d, "tmpl-0.jsonl"), "rb") as f:
        return f.read(), "tmpl-0"


def history_dir(n: int) -> str:
    """A directory of ``n`` finished runs (copies of the template with new ids and start
    times one minute apart), its catalog built; cached per process."""
    if n in _DIRS:
        return _DIRS[n]
    data, rid = _template()
    d = os.path.join(_TMP, f"runs-{n}")
    os.makedirs(d)
    ts = re.compile(rb'"ts":(\d+)\.')
    for i in range(n):
        new = f"h{i:06d}".encode()
        shift = (i - n) * 60  # run i started (n - i) minutes ago
        body = data.replace(rid.encode(), new)
        # Shift the whole seconds of every timestamp: the copy keeps its shape.
        body = ts.sub(lambda m, s=shift: b'"ts":%d.' % (int(m.group(1)) + s), body)
        with open(os.path.join(d, f"h{i:06d}.jsonl"), "wb") as f:
            f.write(body)
    from atroz_monitor.catalog import Catalog

    Catalog(d).refresh()  # as the first serve, report --baseline or prune would
    _DIRS[n] = d
    return d


def _child(code: str, *args: str) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("ATROZ_MONITOR_LOG", None)
    env.pop("ATROZ_MONITOR_RUN", None)
    out = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


_BUILD = r"""
import json, sys, time
from atroz_monitor.catalog import Catalog, FILE
import os
try:
    os.unlink(os.path.join(sys.argv[1], FILE))
except FileNotFoundError:
    pass
t0 = time.process_time()
Catalog(sys.argv[1]).refresh()
t1 = time.process_time()
cat = Catalog(sys.argv[1])
cat.refresh()
t2 = time.process_time()
cat.refresh()
t3 = time.process_time()
print(json.dumps({"build_s": t1 - t0, "load_s": t2 - t1, "warm_s": t3 - t2}))
"""


def fig_catalog_build(sizes: list[int]) -> list[Figure]:
    out = []
    for n in sizes:
        r = _child(_BUILD, history_dir(n))
        out.append(Figure(f"catalog build from the logs, {n:,} runs", r["build_s"], "s"))
        out.append(Figure("  load in a new process (nothing changed)", r["load_s"], "s"))
        out.append(Figure("  refresh of a loaded catalog (nothing changed)", r["warm_s"], "s"))
    return out


_RUN = r"""
import json, os, resource, sys, time
from atroz_monitor import Monitor
d, warm = sys.argv[1], sys.argv[2]
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
def hwm():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
def pipeline(path, rid):
    with Monitor(path, sample_interval=0.5, run_id=rid, name="nightly",
                 plan=[(f"P{i:02d}", f"step {i}") for i in range(10)]) as mon:
        for i in range(10):
            with mon.phase(f"P{i:02d}"):
                pass
    return mon
pipeline(warm, "warm-up")  # imports, first-use caches: not history's cost
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset VmHWM to the current RSS
r0, c0 = rss(), time.process_time()
mon = pipeline(d, "measured")
c1, peak = time.process_time(), hwm()
for p in [os.path.join(d, "measured.jsonl")]:
    os.unlink(p)
print(json.dumps({"cpu_ms": (c1 - c0) * 1000, "peak_mib": (peak - r0) / 2**20,
                  "history": len(mon.history())}))
"""


def _run_start(d: str, rounds: int) -> tuple[float, float, int]:
    cpu, peak, hist = [], [], 0
    for _ in range(rounds):
        warm = tempfile.mkdtemp(dir=_TMP)
        r = _child(_RUN, d, warm)
        shutil.rmtree(warm)
        cpu.append(r["cpu_ms"])
        peak.append(r["peak_mib"])
        hist = r["history"]
    return statistics.median(cpu), statistics.median(peak), hist


def fig_run_start(sizes: list[int], rounds: int) -> list[Figure]:
    empty = tempfile.mkdtemp(dir=_TMP)
    base_cpu, base_peak, _ = _run_start(empty, rounds)
    out = []
    for n in sizes:
        cpu, peak, hist = _run_start(history_dir(n), rounds)
        out.append(Figure(f"run of 10 phases, {n:,} earlier runs: CPU", cpu, "ms",
                          "empty dir", base_cpu, "<= +20 ms"))  # fmt: skip
        out.append(Figure(f"  peak RSS over the start ({hist} runs of history)", peak, "MiB",
                          "empty dir", base_peak, "<= +5 MiB"))  # fmt: skip
    return out


_LOOP = r"""
import json, os, sys, tempfile, threading
from atroz_monitor import Monitor
d, n, fresh = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
at = {}
for i in range(n):
    path = tempfile.mkdtemp(dir=d) if fresh else d
    with Monitor(path, sample_interval=0.05, name="service", alert_rules=None) as mon:
        for k in range(10):
            with mon.phase(f"P{k:02d}"):
                pass
    if i + 1 in (n // 10, n):
        at[i + 1] = rss()
threads = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
print(json.dumps({"growth_mib": (at[n] - at[n // 10]) / 2**20, "threads": threads}))
"""


def fig_loop(n: int) -> list[Figure]:
    d = tempfile.mkdtemp(dir=_TMP)
    same = _child(_LOOP, d, str(n), "0")
    d2 = tempfile.mkdtemp(dir=_TMP)
    fresh = _child(_LOOP, d2, str(n), "1")
    return [
        Figure(
            f"loop of {n:,} runs in one process: RSS growth run {n // 10}..{n}",
            same["growth_mib"],
            "MiB",
            "a new dir per run",
            fresh["growth_mib"],
            "<= 10 MiB",
        ),  # fmt: skip
        Figure(
            "  threads left after the loop",
            len(same["threads"]),
            "",
            "a new dir per run",
            len(fresh["threads"]),
            "0",
        ),  # fmt: skip
    ]


def _metrics(d: str) -> tuple[int, int, float]:
    from atroz_monitor import exporters
    from atroz_monitor.catalog import Catalog
    from atroz_monitor.state import State

    sums = Catalog(d).summaries()
    t0 = time.process_time()
    text = exporters.prometheus(State(), history=sums)
    cpu = time.process_time() - t0
    series = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
    return len(text.encode()), series, cpu


def fig_metrics(sizes: list[int]) -> list[Figure]:
    _metrics(tempfile.mkdtemp(dir=_TMP))  # imports and first-use caches: not the baseline
    base_bytes, base_series, base_cpu = _metrics(tempfile.mkdtemp(dir=_TMP))
    out = []
    for n in sizes:
        size, series, cpu = _metrics(history_dir(n))
        out.append(Figure(f"/metrics over {n:,} runs: size", size / 1e6, "MB", "empty dir",
                          base_bytes / 1e6, "<= 2 MB"))  # fmt: skip
        out.append(Figure("  series", series, "", "empty dir", base_series))
        out.append(Figure("  render CPU", cpu * 1000, "ms", "empty dir", base_cpu * 1000))
    return out


def run(quick: bool = False) -> list[Figure]:
    sizes = [20, 100] if quick else [100, 1_000, 10_000]
    try:
        figs = fig_catalog_build(sizes)
        figs += fig_run_start(sizes, rounds=1 if quick else 5)
        figs += fig_loop(100 if quick else 1_000)
        figs += fig_metrics(sizes)
        return figs
    finally:
        shutil.rmtree(_TMP, ignore_errors=True)
        _DIRS.clear()
