"""The read-only HTTP API as a pure renderer: ``route(...) -> Response``.

``route(source, method, path, query, headers)`` returns ``(status, headers, body)`` and
touches no socket, so every route is testable without a server (prometheus_client's
exposition does the same). The HTTP handler in ``server.py`` only checks the connection
(Host, token, limits) and sends what this returns. Server-Sent Events are the one thing a
single response cannot carry: ``Stream`` renders a client's messages and the server writes
them as they come (``docs/API.md`` has the contract).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import importlib.resources
import json
import re
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from ..events import dumps
from ..read import catalog
from ..read.state import State
from ..store.source import RunEntry, Source, View
from . import chrome_trace, otlp_json, prometheus

__all__ = [
    "API_PREFIX",
    "JSON",
    "SECURITY_HEADERS",
    "Response",
    "Stream",
    "error",
    "json_response",
    "route",
    "sse_message",
]

API_PREFIX = "/api/v1"
JSON = "application/json; charset=utf-8"
SSE = "text/event-stream; charset=utf-8"

# On every response. CSP default-src 'self': the page has no inline script or style, so an
# injected string can at worst be text. No Access-Control-* header at all: the data is for
# this origin only.
SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("Content-Security-Policy", "default-src 'self'"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
)

PHASE_STATUSES = ("running", "completed", "failed", "cancelled", "interrupted")
RUN_STATUSES = ("running", "completed", "failed", "cancelled", "interrupted")
STREAM_RUNS = 100
"""Runs carried by the stream's ``runs`` message (the newest)."""
MAX_NAMES = 50
"""Pipeline names counted in a runs page's ``names`` (the most common)."""
SEVERITIES = ("info", "warning", "critical")
ALERT_STATES = ("raised", "acknowledged", "resolved", "open")
MAX_STEP = 1_000_000

# Pagination (docs/API.md): every list route takes ``limit`` (bounded) and ``cursor`` (opaque,
# from the previous page's ``next_cursor``). Defaults keep a response small whatever the
# directory holds (issue 13: /api/v1/alerts on 10,000 runs never finished).
LIMITS = {
    "runs": (100, 1000),
    "alerts": (100, 1000),
    "phases": (1000, 10_000),
    "logs": (200, 1000),
    "artifacts": (200, 1000),
    "history": (200, 1000),
}
"""List -> (default limit, largest limit allowed)."""

STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".woff2": "font/woff2",
}
_ASSET_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")


class Response(NamedTuple):
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class BadRequest(Exception):
    """A bad query value: 400 naming the parameter."""


class NotFound(Exception):
    """404 with this message."""


def _headers(content_type: str, cache: str = "no-store") -> list[tuple[str, str]]:
    return [("Content-Type", content_type), ("Cache-Control", cache), *SECURITY_HEADERS]


def json_response(
    obj: Any, status: int = 200, extra: list[tuple[str, str]] | None = None
) -> Response:
    """``obj`` as compact ASCII JSON (control characters and non-ASCII escaped)."""
    body = dumps(obj).encode("ascii")
    return Response(status, _headers(JSON) + (extra or []), body)


def error(status: int, message: str, extra: list[tuple[str, str]] | None = None) -> Response:
    """An error as ``{"error": message}``."""
    return json_response({"error": message, "status": status}, status, extra)


def _raw_json(body: bytes, extra: list[tuple[str, str]] | None = None) -> Response:
    return Response(200, _headers(JSON) + (extra or []), body)


# -- query parameters ------------------------------------------------------------------------


