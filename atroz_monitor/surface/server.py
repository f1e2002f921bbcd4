"""The HTTP server: a thin, defensive transport for ``api.route`` and the SSE stream.

Everything a response says comes from ``api``; this module only decides whether a
connection gets an answer at all (Host check against DNS rebinding, the token for
non-loopback binds, request size and time limits, a connection cap) and moves bytes.

No client can starve the others: a full server makes room by closing the connection that
has waited longest on an unfinished request head (never one being answered, and on a token
bind an unauthenticated one first, with slots kept for authenticated connections), and one
client address holds at most ``max_per_client`` connections (at its cap it evicts its own).
A normal request sends its head at once, so it is never the oldest unfinished one: a
slowloris only ever competes with itself.

It reads requests itself rather than through ``BaseHTTPRequestHandler``: a request head
must be complete within a deadline (a socket timeout alone restarts on every byte, so a
client sending one byte a second would hold a thread forever), and the request line and
header limits (414/431) are tighter than ``http.client``'s.
"""

from __future__ import annotations

import errno
import gc
import hashlib
import hmac
import ipaddress
import os
import re
import secrets
import select
import selectors
import socket
import socketserver
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from http import HTTPStatus
from http.server import ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from ..store.source import FileSource, MonitorSource, Source
from . import api

if TYPE_CHECKING:
    from ..record.monitor import Monitor

__all__ = [
    "DEFAULT_PORT",
    "ENV_TOKEN",
    "Server",
    "serve_main",
    "serve_monitor",
    "start_server",
]

DEFAULT_PORT = 8765
ENV_TOKEN = "ATROZ_MONITOR_TOKEN"
COOKIE = "atroz_monitor_token"

HEAD_TIMEOUT_S = 2.0
"""A request head must be complete this long after the connection was accepted (a later
request on a kept-alive connection: after its first byte), however it trickles in."""
IDLE_TIMEOUT_S = 10.0
"""A kept-alive connection with no new request for this long is closed."""
MAX_REQUEST_LINE = 8 * 1024
MAX_HEADER_BYTES = 64 * 1024
MAX_HEADERS = 100
MAX_CONNECTIONS = 64
RESERVED_FOR_AUTH = 16
"""On a token bind, unauthenticated connections hold at most ``max_connections`` minus
this many slots; beyond that a new connection evicts the oldest unauthenticated one."""
MAX_STREAMS = 32
SEND_TIMEOUT_S = 10.0
"""A client that does not read for this long is dropped (a stream writer never blocks
forever)."""
HEARTBEAT_S = 15.0
PUSH_RATE = 10.0
"""SSE pushes per second per client, sustained (a token bucket)..."""
PUSH_BURST = 2.0
"""...with this much burst: a phase's end that arrives in the poll after its start does not
delay the next event by a whole interval, yet a busy run still costs at most ~10 pushes/s."""
CHECK_S = 2.0
"""How often an otherwise idle stream checks that its client is still there."""

_TOKEN_RE = re.compile(r"^[A-Za-z0-9._~+/=!#$%&'*^`|-]+$")
_LOG_UNSAFE = re.compile(r'[\x00-\x1f\x7f-\xff"\\]')
"""Escaped in the access log: control bytes (ESC, CR, C1's CSI) never reach a terminal."""
_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


