"""Benchmark the dashboard server against prometheus_client's exposition server.

    python benchmarks/bench_server.py [--duration 10] [--sse-events 200]

1. Throughput: the demo run's snapshot route (``/api/v1/runs/<id>``, ~40 KB of JSON) served
   by ``python -m atroz_monitor serve``, and prometheus_client's ``start_http_server`` serving
   its default registry, each in its own process, both loaded with the same
   ``wrk -t2 -c8 -d10s --latency`` in the same run. Targets: >= 8x the requests/s, p99 < 10 ms.
2. SSE latency: a Monitor in this process writes phases into a served directory; a stream
   client measures, for each phase, the time from the ``ts`` in its ``phase_start`` event to
   the ``update`` that carries it. Target: p99 < 100 ms.

Needs ``wrk`` and ``prometheus_client`` (benchmark-only tools, never runtime dependencies).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from atroz_monitor import Monitor  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(port: int, path: str, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", path)
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"server on port {port} did not come up")


def run_wrk(url: str, duration: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t2", "-c8", f"-d{duration}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    assert m is not None, out
    p99 = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
    m50 = re.search(r"50%\s+([\d.]+)(us|ms|s)\b", out)
    p50 = float(m50.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m50.group(2)] if m50 else 0
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": rps,
        "p50_ms": p50,
        "p99_ms": p99,
        "non2xx": float(errors.group(1)) if errors else 0.0,
    }


def spawn(args: list[str]) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": REPO}
    env.pop("ATROZ_MONITOR_TOKEN", None)
    return subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def throughput(tmp: str, duration: int) -> dict[str, Any]:
    demo = os.path.join(tmp, "demo")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "atroz_monitor",
            "demo",
            "--duration",
            "3",
            "--out",
            demo,
            "--no-serve",
        ],
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": REPO},
    )
    run_id = next(n for n in os.listdir(demo) if n.endswith(".jsonl"))[: -len(".jsonl")]
    port = free_port()
    ours = spawn([sys.executable, "-m", "atroz_monitor", "serve", demo, "--port", str(port)])
    pport = free_port()
    prom = spawn(
        [
            sys.executable,
            "-c",
            "import time, prometheus_client as p; p.start_http_server("
            f"{pport}, addr='127.0.0.1'); time.sleep(3600)",
        ]
    )
    try:
        path = f"/api/v1/runs/{run_id}"
        wait_http(port, path)
        wait_http(pport, "/metrics")
        c = http.client.HTTPConnection("127.0.0.1", port)
        c.request("GET", path)
        size = len(c.getresponse().read())
        c = http.client.HTTPConnection("127.0.0.1", pport)
        c.request("GET", "/metrics")
        psize = len(c.getresponse().read())
        a = run_wrk(f"http://127.0.0.1:{port}{path}", duration)
        b = run_wrk(f"http://127.0.0.1:{pport}/metrics", duration)
    finally:
        for p in (ours, prom):
            p.terminate()
            p.wait(10)
    return {
        "ours": a,
        "prometheus_client": b,
        "ratio": a["rps"] / b["rps"],
        "bytes": size,
        "prom_bytes": psize,
    }


def sse_latency(tmp: str, events: int) -> dict[str, Any]:
    d = os.path.join(tmp, "live")
    mon = Monitor(d, plan=[f"E{i}" for i in range(events)], sample_interval=None, capture=False)
    mon.start()
    port = free_port()
    server = spawn([sys.executable, "-m", "atroz_monitor", "serve", d, "--port", str(port)])
    lat: list[float] = []
    seen: set[str] = set()
    ready = threading.Event()
    done = threading.Event()

    def client() -> None:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        c.request("GET", f"/api/v1/stream?run={mon.run_id}")
        r = c.getresponse()
        data = None
        while not done.is_set():
            line = r.fp.readline()
            if not line:
                return
            if line.startswith(b"event: "):
                data = None
                ready.set()
            elif line.startswith(b"data: "):
                data = line[6:]
            elif line == b"\n" and data is not None:
                now = time.time()
                msg = json.loads(data)
                for p in msg.get("phases", []):
                    if p["span"] not in seen and p.get("start"):
                        seen.add(p["span"])
                        lat.append((now - p["start"]) * 1000.0)
                data = None

    try:
        wait_http(port, f"/api/v1/runs/{mon.run_id}")
        t = threading.Thread(target=client, daemon=True)
        t.start()
        if not ready.wait(10):
            raise SystemExit("no SSE snapshot")
        rnd = random.Random(7)
        for i in range(events):
            mon.start_phase(f"E{i}")
            mon.complete_phase(f"E{i}")
            time.sleep(rnd.uniform(0.1, 0.15))  # below the 10 pushes/s coalescing cap
        end = time.monotonic() + 5
        while len(lat) < events and time.monotonic() < end:
            time.sleep(0.05)
    finally:
        done.set()
        mon.close()
        server.terminate()
        server.wait(10)
    lat.sort()

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(q / 100 * len(lat)))] if lat else float("nan")

    return {
        "events": events,
        "received": len(lat),
        "p50_ms": pct(50),
        "p99_ms": pct(99),
        "max_ms": lat[-1] if lat else float("nan"),
    }


def run(quick: bool = False) -> list[Any]:
    """Figures for ``python -m benchmarks`` (the same measurements as ``main``)."""
    from benchmarks.common import Figure

    if shutil.which("wrk") is None:
        print("  (wrk is not installed: apt-get install wrk)")
        return []
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        print("  (prometheus_client not installed: pip install -e '.[bench]')")
        return []
    tmp = tempfile.mkdtemp(prefix="atroz-bench-")
    try:
        tp = throughput(tmp, 3 if quick else 10)
        sse = sse_latency(tmp, 40 if quick else 200)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    o, p = tp["ours"], tp["prometheus_client"]
    return [
        Figure("snapshot route req/s, 8 keep-alive connections", o["rps"], "req/s",
               "prometheus_client start_http_server", p["rps"], ">= 8x"),
        Figure("  snapshot route p99", o["p99_ms"], "ms", "prometheus_client p99",
               p["p99_ms"], "< 10 ms"),
        Figure("SSE event written -> client, p99", sse["p99_ms"], "ms", target="< 100 ms"),
    ]  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--sse-events", type=int, default=200)
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed", file=sys.stderr)
        return 2
    tmp = tempfile.mkdtemp(prefix="atroz-bench-")
    try:
        tp = throughput(tmp, args.duration)
        sse = sse_latency(tmp, args.sse_events)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    o, p = tp["ours"], tp["prometheus_client"]
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    print(f"snapshot route ({tp['bytes']} B), wrk -t2 -c8 -d{args.duration}s --latency:")
    print(
        f"  atroz_monitor serve   {o['rps']:10.0f} req/s  p50 {o['p50_ms']:.2f} ms  "
        f"p99 {o['p99_ms']:.2f} ms  non-2xx {o['non2xx']:.0f}"
    )
    print(
        f"  prometheus_client     {p['rps']:10.0f} req/s  p50 {p['p50_ms']:.2f} ms  "
        f"p99 {p['p99_ms']:.2f} ms  ({tp['prom_bytes']} B /metrics)"
    )
    print(f"  ratio {tp['ratio']:.1f}x (target >= 8x), p99 {o['p99_ms']:.2f} ms (target < 10)")
    print(
        f"SSE: {sse['received']}/{sse['events']} events, write -> client latency "
        f"p50 {sse['p50_ms']:.1f} ms  p99 {sse['p99_ms']:.1f} ms  max {sse['max_ms']:.1f} ms "
        f"(target p99 < 100)"
    )
    ok = tp["ratio"] >= 8 and o["p99_ms"] < 10 and sse["p99_ms"] < 100
    print("targets:", "met" if ok else "MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
