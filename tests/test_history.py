"""History views over reducer state: rows per run, statistics, trends, ETA, summary."""

from __future__ import annotations

import statistics

from atroz_monitor.read import state as S
from atroz_monitor.view import history, views


def _run(st, rid, t0, durations, plan=("A", "B", "C"), end=True, running=None):
    """A synthetic run: phases of the given durations (s) back to back from t0."""
    apply = S.apply
    seq = iter(range(1, 10_000))
    apply(
        st,
        {
            "ev": "run_start",
            "run": rid,
            "pid": 1,
            "seq": next(seq),
            "ts": t0,
            "v": 1,
            "plan": [{"id": k, "name": k} for k in plan],
        },
    )
    t = t0
    for k, d in durations.items():
        apply(
            st,
            {
                "ev": "phase_start",
                "run": rid,
                "pid": 1,
                "seq": next(seq),
                "ts": t,
                "span": f"{rid}.{k}",
                "phase": k,
                "name": k,
                "parent": None,
            },
        )
        apply(
            st,
            {
                "ev": "phase_end",
                "run": rid,
                "pid": 1,
                "seq": next(seq),
                "ts": t + d,
                "span": f"{rid}.{k}",
                "phase": k,
                "name": k,
                "parent": None,
                "status": "completed",
                "duration_ms": d * 1000,
                "cpu_ms": d * 500,
                "items": 10,
            },
        )
        t += d
    if running is not None:
        k, items, total, *at = running  # at: seconds into the phase of the progress line
        apply(
            st,
            {
                "ev": "phase_start",
                "run": rid,
                "pid": 1,
                "seq": next(seq),
                "ts": t,
                "span": f"{rid}.{k}",
                "phase": k,
                "name": k,
                "parent": None,
            },
        )
        apply(
            st,
            {
                "ev": "progress",
                "run": rid,
                "pid": 1,
                "seq": next(seq),
                "ts": t + (at[0] if at else 0.0),
                "span": f"{rid}.{k}",
                "phase": k,
                "items": items,
                "total": total,
            },
        )
    if end:
        apply(
            st,
            {
                "ev": "run_end",
                "run": rid,
                "pid": 1,
                "seq": next(seq),
                "ts": t,
                "status": "completed",
            },
        )
    return t


def test_phase_history_rows_and_statistics():
    """One row per earlier run with the key; statistics over completed rows."""
    st = S.State()
    durs = [1.0, 2.0, 3.0, 4.0, 10.0]
    for i, d in enumerate(durs):
        _run(st, f"r{i}", 100.0 * i, {"A": d})
    h = history.phase_history(st, "A")
    assert [r["run"] for r in h["runs"]] == ["r0", "r1", "r2", "r3", "r4"]
    assert [r["duration_ms"] for r in h["runs"]] == [1000.0, 2000.0, 3000.0, 4000.0, 10000.0]
    d = h["stats"]["duration_ms"]
    assert d["count"] == 5 and d["median"] == 3000.0 and d["max"] == 10000.0
    assert d["mean"] == statistics.mean([x * 1000 for x in durs])
    assert h["stats"]["items_per_s"]["min"] == 1.0  # 10 items in 10 s
    before = history.phase_history(st, "A", before="r2")
    assert [r["run"] for r in before["runs"]] == ["r0", "r1"]


def test_trends_read_slower_faster_stable():
    """A key getting 10% slower each run trends "slower"; a steady one "stable"."""
    st = S.State()
    for i in range(8):
        _run(st, f"r{i}", 100.0 * i, {"A": 1.0 * 1.1**i, "B": 2.0})
    assert history.phase_trends(st, "A")["duration_ms"]["direction"] == "slower"
    assert history.phase_trends(st, "B")["duration_ms"]["direction"] == "stable"
    assert history.phase_trends(st, "A")["items_per_s"]["direction"] == "slower"


def test_eta_from_history_is_exact_on_known_durations():
    """A running run with history: ETA = remaining medians + the running phase's rest."""
    st = S.State()
    for i in range(3):
        _run(st, f"r{i}", 100.0 * i, {"A": 2.0, "B": 4.0, "C": 6.0})
    t = _run(st, "now", 1000.0, {"A": 2.0}, end=False, running=("B", 0, None))
    snap = views.snapshot(st, "now", now=t + 1.0, alive=True)
    p = snap["progress"]
    assert p["done"] == 1 and p["planned"] == 3
    assert p["eta_s"] == 3.0 + 6.0  # B: 4 s median, 1 s in; C: 6 s
    assert p["eta_basis"] == "history" and p["missing_history"] == []
    assert abs(p["pct_weighted"] - 2.0 / 12.0 * 100) < 1e-9  # A's 2 s of the 12 s medians


def test_eta_from_items_rate_and_without_history():
    """With set_total, the running phase's rest comes from its items rate; a remaining
    phase with no history makes the ETA null and named."""
    st = S.State()
    _run(st, "r0", 0.0, {"A": 2.0, "B": 4.0})  # no history for C
    t = _run(st, "now", 1000.0, {"A": 2.0}, end=False, running=("B", 25, 100))
    snap = views.snapshot(st, "now", now=t + 5.0, alive=True)
    assert snap["progress"]["eta_s"] is None
    assert snap["progress"]["missing_history"] == ["C"]
    st2 = S.State()
    _run(st2, "r0", 0.0, {"A": 2.0, "B": 4.0, "C": 6.0})
    t = _run(st2, "now", 1000.0, {"A": 2.0}, end=False, running=("B", 25, 100, 5.0))
    snap = views.snapshot(st2, "now", now=t + 5.0, alive=True)
    assert snap["progress"]["eta_s"] == 15.0 + 6.0  # 5 s for 25 of 100 items, then C
    assert snap["progress"]["eta_basis"] == "mixed"