class Query:
    def __init__(self, query: str) -> None:
        try:
            self._q = urllib.parse.parse_qs(query, keep_blank_values=True, max_num_fields=100)
        except ValueError as exc:
            raise BadRequest(f"bad query string: {exc}") from None

    def get(self, name: str) -> str | None:
        v = self._q.get(name)
        return v[-1] if v else None

    def values(self, name: str) -> list[str]:
        """Every value of a repeatable parameter, in order."""
        return list(self._q.get(name, []))

    def tags(self, name: str = "tag") -> dict[str, str] | None:
        """Repeatable ``tag=KEY=VALUE`` (split at the first ``=``, so a value may hold
        ``=``) as ``{KEY: VALUE}``; None when absent."""
        out: dict[str, str] = {}
        for raw in self.values(name):
            k, sep, v = raw.partition("=")
            if not sep or not k:
                raise BadRequest(f"{name}: expected KEY=VALUE, got {raw[:40]!r}")
            if k in out and out[k] != v:
                raise BadRequest(f"{name}: {k[:40]!r} given twice with different values")
            out[k] = v
        return out or None

    def int(self, name: str, default: int | None, lo: int = 0, hi: int = 2**62) -> int | None:
        raw = self.get(name)
        if raw is None or raw == "":
            return default
        try:
            v = int(raw, 10)
        except ValueError:
            raise BadRequest(f"{name}: not an integer: {raw[:40]!r}") from None
        if not lo <= v <= hi:
            raise BadRequest(f"{name}: must be between {lo} and {hi}, got {v}")
        return v

    def float(self, name: str) -> float | None:
        raw = self.get(name)
        if raw is None or raw == "":
            return None
        try:
            v = float(raw)
        except ValueError:
            raise BadRequest(f"{name}: not a number: {raw[:40]!r}") from None
        if v != v or v in (float("inf"), float("-inf")):
            raise BadRequest(f"{name}: not a finite number: {raw[:40]!r}")
        return v

    def choice(self, name: str, allowed: tuple[str, ...]) -> set[str] | None:
        """A comma-separated subset of ``allowed``, or None when absent."""
        raw = self.get(name)
        if raw is None or raw == "":
            return None
        vals = {v.strip() for v in raw.split(",") if v.strip()}
        bad = sorted(vals - set(allowed))
        if bad or not vals:
            raise BadRequest(
                f"{name}: unknown value {(bad or [raw])[0][:40]!r} (one of {', '.join(allowed)})"
            )
        return vals


def _encode_cursor(key: Any) -> str:
    raw = json.dumps(key, separators=(",", ":")).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _decode_cursor(q: Query) -> Any:
    raw = q.get("cursor")
    if raw is None or raw == "":
        return None
    try:
        if len(raw) > 1024:
            raise ValueError("too long")
        data = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        return json.loads(data)
    except (ValueError, binascii.Error):
        raise BadRequest("cursor: not a cursor this server gave out") from None


def _limit(q: Query, what: str) -> int:
    default, hi = LIMITS[what]
    v = q.int("limit", default, 1, hi)
    assert v is not None
    return v


def _page_offset(items: list[Any], q: Query, what: str) -> tuple[list[Any], dict[str, Any]]:
    """A page of a list whose order is fixed (a run's phases, logs, alerts): the cursor is
    a position in it."""
    limit = _limit(q, what)
    cur = _decode_cursor(q)
    if cur is None:
        start = 0
    elif type(cur) is list and len(cur) == 1 and type(cur[0]) is int and cur[0] >= 0:
        start = cur[0]
    else:
        raise BadRequest("cursor: not a cursor this server gave out")
    page = items[start : start + limit]
    end = start + len(page)
    return page, {
        "total": len(items),
        "limit": limit,
        "next_cursor": _encode_cursor([end]) if end < len(items) else None,
    }


def _page_keyed(
    items: list[Any], q: Query, what: str, key: Callable[[Any], list[Any]]
) -> tuple[list[Any], dict[str, Any]]:
    """A page of a list sorted by ``key`` descending (newest first), where items come and
    go between requests: the cursor is the key of the last item given, so a page never
    repeats or skips an item because newer ones arrived."""
    limit = _limit(q, what)
    cur = _decode_cursor(q)
    start = 0
    if cur is not None:
        if type(cur) is not list:
            raise BadRequest("cursor: not a cursor this server gave out")
        try:
            while start < len(items) and key(items[start]) >= cur:
                start += 1
        except TypeError:
            raise BadRequest("cursor: not a cursor this server gave out") from None
    page = items[start : start + limit]
    more = start + len(page) < len(items)
    return page, {
        "total": len(items),
        "limit": limit,
        "next_cursor": _encode_cursor(key(page[-1])) if more and page else None,
    }


def _entry_key(e: RunEntry) -> list[Any]:
    return [e.start, e.id]


def _alert_key(a: Mapping[str, Any]) -> list[Any]:
    t = a.get("raised_ts") or a.get("ts") or 0
    t = t if isinstance(t, (int, float)) else 0
    return [t, str(a.get("run")), str(a.get("alert") or a.get("id"))]


# -- routing ---------------------------------------------------------------------------------


Handler = Callable[[Source, list[str], Query, Mapping[str, str]], Response]


