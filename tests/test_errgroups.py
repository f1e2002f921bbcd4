"""Error groups: the fingerprint masking (property tests), grouping within a run, "new",
"seen in N of the last M runs" and "gone" across runs, and the report and API surfaces."""

from __future__ import annotations

import json
import time
import warnings

from hypothesis import given, settings
from hypothesis import strategies as hs

from atroz_monitor import Monitor
from atroz_monitor.commands import report
from atroz_monitor.read import errgroups, state
from atroz_monitor.read.errgroups import fingerprint, frame_of, mask
from atroz_monitor.store.source import FileSource
from atroz_monitor.surface import api, report_text
from atroz_monitor.view import report_model, views

TEMPLATES = [
    "failed to parse doc {n} at {path}",
    "user {id} not found (request {hex})",
    "cannot open {q}: timeout after {n} ms",
    "object at {hex} has {n} refs",
]

nums = hs.integers(min_value=0, max_value=10**12).map(str) | hs.floats(
    min_value=0, max_value=1e9, allow_nan=False
).map(lambda f: f"{f:.3f}")
paths = hs.lists(
    hs.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_.-", min_size=1, max_size=8),
    min_size=1,
    max_size=4,
).map(lambda parts: "/" + "/".join(parts))
ids = hs.uuids().map(str) | hs.integers(min_value=0, max_value=10**9).map(lambda n: f"u{n}")
hexes = hs.integers(min_value=0x100000, max_value=2**64).map(hex)
quoted = hs.text(alphabet=hs.characters(blacklist_characters="'\n"), max_size=20).map(
    lambda t: f"'{t}'"
)
fillers = hs.fixed_dictionaries({"n": nums, "path": paths, "id": ids, "hex": hexes, "q": quoted})


@settings(max_examples=150, deadline=None)
@given(template=hs.sampled_from(TEMPLATES), a=fillers, b=fillers)
def test_mask_is_stable_under_different_numbers_ids_paths_and_quotes(template, a, b):
    """Two messages of one template with different numbers, ids, hex, paths and quoted
    values have the same masked text and the same fingerprint."""
    ma, mb = mask(template.format(**a)), mask(template.format(**b))
    assert ma == mb
    assert fingerprint("error", "ValueError", ma, "p.py:f") == fingerprint(
        "error", "ValueError", mb, "p.py:f"
    )


@settings(max_examples=200, deadline=None)
@given(
    msg=hs.text(max_size=60),
    types=hs.lists(
        hs.from_regex(r"[A-Z][A-Za-z]{0,12}Error", fullmatch=True),
        min_size=2,
        max_size=2,
        unique=True,
    ),
)
def test_different_exception_types_never_share_a_fingerprint(msg, types):
    """The same message under two exception types gives two fingerprints."""
    t = mask(msg)
    assert fingerprint("error", types[0], t, None) != fingerprint("error", types[1], t, None)


def test_mask_examples():
    """The placeholders each kind of varying value becomes."""
    assert mask("failed to parse doc 4512") == "failed to parse doc <n>"
    assert mask("KeyError 'abc' in /srv/data/x.json") == "KeyError '<q>' in <path>"
    assert mask('no key "k-9" for 3f2a9c1e-1111-2222-3333-444455556666') == (
        'no key "<q>" for <id>'
    )
    assert mask("object at 0x7f3a2c10 hash deadbeef42") == "object at <hex> hash <hex>"
    assert mask("took  1.5e3   ms") == "took <n> ms"


def test_frame_of_picks_the_innermost_frame_of_the_pipelines_own_code():
    """Frames in the standard library, site-packages and atroz_monitor are skipped."""
    tb = (
        "Traceback (most recent call last):\n"
        '  File "/srv/pipe/run.py", line 10, in main\n    step()\n'
        '  File "/srv/pipe/steps.py", line 42, in parse_doc\n    json.loads(x)\n'
        '  File "/usr/lib/python3.11/json/__init__.py", line 346, in loads\n'
        '  File "/venv/lib/python3.11/site-packages/lib/x.py", line 2, in f\n'
        '  File "/srv/atroz/atroz_monitor/record/monitor.py", line 9, in __exit__\n'
        "ValueError: bad\n"
    )
    assert frame_of(tb) == "steps.py:parse_doc"
    assert frame_of("no traceback") is None
    assert frame_of(None) is None


