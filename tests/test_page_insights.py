"""The page's insights panels in headless Chromium: suggestions, trends, the heatmap and the
comparison of two runs, in the static report and live over the HTTP server."""

from __future__ import annotations

import json
import urllib.parse
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
)
from synthetic import MIB, T0, Run

from atroz_monitor.commands import cli
from atroz_monitor.read.loader import load_state
from atroz_monitor.surface import page
from atroz_monitor.view import charts, suggestions

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
EVIL = "<img src=x onerror=alert(1)>"
ALERT_TRAP = "window.__alerts = []; window.alert = (m) => { window.__alerts.push(String(m)); };"
RUNS = 6


def write_history(d: Path) -> list[str]:
    """Six runs, one a second apart: P00 slower and bigger each run (1.0 to 2.0 s, 100 to
    200 MiB), P01 steady at 0.5 s, and a phase keyed with markup. Run ids, oldest first."""
    d.mkdir(parents=True)
    ids = []
    for i in range(RUNS):
        rid = f"run{i}"
        plan = [{"id": "P00", "name": "Load"}, {"id": "P01", "name": "Work"}, {"id": EVIL}]
        r = Run(rid, T0 + i * 100, plan=plan)
        secs = 1.0 + 0.2 * i
        r.phase("P00", 0.0, secs, cpu_ms=secs * 500, peak_rss_bytes=(100 + 20 * i) * MIB)
        r.phase("P01", secs, 0.5, cpu_ms=250.0, items=100, peak_rss_bytes=50 * MIB)
        r.phase(EVIL, secs + 0.5, 0.1, peak_rss_bytes=10 * MIB)
        (d / f"{rid}.jsonl").write_text("".join(json.dumps(e) + "\n" for e in r.end(secs + 0.6)))
        ids.append(rid)
    return ids


@pytest.fixture(scope="module")
def history_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    d = tmp_path_factory.mktemp("insights") / "runs"
    return d, write_history(d)


@pytest.fixture(scope="module")
def static_report(history_dir: tuple[Path, list[str]]) -> Path:
    """``report --format html --compare run0`` of the newest run."""
    d, ids = history_dir
    out = d.parent / "report.html"
    assert (
        cli.main(["report", str(d), "--format", "html", "--compare", ids[0], "-o", str(out)]) == 0
    )
    return out


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    d = chrome(tmp_path_factory.mktemp("chrome-profile"))
    d.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": ALERT_TRAP})
    try:
        yield d
    finally:
        d.quit()


def open_page(d: Any, url: str, width: int = 1440) -> None:
    reset_viewport(d)
    set_viewport(d, width, 1000)
    d.get("about:blank")
    console_errors(d)
    requested_urls(d)
    d.get(url)
    wait_for(d, "return document.querySelectorAll('svg.heat rect.cell').length > 0")


def heat_cells(d: Any) -> list[dict[str, str]]:
    return list(
        d.execute_script(
            "return [...document.querySelectorAll('svg.heat rect.cell')].map((r) => ({"
            "key: r.dataset.key, run: r.dataset.run, level: r.dataset.level}))"
        )
    )


def expected_view(d: Path, subject: str) -> dict[str, Any]:
    st, _ = load_state([d])
    return charts.history_view(charts.rows_from_state(st, subject))


def test_static_heatmap_cells_carry_the_python_levels(
    driver: Any, static_report: Path, history_dir: tuple[Path, list[str]]
) -> None:
    """One cell per phase and run, each with the level charts.history_view computed (P00:
    log2(1.0 / 1.5) ... log2(2.0 / 1.5) over six runs); a markup name is text, nothing ran."""
    d, ids = history_dir
    open_page(driver, static_report.as_uri())
    view = expected_view(d, ids[-1])
    want = [
        {"key": p["key"], "run": r["run"], "level": "" if lv is None else str(lv)}
        for p in view["phases"]
        for r, lv in zip(view["runs"], p["metrics"]["duration_ms"]["level"], strict=True)
    ]
    got = heat_cells(driver)
    # JavaScript prints -1.0 as "-1" and 0.0 as "0".
    assert [(c["key"], c["run"], float(c["level"] or "nan")) for c in got if c["level"]] == [
        (c["key"], c["run"], float(c["level"])) for c in want if c["level"]
    ]
    assert len(got) == 3 * RUNS
    p00 = [float(c["level"]) for c in got if c["key"] == "P00"]
    assert p00[0] == pytest.approx(-0.585, abs=0.001) and p00[-1] == pytest.approx(0.415, abs=0.001)
    labels = driver.execute_script(
        "return [...document.querySelectorAll('svg.heat .heat-label title')]"
        ".map((t) => t.textContent)"
    )
    assert f"{EVIL} {EVIL}" in labels
    assert driver.execute_script("return window.__alerts") == []
    assert driver.execute_script("return document.querySelectorAll('img').length") == 0


