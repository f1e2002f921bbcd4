"""Live OpenTelemetry push: the phases of a run, as OTLP/HTTP JSON spans, while it runs.

A ``Pusher`` follows the run's log file(s) with ``reader.Follower`` from one daemon thread:
the log is the source of truth, so pushing adds nothing to the pipeline's hot path and a
slow or dead collector can only ever delay or drop spans, never a phase. Each ``phase_end``
(with its ``phase_start``, the run's ``run_start`` or a joined process's ``process_start``,
and the ``log`` / ``alert`` / ``artifact`` / ``metric`` events attributed to its span)
becomes one span; spans wait in a bounded queue (overflow is dropped and counted) and are
POSTed in batches as an ``ExportTraceServiceRequest`` in the OTLP JSON encoding
(``Content-Type: application/json``), with a timeout, retries with exponential backoff
(``Retry-After`` honoured on 429/503), and counters in ``health()``.

Encoding (https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding): lowerCamelCase
keys; ``traceId`` / ``spanId`` as lower-case hex (32 / 16 characters), derived from the run id
and the log's span id by :func:`trace_id` / :func:`span_id`; 64-bit integers (``*UnixNano``,
``intValue``) as decimal strings; enums as integers (``kind`` 1 = INTERNAL; ``status.code``
1 = OK for ``completed``, 2 = ERROR for ``failed`` and ``cancelled``). One ``resourceSpans``
per process (run id, pid) with ``service.name``, ``process.pid``, ``host.name``,
``atroz.run.id``. One phase-to-span mapping, ``phase_span`` (with ``span_event`` and
``resource_fields``), builds the spans of both the live push and ``surface.otlp_json``
(from a snapshot's phases), so a file export and a live push of the same run describe the
same spans.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..events import cpu_avg_pct, items_per_s, phase_errors
from ..read.reader import Follower

__all__ = [
    "Pusher",
    "SpanBuilder",
    "any_value",
    "attributes",
    "check_endpoint",
    "nanos",
    "phase_attributes",
    "phase_span",
    "phase_status",
    "resource_fields",
    "service_name",
    "span_event",
    "span_id",
    "trace_id",
]

SCOPE_NAME = "atroz_monitor"
SPAN_KIND_INTERNAL = 1
STATUS_OK = 1
STATUS_ERROR = 2

MAX_EVENTS_PER_SPAN = 128  # span events kept per span; the rest are counted as dropped
MAX_ATTRIBUTES_PER_SPAN = 128  # likewise for attributes (custom metrics and meta add up)
MAX_OPEN_SPANS = 10_000  # phases started and not yet ended that we keep the start of
MAX_VALUE_CHARS = 4_096  # string attribute values are cut here (tracebacks: 8,000)
MAX_RETRY_AFTER_S = 60.0  # a collector asking for longer than this is not waited for

Span = dict[str, Any]
Item = tuple[tuple[str, int], Span]  # (resource key (run id, pid), OTLP span)


# -- ids, times and values: the encoding rules ------------------------------------------------


def _digest(*parts: str, size: int) -> str:
    h = hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).digest()[:size]
    if not any(h):
        h = h[:-1] + b"\x01"  # all-zero ids are invalid in OTLP
    return h.hex()


def trace_id(run_id: str) -> str:
    """The OTLP ``traceId`` of a run: 32 hex characters, the same on every host and tool
    (``surface.otlp_json`` uses it too, so a file export and a live push agree)."""
    return _digest("atroz-trace", run_id, size=16)


def span_id(run_id: str, span: str) -> str:
    """The OTLP ``spanId`` of a phase: 16 hex characters from the run id and the log's span id
    (``<pid>.<n>``, unique within the run across its processes)."""
    return _digest("atroz-span", run_id, span, size=8)


def nanos(ts: float) -> str:
    """Wall-clock seconds as OTLP ``fixed64`` nanoseconds: a decimal string. Log times have
    microsecond resolution, so rounding to the microsecond keeps float noise out."""
    return str(round(ts * 1_000_000) * 1000)


def any_value(v: Any) -> dict[str, Any] | None:
    """An OTLP ``AnyValue`` for a JSON value; None for null (an absent attribute)."""
    if v is None:
        return None
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        if -(2**63) <= v < 2**63:
            return {"intValue": str(v)}
        return {"stringValue": str(v)}
    if isinstance(v, float):
        # NaN and infinity have no faithful JSON number: absent, as in surface.otlp_json.
        return {"doubleValue": v} if math.isfinite(v) else None
    if isinstance(v, str):
        return {"stringValue": v if len(v) <= MAX_VALUE_CHARS else v[:MAX_VALUE_CHARS]}
    if isinstance(v, (list, tuple)):
        vals = [a for a in (any_value(x) for x in v[:128]) if a is not None]
        return {"arrayValue": {"values": vals}}
    from ..events import dumps  # what surface.otlp_json does with anything else

    return {"stringValue": dumps(v)[:MAX_VALUE_CHARS]}


def attributes(fields: Mapping[str, Any]) -> list[dict[str, Any]]:
    """OTLP ``KeyValue`` list of the non-null fields, in order."""
    out = []
    for k, v in fields.items():
        a = any_value(v)
        if a is not None:
            out.append({"key": str(k), "value": a})
    return out


def check_endpoint(endpoint: Any) -> str:
    """Validate an OTLP/HTTP traces endpoint (``http://host:4318/v1/traces``); returns it.

    Raises ValueError for anything that is not an absolute http(s) URL with a host."""
    if not isinstance(endpoint, str) or not endpoint:
        raise ValueError(f"otlp_endpoint must be an http:// or https:// URL, not {endpoint!r}")
    try:
        u = urllib.parse.urlsplit(endpoint)
        u.port  # noqa: B018  (raises ValueError for a port out of range or not a number)
    except ValueError as exc:
        raise ValueError(f"otlp_endpoint is not a valid URL: {endpoint!r} ({exc})") from None
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ValueError(f"otlp_endpoint must be an http:// or https:// URL, not {endpoint!r}")
    if any(c in endpoint for c in "\r\n\t "):
        raise ValueError(f"otlp_endpoint must not contain whitespace: {endpoint!r}")
    return endpoint


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _ts(v: Any) -> float | None:
    return float(v) if _num(v) and math.isfinite(v) else None


# -- events in, spans out (pure: no I/O, no threads, no clock) --------------------------------


class _Open:
    """What a span needs between its start and its end."""

    __slots__ = (
        "start",
        "thread",
        "meta",
        "events",
        "dropped_events",
        "metrics",
        "pid",
        "depth",
        "artifacts",
    )

    def __init__(self, pid: int, start: float | None) -> None:
        self.pid = pid
        self.start = start
        self.depth: int | None = None
        self.artifacts = 0
        self.thread: str | None = None
        self.meta: Any = None
        self.events: list[dict[str, Any]] = []
        self.dropped_events = 0
        self.metrics: dict[str, Any] = {}


class SpanBuilder:
    """Turns run-log events into finished OTLP spans, one per ``phase_end``.

    ``runs`` limits the runs taken (a callable is asked again for each run id first seen, so
    a monitor's later jobs join); None takes every run. Memory is bounded: open spans
    (``MAX_OPEN_SPANS``), events and attributes per span, resources per run.

    An ended span settles for one ``take()`` before it is handed out, so an ``alert`` written
    just after its ``phase_end`` (outcome rules do that) still lands on it.
    """

    def __init__(
        self,
        runs: Callable[[str], bool] | None = None,
        *,
        service_name: str | None = None,
    ) -> None:
        self._want = runs
        self._service_name = service_name
        self._runs: dict[str, bool] = {}  # run id -> taken?
        self._resources: dict[tuple[str, int], dict[str, Any]] = {}
        self._run_info: dict[str, dict[str, Any]] = {}
        self._open: dict[tuple[str, str], _Open] = {}
        self._ended: dict[tuple[str, str], Item] = {}  # ended since the last take()
        self._settling: dict[tuple[str, str], Item] = {}  # ended before the last take()
        self.unattached = 0  # logs/alerts whose span was unknown or already handed out
        self.unfinished = 0  # spans still open when their run ended

    # -- feeding ---------------------------------------------------------------------------
    def _taken(self, run: str) -> bool:
        t = self._runs.get(run)
        if t is None:
            try:
                t = self._want is None or bool(self._want(run))
            except Exception:
                t = False
            if len(self._runs) < 100_000:
                self._runs[run] = t
        return t

    def feed(self, ev: Mapping[str, Any]) -> None:
        """Take one event (anything unknown or malformed is ignored)."""
        run = ev.get("run")
        if not isinstance(run, str) or not self._taken(run):
            return
        kind = ev.get("ev")
        pid = ev.get("pid")
        if not isinstance(pid, int) or isinstance(pid, bool):
            return
        if kind == "phase_end":
            self._end(run, pid, ev)
        elif kind == "phase_start":
            self._start(run, pid, ev)
        elif kind in ("log", "alert", "artifact", "metric"):
            self._attach(run, kind, ev)
        elif kind == "run_start":
            plan = ev.get("plan")
            names = {
                p["id"]: p["name"]
                for p in (plan if isinstance(plan, list) else [])
                if isinstance(p, dict) and isinstance(p.get("id"), str)
                and isinstance(p.get("name"), str)
            }  # fmt: skip
            self._run_info[run] = {
                "name": ev.get("name"), "host": ev.get("host"), "pid": pid, "names": names
            }  # fmt: skip
            self._resource(run, pid, ev)
        elif kind == "process_start":
            self._resource(run, pid, ev)
        elif kind == "run_end":
            # Spans still open now never end (their process died or was not ours to wait for):
            # forget them, so memory stays bounded over a long-lived pusher.
            stale = [k for k in self._open if k[0] == run]
            for k in stale:
                del self._open[k]
            self.unfinished += len(stale)

    def reset(self) -> None:
        """A log was replaced or truncated: what was open is gone."""
        self._open.clear()

    def _resource(self, run: str, pid: int, ev: Mapping[str, Any] | None) -> dict[str, Any]:
        """The resource of a process of a run: from its ``run_start`` / ``process_start``
        (``ev``) when seen, else from the run's header."""
        key = (run, pid)
        res = self._resources.get(key)
        if res is not None and ev is None:
            return res
        info = self._run_info.get(run, {})
        src = ev if ev is not None else {}
        name = self._service_name
        fields = resource_fields(
            run,
            pid,
            service=name if name is not None else service_name(info.get("name"), run),
            # A joined process may run on another host sharing the log: its own host first.
            host=src.get("host") or info.get("host"),
            argv=src.get("argv"),
            ppid=src.get("ppid"),
            owner=info.get("pid") == pid,
        )
        if len(self._resources) >= 4096 and key not in self._resources:
            # Bounded: forget the oldest process (a later span of it gets the run's defaults).
            self._resources.pop(next(iter(self._resources)))
        self._resources[key] = fields
        return fields

    def _start(self, run: str, pid: int, ev: Mapping[str, Any]) -> None:
        span = ev.get("span")
        if not isinstance(span, str) or len(self._open) >= MAX_OPEN_SPANS:
            return  # its phase_end alone still makes a span, with a start from its duration
        self._open[(run, span)] = self._opened(run, pid, ev, _ts(ev.get("ts")))

    def _opened(self, run: str, pid: int, ev: Mapping[str, Any], start: float | None) -> _Open:
        """What a start line says of a phase: thread, meta, depth."""
        o = _Open(pid, start)
        th = ev.get("thread")
        o.thread = th if isinstance(th, str) else None
        o.meta = ev.get("meta")
        parent = ev.get("parent")
        if parent is None:
            o.depth = 0
        elif isinstance(parent, str):
            p = self._open.get((run, parent))
            o.depth = p.depth + 1 if p is not None and p.depth is not None else None
        return o

    def _attach(self, run: str, kind: str, ev: Mapping[str, Any]) -> None:
        span = ev.get("span")
        if not isinstance(span, str):
            if kind in ("log", "alert"):
                self.unattached += 1  # run-level: no span to carry it
            return
        key = (run, span)
        o = self._open.get(key)
        if o is None:
            item = self._ended.get(key) or self._settling.get(key)
            if item is None:
                if kind in ("log", "alert"):
                    self.unattached += 1
                return
            # Late but not too late: straight onto the finished span (a late metric has
            # missed its attributes: the log keeps it).
            if kind in ("log", "alert"):
                _add_event(item[1], span_event(kind, ev))
            return
        if kind == "metric":
            name = ev.get("name")
            if isinstance(name, str) and (
                name in o.metrics or len(o.metrics) < MAX_ATTRIBUTES_PER_SPAN
            ):
                o.metrics[name] = ev.get("value")
            return
        if kind == "artifact":
            o.artifacts += 1  # a count, as surface.otlp_json (the log keeps the paths)
            return
        if len(o.events) < MAX_EVENTS_PER_SPAN:
            o.events.append(span_event(kind, ev))
        else:
            o.dropped_events += 1

    def _end(self, run: str, pid: int, ev: Mapping[str, Any]) -> None:
        # The event and what was gathered since its start, in a snapshot phase's fields,
        # through phase_span: the mapping surface.otlp_json uses too.
        span = ev.get("span")
        ts = _ts(ev.get("ts"))
        if not isinstance(span, str) or ts is None:
            return
        o = self._open.pop((run, span), None)
        if o is None:
            # No start line: a phase written whole in one line carries the start's members
            # (thread, meta); any other end line stands alone.
            o = self._opened(run, pid, ev, None) if "thread" in ev else _Open(pid, None)
        dur = _ts(ev.get("duration_ms"))
        dur = max(0.0, dur) if dur is not None else None
        start = o.start
        if start is None:
            start = ts - dur / 1000 if dur is not None else ts
        # An ended phase lasts its monotonic duration (the wall clock may have stepped).
        end = start + dur / 1000 if dur is not None else max(start, ts)
        status = ev.get("status")
        name = ev.get("name")
        if name == ev.get("phase"):  # no name of its own: the plan's, as the snapshot says
            name = self._run_info.get(run, {}).get("names", {}).get(name, name)
        cpu = _ts(ev.get("cpu_ms"))
        items = ev.get("items")
        counts = {f: ev.get(f, 0) for f in ("warnings", "errors")}  # the log omits zeros
        fields: dict[str, Any] = {
            "span": span,
            "phase": ev.get("phase"),
            "name": name,
            "status": status,
            "depth": o.depth,
            "thread": o.thread,
            "duration_ms": dur,
            "cpu_ms": cpu,
            "cpu_pct": cpu_avg_pct(cpu, dur),
            "children_cpu_ms": _ts(ev.get("children_cpu_ms")),
            "rss_bytes": ev.get("rss_bytes"),
            "rss_start_bytes": ev.get("rss_start_bytes"),
            "peak_rss_bytes": ev.get("peak_rss_bytes"),
            "warnings": counts["warnings"] if type(counts["warnings"]) is int else 0,
            "errors": phase_errors(
                counts["errors"] if type(counts["errors"]) is int else 0, status
            ),  # fmt: skip
            "items": items,
            "total": ev.get("total"),
            "items_per_s": items_per_s(items if _num(items) else None, dur),
            "artifacts": o.artifacts,
            "metrics": o.metrics,
            "meta": o.meta,
            "parent": ev.get("parent"),
            "error": ev.get("error"),
        }
        out = phase_span(run, fields, start, end, events=o.events, dropped_events=o.dropped_events)
        out.setdefault("events", [])
        self._resource(run, pid, None)
        self._ended[(run, span)] = ((run, pid), out)

    # -- taking ----------------------------------------------------------------------------
    def take(self) -> list[Item]:
        """Spans that have settled (ended before the previous ``take()``), oldest first."""
        out = list(self._settling.values())
        self._settling = self._ended
        self._ended = {}
        return out

    def take_all(self) -> list[Item]:
        """Every ended span, settled or not (at close)."""
        out = list(self._settling.values()) + list(self._ended.values())
        self._settling = {}
        self._ended = {}
        return out

    def resource(self, key: tuple[str, int]) -> dict[str, Any]:
        """The resource attributes (as a plain dict) of a process of a run."""
        return self._resource(key[0], key[1], None)


def _add_event(span: Span, event: dict[str, Any]) -> None:
    evs = span.setdefault("events", [])
    if len(evs) < MAX_EVENTS_PER_SPAN:
        evs.append(event)
        evs.sort(key=lambda e: int(e["timeUnixNano"]))
    else:
        span["droppedEventsCount"] = span.get("droppedEventsCount", 0) + 1


# -- one phase, one span: the mapping the live push and the file export share ---------------


def service_name(run_name: Any, run_id: str) -> str:
    """A run's name defaults to its id, new every run: no use as a service (backends group
    by service.name), so then the service is the tool's own name."""
    ok = isinstance(run_name, str) and run_name and run_name != run_id
    return run_name if ok else SCOPE_NAME


def resource_fields(
    run_id: str, pid: int, *, service: str, host: Any, argv: Any, ppid: Any, owner: bool
) -> dict[str, Any]:
    """The resource of one process of a run (as a plain dict; ``attributes`` encodes it)."""
    return {
        "service.name": service,
        "service.instance.id": f"{run_id}/{pid}",
        "process.pid": pid,
        "host.name": host if isinstance(host, str) else None,
        "atroz.run.id": run_id,
        "process.command_args": [str(a) for a in argv] if isinstance(argv, list) else None,
        "process.parent_pid": ppid if type(ppid) is int else None,
        "atroz.process.owner": owner,
    }


def span_event(kind: str, ev: Mapping[str, Any]) -> dict[str, Any]:
    """A ``log`` or ``alert`` (event or snapshot item, ``ts`` its time) as a span event."""
    ts = _ts(ev.get("ts")) or 0.0
    if kind == "log":
        level = ev.get("level")
        name = level if isinstance(level, str) else "log"
        fields = {
            "message": ev.get("msg"),
            "atroz.log.level": level,
            "atroz.log.source": ev.get("source"),
            "atroz.log.logger": ev.get("logger"),
            "exception.type": ev.get("exc_type"),
            "code.filepath": ev.get("file"),
            "code.lineno": ev.get("line"),
        }
    else:
        name = "alert"
        fields = {
            "atroz.alert.id": ev.get("alert"),
            "atroz.alert.rule": ev.get("rule"),
            "atroz.alert.severity": ev.get("severity"),
            "atroz.alert.state": ev.get("state"),
            "atroz.alert.value": ev.get("value"),
            "atroz.alert.threshold": ev.get("threshold"),
            "message": ev.get("msg"),
        }
    return {"timeUnixNano": nanos(ts), "name": name, "attributes": attributes(fields)}


def phase_attributes(
    p: Mapping[str, Any], *, ended: bool = True, parent_known: bool = True
) -> dict[str, Any]:
    """The ``atroz.*`` attributes of a phase, from a snapshot phase's fields
    (``views.phase_view``; ``artifacts`` a list or a count). ``ended``: False for a phase
    still open (no duration); ``parent_known``: False when the parent span is not among the
    spans sent (then named in ``atroz.parent_span``, never as a dangling parent id)."""
    thread = p.get("thread")
    attrs: dict[str, Any] = {
        "atroz.phase.key": p.get("phase"),
        "atroz.phase.name": p.get("name"),
        "atroz.phase.status": p.get("status"),
        "atroz.phase.ended": ended,
        "atroz.span": p.get("span"),
        "atroz.phase.depth": p.get("depth"),
        "thread.name": thread if isinstance(thread, str) else None,
        "atroz.duration_ms": _ts(p.get("duration_ms")) if ended else None,
        "atroz.cpu_ms": _ts(p.get("cpu_ms")),
        "atroz.cpu_pct": _ts(p.get("cpu_pct")),
        "atroz.children_cpu_ms": _ts(p.get("children_cpu_ms")),
    }
    for f in ("rss_bytes", "rss_start_bytes", "peak_rss_bytes", "warnings", "errors"):
        v = p.get(f)
        if type(v) is int:
            attrs["atroz." + f] = v
    if p.get("items") or p.get("total") is not None:
        attrs["atroz.items"] = p.get("items")
        attrs["atroz.total"] = p.get("total")
        attrs["atroz.items_per_s"] = _ts(p.get("items_per_s"))
    arts = p.get("artifacts")
    n_arts = len(arts) if isinstance(arts, list) else arts if type(arts) is int else 0
    if n_arts:
        attrs["atroz.artifacts"] = n_arts  # a count (the log keeps the paths)
    for k, v in (p.get("metrics") or {}).items():
        attrs[f"atroz.metric.{k}"] = v
    meta = p.get("meta")
    if isinstance(meta, Mapping):
        for k, v in meta.items():
            attrs[f"atroz.meta.{k}"] = v
    parent = p.get("parent")
    if isinstance(parent, str) and parent and not parent_known:
        attrs["atroz.parent_span"] = parent
    return attrs


def phase_status(status: Any, err: Any) -> dict[str, Any]:
    """OTLP status: OK for completed, ERROR (with the exception) for failed and cancelled,
    unset for anything else (running, interrupted: how it ended is unknown)."""
    if status == "completed":
        return {"code": STATUS_OK}
    if status in ("failed", "cancelled"):
        msg = str(status)
        if isinstance(err, Mapping):
            msg = f"{err.get('type')}: {err.get('msg')}"
        return {"code": STATUS_ERROR, "message": msg[:MAX_VALUE_CHARS]}
    return {"code": 0}


def phase_span(
    run_id: str,
    p: Mapping[str, Any],
    start: float,
    end: float,
    *,
    ended: bool = True,
    events: Iterable[dict[str, Any]] = (),
    dropped_events: int = 0,
    parent_known: bool = True,
) -> Span:
    """One phase (a snapshot phase's fields) as an OTLP span from ``start`` to ``end`` (Unix
    seconds), with its span ``events`` (``span_event``) and, for an error, the
    semantic-conventions ``exception`` event at its end. The live push and
    ``surface.otlp_json`` both build their spans here, so they describe the same spans."""
    kv = attributes(phase_attributes(p, ended=ended, parent_known=parent_known))
    span = str(p.get("span"))
    out: Span = {
        "traceId": trace_id(run_id),
        "spanId": span_id(run_id, span),
        "name": str(p.get("phase")),  # the key: low cardinality, as OTel asks of names
        "kind": SPAN_KIND_INTERNAL,
        "startTimeUnixNano": nanos(start),
        "endTimeUnixNano": nanos(end),
        "attributes": kv[:MAX_ATTRIBUTES_PER_SPAN],
    }
    if len(kv) > MAX_ATTRIBUTES_PER_SPAN:
        out["droppedAttributesCount"] = len(kv) - MAX_ATTRIBUTES_PER_SPAN
    parent = p.get("parent")
    if isinstance(parent, str) and parent and parent_known:
        out["parentSpanId"] = span_id(run_id, parent)
    evs = list(events)
    err = p.get("error")
    if isinstance(err, Mapping):
        exc = {
            "exception.type": err.get("type"),
            "exception.message": err.get("msg"),
            "exception.stacktrace": err.get("tb") or None,
        }
        evs.append({"timeUnixNano": nanos(end), "name": "exception",
                    "attributes": attributes(exc)})  # fmt: skip
    evs.sort(key=lambda e: int(e["timeUnixNano"]))
    if evs:
        out["events"] = evs
    if dropped_events:
        out["droppedEventsCount"] = dropped_events
    out["status"] = phase_status(p.get("status"), err)
    return out


def request(
    items: Iterable[Item], resources: Callable[[tuple[str, int]], Mapping[str, Any]]
) -> dict[str, Any]:
    """An ``ExportTraceServiceRequest`` (as a JSON-ready dict): one ``resourceSpans`` per
    process of a run, in the order first seen."""
    from .. import __version__

    groups: dict[tuple[str, int], list[Span]] = {}
    for key, span in items:
        groups.setdefault(key, []).append(span)
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": attributes(resources(key))},
                "scopeSpans": [
                    {"scope": {"name": SCOPE_NAME, "version": __version__}, "spans": spans}
                ],
            }
            for key, spans in groups.items()
        ]
    }


