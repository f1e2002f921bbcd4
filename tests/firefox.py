"""Headless Firefox driven over Marionette, its built-in remote protocol, for the page tests.

Debian ships ``firefox-esr`` but no geckodriver, so this is a minimal test-only client: it
starts Firefox with a fresh profile in a temporary directory, Marionette on a free loopback
port (the ``marionette.port`` pref in the profile's ``user.js``), and speaks the protocol
directly: every message is ``<byte length>:<JSON>``; a command is ``[0, id, name, params]``
and its response ``[1, id, error, result]``; the server greets a new connection with
``{"applicationType": "gecko", "marionetteProtocol": 3}``.

Nothing under ``atroz_monitor/`` imports this module.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

# Quiet, offline, reproducible: no updates, telemetry, first-run pages or background
# network (the tests only ever talk to 127.0.0.1 and file:// pages).
PREFS: dict[str, bool | int | str] = {
    "app.update.enabled": False,
    "app.update.auto": False,
    "app.normandy.enabled": False,
    "app.shield.optoutstudies.enabled": False,
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.page": 0,
    "browser.startup.homepage": "about:blank",
    "browser.startup.homepage_override.mstone": "ignore",
    "browser.aboutwelcome.enabled": False,
    "browser.newtabpage.enabled": False,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "browser.safebrowsing.downloads.enabled": False,
    "browser.safebrowsing.blockedURIs.enabled": False,
    "browser.search.update": False,
    "browser.region.network.url": "",
    "browser.region.update.enabled": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "datareporting.healthreport.uploadEnabled": False,
    "toolkit.telemetry.enabled": False,
    "toolkit.telemetry.unified": False,
    "toolkit.telemetry.reportingpolicy.firstRun": False,
    "toolkit.startup.max_resumed_crashes": -1,
    "extensions.update.enabled": False,
    "extensions.getAddons.cache.enabled": False,
    "extensions.blocklist.enabled": False,
    "media.gmp-manager.updateEnabled": False,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "network.dns.disablePrefetch": True,
    "network.prefetch-next": False,
    "network.proxy.type": 0,
    "services.settings.server": "data:,#remote-settings-dummy/v1",
    "ui.systemUsesDarkTheme": 0,
}

# Errors the page logged, read in the chrome scope from the console service (what the
# Browser Console shows): uncaught exceptions, CSP violations, failed loads.
CONSOLE_ERRORS = """
const since = arguments[0];
return Services.console.getMessageArray()
  .filter((m) => m instanceof Ci.nsIScriptError && !(m.flags & Ci.nsIScriptError.warningFlag)
    && !(m.flags & Ci.nsIScriptError.infoFlag) && m.timeStamp >= since
    && !m.isFromChromeContext
    && (m.innerWindowID > 0 || /^(file|https?|data|blob):/.test(m.sourceName || "")))
  .map((m) => `${m.errorMessage} (${m.sourceName}:${m.lineNumber})`);
