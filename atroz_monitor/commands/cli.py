"""Command line: ``python -m atroz_monitor`` (also the ``atroz-monitor`` script).

Errors in input or arguments: one clear line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence


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


def _nonneg_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return v


def _nonneg_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not v >= 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a non-negative number: {text!r}")
    return v


RUN_USAGE = "atroz-monitor run [--out DIR] [--interval S] [--name NAME] -- CMD [ARG ...]"


def _pruners(args: argparse.Namespace) -> list[object]:
    """Retention for ``serve --prune-every``: one Pruner per served directory."""
    import os

    limits = (args.keep_runs, args.max_bytes, args.older_than)
    if args.prune_every is None:
        if any(v is not None for v in limits):
            raise UsageError("--keep-runs/--max-bytes/--older-than need --prune-every S")
        return []
    if all(v is None for v in limits):
        raise UsageError("--prune-every needs --keep-runs, --max-bytes or --older-than")
    from .retention import Pruner, parse_size

    try:
        max_bytes = parse_size(args.max_bytes) if args.max_bytes is not None else None
    except ValueError as exc:
        raise UsageError(f"--max-bytes: {exc}") from None
    dirs = [p for p in (args.paths or ["atroz-runs"]) if os.path.isdir(p)]
    if not dirs:
        raise UsageError("--prune-every applies to served directories; none was given")
    try:
        return [Pruner(d, keep_runs=args.keep_runs, max_bytes=max_bytes,
                       older_than_days=args.older_than) for d in dirs]  # fmt: skip
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _follow_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--follow-symlinks",
        action="store_true",
        help="read symlinks inside the directories given (off: whoever can write a directory "
        "could point one at a file only you may read)",
    )


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="atroz-monitor", description="Per-phase observability for pipelines.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for add in (_add_demo, _add_report, _add_serve, _add_export, _add_run, _add_prune, _add_ack):
        add(sub)  # in this order in --help
    return p


def _add_demo(sub: argparse._SubParsersAction[_Parser]) -> None:
    """The ``demo`` subcommand."""
    d = sub.add_parser(
        "demo",
        help="run a simulated 10-phase pipeline with its live dashboard",
        description="Run a simulated 10-phase document-analysis pipeline, serve its live "
        "dashboard at http://127.0.0.1:8765/ (or the next free port) while it runs and after, "
        "until Ctrl-C, and print a per-phase summary.",
    )
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
    d.add_argument(
        "--no-serve",
        action="store_true",
        help="do not serve the live dashboard; print the summary and exit",
    )


def _add_report(sub: argparse._SubParsersAction[_Parser]) -> None:
    """The ``report`` subcommand."""
    r = sub.add_parser(
        "report",
        help="evaluate runs from their logs (text, markdown, json, html)",
        description="Evaluate a run from its log: the latest run found is the subject (or "
        "--run ID) and the other runs found are its history.",
    )
    r.add_argument("paths", nargs="+", metavar="PATH", help="run logs or directories of them")
    r.add_argument("--run", metavar="ID", help="the run to report (default: the latest)")
    r.add_argument("--format", choices=("text", "markdown", "json", "html"), default="text")
    r.add_argument("--output", "-o", metavar="FILE", help="write here instead of stdout")
    r.add_argument(
        "--depth",
        type=_nonneg_int,
        default=1,
        metavar="N",
        help="sub-phase levels shown (default 1; 0 = top level only)",
    )
    r.add_argument("--alerts", metavar="FILE", help="alert rules (toml/json) judged on replay")
    _add_report_comparison(r)
    r.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour (auto: on a terminal, unless NO_COLOR is set)",
    )
    r.add_argument(
        "--errors",
        type=_nonneg_int,
        default=10,
        metavar="N",
        help="errors and warnings listed (default 10)",
    )
    _follow_flag(r)


def _add_report_comparison(r: argparse.ArgumentParser) -> None:
    """``report``'s options that compare the run with a baseline or another run."""
    r.add_argument(
        "--baseline",
        nargs="+",
        metavar="PATH",
        help="baseline run logs to compare the subject with",
    )
    r.add_argument(
        "--compare",
        metavar="RUN",
        help="compare the run side by side with another: a run id of the input, or a log "
        "file or directory (its latest run)",
    )
    r.add_argument(
        "--baseline-tag",
        action="append",
        metavar="KEY=VALUE",
        help="history and baseline only from runs with this tag (split at the first =; "
        "repeatable: all must match)",
    )
    r.add_argument(
        "--metric",
        choices=("duration", "cpu", "rss", "items_per_s"),
        default="duration",
        help="what --baseline compares (default duration)",
    )
    r.add_argument(
        "--threshold",
        type=_nonneg_float,
        metavar="PCT",
        help="tolerance in %% over the baseline (default 10 vs p95 of >= 5 runs, 25 vs fewer)",
    )
    r.add_argument(
        "--noise-floor",
        type=_nonneg_float,
        metavar="X",
        help="absolute difference never flagged, in the metric's unit "
        "(default 5 ms for duration and cpu, 1 MiB for rss)",
    )
    r.add_argument(
        "--fail-on-regression",
        action="store_true",
        help="exit 1 when a regression is flagged (CI gate)",
    )


