"""OTLP/JSON files (surface/otlp_json.py) of real demo logs: the encoding rules, parents and
one resource per process, a failed phase's status and exception event, warnings and metrics
on their span.
"""

from __future__ import annotations

import json
import re
from typing import Any

from atroz_monitor.record import otlp
from atroz_monitor.surface import otlp_json


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
    doc = json.loads(otlp_json.encode_json(otlp_json.otlp_json(demo["bad"]["snap"])))
    spans = _spans(doc)
    assert {s["traceId"] for s in spans} == {otlp.trace_id(demo["bad"]["snap"]["run"]["id"])}
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
    doc = otlp_json.otlp_json(snap)
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
    spans = _spans(otlp_json.otlp_json(demo["bad"]["snap"]))
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
    spans = _spans(otlp_json.otlp_json(demo["ok"]["snap"]))
    p01 = next(s for s in spans if s["name"] == "P01")
    warn = [e for e in p01["events"] if e["name"] == "warning"]
    assert len(warn) == 1
    msg = next(a for a in warn[0]["attributes"] if a["key"] == "message")
    assert msg["value"]["stringValue"].startswith("P01: 2 documents had no text layer")
    p00 = {a["key"]: a["value"] for a in next(s for s in spans if s["name"] == "P00")["attributes"]}
    assert p00["atroz.metric.documents"] == {"intValue": "120"}
    assert p00["atroz.items"] == {"intValue": "120"}
    assert "doubleValue" in p00["atroz.cpu_ms"]