def route(
    source: Source,
    method: str,
    path: str,
    query: str = "",
    headers: Mapping[str, str] | None = None,
    *,
    server_info: Callable[[], Mapping[str, Any]] | None = None,
) -> Response:
    """The whole read-only API: one request in, one response out.

    ``path`` is the raw (percent-encoded) request path, ``query`` the raw query string,
    ``headers`` the request headers with lower-case names. HEAD is GET without the body.
    The SSE stream is not served here (see ``Stream``); asked for, it is a 404 unless the
    server handles it first.
    """
    hdrs = headers or {}
    if method not in ("GET", "HEAD"):
        resp = error(
            405, f"method {method[:20]!r} not allowed (read-only)", [("Allow", "GET, HEAD")]
        )
        return Response(
            resp.status, resp.headers + [("Content-Length", str(len(resp.body)))], resp.body
        )
    try:
        resp = _dispatch(source, path, Query(query), hdrs, server_info)
    except BadRequest as exc:
        resp = error(400, str(exc))
    except NotFound as exc:
        resp = error(404, str(exc))
    hdrs_out = resp.headers + [("Content-Length", str(len(resp.body)))]
    # HEAD: the GET response's headers (its Content-Length included), no body.
    return Response(resp.status, hdrs_out, b"" if method == "HEAD" else resp.body)


def _segments(path: str) -> list[str]:
    # Split before decoding: an encoded "/" stays inside its segment.
    return [urllib.parse.unquote(s, errors="strict") for s in path.split("/")[1:]]


def _dispatch(
    source: Source,
    path: str,
    q: Query,
    headers: Mapping[str, str],
    server_info: Callable[[], Mapping[str, Any]] | None,
) -> Response:
    try:
        seg = _segments(path)
    except UnicodeDecodeError:
        raise NotFound("no such route") from None
    if path == "/" or path == "/index.html":
        return _static("index.html", headers)
    if path == "/favicon.svg":
        return _static("favicon.svg", headers)
    if seg and seg[0] == "static" and len(seg) >= 2:
        return _static("/".join(seg[1:]), headers)
    if path == "/healthz":
        info = server_info() if server_info is not None else {}
        return json_response({"status": "ok", **source.health(), **info})
    if path == "/metrics":
        return _metrics(source, headers)
    if len(seg) < 3 or seg[0] != "api" or seg[1] != "v1":
        raise NotFound("no such route")
    source.ensure_fresh()
    rest = seg[2:]
    head = rest[0]
    if head == "runs":
        if len(rest) == 1:
            return _runs(source, q)
        return _run_route(source, rest[1], rest[2:], q)
    if head == "alerts" and len(rest) == 1:
        return _all_alerts(source, q)
    if head == "summary" and len(rest) == 1:
        return _raw_json(
            source.cached(("summary",), lambda: dumps(source.summary()).encode("ascii"))
        )
    if head == "phases" and len(rest) == 3 and rest[2] in ("history", "trends"):
        return _phase_history(source, rest[1], rest[2], q)
    if head == "stream" and len(rest) == 1:
        raise NotFound("the event stream is served by the HTTP server only")
    if head == "compare" and len(rest) == 1:
        return _compare(source, q)
    if head == "insights" and len(rest) == 1:
        return _insights(source, q)
    raise NotFound("no such route")


def _runs(source: Source, q: Query) -> Response:
    """Runs, newest first, filtered (``status``, ``name``, ``q`` in id or name, ``since`` /
    ``until`` on the start time) and paginated; ``names`` counts the runs of the most common
    pipeline names (for a picker that groups by name)."""
    statuses = q.choice("status", RUN_STATUSES)
    name = q.get("name")
    text = (q.get("q") or "").lower()
    since = q.float("since")
    until = q.float("until")

    def build() -> bytes:
        index = source.run_index()
        if statuses is not None or name or text or since is not None or until is not None:
            index = [
                e
                for e in index
                if (statuses is None or e.status in statuses)
                and (not name or e.name == name)
                and (not text or text in e.id.lower() or text in e.name.lower())
                and (since is None or e.start >= since)
                and (until is None or e.start < until)
            ]
        page, meta = _page_keyed(index, q, "runs", _entry_key)
        body = {
            "runs": source.rows(e.id for e in page),
            **meta,
            "counts": _counts(source),
            "names": _names(source),
        }
        return dumps(body).encode("ascii")

    # Per page asked (the query), once per change: rows of finished runs come from their
    # summaries, and eight clients polling the first page cost one build, not eight.
    key = (statuses and tuple(sorted(statuses)), name, text, since, until, q.get("limit"))
    return _raw_json(source.cached(("runs", key, q.get("cursor")), build, max_age=0.0))


def _counts(source: Source) -> dict[str, int]:
    """Runs by status, over every run (the page's cards; a page of rows cannot count them)."""

    def build() -> dict[str, int]:
        out: dict[str, int] = {}
        for e in source.run_index():
            out[e.status] = out.get(e.status, 0) + 1
        return out

    return source.cached(("counts",), build, max_age=0.0)  # type: ignore[no-any-return]


