"""`report` on large logs: time against a bare JSON parse of the same file, and peak RSS.

A synthetic 1,000,000-event run log in the monitor's own format (10 top-level phases,
300,000 sub-phases, samples, progress, metrics, logs; about 250 MB), then:
- the bare floor: ``for line in f: json.loads(line)`` over it, in a fresh process;
- ``python -m atroz_monitor report FILE`` (text to /dev/null), in a fresh process;
with CPU time (user + system of the child; wall time beside it) and peak RSS for each,
interleaved over rounds. Targets (issue 5): report <= 1.35x the floor's time, peak RSS
<= 150 MB. With --scaling, the same at 10k, 100k and 1M events (time should grow
linearly, memory stay flat).
"""

from __future__ import annotations

import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from .common import Figure

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_log(path: str, n_events: int, seed: int = 1) -> int:
    """Write a realistic run log of about n_events events; returns the event count."""
    rnd = random.Random(seed)
    run = "20261130-120000-bench0"
    pid = 4242
    seq = 0
    t = 1_796_000_000.0
    out = []
    written = 0

    def ev(kind: str, **kw: object) -> None:
        nonlocal seq, written
        seq += 1
        e = {"ev": kind, "ts": round(t, 6), "run": run, "pid": pid, "seq": seq}
        e.update(kw)
        out.append(json.dumps(e, separators=(",", ":")))
        written += 1

    f = open(path, "w")  # noqa: SIM115 (closed at the end; the writer closure appends to it)
    plan = [{"id": f"P{i:02d}", "name": f"Phase {i}"} for i in range(10)]
    ev(
        "run_start",
        v=1,
        name="bench",
        host="bench-host",
        argv=["pipeline.py", "--big"],
        pid_start=1,
        python="3.11",
        cwd="/srv",
        plan=plan,
        meta={"dataset": "n=1e6"},
        sample_interval=0.1,
        ncpu=2,
    )
    per_root = max(1, (n_events - 20) // 10)
    span_n = 0
    for r in range(10):
        span_n += 1
        root = f"{pid}.{span_n}"
        ev(
            "phase_start",
            span=root,
            phase=f"P{r:02d}",
            name=f"Phase {r}",
            parent=None,
            thread="MainThread",
        )
        start_written = written
        items = 0
        while written - start_written < per_root:
            x = rnd.random()
            if x < 0.6:
                span_n += 1
                s = f"{pid}.{span_n}"
                key = f"P{r:02d}.item"
                ev("phase_start", span=s, phase=key, name="item", parent=root, thread="MainThread")
                t += 0.0004
                ev(
                    "phase_end",
                    span=s,
                    phase=key,
                    name="item",
                    parent=root,
                    status="completed" if rnd.random() > 0.01 else "failed",
                    duration_ms=round(rnd.uniform(0.1, 0.8), 3),
                    cpu_ms=0.3,
                    rss_bytes=200_000_000,
                    peak_rss_bytes=200_100_000,
                    rss_start_bytes=199_000_000,
                    items=1,
                )
                items += 1
            elif x < 0.75:
                t += 0.01
                ev(
                    "sample",
                    cpu_s=round(t % 1000, 2),
                    cpu_pct=round(rnd.uniform(50, 100), 2),
                    rss_bytes=200_000_000 + rnd.randrange(10_000_000),
                    threads=3,
                    io_read_bytes=1000,
                    io_write_bytes=2000,
                    children=0,
                    children_cpu_s=0.0,
                    children_rss_bytes=0,
                    sys_cpu_pct=60.5,
                    sys_mem_pct=12.1,
                    mem_total_bytes=25_000_000_000,
                    spans=[root],
                )
            elif x < 0.9:
                ev("progress", span=root, phase=f"P{r:02d}", items=items, total=per_root)
            elif x < 0.95:
                ev(
                    "metric",
                    name="score",
                    value=round(rnd.random(), 4),
                    span=root,
                    phase=f"P{r:02d}",
                )
            else:
                ev(
                    "log",
                    level="warning",
                    msg=f"document {items} has no text layer",
                    source="logging",
                    logger="pipeline",
                    span=root,
                    phase=f"P{r:02d}",
                )
            if len(out) >= 10_000:
                f.write("\n".join(out) + "\n")
                out.clear()
        ev(
            "phase_end",
            span=root,
            phase=f"P{r:02d}",
            name=f"Phase {r}",
            parent=None,
            status="completed",
            duration_ms=1000.0,
            cpu_ms=900.0,
            items=items,
        )
    ev("run_end", status="completed", duration_ms=10_000.0, counters={})
    f.write("\n".join(out) + "\n")
    f.close()
    return written


_FLOOR = """
import json, sys
loads = json.loads
with open(sys.argv[1], "rb") as f:
    for line in f:
        loads(line)
"""


# The child reports its own peak RSS (VmHWM) on exit. ru_maxrss from wait4 would not do:
# Linux carries the forking parent's high-water mark into the child across exec, so every
# child of a big benchmark process would report the benchmark's own size.
_WRAP = """
import runpy, sys
def _hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            sys.stderr.write("VMHWM %d\\n" % int(line.split()[1]))
mode, target = sys.argv[1], sys.argv[2]
sys.argv = sys.argv[2:]
try:
    if mode == "module":
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    else:
        exec(compile(target, "<floor>", "exec"), {"__name__": "__main__"})
finally:
    _hwm()
"""


def _child(args: list[str]) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system) and peak RSS (MB) of a fresh child
    process: ``["module", name, *argv]`` or ``["code", source, *argv]``."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", _WRAP, *args], stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, env=env, text=True)  # fmt: skip
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # children run one at a time
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if p.returncode != 0:
        raise RuntimeError(f"{args[:2]} failed: {p.stderr[-500:]}")
    kib = [int(x.split()[1]) for x in p.stderr.splitlines() if x.startswith("VMHWM ")]
    return wall, cpu, kib[-1] / 1024 if kib else float("nan")


