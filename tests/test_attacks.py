"""Attacks on what reads the log: the HTTP server (idle and slow connections, a sustained
load from wrk, random requests), the reader (random bytes), and the page (an XSS corpus in
every user-controlled string, live and in the static report, in headless Chromium).

Run alone with ``python -m pytest -m faults``; ``ATROZ_FAULT_TRIALS`` (default 50) scales
the fuzzing budgets and the wrk duration (docs/RELIABILITY.md).
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import pwd
import re
import shutil
import socket
import stat
import string
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import require_tool
from helpers import child_env, poll, read_log, ready
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atroz_monitor import Monitor
from atroz_monitor.read.reader import Follower, ReadStats, discover, iter_events
from atroz_monitor.store.source import FileSource
from atroz_monitor.surface import api
from atroz_monitor.surface.server import HEAD_TIMEOUT_S, start_server

pytestmark = pytest.mark.faults

TRIALS = max(1, int(os.environ.get("ATROZ_FAULT_TRIALS", "50")))
WRK_S = max(10, min(30, round(TRIALS * 0.6)))  # 30 s at the default, never under 10 s
FUZZ = settings(
    max_examples=20 * TRIALS,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


# ------------------------------------------------------------------------------ the server


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run log: ``python -m atroz_monitor demo --duration 2 --no-serve``."""
    out = tmp_path_factory.mktemp("demo") / "runs"
    r = subprocess.run(
        [sys.executable, "-m", "atroz_monitor", "demo", "--duration", "2", "--no-serve",
         "--out", str(out)],
        env=child_env(), cwd=str(out.parent), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert len(list(out.glob("*.jsonl"))) == 1
    return out


class Served:
    """``python -m atroz_monitor serve DIR --port 0`` in its own process."""

    def __init__(self, directory: Path, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "atroz_monitor", "serve", str(directory), "--port", "0",
             *extra],
            env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        m = re.search(r"at (http://127\.0\.0\.1:(\d+)/)", line)
        assert m, f"no URL in {line!r}: {self.stderr()}"
        self.url, self.port = m.group(1), int(m.group(2))

    def get(self, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def rss_kib(self) -> int:
        """VmRSS of the server process, from /proc/<pid>/status."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1))  # type: ignore[union-attr]

    def hwm_kib(self) -> int:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.M).group(1))  # type: ignore[union-attr]

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return ""
        return self.proc.stderr.read() if self.proc.stderr else ""

    def close(self) -> str:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        return self.proc.stderr.read() if self.proc.stderr else ""


@pytest.fixture(scope="module")
def served(demo_dir: Path) -> Iterator[Served]:
    s = Served(demo_dir)
    try:
        yield s
    finally:
        err = s.close()
        assert "Traceback" not in err and "internal error" not in err, err


def test_200_idle_connections_do_not_stop_a_get_on_the_serve_command(served: Served) -> None:
    """200 idle connections to `serve` (silent and kept-alive) do not delay a GET past 3 s."""
    socks: list[socket.socket] = []
    try:
        for _ in range(100):
            socks.append(socket.create_connection(("127.0.0.1", served.port), timeout=5))
        for _ in range(100):
            s = socket.create_connection(("127.0.0.1", served.port), timeout=5)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % served.port)
            socks.append(s)
        t0 = time.monotonic()
        status, body = served.get("/api/v1/runs/latest")
        elapsed = time.monotonic() - t0
        assert status == 200 and json.loads(body)["run"]["status"] == "completed"
        assert elapsed < 3.0, f"GET took {elapsed:.2f}s with 200 idle connections"
        info = json.loads(served.get("/healthz")[1])
        assert info["connections"] <= 64 and info["connections_evicted"] >= 100
        assert info["server_errors"] == 0
        print(f"\nidle: 200 idle connections, GET answered in {elapsed * 1000:.0f} ms")
    finally:
        for s in socks:
            s.close()


def test_slow_request_heads_lock_nobody_out_for_long(served: Served) -> None:
    """100 slow request heads lock a GET out for at most the head deadline plus 1.5 s."""
    socks: list[socket.socket] = []
    try:
        t0 = time.monotonic()
        for _ in range(100):
            s = socket.create_connection(("127.0.0.1", served.port), timeout=5)
            s.sendall(b"GET /api/v1/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            socks.append(s)
        refused = 0

        def attempt() -> bool:
            nonlocal refused
            status, _ = served.get("/api/v1/runs/latest", timeout=5)
            refused += status == 503
            assert status in (200, 503), status
            return status == 200

        poll(attempt, HEAD_TIMEOUT_S + 1.5, "a 200 during the slow heads")
        elapsed = time.monotonic() - t0
        info = json.loads(served.get("/healthz")[1])
        assert info["server_errors"] == 0
        print(f"\nslowloris: 100 slow heads, GET answered after {elapsed:.2f}s, {refused} 503s")
    finally:
        for s in socks:
            s.close()


_WRK_LUA = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) statuses = {} end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
function done(summary, latency, requests)
  local ok, other = 0, 0
  for _, t in ipairs(threads) do
    for code, n in pairs(t:get("statuses")) do
      if code >= 200 and code < 300 then ok = ok + n else other = other + n end
    end
  end
  local e = summary.errors
  io.write(string.format(
    'ATROZ {"requests":%d,"ok":%d,"other":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d,"duration_us":%d}\\n',
    summary.requests, ok, other, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), summary.duration))
end
"""


def test_wrk_load_on_the_snapshot_route_has_no_errors_and_bounded_rss(
    served: Served, tmp_path: Path
) -> None:
    """wrk on /api/v1/runs/latest: no socket error, every response 2xx, RSS growth < 50 MB."""
    wrk = require_tool("wrk")
    for _ in range(20):  # warm the caches before the baseline
        assert served.get("/api/v1/runs/latest")[0] == 200
    rss0 = served.rss_kib()
    script = tmp_path / "count.lua"
    script.write_text(_WRK_LUA)
    r = subprocess.run(
        [wrk, "-t2", "-c16", f"-d{WRK_S}s", "--timeout", "5s", "-s", str(script),
         served.url + "api/v1/runs/latest"],
        capture_output=True, text=True, timeout=WRK_S + 60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    m = re.search(r"^ATROZ (\{.*\})$", r.stdout, re.M)
    assert m, r.stdout
    res = json.loads(m.group(1))
    rss1 = served.rss_kib()
    info = json.loads(served.get("/healthz")[1])
    growth_mb = (rss1 - rss0) / 1024
    print(
        f"\nwrk: {WRK_S}s, {res['requests']} requests ({res['requests'] / WRK_S:.0f}/s), "
        f"p50 {res['p50_us'] / 1000:.1f} ms, p99 {res['p99_us'] / 1000:.1f} ms, "
        f"{res['ok']} 2xx, {res['other']} other, socket errors connect {res['connect']} "
        f"read {res['read']} write {res['write']} timeout {res['timeout']}; RSS "
        f"{rss0 / 1024:.1f} -> {rss1 / 1024:.1f} MB (peak {served.hwm_kib() / 1024:.1f} MB)"
    )
    assert res["requests"] > 1000
    assert res["ok"] == res["requests"] and res["other"] == 0 and res["status"] == 0
    assert (res["connect"], res["read"], res["write"], res["timeout"]) == (0, 0, 0, 0)
    assert info["server_errors"] == 0
    assert growth_mb < 50, f"RSS grew {growth_mb:.1f} MB under load"


# ------------------------------------------------------------------------------ fuzzing

_SEGMENTS = [
    "", ".", "..", "%2e%2e", "%2F", "%00", "%ff", "%", "%zz", "api", "v1", "runs", "latest",
    "phases", "P00", "P03", "sub-phases", "progress", "resources", "errors", "warnings",
    "artifacts", "alerts", "export", "history", "trends", "summary", "stream", "static",
    "app.js", "style.css", "index.html", "favicon.svg", "healthz", "metrics", "..%2f..%2fetc",
    "passwd", "é", "\u2028", "💥", "a b", "%F0%9F%92%A5", ".hidden", "~", "*",
]  # fmt: skip
_PARAMS = [
    "status", "parent", "depth", "since", "step", "format", "severity", "state", "tag",
    "run", "limit", "token", "phase", "key", "x",
]  # fmt: skip
_VALUES = [
    "", "0", "-1", "1e9", "9" * 40, "completed", "running,failed", "none", "json",
    "chrome-trace", "otlp-json", "prometheus", "k=v", "=", "==", "a=b=c", "%", "%zz",
    "\x00", "é", "<script>", "critical", "open", "NaN", "inf",
]  # fmt: skip

_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=20)


def _quote(s: str) -> str:
    return urllib.parse.quote(s, safe="")


_segment = st.one_of(
    st.sampled_from(_SEGMENTS), _text, _text.map(_quote), st.text(string.printable, max_size=8)
)
_path = st.one_of(
    st.lists(_segment, max_size=7).map(lambda s: "/" + "/".join(s)),
    st.lists(st.sampled_from(_SEGMENTS[9:30]), min_size=1, max_size=6).map(
        lambda s: "/" + "/".join(s)
    ),
    _text.map(lambda s: "/" + s),
)
_pair = st.tuples(
    st.one_of(st.sampled_from(_PARAMS), _text), st.one_of(st.sampled_from(_VALUES), _text)
)
_query = st.one_of(
    st.lists(_pair, max_size=6).map(urllib.parse.urlencode),
    st.lists(_pair, max_size=6).map(lambda ps: "&".join(f"{k}={v}" for k, v in ps)),
    _text,
)
_headers = st.dictionaries(
    st.one_of(
        st.sampled_from(["host", "if-none-match", "accept", "authorization", "cookie", "range"]),
        _text.map(str.lower),
    ),
    st.one_of(st.sampled_from(["127.0.0.1", "evil.example", "*/*", "", '"x"']), _text),
    max_size=5,
)
_OTHER_METHODS = ["POST", "PUT", "DELETE", "OPTIONS", "TRACE", "get", ""]
# Mostly GET (the routes), some HEAD, the rest anything: hypothesis would otherwise spread
# its examples evenly over the few distinct methods.
_method = st.integers(0, 9).flatmap(
    lambda k: (
        st.just("GET")
        if k < 7
        else st.just("HEAD")
        if k == 7
        else st.sampled_from(_OTHER_METHODS)
        if k == 8
        else _text
    )
)
_RUN_ROUTES = [
    "", "progress", "phases", "resources", "errors", "warnings", "artifacts", "alerts",
    "export", "phases/P00", "phases/P03/sub-phases", "phases/P00/x",
]  # fmt: skip


def _api_path(run_id: str) -> Any:
    """Mostly real routes, with a run reference and a tail that may be anything."""
    refs = ["latest", "latest", run_id, run_id, run_id + "x", "..", "%2e"]
    run = st.one_of(st.sampled_from(refs), st.sampled_from(refs), _segment)
    runs = st.builds(
        lambda r, w, extra: f"/api/v1/runs/{r}" + (f"/{w}" if w else "") + extra,
        run,
        st.one_of(st.sampled_from(_RUN_ROUTES), st.sampled_from(_RUN_ROUTES), _segment),
        st.one_of(st.just(""), st.just(""), _segment.map(lambda s: "/" + s)),
    )
    other = st.builds(
        lambda k, w: f"/api/v1/phases/{k}/{w}",
        st.one_of(st.sampled_from(["P00", "P03", "P03.sub"]), _segment),
        st.sampled_from(["history", "trends", "x", ""]),
    )
    fixed = st.sampled_from(
        ["/api/v1/runs", "/api/v1/alerts", "/api/v1/summary", "/healthz", "/metrics", "/",
         "/static/app.js", "/static/../server.py", "/static/%2e%2e/api.py", "/favicon.svg"]
    )  # fmt: skip
    return st.one_of(runs, runs, runs, other, fixed, _path)


@pytest.fixture(scope="module")
def demo_source(demo_dir: Path) -> Iterator[FileSource]:
    src = FileSource([demo_dir])
    try:
        yield src
    finally:
        src.close()


def test_fuzzed_requests_never_raise_or_500(demo_source: FileSource) -> None:
    """Random methods, paths, queries and headers to api.route: no exception, never a 5xx."""
    seen: dict[int, int] = {}
    run_id = demo_source.run_ids()[0]

    @FUZZ
    @given(method=_method, path=_api_path(run_id), query=_query, headers=_headers)
    def check(method: str, path: str, query: str, headers: dict[str, str]) -> None:
        resp = api.route(demo_source, method, path, query, headers)
        seen[resp.status] = seen.get(resp.status, 0) + 1
        assert resp.status in (200, 304, 400, 404, 405), (method, path, query, resp)
        hdrs = dict(resp.headers)
        assert int(hdrs["Content-Length"]) >= len(resp.body)
        if resp.status >= 400 and method != "HEAD":
            assert json.loads(resp.body)["status"] == resp.status

    check()
    print(f"\napi.route fuzz: {sum(seen.values())} requests, statuses {dict(sorted(seen.items()))}")
    assert sum(seen.values()) >= 20 * TRIALS


def test_fuzzed_raw_requests_never_500_the_server(demo_dir: Path) -> None:
    """Random request heads over a socket: no 5xx but 503, no server error counted."""
    src = FileSource([demo_dir])
    srv = start_server(src, "127.0.0.1", 0)
    statuses: dict[int, int] = {}
    line = st.binary(max_size=40).filter(lambda b: b"\n" not in b)
    try:

        @settings(FUZZ, max_examples=4 * TRIALS)
        @given(
            method=st.one_of(st.sampled_from([b"GET", b"HEAD", b"POST", b"G\x00T"]), line),
            target=st.one_of(_path.map(lambda p: p.encode("utf-8", "surrogatepass")), line),
            version=st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2", b"", b"HTTP/1.1 x"]),
            headers=st.lists(line, max_size=6),
            host=st.booleans(),
        )
        def check(method: bytes, target: bytes, version: bytes, headers: list, host: bool) -> None:
            head = b" ".join(x for x in (method, target, version) if x) + b"\r\n"
            if host:
                head += b"Host: 127.0.0.1:%d\r\n" % srv.port
            head += b"".join(h + b"\r\n" for h in headers) + b"Connection: close\r\n\r\n"
            with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
                s.sendall(head)
                out = b""
                try:
                    while chunk := s.recv(65536):
                        out += chunk
                except (ConnectionResetError, TimeoutError):
                    pass
            if out:
                m = re.match(rb"HTTP/1\.[01] (\d{3}) ", out)
                assert m, out[:80]
                code = int(m.group(1))
                statuses[code] = statuses.get(code, 0) + 1
                assert code < 500 or code == 503, (head, out[:200])

        check()
        assert srv.info()["server_errors"] == 0
        c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
        c.request("GET", "/api/v1/runs/latest")
        assert c.getresponse().status == 200
        c.close()
        print(f"\nraw request fuzz: statuses {dict(sorted(statuses.items()))}")
    finally:
        srv.close()
        src.close()


def _events_of(data: bytes, tmp: Path, name: str = "f.jsonl") -> tuple[list[Any], ReadStats]:
    path = tmp / name
    path.write_bytes(data)
    stats = ReadStats(str(path))
    return list(iter_events(path, stats)), stats


_LINE = st.one_of(
    st.binary(max_size=60),
    st.sampled_from(
        [b'{"ev":"phase_end","ts":1,"run":"r","seq":1}\n', b"{}\n", b"[1]\n", b'{"ev":1}\n',
         b"\xef\xbb\xbf{\"ev\":\"x\"}\n", b'{"ev":"a"}', b"\n", b"\r\n", b'{"ev":"\\ud800"}\n',
         b"[" * 5000 + b"\n", b'{"ev":"x","n":' + b"9" * 5000 + b"}\n"]
    ),
)  # fmt: skip


def test_reader_never_raises_on_random_bytes(tmp_path: Path) -> None:
    """iter_events on random bytes, plain or gzip (cut, flipped): never raises, counts add up."""
    n = 0

    @settings(FUZZ, max_examples=4 * TRIALS)
    @given(
        parts=st.lists(_LINE, max_size=12),
        gz=st.sampled_from(["plain", "gz", "cut", "flip"]),
        cut=st.integers(0, 10_000),
    )
    def check(parts: list[bytes], gz: str, cut: int) -> None:
        nonlocal n
        data = b"".join(parts)
        name = "f.jsonl"
        if gz != "plain":
            name += ".gz"
            data = gzip.compress(data)
            if gz == "cut":
                data = data[: cut % (len(data) + 1)]
            elif gz == "flip" and data:
                i = cut % len(data)
                data = data[:i] + bytes([data[i] ^ 0x5A]) + data[i + 1 :]
        events, stats = _events_of(data, tmp_path, name)
        n += 1
        assert stats.lines == stats.events + stats.corrupt + stats.torn
        assert stats.events == len(events) and stats.torn <= 1
        assert all(type(e) is dict and type(e["ev"]) is str for e in events)

    check()
    assert n >= 4 * TRIALS


def test_follower_never_raises_and_agrees_with_iter_events(tmp_path: Path) -> None:
    """A Follower polling random appended bytes never raises and agrees with iter_events."""

    @settings(FUZZ, max_examples=4 * TRIALS)
    @given(
        chunks=st.lists(st.one_of(_LINE, st.binary(max_size=30)), max_size=15),
        truncate_at=st.one_of(st.none(), st.integers(0, 14)),
        max_bytes=st.integers(1, 64),
    )
    def check(chunks: list[bytes], truncate_at: int | None, max_bytes: int) -> None:
        path = tmp_path / "follow.jsonl"
        path.write_bytes(b"")
        got: list[Any] = []
        with Follower(path, max_bytes=max_bytes) as f:
            for i, chunk in enumerate(chunks):
                if truncate_at == i:
                    path.write_bytes(b"")
                with open(path, "ab") as w:
                    w.write(chunk)
                reset, evs = f.poll()
                while f.more:
                    more_reset, more = f.poll()
                    reset |= more_reset
                    evs += more
                if reset:
                    got = []
                got += evs
            stats = f.stats
        final, fstats = _events_of(path.read_bytes(), tmp_path, "final.jsonl")
        if truncate_at is None or truncate_at >= len(chunks):
            assert got == final
            assert stats.corrupt == fstats.corrupt

    check()


# ------------------------------------------------------------------------------ XSS

# Each tries to run code: set the sentinel window.__pwned or call alert/confirm/prompt.
XSS = [
    "<script>window.__pwned=1</script>",
    '<img src=x onerror="window.__pwned=1">',
    '<svg onload="window.__pwned=1">',
    '<svg><animate onbegin="window.__pwned=1" attributeName="x" dur="1s"/></svg>',
    "javascript:window.__pwned=1",
    '<a href="javascript:window.__pwned=1">link</a>',
    "</script><script>window.__pwned=1</script>",
    '"><img src=x onerror=window.__pwned=1>',
    "'><img src=x onerror=window.__pwned=1>",
    '" autofocus onfocus="window.__pwned=1" x="',
    "' onmouseover='window.__pwned=1' x='",
    "${window.__pwned=1}",
    "`${alert(1)}`",
    "\\u003cscript\\u003ewindow.__pwned=1\\u003c/script\\u003e",
    '<iframe src="javascript:window.__pwned=1"></iframe>',
    '<iframe srcdoc="<script>parent.__pwned=1</script>"></iframe>',
    '<style>@import "javascript:window.__pwned=1";</style>',
    "--><img src=x onerror=window.__pwned=1><!--",
    "<!--<script>window.__pwned=1</script>-->",
    "a\u2028b\u2029<script>window.__pwned=1</script>",
    "<body onload=window.__pwned=1>",
    "<math><mtext><table><mglyph><style><img src=x onerror=window.__pwned=1>",
    '<object data="javascript:window.__pwned=1"></object>',
    '<embed src="javascript:window.__pwned=1">',
    "<details open ontoggle=window.__pwned=1>",
    '<base href="javascript:window.__pwned=1//">',
    '<meta http-equiv="refresh" content="0;url=javascript:window.__pwned=1">',
    '{{constructor.constructor("window.__pwned=1")()}}',
    "&lt;script&gt;window.__pwned=1&lt;/script&gt;",
    "%3Cscript%3Ewindow.__pwned%3D1%3C%2Fscript%3E",
    "<scr<script>ipt>window.__pwned=1</scr</script>ipt>",
    '<form action="javascript:window.__pwned=1"><button>go</button></form>',
    "prompt(1)//<input onfocus=confirm(1) autofocus>",
]
SAFE = [f"safe-name-{i:02d}" for i in range(len(XSS))]

# Installed before any page script: traps for the dialogs the payloads call.
TRAP = (
    "window.__calls = [];"
    "for (const f of ['alert', 'confirm', 'prompt']) {"
    "  window[f] = (m) => { window.__calls.push(f + ':' + String(m)); return null; }; }"
)

# Every text node outside script/style (what the page shows as text, hidden panels included).
_TEXTS = """
const out = [];
const walk = document.createTreeWalker(document.documentElement, NodeFilter.SHOW_TEXT);
for (let n = walk.nextNode(); n; n = walk.nextNode()) {
  const p = n.parentElement && n.parentElement.closest('script,style,noscript,template');
  if (!p) out.push(n.nodeValue);
}
return out.join('\\n');
"""

# Open every phase row's detail panel, one by one; the detail texts.
_DETAILS = """
const texts = [];
const n = document.querySelectorAll('#phase-body tr').length;
for (let i = 0; i < n; i++) {
  const tr = document.querySelectorAll('#phase-body tr')[i];
  if (!tr) break;
  tr.click();
  texts.push(document.getElementById('detail-body').textContent);
}
return [n, texts.join('\\n')];
"""

_DANGER = [
    "img", "script", "iframe", "frame", "svg", "style", "object", "embed", "link", "meta",
    "base", "form", "input", "button", "a", "math", "details", "body", "animate", "video",
    "audio", "textarea",
]  # fmt: skip

_INSPECT = """
const tags = arguments[0];
const counts = {};
for (const t of tags) counts[t] = document.getElementsByTagName(t).length;
const urlAttrs = ['href', 'src', 'action', 'formaction', 'data', 'xlink:href', 'srcdoc'];
const bad = [];
for (const e of document.querySelectorAll('*')) {
  for (const a of e.attributes) {
    if (a.name.startsWith('on')) bad.push(e.tagName + ' ' + a.name);
    const js = /^\\s*javascript:/i.test(a.value);
    if (urlAttrs.includes(a.name) && js) bad.push(e.tagName + ' ' + a.name);
  }
}
return {counts, bad, pwned: window.__pwned === undefined ? null : String(window.__pwned),
        calls: window.__calls || null};
"""


def _xss_runs(d: Path, names: list[str]) -> str:
    """One run per name (named by it, tagged with it), then the main run where each name is
    a planned phase's key and name, a sub-phase's name, a metric name, a warning, an error
    message (every fourth phase fails with it), an artifact path and a tag."""
    for i, x in enumerate(names):
        with Monitor(
            d, run_id=f"other-{i:02d}", name=x, sample_interval=None, tags={f"t{i}": x},
            alert_rules=[],
        ) as m:  # fmt: skip
            with m.phase("P00"):
                pass
    with Monitor(
        d, run_id="main", name=names[0], plan=[(x, x) for x in names], sample_interval=None,
        tags={names[1]: names[2], "k": names[3]}, meta={"note": names[4]},
    ) as mon:  # fmt: skip
        for i, x in enumerate(names):
            try:
                with mon.phase(x, name=x) as p:
                    p.metric(x, i)
                    p.warning(x)
                    p.artifact(x)
                    with mon.phase(f"sub-{i:02d}", name=x):
                        pass
                    if i % 4 == 0:
                        raise RuntimeError(x)
            except RuntimeError:
                pass
    return "main"


@pytest.fixture(scope="module")
def xss_logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The XSS corpus as runs on disk, and a twin with plain names and the same shape."""
    out = {}
    for kind, names in (("evil", XSS), ("safe", SAFE)):
        d = tmp_path_factory.mktemp(kind) / "runs"
        _xss_runs(d, names)
        out[kind] = d
    # The log really carries every payload verbatim (nothing redacted or clipped away).
    evs = [e for f in sorted(out["evil"].glob("*.jsonl")) for e in iter_events(f)]
    keys = {e["phase"] for e in evs if e["ev"] == "phase_end"}
    names = {e["name"] for e in evs if e["ev"] == "run_start"}
    metrics = {e["name"] for e in evs if e["ev"] == "metric"}
    paths = {e["path"] for e in evs if e["ev"] == "artifact"}
    msgs = {e["msg"] for e in evs if e["ev"] == "log"}
    for x in XSS:
        assert x in keys and x in names and x in metrics and x in paths and x in msgs, x
    return out


@pytest.fixture(scope="module")
def xss_driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from browser import chrome

    d = chrome(tmp_path_factory.mktemp("xss-profile"))
    d.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": TRAP})
    try:
        yield d
    finally:
        d.quit()


def _visit(driver: Any, url: str, phases: int) -> dict[str, Any]:
    """Load ``url``, open every phase's detail, and inspect the page."""
    from browser import console_errors, wait_for

    driver.get("about:blank")
    console_errors(driver)
    driver.get(url)
    wait_for(driver, f"return document.querySelectorAll('#flow li').length === {phases}", 15)
    wait_for(driver, "return document.querySelectorAll('#run-picker option').length > 1", 10)
    rows, details = driver.execute_script(_DETAILS)
    text = driver.execute_script(_TEXTS) + "\n" + details
    found = driver.execute_script(_INSPECT, _DANGER)
    found["rows"] = rows
    found["text"] = text
    found["console"] = console_errors(driver)
    return found


def _check_page(evil: dict[str, Any], safe: dict[str, Any], where: str) -> None:
    assert evil["pwned"] is None, f"{where}: window.__pwned was set"
    assert evil["calls"] == [], f"{where}: dialogs called: {evil['calls']}"
    assert evil["bad"] == [], f"{where}: injected handlers or javascript: URLs {evil['bad']}"
    assert evil["console"] == [], f"{where}: console errors {evil['console']}"
    assert evil["rows"] == safe["rows"] == 2 * len(XSS)
    assert evil["counts"] == safe["counts"], f"{where}: elements beyond the page's own"
    missing = [x for x in XSS if x not in evil["text"]]
    assert not missing, f"{where}: payloads not shown as text: {missing}"


def test_xss_corpus_runs_nothing_in_the_live_page(
    xss_logs: dict[str, Path], xss_driver: Any
) -> None:
    """33 XSS payloads in every user string: nothing runs or is injected in the live page."""
    pages = {}
    for kind, d in xss_logs.items():
        src = FileSource([d])
        srv = start_server(src, "127.0.0.1", 0)
        try:
            pages[kind] = _visit(xss_driver, f"{srv.url}?run=main", len(XSS))
        finally:
            srv.close()
            src.close()
    _check_page(pages["evil"], pages["safe"], "live page")


def test_xss_corpus_runs_nothing_in_the_html_report(
    xss_logs: dict[str, Path], xss_driver: Any, tmp_path: Path
) -> None:
    """The XSS corpus in `report --format html`: nothing runs or is injected, all shown as text."""
    pages = {}
    for kind, d in xss_logs.items():
        out = tmp_path / f"{kind}.html"
        r = subprocess.run(
            [sys.executable, "-m", "atroz_monitor", "report", str(d), "--run", "main",
             "--format", "html", "--output", str(out)],
            env=child_env(), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert r.returncode in (0, 1), r.stderr  # 1: the run has failed phases
        pages[kind] = _visit(xss_driver, out.as_uri(), len(XSS))
    _check_page(pages["evil"], pages["safe"], "html report")


# ------------------------------------------------------------- slowloris (issue 14)

SLOW_CONNS = 70
SLOW_GAP_S = 0.3
NORMAL_GETS = 60


class Slowloris:
    """``SLOW_CONNS`` attacker connections on 127.0.0.1, each sending a request head one
    byte every ``SLOW_GAP_S`` seconds and reconnecting as soon as it is closed."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stop = threading.Event()
        self.connects = 0
        self.open = 0
        self._lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._attacker, daemon=True) for _ in range(SLOW_CONNS)
        ]
        for t in self.threads:
            t.start()

    def _attacker(self) -> None:
        head = b"GET /api/v1/runs HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nX-Slow: " % self.port
        head += b"a" * 100_000
        while not self.stop.is_set():
            try:
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=2)
            except OSError:
                self.stop.wait(0.05)
                continue
            with self._lock:
                self.connects += 1
                self.open += 1
            try:
                for i in range(len(head)):
                    sock.send(head[i : i + 1])
                    if self.stop.wait(SLOW_GAP_S):
                        break
                    readable, _, _ = ready(sock, 0)
                    if readable:  # closed, or answered (503, 408): either way, again
                        break
            except OSError:
                pass
            finally:
                sock.close()
                with self._lock:
                    self.open -= 1

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(5)


def _normal_gets(port: int, headers: dict[str, str]) -> list[tuple[int, float]]:
    """``NORMAL_GETS`` GETs, each on a new connection, paced over about 6 s: status and
    seconds to the whole response (status 0: no answer within 5 s)."""
    out = []
    pace = threading.Event()
    for _ in range(NORMAL_GETS):
        t0 = time.monotonic()
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            c.request("GET", "/api/v1/runs/latest", headers=headers)
            r = c.getresponse()
            r.read()
            status = r.status
        except OSError:
            status = 0
        finally:
            c.close()
        out.append((status, time.monotonic() - t0))
        pace.wait(0.1)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("bind", ["loopback", "token"])
def test_slowloris_of_70_connections_starves_no_normal_get(
    demo_dir: Path, tmp_path: Path, bind: str
) -> None:
    """Under 70 slowloris connections (a byte every 0.3 s, reconnecting when closed), at
    least 95% of 60 normal GETs (with the token on a token bind) are answered 200 within
    1 s: a full server evicts the oldest unfinished head, and a normal head is never that."""
    extra: list[str] = []
    headers: dict[str, str] = {}
    if bind == "token":
        token = "Zk3-vQ9_x7-slowloris"
        (tmp_path / "token").write_text(token)
        extra = ["--token-file", str(tmp_path / "token")]
        headers = {"Authorization": f"Bearer {token}"}
    served = Served(demo_dir, *extra)
    attack = None
    try:
        attack = Slowloris(served.port)
        # The attack is on: every attacker connected, the server at its cap and evicting.
        poll(lambda: attack.connects >= SLOW_CONNS, 30, "70 attacker connections")

        def health() -> dict[str, Any]:
            c = http.client.HTTPConnection("127.0.0.1", served.port, timeout=5)
            try:
                c.request("GET", "/healthz", headers=headers)
                return json.loads(c.getresponse().read())
            finally:
                c.close()

        # Every slot is taken before the first normal GET (the attackers outnumber them).
        poll(lambda: attack.open >= SLOW_CONNS - 5, 30, "the attackers holding connections")
        results = _normal_gets(served.port, headers)
        attack.stop.set()
        info = health()
        fast = sum(1 for status, s in results if status == 200 and s < 1.0)
        slowest = max(s for _, s in results)
        statuses = sorted({status for status, _ in results})
        print(
            f"\nslowloris ({bind}): {fast}/{NORMAL_GETS} GETs 200 within 1 s, slowest "
            f"{slowest * 1000:.0f} ms, statuses {statuses}; attacker connects "
            f"{attack.connects}, evicted {info['connections_evicted']}, refused "
            f"{info['connections_refused']}"
        )
        assert fast >= 0.95 * NORMAL_GETS, results
        assert attack.connects > SLOW_CONNS  # the attackers were evicted and came back
        assert info["server_errors"] == 0
    finally:
        if attack is not None:
            attack.close()
        err = served.close()
    assert "Traceback" not in err, err


# ------------------------------------------------- other users on the machine (issue 14)


def _require_root() -> None:
    """Acting as another user (``nobody``) needs root; skip otherwise (fail in CI)."""
    if os.geteuid() != 0:
        msg = "acting as another user (nobody) needs root"
        if os.environ.get("ATROZ_REQUIRE_TOOLS") == "1":
            pytest.fail(msg + " (ATROZ_REQUIRE_TOOLS=1)")
        pytest.skip(msg)


def as_nobody(*cmd: str) -> subprocess.CompletedProcess[str]:
    """Run a command as the user ``nobody`` (setuid in the child before exec)."""
    pw = pwd.getpwnam("nobody")

    def demote() -> None:
        os.setgroups([])
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)

    return subprocess.run(
        list(cmd), preexec_fn=demote, capture_output=True, text=True, timeout=30, cwd="/"
    )


@pytest.fixture
def sticky(tmp_path: Path) -> Iterator[Path]:
    """A world-writable sticky directory (a /tmp of its own), owned by root, that nobody can
    reach; and ``tmp_path`` holds a root-only secret file."""
    _require_root()
    d = Path(tempfile.mkdtemp(prefix="atroz-sticky-", dir="/tmp"))
    d.chmod(0o1777)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A root-only file (0600 in a 0700 directory): what a planted link points at."""
    f = tmp_path / "secret"
    f.write_text("root only\n")
    f.chmod(0o600)
    tmp_path.chmod(0o700)
    return f


def test_planted_symlink_at_the_log_path_is_refused_target_untouched(
    sticky: Path, secret: Path
) -> None:
    """nobody plants ``shared/pipeline.jsonl -> a root-only file``; root's Monitor refuses
    it at construction with a clear message (trust_dir too) and the target is unchanged."""
    log = sticky / "pipeline.jsonl"
    assert as_nobody("ln", "-s", str(secret), str(log)).returncode == 0
    for trust in (False, True):
        with pytest.raises(OSError, match="symbolic link"):
            with Monitor(str(log), sample_interval=None, trust_dir=trust) as mon:
                with mon.phase("P00"):
                    pass
    assert secret.read_text() == "root only\n"


def test_a_log_file_another_user_planted_is_refused(sticky: Path) -> None:
    """A log file nobody pre-created (0666) is refused: they could read every line root
    appends. trust_dir=True accepts it."""
    log = sticky / "pipeline.jsonl"
    assert as_nobody("sh", "-c", f"touch {log} && chmod 666 {log}").returncode == 0
    with pytest.raises(PermissionError, match="belongs to another user"):
        Monitor(str(log), sample_interval=None)
    assert log.read_bytes() == b""
    with Monitor(str(log), sample_interval=None, trust_dir=True) as mon:
        with mon.phase("P00"):
            pass
    assert [e["ev"] for e in read_log(log)][-1] == "run_end"


def test_a_run_directory_another_user_owns_or_anyone_may_write_is_refused(
    sticky: Path,
) -> None:
    """A run directory nobody made (mode 777), or root's own at 0777 without the sticky bit,
    is refused at construction with the reason; root's at 1777 and trust_dir=True are
    accepted."""
    theirs = sticky / "atroz-runs"
    assert as_nobody("mkdir", "-m", "777", str(theirs)).returncode == 0
    with pytest.raises(PermissionError, match=r"belongs to another user \(uid 65534\)"):
        Monitor(str(theirs), sample_interval=None)
    assert list(theirs.iterdir()) == []
    open_dir = sticky / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    with pytest.raises(PermissionError, match="anyone may write to it .mode 0777, no sticky"):
        Monitor(str(open_dir), sample_interval=None)
    with pytest.raises(PermissionError, match="anyone may write to it"):
        Monitor(str(open_dir / "one.jsonl"), sample_interval=None)
    open_dir.chmod(0o1777)
    with Monitor(str(open_dir), sample_interval=None, run_id="ok-1"):
        pass
    with Monitor(str(theirs), sample_interval=None, run_id="ok-2", trust_dir=True):
        pass
    assert (open_dir / "ok-1.jsonl").exists() and (theirs / "ok-2.jsonl").exists()


def test_cli_run_into_a_directory_another_user_owns_exits_2(sticky: Path) -> None:
    """``run --out`` a directory nobody owns: one line naming the reason, exit 2, the
    command not run."""
    theirs = sticky / "atroz-runs"
    assert as_nobody("mkdir", "-m", "777", str(theirs)).returncode == 0
    marker = sticky / "ran"
    r = subprocess.run(
        [sys.executable, "-m", "atroz_monitor", "run", "--out", str(theirs), "--",
         "touch", str(marker)],
        env=child_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "belongs to another user" in r.stderr and "Traceback" not in r.stderr
    assert not marker.exists()


def test_planted_rotation_parts_are_skipped_nothing_lost(sticky: Path, secret: Path) -> None:
    """nobody plants ``pipe.part2..5.jsonl -> a root-only file``; root's rotating Monitor
    never writes through them (O_EXCL), goes on in part6, loses no event, never raises, and
    every event reads back."""
    log = sticky / "pipe.jsonl"
    for n in range(2, 6):
        part = sticky / f"pipe.part{n}.jsonl"
        assert as_nobody("ln", "-s", str(secret), str(part)).returncode == 0
    with Monitor(str(log), sample_interval=None, max_bytes=4096, run_id="rot-1") as mon:
        for i in range(100):
            with mon.phase(f"P{i:02d}"):
                pass
        health = mon.main.health()
    assert secret.read_text() == "root only\n"
    assert health["events_lost"] == 0 and health["write_errors"] == 0
    assert (sticky / "pipe.part6.jsonl").is_file() and not (
        sticky / "pipe.part6.jsonl"
    ).is_symlink()
    files = discover([log])
    assert all(not os.path.islink(f) for f in files) and len(files) >= 3
    events = [e for f in files for e in iter_events(f)]
    assert len(events) == health["events_written"] + 1  # + run_end, written after health()
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))


def test_logs_are_0600_and_directories_0700_nobody_reads_them(sticky: Path) -> None:
    """Under umask 022 a run directory is 0700 and its log 0600, a single log 0600; nobody
    cannot read either (cat: Permission denied)."""
    old = os.umask(0o022)
    try:
        with Monitor(str(sticky / "runs"), sample_interval=None, run_id="r-1") as m1:
            pass
        with Monitor(str(sticky / "one.jsonl"), sample_interval=None) as m2:
            pass
    finally:
        os.umask(old)
    assert stat.S_IMODE((sticky / "runs").stat().st_mode) == 0o700
    assert stat.S_IMODE((sticky / "runs" / "r-1.jsonl").stat().st_mode) == 0o600
    assert stat.S_IMODE((sticky / "one.jsonl").stat().st_mode) == 0o600
    for f in (m1.main.path, m2.main.path):
        r = as_nobody("cat", f)
        assert r.returncode == 1 and "Permission denied" in r.stderr and r.stdout == ""


@pytest.fixture
def served_dir(sticky: Path, secret: Path) -> tuple[Path, Path]:
    """A directory root serves (sticky, world-writable) holding one run log, and a root-only
    run log (``secret-run``) that nobody links into it."""
    d = sticky / "served"
    d.mkdir()
    d.chmod(0o1777)
    with Monitor(str(d), sample_interval=None, run_id="visible-run"):
        pass
    hidden = secret.parent / "hidden.jsonl"
    with Monitor(str(hidden), sample_interval=None, run_id="secret-run"):
        pass
    hidden.chmod(0o600)
    assert as_nobody("ln", "-s", str(hidden), str(d / "planted.jsonl")).returncode == 0
    assert as_nobody("cat", str(d / "planted.jsonl")).returncode == 1  # nobody cannot read it
    return d, hidden


def test_report_and_export_do_not_follow_symlinks_in_a_directory(
    served_dir: tuple[Path, Path],
) -> None:
    """``report DIR`` and ``export DIR`` leave out a symlink nobody planted in DIR (the
    root-only run is not in the output); with --follow-symlinks they read it."""
    d, _ = served_dir

    def cli(*args: str) -> str:
        r = subprocess.run(
            [sys.executable, "-m", "atroz_monitor", *args], env=child_env(),
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        return r.stdout

    plain = cli("report", str(d), "--format", "json")
    assert '"visible-run"' in plain and "secret-run" not in plain
    assert "secret-run" not in cli("export", str(d), "--format", "prometheus")
    followed = cli("report", str(d), "--format", "json", "--follow-symlinks")
    assert json.loads(followed)["run"]["id"] in ("secret-run", "visible-run")
    assert '"secret-run"' in followed and '"visible-run"' in followed
    assert "secret-run" in cli("export", str(d), "--format", "prometheus", "--follow-symlinks")


def test_serve_does_not_follow_symlinks_in_a_directory(served_dir: tuple[Path, Path]) -> None:
    """``serve DIR`` lists only the real log, and the planted run is 404; with
    --follow-symlinks it is served."""
    d, _ = served_dir
    for extra, expect in (
        ((), ["visible-run"]),
        (("--follow-symlinks",), ["secret-run", "visible-run"]),
    ):
        s = Served(d, *extra)
        try:
            status, body = s.get("/api/v1/runs")
            assert status == 200
            assert sorted(r["id"] for r in json.loads(body)["runs"]) == expect
            assert s.get("/api/v1/runs/secret-run")[0] == (404 if not extra else 200)
        finally:
            s.close()


def test_report_output_through_a_planted_link_is_refused(
    served_dir: tuple[Path, Path], secret: Path
) -> None:
    """nobody plants ``report.html -> a root-only file`` where root writes a report: exit
    2, one line, the target not truncated (O_NOFOLLOW)."""
    d, _ = served_dir
    out = d.parent / "report.html"
    assert as_nobody("ln", "-s", str(secret), str(out)).returncode == 0
    r = subprocess.run(
        [sys.executable, "-m", "atroz_monitor", "report", str(d), "--format", "html",
         "--output", str(out)],
        env=child_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert "--output: cannot write" in r.stderr and len(r.stderr.splitlines()) == 1
    assert secret.read_text() == "root only\n"


def test_a_process_joining_a_run_in_a_trusted_directory_can_write(sticky: Path) -> None:
    """A run root accepted with trust_dir=True in a directory nobody owns: a Python child
    joining it through the environment appends its phase (it trusts its owner's choice)."""
    theirs = sticky / "atroz-runs"
    assert as_nobody("mkdir", "-m", "777", str(theirs)).returncode == 0
    with Monitor(str(theirs), sample_interval=None, run_id="j-1", trust_dir=True) as mon:
        env = child_env()
        env.update({k: v for k, v in os.environ.items() if k.startswith("ATROZ_MONITOR_")})
        code = "import atroz_monitor as m\nwith m.phase('child'):\n    pass\n"
        r = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
        )
        assert r.returncode == 0 and r.stderr == "", r.stderr
    ends = [e for e in read_log(mon.main.path) if e["ev"] == "phase_end"]
    assert [(e["phase"], e["status"]) for e in ends] == [("child", "completed")]
