"""Where event lines go: whole-line appends to a run log.

One ``os.write`` of one whole line on an ``O_APPEND`` descriptor, under a per-file lock:
the kernel appends each write atomically at the end of a regular file, so threads and
separate processes sharing one log never interleave or tear lines. Write failures
(ENOSPC, EACCES, EBADF, EIO, ...) never raise: they are counted, reported once on
stderr, and visible in the monitor's health counters and in ``run_end``.

Logs hold commands, paths, errors and metadata: they are created private (0600 unless the
user asks otherwise; a stricter umask still wins) and never opened through a link another
user could have planted (``O_NOFOLLOW``; rotation parts are new files, ``O_EXCL``).
"""

from __future__ import annotations

import _thread  # threading's C core: threading itself costs more to import than this package
import errno
import os
import stat
import sys
import weakref

from ..events import quote

TYPE_CHECKING = False  # not typing's: importing typing would double the import time
if TYPE_CHECKING:
    from typing import Any

_FLAGS = (
    os.O_WRONLY
    | os.O_APPEND
    | os.O_CREAT
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_NOFOLLOW", 0)  # a planted symlink fails with ELOOP instead of redirecting
)
FILE_MODE = 0o600
"""Logs are private by default: they hold commands, paths, errors and metadata."""
MAX_PART_SKIPS = 16
"""Rotation names taken by something else (a planted link) skipped before giving up."""


class UnsafeLogError(PermissionError):
    """A log path that another user could have planted or may read (``trust=True`` accepts
    it)."""


def _trusted_owner(uid: int) -> bool:
    # Root-owned paths are trusted as ssh's StrictModes does: root could read them anyway.
    return uid == os.geteuid() or uid == 0


def nofollow_opener(path: str, flags: int) -> int:
    """``open(..., opener=nofollow_opener)``: an output file never written through a link
    planted at its name (with ``"w"``, the link's target would be truncated)."""
    return os.open(path, flags | getattr(os, "O_NOFOLLOW", 0), 0o666)


def _is_link(path: str) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except OSError:
        return False


def open_log(path: str, mode: int = FILE_MODE, *, new: bool = False, trust: bool = False) -> int:
    """Open ``path`` for whole-line appends without following a symlink; ``new``: it must
    not exist yet (``O_EXCL``). Raises OSError (ELOOP for a symlink, EEXIST for ``new``) or
    UnsafeLogError for an existing file another user owns or that has other hard links
    (``trust`` accepts those)."""
    try:
        fd = os.open(path, _FLAGS | (os.O_EXCL if new else 0), mode)
    except OSError:
        # ELOOP on Linux; some kernels (gVisor) say EACCES for O_CREAT on a link: ask lstat.
        if not new and _is_link(path):
            raise UnsafeLogError(
                errno.ELOOP,
                f"refusing to open {path}: it is a symbolic link (another user may have "
                "planted it); remove it or give the path it points to",
            ) from None
        raise
    if trust or new:
        return fd
    try:
        st = os.fstat(fd)  # the file opened, not the name: no race with a rename
        problem = None
        if not _trusted_owner(st.st_uid):
            problem = f"it belongs to another user (uid {st.st_uid})"
        elif stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
            problem = f"it has {st.st_nlink} hard links (one may point at another file)"
        if problem is not None:
            raise UnsafeLogError(
                13,
                f"refusing to append to {path}: {problem}; remove it, or pass "
                "trust_dir=True to accept it",
            )
    except BaseException:
        os.close(fd)
        raise
    return fd


