"""Process and machine figures read straight from Linux ``/proc``.

Parsing is done the psutil way: bytes in, ``stat`` split at the last ``)`` (a process may call
itself ``a b) (c``), a default for every missing field, and a procfs root that tests replace with
a fake tree. The parsers are pure and never raise, so they can be property-tested against torn
and corrupt files.

:class:`ProcFS` keeps one descriptor open per file and re-reads it with ``pread``, called with
the GIL held (:func:`pread`): with a GIL-bound main thread every GIL-releasing syscall can cost
a 5 ms switch interval, and open/read/close per tick reached only 31 Hz when 100 Hz was asked.
:class:`TreeSampler` measures a process and all its descendants; :class:`RusageSampler` is
the fallback where there is no ``/proc``. Nothing here starts a thread: the caller owns the
loop and calls ``read()`` from one thread at a time.
"""

from __future__ import annotations

import errno
import functools
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Collection
from typing import Any, NamedTuple

__all__ = [
    "HighWater",
    "ProcFS",
    "ProcStat",
    "RusageSampler",
    "Statm",
    "TreeSampler",
    "clk_tck",
    "page_size",
    "parse_children",
    "parse_cpu_line",
    "parse_io",
    "parse_meminfo",
    "parse_stat",
    "pid_start_time",
    "pread",
    "process_alive",
    "reaped_children_cpu_s",
]

Sample = dict[str, int | float]

# A zombie has exited: it keeps its final CPU times (worth reading) but is not a live process.
_DEAD_STATES = frozenset({"Z", "X", "x"})


class ProcStat(NamedTuple):
    """The fields of ``/proc/<pid>/stat`` the monitor uses (times in clock ticks)."""

    pid: int
    name: str
    state: str
    ppid: int
    utime: int
    stime: int
    cutime: int
    cstime: int
    num_threads: int
    starttime: int
    rss_pages: int


# ---------------------------------------------------------------------------------------------
# Pure parsers


def _int(raw: bytes, default: int = 0) -> int:
    """A non-negative decimal field, or ``default`` (``int()`` alone would take ``-1_0``)."""
    if not raw.isdigit():
        return default
    try:
        return int(raw)
    except ValueError:  # more digits than sys.get_int_max_str_digits() allows
        return default


# Offsets into the fields after the last ")": man proc numbers them from 1 with state at 3.
_STATE, _PPID, _UTIME, _STIME, _CUTIME, _CSTIME, _THREADS, _START, _RSS = (
    0,
    1,
    11,
    12,
    13,
    14,
    17,
    19,
    21,
)


def parse_stat(data: bytes) -> ProcStat | None:
    """Parse ``/proc/<pid>/stat``; None without a pid and a parenthesised name."""
    lpar = data.find(b"(")
    rpar = data.rfind(b")")
    if lpar < 0 or rpar < lpar:
        return None
    pid = _int(data[:lpar].strip(), -1)
    if pid < 0:
        return None
    fields = data[rpar + 1 :].split()

    def field(index: int) -> int:
        return _int(fields[index]) if index < len(fields) else 0

    return ProcStat(
        pid=pid,
        name=data[lpar + 1 : rpar].decode("utf-8", errors="replace"),
        state=fields[_STATE].decode("ascii", errors="replace") if fields else "",
        ppid=field(_PPID),
        utime=field(_UTIME),
        stime=field(_STIME),
        cutime=field(_CUTIME),
        cstime=field(_CSTIME),
        num_threads=field(_THREADS),
        starttime=field(_START),
        rss_pages=field(_RSS),
    )


def _colon_fields(data: bytes, wanted: frozenset[bytes]) -> dict[bytes, bytes]:
    """The ``wanted`` keys of ``Key: value ...`` lines (``/proc/<pid>/io``,
    ``/proc/meminfo``) as key -> first word; stops once all are found (meminfo has ~50
    lines and the sampler reads it every tick)."""
    out: dict[bytes, bytes] = {}
    for line in data.split(b"\n"):
        key, sep, rest = line.partition(b":")
        if not sep:
            continue
        key = key.strip()
        if key not in wanted or key in out:
            continue
        words = rest.split()
        if words:
            out[key] = words[0]
            if len(out) == len(wanted):
                break
    return out


_IO_KEYS = frozenset((b"read_bytes", b"write_bytes"))
_MEM_KEYS = frozenset((b"MemTotal", b"MemAvailable"))
_MEM_OLD_KEYS = frozenset((b"MemTotal", b"MemFree", b"Buffers", b"Cached"))


def parse_io(data: bytes) -> dict[str, int]:
    """``read_bytes`` and ``write_bytes`` from ``/proc/<pid>/io``; only the keys present."""
    fields = _colon_fields(data, _IO_KEYS)
    out: dict[str, int] = {}
    for key in ("read_bytes", "write_bytes"):
        value = _int(fields.get(key.encode(), b""), -1)
        if value >= 0:
            out[key] = value
    return out


