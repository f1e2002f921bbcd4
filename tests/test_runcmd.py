"""``python -m atroz_monitor run -- CMD``: any command as one monitored run (runcmd.py)."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import of_kind, poll, read_log, ready

from atroz_monitor.commands import runcmd

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": REPO}
for _k in ("ATROZ_MONITOR_LOG", "ATROZ_MONITOR_RUN"):
    ENV.pop(_k, None)


def run(
    tmp: Path, *cmd: str, interval: str = "0.05", **kw: Any
) -> subprocess.CompletedProcess[bytes]:
    """`python -m atroz_monitor run --out tmp/runs -- cmd...`, output captured."""
    argv = [sys.executable, "-m", "atroz_monitor", "run", "--out", str(tmp / "runs")]
    argv += ["--interval", interval, "--", *cmd]
    return subprocess.run(argv, env=ENV, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)


def the_log(tmp: Path) -> list[dict[str, Any]]:
    """The one run log `run` wrote."""
    logs = sorted((tmp / "runs").glob("*.jsonl"))
    assert len(logs) == 1, logs
    return read_log(logs[0])


def command_phase(events: list[dict[str, Any]]) -> dict[str, Any]:
    [end] = [e for e in of_kind(events, "phase_end") if e["phase"] == "command"]
    return end


def metric(events: list[dict[str, Any]], name: str) -> Any:
    [m] = [e["value"] for e in of_kind(events, "metric") if e["name"] == name]
    return m


def test_python_child_phases_join_the_run(tmp_path: Path) -> None:
    """A Python child using atroz_monitor.phase joins the run with its own pid; the command is
    one completed top-level phase of the run's owner."""
    code = (
        "import atroz_monitor as m, os\n"
        "with m.phase('extract'):\n"
        "    with m.phase('extract.read'): pass\n"
        "with m.phase('load'): pass\n"
        "print(os.getpid())\n"
    )
    r = run(tmp_path, sys.executable, "-c", code)
    assert r.returncode == 0, r.stderr
    child = int(r.stdout)
    events = the_log(tmp_path)
    assert len({e["run"] for e in events}) == 1
    [start] = of_kind(events, "run_start")
    owner = start["pid"]
    assert owner != child
    ends = {e["phase"]: e for e in of_kind(events, "phase_end")}
    assert set(ends) == {"command", "extract", "extract.read", "load"}
    assert {ends[k]["pid"] for k in ("extract", "extract.read", "load")} == {child}
    assert ends["extract.read"]["parent"] == ends["extract"]["span"]
    cmd = ends["command"]
    assert (cmd["pid"], cmd["status"], cmd["parent"]) == (owner, "completed", None)
    assert cmd["name"] == runcmd.display([sys.executable, "-c", code])
    assert [p["pid"] for p in of_kind(events, "process_start")] == [child]
    assert start["plan"] == [{"id": "command", "name": cmd["name"]}]
    assert metric(events, "exit_code") == 0
    [end] = of_kind(events, "run_end")
    assert end["status"] == "completed"


def test_exit_3_fails_the_run_with_its_code(tmp_path: Path) -> None:
    """`sh -c 'exit 3'`: run exits 3; the command phase and the run are failed, code recorded."""
    r = run(tmp_path, "sh", "-c", "exit 3")
    assert r.returncode == 3
    assert r.stderr == b""
    events = the_log(tmp_path)
    cmd = command_phase(events)
    assert cmd["status"] == "failed"
    assert cmd["error"]["msg"] == "command exited with code 3"
    assert metric(events, "exit_code") == 3
    [end] = of_kind(events, "run_end")
    assert end["status"] == "failed"
    assert end["error"]["type"] == "CommandFailed"
    assert end["error"]["msg"] == "command exited with code 3"
    assert end["exit_code"] == 3


