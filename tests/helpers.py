"""Shared test helpers: reading a run log back as plain events."""

from __future__ import annotations

import json
import os
import select
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def read_log(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every line of a log parsed strictly: a line that does not parse fails the test."""
    out = []
    with open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            assert line.endswith(b"\n"), f"line {n} is not newline-terminated"
            out.append(json.loads(line))
    return out


def of_kind(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["ev"] == kind]


def phase_starts(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every phase's start as the log gives it: its phase_start line, or, for a phase
    written whole in one line (a phase_end carrying the start's ``thread``), that line with
    ``ts`` moved back to its start (ts - duration_ms)."""
    out = []
    for e in events:
        if e["ev"] == "phase_start":
            out.append(e)
        elif e["ev"] == "phase_end" and "thread" in e:
            out.append({**e, "ts": e["ts"] - e["duration_ms"] / 1000})
    return out


def phase_ends(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """phase_end events keyed by phase key (last one wins)."""
    return {e["phase"]: e for e in events if e["ev"] == "phase_end"}


def child_env() -> dict[str, str]:
    """A child process's environment: this checkout importable, no inherited run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATROZ_MONITOR_")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def poll(pred: Any, timeout: float, what: str, step: float = 0.005) -> Any:
    """A bounded poll: ``pred()``'s first truthy value, or AssertionError after ``timeout``."""
    end = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        assert time.monotonic() < end, f"timed out after {timeout}s waiting for {what}"
        time.sleep(step)


def ready(fd: Any, timeout: float) -> tuple[list[Any], list[Any], list[Any]]:
    """``select.select([fd], [], [], timeout)`` through poll(2): select() cannot watch a
    descriptor numbered 1024 or above, which a long test session can reach."""
    p = select.poll()
    p.register(fd, select.POLLIN)
    return ([fd] if p.poll(timeout * 1000) else [], [], [])
