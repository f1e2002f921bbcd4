"""The reducer: pure, order-tolerant across writers, bounded, and the same live or replayed."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from atroz_monitor import state as S
from atroz_monitor import views


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


def test_a_million_repeats_fold_into_bounded_state():
    """Beyond max_phases, repeats fold into their parent's aggregate: bounded records,
    exact counts and totals."""
    s = S.State(max_phases=100)
    apply = S.apply
    apply(
        s,
        {
            "ev": "phase_start",
            "run": "r",
            "pid": 1,
            "span": "p",
            "phase": "loop",
            "name": "loop",
            "parent": None,
            "ts": 0.0,
        },
    )
    n = 20_000
    for i in range(n):
        span = f"c{i}"
        apply(
            s,
            {
                "ev": "phase_start",
                "run": "r",
                "pid": 1,
                "span": span,
                "phase": "item",
                "name": "item",
                "parent": "p",
                "ts": 1.0,
            },
        )
        apply(
            s,
            {
                "ev": "phase_end",
                "run": "r",
                "pid": 1,
                "span": span,
                "phase": "item",
                "name": "item",
                "parent": "p",
                "ts": 1.0,
                "status": "completed",
                "duration_ms": 2.0,
            },
        )
    r = s.runs["r"]
    assert len(r.phases) <= 101
    assert r.keys["item"].count == n and r.keys["item"].total_ms == 2.0 * n
    parent = r.phases["p"]
    kept = sum(1 for c in parent.children if r.phases[c].phase == "item")
    assert parent.folded["item"].count + kept == n
    assert r.folded_count == parent.folded["item"].count
    assert r.phases["c0"].phase == "item"  # the first one of the key keeps its detail


def test_run_without_end_is_running_or_interrupted_by_liveness_and_silence():
    """A log without run_end is running while its writer lives, interrupted once it does
    not; with unknown liveness, silence beyond max(3 x interval, 10 s) means interrupted."""
    evs = [
        {
            "ev": "run_start",
            "ts": 100.0,
            "run": "r",
            "pid": 1,
            "seq": 1,
            "v": 1,
            "sample_interval": 1.0,
        },
        {
            "ev": "phase_start",
            "ts": 101.0,
            "run": "r",
            "pid": 1,
            "seq": 2,
            "span": "1.1",
            "phase": "P00",
            "name": "P00",
            "parent": None,
        },
    ]
    s = _reduce(evs)
    assert views.snapshot(s, "r", now=500.0, alive=True)["run"]["status"] == "running"
    snap = views.snapshot(s, "r", now=105.0, alive=False)
    assert snap["run"]["status"] == "interrupted"
    assert snap["phases"][0]["status"] == "interrupted"
    assert views.snapshot(s, "r", now=110.0)["run"]["status"] == "running"
    assert views.snapshot(s, "r", now=111.5)["run"]["status"] == "interrupted"


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


def test_repeats_open_beyond_max_phases_are_counted_folded_at_run_end():
    """Repeats started beyond max_phases and never ended (kept light) are dropped at
    run_end and counted in folded_count (quality.phases_folded), never lost silently."""
    env = {"run": "r", "pid": 1}
    evs = [{"ev": "run_start", "ts": 1.0, **env},
           {"ev": "phase_start", "ts": 1.0, "span": "p", "phase": "loop", **env}]  # fmt: skip
    for i in range(6):  # started, never ended: 2 get records (max 3 with the parent), 4 light
        evs.append({"ev": "phase_start", "ts": 2.0, "span": f"c{i}", "phase": "item",
                    "parent": "p", **env})  # fmt: skip
    evs.append({"ev": "run_end", "ts": 3.0, "status": "failed", **env})
    s = _reduce(evs, max_phases=3)
    r = s.runs["r"]
    assert len(r.phases) == 3 and not r.lite
    assert r.folded_count == 4
    assert views.snapshot(s, "r", now=4.0)["quality"]["phases_folded"] == 4
