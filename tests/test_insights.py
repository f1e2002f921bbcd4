"""Insights through the surfaces: the API routes for comparison, trends and suggestions, and
``report --compare`` through the CLI (the pure functions are in test_charts, test_compare,
test_suggestions)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from synthetic import MIB, T0, Run

from atroz_monitor.commands import cli
from atroz_monitor.store.source import FileSource
from atroz_monitor.surface import api


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    """Two synthetic runs (B, then A) written as a log directory."""
    d = tmp_path / "logs"
    d.mkdir()
    a = Run("A")
    a.phase("P00", 0.0, 1.0, cpu_ms=900.0, peak_rss_bytes=100 * MIB, items=50)
    a.phase("P01", 1.0, 3.0, cpu_ms=1000.0)
    b = Run("B", T0 - 1000)
    b.phase("P00", 0.0, 2.0, cpu_ms=1800.0, peak_rss_bytes=50 * MIB, items=50)
    b.phase("P01", 2.0, 2.0, cpu_ms=500.0)
    for name, evs in (("b.jsonl", b.end(4.0)), ("a.jsonl", a.end(4.0))):
        (d / name).write_text("".join(json.dumps(e) + "\n" for e in evs))
    return d


def test_compare_route_serves_compare_runs(logs: Path) -> None:
    """GET /api/v1/compare?a=A&b=B is compare_runs of the two snapshots; a missing b is a
    400, an unknown run a 404."""
    src = FileSource([str(logs)])
    try:
        resp = api.route(src, "GET", "/api/v1/compare", "a=A&b=B")
        assert resp.status == 200
        body = json.loads(resp.body)
        assert (body["a"]["id"], body["b"]["id"]) == ("A", "B")
        assert body["phases"][0]["delta_pct"]["duration_ms"] == -50.0
        assert api.route(src, "GET", "/api/v1/compare", "a=A").status == 400
        assert api.route(src, "GET", "/api/v1/compare", "a=A&b=nope").status == 404
    finally:
        src.close()


def test_insights_route_serves_history_view_and_suggestions(logs: Path) -> None:
    """GET /api/v1/insights?run=A: the two runs' heatmap cells (B then A) and a list of
    suggestions; runs=0 is a 400."""
    src = FileSource([str(logs)])
    try:
        body = json.loads(api.route(src, "GET", "/api/v1/insights", "run=A").body)
        assert body["run"] == "A"
        assert [r["run"] for r in body["history"]["runs"]] == ["B", "A"]
        p00 = body["history"]["phases"][0]
        assert p00["metrics"]["duration_ms"]["values"] == [2000.0, 1000.0]
        assert body["suggestions"] == []
        assert api.route(src, "GET", "/api/v1/insights", "run=A&runs=0").status == 400
    finally:
        src.close()


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_report_compare_in_every_format(logs: Path, tmp_path: Path, capsys: Any) -> None:
    """report --run A --compare B: the comparison in text, markdown, json and html."""
    base = ["report", str(logs), "--run", "A", "--compare", "B"]
    code, out, _ = _cli(base, capsys)
    assert code == 0
    assert "compared with run B" in out
    line = next(x for x in out.splitlines() if x.strip().startswith("P00") and "-50%" in x)
    assert "1.00s" in line and "2.00s" in line
    code, out, _ = _cli([*base, "--format", "markdown"], capsys)
    assert "### Compared with run `B`" in out
    assert "| P00 | completed / completed | 1.00s | 2.00s | -50% |" in out
    code, out, _ = _cli([*base, "--format", "json"], capsys)
    model = json.loads(out)
    assert model["compare"]["b"]["id"] == "B"
    assert model["compare"]["phases"][0]["delta_pct"]["duration_ms"] == -50.0
    assert model["suggestions"] == []
    assert [r["run"] for r in model["charts"]["runs"]] == ["B", "A"]
    html = tmp_path / "r.html"
    code, _, _ = _cli([*base, "--format", "html", "-o", str(html)], capsys)
    text = html.read_text()
    assert code == 0 and '"compare":{"a":{' in text and '"insights":{' in text


def test_report_compare_with_a_log_path(logs: Path, tmp_path: Path, capsys: Any) -> None:
    """--compare PATH compares with that log's latest run."""
    other = tmp_path / "other"
    other.mkdir()
    (other / "b.jsonl").write_bytes((logs / "b.jsonl").read_bytes())
    os.remove(logs / "b.jsonl")
    code, out, _ = _cli(["report", str(logs), "--compare", str(other)], capsys)
    assert code == 0 and "compared with run B" in out


@pytest.mark.parametrize(
    ("target", "message"),
    [("A", "is the run being reported"), ("nope", "no run 'nope' in the input")],
)
def test_report_compare_bad_target_exits_2(
    logs: Path, capsys: Any, target: str, message: str
) -> None:
    """--compare naming the subject or nothing known: one line on stderr, exit 2."""
    code, out, err = _cli(["report", str(logs), "--run", "A", "--compare", target], capsys)
    assert code == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1
