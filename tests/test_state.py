"""The reducer: pure, order-tolerant across writers, bounded, and the same live or replayed."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atroz_monitor.read import state as S
from atroz_monitor.view import views


def _thread_program(draw, tid: int, n_phases: int) -> list[dict]:
    """A valid event sequence of one writer: nested phases, logs, metrics."""
    evs: list[dict] = []
    stack: list[str] = []
    made = 0
    seq = 0

    def ev(kind, **kw):
        nonlocal seq
        seq += 1
        e = {"ev": kind, "ts": 1000.0 + seq * 0.001, "run": "r", "pid": tid, "seq": seq}
        e.update(kw)
        evs.append(e)

    while made < n_phases or stack:
        action = draw(st.sampled_from(["close", "open", "log", "metric"]))
        can_open = made < n_phases and len(stack) < 4
        if action == "open" and not can_open or action == "close" and not stack:
            action = "close" if stack else "open"  # keep the program moving to its end
        if action == "open":
            made += 1
            span = f"{tid}.{made}"
            key = draw(st.sampled_from(["A", "B", "C"])) + str(len(stack))
            ev("phase_start", span=span, phase=key, name=key, parent=stack[-1] if stack else None)
            stack.append(span)
        elif action == "close":
            span = stack.pop()
            status = draw(st.sampled_from(["completed", "completed", "failed", "cancelled"]))
            key = next(e["phase"] for e in evs if e.get("span") == span)
            ev(
                "phase_end",
                span=span,
                phase=key,
                name=key,
                parent=stack[-1] if stack else None,
                status=status,
                duration_ms=float(draw(st.integers(0, 1000))),
                cpu_ms=1.0,
                items=2,
            )
        elif action == "log":
            ev(
                "log",
                level=draw(st.sampled_from(["warning", "error"])),
                msg="m",
                **({"span": stack[-1]} if stack else {}),
            )
        elif action == "metric":
            ev(
                "metric",
                name="x",
                value=draw(st.integers(0, 9)),
                **({"span": stack[-1]} if stack else {}),
            )
    return evs


@st.composite
def interleaved(draw):
    """Several writers' valid sequences, interleaved in an arbitrary order."""
    programs = [_thread_program(draw, tid, draw(st.integers(1, 12))) for tid in range(1, 4)]
    order = draw(st.permutations([i for i, p in enumerate(programs) for _ in p]))
    cursors = [0] * len(programs)
    out = [
        {
            "ev": "run_start",
            "ts": 999.0,
            "run": "r",
            "pid": 1,
            "seq": 0,
            "v": 1,
            "plan": [{"id": "A0", "name": "A0"}],
        }
    ]
    for i in order:
        out.append(programs[i][cursors[i]])
        cursors[i] += 1
    return programs, out


def _reduce(events, **kw):
    s = S.State(**kw)
    for e in events:
        S.apply(s, e)
    return s


@settings(max_examples=150, deadline=None)
@given(interleaved())
def test_any_interleaving_gives_consistent_state(data):
    """Per-key aggregates, statuses, parents and counters follow from the events, whatever
    the interleaving of writers."""
    programs, events = data
    s = _reduce(events)
    r = s.runs["r"]
    ends = [e for p in programs for e in p if e["ev"] == "phase_end"]
    starts = [e for p in programs for e in p if e["ev"] == "phase_start"]
    assert len(r.phases) == len(starts)
    for e in ends:
        rec = r.phases[e["span"]]
        assert rec.status == e["status"]
        assert rec.parent == e["parent"]
        assert rec.duration_ms == e["duration_ms"]
    by_key: dict[str, int] = {}
    for e in ends:
        by_key[e["phase"]] = by_key.get(e["phase"], 0) + 1
    assert {k: a.count for k, a in r.keys.items()} == by_key
    for k, a in r.keys.items():
        assert a.total_ms == sum(e["duration_ms"] for e in ends if e["phase"] == k)
    logs = [e for p in programs for e in p if e["ev"] == "log"]
    assert r.log_counts["error"] == sum(1 for e in logs if e["level"] == "error")
    for rec in r.phases.values():
        errs = sum(1 for e in logs if e.get("span") == rec.span and e["level"] == "error")
        assert rec.errors == errs
    assert r.seq_gaps == 0
    assert not r.open


