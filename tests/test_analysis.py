"""Tests for atroz_monitor.view.analysis: pure statistics over per-phase history."""

from __future__ import annotations

import math
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atroz_monitor.view.analysis import (
    ANOMALY_Z,
    anomaly,
    compare,
    critical_path,
    describe,
    eta,
    percentile,
    progress,
    regression,
    robust_z,
    shares,
    theil_sen,
    trend,
)

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


# --- describe / percentile -----------------------------------------------------------------------


@given(st.lists(finite, min_size=2, max_size=200))
def test_describe_matches_statistics_module(data: list[float]) -> None:
    """describe() agrees with statistics on mean, median, stdev, min, max and inclusive p95."""
    d = describe(data)
    # Absolute slack scaled to the data: fsum-based results differ from exact ones by ulps.
    tol = 1e-9 * max(1.0, max(abs(x) for x in data))
    assert d["count"] == len(data)
    assert d["mean"] == pytest.approx(statistics.mean(data), rel=1e-9, abs=tol)
    assert d["median"] == pytest.approx(statistics.median(data), rel=1e-12, abs=tol)
    assert d["stddev"] == pytest.approx(statistics.stdev(data), rel=1e-7, abs=tol)
    assert d["min"] == min(data)
    assert d["max"] == max(data)
    p95 = statistics.quantiles(data, n=100, method="inclusive")[94]
    assert d["p95"] == pytest.approx(p95, rel=1e-9, abs=tol)
    assert d["last"] == data[-1]


def test_describe_concrete_values() -> None:
    """describe() gives the unscaled MAD, interpolated p95 and last in input order."""
    d = describe([3.0, 1.0, 100.0, 2.0, 4.0])
    assert d["median"] == 3.0
    assert d["mad"] == 1.0  # deviations 0,1,1,2,97
    assert d["p95"] == pytest.approx(80.8)  # h = 3.8: 4 + 0.8 * 96
    assert d["last"] == 4.0
    assert d["mean"] == 22.0


def test_describe_single_value_and_empty() -> None:
    """One value has stddev 0.0 and p95 equal to it; empty input yields only the count."""
    d = describe([7.5])
    assert d == {
        "count": 1,
        "mean": 7.5,
        "median": 7.5,
        "p95": 7.5,
        "stddev": 0.0,
        "min": 7.5,
        "max": 7.5,
        "mad": 0.0,
        "last": 7.5,
    }
    assert describe([]) == {"count": 0}


def test_describe_handles_ten_thousand_values() -> None:
    """describe() over 10,000 values returns the exact known summary."""
    d = describe([float(i) for i in range(10_000)])
    assert d["count"] == 10_000
    assert d["mean"] == 4999.5
    assert d["median"] == 4999.5
    assert d["p95"] == pytest.approx(9499.05)
    assert d["mad"] == 2500.0
    assert d["max"] == 9999.0


def test_percentile_endpoints_and_errors() -> None:
    """percentile() hits min at 0, max at 100, interpolates between, rejects bad input."""
    assert percentile([4.0, 1.0, 3.0, 2.0], 0) == 1.0
    assert percentile([4.0, 1.0, 3.0, 2.0], 100) == 4.0
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert percentile([9.0], 95) == 9.0
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


# --- theil_sen / trend ---------------------------------------------------------------------------


def test_theil_sen_exact_line_with_uneven_x() -> None:
    """A perfect line y = 3x + 2 gives slope 3 whatever the x spacing."""
    xs = [0.0, 1.0, 2.0, 5.0, 10.0]
    assert theil_sen([3 * x + 2 for x in xs], xs) == 3.0


def test_theil_sen_ignores_one_huge_outlier() -> None:
    """One outlier run among ten on y = 2x leaves the median slope at exactly 2."""
    ys = [2.0 * i for i in range(10)]
    ys[5] = 1000.0
    assert theil_sen(ys) == 2.0


def test_theil_sen_skips_equal_x_and_short_input() -> None:
    """Pairs with equal x are skipped; < 2 values or no distinct-x pair give None."""
    assert theil_sen([0.0, 5.0, 2.0], [0.0, 0.0, 1.0]) == -0.5  # slopes 2 and -3
    assert theil_sen([1.0, 2.0], [3.0, 3.0]) is None
    assert theil_sen([1.0]) is None
    assert theil_sen([]) is None