def test_signal_death_is_cancelled_and_exits_128_plus_n(tmp_path: Path) -> None:
    """A command killed by SIGTERM: run exits 143 and the run is cancelled, signal named."""
    r = run(tmp_path, "sh", "-c", "kill -TERM $$")
    assert r.returncode == 128 + signal.SIGTERM
    events = the_log(tmp_path)
    assert command_phase(events)["status"] == "cancelled"
    assert metric(events, "signal") == signal.SIGTERM
    [end] = of_kind(events, "run_end")
    assert end["status"] == "cancelled"
    assert end["error"]["msg"] == "command killed by SIGTERM (15)"


def test_command_not_found_exits_127_and_fails_the_run(tmp_path: Path) -> None:
    """A command that does not exist: exit 127, the reason on stderr, the run failed."""
    r = run(tmp_path, "atroz-no-such-command-xyz", "arg")
    assert r.returncode == 127
    assert r.stderr == b"atroz-monitor run: atroz-no-such-command-xyz: No such file or directory\n"
    events = the_log(tmp_path)
    assert command_phase(events)["error"]["type"] == "FileNotFoundError"
    assert metric(events, "exit_code") == 127
    [end] = of_kind(events, "run_end")
    assert end["status"] == "failed"


def test_command_not_executable_exits_126(tmp_path: Path) -> None:
    """A file without execute permission: exit 126 (as shells do), the run failed."""
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    r = run(tmp_path, str(script))
    assert r.returncode == 126
    assert b"Permission denied" in r.stderr
    [end] = of_kind(the_log(tmp_path), "run_end")
    assert end["status"] == "failed"


def test_run_without_a_command_is_a_usage_error(tmp_path: Path) -> None:
    """`run` and `run --` with nothing after: exit 2, usage on stderr, no run written."""
    for extra in ([], ["--"]):
        argv = [sys.executable, "-m", "atroz_monitor", "run", "--out", str(tmp_path / "r"), *extra]
        r = subprocess.run(argv, env=ENV, capture_output=True, timeout=30)
        assert r.returncode == 2
        assert b"no command given" in r.stderr and b"usage: atroz-monitor run" in r.stderr
        assert r.stdout == b""
    assert not (tmp_path / "r").exists()


def test_stdout_and_stderr_pass_through_byte_for_byte(tmp_path: Path) -> None:
    """The child's stdout and stderr reach run's, unchanged (every byte value, no newline at
    the end), and run adds nothing of its own."""
    payload = bytes(range(256)) * 64 + b"no newline at the end"
    code = (
        "import sys\n"
        f"sys.stdout.buffer.write({payload!r})\n"
        "sys.stderr.buffer.write(b'err\\xff\\r\\n')\n"
    )
    r = run(tmp_path, sys.executable, "-c", code)
    assert r.returncode == 0
    assert r.stdout == payload
    assert r.stderr == b"err\xff\r\n"


def test_busy_child_cpu_shows_in_the_samples(tmp_path: Path) -> None:
    """The sampler measures run's whole tree: a busy child's CPU is in children_cpu_s, and the
    command phase carries the command's own CPU (wait4), not the wrapper's."""
    code = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.6: pass\n"
    r = run(tmp_path, sys.executable, "-c", code)
    assert r.returncode == 0, r.stderr
    events = the_log(tmp_path)
    samples = of_kind(events, "sample")
    assert max(s.get("children_cpu_s", 0) for s in samples) > 0.2
    assert max(s.get("children", 0) for s in samples) >= 1
    ph = command_phase(events)
    assert ph["cpu_ms"] >= 600 and ph["figures_source"] == "wait4"
    assert "children_cpu_ms" not in ph  # the same CPU is not counted a second time