def test_static_heatmap_metric_switch_redraws_with_rss(
    driver: Any, static_report: Path, history_dir: tuple[Path, list[str]]
) -> None:
    """Choosing "peak RSS" redraws the cells with the RSS levels (P00 100 to 200 MiB)."""
    d, ids = history_dir
    open_page(driver, static_report.as_uri())
    driver.execute_script(
        "const s = document.getElementById('heat-metric'); s.value = 'peak_rss_bytes';"
        "s.dispatchEvent(new Event('change'));"
    )
    view = expected_view(d, ids[-1])
    want = [str(v) for v in view["phases"][0]["metrics"]["peak_rss_bytes"]["level"]]
    got = [c["level"] for c in heat_cells(driver) if c["key"] == "P00"]
    assert [float(x) for x in got] == [float(x) for x in want]
    tip = driver.execute_script(
        "return document.querySelector('svg.heat rect.cell[data-key=P00] title').textContent"
    )
    assert tip == "P00 · run run0: 100.0 MiB (0.67× the median 150.0 MiB)"


def test_static_trends_show_each_phase_with_its_latest_figures(
    driver: Any, static_report: Path
) -> None:
    """A trend row per phase: P00's latest duration 2.00 s rising, peak RSS 200.0 MiB."""
    open_page(driver, static_report.as_uri())
    rows = driver.execute_script(
        "return [...document.querySelectorAll('.trend-row')].map((r) => ["
        "r.dataset.key, [...r.querySelectorAll('.trend-fig')].map((f) => f.textContent)])"
    )
    assert [r[0] for r in rows] == ["P00", "P01", EVIL]
    assert rows[0][1][0].startswith("duration 2.00 s rising")
    assert rows[0][1][1].startswith("peak RSS 200.0 MiB rising")
    assert rows[1][1][0] == "duration 500 ms stable 0%/run"


def test_static_suggestions_list_the_rules_with_their_evidence(
    driver: Any, static_report: Path, history_dir: tuple[Path, list[str]]
) -> None:
    """The suggestions panel lists what suggestions.suggest returns for the run, finding
    text and all (P00 slower and growing run after run)."""
    d, ids = history_dir
    open_page(driver, static_report.as_uri())
    st, _ = load_state([d])
    from atroz_monitor.view import views

    snap = views.snapshot(st, ids[-1], now=T0 + 10_000)
    want = suggestions.suggest(snap, charts.rows_from_state(st, ids[-1]))
    assert [s["rule"] for s in want] == ["getting_slower", "growing_memory"]
    got = driver.execute_script(
        "return [...document.querySelectorAll('#suggestions li.suggestion')].map((li) => ["
        "li.dataset.rule, li.querySelector('.msg').textContent])"
    )
    assert got == [[s["rule"], s["finding"]] for s in want]
    assert (
        driver.execute_script("return document.getElementById('suggest-count').textContent") == "2"
    )


def test_static_comparison_shows_deltas_and_one_time_axis(driver: Any, static_report: Path) -> None:
    """--compare run0: the table's P00 row reads 2.00 s against 1.00 s (+100%), and the two
    timelines share one axis (run5's P00 bar twice as wide as run0's)."""
    open_page(driver, static_report.as_uri())
    assert driver.execute_script("return document.getElementById('compare-panel').hidden") is False
    row = driver.execute_script(
        "return [...document.querySelector('.compare-table tr[data-key=P00]').cells]"
        ".map((c) => c.textContent)"
    )
    assert row[0] == "P00" and row[2:5] == ["2.00 s", "1.00 s", "+100%"]
    widths = driver.execute_script(
        "return ['a', 'b'].map((s) => Number(document.querySelector("
        "`.cmp-gantt rect[data-side=${s}][data-key=P00]`).getAttribute('width')))"
    )
    assert widths[0] == pytest.approx(2 * widths[1], rel=0.01)
    picker = driver.execute_script(
        "return [...document.getElementById('compare-picker').options].map((o) => o.value)"
    )
    assert picker == ["", "run0"]
    assert console_errors(driver) == []
    assert [u for u in requested_urls(driver) if not u.startswith(("file:", "data:"))] == []


def test_static_insights_fit_390px_and_screenshot(driver: Any, static_report: Path) -> None:
    """At 390 px the page does not overflow sideways with the insights panels shown; a
    full-page screenshot is kept in test-artifacts/."""
    open_page(driver, static_report.as_uri(), width=390)
    widths = driver.execute_script(
        "return [window.innerWidth, document.documentElement.scrollWidth]"
    )
    assert widths == [390, 390]
    heat = driver.execute_script(
        "return document.querySelector('svg.heat').getBoundingClientRect().right"
    )
    assert heat <= 390
    full_page_screenshot(driver, ARTIFACTS / "page-insights-390.png", 390)
    assert (ARTIFACTS / "page-insights-390.png").read_bytes()[:4] == b"\x89PNG"


def test_insights_js_never_parses_html() -> None:
    """insights.js inserts text only as text: no innerHTML and the like, strict mode."""
    js = page.asset("insights.js").decode()
    assert js.startswith('"use strict";')
    for banned in (".innerHTML", ".outerHTML", ".insertAdjacentHTML", "document.write", "eval("):
        assert banned not in js, banned


