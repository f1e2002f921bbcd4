"""Shared test helpers: reading a run log back as plain events."""

from __future__ import annotations

import json
import os
from typing import Any


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


def phase_ends(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """phase_end events keyed by phase key (last one wins)."""
    return {e["phase"]: e for e in events if e["ev"] == "phase_end"}