def parse_meminfo(data: bytes) -> tuple[int, int] | None:
    """``(total_bytes, available_bytes)`` from ``/proc/meminfo``; None without MemTotal."""
    fields = _colon_fields(data, _MEM_KEYS)

    def kib(key: bytes) -> int:
        return _int(fields.get(key, b""), -1)

    total = kib(b"MemTotal")
    if total <= 0:
        return None
    available = kib(b"MemAvailable")
    if available < 0:
        # Kernels before 3.14 have no MemAvailable; this is the estimate free(1) used then.
        fields = _colon_fields(data, _MEM_OLD_KEYS)
        free = kib(b"MemFree")
        if free < 0:
            return None
        available = free + max(kib(b"Buffers"), 0) + max(kib(b"Cached"), 0)
    return total * 1024, min(available, total) * 1024


def parse_cpu_line(data: bytes) -> tuple[int, int] | None:
    """``(busy_ticks, total_ticks)`` from the first ``cpu `` line of ``/proc/stat``."""
    for line in data.splitlines():
        if not line.startswith(b"cpu "):
            continue
        words = line.split()[1:9]  # user nice system idle iowait irq softirq steal
        if len(words) < 4:
            return None
        ticks = [_int(word, -1) for word in words]
        if min(ticks) < 0:
            return None
        ticks += [0] * (8 - len(ticks))  # old kernels stop after idle/iowait/irq
        total = sum(ticks)  # guest and guest_nice are already inside user and nice
        return total - ticks[3] - ticks[4], total
    return None


def parse_children(data: bytes) -> list[int]:
    """Pids in ``/proc/<pid>/task/<tid>/children`` (space separated); junk words skipped."""
    return [pid for pid in (_int(word) for word in data.split()) if pid > 0]


def _sysconf(name: str, default: int) -> int:
    try:
        value = os.sysconf(name)
    except (AttributeError, OSError, ValueError):  # no sysconf (Windows) or unknown name
        return default
    return value if value > 0 else default


def clk_tck() -> int:
    """Clock ticks per second (``USER_HZ``), the unit of every time in ``/proc``."""
    return _sysconf("SC_CLK_TCK", 100)


def page_size() -> int:
    """Bytes per page, the unit of ``rss`` in ``/proc/<pid>/stat``."""
    return _sysconf("SC_PAGE_SIZE", 4096)


# ---------------------------------------------------------------------------------------------
# Kept file descriptors


def _os_pread(fd: int, size: int, offset: int) -> bytes:
    return os.pread(fd, size, offset)


_pread_impl: Callable[[int, int, int], bytes] | None = None


def _gil_holding_pread() -> Callable[[int, int, int], bytes]:
    """``pread(2)`` through ``ctypes.PyDLL``, which keeps the GIL for the call.

    ``os.pread`` releases the GIL around the system call, and beside a thread that keeps the
    GIL busy, taking it back costs up to a switch interval (5 ms): at 100 Hz, four reads a
    tick were most of the tick (60 Hz measured, 100 Hz with this). Reads of ``/proc`` and
    cgroup files take microseconds and never wait on I/O, so holding the GIL through them
    costs other threads nothing measurable. Falls back to ``os.pread`` where ctypes or a
    libc ``pread64`` is missing.
    """
    try:
        import ctypes

        libc = ctypes.PyDLL(None, use_errno=True)
        call = libc.pread64
    except (ImportError, OSError, AttributeError):
        return _os_pread
    call.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int64]
    call.restype = ctypes.c_ssize_t
    new_buffer = ctypes.create_string_buffer
    get_errno = ctypes.get_errno

    def gil_pread(fd: int, size: int, offset: int) -> bytes:
        buf = new_buffer(size)  # one per call: the caller may be any thread
        while True:
            n = call(fd, buf, size, offset)
            if n >= 0:
                # typeshed types every Array slice as list; a c_char array's slice is bytes.
                return buf[:n]  # type: ignore[return-value]
            err = get_errno()
            if err != errno.EINTR:
                raise OSError(err, os.strerror(err))

    return gil_pread


def pread(fd: int, size: int, offset: int = 0) -> bytes:
    """``os.pread`` for procfs and cgroup files, without releasing the GIL where possible."""
    global _pread_impl
    impl = _pread_impl
    if impl is None:
        impl = _pread_impl = _gil_holding_pread()
    return impl(fd, size, offset)


