"""The report as text and markdown (surface/report_text.py): durations in the unit that fits
with their sign, the phase table with each top-level phase's share, markdown tables that are
well formed, and nothing computed here that the model does not carry."""

from __future__ import annotations

from typing import Any

from synthetic import T0, Run, state_of

from atroz_monitor.surface import report_text
from atroz_monitor.view import report_model


def _model() -> dict[str, Any]:
    """A 4 s run: P00 1 s (25 %), P01 3 s (75 %) holding one failed sub-phase."""
    r = Run("r1")
    r.phase("P00", 0.0, 1.0)
    parent = r.phase("P01", 1.0, 3.0)
    r.phase("P01.a", 1.5, 0.5, parent=parent, status="failed",
            error={"type": "ValueError", "msg": "bad row"})  # fmt: skip
    return report_model.build(state_of(r.end(4.0)), "r1", now=T0 + 100)


def test_durations_keep_their_sign_and_fit_their_unit():
    """fmt_ms: "-516.4ms" (not "-516394us"), "+2.50s" when signed, and the unit chosen on
    the rounded value (999.96 ms is "1.00s", 59.999 s is "1m00.0s")."""
    assert report_text.fmt_ms(-516.394) == "-516.4ms"
    assert report_text.fmt_ms(-0.25) == "-250us"
    assert report_text.fmt_ms(2500.0, signed=True) == "+2.50s"
    assert report_text.fmt_ms(0.0, signed=True) == "0us"
    assert report_text.fmt_ms(999.96) == "1.00s"
    assert report_text.fmt_ms(0.9996) == "1.0ms"
    assert report_text.fmt_ms(59_999.0) == "1m00.0s"
    assert report_text.fmt_ms(-3_599_990.0) == "-1h00m"
    assert report_text.fmt_ms(-90_000.0) == "-1m30.0s"


def test_text_shows_each_phase_with_the_models_share_and_names() -> None:
    """Without colour: each phase key with its plan name, the top-level shares 25% and 75%
    from the model, the failed sub-phase marked, and no escape codes."""
    m = _model()
    text = report_text.render_text(m, color=False)
    assert "\x1b[" not in text
    lines: dict[str, str] = {}
    for ln in text.splitlines():  # the first table: phase, name, status, ..., share
        if ln.startswith(("P00", "P01")):
            lines.setdefault(ln.split()[0], ln)
    assert "Load" in lines["P00"] and "25%" in lines["P00"]
    assert "Work" in lines["P01"] and "75%" in lines["P01"]
    assert "ValueError" in text and "bad row" in text


def test_markdown_tables_have_one_cell_count_per_table() -> None:
    """Every markdown table's rows have as many cells as its header, and the phase table
    names both top-level phases."""
    md = report_text.render_markdown(_model())
    tables: list[list[str]] = []
    current: list[str] = []
    for line in [*md.splitlines(), ""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    assert tables, md
    for rows in tables:
        assert {r.count("|") for r in rows} == {rows[0].count("|")}, rows
    assert "| P00" in md and "| P01" in md