class _Reject(Exception):
    """Answer with this status and close the connection."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Conn:
    __slots__ = ("sock", "addr", "reading", "since", "authed")

    def __init__(self, sock: socket.socket, addr: str) -> None:
        self.sock = sock
        self.addr = addr
        self.reading = True  # waiting for a request head (or part of one): may be evicted
        self.since = time.monotonic()  # when it started waiting: the oldest goes first
        self.authed = False  # a request on it carried the token (token binds only)


def _oldest_waiting(conns: Iterable[_Conn]) -> _Conn | None:
    """The connection to evict: waiting on a head, unauthenticated first, oldest first."""
    waiting = [c for c in conns if c.reading]
    return min(waiting, key=lambda c: (c.authed, c.since)) if waiting else None


def _log_text(text: str) -> str:
    """``text`` (latin-1 decoded request bytes) safe for a terminal and one log line."""
    return _LOG_UNSAFE.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _is_loopback(host: str) -> bool:
    h = host.strip("[]")
    if h.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def _host_port(host: str, port: int) -> str:
    h = host.strip("[]")
    return f"[{h}]:{port}" if ":" in h else f"{h}:{port}"


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # streams live long; close() shuts their sockets instead
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        *,
        source: Source,
        token: str | None,
        allow_hosts: Iterable[str],
        access_log: bool,
        max_streams: int,
        max_connections: int,
        max_per_client: int,
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.source = source
        self.needs_token = token is not None
        # Compared as digests: constant time whatever the length of what a client sends.
        self._token_digest = _digest(token) if token is not None else b""
        # The login cookie is an HMAC of the token under a key that never leaves this
        # process: a browser that sends it to another service on the host (cookies ignore
        # ports) hands over nothing usable as a bearer token, here or anywhere.
        self._cookie = (
            hmac.new(secrets.token_bytes(32), token.encode(), hashlib.sha256).hexdigest()
            if token is not None
            else ""
        )
        self.access_log = access_log
        self.max_streams = max_streams
        self.max_connections = max_connections
        self.max_per_client = max_per_client
        self.reserved = min(RESERVED_FOR_AUTH, max_connections // 4) if token else 0
        self.closing = threading.Event()
        self._conns: dict[int, _Conn] = {}
        self._lock = threading.Lock()
        self.streams = 0
        self.requests = 0
        self.errors = 0
        self.evicted = 0
        self.refused = 0
        self.started = time.time()
        super().__init__(address, _Handler)
        port = self.server_address[1]
        names = {address[0], "localhost", "127.0.0.1", "::1", *allow_hosts}
        allowed = {_host_port(n, port).lower() for n in names if n}
        # A name given with --allow-host is accepted bare too (a reverse proxy on port 80
        # or 443 sends no port); so are loopback names when we really are on port 80.
        allowed |= {n.lower() for n in allow_hosts}
        if port == 80:
            allowed |= {n.strip("[]").lower() for n in names}
        self.allowed_hosts = frozenset(allowed)

    def server_bind(self) -> None:
        # HTTPServer.server_bind asks DNS for the FQDN (slow, and useless here).
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    # -- the connection cap -------------------------------------------------------------
    def process_request(self, request: Any, client_address: Any) -> None:
        addr = str(client_address[0]) if client_address else ""
        if not self._admit(request, addr):
            self.refused += 1
            try:
                request.settimeout(0.2)
                body = b'{"error":"too many connections","status":503}'
                request.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json; "
                    b"charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n"
                    b"Retry-After: 2\r\n\r\n%s" % (len(body), body)
                )
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def _admit(self, sock: socket.socket, addr: str) -> bool:
        """Register a connection, making room when needed by evicting the connection that
        has waited longest on a request head (``_oldest_waiting``): among the client's own
        at its per-client cap, among unauthenticated ones when they fill their share of a
        token bind, else among all at the global cap. Refuse only if none is waiting."""
        with self._lock:
            conns = self._conns
            pool: Iterable[_Conn] | None = None
            mine = [c for c in conns.values() if c.addr == addr]
            if len(mine) >= self.max_per_client:
                pool = mine
            elif len(conns) >= self.max_connections:
                pool = conns.values()
            elif self.reserved:
                unauth = [c for c in conns.values() if not c.authed]
                if len(unauth) >= self.max_connections - self.reserved:
                    pool = unauth
            if pool is not None:
                victim = _oldest_waiting(pool)
                if victim is None:
                    if len(mine) >= self.max_per_client or len(conns) >= self.max_connections:
                        return False
                else:
                    del conns[id(victim.sock)]
                    self.evicted += 1
                    try:
                        victim.sock.shutdown(socket.SHUT_RDWR)  # its thread's recv returns b""
                    except OSError:
                        pass
            conns[id(sock)] = _Conn(sock, addr)
            return True

    def conn(self, sock: socket.socket) -> _Conn:
        with self._lock:
            c = self._conns.get(id(sock))
            if c is None:  # evicted before its thread started
                c = _Conn(sock, "")
                c.reading = False
            return c

    def cookie_ok(self, value: str) -> bool:
        return hmac.compare_digest(value.encode("utf-8", "surrogateescape"), self._cookie.encode())

    def token_ok(self, given: str) -> bool:
        return hmac.compare_digest(_digest(given), self._token_digest)

    def login_cookie(self) -> str:
        return f"{COOKIE}={self._cookie}; HttpOnly; SameSite=Strict; Path=/"

    def forget(self, sock: socket.socket) -> None:
        with self._lock:
            c = self._conns.get(id(sock))
            if c is not None and c.sock is sock:
                del self._conns[id(sock)]

    def stream_slot(self) -> bool:
        with self._lock:
            if self.streams >= self.max_streams:
                return False
            self.streams += 1
            return True

    def stream_done(self) -> None:
        with self._lock:
            self.streams -= 1

    def info(self) -> dict[str, Any]:
        with self._lock:
            return {
                "connections": len(self._conns),
                "streams": self.streams,
                "requests": self.requests,
                "server_errors": self.errors,
                "connections_evicted": self.evicted,
                "connections_refused": self.refused,
                "uptime_s": round(time.time() - self.started, 3),
            }

    def close_all(self) -> None:
        self.closing.set()
        with self._lock:
            conns = list(self._conns.values())
            self._conns.clear()
        for c in conns:
            try:
                c.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        with self.source.cond:
            self.source.cond.notify_all()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The handler catches everything it can; anything left is counted, not printed.
        self.errors += 1


class _Handler(socketserver.BaseRequestHandler):
    disable_nagle_algorithm = True
    server: _HTTPServer

    def setup(self) -> None:
        if self.disable_nagle_algorithm:
            # Without it every keep-alive response waits ~40 ms for the delayed ACK.
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)

    def handle(self) -> None:
        sock: socket.socket = self.request
        srv = self.server
        conn = srv.conn(sock)
        buf = bytearray()
        first = True
        try:
            while not srv.closing.is_set():
                try:
                    head = self._read_head(sock, conn, buf, first)
                    if head is None:
                        return
                    first = False
                    if not self._serve(sock, conn, head):
                        return
                except _Reject as rej:
                    self._send(sock, api.error(rej.status, str(rej)), False)
                    return
        except OSError:
            return  # the client went away
        finally:
            srv.forget(sock)

    # -- reading ------------------------------------------------------------------------
    def _read_head(
        self, sock: socket.socket, conn: _Conn, buf: bytearray, first: bool
    ) -> bytes | None:
        if first:
            # From the accept, not from this thread's start nor from any byte: however the
            # head trickles in, the connection has HEAD_TIMEOUT_S for all of it.
            start = conn.since
        else:
            start = conn.since = time.monotonic()
        deadline: float | None = start + HEAD_TIMEOUT_S if first else None
        idle_deadline = start + IDLE_TIMEOUT_S
        conn.reading = True
        while True:
            while buf[:2] == b"\r\n" or buf[:1] == b"\n":  # RFC 9112: ignore leading CRLFs
                del buf[: 2 if buf[:1] == b"\r" else 1]
            if buf:
                end = buf.find(b"\r\n\r\n")
                sep = 4
                if end < 0:
                    end = buf.find(b"\n\n")
                    sep = 2
                nl = buf.find(b"\n")
                if (nl < 0 and len(buf) > MAX_REQUEST_LINE) or nl > MAX_REQUEST_LINE + 1:
                    raise _Reject(414, "request line too long")
                if end >= 0:
                    conn.reading = False  # being answered: never evicted
                    head = bytes(buf[:end])
                    del buf[: end + sep]
                    return head
                if len(buf) > MAX_REQUEST_LINE + MAX_HEADER_BYTES:
                    raise _Reject(431, "request headers too large")
            now = time.monotonic()
            limit = deadline if deadline is not None else idle_deadline
            if now >= limit:
                return None  # too slow (or idle too long): just close
            sock.settimeout(limit - now)
            try:
                data = sock.recv(65536)
            except TimeoutError:  # socket.timeout is TimeoutError since 3.10
                return None
            if not data:
                return None
            if deadline is None:
                deadline = time.monotonic() + HEAD_TIMEOUT_S
            buf += data

    @staticmethod
    def _parse(head: bytes) -> tuple[str, str, str, dict[str, str]]:
        lines = head.decode("latin-1").split("\n")
        request_line = lines[0].rstrip("\r")
        if len(request_line) > MAX_REQUEST_LINE:
            raise _Reject(414, "request line too long")
        parts = request_line.split(" ")
        if len(parts) != 3 or not parts[1]:
            raise _Reject(400, "malformed request line")
        method, target, version = parts
        if version not in ("HTTP/1.1", "HTTP/1.0"):
            raise _Reject(400, f"unsupported protocol {version[:20]!r}")
        if not _NAME_RE.match(method):
            raise _Reject(400, "malformed method")
        raw = lines[1:]
        if len(raw) > MAX_HEADERS:
            raise _Reject(431, f"more than {MAX_HEADERS} headers")
        if len(head) - len(lines[0]) > MAX_HEADER_BYTES:
            raise _Reject(431, "request headers too large")
        headers: dict[str, str] = {}
        for line in raw:
            line = line.rstrip("\r")
            name, colon, value = line.partition(":")
            if not colon or not _NAME_RE.match(name):
                raise _Reject(400, "malformed header line")
            key = name.lower()
            value = value.strip(" \t")
            if key in headers:
                headers[key] += ("; " if key == "cookie" else ", ") + value
            else:
                headers[key] = value
        return method, target, version, headers

    # -- answering ----------------------------------------------------------------------
    def _serve(self, sock: socket.socket, conn: _Conn, head: bytes) -> bool:
        """Answer one request; True to keep the connection for another."""
        srv = self.server
        srv.requests += 1
        t0 = time.perf_counter()
        method, target, version, headers = self._parse(head)
        conn_hdr = headers.get("connection", "").lower()
        keep = "close" not in conn_hdr if version == "HTTP/1.1" else "keep-alive" in conn_hdr
        if "transfer-encoding" in headers or headers.get("content-length", "0") not in ("", "0"):
            keep = False  # a body we will not read: do not parse it as the next request
        if method not in ("GET", "HEAD"):
            keep = False
        if not target.startswith("/"):
            raise _Reject(400, "request target must be a path")
        path, _, query = target.partition("?")
        query = query.partition("#")[0]
        extra: list[tuple[str, str]] = []
        host = headers.get("host", "").lower()
        if host not in srv.allowed_hosts:
            keep = False
            resp = api.error(403, "this Host is not allowed (see --allow-host)")
        else:
            ok, extra = self._authorize(headers, query)
            conn.authed = ok and srv.needs_token
            if not ok:
                resp = api.error(401, "a valid token is required", [("WWW-Authenticate", "Bearer")])
            elif extra and path == "/" and method in ("GET", "HEAD"):
                # The token came in the URL: set the cookie and drop it from the address bar.
                clean = _without_token(query)
                loc = "/" + ("?" + clean if clean else "")
                resp = api.Response(303, [("Location", loc), *api.SECURITY_HEADERS], b"")
            elif path == "/api/v1/stream" and method in ("GET", "HEAD"):
                self._log(method, path, 200, 0, t0)
                self._stream(sock, conn, method, query, headers, extra)
                return False
            else:
                try:
                    resp = api.route(srv.source, method, path, query, headers, server_info=srv.info)
                except Exception as exc:
                    srv.errors += 1
                    sys.stderr.write(
                        f"atroz-monitor: internal error on {method} {_log_text(path[:200])}: "
                        f"{type(exc).__name__}: {exc}\n"
                    )
                    resp = api.error(500, "internal error (counted in /healthz)")
        self._send(sock, resp, keep, extra, head_only=method == "HEAD")
        self._log(method, path, resp.status, len(resp.body), t0)
        return keep

    def _authorize(
        self, headers: Mapping[str, str], query: str
    ) -> tuple[bool, list[tuple[str, str]]]:
        srv = self.server
        if not srv.needs_token:
            return True, []
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer " and srv.token_ok(auth[7:].strip()):
            return True, []
        for part in headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE and srv.cookie_ok(value):
                return True, []
        given = _query_token(query)
        if given is not None and srv.token_ok(given):
            return True, [("Set-Cookie", srv.login_cookie())]
        return False, []

    def _send(
        self,
        sock: socket.socket,
        resp: api.Response,
        keep: bool,
        extra: Sequence[tuple[str, str]] = (),
        head_only: bool = False,
    ) -> None:
        status = resp.status
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Unknown"
        lines = [f"HTTP/1.1 {status} {reason}"]
        has_len = False
        for k, v in resp.headers:
            has_len = has_len or k == "Content-Length"
            lines.append(f"{k}: {v}")
        for k, v in extra:
            lines.append(f"{k}: {v}")
        if not has_len:
            lines.append(f"Content-Length: {len(resp.body)}")
        lines.append("Connection: keep-alive" if keep else "Connection: close")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if not head_only:
            data += resp.body
        sock.settimeout(SEND_TIMEOUT_S)
        sock.sendall(data)

    def _log(self, method: str, path: str, status: int, size: int, t0: float) -> None:
        if self.server.access_log:
            ms = (time.perf_counter() - t0) * 1000.0
            addr = self.client_address[0] if self.client_address else "-"
            line = f'{addr} "{method} {_log_text(path[:200])}" {status} {size} {ms:.1f}ms\n'
            sys.stderr.write(line)

    # -- Server-Sent Events -------------------------------------------------------------
    def _stream(
        self,
        sock: socket.socket,
        conn: _Conn,
        method: str,
        query: str,
        headers: Mapping[str, str],
        extra: list[tuple[str, str]],
    ) -> None:
        srv = self.server
        src = srv.source
        try:
            src.ensure_fresh()
            stream = api.Stream(src, query, headers)
            err = stream.open()
        except api.BadRequest as exc:
            err = api.error(400, str(exc))
        if err is not None:
            self._send(sock, err, False, extra)
            return
        if not srv.stream_slot():
            self._send(
                sock,
                api.error(
                    503,
                    f"too many stream clients (at most {srv.max_streams})",
                    [("Retry-After", "5")],
                ),
                False,
            )
            return
        src.subscribe()
        try:
            hdrs = [
                ("Content-Type", api.SSE),
                ("Cache-Control", "no-store"),
                ("X-Accel-Buffering", "no"),
                *api.SECURITY_HEADERS,
                *extra,
            ]
            lines = ["HTTP/1.1 200 OK", *(f"{k}: {v}" for k, v in hdrs), "Connection: close"]
            sock.settimeout(SEND_TIMEOUT_S)
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            if method == "HEAD":
                return
            self._pump(sock, stream)
        except OSError:
            pass
        except Exception as exc:
            srv.errors += 1
            sys.stderr.write(f"atroz-monitor: stream error: {type(exc).__name__}: {exc}\n")
        finally:
            src.unsubscribe()
            srv.stream_done()

    def _pump(self, sock: socket.socket, stream: api.Stream) -> None:
        srv = self.server
        src = srv.source
        cond = src.cond
        seen = src.version
        # retry: how long a browser waits before reconnecting after we go away.
        sock.sendall(b"retry: 2000\n\n" + stream.poll())
        last_write = last_fill = time.monotonic()
        tokens = PUSH_BURST - 1.0
        while not srv.closing.is_set():
            now = time.monotonic()
            timeout = max(0.0, min(CHECK_S, last_write + HEARTBEAT_S - now))
            with cond:
                changed = cond.wait_for(_changed(src, srv, seen), timeout=timeout)
            if srv.closing.is_set():
                return
            if changed:
                now = time.monotonic()
                tokens = min(PUSH_BURST, tokens + (now - last_fill) * PUSH_RATE)
                last_fill = now
                if tokens < 1.0:
                    # Coalesce: whatever else changes meanwhile goes out in the same push.
                    if srv.closing.wait((1.0 - tokens) / PUSH_RATE):
                        return
                    tokens, last_fill = 1.0, time.monotonic()
                seen = src.version
                data = stream.poll()
                if data:
                    tokens -= 1.0
                    sock.sendall(data)
                    last_write = time.monotonic()
                continue
            if time.monotonic() >= last_write + HEARTBEAT_S:
                sock.sendall(api.PING)
                last_write = time.monotonic()
            elif _gone(sock):
                return


def _changed(src: Source, srv: _HTTPServer, seen: int) -> Any:
    return lambda: src.version != seen or srv.closing.is_set()


def _gone(sock: socket.socket) -> bool:
    """True if the client closed its end (a readable socket with nothing to read)."""
    try:
        if not _readable(sock):
            return False
        sock.settimeout(0)
        return sock.recv(4096) == b""  # an SSE client sends nothing; anything is discarded
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True
    finally:
        try:
            sock.settimeout(SEND_TIMEOUT_S)
        except OSError:
            pass


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def _query_token(query: str) -> str | None:
    """The ``token`` parameter percent-decoded as a URL path is: ``+`` stays ``+`` (a token
    is not form data; ``parse_qsl`` would make it a space), ``%2B`` ``%25`` ``%26`` ``%23``
    are ``+ % & #``."""
    for part in query.split("&"):
        name, eq, value = part.partition("=")
        if eq and urllib.parse.unquote(name) == "token":
            return urllib.parse.unquote(value)
    return None