def _runs(tmp_path, n_runs, errors_in):
    """n_runs runs in one directory; run k logs 40 'failed to parse doc N' errors, a
    warning 'slow doc' in runs listed by errors_in, and fails phase P1 with a KeyError."""
    for k in range(n_runs):
        with Monitor(tmp_path, sample_interval=None, alert_rules=[], run_id=f"run{k}") as mon:
            with mon.phase("P0") as p:
                for i in range(40):
                    p.error(f"failed to parse doc {i * 7 + k}")
                if k in errors_in:
                    p.warning(f"slow doc '{k}' took {k * 10} ms")
                with warnings.catch_warnings():
                    warnings.simplefilter("always")
                    warnings.warn(f"deprecated option {k}", stacklevel=1)
            try:
                with mon.phase("P1"):
                    {}[f"key{k}"]
            except KeyError:
                pass
            time.sleep(0.002)  # distinct start times


def test_forty_similar_errors_are_one_group(tmp_path):
    """40 'failed to parse doc N' lines are one group of 40 with first, last and example."""
    _runs(tmp_path, 1, errors_in=())
    st, _, _ = report.load([str(tmp_path)])
    eg = errgroups.error_groups(st, "run0")
    by = {g["template"]: g for g in eg["groups"]}
    g = by["failed to parse doc <n>"]
    assert (g["count"], g["level"], g["phases"]) == (40, "error", ["P0"])
    assert g["example"]["msg"] == "failed to parse doc 0"
    assert g["first_ts"] <= g["last_ts"]
    ke = by["'<q>'"]
    assert (ke["type"], ke["frame"], ke["phases"]) == (
        "KeyError",
        "test_errgroups.py:_runs",
        ["P1"],
    )
    w = by["deprecated option <n>"]
    assert w["type"] == "UserWarning" and w["frame"].startswith("test_errgroups.py:")
    assert eg["total"] == 42 and len(eg["groups"]) == 3
    assert eg["recent_runs"] == 0 and all(g["new"] for g in eg["groups"])


def test_new_seen_and_gone_across_runs(tmp_path):
    """Against earlier runs: a group in both is 'seen in 2 of the last 2', one only now is
    new, one of the previous run missing now is gone."""
    _runs(tmp_path, 3, errors_in=(1, 2))
    # Run 2 has 'slow doc' (seen in run 1 only); run 0 lacks it. Make the subject run 1.
    st, _, _ = report.load([str(tmp_path)])
    eg2 = errgroups.error_groups(st, "run2")
    by2 = {g["template"]: g for g in eg2["groups"]}
    assert by2["failed to parse doc <n>"]["seen_runs"] == 2
    assert by2["failed to parse doc <n>"]["recent_runs"] == 2
    assert by2["slow doc '<q>' took <n> ms"]["seen_runs"] == 1
    assert not by2["slow doc '<q>' took <n> ms"]["new"]
    eg1 = errgroups.error_groups(st, "run1")
    assert {g["template"]: g["new"] for g in eg1["groups"]}["slow doc '<q>' took <n> ms"]
    assert eg2["gone"] == []
    eg0 = errgroups.error_groups(st, "run0")
    assert eg0["gone"] == [] and eg0["previous_run"] is None


def test_gone_lists_groups_of_the_previous_run_missing_now(tmp_path):
    """A warning in run 0 and not in run 1 is 'gone' in run 1's view."""
    _runs(tmp_path, 2, errors_in=(0,))
    st, _, _ = report.load([str(tmp_path)])
    eg = errgroups.error_groups(st, "run1")
    assert [g["template"] for g in eg["gone"]] == ["slow doc '<q>' took <n> ms"]
    assert eg["previous_run"] == "run0"


def test_groups_survive_compaction_to_history(tmp_path):
    """An earlier run compacted to history keeps its fingerprints (exact counts)."""
    _runs(tmp_path, 2, errors_in=())
    st, _, _ = report.load([str(tmp_path)])
    st.compact("run0")
    (g,) = [x for x in errgroups.error_groups(st, "run1")["groups"] if x["count"] == 40]
    assert g["seen_runs"] == 1


def test_group_table_is_bounded():
    """Beyond MAX_GROUPS distinct fingerprints, further occurrences are counted in other."""
    st = state.State()
    evs = [
        {
            "ev": "log",
            "run": "r",
            "pid": 1,
            "ts": float(i),
            "level": "error",
            "msg": f"distinct {chr(65 + i % 26)}{'x' * (i // 26)}",
        }
        for i in range(errgroups.MAX_GROUPS + 50)
    ]
    state.apply_all(st, evs)
    eg = errgroups.error_groups(st, "r")
    assert len(eg["groups"]) == errgroups.MAX_GROUPS and eg["other"] == 50


