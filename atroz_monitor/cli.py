"""Command line: ``python -m atroz_monitor`` (also the ``atroz-monitor`` script).

Errors in input or arguments: one clear line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


class UsageError(Exception):
    """Bad input: one line on stderr, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not v > 0 or v != v or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number: {text!r}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="atroz-monitor", description="Per-phase observability for pipelines.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    d = sub.add_parser("demo", help="run a simulated 10-phase pipeline and summarise it")
    d.add_argument(
        "--duration",
        type=_positive,
        default=30.0,
        metavar="S",
        help="approximate wall time of the whole run in seconds (default 30)",
    )
    d.add_argument("--fail", metavar="PHASE", help="make this phase fail (e.g. P07)")
    d.add_argument(
        "--out",
        default="atroz-runs",
        metavar="DIR",
        help="directory for the run log (default ./atroz-runs)",
    )
    d.add_argument(
        "--interval",
        type=_positive,
        default=0.1,
        metavar="S",
        help="sampling interval in seconds (default 0.1)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            from . import demo

            if args.fail is not None and args.fail not in {k for k, _, _ in demo.PLAN}:
                raise UsageError(f"--fail: unknown phase {args.fail!r} (one of P00 ... P09)")
            return demo.main(args.duration, args.fail, args.out, args.interval)
        parser.print_help(sys.stderr)
        return 2
    except UsageError as exc:
        sys.stderr.write(f"atroz-monitor: {exc}\n")
        return 2
    except OSError as exc:
        sys.stderr.write(f"atroz-monitor: {exc}\n")
        return 2
    except KeyboardInterrupt:
        return 130
