"""`report`: real demo logs, damaged logs, the regression gate, formats, bad input."""

from __future__ import annotations

import contextlib
import html.parser
import io
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atroz_monitor import Monitor
from atroz_monitor.commands import cli, report
from atroz_monitor.surface import report_text
from atroz_monitor.view import views

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=ROOT)


def _demo(out, *extra):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "atroz_monitor",
            "demo",
            "--duration",
            "1",
            "--no-serve",
            "--out",
            str(out),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=ENV,
    )
    return r


def _events(path):
    with open(path, "rb") as f:
        return [json.loads(line) for line in f if line.endswith(b"\n")]


@pytest.fixture(scope="module")
def demo_logs(tmp_path_factory):
    """Three real demo runs: completed, --fail P07, and one killed with SIGKILL mid-run."""
    d = tmp_path_factory.mktemp("demo")
    ok = d / "ok"
    assert _demo(ok).returncode == 0
    failed = d / "failed"
    assert _demo(failed, "--fail", "P07").returncode == 1
    killed = d / "killed"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "atroz_monitor",
            "demo",
            "--duration",
            "4",
            "--no-serve",
            "--out",
            str(killed),
        ],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    # Kill once P03 has ended and P04 is in the log (a bounded poll on the log itself): a
    # phase's start line may wait for the sampler's next tick or the phase's first line.
    while True:
        logs = list(killed.glob("*.jsonl")) if killed.exists() else []
        data = logs[0].read_bytes() if logs else b""
        if (
            b'"phase":"P03","name":"Entity Recognition","parent":null,"status"' in data
            and b'"phase":"P04"' in data
        ):
            break
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    return {
        name: next(p.glob("*.jsonl"))
        for name, p in (("ok", ok), ("failed", failed), ("killed", killed))
    }


