"""The page with many runs (Chromium): the run picker groups, filters and pages."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from typing import Any

import pytest
from browser import chrome, console_errors, set_viewport, wait_for
from test_serve_scale import template  # noqa: F401  (the real-run fixture)

from atroz_monitor.store.source import FileSource
from atroz_monitor.surface.server import start_server

PIPELINES = [b"nightly-a", b"nightly-b", b"ci"]


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    d = chrome(tmp_path_factory.mktemp("chrome-profile"))
    try:
        yield d
    finally:
        d.quit()


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory, template: tuple[str, bytes]) -> Iterator[Any]:  # noqa: F811
    """A server over 300 runs of three pipelines."""
    d = tmp_path_factory.mktemp("many")
    rid, data = template
    for i in range(300):
        name = PIPELINES[i % 3]
        body = data.replace(b'"name":"' + rid.encode() + b'"', b'"name":"' + name + b'"')
        (d / f"run-{i:06d}.jsonl").write_bytes(body.replace(rid.encode(), b"run-%06d" % i))
    src = FileSource([d])
    srv = start_server(src, "127.0.0.1", 0)
    try:
        yield srv
    finally:
        srv.close()
        src.close()


def options(d: Any) -> list[str]:
    return list(
        d.execute_script(
            "return [...document.querySelectorAll('#run-picker option')].map((o) => o.value)"
        )
    )


def test_picker_groups_by_pipeline_filters_and_pages(
    driver: Any, many: Any, tmp_path: pathlib.Path
) -> None:
    """With 300 runs the picker lists the newest 100 grouped by pipeline name and day, offers
    the 200 older ones; a filter asks the server and lists only matching runs; "older runs"
    loads the rest; no console error."""
    set_viewport(driver, 1440, 1000)
    driver.get(many.url)
    wait_for(driver, "return document.getElementById('conn').dataset.state === 'live'", 20)
    wait_for(driver, "return document.querySelectorAll('#run-picker option').length > 100", 20)
    opts = options(driver)
    assert opts[0] == "latest" and len(opts) == 102
    assert (
        driver.execute_script(
            "return [...document.querySelectorAll('#run-picker option')].pop().textContent"
        )
        == "Older runs… (200 more)"
    )
    labels = driver.execute_script(
        "return [...document.querySelectorAll('#run-picker optgroup')].map((g) => g.label)"
    )
    assert sorted({lab.split(" · ")[0] for lab in labels}) == ["ci", "nightly-a", "nightly-b"]
    assert (
        driver.execute_script(
            "return document.querySelector('#card-completed .card-sub').textContent"
        )
        == "of 300 runs"
    )

    box = driver.find_element("id", "run-filter")
    box.send_keys("run-000123")
    wait_for(
        driver,
        "return [...document.querySelectorAll('#run-picker option')]"
        ".filter((o) => o.value.startsWith('run-')).length <= 2",
        20,
    )
    found = [o for o in options(driver) if o.startswith("run-")]
    assert "run-000123" in found
    assert set(found) <= {"run-000123", "run-000299"}  # (the run shown stays listed)

    box.clear()
    box.send_keys(" ")  # an input event with nothing to find: back to the newest runs
    wait_for(driver, "return document.querySelectorAll('#run-picker option').length === 102", 20)
    driver.execute_script(
        "const s = document.getElementById('run-picker');"
        "s.value = [...s.querySelectorAll('option')].pop().value;"
        "s.dispatchEvent(new Event('change'));"
    )
    wait_for(driver, "return document.querySelectorAll('#run-picker option').length === 301", 20)
    assert len({o for o in options(driver) if o.startswith("run-")}) == 300
    assert console_errors(driver) == []


def test_history_sparkline_is_downsampled(driver: Any, many: Any) -> None:
    """A phase with 299 earlier runs (the history route gives the latest 200) draws 120
    points for them (a mean of consecutive runs where two share one, saying which) plus
    this run: 121 circles, not 201."""
    set_viewport(driver, 1440, 1000)
    driver.get(f"{many.url}?run=run-000299")
    wait_for(driver, "return document.querySelectorAll('#flow li').length > 0", 20)
    driver.execute_script("document.querySelector('#flow li[data-phase=P00] button').click()")
    wait_for(
        driver, "return document.querySelectorAll('#detail-body .spark circle').length > 0", 20
    )
    circles = driver.execute_script(
        "return [...document.querySelectorAll('#detail-body .spark circle')]"
        ".map((c) => c.textContent)"
    )
    assert len(circles) == 121
    assert circles[0].startswith("run 1: ") and circles[1].startswith("runs 2–3 (mean): ")
    assert sum("(mean)" in c for c in circles) == 80
    assert circles[-1].startswith("this run: ")
    assert console_errors(driver) == []
