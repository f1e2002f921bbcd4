"""Acknowledge and clear from any shell: ``ack`` appends alert_ack / alerts_cleared to the
run's log; the reducer, the report, the API and a running Monitor all see them."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
import time

import pytest
from helpers import child_env, of_kind, read_log
from hypothesis import given, settings
from hypothesis import strategies as hs

from atroz_monitor import Monitor
from atroz_monitor.commands import report
from atroz_monitor.read import state
from atroz_monitor.record import ack
from atroz_monitor.store.source import FileSource
from atroz_monitor.surface import api, report_text
from atroz_monitor.view import report_model, views
from atroz_monitor.view.alerts import rule

ME = pwd.getpwuid(os.getuid()).pw_name


def _ack(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "atroz_monitor", "ack", *args],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
    )


def _run_with_alert(path, run_id="r1", key="P00"):
    """A finished run with one phase_errors alert; its id."""
    with Monitor(
        path, sample_interval=None, run_id=run_id, alert_rules=[rule("phase_errors", warning=0)]
    ) as mon:
        with mon.phase(key) as p:
            p.error("bad doc 7")
        (a,) = mon.active_alerts()
    return a["alert"]


def test_ack_appends_an_event_with_who_when_and_note(tmp_path):
    """`ack LOG ID --note` appends one alert_ack line stamped with the user and the note."""
    log = tmp_path / "run.jsonl"
    aid = _run_with_alert(log)
    before = time.time()
    r = _ack(str(log), aid, "--note", "on it")
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"acknowledged {aid} in run r1 (by {ME})\n"
    last = read_log(log)[-1]
    assert last["ev"] == "alert_ack" and last["run"] == "r1" and last["alert"] == aid
    assert last["by"] == ME and last["note"] == "on it"
    assert before - 1 <= last["ts"] <= time.time() + 1


def test_report_and_api_show_the_acknowledgement(tmp_path):
    """After `ack`, the report model and the API's alerts say acknowledged, by whom."""
    log = tmp_path / "run.jsonl"
    aid = _run_with_alert(log)
    assert _ack(str(log), aid, "--note", "known issue").returncode == 0
    st, _, _ = report.load([str(log)])
    model = report_model.build(st, "r1", now=time.time())
    (a,) = model["alerts"]
    assert (a["state"], a["acknowledged"], a["ack_by"], a["ack_note"]) == (
        "acknowledged",
        True,
        ME,
        "known issue",
    )
    assert f"acknowledged by {ME}" in report_text.render_text(model)
    src = FileSource([str(tmp_path)])
    try:
        src.refresh()
        resp = api.route(src, "GET", "/api/v1/runs/r1/alerts", "", {})
        (b,) = json.loads(resp.body)["alerts"]
        assert b["ack_by"] == ME and b["state"] == "acknowledged"
    finally:
        src.close()


def test_clear_hides_acknowledged_alerts_from_the_active_list(tmp_path):
    """`ack --clear` marks the acknowledged alerts cleared: out of state=open, still listed."""
    log = tmp_path / "run.jsonl"
    aid = _run_with_alert(log)
    assert _ack(str(log), aid).returncode == 0
    r = _ack(str(log), "--clear")
    assert r.returncode == 0 and r.stdout == f"cleared 1 acknowledged alert of run r1 (by {ME})\n"
    last = read_log(log)[-1]
    assert last["ev"] == "alerts_cleared" and last["alerts"] == [aid]
    src = FileSource([str(log)])
    try:
        src.refresh()
        open_ = json.loads(api.route(src, "GET", "/api/v1/runs/r1/alerts", "state=open", {}).body)
        every = json.loads(api.route(src, "GET", "/api/v1/runs/r1/alerts", "", {}).body)
        runs = json.loads(api.route(src, "GET", "/api/v1/runs", "", {}).body)
    finally:
        src.close()
    assert open_["alerts"] == []
    assert [a["cleared"] for a in every["alerts"]] == [True]
    assert runs["runs"][0]["alerts_open"] == 0


def test_a_running_monitor_sees_an_ack_from_a_shell(tmp_path):
    """active_alerts() of the live Monitor reflects `ack` and `ack --clear` without restart."""
    log = tmp_path / "run.jsonl"
    with Monitor(
        log, sample_interval=0.05, run_id="live", alert_rules=[rule("phase_errors", warning=0)]
    ) as mon:
        with mon.phase("P00") as p:
            p.error("bad doc 1")
        (a,) = mon.active_alerts()
        assert a["state"] == "raised" and "ack_by" not in a
        assert _ack(str(tmp_path), a["alert"], "--note", "seen").returncode == 0
        (b,) = mon.active_alerts()
        assert (b["state"], b["ack_by"], b["ack_note"]) == ("acknowledged", ME, "seen")
        snap_alert = mon.snapshot()["alerts"][0]
        assert snap_alert["ack_by"] == ME
        assert _ack(str(log), "--clear").returncode == 0
        assert mon.active_alerts() == []


