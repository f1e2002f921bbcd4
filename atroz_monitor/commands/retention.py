"""Retention for a log directory: compress finished logs, remove whole old runs.

A run is the unit: every file whose first line carries the same run id (``<run>.jsonl``, its
rotated parts ``<run>.jsonl.1`` / ``<run>.1.jsonl``, their ``.gz`` forms) is kept or removed
together, so a report never sees half a run. A run still being written is never touched:
live means no ``run_end`` and either its owner process still runs (same host, pid and
``pid_start``, as ``loader.liveness`` decides) or a file of it was modified in the last 60 s
(an owner on another host, or a /proc that cannot tell).

``prune`` removes the oldest runs first until every limit given holds: ``keep_runs`` newest
runs, ``max_bytes`` in total, nothing last written longer than ``older_than_days`` ago (by
the newest file's modification time). Oldest means by the run's start time as its log says,
taken from the directory's catalog (``read/catalog.py``), never by file modification times (a
plain ``cp -r`` gives every file the same new mtime); a run the catalog cannot date falls
back on its newest file's mtime. Removed and compressed logs leave the catalog with them.
:class:`Pruner` runs the same on a schedule for ``serve``. Files that
are not logs are never removed; a directory holding no logs at all but other files is refused
(a mistyped path must not become a deletion).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import json
import os
import re
import shutil
import stat
import sys
import time
from collections.abc import Iterator
from typing import IO, Any

__all__ = [
    "LIVE_WINDOW_S",
    "LiveRunError",
    "Pruner",
    "Removal",
    "compress",
    "format_bytes",
    "parse_size",
    "prune",
]

LIVE_WINDOW_S = 60.0
"""A run without ``run_end`` whose files changed this recently is treated as live whatever
/proc says: its writer may be on another host, or between two events of a long phase."""

# <run>.jsonl, <run>.jsonl.gz, rotated <run>.jsonl.1(.gz) and <run>.1.jsonl(.gz).
_LOG_NAME = re.compile(r"^(?!\.).+\.jsonl(?:\.\d+)?(?:\.gz)?$")
_CHUNK = 1 << 20
_MAX_LINE = 64 << 20  # a "line" longer than this is not one of ours: skip it, don't buffer it
_MARKERS = (b'"run_start"', b'"run_end"')
_HOST = os.uname().nodename if hasattr(os, "uname") else None


class LiveRunError(ValueError):
    """The log belongs to a run that is still being written."""


@dataclasses.dataclass
class Removal:
    """One run that ``prune`` removed (or would remove, with ``dry_run``)."""

    run: str
    files: list[str]
    bytes: int
    mtime: float
    """Modification time of the run's newest file."""
    reason: str
    start: float | None = None
    """The run's start time (from the catalog), None if unknown."""
    """Which limit removed it: ``older-than``, ``keep-runs`` or ``max-bytes``."""
    error: str | None = None
    """Why removing failed, if it did (the other files of the run are still attempted)."""


@dataclasses.dataclass
class _Run:
    key: str
    files: list[str] = dataclasses.field(default_factory=list)
    bytes: int = 0
    mtime: float = 0.0
    starts: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    ended: set[str] = dataclasses.field(default_factory=set)
    stats: dict[str, tuple[int, int]] = dataclasses.field(default_factory=dict)
    start: float | None = None  # the run's start (catalog); None: order by mtime

    @property
    def order(self) -> float:
        return self.start if self.start is not None else self.mtime


# ---------------------------------------------------------------------------------------------
# Reading just enough of a log


def _open(path: str) -> IO[bytes]:
    # reader.open_log: O_NONBLOCK and a regular-file check, so a FIFO swapped in for a log
    # after the listing cannot hang prune (OSError, like an unreadable log).
    from ..read.reader import open_log

    return open_log(path)  # type: ignore[return-value]


def _first_run(path: str) -> str | None:
    """The ``run`` of the file's first line, or None (empty, torn, unreadable, not ours)."""
    try:
        with _open(path) as f:
            line = f.readline(_MAX_LINE)
    except (OSError, EOFError, gzip.BadGzipFile):
        return None
    try:
        ev = json.loads(line)
    except ValueError:
        return None
    run = ev.get("run") if isinstance(ev, dict) else None
    return run if isinstance(run, str) and run else None