def _without_token(query: str) -> str:
    """``query`` minus its ``token`` parameter, every other byte of it as it came."""
    keep = [p for p in query.split("&") if urllib.parse.unquote(p.partition("=")[0]) != "token"]
    return "&".join(p for p in keep if p)


def _readable(sock: socket.socket) -> bool:
    """Whether ``sock`` has something to read (or hung up), without waiting. poll(2), not
    select(2): select cannot watch a descriptor numbered 1024 or above, which a process
    holding many files (or a host embedding the server) reaches (issue 13)."""
    if hasattr(select, "poll"):
        p = select.poll()
        p.register(sock, select.POLLIN)
        return bool(p.poll(0))
    with selectors.DefaultSelector() as sel:
        sel.register(sock, selectors.EVENT_READ)
        return bool(sel.select(0))


class Server:
    """A running dashboard server (daemon threads): ``url``, ``port``, ``close()``."""

    def __init__(self, httpd: _HTTPServer, own_source: bool) -> None:
        self._httpd = httpd
        self._own_source = own_source
        self.source = httpd.source
        self.host = str(httpd.server_address[0])
        self.port = int(httpd.server_address[1])
        h = self.host
        self.url = f"http://[{h}]:{self.port}/" if ":" in h else f"http://{h}:{self.port}/"
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="atroz-monitor-http",
            daemon=True,
        )
        self._thread.start()
        self._closed = False

    def info(self) -> dict[str, Any]:
        """Connection and request counters (also in ``/healthz``)."""
        return self._httpd.info()

    def close(self) -> None:
        """Stop serving: the listening socket, every connection and stream."""
        if self._closed:
            return
        self._closed = True
        self._httpd.closing.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._httpd.close_all()
        if self._own_source:
            self.source.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<atroz_monitor Server {self.url}>"


