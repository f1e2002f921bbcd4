"""Headless Chromium through Debian's chromedriver, for the page tests.

Missing chromium, chromedriver or selenium skips the browser tests with the reason, unless
``ATROZ_REQUIRE_TOOLS=1`` (CI) makes that a failure. Selenium is a test-only dependency:
nothing under ``atroz_monitor/`` imports it.

Always drive the browser through chromedriver: ``chromium --headless --dump-dom`` never
returns while the page holds an EventSource open.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import pytest

CHROME_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
)


def unavailable(reason: str) -> NoReturn:
    """Skip, or fail when the CI asked for every tool to be present."""
    if os.environ.get("ATROZ_REQUIRE_TOOLS") == "1":
        pytest.fail(f"{reason} (ATROZ_REQUIRE_TOOLS=1)")
    pytest.skip(reason)


def _tool(name: str) -> str:
    path = shutil.which(name) or (
        f"/usr/bin/{name}" if os.access(f"/usr/bin/{name}", os.X_OK) else None
    )
    if path is None:
        unavailable(f"{name} is not installed")
    return path


def chrome(profile_dir: Path) -> Any:
    """A headless Chromium driven by chromedriver, logging the console and the network."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        unavailable("selenium is not installed")
    binary = _tool("chromium")
    driver_path = _tool("chromedriver")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile_dir}")
    options.add_argument("--window-size=1440,1000")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    try:
        return webdriver.Chrome(service=Service(driver_path), options=options)
    except Exception as exc:  # a broken install is a missing tool, with the reason
        unavailable(f"chromium could not be started: {type(exc).__name__}: {exc}")


def set_viewport(driver: Any, width: int, height: int = 900) -> None:
    """Emulate a viewport of exactly ``width`` CSS pixels (a phone below 500)."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 500},
    )


def reset_viewport(driver: Any) -> None:
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def console_errors(driver: Any) -> list[str]:
    """SEVERE console entries since the last call (the log is drained by reading it)."""
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def requested_urls(driver: Any) -> list[str]:
    """Every URL the page asked the network for since the last call (CDP network log)."""
    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    return urls


def wait_for(driver: Any, script: str, timeout: float = 10.0, *args: Any) -> Any:
    """Poll a JavaScript expression (``return ...``) until it is truthy; its value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = driver.execute_script(script, *args)
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for: {script} (last: {last!r})")


def wait_until(pred: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def full_page_screenshot(driver: Any, path: Path, width: int = 1440) -> None:
    """The whole page, not just the viewport, as a PNG at ``path``."""
    set_viewport(driver, width)
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
        },
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))
