"""The command line as a user meets it: the demo, and bad input."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args, cwd, timeout=120):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run(
        [sys.executable, "-m", "atroz_monitor", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def _events(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_demo_runs_ten_phases_with_workers_and_summary(tmp_path):
    """`demo` writes atroz-runs/<run>.jsonl with P00-P09 completed, sub-phases, worker
    processes joined, samples, artifacts, metrics and a warning; prints the summary."""
    r = _run(["demo", "--duration", "2", "--no-serve"], tmp_path)
    assert r.returncode == 0, r.stderr
    logs = os.listdir(tmp_path / "atroz-runs")
    files = [f for f in logs if f.endswith(".jsonl")]
    assert len(files) == 1
    evs = _events(tmp_path / "atroz-runs" / files[0])
    ends = [e for e in evs if e["ev"] == "phase_end"]
    top = [e["phase"] for e in ends if e["parent"] is None]
    assert top == [f"P0{i}" for i in range(10)]
    assert all(e["status"] == "completed" for e in ends)
    assert len([e for e in ends if e["parent"] is not None]) >= 20
    workers = [e for e in ends if e["phase"] == "P03.worker"]
    assert len(workers) == 4 and len({e["pid"] for e in workers}) >= 1
    assert all(e["pid"] != evs[0]["pid"] for e in workers)
    assert len([e for e in evs if e["ev"] == "sample"]) >= 5
    assert [e for e in evs if e["ev"] == "artifact"]
    assert [e for e in evs if e["ev"] == "metric"]
    assert [e for e in evs if e["ev"] == "log" and e["level"] == "warning"]
    assert evs[-1]["ev"] == "run_end" and evs[-1]["status"] == "completed"
    for key in ("P00", "Document Assembly", "P09", "Archival"):
        assert key in r.stdout
    # On a loaded machine the sampler may miss a tick, which the summary must then say;
    # nothing else may be wrong with the data.
    quality = re.search(r"^data quality: (.*)$", r.stdout, re.M)
    assert quality is not None
    assert re.fullmatch(r"ok|\d+ sample ticks? missed", quality.group(1)), quality.group(1)


def test_demo_fail_makes_that_phase_fail(tmp_path):
    """`demo --fail P07` ends P07 failed, the run failed, later phases never started;
    exit code 1."""
    r = _run(["demo", "--duration", "1", "--fail", "P07", "--no-serve"], tmp_path)
    assert r.returncode == 1
    f = next(p for p in os.listdir(tmp_path / "atroz-runs") if p.endswith(".jsonl"))
    evs = _events(tmp_path / "atroz-runs" / f)
    ends = {e["phase"]: e for e in evs if e["ev"] == "phase_end"}
    assert ends["P07"]["status"] == "failed" and ends["P07.rules"]["status"] == "failed"
    assert "P08" not in ends and "P09" not in ends
    assert evs[-1]["status"] == "failed"
    assert "R-17" in ends["P07"]["error"]["msg"]


@pytest.mark.parametrize(
    "args, needle",
    [
        (["demo", "--duration", "-1"], "--duration"),
        (["demo", "--duration", "abc"], "--duration"),
        (["demo", "--fail", "P99"], "unknown phase"),
        (["nonsense"], "invalid choice"),
        ([], "usage"),
    ],
)
def test_bad_arguments_exit_2_with_one_clear_message(tmp_path, args, needle):
    """Bad arguments: exit 2, a clear message on stderr, no traceback."""
    r = _run(args, tmp_path)
    assert r.returncode == 2
    assert needle in r.stderr
    assert "Traceback" not in r.stderr