def test_report_formats_carry_error_groups(tmp_path):
    """text, markdown and json reports list the groups with counts and 'gone'."""
    _runs(tmp_path, 2, errors_in=(0,))
    st, _, _ = report.load([str(tmp_path)])
    model = report_model.build(st, "run1", now=time.time())
    text = report_text.render_text(model)
    assert "error groups (3 groups, 42 occurrences; against the last 1 run(s))" in text
    assert "failed to parse doc <n>" in text
    assert "gone since the previous run (1): slow doc '<q>' took <n> ms" in text
    md = report_text.render_markdown(model)
    assert "| 40 | error | - | failed to parse doc \\<n\\> |" in md
    doc = json.loads(json.dumps(model, default=repr))
    assert doc["error_groups"]["groups"][0]["count"] == 40


def test_api_error_groups_route_is_paginated(tmp_path):
    """/api/v1/runs/{run}/error-groups pages with limit and next_cursor, filters by level."""
    _runs(tmp_path, 1, errors_in=(0,))
    src = FileSource([str(tmp_path)])
    try:
        src.refresh()

        def get(q: str) -> dict:
            r = api.route(src, "GET", "/api/v1/runs/run0/error-groups", q, {})
            assert r.status == 200, r.body
            return json.loads(r.body)

        first = get("limit=2")
        assert first["total_groups"] == 4 and len(first["groups"]) == 2
        assert first["next_cursor"] == "2"
        rest = get("limit=2&cursor=2")
        assert len(rest["groups"]) == 2 and rest["next_cursor"] is None
        seen = [g["fingerprint"] for g in first["groups"] + rest["groups"]]
        assert len(set(seen)) == 4
        warn = get("level=warning")
        assert {g["level"] for g in warn["groups"]} == {"warning"} and warn["total_groups"] == 2
        bad = api.route(src, "GET", "/api/v1/runs/run0/error-groups", "limit=0", {})
        assert bad.status == 400
    finally:
        src.close()


def test_snapshot_carries_error_groups(tmp_path):
    """The live snapshot (Monitor.snapshot) holds the groups the page renders."""
    with Monitor(tmp_path / "r.jsonl", sample_interval=None) as mon:
        with mon.phase("P0") as p:
            for i in range(5):
                p.warning(f"retry {i} of 5")
        snap = mon.snapshot()
    (g,) = snap["error_groups"]["groups"]
    assert (g["template"], g["count"]) == ("retry <n> of <n>", 5)
    assert views.snapshot  # the one view every surface reads


log_events = hs.lists(
    hs.tuples(
        hs.sampled_from(["error", "warning"]),
        hs.sampled_from(["parse doc {}", "retry {} of 5", "user u{} missing", "plain text"]),
        hs.integers(min_value=0, max_value=10**6),
        hs.sampled_from(["P0", "P1", None]),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(evs=log_events, seed=hs.randoms(use_true_random=False))
def test_groups_count_every_log_event_in_any_order(evs, seed):
    """Whatever the order (several writers), every log event is counted in exactly one
    group, and the groups are the same: one per (level, template)."""
    lines = [
        {
            "ev": "log",
            "run": "r",
            "pid": 1,
            "ts": float(i),
            "level": lvl,
            "msg": tpl.format(n),
            "phase": ph,
        }
        for i, (lvl, tpl, n, ph) in enumerate(evs)
    ]
    shuffled = list(lines)
    seed.shuffle(shuffled)
    a, b = state.State(), state.State()
    state.apply_all(a, lines)
    state.apply_all(b, shuffled)
    if not lines:
        assert "r" not in a.runs
        return
    ga, gb = errgroups.error_groups(a, "r"), errgroups.error_groups(b, "r")
    assert ga["total"] == gb["total"] == len(lines)

    def key(eg: dict) -> list:
        return sorted(
            (g["fingerprint"], g["count"], g["first_ts"], g["last_ts"]) for g in eg["groups"]
        )

    assert key(ga) == key(gb)
    assert len(ga["groups"]) == len({(lvl, tpl) for lvl, tpl, _, _ in evs})


def test_mask_memo_is_bounded_and_order_free():
    """The memo of masks by shape stays within MEMO_SIZE entries, and a message masks the
    same whether or not a message of the same shape was seen first."""
    for i in range(errgroups.MEMO_SIZE + 500):
        mask(f"shape {'x' * (i % 7000)} n=1")  # distinct shapes
        assert len(errgroups._memo) <= errgroups.MEMO_SIZE
    errgroups._memo.clear()
    first = [mask("token ab12 at 7"), mask("token abcdef1234 at 7")]
    errgroups._memo.clear()
    second = [mask("token abcdef1234 at 7"), mask("token ab12 at 7")]
    assert first == second[::-1] == ["token <hex> at <n>", "token <hex> at <n>"]
