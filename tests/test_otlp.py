"""The live OTLP pusher (otlp.py): encoding rules, delivery to a local receiver on 127.0.0.1,
and a collector that is down, failing or silent."""

from __future__ import annotations

import http.server
import json
import math
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from helpers import of_kind, read_log
from hypothesis import given, settings
from hypothesis import strategies as st

from atroz_monitor import Monitor
from atroz_monitor.record import otlp

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")
DIGITS = re.compile(r"^[0-9]+$")


class Receiver:
    """An OTLP/HTTP stand-in: records POST bodies; answers each request with the next of
    `script` ((status, headers) pairs), then 200."""

    def __init__(self, script: list[tuple[int, dict[str, str]]] | None = None) -> None:
        self.script = list(script or [])
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.times: list[float] = []
        self.cond = threading.Condition()
        rec = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                with rec.cond:
                    status, extra = rec.script.pop(0) if rec.script else (200, {})
                    rec.times.append(time.monotonic())
                    rec.headers.append(dict(self.headers))
                    if status == 200:
                        rec.bodies.append(json.loads(body))
                    rec.cond.notify_all()
                self.send_response(status)
                for k, v in extra.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *a: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def spans(self) -> list[dict[str, Any]]:
        with self.cond:
            return [
                s
                for b in self.bodies
                for rs in b["resourceSpans"]
                for ss in rs["scopeSpans"]
                for s in ss["spans"]
            ]

    def wait_for(self, pred: Callable[[], bool], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
        return True

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def poll(pred: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Bounded poll for a condition another thread makes true."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def free_port() -> int:
    """A port nothing listens on (bound, read back, released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


def attrs(kvs: list[dict[str, Any]]) -> dict[str, Any]:
    """OTLP KeyValue list -> {key: python value} (intValue strings become ints)."""
    out: dict[str, Any] = {}
    for kv in kvs:
        ((kind, v),) = kv["value"].items()
        out[kv["key"]] = int(v) if kind == "intValue" else v
    return out


def pipeline(mon: Monitor) -> None:
    """Four phases: P00 with two sub-phases (one warning), and a failing P01."""
    with mon.phase("P00", name="Document Assembly") as p:
        p.add_items(5)
        p.metric("signals", 12)
        with mon.phase("P00.fetch"):
            pass
        with mon.phase("P00.parse") as q:
            q.warning("2 documents had no text layer")
    with pytest.raises(ValueError), mon.phase("P01"):
        raise ValueError("bad input")


FAST = {"flush_interval": 0.05, "poll_interval": 0.02, "backoff": 0.05}


def test_monitor_run_delivers_every_phase_as_a_span(tmp_path: Any, receiver: Receiver) -> None:
    """Every phase_end of a real Monitor's log arrives as one span, while the run is live,
    with the log's parent links as parentSpanId, string nanos and the documented status."""
    log = tmp_path / "run.jsonl"
    mon = Monitor(log, alert_rules=[], sample_interval=None)
    mon.start()
    pusher = otlp.Pusher(mon, receiver.url, **FAST)
    pipeline(mon)
    # Live: spans arrive before the run ends.
    assert receiver.wait_for(lambda: len(receiver.spans()) == 4, timeout=10)
    mon.close()
    pusher.close()
    ends = of_kind(read_log(log), "phase_end")
    spans = {s["spanId"]: s for s in receiver.spans()}
    assert len(spans) == len(ends) == 4
    run = mon.run_id
    for e in ends:
        s = spans[otlp.span_id(run, e["span"])]
        assert s["traceId"] == otlp.trace_id(run) and HEX32.match(s["traceId"])
        assert HEX16.match(s["spanId"])
        if e["parent"] is None:
            assert "parentSpanId" not in s
        else:
            assert s["parentSpanId"] == otlp.span_id(run, e["parent"])
        assert s["kind"] == 1
        assert DIGITS.match(s["startTimeUnixNano"]) and DIGITS.match(s["endTimeUnixNano"])
        dur_ns = int(s["endTimeUnixNano"]) - int(s["startTimeUnixNano"])
        assert abs(dur_ns - e["duration_ms"] * 1e6) <= 2000  # microsecond rounding, twice
        assert attrs(s["attributes"])["atroz.span"] == e["span"]
    by_key = {s["name"]: s for s in spans.values()}  # span name = the phase key
    assert attrs(by_key["P00"]["attributes"])["atroz.phase.name"] == "Document Assembly"
    assert by_key["P00"]["status"] == {"code": 1}
    assert attrs(by_key["P00"]["attributes"])["atroz.metric.signals"] == 12
    assert attrs(by_key["P00"]["attributes"])["atroz.items"] == 5
    assert by_key["P01"]["status"]["code"] == 2
    assert "ValueError: bad input" in by_key["P01"]["status"]["message"]
    assert [e["name"] for e in by_key["P01"]["events"]] == ["exception"]
    warn = by_key["P00.parse"]["events"]
    assert [e["name"] for e in warn] == ["warning"]
    assert attrs(warn[0]["attributes"])["message"] == "2 documents had no text layer"
    res = attrs(receiver.bodies[0]["resourceSpans"][0]["resource"]["attributes"])
    assert res["process.pid"] == os.getpid()
    assert res["atroz.run.id"] == run
    assert res["host.name"] == mon.host
    assert res["service.name"] == "atroz_monitor"  # the run has no name of its own
    assert all(h["Content-Type"] == "application/json" for h in receiver.headers)
    h = pusher.health()
    assert (h["otlp_spans_sent"], h["otlp_spans_dropped"], h["otlp_requests_failed"]) == (4, 0, 0)


def test_joined_process_is_its_own_resource(tmp_path: Any, receiver: Receiver) -> None:
    """A Python subprocess that joins the run through the environment gets its own
    resourceSpans (process.pid = its pid), its phase in the same trace."""
    mon = Monitor(tmp_path / "run.jsonl", alert_rules=[], sample_interval=None, name="etl")
    with mon:
        pusher = otlp.Pusher(mon, receiver.url, **FAST)
        with mon.phase("parent"):
            env = {**os.environ, "PYTHONPATH": REPO}
            code = "import atroz_monitor as m, os\nwith m.phase('child'): print(os.getpid())"
            out = subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, timeout=30, check=True
            )
    pusher.close()
    child_pid = int(out.stdout)
    res_by_pid = {}
    for body in receiver.bodies:
        for rs in body["resourceSpans"]:
            res = attrs(rs["resource"]["attributes"])
            names = [s["name"] for ss in rs["scopeSpans"] for s in ss["spans"]]
            res_by_pid.setdefault(res["process.pid"], (res, []))[1].extend(names)
    assert set(res_by_pid) == {os.getpid(), child_pid}
    assert res_by_pid[child_pid][1] == ["child"]
    assert res_by_pid[os.getpid()][1] == ["parent"]
    assert res_by_pid[child_pid][0]["process.parent_pid"] == os.getpid()
    assert res_by_pid[child_pid][0]["service.name"] == "etl"
    assert res_by_pid[child_pid][0]["atroz.process.owner"] is False
    assert {s["traceId"] for s in receiver.spans()} == {otlp.trace_id(mon.run_id)}


def test_receiver_down_counts_drops_and_leaves_the_pipeline_alone(tmp_path: Any) -> None:
    """Nothing listening: requests fail and spans are dropped, counted; the pipeline's
    phases are all written and close() returns within its bound."""
    log = tmp_path / "run.jsonl"
    mon = Monitor(log, alert_rules=[], sample_interval=None)
    mon.start()
    url = f"http://127.0.0.1:{free_port()}/v1/traces"
    pusher = otlp.Pusher(mon, url, close_timeout=2.0, **FAST)
    t0 = time.monotonic()
    for i in range(20):
        with mon.phase(f"P{i:02d}"):
            pass
    assert time.monotonic() - t0 < 1.0  # the phases never waited for the collector
    assert poll(lambda: pusher.health()["otlp_requests_failed"] >= 1)
    mon.close()
    t1 = time.monotonic()
    pusher.close()
    assert time.monotonic() - t1 < 2.5
    assert len(of_kind(read_log(log), "phase_end")) == 20
    h = pusher.health()
    assert h["otlp_spans_sent"] == 0
    assert h["otlp_spans_dropped"] == 20
    assert h["otlp_spans_queued"] == 0
    assert "Connection" in h["otlp_last_error"] or "refused" in h["otlp_last_error"]


def test_500_then_200_is_retried_and_delivered(tmp_path: Any) -> None:
    """A collector answering 500 once: the batch is retried and delivered, one retry and one
    failed request counted, nothing dropped."""
    rec = Receiver([(500, {})])
    try:
        mon = Monitor(tmp_path / "run.jsonl", alert_rules=[], sample_interval=None)
        with mon:
            pusher = otlp.Pusher(mon, rec.url, **FAST)
            pipeline(mon)
            assert rec.wait_for(lambda: len(rec.spans()) == 4)
        pusher.close()
        h = pusher.health()
        assert len(rec.times) == 2  # the 500, then the retry
        assert (h["otlp_spans_sent"], h["otlp_spans_dropped"]) == (4, 0)
        assert (h["otlp_requests_failed"], h["otlp_retries"]) == (1, 1)
        assert h["otlp_last_error"] == "collector answered 500"
    finally:
        rec.close()


def test_429_retry_after_is_honoured(tmp_path: Any) -> None:
    """429 with Retry-After: 1 delays the retry by about a second, not the short backoff."""
    rec = Receiver([(429, {"Retry-After": "1"})])
    try:
        mon = Monitor(tmp_path / "run.jsonl", alert_rules=[], sample_interval=None)
        with mon:
            pusher = otlp.Pusher(mon, rec.url, **FAST)
            with mon.phase("P00"):
                pass
            assert rec.wait_for(lambda: len(rec.spans()) == 1)
        pusher.close()
        assert len(rec.times) == 2
        assert 0.9 <= rec.times[1] - rec.times[0] < 5.0
        assert pusher.health()["otlp_spans_sent"] == 1
    finally:
        rec.close()


def test_400_is_not_retried(tmp_path: Any) -> None:
    """A 400 means the request is wrong: one attempt, the batch dropped and counted."""
    rec = Receiver([(400, {})])
    try:
        mon = Monitor(tmp_path / "run.jsonl", alert_rules=[], sample_interval=None)
        with mon:
            pusher = otlp.Pusher(mon, rec.url, **FAST)
            with mon.phase("P00"):
                pass
            assert poll(lambda: pusher.health()["otlp_requests_failed"] == 1)
        pusher.close()
        h = pusher.health()
        assert (h["otlp_retries"], h["otlp_spans_dropped"], h["otlp_spans_sent"]) == (0, 1, 0)
        assert len(rec.times) == 1
    finally:
        rec.close()


def test_silent_receiver_is_bounded_by_the_timeout(tmp_path: Any) -> None:
    """A collector that accepts but never answers: each request ends at the timeout, the
    failure is counted, and close() returns within its bound."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # the kernel completes handshakes; nobody ever reads or answers
    try:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1/traces"
        mon = Monitor(tmp_path / "run.jsonl", alert_rules=[], sample_interval=None)
        mon.start()
        pusher = otlp.Pusher(mon, url, timeout=0.3, close_timeout=1.0, **FAST)
        with mon.phase("P00"):
            pass
        assert poll(lambda: pusher.health()["otlp_requests_failed"] >= 1, timeout=5)
        assert "timed out" in pusher.health()["otlp_last_error"]
        mon.close()
        t0 = time.monotonic()
        pusher.close()
        assert time.monotonic() - t0 < 1.5
        h = pusher.health()
        assert (h["otlp_spans_sent"], h["otlp_spans_dropped"]) == (0, 1)
    finally:
        silent.close()


def test_full_queue_drops_the_newest_and_counts(tmp_path: Any, receiver: Receiver) -> None:
    """queue_max bounds the spans waiting: the overflow is dropped and counted, the rest sent."""
    log = tmp_path / "run.jsonl"
    with Monitor(log, alert_rules=[], sample_interval=None) as mon:
        for i in range(10):
            with mon.phase(f"P{i}"):
                pass
    pusher = otlp.Pusher(log, receiver.url, queue_max=4, flush_interval=30, poll_interval=0.02)
    assert poll(lambda: pusher.health()["otlp_spans_dropped"] == 6)
    pusher.close()
    assert [s["name"] for s in receiver.spans()] == ["P0", "P1", "P2", "P3"]
    assert pusher.health()["otlp_spans_sent"] == 4


def test_alert_written_after_phase_end_is_a_span_event() -> None:
    """An alert that follows its phase_end (outcome rules write it there) still lands on the
    span: ended spans settle for one take() before they are handed out."""
    b = otlp.SpanBuilder()
    env = {"run": "r1", "pid": 7}
    b.feed({**env, "ev": "run_start", "ts": 100.0, "seq": 1, "name": "nightly", "host": "h"})
    b.feed({**env, "ev": "phase_start", "ts": 100.5, "span": "7.1", "phase": "P00",
            "name": "P00", "parent": None, "thread": "MainThread"})  # fmt: skip
    b.feed({**env, "ev": "phase_end", "ts": 101.75, "span": "7.1", "phase": "P00",
            "name": "P00", "parent": None, "status": "failed", "duration_ms": 1250.0,
            "error": {"type": "KeyError", "msg": "'x'", "tb": "Traceback..."}})  # fmt: skip
    assert b.take() == []  # settling
    b.feed({**env, "ev": "alert", "ts": 101.76, "alert": "phase_failed:phase:P00:1",
            "rule": "phase_failed", "severity": "critical", "state": "raised",
            "span": "7.1", "msg": "phase P00 failed"})  # fmt: skip
    [(key, span)] = b.take()
    assert key == ("r1", 7)
    assert span["startTimeUnixNano"] == "100500000000"
    assert span["endTimeUnixNano"] == "101750000000"
    assert [e["name"] for e in span["events"]] == ["exception", "alert"]
    assert attrs(span["events"][1]["attributes"])["atroz.alert.severity"] == "critical"
    assert span["status"] == {"code": 2, "message": "KeyError: 'x'"}
    res = attrs(otlp.request([(key, span)], b.resource)["resourceSpans"][0]["resource"][
        "attributes"
    ])  # fmt: skip
    assert res["service.name"] == "nightly"
    assert res["host.name"] == "h"
    assert res["atroz.process.owner"] is True


def test_encoding_of_values_and_ids() -> None:
    """AnyValue and id rules: int64 as strings, no NaN, deterministic non-zero hex ids."""
    assert otlp.any_value(3) == {"intValue": "3"}
    assert otlp.any_value(2**70) == {"stringValue": str(2**70)}
    assert otlp.any_value(1.5) == {"doubleValue": 1.5}
    assert otlp.any_value(float("nan")) is None
    assert otlp.any_value(True) == {"boolValue": True}
    assert otlp.any_value(["a", 1]) == {
        "arrayValue": {"values": [{"stringValue": "a"}, {"intValue": "1"}]}
    }
    assert otlp.nanos(1796009131.563770) == "1796009131563770000"
    assert otlp.trace_id("run-1") == otlp.trace_id("run-1") != otlp.trace_id("run-2")
    assert otlp.span_id("run-1", "5.1") != otlp.span_id("run-2", "5.1")
    assert HEX32.match(otlp.trace_id("x")) and HEX16.match(otlp.span_id("x", "1.1"))


def test_live_push_and_file_export_agree(tmp_path: Any, receiver: Receiver) -> None:
    """The spans pushed live and otlp_json.otlp_json of the same log name the same trace and
    spans, with the same parents, names, times, status, attributes, events and resource."""
    from atroz_monitor.surface import otlp_json

    log = tmp_path / "run.jsonl"
    mon = Monitor(log, sample_interval=0.05)  # default alert rules: P01's failure alerts
    with mon:
        pusher = otlp.Pusher(mon, receiver.url, **FAST)
        pipeline(mon)
    pusher.close()

    def key(s: dict[str, Any]) -> tuple[Any, ...]:
        events = [e["name"] for e in s.get("events", [])]
        return (s["traceId"], s.get("parentSpanId"), s["name"], s["startTimeUnixNano"],
                s["endTimeUnixNano"], s["status"], attrs(s["attributes"]), events)  # fmt: skip

    doc = otlp_json.otlp_json(mon.snapshot())  # the reducer over the same log
    exported = {
        s["spanId"]: s
        for rs in doc["resourceSpans"]
        for ss in rs["scopeSpans"]
        for s in ss["spans"]
    }
    pushed = {s["spanId"]: s for s in receiver.spans()}
    assert set(pushed) == set(exported)
    assert {k: key(s) for k, s in pushed.items()} == {k: key(s) for k, s in exported.items()}
    res_pushed = attrs(receiver.bodies[0]["resourceSpans"][0]["resource"]["attributes"])
    assert res_pushed == attrs(doc["resourceSpans"][0]["resource"]["attributes"])


@pytest.mark.parametrize(
    "bad", ["", "localhost:4318/v1/traces", "ftp://h/v1/traces", "http://", "http://h:99999/", 5]
)
def test_bad_endpoint_is_rejected_at_construction(tmp_path: Any, bad: Any) -> None:
    """Anything but an absolute http(s) URL raises ValueError before a thread starts."""
    with pytest.raises(ValueError, match="otlp_endpoint"):
        otlp.Pusher(tmp_path / "x.jsonl", bad)
    assert otlp.check_endpoint("https://collector:4318/v1/traces").startswith("https://")


def test_pushed_body_parses_as_the_otlp_protobuf(tmp_path: Any, receiver: Receiver) -> None:
    """Every POSTed body is accepted by the official ExportTraceServiceRequest schema (field
    names, types and enums; unknown fields rejected) and its ids decode as hex of 16/8 bytes."""
    pytest.importorskip("opentelemetry.proto")
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    mon = Monitor(tmp_path / "run.jsonl", sample_interval=0.05)
    with mon:
        pusher = otlp.Pusher(mon, receiver.url, **FAST)
        pipeline(mon)
    pusher.close()
    assert receiver.bodies
    for body in receiver.bodies:
        msg = json_format.ParseDict(body, ExportTraceServiceRequest())
        for rs in msg.resource_spans:
            for ss in rs.scope_spans:
                for s in ss.spans:
                    assert s.kind == 1 and s.end_time_unix_nano >= s.start_time_unix_nano > 0
    for s in receiver.spans():  # protobuf's JSON reads bytes as base64: check the hex here
        assert len(bytes.fromhex(s["traceId"])) == 16 and len(bytes.fromhex(s["spanId"])) == 8


def _doc_block(marker: str, lang: str) -> str:
    """The fenced block that follows `<!-- marker -->` in docs/SCALING.md."""
    with open(os.path.join(REPO, "docs", "SCALING.md"), encoding="utf-8") as f:
        text = f.read()
    after = text[text.index(f"<!-- {marker}") :]
    start = after.index(f"```{lang}\n") + len(lang) + 4
    return after[start : after.index("```", start)]


def test_documented_pusher_snippet_runs(
    tmp_path: Any, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The `otlp.Pusher` example of docs/SCALING.md pushes a log's phases as documented."""
    monkeypatch.chdir(tmp_path)
    os.mkdir("atroz-runs")
    with Monitor("atroz-runs/nightly.jsonl", alert_rules=[], sample_interval=None) as mon:
        pipeline(mon)
    code = _doc_block("otlp-pusher-example", "python")
    assert "http://127.0.0.1:4318/v1/traces" in code
    out: dict[str, Any] = {}
    exec(code.replace("http://127.0.0.1:4318/v1/traces", receiver.url), out)
    assert len(receiver.spans()) == 4
    assert out["pusher"].health()["otlp_spans_sent"] == 4


def test_documented_collector_config_receives_the_push_endpoint() -> None:
    """The collector config of docs/SCALING.md listens for OTLP/HTTP where the docs push to
    and wires the otlp receiver into a traces pipeline (structure only: no collector here)."""
    yaml = pytest.importorskip("yaml")
    conf = yaml.safe_load(_doc_block("otlp-collector-config", "yaml"))
    assert conf["receivers"]["otlp"]["protocols"]["http"]["endpoint"] == "127.0.0.1:4318"
    traces = conf["service"]["pipelines"]["traces"]
    assert traces["receivers"] == ["otlp"]
    assert set(traces["exporters"]) <= set(conf["exporters"])


# -- property tests: the encoding rules and the span builder on any input ----------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
_ANY_KEYS = {"boolValue", "intValue", "doubleValue", "stringValue", "arrayValue"}


@settings(max_examples=300, deadline=None)
@given(_JSON)
def test_any_value_of_any_json_value_is_one_strict_otlp_value(v: Any) -> None:
    """Any JSON value: None for null and non-finite floats, else exactly one AnyValue key,
    strict JSON (no NaN), ints outside int64 as strings, strings within MAX_VALUE_CHARS."""
    a = otlp.any_value(v)
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        assert a is None
        return
    assert a is not None and len(a) == 1 and set(a) <= _ANY_KEYS
    json.dumps(a, allow_nan=False)
    if "intValue" in a:
        assert -(2**63) <= int(a["intValue"]) < 2**63 and int(a["intValue"]) == v
    if "stringValue" in a:
        assert len(a["stringValue"]) <= otlp.MAX_VALUE_CHARS


_KINDS = st.sampled_from(
    ["run_start", "process_start", "phase_start", "phase_end", "log", "alert", "artifact",
     "metric", "run_end", "sample"]
)  # fmt: skip
_FIELDS = st.sampled_from(
    ["span", "phase", "name", "parent", "ts", "status", "duration_ms", "cpu_ms", "items",
     "total", "error", "msg", "level", "plan", "pid", "attempt", "meta", "rule", "value"]
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_KINDS, st.dictionaries(_FIELDS, _JSON, max_size=8)), max_size=30))
def test_span_builder_never_raises_and_gives_strict_json(
    events: list[tuple[str, dict[str, Any]]],
) -> None:
    """Any events with any field values (a damaged log): the builder ignores or maps each,
    never raises, and every span it hands out is strict JSON with a 16-hex span id."""
    b = otlp.SpanBuilder()
    for kind, fields in events:
        b.feed({"pid": 7, "span": "7.1", **fields, "ev": kind, "run": "r"})
    for _key, span in b.take() + b.take_all():
        json.dumps(span, allow_nan=False)
        assert HEX16.match(span["spanId"]) and HEX32.match(span["traceId"])