def _names(source: Source) -> list[dict[str, Any]]:
    def build() -> list[dict[str, Any]]:
        counts: dict[str, list[Any]] = {}
        for e in source.run_index():  # newest first: the first seen is the latest
            c = counts.get(e.name)
            if c is None:
                counts[e.name] = [1, e.start]
            else:
                c[0] += 1
        top = sorted(counts.items(), key=lambda kv: (-kv[1][0], str(kv[0])))[:MAX_NAMES]
        return [{"name": k, "runs": v[0], "latest_start": v[1]} for k, v in top]

    return source.cached(("names",), build)  # type: ignore[no-any-return]


def _view(source: Source, run: str) -> View:
    rid = source.resolve(run)
    if rid is None:
        raise NotFound("no runs yet" if run == "latest" else f"no run {run!r}")
    v = source.view(rid)
    if v is None:
        raise NotFound(f"no run {run!r}")
    return v


_RUN_ROUTES = (
    "progress",
    "phases",
    "resources",
    "errors",
    "warnings",
    "artifacts",
    "alerts",
    "export",
    "error-groups",
)


def _run_route(source: Source, run: str, rest: list[str], q: Query) -> Response:
    if rest and rest[0] not in _RUN_ROUTES:
        raise NotFound("no such route")
    v = _view(source, run)
    snap = v.snap
    rid = snap["run"]["id"]
    if not rest:
        return _raw_json(v.body())
    what = rest[0]
    if what == "phases":
        if len(rest) == 1:
            page, meta = _page_offset(_filter_phases(snap, q), q, "phases")
            return json_response({"run": rid, "phases": page, **meta})
        p = _find_phase(snap, rest[1])
        if len(rest) == 2:
            return json_response(p)
        if len(rest) == 3 and rest[2] == "sub-phases":
            page, meta = _page_offset(_descendants(snap, p["span"]), q, "phases")
            return json_response({"run": rid, "span": p["span"], "phases": page, **meta})
        raise NotFound("no such route")
    if len(rest) != 1:
        raise NotFound("no such route")
    if what == "progress":
        return json_response(
            {
                "run": rid,
                "status": snap["run"]["status"],
                "progress": snap["progress"],
                "flow": snap["flow"],
                "duration_ms": snap["run"]["duration_ms"],
            }
        )
    if what == "resources":
        return json_response(_resources(v, q))
    if what in ("errors", "warnings"):
        out = _logs(snap, what)
        out[what], meta = _page_offset(out[what], q, "logs")
        return json_response({**out, "page": meta})
    if what == "artifacts":
        out = _artifacts(snap)
        out["phases"], meta = _page_offset(out["phases"], q, "artifacts")
        return json_response({**out, "page": meta})
    if what == "alerts":
        page, meta = _page_offset(_alert_filter(snap["alerts"], q), q, "alerts")
        return json_response({"run": rid, "alerts": page, **meta})
    if what == "error-groups":
        return json_response(_error_groups(snap, q))
    assert what == "export"
    fmt = q.get("format")
    if fmt in (None, "", "json"):
        return _export(source, v)
    if fmt not in ("chrome-trace", "otlp-json"):
        raise BadRequest(
            f"format: unknown value {fmt[:40]!r} (one of json, chrome-trace, otlp-json)"
        )
    doc = chrome_trace.chrome_trace(snap) if fmt == "chrome-trace" else otlp_json.otlp_json(snap)
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", rid)[:120] or "run"
    ext = "trace.json" if fmt == "chrome-trace" else "otlp.json"
    return Response(
        200,
        _headers(JSON) + [("Content-Disposition", f'attachment; filename="{safe}.{ext}"')],
        otlp_json.encode_json(doc),
    )


def _filter_phases(snap: dict[str, Any], q: Query) -> list[dict[str, Any]]:
    statuses = q.choice("status", PHASE_STATUSES)
    parent = q.get("parent")
    depth = q.int("depth", None, 0, 10_000)
    phases = snap["phases"]
    if parent is not None and parent != "none" and not any(p["span"] == parent for p in phases):
        raise BadRequest(f"parent: no phase with span {parent[:60]!r} in this run")
    out = []
    for p in phases:
        if statuses is not None and p["status"] not in statuses:
            continue
        if parent is not None and p["parent"] != (None if parent == "none" else parent):
            continue
        if depth is not None and p.get("depth") != depth:
            continue
        out.append(p)
    return out