def test_ack_watch_applies_appended_lines_only_once(tmp_path):
    """The watcher reads only appended bytes: a second poll with nothing new applies 0."""
    log = tmp_path / "run.jsonl"
    with Monitor(
        log, sample_interval=None, run_id="w", alert_rules=[rule("phase_errors", warning=0)]
    ) as mon:
        with mon.phase("P00") as p:
            p.error("x")
        (a,) = mon.active_alerts()
        watch = mon.main._ackwatch
        ack.acknowledge(str(log), a["alert"])
        assert watch.poll(force=True) == 1
        assert watch.poll(force=True) == 0
        assert watch.applied == 1


def test_unknown_alert_is_one_line_and_exit_2(tmp_path):
    """An unknown alert id: exit 2, one line naming it and the run's alerts, no traceback."""
    log = tmp_path / "run.jsonl"
    aid = _run_with_alert(log)
    size = log.stat().st_size
    r = _ack(str(log), "nope:run:1")
    assert r.returncode == 2
    assert r.stderr == (
        f"atroz-monitor: ack: no alert 'nope:run:1' in run r1 (its alerts: {aid})\n"
    )
    assert log.stat().st_size == size  # nothing appended


@pytest.mark.parametrize(
    "args,message",
    [
        (["ALERT", "--clear"], "give an ALERT_ID or --clear"),
        ([], "give an ALERT_ID or --clear"),
    ],
)
def test_ack_argument_errors(tmp_path, args, message):
    """Both or neither of ALERT_ID and --clear: exit 2 with one line."""
    log = tmp_path / "run.jsonl"
    _run_with_alert(log)
    r = _ack(str(log), *args)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


def test_directory_means_its_most_recently_written_log(tmp_path):
    """PATH a directory: the ack goes to the log written last (by mtime), not another."""
    old = _run_with_alert(tmp_path / "a.jsonl", "ra", key="P01")
    new = _run_with_alert(tmp_path / "b.jsonl", "rb")
    os.utime(tmp_path / "a.jsonl", (1_000_000, 1_000_000))
    assert _ack(str(tmp_path), new).returncode == 0
    assert of_kind(read_log(tmp_path / "b.jsonl"), "alert_ack")[0]["run"] == "rb"
    assert of_kind(read_log(tmp_path / "a.jsonl"), "alert_ack") == []
    r = _ack(str(tmp_path), old)  # the older log's alert is not in the newest log
    assert r.returncode == 2 and "no alert" in r.stderr


def test_ack_never_follows_a_symlink(tmp_path):
    """A log that is a symbolic link is refused (O_NOFOLLOW): exit 2, target untouched."""
    real = tmp_path / "real.jsonl"
    aid = _run_with_alert(real)
    link = tmp_path / "link.jsonl"
    link.symlink_to(real)
    size = real.stat().st_size
    r = _ack(str(link), aid)
    assert r.returncode == 2 and "cannot append" in r.stderr
    assert real.stat().st_size == size


def test_ack_refuses_a_compressed_log(tmp_path):
    """A gzipped (archived) log takes no more events: exit 2 with the reason."""
    import gzip

    log = tmp_path / "run.jsonl"
    aid = _run_with_alert(log)
    gz = tmp_path / "run2.jsonl.gz"
    gz.write_bytes(gzip.compress(log.read_bytes()))
    r = _ack(str(gz), aid)
    assert r.returncode == 2 and "compressed" in r.stderr


def test_ack_appends_to_the_last_part_of_a_rotated_log(tmp_path):
    """A rotated log: the ack goes to the latest part, found from the first part's name."""
    log = tmp_path / "run.jsonl"
    with Monitor(
        log,
        sample_interval=None,
        run_id="rot",
        max_bytes=4096,
        alert_rules=[rule("phase_errors", warning=0)],
    ) as mon:
        with mon.phase("P00") as p:
            p.error("first")
            for i in range(100):
                p.warning(f"filler line {i} " + "x" * 80)
        (a,) = mon.active_alerts()
    parts = sorted(tmp_path.glob("run.part*.jsonl"))
    assert parts, "the log rotated"
    assert _ack(str(log), a["alert"]).returncode == 0
    assert read_log(parts[-1])[-1]["ev"] == "alert_ack"


