"""Alert rules: parsing, evaluation episodes, live raising, replay, acknowledgement, webhook."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
import time

import pytest
from helpers import of_kind, read_log
from hypothesis import given, settings
from hypothesis import strategies as st

from atroz_monitor import Monitor
from atroz_monitor.read.loader import load_state
from atroz_monitor.view.alerts import (
    Active,
    Evaluator,
    default_rules,
    evaluate_replay,
    load_rules,
    rule,
)

# -- parsing ------------------------------------------------------------------------------

# tomllib is standard from 3.11; on 3.10 a TOML rules file is a clear error (tested below).
needs_tomllib = pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is Python 3.11+")


@pytest.mark.skipif(sys.version_info >= (3, 11), reason="Python 3.10 only: no tomllib")
def test_toml_rules_on_python_3_10_name_the_json_alternative(tmp_path):
    """Without tomllib, an alerts.toml fails with a message that points to alerts.json."""
    f = tmp_path / "alerts.toml"
    f.write_text('[[rules]]\ntype = "rss"\nwarning = 1\n')
    with pytest.raises(ValueError, match="TOML needs Python 3.11\\+; use alerts.json"):
        load_rules(f)


@needs_tomllib
def test_rules_file_toml_and_json_give_the_same_rules(tmp_path):
    """An alerts.toml and the equivalent alerts.json load to equal rules."""
    toml = tmp_path / "alerts.toml"
    toml.write_text(
        '[[rules]]\ntype = "phase_duration"\nphase = "P03"\nwarning = 60000\n'
        'critical = 120000\n\n[[rules]]\nid = "mem"\ntype = "rss"\nwarning = 512\n'
    )
    js = tmp_path / "alerts.json"
    js.write_text(
        json.dumps(
            {
                "rules": [
                    {
                        "type": "phase_duration",
                        "phase": "P03",
                        "warning": 60000,
                        "critical": 120000,
                    },
                    {"id": "mem", "type": "rss", "warning": 512},
                ]
            }
        )
    )
    a, b = load_rules(toml), load_rules(js)
    assert a == b
    assert a[0].id == "phase_duration@P03" and a[0].thresholds == {
        "warning": 60000.0,
        "critical": 120000.0,
    }
    assert a[1].id == "mem"


@pytest.mark.parametrize(
    "content, needle",
    [
        ('[[rules]]\ntype = "nope"\nwarning = 1\n', "unknown rule type 'nope'"),
        ('[[rules]]\ntype = "rss"\nwarning = -5\n', "'warning' must not be negative"),
        ('[[rules]]\ntype = "rss"\nsevere = 5\n', "unknown key 'severe'"),
        ('[[rules]]\ntype = "rss"\n', "at least one threshold"),
        ('[[rules]]\ntype = "rss"\nphase = "P1"\nwarning = 1\n', "takes no 'phase'"),
        ('[[rules]]\ntype = "rss"\nwarning = "high"\n', "must be a number"),
        ('[[rules]\ntype = "rss"\n', "line 1"),
        (
            '[[rules]]\nid = "a"\ntype = "rss"\nwarning = 1\n[[rules]]\nid = "a"\ntype = "rss"\n'
            "warning = 2\n",
            "duplicate rule id 'a'",
        ),
        ("rulez = []\n", "unknown top-level key 'rulez'"),
    ],
)
@needs_tomllib
def test_bad_rule_files_are_clear_errors(tmp_path, content, needle):
    """A bad rule file fails at load with the file, the rule (or line) and the key named."""
    f = tmp_path / "alerts.toml"
    f.write_text(content)
    with pytest.raises(ValueError) as info:
        load_rules(f)
    assert needle in str(info.value) and str(f) in str(info.value)


def test_bad_rules_fail_at_monitor_construction(tmp_path):
    """Monitor(alert_rules=...) validates dict rules at construction, naming the entry."""
    with pytest.raises(ValueError, match=r"alert_rules\[1\].*unknown rule type"):
        Monitor(
            tmp_path / "r.jsonl", alert_rules=[{"type": "rss", "warning": 1}, {"type": "bogus"}]
        )


def test_default_rules_cover_the_documented_set():
    """The default rules are the documented ones, with the documented thresholds."""
    d = {r.type: r for r in default_rules()}
    assert d["phase_failed"].thresholds == {"critical": 0.0}
    assert d["phase_duration_p95"].thresholds == {"warning": 1.5, "critical": 3.0}
    assert d["phase_duration_p95"].params["min_runs"] == 5
    assert d["rss_pct"].thresholds == {"warning": 70.0, "critical": 90.0}
    assert set(d) == {
        "phase_failed",
        "phase_duration_p95",
        "phase_errors",
        "rss_pct",
        "rss_growth",
        "cpu_saturation",
        "stall",
    }


# -- evaluation episodes (property) -------------------------------------------------------


def _episodes(values, thr):
    """Expected raise count: transitions from not-over to over."""
    n, over = 0, False
    for v in values:
        if v > thr and not over:
            n += 1
        over = v > thr
    return n


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 2000), min_size=1, max_size=60))
def test_rss_rule_raises_once_per_episode_and_resolves(values):
    """Over any RSS series: one raise per episode above the threshold, never one without
    the condition, a resolve each time it clears."""
    ev = Evaluator([rule("rss", warning=1000, cooldown_s=0)], max_per_minute=10**6)
    raised = resolved = 0
    for i, mb in enumerate(values):
        for a in ev.sample(float(i), {"rss_bytes": mb * 2**20}):
            assert a["rule"] == "rss"
            if a["state"] == "raised":
                raised += 1
                assert mb > 1000 and a["value"] == mb and a["threshold"] == 1000
            else:
                resolved += 1
                assert mb <= 1000
    assert raised == _episodes(values, 1000)
    assert resolved == raised - (1 if values[-1] > 1000 else 0)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["rss", "rss_pct", "cpu_saturation", "stall", "throughput", "rss_growth"]),
    st.dictionaries(
        st.sampled_from(["info", "warning", "critical"]),
        st.floats(0, 1e6, allow_nan=False),
        min_size=1,
    ),
    st.floats(-1e7, 1e7, allow_nan=False),
)
def test_passes_is_the_cheap_form_of_severity(type_, thresholds, value):
    """The per-sample gate never disagrees with the full severity test, above or below."""
    r = rule(type_, **thresholds)
    assert r.passes(value) == (r.severity(value) is not None)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["completed", "failed", "cancelled"]), min_size=1, max_size=40))
def test_failed_rule_episodes_per_phase_key(statuses):
    """phase_failed: raised on a failure, held while the key keeps failing, resolved by a
    later run of the key that does not fail."""
    ev = Evaluator([rule("phase_failed", cooldown_s=0)], max_per_minute=10**6)
    raised = 0
    for i, s in enumerate(statuses):
        for a in ev.phase_end(float(i), f"s{i}", "P01", s, 10.0):
            if a["state"] == "raised":
                raised += 1
                assert s == "failed" and a["severity"] == "critical"
            else:
                assert s != "failed"
    assert raised == _episodes([1 if s == "failed" else 0 for s in statuses], 0)


def test_highest_severity_wins_and_escalates():
    """A value past the critical threshold raises critical; a warning episode that worsens
    is re-raised as critical under the same id."""
    ev = Evaluator([rule("rss_pct", warning=70, critical=90)])
    a = ev.sample(1.0, {"rss_bytes": 75, "mem_total_bytes": 100})
    assert [(x["state"], x["severity"]) for x in a] == [("raised", "warning")]
    b = ev.sample(2.0, {"rss_bytes": 95, "mem_total_bytes": 100})
    assert [(x["state"], x["severity"], x["alert"]) for x in b] == [
        ("raised", "critical", a[0]["alert"])
    ]


def test_cooldown_and_rate_limit_suppress_and_count():
    """Re-raising within the cooldown is suppressed; beyond max_per_minute too; both are
    counted."""
    ev = Evaluator([rule("rss", warning=1, cooldown_s=30)])
    seq = [
        ev.sample(t, {"rss_bytes": v * 2**20})
        for t, v in [(0, 5), (1, 0), (2, 5), (40, 0), (41, 5)]
    ]
    states = [[a["state"] for a in x] for x in seq]
    assert states == [["raised"], ["resolved"], [], [], ["raised"]]
    assert ev.suppressed == 1
    ev2 = Evaluator([rule("phase_failed", cooldown_s=0)], max_per_minute=3)
    raised = [a for i in range(10) for a in ev2.phase_end(0.0, "s", f"K{i}", "failed", 1.0)]
    assert len(raised) == 3 and ev2.suppressed == 7


def test_cpu_saturation_needs_the_duration():
    """CPU saturation raises only after the tree stayed above X% for T seconds."""
    ev = Evaluator([rule("cpu_saturation", warning=90, for_s=10)], ncpu=2)
    out = []
    for t in range(0, 15):
        out += ev.sample(float(t), {"cpu_pct": 100.0, "children_cpu_pct": 95.0})
    assert [(a["state"], a["value"]) for a in out] == [("raised", 97.5)]
    assert "for 10 s" in out[0]["msg"]


def test_rss_growth_detects_a_leak_not_a_plateau():
    """RSS rising steadily over the window raises rss_growth; a flat series does not."""
    ev = Evaluator([rule("rss_growth", warning=50, window_s=20)])
    leak = [a for t in range(30) for a in ev.sample(float(t), {"rss_bytes": (100 + 5 * t) * 2**20})]
    assert [a["state"] for a in leak] == ["raised"]
    ev2 = Evaluator([rule("rss_growth", warning=50, window_s=20)])
    flat = [a for t in range(30) for a in ev2.sample(float(t), {"rss_bytes": 100 * 2**20})]
    assert flat == []


def test_stall_and_throughput_on_synthetic_active_phases():
    """Stall: no activity and low CPU for T seconds; throughput: items/s below the floor."""
    ev = Evaluator(
        [rule("stall", warning=30), rule("throughput", phase="P1", warning=5, min_elapsed_s=10)]
    )
    quiet = {"cpu_pct": 1.0}
    assert ev.sample(20.0, quiet, [Active("s1", "P1", 0.0, 200, 15.0)]) == []
    got = ev.sample(50.0, quiet, [Active("s1", "P1", 0.0, 200, 15.0)])
    assert sorted((a["type"], a["state"]) for a in got) == [
        ("stall", "raised"),
        ("throughput", "raised"),
    ]
    busy = {"cpu_pct": 80.0}
    got = ev.sample(51.0, busy, [Active("s1", "P1", 0.0, 600, 51.0)])
    assert sorted((a["type"], a["state"]) for a in got) == [
        ("stall", "resolved"),
        ("throughput", "resolved"),
    ]


# -- live ---------------------------------------------------------------------------------


def test_failed_phase_alert_exists_when_the_with_block_reraises(tmp_path):
    """The critical alert of a failed phase is written and open by the time the exception
    reaches the caller."""
    log = tmp_path / "r.jsonl"
    with Monitor(log, sample_interval=None) as mon:
        try:
            with mon.phase("P07"):
                raise RuntimeError("boom")
        except RuntimeError:
            open_now = mon.active_alerts()
            on_disk = of_kind(read_log(log), "alert")
    assert [(a["rule"], a["severity"], a["phase"]) for a in open_now] == [
        ("phase_failed", "critical", "P07")
    ]
    assert [(a["state"], a["alert"]) for a in on_disk] == [("raised", open_now[0]["alert"])]


def test_acknowledge_records_an_event(tmp_path):
    """mon.acknowledge(id) writes an acknowledged alert event; an unknown id is an error."""
    log = tmp_path / "r.jsonl"
    with Monitor(log, sample_interval=None) as mon:
        try:
            with mon.phase("P01"):
                raise ValueError("x")
        except ValueError:
            pass
        aid = mon.active_alerts()[0]["alert"]
        mon.acknowledge(aid)
        with pytest.raises(ValueError, match="no alert"):
            mon.acknowledge("nope")
        snap = mon.snapshot()
    states = [a["state"] for a in of_kind(read_log(log), "alert")]
    assert states == ["raised", "acknowledged"]
    assert snap["alerts"][0]["acknowledged"] is True


def test_stall_with_a_real_sleeping_phase(tmp_path):
    """A phase that sleeps without progress raises a stall alert from the sampler thread,
    resolved once it ends."""
    log = tmp_path / "r.jsonl"
    with Monitor(log, sample_interval=0.02, alert_rules=[rule("stall", warning=0.2)]) as mon:
        with mon.phase("P02") as p:
            deadline = time.monotonic() + 10
            while not mon.active_alerts() and time.monotonic() < deadline:
                time.sleep(0.02)
            opened = mon.active_alerts()
    alerts = of_kind(read_log(log), "alert")
    assert opened and opened[0]["span"] == p.span and opened[0]["type"] == "stall"
    assert [a["state"] for a in alerts] == ["raised", "resolved"]


def test_rss_rule_with_a_real_child_that_allocates(tmp_path):
    """A child process holding 300 MB trips an rss rule at 200 MB on the whole tree."""
    log = tmp_path / "r.jsonl"
    code = (
        "import sys,time\nb=bytearray(300*2**20)\nb[::4096]=b'x'*len(b[::4096])\n"
        "print('ok',flush=True)\nsys.stdin.read()"
    )
    with Monitor(log, sample_interval=0.05, alert_rules=[rule("rss", warning=200)]) as mon:
        with mon.phase("P03"):
            child = subprocess.Popen(
                [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE
            )
            assert child.stdout.readline().strip() == b"ok"
            deadline = time.monotonic() + 10
            while not mon.active_alerts() and time.monotonic() < deadline:
                time.sleep(0.05)
            child.stdin.close()
            child.wait(10)
    raised = [a for a in of_kind(read_log(log), "alert") if a["state"] == "raised"]
    assert raised and raised[0]["rule"] == "rss" and raised[0]["value"] > 200


def test_duration_p95_rule_uses_the_directory_history(tmp_path):
    """With 5 earlier runs of a phase in the directory (read from its catalog), a run 40x
    slower raises the duration alert as critical (k = 3)."""
    d = tmp_path / "runs"
    for i in range(5):
        with Monitor(d, sample_interval=None, alert_rules=[], run_id=f"r{i}") as m:
            with m.phase("P00"):
                time.sleep(0.01)
    with Monitor(d, sample_interval=None, run_id="r9") as mon:
        with mon.phase("P00"):
            time.sleep(0.4)  # 40x: critical (k = 3) even if the machine stretches the 10 ms
    alerts = [
        a for a in of_kind(read_log(d / "r9.jsonl"), "alert") if a["rule"] == "phase_duration_p95"
    ]
    assert [(a["state"], a["severity"]) for a in alerts] == [("raised", "critical")]
    assert alerts[0]["value"] > 3 and "over 5 runs" in alerts[0]["msg"]


def test_replay_evaluates_logs_recorded_without_rules(tmp_path):
    """A log recorded with alert_rules=[] judged on replay gives the alerts the live
    monitor gives with the rules."""
    rules = [rule("phase_failed"), rule("phase_duration", warning=30)]

    def pipeline(mon):
        with mon.phase("A"):
            time.sleep(0.05)
        try:
            with mon.phase("B"):
                raise KeyError("b")
        except KeyError:
            pass

    with Monitor(
        tmp_path / "plain.jsonl", sample_interval=None, alert_rules=[], run_id="plain"
    ) as m:
        pipeline(m)
    with Monitor(
        tmp_path / "live.jsonl", sample_interval=None, alert_rules=rules, run_id="live"
    ) as m:
        pipeline(m)
    st, _ = load_state([tmp_path / "plain.jsonl"])
    replayed = evaluate_replay(st, "plain", rules)
    live = [a for a in of_kind(read_log(tmp_path / "live.jsonl"), "alert")]
    strip = lambda a: (a["rule"], a["phase"], a["severity"], a["state"])  # noqa: E731
    assert [strip(a) for a in replayed] == [strip(a) for a in live]
    assert len(replayed) == 2


# -- notifiers ------------------------------------------------------------------------------


class _Hook(http.server.BaseHTTPRequestHandler):
    received: list = []
    status = 200
    release = threading.Event()

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        if self.status == 0:  # slow: hold the request until the test releases it
            type(self).release.wait(10)
        self.send_response(self.status or 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


def _server(status):
    handler = type("H", (_Hook,), {"received": [], "status": status, "release": threading.Event()})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, handler


def _failing_run(log, **kw):
    with Monitor(log, sample_interval=None, alert_rules=[rule("phase_failed")], **kw) as mon:
        try:
            with mon.phase("P05"):
                raise RuntimeError("x")
        except RuntimeError:
            pass
    return mon


def test_webhook_posts_the_documented_payload_and_on_alert_is_called(tmp_path):
    """The webhook gets the alert as JSON; on_alert gets the alert dict; counted as sent."""
    srv, h = _server(200)
    got = []
    mon = _failing_run(
        tmp_path / "r.jsonl", webhook=f"http://127.0.0.1:{srv.server_port}/", on_alert=got.append
    )
    srv.shutdown()
    assert len(h.received) == 1
    p = h.received[0]
    assert p["source"] == "atroz_monitor" and p["run"] == mon.run_id
    assert p["alert"]["rule"] == "phase_failed" and p["alert"]["state"] == "raised"
    assert got[0]["alert"] == p["alert"]["alert"]
    assert mon.main.health()["notify_sent"] == 1


def test_webhook_500_down_and_slow_never_hold_the_pipeline(tmp_path):
    """A webhook answering 500 is retried then counted failed; one that is down is counted;
    one that never answers does not keep the run from completing."""
    srv, h = _server(500)
    mon = _failing_run(
        tmp_path / "a.jsonl", webhook=f"http://127.0.0.1:{srv.server_port}/", notify_wait=2.0
    )
    srv.shutdown()
    # Retried with backoff (0.5 s, 1 s, ...) until the run's 2 s flush budget ran out.
    assert len(h.received) >= 3
    health = mon.main.health()
    assert health["notify_failed"] == 1 and health["notify_retries"] >= 2
    assert health["notify_last_error"] == "webhook answered 500"

    srv2 = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    port = srv2.server_port
    srv2.server_close()  # nothing listens there now
    mon = _failing_run(tmp_path / "b.jsonl", webhook=f"http://127.0.0.1:{port}/")
    assert mon.main.health()["notify_failed"] == 1

    srv3, h3 = _server(0)  # holds every request until released
    mon = _failing_run(tmp_path / "c.jsonl", webhook=f"http://127.0.0.1:{srv3.server_port}/")
    assert [e["ev"] for e in read_log(tmp_path / "c.jsonl")][-1] == "run_end"
    h3.release.set()
    srv3.shutdown()


def test_evaluator_opens_one_episode_when_threads_end_a_key_at_once(monkeypatch):
    """Eight threads end the same slow key at the same moment (a barrier), 20 rounds, one
    resolving between rounds: each round opens exactly one episode (20 raises, 20
    resolutions, unique ids), as the evaluator's lock guarantees. A raise is slowed down
    inside (its value's rounding sleeps) so that without the lock all eight would raise."""
    from collections import Counter

    import atroz_monitor.view.alerts as alerts_mod

    def slow_round(v):
        time.sleep(0.001)  # a thread switch in the middle of a raise
        return round(v, 3) if isinstance(v, float) else v

    monkeypatch.setattr(alerts_mod, "_round", slow_round)
    ev = Evaluator([rule("phase_duration", warning=50, cooldown_s=0)], max_per_minute=10**9)
    got: list[list[dict]] = [[] for _ in range(8)]
    barrier = threading.Barrier(8, timeout=30)

    def work(i: int) -> None:
        for n in range(20):
            barrier.wait()
            got[i] += ev.phase_end(1000.0 + n, f"s{i}", "P", "completed", 100.0)
            barrier.wait()
            if i == 0:
                got[i] += ev.phase_end(1000.0 + n, "s0", "P", "completed", 10.0)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    alerts = [a for g in got for a in g]
    raised = Counter(a["alert"] for a in alerts if a["state"] == "raised")
    resolved = Counter(a["alert"] for a in alerts if a["state"] == "resolved")
    assert sum(raised.values()) == 20 and len(raised) == 20
    assert resolved == raised
    assert ev.active() == []


# -- one merge of recorded and replayed alerts --------------------------------------------


def test_merge_alerts_keeps_the_recorded_state_and_adds_replay_only_alerts():
    """merge_alerts: an alert in both keeps the log's (acknowledged) state; one only the
    replay raised joins; oldest raise first."""
    from atroz_monitor.view.alerts import merge_alerts

    recorded = [{"alert": "a", "state": "acknowledged", "raised_ts": 2.0}]
    replayed = [
        {"alert": "a", "state": "raised", "raised_ts": 2.0},
        {"alert": "b", "state": "raised", "raised_ts": 1.0},
    ]
    got = merge_alerts(recorded, replayed)
    assert [(a["alert"], a["state"]) for a in got] == [("b", "raised"), ("a", "acknowledged")]
    assert merge_alerts(recorded, None) == recorded


def test_serve_and_report_show_one_state_for_an_acknowledged_alert(tmp_path):
    """A live-raised, acknowledged alert that --alerts rules raise again on replay is
    'acknowledged' in both serve's snapshot and report's model."""
    from atroz_monitor.record import ack
    from atroz_monitor.store.source import FileSource
    from atroz_monitor.surface import server
    from atroz_monitor.view import report_model

    rules_file = tmp_path / "rules.json"
    rules_file.write_text(json.dumps([{"type": "phase_failed"}]))
    d = tmp_path / "runs"
    d.mkdir()
    with Monitor(d / "r.jsonl", sample_interval=None, alert_rules=[rule("phase_failed")],
                 run_id="r") as m:  # fmt: skip
        try:
            with m.phase("B"):
                raise KeyError("b")
        except KeyError:
            pass
    st, _ = load_state([d / "r.jsonl"])
    (aid,) = st.runs["r"].alerts
    ack.acknowledge(str(d / "r.jsonl"), aid)
    st, _ = load_state([d / "r.jsonl"])
    replay = evaluate_replay(st, "r", load_rules(rules_file))
    assert [a["alert"] for a in replay] == [aid]  # the replay raises the same alert
    model = report_model.build(st, "r", now=time.time(), replay_alerts=replay)
    src = FileSource([d], alerts=server._alert_hook(str(rules_file)))
    try:
        served = src.snapshot("r")["alerts"]
    finally:
        src.close()
    assert [(a["alert"], a["state"]) for a in model["alerts"]] == [(aid, "acknowledged")]
    assert [(a["alert"], a["state"]) for a in served] == [(aid, "acknowledged")]