def _add_serve(sub: argparse._SubParsersAction[_Parser]) -> None:
    """The ``serve`` subcommand."""
    s = sub.add_parser("serve", help="serve the live dashboard and JSON API over run logs")
    s.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="run logs or directories of them (default ./atroz-runs)",
    )
    s.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1; others need a token)",
    )
    s.add_argument(
        "--port", type=int, default=None, help="port (default 8765, or the next free one)"
    )
    s.add_argument(
        "--token-file",
        metavar="FILE",
        help="file holding the access token (or set ATROZ_MONITOR_TOKEN)",
    )
    s.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a Host name clients may use besides loopback names (repeatable)",
    )
    s.add_argument("--access-log", action="store_true", help="log each request to stderr")
    s.add_argument("--alerts", metavar="FILE", help="alert rules evaluated over the runs")
    _follow_flag(s)
    s.add_argument(
        "--prune-every",
        type=_positive,
        metavar="S",
        help="apply retention to the served directories every S seconds "
        "(off by default; with --keep-runs/--max-bytes/--older-than)",
    )
    s.add_argument("--keep-runs", type=_nonneg_int, metavar="N", help="retention: runs kept")
    s.add_argument("--max-bytes", metavar="SIZE", help="retention: bytes kept (500M, 2G)")
    s.add_argument(
        "--older-than",
        type=_nonneg_float,
        metavar="DAYS",
        help="retention: remove runs older than this",
    )


def _add_export(sub: argparse._SubParsersAction[_Parser]) -> None:
    """The ``export`` subcommand."""
    x = sub.add_parser(
        "export",
        help="export runs as a Chrome/Perfetto trace, Prometheus text or OTLP/JSON",
        description="Export run logs for other tools: chrome-trace (Perfetto UI, "
        "chrome://tracing) and otlp-json (an OpenTelemetry ExportTraceServiceRequest) export "
        "one run (the latest, or --run ID); prometheus exports every run read.",
    )
    x.add_argument("paths", nargs="+", metavar="PATH", help="run logs or directories of them")
    x.add_argument("--format", required=True, choices=("chrome-trace", "prometheus", "otlp-json"))
    x.add_argument("--run", metavar="ID", help="the run to export (default: the latest)")
    x.add_argument("--output", "-o", metavar="FILE", help="write here instead of stdout")
    _follow_flag(x)


def _add_run(sub: argparse._SubParsersAction[_Parser]) -> None:
    """The ``run`` subcommand."""
    u = sub.add_parser(
        "run",
        help="run any command as a monitored run (its whole process tree sampled)",
        usage=RUN_USAGE,
        description="Run CMD as one monitored run: its process tree sampled, stdin, stdout "
        "and stderr passed through untouched, SIGHUP/SIGINT/SIGTERM/SIGQUIT forwarded to its "
        "process group (killed 10 s later if it is still running), its exit code or "
        "signal recorded as the run's status. Python steps inside it that use "
        "atroz_monitor.phase join the run. Exits with CMD's exit code (128+N for signal N; "
        "127 when CMD is not found, 126 when it cannot be executed).",
    )
    u.add_argument(
        "--out",
        default="atroz-runs",
        metavar="DIR",
        help="directory for the run log (default ./atroz-runs)",
    )
    u.add_argument(
        "--interval",
        type=_positive,
        default=0.5,
        metavar="S",
        help="sampling interval in seconds (default 0.5)",
    )
    u.add_argument("--name", metavar="NAME", help="run name (default: the command line)")
    # REMAINDER: everything from the command on is the command's, options included.
    u.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD [ARG ...]")


