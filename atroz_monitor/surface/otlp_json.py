"""OTLP/JSON trace files of one run's snapshot, through the one phase-to-span mapping the live
push uses (``record.otlp``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..record.otlp import (
    attributes,
    phase_span,
    resource_fields,
    service_name,
    span_event,
)
from ..view.timeline import finite, owner_pid, phase_interval


def otlp_json(snap: Mapping[str, Any]) -> dict[str, Any]:
    """The run as an OTLP/JSON ``ExportTraceServiceRequest`` (one trace, one span per phase).

    Encoding (OTLP spec, "JSON Protobuf Encoding"): lowerCamelCase keys, hex ids, enums as
    integers, 64-bit integers (times, ``intValue``) as decimal strings. One ``resourceSpans``
    per process of the run, so each process is its own resource (``process.pid``).
    """
    from .. import __version__

    run = snap["run"]
    rid = str(run.get("id"))
    owner = owner_pid(snap)
    service = service_name(run.get("name"), rid)
    spans_present = {str(p.get("span")) for p in snap.get("phases") or []}
    logs_by_span: dict[str, list[Mapping[str, Any]]] = {}
    for item in (snap.get("logs") or {}).get("items") or []:
        s = item.get("span")
        if isinstance(s, str) and finite(item.get("ts")) is not None:
            logs_by_span.setdefault(s, []).append(item)
    alerts_by_span: dict[str, list[Mapping[str, Any]]] = {}
    for a in snap.get("alerts") or []:
        s, t = a.get("span"), finite(a.get("raised_ts") or a.get("ts"))
        if isinstance(s, str) and t is not None:
            alerts_by_span.setdefault(s, []).append({**a, "ts": t})  # raised: its time

    by_pid: dict[int, list[dict[str, Any]]] = {}
    for p in snap.get("phases") or []:
        span = str(p.get("span"))
        start, end, ended = phase_interval(p, snap)
        events = [span_event("log", item) for item in logs_by_span.get(span, ())]
        events += [span_event("alert", a) for a in alerts_by_span.get(span, ())]
        parent = p.get("parent")
        known = not isinstance(parent, str) or parent in spans_present
        # The one phase-to-span mapping (the live push's too).
        span_obj = phase_span(rid, p, start, end, ended=ended, events=events, parent_known=known)
        pid = p.get("pid")
        pid = pid if type(pid) is int else (owner if owner is not None else 0)
        by_pid.setdefault(pid, []).append(span_obj)

    procs = {p.get("pid"): p for p in snap.get("processes") or [] if type(p.get("pid")) is int}
    resource_spans = []
    for pid in sorted(by_pid, key=lambda x: (x != owner, (procs.get(x) or {}).get("start") or 0)):
        proc = procs.get(pid) or {}
        res = attributes(
            resource_fields(rid, pid, service=service, host=run.get("host"),
                            argv=proc.get("argv"), ppid=proc.get("ppid"), owner=pid == owner)
        )  # fmt: skip
        resource_spans.append(
            {
                "resource": {"attributes": res},
                "scopeSpans": [
                    {
                        "scope": {"name": "atroz_monitor", "version": __version__},
                        "spans": by_pid[pid],
                    }
                ],
            }
        )
    return {"resourceSpans": resource_spans}


def encode_json(doc: Any) -> bytes:
    """A trace document as compact ASCII JSON bytes (non-finite numbers become null)."""
    from ..events import dumps

    return dumps(doc).encode("ascii")
