"""``report``: evaluate finished, running or crashed runs from their logs.

The command: read the logs (streamed through the reducer, so memory stays bounded however
large the input, with a progress line on a terminal), pick the run and its baseline, build
the model (``view.report_model``), render it (``surface.report_text``, or the page in static
mode for ``--format html``), write it, and gate CI on regressions.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ..events import json_safe
from ..read.state import State
from ..surface.report_text import render_markdown, render_text
from ..view import history, views
from ..view.report_model import ReportError, add_insights, build, run_counts, static_history


def _progress_reader(paths: list[str], st: State, total_bytes: int, show: bool) -> Any:
    from itertools import islice

    from ..read import reader
    from ..read.state import apply_all

    stats = reader.ReadStats(path="")
    done = 0
    for path in paths:
        s = reader.ReadStats(path=path)
        files: list[Any] = []
        events = reader.iter_events(path, s, files.append)
        if not show:
            apply_all(st, events)
        else:
            # In slices, with a progress line between them; the bytes read so far come from
            # the file's position (the stats settle only when the reader ends).
            n = 0
            while True:
                got = apply_all(st, islice(events, 0x10000))
                n += got
                if got < 0x10000:
                    break
                raw = getattr(files[0], "fileobj", files[0])  # a .gz: its compressed bytes
                try:
                    pos = raw.tell()
                except (OSError, ValueError):
                    pos = 0
                pct = min((done + pos) / total_bytes * 100, 100.0)
                sys.stderr.write(
                    f"\rreading {os.path.basename(path)}: {pct:5.1f}% ({stats.events + n:,} events)"
                )
                sys.stderr.flush()
        done += s.bytes
        stats = stats.merge(s)
    if show:
        sys.stderr.write("\r" + " " * 70 + "\r")
    return stats


def load_summaries(paths: Sequence[str], *, follow_symlinks: bool = False) -> list[dict[str, Any]]:
    """Run summaries of ``paths``, oldest first: a directory's from its catalog (built or
    brought up to date from the logs, so a baseline of years of runs reads no log twice),
    a file's by reading it. ReportError when nothing usable is there."""
    from ..read.catalog import Catalog, start_of

    out: list[dict[str, Any]] = []
    files: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            out.extend(Catalog(p).summaries())
        else:
            files.append(p)
    if files:
        st, _, _ = load(files, follow_symlinks=follow_symlinks)
        out.extend(dict(x) for x in history.as_summaries(st))
    if not out:
        raise ReportError(f"no run logs (*.jsonl, *.jsonl.gz) in {', '.join(paths)}")
    out.sort(key=start_of)
    return out


def load(
    paths: Sequence[str], max_phases: int = 10_000, *, follow_symlinks: bool = False
) -> tuple[State, Any, list[str]]:
    """``loader.load`` with a progress line on a terminal for large inputs, its errors worded
    for the command line (ReportError)."""
    from ..read import loader

    def read(files: list[str], st: State) -> Any:
        total = 0
        for f in files:
            try:
                total += os.path.getsize(f)
            except OSError:
                pass
        return _progress_reader(files, st, total, total > 50 * 2**20 and sys.stderr.isatty())

    try:
        return loader.load(paths, max_phases, follow_symlinks=follow_symlinks, read=read)
    except FileNotFoundError as exc:
        raise ReportError(f"no such file or directory: {exc.filename}") from None
    except OSError as exc:
        raise ReportError(f"cannot read {exc.filename}: {exc.strerror}") from None
    except loader.NoRuns as exc:
        raise ReportError(str(exc)) from None


def _quality(stats: Any) -> dict[str, Any]:
    q: dict[str, Any] = stats.to_dict()
    q.pop("path", None)
    return q


def parse_tags(texts: Sequence[str] | None, option: str = "--baseline-tag") -> dict[str, str]:
    """``KEY=VALUE`` strings as a dict, split at the first ``=`` (``dataset=n=1e6`` is
    key ``dataset``, value ``n=1e6``); ReportError on bad syntax or a key given twice."""
    out: dict[str, str] = {}
    for text in texts or ():
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise ReportError(f"{option}: expected KEY=VALUE, got {text!r}")
        if key in out and out[key] != value:
            # AND of two values for one key matches no run: surely a mistake.
            raise ReportError(f"{option}: {key!r} given twice ({out[key]!r} and {value!r})")
        out[key] = value
    return out


