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

from atroz_monitor import Monitor, cli, history, page, views
from atroz_monitor.loader import load_state

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
    }


def static_data(paths: list[Path], run_id: str) -> dict[str, Any]:
    """The document ``report --format html`` embeds, built from logs on disk."""
    st, stats = load_state(paths)
    now = time.time()
    snap = views.snapshot(st, run_id, now=now, quality=stats.to_dict())
    keys = sorted({p["phase"] for p in snap["phases"]})
    return {
        "snapshot": snap,
        "runs": [run_row(views.snapshot(st, rid, now=now)) for rid in st.runs],
        "history": {k: history.phase_history(st, k, before=run_id) for k in keys},
        "trends": {k: history.phase_trends(st, k, before=run_id) for k in keys},
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
    docs["evil"]["snapshot"]["alerts"] = [
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
    ]
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
    assert d.execute_script("return document.querySelectorAll('script').length") == 2
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
    assert [s.get("type") for s in p.scripts] == ["application/json", None]
    assert not any(s.get("src") for s in p.scripts) and p.styles == 1
    assert p.inline_attrs == []
    assert "</" not in p.data and "<!--" not in p.data and "<" not in p.data
    assert json.loads(p.data) == json.loads(json.dumps(data))
    assert text.count("</script>") == 2
    assert "Content-Security-Policy" in text and "connect-src 'none'" in text


def test_live_index_has_no_inline_script_or_style() -> None:
    """The served page loads everything from the same origin: no inline script, style,
    style attribute or event handler (it runs under ``default-src 'self'``)."""
    p = _Refs()
    p.feed(page.asset("index.html").decode())
    assert set(p.refs) == {"#phases-panel", "favicon.svg", "static/app.js", "static/style.css", "#"}
    assert [s.get("src") for s in p.scripts] == ["static/app.js"]
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
    """``page.asset`` serves the four packaged files with their types and nothing else."""
    assert set(page.ASSETS) == {"index.html", "app.js", "style.css", "favicon.svg"}
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
    server = pytest.importorskip("atroz_monitor.server")
    source_mod = pytest.importorskip("atroz_monitor.source")
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
    server = pytest.importorskip("atroz_monitor.server")
    source_mod = pytest.importorskip("atroz_monitor.source")
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
