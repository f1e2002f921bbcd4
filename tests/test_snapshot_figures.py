"""One home per figure: what the snapshot computes once for every surface (page, report,
API), so that app.js and the report only render it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from atroz_monitor import Monitor
from atroz_monitor.read.loader import load_state
from atroz_monitor.read.state import KeyAgg
from atroz_monitor.view import report_model, views

T0 = 1_700_000_000.0


def write_log(path: Path, run: str, phases: list[tuple[str, str, float, float, str]]) -> None:
    """A run whose phases (span, key, start offset s, duration s, status) are all top
    level, with given times: the durations are known exactly."""
    lines: list[dict[str, Any]] = [{"ev": "run_start", "ts": T0, "run": run, "pid": 1}]
    for span, key, off, dur, status in phases:
        lines.append({"ev": "phase_start", "ts": T0 + off, "run": run, "pid": 1,
                      "span": span, "phase": key})  # fmt: skip
        lines.append({"ev": "phase_end", "ts": T0 + off + dur, "run": run, "pid": 1,
                      "span": span, "phase": key, "status": status,
                      "duration_ms": dur * 1000.0})  # fmt: skip
    end = max(off + dur for _, _, off, dur, _ in phases)
    lines.append({"ev": "run_end", "ts": T0 + end, "run": run, "pid": 1, "status": "completed"})
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))


def snap_of(path: Path, run: str) -> dict[str, Any]:
    st_, _ = load_state([path])
    return views.snapshot(st_, run, now=T0 + 100.0, alive=False)


def test_average_phase_card_is_the_mean_of_finished_top_level_phases(tmp_path: Path) -> None:
    """Top-level phases of 100, 300 and 200 ms: mean 200 ms over 3, slowest the 300 ms one."""
    log = tmp_path / "r.jsonl"
    write_log(log, "r", [("1", "A", 0.0, 0.1, "completed"), ("2", "B", 0.1, 0.3, "failed"),
                         ("3", "C", 0.4, 0.2, "completed")])  # fmt: skip
    prog = snap_of(log, "r")["progress"]
    assert prog["finished_top"] == 3
    assert prog["mean_top_ms"] == 200.0
    assert prog["slowest_top"] == {"span": "2", "phase": "B", "duration_ms": 300.0}


def test_average_phase_card_is_empty_before_any_phase_ends(tmp_path: Path) -> None:
    """A run with no phase: no mean, no slowest phase."""
    log = tmp_path / "r.jsonl"
    log.write_text(json.dumps({"ev": "run_start", "ts": T0, "run": "r", "pid": 1}) + "\n")
    prog = snap_of(log, "r")["progress"]
    assert (prog["finished_top"], prog["mean_top_ms"], prog["slowest_top"]) == (0, None, None)


def hot_loop_run(directory: Path, calls: int, failing_every: int) -> str:
    """A run whose phase P00 calls P00.item ``calls`` times (aggregated after the first
    ones); every ``failing_every``-th call raises."""
    mon = Monitor(directory, sample_interval=None, alert_rules=[], run_id="hot")
    with mon:
        with mon.phase("P00", "loop"):
            for i in range(calls):
                try:
                    with mon.phase("P00.item", "item"):
                        if i % failing_every == 0:
                            raise ValueError(i)
                except ValueError:
                    pass
    return mon.run_id


def test_aggregate_row_counts_every_call_of_a_hot_loop(tmp_path: Path) -> None:
    """2,000 calls of P00.item, every 10th failing: one aggregate row under P00 with count
    2,000 (aggregated + one by one), 200 failed, and P00's calls badge 2,000."""
    hot_loop_run(tmp_path, 2000, 10)
    st_, _ = load_state([tmp_path])
    snap = views.snapshot(st_, "hot", now=T0, alive=False)
    p00 = next(p for p in snap["phases"] if p["phase"] == "P00")
    group = snap["aggregates"][p00["span"]]
    (row,) = group["rows"]
    assert (row["phase"], row["name"], row["parent"]) == ("P00.item", "item", p00["span"])
    assert row["count"] == 2000 and group["calls"] == 2000
    assert row["aggregated"] + row["individual"] == 2000 and row["aggregated"] > 0
    assert row["individual"] == sum(
        1 for p in snap["phases"] if p["phase"] == "P00.item" and p["parent"] == p00["span"]
    )
    assert (row["failed"], row["completed"]) == (200, 1800)
    assert row["mean_ms"] == round(row["total_ms"] / 2000, 3)