def test_trend_durations_slower_faster_stable() -> None:
    """For durations a rise above 2 %/run is slower, a fall is faster, 1.9 %/run is stable."""
    up = trend([100.0, 105.0, 110.0, 115.0, 120.0])
    assert up["runs"] == 5
    assert up["slope"] == 5.0
    assert up["pct_per_run"] == pytest.approx(5.0 / 110.0 * 100.0)
    assert up["direction"] == "slower"
    assert trend([120.0, 115.0, 110.0, 105.0, 100.0])["direction"] == "faster"
    gentle = trend([100.0, 102.0, 104.0, 106.0, 108.0])  # 2/104 = 1.92 %/run
    assert gentle["direction"] == "stable"


def test_trend_items_per_second_words_flip() -> None:
    """For lower-is-worse metrics (items/s) rising is faster and falling is slower."""
    assert trend([100.0, 105.0, 110.0, 115.0], higher_is_worse=False)["direction"] == "faster"
    assert trend([115.0, 110.0, 105.0, 100.0], higher_is_worse=False)["direction"] == "slower"


def test_trend_uses_only_last_k_values() -> None:
    """Old history outside the window does not affect the trend."""
    values = [1000.0, 1.0, 5000.0] + [50.0] * 10
    t = trend(values, k=10)
    assert (t["runs"], t["slope"], t["pct_per_run"], t["direction"]) == (10, 0.0, 0.0, "stable")


def test_trend_insufficient_and_zero_median() -> None:
    """Under 3 values is insufficient; a zero median gives pct None and the slope decides."""
    assert trend([1.0, 2.0]) == {
        "runs": 2,
        "slope": None,
        "pct_per_run": None,
        "direction": "insufficient",
    }
    z = trend([-1.0, 0.0, 1.0])
    assert (z["slope"], z["pct_per_run"], z["direction"]) == (1.0, None, "slower")
    with pytest.raises(ValueError):
        trend([1.0, 2.0, 3.0], k=2)


# --- robust_z / anomaly --------------------------------------------------------------------------


def test_robust_z_known_answer() -> None:
    """History 1..5 has median 3 and MAD 1, so z(10) = 0.6745 * 7."""
    assert robust_z(10.0, [1.0, 2.0, 3.0, 4.0, 5.0]) == pytest.approx(4.7215)
    assert robust_z(3.0, [1.0, 2.0, 3.0, 4.0, 5.0]) == 0.0


def test_robust_z_mad_zero_uses_mean_absolute_deviation() -> None:
    """With MAD 0 the score is (x - median) / (1.253314 * meanAD); here meanAD = 1."""
    assert robust_z(7.0, [5.0, 5.0, 5.0, 5.0, 10.0]) == pytest.approx(2.0 / 1.253314)


def test_robust_z_constant_history_and_short_history() -> None:
    """Constant history gives 0 at the median, +/-inf elsewhere; < 3 values give None."""
    assert robust_z(5.0, [5.0, 5.0, 5.0]) == 0.0
    assert robust_z(6.0, [5.0, 5.0, 5.0]) == math.inf
    assert robust_z(4.0, [5.0, 5.0, 5.0]) == -math.inf
    assert robust_z(4.0, [5.0, 5.0]) is None


def test_anomaly_flags_both_ways_with_direction() -> None:
    """|z| > 3.5 flags slow and fast outliers; direction follows the metric's polarity."""
    history = [10.0, 11.0, 9.0, 10.0, 10.0, 12.0, 8.0]  # median 10, MAD 1
    slow = anomaly(30.0, history)
    assert slow == {
        "z": pytest.approx(13.49),
        "median": 10.0,
        "mad": 1.0,
        "flag": True,
        "direction": "worse",
    }
    fast = anomaly(0.0, history)
    assert fast is not None
    assert (fast["flag"], fast["direction"]) == (True, "better")
    items = anomaly(0.0, history, higher_is_worse=False)
    assert items is not None
    assert items["direction"] == "worse"
    mild = anomaly(12.0, history)
    assert mild is not None
    assert (mild["flag"], mild["direction"]) == (False, "worse")
    assert abs(mild["z"]) < ANOMALY_Z
    assert anomaly(1.0, [1.0, 2.0]) is None


# --- regression / compare ------------------------------------------------------------------------

BASE10 = [100.0, 102.0, 98.0, 101.0, 99.0, 100.0, 103.0, 97.0, 100.0, 100.0]  # p95 = 102.55


