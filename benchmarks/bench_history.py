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
- ``fig_metrics``: ``/metrics`` text (``prometheus.prometheus`` over the catalog) bytes,
  series and CPU time. Target: <= 2 MB for 10,000 runs.

- ``fig_serve_*``: ``serve DIR`` in a child process over the same directories: ready time
  (to the first ``/healthz`` answer; the first start, which builds the catalog, shown
  apart), each route's first answer (one client, right after ready: nothing built on first
  use may cost the first visitor more than the target) and p99 with 8 keep-alive clients
  (wrk when installed), RSS and peak, descriptors, and idle CPU with one stream viewer and
  nothing changing. The history routes are asked as the page asks them too (``before=``
  the newest run). Targets: ready <= 2 s, first answer and p99 <= 100 ms, RSS <= 200 MB,
  <= 64 log descriptors, idle <= 2% of a core.
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
    from atroz_monitor.read.catalog import Catalog

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
from atroz_monitor.read.catalog import Catalog, FILE
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
    from atroz_monitor.read.catalog import Catalog
    from atroz_monitor.read.state import State
    from atroz_monitor.surface import prometheus

    sums = Catalog(d).summaries()
    t0 = time.process_time()
    text = prometheus.prometheus(State(), history=sums)
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


# -- serve (H4) ---------------------------------------------------------------------------

SERVE_ROUTES = [
    "/api/v1/runs",
    "/api/v1/alerts",
    "/api/v1/summary",
    "/metrics",
    "/api/v1/phases/P00/history",
    "/api/v1/phases/P00/trends",
    "/api/v1/phases/P05/history?before={newest}",
    "/api/v1/phases/P05/trends?before={newest}",
    "/",
]
_SERVE: dict[tuple[str, bool], dict[str, Any]] = {}


def _proc_status(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0]) * 1024
    return out