def _find_phase(snap: dict[str, Any], ident: str) -> dict[str, Any]:
    """A span id, else a phase key (its latest record: the last to start)."""
    best: dict[str, Any] | None = None
    for p in snap["phases"]:
        if p["span"] == ident:
            return p  # type: ignore[no-any-return]
        if p["phase"] == ident and (
            best is None or (p.get("start") or 0.0) >= (best.get("start") or 0.0)
        ):
            best = p
    if best is None:
        raise NotFound(f"no phase {ident!r} in run {snap['run']['id']!r}")
    return best


def _descendants(snap: dict[str, Any], span: str) -> list[dict[str, Any]]:
    inside = {span}
    out = []
    for p in snap["phases"]:  # depth-first order: a parent always comes before its children
        if p["parent"] in inside and p["span"] not in inside:
            inside.add(p["span"])
            out.append(p)
    return out


def _resources(v: View, q: Query) -> dict[str, Any]:
    since = q.int("since", 0, 0)
    step = q.int("step", 1, 1, MAX_STEP)
    assert since is not None and step is not None
    res = v.snap["resources"]
    held = res["samples"]
    total = v.samples_total
    first = total - len(held)
    start = max(since, first)
    picked = held[start - first :] if start < total else []
    if step > 1:
        # By absolute index, so incremental reads keep the same grid.
        picked = [s for i, s in enumerate(picked, start) if i % step == 0]
    return {
        "run": v.snap["run"]["id"],
        "since": since,
        "step": step,
        "first": start if start < total else total,
        "next": total,
        "dropped": res["dropped"],
        "missed": max(0, first - since),
        "samples": picked,
        "peak_rss_bytes": res["peak_rss_bytes"],
        "peak_tree_rss_bytes": res["peak_tree_rss_bytes"],
    }


def _logs(snap: dict[str, Any], what: str) -> dict[str, Any]:
    level = "error" if what == "errors" else "warning"
    logs = snap["logs"]
    out: dict[str, Any] = {
        "run": snap["run"]["id"],
        what: [e for e in logs["items"] if e.get("level") == level],
        "count": snap["errors"]["count"] if level == "error" else logs["warnings"],
        "dropped": logs["dropped"],
    }
    if level == "error":
        # Exceptions that ended phases (and the run) are errors too, though not log lines.
        out["failed_phases"] = [
            {k: p[k] for k in ("span", "phase", "name", "status", "error")}
            for p in snap["phases"]
            if p.get("error") is not None or p["status"] == "failed"
        ]
        out["run_error"] = snap["run"].get("error")
    return out


def _artifacts(snap: dict[str, Any]) -> dict[str, Any]:
    names = {p["span"]: p for p in snap["phases"]}
    groups: dict[Any, dict[str, Any]] = {}
    for a in snap["artifacts"]["items"]:
        span = a.get("span")
        g = groups.get(span)
        if g is None:
            p = names.get(span)
            g = groups[span] = {
                "span": span,
                "phase": a.get("phase") if p is None else p["phase"],
                "name": None if p is None else p["name"],
                "artifacts": [],
                "bytes": 0,
            }
        g["artifacts"].append(a)
        if type(a.get("bytes")) is int:
            g["bytes"] += a["bytes"]
    return {
        "run": snap["run"]["id"],
        "total": snap["artifacts"]["total"],
        "phases": list(groups.values()),
    }


def _error_groups(snap: dict[str, Any], q: Query) -> dict[str, Any]:
    """The run's error groups (read/errgroups.py), a page at a time: ``limit`` (default 100,
    at most 1,000) and the ``cursor`` the previous page returned as ``next_cursor``."""
    eg = snap.get("error_groups") or {"groups": [], "gone": []}
    levels = q.choice("level", ("error", "warning"))
    limit = q.int("limit", 100, 1, 1000)
    start = q.int("cursor", 0, 0)
    assert limit is not None and start is not None
    groups = [g for g in eg["groups"] if levels is None or g.get("level") in levels]
    page = groups[start : start + limit]
    end = start + len(page)
    return {
        **{k: v for k, v in eg.items() if k != "groups"},
        "run": snap["run"]["id"],
        "groups": page,
        "total_groups": len(groups),
        "next_cursor": str(end) if end < len(groups) else None,
    }


def _alert_filter(alerts: list[dict[str, Any]], q: Query) -> list[dict[str, Any]]:
    sev = q.choice("severity", SEVERITIES)
    states = q.choice("state", ALERT_STATES)
    wants_open = states is not None and "open" in states
    if states is not None and "open" in states:
        states = (states - {"open"}) | {"raised", "acknowledged"}
    return [
        a
        for a in alerts
        if (sev is None or a.get("severity") in sev)
        and (states is None or a.get("state") in states)
        and not (wants_open and a.get("cleared"))  # cleared: off the active list
    ]


