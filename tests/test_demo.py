"""The demo pipeline (demo.py): its normal run has no suggestion, it finds its history by
name, and prints the suggestions a slower run earns."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from synthetic import Run

from atroz_monitor import Monitor
from atroz_monitor.commands import demo
from atroz_monitor.read.loader import load_state
from atroz_monitor.view import charts, suggestions, views


def test_demo_normal_run_has_no_suggestion(tmp_path: Path) -> None:
    """The demo pipeline, completed in a fresh directory: every rule stays silent."""
    plan = [(k, name) for k, name, _ in demo.PLAN]
    mon = Monitor(tmp_path / "runs", plan=plan, sample_interval=0.1, capture=False)
    with mon:
        demo.run_pipeline(mon, 6.0, None, str(tmp_path / "out"))
    st, _ = load_state([tmp_path / "runs"])
    snap = views.snapshot(st, mon.run_id, now=time.time())
    assert snap["run"]["status"] == "completed"
    got = suggestions.suggest(snap, charts.rows_from_state(st, mon.run_id))
    assert [(g["rule"], g["phase"], g["finding"]) for g in got] == []


def test_demo_counts_its_earlier_runs_by_name_only(tmp_path: Path) -> None:
    """The demo's index grows with the logs already there (parts are no extra run)."""
    for name in ("a.jsonl", "b.jsonl.gz", "b.part2.jsonl", "notes.txt"):
        (tmp_path / name).write_text("")
    assert demo._earlier_runs(str(tmp_path)) == 2
    assert demo._earlier_runs(str(tmp_path / "missing")) == 0


def test_demo_picks_the_newest_other_logs(tmp_path: Path) -> None:
    """The demo's history for its suggestions: the n newest logs by name, not its own, no
    parts."""
    for name in ("20260101-a.jsonl", "20260102-b.jsonl", "20260102-b.part2.jsonl",
                 "20260103-c.jsonl", "20260104-own.jsonl"):  # fmt: skip
        (tmp_path / name).write_text("")
    own = str(tmp_path / "20260104-own.jsonl")
    got = demo._recent_logs(str(tmp_path), own, 2)
    assert [os.path.basename(p) for p in got] == ["20260102-b.jsonl", "20260103-c.jsonl"]


def test_demo_prints_suggestions_against_its_history(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Five earlier runs whose P05 took 20-100 ms: a demo run (P05 of about 300 ms) prints
    its history line and the getting_slower suggestion for P05 after its summary."""
    out = tmp_path / "runs"
    out.mkdir()
    now = time.time()
    for i in range(5):
        r = Run(f"20000101-00000{i}-old", now - 1000 * (5 - i), plan=[{"id": "P05"}])
        r.phase("P05", 0.0, 0.02 + 0.02 * i)
        (out / f"20000101-00000{i}-old.jsonl").write_text(
            "".join(json.dumps(e) + "\n" for e in r.end(0.1))
        )
    assert demo.main(duration=2.0, out=str(out), interval=0.2) == 0
    text = capsys.readouterr().out
    assert f"history: 5 earlier run(s) in {out}" in text
    assert "getting_slower: P05 (Cross-Referencing) got slower run after run" in text


def test_the_plan_shares_add_up_to_the_whole_duration() -> None:
    """The ten phases' shares of --duration sum to 1, so the run lasts about --duration."""
    assert [k for k, _, _ in demo.PLAN] == [f"P0{i}" for i in range(10)]
    assert sum(share for _, _, share in demo.PLAN) == pytest.approx(1.0)


def test_burn_spends_real_cpu() -> None:
    """_burn(0.05) does hashing steps and uses CPU the process clock sees (the work is CPU,
    not sleep; how much depends on the machine's load, so no share is asserted)."""
    c0 = time.process_time()
    steps = demo._burn(0.05)
    assert steps > 0
    assert time.process_time() - c0 > 0


def test_main_with_fail_returns_1_and_leaves_the_later_phases_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """main(fail="P02") in-process: exit code 1, the message on stderr, P02 failed with
    DemoFailure, P03-P09 never started, the run failed; its artifacts are on disk."""
    out = tmp_path / "runs"
    assert demo.main(duration=1.0, fail="P02", out=str(out), interval=0.2) == 1
    assert "the pipeline failed as asked: P02: validation rule R-17" in capsys.readouterr().err
    (log,) = [p for p in out.iterdir() if p.name.endswith(".jsonl")]
    evs = [json.loads(line) for line in log.read_text().splitlines()]
    tops = {e["phase"]: e for e in evs if e["ev"] == "phase_end" and "." not in e["phase"]}
    assert sorted(tops) == ["P00", "P01", "P02"]
    assert tops["P02"]["status"] == "failed" and tops["P02"]["error"]["type"] == "DemoFailure"
    assert evs[-1]["ev"] == "run_end" and evs[-1]["status"] == "failed"
    arts = [e["path"] for e in evs if e["ev"] == "artifact"]
    assert arts and all(os.path.isfile(a) for a in arts)
