"""The page's alert acknowledgement (state, who, the command to copy), error groups panel
and counters, in headless Chromium over the real server and in the static report."""

from __future__ import annotations

import os
import pwd
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import chrome, console_errors, set_viewport, wait_for
from helpers import child_env

from atroz_monitor import Monitor
from atroz_monitor.view.alerts import rule

ME = pwd.getpwuid(os.getuid()).pw_name
EVIL = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _make_run(tmp_path_factory.mktemp("runs"))


def _make_run(d: Path) -> Path:
    """One finished run: 40 similar errors and 2 warnings in P00 (an alert with markup in
    its phase name), counters, a failed P01."""
    mon = Monitor(
        d,
        plan=[("P00", EVIL), ("P01", "Load")],
        sample_interval=None,
        run_id="pagerun",
        alert_rules=[rule("phase_errors", warning=0)],
    )
    with mon:
        with mon.phase("P00", name=EVIL) as p:
            for i in range(40):
                p.error(f"failed to parse doc {i}")
                p.count("signals")
            p.count("signals", 2)
            p.warning("slow doc 'a.pdf'")
            p.warning("slow doc 'b.pdf'")
        try:
            with mon.phase("P01"):
                raise KeyError("doc-17")
        except KeyError:
            pass
    return d


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    d = chrome(tmp_path_factory.mktemp("chrome-profile"))
    d.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument",
        {"source": "window.__alerts = []; window.alert = (m) => window.__alerts.push(m);"},
    )
    try:
        yield d
    finally:
        d.quit()


@pytest.fixture
def server(run_dir: Path) -> Iterator[Any]:
    from atroz_monitor.store.source import FileSource
    from atroz_monitor.surface import server as server_mod

    src = FileSource([run_dir])
    srv = server_mod.start_server(src, "127.0.0.1", 0)
    try:
        yield srv
    finally:
        srv.close()
        src.close()


def _open(d: Any, url: str) -> None:
    set_viewport(d, 1440, 1000)
    d.get("about:blank")
    console_errors(d)
    d.get(url)
    wait_for(d, "return document.querySelectorAll('#alerts li[data-alert]').length > 0")


def _alert(d: Any) -> dict[str, Any]:
    return d.execute_script(
        """const li = document.querySelector('#alerts li[data-alert]');
        const code = li.querySelector('code.ack-cmd');
        return {state: li.dataset.state, text: li.textContent,
                cmd: code ? code.textContent : null,
                copy: !!li.querySelector('button.copy'),
                open: document.getElementById('alerts-count').textContent};"""
    )


def test_alert_shows_the_ack_command_then_who_acknowledged_then_cleared(driver, server, run_dir):
    """The raised alert shows the exact `ack` command (running it as shown works); the page
    then shows who acknowledged it, live; after `ack --clear` it is cleared and off the
    open count."""
    _open(driver, f"{server.url}?run=pagerun")
    wait_for(driver, "return document.getElementById('conn').dataset.state === 'live'")
    a = _alert(driver)
    log = str(run_dir / "pagerun.jsonl")
    assert a["state"] == "raised" and a["open"] == "1" and a["copy"]
    assert a["cmd"] == f"python -m atroz_monitor ack {log} phase_errors:phase:P00:1"
    words = shlex.split(a["cmd"])
    r = subprocess.run(
        [sys.executable, *words[1:], "--note", "on it"],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    wait_for(
        driver,
        "return document.querySelector('#alerts li[data-alert]').dataset.state === 'acknowledged'",
    )
    a = _alert(driver)
    assert f"acknowledged by {ME}" in a["text"] and "“on it”" in a["text"]
    assert a["cmd"] is None and a["open"] == "1"
    r = subprocess.run(
        [sys.executable, "-m", "atroz_monitor", "ack", log, "--clear"],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    wait_for(driver, "return document.getElementById('alerts-count').textContent === '0'")
    a = _alert(driver)
    assert a["state"] == "cleared" and f"cleared by {ME}" in a["text"]
    assert driver.execute_script("return window.__alerts.length") == 0
    assert console_errors(driver) == []


def test_error_groups_panel_and_counters(driver, server):
    """The error groups panel folds 40 similar errors into one group (with its phase as
    text, never markup) and the run panel shows the counter's sum."""
    _open(driver, f"{server.url}?run=pagerun")
    groups = driver.execute_script(
        """return [...document.querySelectorAll('#groups li[data-fingerprint]')].map((li) =>
          ({msg: li.querySelector('.msg').textContent,
            meta: li.querySelector('.meta').textContent}));"""
    )
    by = {g["msg"]: g["meta"] for g in groups}
    assert set(by) == {"failed to parse doc <n>", "slow doc '<q>'", "KeyError: '<q>'"}
    assert by["failed to parse doc <n>"].startswith("40× · phases P00 · first +")
    assert by["slow doc '<q>'"].startswith("2× · phases P00")
    assert by["KeyError: '<q>'"].startswith("1× · at test_page_features.py:_make_run · phases P01")
    assert (
        driver.execute_script("return document.getElementById('groups-count').textContent") == "3"
    )
    counters = driver.execute_script(
        "return document.querySelector('#info [data-row=Counters] dd').textContent"
    )
    assert counters == "signals 42"
    assert driver.execute_script("return document.querySelectorAll('img').length") == 0
    assert console_errors(driver) == []


def test_static_report_shows_groups_and_the_exact_ack_command(driver, tmp_path):
    """`report --format html` embeds the groups and the alert's command with the log path."""
    run_dir = _make_run(tmp_path / "runs")
    out = tmp_path / "report.html"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "atroz_monitor",
            "report",
            str(run_dir),
            "--format",
            "html",
            "-o",
            str(out),
        ],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    _open(driver, out.as_uri())
    a = _alert(driver)
    assert a["state"] == "raised"
    assert a["cmd"] == (
        f"python -m atroz_monitor ack {run_dir / 'pagerun.jsonl'} phase_errors:phase:P00:1"
    )
    assert (
        driver.execute_script("return document.getElementById('groups-count').textContent") == "3"
    )
    assert console_errors(driver) == []