def _all_alerts(source: Source, q: Query) -> Response:
    """Alerts of every run, newest first, paginated: live runs' from their views, finished
    runs' from their summaries (no run is reduced for this)."""

    def build() -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        live = source.live_ids()
        for s in source.summaries():
            rid = s["run"]
            if rid in live:
                v = source.view(rid)
                alerts = v.snap["alerts"] if v is not None else []
            else:
                alerts = source.parked_alerts(rid, s)
            out.extend({**a, "run": rid} for a in alerts)
        out.sort(key=_alert_key, reverse=True)
        return out

    every = source.cached(("alerts",), build)
    page, meta = _page_keyed(_alert_filter(every, q), q, "alerts", _alert_key)
    return json_response({"alerts": page, **meta})


def _phase_history(source: Source, key: str, what: str, q: Query) -> Response:
    k = q.int("k", 10, 2, 1000)
    before = q.get("before")
    tags = q.tags("tag")
    limit, cur = 0, None
    if what == "history":
        limit = _limit(q, "history")
        cur = _decode_cursor(q)
        if cur is not None and not (
            type(cur) is list and len(cur) == 1 and type(cur[0]) is int and cur[0] >= 0
        ):
            raise BadRequest("cursor: not a cursor this server gave out")
    if key not in source.phase_keys():
        raise NotFound(f"no phase {key!r} in any run")
    if before is not None and source.resolve(before) != before:
        raise BadRequest(f"before: no run {before[:60]!r}")
    tag_key = tuple(sorted(tags.items())) if tags else ()
    if what == "trends":
        return _raw_json(
            source.cached(
                ("trends", key, before, k, tag_key),
                lambda: dumps(source.phase_trends(key, before=before, k=k or 10, tags=tags)).encode(
                    "ascii"
                ),
            )
        )
    # Newest first in pages; each page oldest first, as before. The cursor counts the rows
    # already given from the newest end. Only the page's rows are built (history.Index).
    skip = cur[0] if cur is not None else 0

    def build() -> bytes:
        page = source.phase_history(key, before=before, limit=limit, tags=tags, skip=skip)
        end = max(0, page["count"] - skip)
        begin = max(0, end - limit)
        page["limit"] = limit
        page["next_cursor"] = _encode_cursor([skip + (end - begin)]) if begin > 0 else None
        return dumps(page).encode("ascii")

    return _raw_json(source.cached(("history", key, before, tag_key, skip, limit), build))


def _export(source: Source, v: View) -> Response:
    snap = v.snap
    rid = snap["run"]["id"]
    keys = sorted({p["phase"] for p in snap["phases"]} | set(snap.get("keys") or {}))
    doc = {
        "schema": 1,
        "exported_at": time.time(),
        "run": rid,
        "snapshot": snap,
        "history": {k: source.phase_history(k, before=rid) for k in keys},
    }
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", rid)[:120] or "run"
    return json_response(
        doc, extra=[("Content-Disposition", f'attachment; filename="{safe}.json"')]
    )


def _compare(source: Source, q: Query) -> Response:
    """Run ``a`` against run ``b``: ``compare.compare_runs`` of their snapshots."""
    from ..view.compare import compare_runs

    a, b = q.get("a"), q.get("b")
    if not a or not b:
        raise BadRequest("a and b: two run ids are needed (a=RUN&b=RUN)")
    depth = q.int("depth", 1, 0, 100)
    va, vb = _view(source, a), _view(source, b)
    return json_response(compare_runs(va.snap, vb.snap, depth=1 if depth is None else depth))


def _insights(source: Source, q: Query) -> Response:
    """Trends and heatmap over the runs up to ``run`` (``charts.history_view``) and the
    run's suggestions (``suggestions.suggest``)."""
    from ..view import charts, suggestions

    v = _view(source, q.get("run") or "latest")
    rid = v.snap["run"]["id"]
    limit = q.int("runs", charts.RUNS_SHOWN, 1, 200) or charts.RUNS_SHOWN
    # The suggestions over history read up to SLOW_WINDOW runs whatever the chart shows.
    need = max(limit, suggestions.SLOW_WINDOW)
    # Earlier runs from their catalog summaries (serve holds finished runs as those), the
    # subject from its own state where it is held (its outputs feed the cacheable rule).
    rows = source.cached(
        ("insights", rid, need),
        lambda: charts.rows_from_summaries(source.summaries(), rid, limit=need),
    )
    own = source.read(lambda st: charts.row_of(st.runs[rid]) if rid in st.runs else None)
    if own is not None:
        rows = [*(r for r in rows if r["run"] != rid), own][-need:]
    return json_response(
        {
            "run": rid,
            "history": charts.history_view(rows, limit=limit),
            "suggestions": suggestions.suggest(v.snap, rows),
        }
    )


