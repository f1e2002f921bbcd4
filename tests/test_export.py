"""The `export` command (commands/export.py) on real demo logs: stdout or --output, bad
input, the API route serving the trace formats, and the commands of docs/SCALING.md run as
written."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from atroz_monitor.commands import export
from atroz_monitor.store import source
from atroz_monitor.surface import api

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


SCALING = os.path.join(ROOT, "docs", "SCALING.md")


def _span_list(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [sp for rs in doc["resourceSpans"] for ss in rs["scopeSpans"] for sp in ss["spans"]]


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


@pytest.mark.parametrize("fmt", export.FORMATS)
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
        assert len(_span_list(json.loads(resp.body))) == 33
        resp = api.route(src, "GET", "/api/v1/runs/latest/export", "format=svg")
        assert resp.status == 400 and json.loads(resp.body)["error"].startswith("format:")
        assert "snapshot" in json.loads(api.route(src, "GET", "/api/v1/runs/latest/export").body)
    finally:
        src.close()


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
    assert len([e for e in trace["traceEvents"] if e["ph"] == "X"]) == 33
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
    assert len(_span_list(json.loads(body))) == 33
