"""``python -m benchmarks [--quick] [--write] [NAME ...]``: run the benchmarks.

Every figure is measured against its baseline in the same run and printed as a ratio.
``--quick`` shortens every benchmark (CI runs it so they never rot; it checks that they
run, not their figures). ``--write`` rewrites the generated tables in docs/PERFORMANCE.md
with the machine, Python version and command.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import time

from .common import Figure

MODULES = [
    "bench_phase",
    "bench_count",
    "bench_sampler",
    "bench_import",
    "bench_memory",
    "bench_evaluate",
    "bench_report",
    "bench_server",
    "bench_insights",
    "bench_history",
]
# Run only when named: slow, and needing a tool the default run does not (valgrind).
OPTIONAL = ["bench_instructions"]
DOC = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "PERFORMANCE.md"
)
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.system()}"


def _table(results: dict[str, list[Figure]], cmd: str) -> str:
    lines = [
        START,
        f"Measured {time.strftime('%Y-%m-%d')} on {_machine()}, with `{cmd}`.",
        "",
        "| benchmark | figure | baseline (same run) | ratio | target |",
        "|---|---|---|---|---|",
    ]
    for figs in results.values():
        for f in figs:
            base = f"{f.baseline} {f.baseline_value:.3f} {f.unit}" if f.baseline else ""
            ratio = f"{f.ratio:.3f}" if f.ratio is not None else ""
            spread = f" (spread {f.spread:.0f}%)" if f.spread is not None else ""
            lines.append(
                f"| {f.name.strip()} | {f.value:.3f} {f.unit}{spread} | {base} | {ratio} | "
                f"{f.target} |"
            )
    lines.append(END)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks")
    ap.add_argument("--quick", action="store_true", help="short runs (CI)")
    ap.add_argument("--write", action="store_true", help="rewrite docs/PERFORMANCE.md tables")
    ap.add_argument(
        "names", nargs="*", help=f"a subset of {', '.join(MODULES)}, or {', '.join(OPTIONAL)}"
    )
    args = ap.parse_args(argv)
    names = args.names or MODULES
    unknown = [n for n in names if n not in MODULES and n not in OPTIONAL]
    if unknown:
        ap.error(f"unknown benchmark(s): {', '.join(unknown)}")
    results: dict[str, list[Figure]] = {}
    for name in names:
        print(f"== {name}", flush=True)
        mod = importlib.import_module(f"benchmarks.{name}")
        figs = mod.run(args.quick)
        results[name] = figs
        for f in figs:
            print(f.line(), flush=True)
    if args.write:
        cmd = "python -m benchmarks" + (" --quick" if args.quick else "")
        with open(DOC, encoding="utf-8") as fh:
            doc = fh.read()
        if START in doc and END in doc:
            doc = doc[: doc.index(START)] + _table(results, cmd) + doc[doc.index(END) + len(END) :]
        else:
            doc += "\n" + _table(results, cmd) + "\n"
        with open(DOC, "w", encoding="utf-8") as fh:
            fh.write(doc)
        print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
