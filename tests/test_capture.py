"""Capture of logging records and warnings as log events of the active phase."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import warnings

from helpers import of_kind, read_log

from atroz_monitor import Monitor


def test_logging_and_warnings_are_attributed_to_the_active_phase(tmp_path):
    """WARNING+ logging records and warnings.warn become log events of the active phase;
    INFO is not recorded."""
    log = tmp_path / "run.jsonl"
    lg = logging.getLogger("test.capture")
    with Monitor(log, sample_interval=None) as mon:
        with mon.phase("P00") as p:
            lg.info("not recorded")
            lg.warning("disk at %d%%", 91)
            try:
                raise KeyError("k")
            except KeyError:
                lg.exception("lookup failed")
            with warnings.catch_warnings():
                warnings.simplefilter("always")
                warnings.warn("deprecated thing", DeprecationWarning, stacklevel=1)
        lg.error("outside any phase")
    logs = of_kind(read_log(log), "log")
    got = [(e["level"], e["msg"], e.get("span"), e["source"]) for e in logs]
    assert got == [
        ("warning", "disk at 91%", p.span, "logging"),
        ("error", "lookup failed", p.span, "logging"),
        ("warning", "DeprecationWarning: deprecated thing", p.span, "warnings"),
        ("error", "outside any phase", None, "logging"),
    ]
    assert logs[1]["exc_type"] == "KeyError" and logs[0]["logger"] == "test.capture"
    end = [e for e in read_log(log) if e["ev"] == "phase_end"][0]
    assert end["warnings"] == 2 and end["errors"] == 1


def test_capture_leaves_the_hosts_output_as_it_was():
    """A host with no logging configuration still sees its warnings on stderr (lastResort),
    and warnings still print, while the monitor records them."""
    code = textwrap.dedent(
        """
        import logging, warnings, sys, json, tempfile, os
        from atroz_monitor import Monitor
        d = tempfile.mkdtemp()
        with Monitor(os.path.join(d, "r.jsonl"), sample_interval=None) as mon:
            with mon.phase("P"):
                logging.getLogger("host").warning("host warning")
                warnings.warn("host warns")
        n = sum(1 for l in open(os.path.join(d, "r.jsonl")) if '"ev":"log"' in l)
        print(n)
        """
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "2"
    assert "host warning" in r.stderr
    assert "UserWarning: host warns" in r.stderr


def test_capture_off_and_uninstalled_after_the_run(tmp_path):
    """capture=False records nothing from logging; after a run the handler is gone."""
    root = logging.getLogger()
    before = list(root.handlers)
    show = warnings.showwarning
    log = tmp_path / "run.jsonl"
    with Monitor(log, sample_interval=None, capture=False) as mon:
        with mon.phase("P00"):
            logging.getLogger("x").warning("ignored")
    assert of_kind(read_log(log), "log") == []
    with Monitor(tmp_path / "b.jsonl", sample_interval=None):
        assert len(root.handlers) == len(before) + 1
    assert root.handlers == before and warnings.showwarning is show
