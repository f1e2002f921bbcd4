"""Redaction end to end, container limits in the run, OOM kills as critical alerts."""

from __future__ import annotations

import logging
import sys
import time

import pytest
from helpers import of_kind, read_log

from atroz_monitor import Monitor
from atroz_monitor.view.alerts import Evaluator, rule

SECRETS = [
    "hunter2-pass",
    "s3cr3t-token-value",
    "AKIAABCDEFGHIJKLMNOP",
    "ghp_" + "a" * 36,
    "urlpass99",
]


def test_secrets_never_reach_the_log_the_snapshot_or_a_report(tmp_path, monkeypatch, capsys):
    """argv, run and phase metadata, messages (logging included), errors, artifact paths,
    metric names and tags are redacted before they are written."""
    from atroz_monitor.commands import cli

    monkeypatch.setattr(sys, "argv", ["etl.py", "--password", SECRETS[0], f"--token={SECRETS[1]}"])
    log = tmp_path / "run.jsonl"
    with Monitor(
        log,
        sample_interval=None,
        alert_rules=[],
        meta={"db": {"password": SECRETS[0]}, "aws": SECRETS[2]},
        tags={"api_key": SECRETS[1]},
    ) as mon:
        with mon.phase("P00", meta={"token": SECRETS[1]}) as p:
            p.warning(f"retrying with password={SECRETS[0]}")
            logging.getLogger("etl").error(
                "upload to https://bob:%s@example.com failed", SECRETS[4]
            )
            p.artifact(f"https://bob:{SECRETS[4]}@example.com/out.csv")
            p.metric(f"token={SECRETS[1]}", 1)
        with pytest.raises(RuntimeError):
            with mon.phase("P01"):
                raise RuntimeError(f"auth failed for key {SECRETS[3]}")
        snap = mon.snapshot()
    raw = log.read_text()
    for secret in SECRETS:
        assert secret not in raw, secret
        assert secret not in str(snap), secret
    assert "[REDACTED]" in raw
    code = cli.main(["report", str(log), "--format", "json"])
    out = capsys.readouterr().out
    assert code == 0 and all(secret not in out for secret in SECRETS)


def test_redaction_options_fail_fast_and_can_turn_a_pattern_off(tmp_path):
    """An invalid user pattern is a ValueError at construction; a built-in can be
    disabled; user patterns redact too."""
    with pytest.raises(ValueError):
        Monitor(tmp_path / "a.jsonl", redact=["(unclosed"])
    with pytest.raises(ValueError):
        Monitor(tmp_path / "a.jsonl", redact_disable=["no_such_pattern"])
    log = tmp_path / "b.jsonl"
    with Monitor(
        log,
        sample_interval=None,
        alert_rules=[],
        redact=[r"CUST-\d{6}"],
        redact_disable=["aws_access_key"],
    ) as mon:
        mon.warning("customer CUST-123456 uses AKIAABCDEFGHIJKLMNOP")
    msg = of_kind(read_log(log), "log")[0]["msg"]
    assert "CUST-123456" not in msg and "AKIAABCDEFGHIJKLMNOP" in msg


def test_run_start_records_the_container_limits(tmp_path):
    """run_start carries the cgroup limits (or says host figures are used) and the snapshot
    shows them."""
    log = tmp_path / "r.jsonl"
    with Monitor(log, sample_interval=None, alert_rules=[]) as mon:
        pass
    lim = read_log(log)[0]["limits"]
    assert set(lim) >= {
        "version",
        "memory_max_bytes",
        "cpu_quota",
        "cpu_effective",
        "source",
        "note",
    }
    assert lim["cpu_effective"] > 0
    assert mon.snapshot()["run"]["limits"] == lim


def test_memory_rule_uses_the_container_limit():
    """rss_pct judges RSS against the container's memory limit when a sample carries one."""
    ev = Evaluator([rule("rss_pct", warning=70, critical=90)])
    s = {"rss_bytes": 900 * 2**20, "mem_total_bytes": 64 * 2**30, "mem_limit_bytes": 2**30}
    got = ev.sample(1.0, s)
    assert [(a["severity"], round(a["value"])) for a in got] == [("warning", 88)]


def test_an_oom_kill_is_a_critical_alert_and_an_error(tmp_path):
    """When the cgroup's oom_kill count rises, the sampler writes an error log and a critical
    oom_kill alert, and counts it in run_end."""

    class FakeWatch:
        def __init__(self):
            self.n = [0, 1, 0]

        def poll(self):
            return self.n.pop(0) if self.n else 0

        def close(self):
            self.n = []

    log = tmp_path / "r.jsonl"
    with Monitor(log, sample_interval=3600, alert_rules=[]) as mon:
        mon._sampler._oom = FakeWatch()
        for _ in range(3):
            mon._sampler._tick()
    evs = read_log(log)
    alerts = of_kind(evs, "alert")
    assert [(a["rule"], a["severity"], a["value"]) for a in alerts] == [("oom_kill", "critical", 1)]
    assert any("OOM killer" in g["msg"] for g in of_kind(evs, "log"))
    assert of_kind(evs, "run_end")[0]["counters"]["oom_kills"] == 1


_ = time


def test_a_wrapped_command_killed_by_the_oom_killer_says_so(tmp_path, monkeypatch):
    """run -- CMD: a command SIGKILLed while the cgroup's oom_kill count rose ends the run
    failed with reason oom_kill and a critical alert."""
    from atroz_monitor.commands import runcmd
    from atroz_monitor.probe import cgroup

    class Watch:
        def poll(self):
            return 1

    monkeypatch.setattr(cgroup, "OomWatch", Watch)
    code = runcmd.main(["sh", "-c", "kill -9 $$"], out=str(tmp_path), interval=3600)
    assert code == 137
    log = next(tmp_path.glob("*.jsonl"))
    evs = read_log(log)
    end = of_kind(evs, "run_end")[0]
    assert end["status"] == "failed" and end["reason"] == "oom_kill"
    assert "OOM killer" in end["error"]["msg"]
    alerts = {a["rule"]: a for a in of_kind(evs, "alert")}
    assert alerts["oom_kill"]["severity"] == "critical"
    assert alerts["phase_failed"]["phase"] == "command"  # the command phase failed too