class ProcFS:
    """Reads procfs files through descriptors kept open between reads.

    Paths are relative to ``root`` and always name explicit pids, never ``self``: after a fork
    the cached descriptors would still point at the parent. Not thread-safe; one owner thread.
    """

    def __init__(self, root: str = "/proc") -> None:
        self.root = root
        self._fds: dict[str, int] = {}
        # (st_dev, st_ino) per path so reset() can tell our descriptors from recycled numbers.
        self._ids: dict[str, tuple[int, int]] = {}
        self._by_pid: dict[int, set[str]] = {}

    @property
    def open_files(self) -> int:
        """How many descriptors are currently kept."""
        return len(self._fds)

    @property
    def open_paths(self) -> list[str]:
        """The relative paths whose descriptors are kept, sorted."""
        return sorted(self._fds)

    def _path(self, relpath: str) -> str:
        return os.path.join(self.root, relpath)

    @staticmethod
    def _pid_of(relpath: str) -> int | None:
        head = relpath.split("/", 1)[0]
        return int(head) if head.isdigit() else None

    def read(self, relpath: str, size: int = 4096) -> bytes | None:
        """Up to ``size`` bytes from the start of the file; None if it cannot be read.

        Any OSError drops the descriptor: ENOENT/EACCES on open, and ESRCH on a kept
        descriptor of a process that has died, which also makes a reused pid safe (the old
        descriptor never reads the new process).
        """
        fd = self._fds.get(relpath)
        try:
            if fd is None:
                fd = os.open(self._path(relpath), os.O_RDONLY | os.O_CLOEXEC)
                self._keep(relpath, fd)
            return pread(fd, size)
        except OSError:
            if fd is not None:
                self.drop(relpath)
            return None

    def _keep(self, relpath: str, fd: int) -> None:
        self._fds[relpath] = fd
        pid = self._pid_of(relpath)
        if pid is not None:
            self._by_pid.setdefault(pid, set()).add(relpath)
        try:
            st = os.fstat(fd)
        except OSError:  # without an identity reset() will leave this one alone
            return
        self._ids[relpath] = (st.st_dev, st.st_ino)

    def drop(self, relpath: str) -> None:
        """Close and forget the descriptor of one path (no-op if none is kept)."""
        fd = self._fds.pop(relpath, None)
        self._ids.pop(relpath, None)
        pid = self._pid_of(relpath)
        if pid is not None:
            paths = self._by_pid.get(pid)
            if paths is not None:
                paths.discard(relpath)
                if not paths:
                    del self._by_pid[pid]
        if fd is not None:
            try:
                os.close(fd)
            except OSError:  # Linux releases the number even when close reports an error
                pass

    def forget(self, pid: int) -> None:
        """Close the descriptors of every file under ``<root>/<pid>/``."""
        for relpath in list(self._by_pid.get(pid, ())):
            self.drop(relpath)

    def close(self) -> None:
        """Close every kept descriptor."""
        for relpath in list(self._fds):
            self.drop(relpath)

    def reset(self) -> None:
        """Drop every cached descriptor in a forked child, closing only those still ours.

        The child inherited copies of the parent's descriptors, but by the time this runs
        the child may have closed a number and reused it for its own file: a descriptor is
        closed only if it still refers to the file we opened (same device and inode).
        """
        for relpath, fd in self._fds.items():
            ident = self._ids.get(relpath)
            if ident is None:
                continue
            try:
                st = os.fstat(fd)
                if (st.st_dev, st.st_ino) == ident:
                    os.close(fd)
            except OSError:  # the number is no longer open: nothing of ours to release
                continue
        self._fds.clear()
        self._ids.clear()
        self._by_pid.clear()

    def listdir(self, relpath: str) -> list[str] | None:
        """Entries of a directory under the root; None if it cannot be listed."""
        try:
            return os.listdir(self._path(relpath))
        except OSError:
            return None


# ---------------------------------------------------------------------------------------------
# Phase boundaries: this process's own figures, read at the boundary itself


class Statm:
    """This process's resident set size from a kept ``/proc/<pid>/statm`` descriptor.

    A phase reads it at its start and end (one :func:`pread`, a few microseconds), so a phase
    never inherits the figure of the sampler's last tick, which may predate a 500 MB free.
    ``rss()`` is None where there is no ``/proc``. After a fork the child must ``reopen()``:
    the descriptor names the parent's pid.

    ``reading`` is the last boundary reading, ``(perf_counter_ns, process_time_ns, rss)``,
    stamped no later than it was taken; a boundary soon enough after the stamp
    uses it instead of reading again (``monitor.REUSE_NS``). One tuple, replaced whole: a thread
    reads a consistent one. ``children()`` is ``getrusage(RUSAGE_CHILDREN)``, for the same
    boundaries (a C callable: the hot path calls it without a Python frame).
    """

    __slots__ = ("root", "fd", "page", "_ident", "reading", "children")

    def __init__(self, root: str = "/proc") -> None:
        self.root = root
        self.fd = -1
        self._ident: tuple[int, int] | None = None
        self.page = page_size()
        self.reading: tuple[int, int, int | None] = (-(1 << 62), 0, None)
        self.children = rusage_children  # read at every boundary, never reused
        self.reopen()

    def reopen(self) -> None:
        """Open the statm file of the calling process; in a forked child, the inherited
        descriptor (the parent's file) is closed if the number is still ours."""
        # A forked child's CPU clock starts again and its RSS is its own: forget the reading.
        self.reading = (-(1 << 62), 0, None)
        _close_if_ours(self.fd, self._ident)
        self.fd, self._ident = _open_kept(
            os.path.join(self.root, str(os.getpid()), "statm"), os.O_RDONLY
        )

    def rss(self) -> int | None:
        """The resident set size now, in bytes; None if it cannot be read."""
        try:
            # os.pread, not the GIL-holding pread of the sampler: 0.7 us instead of 2.3 on the
            # phase hot path. It lets other threads run for the call, as the phase's own
            # os.write of its line already does.
            return int(os.pread(self.fd, 128, 0).split(None, 2)[1]) * self.page
        except (OSError, IndexError, ValueError):
            return None

    def close(self) -> None:
        _close_if_ours(self.fd, self._ident)
        self.fd, self._ident = -1, None


