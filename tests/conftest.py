"""Suite-wide fixtures. Tools that tests need from outside (Chromium, promtool, wrk) are
skipped with the reason when missing, unless ATROZ_REQUIRE_TOOLS=1 (CI) makes that a failure."""

from __future__ import annotations

import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))


def require_tool(name: str) -> str:
    """The path of an outside tool, or skip (fail under ATROZ_REQUIRE_TOOLS=1)."""
    path = shutil.which(name)
    if path is None:
        msg = f"{name} is not installed"
        if os.environ.get("ATROZ_REQUIRE_TOOLS") == "1":
            pytest.fail(msg + " (ATROZ_REQUIRE_TOOLS=1)")
        pytest.skip(msg)
    return path


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test inherits a run from the environment of the one that runs pytest."""
    monkeypatch.delenv("ATROZ_MONITOR_LOG", raising=False)
    monkeypatch.delenv("ATROZ_MONITOR_RUN", raising=False)