def _marker_lines(f: IO[bytes]) -> Iterator[bytes]:
    """Lines that mention ``"run_start"`` or ``"run_end"``, found with ``bytes.find`` over
    1 MiB chunks: a multi-gigabyte log is scanned at I/O speed, not parsed line by line."""
    buf = b""
    while True:
        chunk = f.read(_CHUNK)
        if not chunk:
            return  # a torn last line without its newline is not a finished event
        buf += chunk
        end = buf.rfind(b"\n") + 1
        if end == 0:
            if len(buf) > _MAX_LINE:
                buf = b""
            continue
        block, buf = buf[:end], buf[end:]
        starts: set[int] = set()
        for marker in _MARKERS:
            pos = block.find(marker)
            while pos >= 0:
                starts.add(block.rfind(b"\n", 0, pos) + 1)
                pos = block.find(marker, pos + len(marker))
        for s in sorted(starts):
            yield block[s : block.index(b"\n", s)]


def _scan_file(path: str, run: _Run) -> None:
    """Record the run_start headers and run_end markers of every run in ``path``."""
    try:
        with _open(path) as f:
            for line in _marker_lines(f):
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(ev, dict) or not isinstance(ev.get("run"), str):
                    continue
                if ev.get("ev") == "run_start":
                    run.starts.setdefault(ev["run"], ev)
                elif ev.get("ev") == "run_end":
                    run.ended.add(ev["run"])
    except (OSError, EOFError, gzip.BadGzipFile, ValueError):
        pass  # a cut-short or corrupt .gz: what was read counts; liveness falls back on mtime


def _log_files(directory: str) -> list[os.DirEntry[str]]:
    """The log files of ``directory``; ValueError if it is not a log directory."""
    try:
        with os.scandir(directory) as it:
            entries = list(it)
    except FileNotFoundError:
        raise ValueError(f"{directory}: no such directory") from None
    except NotADirectoryError:
        raise ValueError(f"{directory}: not a directory") from None
    logs = [e for e in entries if _LOG_NAME.match(e.name) and e.is_file(follow_symlinks=False)]
    # The catalog (and its temporaries) is the logs' cache: alone, it does not make a
    # directory "not a log directory" (after --keep-runs 0 it is all that is left).
    entries = [e for e in entries if not e.name.startswith(".atroz-catalog")]
    if not logs and entries:
        raise ValueError(
            f"{directory}: not a log directory (no .jsonl or .jsonl.gz files among "
            f"{len(entries)} entries); nothing removed"
        )
    return logs


def _fallback_key(name: str) -> str:
    """A run key from a file name, for files whose first line does not say: ``x.1.jsonl``,
    ``x.jsonl.1.gz`` -> ``x``."""
    stem = name[: name.index(".jsonl")]
    return re.sub(r"\.\d+$", "", stem)


def _runs(directory: str, only: set[str] | None = None) -> dict[str, _Run]:
    """Group the directory's logs into runs (by the first line's run id), scanning the files of
    the runs in ``only`` (all when None) for their headers and ends."""
    runs: dict[str, _Run] = {}
    for entry in _log_files(directory):
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue  # removed since listing: not ours to count
        key = _first_run(entry.path) or _fallback_key(entry.name)
        r = runs.setdefault(key, _Run(key))
        r.files.append(entry.path)
        r.bytes += st.st_size
        r.mtime = max(r.mtime, st.st_mtime)
        r.stats[entry.path] = (st.st_size, st.st_mtime_ns)
    for r in runs.values():
        r.files.sort()
        if only is None or r.key in only:
            for path in r.files:
                _scan_file(path, r)
    return runs


def _live(r: _Run, proc: str) -> bool:
    """Whether any run in these files is still being written (module doc)."""
    ids = set(r.starts) | {r.key}
    if ids <= r.ended:
        return False
    for run_id in ids - r.ended:
        start = r.starts.get(run_id)
        if start is None or _HOST is None or start.get("host") != _HOST:
            continue
        pid = start.get("pid")
        pid_start = start.get("pid_start")
        if type(pid) is not int or pid <= 0:
            continue
        from ..probe.procfs import process_alive

        if process_alive(pid, pid_start if type(pid_start) is int else None, proc):
            return True
    return time.time() - r.mtime < LIVE_WINDOW_S


def _unchanged(r: _Run) -> bool:
    """True if no file of the run changed since it was scanned (a resumed run, a late worker)."""
    for path, (size, mtime_ns) in r.stats.items():
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        except OSError:
            return False
        if (st.st_size, st.st_mtime_ns) != (size, mtime_ns):
            return False
    return True