def check_token(token: str) -> str:
    """A token usable in a header and a cookie; ValueError otherwise."""
    if not _TOKEN_RE.match(token):
        raise ValueError(
            "the token must be printable ASCII without spaces, quotes, commas or semicolons"
        )
    return token


def start_server(
    source: Source,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    token: str | None = None,
    allow_hosts: Iterable[str] = (),
    access_log: bool = False,
    max_streams: int = MAX_STREAMS,
    max_connections: int = MAX_CONNECTIONS,
    max_per_client: int | None = None,
    _own_source: bool = False,
) -> Server:
    """Serve ``source`` on ``host:port`` (0: any free port) in daemon threads.

    A token (``token=`` or ``ATROZ_MONITOR_TOKEN``) is required to bind anything but a
    loopback address, and once configured every request needs it. One client address holds
    at most ``max_per_client`` connections (default: half of ``max_connections``). Raises
    ValueError for bad arguments and OSError if the address cannot be bound.
    """
    if token is None:
        token = os.environ.get(ENV_TOKEN) or None
    if token is not None:
        check_token(token)
    if not _is_loopback(host) and token is None:
        raise ValueError(
            f"refusing to serve on {host} without a token (use --token-file FILE or "
            f"{ENV_TOKEN}); the dashboard shows what the pipeline processes"
        )
    if max_per_client is None:
        max_per_client = max(1, max_connections // 2)
    if max_streams < 0 or max_connections < 1 or not 1 <= max_per_client <= max_connections:
        raise ValueError(
            "max_streams must be >= 0, max_connections >= 1, and max_per_client between 1 "
            "and max_connections"
        )
    hosts = [h.strip().lower() for h in allow_hosts if h.strip()]
    httpd = _HTTPServer(
        (host.strip("[]"), port),
        source=source,
        token=token,
        allow_hosts=hosts,
        access_log=access_log,
        max_streams=max_streams,
        max_connections=max_connections,
        max_per_client=max_per_client,
    )
    return Server(httpd, _own_source)


def serve_monitor(monitor: Monitor, host: str = "127.0.0.1", port: int = 0, **kw: Any) -> Server:
    """Serve a live ``Monitor``'s runs (``Monitor.serve()``); the server owns its source."""
    alerts = kw.pop("alerts", None)
    source = MonitorSource(monitor, alerts=alerts)
    try:
        return start_server(source, host, port, _own_source=True, **kw)
    except BaseException:
        source.close()
        raise


# -- ``python -m atroz_monitor serve`` ----------------------------------------------------------


def _alert_hook(path: str) -> Any:
    """Alert rules from ``--alerts FILE``, replayed over each run's state."""
    from ..view.alerts import evaluate_replay, load_rules

    rules = load_rules(path)
    return lambda st, run_id: evaluate_replay(st, run_id, rules)


def _warm(source: Source) -> None:
    """Build the answers over every run that cost most once (``/metrics``), so that no
    scraper waits for them; a failure here is the first request's to report.

    First, what the start loaded (10,000 runs' summaries: millions of objects, none of them
    cyclic garbage) is moved out of the cyclic collector's reach (``gc.freeze``): each full
    collection walked them all again, ~15 ms landing on whichever request triggered it.
    Only serve's own process does this (``Monitor.serve`` never freezes a host's objects).
    """
    gc.freeze()
    try:
        api.route(source, "GET", "/metrics", "", {})
    except Exception:
        pass


class _ServeError(Exception):
    """Bad input to ``serve``: its one line on stderr, exit 2."""


def serve_main(
    paths: Sequence[str],
    host: str = "127.0.0.1",
    port: int | None = None,
    *,
    token_file: str | None = None,
    allow_hosts: Sequence[str] = (),
    access_log: bool = False,
    alerts: str | None = None,
    out: Any = None,
    pruners: Sequence[Any] = (),
    prune_every: float | None = None,
    follow_symlinks: bool = False,
) -> int:
    """The ``serve`` command. Bad input: one line on stderr, exit 2."""
    out = out if out is not None else sys.stdout
    try:
        token = _read_token(token_file)
        source = _open_source(paths, host, token, alerts, follow_symlinks)
        # The first build of /metrics over a long history (about 0.3 s of CPU for 10,000
        # runs) is done before listening: no first scrape waits for it or competes with it.
        _warm(source)
        server = _listen(source, host, port, token, allow_hosts, access_log)
    except _ServeError as exc:
        sys.stderr.write(f"atroz-monitor serve: {exc}\n")
        return 2
    stop = threading.Event()
    try:
        import signal

        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    except (ValueError, OSError):
        pass  # not the main thread
    try:
        # Inside the try: a Ctrl-C right after the URL is printed still exits cleanly.
        _announce(out, source, server.url, host, token, allow_hosts)
        if pruners and prune_every:
            _start_pruning(stop, pruners, prune_every)
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


def _read_token(token_file: str | None) -> str | None:
    """The token: from ``--token-file`` (which must hold one), else the environment."""
    token = None
    if token_file is not None:
        try:
            with open(token_file, encoding="utf-8") as f:
                token = f.read().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise _ServeError(
                f"cannot read the token file {token_file!r}: "
                f"{getattr(exc, 'strerror', None) or exc}"
            ) from None
        if not token:
            raise _ServeError(f"the token file {token_file!r} is empty")
    return token or os.environ.get(ENV_TOKEN) or None


def _open_source(
    paths: Sequence[str],
    host: str,
    token: str | None,
    alerts: str | None,
    follow_symlinks: bool,
) -> Source:
    """The runs served, once the token and the address are known to be acceptable."""
    try:
        if token is not None:
            check_token(token)
        if not _is_loopback(host) and token is None:
            raise ValueError(
                f"refusing to serve on {host} without a token (--token-file FILE or {ENV_TOKEN})"
            )
        hook = _alert_hook(alerts) if alerts is not None else None
        return FileSource(paths or ["atroz-runs"], alerts=hook, follow_symlinks=follow_symlinks)
    except FileNotFoundError as exc:
        raise _ServeError(f"no such log file or directory: {exc.filename}") from None
    except (ValueError, OSError) as exc:
        raise _ServeError(str(exc)) from None


def _listen(
    source: Source,
    host: str,
    port: int | None,
    token: str | None,
    allow_hosts: Sequence[str],
    access_log: bool,
) -> Server:
    """The server on ``port``, else on the first free one from ``DEFAULT_PORT``; the
    source is closed when none can listen."""
    candidates = [port] if port is not None else list(range(DEFAULT_PORT, DEFAULT_PORT + 50))
    last_err: OSError | None = None
    for p in candidates:
        try:
            return start_server(
                source,
                host,
                p,
                token=token,
                allow_hosts=allow_hosts,
                access_log=access_log,
                _own_source=True,
            )
        except OSError as exc:
            last_err = exc
            if exc.errno != errno.EADDRINUSE or port is not None:
                break
        except ValueError as exc:
            source.close()
            raise _ServeError(str(exc)) from None
    source.close()
    if last_err is not None and last_err.errno == errno.EADDRINUSE and port is not None:
        raise _ServeError(f"port {port} is already in use")
    raise _ServeError(
        f"cannot listen on {host}:{port if port is not None else DEFAULT_PORT}: "
        f"{last_err.strerror if last_err else 'unknown error'}"
    )


def _announce(
    out: Any,
    source: Source,
    url: str,
    host: str,
    token: str | None,
    allow_hosts: Sequence[str],
) -> None:
    """Where the runs are served, and what a browser needs to reach them."""
    n = len(source.run_ids())
    out.write(f"atroz-monitor: serving {n} run{'s' if n != 1 else ''} at {url}\n")
    if token is not None:
        out.write("  a token is required: open the URL once with ?token=<token>\n")
    if not _is_loopback(host) and not allow_hosts:
        out.write("  note: browsers must use an address allowed by --allow-host NAME\n")
    out.write("  press Ctrl-C to stop\n")
    out.flush()


def _start_pruning(stop: threading.Event, pruners: Sequence[Any], every: float) -> None:
    """Retention on a schedule (off by default): whole runs, never one being written."""

    def prune_loop() -> None:
        while not stop.wait(every):
            for p in pruners:
                p.run_once()

    threading.Thread(target=prune_loop, name="atroz-prune", daemon=True).start()
