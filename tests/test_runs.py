"""The read API (runs.py): ``atroz_monitor.load(paths) -> Runs`` over real demo logs and
synthetic ones; and the examples of docs/NOTEBOOKS.md, run as written."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import of_kind, phase_starts, read_log
from test_tags import LARGE, SMALL, T0, make_history, synth_run

import atroz_monitor
from atroz_monitor.commands import report
from atroz_monitor.surface.runs import PhaseView, Runs, RunView, load
from atroz_monitor.view import report_model

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "NOTEBOOKS.md"


def run_demo(out: Path) -> Path:
    """One real demo run (``demo --duration 1 --no-serve``) into ``out``; its log file."""
    before = set(out.glob("*.jsonl")) if out.exists() else set()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("ATROZ_MONITOR_LOG", None)
    env.pop("ATROZ_MONITOR_RUN", None)
    subprocess.run(
        [sys.executable, "-m", "atroz_monitor", "demo", "--duration", "1", "--no-serve"]
        + ["--out", str(out)],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    (new,) = set(out.glob("*.jsonl")) - before
    return new


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """Two demo runs, one after the other, in one directory."""
    out = tmp_path_factory.mktemp("demo")
    first = run_demo(out)
    second = run_demo(out)
    return out, [first, second]


def run_id(log: Path) -> str:
    rid: str = read_log(log)[0]["run"]
    return rid


# -- round trip of a real log -------------------------------------------------------------


def test_phase_records_match_every_phase_of_the_log(demo_dir: tuple[Path, list[Path]]) -> None:
    """Every phase_end of a demo log is one phase record with the log's duration, status,
    key, name, parent span, CPU time, items and pid; no other records."""
    out, logs = demo_dir
    runs = load(out)
    for log in logs:
        events = read_log(log)
        rid = events[0]["run"]
        ends = {e["span"]: e for e in of_kind(events, "phase_end")}
        assert len(ends) == len(phase_starts(events)) > 10
        recs = {r["span"]: r for r in runs.phase_records() if r["run"] == rid}
        assert recs.keys() == ends.keys()
        for span, e in ends.items():
            rec = recs[span]
            assert rec["duration_ms"] == e["duration_ms"]
            assert rec["status"] == e["status"] == "completed"
            assert rec["phase"] == e["phase"] and rec["name"] == e["name"]
            assert rec["parent"] == e["parent"]
            assert rec["cpu_ms"] == e["cpu_ms"]
            assert rec["items"] == e.get("items", 0)
            assert rec["pid"] == e["pid"]
            assert rec["depth"] == (0 if e["parent"] is None else recs[e["parent"]]["depth"] + 1)
        # Depth-first: a sub-phase comes after its parent.
        order = [r["span"] for r in runs[rid].to_records()]
        for span, e in ends.items():
            if e["parent"] is not None:
                assert order.index(e["parent"]) < order.index(span)


def test_run_records_hold_the_run_fields(demo_dir: tuple[Path, list[Path]]) -> None:
    """to_records(): one row per run with the log's id, name, status, times, host and the
    planned and done phase counts."""
    out, logs = demo_dir
    rows = load(out).to_records()
    assert [r["id"] for r in rows] == [run_id(log) for log in logs]
    for row, log in zip(rows, logs, strict=True):
        events = read_log(log)
        start, end = events[0], of_kind(events, "run_end")[0]
        assert row["name"] == start["name"] == "demo: document analysis"
        assert row["status"] == "completed"
        assert row["start"] == start["ts"] and row["end"] == end["ts"]
        assert row["duration_ms"] == round((end["ts"] - start["ts"]) * 1000, 3)
        assert row["host"] == start["host"]
        assert row["phases_planned"] == row["phases_done"] == len(start["plan"]) == 10
        assert row["phases"] == len(of_kind(events, "phase_end"))
        assert row["warnings"] == len(
            [e for e in of_kind(events, "log") if e["level"] == "warning"]
        )
        assert not any(k.startswith("tag.") for k in row)


def test_sequence_access_latest_and_ids(demo_dir: tuple[Path, list[Path]]) -> None:
    """Runs iterate in start order; index, id, slice, ``in`` and .latest all agree."""
    out, logs = demo_dir
    runs = load(out)
    first, second = (run_id(log) for log in logs)
    assert len(runs) == 2 and runs.ids == [first, second]
    assert [r.id for r in runs] == [first, second]
    assert runs[0].id == first and runs[-1].id == second and runs[second].id == second
    assert runs.latest is not None and runs.latest.id == second
    assert first in runs and runs[0] in runs and "nope" not in runs
    sliced = runs[1:]
    assert isinstance(sliced, Runs) and sliced.ids == [second]
    with pytest.raises(KeyError, match="no run 'nope'"):
        runs["nope"]
    assert runs.files == sorted(str(p) for p in logs)
    assert runs.quality["lines"] == sum(len(read_log(p)) for p in logs)
    assert runs.quality["corrupt"] == 0 and runs.quality["torn"] == 0


def test_run_view_is_the_report_view(demo_dir: tuple[Path, list[Path]]) -> None:
    """A RunView's snapshot, phases and critical path are those report_model.build makes from the
    same state: one set of views."""
    out, _ = demo_dir
    runs = load(out)
    run = runs.latest
    assert run is not None
    st, stats, _ = report.load([str(out)])
    model = report_model.build(st, run.id, now=runs.loaded_at, quality=runs.quality)
    assert run.snapshot["phases"] == model["snapshot"]["phases"]
    assert run.snapshot["run"] == model["run"]
    assert [p.span for p in run.critical_path()] == [c["span"] for c in model["critical_path"]]
    assert len(run.critical_path(all_levels=True)) >= len(run.critical_path())
    assert run.status == model["run"]["status"] == "completed"
    assert run.duration_ms == model["run"]["duration_ms"]
    assert run.snapshot["run"]["tags"] == {} and run.tags == {}
    # Phases are read without evaluating history (cheap over many runs): the same records.
    fresh = load(out)[run.id]
    assert [p.to_record() for p in fresh.phases] == [
        PhaseView.from_view(run.id, v).to_record() for v in model["snapshot"]["phases"]
    ]
    # The earlier demo run is the later one's history, as in the report.
    assert run.snapshot["progress"]["history_runs"] == 1


def test_phase_lookup_by_key_or_span(demo_dir: tuple[Path, list[Path]]) -> None:
    """run.phase() finds a span id, else the top-level phase with that key; KeyError else."""
    out, _ = demo_dir
    run = load(out)[0]
    p = run.phase("P03")
    assert isinstance(p, PhaseView) and p.phase == "P03" and p.depth == 0
    assert run.phase(p.span) == p
    keys = [q.phase for q in run.phases]
    sub = next(q for q in run.phases if q.depth == 1 and keys.count(q.phase) == 1)
    assert run.phase(sub.phase).span == sub.span
    with pytest.raises(KeyError, match="no phase or span 'P99'"):
        run.phase("P99")
    assert p.to_record()["duration_ms"] == p.duration_ms


def test_history_and_trends_over_two_demo_runs(demo_dir: tuple[Path, list[Path]]) -> None:
    """history(key) has one row per demo run with that run's duration; trends count both."""
    out, logs = demo_dir
    runs = load(out)
    h = runs.history("P03")
    assert h["count"] == 2
    assert [row["run"] for row in h["runs"]] == runs.ids
    assert [row["duration_ms"] for row in h["runs"]] == [r.phase("P03").duration_ms for r in runs]
    assert h["stats"]["duration_ms"]["count"] == 2
    t = runs.trends("P03")
    assert t["runs"] == 2 and set(t) >= {"duration_ms", "cpu_ms", "peak_rss_bytes"}
    assert runs.history("P03", before=runs.ids[1])["count"] == 1