def measure(n: int, rounds: int) -> dict[str, float]:
    """Medians over interleaved rounds: wall and CPU seconds and peak RSS of the bare loop
    and of ``report``, the ratio of CPU time per round, and the file's size."""
    tmp = tempfile.mkdtemp(prefix="atroz-report-")
    path = os.path.join(tmp, "big.jsonl")
    make_log(path, n)
    size = os.path.getsize(path)
    vals: dict[str, list[float]] = {}
    for _ in range(rounds):  # interleaved, so machine noise hits both alike
        fw, fc, fm = _child(["code", _FLOOR, path])
        rw, rc, rm = _child(["module", "atroz_monitor", "report", path, "--color", "never"])
        for k, v in (("floor_wall", fw), ("floor_cpu", fc), ("floor_mb", fm), ("wall", rw),
                     ("cpu", rc), ("mb", rm), ("ratio", rc / fc)):  # fmt: skip
            vals.setdefault(k, []).append(v)
    os.unlink(path)
    out = {k: statistics.median(v) for k, v in vals.items()}
    out["size"] = size
    return out


def run(quick: bool = False, scaling: bool = True) -> list[Figure]:
    figs = []
    n = 100_000 if quick else 1_000_000
    m = measure(n, 1 if quick else 5)
    # CPU time, as for phase(): both are single-threaded, and CPU time is what the work
    # costs; wall time on this shared machine also holds whatever else ran meanwhile.
    figs.append(
        Figure(
            f"report on {n:,} events ({m['size'] / 1e6:.0f} MB), CPU",
            m["cpu"],
            "s",
            "bare json.loads loop",
            m["floor_cpu"],
            "<= 1.35x",
        )
    )
    figs.append(Figure("  median of the per-round ratios", m["ratio"], "x", target="<= 1.35x"))
    figs.append(Figure("  the same, wall", m["wall"], "s", "bare json.loads loop", m["floor_wall"]))
    figs.append(Figure("  report peak RSS", m["mb"], "MB", "bare loop peak RSS", m["floor_mb"],
                       "<= 150 MB"))  # fmt: skip
    if scaling and not quick:
        for k in (10_000, 100_000):
            m = measure(k, 3)
            figs.append(
                Figure(
                    f"  scaling: report on {k:,} events, CPU",
                    m["cpu"],
                    "s",
                    "bare loop",
                    m["floor_cpu"],
                )  # fmt: skip
            )
            figs.append(Figure(f"  scaling: report on {k:,} events, peak RSS", m["mb"], "MB"))
    return figs


if __name__ == "__main__":
    for fig in run("--quick" in sys.argv, "--scaling" in sys.argv):
        print(fig.line())
