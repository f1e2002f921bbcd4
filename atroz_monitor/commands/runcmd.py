"""``python -m atroz_monitor run -- CMD ...``: any command as one monitored run.

This process owns the run (``run_start`` ... ``run_end``) and its sampler measures this
process's whole tree, so the command and everything it starts are in the samples. The command
is one top-level phase, key ``command``, named by its command line. It is started with a plain
``subprocess.Popen`` that inherits stdin, stdout, stderr (no pipes: bytes pass through
untouched, terminals stay terminals) and the environment, which carries ``ATROZ_MONITOR_LOG``
and ``ATROZ_MONITOR_RUN`` while the run is active: Python steps inside the command that use
``atroz_monitor.phase`` join the run with their own pid.

Outcome, in the ``command`` phase and the run (``run_end``):

=====================================  =========  ==========================  =========
command                                status     recorded                    ``run``
=====================================  =========  ==========================  =========
exits 0                                completed  metric ``exit_code`` 0      exits 0
exits N > 0                            failed     ``exit_code`` N, error      exits N
killed by SIGINT, SIGTERM, SIGHUP or   cancelled  ``exit_code`` 128+S,        128+S
SIGQUIT, or by ``run`` after the grace            ``signal`` S, error
killed by any other signal             failed     same                        128+S
(SIGKILL from the OOM killer, SIGSEGV)
cannot start: not found                failed     ``exit_code`` 127, error    127
cannot start: not executable, other    failed     ``exit_code`` 126, error    126
=====================================  =========  ==========================  =========

The ``command`` phase carries the command's own figures, not the wrapper's: ``cpu_ms`` is
the CPU time of the command and every descendant it waited for (``wait4``'s rusage, exact),
``max_rss_bytes`` the largest single process's peak RSS (the same rusage), and
``peak_rss_bytes`` the highest RSS of the whole tree the sampler saw (``figures_source``:
``"wait4"``).

Signals. SIGHUP, SIGINT, SIGTERM and SIGQUIT sent to ``run`` are forwarded to the command's
process group (the command and whatever it started), whose own handling decides the outcome;
``run`` waits for the command and writes ``run_end``. A command still running
``KILL_GRACE_S`` (10) seconds after the first forwarded signal is killed with SIGKILL, its
process group with it, and the run is ``cancelled`` (``reason`` ``"killed_after_grace"``).
The command gets its own process group, except when ``run`` is in the foreground of a
terminal: there it stays in ``run``'s group, so that the terminal's job control (Ctrl-C,
Ctrl-Z, Ctrl-\\) reaches it as it would without ``run``, and a SIGINT or SIGQUIT, which the
terminal already sent to the whole foreground group, is not sent a second time (it would
interrupt the command's own clean-up) and starts no grace period (an interactive command may
handle it and go on); SIGHUP and SIGTERM go to the command's pid.
"""

from __future__ import annotations

import errno
import os
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import IO, Any

from .. import events as E

PHASE_KEY = "command"
EXIT_CANNOT_EXECUTE = 126
EXIT_NOT_FOUND = 127
NAME_LIMIT = 200  # characters of the command line kept as the run and phase name

FORWARDED = (signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGQUIT)
KILL_GRACE_S = 10.0  # how long a command may outlive a forwarded signal before SIGKILL
# Deaths by these are someone stopping the command on purpose: the run is cancelled, not
# failed. Any other signal (SIGKILL from the OOM killer, SIGSEGV, SIGABRT) is a failure.
CANCEL_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT})


class CommandFailed(Exception):
    """The command exited with a non-zero code or died of a signal (recorded as the error)."""


class CommandCancelled(KeyboardInterrupt):
    """The command died of SIGINT, SIGTERM, SIGHUP or SIGQUIT, or was killed after the grace
    period. A KeyboardInterrupt subclass because that is what the recorder maps to
    ``cancelled``."""


def display(cmd: Sequence[str]) -> str:
    """The command line as a shell would show it, cut to ``NAME_LIMIT`` characters."""
    text = shlex.join(cmd)
    return text if len(text) <= NAME_LIMIT else text[: NAME_LIMIT - 3] + "..."


def signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def _foreground_of_terminal() -> bool:
    """Whether this process's group is the foreground group of its controlling terminal."""
    for fd in (0, 2, 1):
        try:
            if os.isatty(fd):
                return os.tcgetpgrp(fd) == os.getpgrp()
        except OSError:
            continue
    return False


class _Forwarder:
    """Forwards the FORWARDED signals to the command; installed before it starts (a signal
    that arrives before the child exists is sent as soon as it does). After ``grace``
    seconds from the first one, a command still running is killed (SIGKILL)."""

    def __init__(self, grace: float = KILL_GRACE_S) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.group = False  # the command leads its own process group
        self.grace = grace
        self.received: list[int] = []
        self.killed = False
        self._timer: threading.Timer | None = None
        self._pending: list[int] = []
        self._old: dict[int, Any] = {}
        for sig in FORWARDED:
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except (ValueError, OSError):  # not the main thread: leave signals alone
                pass

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)
        if self.proc is None:
            self._pending.append(signum)
        else:
            self._send(signum)

    def _send(self, signum: int) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return  # reaped: its pid (and group id) may belong to someone else now
        keyboard = signum in (signal.SIGINT, signal.SIGQUIT)
        if keyboard and not self.group and _foreground_of_terminal():
            return  # from the keyboard: the terminal signalled the command already
        try:
            if self.group:
                os.killpg(proc.pid, signum)
            else:
                proc.send_signal(signum)
        except OSError:
            pass  # exited between the check and the kill: nothing left to stop
        if self._timer is None and self.grace >= 0:
            self._timer = threading.Timer(self.grace, self._kill)
            self._timer.daemon = True
            self._timer.start()

    def _kill(self) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        self.killed = True
        try:
            if self.group:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
        except OSError:
            pass

    def attach(self, proc: subprocess.Popen[bytes], group: bool) -> None:
        self.proc = proc
        self.group = group
        pending, self._pending = self._pending, []
        for sig in pending:
            self._send(sig)

    def restore(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for sig, old in self._old.items():
            try:
                signal.signal(sig, old)
            except (ValueError, OSError, TypeError):
                pass
        self._old = {}


def _popen(cmd: list[str], group: bool) -> subprocess.Popen[bytes]:
    if not group:
        return subprocess.Popen(cmd)
    if sys.version_info >= (3, 11):
        return subprocess.Popen(cmd, process_group=0)
    return subprocess.Popen(cmd, preexec_fn=os.setpgrp)  # 3.10: no process_group yet


def _wait(proc: subprocess.Popen[bytes]) -> tuple[int, Any]:
    """Wait for the command; its exit code (as ``Popen.returncode``) and ``wait4`` rusage
    (None where there is no ``wait4``). PEP 475: a forwarded signal's handler runs, then the
    wait resumes."""
    wait4 = getattr(os, "wait4", None)
    if wait4 is None:
        return proc.wait(), None
    _, status, usage = wait4(proc.pid, 0)
    proc.returncode = rc = os.waitstatus_to_exitcode(status)
    return rc, usage


def _command_figures(mon: Any, h: Any, usage: Any) -> None:
    """The command's own figures on its phase: CPU and the largest process's peak from
    ``wait4``, the tree's peak from the samples."""
    if usage is None:
        return
    maxrss = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    tree = mon.children_rss_peak()
    peak = maxrss if tree is None else max(tree, maxrss)
    h.use_figures((usage.ru_utime + usage.ru_stime) * 1000, peak, maxrss)


def _end_run(mon: Any, status: str, error: BaseException | None, extra: dict[str, Any]) -> None:
    """End the main run with the command's outcome in ``run_end``."""
    mon.main.end(status, error, extra=extra)
    mon.close(status, error)  # nothing else is open; closes the monitor's own machinery


def main(
    cmd: Sequence[str],
    out: str = "atroz-runs",
    interval: float = 0.5,
    name: str | None = None,
    *,
    stderr: IO[str] | None = None,
    grace: float = KILL_GRACE_S,
) -> int:
    """Run ``cmd`` as a monitored run in ``out``; return the exit code ``run`` exits with.

    Raises ValueError for an empty command and OSError when the run log cannot be written
    (the command line turns both into exit 2); everything after that is recorded, not raised.
    """
    from ..record.monitor import Monitor

    cmd = [str(a) for a in cmd]
    if not cmd:
        raise ValueError("no command given")
    err = stderr if stderr is not None else sys.stderr
    line = display(cmd)
    mon = Monitor(
        out,
        sample_interval=interval,
        name=name or line,
        plan=[(PHASE_KEY, line)],
        meta={"command": cmd},
    )
    fwd = _Forwarder(grace)
    try:
        mon.start()  # sets ATROZ_MONITOR_LOG / _RUN in os.environ: the child inherits them
        h = mon.start_phase(PHASE_KEY, line, meta={"argv": cmd})
        # Its own process group, so that a forwarded signal reaches everything it started;
        # but not in a terminal's foreground, where job control needs one group.
        group = not _foreground_of_terminal()
        try:
            proc = _popen(cmd, group)
        except (OSError, ValueError) as exc:  # ValueError: an embedded NUL in an argument
            is_missing = isinstance(exc, OSError) and exc.errno in (errno.ENOENT, errno.ENOTDIR)
            code = EXIT_NOT_FOUND if is_missing else EXIT_CANNOT_EXECUTE
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            err.write(f"atroz-monitor run: {cmd[0]}: {reason}\n")
            exc.__traceback__ = None  # the frames are ours, not the command's: noise in the log
            h.metric("exit_code", code)
            mon.fail_phase(h, exc)
            _end_run(mon, E.FAILED, exc, {"exit_code": code})
            return code
        from ..probe.cgroup import OomWatch, exit_was_oom

        try:
            watch: Any = OomWatch()
        except Exception:
            watch = None
        fwd.attach(proc, group)
        rc, usage = _wait(proc)
        fwd.restore()
        _command_figures(mon, h, usage)
        oom = watch is not None and exit_was_oom(rc, watch.poll())
        return _record(mon, h, rc, oom, fwd.grace if fwd.killed else None)
    except BaseException as exc:
        # Our own failure (not the command's): record it; never leave the run open.
        mon.close(E.CANCELLED if isinstance(exc, KeyboardInterrupt) else E.FAILED, exc)
        raise
    finally:
        fwd.restore()


def _record(mon: Any, h: Any, rc: int, oom: bool = False, killed: float | None = None) -> int:
    """Record the command's outcome in its phase and the run; return ``run``'s exit code.
    ``oom``: the command was SIGKILLed while the cgroup's OOM-kill count rose; ``killed``:
    the grace period (s) after which ``run`` itself killed the command."""
    if rc == 0:
        h.metric("exit_code", 0)
        mon.complete_phase(h)
        _end_run(mon, E.COMPLETED, None, {"exit_code": 0})
        return 0
    if rc > 0:
        exc: BaseException = CommandFailed(f"command exited with code {rc}")
        h.metric("exit_code", rc)
        mon.fail_phase(h, exc)
        _end_run(mon, E.FAILED, exc, {"exit_code": rc})
        return rc
    sig = -rc
    code = 128 + sig
    name = signal_name(sig)
    msg = f"command killed by {name} ({sig})"
    if sig != signal.SIGKILL:
        killed = None
    if oom and killed is None:
        msg = "command killed by the OOM killer (memory limit reached)"
        mon.main.note_oom_kills(1)
    if killed is not None:
        msg = f"command killed by SIGKILL: still running {killed:g} s after a forwarded signal"
    status = E.CANCELLED if sig in CANCEL_SIGNALS or killed is not None else E.FAILED
    exc = CommandCancelled(msg) if status == E.CANCELLED else CommandFailed(msg)
    h.metric("exit_code", code)
    h.metric("signal", sig)
    mon.fail_phase(h, exc)
    extra: dict[str, Any] = {"exit_code": code, "signal": name}
    if killed is not None:
        extra["reason"] = "killed_after_grace"
    elif oom:
        extra["reason"] = "oom_kill"
    _end_run(mon, status, exc, extra)
    return code