def _metrics(source: Source, headers: Mapping[str, str]) -> Response:
    """Prometheus exposition: the runs the source holds (live ones) copied under its lock
    (``prometheus.collect``), finished ones from their summaries, rendered outside the lock;
    cached per version like every answer over all runs."""
    source.ensure_fresh()
    om = prometheus.wants_openmetrics(headers.get("accept"))

    def build() -> bytes:
        history_ = source.parked_summaries()
        # What ``collect`` derives from the finished runs (a pass over every summary,
        # ~0.3 s over 10,000) is derived here, outside the source's lock, and kept by
        # ``prometheus`` for this very list: the call under the lock below then costs the
        # held runs only, and no request waits on the lock while a scrape is built.
        prometheus.collect(State(), now=time.time(), history=history_)
        # The latest run of each pipeline has run-labelled series in full: those that are
        # parked (ended, not held) are reduced again, lightly, and cached.
        latest: dict[str, Any] = {}
        for s in history_:
            latest[catalog.pipeline(s)] = s["run"]
        extra = source.reduced(list(latest.values())[-prometheus.MAX_PIPELINES :])

        def collect(held: Any) -> list[prometheus.Family]:
            now = time.time()
            st = State(max_phases=held.max_phases)
            st.runs = {**extra, **held.runs}
            runs = held.runs.items()
            statuses = {rid: source.run_status(r, now) for rid, r in runs}
            alerts = {rid: source.alerts_of(r) for rid, r in runs}
            monitor = {rid: m for rid in st.runs if (m := source.monitor_info(rid)) is not None}
            return prometheus.collect(
                st, statuses, now=now, alerts=alerts, monitor=monitor, history=history_
            )

        families = source.read(collect)
        return prometheus.render_prometheus(families, openmetrics=om).encode("utf-8")

    body = source.cached(("metrics", om), build)
    ctype = prometheus.OPENMETRICS_CONTENT_TYPE if om else prometheus.PROMETHEUS_CONTENT_TYPE
    return Response(200, _headers(ctype), body)


# -- static assets ---------------------------------------------------------------------------

_static_cache: dict[str, tuple[int, int, bytes, str]] = {}


def _static(name: str, headers: Mapping[str, str]) -> Response:
    """A file of the packaged ``static/`` directory, and nothing else: every segment is a
    plain name (no ``..``, no hidden files, no separators), and the type must be known."""
    parts = name.split("/")
    if not all(_ASSET_SEGMENT.match(p) for p in parts):
        raise NotFound("no such asset")
    ext = "." + parts[-1].rsplit(".", 1)[-1] if "." in parts[-1] else ""
    ctype = STATIC_TYPES.get(ext.lower())
    if ctype is None:
        raise NotFound("no such asset")
    res = importlib.resources.files(__package__).joinpath("static")
    for p in parts:
        res = res.joinpath(p)
    try:
        if not res.is_file():
            raise NotFound("no such asset")
        body = res.read_bytes()
    except OSError:
        raise NotFound("no such asset") from None
    etag = '"' + hashlib.sha1(body).hexdigest()[:20] + '"'
    hdrs = _headers(ctype, "no-cache") + [("ETag", etag)]
    if headers.get("if-none-match") == etag:
        return Response(304, hdrs, b"")
    return Response(200, hdrs, body)


# -- Server-Sent Events ------------------------------------------------------------------------


def sse_message(event: str, version: int, data: bytes | str) -> bytes:
    """One SSE message. ``data`` is compact JSON, which has no raw newline in it."""
    if isinstance(data, str):
        data = data.encode("ascii")
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (version, event.encode("ascii"), data)


PING = b": ping\n\n"


