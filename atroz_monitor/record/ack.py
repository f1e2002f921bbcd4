"""Acknowledging alerts from anywhere, with the run log as the record.

``python -m atroz_monitor ack PATH ALERT_ID [--note TEXT]`` appends an ``alert_ack`` event,
``ack PATH --clear`` an ``alerts_cleared`` one, to the run's log: any process may append
(pool workers do), nobody overwrites, and the HTTP surface stays read-only. The reducer
applies them, so the page, ``report`` and the API show the same state; a running
``Monitor`` picks them up through ``AckWatch``, which reads only the bytes appended to its
own log since it last looked, at most once a second on the sampler thread (and when
``active_alerts()`` is asked).

Which log: a file is that log (with its rotated parts); a directory means
``<dir>/<run>.jsonl`` with ``--run``, else its most recently written log (by modification
time: no log is read to choose). The run is the one given by ``--run``, else the latest
run of that log holding the alert (``--clear``: the latest run of the log).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from typing import TYPE_CHECKING, Any

from .. import events as E

if TYPE_CHECKING:
    from .monitor import Run

__all__ = ["AckError", "AckWatch", "acknowledge", "append_event", "clear", "main", "user_name"]

_APPEND = os.O_WRONLY | os.O_APPEND | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
_READ = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
_PART = re.compile(r"\.part[0-9]+(\.jsonl)$")
NOTE_LIMIT = 500


class AckError(Exception):
    """Bad input for ``ack``: one line on stderr, exit 2."""


def user_name() -> str:
    """Who is acknowledging: the account of the process (not $USER, which anyone sets)."""
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError, OSError):
        import getpass

        try:
            return getpass.getuser()
        except Exception:
            return "unknown"


def append_event(path: str, run: str, ev: str, fields: dict[str, Any]) -> dict[str, Any]:
    """Append one event to an existing log as its writers do: one whole line in one
    ``os.write`` on an ``O_APPEND`` descriptor, never through a symbolic link, never
    creating the file. Returns the event written."""
    try:
        fd = os.open(path, _APPEND)
    except OSError as exc:
        raise AckError(f"cannot append to {path}: {exc.strerror}") from None
    try:
        import stat

        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise AckError(f"{path} is not a regular file")
        event = {"ev": ev, "ts": round(time.time(), 6), "run": run, "pid": os.getpid(), "seq": 1}
        event.update(fields)
        line = (E.dumps(event) + "\n").encode("ascii")
        n = os.write(fd, line)
        if n != len(line):  # a full disk mid-line: the reader counts the fragment as corrupt
            raise AckError(f"cannot append to {path}: short write ({n} of {len(line)} bytes)")
        return event
    except OSError as exc:
        raise AckError(f"cannot append to {path}: {exc.strerror}") from None
    finally:
        os.close(fd)


def _log_of(path: str, run: str | None = None) -> str:
    """The log file PATH names (see the module docstring), as its first part."""
    if os.path.isdir(path) and run is not None and "/" not in run:
        own = os.path.join(path, run + ".jsonl")  # a Monitor directory: one log per run
        if os.path.isfile(own):
            return own
    if os.path.isdir(path):
        newest: tuple[float, str] | None = None
        with os.scandir(path) as it:
            for e in it:
                if e.name.endswith((".jsonl", ".jsonl.gz")) and e.is_file(follow_symlinks=False):
                    m = e.stat(follow_symlinks=False).st_mtime
                    if newest is None or m > newest[0]:
                        newest = (m, e.path)
        if newest is None:
            raise AckError(f"no run logs (*.jsonl) in {path}")
        path = newest[1]
    elif not os.path.exists(path):
        raise AckError(f"no such file or directory: {path}")
    base = _PART.sub(r"\1", path)
    return base if os.path.isfile(base) else path


def _load(log: str) -> tuple[Any, list[str]]:
    from ..read.loader import load_state
    from ..read.reader import discover

    files = discover([log])
    if files[-1].endswith(".gz"):
        raise AckError(f"{files[-1]} is compressed: an archived log takes no more events")
    st, _ = load_state(files)
    if not st.runs:
        raise AckError(f"no atroz_monitor events in {log}")
    return st, files


def _latest(st: Any, runs: list[str]) -> str:
    def start(rid: str) -> float:
        r = st.runs[rid]
        return r.start if r.start is not None else (r.first_ts or 0.0)

    return max(runs, key=start)


def _pick_run(st: Any, run: str | None, alert_id: str | None, log: str) -> str:
    if run is not None:
        if run not in st.runs:
            raise AckError(f"--run: no run {run!r} in {log}")
        return run
    if alert_id is not None:
        having = [rid for rid, r in st.runs.items() if alert_id in r.alerts]
        if having:
            return _latest(st, having)
    return _latest(st, list(st.runs))


def acknowledge(
    path: str, alert_id: str, note: str | None = None, run: str | None = None
) -> dict[str, Any]:
    """Append an ``alert_ack`` for ``alert_id`` to the log PATH names; AckError if the
    alert is not in that run."""
    log = _log_of(path, run)
    st, files = _load(log)
    rid = _pick_run(st, run, alert_id, log)
    alerts = st.runs[rid].alerts
    if alert_id not in alerts:
        known = ", ".join(sorted(alerts)[:5]) or "none"
        raise AckError(f"no alert {alert_id!r} in run {rid} (its alerts: {known})")
    fields: dict[str, Any] = {"alert": alert_id, "by": user_name(), "host": _host()}
    if note:
        fields["note"] = E.clip(note, NOTE_LIMIT)
    return append_event(files[-1], rid, E.ALERT_ACK, fields)


def clear(path: str, note: str | None = None, run: str | None = None) -> dict[str, Any]:
    """Append an ``alerts_cleared`` naming the acknowledged alerts of the run that are not
    cleared yet: they leave the active list."""
    log = _log_of(path, run)
    st, files = _load(log)
    rid = _pick_run(st, run, None, log)
    ids = [
        aid
        for aid, a in st.runs[rid].alerts.items()
        if a.get("acknowledged") and not a.get("cleared") and a.get("state") != "resolved"
    ]
    fields: dict[str, Any] = {"alerts": ids, "by": user_name(), "host": _host()}
    if note:
        fields["note"] = E.clip(note, NOTE_LIMIT)
    return append_event(files[-1], rid, E.ALERTS_CLEARED, fields)


def _host() -> str:
    return os.uname().nodename if hasattr(os, "uname") else "unknown"


def main(path: str, alert_id: str | None, note: str | None, run: str | None, do_clear: bool) -> int:
    """The ``ack`` command (arguments checked by cli.py)."""
    import sys

    if do_clear:
        ev = clear(path, note, run)
        n = len(ev["alerts"])
        sys.stdout.write(
            f"cleared {n} acknowledged alert{'s' if n != 1 else ''} of run {ev['run']}"
            f" (by {ev['by']})\n"
        )
    else:
        assert alert_id is not None
        ev = acknowledge(path, alert_id, note, run)
        sys.stdout.write(f"acknowledged {alert_id} in run {ev['run']} (by {ev['by']})\n")
    return 0


class AckWatch:
    """Brings acknowledgements appended by other processes to a running run's evaluator.

    Reads only what was appended to the run's log since the last look (``pread`` from a
    kept offset, at most ``max_read`` bytes a time, whole lines), and parses only the lines
    holding ``"ev":"alert_ack"`` or ``"ev":"alerts_cleared"`` (a substring search over the
    chunk first): a tick with nothing appended costs one ``fstat``.
    """

    TOKENS = (b'"ev":"alert_ack"', b'"ev":"alerts_cleared"')

    def __init__(self, run: Run, every_s: float = 1.0, max_read: int = 4 << 20) -> None:
        self.run = run
        self.every_s = every_s
        self.max_read = max_read
        self._lock = threading.Lock()
        self._path: str | None = None
        self._fd = -1
        self._off = 0
        self._last = 0.0
        self.applied = 0
        self.errors = 0

    def poll(self, force: bool = False) -> int:
        """Apply what was appended since the last call; returns how many events applied.
        Never raises (a failure is counted)."""
        now = time.monotonic()
        if not force and now - self._last < self.every_s:
            return 0
        if not self._lock.acquire(blocking=force):
            return 0
        try:
            self._last = now
            return self._poll()
        except Exception:
            self.errors += 1
            return 0
        finally:
            if self.run.ended:
                self._close()  # a finished run keeps no descriptor (asked again: reopened)
            self._lock.release()

    def _poll(self) -> int:
        path = self.run.path
        if path != self._path:  # the first look, or a rotation into the next part
            self._close()
            self._fd = os.open(path, _READ)
            self._path, self._off = path, 0
        size = os.fstat(self._fd).st_size
        if size <= self._off:
            return 0
        data = os.pread(self._fd, min(size - self._off, self.max_read), self._off)
        end = data.rfind(b"\n")
        if end < 0:
            if len(data) >= self.max_read:
                self._off += len(data)  # one line longer than a read: not an ack line
            return 0
        self._off += end + 1
        data = data[: end + 1]
        if not any(t in data for t in self.TOKENS):
            return 0
        n = 0
        for line in data.split(b"\n"):
            if any(t in line for t in self.TOKENS):
                n += self._apply(line)
        return n

    def _apply(self, line: bytes) -> int:
        try:
            ev = json.loads(line)
        except ValueError:
            return 0
        run = self.run
        evaluator = run.evaluator
        if not isinstance(ev, dict) or ev.get("run") != run.id or evaluator is None:
            return 0
        kind = ev.get("ev")
        if kind == E.ALERT_ACK and isinstance(ev.get("alert"), str):
            ok = evaluator.external_ack(ev["alert"], ev.get("by"), ev.get("ts"), ev.get("note"))
            self.applied += ok
            return int(ok)
        if kind == E.ALERTS_CLEARED and isinstance(ev.get("alerts"), list):
            evaluator.clear(ev["alerts"][:10_000], ev.get("by"), ev.get("ts"))
            self.applied += 1
            return 1
        return 0

    def _close(self) -> None:
        if self._fd >= 0:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = -1
        self._path = None

    def close(self) -> None:
        with self._lock:
            self._close()