class LogWriter:
    """Appends the events of one run, from this process, to one file.

    ``seq`` is per writer (one run in one process), so a reader can detect gaps. The seq
    is assigned under the same lock as the write, so file order equals seq order.
    """

    __slots__ = (
        "path",
        "run",
        "pid",
        "_fd",
        "_lock",
        "_seq",
        "_rp",
        "_rpb",
        "write_errors",
        "lost",
        "last_error",
        "_warned",
        "max_bytes",
        "part",
        "_base",
        "_size",
        "rotations",
        "_partial",
        "mode",
        "_trust",
        "_released",
        "__weakref__",
    )

    def __init__(
        self,
        path: str | os.PathLike[str],
        run: str,
        max_bytes: int | None = None,
        lenient: bool = False,
        mode: int = FILE_MODE,
        trust: bool = False,
    ) -> None:
        self.path = self._base = os.path.abspath(os.fspath(path))
        self.run = run
        self.max_bytes = max_bytes
        self.part = 1
        self.rotations = 0
        self._partial = False  # part of a line is in the file (a write failed mid-line)
        self._lock = _thread.allocate_lock()
        self.write_errors = 0
        self.lost = 0
        self.last_error: str | None = None
        self._warned = False
        self._size = 0
        self.mode = mode  # for the rotation parts
        self._trust = trust
        self._released = False  # release(): the descriptor is closed, reopened on demand
        try:
            self._fd: int = open_log(self.path, mode, trust=trust)
        except OSError as exc:
            # Strict (a Monitor's construction): the caller's error to see. Lenient (a run
            # started later, e.g. after the directory became read-only): every event is
            # counted as lost, reported once, and the pipeline goes on.
            if not lenient:
                raise
            self._fd = -1
            self._failed(exc, 0)
        else:
            try:
                self._size = os.fstat(self._fd).st_size
            except OSError:
                pass
        self._reset_identity()
        _writers.add(self)

    @property
    def written(self) -> int:
        """Events written whole: every event takes a seq and is either written or lost."""
        return self._seq - self.lost

    def _reset_identity(self) -> None:
        self.pid = os.getpid()
        self._seq = 0
        self._rp = f'"run":{quote(self.run)},"pid":{self.pid},"seq":'
        self._rpb = self._rp.encode("ascii")  # quote() escapes to ASCII

    def emit(self, ev: str, ts: float, body: str = "") -> int:
        """Write one event; ``body`` is pre-encoded JSON members starting with a comma.

        Returns the event's seq, or 0 when it could not be written.
        """
        with self._lock:
            self._seq += 1
            seq = self._seq
            line = f'{{"ev":"{ev}","ts":{ts:.6f},{self._rp}{seq}{body}}}\n'
            return seq if self._write(line.encode("ascii"), 1) else 0

    def emit_fmt(self, fmt: bytes, sec: bytes, us: int, args: tuple[Any, ...]) -> int:
        """Write one event formatted by ``fmt % (sec, us, prefix, seq, *args)``: ``fmt`` is a
        whole line whose first fields are the time (``b"<seconds>."`` and the microseconds,
        ``%s%06d``), the run/pid prefix and the seq (the phase lines: one ``%`` formats a
        line, no str round trip). Returns the seq, or 0 when it could not be written."""
        with self._lock:
            self._seq = seq = self._seq + 1
            return seq if self._write(fmt % (sec, us, self._rpb, seq, *args), 1) else 0

    def emit_deferred(self, holder: Any) -> None:
        """Write ``holder``'s deferred line (``holder.deferred_line()``: as ``emit_fmt``
        takes it) if ``holder.pending`` says it is still unwritten. The check and the write
        happen under the lock, so a line is written once whichever thread gets there first."""
        with self._lock:
            if not holder.pending:
                return
            holder.pending = False
            fmt, sec, us, args = holder.deferred_line()
            self._seq = seq = self._seq + 1
            self._write(fmt % (sec, us, self._rpb, seq, *args), 1)

    def emit_end(
        self,
        holder: Any,
        fmt: bytes,
        whole: bytes,
        sec: bytes,
        us: int,
        args: tuple[Any, ...],
    ) -> None:
        """Write the line that ends ``holder`` (as ``emit_fmt``). If its deferred start line
        is still unwritten (``holder.pending``), it never will be: the end line is formatted
        by ``whole`` instead, which takes the start's members from ``args`` where ``fmt``
        drops them, and stands for both (a short phase costs one line, one system call)."""
        with self._lock:
            self._seq = seq = self._seq + 1
            if holder.pending:
                holder.pending = False
                fmt = whole
            data = fmt % (sec, us, self._rpb, seq, *args)
            # The common case inline (one whole write, no rotation, the descriptor open):
            # this is the hot path.
            if self.max_bytes is None and not self._partial and self._fd >= 0:
                try:
                    n = os.write(self._fd, data)
                    if n == len(data):
                        return
                    if n > 0:
                        self._partial = True
                    data = data[n:]  # a short write: _write finishes the line below
                except OSError as exc:
                    self._failed(exc, 1)
                    return
                except Exception as exc:
                    self._failed(OSError(9, str(exc)), 1)
                    return
                self._write(data, 1, cont=True)
                return
            self._write(data, 1)

    def _write(self, data: bytes, lines: int, cont: bool = False) -> bool:
        """Append whole lines; called with the lock held. ``cont``: ``data`` finishes a line
        already partly written.

        A write that fails half-way (ENOSPC, EFBIG) leaves part of a line in the file; the
        next write starts with a newline, so that fragment is one corrupt line a reader
        skips and counts, instead of a prefix that would spoil the next event."""
        if self._partial and not cont:
            data = b"\n" + data
        size = len(data)
        try:
            while data:
                n = os.write(self._fd, data)
                if n == 0:
                    raise OSError(28, "short write")
                self._partial = n < len(data)
                data = data[n:]
        except OSError as exc:
            if self._released and self._fd < 0:
                return self._reopen(data, lines, cont)
            self._failed(exc, lines)
            return False
        except Exception as exc:  # e.g. ValueError from a closed descriptor number
            self._failed(OSError(9, str(exc)), lines)
            return False
        if self.max_bytes is not None:
            self._size += size
            if self._size >= self.max_bytes:
                self._rotate()
        return True

    def _rotate(self) -> None:
        """Go on in the next part file (``run.part2.jsonl``, ...); readers read the parts
        back as one log. Called with the lock held, after a whole line: no line is split."""
        from ..read.reader import part_path

        n = self.part + 1
        while True:
            nxt = part_path(self._base, n)
            try:
                fd = open_log(nxt, self.mode, new=True)
                break
            except FileExistsError as exc:
                # Not ours to append to (a planted link, another writer's file): the next
                # free name. Readers read every part that exists, in order.
                if n - self.part >= MAX_PART_SKIPS:
                    self._failed(exc, 0)
                    self.max_bytes = None
                    return
                n += 1
            except OSError as exc:
                self._failed(exc, 0)  # keep writing where we are; counted
                self.max_bytes = None
                return
        try:
            os.close(self._fd)
        except OSError:
            pass
        self._fd = fd
        self.part = n
        self.path = nxt
        self._size = 0
        self.rotations += 1

    def _failed(self, exc: OSError, lines: int = 1) -> None:
        self.write_errors += 1
        self.lost += lines
        if self._fd < 0 and self.last_error is not None and lines:
            return  # a log that never opened: keep the reason it did not, not EBADF
        self.last_error = f"{exc.strerror or exc} (errno {exc.errno})"
        if not self._warned:
            self._warned = True
            try:
                sys.stderr.write(
                    f"atroz_monitor: cannot write to {self.path}: {self.last_error}; "
                    "further failures are counted, not reported\n"
                )
            except Exception:
                pass

    def health(self) -> dict[str, object]:
        return {
            "log_parts": self.part,
            "events_written": self.written,
            "write_errors": self.write_errors,
            "events_lost": self.lost,
            "last_write_error": self.last_error,
        }

    def release(self) -> None:
        """Close the descriptor once the run has ended: a process running one pipeline after
        another keeps no descriptor per finished run. A later line of this writer (a phase
        that outlived its run, an acknowledgement) reopens the file first: nothing is lost."""
        self._close_fd(reopen=True)

    def _reopen(self, data: bytes, lines: int, cont: bool) -> bool:
        """The first write after ``release()``: the same checks as at construction (no link
        followed, no file of another user), then the write. Called with the lock held."""
        self._released = False
        try:
            self._fd = open_log(self.path, self.mode, trust=self._trust)
        except OSError as exc:
            self._failed(exc, lines)
            return False
        return self._write(data, lines, cont)

    def close(self) -> None:
        self._close_fd(reopen=False)

    def _close_fd(self, reopen: bool) -> None:
        with self._lock:
            if self._fd >= 0:
                try:
                    os.close(self._fd)
                except OSError:
                    pass
                self._fd = -1
                self._released = reopen  # released: the next write reopens; closed: never
            elif not reopen:
                self._released = False

    def after_fork(self) -> None:
        """In a forked child: a fresh lock, this process's identity, zeroed loss counters."""
        # A lock held by another thread at fork time stays held forever in the child.
        self._lock = _thread.allocate_lock()
        self._reset_identity()
        self.write_errors = self.lost = 0
        self._warned = False


_writers: weakref.WeakSet[LogWriter] = weakref.WeakSet()


def after_fork_in_child() -> None:
    """Make every writer usable in a forked child (monitor.py registers this at the first
    Monitor, which creates every writer: importing the package registers nothing)."""
    for w in list(_writers):
        w.after_fork()