# One Statm and one HighWater per process and procfs root: every Monitor of a process reads
# the same files, so a process that runs pipelines one after another for years holds two
# descriptors, not two per run. The pid tells a forked child that the instance is its
# parent's (the descriptor names the parent's file).
_statms: dict[str, tuple[int, Statm]] = {}
_high_waters: dict[str, tuple[int, HighWater]] = {}
_shared_lock = threading.Lock()


def shared_statm(root: str = "/proc") -> Statm:
    """This process's ``Statm`` for ``root`` (opened once, reopened after a fork)."""
    with _shared_lock:
        got = _statms.get(root)
        if got is None or got[1].fd < 0:
            st = Statm(root)
        else:
            st = got[1]
            if got[0] != os.getpid():
                st.reopen()
        _statms[root] = (os.getpid(), st)
        return st


def shared_high_water(root: str = "/proc") -> HighWater:
    """This process's ``HighWater`` for ``root``; OSError where the kernel has none."""
    with _shared_lock:
        got = _high_waters.get(root)
        if got is None:
            hw = HighWater(root)
        else:
            hw = got[1]
            if got[0] != os.getpid():
                hw.reopen()
        _high_waters[root] = (os.getpid(), hw)
        return hw


def _open_kept(path: str, flags: int) -> tuple[int, tuple[int, int] | None]:
    """A descriptor kept across reads and its identity (-1 and None if it cannot be opened)."""
    try:
        fd = os.open(path, flags | os.O_CLOEXEC)
    except OSError:
        return -1, None
    try:
        st = os.fstat(fd)
    except OSError:
        return fd, None
    return fd, (st.st_dev, st.st_ino)


def _close_if_ours(fd: int, ident: tuple[int, int] | None) -> None:
    """Close ``fd`` only if it still refers to the file we opened (a forked child may have
    reused the number for a file of its own)."""
    if fd < 0 or ident is None:
        return
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) == ident:
            os.close(fd)
    except OSError:
        pass


class HighWater:
    """The exact peak RSS between two moments: ``VmHWM``, reset by ``clear_refs`` ``5``.

    ``take()`` returns the high-water mark since the previous ``take()`` (or since the process
    started) and resets it to the current RSS (Linux >= 4.0). The reset also lowers the
    process's own ``ru_maxrss`` (``getrusage``, ``/usr/bin/time``), which a host program may
    read: that is why the monitor only does this when asked (``exact_peak=True``).
    Construction raises OSError where the files are missing or the kernel refuses the reset.
    """

    __slots__ = ("root", "_status", "_clear")

    def __init__(self, root: str = "/proc") -> None:
        self.root = root
        self._status: tuple[int, tuple[int, int] | None] = (-1, None)
        self._clear: tuple[int, tuple[int, int] | None] = (-1, None)
        self.reopen()

    def reopen(self) -> None:
        """Open the files of the calling process (in a forked child: the child's), or raise
        OSError; inherited descriptors still ours are closed."""
        self.close()
        base = os.path.join(self.root, str(os.getpid()))
        self._status = _open_kept(os.path.join(base, "status"), os.O_RDONLY)
        self._clear = _open_kept(os.path.join(base, "clear_refs"), os.O_WRONLY)
        try:
            if self._status[0] < 0 or self._clear[0] < 0:
                raise OSError(errno.ENOENT, "no /proc/<pid>/status or clear_refs")
            os.write(self._clear[0], b"5")  # kernels before 4.0 answer EINVAL: no exact peak
        except OSError:
            self.close()
            raise

    def peek(self) -> int | None:
        """The high-water mark since the last reset, in bytes; None if unreadable."""
        try:
            data = pread(self._status[0], 4096, 0)
        except OSError:
            return None
        i = data.find(b"VmHWM:")
        if i < 0:
            return None
        words = data[i + 6 : data.find(b"\n", i)].split()
        value = _int(words[0], -1) if words else -1
        return value * 1024 if value >= 0 else None

    def take(self) -> int | None:
        """The high-water mark since the last reset, then reset it to the current RSS."""
        value = self.peek()
        try:
            os.write(self._clear[0], b"5")
        except OSError:
            return None
        return value

    def close(self) -> None:
        for fd, ident in (self._status, self._clear):
            _close_if_ours(fd, ident)
        self._status = self._clear = (-1, None)


class _ChildTimes(NamedTuple):
    ru_utime: float
    ru_stime: float


def _times_children() -> _ChildTimes:
    """Windows: os.times has the same sums, at clock-tick resolution."""
    t = os.times()
    return _ChildTimes(t.children_user, t.children_system)


try:
    import resource as _resource
except ImportError:
    rusage_children: Callable[[], Any] = _times_children
else:
    # A C callable: no Python frame on the phase hot path, which sums the two fields inline.
    rusage_children = functools.partial(_resource.getrusage, _resource.RUSAGE_CHILDREN)


def reaped_children_cpu_s() -> float:
    """CPU seconds of this process's reaped children, exact: the kernel adds each waited-for
    child, with the descendants it waited for, to RUSAGE_CHILDREN."""
    r = rusage_children()
    return r.ru_utime + r.ru_stime  # type: ignore[no-any-return]


