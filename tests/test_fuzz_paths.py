"""Hostile values in a log, followed along the whole read path: any JSON value (a wrong
type, NaN, an infinity, 1e308, a huge or negative number) in any field of any line goes
through the reducer, the snapshot, every report format, every export format and every API
route; none of them may raise or answer 5xx, and what is written stays valid JSON.

``ATROZ_FUZZ_EXAMPLES`` (default 60) sets the number of hypothesis examples.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atroz_monitor import Monitor
from atroz_monitor.commands import cli
from atroz_monitor.events import dumps
from atroz_monitor.read.loader import load_state
from atroz_monitor.store.source import FileSource
from atroz_monitor.surface import api
from atroz_monitor.view.alerts import rule
from atroz_monitor.view.views import snapshot

EXAMPLES = max(1, int(os.environ.get("ATROZ_FUZZ_EXAMPLES", "60")))

# The values the attacks of issue 14 used, and the kinds of value a type fuzzer tries.
HOSTILE = st.one_of(
    st.sampled_from(
        [
            "x",
            "",
            float("nan"),
            float("inf"),
            float("-inf"),
            1e308,
            -1e308,
            1e300,
            -1.0,
            -1,
            0,
            2**63,
            2**70,
            -(2**70),
            True,
            None,
            [],
            {},
            [1, "a"],
            {"a": float("nan")},
            "1e308",
        ]
    ),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.text(max_size=6),
    st.lists(st.one_of(st.integers(), st.text(max_size=3), st.none()), max_size=3),
    st.dictionaries(st.text(max_size=3), st.one_of(st.integers(), st.floats()), max_size=2),
)

# Fields other tools rely on (docs/FORMAT.md), added where a line lacks them.
FIELDS = (
    "ts", "run", "pid", "seq", "span", "phase", "name", "parent", "status", "duration_ms",
    "cpu_ms", "children_cpu_ms", "rss_bytes", "peak_rss_bytes", "rss_start_bytes", "items",
    "total", "cpu_pct", "children_rss_bytes", "children_cpu_pct", "spans", "level", "msg",
    "path", "bytes", "value", "alert", "rule", "severity", "state", "threshold", "counters",
    "plan", "meta", "tags", "error", "attempt", "reason", "count", "total_ms", "min_ms",
    "max_ms", "threads", "io_read_bytes", "io_write_bytes", "sys_cpu_pct", "sys_mem_pct",
    "gap_s", "prev_pid", "ncpu", "limits", "sample_interval", "v", "exit_code", "argv",
    "open_spans", "raised_ts", "thread", "warnings", "errors",
)  # fmt: skip


def _pipeline(d: Path, i: int) -> None:
    """One real run with every kind of event: nested phases, a failure, samples, a log
    warning, an artifact, a metric, alerts, progress, a hot loop, a job."""
    rules = [rule("phase_failed"), rule("phase_duration", warning=1)]
    with Monitor(d, sample_interval=0.01, alert_rules=rules, plan=[("P00", "A"), ("P01", "B")],
                 tags={"k": "v"}, meta={"i": i}, name="fuzz") as mon:  # fmt: skip
        with mon.phase("P00", name="A") as p:
            p.add_items(5)
            p.set_total(10)
            p.artifact(str(d / "none.bin"))
            p.metric("signals", 12.5)
            with mon.phase("P00.sub"):
                time.sleep(0.03)
            logging.getLogger("fuzz").warning("careful %d", i)
            for _ in range(5):
                with mon.phase("loop"):
                    pass
        try:
            with mon.phase("P01", name="B"):
                raise RuntimeError("boom")
        except RuntimeError:
            pass
        with mon.run("job") as job, job.phase("J0"):
            pass


_BASE: dict[str, list[bytes]] = {}


def _base() -> dict[str, list[bytes]]:
    """The lines of four real runs (three of history), made once per session."""
    if not _BASE:
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            for i in range(4):
                _pipeline(d, i)
            for f in sorted(d.glob("*.jsonl")):
                _BASE[f.name] = f.read_bytes().splitlines()
    return _BASE


def _latest(lines: dict[str, list[bytes]]) -> str:
    """The file of the latest main run (the one `report DIR` is about)."""
    return [k for k in sorted(lines) if json.loads(lines[k][0]).get("name") == "fuzz"][-1]


@st.composite
def mutations(draw: Any) -> list[tuple[str, list[int], list[str], Any]]:
    """1 to 4 replacements (file, lines, key path, value): in one line, or in every line
    of one kind (as a type fuzzer sets one field of one event kind)."""
    base = _base()
    names = sorted(base)
    latest = _latest(base)
    out = []
    for _ in range(draw(st.integers(1, 4))):
        # Mostly the run the report is about; the others are its history and the API's.
        name = latest if draw(st.integers(0, 3)) else draw(st.sampled_from(names))
        n = draw(st.integers(0, len(base[name]) - 1))
        ev = json.loads(base[name][n])
        keys = sorted(ev) + list(FIELDS)
        path = [draw(st.sampled_from(keys))]
        inner = ev.get(path[0])
        if isinstance(inner, dict) and inner and draw(st.booleans()):
            path.append(draw(st.sampled_from(sorted(inner))))
        elif isinstance(inner, list) and inner and draw(st.booleans()):
            path.append(str(draw(st.integers(0, len(inner) - 1))))
        lines = [n]
        if len(path) == 1 and draw(st.booleans()):
            lines = [i for i, b in enumerate(base[name]) if json.loads(b)["ev"] == ev["ev"]]
        out.append((name, lines, path, draw(HOSTILE)))
    return out


def _apply(
    lines: dict[str, list[bytes]], muts: list[tuple[str, list[int], list[str], Any]]
) -> None:
    for name, ns, path, value in muts:
        for n in ns:
            ev = json.loads(lines[name][n])
            target: Any = ev
            try:
                for k in path[:-1]:
                    target = target[int(k)] if isinstance(target, list) else target[k]
                last = path[-1]
                if isinstance(target, list):
                    target[int(last)] = value
                else:
                    target[last] = value
            except (TypeError, KeyError, IndexError, ValueError):
                # an earlier mutation replaced a container on this path: nothing to mutate
                continue
            lines[name][n] = json.dumps(ev).encode()  # NaN and Infinity as Python writes them


def _cli(*args: Any) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def _strict(text: str) -> Any:
    """Parse JSON refusing NaN and Infinity (not JSON: other tools reject them)."""

    def bad(c: str) -> None:
        raise AssertionError(f"{c} in JSON output")

    return json.loads(text, parse_constant=bad)


def _routes(src: FileSource) -> list[tuple[str, str]]:
    """Every route of the API over every run in the source, with its query."""
    runs = [r["id"] for r in json.loads(api.route(src, "GET", "/api/v1/runs").body)["runs"]]
    out = [("/api/v1/runs", ""), ("/api/v1/alerts", ""), ("/api/v1/summary", ""),
           ("/healthz", ""), ("/metrics", ""), ("/api/v1/runs/latest", "")]  # fmt: skip
    for key in ("P00", "P01", "P00.sub", "loop"):
        for what in ("history", "trends"):
            out.append((f"/api/v1/phases/{key}/{what}", ""))
    for rid in runs:
        base = "/api/v1/runs/" + urllib.parse.quote(rid, safe="")
        out.append((base, ""))
        for what in ("progress", "phases", "resources", "errors", "warnings", "artifacts",
                     "alerts"):  # fmt: skip
            out.append((f"{base}/{what}", ""))
        out += [(f"{base}/resources", "since=0"), (f"{base}/resources", "since=1e10")]
        for fmt in ("json", "chrome-trace", "otlp-json"):
            out.append((f"{base}/export", f"format={fmt}"))
        snap = json.loads(api.route(src, "GET", base).body)
        for p in snap.get("phases", [])[:8]:
            span = urllib.parse.quote(str(p.get("span")), safe="")
            out += [(f"{base}/phases/{span}", ""), (f"{base}/phases/{span}/sub-phases", "")]
    return out


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(mutations())
def test_any_value_in_any_field_survives_every_reader(muts: Any) -> None:
    """A log with hostile values in any fields: reducer, snapshot, report (text, markdown,
    json, html, with a baseline and without), export (chrome-trace, prometheus, otlp-json)
    and every API route answer without a traceback or a 5xx, in valid JSON where JSON."""
    lines = {k: list(v) for k, v in _base().items()}
    _apply(lines, muts)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "runs"
        d.mkdir()
        for name, ls in lines.items():
            (d / name).write_bytes(b"\n".join(ls) + b"\n")
        st_, _ = load_state([str(d)])
        for rid in st_.runs:
            _strict(dumps(snapshot(st_, rid, now=time.time())))
        for fmt in ("text", "markdown", "json", "html"):
            code, out, err = _cli("report", d, "--format", fmt, "--color", "always")
            assert (code, err) == (0, ""), err
            if fmt == "json":
                _strict(out)
        code, out, err = _cli("report", d, "--baseline", d, "--format", "json")
        assert (code, err) == (0, ""), err
        _strict(out)
        code, _, err = _cli("report", d, "--fail-on-regression", "--format", "markdown")
        assert code in (0, 1) and "Traceback" not in err
        for fmt in ("chrome-trace", "prometheus", "otlp-json"):
            code, _, err = _cli("export", d, "--format", fmt, "-o", Path(tmp) / "out")
            assert (code, err) == (0, ""), err
            out = (Path(tmp) / "out").read_text()
            if fmt != "prometheus":
                _strict(out)
        src = FileSource([d])
        try:
            for path, query in _routes(src):
                resp = api.route(src, "GET", path, query)
                assert resp.status < 500, (path, query, resp.body[:300])
                ctype = dict(resp.headers).get("Content-Type", "")
                if ctype.startswith("application/json"):
                    _strict(resp.body.decode())
        finally:
            src.close()


@pytest.mark.parametrize(
    ("kind", "field", "value"),
    [
        ("sample", "rss_bytes", "x"),
        ("sample", "rss_bytes", float("nan")),
        ("sample", "rss_bytes", float("inf")),
        ("phase_start", "ts", 1e308),
        ("phase_end", "duration_ms", float("-inf")),
        ("run_start", "ts", 1e300),
        # Found by the property test after the merge of issues 12-16: a nested field.
        ("run_start", ("limits", "cpu_quota"), "x"),
    ],
)
def test_the_issue_14_values_are_read_as_missing_and_counted(
    tmp_path: Path, kind: str, field: str | tuple[str, ...], value: Any
) -> None:
    """Each value the issue reported crashing `report`: the report and the otlp-json export
    succeed, and the value is counted in the data quality as a bad value."""
    d = tmp_path / "runs"
    d.mkdir()
    lines = {k: list(v) for k, v in _base().items()}
    name = _latest(lines)
    n = next(i for i, b in enumerate(lines[name]) if json.loads(b)["ev"] == kind)
    path = list(field) if isinstance(field, tuple) else [field]
    _apply(lines, [(name, [n], path, value)])
    (d / name).write_bytes(b"\n".join(lines[name]) + b"\n")
    run = json.loads(lines[name][0])["run"]
    for fmt in ("text", "json", "html"):
        code, out, err = _cli("report", d / name, "--format", fmt)
        assert (code, err) == (0, "")
    model = _strict(_cli("report", d / name, "--format", "json")[1])
    assert model["quality"]["bad_values"] >= 1
    src = FileSource([d])
    try:
        resp = api.route(src, "GET", f"/api/v1/runs/{run}/export", "format=otlp-json")
        assert resp.status == 200
        _strict(resp.body.decode())
    finally:
        src.close()