# ---------------------------------------------------------------------------- live
@pytest.fixture(scope="module")
def live_server(history_dir: tuple[Path, list[str]]) -> Iterator[Any]:
    from atroz_monitor.store.source import FileSource
    from atroz_monitor.surface import server

    src = FileSource([str(history_dir[0])])
    srv = server.start_server(src, "127.0.0.1", 0)
    try:
        yield srv
    finally:
        srv.close()
        src.close()


def test_live_compare_by_url_and_from_the_picker(
    driver: Any, live_server: Any, history_dir: tuple[Path, list[str]]
) -> None:
    """``/?run=run5&compare=run0`` opens the comparison; choosing run3 in the picker
    compares with it and puts ``compare=run3`` in the address; clicking run1's heatmap cell
    compares with run1."""
    _, ids = history_dir
    open_page(driver, f"{live_server.url}?run={ids[-1]}&compare={ids[0]}")
    wait_for(driver, "return document.querySelectorAll('.compare-table tbody tr').length > 0")
    assert driver.execute_script("return document.getElementById('compare-sub').textContent") == (
        "this run against run0"
    )
    driver.execute_script(
        "const s = document.getElementById('compare-picker'); s.value = 'run3';"
        "s.dispatchEvent(new Event('change'));"
    )
    wait_for(
        driver,
        "return document.getElementById('compare-sub').textContent === 'this run against run3'",
    )
    query = urllib.parse.parse_qs(urllib.parse.urlparse(driver.current_url).query)
    assert query == {"run": [ids[-1]], "compare": ["run3"]}
    row = driver.execute_script(
        "return [...document.querySelector('.compare-table tr[data-key=P00]').cells]"
        ".map((c) => c.textContent)"
    )
    assert row[2:5] == ["2.00 s", "1.60 s", "+25%"]
    driver.execute_script(
        "document.querySelector('svg.heat rect.cell[data-key=P00][data-run=run1]')"
        ".dispatchEvent(new MouseEvent('click'))"
    )
    wait_for(
        driver,
        "return document.getElementById('compare-sub').textContent === 'this run against run1'",
    )
    urls = requested_urls(driver)
    assert any("/api/v1/compare?a=run5&b=run3" in u for u in urls)
    assert any("/api/v1/insights?run=run5" in u for u in urls)
    assert console_errors(driver) == []


def test_live_without_compare_hides_the_panel(
    driver: Any, live_server: Any, history_dir: tuple[Path, list[str]]
) -> None:
    """No ``compare=``: no comparison panel, the picker offers the five other runs."""
    _, ids = history_dir
    open_page(driver, f"{live_server.url}?run={ids[-1]}")
    assert driver.execute_script("return document.getElementById('compare-panel').hidden") is True
    options = driver.execute_script(
        "return [...document.getElementById('compare-picker').options].map((o) => o.value)"
    )
    assert sorted(options) == ["", "run0", "run1", "run2", "run3", "run4"]
    assert len(heat_cells(driver)) == 3 * RUNS


def test_live_suggestions_arrive_when_the_run_ends(driver: Any, tmp_path: Path) -> None:
    """A run watched live after five runs of a slowing P00: while it runs the suggestions
    panel says they come at the end; when it ends (an SSE update, no reload) the page fetches
    the insights again and lists "getting_slower" for P00."""
    import time

    from atroz_monitor import Monitor
    from atroz_monitor.store.source import FileSource
    from atroz_monitor.surface import server

    runs = tmp_path / "runs"
    runs.mkdir()
    now = time.time()
    for i, secs in enumerate((0.10, 0.12, 0.14, 0.16, 0.18)):
        r = Run(f"old{i}", now - 1000 * (6 - i), plan=[{"id": "P00", "name": "Load"}])
        r.phase("P00", 0.0, secs)
        (runs / f"old{i}.jsonl").write_text("".join(json.dumps(e) + "\n" for e in r.end(secs)))
    mon = Monitor(runs, plan=[("P00", "Load")], sample_interval=0.2, alert_rules=[])
    mon.start()
    src = FileSource([str(runs)])
    srv = server.start_server(src, "127.0.0.1", 0)
    try:
        mon.start_phase("P00", name="Load")
        open_page(driver, f"{srv.url}?run={mon.run_id}")
        driver.execute_script("window.__same_page = 7")
        wait_for(driver, "return document.querySelector('#suggestions li')?.textContent")
        assert (
            driver.execute_script("return document.querySelector('#suggestions li').textContent")
            == "Suggestions come when the run is over."
        )
        time.sleep(0.25)  # the phase's work: slower than every earlier run
        mon.complete_phase("P00")
        mon.close()
        wait_for(
            driver,
            "return document.querySelector('#suggestions li.suggestion')?.dataset.rule"
            " === 'getting_slower'",
            20,
        )
        assert driver.execute_script("return window.__same_page") == 7
        assert console_errors(driver) == []
    finally:
        mon.close()
        srv.close()
        src.close()
