"""Which files in a few directories changed: Linux ``inotify`` through ``ctypes``.

A source following thousands of finished logs must not stat each of them on every poll (issue
13: idle ``serve`` with 10,000 logs kept ~44% of a core busy). One inotify descriptor watching
each directory tells which names were written, created, moved or deleted; the source then
polls only those. Where inotify is missing (not Linux, no libc, the per-user watch limit
reached) ``DirWatch.ok`` is False and the caller falls back to polling in slices.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import struct
import sys

__all__ = ["DirWatch"]

_IN_MODIFY = 0x2
_IN_ATTRIB = 0x4
_IN_CLOSE_WRITE = 0x8
_IN_MOVED_FROM = 0x40
_IN_MOVED_TO = 0x80
_IN_CREATE = 0x100
_IN_DELETE = 0x200
_IN_DELETE_SELF = 0x400
_IN_MOVE_SELF = 0x800
_IN_Q_OVERFLOW = 0x4000
_IN_IGNORED = 0x8000
_IN_ONLYDIR = 0x01000000
_IN_NONBLOCK = 0o4000
_IN_CLOEXEC = 0o2000000

_MASK = (
    _IN_MODIFY
    | _IN_ATTRIB
    | _IN_CLOSE_WRITE
    | _IN_MOVED_FROM
    | _IN_MOVED_TO
    | _IN_CREATE
    | _IN_DELETE
    | _IN_DELETE_SELF
    | _IN_MOVE_SELF
    | _IN_ONLYDIR
)
_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len (struct inotify_event)
_READ = 64 * 1024


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        lib.inotify_init1.argtypes = [ctypes.c_int]
        lib.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        return lib
    except (OSError, AttributeError):
        return None


class DirWatch:
    """Names changed in watched directories since the last ``changed()``; not thread-safe."""

    def __init__(self) -> None:
        self._fd: int | None = None
        self._wds: dict[int, str] = {}
        self._dirs: dict[str, int] = {}
        self.overflows = 0
        lib = _libc()
        if lib is None:
            return
        fd = lib.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd >= 0:
            self._lib = lib
            self._fd = fd

    @property
    def ok(self) -> bool:
        """Whether change notification works (else the caller polls)."""
        return self._fd is not None

    def add(self, directory: str) -> bool:
        """Watch ``directory``; False if that is not possible (then poll it)."""
        if self._fd is None:
            return False
        if directory in self._dirs:
            return True
        wd = self._lib.inotify_add_watch(self._fd, os.fsencode(directory), _MASK)
        if wd < 0:
            return False
        self._wds[wd] = directory
        self._dirs[directory] = wd
        return True

    def watching(self, directory: str) -> bool:
        return directory in self._dirs

    def changed(self) -> set[str] | None:
        """Paths that changed since the last call (directories themselves included when they
        were moved or deleted); None if events were lost (queue overflow), so the caller must
        look at everything once."""
        if self._fd is None:
            return set()
        out: set[str] = set()
        lost = False
        while True:
            try:
                buf = os.read(self._fd, _READ)
            except BlockingIOError:
                break
            except OSError:
                lost = True
                break
            if not buf:
                break
            pos = 0
            while pos + _HEADER.size <= len(buf):
                wd, mask, _cookie, n = _HEADER.unpack_from(buf, pos)
                name = buf[pos + _HEADER.size : pos + _HEADER.size + n].rstrip(b"\0")
                pos += _HEADER.size + n
                if mask & _IN_Q_OVERFLOW:
                    lost = True
                    continue
                d = self._wds.get(wd)
                if d is None:
                    continue
                if mask & _IN_IGNORED:
                    # The directory went away (or was unmounted): watch it again if it returns.
                    del self._wds[wd]
                    self._dirs.pop(d, None)
                    out.add(d)
                    continue
                out.add(os.path.join(d, os.fsdecode(name)) if name else d)
            if len(buf) < _READ - 4096:
                break
        if lost:
            self.overflows += 1
            return None
        return out

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.close(fd)
            except OSError:
                pass  # released either way