def test_compare_run_against_itself_has_no_regressions(
    demo_dir: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    """The same run under another id as the baseline: every phase ok, zero delta."""
    out, logs = demo_dir
    rid = run_id(logs[1])
    copy = tmp_path / "copy.jsonl"
    copy.write_text(logs[1].read_text().replace(rid, "twin"))
    runs = load(out)
    c = runs.compare(rid, baseline=load(copy))
    assert c["regressions"] == [] and c["missing"] == [] and c["new"] == []
    assert c["baseline_runs"] == 1
    assert len(c["phases"]) == 10
    assert all(p["rule"] == "single" and p["delta"] == 0.0 for p in c["phases"].values())
    # The subject is never its own baseline, as in report --baseline.
    assert runs.compare(rid, baseline=runs.filter())["baseline_runs"] == 1
    assert runs.compare(runs[0])["baseline_runs"] == 0


def test_records_are_plain_json_values(demo_dir: tuple[Path, list[Path]]) -> None:
    """Every record is a flat dict of str/int/float/bool/None that json.dumps takes."""
    out, logs = demo_dir
    runs = load(out)
    kinds = [
        runs.to_records(),
        runs.phase_records(),
        runs.sample_records(),
        runs.alert_records(),
    ]
    for records in kinds:
        for rec in records:
            assert all(isinstance(k, str) for k in rec)
            assert all(v is None or isinstance(v, (str, int, float, bool)) for v in rec.values())
        json.dumps(records, allow_nan=False)
    samples = runs.sample_records()
    assert len(samples) == sum(len(of_kind(read_log(p), "sample")) for p in logs)
    assert all(isinstance(s["spans"], str) and s["run"] in runs for s in samples)


def test_samples_logs_and_alerts_of_a_run(tmp_path: Path) -> None:
    """RunView.samples/.logs/.alerts are the snapshot's lists; alert_records flattens them."""
    synth_run(tmp_path / "a.jsonl", "a", start=T0, durations=SMALL, alert=True)
    runs = load(tmp_path / "a.jsonl")
    run = runs["a"]
    assert run.samples == [] and run.logs == []
    (a,) = run.alerts
    assert a["alert"] == "slow:P00" and a["state"] == "raised"
    (rec,) = runs.alert_records()
    assert rec["run"] == "a" and rec["severity"] == "warning" and rec["value"] == 10.0


# -- status and liveness ------------------------------------------------------------------


def test_status_filter_and_liveness(tmp_path: Path) -> None:
    """filter(status=) uses the same status as the report: failed from run_end; a run with
    no run_end from another host is running while recent and interrupted when silent."""
    synth_run(tmp_path / "ok.jsonl", "ok", start=T0, durations=SMALL)
    synth_run(tmp_path / "bad.jsonl", "bad", start=T0 + 1, durations=SMALL, status="failed")
    synth_run(tmp_path / "cut.jsonl", "cut", start=T0 + 2, durations=SMALL, end=False)
    synth_run(tmp_path / "live.jsonl", "live", start=time.time(), durations=SMALL, end=False)
    runs = load(tmp_path)
    assert {r.id: r.status for r in runs} == {
        "ok": "completed",
        "bad": "failed",
        "cut": "interrupted",
        "live": "running",
    }
    assert runs.filter(status="failed").ids == ["bad"]
    assert runs.filter(status=["completed", "interrupted"]).ids == ["ok", "cut"]
    assert runs["bad"].phase("P01").error == {"type": "RuntimeError", "msg": "boom"}
    summary = runs.summary()
    assert summary["runs"]["total"] == 4 and summary["runs"]["failed"] == 1
    assert summary["runs"]["running"] == 1 and summary["runs"]["interrupted"] == 1
    assert runs["live"].end is None and runs["live"].duration_ms is not None


# -- bad input ----------------------------------------------------------------------------


def test_missing_path_raises_file_not_found(tmp_path: Path) -> None:
    """A path that does not exist: FileNotFoundError naming it (not report's error)."""
    with pytest.raises(FileNotFoundError) as err:
        load(tmp_path / "nope.jsonl")
    assert err.value.filename == str(tmp_path / "nope.jsonl")
    assert not isinstance(err.value, report_model.ReportError)


def test_input_without_runs_raises_value_error(tmp_path: Path) -> None:
    """No logs in a directory, or a file with no events: ValueError saying so."""
    with pytest.raises(ValueError, match=r"no run logs \(\*\.jsonl, \*\.jsonl\.gz\) in"):
        load(tmp_path)
    junk = tmp_path / "junk.jsonl"
    junk.write_text("not json\n{}\n")
    with pytest.raises(ValueError, match=r"no atroz_monitor events in .*2 line\(s\) read"):
        load([junk])
    with pytest.raises(ValueError, match="no run logs"):
        load([])


def test_bad_arguments_raise(tmp_path: Path) -> None:
    """An unknown metric or a negative threshold in compare: ValueError."""
    synth_run(tmp_path / "a.jsonl", "a", start=T0, durations=SMALL)
    synth_run(tmp_path / "b.jsonl", "b", start=T0 + 1, durations=LARGE)
    runs = load(tmp_path)
    with pytest.raises(ValueError, match="metric must be one of duration, cpu, rss"):
        runs.compare("b", metric="speed")
    with pytest.raises(ValueError, match="threshold must be >= 0"):
        runs.compare("b", threshold=-1)
    assert runs.compare("b", metric="cpu")["regressions"] == ["P00", "P01"]


def test_read_api_is_exported_and_imported_lazily() -> None:
    """atroz_monitor.load and the result types are public; `import atroz_monitor` alone does
    not import the report machinery (a recording pipeline does not pay for it)."""
    assert atroz_monitor.load is load
    assert atroz_monitor.Runs is Runs and atroz_monitor.RunView is RunView
    assert atroz_monitor.PhaseView is PhaseView
    assert {"load", "Runs", "RunView", "PhaseView"} <= set(atroz_monitor.__all__)
    code = "import sys, atroz_monitor; print('atroz_monitor.commands.report' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
    with pytest.raises(AttributeError):
        atroz_monitor.no_such_name  # noqa: B018


# -- docs/NOTEBOOKS.md --------------------------------------------------------------------


def doc_blocks() -> list[str]:
    """The ```python blocks of docs/NOTEBOOKS.md, in order."""
    return re.findall(r"^```python\n(.*?)^```", DOC.read_text(encoding="utf-8"), re.S | re.M)


def run_doc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, pandas: bool) -> dict[str, Any]:
    """Execute the doc's blocks in one namespace, as a notebook would, from a directory
    holding the ``atroz-runs/`` the doc reads (tagged runs and a real demo run)."""
    runs_dir = tmp_path / "atroz-runs"
    make_history(runs_dir)
    run_demo(runs_dir)
    monkeypatch.chdir(tmp_path)
    ns: dict[str, Any] = {"__name__": "__notebook__"}
    ran = 0
    for block in doc_blocks():
        if "import pandas" in block and not pandas:
            continue
        exec(compile(block, str(DOC), "exec"), ns)  # noqa: S102 - the doc is ours
        ran += 1
    assert ran >= 5
    return ns


def test_notebook_doc_examples_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every stdlib example of docs/NOTEBOOKS.md runs as written on a real log directory
    and finds what the doc says it finds."""
    ns = run_doc(tmp_path, monkeypatch, pandas=False)
    out = capsys.readouterr().out
    assert "subject" in out and "dataset=large" in out
    runs = ns["runs"]
    assert isinstance(runs, Runs) and len(runs) == 6
    assert ns["like_with_like"]["regressions"] == []
    assert ns["against_all"]["regressions"] == ["P00", "P01"]


def test_notebook_doc_pandas_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pandas examples of docs/NOTEBOOKS.md run as written (when pandas is installed:
    atroz_monitor never depends on it)."""
    pytest.importorskip("pandas")
    ns = run_doc(tmp_path, monkeypatch, pandas=True)
    table = ns["durations"]
    assert list(table.columns[:2]) == ["P00", "P01"]
    assert table.loc["subject", "P00"] == 104.0