# ---------------------------------------------------------------------------------------------
# Compression


def _fsync_dir(directory: str) -> None:
    # The rename and unlink are durable only once the directory itself is synced.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a directory; the data file is synced anyway
    finally:
        os.close(fd)


def _gzip_file(path: str) -> str:
    """Compress one plain log whose run is known to be finished; atomic, keeps the mtime."""
    target = path + ".gz"
    if os.path.exists(target):
        raise ValueError(f"{target} already exists; not overwriting it")
    directory, base = os.path.split(path)
    st = os.stat(path)
    # A dot name ending in .tmp: never mistaken for a log by discover() or by prune.
    tmp = os.path.join(directory, f".{base}.gz.{os.getpid()}.tmp")
    try:
        from ..read.reader import open_fd

        # open_fd: a FIFO swapped in for the log is refused, never waited on. The temporary
        # file is new (O_EXCL), never a planted link, and as private as the original.
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        out = os.open(tmp, flags, 0o600)
        with open(open_fd(path)[0], "rb") as src, open(out, "wb") as raw:
            os.fchmod(raw.fileno(), stat.S_IMODE(st.st_mode))
            with gzip.GzipFile(
                filename=base, mode="wb", fileobj=raw, compresslevel=6, mtime=int(st.st_mtime)
            ) as gz:
                shutil.copyfileobj(src, gz, _CHUNK)
            raw.flush()
            os.fsync(raw.fileno())
        after = os.stat(path)
        if (after.st_size, after.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
            raise LiveRunError(f"{path} changed while being compressed; left as it is")
        # Keep the original mtime: retention orders runs by it, and a run compressed today
        # must not look like today's run.
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.replace(tmp, target)
        _fsync_dir(directory or ".")
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.unlink(path)
    _fsync_dir(directory or ".")
    return target


def compress(path: str | os.PathLike[str], *, proc: str = "/proc") -> str:
    """Gzip a finished log to ``<name>.gz`` and remove the original; returns the new path.

    Written to a temporary file in the same directory, fsynced, renamed, then the original is
    removed, so a crash leaves either the plain log or the complete ``.gz`` (for a moment
    both, which readers would count twice: the window is one unlink). Raises
    :class:`LiveRunError` (a ``ValueError``) for a log whose run is still being written,
    ``ValueError`` for a path that is not a plain log or whose ``.gz`` exists, and ``OSError``
    when the file cannot be read or written.
    """
    name = os.fspath(path)
    base = os.path.basename(name)
    if name.endswith(".gz"):
        raise ValueError(f"{name}: already compressed")
    if not _LOG_NAME.match(base):
        raise ValueError(f"{name}: not a run log (.jsonl)")
    if not os.path.isfile(name):
        raise FileNotFoundError(2, "no such log file", name)
    directory = os.path.dirname(os.path.abspath(name))
    key = _first_run(name) or _fallback_key(base)
    run = _runs(directory, only={key}).get(key)
    if run is not None and _live(run, proc):
        raise LiveRunError(f"{name}: run {key} is still being written; not compressed")
    return _gzip_file(name)


# ---------------------------------------------------------------------------------------------
# Pruning


def _plan(
    runs: list[_Run],
    live: set[str],
    keep_runs: int | None,
    max_bytes: int | None,
    older_than_days: float | None,
    now: float,
) -> list[tuple[_Run, str]]:
    """Which runs go, oldest first, and which limit sends each."""
    order = sorted(runs, key=lambda r: (r.order, r.key))  # oldest first (by start)
    chosen: dict[str, str] = {}
    if older_than_days is not None:
        cutoff = now - older_than_days * 86400
        for r in order:
            if r.mtime < cutoff and r.key not in live:
                chosen.setdefault(r.key, "older-than")
    if keep_runs is not None:
        # The newest keep_runs runs stay; a live run beyond them stays too (and still counts).
        for r in order[: max(len(order) - keep_runs, 0)]:
            if r.key not in live:
                chosen.setdefault(r.key, "keep-runs")
    if max_bytes is not None:
        total = sum(r.bytes for r in order if r.key not in chosen)
        for r in order:
            if total <= max_bytes:
                break
            if r.key in chosen or r.key in live:
                continue
            chosen[r.key] = "max-bytes"
            total -= r.bytes
    return [(r, chosen[r.key]) for r in order if r.key in chosen]


def _check_limits(
    keep_runs: int | None, max_bytes: int | None, older_than_days: float | None
) -> None:
    if keep_runs is not None and (type(keep_runs) is not int or keep_runs < 0):
        raise ValueError(f"keep_runs must be a non-negative integer, got {keep_runs!r}")
    if max_bytes is not None and (type(max_bytes) is not int or max_bytes < 0):
        raise ValueError(f"max_bytes must be a non-negative integer, got {max_bytes!r}")
    if older_than_days is not None and not (
        isinstance(older_than_days, (int, float)) and 0 <= older_than_days < float("inf")
    ):
        raise ValueError(f"older_than_days must be a non-negative number, got {older_than_days!r}")


def prune(
    directory: str | os.PathLike[str],
    *,
    keep_runs: int | None = None,
    max_bytes: int | None = None,
    older_than_days: float | None = None,
    dry_run: bool = False,
    now: float | None = None,
    proc: str = "/proc",
) -> list[Removal]:
    """Remove whole runs from a log directory, oldest first, until every given limit holds.

    Live runs are never removed (they still count towards ``keep_runs`` and ``max_bytes``, so a
    limit may stay unmet while they run). ``now`` (epoch seconds) anchors ``older_than_days``.
    Returns the removals in the order made; with ``dry_run`` nothing is removed and the same
    list is returned. Raises ``ValueError`` for bad limits or a directory that is not a log
    directory, before anything is removed.
    """
    _check_limits(keep_runs, max_bytes, older_than_days)
    d = os.fspath(directory)
    runs = _runs(d)
    cat = _date(d, runs)
    live = {r.key for r in runs.values() if _live(r, proc)}
    plan = _plan(
        list(runs.values()),
        live,
        keep_runs,
        max_bytes,
        older_than_days,
        time.time() if now is None else now,
    )
    out: list[Removal] = []
    gone: list[str] = []
    for r, reason in plan:
        removal = Removal(r.key, list(r.files), r.bytes, r.mtime, reason, r.start)
        if not dry_run:
            if not _unchanged(r):
                continue  # written to since the scan (a resume, a late worker): keep it
            errors = []
            for path in r.files:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass  # someone else removed it: the goal is met
                except OSError as exc:
                    errors.append(f"{os.path.basename(path)}: {exc.strerror or exc}")
            if errors:
                removal.error = "; ".join(errors)
            gone.extend(r.files)
        out.append(removal)
    if gone and cat is not None:
        cat.forget(os.path.basename(f) for f in gone)
    return out


def _date(directory: str, runs: dict[str, _Run]) -> Any:
    """Set each run's start from the directory's catalog (brought up to date from the logs
    first); returns the catalog, or None when it cannot be read."""
    from ..read.catalog import Catalog

    try:
        cat = Catalog(directory)
        starts = {s["run"]: s.get("start") for s in cat.summaries(include_open=True)}
    except Exception:
        return None
    for r in runs.values():
        t = starts.get(r.key)
        if isinstance(t, (int, float)):
            r.start = float(t)
    return cat


def _compress_kept(
    directory: str, proc: str, dry_run: bool, skip: frozenset[str] = frozenset()
) -> list[tuple[str, str | None]]:
    """Gzip every plain file of the finished runs in ``directory`` except the runs in ``skip``
    (those a dry run would have removed): (path, error) each."""
    done: list[tuple[str, str | None]] = []
    runs = _runs(directory)
    cat = _date(directory, runs)
    for r in sorted(runs.values(), key=lambda r: (r.order, r.key)):
        plain = [p for p in r.files if not p.endswith(".gz")]
        if not plain or r.key in skip or _live(r, proc):
            continue
        for path in plain:
            if dry_run:
                done.append((path, None))
                continue
            try:
                _gzip_file(path)
                done.append((path, None))
                if cat is not None:
                    cat.moved(os.path.basename(path), os.path.basename(path) + ".gz")
            except (OSError, ValueError) as exc:
                done.append((path, str(exc)))
    return done


class Pruner:
    """``prune`` (and optionally compression) with fixed settings, for ``serve`` to run on a
    schedule: ``run_once()`` never raises, it counts failures and keeps the last one."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        keep_runs: int | None = None,
        max_bytes: int | None = None,
        older_than_days: float | None = None,
        compress: bool = False,
        proc: str = "/proc",
    ) -> None:
        _check_limits(keep_runs, max_bytes, older_than_days)
        if keep_runs is None and max_bytes is None and older_than_days is None and not compress:
            raise ValueError(
                "a Pruner needs a limit (keep_runs, max_bytes, older_than_days) or compress=True"
            )
        self.directory = os.fspath(directory)
        self.keep_runs = keep_runs
        self.max_bytes = max_bytes
        self.older_than_days = older_than_days
        self.compress = compress
        self.proc = proc
        self.runs = 0
        """Completed ``run_once`` calls."""
        self.removed_runs = 0
        self.freed_bytes = 0
        self.compressed = 0
        self.errors = 0
        self.last_error: str | None = None

    def run_once(self, now: float | None = None) -> list[Removal]:
        """Apply the limits once; returns what was removed (empty on failure)."""
        try:
            removals: list[Removal] = []
            if (
                self.keep_runs is not None
                or self.max_bytes is not None
                or self.older_than_days is not None
            ):
                removals = prune(
                    self.directory,
                    keep_runs=self.keep_runs,
                    max_bytes=self.max_bytes,
                    older_than_days=self.older_than_days,
                    now=now,
                    proc=self.proc,
                )
            for rm in removals:
                if rm.error is None:
                    self.removed_runs += 1
                    self.freed_bytes += rm.bytes
                else:
                    self._fail(f"removing run {rm.run}: {rm.error}")
            if self.compress:
                for path, error in _compress_kept(self.directory, self.proc, False):
                    if error is None:
                        self.compressed += 1
                    else:
                        self._fail(f"compressing {path}: {error}")
            self.runs += 1
            return removals
        except Exception as exc:  # a scheduled job must not take serve down
            self._fail(f"{type(exc).__name__}: {exc}")
            return []

    def _fail(self, message: str) -> None:
        self.errors += 1
        self.last_error = message

    def health(self) -> dict[str, Any]:
        """Counters for the server's health view."""
        return {
            "prune_runs": self.runs,
            "prune_removed_runs": self.removed_runs,
            "prune_freed_bytes": self.freed_bytes,
            "prune_compressed_files": self.compressed,
            "prune_errors": self.errors,
            "prune_last_error": self.last_error,
        }


# ---------------------------------------------------------------------------------------------
# Command line

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """Bytes from ``123``, ``500K``, ``500M``, ``2G``, ``1.5T`` (binary multiples; a trailing
    ``B`` or ``iB`` is accepted). ValueError otherwise."""
    m = _SIZE.match(text)
    if m is None:
        raise ValueError(f"not a size: {text!r} (use bytes or a number with K, M, G or T)")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def format_bytes(n: float) -> str:
    """``1536`` -> ``1.5 KiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover - loop returns at GiB


def main(args: Any, out: IO[str] | None = None) -> int:
    """``python -m atroz_monitor prune``: 0 done, 1 some file could not be removed or
    compressed; ValueError for bad input (the CLI turns it into exit 2, nothing removed)."""
    out = out if out is not None else sys.stdout
    limits = (args.keep_runs, args.max_bytes, args.older_than)
    if all(v is None for v in limits) and not args.compress:
        raise ValueError("nothing to do: give --keep-runs, --max-bytes, --older-than or --compress")
    removals = prune(
        args.dir,
        keep_runs=args.keep_runs,
        max_bytes=args.max_bytes,
        older_than_days=args.older_than,
        dry_run=args.dry_run,
    )
    verb = "would remove" if args.dry_run else "removed"
    failed = 0
    freed = 0
    for rm in removals:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(rm.mtime))
        files = f"{len(rm.files)} file{'s' if len(rm.files) != 1 else ''}"
        line = f"{verb} {rm.run} ({files}, {format_bytes(rm.bytes)}, last written {when}; "
        line += f"{rm.reason})"
        if rm.error is not None:
            failed += 1
            line += f": FAILED {rm.error}"
        else:
            freed += rm.bytes
        out.write(line + "\n")
    if args.compress:
        gone = frozenset(rm.run for rm in removals)
        for path, error in _compress_kept(os.fspath(args.dir), "/proc", args.dry_run, gone):
            name = os.path.basename(path)
            if error is not None:
                failed += 1
                out.write(f"compress {name}: FAILED {error}\n")
            else:
                out.write(f"{'would compress' if args.dry_run else 'compressed'} {name}\n")
    runs = len(removals) - failed
    total = f"{format_bytes(freed)} ({freed} bytes) from {runs} run{'s' if runs != 1 else ''}"
    out.write(f"{'would free' if args.dry_run else 'freed'} {total}\n")
    return 1 if failed else 0