def test_regression_p95_rule() -> None:
    """With >= 5 runs current regresses above p95 * 1.10 = 112.805."""
    r = regression(113.0, BASE10)
    assert r["regressed"] is True
    assert r["rule"] == "p95"
    assert r["reference"] == pytest.approx(102.55)
    assert r["threshold"] == pytest.approx(112.805)
    assert r["delta"] == pytest.approx(10.45)
    assert r["delta_pct"] == pytest.approx(10.45 / 102.55 * 100)
    assert r["runs"] == 10
    assert regression(112.0, BASE10)["regressed"] is False


def test_regression_single_and_median_rules() -> None:
    """Below min_runs the reference is the median and the tolerance 25 %."""
    one = regression(126.0, [100.0])
    assert (one["regressed"], one["rule"], one["reference"], one["threshold"]) == (
        True,
        "single",
        100.0,
        125.0,
    )
    assert regression(124.0, [100.0])["regressed"] is False
    two = regression(132.0, [100.0, 110.0])
    assert (two["regressed"], two["rule"], two["reference"], two["threshold"]) == (
        True,
        "median",
        105.0,
        131.25,
    )


def test_regression_noise_floor_hides_microsecond_jitter() -> None:
    """A 1 ms -> 1.5 ms jump (+50 %) is not a regression under the 5 ms floor."""
    r = regression(1.5, [1.0] * 5)
    assert r["regressed"] is False
    assert r["delta_pct"] == 50.0
    assert regression(1.5, [1.0] * 5, noise_floor=0.1)["regressed"] is True


def test_regression_lower_is_worse_uses_p5() -> None:
    """For items/s the reference is p5 and only a drop below p5 * 0.9 regresses."""
    base = [1000.0, 1010.0, 990.0, 1005.0, 995.0]  # p5 = 991
    r = regression(880.0, base, higher_is_worse=False)
    assert r["regressed"] is True
    assert r["rule"] == "p5"
    assert r["reference"] == pytest.approx(991.0)
    assert r["threshold"] == pytest.approx(891.9)
    assert regression(1200.0, base, higher_is_worse=False)["regressed"] is False
    assert regression(895.0, base, higher_is_worse=False)["regressed"] is False


def test_regression_empty_baseline() -> None:
    """No baseline runs is never a regression and says so in the rule."""
    r = regression(10.0, [])
    assert (r["regressed"], r["rule"], r["reference"], r["runs"]) == (False, "no-baseline", None, 0)


def test_compare_regressions_new_and_missing() -> None:
    """compare() lists regressed, new and missing keys sorted, with per-key baseline summary."""
    current = {"load": 200.0, "parse": 50.0, "zeta": 3.0, "alpha": 1.0}
    baseline = {"load": [100.0] * 5, "parse": [50.0] * 5, "gone": [1.0, 2.0], "alpha": []}
    c = compare(current, baseline)
    assert c["regressions"] == ["load"]
    assert c["new"] == ["alpha", "zeta"]
    assert c["missing"] == ["gone"]
    assert list(c["phases"]) == ["alpha", "load", "parse", "zeta"]
    assert c["phases"]["load"]["baseline"]["count"] == 5
    assert c["phases"]["load"]["current"] == 200.0
    assert c["phases"]["zeta"]["baseline"] == {"count": 0}
    assert compare(current, baseline, noise_floor=1000.0)["regressions"] == []


# --- eta / progress ------------------------------------------------------------------------------

MEDIANS = {"a": 10.0, "b": 5.0, "c": 7.0, "d": 3.0}
PLAN = ["a", "b", "c", "d"]


def test_eta_from_history() -> None:
    """Pending medians plus the running phase's median minus elapsed: 3 + 7 + 3."""
    e = eta(PLAN, {"a"}, {"b": {"elapsed": 2.0}}, MEDIANS)
    assert e == {"eta_s": 13.0, "basis": "history", "missing_history": [], "overdue": []}


def test_eta_from_items_rate() -> None:
    """25 of 100 items in 4 s leaves 12 s; with pending history the basis is mixed."""
    running = {"b": {"elapsed": 4.0, "items": 25.0, "total": 100.0}}
    assert eta(PLAN, {"a"}, running, MEDIANS) == {
        "eta_s": 22.0,
        "basis": "mixed",
        "missing_history": [],
        "overdue": [],
    }
    only = eta(["b"], set(), running, {})
    assert (only["eta_s"], only["basis"]) == (12.0, "items")