def _read_once(path: str) -> bytes | None:
    try:
        with open(path, "rb", buffering=0) as f:
            return f.read(4096)
    except OSError:
        return None


def _default_boot_clock() -> Callable[[], float] | None:
    clock_id = getattr(time, "CLOCK_BOOTTIME", None)
    if clock_id is None:
        return None
    return lambda: time.clock_gettime(clock_id)


# ---------------------------------------------------------------------------------------------
# Samplers


class _Rate:
    """A rate of a cumulative figure (percent: 100 = one unit per second) over at least
    ``min_dt`` seconds: reads closer together are measured from an older read, so a burst
    of catch-up reads never divides a clock-tick step by a fraction of a millisecond."""

    __slots__ = ("min_dt", "points")

    def __init__(self, min_dt: float) -> None:
        self.min_dt = min_dt
        self.points: deque[tuple[float, float]] = deque()

    def update(self, now: float, value: float) -> float | None:
        pts = self.points
        pts.append((now, value))
        while len(pts) > 2 and now - pts[1][0] >= self.min_dt:
            pts.popleft()
        t0, v0 = pts[0]
        if now - t0 < self.min_dt:
            return None
        return max(value - v0, 0.0) * 100 / (now - t0)


class TreeSampler:
    """Measures one process and all its descendants from ``/proc``.

    Descendants are found through ``<pid>/task/<tid>/children`` of every task in the tree
    (read on kept descriptors each time; task lists re-listed at most once a second). Kernels
    built without ``CONFIG_PROC_CHILDREN`` (some minimal and embedded configs) have no such
    file: there the tree is rebuilt from the ``ppid`` of every pid in ``<root>`` at most
    once a second (``discovery == "scan"``), and known descendants are re-read every time.
    ``scan=True`` forces that mode. A descendant born between two scans is found late, and
    then all its CPU so far lands in one read (cumulative right, one spike in the rate).

    ``exclude()`` is called once per read; an excluded pid takes its whole subtree with it (a
    helper the monitor started, and whatever that helper starts, is not the host's work).

    ``read()`` omits every figure it cannot measure. Children's CPU is exact for every child
    that has exited and been waited for: the kernel sums those (with the grandchildren they
    waited for) in the root's ``RUSAGE_CHILDREN`` (``getrusage`` for this process, ``cutime``
    otherwise). To that it adds each live descendant's ``utime + stime + cutime + cstime``
    at the read (its own CPU and its reaped children's), which counts every CPU second once:
    a descendant reaped inside the tree moves from its own figure into its parent's
    ``cutime`` (or into ``RUSAGE_CHILDREN``), and one that leaves the tree (re-parented to
    init, reaped there) keeps the figure it had at its last read. ``reaped_s``, ``tree_s``
    and ``direct`` expose the parts, so a phase boundary between two reads can add what was
    reaped since (``Monitor`` does) without counting a child twice.

    Rates (``cpu_pct``, ``children_cpu_pct``) are taken over at least ``MIN_RATE_TICKS``
    clock ticks: a read closer than that to the previous one (a catch-up tick) is measured
    from an older read, so a 10 ms CPU step is never divided by 0.1 ms. ``max_cpus`` caps
    them at 100 x the CPUs the tree may use (the cgroup quota or the cores).
    """

    TASK_REFRESH_S = 1.0
    SCAN_INTERVAL_S = 1.0
    MIN_RATE_TICKS = 10  # 0.1 s at USER_HZ 100: a one-tick error is at most 10% of a core

    def __init__(
        self,
        pid: int | None = None,
        root: str = "/proc",
        exclude: Callable[[], Collection[int]] | None = None,
        *,
        scan: bool = False,
        boot_clock: Callable[[], float] | None = None,
        ticks_per_s: int | None = None,
        page_bytes: int | None = None,
        max_cpus: float | None = None,
    ) -> None:
        self._follow_self = pid is None
        if pid is None:
            pid = os.getpid()
        if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
            raise ValueError(f"pid must be a positive int, not {pid!r}")
        if exclude is not None and not callable(exclude):
            raise TypeError("exclude must be a callable returning pids")
        for name, value in (("ticks_per_s", ticks_per_s), ("page_bytes", page_bytes)):
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise ValueError(f"{name} must be a positive int, not {value!r}")
        self.pid = pid
        self.root = root
        self._fs = ProcFS(root)
        self._exclude = exclude
        self._scan_only = scan
        self._boot_clock = boot_clock if boot_clock is not None else _default_boot_clock()
        self._tck = ticks_per_s or clk_tck()
        self._page = page_bytes or page_size()
        self._cap = None if max_cpus is None else 100.0 * max_cpus
        self.available = False
        self.discovery = "scan"
        self._probe()
        self.vanished = 0  # processes listed in the tree that were gone before we read them
        self.exclude_errors = 0
        self.descendants: tuple[int, ...] = ()  # live or zombie descendants at the last read
        self._reset_state()

    def _probe(self) -> None:
        pid = self.pid
        self.available = parse_stat(self._fs.read(f"{pid}/stat") or b"") is not None
        has_children_file = self._fs.read(f"{pid}/task/{pid}/children") is not None
        self.discovery = "children" if has_children_file and not self._scan_only else "scan"

    def _reset_state(self) -> None:
        self._prev_t: float | None = None
        self._prev_sys: tuple[int, int] | None = None
        self._discovery_boot: float | None = None  # boot clock at the previous discovery
        self._last_scan: float | None = None
        self._order: list[int] = []  # known descendants, parents first (scan mode)
        # pid -> (starttime, level, baseline, ppid); level: utime+stime+cutime+cstime ticks
        self._levels: dict[int, tuple[int, int, int, int]] = {}
        self._departed = 0  # ticks of descendants gone where RUSAGE_CHILDREN cannot see
        self._tree0: float | None = None  # tree_s at the first read: samples count from it
        self._children_s = 0.0  # the monotonic children_cpu_s of the samples
        min_dt = self.MIN_RATE_TICKS / self._tck
        self._cpu_rate = _Rate(min_dt)
        self._children_rate = _Rate(min_dt)
        self.reaped_s = 0.0  # RUSAGE_CHILDREN at the last read (seconds)
        self.tree_s = 0.0  # reaped_s + live descendants' CPU + departed, at the last read
        self.direct: tuple[tuple[int, float], ...] = ()  # (pid, its CPU s in tree_s): children
        self._tasks: dict[int, tuple[float, list[int]]] = {}  # pid -> (listed at, tids)
        self.slow_interval = 0.1
        self._slow_t: float | None = None
        self._slow: Sample = {}
        self._io: Sample = {}
        self._self_tid = 0
        self.skip_own_thread = False  # the sampler's thread sets it: it never forks

    def close(self) -> None:
        """Close every kept descriptor; a later ``read()`` reopens what it needs."""
        self._fs.close()
        self._tasks.clear()

    def reset(self) -> None:
        """Forget descriptors and history in a forked child (see :meth:`ProcFS.reset`).

        A sampler built with ``pid=None`` measures "this process", so it moves to the child.
        """
        self._fs.reset()
        self._reset_state()
        self.descendants = ()
        if self._follow_self:
            self.pid = os.getpid()
        self._probe()

    def _boot_now(self) -> float | None:
        if self._boot_clock is None:
            return None
        try:
            return self._boot_clock()
        except OSError:  # CLOCK_BOOTTIME missing at run time: first-seen children baseline
            return None

    def _excluded(self) -> Collection[int]:
        if self._exclude is None:
            return ()
        try:
            return set(self._exclude())
        except Exception:  # a broken callback must not stop sampling; counted, not raised
            self.exclude_errors += 1
            return ()

    def read(self, now: float | None = None) -> Sample:
        """One measurement; rates cover the time since the previous ``read()``."""
        if now is None:
            now = time.monotonic()
        boot = self._boot_now()
        out: Sample = {}
        # The reading thread never forks: skip its own children file (one system call less;
        # each one can cost a GIL switch interval beside a busy thread).
        self._self_tid = threading.get_native_id()
        slow = self._slow_t is None or now - self._slow_t >= self.slow_interval
        if self._read_process(out, now, slow) is not None:  # no tree for a process unseen
            self._read_tree(out, now, boot)
        if slow:
            self._slow_t = now
            self._slow = {}
            self._read_system(self._slow)
        # System-wide figures and I/O counters are refreshed at most every slow_interval
        # (10 Hz by default): at 100 Hz sampling they would double the system calls a tick.
        out.update(self._slow)
        self._prev_t = now
        return out

    def _read_process(self, out: Sample, now: float, slow: bool = True) -> ProcStat | None:
        own = self.pid == os.getpid() and self.root == "/proc"
        # Our own children's CPU first, before the tree is walked: a child reaped between
        # the two reads is then missing from both (until the next read), never in both.
        reaped = reaped_children_cpu_s() if own else None
        st = parse_stat(self._fs.read(f"{self.pid}/stat") or b"")
        if st is not None:
            # Our own CPU to the nanosecond, not in 10 ms ticks.
            cpu = time.process_time() if own else (st.utime + st.stime) / self._tck
            out["cpu_s"] = cpu
            pct = self._cpu_rate.update(now, cpu)
            if pct is not None:
                out["cpu_pct"] = pct if self._cap is None else min(pct, self._cap)
            out["rss_bytes"] = st.rss_pages * self._page
            out["threads"] = st.num_threads
            self.reaped_s = reaped if reaped is not None else (st.cutime + st.cstime) / self._tck
        if slow:
            io = parse_io(self._fs.read(f"{self.pid}/io") or b"")
            self._io = {"io_" + k: io[k] for k in ("read_bytes", "write_bytes") if k in io}
        out.update(self._io)
        return st

    def _read_system(self, out: Sample) -> None:
        cpu = parse_cpu_line(self._fs.read("stat") or b"")
        if cpu is not None:
            if self._prev_sys is None:
                self._prev_sys = cpu
            else:
                busy = cpu[0] - self._prev_sys[0]
                total = cpu[1] - self._prev_sys[1]
                # Reads closer than a tick see no change: keep the old baseline until one moves.
                if total > 0:
                    out["sys_cpu_pct"] = min(max(busy, 0), total) * 100 / total
                    self._prev_sys = cpu
        mem = parse_meminfo(self._fs.read("meminfo") or b"")
        if mem is not None:
            total_bytes, available = mem
            out["sys_mem_pct"] = (total_bytes - available) * 100 / total_bytes
            out["mem_total_bytes"] = total_bytes

    # -- the tree ------------------------------------------------------------------------------

    def _read_tree(self, out: Sample, now: float, boot: float | None) -> None:
        excluded = self._excluded()
        if self.discovery == "children":
            live = self._walk_children(now, excluded)
            discovered = True
        else:
            discovered = self._last_scan is None or not (
                0 <= now - self._last_scan < self.SCAN_INTERVAL_S
            )
            live = self._walk_scan(excluded, discovered)
            if discovered:
                self._last_scan = now
        # A descendant first seen now counts all its CPU if it was born after the previous
        # discovery (it cannot have been seen before); an older one only sets a baseline.
        # starttime is rounded down to a tick: compared with the discovery's tick, also
        # rounded down, a child born just after it is not taken for an old one.
        born_after = None
        if self._discovery_boot is not None and self._prev_t is not None:
            born_after = int(self._discovery_boot * self._tck)
        prev_levels = self._levels
        levels: dict[int, tuple[int, int, int, int]] = {}
        total = rss = count = 0
        # Per child of the root, the CPU of its whole live subtree: if that child is reaped
        # before the next read, RUSAGE_CHILDREN takes over all of it (grandchildren it
        # waited for included).
        top: dict[int, int] = {}
        subtree: dict[int, int] = {}
        for st in live:
            level = st.utime + st.stime + st.cutime + st.cstime
            prev = prev_levels.get(st.pid)
            if prev is not None and prev[0] == st.starttime:
                base = prev[2]
                level = max(level, prev[1])  # clamp: never count the same ticks twice
            elif born_after is not None and st.starttime >= born_after:
                base = 0
            else:
                base = level
            levels[st.pid] = (st.starttime, level, base, st.ppid)
            total += level - base
            head = st.pid if st.ppid == self.pid else top.get(st.ppid)
            if head is not None:  # live is parents first: the head is known
                top[st.pid] = head
                subtree[head] = subtree.get(head, 0) + level - base
            if st.state not in _DEAD_STATES:
                count += 1
                rss += st.rss_pages * self._page
        for pid, (start, level, base, ppid) in prev_levels.items():
            seen = levels.get(pid)
            if seen is not None and seen[0] == start:
                continue
            if seen is None:
                self._fs.forget(pid)  # exited since the last read: release its descriptors
                self._tasks.pop(pid, None)
            self._departed += self._departure(pid, start, level, base, ppid, levels, prev_levels)
        self._levels = levels
        if discovered:
            self._discovery_boot = boot
        self.descendants = tuple(levels)
        self.direct = tuple((pid, ticks / self._tck) for pid, ticks in subtree.items())
        tree = self.reaped_s + (total + self._departed) / self._tck
        self.tree_s = tree
        if self._tree0 is None:
            self._tree0 = tree
        # Monotonic for the samples: a child reaped between the two reads of one tick is
        # briefly in neither part.
        self._children_s = max(self._children_s, tree - self._tree0)
        out["children"] = count
        pct = self._children_rate.update(now, self._children_s)
        if pct is not None:
            out["children_cpu_pct"] = pct if self._cap is None else min(pct, self._cap)
        out["children_cpu_s"] = self._children_s
        out["children_rss_bytes"] = rss

    def _departure(
        self,
        pid: int,
        start: int,
        level: int,
        base: int,
        ppid: int,
        levels: dict[int, tuple[int, int, int, int]],
        prev_levels: dict[int, tuple[int, int, int, int]],
    ) -> int:
        """Ticks to add to ``departed`` for a descendant no longer in the tree."""
        still = parse_stat(_read_once(os.path.join(self.root, str(pid), "stat")) or b"")
        if still is not None and still.starttime == start and still.state not in _DEAD_STATES:
            return level - base  # alive outside the tree (re-parented): keep what it used
        if ppid == self.pid or ppid in levels or ppid in prev_levels:
            # Reaped inside the tree: its whole level is now in RUSAGE_CHILDREN or in its
            # parent's cutime, baseline included; take the baseline back out.
            return -base
        return level - base  # reaped outside the tree: nobody else will count it

    def _stat_or_vanish(self, pid: int) -> ProcStat | None:
        st = parse_stat(self._fs.read(f"{pid}/stat") or b"")
        if st is None:
            # Gone between being listed and being read: a normal race, recorded as a count.
            self.vanished += 1
            self._fs.forget(pid)
            self._tasks.pop(pid, None)
        return st

    def _walk_children(self, now: float, excluded: Collection[int]) -> list[ProcStat]:
        live: list[ProcStat] = []
        seen = {self.pid}
        queue = [self.pid]
        for parent in queue:  # grows while iterating: breadth first, parents before children
            for pid in self._children_of(parent, now):
                if pid in seen or pid in excluded:
                    continue  # an excluded process takes its subtree with it
                seen.add(pid)
                st = self._stat_or_vanish(pid)
                if st is not None:
                    live.append(st)
                    queue.append(pid)
        return live

    def _children_of(self, pid: int, now: float) -> list[int]:
        children: list[int] = []
        for tid in self._task_ids(pid, now):
            if tid == self._self_tid and pid == self.pid and self.skip_own_thread:
                continue
            relpath = f"{pid}/task/{tid}/children"
            size = 4096
            data = self._fs.read(relpath, size)
            while data is not None and len(data) >= size:  # hundreds of children: read it all
                size *= 4
                data = self._fs.read(relpath, size)
            if data is not None:
                children.extend(parse_children(data))
        return children

    def _task_ids(self, pid: int, now: float) -> list[int]:
        cached = self._tasks.get(pid)
        if cached is not None and 0 <= now - cached[0] < self.TASK_REFRESH_S:
            return cached[1]
        names = self._fs.listdir(f"{pid}/task")
        if names is None:
            return cached[1] if cached is not None else [pid]
        tids = sorted(int(name) for name in names if name.isdigit())
        if cached is not None:
            for tid in set(cached[1]).difference(tids):
                # A dead thread's children file reads empty rather than failing: close it.
                self._fs.drop(f"{pid}/task/{tid}/children")
        self._tasks[pid] = (now, tids)
        return tids

    def _walk_scan(self, excluded: Collection[int], rescan: bool) -> list[ProcStat]:
        if rescan:
            order = self._scan(excluded)
        else:
            order = [pid for pid in self._order if pid not in excluded]
        live: list[ProcStat] = []
        in_tree = {self.pid}
        for pid in order:  # parents first, so a reparented process is noticed
            st = self._stat_or_vanish(pid)
            if st is None:
                continue
            if st.ppid not in in_tree:  # orphaned out of the tree since the scan
                self._fs.forget(pid)
                continue
            in_tree.add(pid)
            live.append(st)
        self._order = [st.pid for st in live]
        return live

    def _scan(self, excluded: Collection[int]) -> list[int]:
        """Descendants of ``pid`` from the ``ppid`` of every process, parents first."""
        children: dict[int, list[int]] = {}
        for name in self._fs.listdir("") or ():
            if not name.isdigit():
                continue
            # One-shot read: kept descriptors for every process on the machine would be many.
            st = parse_stat(_read_once(os.path.join(self.root, name, "stat")) or b"")
            if st is not None:
                children.setdefault(st.ppid, []).append(st.pid)
        order: list[int] = []
        queue = [self.pid]
        seen = {self.pid}
        for parent in queue:
            for pid in sorted(children.get(parent, ())):
                if pid not in seen and pid not in excluded:
                    seen.add(pid)
                    queue.append(pid)
                    order.append(pid)
        return order


