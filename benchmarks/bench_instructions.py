"""Instruction counts under valgrind: `report` against the bare loop, figures that do not
move with the machine's pace.

Time on a shared VM moves by a third between minutes; the number of instructions a process
executes does not (valgrind's cachegrind counts them, `--cache-sim=no`). This runs the bare
``for line in f: json.loads(line)`` loop and ``python -m atroz_monitor report`` over the
synthetic logs of bench_report at two sizes, and prints the instructions per event of each
(the difference between the sizes, so the start-up and the report's fixed work drop out)
and the whole-run ratio at each size. Instructions are not time: the C JSON parser runs
more of them per cycle than the interpreter does, so this complements the CPU-time figure
of bench_report and does not replace it. Needs valgrind (Debian package ``valgrind``); not
part of the default run (``python -m benchmarks bench_instructions``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

from .bench_report import _FLOOR, ROOT, make_log
from .common import Figure

_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


def _instructions(args: list[str]) -> int:
    env = dict(os.environ, PYTHONPATH=ROOT)
    cmd = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
           sys.executable, *args]  # fmt: skip
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True)
    m = _REFS.search(p.stderr)
    if p.returncode != 0 or m is None:
        raise RuntimeError(f"valgrind {args[:2]} failed: {p.stderr[-500:]}")
    return int(m.group(1).replace(",", ""))


def run(quick: bool = False) -> list[Figure]:
    if shutil.which("valgrind") is None:
        print("  (valgrind not installed: apt-get install valgrind)")
        return []
    small, large = (20_000, 60_000) if quick else (100_000, 300_000)
    tmp = tempfile.mkdtemp(prefix="atroz-instr-")
    jobs = []
    for n in (small, large):
        path = os.path.join(tmp, f"e{n}.jsonl")
        make_log(path, n)
        jobs.append((n, "floor", ["-c", _FLOOR, path]))
        jobs.append((n, "report", ["-m", "atroz_monitor", "report", path, "--color", "never"]))
    # Counts do not depend on what else runs, so two at a time.
    with ThreadPoolExecutor(2) as pool:
        got = list(pool.map(lambda j: _instructions(j[2]), jobs))
    counts = {(n, k): c for (n, k, _), c in zip(jobs, got, strict=True)}
    shutil.rmtree(tmp, ignore_errors=True)
    span = large - small
    per_floor = (counts[large, "floor"] - counts[small, "floor"]) / span
    per_report = (counts[large, "report"] - counts[small, "report"]) / span
    figs = [
        Figure("report: instructions per event (marginal)", per_report, "instr",
               "bare json.loads loop", per_floor),
    ]  # fmt: skip
    for n in (small, large):
        figs.append(
            Figure(
                f"  report on {n:,} events, instructions",
                counts[n, "report"] / 1e9,
                "G",
                "bare loop",
                counts[n, "floor"] / 1e9,
            )  # fmt: skip
        )
    return figs


if __name__ == "__main__":
    for fig in run("--quick" in sys.argv):
        print(fig.line())
