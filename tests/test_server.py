"""The HTTP server on 127.0.0.1, port 0: routes, limits, security, SSE, the serve command."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import types
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import ready
from hypothesis import given, settings
from hypothesis import strategies as st
from test_api import append, build_runs
from test_source import wait_for

from atroz_monitor import Monitor
from atroz_monitor.commands import cli
from atroz_monitor.store.source import FileSource
from atroz_monitor.surface import api, server
from atroz_monitor.surface.server import serve_monitor, start_server

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    return build_runs(tmp_path)


@pytest.fixture
def srv(runs_dir: Path) -> Iterator[server.Server]:
    s = start_server(FileSource([runs_dir]), _own_source=True)
    yield s
    s.close()


def request(
    s: server.Server, path: str, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
    try:
        c.request(method, path, headers=headers or {})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def raw(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes, read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        out = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
    return out


class SSE:
    """A minimal EventSource: reads messages from an open stream response."""

    def __init__(self, s: server.Server, query: str, headers: dict[str, str] | None = None):
        self.conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
        self.conn.request("GET", "/api/v1/stream?" + query, headers=headers or {})
        self.sock = self.conn.sock  # the response keeps it; the connection lets go of it
        self.resp = self.conn.getresponse()

    def next(self, timeout: float = 5.0) -> tuple[str, int, Any]:
        """The next message (comments skipped), or AssertionError after ``timeout``."""
        assert self.sock is not None
        self.sock.settimeout(timeout)
        fields: dict[str, str] = {}
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            line = self.resp.fp.readline().decode()
            assert line, "stream closed"
            line = line.rstrip("\n")
            if not line:
                if "event" in fields:
                    return fields["event"], int(fields["id"]), json.loads(fields["data"])
                fields = {}
                continue
            if line.startswith(":"):
                continue
            k, _, v = line.partition(": ")
            fields[k] = v
        raise AssertionError("no message in time")

    def until(self, pred: Any, timeout: float = 5.0) -> tuple[str, int, Any]:
        end = time.monotonic() + timeout
        while True:
            msg = self.next(max(0.05, end - time.monotonic()))
            if pred(msg):
                return msg
            assert time.monotonic() < end, f"no matching message; last {msg[0]}"

    def close(self) -> None:
        self.resp.close()
        self.conn.close()


ROUTES = [
    "/api/v1/runs",
    "/api/v1/runs/latest",
    "/api/v1/runs/r1/progress",
    "/api/v1/runs/r2/phases?status=completed&depth=0",
    "/api/v1/runs/r2/phases/P00",
    "/api/v1/runs/r2/phases/P00/sub-phases",
    "/api/v1/runs/r2/resources?since=2&step=2",
    "/api/v1/runs/r2/errors",
    "/api/v1/runs/r2/warnings",
    "/api/v1/runs/r1/artifacts",
    "/api/v1/runs/r2/alerts?severity=warning",
    "/api/v1/alerts?state=open",
    "/api/v1/phases/P00/history",
    "/api/v1/phases/P00/trends",
    "/api/v1/summary",
    "/api/v1/runs/r2/export",
    "/healthz",
    "/",
    "/favicon.svg",
    "/static/app.js",
    "/static/style.css",
]


def test_every_route_over_http(srv: server.Server) -> None:
    """Every route answers 200 over a real socket, with the security headers."""
    for path in ROUTES:
        status, h, body = request(srv, path)
        assert status == 200, (path, body[:200])
        assert h["content-security-policy"] == "default-src 'self'", path
        assert h["x-frame-options"] == "DENY" and h["x-content-type-options"] == "nosniff"
        assert int(h["content-length"]) == len(body)
        if path.startswith("/api/"):
            assert h["content-type"] == "application/json; charset=utf-8"
            json.loads(body)


def test_keep_alive_serves_two_requests_on_one_connection(srv: server.Server) -> None:
    """Two requests on one HTTPConnection use the same socket."""
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    try:
        c.request("GET", "/api/v1/runs")
        r = c.getresponse()
        assert r.status == 200 and r.getheader("Connection") == "keep-alive"
        r.read()
        sock = c.sock
        c.request("GET", "/api/v1/runs/r1/progress")
        r = c.getresponse()
        assert r.status == 200 and json.loads(r.read())["run"] == "r1"
        assert c.sock is sock
    finally:
        c.close()


def test_head_405_404_400(srv: server.Server) -> None:
    """HEAD has no body; POST 405 with Allow; unknown 404; bad query 400, all JSON."""
    status, h, body = request(srv, "/api/v1/runs/r2", "HEAD")
    assert status == 200 and body == b"" and int(h["content-length"]) > 1000
    status, h, body = request(srv, "/api/v1/runs", "POST")
    assert status == 405 and h["allow"] == "GET, HEAD"
    status, _, body = request(srv, "/api/v1/runs/zzz")
    assert status == 404 and json.loads(body)["error"] == "no run 'zzz'"
    status, _, body = request(srv, "/api/v1/runs/r2/phases?depth=deep")
    assert status == 400 and json.loads(body)["error"].startswith("depth:")


def test_request_line_over_8k_is_414(srv: server.Server) -> None:
    """A 9,000-byte request line gets 414 and the connection is closed."""
    host = f"127.0.0.1:{srv.port}"
    out = raw(srv.port, b"GET /" + b"a" * 9000 + f" HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    assert out.startswith(b"HTTP/1.1 414 ")


def test_too_many_or_too_large_headers_are_431(srv: server.Server) -> None:
    """101 headers, or 70 KiB of headers, get 431."""
    host = f"127.0.0.1:{srv.port}"
    many = "".join(f"X-H{i}: v\r\n" for i in range(101))
    out = raw(srv.port, f"GET / HTTP/1.1\r\nHost: {host}\r\n{many}\r\n".encode())
    assert out.startswith(b"HTTP/1.1 431 ")
    big = "".join(f"X-B{i}: {'v' * 7000}\r\n" for i in range(10))
    out = raw(srv.port, f"GET / HTTP/1.1\r\nHost: {host}\r\n{big}\r\n".encode())
    assert out.startswith(b"HTTP/1.1 431 ")


def test_foreign_host_is_403_stream_included(runs_dir: Path) -> None:
    """A Host that is not loopback or allowed is 403, for the API and the stream."""
    s = start_server(FileSource([runs_dir]), allow_hosts=["dash.local"], _own_source=True)
    try:
        assert request(s, "/api/v1/runs", headers={"Host": "evil.example"})[0] == 403
        assert request(s, "/api/v1/stream", headers={"Host": f"evil.example:{s.port}"})[0] == 403
        assert request(s, "/api/v1/runs", headers={"Host": f"localhost:{s.port}"})[0] == 200
        assert request(s, "/api/v1/runs", headers={"Host": f"dash.local:{s.port}"})[0] == 200
        out = raw(s.port, b"GET /api/v1/runs HTTP/1.1\r\n\r\n")  # no Host at all
        assert out.startswith(b"HTTP/1.1 403 ")
    finally:
        s.close()


def test_token_is_required_once_configured(runs_dir: Path) -> None:
    """With a token: none is 401; Bearer, ?token= (sets an HttpOnly cookie) and that cookie
    are accepted; the page redirects the token out of the URL, keeping the other params."""
    s = start_server(FileSource([runs_dir]), token="s3cret-token", _own_source=True)
    try:
        status, h, _ = request(s, "/api/v1/runs")
        assert status == 401 and h["www-authenticate"] == "Bearer"
        assert request(s, "/api/v1/runs", headers={"Authorization": "Bearer nope"})[0] == 401
        ok = request(s, "/api/v1/runs", headers={"Authorization": "Bearer s3cret-token"})
        assert ok[0] == 200
        status, h, _ = request(s, "/api/v1/runs?token=s3cret-token")
        assert status == 200
        value = h["set-cookie"].split(";")[0].partition("=")[2]
        assert h["set-cookie"] == (
            f"atroz_monitor_token={value}; HttpOnly; SameSite=Strict; Path=/"
        )
        cookie = {"Cookie": f"a=b; atroz_monitor_token={value}"}
        assert request(s, "/api/v1/stream?run=r1", "HEAD", cookie)[0] == 200
        status, h, _ = request(s, "/?token=s3cret-token")
        assert status == 303 and h["location"] == "/" and "HttpOnly" in h["set-cookie"]
        status, h, _ = request(s, "/?a=%2B1&token=s3cret-token&b=x+y")
        assert status == 303 and h["location"] == "/?a=%2B1&b=x+y"
    finally:
        s.close()


def _login(s: server.Server, token: str) -> str:
    """The cookie value the server sets for ``?token=``."""
    status, h, _ = request(s, "/api/v1/runs?token=" + token)
    assert status == 200, status
    return h["set-cookie"].split(";")[0].partition("=")[2]


def test_login_cookie_is_an_hmac_useless_as_a_bearer_token(runs_dir: Path) -> None:
    """The cookie is a 64-hex HMAC, not the token: as a Bearer token it is 401, the raw
    token as a cookie is 401, and another server with the same token sets another cookie
    (a per-server key) that this one refuses."""
    token = "s3cret-token"
    a = start_server(FileSource([runs_dir]), token=token, _own_source=True)
    b = start_server(FileSource([runs_dir]), token=token, _own_source=True)
    try:
        ca, cb = _login(a, token), _login(b, token)
        assert len(ca) == 64 and int(ca, 16) >= 0 and token not in ca
        assert ca != cb
        assert request(a, "/api/v1/runs", headers={"Cookie": f"atroz_monitor_token={ca}"})[0] == 200
        for srv_, hdrs in (
            (a, {"Authorization": f"Bearer {ca}"}),
            (a, {"Cookie": f"atroz_monitor_token={token}"}),
            (b, {"Cookie": f"atroz_monitor_token={ca}"}),
            (a, {"Cookie": f"atroz_monitor_token={ca[:-1]}"}),
        ):
            assert request(srv_, "/api/v1/runs", headers=hdrs)[0] == 401, hdrs
    finally:
        a.close()
        b.close()


def test_host_check_is_an_exact_match_not_a_prefix(runs_dir: Path) -> None:
    """Hosts that only start like an allowed one (localhost.evil.example, a wrong or longer
    port, a suffix) are 403; the exact name and port, in any case, is 200."""
    s = start_server(FileSource([runs_dir]), _own_source=True)
    p = s.port
    try:
        for host in (
            "localhost.evil.example",
            f"localhost.evil.example:{p}",
            f"127.0.0.1:{p + 1}",
            f"127.0.0.1:{p}0",
            f"127.0.0.1:{p}.evil.example",
            f"localhost:{p}@evil.example",
            "127.0.0.1",  # no port: only right on port 80
            "127.0.0.1.evil.example",
            "",
        ):
            assert request(s, "/api/v1/runs", headers={"Host": host})[0] == 403, host
        for host in (f"127.0.0.1:{p}", f"LOCALHOST:{p}", f"[::1]:{p}"):
            assert request(s, "/api/v1/runs", headers={"Host": host})[0] == 200, host
    finally:
        s.close()


def test_token_compare_is_exact_not_a_prefix(runs_dir: Path) -> None:
    """An empty, partial, one-character or extended token is 401 in every place a token is
    taken (Bearer, ?token=); only the exact token is 200."""
    token = "Zk3-vQ9_x7"
    s = start_server(FileSource([runs_dir]), token=token, _own_source=True)
    try:
        for wrong in ("", " ", token[:1], token[:-1], token + "x", token.upper()):
            bearer = {"Authorization": f"Bearer {wrong}"}
            assert request(s, "/api/v1/runs", headers=bearer)[0] == 401, repr(wrong)
            query = urllib.parse.quote(wrong, safe="")
            assert request(s, f"/api/v1/runs?token={query}")[0] == 401, repr(wrong)
        assert request(s, "/api/v1/runs?token")[0] == 401
        assert request(s, "/api/v1/runs", headers={"Authorization": f"Bearer {token}"})[0] == 200
        assert request(s, f"/api/v1/runs?token={token}")[0] == 200
    finally:
        s.close()


@pytest.mark.parametrize("token", ["ab+cd/ef==", "p%q&r#s+t", "+%2B"])
def test_query_token_is_percent_decoded_with_plus_kept(runs_dir: Path, token: str) -> None:
    """``?token=`` is percent-decoded with ``+`` kept as ``+``: a token with ``+ % & #``
    works percent-encoded (and ``+`` also raw); the same token with a space is 401."""
    s = start_server(FileSource([runs_dir]), token=token, _own_source=True)
    try:
        assert request(s, "/api/v1/runs?token=" + urllib.parse.quote(token, safe=""))[0] == 200
        assert request(s, "/api/v1/runs?x=1&token=" + urllib.parse.quote(token, safe="+"))[0] == 200
        spaced = urllib.parse.quote(token.replace("+", " "), safe="")
        assert request(s, "/api/v1/runs?token=" + spaced)[0] == 401
    finally:
        s.close()


@pytest.mark.parametrize("value", [b"\xb2", b"\xc2\xb2", b"\xb9\xb3", b"12a", b"-1"])
def test_last_event_id_that_is_not_ascii_digits_is_absent(srv: server.Server, value: bytes) -> None:
    """A Last-Event-ID that is not ASCII digits (``²`` is isdigit() yet not int()) is
    treated as absent: a full snapshot, no 500, no server error counted."""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
        sock.sendall(
            b"GET /api/v1/stream?run=r1 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
            b"Last-Event-ID: %s\r\n\r\n" % (srv.port, value)
        )
        data = b""
        while b"event: snapshot" not in data:
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 ")
    assert srv.info()["server_errors"] == 0


def test_access_log_escapes_control_bytes(runs_dir: Path, capsys: Any) -> None:
    """ESC, CR, C1 controls, quotes and backslashes in a request target reach the access
    log escaped (\\xNN): every log line is printable ASCII."""
    s = start_server(FileSource([runs_dir]), access_log=True, _own_source=True)
    try:
        for target in (b"/\x1b[31mRED\x1b[0m", b"/api/v1/\rruns", b'/\x9b2J\x07"q\\'):
            out = raw(
                s.port,
                b"GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n"
                % (target, s.port),
            )
            assert out.startswith(b"HTTP/1.1 404 "), out[:40]
    finally:
        s.close()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3, lines
    for line in lines:
        assert all(" " <= ch <= "~" for ch in line), repr(line)
    assert '"GET /\\x1b[31mRED\\x1b[0m" 404' in lines[0]
    assert '"GET /api/v1/\\x0druns" 404' in lines[1]
    assert '"GET /\\x9b2J\\x07\\x22q\\x5c" 404' in lines[2]


def test_non_loopback_bind_needs_a_token(runs_dir: Path, monkeypatch: Any) -> None:
    """start_server refuses 0.0.0.0 without a token (before binding anything)."""
    monkeypatch.delenv("ATROZ_MONITOR_TOKEN", raising=False)
    src = FileSource([runs_dir])
    try:
        with pytest.raises(ValueError, match="without a token"):
            start_server(src, "0.0.0.0")
    finally:
        src.close()


def test_idle_and_slow_connections_are_closed(srv: server.Server, monkeypatch: Any) -> None:
    """A connection that sends nothing is closed after the head timeout; a kept-alive one
    after the idle timeout."""
    monkeypatch.setattr(server, "HEAD_TIMEOUT_S", 0.3)
    monkeypatch.setattr(server, "IDLE_TIMEOUT_S", 0.5)
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n")  # never finished
        assert sock.recv(100) == b""
    assert time.monotonic() - t0 < 3.0
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    c.request("GET", "/healthz")
    c.getresponse().read()
    assert c.sock is not None
    t0 = time.monotonic()
    assert c.sock.recv(100) == b""
    assert 0.3 < time.monotonic() - t0 < 3.0
    c.close()


def test_200_idle_connections_do_not_block_a_get(srv: server.Server) -> None:
    """With 200 idle connections open, a normal GET still completes within 3 s."""
    socks = []
    try:
        for _ in range(200):
            socks.append(socket.create_connection(("127.0.0.1", srv.port), timeout=5))
        t0 = time.monotonic()
        status, _, body = request(srv, "/api/v1/runs/r1/progress")
        elapsed = time.monotonic() - t0
        assert status == 200 and json.loads(body)["run"] == "r1"
        assert elapsed < 3.0
        assert wait_for(lambda: srv.info()["connections_evicted"] >= 100)
        assert srv.info()["connections"] <= 64
    finally:
        for s in socks:
            s.close()


def test_handler_exception_is_a_counted_500(srv: server.Server, monkeypatch: Any) -> None:
    """A route that raises gives a JSON 500, is counted, and the server keeps serving."""

    def boom(*a: Any, **k: Any) -> Any:
        raise RuntimeError("kaput")

    monkeypatch.setattr(api, "route", boom)
    status, _, body = request(srv, "/api/v1/runs")
    assert status == 500 and "internal error" in json.loads(body)["error"]
    assert b"kaput" not in body and b"Traceback" not in body
    monkeypatch.undo()
    assert request(srv, "/api/v1/runs")[0] == 200
    assert srv.info()["server_errors"] == 1


def test_deleted_log_marks_run_unavailable_server_keeps_serving(runs_dir: Path) -> None:
    """A served log deleted mid-serve: its run shows available=false, the other run serves;
    the deleted run's detail went with its log (a finished run is not held in memory): 404."""
    s = start_server(FileSource([runs_dir]), _own_source=True)
    try:
        (runs_dir / "r1.jsonl").unlink()

        def r1_gone() -> bool:
            rows = json.loads(request(s, "/api/v1/runs")[2])["runs"]
            return {r["id"]: r["available"] for r in rows} == {"r1": False, "r2": True}

        assert wait_for(r1_gone)
        assert request(s, "/api/v1/runs/r2/phases")[0] == 200
        assert request(s, "/api/v1/runs/r1")[0] == 404
    finally:
        s.close()


