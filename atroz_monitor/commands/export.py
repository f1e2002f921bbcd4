"""``export``: runs in the formats of the tools that take over beyond one machine.

The command reads logs and renders them with ``surface.prometheus`` (every run read, text
exposition 0.0.4 or OpenMetrics 1.0), ``surface.chrome_trace`` (Perfetto, chrome://tracing)
or ``surface.otlp_json`` (an OTLP/JSON ``ExportTraceServiceRequest``); it is the only part
that touches files.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence

from ..surface.chrome_trace import chrome_trace
from ..surface.otlp_json import encode_json, otlp_json
from ..surface.prometheus import prometheus

__all__ = ["FORMATS", "ExportError", "main", "render"]


FORMATS = ("chrome-trace", "prometheus", "otlp-json")


class ExportError(Exception):
    """Input that yields no export: one line on stderr, exit 2."""


def render(
    paths: Sequence[str], fmt: str, run: str | None = None, *, follow_symlinks: bool = False
) -> bytes:
    """Read run logs and render them in ``fmt`` (one of ``FORMATS``); ExportError on bad
    input. Prometheus covers every run read; the trace formats the ``run`` (default: the
    latest)."""
    from ..read import loader
    from ..view import report_model, views
    from . import report

    if fmt not in FORMATS:
        raise ExportError(f"--format: unknown format {fmt!r} (one of {', '.join(FORMATS)})")
    try:
        st, stats, _ = report.load(list(paths), follow_symlinks=follow_symlinks)
    except report_model.ReportError as exc:
        raise ExportError(str(exc)) from None
    now = time.time()
    if fmt == "prometheus":
        statuses = {rid: views.run_status(r, now, loader.liveness(r)) for rid, r in st.runs.items()}
        return prometheus(st, statuses, now=now).encode("utf-8")
    if run is not None and run not in st.runs:
        known = ", ".join(sorted(st.runs)[:8])
        raise ExportError(f"--run: no run {run!r} in the input (runs: {known})")
    rid = run if run is not None else (views.latest_run(st) or next(iter(st.runs)))
    snap = views.snapshot(st, rid, now=now, alive=loader.liveness(st.runs[rid]))
    doc = chrome_trace(snap) if fmt == "chrome-trace" else otlp_json(snap)
    return encode_json(doc) + b"\n"


def main(
    paths: Sequence[str],
    fmt: str,
    run: str | None = None,
    output: str | None = None,
    *,
    follow_symlinks: bool = False,
) -> int:
    """The ``export`` command: stdout unless ``output``; ExportError on bad input."""
    body = render(paths, fmt, run, follow_symlinks=follow_symlinks)
    if output is None:
        sys.stdout.flush()
        sys.stdout.buffer.write(body)
        sys.stdout.buffer.flush()
        return 0
    tmp = f"{output}.tmp{os.getpid()}"
    try:
        # Whole or nothing: a reader (a scraper's textfile collector) never sees half a file.
        with open(tmp, "xb") as f:  # O_EXCL: never written through a link planted at tmp
            f.write(body)
        os.replace(tmp, output)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise ExportError(f"--output: cannot write {output}: {exc.strerror}") from None
    return 0