def _size(text: str) -> int:
    from .retention import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_prune(sub: argparse._SubParsersAction[_Parser]) -> None:
    """The ``prune`` subcommand."""
    pr = sub.add_parser(
        "prune",
        help="apply retention to a log directory (remove whole old runs, compress)",
        description="Remove whole runs from a log directory, oldest first, until every limit "
        "given holds; a run still being written is never removed, files that are not logs "
        "never. Prints what it removed (or would remove, with --dry-run) and the bytes freed.",
    )
    pr.add_argument("dir", metavar="DIR", help="the log directory")
    pr.add_argument(
        "--keep-runs", type=_nonneg_int, metavar="N", help="keep the N most recent runs"
    )
    pr.add_argument(
        "--max-bytes",
        type=_size,
        metavar="SIZE",
        help="keep the directory's logs under SIZE (bytes, or 500M, 2G: binary multiples)",
    )
    pr.add_argument(
        "--older-than",
        type=_nonneg_float,
        metavar="DAYS",
        help="remove runs last written more than DAYS days ago",
    )
    pr.add_argument(
        "--dry-run", action="store_true", help="list what would be removed; remove nothing"
    )
    pr.add_argument(
        "--compress", action="store_true", help="gzip the finished plain logs that are kept"
    )


def _add_ack(sub: argparse._SubParsersAction[_Parser]) -> None:
    """The ``ack`` subcommand."""
    a = sub.add_parser(
        "ack",
        help="acknowledge an alert, or clear the acknowledged ones, from any shell",
        usage="atroz-monitor ack PATH ALERT_ID [--note TEXT] [--run ID]\n"
        "       atroz-monitor ack PATH --clear [--note TEXT] [--run ID]",
        description="Append an alert_ack (or, with --clear, an alerts_cleared) event to a "
        "run's log, stamped with your user name, the time and the note: the page, report, "
        "the API and the running pipeline see it. PATH is a run log, or a directory (its "
        "most recently written log). The run is --run, else the latest run of that log "
        "holding the alert (--clear: the latest run).",
    )
    a.add_argument("path", metavar="PATH", help="a run log, or a directory of them")
    a.add_argument("alert_id", nargs="?", metavar="ALERT_ID", help="the alert to acknowledge")
    a.add_argument("--note", metavar="TEXT", help="why (kept in the log, up to 500 characters)")
    a.add_argument("--run", metavar="ID", help="the run (default: see above)")
    a.add_argument(
        "--clear",
        action="store_true",
        help="hide the run's acknowledged alerts from the active list",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        command = _COMMANDS.get(args.command)
        if command is not None:
            return command(args)
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


def _demo(args: argparse.Namespace) -> int:
    from . import demo

    if args.fail is not None and args.fail not in {k for k, _, _ in demo.PLAN}:
        raise UsageError(f"--fail: unknown phase {args.fail!r} (one of P00 ... P09)")
    return demo.main(args.duration, args.fail, args.out, args.interval, serve=not args.no_serve)


def _report(args: argparse.Namespace) -> int:
    from ..view import report_model
    from . import report

    try:
        return report.main(args)
    except report_model.ReportError as exc:
        raise UsageError(f"report: {exc}") from None


def _serve(args: argparse.Namespace) -> int:
    from ..surface import server

    if args.port is not None and not 0 <= args.port <= 65535:
        raise UsageError(f"--port: must be between 0 and 65535, got {args.port}")
    pruners = _pruners(args)
    return server.serve_main(
        args.paths,
        args.host,
        args.port,
        token_file=args.token_file,
        allow_hosts=args.allow_host,
        access_log=args.access_log,
        alerts=args.alerts,
        pruners=pruners,
        prune_every=args.prune_every,
        follow_symlinks=args.follow_symlinks,
    )


def _export(args: argparse.Namespace) -> int:
    from . import export

    try:
        return export.main(
            args.paths,
            args.format,
            args.run,
            args.output,
            follow_symlinks=args.follow_symlinks,
        )
    except export.ExportError as exc:
        raise UsageError(f"export: {exc}") from None


def _run(args: argparse.Namespace) -> int:
    from . import runcmd

    cmd = list(args.cmd)
    if cmd[:1] == ["--"]:  # argparse keeps the separator in a REMAINDER (<= 3.12)
        cmd = cmd[1:]
    if not cmd:
        raise UsageError(f"run: no command given; usage: {RUN_USAGE}")
    return runcmd.main(cmd, args.out, args.interval, args.name)


def _ack(args: argparse.Namespace) -> int:
    from ..record import ack

    if args.clear == (args.alert_id is not None):
        raise UsageError("ack: give an ALERT_ID or --clear (one of the two)")
    try:
        return ack.main(args.path, args.alert_id, args.note, args.run, args.clear)
    except ack.AckError as exc:
        raise UsageError(f"ack: {exc}") from None


def _prune(args: argparse.Namespace) -> int:
    from . import retention

    try:
        return retention.main(args)
    except ValueError as exc:
        raise UsageError(f"prune: {exc}") from None


# Each subcommand's work lives in the module that owns it; these adapt the arguments.
_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "demo": _demo,
    "report": _report,
    "serve": _serve,
    "export": _export,
    "run": _run,
    "ack": _ack,
    "prune": _prune,
}