def test_sse_live_run_pushes_phase_completion(tmp_path: Path) -> None:
    """A stream on a live Monitor gets the phase running, then completed, as updates."""
    with Monitor(tmp_path / "live", plan=["A", "B"], sample_interval=None, capture=False) as m:
        s = serve_monitor(m)
        es = None
        try:
            es = SSE(s, "run=latest")
            assert es.resp.getheader("Content-Type") == "text/event-stream; charset=utf-8"
            kind, _, snap = es.next()
            assert kind == "snapshot" and snap["run"]["id"] == m.run_id
            assert [f["status"] for f in snap["flow"]] == ["pending", "pending"]
            gate, inside = threading.Event(), threading.Event()

            def work() -> None:
                with m.phase("A"):
                    inside.set()
                    gate.wait(10)

            t = threading.Thread(target=work)
            t.start()
            assert inside.wait(5)

            def phase_a(status: str) -> Any:
                return lambda msg: (
                    msg[0] == "update"
                    and any(p["phase"] == "A" and p["status"] == status for p in msg[2]["phases"])
                )

            es.until(phase_a("running"))
            t0 = time.monotonic()
            gate.set()
            t.join(5)
            _, _, upd = es.until(phase_a("completed"))
            assert time.monotonic() - t0 < 2.0
            assert upd["flow"][0]["status"] == "completed" and upd["progress"]["done"] == 1
        finally:
            if es is not None:
                es.close()
            s.close()


