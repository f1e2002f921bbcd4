"""The dashboard page in headless Firefox (firefox-esr over Marionette, tests/firefox.py): the
static report from ``report --format html`` and the live page over the HTTP server."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import require_tool
from firefox import Firefox

from atroz_monitor import Monitor

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
PHASES = [f"P0{i}" for i in range(10)]
EVIL_PHASE = "<img src=x onerror=window.__pwned=1>"

FLOW = """return [...document.querySelectorAll('#flow li')].map((li) => [li.dataset.phase,
  li.dataset.status, li.querySelector('.flow-status').textContent,
  li.querySelector('.flow-name').textContent]);"""
ROWS = """return [...document.querySelectorAll('#phase-body tr')].map((tr) => [tr.dataset.phase,
  tr.querySelector('.c-status').textContent]);"""
# The viewport, the width the page lays out in (the viewport less a classic scrollbar, which
# Firefox on Linux has and a phone has not), and what the document and the body take.
WIDTHS = """const root = document.documentElement;
  return [window.innerWidth, root.clientWidth, root.scrollWidth, document.body.scrollWidth];"""
# Transitions (the progress bar's width) over, so a screenshot shows the settled page.
SETTLED = "return document.getAnimations().every((a) => a.playState !== 'running');"
RESOURCES = "return performance.getEntriesByType('resource').map((e) => e.name);"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A one-second demo run and its ``report --format html`` file."""
    out = tmp_path_factory.mktemp("ff-demo")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATROZ_MONITOR_")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    kw: dict[str, Any] = {"env": env, "cwd": str(out), "capture_output": True, "timeout": 60}
    runs = out / "runs"
    cmd = [sys.executable, "-m", "atroz_monitor"]
    done = subprocess.run([*cmd, "demo", "--duration", "1", "--no-serve", "--out", str(runs)], **kw)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    report = out / "r.html"
    done = subprocess.run([*cmd, "report", str(runs), "--format", "html", "-o", str(report)], **kw)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    (log,) = runs.glob("*.jsonl")
    return {"runs": runs, "id": log.stem, "report": report}


@pytest.fixture(scope="module")
def ff(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Firefox]:
    """One headless firefox-esr for the module (fresh profile, killed at the end)."""
    binary = require_tool("firefox-esr")
    browser = Firefox(binary, tmp_path_factory.mktemp("ff") / "profile")
    try:
        yield browser
    finally:
        browser.quit()


def open_page(ff: Firefox, url: str, width: int = 1440) -> float:
    """Load ``url`` at ``width`` CSS px, wait for the pipeline to render; the browser time
    just before loading it (for ``console_errors``)."""
    ff.set_viewport(width, 1000)
    ff.navigate("about:blank")
    since = ff.now_ms()
    ff.navigate(url)
    ff.wait_for("return document.querySelectorAll('#flow li').length > 0")
    return since


def test_static_report_renders_all_phases_without_errors(ff: Firefox, demo: dict[str, Any]) -> None:
    """The ``report --format html`` file shows P00..P09 completed in the flow and the table,
    logs no error (uncaught exception, CSP violation) while loading, sorting, toggling and
    opening a detail, and loads nothing but itself."""
    since = open_page(ff, demo["report"].as_uri())
    flow = ff.execute(FLOW)
    assert [f[0] for f in flow] == PHASES
    assert {(f[1], f[2]) for f in flow} == {("completed", "completed")}
    rows = ff.execute(ROWS)
    top = [r for r in rows if r[0] in PHASES]
    assert [r[0] for r in top] == PHASES
    assert all("completed" in r[1] for r in top), top
    assert ff.execute("return document.querySelector('#run-status .text').textContent") == (
        "completed"
    )
    # The charts and the Gantt drew something.
    assert ff.execute("return document.querySelectorAll('#gantt rect').length") >= len(PHASES)
    assert ff.execute("return document.querySelectorAll('#cpu-chart path').length") > 0
    ff.execute("document.querySelector('th[data-col=duration_ms] button').click()")
    ff.execute("document.getElementById('table-subs').click()")
    ff.execute("document.getElementById('gantt-subs').click()")
    ff.execute("document.querySelector('#flow li[data-phase=P03] button').click()")
    ff.wait_for("return document.getElementById('detail-title').textContent.startsWith('P03')")
    assert not ff.execute("return document.getElementById('detail').hidden")
    assert ff.console_errors(since) == []
    assert all(u.startswith(("file:", "data:", "blob:")) for u in ff.execute(RESOURCES))