# -- the pusher ---------------------------------------------------------------------------------


class _Outcome:
    __slots__ = ("ok", "retry", "after", "down", "rejected")

    def __init__(
        self,
        ok: bool,
        retry: bool = False,
        after: float | None = None,
        down: bool = False,
        rejected: int = 0,
    ) -> None:
        self.ok = ok
        self.retry = retry  # worth trying the same batch again
        self.after = after  # the collector's Retry-After, seconds
        self.down = down  # nothing answered (refused, unreachable, timed out)
        self.rejected = rejected  # spans the collector refused in a partial success


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        from email.utils import parsedate_to_datetime

        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


class Pusher:
    """Follows a run's log and pushes its phases to an OTLP/HTTP endpoint as JSON spans.

    ``source`` is a ``Monitor`` (its runs' logs, this monitor's runs only, jobs started later
    included), a ``Run``, or one or more log paths (every run in them). The thread starts at
    construction; ``close()`` flushes within ``close_timeout`` seconds and stops it. Nothing
    here raises after construction: failures are counted in ``health()``.
    """

    def __init__(
        self,
        source: Any,
        endpoint: str,
        *,
        timeout: float = 5.0,
        batch_max: int = 512,
        flush_interval: float = 1.0,
        queue_max: int = 8192,
        max_retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        close_timeout: float = 5.0,
        poll_interval: float = 0.2,
        headers: Mapping[str, str] | None = None,
        service_name: str | None = None,
    ) -> None:
        self.endpoint = check_endpoint(endpoint)
        for name, v in (
            ("timeout", timeout),
            ("flush_interval", flush_interval),
            ("backoff", backoff),
            ("max_backoff", max_backoff),
            ("close_timeout", close_timeout),
            ("poll_interval", poll_interval),
        ):
            if isinstance(v, bool) or not _num(v) or not 0 < v < float("inf"):
                raise ValueError(f"{name} must be a positive number of seconds, not {v!r}")
        for name, n in (("batch_max", batch_max), ("queue_max", queue_max)):
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ValueError(f"{name} must be a positive integer, not {n!r}")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be a non-negative integer, not {max_retries!r}")
        self._paths, self._monitor, want = self._sources(source)
        self.timeout = float(timeout)
        self.batch_max = batch_max
        self.flush_interval = float(flush_interval)
        self.queue_max = queue_max
        self.max_retries = max_retries
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.close_timeout = float(close_timeout)
        self.poll_interval = float(poll_interval)
        self._headers = {
            "Content-Type": "application/json",
            "User-Agent": "atroz_monitor",
            **dict(headers or {}),
        }
        self._builder = SpanBuilder(want, service_name=service_name)
        self._followers: dict[str, Follower] = {}
        self._queue: deque[Item] = deque()
        self._batch: list[Item] | None = None  # in flight, or waiting for its retry
        self._attempts = 0
        self._retry_at = 0.0
        self._last_flush = time.monotonic()
        self._stop = threading.Event()  # close() asked: drain, flush, stop
        self._abort = threading.Event()  # close() ran out of time: stop now
        self._deadline = float("inf")
        self._owner_pid = os.getpid()
        self._opener: Any = None
        # health (written by the thread only; ints and str read from any thread: GIL-atomic)
        self.spans_sent = 0
        self.spans_dropped = 0
        self.requests_sent = 0
        self.requests_failed = 0
        self.retries = 0
        self.last_error: str | None = None
        self._thread = threading.Thread(target=self._run, name="atroz-otlp", daemon=True)
        self._thread.start()

    @staticmethod
    def _sources(source: Any) -> tuple[list[str], Any, Callable[[str], bool] | None]:
        if isinstance(source, (str, os.PathLike)):
            return [str(os.fspath(source))], None, None
        if hasattr(source, "runs") and hasattr(source, "run_id"):  # a Monitor
            mon = source

            def want(run_id: str) -> bool:
                return any(r.id == run_id for r in mon.runs())

            return [], mon, want
        if hasattr(source, "path") and hasattr(source, "id"):  # a Run
            rid = source.id
            return [source.path], None, lambda r: r == rid
        if isinstance(source, Iterable):
            paths = [os.fspath(p) for p in source]
            if paths and all(isinstance(p, str) for p in paths):
                return [str(p) for p in paths], None, None
        raise ValueError(
            f"source must be a Monitor, a Run or log path(s), not {type(source).__name__}"
        )

    # -- public ----------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """Counters, merged into the run's health (and so into ``run_end``)."""
        return {
            "otlp_spans_sent": self.spans_sent,
            "otlp_spans_dropped": self.spans_dropped,
            "otlp_spans_queued": len(self._queue) + len(self._batch or ()),
            "otlp_requests_sent": self.requests_sent,
            "otlp_requests_failed": self.requests_failed,
            "otlp_retries": self.retries,
            "otlp_last_error": self.last_error,
        }

    def close(self, timeout: float | None = None) -> None:
        """Push what the log holds now, within ``timeout`` (default ``close_timeout``) seconds,
        then stop. Spans not delivered by then are counted as dropped. Idempotent."""
        t = self._thread
        if os.getpid() != self._owner_pid or not t.is_alive():
            return  # a forked child has no pusher thread; a second close has nothing to do
        budget = self.close_timeout if timeout is None else max(0.0, float(timeout))
        self._deadline = time.monotonic() + budget
        self._stop.set()
        t.join(budget + 0.1)
        if t.is_alive():
            # Stuck in one request: its own timeout bounds it; do not wait for more.
            self._abort.set()
            t.join(0.2)

    # -- the thread ------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._read()
                self._enqueue(self._builder.take())
                self._send_due(closing=False)
                self._stop.wait(self._sleep_for())
            self._final()
        except Exception as exc:  # a bug must not leave a silent dead thread: say why
            self.last_error = f"pusher stopped: {type(exc).__name__}: {exc}"

    def _sleep_for(self) -> float:
        s = self.poll_interval
        if any(f.more for f in self._followers.values()):
            return 0.0
        if self._batch is not None:
            s = min(s, max(0.0, self._retry_at - time.monotonic()))
        return s

    def _read(self, deadline: float | None = None) -> None:
        if self._monitor is not None:
            try:
                for r in self._monitor.runs():
                    if r.path not in self._followers:
                        self._followers[r.path] = Follower(r.path)
            except Exception as exc:
                self.last_error = f"listing runs: {type(exc).__name__}: {exc}"
        else:
            for p in self._paths:
                if p not in self._followers:
                    self._followers[p] = Follower(p)
        for f in self._followers.values():
            while True:
                reset, events = f.poll()
                if reset:
                    self._builder.reset()
                for ev in events:
                    self._builder.feed(ev)
                # Running: one slice per follower per tick (the loop does not sleep while
                # `more`), so sending gets its turn. Closing: read to the end, bounded.
                if deadline is None or not f.more or time.monotonic() >= deadline:
                    break

    def _enqueue(self, items: list[Item]) -> None:
        room = self.queue_max - len(self._queue)
        if len(items) > room:
            # Like OpenTelemetry's batch processor: a full queue drops the newest spans.
            self.spans_dropped += len(items) - max(room, 0)
            items = items[: max(room, 0)]
        self._queue.extend(items)

    def _send_due(self, closing: bool) -> None:
        now = time.monotonic()
        if self._batch is None:
            if not self._queue:
                self._last_flush = now
                return
            if (
                not closing
                and len(self._queue) < self.batch_max
                and now - self._last_flush < self.flush_interval
            ):
                return
            n = min(self.batch_max, len(self._queue))
            self._batch = [self._queue.popleft() for _ in range(n)]
            self._attempts = 0
            self._retry_at = now
        if now < self._retry_at:
            return
        self._attempt(closing)

    def _attempt(self, closing: bool) -> None:
        batch = self._batch
        assert batch is not None
        timeout = self.timeout
        if closing:
            timeout = min(timeout, max(0.05, self._deadline - time.monotonic()))
        out = self._post(batch, timeout)
        now = time.monotonic()
        self._last_flush = now
        if out.ok:
            self.requests_sent += 1
            self.spans_sent += len(batch) - out.rejected
            self.spans_dropped += out.rejected
            self._batch = None
            return
        self.requests_failed += 1
        self._attempts += 1
        if not out.retry or self._attempts > self.max_retries:
            self._give_up()
            return
        delay = min(self.backoff * 2 ** (self._attempts - 1), self.max_backoff)
        delay *= random.uniform(0.8, 1.2)  # jitter: many hosts must not retry in lockstep
        if out.after is not None:
            delay = max(delay, min(out.after, MAX_RETRY_AFTER_S))
        self._retry_at = now + delay
        if closing and (out.down or self._retry_at > self._deadline):
            # Closing, and the collector is down or wants more time than is left: waiting
            # would only delay the end of the pipeline.
            self._give_up()
            self._drop_queue()
            return
        self.retries += 1

    def _give_up(self) -> None:
        self.spans_dropped += len(self._batch or ())
        self._batch = None

    def _drop_queue(self) -> None:
        self.spans_dropped += len(self._queue)
        self._queue.clear()

    def _final(self) -> None:
        deadline = self._deadline
        self._read(deadline)  # what the pipeline wrote up to close() is due
        self._enqueue(self._builder.take_all())
        while (self._batch is not None or self._queue) and not self._abort.is_set():
            now = time.monotonic()
            if now >= deadline:
                break
            if self._batch is not None and self._retry_at > now:
                if self._retry_at >= deadline:
                    break  # the retry would come too late: what is left is dropped below
                if self._abort.wait(self._retry_at - now):
                    break
                continue
            self._send_due(closing=True)
        if self._batch is not None:
            self._give_up()
        self._drop_queue()
        for f in self._followers.values():
            f.close()

    def _post(self, batch: list[Item], timeout: float) -> _Outcome:
        import urllib.error
        import urllib.request

        try:
            body = json.dumps(
                request(batch, self._builder.resource), separators=(",", ":"), allow_nan=False
            ).encode("utf-8")
        except Exception as exc:  # unencodable: retrying will not help
            self.last_error = f"encoding: {type(exc).__name__}: {exc}"
            return _Outcome(False)
        req = urllib.request.Request(self.endpoint, data=body, headers=self._headers)
        if self._opener is None:
            self._opener = urllib.request.build_opener()
        try:
            with self._opener.open(req, timeout=timeout) as resp:
                data = resp.read(1 << 20)
            return _Outcome(True, rejected=_rejected(data, len(batch)))
        except urllib.error.HTTPError as exc:
            code = exc.code
            self.last_error = f"collector answered {code}"
            after = _retry_after(exc.headers.get("Retry-After")) if exc.headers else None
            try:
                exc.close()
            except Exception:
                pass
            # OTLP/HTTP: 429, 502, 503, 504 are retryable; other 5xx are worth a retry too
            # (a collector restarting answers 500); other 4xx mean the request is wrong.
            retry = code in (408, 429) or code >= 500
            return _Outcome(False, retry=retry, after=after if code in (429, 503) else None)
        except Exception as exc:  # refused, reset, timed out, DNS, TLS ...
            reason = getattr(exc, "reason", exc)
            self.last_error = f"{type(reason).__name__}: {reason}"
            return _Outcome(False, retry=True, down=True)


def _rejected(data: bytes, n: int) -> int:
    """Spans a collector refused in an OTLP partial success (``rejectedSpans``)."""
    if not data or b"rejectedSpans" not in data:
        return 0
    try:
        v = int(json.loads(data)["partialSuccess"]["rejectedSpans"])
    except Exception:
        return 0
    return min(max(v, 0), n)