def test_sse_resume_with_last_event_id(tmp_path: Path) -> None:
    """Reconnecting with Last-Event-ID gets an update with what happened meanwhile."""
    log = tmp_path / "run.jsonl"
    t = time.time()
    append(log, {"ev": "run_start", "ts": t, "run": "L", "pid": 1})
    s = start_server(FileSource([log]), _own_source=True)
    try:
        es = SSE(s, "run=L")
        kind, vid, _ = es.next()
        assert kind == "snapshot"
        es.close()
        append(
            log, {"ev": "phase_start", "ts": t, "run": "L", "pid": 1, "span": "1.1", "phase": "A"}
        )
        es = SSE(s, "run=L", {"Last-Event-ID": str(vid)})
        kind, vid2, data = es.until(lambda msg: msg[0] != "runs")
        assert kind == "update" and vid2 > vid
        assert [p["span"] for p in data["phases"]] == ["1.1"]
        es.close()
    finally:
        s.close()


def test_sse_beyond_max_streams_is_503(runs_dir: Path) -> None:
    """With max_streams=2, a third stream gets 503 JSON; a slot frees when one closes."""
    s = start_server(FileSource([runs_dir]), max_streams=2, _own_source=True)
    streams = []
    try:
        for _ in range(2):
            es = SSE(s, "run=r1")
            assert es.next()[0] == "snapshot"
            streams.append(es)
        status, h, body = request(s, "/api/v1/stream?run=r1")
        assert status == 503 and json.loads(body)["error"].startswith("too many stream")
        assert h["retry-after"] == "5"
        assert request(s, "/api/v1/stream?run=nope")[0] in (404, 503)
        streams.pop().close()
        assert wait_for(lambda: s.info()["streams"] < 2)
    finally:
        for es in streams:
            es.close()
        s.close()