def test_static_report_fits_390px_wide(ff: Firefox, demo: dict[str, Any]) -> None:
    """At 390 CSS px the page does not overflow sideways (not even into the width a classic
    scrollbar takes); screenshot kept (test-artifacts/page-firefox-390.png)."""
    since = open_page(ff, demo["report"].as_uri(), width=390)
    view, inner, doc, body = ff.execute(WIDTHS)
    assert view == 390 and 360 <= inner <= 390
    assert doc <= inner and body <= inner, (view, inner, doc, body)
    ff.wait_for(SETTLED, 5)
    ff.screenshot(ARTIFACTS / "page-firefox-390.png")
    assert (ARTIFACTS / "page-firefox-390.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert ff.console_errors(since) == []


@pytest.fixture(scope="module")
def live(
    demo: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """The HTTP server (its ``url``) over the demo run and a run with a hostile phase name
    (``evil``, its id)."""
    from atroz_monitor.store import source
    from atroz_monitor.surface import server

    evil_dir = tmp_path_factory.mktemp("ff-evil")
    mon = Monitor(evil_dir, plan=[("P00", EVIL_PHASE)], name="hostile", sample_interval=None)
    with mon, mon.phase("P00", name=EVIL_PHASE):
        pass
    src = source.FileSource([demo["runs"], evil_dir])
    srv = server.start_server(src, "127.0.0.1", 0)
    try:
        yield {"url": srv.url, "evil": mon.run_id}
    finally:
        srv.close()
        src.close()


def test_live_page_connects_and_shows_all_phases(
    ff: Firefox, live: dict[str, str], demo: dict[str, Any]
) -> None:
    """Over the server the page connects (``live``), shows P00..P09 completed, asks only
    the server on 127.0.0.1 and logs no error; screenshot kept (test-artifacts/page-firefox.png)."""
    assert live["url"].startswith("http://127.0.0.1:")
    since = open_page(ff, f"{live['url']}?run={demo['id']}")
    ff.wait_for("return document.getElementById('conn').dataset.state === 'live'")
    flow = ff.execute(FLOW)
    assert [f[0] for f in flow] == PHASES
    assert {f[1] for f in flow} == {"completed"}
    assert ff.execute("return document.querySelector('#conn .text').textContent") == "live"
    rows = [r[0] for r in ff.execute(ROWS)]
    assert [r for r in rows if r in PHASES] == PHASES
    options = ff.execute(
        "return [...document.querySelectorAll('#run-picker option')].map((o) => o.value)"
    )
    assert set(options) == {"latest", demo["id"], live["evil"]}
    ff.wait_for("return performance.getEntriesByType('resource').length >= 3")
    urls = ff.execute(RESOURCES)
    assert urls and all(u.startswith(live["url"]) for u in urls), urls
    ff.wait_for(SETTLED, 5)
    ff.screenshot(ARTIFACTS / "page-firefox.png")
    assert (ARTIFACTS / "page-firefox.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert ff.console_errors(since) == []


def test_live_hostile_phase_name_is_text(ff: Firefox, live: dict[str, str]) -> None:
    """A phase named ``<img src=x onerror=window.__pwned=1>`` shows verbatim in the flow and
    the table; no image is created and nothing runs."""
    since = open_page(ff, f"{live['url']}?run={live['evil']}")
    ff.wait_for("return document.getElementById('conn').dataset.state === 'live'")
    flow = ff.execute(FLOW)
    assert [(f[0], f[3]) for f in flow] == [("P00", EVIL_PHASE)]
    names = ff.execute(
        "return [...document.querySelectorAll('#phase-body tr .c-name')].map((c) => c.textContent)"
    )
    assert any(EVIL_PHASE in n for n in names), names
    assert ff.execute("return document.querySelectorAll('img').length") == 0
    assert ff.execute("return typeof window.__pwned") == "undefined"
    assert ff.console_errors(since) == []
