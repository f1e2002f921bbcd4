"""Process hooks and import side effects: importing the package changes nothing; the exit and
exception hooks exist exactly while a run is live; fork safety without import-time hooks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from helpers import child_env, of_kind, read_log


def _child(code: str, *args: str, flags: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter that imports this checkout."""
    return subprocess.run(
        [sys.executable, *flags, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
        check=True,
    )


def test_import_changes_no_hook_and_a_live_run_wraps_excepthook_and_hooks_exit_once(tmp_path):
    """Import: hooks untouched; live run: excepthook wrapped, one exit hook; end: unwrapped."""
    out = _child(
        """
        import atexit, json, sys
        def state():
            return [sys.excepthook is sys.__excepthook__, atexit._ncallbacks()]
        seen = {"before": state()}
        import atroz_monitor
        seen["imported"] = state()
        mon = atroz_monitor.Monitor(sys.argv[1], sample_interval=None, capture=False)
        seen["constructed"] = state()
        with mon:
            seen["live"] = state()
        seen["ended"] = state()
        with mon.run(run_id="second"):
            seen["second live"] = state()
        seen["second ended"] = state()
        print(json.dumps(seen))
        """,
        str(tmp_path),
    )
    seen = json.loads(out.stdout)
    n = seen["before"][1]
    # The exit hook, registered once, stays: re-registering per run would grow CPython's
    # atexit table by a slot each time (unregister never frees one).
    assert seen == {
        "before": [True, n],
        "imported": [True, n],
        "constructed": [True, n],
        "live": [False, n + 1],
        "ended": [True, n + 1],
        "second live": [False, n + 1],
        "second ended": [True, n + 1],
    }


def test_excepthook_stays_until_the_last_of_overlapping_runs_ends(tmp_path):
    """Two live runs: ending the first keeps the hook; ending the second restores the default."""
    out = _child(
        """
        import json, sys
        import atroz_monitor
        a = atroz_monitor.Monitor(sys.argv[1] + "/a", sample_interval=None, capture=False)
        b = atroz_monitor.Monitor(sys.argv[1] + "/b", sample_interval=None, capture=False)
        a.start(); b.start()
        seen = [sys.excepthook is sys.__excepthook__]
        a.close()
        seen.append(sys.excepthook is sys.__excepthook__)
        b.close()
        seen.append(sys.excepthook is sys.__excepthook__)
        print(json.dumps(seen))
        """,
        str(tmp_path),
    )
    assert json.loads(out.stdout) == [False, False, True]


def test_a_hook_wrapped_by_someone_else_is_left_in_place_and_not_reinstalled(tmp_path):
    """A program that wraps our hook keeps its wrapper; the next run does not wrap it again."""
    out = _child(
        """
        import json, sys
        import atroz_monitor
        calls = []
        mon = atroz_monitor.Monitor(sys.argv[1] + "/a", sample_interval=None, capture=False)
        mon.start()
        inner = sys.excepthook
        def wrapper(*a):
            calls.append("wrapper")
            inner(*a)
        sys.excepthook = wrapper
        mon.close()
        after_end = sys.excepthook is wrapper
        mon2 = atroz_monitor.Monitor(sys.argv[1] + "/b", sample_interval=None, capture=False)
        mon2.start()
        during_second = sys.excepthook is wrapper
        sys.stderr = open("/dev/null", "w")  # the default hook prints the traceback there
        try:
            raise KeyError("x")
        except KeyError:
            sys.excepthook(*sys.exc_info())  # would recurse forever if wrapped twice
        mon2.close()
        print(json.dumps([after_end, during_second, calls]))
        """,
        str(tmp_path),
    )
    assert json.loads(out.stdout) == [True, True, ["wrapper"]]


def test_default_monitor_ends_its_run_at_exit_and_an_uncaught_exception_fails_it(tmp_path):
    """ATROZ_MONITOR_LOG: the run ends at exit, completed; failed after an uncaught exception."""
    code = """
        import sys
        import atroz_monitor
        with atroz_monitor.phase("P1"):
            pass
        if sys.argv[1] == "raise":
            raise RuntimeError("boom")
        """
    statuses = {}
    for mode in ("ok", "raise"):
        log = tmp_path / f"{mode}.jsonl"
        env = child_env()
        env["ATROZ_MONITOR_LOG"] = str(log)
        proc = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code), mode],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert proc.returncode == (0 if mode == "ok" else 1), proc.stderr
        ends = of_kind(read_log(log), "run_end")
        assert len(ends) == 1
        statuses[mode] = ends[0]["status"]
    assert statuses == {"ok": "completed", "raise": "failed"}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_child_forked_before_any_monitor_records_with_its_own_pid(tmp_path):
    """Fork after import but before any Monitor: the child's span ids carry the child's pid."""
    out = _child(
        """
        import json, os, sys
        import atroz_monitor
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                with atroz_monitor.Monitor(sys.argv[1], sample_interval=None, capture=False) as m:
                    with m.phase("P1"):
                        pass
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        print(json.dumps([pid, os.waitstatus_to_exitcode(status)]))
        """,
        str(tmp_path / "run.jsonl"),
    )
    child_pid, code = json.loads(out.stdout)
    assert code == 0
    starts = of_kind(read_log(tmp_path / "run.jsonl"), "phase_start")
    assert [e["span"].split(".")[0] for e in starts] == [str(child_pid)]


def test_import_loads_none_of_the_costly_stdlib_modules():
    """``import atroz_monitor`` (no site: -I -S) loads no typing, re, enum, json, threading."""
    out = _child(
        """
        import sys
        sys.path.insert(0, sys.argv[1])
        before = set(sys.modules)
        import atroz_monitor
        print(" ".join(sorted(set(sys.modules) - before)))
        """,
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        flags=("-I", "-S"),  # site may import some of them itself (a .pth file)
    )
    added = set(out.stdout.split())
    costly = {
        "typing",
        "re",
        "enum",
        "json",
        "threading",
        "functools",
        "collections",
        "contextlib",
        "warnings",
    }
    assert "atroz_monitor.record.monitor" in added
    assert added & costly == set()