def test_stream_for_unknown_run_is_404(srv: server.Server) -> None:
    """A stream on a run that does not exist is a JSON 404, not an empty stream."""
    status, _, body = request(srv, "/api/v1/stream?run=nope")
    assert status == 404 and json.loads(body)["error"] == "no run 'nope'"


# -- the serve command ------------------------------------------------------------------


def _run_cli(args: list[str], capsys: Any) -> tuple[int, str]:
    rc = cli.main(["serve", *args])
    return rc, capsys.readouterr().err


def test_serve_bad_input_exits_2_with_one_line(
    runs_dir: Path, tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    """Missing path, non-loopback without token, unreadable token file, busy port: exit 2."""
    monkeypatch.delenv("ATROZ_MONITOR_TOKEN", raising=False)
    rc, err = _run_cli([str(tmp_path / "missing")], capsys)
    assert rc == 2 and "no such log file or directory" in err and err.count("\n") == 1
    rc, err = _run_cli([str(runs_dir), "--host", "0.0.0.0"], capsys)
    assert rc == 2 and "without a token" in err and "Traceback" not in err
    rc, err = _run_cli([str(runs_dir), "--token-file", str(tmp_path / "nofile")], capsys)
    assert rc == 2 and "cannot read the token file" in err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        rc, err = _run_cli([str(runs_dir), "--port", str(port)], capsys)
    assert rc == 2 and f"port {port} is already in use" in err


def test_alerts_option_with_bad_rules_exits_2(runs_dir: Path, capsys: Any, tmp_path: Path) -> None:
    """--alerts naming a missing or malformed rules file: exit 2 and one line naming it."""
    rc, err = _run_cli([str(runs_dir), "--alerts", str(tmp_path / "nope.toml")], capsys)
    assert rc == 2 and "nope.toml: cannot read alert rules" in err and err.count("\n") == 1
    bad = tmp_path / "bad.json"  # JSON: rule files on Python 3.10 have no tomllib
    bad.write_text('{"rule": [{"metric": 5}]}')
    rc, err = _run_cli([str(runs_dir), "--alerts", str(bad)], capsys)
    assert rc == 2 and "unknown top-level key 'rule'" in err and "Traceback" not in err


def test_alert_hook_overlays_rule_alerts(runs_dir: Path, monkeypatch: Any) -> None:
    """With load_rules/evaluate_replay present, their alerts join the run's alerts."""
    fake = types.ModuleType("alerts")
    fake.load_rules = lambda path: ["rule"]  # type: ignore[attr-defined]
    fake.evaluate_replay = lambda st, rid, rules: [  # type: ignore[attr-defined]
        {"alert": f"x-{rid}", "rule": rules[0], "severity": "info", "state": "raised"}
    ]
    monkeypatch.setitem(sys.modules, "atroz_monitor.view.alerts", fake)
    src = FileSource([runs_dir], alerts=server._alert_hook("rules.toml"))
    try:
        alerts = {a["alert"] for a in src.snapshot("r1")["alerts"]}
        assert alerts == {"x-r1"}
        assert {r["id"]: r["alerts_open"] for r in src.runs()} == {"r1": 1, "r2": 2}
    finally:
        src.close()


def test_serve_command_prints_url_and_exits_0_on_ctrl_c(runs_dir: Path) -> None:
    """`python -m atroz_monitor serve DIR --port 0` prints its URL, serves, exits 0 on SIGINT."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("ATROZ_MONITOR_TOKEN", None)
    p = subprocess.Popen(
        [sys.executable, "-m", "atroz_monitor", "serve", str(runs_dir), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert p.stdout is not None
        line = p.stdout.readline()
        assert "serving 2 runs at http://127.0.0.1:" in line
        port = int(line.rsplit(":", 1)[1].strip().rstrip("/"))
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("GET", "/healthz")
        assert json.loads(c.getresponse().read())["runs"] == 2
        c.close()
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=30) == 0
        assert p.stderr is not None and "Traceback" not in p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def _partial_head(port: int, source: str = "127.0.0.1") -> socket.socket:
    """A connection that has sent part of a request head and then nothing."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
    sock.sendall(b"GET /api/v1/runs HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    return sock


def _closed(sock: socket.socket) -> bool:
    """True once the server has closed ``sock`` (bounded wait)."""
    sock.settimeout(3)
    try:
        return sock.recv(100) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def _still_open(sock: socket.socket) -> bool:
    sock.settimeout(0)
    try:
        return sock.recv(100) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def test_full_server_evicts_the_oldest_unfinished_head(runs_dir: Path) -> None:
    """At the cap, a new connection closes the one waiting longest on an unfinished head
    (one eviction), the others stay open, and the new request is answered."""
    s = start_server(FileSource([runs_dir]), max_connections=4, max_per_client=4, _own_source=True)
    socks = []
    try:
        for _ in range(4):
            socks.append(_partial_head(s.port))
            assert wait_for(lambda: s.info()["connections"] == len(socks))
        assert request(s, "/api/v1/runs")[0] == 200
        assert _closed(socks[0])
        assert [_still_open(x) for x in socks[1:]] == [True, True, True]
        assert s.info()["connections_evicted"] == 1
        assert s.info()["connections_refused"] == 0
    finally:
        for x in socks:
            x.close()
        s.close()


def test_one_client_at_its_cap_evicts_its_own_connections(runs_dir: Path) -> None:
    """A client address at ``max_per_client`` evicts its own oldest head, not another
    client's older one (127.0.0.2 is another address on the loopback interface)."""
    s = start_server(FileSource([runs_dir]), max_connections=6, max_per_client=3, _own_source=True)
    other, mine = [], []
    try:
        for _ in range(3):
            other.append(_partial_head(s.port, "127.0.0.1"))
        for _ in range(3):
            mine.append(_partial_head(s.port, "127.0.0.2"))
        assert wait_for(lambda: s.info()["connections"] == 6)
        mine.append(_partial_head(s.port, "127.0.0.2"))
        assert _closed(mine[0])
        assert [_still_open(x) for x in other + mine[1:]] == [True] * 6
        assert s.info()["connections_evicted"] == 1
    finally:
        for x in other + mine:
            x.close()
        s.close()


def test_token_bind_keeps_slots_for_authenticated_connections(runs_dir: Path) -> None:
    """On a token bind (8 slots, 2 kept), 10 unauthenticated heads hold at most 6 slots;
    an authenticated kept-alive connection opened first is never evicted and serves again."""
    s = start_server(
        FileSource([runs_dir]), token="tok", max_connections=8, max_per_client=8, _own_source=True
    )
    socks = []
    c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=5)
    try:
        bearer = {"Authorization": "Bearer tok"}
        c.request("GET", "/api/v1/runs", headers=bearer)
        first = c.getresponse()
        assert first.status == 200 and first.read()
        for _ in range(10):
            socks.append(_partial_head(s.port))
        assert wait_for(lambda: s.info()["connections_evicted"] == 4)
        assert s.info()["connections"] == 7  # 6 unauthenticated + the authenticated one
        assert [_closed(x) for x in socks[:4]] == [True] * 4
        c.request("GET", "/api/v1/runs", headers=bearer)
        assert c.getresponse().status == 200
    finally:
        c.close()
        for x in socks:
            x.close()
        s.close()


def test_head_deadline_counts_from_the_connection_not_each_byte(
    srv: server.Server, monkeypatch: Any
) -> None:
    """A head trickled one byte every 0.1 s is cut at the head deadline (0.5 s here) after
    the connection, though no single wait exceeded it."""
    monkeypatch.setattr(server, "HEAD_TIMEOUT_S", 0.5)
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
        sent = 0
        try:
            for b in b"GET /api/v1/runs HTTP/1.1\r\nX-Slow: " + b"a" * 100:
                sock.sendall(bytes([b]))
                sent += 1
                readable, _, _ = ready(sock, 0.1)
                if readable:
                    break
        except OSError:
            pass
    elapsed = time.monotonic() - t0
    assert 0.4 < elapsed < 2.0, elapsed
    assert sent < 40


_tokens = st.from_regex(server._TOKEN_RE, fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(token=_tokens, safe=st.sampled_from(["", "+", "+/=!$'*"]), before=st.booleans())
def test_query_token_round_trips_any_valid_token(token: str, safe: str, before: bool) -> None:
    """Any token check_token accepts, percent-encoded (``+`` raw or not), among other
    parameters, decodes back to itself exactly; the redirect keeps the others as sent."""
    assert server.check_token(token) == token
    param = "token=" + urllib.parse.quote(token, safe=safe)
    query = f"{param}&a=%2B1" if before else f"a=%2B1&b&{param}"
    assert server._query_token(query) == token
    assert server._without_token(query) == ("a=%2B1" if before else "a=%2B1&b")


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=st.characters(max_codepoint=0xFF), max_size=60))
def test_access_log_text_is_printable_and_reversible(text: str) -> None:
    """Any request target (latin-1 text) becomes printable ASCII without quotes, and
    decoding the \\xNN escapes gives it back: nothing lost, nothing ambiguous."""
    out = server._log_text(text)
    assert all(" " <= ch <= "~" for ch in out) and '"' not in out
    back = re.sub(r"\\x([0-9a-f]{2})", lambda m: chr(int(m.group(1), 16)), out)
    assert back == text


def test_serve_warms_metrics_so_the_first_scrape_is_cached(runs_dir: Path) -> None:
    """serve builds /metrics once at start (``_warm``): afterwards the cached answer is the
    exposition itself, so a scraper never pays the build over a long history."""
    src = FileSource([runs_dir])
    try:
        server._warm(src)
        body = src.cached(("metrics", False), lambda: b"not built at start")
        assert body.startswith(b"# HELP ") and b"atroz_run_info" in body
    finally:
        src.close()