class RusageSampler:
    """The process's own figures without ``/proc`` (macOS, BSD): ``os.times`` and rusage.

    Children's CPU covers reaped children only and there is no current RSS, only the peak.
    """

    def __init__(self, max_cpus: float | None = None) -> None:
        self.available = True
        self._cap = None if max_cpus is None else 100.0 * max_cpus
        self._rate = _Rate(TreeSampler.MIN_RATE_TICKS / clk_tck())
        self.reaped_s = self.tree_s = 0.0
        self.direct: tuple[tuple[int, float], ...] = ()

    def read(self, now: float | None = None) -> Sample:
        """One measurement; ``cpu_pct`` covers at least the rate window before this read."""
        if now is None:
            now = time.monotonic()
        reaped = reaped_children_cpu_s()
        cpu = time.process_time()
        out: Sample = {"cpu_s": cpu, "children_cpu_s": reaped}
        self.reaped_s = self.tree_s = reaped
        pct = self._rate.update(now, cpu)
        if pct is not None:
            out["cpu_pct"] = pct if self._cap is None else min(pct, self._cap)
        peak = _rss_peak_bytes()
        if peak is not None:
            out["rss_peak_bytes"] = peak
        return out


def _rss_peak_bytes() -> int | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss if sys.platform == "darwin" else maxrss * 1024  # KiB except on macOS


# ---------------------------------------------------------------------------------------------
# Liveness


def pid_start_time(pid: int, root: str = "/proc") -> int | None:
    """The start time of ``pid`` in clock ticks since boot; None if it cannot be read."""
    st = parse_stat(_read_once(os.path.join(root, str(pid), "stat")) or b"")
    return None if st is None else st.starttime


def process_alive(pid: int, start_ticks: int | None, root: str = "/proc") -> bool | None:
    """Whether ``pid`` runs and (if given) started at ``start_ticks``; None if /proc can't tell.

    A zombie counts as dead; checking the start time guards against a reused pid.
    """
    if not os.path.isdir(root):
        return None
    try:
        with open(os.path.join(root, str(pid), "stat"), "rb", buffering=0) as f:
            data = f.read(4096)
    except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
        return False
    except OSError:  # EACCES and friends: the process may well exist
        return None
    st = parse_stat(data)
    if st is None:
        return None
    if st.state in _DEAD_STATES:
        return False
    return start_ticks is None or st.starttime == start_ticks