ALERT = {
    "ev": "alert",
    "run": "r",
    "pid": 1,
    "alert": "a:run:1",
    "rule": "a",
    "severity": "warning",
    "state": "raised",
    "msg": "m",
}


@settings(max_examples=100, deadline=None)
@given(order=hs.permutations(["alert", "ack", "clear"]))
def test_reducer_ends_acknowledged_and_cleared_in_any_file_order(order):
    """Read in any order (several files), an alert with its ack and clear ends acknowledged
    by the acker, and cleared when the clear came after the alert."""
    evs = {
        "alert": {**ALERT, "ts": 1.0},
        "ack": {
            "ev": "alert_ack",
            "run": "r",
            "pid": 2,
            "alert": "a:run:1",
            "by": "ann",
            "note": "n",
            "ts": 2.0,
        },
        "clear": {
            "ev": "alerts_cleared",
            "run": "r",
            "pid": 3,
            "alerts": ["a:run:1"],
            "by": "bob",
            "ts": 3.0,
        },
    }
    st = state.State()
    state.apply_all(st, [evs[k] for k in order])
    a = st.runs["r"].alerts["a:run:1"]
    assert (a["acknowledged"], a["ack_by"], a["state"]) == (True, "ann", "acknowledged")
    assert a.get("cleared", False) == (order.index("clear") > order.index("alert"))


def test_an_escalation_brings_a_cleared_alert_back():
    """A re-raise (escalation) of a cleared alert puts it back on the active list."""
    st = state.State()
    state.apply_all(
        st,
        [
            {**ALERT, "ts": 1.0},
            {"ev": "alert_ack", "run": "r", "pid": 2, "alert": "a:run:1", "by": "ann", "ts": 2.0},
            {"ev": "alerts_cleared", "run": "r", "pid": 3, "alerts": ["a:run:1"], "ts": 3.0},
            {**ALERT, "severity": "critical", "ts": 4.0},
        ],
    )
    snap = views.snapshot(st, "r", now=5.0)
    (a,) = snap["alerts"]
    assert (a["state"], a["severity"], a.get("cleared")) == ("raised", "critical", None)


def test_directory_with_run_picks_that_runs_log(tmp_path):
    """`ack DIR ID --run R` writes to DIR/R.jsonl even when another log is newer."""
    aid = _run_with_alert(tmp_path / "ra.jsonl", "ra")
    _run_with_alert(tmp_path / "rb.jsonl", "rb")
    os.utime(tmp_path / "ra.jsonl", (1_000_000, 1_000_000))
    r = _ack(str(tmp_path), aid, "--run", "ra")
    assert r.returncode == 0, r.stderr
    assert [e["run"] for e in of_kind(read_log(tmp_path / "ra.jsonl"), "alert_ack")] == ["ra"]
    assert of_kind(read_log(tmp_path / "rb.jsonl"), "alert_ack") == []


def _readers_on(path) -> int:
    """Read-only descriptors of this process on ``path`` (the kernel's view: /proc/self/fd
    and the access mode in fdinfo): the watch's; the writer's is write-only."""
    target = os.path.realpath(path)
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") != target:
                continue
            with open(f"/proc/self/fdinfo/{fd}") as f:
                flags = next(int(x.split()[1], 8) for x in f if x.startswith("flags:"))
        except (OSError, StopIteration):
            continue
        n += flags & 3 == os.O_RDONLY
    return n


def test_the_watch_keeps_no_descriptor_after_the_run(tmp_path):
    """A finished run's watch holds no descriptor on its log, even after active_alerts()
    looked again."""
    log = tmp_path / "run.jsonl"
    mon = Monitor(log, sample_interval=0.02, alert_rules=[rule("phase_errors", warning=0)])
    with mon:
        with mon.phase("P00") as p:
            p.error("x")
        mon.active_alerts()
        assert _readers_on(log) == 1
    assert _readers_on(log) == 0
    (a,) = mon.active_alerts()
    assert a["state"] == "raised" and _readers_on(log) == 0


def test_cleared_alerts_leave_the_open_alerts_gauge(tmp_path):
    """/metrics' atroz_alerts_open counts an acknowledged alert, and not once cleared."""
    from atroz_monitor.surface import prometheus

    log = tmp_path / "run.jsonl"
    aid = _run_with_alert(log)
    line = 'atroz_alerts_open{run="r1",severity="warning"}'

    def gauge() -> str:
        st, _, _ = report.load([str(log)])
        text = prometheus.render_prometheus(prometheus.collect(st))
        return next(x for x in text.splitlines() if x.startswith(line))

    assert _ack(str(log), aid).returncode == 0
    assert gauge() == line + " 1"
    assert _ack(str(log), "--clear").returncode == 0
    assert gauge() == line + " 0"