def test_eta_overdue_phase_adds_zero() -> None:
    """A running phase past its median adds nothing and is reported overdue."""
    e = eta(PLAN, {"a"}, {"b": {"elapsed": 8.0}}, MEDIANS)
    assert (e["eta_s"], e["overdue"]) == (10.0, ["b"])


def test_eta_all_done_is_zero() -> None:
    """Nothing left to run gives 0.0."""
    assert eta(PLAN, set(PLAN), {}, MEDIANS)["eta_s"] == 0.0


def test_eta_missing_history_refuses_to_guess() -> None:
    """Any unfinished key without history or item rate makes eta None and is listed."""
    medians = {"a": 10.0, "b": 5.0}
    running = {"c": {"elapsed": 1.0}, "b": {"elapsed": 1.0, "items": 0.0, "total": 10.0}}
    e = eta(["a", "b", "c", "d"], {"a"}, running, medians)
    assert e["eta_s"] is None
    assert e["missing_history"] == ["c", "d"]


def test_progress_by_count_and_weight() -> None:
    """Two of four done is 50 % by count and (10 + 5) / 25 = 60 % by historical weight."""
    assert progress(PLAN, {"a", "b"}, MEDIANS) == {
        "done": 2,
        "planned": 4,
        "pct": 50.0,
        "pct_weighted": 60.0,
    }
    partial = progress(PLAN, {"a"}, {"a": 1.0})
    assert (partial["pct"], partial["pct_weighted"]) == (25.0, None)
    assert progress([], set(), {})["pct"] is None


# --- critical path / shares ----------------------------------------------------------------------


def ph(span: str, start: float, end: float | None, parent: str | None = None) -> dict[str, object]:
    """A phase record as the reducer produces it."""
    return {"span": span, "parent": parent, "start": start, "end": end}


def test_critical_path_sequential() -> None:
    """Back-to-back phases are all on the path, in time order."""
    phases = [ph("C", 3.0, 4.0), ph("A", 0.0, 1.0), ph("B", 1.0, 3.0)]
    assert critical_path(phases) == ["A", "B", "C"]


def test_critical_path_parallel_takes_longest_branch() -> None:
    """Of two parallel phases only the one that ended last before the next is on the path."""
    phases = [ph("A", 0.0, 1.0), ph("B", 1.0, 5.0), ph("C", 1.0, 2.0), ph("D", 5.0, 6.0)]
    assert critical_path(phases) == ["A", "B", "D"]


def test_critical_path_nested_children_follow_parent() -> None:
    """Children on the path are inserted after their parent, recursively."""
    phases = [
        ph("A", 0.0, 10.0),
        ph("A1", 0.0, 3.0, "A"),
        ph("A3", 0.0, 2.0, "A"),
        ph("A2", 3.0, 9.0, "A"),
        ph("A2a", 3.0, 4.0, "A2"),
        ph("A2b", 4.0, 9.0, "A2"),
        ph("B", 10.0, 12.0),
    ]
    assert critical_path(phases) == ["A", "A1", "A2", "A2a", "A2b", "B"]


def test_critical_path_slack_and_running_phase() -> None:
    """0.5 ms overlap is within slack; 10 ms is not; a running phase ends at the latest end."""
    assert critical_path([ph("A", 0.0, 1.0005), ph("B", 1.0, 2.0)]) == ["A", "B"]
    assert critical_path([ph("A", 0.0, 1.01), ph("B", 1.0, 2.0)]) == ["B"]
    running = [ph("A", 0.0, 2.0), ph("B", 2.0, None), ph("C", 2.1, 3.0)]
    assert critical_path(running) == ["A", "B"]
    assert critical_path([]) == []


def test_critical_path_unknown_parent_is_top_level() -> None:
    """A phase whose parent span is absent (the run span) is treated as top-level."""
    phases = [ph("A", 0.0, 1.0, "run"), ph("B", 1.0, 2.0, "run")]
    assert critical_path(phases) == ["A", "B"]


def test_shares_percent_of_run() -> None:
    """Each phase's share of a 10 s run; a running phase counts up to run_end."""
    phases = [ph("A", 0.0, 2.5), ph("B", 2.5, None), ph("A1", 0.0, 1.0, "A")]
    assert shares(phases, 0.0, 10.0) == {"A": 25.0, "B": 75.0, "A1": 10.0}
    assert shares(phases, 5.0, 5.0) == {"A": 0.0, "B": 0.0, "A1": 0.0}