@settings(max_examples=60, deadline=None)
@given(interleaved())
def test_interleavings_of_the_same_writers_agree(data):
    """Two interleavings of the same writers give the same snapshot of phases and keys."""
    programs, events = data
    serial = [events[0]] + [e for p in programs for e in p]
    a = views.snapshot(_reduce(events), "r", now=2000.0)
    b = views.snapshot(_reduce(serial), "r", now=2000.0)
    key = lambda p: p["span"]  # noqa: E731
    assert sorted(a["phases"], key=key) == sorted(b["phases"], key=key)
    # "last_ms" is the last to arrive, which is order-dependent by definition.
    strip = lambda ks: {k: {f: v for f, v in d.items() if f != "last_ms"} for k, d in ks.items()}  # noqa: E731
    assert strip(a["keys"]) == strip(b["keys"])
    assert a["flow"] == b["flow"]


def test_replay_is_deterministic_and_json_ready():
    """Reducing the same events twice gives identical, JSON-serialisable snapshots."""
    events = [
        {"ev": "run_start", "ts": 1.0, "run": "r", "pid": 1, "seq": 1, "v": 1, "plan": ["bad"]},
        {
            "ev": "phase_start",
            "ts": 1.1,
            "run": "r",
            "pid": 1,
            "seq": 2,
            "span": "1.1",
            "phase": "P00",
            "name": "A",
            "parent": None,
        },
        {
            "ev": "sample",
            "ts": 1.2,
            "run": "r",
            "pid": 1,
            "seq": 3,
            "cpu_pct": 50.0,
            "rss_bytes": 100,
            "spans": ["1.1"],
        },
        {
            "ev": "phase_end",
            "ts": 1.3,
            "run": "r",
            "pid": 1,
            "seq": 4,
            "span": "1.1",
            "phase": "P00",
            "name": "A",
            "parent": None,
            "status": "completed",
            "duration_ms": 200.0,
            "rss_bytes": 90,
            "peak_rss_bytes": 95,
        },
        {"ev": "run_end", "ts": 1.4, "run": "r", "pid": 1, "seq": 5, "status": "completed"},
    ]
    a = views.snapshot(_reduce(events), "r", now=5.0)
    b = views.snapshot(_reduce(events), "r", now=5.0)
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    ph = a["phases"][0]
    assert ph["cpu_peak_pct"] == 50.0
    assert ph["peak_rss_bytes"] == 95  # the writer's own peak wins over the sample's 100
    assert a["run"]["duration_ms"] == 400.0


def test_unknown_kinds_and_keys_are_ignored():
    """Events of unknown kinds or without a run are counted as ignored, not failures."""
    s = _reduce(
        [
            {"ev": "future_kind", "run": "r", "ts": 1.0},
            {"ev": "phase_start", "ts": 1.0},
            {"ev": "metric", "run": "r", "ts": 1.0, "name": "m", "value": 3, "new_field": {}},
        ]
    )
    assert s.ignored == 2
    assert s.runs["r"].metrics["m"]["value"] == 3


def test_seq_gaps_are_counted_per_writer():
    """A jump in a writer's seq counts the missing events; another pid is its own writer."""
    evs = [
        {"ev": "metric", "run": "r", "pid": 1, "seq": 1, "name": "m", "value": 1},
        {"ev": "metric", "run": "r", "pid": 2, "seq": 1, "name": "m", "value": 1},
        {"ev": "metric", "run": "r", "pid": 1, "seq": 5, "name": "m", "value": 1},
    ]
    assert _reduce(evs).runs["r"].seq_gaps == 3