def test_sigterm_to_run_is_forwarded_to_the_child(tmp_path: Path) -> None:
    """SIGTERM sent to `run` reaches the child, whose own handler decides (exit 7 here); run
    exits with that code and records it."""
    code = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(7))\n"
        "print('ready', flush=True)\n"
        "time.sleep(30)\n"
    )
    argv = [sys.executable, "-m", "atroz_monitor", "run", "--out", str(tmp_path / "runs")]
    proc = subprocess.Popen(
        [*argv, "--", sys.executable, "-c", code],
        env=ENV,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        got: list[bytes] = []
        reader = threading.Thread(target=lambda: got.append(proc.stdout.readline()))  # type: ignore[union-attr]
        reader.start()
        reader.join(20)  # bounded: the child says it is ready (handler installed)
        assert got == [b"ready\n"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 7
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
    events = the_log(tmp_path)
    assert command_phase(events)["status"] == "failed"
    assert metric(events, "exit_code") == 7
    [end] = of_kind(events, "run_end")
    assert end["status"] == "failed"


def test_documented_run_example(tmp_path: Path) -> None:
    """The shell example of docs/SCALING.md "Wrapping commands" runs as documented: one run
    with the command phase and each Python step's phase, each step with its own pid."""
    with open(os.path.join(REPO, "docs", "SCALING.md"), encoding="utf-8") as f:
        text = f.read()
    after = text[text.index("<!-- run-example") :]
    start = after.index("```sh\n") + 6
    script = after[start : after.index("```", start)]
    script = script.replace("python ", f"{shlex.quote(sys.executable)} ")
    r = subprocess.run(
        ["sh", "-e", "-c", script],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 0, r.stderr
    events = read_log(next((tmp_path / "atroz-runs").glob("*.jsonl")))
    ends = {e["phase"]: e for e in of_kind(events, "phase_end")}
    assert set(ends) == {"command", "extract", "load"}
    assert all(e["status"] == "completed" for e in ends.values())
    assert len({ends[k]["pid"] for k in ends}) == 3
    assert of_kind(events, "run_start")[0]["name"] == "nightly"
    assert b"nightly" in r.stdout  # the report names the run


def _start_run(tmp: Path, code: str, grace: float | None = None) -> subprocess.Popen[bytes]:
    """`run` (its own process, no terminal) around a Python command; waits until the command
    printed its first line (its handlers are installed)."""
    out = str(tmp / "runs")
    cmd = [sys.executable, "-c", code]
    if grace is None:
        argv = [sys.executable, "-m", "atroz_monitor", "run", "--out", out, "--", *cmd]
    else:
        main = (
            "import sys; from atroz_monitor.commands import runcmd; "
            f"sys.exit(runcmd.main({cmd!r}, {out!r}, 0.05, grace={grace}))"
        )
        argv = [sys.executable, "-c", main]
    proc = subprocess.Popen(argv, env=ENV, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)  # fmt: skip
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(proc.stdout.readline()))  # type: ignore[union-attr]
    reader.start()
    reader.join(30)  # bounded
    assert got and got[0].startswith(b"ready"), got
    return proc


def _finish(proc: subprocess.Popen[bytes]) -> int:
    try:
        return proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with open(f"/proc/{pid}/stat", "rb") as f:
        return f.read().rsplit(b")", 1)[1].split()[0] == b"Z"  # a zombie init has not reaped


SPAWNER = (
    "import subprocess, sys, time\n"
    "kid = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
    "print('ready', kid.pid, flush=True)\n"
    "time.sleep(60)\n"
)


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGQUIT])
def test_signal_to_run_reaches_the_command_group_and_ends_the_run(
    tmp_path: Path, sig: signal.Signals
) -> None:
    """SIGHUP, SIGINT, SIGTERM, SIGQUIT to `run`: the command and its own child (its process
    group) receive it, run waits, writes run_end (cancelled) and exits 128+S."""
    proc = _start_run(tmp_path, SPAWNER)
    events_before = the_log(tmp_path)
    assert not of_kind(events_before, "run_end")
    proc.send_signal(sig)
    assert _finish(proc) == 128 + sig
    events = the_log(tmp_path)
    [end] = of_kind(events, "run_end")
    assert end["status"] == "cancelled" and end["signal"] == sig.name
    assert command_phase(events)["status"] == "cancelled"