def main(args: Any) -> int:
    """The ``report`` command (arguments parsed by cli.py)."""
    # The reader and the reducer make no reference cycles, so the cyclic collector finds
    # nothing, yet over a 1M-event log it ran about 1,500 times while loading (6% of the
    # time) and 150 more while the model was built: off for this short-lived command. Not
    # in load(), which also serves atroz_monitor.load() inside other people's programs.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _main(args)
    finally:
        if was_enabled:
            gc.enable()


# Earlier runs the gate needs without --baseline: those an anomaly needs (analysis).
MIN_HISTORY_FOR_GATE = 3


def _main(args: Any) -> int:
    from ..read.loader import liveness

    tags = parse_tags(getattr(args, "baseline_tag", None))
    follow = bool(getattr(args, "follow_symlinks", False))
    st, stats, files = load(args.paths, follow_symlinks=follow)
    run_id = _subject(st, args.run)
    compare_snap = _compare_target(getattr(args, "compare", None), st, run_id)
    baseline: history.Runs | None = None
    if args.baseline:
        baseline = [
            s for s in load_summaries(args.baseline, follow_symlinks=follow) if s["run"] != run_id
        ]
    if tags:
        # Before anything reads it: the html page's runs list and history follow too.
        st = history.subset(st, lambda r: r.id == run_id or history.matches(r, tags))
    if args.fail_on_regression and baseline is None:
        _check_gate_history(st, run_id)
    replay = _replay_alerts(args.alerts, st, run_id) if args.alerts else None
    now = time.time()
    model = build(
        st,
        run_id,
        now=now,
        alive=liveness(st.runs[run_id]),
        quality=_quality(stats),
        baseline=baseline,
        metric=args.metric,
        threshold=args.threshold,
        noise_floor=args.noise_floor,
        replay_alerts=replay,
        depth=args.depth,
        tags=tags,
    )
    add_insights(model, st, run_id, compare_snap, depth=args.depth)
    _write(args.output, _render(args, model, st, files, run_id, now))
    if args.fail_on_regression:
        return _gate_verdict(model, st, run_id)
    return 0


def _subject(st: State, run: str | None) -> str:
    """The run reported: ``--run``, else the latest; ReportError for an unknown id."""
    if run:
        if run not in st.runs:
            known = ", ".join(sorted(st.runs)[:8])
            raise ReportError(f"--run: no run {run!r} in the input (runs: {known})")
        return run
    return views.latest_run(st) or next(iter(st.runs))


def _check_gate_history(st: State, run_id: str) -> None:
    """``--fail-on-regression`` without ``--baseline`` judges the anomalies against the
    input's own history, which needs as many earlier runs as an anomaly does: fewer would be
    a gate that never fails."""
    earlier = len(history.runs_before(st, run_id))
    if earlier < MIN_HISTORY_FOR_GATE:
        raise ReportError(
            f"--fail-on-regression needs --baseline PATH or at least "
            f"{MIN_HISTORY_FOR_GATE} earlier runs in the input to compare with "
            f"(found {earlier})"
        )


def _replay_alerts(path: str, st: State, run_id: str) -> list[dict[str, Any]]:
    """The alerts the rules in ``path`` raise on replay of the run."""
    from ..view.alerts import evaluate_replay, load_rules

    try:
        rules = load_rules(path)
    except ValueError as exc:
        raise ReportError(str(exc)) from None
    return evaluate_replay(st, run_id, rules)


def _render(
    args: Any, model: dict[str, Any], st: State, files: Sequence[str], run_id: str, now: float
) -> str:
    """The report in ``args.format``."""
    fmt = args.format
    if fmt == "json":
        try:
            return json.dumps(model, indent=1, default=repr, allow_nan=False) + "\n"
        except ValueError:  # a NaN or infinity (a hostile log, an infinite z): null
            return json.dumps(json_safe(model), indent=1, allow_nan=False) + "\n"
    if fmt == "markdown":
        return render_markdown(model)
    if fmt == "html":
        return _render_html(model, st, files, run_id, now)
    out_tty = args.output is None and sys.stdout.isatty()
    color = (args.color == "always" or (args.color == "auto" and out_tty)) and not os.environ.get(
        "NO_COLOR"
    )
    enc = (sys.stdout.encoding or "").lower() if args.output is None else "utf-8"
    return render_text(model, color=color, unicode="utf" in enc, errors_max=args.errors) + "\n"