def _reference_gaps(pairs: list[tuple[int, int]]) -> int:
    """Seq gaps the plain way: the last seq of every writer in a dict."""
    last: dict[int, int] = {}
    gaps = 0
    for pid, seq in pairs:
        prev = last.get(pid)
        if prev is not None and seq > prev + 1:
            gaps += seq - prev - 1
        last[pid] = seq
    return gaps


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 3), st.integers(-2, 12)), max_size=60))
def test_seq_gaps_match_a_per_writer_reference(pairs):
    """The one-comparison fast path for the current writer counts exactly the gaps a
    per-writer dict would, through writer switches, restarts and reordering."""
    evs = [
        {"ev": "metric", "run": "r", "pid": pid, "seq": seq, "name": "m", "value": 1}
        for pid, seq in pairs
    ]
    got = _reduce(evs).runs["r"].seq_gaps if evs else 0
    assert got == _reference_gaps(pairs)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=6,
)
_FIELDS = ["ts", "pid", "seq", "span", "parent", "phase", "name", "status", "duration_ms",
           "cpu_ms", "items", "total", "rss_bytes", "peak_rss_bytes", "spans", "level", "value",
           "count", "alert", "state", "attempt", "meta", "thread"]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(sorted(S._HANDLERS)),
            st.dictionaries(st.sampled_from(_FIELDS), _json, max_size=8),
        ),
        max_size=25,
    )
)
def test_apply_never_raises_on_any_field_values(events):
    """Any JSON value in any field of any known kind: folded or ignored, never an error,
    and the state still renders (a corrupt log must not stop a report)."""
    s = S.State(max_phases=3)
    for kind, fields in events:
        S.apply(s, {**fields, "ev": kind, "run": "r"})
    for rid in s.runs:
        json.dumps(views.snapshot(s, rid, now=2e9))


def test_alert_states_merge():
    """An alert raised then acknowledged then resolved keeps its value and threshold."""
    base = {"run": "r", "pid": 1, "alert": "a1", "rule": "rss", "severity": "warning"}
    s = _reduce(
        [
            {"ev": "alert", "ts": 1.0, "state": "raised", "value": 9, "threshold": 5, **base},
            {"ev": "alert", "ts": 2.0, "state": "acknowledged", **base},
            {"ev": "alert", "ts": 3.0, "state": "resolved", **base},
        ]
    )
    a = s.runs["r"].alerts["a1"]
    assert a["state"] == "resolved" and a["acknowledged"] is True
    assert a["value"] == 9 and a["threshold"] == 5 and a["resolved_ts"] == 3.0


# -- structure whatever the timing (issue 12) ---------------------------------------------

_ERR = {"type": "ValueError", "msg": "bad row 7", "tb": "Traceback ..."}


def _family() -> list[dict]:
    """A run whose owner (pid 1) opens P (span 1.1); three pool workers (pids 2-4) each
    write a phase under it and a sub-phase under that; worker 2's phase fails with the
    exception P and the run then fail with; a daemon (pid 9) writes a phase under P after
    the run ended."""
    evs: list[dict] = []
    seqs: dict[int, int] = {}

    def ev(kind: str, pid: int, ts: float, **kw: object) -> None:
        seqs[pid] = seqs.get(pid, 0) + 1
        evs.append({"ev": kind, "ts": ts, "run": "r", "pid": pid, "seq": seqs[pid], **kw})

    def phase(pid: int, span: str, key: str, parent: str | None, t0: float, t1: float,
              status: str = "completed", error: dict | None = None) -> None:  # fmt: skip
        ev("phase_start", pid, t0, span=span, phase=key, name=key, parent=parent)
        end = {"error": error} if error else {}
        ev("phase_end", pid, t1, span=span, phase=key, name=key, parent=parent, status=status,
           duration_ms=round((t1 - t0) * 1000, 3), cpu_ms=1.0, **end)  # fmt: skip

    ev("run_start", 1, 100.0, v=1, plan=[{"id": "P", "name": "Pool work"}])
    for w in (2, 3, 4):
        fail = w == 2
        phase(w, f"{w}.2", "P.sub", f"{w}.1", 100.2 + w / 100, 100.3 + w / 100)
        phase(w, f"{w}.1", "P.work", "1.1", 100.1 + w / 100, 100.5 + w / 100,
              "failed" if fail else "completed", _ERR if fail else None)  # fmt: skip
    phase(1, "1.1", "P", None, 100.05, 100.9, "failed", _ERR)
    ev("run_end", 1, 101.0, status="failed", error=_ERR)
    phase(9, "9.1", "P.daemon", "1.1", 102.0, 102.5)
    return evs