def test_grandchild_in_the_command_group_gets_the_signal(tmp_path: Path) -> None:
    """The command's own child is in the command's process group: SIGTERM to run ends it too."""
    out: list[bytes] = []
    proc = subprocess.Popen(
        [sys.executable, "-m", "atroz_monitor", "run", "--out", str(tmp_path / "runs"), "--",
         sys.executable, "-c", SPAWNER],
        env=ENV, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    reader = threading.Thread(target=lambda: out.append(proc.stdout.readline()))  # type: ignore[union-attr]
    reader.start()
    reader.join(30)
    kid = int(out[0].split()[1])
    proc.send_signal(signal.SIGTERM)
    assert _finish(proc) == 128 + signal.SIGTERM
    poll(lambda: _gone(kid), 10, "the grandchild to die of the forwarded SIGTERM")


def test_command_ignoring_signals_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    """A command that ignores SIGTERM is SIGKILLed `grace` seconds later: run exits 137, and
    run_end says cancelled, reason killed_after_grace."""
    code = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = _start_run(tmp_path, code, grace=0.5)
    proc.send_signal(signal.SIGTERM)
    assert _finish(proc) == 128 + signal.SIGKILL
    events = the_log(tmp_path)
    [end] = of_kind(events, "run_end")
    assert (end["status"], end["reason"], end["signal"]) == (
        "cancelled",
        "killed_after_grace",
        "SIGKILL",
    )
    assert "still running 0.5 s after a forwarded signal" in end["error"]["msg"]


def _run_in_terminal(tmp: Path, code: str) -> tuple[int, int]:
    """`run` as the foreground job of a new pseudo-terminal (pty.fork: its session leader);
    returns (run's pid, the master fd) once the command printed 'ready'."""
    import pty

    argv = [sys.executable, "-m", "atroz_monitor", "run", "--out", str(tmp / "runs"), "--",
            sys.executable, "-c", code]  # fmt: skip
    pid, master = pty.fork()
    if pid == 0:  # pragma: no cover - the child execs at once
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(sig, signal.SIG_DFL)  # exec keeps an ignored signal ignored
        os.execve(sys.executable, argv, ENV)
    seen = b""
    deadline = time.monotonic() + 30
    while b"ready" not in seen:
        assert time.monotonic() < deadline, seen
        if ready(master, 0.5)[0]:
            try:
                seen += os.read(master, 1024)
            except OSError:
                break
    return pid, master


def _wait_terminal_run(pid: int, master: int) -> int:

    deadline = time.monotonic() + 30
    out = b""
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            os.close(master)
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.killpg(pid, signal.SIGKILL)  # run and the command: the pty's whole job
            os.waitpid(pid, 0)
            os.close(master)
            pytest.fail(f"run did not end within 30 s; the terminal showed {out!r}")
        if ready(master, 0.1)[0]:
            try:
                out += os.read(master, 1024)  # drain the terminal
            except OSError:
                pass


SLEEPER = "import time\nprint('ready', flush=True)\ntime.sleep(60)\n"


def test_ctrl_c_at_a_terminal_reaches_the_command_once(tmp_path: Path) -> None:
    """In a terminal's foreground, Ctrl-C (the terminal's SIGINT to the whole group) ends the
    command, which run does not signal a second time: cancelled, exit 130, run_end written."""
    pid, master = _run_in_terminal(tmp_path, SLEEPER)
    os.write(master, b"\x03")
    assert _wait_terminal_run(pid, master) == 128 + signal.SIGINT
    [end] = of_kind(the_log(tmp_path), "run_end")
    assert (end["status"], end["signal"]) == ("cancelled", "SIGINT")


def test_sigterm_in_a_terminal_goes_to_the_command(tmp_path: Path) -> None:
    """In a terminal's foreground (the command shares run's group), SIGTERM sent to run alone
    is forwarded to the command: cancelled, exit 143, run_end written."""
    pid, master = _run_in_terminal(tmp_path, SLEEPER)
    os.kill(pid, signal.SIGTERM)
    assert _wait_terminal_run(pid, master) == 128 + signal.SIGTERM
    [end] = of_kind(the_log(tmp_path), "run_end")
    assert (end["status"], end["signal"]) == ("cancelled", "SIGTERM")