class Stream:
    """One SSE client: what it has seen and what to send it next.

    ``open()`` checks the request (404 for an unknown run); ``poll()`` returns the bytes to
    send now: a ``snapshot`` on connect (or when a delta cannot be built), then ``update``
    messages with what changed since the client's last id, and ``runs`` when the run list or
    a run's status changed. Pure apart from reading the source; the server does the waiting.
    """

    def __init__(self, source: Source, query: str, headers: Mapping[str, str]) -> None:
        self.source = source
        q = Query(query)
        self.arg = q.get("run") or "latest"
        self.follow_latest = self.arg == "latest"
        self.run_id: str | None = None
        self.version: int | None = None
        last = headers.get("last-event-id", "").strip()
        # ASCII digits only: "²" is isdigit() yet int() refuses it (a 500 once). Anything
        # else is treated as absent.
        ok = 0 < len(last) < 20 and last.isascii() and last.isdigit()
        self._resume = int(last) if ok else None
        self._runs_sig: tuple[Any, ...] | None = None
        self._events: Any = None  # the run's event count at the last message sent
        self.messages = 0

    def open(self) -> Response | None:
        """None if the stream may start, else the error response to send instead."""
        if not self.follow_latest and self.source.resolve(self.arg) is None:
            return error(404, f"no run {self.arg!r}")
        return None

    def poll(self) -> bytes:
        src = self.source
        out: list[bytes] = []
        rid = src.resolve(self.arg)
        resumed = False
        if rid is not None:
            if self.version is None and self._resume is not None:
                # Last-Event-ID: resume from that version if the delta ring still covers it.
                self.version, self.run_id, resumed = self._resume, rid, True
                self._resume = None
            if self.version is None or rid != self.run_id:
                v = src.view(rid)
                if v is not None:
                    out.append(sse_message("snapshot", v.version, v.body()))
                    self.version, self.run_id = v.version, rid
                    self._events = v.snap["quality"].get("events")
            else:
                delta, v = src.delta(rid, self.version)
                # A resumed latest-follower may have been watching a run that is no longer
                # the latest: once a new run appeared, only a snapshot is safe.
                if v is not None and (
                    delta is None or (resumed and self.follow_latest and delta.new_runs)
                ):
                    out.append(sse_message("snapshot", v.version, v.body()))
                    self.version = v.version
                    self._events = v.snap["quality"].get("events")
                elif v is not None and delta is not None and v.version != self.version:
                    # Any event of the run is news (an alert, a process's end, a metric).
                    events = v.snap["quality"].get("events")
                    if _has_news(delta, v) or events != self._events:
                        out.append(sse_message("update", v.version, _update(v, delta)))
                        self._events = events
                    self.version = v.version
        else:
            self.version = src.version
        index = src.run_index()
        # The newest STREAM_RUNS only: the picker pages through the rest with /api/v1/runs
        # (a message per change carrying 10,000 rows would be megabytes).
        rows = src.rows(e.id for e in index[:STREAM_RUNS])
        counts = _counts(src)
        sig = (
            len(index),
            tuple(sorted(counts.items())),
            *((r["id"], r["status"], r["available"]) for r in rows),
        )
        if sig != self._runs_sig:
            self._runs_sig = sig
            ver = self.version if self.version is not None else src.version
            msg = {"runs": rows, "total": len(index), "counts": counts}
            out.append(sse_message("runs", ver, dumps(msg)))
        self.messages += len(out)
        return b"".join(out)


def _has_news(delta: Any, v: View) -> bool:
    return bool(
        delta.spans is None
        or delta.spans
        or delta.samples_from < v.samples_total
        or delta.logs_from < v.logs_total
        or delta.runs_changed
    )


def _update(v: View, delta: Any) -> bytes:
    snap = v.snap
    spans = delta.spans
    phases = snap["phases"] if spans is None else [p for p in snap["phases"] if p["span"] in spans]
    held = snap["resources"]["samples"]
    first = v.samples_total - len(held)
    samples = held[max(0, delta.samples_from - first) :]
    items = snap["logs"]["items"]
    lfirst = v.logs_total - len(items)
    logs = items[max(0, delta.logs_from - lfirst) :]
    # Everything else of the snapshot comes whole (small, bounded parts), so every panel of
    # the page shows live what a reload shows; only the long lists come as increments.
    body = {k: x for k, x in snap.items() if k not in _INCREMENTAL}
    body.update(
        run=snap["run"]["id"],
        run_info=snap["run"],
        phases=phases,
        samples=samples,
        logs=logs,
        resources={k: x for k, x in snap["resources"].items() if k != "samples"},
        log_counts={k: x for k, x in snap["logs"].items() if k != "items"},
        artifacts={"total": snap["artifacts"]["total"]},
    )
    return dumps(body).encode("ascii")


# Snapshot parts an update sends as increments (or, for the artifacts, as their total).
_INCREMENTAL = frozenset(("schema", "run", "phases", "resources", "logs", "artifacts"))