def _steady_phase(total_s: float, total: int, every_s: float) -> list[dict]:
    """A run whose one planned phase processes ``total`` items at a steady rate over
    ``total_s`` seconds, reported by progress lines at most every ``every_s`` seconds
    (as add_items writes them); the times are given, nothing sleeps."""
    t0 = 1000.0
    rate = total / total_s
    evs = [
        {"ev": "run_start", "ts": t0, "plan": [{"id": "B", "name": "B"}]},
        {"ev": "phase_start", "ts": t0, "span": "1.1", "phase": "B", "parent": None},
        {"ev": "progress", "ts": t0, "span": "1.1", "phase": "B", "items": 0, "total": total},
    ]
    t = every_s
    while t < total_s:
        evs.append({"ev": "progress", "ts": t0 + t, "span": "1.1", "phase": "B",
                    "items": round(rate * t), "total": total})  # fmt: skip
        t += every_s
    for i, e in enumerate(evs, 1):
        e.update(run="now", pid=1, seq=i)
    return evs


def test_items_eta_is_within_10_percent_and_does_not_swing():
    """A 2 s phase with 100 items/s reported every 0.5 s, read every 50 ms from the first
    count past 20%: the median relative error of the ETA is at most 10% (here 0, the rate
    being steady) and the ETA never rises between two reads (the old one divided the last
    count by the time elapsed now: up to 81% high, swinging at each progress line)."""
    evs = _steady_phase(2.0, 200, 0.5)
    t0 = evs[0]["ts"]
    st = S.State()
    errs, etas = [], []
    now, read = 0.5, 0
    while now < 1.96:
        # What a live reader has read by then: the lines written up to now.
        while read < len(evs) and evs[read]["ts"] - t0 <= now + 1e-9:
            S.apply(st, evs[read])
            read += 1
        eta = views.snapshot(st, "now", now=t0 + now, alive=True)["progress"]["eta_s"]
        truth = 2.0 - now
        errs.append(abs(eta - truth) / truth)
        etas.append(eta)
        now += 0.05
    assert len(errs) == 30
    assert statistics.median(errs) <= 0.10
    assert max(errs) < 1e-6
    assert all(b <= a + 1e-9 for a, b in zip(etas, etas[1:], strict=False))


def test_anomaly_flags_an_outlier_duration():
    """A phase 10x its usual duration is flagged as an anomaly against history."""
    st = S.State()
    for i in range(6):
        _run(st, f"r{i}", 100.0 * i, {"A": 1.0 + 0.01 * i})
    _run(st, "now", 1000.0, {"A": 10.0})
    snap = views.snapshot(st, "now", now=2000.0)
    assert [(a["phase"], a["direction"]) for a in snap["anomalies"]] == [("A", "worse")]
    assert snap["anomalies"][0]["z"] > 3.5


def test_summary_counts_runs_alerts_and_averages():
    """summary() counts runs by status and open alerts by severity, and averages keys."""
    st = S.State()
    _run(st, "r0", 0.0, {"A": 1.0})
    _run(st, "r1", 10.0, {"A": 3.0}, end=False)
    S.apply(
        st,
        {
            "ev": "alert",
            "run": "r1",
            "pid": 1,
            "ts": 11.0,
            "alert": "x",
            "rule": "rss",
            "severity": "critical",
            "state": "raised",
        },
    )
    s = history.summary(st, {"r1": "running"})
    assert s["runs"] == {
        "total": 2,
        "active": 1,
        "running": 1,
        "completed": 1,
        "failed": 0,
        "interrupted": 0,
        "cancelled": 0,
    }
    assert s["alerts"]["open"] == 1 and s["alerts"]["critical"] == 1
    assert s["phases"]["A"] == {"count": 2, "mean_ms": 2000.0}


def test_history_of_a_thousand_runs_is_bounded_work():
    """1,000 runs x 10 phases: history and trends of every key complete (figures in
    benchmarks, not here)."""
    st = S.State()
    keys = [f"P{i}" for i in range(10)]
    for r in range(1000):
        _run(st, f"r{r:04d}", float(r * 100), {k: 1.0 + (r % 7) * 0.01 for k in keys}, plan=keys)
        st.compact(f"r{r:04d}")
    for k in keys:
        assert history.phase_history(st, k)["count"] == 1000
        assert history.phase_trends(st, k)["duration_ms"]["runs"] == 10


def test_mean_duration_leaves_skipped_and_cached_repeats_out():
    """A key that ran twice (100 ms, 300 ms) and was skipped once and cached once in a run:
    its history row and the summary's mean are 200 ms, not 100 ms (skips have no time)."""
    st = S.State()
    env = {"run": "r1", "pid": 1}
    S.apply(st, {"ev": "run_start", "ts": 1.0, "seq": 1, **env})
    for i, (status, ms) in enumerate(
        [("completed", 100.0), ("skipped", 0.0), ("completed", 300.0), ("cached", 0.0)]
    ):
        S.apply(st, {"ev": "phase_start", "ts": 2.0 + i, "span": f"s{i}", "phase": "K", **env})
        S.apply(st, {"ev": "phase_end", "ts": 2.5 + i, "span": f"s{i}", "phase": "K",
                     "status": status, "duration_ms": ms, **env})  # fmt: skip
    S.apply(st, {"ev": "run_end", "ts": 9.0, "status": "completed", **env})
    row = history.key_row(st.runs["r1"], "K")
    assert row is not None and (row["count"], row["duration_ms"]) == (4, 200.0)
    assert history.summary(st, {"r1": "completed"})["phases"]["K"]["mean_ms"] == 200.0