def _tree(evs: list[dict]) -> tuple[list[tuple], int, str]:
    st = S.State()
    S.apply_all(st, evs)
    snap = views.snapshot(st, "r", now=200.0)
    rows = [(p["span"], p["depth"], p["status"], p["late"], p["name"]) for p in snap["phases"]]
    return rows, snap["errors"]["count"], snap["run"]["status"]


_FAMILY_TREE = [
    ("1.1", 0, "failed", False, "Pool work"),
    ("2.1", 1, "failed", False, "P.work"),
    ("2.2", 2, "completed", False, "P.sub"),
    ("3.1", 1, "completed", False, "P.work"),
    ("3.2", 2, "completed", False, "P.sub"),
    ("4.1", 1, "completed", False, "P.work"),
    ("4.2", 2, "completed", False, "P.sub"),
    ("9.1", 0, "completed", True, "P.daemon"),
]


def test_pool_phases_read_in_write_order_nest_under_their_parent():
    """The family read as written (children's lines before their parent's): the workers'
    phases under P, the daemon's late phase at the top, one error (raised in 2.1)."""
    assert _tree(_family()) == (_FAMILY_TREE, 1, "failed")


@settings(max_examples=300, deadline=None)
@given(st.permutations(_family()))
def test_any_order_of_a_parents_and_childrens_lines_gives_the_same_tree(evs):
    """Whatever order the lines arrive in (a parent's start after its children's, a run's
    end before a late phase or after it, an end before its start), the tree, the late
    mark and the one error count are those of the lines read in time order."""
    assert _tree(evs) == (_FAMILY_TREE, 1, "failed")


def test_an_orphan_whose_parent_never_appears_stays_a_root():
    """A phase naming a parent span no line ever describes is a root (depth 0)."""
    evs = [
        {"ev": "phase_start", "ts": 1.0, "run": "r", "pid": 5, "seq": 1, "span": "5.1",
         "phase": "W", "parent": "1.99"},
    ]  # fmt: skip
    st = S.State()
    S.apply_all(st, evs)
    assert st.runs["r"].roots == ["5.1"]
    assert [(p["span"], p["depth"]) for p in views.snapshot(st, "r", now=2.0)["phases"]] == [
        ("5.1", 0)
    ]


def test_a_late_phase_does_not_stretch_the_run_or_count_in_its_parent():
    """A phase written 1.1 s after run_end by a daemon is late, at the top level, and its
    parent's children do not list it."""
    evs = [e for e in _family() if e["pid"] in (1, 9)]
    st = S.State()
    S.apply_all(st, evs)
    snap = views.snapshot(st, "r", now=200.0)
    by = {p["span"]: p for p in snap["phases"]}
    assert by["9.1"]["late"] is True and by["9.1"]["depth"] == 0
    assert by["1.1"]["children"] == []
    assert snap["run"]["duration_ms"] == 1000.0


