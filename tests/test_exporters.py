"""Exporters on real demo logs: the Chrome/Perfetto trace, OTLP/JSON, and the `export` command."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from helpers import read_log

from atroz_monitor.store import source
from atroz_monitor.surface import api, exporters, report
from atroz_monitor.view import views

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCALING = os.path.join(ROOT, "docs", "SCALING.md")


def _cli(args: list[str], cwd: Any, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("ATROZ_MONITOR_LOG", None)
    env.pop("ATROZ_MONITOR_RUN", None)
    return subprocess.run(
        [sys.executable, "-m", "atroz_monitor", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two real demo runs (one completed, one with P07 failing), written concurrently."""
    base = tmp_path_factory.mktemp("demo")
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("ATROZ_MONITOR_LOG", None)
    env.pop("ATROZ_MONITOR_RUN", None)
    cmd = [sys.executable, "-m", "atroz_monitor", "demo", "--no-serve"]
    ok = subprocess.Popen(
        [*cmd, "--duration", "2", "--out", str(base / "ok")], env=env, stdout=subprocess.DEVNULL
    )
    bad = subprocess.Popen(
        [*cmd, "--duration", "1", "--fail", "P07", "--out", str(base / "bad")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert ok.wait(timeout=60) == 0
    assert bad.wait(timeout=60) == 1
    out: dict[str, Any] = {"base": base}
    for name in ("ok", "bad"):
        path = next((base / name).glob("*.jsonl"))
        st, _, _ = report.load([str(path)])
        rid = next(iter(st.runs))
        out[name] = {
            "path": path,
            "events": read_log(path),
            "snap": views.snapshot(st, rid, now=time.time(), alive=None),
            "state": st,
        }
    return out


def _x_events(trace: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in trace["traceEvents"] if e["ph"] == "X"]


# -- Chrome trace ------------------------------------------------------------------------------


def test_chrome_trace_is_json_with_every_phase_of_the_log(demo: dict[str, Any]) -> None:
    """The trace survives a JSON round trip and has one complete event per phase_end line,
    in milliseconds display, with the run id in otherData."""
    for name in ("ok", "bad"):
        snap, evs = demo[name]["snap"], demo[name]["events"]
        trace = json.loads(exporters.encode_json(exporters.chrome_trace(snap)))
        ends = {e["span"] for e in evs if e["ev"] == "phase_end"}
        xs = _x_events(trace)
        assert {e["args"]["span"] for e in xs} == ends
        assert len(xs) == len(ends)
        assert trace["displayTimeUnit"] == "ms"
        assert trace["otherData"]["run"] == snap["run"]["id"]
        keys = {e["phase"] for e in evs if e["ev"] == "phase_end"}
        assert {e["args"]["phase"] for e in xs} == keys


def test_chrome_trace_times_match_the_log_and_children_nest(demo: dict[str, Any]) -> None:
    """ts is the phase_start time in microseconds from run_start, dur its duration_ms; a
    sub-phase on its parent's track lies within the parent's slice."""
    evs = demo["ok"]["events"]
    t0 = next(e["ts"] for e in evs if e["ev"] == "run_start")
    starts = {e["span"]: e["ts"] for e in evs if e["ev"] == "phase_start"}
    ends = {e["span"]: e for e in evs if e["ev"] == "phase_end"}
    xs = {e["args"]["span"]: e for e in _x_events(exporters.chrome_trace(demo["ok"]["snap"]))}
    for span, x in xs.items():
        assert x["ts"] == pytest.approx((starts[span] - t0) * 1e6, abs=50)
        assert x["dur"] == pytest.approx(ends[span]["duration_ms"] * 1000, abs=50)
    threads = {e["span"]: (e["pid"], e["thread"]) for e in evs if e["ev"] == "phase_start"}
    same_lane = [s for s, e in ends.items() if e["parent"] and threads[s] == threads[e["parent"]]]
    nested = 0
    for span, x in xs.items():
        parent = xs.get(ends[span]["parent"])
        if parent is not None and (parent["pid"], parent["tid"]) == (x["pid"], x["tid"]):
            assert parent["ts"] <= x["ts"]
            assert x["ts"] + x["dur"] <= parent["ts"] + parent["dur"] + 0.001
            nested += 1
    assert nested == len(same_lane) >= 19  # sub-phases under each of P00-P09


def test_chrome_trace_each_process_is_its_own_lane(demo: dict[str, Any]) -> None:
    """Worker processes' phases sit on their own pid tracks, each process and thread is
    named by metadata, and a flow arrow links each worker phase to its parent."""
    evs = demo["ok"]["events"]
    owner = next(e["pid"] for e in evs if e["ev"] == "run_start")
    workers = {e["pid"] for e in evs if e["ev"] == "process_start"}
    assert workers and owner not in workers
    trace = exporters.chrome_trace(demo["ok"]["snap"])
    xs = _x_events(trace)
    assert {e["pid"] for e in xs if e["args"]["phase"] == "P03.worker"} == workers
    assert {e["pid"] for e in xs if e["args"]["phase"] == "P03"} == {owner}
    meta = [e for e in trace["traceEvents"] if e["ph"] == "M"]
    names = {e["pid"]: e["args"]["name"] for e in meta if e["name"] == "process_name"}
    assert set(names) == workers | {owner}
    assert names[owner].endswith(f"(pid {owner}, owner)")
    threads = {(e["pid"], e["tid"]) for e in meta if e["name"] == "thread_name"}
    assert {(e["pid"], e["tid"]) for e in xs} <= threads
    starts = [e for e in trace["traceEvents"] if e["ph"] == "s"]
    finishes = [e for e in trace["traceEvents"] if e["ph"] == "f"]
    assert len(starts) == len(finishes) == 4  # the demo's four worker chunks
    assert {e["pid"] for e in starts} == {owner}
    assert {e["pid"] for e in finishes} == workers


def test_chrome_trace_counters_and_instant_events(demo: dict[str, Any]) -> None:
    """Samples become CPU and memory counter tracks; warnings, the failed phase's error and
    its log lines become instant events."""
    evs = demo["ok"]["events"]
    trace = exporters.chrome_trace(demo["ok"]["snap"])
    counters = [e for e in trace["traceEvents"] if e["ph"] == "C"]
    samples = [e for e in evs if e["ev"] == "sample"]
    mem = [e for e in counters if e["name"] == "Memory bytes"]
    assert len(mem) == len(samples)
    assert mem[0]["args"]["rss"] == samples[0]["rss_bytes"]
    cpu = [e for e in counters if e["name"] == "CPU %"]
    assert len(cpu) == len([s for s in samples if "cpu_pct" in s]) > 0
    warnings = [e for e in trace["traceEvents"] if e["ph"] == "i" and e["cat"] == "warning"]
    assert len(warnings) == len([e for e in evs if e["ev"] == "log"]) == 5
    assert all(e["s"] == "p" for e in warnings)
    bad = exporters.chrome_trace(demo["bad"]["snap"])
    errors = [e for e in bad["traceEvents"] if e["ph"] == "i" and e["cat"] == "error"]
    assert {e["args"]["phase"] for e in errors} == {"P07", "P07.rules"}
    assert all("R-17" in e["name"] for e in errors)
    failed = [e for e in _x_events(bad) if e["args"]["status"] == "failed"]
    assert {e["args"]["phase"] for e in failed} == {"P07", "P07.rules"}


def _state(events: list[dict[str, Any]]) -> Any:
    from atroz_monitor.read.state import State, apply

    st = State()
    for seq, ev in enumerate(events, 1):
        apply(st, {"run": "r1", "pid": 7, "seq": seq, **ev})
    return st


def test_chrome_trace_overlapping_phases_on_one_thread_get_separate_tracks() -> None:
    """Two top-level phases that overlap on one thread (asyncio tasks) go to two tracks, so
    every track's slices nest."""
    st = _state(
        [
            {"ev": "run_start", "ts": 100.0, "name": "n", "plan": []},
            {"ev": "phase_start", "ts": 100.1, "span": "7.1", "phase": "A", "thread": "Main"},
            {"ev": "phase_start", "ts": 100.2, "span": "7.2", "phase": "B", "thread": "Main"},
            {"ev": "phase_end", "ts": 100.3, "span": "7.1", "phase": "A", "duration_ms": 200.0},
            {"ev": "phase_end", "ts": 100.5, "span": "7.2", "phase": "B", "duration_ms": 300.0},
            {"ev": "run_end", "ts": 100.6, "status": "completed"},
        ]
    )
    trace = exporters.chrome_trace(views.snapshot(st, "r1", now=200.0))
    xs = {e["name"]: e for e in _x_events(trace)}
    assert (xs["A"]["tid"], xs["B"]["tid"]) == (1, 2)
    assert xs["A"]["ts"] == pytest.approx(100_000.0)
    assert xs["B"]["dur"] == pytest.approx(300_000.0)
    tnames = {
        e["tid"]: e["args"]["name"] for e in trace["traceEvents"] if e["name"] == "thread_name"
    }
    assert tnames == {1: "Main", 2: "Main (2)"}


def test_open_phase_ends_at_the_last_event_in_both_trace_formats() -> None:
    """A phase with no end line (its writer died) ends at the run's last event, marked open
    in the Chrome trace and with atroz.phase.ended=false and unset status in OTLP."""
    st = _state(
        [
            {"ev": "run_start", "ts": 100.0, "name": "n", "host": "elsewhere", "plan": []},
            {"ev": "phase_start", "ts": 100.5, "span": "7.1", "phase": "A", "thread": "Main"},
            {"ev": "sample", "ts": 102.0, "rss_bytes": 1000, "spans": ["7.1"]},
        ]
    )
    snap = views.snapshot(st, "r1", now=1000.0)
    assert snap["phases"][0]["status"] == "interrupted"
    x = _x_events(exporters.chrome_trace(snap))[0]
    assert (x["ts"], x["dur"], x["args"]["open"]) == (500_000.0, 1_500_000.0, True)
    span = exporters.otlp_json(snap)["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert span["endTimeUnixNano"] == "102000000000"
    assert span["status"] == {"code": 0}
    attrs = {a["key"]: a["value"] for a in span["attributes"]}
    assert attrs["atroz.phase.ended"] == {"boolValue": False}
    assert attrs["atroz.phase.status"] == {"stringValue": "interrupted"}


# -- OTLP/JSON ---------------------------------------------------------------------------------


def _spans(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for rs in doc["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]]


def _keys(obj: Any) -> set[str]:
    if isinstance(obj, dict):
        return set(obj) | {k for v in obj.values() for k in _keys(v)}
    if isinstance(obj, list):
        return {k for v in obj for k in _keys(v)}
    return set()


def test_otlp_encoding_rules(demo: dict[str, Any]) -> None:
    """Hex ids of 32 and 16 characters (one trace per run), times and intValues as decimal
    strings, lowerCamelCase keys only, kind as the integer 1."""
    doc = json.loads(exporters.encode_json(exporters.otlp_json(demo["bad"]["snap"])))
    spans = _spans(doc)
    assert {s["traceId"] for s in spans} == {exporters.trace_id(demo["bad"]["snap"]["run"]["id"])}
    assert all(re.fullmatch(r"[0-9a-f]{32}", s["traceId"]) for s in spans)
    assert all(re.fullmatch(r"[0-9a-f]{16}", s["spanId"]) for s in spans)
    assert len({s["spanId"] for s in spans}) == len(spans)
    for s in spans:
        assert re.fullmatch(r"[1-9][0-9]{18}", s["startTimeUnixNano"])
        assert int(s["endTimeUnixNano"]) >= int(s["startTimeUnixNano"])
        assert s["kind"] == 1
        for ev in s.get("events", []):
            assert re.fullmatch(r"[1-9][0-9]{18}", ev["timeUnixNano"])
    assert all(re.fullmatch(r"[a-z][A-Za-z]*", k) for k in _keys(doc))
    ints = [
        a["value"]["intValue"]
        for rs in doc["resourceSpans"]
        for a in rs["resource"]["attributes"] + [x for s in spans for x in s["attributes"]]
        if "intValue" in a["value"]
    ]
    assert ints and all(isinstance(v, str) and re.fullmatch(r"-?[0-9]+", v) for v in ints)


def test_otlp_spans_parents_and_one_resource_per_process(demo: dict[str, Any]) -> None:
    """One span per phase_end, every parentSpanId names a span of the request, and each
    process of the run is its own resource with service.name and process.pid."""
    evs, snap = demo["ok"]["events"], demo["ok"]["snap"]
    doc = exporters.otlp_json(snap)
    spans = _spans(doc)
    assert len(spans) == len([e for e in evs if e["ev"] == "phase_end"])
    ids = {s["spanId"] for s in spans}
    with_parent = [s for s in spans if "parentSpanId" in s]
    assert with_parent and all(s["parentSpanId"] in ids for s in with_parent)
    assert len(with_parent) == len([e for e in evs if e["ev"] == "phase_end" and e["parent"]])
    pids = {e["pid"] for e in evs if e["ev"] == "phase_end"}
    res = [
        {a["key"]: a["value"] for a in rs["resource"]["attributes"]} for rs in doc["resourceSpans"]
    ]
    assert {int(r["process.pid"]["intValue"]) for r in res} == pids
    assert all(r["service.name"] == {"stringValue": "demo: document analysis"} for r in res)
    assert all(r["atroz.run.id"] == {"stringValue": snap["run"]["id"]} for r in res)
    assert [r["atroz.process.owner"]["boolValue"] for r in res] == [True] + [False] * (len(res) - 1)
    for rs in doc["resourceSpans"]:  # the spans of a resource are that process's
        pid = next(a for a in rs["resource"]["attributes"] if a["key"] == "process.pid")
        spans = rs["scopeSpans"][0]["spans"]
        span_ids = [next(a for a in s["attributes"] if a["key"] == "atroz.span") for s in spans]
        assert {a["value"]["stringValue"].split(".")[0] for a in span_ids} == {
            pid["value"]["intValue"]
        }


def test_otlp_failed_phase_has_error_status_and_exception_event(demo: dict[str, Any]) -> None:
    """P07 failed: status code 2 with the message, and an `exception` event carrying
    exception.type/message/stacktrace; completed phases have status code 1."""
    spans = _spans(exporters.otlp_json(demo["bad"]["snap"]))
    p07 = next(s for s in spans if s["name"] == "P07")
    assert p07["status"]["code"] == 2
    assert p07["status"]["message"] == (
        "DemoFailure: P07: validation rule R-17 rejected 3 of 120 documents"
    )
    exc = next(e for e in p07["events"] if e["name"] == "exception")
    attrs = {a["key"]: a["value"]["stringValue"] for a in exc["attributes"]}
    assert attrs["exception.type"] == "DemoFailure"
    assert "R-17" in attrs["exception.message"]
    assert attrs["exception.stacktrace"].startswith("Traceback")
    assert exc["timeUnixNano"] == p07["endTimeUnixNano"]
    assert next(s for s in spans if s["name"] == "P00")["status"] == {"code": 1}


def test_otlp_warnings_and_metrics_on_their_span(demo: dict[str, Any]) -> None:
    """A warning logged in P01 is a `warning` event of P01's span; P00's custom metric is
    an atroz.metric.* attribute, items an intValue."""
    spans = _spans(exporters.otlp_json(demo["ok"]["snap"]))
    p01 = next(s for s in spans if s["name"] == "P01")
    warn = [e for e in p01["events"] if e["name"] == "warning"]
    assert len(warn) == 1
    msg = next(a for a in warn[0]["attributes"] if a["key"] == "message")
    assert msg["value"]["stringValue"].startswith("P01: 2 documents had no text layer")
    p00 = {a["key"]: a["value"] for a in next(s for s in spans if s["name"] == "P00")["attributes"]}
    assert p00["atroz.metric.documents"] == {"intValue": "120"}
    assert p00["atroz.items"] == {"intValue": "120"}
    assert "doubleValue" in p00["atroz.cpu_ms"]


# -- the export command and route ----------------------------------------------------------------


@pytest.mark.parametrize("fmt", exporters.FORMATS)
def test_export_command_writes_stdout_or_output(
    demo: dict[str, Any], fmt: str, tmp_path: Any
) -> None:
    """`export --format F` prints the export; with --output the file holds the same bytes."""
    log = str(demo["ok"]["path"])
    r = _cli(["export", log, "--format", fmt], tmp_path)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out.txt"
    r2 = _cli(["export", log, "--format", fmt, "--output", str(out)], tmp_path)
    assert r2.returncode == 0 and r2.stdout == ""
    assert out.read_text() == r.stdout
    if fmt == "prometheus":
        assert "atroz_phase_duration_seconds_count{" in r.stdout
    else:
        doc = json.loads(r.stdout)
        assert ("traceEvents" if fmt == "chrome-trace" else "resourceSpans") in doc


@pytest.mark.parametrize(
    "args, needle",
    [
        (["export", "LOG", "--format", "svg"], "invalid choice: 'svg'"),
        (["export", "LOG"], "the following arguments are required: --format"),
        (["export", "missing.jsonl", "--format", "chrome-trace"], "no such file or directory"),
        (["export", "empty.jsonl", "--format", "otlp-json"], "no atroz_monitor events"),
        (["export", "LOG", "--format", "otlp-json", "--run", "nope"], "--run: no run 'nope'"),
    ],
)
def test_export_bad_input_exits_2_with_one_clear_line(
    demo: dict[str, Any], tmp_path: Any, args: list[str], needle: str
) -> None:
    """Unknown format, missing or empty log, unknown run: exit 2, the reason on stderr, no
    traceback, nothing on stdout."""
    (tmp_path / "empty.jsonl").write_text("")
    args = [str(demo["ok"]["path"]) if a == "LOG" else a for a in args]
    r = _cli(args, tmp_path)
    assert r.returncode == 2
    assert needle in r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    if "--format" in args and "svg" not in args and len(args) > 2:
        assert len(r.stderr.strip().splitlines()) == 1


def test_export_route_serves_trace_formats(demo: dict[str, Any]) -> None:
    """/api/v1/runs/{run}/export?format=chrome-trace|otlp-json downloads the exports; an
    unknown format is a 400 naming the parameter."""
    src = source.FileSource([demo["ok"]["path"]])
    try:
        resp = api.route(src, "GET", "/api/v1/runs/latest/export", "format=chrome-trace")
        assert resp.status == 200
        assert "traceEvents" in json.loads(resp.body)
        assert ".trace.json" in dict(resp.headers)["Content-Disposition"]
        resp = api.route(src, "GET", "/api/v1/runs/latest/export", "format=otlp-json")
        assert len(_spans(json.loads(resp.body))) == 33
        resp = api.route(src, "GET", "/api/v1/runs/latest/export", "format=svg")
        assert resp.status == 400 and json.loads(resp.body)["error"].startswith("format:")
        assert "snapshot" in json.loads(api.route(src, "GET", "/api/v1/runs/latest/export").body)
    finally:
        src.close()


# -- docs/SCALING.md snippets ----------------------------------------------------------------------


class _Collector(BaseHTTPRequestHandler):
    bodies: list[tuple[str, str, bytes]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        n = int(self.headers.get("Content-Length", "0"))
        _Collector.bodies.append(
            (self.path, self.headers.get("Content-Type", ""), self.rfile.read(n))
        )
        body = b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def _replay_curl(cmd: str, cwd: Any) -> None:
    """Send the request a documented ``curl -sf -H ... --data-binary @FILE URL`` sends, with
    urllib (no curl needed): its headers, its file as the body, POST, failing on >= 400."""
    import shlex
    import urllib.request

    args = shlex.split(cmd)
    assert args[0] == "curl"
    headers: dict[str, str] = {}
    data, url, i = None, None, 1
    while i < len(args):
        a = args[i]
        if a in ("-H", "--header"):
            name, _, value = args[i + 1].partition(":")
            headers[name.strip()] = value.strip()
            i += 2
        elif a == "--data-binary":
            assert args[i + 1].startswith("@"), "the documented body is a file"
            data = (cwd / args[i + 1][1:]).read_bytes()
            i += 2
        elif a in ("-s", "-f", "-sf", "-fs"):
            i += 1
        else:
            assert url is None and a.startswith("http"), f"unexpected curl argument {a!r}"
            url = a
            i += 1
    assert url is not None and data is not None
    req = urllib.request.Request(url, data=data, headers=headers, method="POST")
    with urllib.request.urlopen(req, timeout=20) as resp:  # raises for >= 400, as -f fails
        assert resp.status == 200


def test_scaling_doc_export_commands_run_as_written(demo: dict[str, Any], tmp_path: Any) -> None:
    """The `export` and `curl` commands of docs/SCALING.md run as written in a directory
    holding ./atroz-runs, and the OTLP file posts to a collector's /v1/traces as JSON."""
    shutil.copytree(demo["base"] / "ok", tmp_path / "atroz-runs")
    with open(SCALING, encoding="utf-8") as f:
        text = f.read()
    blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
    commands = [c for b in blocks for c in b.replace("\\\n", " ").splitlines()]
    exports = [c for c in commands if c.startswith("python -m atroz_monitor export")]
    assert len(exports) == 2
    for cmd in exports:
        r = _cli(cmd.split()[3:], tmp_path)
        assert r.returncode == 0, r.stderr
    trace = json.loads((tmp_path / "run.trace.json").read_text())
    assert len(_x_events(trace)) == 33
    curl = next(c for c in commands if c.startswith("curl"))
    httpd = HTTPServer(("127.0.0.1", 0), _Collector)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        _Collector.bodies.clear()
        cmd = curl.replace("http://127.0.0.1:4318", f"http://127.0.0.1:{httpd.server_port}")
        _replay_curl(cmd, tmp_path)
    finally:
        httpd.shutdown()
        httpd.server_close()
    path, ctype, body = _Collector.bodies[0]
    assert (path, ctype) == ("/v1/traces", "application/json")
    assert len(_spans(json.loads(body))) == 33
