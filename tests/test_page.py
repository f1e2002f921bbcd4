"""The dashboard page: static mode (``page.render_static``) and live mode (over the HTTP
server) in headless Chromium, plus the static file's structure without a browser."""

from __future__ import annotations

import html.parser
import json
import math
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import (
    chrome,
    console_errors,
    full_page_screenshot,
    requested_urls,
    reset_viewport,
    set_viewport,
    wait_for,
    wait_until,
)

from atroz_monitor import Monitor
from atroz_monitor.commands import cli
from atroz_monitor.read.loader import load_state
from atroz_monitor.surface import page
from atroz_monitor.view import report_model, views
from atroz_monitor.view.alerts import with_alerts

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
EVIL_PHASE = "<img src=x onerror=alert(1)>"
EVIL_SCRIPT = "<script>alert(1)</script>"
EVIL_RUN = "</script><script>alert(2)</script>"
EVIL_NAME = "ok </script><!-- x"
# Counts the alert() calls a page makes (installed before any page script runs).
ALERT_TRAP = "window.__alerts = []; window.alert = (m) => { window.__alerts.push(String(m)); };"


# ---------------------------------------------------------------------------- formatting
# The page's own formatting (app.js fmtMs, fmtInt), so text is compared with the snapshot.
def js_round(x: float) -> int:
    return math.floor(x + 0.5)