@settings(max_examples=200, deadline=None)
@given(
    st.permutations(
        [
            {"ev": "phase_start", "ts": 1.0, "span": "1.1", "phase": "P", "parent": None},
            {"ev": "phase_start", "ts": 1.1, "span": "1.2", "phase": "C", "parent": "1.1"},
            {"ev": "phase_end", "ts": 1.2, "span": "1.2", "phase": "C", "parent": "1.1",
             "status": "failed", "error": {"type": ["x"], "msg": {"m": 1}}},
            {"ev": "phase_end", "ts": 1.3, "span": "1.1", "phase": "P", "parent": None,
             "status": "failed", "error": {"type": ["x"], "msg": {"m": 1}}},
            {"ev": "run_end", "ts": 1.4, "status": "failed", "error": {"type": [1]}},
        ]
    )
)  # fmt: skip
def test_damaged_error_fields_never_raise_and_count_once(evs):
    """An exception whose type and message are a list and a dict (a damaged line) is
    still one error in any order of the lines, and the reducer does not raise."""
    st = S.State()
    S.apply_all(st, [{**e, "run": "r", "pid": 1} for e in evs])
    assert S.error_count(st.runs["r"]) == 1


def test_acknowledging_a_resolved_alert_keeps_it_resolved():
    """An acknowledgement that arrives after the resolution (an `ack` from a shell) marks
    the alert acknowledged but does not reopen it."""
    base = {"run": "r", "pid": 1, "alert": "a1", "rule": "rss", "severity": "warning"}
    s = _reduce(
        [
            {"ev": "alert", "ts": 1.0, "state": "raised", "value": 9, "threshold": 5, **base},
            {"ev": "alert", "ts": 2.0, "state": "resolved", **base},
            {"ev": "alert", "ts": 3.0, "state": "acknowledged", **base},
        ]
    )
    a = s.runs["r"].alerts["a1"]
    assert (a["state"], a["acknowledged"], a["resolved_ts"]) == ("resolved", True, 2.0)


def test_a_resume_interrupts_the_dead_owners_open_phases_at_once():
    """When a new process resumes the run, the phases its dead owner left open are
    interrupted right away (before any run_end), and the new owner's own phase runs."""
    env = {"run": "r"}
    s = _reduce(
        [
            {"ev": "run_start", "ts": 1.0, "pid": 1, "seq": 1, **env},
            {"ev": "phase_start", "ts": 2.0, "pid": 1, "seq": 2, "span": "1.1", "phase": "P0",
             **env},
            {"ev": "phase_start", "ts": 2.5, "pid": 1, "seq": 3, "span": "1.2", "phase": "P0.a",
             "parent": "1.1", **env},
            {"ev": "resumed", "ts": 9.0, "pid": 2, "seq": 1, "prev_pid": 1, **env},
            {"ev": "phase_start", "ts": 9.5, "pid": 2, "seq": 2, "span": "2.1", "phase": "P1",
             **env},
        ]
    )  # fmt: skip
    r = s.runs["r"]
    assert {span: r.phases[span].status for span in r.phases} == {
        "1.1": "interrupted", "1.2": "interrupted", "2.1": "running",
    }  # fmt: skip
    assert r.open == {"2.1"}
    snap = views.snapshot(s, "r", now=10.0, alive=True)
    assert [p["status"] for p in snap["phases"]] == ["interrupted", "interrupted", "running"]


def test_the_runs_peak_is_never_below_one_of_its_own_phases():
    """The owner's phase read 150 bytes at a boundary the samples (100) missed: the run's
    peak is 150; a pool worker's phase (another process, 500) does not raise it."""
    evs = [
        {"ev": "run_start", "ts": 1.0, "run": "r", "pid": 1, "seq": 1},
        {"ev": "sample", "ts": 1.1, "run": "r", "pid": 1, "seq": 2, "rss_bytes": 100},
        {"ev": "phase_start", "ts": 1.2, "run": "r", "pid": 1, "seq": 3, "span": "1.1",
         "phase": "P"},
        {"ev": "phase_end", "ts": 1.3, "run": "r", "pid": 1, "seq": 4, "span": "1.1",
         "phase": "P", "status": "completed", "peak_rss_bytes": 150},
        {"ev": "phase_start", "ts": 1.2, "run": "r", "pid": 2, "seq": 1, "span": "2.1",
         "phase": "W"},
        {"ev": "phase_end", "ts": 1.3, "run": "r", "pid": 2, "seq": 2, "span": "2.1",
         "phase": "W", "status": "completed", "peak_rss_bytes": 500},
    ]  # fmt: skip
    st = S.State()
    S.apply_all(st, evs)
    assert views.snapshot(st, "r", now=2.0)["resources"]["peak_rss_bytes"] == 150