"""


class MarionetteError(AssertionError):
    """A command the browser answered with an error."""


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_profile(profile: Path, port: int) -> None:
    """A fresh profile whose ``user.js`` sets the Marionette port and quiet prefs."""
    prefs = {**PREFS, "marionette.port": port}
    lines = [f"user_pref({json.dumps(k)}, {json.dumps(v)});" for k, v in prefs.items()]
    profile.mkdir(parents=True, exist_ok=True)
    (profile / "user.js").write_text("\n".join(lines) + "\n", encoding="utf-8")


class Firefox:
    """One headless Firefox with a Marionette session; ``quit()`` always ends the process."""

    def __init__(
        self, binary: str, profile: Path, width: int = 1440, height: int = 1000, timeout: float = 30
    ) -> None:
        self.profile = profile
        self.port = free_port()
        write_profile(profile, self.port)
        self._log = open(profile / "firefox.log", "wb")  # noqa: SIM115 (closed in quit)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MOZ_")}
        env["MOZ_HEADLESS"] = "1"
        env["MOZ_HEADLESS_WIDTH"], env["MOZ_HEADLESS_HEIGHT"] = str(width), str(height)
        self.proc = subprocess.Popen(
            [
                binary,
                "--marionette",
                "--headless",
                "--remote-allow-system-access",
                "--profile",
                str(profile),
                "-no-remote",
                "--new-instance",
                "about:blank",
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._id = 0
        self._sock: socket.socket | None = None
        self._buf = b""
        try:
            self._connect(timeout)
            self.command(
                "WebDriver:NewSession",
                {
                    "capabilities": {
                        "alwaysMatch": {
                            "pageLoadStrategy": "normal",
                            "timeouts": {"script": 15000, "pageLoad": 20000, "implicit": 0},
                        }
                    }
                },
            )
        except BaseException:
            self.quit()
            raise

    # -------------------------------------------------------------------- wire
    def _connect(self, timeout: float) -> None:
        """Retry until Marionette listens (bounded), then read its greeting."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"firefox exited with {self.proc.returncode}: {self.log()}")
            try:
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=1)
            except OSError as exc:
                last = exc
                time.sleep(0.1)
                continue
            sock.settimeout(60)
            self._sock = sock
            hello = self._read()
            if hello.get("marionetteProtocol") != 3:
                raise RuntimeError(f"unexpected Marionette greeting: {hello!r}")
            return
        raise RuntimeError(f"Marionette not listening on {self.port} after {timeout}s: {last}")

    def _read(self) -> Any:
        assert self._sock is not None
        while b":" not in self._buf:
            self._recv()
        head, _, rest = self._buf.partition(b":")
        size = int(head)
        self._buf = rest
        while len(self._buf) < size:
            self._recv()
        body, self._buf = self._buf[:size], self._buf[size:]
        return json.loads(body)

    def _recv(self) -> None:
        assert self._sock is not None
        chunk = self._sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("Marionette closed the connection")
        self._buf += chunk

    def command(self, name: str, params: dict[str, Any] | None = None) -> Any:
        """Send one command and return its result (raise MarionetteError on an error)."""
        if self._sock is None:
            raise ConnectionError("not connected")
        self._id += 1
        data = json.dumps([0, self._id, name, params or {}]).encode()
        self._sock.sendall(str(len(data)).encode() + b":" + data)
        while True:
            msg = self._read()
            if msg[0] == 1 and msg[1] == self._id:
                break
        if msg[2]:
            err = msg[2]
            raise MarionetteError(f"{name}: {err.get('error')}: {err.get('message')}")
        return msg[3]

    # -------------------------------------------------------------------- commands
    def navigate(self, url: str) -> None:
        self.command("WebDriver:Navigate", {"url": url})

    def execute(self, script: str, *args: Any) -> Any:
        """Run ``script`` (a function body: ``return ...``) in the page; its value."""
        res = self.command("WebDriver:ExecuteScript", {"script": script, "args": list(args)})
        return res.get("value") if isinstance(res, dict) else res

    def chrome(self, script: str, *args: Any) -> Any:
        """Run ``script`` in the browser's privileged scope (``Services`` etc.)."""
        self.command("Marionette:SetContext", {"value": "chrome"})
        try:
            return self.execute(script, *args)
        finally:
            self.command("Marionette:SetContext", {"value": "content"})

    def now_ms(self) -> float:
        """The browser's clock, to read only the console errors logged after this moment."""
        return float(self.chrome("return Date.now();"))

    def console_errors(self, since_ms: float = 0) -> list[str]:
        """Errors pages logged (uncaught exceptions, CSP violations) since ``since_ms``."""
        return list(self.chrome(CONSOLE_ERRORS, since_ms))

    def set_viewport(self, width: int, height: int) -> None:
        """A viewport of exactly ``width`` x ``height`` CSS px. Firefox windows are never
        narrower than 500 px, so a narrower viewport narrows the tab's ``<browser>`` element
        instead (as the responsive design mode does)."""
        self.command("WebDriver:SetWindowRect", {"width": max(width, 500), "height": height})
        chrome_h = self.execute("return window.outerHeight - window.innerHeight;")
        self.command(
            "WebDriver:SetWindowRect", {"width": max(width, 500), "height": height + chrome_h}
        )
        self.chrome(
            "const b = gBrowser.selectedBrowser.style, w = arguments[0];"
            "b.minWidth = b.maxWidth = w < 500 ? `${w}px` : '';",
            width,
        )

    def find(self, css: str) -> list[Any]:
        return list(self.command("WebDriver:FindElements", {"using": "css selector", "value": css}))

    def screenshot(self, path: Path, full: bool = True) -> None:
        """The page as a PNG at ``path`` (``full``: the whole document, not the viewport)."""
        res = self.command("WebDriver:TakeScreenshot", {"full": full, "hash": False})
        data = res["value"] if isinstance(res, dict) else res
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))

    def wait_for(self, script: str, timeout: float = 10.0, *args: Any) -> Any:
        """Poll a JavaScript expression (``return ...``) until it is truthy; its value."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = self.execute(script, *args)
            if last:
                return last
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout}s waiting for: {script} (last: {last!r})")

    def log(self) -> str:
        """The browser's own output so far (the tail), for error messages."""
        with contextlib.suppress(OSError):
            return (self.profile / "firefox.log").read_text(errors="replace")[-2000:]
        return ""

    # -------------------------------------------------------------------- teardown
    def quit(self) -> None:
        """Ask Firefox to quit, then make sure the process is gone."""
        if self._sock is not None:
            with contextlib.suppress(Exception):
                self._sock.settimeout(5)
                self.command("Marionette:Quit", {"flags": ["eForceQuit"]})
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._log.close()

    def __enter__(self) -> Firefox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.quit()