def _report(*args):
    """Run the CLI in-process; return (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def test_completed_demo_report_matches_the_log(demo_logs):
    """Every top-level phase of the log is in the text report with its status and
    duration; the header has the run id, status and host; data quality ok."""
    path = demo_logs["ok"]
    evs = _events(path)
    code, out, err = _report("report", path, "--depth", "0", "--color", "never")
    assert code == 0, err
    run = evs[0]
    assert f"run {run['run']}" in out and "status ok" in out and f"host {run['host']}" in out
    assert "data quality: ok" in out
    ends = [e for e in evs if e["ev"] == "phase_end" and e["parent"] is None]
    assert len(ends) == 10
    from atroz_monitor.surface.report_text import fmt_ms

    for e in ends:
        line = next(ln for ln in out.splitlines() if ln.startswith(e["phase"] + " "))
        assert " ok " in line and fmt_ms(e["duration_ms"]) in line
    assert "critical path" in out and "P00 > P01" in out
    assert all(len(ln) <= 100 for ln in out.splitlines())


def test_failed_demo_report_shows_the_failure(demo_logs):
    """--fail P07: P07 FAIL with its error, P08 and P09 pending, the run failed, the
    critical alert listed."""
    code, out, _ = _report("report", demo_logs["failed"], "--depth", "0", "--color", "never")
    assert code == 0
    assert "status FAIL" in out
    assert re.search(r"^P07 .* FAIL ", out, re.M)
    assert re.search(r"^P08 .* - *$", out, re.M) and re.search(r"^P09 .* - *$", out, re.M)
    # The exception once, at the sub-phase that raised it (P07 failed because of it).
    assert "failed P07.rules: DemoFailure: P07: validation rule R-17" in out
    assert "errors and warnings (1 errors," in out
    assert "critical" in out and "phase P07 failed" in out


def test_killed_demo_report_is_interrupted(demo_logs):
    """A demo killed mid-run reports as interrupted, with the phases that ended complete
    and the one it was in interrupted."""
    code, out, _ = _report("report", demo_logs["killed"], "--format", "json")
    assert code == 0
    model = json.loads(out)
    assert model["run"]["status"] == "interrupted"
    st = {p["phase"]: p["status"] for p in model["phases"] if p["depth"] == 0}
    assert all(st[k] == "completed" for k in ("P00", "P01", "P02", "P03"))
    assert "interrupted" in st.values()
    evs = _events(demo_logs["killed"])
    ended = {e["span"] for e in evs if e["ev"] == "phase_end"}
    snap_phases = model["snapshot"]["phases"]
    assert {p["span"] for p in snap_phases if p["status"] == "completed"} == ended


def test_json_report_is_stable_and_documented_keys(demo_logs):
    """--format json has the documented top-level keys and the schema number."""
    code, out, _ = _report("report", demo_logs["ok"], "--format", "json")
    m = json.loads(out)
    assert m["report"] == 1
    for key in (
        "run",
        "quality",
        "monitor",
        "progress",
        "flow",
        "phases",
        "critical_path",
        "slowest",
        "errors",
        "warnings",
        "alerts",
        "anomalies",
        "history",
        "resources",
        "comparison",
        "runs_table",
        "snapshot",
    ):
        assert key in m
    assert len(m["resources"]["ts"]) == len(m["resources"]["cpu_pct"]) > 5


def test_several_runs_give_history_and_a_run_by_run_table(demo_logs, tmp_path):
    """Given several logs, the latest is the subject and the others its history."""
    code, out, _ = _report(
        "report", demo_logs["ok"], demo_logs["failed"], "--depth", "0", "--color", "never"
    )
    assert code == 0
    assert "against history" in out and "run by run" in out


class _Parser(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls = []
        self.scripts = 0
        self.data = []

    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k in ("src", "href") and v and re.match(r"^(https?:)?//", v):
                self.urls.append(v)
        if tag == "script":
            self.scripts += 1

    def handle_data(self, data):
        self.data.append(data)


def test_html_report_is_one_self_contained_escaped_file(tmp_path):
    """--format html parses, references no external URL, and carries a phase named
    <script>alert(1)</script> only as escaped data."""
    log = tmp_path / "x.jsonl"
    with Monitor(log, sample_interval=None) as mon:
        with mon.phase("<script>alert(1)</script>", name="</script><b>x</b>"):
            pass
    out_file = tmp_path / "r.html"
    code, _, err = _report("report", log, "--format", "html", "-o", out_file)
    assert code == 0, err
    text = out_file.read_text()
    p = _Parser()
    p.feed(text)
    assert p.urls == []
    assert "<script>alert(1)</script>" not in text
    assert "</script><b>" not in text
    embedded = re.search(
        r'<script type="application/json" id="atroz-data">(.*?)</script>', text, re.S
    )
    assert embedded is not None
    data = json.loads(embedded.group(1))
    assert data["snapshot"]["phases"][0]["phase"] == "<script>alert(1)</script>"


def test_markdown_tables_are_well_formed(demo_logs):
    """Every Markdown table row has as many cells as its header."""
    code, out, _ = _report(
        "report", demo_logs["failed"], demo_logs["ok"], "--format", "markdown", "--depth", "0"
    )
    assert code == 0
    cells = None
    for line in out.splitlines():
        if line.startswith("|"):
            n = len(re.findall(r"(?<!\\)\|", line)) - 1
            if cells is None:
                cells = n
            assert n == cells, line
        else:
            cells = None
    assert "| P07 | Validation | FAIL |" in out


# -- the regression gate on synthetic logs with known answers --------------------------------


def _synthetic(path, run_id, durations, t0):
    lines = [
        {
            "ev": "run_start",
            "ts": t0,
            "run": run_id,
            "pid": 1,
            "seq": 1,
            "v": 1,
            "plan": [{"id": k, "name": k} for k in durations],
        }
    ]
    t, seq = t0, 1
    for k, d in durations.items():
        seq += 2
        lines.append(
            {
                "ev": "phase_start",
                "ts": t,
                "run": run_id,
                "pid": 1,
                "seq": seq - 1,
                "span": f"1.{seq}",
                "phase": k,
                "name": k,
                "parent": None,
            }
        )
        lines.append(
            {
                "ev": "phase_end",
                "ts": t + d / 1000,
                "run": run_id,
                "pid": 1,
                "seq": seq,
                "span": f"1.{seq}",
                "phase": k,
                "name": k,
                "parent": None,
                "status": "completed",
                "duration_ms": float(d),
                "cpu_ms": d / 2,
            }
        )
        t += d / 1000
    lines.append(
        {"ev": "run_end", "ts": t, "run": run_id, "pid": 1, "seq": seq + 1, "status": "completed"}
    )
    with open(path, "a") as f:
        for e in lines:
            f.write(json.dumps(e) + "\n")


@pytest.mark.parametrize(
    "current, expected_code, regressed",
    [
        ({"A": 100, "B": 200}, 0, []),
        ({"A": 100, "B": 240}, 1, ["B"]),  # 20% over the p95 of 5 baseline runs
        ({"A": 104, "B": 215}, 0, []),  # within 10% of p95
        ({"A": 100.004, "B": 200}, 0, []),  # jitter under the 5 ms floor
    ],
)
def test_regression_gate_exit_codes(tmp_path, current, expected_code, regressed):
    """--fail-on-regression exits 1 exactly when a phase exceeds the baseline p95 by more
    than 10% and more than the noise floor."""
    base = tmp_path / "base.jsonl"
    for i, jitter in enumerate([0, 1, 2, -1, -2]):
        _synthetic(base, f"b{i}", {"A": 100 + jitter, "B": 200 + jitter}, 1000.0 + i * 10)
    cur = tmp_path / "cur.jsonl"
    _synthetic(cur, "cur", current, 5000.0)
    code, out, _ = _report(
        "report", cur, "--baseline", base, "--fail-on-regression", "--format", "json"
    )
    assert code == expected_code
    assert json.loads(out)["comparison"]["regressions"] == regressed


def test_regression_gate_without_baseline_judges_the_directory_history(tmp_path):
    """--fail-on-regression without --baseline: exit 1 naming the phase when the latest run
    is an anomaly (worse) against the earlier runs of its directory, 0 when it is not."""
    d = tmp_path / "runs"
    d.mkdir()
    for i, jitter in enumerate([0, 1, 2, -1, -2]):
        _synthetic(d / f"b{i}.jsonl", f"b{i}", {"A": 100 + jitter, "B": 200}, 1000.0 + i * 10)
    _synthetic(d / "cur.jsonl", "cur", {"A": 400, "B": 200}, 5000.0)
    code, out, err = _report("report", d, "--fail-on-regression", "--format", "json")
    assert code == 1
    assert [a["phase"] for a in json.loads(out)["anomalies"]] == ["A"]
    assert "regression against 5 earlier runs (anomaly): A" in err
    (d / "cur.jsonl").unlink()
    _synthetic(d / "cur.jsonl", "cur", {"A": 101, "B": 200}, 5000.0)
    code, _, err = _report("report", d, "--fail-on-regression", "--format", "json")
    assert (code, err) == (0, "")


def test_regression_gate_without_baseline_or_history_exits_2(tmp_path):
    """--fail-on-regression on a lone run without --baseline: exit 2 with one message, not a
    silent 0 (a CI gate that could never fail)."""
    log = tmp_path / "one.jsonl"
    _synthetic(log, "only", {"A": 100}, 1000.0)
    code, out, err = _report("report", log, "--fail-on-regression")
    assert code == 2 and out == ""
    assert "needs --baseline PATH or at least 3 earlier runs" in err and "(found 0)" in err
    assert "Traceback" not in err


def test_single_baseline_run_uses_25_percent_and_new_missing_are_listed(tmp_path):
    """With one baseline run: +30% is a regression, +20% is not; new and missing phases
    are listed; --threshold overrides."""
    base = tmp_path / "base.jsonl"
    _synthetic(base, "b", {"A": 100, "B": 100, "GONE": 50}, 1000.0)
    cur = tmp_path / "cur.jsonl"
    _synthetic(cur, "c", {"A": 130, "B": 120, "NEW": 10}, 2000.0)
    code, out, _ = _report(
        "report", cur, "--baseline", base, "--fail-on-regression", "--format", "json"
    )
    c = json.loads(out)["comparison"]
    assert code == 1 and c["regressions"] == ["A"]
    assert c["new"] == ["NEW"] and c["missing"] == ["GONE"]
    code, out, _ = _report(
        "report",
        cur,
        "--baseline",
        base,
        "--threshold",
        "50",
        "--fail-on-regression",
        "--format",
        "json",
    )
    assert code == 0


# -- damaged input ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_log(tmp_path_factory):
    d = tmp_path_factory.mktemp("small")
    log = d / "run.jsonl"
    with Monitor(log, plan=["P0", "P1", "P2"], sample_interval=None, run_id="small") as mon:
        for k in ("P0", "P1", "P2"):
            with mon.phase(k):
                with mon.phase(k + ".s"):
                    pass
    return log.read_bytes()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(cut=st.integers(0, 10_000), flips=st.lists(st.integers(0, 10_000), max_size=3))
def test_any_truncation_or_corruption_still_reports(tmp_path, small_log, cut, flips):
    """A log cut anywhere and with bytes corrupted: exit 0 while a run_start survives, and
    every phase whose end line is intact is in the report."""
    data = bytearray(small_log[: cut % (len(small_log) + 1)])
    for f in flips:
        if data:
            data[f % len(data)] = ord("#")
    path = tmp_path / f"d{cut}-{len(flips)}.jsonl"
    path.write_bytes(bytes(data))
    # Intact: a complete line byte-identical to one the monitor wrote.
    written = set(small_log.split(b"\n"))
    intact = []
    for line in bytes(data).split(b"\n")[:-1]:
        if line in written:
            e = json.loads(line)
            if e["ev"] == "phase_end":
                intact.append(e)
    # The subject named: a corrupted run id makes another run, which may start later.
    code, out, err = _report("report", path, "--format", "json", "--run", "small")
    if code == 2:
        assert "no atroz_monitor events" in err or "no run 'small'" in err
        assert "Traceback" not in err and not intact
        return
    assert code == 0, err
    spans = {p["span"]: p for p in json.loads(out)["snapshot"]["phases"]}
    for e in intact:
        assert spans[e["span"]]["status"] == "completed"


@pytest.mark.parametrize("case", ["missing", "emptydir", "empty", "binary", "foreign"])
def test_bad_input_exits_2_with_one_line(tmp_path, case):
    """Missing path, a directory with no logs, an empty file, binary garbage, JSON of
    another format: exit 2, one line on stderr, no traceback (as a real process)."""
    target = tmp_path / case
    if case == "emptydir":
        target.mkdir()
    elif case == "empty":
        target = tmp_path / "empty.jsonl"
        target.write_bytes(b"")
    elif case == "binary":
        target = tmp_path / "bin.jsonl"
        target.write_bytes(bytes(range(256)) * 10)
    elif case == "foreign":
        target = tmp_path / "foreign.jsonl"
        target.write_text('{"level": "info", "message": "hello"}\n[1, 2]\n')
    r = subprocess.run(
        [sys.executable, "-m", "atroz_monitor", "report", str(target)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
    )
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert r.stdout == ""


def test_partly_usable_input_reports_with_the_damage_named(tmp_path, small_log):
    """A torn last line and a corrupt middle line: exit 0 and the data-quality line says
    what was skipped and where."""
    lines = small_log.split(b"\n")
    lines[3] = b"{not json"
    damaged = b"\n".join(lines) + b'{"ev":"phase_sta'
    log = tmp_path / "d.jsonl"
    log.write_bytes(damaged)
    code, out, _ = _report("report", log, "--color", "never")
    assert code == 0
    q = next(ln for ln in out.splitlines() if ln.startswith("data quality"))
    assert "torn last line at byte" in q and "1 corrupt line(s) skipped (line 4)" in q


def test_a_loop_of_sub_phases_is_summed_into_one_row(tmp_path):
    """50 repeats of one key under a parent: three rows shown, the rest as one summed row
    whose count, items and failures are exact."""
    log = tmp_path / "loop.jsonl"
    with Monitor(log, sample_interval=None, alert_rules=[]) as mon:
        with mon.phase("P00"):
            for i in range(50):
                try:
                    with mon.phase("item") as p:
                        p.add_items(2)
                        if i % 10 == 9:
                            raise ValueError(i)
                except ValueError:
                    pass
    code, out, _ = _report("report", log, "--format", "json")
    rows = [p for p in json.loads(out)["phases"] if p["phase"] == "item"]
    assert len(rows) == 4
    agg = rows[-1]
    assert agg["aggregate"] is True and agg["count"] == 47
    assert agg["items"] == 94 and agg["status"] == "failed"
    code, text, _ = _report("report", log, "--color", "never")
    assert "x47 more (5 failed)" in text


def test_progress_line_on_a_large_input_shows_position_and_clears(tmp_path, capsys):
    """With ``show`` (stderr a TTY and a large input) a line with the percentage read and
    the events so far is rewritten in place, then erased; every event is still applied."""
    from atroz_monitor.commands import report
    from atroz_monitor.read.state import State

    path = tmp_path / "big.jsonl"
    n = 150_000  # more than two slices of 65,536 events
    with open(path, "w") as f:
        f.write('{"ev":"run_start","ts":1.0,"run":"r","pid":1,"seq":1,"v":1}\n')
        for i in range(2, n + 1):
            f.write(f'{{"ev":"metric","ts":{i}.0,"run":"r","pid":1,"seq":{i},"name":"m",'
                    f'"value":{i}}}\n')  # fmt: skip
    st = State()
    stats = report._progress_reader([str(path)], st, os.path.getsize(path), True)
    err = capsys.readouterr().err
    lines = [x for x in err.split("\r") if x.startswith("reading")]
    assert len(lines) == 2
    pcts = [float(re.search(r"(\d+\.\d)%", x).group(1)) for x in lines]
    assert 0 < pcts[0] < pcts[1] <= 100.0
    assert "(65,536 events)" in lines[0] and "(131,072 events)" in lines[1]
    assert err.endswith("\r" + " " * 70 + "\r")
    assert stats.events == n and st.runs["r"].events == n
    assert st.runs["r"].metrics["m"]["count"] == n - 1


def _events_file(path, events):
    with open(path, "w") as f:
        for i, e in enumerate(events, 1):
            f.write(json.dumps({"run": "r", "pid": 1, "seq": i, **e}) + "\n")


def test_a_late_phase_is_marked_and_takes_no_share_of_the_run(tmp_path):
    """A daemon's phase written 1.1 s after a 22.7 ms run's end reads "(late)" at the top
    level with no share (not "441%"), and the run's duration stays 22.7 ms."""
    path = tmp_path / "late.jsonl"
    _events_file(path, [
        {"ev": "run_start", "ts": 100.0, "v": 1},
        {"ev": "phase_start", "ts": 100.001, "span": "1.1", "phase": "command",
         "parent": None},
        {"ev": "phase_end", "ts": 100.0225, "span": "1.1", "phase": "command", "parent": None,
         "status": "completed", "duration_ms": 21.5},
        {"ev": "run_end", "ts": 100.0227, "status": "completed", "duration_ms": 22.7},
        {"ev": "phase_start", "ts": 101.1, "span": "9.1", "phase": "daemon",
         "parent": "1.1", "pid": 9},
        {"ev": "phase_end", "ts": 101.2, "span": "9.1", "phase": "daemon", "parent": "1.1",
         "status": "completed", "duration_ms": 100.0, "pid": 9},
    ])  # fmt: skip
    code, out, _ = _report("report", path, "--color", "never")
    assert code == 0
    assert "duration 22.7ms" in out
    row = next(line for line in out.splitlines() if line.startswith("daemon "))
    assert "(late)" in row and "%" not in row
    assert "critical path (21.5ms, 95% of the run)" in out
    assert not any(line.startswith("  daemon") for line in out.splitlines())