def test_light_repeats_fold_into_aggregates_as_key_agg_add_does():
    """Completed repeats kept light (beyond max_phases) fold into the run's per-key and the
    parent's aggregates exactly as KeyAgg.add folds them: counts, sums, extremes, buckets,
    recent durations."""
    env = {"run": "r", "pid": 1}
    evs = [{"ev": "run_start", "ts": 1.0, **env},
           {"ev": "phase_start", "ts": 1.0, "span": "p", "phase": "loop", **env}]  # fmt: skip
    durations = [0.5, 7.0, 30.0, 1200.0, 3, 0.02, 90000.0, 2.5, 4000000.0]
    for i, d in enumerate(durations):
        evs.append({"ev": "phase_start", "ts": 2.0, "span": f"c{i}", "phase": "item",
                    "parent": "p", **env})  # fmt: skip
        evs.append({"ev": "phase_end", "ts": 2.5, "span": f"c{i}", "phase": "item",
                    "parent": "p", "status": "completed", "duration_ms": d, "cpu_ms": 0.25,
                    "items": i, "peak_rss_bytes": 1000 + (i * 37) % 100, **env})  # fmt: skip
    s = _reduce(evs, max_phases=3)
    r = s.runs["r"]
    # c0 (the first of its key) and c1 (within max_phases) keep records; the rest fold.
    assert sorted(r.phases) == ["c0", "c1", "p"] and r.folded_count == len(durations) - 2
    full, light = S.KeyAgg(), S.KeyAgg(light=True)
    for i, d in enumerate(durations):
        full.add("completed", d, 0.25, i, 1000 + (i * 37) % 100)
        if i >= 2:
            light.add("completed", d, 0.25, i, 1000 + (i * 37) % 100)
    got = r.keys["item"]
    assert got.to_dict() == full.to_dict()
    assert got.bucket_counts == full.bucket_counts
    assert list(got.recent or ()) == list(full.recent or ())
    assert r.phases["p"].folded is not None
    assert r.phases["p"].folded["item"].to_dict() == light.to_dict()
    assert r.phases["p"].folded["item"].to_dict()["count"] == len(durations) - 2


def test_a_kept_sample_carries_the_trees_rss() -> None:
    """A sample of 10 MiB with 5 MiB of children keeps tree_rss_bytes 15 MiB (the page draws
    it, summing nothing); without children figures it is the process's own RSS."""
    st = S.State()
    base = {"run": "r", "pid": 1}
    S.apply(st, {"ev": "run_start", "ts": 1.0, "seq": 1, **base})
    S.apply(st, {"ev": "sample", "ts": 2.0, "seq": 2, "rss_bytes": 10 * 2**20,
                 "children_rss_bytes": 5 * 2**20, **base})  # fmt: skip
    S.apply(st, {"ev": "sample", "ts": 3.0, "seq": 3, "rss_bytes": 7 * 2**20, **base})
    kept = st.runs["r"].samples.snapshot()
    assert [s["tree_rss_bytes"] for s in kept] == [15 * 2**20, 7 * 2**20]
    assert st.runs["r"].peak_tree_rss_bytes == 15 * 2**20


