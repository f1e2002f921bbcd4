"""The event model (events.py): the encoding of one log line never fails and is always one
line of ASCII JSON, values JSON cannot take degrade to null or a string, and the small
derived figures (CPU average, a phase's errors) have their documented values."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from atroz_monitor import events as E

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def _nan_free(obj: Any) -> Any:
    """``obj`` with non-finite floats as None: what dumps must give back."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _nan_free(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_nan_free(v) for v in obj]
    return obj


@settings(max_examples=300, deadline=None)
@given(_JSON)
def test_dumps_of_any_json_value_is_one_ascii_line_that_reads_back(obj: Any) -> None:
    """Any JSON-like value (NaN and infinities included) encodes as one ASCII line that
    json.loads reads back to the value with non-finite floats as null."""
    text = E.dumps(obj)
    assert text.isascii() and "\n" not in text
    assert json.loads(text) == _nan_free(obj)


def test_dumps_never_raises_on_what_json_cannot_encode() -> None:
    """A cycle, a set, a path, an object whose repr raises and a non-string key each give
    valid JSON with a documented stand-in."""

    class Hostile:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    cyc: list[Any] = [1]
    cyc.append(cyc)
    assert json.loads(E.dumps(cyc)) == [1, "<cycle>"]
    assert json.loads(E.dumps({"s": {3}, "p": Path("/tmp/x"), "t": (1, 2)})) == {
        "s": [3],
        "p": "/tmp/x",
        "t": [1, 2],
    }
    assert json.loads(E.dumps({"h": Hostile()})) == {"h": "<unrepresentable Hostile>"}
    assert json.loads(E.dumps({1: float("nan")})) == {"1": None}


def test_json_safe_makes_a_copy_strict_encoders_accept() -> None:
    """json_safe turns NaN into None and deep nesting into a string, so json.dumps with
    allow_nan=False takes the result."""
    deep: list[Any] = []
    node = deep
    for _ in range(100):
        node.append([])
        node = node[0]
    safe = E.json_safe({"x": float("inf"), "deep": deep})
    assert safe["x"] is None
    json.dumps(safe, allow_nan=False)
    assert E.json_safe([1.5, "a", None]) == [1.5, "a", None]


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=5).filter(lambda k: k != "ev"), _JSON, max_size=5))
def test_members_appended_to_an_object_keep_every_field(fields: dict[str, Any]) -> None:
    """members() gives ``,"k":v`` for each field, so ``{"ev":"x"`` + members + ``}`` is an
    object with every field (non-finite floats as null)."""
    doc = json.loads('{"ev":"x"' + E.members(fields) + "}")
    assert doc == {"ev": "x", **_nan_free(fields)}


def test_members_of_an_empty_dict_is_nothing() -> None:
    """No fields: no text (the line stays valid)."""
    assert E.members({}) == ""


def test_number_encodes_finite_numbers_and_nulls_the_rest() -> None:
    """Metric values: ints exactly, floats by repr, numeric strings parsed, the rest null."""
    got = [E.number(v) for v in (42, 2.5, "3", float("nan"), float("inf"), "x", None, 10**30)]
    assert got == ["42", "2.5", "3.0", "null", "null", "null", "null", str(10**30)]


@given(st.text(), st.integers(30, 200))
def test_clip_bounds_text_and_says_how_much_was_cut(text: str, limit: int) -> None:
    """clip leaves short text alone; longer text is cut to ``limit`` characters plus a
    marker naming the characters cut."""
    out = E.clip(text, limit)
    if len(text) <= limit:
        assert out == text
    else:
        cut = len(text) - limit + 20
        assert out == text[: limit - 20] + f"... [{cut} chars cut]"


def test_cpu_avg_pct_is_cpu_over_wall_above_one_clock_tick() -> None:
    """500 ms of CPU in 1 s is 50.0 %; unknown or shorter than one USER_HZ tick is None."""
    tick = 1000.0 / os.sysconf("SC_CLK_TCK")
    assert tick == E.CPU_AVG_MIN_MS
    assert E.cpu_avg_pct(500.0, 1000.0) == 50.0
    assert E.cpu_avg_pct(2000.0, 1000.0) == 200.0
    assert E.cpu_avg_pct(None, 1000.0) is None
    assert E.cpu_avg_pct(1.0, tick / 2) is None
    assert E.cpu_avg_pct(1.0, 0.0) is None


def test_items_per_s_is_a_finite_rate_or_none() -> None:
    """500 items in 2 s is 250.0/s; no items, no duration, a duration below the writer's
    1 us resolution (a damaged line's 5e-324 ms) or an infinite result give None."""
    assert E.items_per_s(500, 2000.0) == 250.0
    assert E.items_per_s(1, 0.001) == 1_000_000.0
    assert [E.items_per_s(n, d) for n, d in ((0, 5.0), (5, 0.0), (5, None), (5, "1"))] == [None] * 4
    assert E.items_per_s(1, 5e-324) is None
    assert E.items_per_s(1e308, 0.5) is None


def test_phase_errors_adds_the_exception_of_a_failed_phase() -> None:
    """A phase's errors are its logged errors plus one when it failed."""
    assert E.phase_errors(2, "failed") == 3
    assert E.phase_errors(2, "completed") == 2
    assert E.phase_errors(0, "cancelled") == 0


def test_quote_escapes_so_a_line_cannot_be_split() -> None:
    """The hot path's escaper gives ASCII with newlines, quotes and surrogates escaped."""
    assert E.quote('a"b\nc\ud800é') == '"a\\"b\\nc\\ud800\\u00e9"'


def test_kinds_and_statuses_are_the_documented_ones() -> None:
    """The kinds and statuses a writer may emit, as docs/FORMAT.md lists them."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "FORMAT.md").read_text()
    assert all(f"`{k}`" in doc for k in E.KINDS)
    assert E.PHASE_STATUSES == ("completed", "failed", "cancelled", "skipped", "cached")
    assert E.SCHEMA_VERSION == 1