def test_a_failed_phase_is_an_error_in_the_demo_summary_and_markdown(tmp_path):
    """A phase failing with an exception (nested: it fails its parent too): the summary's
    total says 1 errors, the failed rows count it, and the markdown header says 1 errors."""
    path = tmp_path / "fail.jsonl"
    err = {"type": "ValueError", "msg": "bad", "tb": "Traceback"}
    _events_file(path, [
        {"ev": "run_start", "ts": 100.0, "v": 1, "plan": [{"id": "P07", "name": "Validation"}]},
        {"ev": "phase_start", "ts": 100.1, "span": "1.1", "phase": "P07", "parent": None},
        {"ev": "phase_start", "ts": 100.2, "span": "1.2", "phase": "P07.rules",
         "parent": "1.1"},
        {"ev": "phase_end", "ts": 100.3, "span": "1.2", "phase": "P07.rules", "parent": "1.1",
         "status": "failed", "duration_ms": 100.0, "error": err},
        {"ev": "phase_end", "ts": 100.4, "span": "1.1", "phase": "P07", "parent": None,
         "status": "failed", "duration_ms": 300.0, "error": err},
        {"ev": "run_end", "ts": 100.5, "status": "failed", "error": err},
    ])  # fmt: skip
    st, _, _ = report.load([str(path)])
    snap = views.snapshot(st, "r", now=200.0)
    table = report_text.phase_table(snap, depth=1)
    assert "0 warnings, 1 errors" in table
    assert [line.split()[-1] for line in table.splitlines() if line.startswith(("P07", "  P07"))
            ] == ["0/1", "0/1"]  # fmt: skip
    code, md, _ = _report("report", path, "--format", "markdown")
    assert code == 0 and "### Errors and warnings (1 errors, 0 warnings)" in md
    assert md.count("| failed | P07.rules | ValueError: bad |") == 1


def test_an_interrupted_phase_reads_at_least_its_childs_time(tmp_path):
    """kill -9 during P03 (no end lines, no run_end): P03's duration reads ">3.69s", the
    least it lasted (until its child P03.pool's end), not "-"."""
    path = tmp_path / "killed.jsonl"
    _events_file(path, [
        {"ev": "run_start", "ts": 10.0, "v": 1},
        {"ev": "phase_start", "ts": 10.5, "span": "1.1", "phase": "P03", "parent": None},
        {"ev": "phase_start", "ts": 10.6, "span": "1.2", "phase": "P03.pool",
         "parent": "1.1"},
        {"ev": "phase_end", "ts": 14.19, "span": "1.2", "phase": "P03.pool", "parent": "1.1",
         "status": "completed", "duration_ms": 3590.0},
    ])  # fmt: skip
    code, out, _ = _report("report", path, "--color", "never")
    assert code == 0
    row = next(line for line in out.splitlines() if line.startswith("P03 "))
    assert ">3.69s" in row