def _proc_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start_serve(d: str) -> tuple[subprocess.Popen[str], int, float]:
    """``serve d --port 0`` in a child; (process, port, seconds until /healthz answered)."""
    import http.client

    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("ATROZ_MONITOR_TOKEN", None)
    t0 = time.monotonic()
    p = subprocess.Popen(
        [sys.executable, "-m", "atroz_monitor", "serve", d, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    assert p.stdout is not None
    line = p.stdout.readline()
    port = int(line.rsplit(":", 1)[1].strip().rstrip("/"))
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("GET", "/healthz")
    c.getresponse().read()
    c.close()
    return p, port, time.monotonic() - t0


def _route_p99(port: int, path: str, quick: bool) -> float:
    """p99 in ms of ``path`` with 8 keep-alive clients: wrk when installed (a C client:
    the figure is the server's), else 8 Python threads."""
    if shutil.which("wrk"):
        from .bench_server import run_wrk

        return run_wrk(f"http://127.0.0.1:{port}{path}", 2 if quick else 5)["p99_ms"]
    import http.client
    import threading

    lat: list[float] = []
    lock = threading.Lock()

    def client() -> None:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine = []
        for _ in range(10 if quick else 40):
            t = time.perf_counter()
            c.request("GET", path)
            c.getresponse().read()
            mine.append((time.perf_counter() - t) * 1000)
        c.close()
        with lock:
            lat.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lat.sort()
    return lat[min(len(lat) - 1, int(len(lat) * 0.99))]


def _first_ms(port: int, path: str) -> float:
    """The first answer of ``path`` after the server is ready, in ms (one client): what a
    cache or an index built on first use costs the first visitor."""
    import http.client

    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    t = time.perf_counter()
    c.request("GET", path)
    c.getresponse().read()
    ms = (time.perf_counter() - t) * 1000
    c.close()
    return ms


def _serve_measure(d: str, quick: bool) -> dict[str, Any]:
    """Every serve figure of one directory from one server process (cached)."""
    key = (d, quick)
    if key in _SERVE:
        return _SERVE[key]
    import http.client

    first, _, first_s = _start_serve(d)  # builds the catalog when there is none
    first.terminate()
    first.wait()
    p, port, ready_s = _start_serve(d)
    logs = sorted(n for n in os.listdir(d) if n.endswith(".jsonl"))
    newest = logs[-1][: -len(".jsonl")] if logs else "none"  # history_dir: ids sort by start
    try:
        first = {path: _first_ms(port, path.format(newest=newest)) for path in SERVE_ROUTES}
        p99 = {path: _route_p99(port, path.format(newest=newest), quick) for path in SERVE_ROUTES}
        status = _proc_status(p.pid)
        fds = len(os.listdir(f"/proc/{p.pid}/fd"))
        # Idle: one viewer on the stream, nothing changing.
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        c.request("GET", "/api/v1/stream")
        resp = c.getresponse()
        resp.fp.readline()
        time.sleep(2.0)  # let the first snapshot and status checks settle
        cpu0, t0 = _proc_cpu(p.pid), time.monotonic()
        time.sleep(5.0 if quick else 20.0)
        idle = (_proc_cpu(p.pid) - cpu0) / (time.monotonic() - t0) * 100.0
        c.close()
    finally:
        p.terminate()
        p.wait()
    out = {
        "first_s": first_s,
        "ready_s": ready_s,
        "first": first,
        "p99": p99,
        "rss": status.get("VmRSS", 0),
        "hwm": status.get("VmHWM", 0),
        "fds": fds,
        "idle_pct": idle,
    }
    _SERVE[key] = out
    return out


def _serve_pairs(sizes: list[int], quick: bool) -> list[tuple[int, dict[str, Any], dict[str, Any]]]:
    base = _serve_measure(_empty_dir(), quick)
    return [(n, _serve_measure(history_dir(n), quick), base) for n in sizes]


def _empty_dir() -> str:
    d = os.path.join(_TMP, "empty")
    os.makedirs(d, exist_ok=True)
    return d


def fig_serve_ready(sizes: list[int], quick: bool = False) -> list[Figure]:
    out = []
    for n, m, base in _serve_pairs(sizes, quick):
        out.append(Figure(f"serve ready, {n:,} runs (catalog present)", m["ready_s"], "s",
                          "empty dir", base["ready_s"], "<= 2 s"))  # fmt: skip
        out.append(Figure(f"  first serve, {n:,} runs (builds the catalog)", m["first_s"], "s",
                          "empty dir", base["first_s"]))  # fmt: skip
    return out


def fig_serve_p99(sizes: list[int], quick: bool = False) -> list[Figure]:
    out = []
    for n, m, base in _serve_pairs(sizes, quick):
        for path in SERVE_ROUTES:
            out.append(Figure(f"serve p99 {path}, {n:,} runs, 8 clients", m["p99"][path], "ms",
                              "empty dir", base["p99"][path], "<= 100 ms"))  # fmt: skip
    return out


def fig_serve_first(sizes: list[int], quick: bool = False) -> list[Figure]:
    out = []
    for n, m, base in _serve_pairs(sizes, quick):
        for path in SERVE_ROUTES:
            out.append(Figure(f"serve first answer {path}, {n:,} runs", m["first"][path], "ms",
                              "empty dir", base["first"][path], "<= 100 ms"))  # fmt: skip
    return out


def fig_serve_rss(sizes: list[int], quick: bool = False) -> list[Figure]:
    out = []
    for n, m, base in _serve_pairs(sizes, quick):
        out.append(Figure(f"serve RSS, {n:,} runs", m["rss"] / 2**20, "MiB", "empty dir",
                          base["rss"] / 2**20, "<= 200 MB"))  # fmt: skip
        out.append(Figure(f"  peak RSS (VmHWM), {n:,} runs", m["hwm"] / 2**20, "MiB",
                          "empty dir", base["hwm"] / 2**20))  # fmt: skip
    return out


def fig_serve_fds(sizes: list[int], quick: bool = False) -> list[Figure]:
    return [
        Figure(f"serve descriptors, {n:,} runs", m["fds"], "", "empty dir", base["fds"], "<= 64")
        for n, m, base in _serve_pairs(sizes, quick)
    ]


def fig_serve_idle(sizes: list[int], quick: bool = False) -> list[Figure]:
    return [
        Figure(f"serve idle CPU, {n:,} runs", m["idle_pct"], "%", "empty dir", base["idle_pct"])
        for n, m, base in _serve_pairs(sizes, quick)
    ]


def run(quick: bool = False) -> list[Figure]:
    sizes = [20, 100] if quick else [100, 1_000, 10_000]
    try:
        figs = fig_catalog_build(sizes)
        figs += fig_run_start(sizes, rounds=1 if quick else 5)
        figs += fig_loop(100 if quick else 1_000)
        figs += fig_metrics(sizes)
        figs += fig_serve_ready(sizes, quick)
        figs += fig_serve_first(sizes, quick)
        figs += fig_serve_p99(sizes, quick)
        figs += fig_serve_rss(sizes, quick)
        figs += fig_serve_fds(sizes, quick)
        figs += fig_serve_idle(sizes, quick)
        return figs
    finally:
        shutil.rmtree(_TMP, ignore_errors=True)
        _DIRS.clear()
        _SERVE.clear()
