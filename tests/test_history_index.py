"""history.Index: cross-run aggregates folded run by run equal the ones computed from scratch."""

from __future__ import annotations

import json
import math
import time

from helpers import poll
from hypothesis import given, settings
from hypothesis import strategies as st

from atroz_monitor.read import catalog
from atroz_monitor.view import history

KEYS = ("A", "B", "C")
RUN_IDS = [f"r{i}" for i in range(12)]

# Milliseconds as the catalog writes them (rounded to 3 decimals): sums of such floats are
# not exact in float arithmetic, so any order dependence would show.
_finite = st.integers(0, 10**10).map(lambda n: n / 1000)


@st.composite
def _raw(draw):
    count = draw(st.integers(0, 3))
    timed = draw(st.integers(0, count))
    status = draw(st.sampled_from(["completed", "failed", "skipped", "cancelled"]))
    return [
        None,
        status,
        count,
        timed,
        timed,
        0,
        0,
        1,
        draw(_finite),  # total_ms
        None,
        None,
        draw(_finite),  # total_cpu_ms
        None,
        draw(st.one_of(st.none(), st.integers(0, 2**40))),  # peak_rss_bytes
        draw(st.integers(0, 5)),  # items
        0,
        0,
    ]


@st.composite
def _summary(draw, rid):
    keys = draw(st.lists(st.sampled_from(KEYS), unique=True, max_size=3))
    alerts = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "state": st.sampled_from(["raised", "acknowledged", "resolved"]),
                    "severity": st.sampled_from(["info", "warning", "critical"]),
                }
            ),
            max_size=2,
        )
    )
    phases = catalog.Phases({k: draw(_raw()) for k in keys})
    return {
        "run": rid,
        # few distinct starts: ties between runs are common
        "start": float(draw(st.integers(0, 6))),
        "status": draw(st.sampled_from(["completed", "failed", "interrupted"])),
        "tags": draw(st.sampled_from([{}, {"env": "a"}, {"env": "b"}])),
        "alerts": alerts,
        "phases": phases,
    }


@st.composite
def _ops(draw):
    """A sequence of (add summary | remove run id): runs arrive in any start order, are
    replaced (a run summarised again) and pruned."""
    ops = []
    for _ in range(draw(st.integers(1, 30))):
        rid = draw(st.sampled_from(RUN_IDS))
        if draw(st.booleans()) or not ops:
            ops.append(("add", draw(_summary(rid))))
        else:
            ops.append(("remove", rid))
    return ops


def _same(a, b):
    """Equal, NaN-free answers (floats compared exactly)."""
    assert a == b
    return True


def _scratch_order(runs):
    return sorted(runs, key=lambda s: (catalog.start_of(s), s["run"]))


@settings(max_examples=60, deadline=None)
@given(_ops(), st.data())
def test_incremental_index_equals_from_scratch(ops, data):
    """Runs folded in and out one at a time (any start order, replaced, pruned, a key's
    series built midway) give the same summary, history and trends as the same final
    runs folded from scratch and as the plain views over the summaries."""
    idx = history.Index()
    final: dict[str, dict] = {}
    build_at = data.draw(st.integers(0, len(ops)))
    for n, (op, x) in enumerate(ops):
        if n == build_at:
            for k in KEYS:  # series built midway, then maintained
                idx.phase_history(k)
        if op == "add":
            idx.add(x)
            final[x["run"]] = x
        else:
            idx.remove(x)
            final.pop(x, None)
    runs = _scratch_order(final.values())
    fresh = history.Index.of(reversed(runs))
    assert len(idx) == len(runs)
    expected_summary = history.summary(runs)
    _same(idx.summary(), expected_summary)
    _same(fresh.summary(), expected_summary)
    befores = (None, "nope", *sorted(final)[:4])
    for key in (*KEYS, "Z"):
        for before in befores:
            want = history.phase_history(runs, key, before=before, limit=10_000)
            got = idx.phase_history(key, before=before, limit=10_000)
            _same(got, want)
            for k in (3, 5):
                _same(
                    idx.phase_trends(key, before=before, k=k),
                    history.phase_trends(runs, key, before=before, k=k),
                )
        tags = {"env": "a"}
        _same(
            idx.phase_history(key, tags=tags, limit=10_000),
            history.phase_history(runs, key, tags=tags, limit=10_000),
        )


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(RUN_IDS), unique=True, max_size=10), st.data())
def test_live_runs_laid_over_the_index_equal_the_merged_list(ids, data):
    """Live runs given per request (some replacing a folded run of the same id) answer as
    if every run, folded and live, were summarised into one list."""
    parked = [data.draw(_summary(rid)) for rid in ids]
    live_ids = data.draw(st.lists(st.sampled_from(RUN_IDS), unique=True, max_size=3))
    live = sorted((data.draw(_summary(rid)) for rid in live_ids), key=lambda s: catalog.start_of(s))
    statuses = {s["run"]: "running" for s in live}
    idx = history.Index.of(parked)
    kept = _scratch_order(s for s in parked if s["run"] not in statuses)
    merged = sorted([*kept, *live], key=catalog.start_of)  # stable: folded first at a tie
    _same(idx.summary(live, statuses), history.summary(merged, statuses))
    for key in (*KEYS, "Z"):
        for before in (None, *ids[:3], *live_ids):
            _same(
                idx.phase_history(key, before=before, limit=10_000, live=live),
                history.phase_history(merged, key, before=before, limit=10_000),
            )
            _same(
                idx.phase_trends(key, before=before, k=4, live=live),
                history.phase_trends(merged, key, before=before, k=4),
            )