def _whole(program: list[dict], merge: list[bool], tid: int) -> tuple[list[dict], list[dict]]:
    """A writer's program as the monitor writes it, both ways: every start line kept (with
    its thread), and the phases ``merge`` picks (those nothing referred to between their
    start and their end) written whole: the end line with the start's members."""
    full = [dict(e, thread=f"T{tid}") if e["ev"] == "phase_start" else e for e in program]
    out: list[dict] = []
    held: dict[str, dict] = {}
    picks = iter(merge)
    for e in full:
        span = e.get("span")
        if e["ev"] != "phase_end":
            for ref in (span, e.get("parent")):
                if ref in held:  # a line about it (a child's start): its start line first
                    del held[ref]
        if e["ev"] == "phase_start" and next(picks, False):
            held[span] = e  # deferred: written whole if its end comes first
            out.append(e)
            continue
        if e["ev"] == "phase_end" and span in held:
            start = held.pop(span)
            out.remove(start)
            e = dict(e, thread=start["thread"])
        out.append(e)
    return full, out


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_a_phase_written_whole_reduces_as_its_two_lines(data):
    """Any phases of any writers written whole (one end line with the start's members,
    start = ts - duration_ms) give the same phases, tree, threads, starts and aggregates as
    the same phases written as start and end lines."""
    programs = [
        _thread_program(data.draw, tid, data.draw(st.integers(1, 10))) for tid in range(1, 4)
    ]
    two, one = [], []
    for tid, p in enumerate(programs, 1):
        merge = data.draw(st.lists(st.booleans(), min_size=10, max_size=10))
        a, b = _whole(p, merge, tid)
        # The start a whole line implies: the ts its two-line form would have had.
        starts = {e["span"]: e["ts"] - e["duration_ms"] / 1000 for e in b if "thread" in e
                  and e["ev"] == "phase_end"}  # fmt: skip
        two += [dict(e, ts=starts[e["span"]]) if e["ev"] == "phase_start" and e["span"] in starts
                else e for e in a]  # fmt: skip
        one += b
    assert len(one) < len(two) or not any(e["ev"] == "phase_end" and "thread" in e for e in one)
    head = [{"ev": "run_start", "ts": 999.0, "run": "r", "pid": 1, "seq": 0, "v": 1}]
    sa = views.snapshot(_reduce(head + two), "r", now=2000.0)
    sb = views.snapshot(_reduce(head + one), "r", now=2000.0)
    key = lambda p: p["span"]  # noqa: E731
    pa, pb = sorted(sa["phases"], key=key), sorted(sb["phases"], key=key)
    assert [p["span"] for p in pa] == [p["span"] for p in pb]
    for x, y in zip(pa, pb, strict=True):
        assert x["start"] == pytest.approx(y["start"], abs=1e-9)
        assert {k: v for k, v in x.items() if k != "start"} == {
            k: v for k, v in y.items() if k != "start"
        }
    assert sa["keys"] == sb["keys"]
    assert sa["flow"] == sb["flow"]


def test_whole_lines_beyond_max_phases_fold_into_the_aggregates():
    """Repeats written whole beyond max_phases fold into their key's aggregates exactly as
    repeats written as two lines do (no record kept, every repeat counted)."""

    def log(whole: bool) -> list[dict]:
        evs = [{"ev": "run_start", "ts": 1.0, "run": "r", "pid": 1, "seq": 0, "v": 1}]
        for i in range(1, 51):
            ts = 2.0 + i
            end = {"ev": "phase_end", "ts": ts + 0.5, "run": "r", "pid": 1, "span": f"1.{i}",
                   "phase": "K", "name": "K", "parent": None, "status": "completed",
                   "duration_ms": 500.0, "cpu_ms": 1.0, "items": 1}  # fmt: skip
            if whole:
                evs.append(dict(end, thread="M"))
            else:
                evs.append({"ev": "phase_start", "ts": ts, "run": "r", "pid": 1, "span": f"1.{i}",
                            "phase": "K", "name": "K", "parent": None, "thread": "M"})  # fmt: skip
                evs.append(end)
        return evs

    a = views.snapshot(_reduce(log(False), max_phases=10), "r", now=100.0)
    b = views.snapshot(_reduce(log(True), max_phases=10), "r", now=100.0)
    assert b["keys"]["K"]["count"] == 50 == a["keys"]["K"]["count"]
    assert a["keys"] == b["keys"]
    assert len(a["phases"]) == len(b["phases"]) <= 10