def _render_html(
    model: dict[str, Any], st: State, files: Sequence[str], run_id: str, now: float
) -> str:
    """The static page: the snapshot, the runs list, history and insights embedded."""
    from ..surface import page

    own = [f for f in files if os.path.basename(f).startswith(run_id)] or (
        files if len(files) == 1 else []
    )
    if own:  # the page's ack command names the log (exactly, when it is known)
        model["snapshot"]["quality"].setdefault("files", [os.path.abspath(f) for f in own])
    rows = [
        _run_row(st, r, now) for r in sorted(st.runs, key=lambda x: _start(st, x), reverse=True)
    ]
    data = {
        "snapshot": model["snapshot"],
        "runs": rows,
        "run_counts": run_counts(rows),
        # The runs before this one, as the live page asks for (?before=) and as the text
        # report's history reads; with the run's tags, also those runs carrying them (the
        # page's "same tags only" switch shows these, computing nothing).
        **static_history(st, run_id, list(model["history"])),
        "generated": now,
        "insights": {"history": model["charts"], "suggestions": model["suggestions"]},
        "compare": model["compare"],
    }
    return page.render_static(data)


def _write(output: str | None, text: str) -> None:
    """``text`` to ``--output`` (never through a planted link), else to stdout."""
    if output:
        from ..record.sinks import nofollow_opener

        try:
            with open(output, "w", encoding="utf-8", opener=nofollow_opener) as f:
                f.write(text)
        except OSError as exc:
            raise ReportError(f"--output: cannot write {output}: {exc.strerror}") from None
    else:
        sys.stdout.write(text)


def _gate_verdict(model: Mapping[str, Any], st: State, run_id: str) -> int:
    """``--fail-on-regression``: 1 (and the regressed keys on stderr) when the baseline
    comparison, or without one the anomalies, flag a key as worse; else 0."""
    if model["comparison"] is not None:
        failed = list(model["comparison"]["regressions"])
        basis = "the baseline"
    else:
        worse = (a for a in model["anomalies"] if a.get("direction") == "worse")
        failed = list(dict.fromkeys(str(a["phase"]) for a in worse))
        basis = f"{len(history.runs_before(st, run_id))} earlier runs (anomaly)"
    if failed:
        sys.stderr.write(f"atroz_monitor report: regression against {basis}: {', '.join(failed)}\n")
        return 1
    return 0


def _start(st: State, rid: str) -> float:
    r = st.runs[rid]
    return r.start if r.start is not None else (r.first_ts or 0.0)


def _run_row(st: State, rid: str, now: float) -> dict[str, Any]:
    from ..read.loader import liveness

    r = st.runs[rid]
    end = r.end if r.end is not None else r.last_ts
    return {
        "id": rid,
        "name": r.info.get("name", rid),
        "status": views.run_status(r, now, liveness(r)),
        "start": r.start,
        "end": r.end,
        "duration_ms": round((end - r.start) * 1000, 3) if end and r.start else None,
        "host": r.info.get("host"),
        "tags": r.info.get("tags") if isinstance(r.info.get("tags"), dict) else {},
    }


def _compare_target(target: str | None, st: State, run_id: str) -> dict[str, Any] | None:
    """The snapshot ``--compare`` names: a run of the input, else the latest run of a log
    file or directory; ReportError when it is neither (or is the subject itself)."""
    from ..read.loader import liveness

    if not target:
        return None
    if target == run_id:
        raise ReportError(f"--compare: {target!r} is the run being reported")
    src = st
    rid: str | None = target
    if target not in st.runs:
        if not os.path.exists(target):
            known = ", ".join(sorted(st.runs)[:8])
            raise ReportError(
                f"--compare: no run {target!r} in the input and no such file (runs: {known})"
            )
        src, _, _ = load([target])
        rid = views.latest_run(src)
        if rid is None or rid == run_id:
            raise ReportError(f"--compare: {target} holds no other run than the subject")
    assert rid is not None
    return views.snapshot(src, rid, now=time.time(), alive=liveness(src.runs[rid]))