def test_report_repeat_row_counts_what_the_page_aggregate_counts(tmp_path: Path) -> None:
    """The text report's repeat row and the page's aggregate row give one count and one
    failure count for the same hot loop (both counted by state.KeyAgg)."""
    hot_loop_run(tmp_path, 500, 7)
    st_, _ = load_state([tmp_path])
    model = report_model.build(st_, "hot", now=T0)
    snap = model["snapshot"]
    p00 = next(p for p in snap["phases"] if p["phase"] == "P00")
    (row,) = snap["aggregates"][p00["span"]]["rows"]
    rep = [r for r in model["phases"] if r.get("aggregate")]
    assert (
        sum(r["count"] for r in rep)
        + sum(1 for r in model["phases"] if r["phase"] == "P00.item" and not r.get("aggregate"))
        == row["count"]
        == 500
    )
    assert row["failed"] == len(range(0, 500, 7))


def test_retried_phase_groups_its_attempts_and_flow_shows_the_badge(tmp_path: Path) -> None:
    """Train fails twice then completes: one attempts group of 3 with 2 failed, the flow
    entry's badge is attempt 3/3 with 2 failed."""
    mon = Monitor(tmp_path, plan=[("P00", "Train")], sample_interval=None, alert_rules=[],
                  run_id="retry")  # fmt: skip
    with mon:
        for attempt in mon.attempts("P00", 3, "Train"):
            with attempt as p:
                if p.attempt < 3:
                    raise ValueError("flaky")
    st_, _ = load_state([tmp_path])
    snap = views.snapshot(st_, "retry", now=T0, alive=False)
    (group,) = snap["attempts"]
    spans = [p["span"] for p in snap["phases"] if p["phase"] == "P00"]
    assert group == {"phase": "P00", "parent": None, "of": 3, "failed": 2, "spans": spans}
    (flow,) = snap["flow"]
    assert flow["tries"] == {"n": 3, "of": 3, "failed": 2}
    assert (flow["attempts"], flow["failed_attempts"]) == (3, 2)


def test_flow_badge_counts_plain_repeats_of_a_planned_phase(tmp_path: Path) -> None:
    """A planned phase run twice without attempt numbers: badge 2/2, 1 failed; once: none."""
    log = tmp_path / "r.jsonl"
    write_log(log, "r", [("1", "A", 0.0, 0.1, "failed"), ("2", "A", 0.2, 0.1, "completed"),
                         ("3", "B", 0.4, 0.1, "completed")])  # fmt: skip
    lines = log.read_text().splitlines()
    start = json.loads(lines[0])
    start["plan"] = [{"id": "A"}, {"id": "B"}]
    log.write_text("\n".join([json.dumps(start), *lines[1:]]) + "\n")
    flow = {f["id"]: f for f in snap_of(log, "r")["flow"]}
    assert flow["A"]["tries"] == {"n": 2, "of": 2, "failed": 1}
    assert flow["B"]["tries"] is None


record = st.fixed_dictionaries(
    {
        "status": st.sampled_from(["completed", "failed", "cancelled", "skipped", "cached"]),
        "duration_ms": st.one_of(st.none(), st.floats(0, 1e6)),
        "cpu_ms": st.floats(0, 1e6),
        "items": st.integers(0, 1000),
    }
)


@settings(max_examples=200, deadline=None)
@given(recs=st.lists(record, max_size=30), folded_n=st.integers(0, 10_000))
def test_repeat_aggregate_counts_each_record_once(
    recs: list[dict[str, Any]], folded_n: int
) -> None:
    """repeat_aggregate: count = folded + records, each status counted once, the timed
    records' durations summed; skipped/cached never timed."""
    folded = {"count": folded_n, "completed": folded_n, "total_ms": 5.0 * folded_n}
    agg = views.repeat_aggregate(recs, folded if folded_n else None)
    assert agg.count == folded_n + len(recs)
    for s in ("failed", "cancelled", "skipped", "cached"):
        assert getattr(agg, s) == sum(1 for r in recs if r["status"] == s)
    assert agg.completed == folded_n + sum(1 for r in recs if r["status"] == "completed")
    timed = [r for r in recs if r["status"] not in ("skipped", "cached")]
    want = 5.0 * folded_n + sum(r["duration_ms"] or 0.0 for r in timed)
    assert abs(agg.total_ms - want) <= 1e-6 * max(1.0, want)
    assert isinstance(agg, KeyAgg)