def fmt_ms(ms: float | None) -> str:
    if ms is None:
        return "–"
    if 0 < ms < 0.001:
        return f"{ms * 1000:.2f} µs"
    if 0 < ms < 0.1:
        return f"{ms:.3f} ms"
    if ms < 1:
        return f"{ms:.2f} ms"
    if ms < 1000:
        return f"{js_round(ms)} ms"
    s = ms / 1000
    if s < 60:
        return f"{s:.2f} s" if s < 10 else f"{s:.1f} s"
    m = int(s // 60)
    return f"{m}m {int(s % 60):02d}s"


def fmt_int(n: int | None) -> str:
    return "–" if n is None else f"{js_round(n):,}"


# ---------------------------------------------------------------------------- data
def _demo_args() -> list[str]:
    """``--no-serve`` where the demo serves its dashboard by default."""
    try:
        cli.build_parser().parse_args(["demo", "--no-serve"])
    except SystemExit:
        return []
    return ["--no-serve"]


@pytest.fixture(scope="session")
def demo_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two real demo runs in one directory: ``--fail P07`` first, then a completed one
    (which therefore has the failed run as its history)."""
    out = tmp_path_factory.mktemp("demo") / "runs"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATROZ_MONITOR_")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    base = [sys.executable, "-m", "atroz_monitor", "demo", "--duration", "3", "--out", str(out)]
    base += _demo_args()
    kw: dict[str, Any] = {
        "env": env,
        "cwd": str(out.parent),
        "stdout": subprocess.DEVNULL,
        "stderr": subprocess.PIPE,
    }
    failing = subprocess.Popen([*base, "--fail", "P07"], **kw)
    try:
        wait_until(lambda: any(out.glob("*.jsonl")), 30, "the first demo's log")
        ok = subprocess.Popen(base, **kw)
        _, ok_err = ok.communicate(timeout=90)
        _, fail_err = failing.communicate(timeout=90)
    finally:
        failing.kill()
    assert ok.returncode == 0, ok_err.decode(errors="replace")
    assert failing.returncode == 1, fail_err.decode(errors="replace")
    st, _ = load_state([out])
    by_status = {r.status: rid for rid, r in st.runs.items()}
    return {"dir": out, "ok": by_status["completed"], "fail": by_status["failed"]}


def run_row(snap: dict[str, Any]) -> dict[str, Any]:
    r = snap["run"]
    return {
        "id": r["id"],
        "name": r["name"],
        "status": r["status"],
        "start": r["start"],
        "end": r["end"],
        "duration_ms": r["duration_ms"],
        "progress": snap["progress"],
        "host": r["host"],
        "alerts_open": 0,
        "tags": r["tags"],
    }


def static_data(paths: list[Path], run_id: str) -> dict[str, Any]:
    """The document ``report --format html`` embeds, built from logs on disk."""
    st, stats = load_state(paths)
    now = time.time()
    snap = views.snapshot(st, run_id, now=now, quality=stats.to_dict())
    keys = sorted({p["phase"] for p in snap["phases"]})
    rows = [run_row(views.snapshot(st, rid, now=now)) for rid in st.runs]
    return {
        "snapshot": snap,
        "runs": rows,
        "run_counts": report_model.run_counts(rows),
        **report_model.static_history(st, run_id, keys),
        "generated": now,
    }


def hostile_run(directory: Path) -> str:
    """A run whose names, metric, messages and paths are markup."""
    mon = Monitor(
        directory,
        plan=[("P00", EVIL_PHASE), ("P01", EVIL_NAME)],
        name=EVIL_RUN,
        sample_interval=None,
        meta={"note": EVIL_SCRIPT},
    )
    with mon:
        with mon.phase("P00", name=EVIL_PHASE) as p:
            p.metric(EVIL_SCRIPT, 1)
            p.warning(EVIL_SCRIPT)
            p.artifact("/tmp/" + EVIL_PHASE)
            with mon.phase(EVIL_PHASE + ".sub", name=EVIL_SCRIPT):
                pass
        with mon.phase("P01", name=EVIL_NAME) as p:
            p.error(EVIL_SCRIPT)
    return mon.run_id


def with_trend(data: dict[str, Any]) -> dict[str, Any]:
    """The completed demo with four earlier P00 runs getting slower and P00 flagged."""
    p00 = data["snapshot"]["flow"][0]
    past = [100.0, 110.0, 125.0, 140.0]
    data["history"]["P00"]["runs"] = [
        {"run": f"r{i}", "start": i, "status": "completed", "count": 1, "duration_ms": ms}
        for i, ms in enumerate(past)
    ]
    data["history"]["P00"]["stats"]["duration_ms"] = {"count": 4, "median": 117.5, "p95": 140.0}
    data["trends"]["P00"]["duration_ms"] = {
        "runs": 4,
        "slope": 13.5,
        "pct_per_run": 11.49,
        "direction": "slower",
    }
    data["snapshot"]["anomalies"] = [
        {
            "span": p00["span"],
            "phase": "P00",
            "metric": "duration_ms",
            "value": p00["duration_ms"],
            "z": 4.2,
            "median": 117.5,
            "mad": 12.5,
            "flag": True,
            "direction": "worse",
        }
    ]
    return data


STATES = [
    "completed",
    "running",
    "failed",
    "pending",
    "interrupted",
    "cancelled",
    "skipped",
    "cached",
]


def with_states(data: dict[str, Any]) -> dict[str, Any]:
    """The completed demo with its first eight flow steps in each state the page knows."""
    for f, status in zip(data["snapshot"]["flow"][:8], STATES, strict=True):
        f["status"] = status
    return data


@pytest.fixture(scope="session")
def static_pages(
    demo_runs: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Path, dict[str, Any]]]:
    """``render_static`` files: the completed demo, the failed demo, the hostile run."""
    out = tmp_path_factory.mktemp("pages")
    evil_dir = out / "evil-runs"
    evil_id = hostile_run(evil_dir)
    docs = {
        "ok": static_data([demo_runs["dir"]], demo_runs["ok"]),
        "trend": with_trend(static_data([demo_runs["dir"]], demo_runs["ok"])),
        "states": with_states(static_data([demo_runs["dir"]], demo_runs["ok"])),
        "fail": static_data([demo_runs["dir"]], demo_runs["fail"]),
        "evil": static_data([evil_dir], evil_id),
    }
    # Through alerts.with_alerts, as every surface sets them (the open counts with them).
    with_alerts(docs["evil"]["snapshot"], [
        {
            "alert": "a1",
            "rule": EVIL_PHASE,
            "severity": "critical",
            "state": "raised",
            "value": 2.5,
            "threshold": 1.0,
            "msg": EVIL_SCRIPT,
            "phase": "P00",
            "raised_ts": time.time(),
        },
        {
            "alert": "a2",
            "rule": "slow-phase",
            "severity": "warning",
            "state": "acknowledged",
            "acknowledged": True,
            "value": 1200,
            "threshold": 1000,
            "msg": "P01 slower than usual",
            "phase": "P01",
            "raised_ts": time.time(),
        },
    ])  # fmt: skip
    pages = {}
    for name, data in docs.items():
        path = out / f"{name}.html"
        path.write_text(page.render_static(data), encoding="utf-8")
        pages[name] = (path, data)
    return pages


# ---------------------------------------------------------------------------- browser
@pytest.fixture(scope="session")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    d = chrome(tmp_path_factory.mktemp("chrome-profile"))
    d.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": ALERT_TRAP})
    try:
        yield d
    finally:
        d.quit()


def open_page(d: Any, url: str, width: int = 1440) -> None:
    """Load ``url`` at ``width`` px with empty logs and wait for the pipeline to render."""
    reset_viewport(d)
    set_viewport(d, width, 1000)
    d.get("about:blank")
    console_errors(d)
    requested_urls(d)
    d.get(url)
    wait_for(d, "return document.querySelectorAll('#flow li').length > 0")


def text_of(d: Any, css: str) -> str:
    return str(d.execute_script("return document.querySelector(arguments[0]).textContent", css))


def flow_state(d: Any) -> dict[str, dict[str, str]]:
    """The pipeline flow by phase key, in display order."""
    items = d.execute_script(
        """return [...document.querySelectorAll('#flow li')].map((li) => ({
          phase: li.dataset.phase, status: li.dataset.status,
          text: li.querySelector('.flow-status').textContent,
          name: li.querySelector('.flow-name').textContent,
          dur: li.querySelector('.flow-dur').textContent}));"""
    )
    return {i["phase"]: i for i in items}


def table_rows(d: Any) -> dict[str, dict[str, str]]:
    """Phase table rows by span, in display order."""
    rows = d.execute_script(
        """return [...document.querySelectorAll('#phase-body tr')].map((tr) => {
          const cells = [...tr.children].map((td) => td.textContent.trim());
          return {span: tr.dataset.span, phase: cells[0], name: cells[1], status: cells[2],
            duration: cells[4], items: cells[12]};
        });"""
    )
    return {r["span"]: r for r in rows}


# ---------------------------------------------------------------------------- static mode
def test_static_flow_shows_all_ten_phases_with_states_and_figures(
    driver: Any, static_pages: dict[str, Any]
) -> None:
    """Every planned phase of a completed demo is in the flow with its state, name and
    duration as the snapshot has them; the cards agree."""
    path, data = static_pages["ok"]
    open_page(driver, path.as_uri())
    snap = data["snapshot"]
    flow = flow_state(driver)
    assert list(flow) == [f"P0{i}" for i in range(10)]
    for f in snap["flow"]:
        shown = flow[f["id"]]
        assert shown["status"] == f["status"] == "completed"
        assert shown["text"] == "completed"
        assert shown["name"] == f["name"]
        assert shown["dur"] == fmt_ms(f["duration_ms"])
    assert text_of(driver, "#card-progress .card-value") == "10/10"
    assert text_of(driver, "#card-elapsed .card-value") == fmt_ms(snap["run"]["duration_ms"])
    assert text_of(driver, "#run-name") == snap["run"]["name"]
    assert text_of(driver, "#run-status .text") == "completed"
    assert text_of(driver, "#conn .text") == "static report"


def test_static_table_rows_match_the_snapshot(driver: Any, static_pages: dict[str, Any]) -> None:
    """One table row per phase and sub-phase (worker processes included), in tree order,
    with the snapshot's status, duration and items."""
    path, data = static_pages["ok"]
    open_page(driver, path.as_uri())
    rows = table_rows(driver)
    phases = data["snapshot"]["phases"]
    assert list(rows) == [p["span"] for p in phases]
    assert sum(1 for p in phases if p["phase"] == "P03.worker") == 4
    for p in phases:
        row = rows[p["span"]]
        assert row["phase"].lstrip("└ ") == p["phase"]
        assert row["status"].endswith(p["status"])
        assert row["duration"] == fmt_ms(p["duration_ms"])
        assert row["items"] == fmt_int(p["items"])


def test_static_failed_run_shows_p07_failed_and_later_phases_pending(
    driver: Any, static_pages: dict[str, Any]
) -> None:
    """``--fail P07``: P00-P06 completed, P07 failed with its error listed, P08 and P09
    pending, the run failed."""
    path, data = static_pages["fail"]
    open_page(driver, path.as_uri())
    flow = flow_state(driver)
    assert {k: v["status"] for k, v in flow.items()} == {
        **{f"P0{i}": "completed" for i in range(7)},
        "P07": "failed",
        "P08": "pending",
        "P09": "pending",
    }
    assert flow["P07"]["text"] == "failed" and flow["P08"]["text"] == "pending"
    assert flow["P08"]["dur"] == "–"
    assert text_of(driver, "#run-status .text") == "failed"
    assert text_of(driver, "#card-progress .card-value") == "8/10"
    logs = text_of(driver, "#logs")
    assert "DemoFailure: P07: validation rule R-17 rejected 3 of 120 documents" in logs
    p07 = next(p for p in data["snapshot"]["phases"] if p["phase"] == "P07")
    assert (
        driver.execute_script(
            "return document.querySelector(`#gantt g[data-span='${arguments[0]}'] rect`)"
            ".getAttribute('class')",
            p07["span"],
        )
        == "bar st-failed"
    )


def test_static_hostile_names_show_as_text_and_run_nothing(
    driver: Any, static_pages: dict[str, Any]
) -> None:
    """A phase named ``<img src=x onerror=alert(1)>``, a ``<script>`` metric name, log
    message and alert, and a run name with ``</script>`` are shown verbatim; no element is
    injected and nothing runs."""
    path, _ = static_pages["evil"]
    open_page(driver, path.as_uri())
    d = driver
    assert flow_state(d)["P00"]["name"] == EVIL_PHASE
    assert flow_state(d)["P01"]["name"] == EVIL_NAME
    assert text_of(d, "#run-name") == EVIL_RUN
    assert EVIL_SCRIPT in text_of(d, "#logs")
    assert EVIL_SCRIPT in text_of(d, "#alerts")
    d.execute_script("document.querySelector('#phase-body tr').click()")
    wait_for(d, "return !document.getElementById('detail').hidden")
    detail = text_of(d, "#detail")
    assert EVIL_SCRIPT in detail and "/tmp/" + EVIL_PHASE in detail
    assert EVIL_PHASE + ".sub" in detail
    assert d.execute_script("return document.querySelectorAll('img[src=x]').length") == 0
    assert d.execute_script("return document.querySelectorAll('img').length") == 0
    assert (
        d.execute_script("return document.querySelectorAll('script').length") == 3
    )  # the data, app.js, insights.js
    assert d.execute_script("return window.__alerts") == []
    assert console_errors(d) == []


def test_static_alerts_panel_shows_severity_value_threshold_and_state(
    driver: Any, static_pages: dict[str, Any]
) -> None:
    """Alerts list severity by icon and word, value against threshold, and the
    acknowledged state; the open-alerts card counts both."""
    path, _ = static_pages["evil"]
    open_page(driver, path.as_uri())
    items = driver.execute_script(
        "return [...document.querySelectorAll('#alerts li')].map((li) => "
        "[li.dataset.state, li.querySelector('.badge').textContent, li.textContent])"
    )
    by_state = {state: (sev, text) for state, sev, text in items}
    assert by_state["raised"][0] == "✖critical"
    assert "value 2.5 vs threshold 1" in by_state["raised"][1]
    assert by_state["acknowledged"][0] == "▲warning"
    assert "value 1,200 vs threshold 1,000" in by_state["acknowledged"][1]
    assert "✓ acknowledged" in by_state["acknowledged"][1]
    assert text_of(driver, "#card-alerts .card-value") == "2"


def test_every_phase_state_is_distinct_by_word_icon_and_colour(
    driver: Any, static_pages: dict[str, Any]
) -> None:
    """Completed, running, failed, pending, interrupted, cancelled, skipped and cached each
    get their own word, icon and colour (state is never shown by colour alone)."""
    path, _ = static_pages["states"]
    open_page(driver, path.as_uri())
    shown = driver.execute_script(
        """return [...document.querySelectorAll('#flow li')].slice(0, 8).map((li) => [
          li.className, li.querySelector('.flow-status').textContent,
          li.querySelector('.flow-icon').textContent,
          getComputedStyle(li.querySelector('.flow-card')).borderLeftColor]);"""
    )
    assert [c for c, _, _, _ in shown] == [f"flow-step st-{s}" for s in STATES]
    assert [t for _, t, _, _ in shown] == STATES
    assert len({i for _, _, i, _ in shown}) == 8
    assert len({c for _, _, _, c in shown}) == 8


def test_static_page_has_no_console_errors(driver: Any, static_pages: dict[str, Any]) -> None:
    """Loading, sorting, toggling sub-phases and opening a detail log no console error and
    ask the network for nothing."""
    path, _ = static_pages["ok"]
    open_page(driver, path.as_uri())
    driver.execute_script("document.querySelector('th[data-col=duration_ms] button').click()")
    driver.execute_script("document.getElementById('table-subs').click()")
    driver.execute_script("document.getElementById('gantt-subs').click()")
    driver.execute_script("document.querySelector('#flow button').click()")
    wait_for(driver, "return !document.getElementById('detail').hidden")
    assert console_errors(driver) == []
    assert [u for u in requested_urls(driver) if not u.startswith(("file:", "data:"))] == []


def test_static_page_fits_390px_wide(driver: Any, static_pages: dict[str, Any]) -> None:
    """At 390 CSS px the body does not overflow sideways (wide tables scroll in place)."""
    path, _ = static_pages["fail"]
    open_page(driver, path.as_uri(), width=390)
    widths = driver.execute_script(
        "return [window.innerWidth, document.documentElement.scrollWidth,"
        " document.body.scrollWidth]"
    )
    assert widths[0] == 390
    assert widths[1] <= 390 and widths[2] <= 390, widths


def test_phase_rows_are_keyboard_reachable_and_enter_opens_detail(
    driver: Any, static_pages: dict[str, Any]
) -> None:
    """Tab reaches the phase rows; Enter opens that phase's detail, Escape closes it and
    gives focus back to the row."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    path, data = static_pages["ok"]
    open_page(driver, path.as_uri())
    tag = ""
    for _ in range(80):
        ActionChains(driver).send_keys(Keys.TAB).perform()
        tag = driver.execute_script("return document.activeElement.tagName")
        if tag == "TR":
            break
    assert tag == "TR"
    first = data["snapshot"]["phases"][0]
    assert driver.execute_script("return document.activeElement.dataset.span") == first["span"]
    ActionChains(driver).send_keys(Keys.ENTER).perform()
    wait_for(driver, "return !document.getElementById('detail').hidden")
    assert text_of(driver, "#detail-title") == f"{first['phase']} · {first['name']}"
    assert driver.execute_script("return document.activeElement.id") == "detail-title"
    ActionChains(driver).send_keys(Keys.ESCAPE).perform()
    wait_for(driver, "return document.getElementById('detail').hidden")
    assert driver.execute_script("return document.activeElement.dataset.span") == first["span"]


def test_sorting_by_duration_orders_top_level_phases(
    driver: Any, static_pages: dict[str, Any]
) -> None:
    """Clicking the Duration header sorts phases slowest first (sub-phases stay under their
    parent); a second click reverses, a third restores the run's order."""
    path, data = static_pages["ok"]
    open_page(driver, path.as_uri())
    tops = [p for p in data["snapshot"]["phases"] if p["depth"] == 0]
    top_order = (
        "return [...document.querySelectorAll('#phase-body tr.depth-0')]"
        ".map((tr) => tr.dataset.span)"
    )
    click = "document.querySelector('th[data-col=duration_ms] button').click()"
    slowest = [p["span"] for p in sorted(tops, key=lambda p: -p["duration_ms"])]
    sort_state = "return document.querySelector('th[data-col=duration_ms]').ariaSort"
    # The table redraws on the next animation frame: wait for each order, bounded.
    for expected, state in (
        (slowest, "descending"),
        (slowest[::-1], "ascending"),
        ([p["span"] for p in tops], "none"),
    ):
        driver.execute_script(click)
        wait_until(lambda e=expected: driver.execute_script(top_order) == e, 5, f"order {expected}")
        assert driver.execute_script(sort_state) == state


def test_static_detail_shows_history_and_trend(driver: Any, static_pages: dict[str, Any]) -> None:
    """The completed demo's P00 detail compares with the earlier (failed) run: a sparkline
    of two points, this run highlighted, and the trend line."""
    path, data = static_pages["ok"]
    open_page(driver, path.as_uri())
    p00 = data["snapshot"]["flow"][0]
    driver.execute_script("document.querySelector('#flow li[data-phase=P00] button').click()")
    wait_for(driver, "return !document.getElementById('detail').hidden")
    detail = text_of(driver, "#detail-body")
    assert "Earlier runs1" in detail
    assert f"This run{fmt_ms(p00['duration_ms'])}" in detail
    assert "Trend: not enough runs for a trend" in detail
    assert driver.execute_script("return document.querySelectorAll('.spark circle').length") == 2


def test_static_detail_shows_a_worsening_trend_and_an_anomaly(
    driver: Any, static_pages: dict[str, Any]
) -> None:
    """With four earlier runs getting slower, the detail draws five points (this run last),
    says "getting slower (+11.5% per run)" and flags the unusual duration."""
    path, data = static_pages["trend"]
    open_page(driver, path.as_uri())
    p00 = data["snapshot"]["flow"][0]
    driver.execute_script("document.querySelector('#flow li[data-phase=P00] button').click()")
    wait_for(driver, "return !document.getElementById('detail').hidden")
    detail = text_of(driver, "#detail-body")
    assert "Earlier runs4" in detail and "Median118 ms" in detail
    assert "Trend: getting slower (+11.5% per run)" in detail
    assert f"Unusual duration: {fmt_ms(p00['duration_ms'])} against a median of 118 ms" in detail
    assert driver.execute_script("return document.querySelectorAll('.spark circle').length") == 5
    assert driver.execute_script("return document.querySelector('.trend.worse') !== null")


def test_static_download_is_the_embedded_snapshot(
    driver: Any, static_pages: dict[str, Any]
) -> None:
    """The download link is a Blob of the embedded snapshot named after the run."""
    path, data = static_pages["ok"]
    open_page(driver, path.as_uri())
    link = driver.execute_script(
        "const a = document.getElementById('download'); return [a.href, a.download]"
    )
    assert link[0].startswith("blob:")
    assert link[1] == f"atroz-{data['snapshot']['run']['id']}.json"


def test_static_screenshots(driver: Any, static_pages: dict[str, Any]) -> None:
    """Full-page screenshots of the static report, desktop and 390 px (test-artifacts/)."""
    for name, width in (("page-static.png", 1440), ("page-static-390.png", 390)):
        path, _ = static_pages["ok" if width > 400 else "fail"]
        open_page(driver, path.as_uri(), width=width)
        full_page_screenshot(driver, ARTIFACTS / name, width)
        assert (ARTIFACTS / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------- file structure
class _Refs(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.refs: list[str] = []
        self.scripts: list[dict[str, str | None]] = []
        self.styles = 0
        self.inline_attrs: list[str] = []
        self._data_open = False
        self.data = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.refs += [v for k, v in attrs if k in ("src", "href", "action") and v]
        self.inline_attrs += [k for k, _ in attrs if k == "style" or k.startswith("on")]
        if tag == "script":
            self.scripts.append(a)
            self._data_open = a.get("id") == "atroz-data"
        self.styles += tag == "style"

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._data_open = False

    def handle_data(self, data: str) -> None:
        if self._data_open:
            self.data += data


def test_render_static_is_self_contained_and_escapes_its_data(
    static_pages: dict[str, Any],
) -> None:
    """The report references no external URL, carries its own CSP, and its embedded JSON
    has no ``</`` or ``<!--`` yet parses back to exactly the data, hostile strings and all."""
    path, data = static_pages["evil"]
    text = path.read_text(encoding="utf-8")
    p = _Refs()
    p.feed(text)
    assert p.refs and all(r.startswith(("data:", "#")) for r in p.refs), p.refs
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", text)
    assert [s.get("type") for s in p.scripts] == ["application/json", None, None]
    assert not any(s.get("src") for s in p.scripts) and p.styles == 1
    assert p.inline_attrs == []
    assert "</" not in p.data and "<!--" not in p.data and "<" not in p.data
    assert json.loads(p.data) == json.loads(json.dumps(data))
    assert text.count("</script>") == 3
    assert "Content-Security-Policy" in text and "connect-src 'none'" in text


def test_live_index_has_no_inline_script_or_style() -> None:
    """The served page loads everything from the same origin: no inline script, style,
    style attribute or event handler (it runs under ``default-src 'self'``)."""
    p = _Refs()
    p.feed(page.asset("index.html").decode())
    assert set(p.refs) == {
        "#phases-panel",
        "favicon.svg",
        "static/app.js",
        "static/insights.js",
        "static/style.css",
        "#",
    }
    assert [s.get("src") for s in p.scripts] == ["static/app.js", "static/insights.js"]
    assert p.styles == 0 and p.inline_attrs == []


def test_app_js_never_parses_html() -> None:
    """app.js inserts user text only as text: no innerHTML, outerHTML, insertAdjacentHTML,
    document.write or eval, and it is strict-mode code."""
    js = page.asset("app.js").decode()
    assert js.startswith('"use strict";')
    for banned in (
        ".innerHTML",
        ".outerHTML",
        ".insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
        "createContextualFragment",
        "DOMParser",
    ):
        assert banned not in js, banned


def test_asset_reads_only_packaged_names() -> None:
    """``page.asset`` serves the five packaged files with their types and nothing else."""
    assert set(page.ASSETS) == {"index.html", "app.js", "insights.js", "style.css", "favicon.svg"}
    assert page.asset("favicon.svg").startswith(b"<svg")
    assert page.ASSETS["app.js"] == "text/javascript; charset=utf-8"
    for name in ("../page.py", "static/app.js", "/etc/passwd", "APP.JS", ""):
        with pytest.raises(KeyError):
            page.asset(name)


def test_embed_json_cannot_close_its_element() -> None:
    """``embed_json`` escapes every ``<``, ``>`` and ``&`` and round-trips, NaN included."""
    doc = {"a": "</script><!-- --> & <b>", "n": float("nan"), "u": "\u2028"}
    text = page.embed_json(doc)
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"a": doc["a"], "n": None, "u": "\u2028"}


# ---------------------------------------------------------------------------- live mode
@pytest.fixture(scope="module")
def live_server(demo_runs: dict[str, Any]) -> Iterator[Any]:
    """The real HTTP server over the demo logs."""
    from atroz_monitor.store import source as source_mod
    from atroz_monitor.surface import server

    src = source_mod.FileSource([demo_runs["dir"]])
    srv = server.start_server(src, "127.0.0.1", 0)
    try:
        yield srv
    finally:
        srv.close()
        src.close()


def test_live_finished_demo_shows_all_phases(
    driver: Any, live_server: Any, demo_runs: dict[str, Any]
) -> None:
    """``/?run=<completed demo>`` over the server shows all ten phases completed, connected
    live, with the phase history fetched for the detail panel; screenshot kept."""
    open_page(driver, f"{live_server.url}?run={demo_runs['ok']}")
    wait_for(driver, "return document.getElementById('conn').dataset.state === 'live'")
    flow = flow_state(driver)
    assert list(flow) == [f"P0{i}" for i in range(10)]
    assert {v["status"] for v in flow.values()} == {"completed"}
    assert text_of(driver, "#run-status .text") == "completed"
    assert driver.execute_script("return document.getElementById('download').href") == (
        f"{live_server.url}api/v1/runs/{demo_runs['ok']}/export"
    )
    full_page_screenshot(driver, ARTIFACTS / "page-live.png")
    set_viewport(driver, 1440, 1000)
    driver.execute_script("document.querySelector('#flow li[data-phase=P01] button').click()")
    wait_for(
        driver,
        "return document.getElementById('detail-body').textContent.includes('Earlier runs1')",
    )
    driver.save_screenshot(str(ARTIFACTS / "page-live-detail.png"))
    assert console_errors(driver) == []


def test_live_latest_run_is_shown_without_a_run_chosen(
    driver: Any, live_server: Any, demo_runs: dict[str, Any]
) -> None:
    """``/`` with no run chosen follows the latest run (the completed demo, started last);
    the picker lists both runs."""
    open_page(driver, live_server.url)
    wait_for(
        driver, "return document.getElementById('run-status').textContent.includes('completed')"
    )
    assert driver.execute_script("return document.getElementById('run-name').title").endswith(
        f"({demo_runs['ok']})"
    )
    options = driver.execute_script(
        "return [...document.querySelectorAll('#run-picker option')].map((o) => o.value)"
    )
    assert options == ["latest", demo_runs["ok"], demo_runs["fail"]]


def test_live_requests_stay_on_loopback(driver: Any, live_server: Any) -> None:
    """Every request the live page makes (page, assets, favicon, API, stream) goes to the
    server on 127.0.0.1, and none of them fails."""
    open_page(driver, live_server.url)
    wait_for(driver, "return document.getElementById('conn').dataset.state === 'live'")
    # app.js, style.css and the runs list (an open EventSource has no entry yet).
    wait_for(driver, "return performance.getEntriesByType('resource').length >= 3")
    urls = requested_urls(driver)
    resources = driver.execute_script(
        "return performance.getEntriesByType('resource').map((e) => e.name)"
    )
    assert urls and all(u.startswith(live_server.url) for u in urls), urls
    assert all(u.startswith(live_server.url) for u in resources), resources
    paths = {u[len(live_server.url) - 1 :].split("?")[0] for u in urls}
    assert {"/", "/static/app.js", "/static/style.css", "/api/v1/runs", "/api/v1/stream"} <= paths
    # The favicon may come from the cache by now: check it is linked and served.
    icon = driver.execute_script("return document.querySelector('link[rel=icon]').href")
    assert icon == f"{live_server.url}favicon.svg"
    with urllib.request.urlopen(icon, timeout=5) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"] == "image/svg+xml"
    assert console_errors(driver) == []


def test_live_running_phase_turns_completed_without_reload(driver: Any, tmp_path: Path) -> None:
    """Over a run still being written, P00 shows running (with a live elapsed clock) and
    then completed, P01 appears, all pushed over SSE without reloading the page."""
    from atroz_monitor.store import source as source_mod
    from atroz_monitor.surface import server

    runs = tmp_path / "runs"
    mon = Monitor(
        runs, plan=[("P00", "Load"), ("P01", "Transform")], sample_interval=0.1, name="live test"
    )
    mon.start()
    src = srv = None
    try:
        mon.start_phase("P00", name="Load")
        src = source_mod.FileSource([runs])
        srv = server.start_server(src, "127.0.0.1", 0)
        open_page(driver, srv.url)
        driver.execute_script("window.__same_page = 42")
        wait_for(
            driver,
            "return document.querySelector('#flow li[data-phase=P00]')"
            "?.dataset.status === 'running'",
        )
        assert flow_state(driver)["P01"]["status"] == "pending"
        assert text_of(driver, "#run-status .text") == "running"
        # A first run has no history to estimate from: the ETA says so.
        assert text_of(driver, "#card-elapsed .card-sub") == "ETA: no history"
        assert text_of(driver, "#conn .text") == "live"
        mon.complete_phase("P00")
        mon.start_phase("P01", name="Transform")
        wait_for(
            driver,
            "return document.querySelector('#flow li[data-phase=P00]')"
            ".dataset.status === 'completed'",
        )
        wait_for(
            driver,
            "return document.querySelector('#flow li[data-phase=P01]')"
            ".dataset.status === 'running'",
        )
        wait_for(driver, "return document.querySelectorAll('#cpu-chart path').length > 0")
        mon.complete_phase("P01")
        mon.close()
        wait_for(
            driver, "return document.getElementById('run-status').textContent.includes('completed')"
        )
        assert driver.execute_script("return window.__same_page") == 42
        assert flow_state(driver)["P01"]["status"] == "completed"
        assert console_errors(driver) == []
    finally:
        mon.close()
        if srv is not None:
            srv.close()
        if src is not None:
            src.close()


# ---------------------------------------------------------------------------- pipeline shapes
# A DAG plan, a hot loop, a cached, a retried and a skipped phase, tags and a resumed gap in
# one real run, written by a Monitor; three earlier runs (two tag values) as its history.
SHAPES_PLAN = [
    {"id": "P00", "name": "Fetch orders"},
    {"id": "P01", "name": "Fetch prices"},
    {"id": "P02", "name": "Join", "after": ["P00", "P01"]},
    {"id": "P03", "name": "Train model", "after": ["P02"]},
    {"id": "P04", "name": "Render report", "after": ["P02"]},
    {"id": "P05", "name": "Publish", "after": ["P03", "P04"]},
]
SHAPES_TAGS = {"dataset": "small", "host_class": "m5.xlarge"}
HOT_CALLS = 2000
GAP_S = 0.4
LIMITS = {
    "memory_max_bytes": 128 * 1024 * 1024,
    "cpu_quota": 1.5,
    "version": 2,
    "cpu_effective": 1.5,
    "source": "cgroup",
    "note": "limits of /sys/fs/cgroup/pipeline.slice",
}


def history_run(directory: Path, dataset: str, join_s: float) -> str:
    """An earlier run with ``dataset`` as its tag, whose P02 takes about ``join_s``."""
    mon = Monitor(
        directory,
        plan=SHAPES_PLAN,
        sample_interval=None,
        alert_rules=[],
        tags={"dataset": dataset, "host_class": "m5.xlarge"},
    )
    with mon:
        with mon.phase("P02", "Join"):
            time.sleep(join_s)
    return mon.run_id


def shapes_run(directory: Path) -> str:
    """The run with every pipeline shape the page draws (see SHAPES_PLAN)."""
    mon = Monitor(
        directory,
        plan=SHAPES_PLAN,
        sample_interval=None,
        alert_rules=[],
        tags=SHAPES_TAGS,
        name="shapes",
    )
    with mon:
        with mon.phase("P00", "Fetch orders"):
            for _ in range(HOT_CALLS):  # default detail="auto": aggregated after 100 calls
                with mon.phase("P00.item", "item"):
                    pass
            time.sleep(0.03)
        with mon.phase("P01", "Fetch prices") as p:
            p.cached("prices unchanged since 2026-01-01")
        with mon.phase("P02", "Join"):
            time.sleep(0.05)
        for attempt in mon.attempts("P03", 3, "Train model"):
            with attempt as p:
                time.sleep(0.03)
                if p.attempt == 1:
                    raise TimeoutError("GPU not ready")
        with mon.phase("P04", "Render report") as p:
            p.skip("no report requested")
        with mon.phase("P05", "Publish"):
            time.sleep(0.02)
    return mon.run_id


def add_resume_gap(log: Path, after_key: str, gap_s: float) -> None:
    """Rewrite ``log`` as if its owner died after ``after_key`` ended and a new process
    resumed the run ``gap_s`` later: a ``resumed`` line, later lines shifted and re-owned."""
    events = [json.loads(line) for line in log.read_text().splitlines()]
    cut = next(
        i
        for i, e in enumerate(events)
        if e["ev"] == "phase_end" and e["phase"] == after_key and e["parent"] is None
    )
    old_pid = events[cut]["pid"]
    new_pid = old_pid + 100_000
    resumed = {
        "ev": "resumed",
        "ts": events[cut]["ts"] + gap_s,
        "run": events[cut]["run"],
        "pid": new_pid,
        "seq": 1,
        "prev_pid": old_pid,
        "gap_s": gap_s,
        "host": "vm",
        "argv": ["pipeline.py", "--resume"],
    }
    later = []
    for seq, e in enumerate(events[cut + 1 :], start=2):
        later.append({**e, "ts": e["ts"] + gap_s, "pid": new_pid, "seq": seq})
    lines = [*events[: cut + 1], resumed, *later]
    log.write_text("".join(json.dumps(e) + "\n" for e in lines))


def with_samples_and_limits(data: dict[str, Any]) -> dict[str, Any]:
    """Container limits in ``run`` (as ``run_start`` records them under cgroup v2) and
    a rising RSS series, so the memory chart has a limit line to draw."""
    snap = data["snapshot"]
    run = snap["run"]
    run["limits"] = dict(LIMITS)
    start, dur = run["start"], run["duration_ms"] / 1000
    mib = 1024 * 1024
    snap["resources"]["samples"] = [
        {
            "ts": start + dur * i / 20,
            "pid": run["pid"],
            "cpu_pct": 40.0 + 3 * i,
            "rss_bytes": (40 + 3 * i) * mib,
            "spans": [],
        }
        for i in range(21)
    ]
    return data


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The shapes run and its history on disk, and its static page (limits injected)."""
    out = tmp_path_factory.mktemp("shapes")
    runs = out / "runs"
    earlier = [
        history_run(runs, "small", 0.01),
        history_run(runs, "big", 0.08),
        history_run(runs, "small", 0.02),
    ]
    rid = shapes_run(runs)
    add_resume_gap(runs / f"{rid}.jsonl", "P02", GAP_S)
    data = with_samples_and_limits(static_data([runs], rid))
    path = out / "shapes.html"
    path.write_text(page.render_static(data), encoding="utf-8")
    return {"dir": runs, "id": rid, "earlier": earlier, "page": path, "data": data}


def open_detail(d: Any, phase: str) -> str:
    """Click ``phase`` in the flow; the detail panel's text once it shows that phase."""
    d.execute_script(f"document.querySelector('#flow li[data-phase={phase}] button').click()")
    wait_for(d, f"return document.getElementById('detail-title').textContent.startsWith('{phase}')")
    return text_of(d, "#detail-body")


def test_dag_plan_draws_one_edge_per_after_link_in_depth_columns(
    driver: Any, shapes: dict[str, Any]
) -> None:
    """A plan with ``after`` is drawn as columns by dependency depth with one arrow per
    link (P00, P01 | P02 | P03, P04 | P05); a plain plan stays a linear list."""
    open_page(driver, shapes["page"].as_uri())
    links = {(a, f["id"]) for f in SHAPES_PLAN for a in f.get("after", [])}
    edges = driver.execute_script(
        "return [...document.querySelectorAll('#flow-edges path.edge')]"
        ".map((e) => [e.dataset.from, e.dataset.to, e.getAttribute('marker-end')])"
    )
    assert len(edges) == len(links) == 6
    assert {(a, b) for a, b, _ in edges} == links
    assert {m for _, _, m in edges} == {"url(#flow-arrow)"}
    cols = driver.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('#flow li')].map((li) =>"
        " [li.dataset.phase, Math.round(li.getBoundingClientRect().left)]))"
    )
    x = sorted(set(cols.values()))
    assert len(x) == 4
    assert [x.index(cols[k]) for k in ("P00", "P01", "P02", "P03", "P04", "P05")] == [
        0,
        0,
        1,
        2,
        2,
        3,
    ]
    # Every arrow runs left to right, from its source card's right edge to its target's left.
    assert driver.execute_script(
        "return [...document.querySelectorAll('#flow-edges path.edge')].every((e) => {"
        " const end = e.getPointAtLength(e.getTotalLength());"
        " return e.getPointAtLength(0).x < end.x; })"
    )
    assert console_errors(driver) == []
    # The demo's plan has no `after`: today's linear flow, no arrows.
    open_page(driver, static_page_of(shapes, "plain").as_uri())
    assert driver.execute_script("return document.getElementById('flow').className") == "flow"
    assert driver.execute_script("return document.querySelectorAll('#flow-edges path').length") == 0


def static_page_of(shapes: dict[str, Any], name: str) -> Path:
    """A one-off static page: the first earlier run, its plan stripped of ``after``."""
    path = shapes["page"].with_name(f"{name}.html")
    if not path.exists():
        data = static_data([shapes["dir"]], shapes["earlier"][0])
        for f in data["snapshot"]["flow"]:
            f.pop("after", None)
        path.write_text(page.render_static(data), encoding="utf-8")
    return path


def test_retried_phase_shows_its_attempts_in_flow_table_and_detail(
    driver: Any, shapes: dict[str, Any]
) -> None:
    """P03 failed once and then completed: the flow says "attempt 2/2 · 1 failed", the
    table has one row per attempt with its number, the detail lists both attempts."""
    open_page(driver, shapes["page"].as_uri())
    flow = flow_state(driver)
    assert flow["P03"]["status"] == "completed"
    chip = "return document.querySelector('#flow li[data-phase=P03] .tries').textContent"
    assert driver.execute_script(chip) == "↻ attempt 2/2 · 1 failed"
    assert driver.execute_script(
        "return document.querySelector('#flow li[data-phase=P01] .tries').hidden"
    )
    rows = driver.execute_script(
        "return [...document.querySelectorAll('#phase-body tr[data-phase=P03]')].map((tr) =>"
        " tr.querySelector('.c-status').textContent)"
    )
    assert rows == ["✕failedattempt 1/2", "✓completedattempt 2/2"]
    detail = open_detail(driver, "P03")
    assert "attempt 2/2" in text_of(driver, "#detail-body > p")
    items = driver.execute_script(
        "return [...document.querySelectorAll('#detail .attempts li')].map((li) => li.textContent)"
    )
    assert len(items) == 2
    assert items[0].startswith("attempt 1/2 TimeoutError: GPU not ready✕failed")
    assert items[1].startswith("attempt 2/2 (this record)✓completed")
    assert "Attempts" in detail


def test_skipped_and_cached_phases_show_their_reasons(driver: Any, shapes: dict[str, Any]) -> None:
    """Skipped and cached phases have their own word and icon in the flow and the table, and
    their reason in the table, the detail panel and the flow card's tooltip."""
    open_page(driver, shapes["page"].as_uri())
    flow = flow_state(driver)
    assert (flow["P01"]["status"], flow["P01"]["text"]) == ("cached", "cached")
    assert (flow["P04"]["status"], flow["P04"]["text"]) == ("skipped", "skipped")
    # Skipped and cached phases are over: the progress bar agrees with the card.
    assert text_of(driver, "#progress-text") == "6 of 6 done"
    assert text_of(driver, "#card-progress .card-value") == "6/6"
    title = "return document.querySelector(`#flow li[data-phase=${arguments[0]}] button`).title"
    assert "cached (prices unchanged since 2026-01-01)" in driver.execute_script(title, "P01")
    assert "skipped (no report requested)" in driver.execute_script(title, "P04")
    status = (
        "return document.querySelector(`#phase-body tr[data-phase=${arguments[0]}] .c-status`)"
        ".textContent"
    )
    assert driver.execute_script(status, "P01") == "◆cachedprices unchanged since 2026-01-01"
    assert driver.execute_script(status, "P04") == "↷skippedno report requested"
    open_detail(driver, "P04")
    assert text_of(driver, ".reason-line") == "↷ skipped: no report requested"
    open_detail(driver, "P01")
    assert text_of(driver, ".reason-line") == "◆ cached: prices unchanged since 2026-01-01"


def test_page_shows_the_snapshots_figures_verbatim(
    driver: Any, shapes: dict[str, Any], tmp_path: Path
) -> None:
    """The page renders the figures the snapshot and the report carry, computing none: a
    doctored aggregate count (12,345), average phase (4,321 ms), slowest phase, retry badge
    (5/7, 4 failed) and P02 history median/p95 (777/888 ms) show as given, though none
    agrees with the rows beside them."""
    import copy

    data = copy.deepcopy(shapes["data"])
    snap = data["snapshot"]
    p00 = next(p for p in snap["phases"] if p["phase"] == "P00")
    (row,) = snap["aggregates"][p00["span"]]["rows"]
    row["count"] = 12345
    snap["aggregates"][p00["span"]]["calls"] = 12345
    snap["progress"]["mean_top_ms"] = 4321.0
    snap["progress"]["slowest_top"] = {"span": p00["span"], "phase": "P05", "duration_ms": 999.0}
    p03 = next(f for f in snap["flow"] if f["id"] == "P03")
    p03["tries"] = {"n": 5, "of": 7, "failed": 4}
    stats = data["history"]["P02"]["stats"]["duration_ms"]
    stats.update(median=777.0, p95=888.0)
    path = tmp_path / "doctored.html"
    path.write_text(page.render_static(data), encoding="utf-8")
    open_page(driver, path.as_uri())
    count = driver.execute_script(
        "return document.querySelector('#phase-body tr.agg').dataset.count"
    )
    assert count == "12345"
    pill = driver.execute_script(
        "return document.querySelector(`#gantt g[data-span='${arguments[0]}'] .count-pill`)"
        "?.textContent",
        p00["span"],
    )
    assert pill.startswith("×12,345")
    assert text_of(driver, "#card-avg .card-value") == "4.32 s"
    assert text_of(driver, "#card-avg .card-sub") == "slowest P05 999 ms"
    tries = driver.execute_script(
        "return document.querySelector('#flow li[data-phase=P03] .tries').textContent"
    )
    assert tries == "↻ attempt 5/7 · 4 failed"
    detail = open_detail(driver, "P02")
    assert "Median777 ms" in detail and "p95888 ms" in detail


def test_hot_loop_shows_one_aggregate_row_with_the_exact_count(
    driver: Any, shapes: dict[str, Any]
) -> None:
    """2,000 calls of P00.item (100 recorded one by one, the rest as aggregates) make one
    aggregate row under P00 counting all 2,000, a "×2,000" badge on P00's bar, and the
    figures in P00's detail."""
    open_page(driver, shapes["page"].as_uri())
    snap = shapes["data"]["snapshot"]
    p00 = next(p for p in snap["phases"] if p["phase"] == "P00")
    folded = p00["folded"]["P00.item"]
    singles = [p for p in snap["phases"] if p["phase"] == "P00.item"]
    assert folded["count"] + len(singles) == HOT_CALLS and folded["count"] > 0
    rows = driver.execute_script(
        "return [...document.querySelectorAll('#phase-body tr.agg')].map((tr) => [tr.dataset.count,"
        " tr.querySelector('.c-key').textContent, tr.querySelector('.c-name').textContent,"
        " tr.previousElementSibling.dataset.span])"
    )
    assert len(rows) == 1
    count, key, name, above = rows[0]
    assert (count, key, above) == (str(HOT_CALLS), "P00.item", p00["span"])
    assert name.startswith("item ×2,000: mean ")
    assert "failed" not in name
    pill = driver.execute_script(
        "return document.querySelector(`#gantt g[data-span='${arguments[0]}'] .count-pill`)"
        "?.textContent",
        p00["span"],
    )
    assert pill is not None and pill.startswith("×2,000")
    # No Gantt bar for the aggregate (it has no individual times).
    assert (
        driver.execute_script("return document.querySelectorAll('#gantt g[data-span^=agg]').length")
        == 0
    )
    # The calls recorded one by one are listed only on demand, under the aggregate.
    shown = "return document.querySelectorAll('#phase-body tr[data-phase=\"P00.item\"]').length"
    assert driver.execute_script(shown) == 0
    driver.execute_script("document.querySelector('#phase-body tr.agg .expand').click()")
    wait_until(lambda: driver.execute_script(shown) == len(singles), 5, "the individual calls")
    detail = open_detail(driver, "P00")
    assert "Aggregated calls" in detail and "Calls2,000" in detail
    assert f"Recorded as{fmt_int(folded['count'])} aggregated + {len(singles)} one by one" in detail


def test_tags_resume_gap_and_limits_show_in_header_gantt_and_run_panel(
    driver: Any, shapes: dict[str, Any]
) -> None:
    """Run tags are chips in the header and the run panel; the resumed run's gap is a
    hatched band on the timeline and a line in the run panel; the container limits are in
    the run panel and the memory limit is a line on the memory chart."""
    open_page(driver, shapes["page"].as_uri())
    chips = "return [...document.querySelectorAll(arguments[0])].map((c) => c.textContent)"
    want = ["dataset=small", "host_class=m5.xlarge"]
    assert driver.execute_script(chips, "#run-tags .chip") == want
    assert driver.execute_script(chips, "#info [data-row=Tags] .chip") == want
    gap = driver.execute_script(
        "const r = document.querySelector('#gantt rect.gap'); return r && [r.getAttribute('fill'),"
        " +r.getAttribute('width'), document.querySelector('#gantt .gap-label').textContent]"
    )
    assert gap[0] == "url(#gap-hatch)" and gap[1] > 20
    assert gap[2] == f"{fmt_ms(GAP_S * 1000)} gap, resumed"
    resumed = text_of(driver, "#info [data-row=Resumed] dd")
    assert resumed.startswith(f"after a {fmt_ms(GAP_S * 1000)} gap at ")
    assert text_of(driver, "#info [data-row='Container limits'] dd") == (
        "memory 128.0 MiB · CPU quota 1.5 CPUs (cgroup v2)"
    )
    assert text_of(driver, "#mem-chart .limit-label") == "limit 128.0 MiB"
    assert (
        driver.execute_script("return document.querySelectorAll('#mem-chart .limit-line').length")
        == 1
    )
    assert console_errors(driver) == []


def test_static_history_same_tags_only_filters_embedded_rows(
    driver: Any, shapes: dict[str, Any]
) -> None:
    """In a static report, "same tags only" keeps the earlier runs tagged dataset=small
    (two of three) without a request."""
    open_page(driver, shapes["page"].as_uri())
    detail = open_detail(driver, "P02")
    assert "Earlier runs3" in detail
    driver.execute_script("document.getElementById('same-tags').click()")
    wait_for(
        driver,
        "return document.getElementById('detail-body').textContent.includes('Earlier runs2')",
    )
    assert driver.execute_script("return document.getElementById('same-tags').checked")
    assert driver.execute_script("return document.querySelectorAll('.spark circle').length") == 3
    driver.execute_script("document.getElementById('same-tags').click()")
    wait_for(
        driver,
        "return document.getElementById('detail-body').textContent.includes('Earlier runs3')",
    )
    assert [u for u in requested_urls(driver) if not u.startswith(("file:", "data:"))] == []


def test_shapes_screenshot(driver: Any, shapes: dict[str, Any]) -> None:
    """A full-page screenshot of the shapes run (test-artifacts/page-shapes.png), and one
    with P00's detail open (page-shapes-detail.png)."""
    open_page(driver, shapes["page"].as_uri())
    full_page_screenshot(driver, ARTIFACTS / "page-shapes.png")
    assert (ARTIFACTS / "page-shapes.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    set_viewport(driver, 1440, 1000)
    open_detail(driver, "P03")
    driver.save_screenshot(str(ARTIFACTS / "page-shapes-detail.png"))


def test_live_same_tags_only_adds_the_tag_filter_to_the_history_requests(
    driver: Any, shapes: dict[str, Any]
) -> None:
    """Live, "same tags only" asks history and trends for ``tag=dataset=small`` and
    ``tag=host_class=m5.xlarge`` and shows the two matching runs instead of three; the API
    answers differently with and without the filter and 400s a malformed tag."""
    from atroz_monitor.store import source as source_mod
    from atroz_monitor.surface import server

    src = source_mod.FileSource([shapes["dir"]])
    srv = server.start_server(src, "127.0.0.1", 0)
    try:
        base = f"{srv.url}api/v1/phases/P02/history?before={shapes['id']}"
        with urllib.request.urlopen(base, timeout=5) as resp:
            everything = json.load(resp)
        with urllib.request.urlopen(base + "&tag=dataset%3Dsmall", timeout=5) as resp:
            small = json.load(resp)
        assert everything["count"] == 3 and small["count"] == 2
        assert {r["run"] for r in small["runs"]} == {shapes["earlier"][0], shapes["earlier"][2]}
        with pytest.raises(urllib.error.HTTPError) as bad:
            urllib.request.urlopen(base + "&tag=oops", timeout=5)
        assert bad.value.code == 400
        assert json.load(bad.value)["error"] == "tag: expected KEY=VALUE, got 'oops'"

        open_page(driver, f"{srv.url}?run={shapes['id']}")
        wait_for(driver, "return document.getElementById('conn').dataset.state === 'live'")
        assert (
            len(driver.execute_script("return document.querySelectorAll('#flow-edges path.edge')"))
            == 6
        )
        open_detail(driver, "P02")
        wait_for(
            driver,
            "return document.getElementById('detail-body').textContent.includes('Earlier runs3')",
        )
        requested_urls(driver)
        driver.execute_script("document.getElementById('same-tags').click()")
        wait_for(
            driver,
            "return document.getElementById('detail-body').textContent.includes('Earlier runs2')",
        )
        asked = [u for u in requested_urls(driver) if "/api/v1/phases/P02/" in u]
        tail = "&tag=dataset%3Dsmall&tag=host_class%3Dm5.xlarge"
        assert sorted(u.split("?")[0].rsplit("/", 1)[1] for u in asked) == ["history", "trends"]
        assert all(u.endswith(tail) for u in asked), asked
        urls = requested_urls(driver)
        assert all(u.startswith(srv.url) for u in urls), urls
        assert console_errors(driver) == []
    finally:
        srv.close()
        src.close()


# ---------------------------------------------------------------------------- live = reload
PANELS = """
const text = (sel) => [...document.querySelectorAll(sel)].map((n) => n.textContent.trim());
return {
  cards: text('.card'),
  flow: text('#flow li'),
  table: text('#phase-body tr'),
  alerts: text('#alerts li'), alerts_count: text('#alerts-count'),
  logs: text('#logs li'), logs_count: text('#logs-count'),
  info: text('#info > div'),
};
"""


def test_live_panels_show_what_a_fresh_load_shows(driver: Any, tmp_path: Path) -> None:
    """A page opened when a run starts and left open while it runs (samples, a warning, a
    worker process, a nested failure and its alert, the run's end) shows in every panel
    (cards, flow, table, alerts, errors, Run) what a fresh load shows at the end; the Run
    panel's samples and processes and the errors panel grew live without a reload."""
    server = pytest.importorskip("atroz_monitor.surface.server")
    source_mod = pytest.importorskip("atroz_monitor.store.source")
    runs = tmp_path / "runs"
    mon = Monitor(runs, plan=[("P00", "Load"), ("P01", "Validate")], sample_interval=0.05)
    mon.start()
    src = srv = None
    try:
        src = source_mod.FileSource([runs])
        srv = server.start_server(src, "127.0.0.1", 0)
        open_page(driver, srv.url)
        driver.execute_script("window.__same_page = 7")
        at_load = driver.execute_script(PANELS)
        with mon.phase("P00") as p:
            p.warning("2 documents had no text layer")
            env = dict(os.environ, PYTHONPATH=str(REPO))
            code = "import atroz_monitor as m\nwith m.phase('W'):\n    pass\n"
            subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
            target = mon.snapshot()["resources"]["total"] + 3
            wait_until(lambda: mon.snapshot()["resources"]["total"] >= target, 10, "samples")
        with pytest.raises(ValueError), mon.phase("P01"), mon.phase("P01.rules"):
            raise ValueError("rule R-17")
        mon.close()
        wait_for(driver, "return document.getElementById('run-status').textContent"
                 ".includes('completed')")  # fmt: skip
        driver.switch_to.new_window("tab")
        try:
            open_page(driver, srv.url)
            wait_for(driver, "return document.getElementById('run-status').textContent"
                     ".includes('completed')")  # fmt: skip
            fresh = driver.execute_script(PANELS)
        finally:
            driver.close()
            driver.switch_to.window(driver.window_handles[0])
        assert driver.execute_script("return window.__same_page") == 7
        live: dict[str, Any] = {}

        def same() -> bool:
            live.update(driver.execute_script(PANELS))
            return live == fresh

        try:
            wait_until(same, 10, "the live page to match a fresh load")
        except AssertionError:
            assert live == fresh  # shows which panel differs
        # What a reload shows, with the figures the run recorded.
        snap = mon.snapshot()
        info = dict(row.split("\n", 1) if "\n" in row else (row, "") for row in fresh["info"])
        assert fresh["logs_count"] == ["2"]  # 1 error (counted once) + 1 warning
        assert sum("ValueError: rule R-17" in x for x in fresh["logs"]) == 1
        assert any("Processes" in row and row.endswith("2") for row in fresh["info"]), info
        total = snap["resources"]["total"]
        assert any(row.startswith("Samples") and f"{total:,}" in row for row in fresh["info"])
        assert live["info"] != at_load["info"] and live["logs"] != at_load["logs"]
        # Plan names name phases entered without one; a failed phase's exception is one of
        # its errors in the table and the detail panel, never "None recorded".
        spans = {p["phase"]: p["span"] for p in snap["phases"]}
        cells = driver.execute_script(
            """const out = {};
            for (const [k, span] of Object.entries(arguments[0])) {
              const tr = document.querySelector(`#phase-body tr[data-span="${span}"]`);
              out[k] = tr ? [...tr.children].map((td) => td.textContent.trim()) : null;
            }
            return out;""",
            spans,
        )
        assert (cells["P00"][1], cells["P01"][1]) == ("Load", "Validate")
        assert (cells["P00"][14], cells["P00"][15]) == ("1", "0")
        assert (cells["P01"][15], cells["P01.rules"][15]) == ("1", "1")
        detail = open_detail(driver, "P01")
        assert "Warnings / errors0 / 1" in detail
        assert "None recorded in this phase" not in detail
        assert "ValueError: rule R-17" in detail
        assert console_errors(driver) == []
    finally:
        mon.close()
        if srv is not None:
            srv.close()
        if src is not None:
            src.close()


def test_interrupted_phase_bar_spans_its_child_and_a_late_phase_stays_on_top(
    driver: Any, tmp_path: Path
) -> None:
    """A run killed during P03 whose child P03.pool ran 3.59 s: P03's bar is at least as wide
    as its child's and its detail reads "≥ 3.69 s"; a daemon's phase written after the run
    ended naming P00 as parent is a top-level row marked "(late)" with no share."""
    log = tmp_path / "killed.jsonl"
    evs = [
        {"ev": "run_start", "ts": 10.0, "plan": [{"id": "P00", "name": "Load"},
                                                 {"id": "P03", "name": "Pool"}]},
        {"ev": "phase_start", "ts": 10.1, "span": "1.1", "phase": "P00", "parent": None},
        {"ev": "phase_end", "ts": 10.4, "span": "1.1", "phase": "P00", "parent": None,
         "status": "completed", "duration_ms": 300.0},
        {"ev": "phase_start", "ts": 10.5, "span": "1.2", "phase": "P03", "parent": None},
        {"ev": "phase_start", "ts": 10.6, "span": "1.3", "phase": "P03.pool", "parent": "1.2"},
        {"ev": "phase_end", "ts": 14.19, "span": "1.3", "phase": "P03.pool", "parent": "1.2",
         "status": "completed", "duration_ms": 3590.0},
        {"ev": "run_end", "ts": 14.3, "status": "failed", "error": {"type": "Killed",
                                                                    "msg": "SIGKILL"}},
        {"ev": "phase_start", "ts": 15.0, "span": "9.1", "phase": "daemon", "parent": "1.1",
         "pid": 9},
    ]  # fmt: skip
    with open(log, "w") as f:
        for i, e in enumerate(evs, 1):
            f.write(json.dumps({"run": "k", "pid": 1, "seq": i, **e}) + "\n")
    data = static_data([log], "k")
    path = tmp_path / "k.html"
    path.write_text(page.render_static(data), encoding="utf-8")
    open_page(driver, path.as_uri())
    widths = driver.execute_script(
        """const w = (s) => +document.querySelector(`#gantt g[data-span="${s}"] rect`)
             .getAttribute('width');
           return [w('1.2'), w('1.3')];"""
    )
    assert widths[0] >= widths[1] > 10
    rows = table_rows(driver)
    assert rows["9.1"]["name"] == "daemon (late)"
    share = driver.execute_script(
        "return [...document.querySelector('#phase-body tr[data-span=\"9.1\"]').children]"
        "[5].textContent.trim()"
    )
    assert share == "–"
    order = driver.execute_script(
        "return [...document.querySelectorAll('#phase-body tr')].map((tr) => tr.dataset.span)"
    )
    assert order.index("9.1") > order.index("1.2")  # a root row, not P00's child
    assert "Duration≥ 3.69 s" in open_detail(driver, "P03")
    assert console_errors(driver) == []


def _fmt_ms(ms: float) -> str:
    """app.js fmtMs for 1 ms <= ms < 1 s (what these figures are)."""
    assert 1 <= ms < 1000
    return f"{math.floor(ms + 0.5)} ms"


def test_static_report_page_and_json_report_show_the_same_figures(
    driver: Any, shapes: dict[str, Any], tmp_path: Path
) -> None:
    """`report --format html` and `report --format json` of one run: the page shows the
    JSON report's P02 median and p95, P02's share of the run and the hot loop's call count."""
    rid = shapes["id"]
    html, js = tmp_path / "r.html", tmp_path / "r.json"
    for fmt, out in (("html", html), ("json", js)):
        args = ["report", str(shapes["dir"]), "--run", rid, "--format", fmt, "-o", str(out)]
        assert cli.main(args) == 0
    model = json.loads(js.read_text())
    hist = model["history"]["P02"]
    p02 = next(p for p in model["phases"] if p["phase"] == "P02")
    (agg,) = [p for p in model["phases"] if p.get("aggregate") and p["phase"] == "P00.item"]
    open_page(driver, html.as_uri())
    count = driver.execute_script(
        "return document.querySelector('#phase-body tr.agg').dataset.count"
    )
    assert int(count) == agg["count"] + sum(
        1 for p in model["phases"] if p["phase"] == "P00.item" and not p.get("aggregate")
    )
    detail = open_detail(driver, "P02")
    assert f"Earlier runs{hist['runs']}" in detail
    assert f"Median{_fmt_ms(hist['median_ms'])}" in detail
    assert f"p95{_fmt_ms(hist['p95_ms'])}" in detail
    assert f"Share of run{math.floor(p02['share_pct'] + 0.5)}%" in detail


def test_live_page_follows_the_snapshots_aggregates_and_retries(
    driver: Any, tmp_path: Path
) -> None:
    """A page left open while a hot loop of 300 calls and a retried phase run shows, without
    a reload, the aggregate row's count (300, from snapshot.aggregates) and the flow's retry
    badge (attempt 2/2, 1 failed, from flow.tries), as the server's snapshot says."""
    from atroz_monitor.store import source as source_mod
    from atroz_monitor.surface import server

    runs = tmp_path / "runs"
    mon = Monitor(runs, plan=[("P00", "Loop"), ("P01", "Train")], sample_interval=None)
    mon.start()
    src = srv = None
    try:
        src = source_mod.FileSource([runs])
        srv = server.start_server(src, "127.0.0.1", 0)
        open_page(driver, srv.url)
        driver.execute_script("window.__same_page = 9")
        wait_for(driver, "return document.querySelector('#flow li[data-phase=P00]') !== null")
        with mon.phase("P00", "Loop"):
            for _ in range(300):
                with mon.phase("P00.item", "item"):
                    pass
        for attempt in mon.attempts("P01", 2, "Train"):
            with attempt as p:
                if p.attempt == 1:
                    raise ValueError("flaky")
        wait_for(
            driver,
            "return document.querySelector('#phase-body tr.agg')?.dataset.count === '300'",
        )
        wait_for(
            driver,
            "return document.querySelector('#flow li[data-phase=P01] .tries')?.textContent"
            " === '↻ attempt 2/2 · 1 failed'",
        )
        rid = mon.run_id
        snap = src.snapshot(rid)
        (group,) = snap["aggregates"].values()
        assert [r["count"] for r in group["rows"]] == [300]
        assert next(f for f in snap["flow"] if f["id"] == "P01")["tries"] == {
            "n": 2, "of": 2, "failed": 1
        }  # fmt: skip
        assert driver.execute_script("return window.__same_page") == 9
        assert console_errors(driver) == []
    finally:
        mon.close()
        if srv is not None:
            srv.close()
        if src is not None:
            src.close()