def test_history_page_counts_from_the_newest_end():
    """A page of 2 rows skipping the newest 1 is the 2 rows before the newest, oldest first,
    with the count and stats of every row."""
    runs = [
        {"run": f"r{i}", "start": float(i), "status": "completed",
         "phases": {"A": {"status": "completed", "count": 1, "duration_ms": 10.0 * i}}}
        for i in range(1, 6)
    ]  # fmt: skip
    out = history.Index.of(runs).phase_history("A", limit=2, skip=1)
    assert [r["run"] for r in out["runs"]] == ["r3", "r4"]
    assert out["count"] == 5
    assert out["stats"]["duration_ms"]["mean"] == 30.0


def test_summary_total_is_exact_whatever_the_order():
    """Totals are exact sums: 0.1 + 0.2 + 0.3 in any order, and with a run taken out and put
    back, give the mean of the exact sum."""
    runs = [
        {"run": f"r{i}", "start": float(i), "status": "completed",
         "phases": {"A": {"count": 1, "timed": 1, "total_ms": v}}}
        for i, v in enumerate([0.1, 0.2, 0.3])
    ]  # fmt: skip
    a = history.Index.of(runs)
    b = history.Index.of(reversed(runs))
    b.remove("r1")
    b.add(runs[1])
    assert a.summary()["phases"]["A"] == {"count": 3, "mean_ms": 0.2}
    assert b.summary() == a.summary()
    assert math.isclose(a.totals.keys["A"][3].value(), 0.6)


def _get(src, path, query=""):
    from atroz_monitor.surface import api

    r = api.route(src, "GET", path, query, {})
    assert r.status == 200, r.body
    return json.loads(r.body)


def test_a_new_finished_run_shows_in_summary_and_history(tmp_path, monkeypatch):
    """A run that finishes while serve runs counts in /api/v1/summary and is the newest row
    of the history routes, first while followed and again once parked (folded into the
    index), with the same answers as the summaries computed from scratch."""
    from atroz_monitor import Monitor
    from atroz_monitor.store import source

    def run(rid: str, items: int) -> None:
        with Monitor(str(tmp_path), run_id=rid, name="nightly", sample_interval=0.05) as m:
            with m.phase("P00") as p:
                p.add_items(items)

    for i in range(3):
        run(f"old-{i}", 1)
    catalog.Catalog(tmp_path).refresh()
    src = source.FileSource([str(tmp_path)])
    try:
        assert src.live_ids() == set()  # all three parked from the catalog
        assert _get(src, "/api/v1/summary")["runs"]["total"] == 3
        assert _get(src, "/api/v1/phases/P00/history")["count"] == 3
        run("new-0", 7)

        def check() -> None:
            summ = _get(src, "/api/v1/summary")
            hist = _get(src, "/api/v1/phases/P00/history")
            trends = _get(src, "/api/v1/phases/P00/trends")
            assert summ["runs"]["completed"] == 4
            assert summ["phases"]["P00"]["count"] == 4
            assert hist["count"] == 4
            assert hist["runs"][-1]["run"] == "new-0"
            assert hist["runs"][-1]["items"] == 7
            assert trends["runs"] == 4
            every = catalog.Catalog(tmp_path).summaries()
            assert summ == history.summary(every)
            want = history.phase_history(every, "P00", limit=100)
            assert {k: hist[k] for k in ("count", "stats", "runs")} == {
                k: want[k] for k in ("count", "stats", "runs")
            }

        def shown(followed: bool) -> bool:
            src.refresh()
            # (cross-run answers are reused for up to CACHE_S after a change)
            total = _get(src, "/api/v1/summary")["runs"]["total"]
            return ("new-0" in src.live_ids()) == followed and total == 4

        # Followed first (it changed less than HOT_S ago): laid over the index per request.
        poll(lambda: shown(True), 30, "the new run followed and counted")
        check()
        # Quiet: parked, its summary folded into the index.
        monkeypatch.setattr(source, "HOT_S", 0.0)
        poll(lambda: shown(False), 30, "the new run parked and counted")
        time.sleep(source.CACHE_S)  # every answer cached while it was followed goes stale
        check()
    finally:
        src.close()