def test_static_report_history_is_the_runs_before_and_with_the_same_tags(tmp_path: Path) -> None:
    """report_model.static_history for the 3rd of 4 runs: 2 earlier runs of A; with its tag
    dataset=small, 1 (the 'big' one and the later run are left out)."""
    runs = [("r1", "small", 0.1), ("r2", "big", 0.3), ("r3", "small", 0.2), ("r4", "small", 9.0)]
    for i, (rid, ds, dur) in enumerate(runs):
        log = tmp_path / f"{rid}.jsonl"
        write_log(log, rid, [(f"{rid}.1", "A", 0.0, dur, "completed")])
        lines = log.read_text().splitlines()
        first = {**json.loads(lines[0]), "ts": T0 + i * 100, "tags": {"dataset": ds}}
        rest = []
        for line in lines[1:]:
            ev = json.loads(line)
            ev["ts"] += i * 100
            rest.append(json.dumps(ev))
        log.write_text("\n".join([json.dumps(first), *rest]) + "\n")
    st_, _ = load_state([tmp_path])
    doc = report_model.static_history(st_, "r3", ["A"])
    assert doc["history"]["A"]["stats"]["duration_ms"]["count"] == 2
    assert doc["history"]["A"]["stats"]["duration_ms"]["median"] == 200.0
    same = doc["history_same_tags"]["A"]
    assert [r["run"] for r in same["runs"]] == ["r1"]
    assert same["stats"]["duration_ms"]["median"] == 100.0
    assert doc["trends_same_tags"]["A"]["duration_ms"]["direction"] == "insufficient"


def test_progress_bar_counts_the_flow_or_the_top_level_phases(tmp_path: Path) -> None:
    """No plan: the bar counts the top-level phases (2 of 3 done, one failed, C running)."""
    log = tmp_path / "r.jsonl"
    write_log(log, "r", [("1", "A", 0.0, 0.1, "completed"), ("2", "B", 0.1, 0.1, "failed")])
    lines = log.read_text().splitlines()[:-1]  # no run_end
    lines.append(json.dumps({"ev": "phase_start", "ts": T0 + 0.3, "run": "r", "pid": 1,
                             "span": "3", "phase": "C"}))  # fmt: skip
    log.write_text("\n".join(lines) + "\n")
    st_, _ = load_state([log])
    bar = views.snapshot(st_, "r", now=T0 + 0.4, alive=True)["progress"]["bar"]
    assert bar == {"done": 2, "total": 3, "pct": 66.7, "failed": True, "running": ["C"]}


def test_alerts_open_summary_counts_open_alerts_by_severity() -> None:
    """Raised and acknowledged count as open, resolved and cleared do not: 2 open, 1
    critical, 1 warning."""
    from atroz_monitor.view.alerts import open_summary

    alerts = [
        {"alert": "a", "state": "raised", "severity": "critical"},
        {"alert": "b", "state": "acknowledged", "severity": "warning"},
        {"alert": "c", "state": "acknowledged", "severity": "warning", "cleared": True},
        {"alert": "d", "state": "resolved", "severity": "critical"},
    ]
    assert open_summary(alerts) == {"open": 2, "info": 0, "warning": 1, "critical": 1}


def test_snapshot_alerts_open_matches_a_live_failed_phase_alert(tmp_path: Path) -> None:
    """A run whose phase failed under the phase_failed rule: the snapshot's alerts_open
    counts that one open alert."""
    from atroz_monitor.view.alerts import rule

    with Monitor(tmp_path, sample_interval=None, alert_rules=[rule("phase_failed")],
                 run_id="f") as m:  # fmt: skip
        try:
            with m.phase("B"):
                raise KeyError("b")
        except KeyError:
            pass
    st_, _ = load_state([tmp_path])
    snap = views.snapshot(st_, "f", now=T0, alive=False)
    assert len(snap["alerts"]) == 1
    assert snap["alerts_open"]["open"] == 1


def test_report_run_counts_counts_runs_by_status() -> None:
    """report_model.run_counts: two completed, one failed."""
    rows = [{"status": "completed"}, {"status": "failed"}, {"status": "completed"}]
    assert report_model.run_counts(rows) == {"completed": 2, "failed": 1}


def test_share_of_the_run_is_one_formula_for_phases_and_aggregates(tmp_path: Path) -> None:
    """Phases of 100 and 300 ms in a 400 ms run: shares 25.0 and 75.0 %, in the snapshot and
    in the report's slowest list."""
    log = tmp_path / "r.jsonl"
    write_log(log, "r", [("1", "A", 0.0, 0.1, "completed"), ("2", "B", 0.1, 0.3, "completed")])
    st_, _ = load_state([log])
    snap = views.snapshot(st_, "r", now=T0 + 100.0, alive=False)
    assert {p["phase"]: p["share_pct"] for p in snap["phases"]} == {"A": 25.0, "B": 75.0}
    model = report_model.build(st_, "r", now=T0 + 100.0)
    assert [(s["phase"], s["share_pct"]) for s in model["slowest"]] == [("B", 75.0), ("A", 25.0)]
    assert views.share_pct(50.0, 0.0) is None and views.share_pct(None, 10.0) is None


def test_items_rate_is_one_formula_for_snapshot_report_and_compare() -> None:
    """events.items_per_s: 500 items in 250 ms is 2,000/s; nothing without items or time."""
    from atroz_monitor.events import items_per_s

    assert items_per_s(500, 250.0) == 2000.0
    assert items_per_s(0, 250.0) is None and items_per_s(5, 0.0) is None
    assert items_per_s(1, 3.0) == 333.33
