"""serve --prune-every: retention on a schedule over the served directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from atroz_monitor import Monitor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_serve_prunes_old_runs_on_a_schedule_and_keeps_the_newest(tmp_path):
    """With --prune-every and --keep-runs 1, the served directory is pruned to the newest
    run while the server runs; it exits 0 on SIGTERM."""
    d = tmp_path / "runs"
    for i in range(3):
        with Monitor(d, sample_interval=None, alert_rules=[], run_id=f"r{i}"):
            pass
        os.utime(d / f"r{i}.jsonl", (1e9 + i, 1e9 + i))
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "atroz_monitor",
            "serve",
            str(d),
            "--port",
            "0",
            "--prune-every",
            "0.2",
            "--keep-runs",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=ROOT),
    )
    try:
        assert "serving 3 runs" in p.stdout.readline()
        deadline = time.monotonic() + 20
        while sorted(n for n in os.listdir(d) if n.endswith(".jsonl")) != ["r2.jsonl"]:
            assert time.monotonic() < deadline, os.listdir(d)
            time.sleep(0.05)
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == 0