def test_phase_to_span_mapping_is_written_once() -> None:
    """The atroz.* span attribute names of a phase appear in otlp.py only (one mapping for
    the live push and otlp_json.otlp_json), and there once each."""
    import re
    from pathlib import Path

    pkg = Path(otlp.__file__).parent
    names = ("atroz.phase.key", "atroz.duration_ms", "atroz.cpu_pct", "atroz.items_per_s",
             "atroz.alert.rule", "atroz.log.level", "exception.stacktrace")  # fmt: skip
    for name in names:
        where = {
            f.name: len(re.findall(re.escape(f'"{name}"'), f.read_text(encoding="utf-8")))
            for f in pkg.rglob("*.py")
        }
        assert {f: n for f, n in where.items() if n} == {"otlp.py": 1}, name


def test_a_phase_written_whole_is_the_span_its_two_lines_make() -> None:
    """A phase_end carrying the start's members (thread, meta: a phase written whole) makes
    the span its start and end lines make: same times, attributes and parent."""
    env = {"run": "r1", "pid": 7}
    head = {**env, "ev": "run_start", "ts": 100.0, "seq": 1, "name": "nightly", "host": "h"}
    start = {**env, "ev": "phase_start", "ts": 100.5, "span": "7.1", "phase": "P00",
             "name": "Load", "parent": None, "thread": "worker-1", "meta": {"rows": 3}}  # fmt: skip
    end = {**env, "ev": "phase_end", "ts": 101.75, "span": "7.1", "phase": "P00",
           "name": "Load", "parent": None, "status": "completed", "duration_ms": 1250.0,
           "cpu_ms": 3.0, "items": 4}  # fmt: skip
    spans = []
    for evs in ([head, start, end], [head, {**end, "thread": "worker-1", "meta": {"rows": 3}}]):
        b = otlp.SpanBuilder()
        for e in evs:
            b.feed(e)
        assert b.take() == []  # settling
        b.feed({**env, "ev": "run_end", "ts": 102.0, "status": "completed"})
        [(_, span)] = b.take()
        spans.append(span)
    two, one = spans
    got = attrs(one["attributes"])
    assert (got["thread.name"], got["atroz.meta.rows"]) == ("worker-1", 3)
    assert one == two
