"""Suite-wide fixtures. Tools that tests need from outside (Chromium, promtool, wrk) are
skipped with the reason when missing, unless ATROZ_REQUIRE_TOOLS=1 (CI) makes that a failure."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from typing import Any

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


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two real demo runs (one completed, one with P07 failing), written concurrently: the
    logs the export formats are tested on (test_chrome_trace, test_otlp_json, test_export)."""
    # Imported here: conftest loads before every test, and tests check what importing loads.
    from helpers import read_log

    from atroz_monitor.read import loader
    from atroz_monitor.view import views

    base = tmp_path_factory.mktemp("demo")
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env.pop("ATROZ_MONITOR_LOG", None)
    env.pop("ATROZ_MONITOR_RUN", None)
    cmd = [sys.executable, "-m", "atroz_monitor", "demo", "--no-serve"]
    ok = subprocess.Popen(
        [*cmd, "--duration", "2", "--out", str(base / "ok")], env=env, stdout=subprocess.DEVNULL
    )
    bad = subprocess.Popen(
        [*cmd, "--duration", "1", "--fail", "P07", "--out", str(base / "bad")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert ok.wait(timeout=60) == 0
    assert bad.wait(timeout=60) == 1
    out: dict[str, Any] = {"base": base}
    for name in ("ok", "bad"):
        path = next((base / name).glob("*.jsonl"))
        st, _, _ = loader.load([str(path)])
        rid = next(iter(st.runs))
        out[name] = {
            "path": path,
            "events": read_log(path),
            "snap": views.snapshot(st, rid, now=time.time(), alive=None),
            "state": st,
        }
    return out
