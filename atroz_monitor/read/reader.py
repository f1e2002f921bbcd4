"""Read the JSON-lines run log: finished files, files still being written, directories of them.

The log is UTF-8, one JSON object per `\\n`-terminated line. Writers append each whole line with
one `os.write` on an `O_APPEND` descriptor, so the only torn line is normally the last one, left
by a crash. Nothing here ever raises because of what a file *contains*: bad lines are counted in
a `ReadStats` and skipped, and the consumer decides what to say about them.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import gzip
import io
import json
import os
import stat
import threading
import time
import zlib
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DEFAULT_POLL_BYTES",
    "LOG_SUFFIXES",
    "MAX_CORRUPT_LINES",
    "MAX_LINE_BYTES",
    "SCHEMA_VERSION",
    "Event",
    "Follower",
    "ReadStats",
    "discover",
    "follow",
    "iter_events",
    "open_log",
]

from ..events import SCHEMA_VERSION  # noqa: E402  (one source of truth)

"""The `v` of `run_start` events this reader was written for; newer ones are read best-effort."""

MAX_CORRUPT_LINES = 20
"""How many corrupt line numbers a `ReadStats` keeps (the count itself is never capped)."""

MAX_LINE_BYTES = 1 << 20
"""Longest line a reader accepts (newline included). A longer one is not an event of ours (the
writer's lines are a few hundred bytes, a traceback a few KiB): it is counted corrupt and skipped
without ever being held whole, so a 100 MB line or a gzip bomb of one line costs at most this
much memory, not its size."""

GZ_SETTLE_S = 1.0
"""A `.gz` changed after it was read is read again once it has been quiet this long."""

DEFAULT_POLL_BYTES = 8 * 1024 * 1024
"""Most bytes one `Follower.poll()` reads, so a huge backlog is consumed in slices."""

LOG_SUFFIXES = (".jsonl", ".jsonl.gz")
"""Names `discover` picks up inside a directory."""

Event = dict[str, Any]

# The C scanner behind json.loads, called directly. Per line, json.loads(bytes) runs three layers
# of pure Python (encoding detection, decode, raw_decode) that together cost about as much as the
# parse itself; skipping them is what makes this reader faster than a bare json.loads loop on a
# typical 140-byte line. The scanner clears its key memo after each call, so sharing one is as
# safe as json's own module-level decoder. raw_decode is the public method with the same contract
# (obj, end), used should the undocumented attribute ever disappear.
_decoder = json.JSONDecoder()
_scan_once: Callable[[str, int], tuple[Any, int]] = getattr(
    _decoder, "scan_once", _decoder.raw_decode
)

# Everything json can raise on hostile input: ValueError (bad syntax, UnicodeDecodeError, ints
# over the digit limit), StopIteration (the scanner's "no value here") and RecursionError
# (deeply nested arrays). MemoryError is deliberately not swallowed.
_PARSE_ERRORS = (ValueError, StopIteration, RecursionError)

# JSON's own whitespace; bytes.strip() would also drop \x0b and \x0c, which JSON rejects.
_JSON_SPACE = b" \t\r\n"


@dataclass
class ReadStats:
    """What reading one log found: how much was read and what had to be skipped."""

    path: str = ""
    lines: int = 0
    """Non-blank lines seen: always `events + corrupt + torn`."""
    events: int = 0
    """Events handed to the consumer."""
    bytes: int = 0
    """Bytes read (uncompressed, for `.gz`)."""
    torn: int = 0
    """Final chunks with no `\\n` at EOF (a writer crashed mid-line); counted, never yielded."""
    torn_offset: int | None = None
    """Byte offset where the torn chunk starts (uncompressed, for `.gz`)."""
    corrupt: int = 0
    """Lines that are not JSON, not an object, or have no string `ev`; skipped."""
    corrupt_lines: list[int] = field(default_factory=list)
    """1-based numbers of the first `MAX_CORRUPT_LINES` corrupt lines."""
    newer_schema: int | None = None
    """Highest `run_start` `v` above `SCHEMA_VERSION` seen (those events are still yielded)."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready copy."""
        return dataclasses.asdict(self)

    def merge(self, other: ReadStats) -> ReadStats:
        """Return new stats summing `self` and `other` (e.g. over the files of one report).

        Paths are joined with ", ". Offsets and line numbers only mean something within one
        file, so the merged `torn_offset` is the first one seen and `corrupt_lines` is the
        concatenation, capped as usual.
        """
        return ReadStats(
            path=", ".join(p for p in (self.path, other.path) if p),
            lines=self.lines + other.lines,
            events=self.events + other.events,
            bytes=self.bytes + other.bytes,
            torn=self.torn + other.torn,
            torn_offset=self.torn_offset if self.torn_offset is not None else other.torn_offset,
            corrupt=self.corrupt + other.corrupt,
            corrupt_lines=(self.corrupt_lines + other.corrupt_lines)[:MAX_CORRUPT_LINES],
            newer_schema=_max_version(self.newer_schema, other.newer_schema),
        )


def _max_version(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def _note_run_start(obj: Event, stats: ReadStats) -> None:
    # Newer schemas are read anyway (unknown keys pass through); the consumer is told so it can
    # warn that some of the run may not be shown.
    v = obj.get("v")
    if type(v) is int and v > SCHEMA_VERSION:
        stats.newer_schema = _max_version(stats.newer_schema, v)


def _slow_line(line: bytes, lineno: int, stats: ReadStats) -> Event | None:
    """Judge a complete line the fast path refused: an event, blank (None) or corrupt (None,
    counted)."""
    if not line.strip(_JSON_SPACE):
        return None
    try:
        # As lenient as json.loads(bytes) is for UTF-8 (encoded surrogates pass, a BOM is
        # dropped) but with no UTF-16/32 guessing: the log is UTF-8 by contract.
        text = line.decode("utf-8", "surrogatepass")
        if text.startswith("\ufeff"):
            text = text[1:]
        obj = json.loads(text)
    except _PARSE_ERRORS:
        obj = None
    if type(obj) is dict and type(obj.get("ev")) is str:
        return obj
    _count_corrupt(stats, lineno)
    return None


def _parse(
    lines: Iterable[bytes], stats: ReadStats, after: int, where: list[int] | None = None
) -> Generator[Event, None, int]:
    """Yield the events of `lines` (each `\\n`-terminated but perhaps the last), numbered after
    line `after`; return the length of a torn final chunk, or 0. On exit `where[0]` (if given)
    is the number of the last line taken from `lines`.

    Each item of `lines` is at most `MAX_LINE_BYTES` long (see `_bounded_lines`): a longer line
    arrives as several chunks, only the last one ending in `\\n`, and is counted corrupt.

    This is the hot loop of every reader: a typical line costs one decode, one C scan and a few
    identity checks; anything unusual (whitespace around the object, blank, torn, corrupt) falls
    back to `_slow_line`, which keeps json.loads semantics.
    """
    scan = _scan_once
    events = 0
    lineno = after
    it = iter(lines)
    try:
        for lineno, line in enumerate(it, after + 1):
            try:
                text = line.decode()
                obj, end = scan(text, 0)
                # text[end:] is a cached 1-char string when the line is exactly "<object>\n".
                fast = text[end:] == "\n" and type(obj) is dict and type(ev := obj.get("ev")) is str
            except _PARSE_ERRORS:
                fast = False
            if not fast:
                if len(line) >= MAX_LINE_BYTES and line[-1:] != b"\n":
                    # Over-long: `lines` hands it over in bounded chunks; drop them up to and
                    # including the one with its newline (taken from the same iterator, so
                    # they are neither numbered nor parsed: a forged event at the tail of a
                    # huge line is never taken for a line of its own).
                    _count_corrupt(stats, lineno)
                    for rest in it:
                        if rest[-1:] == b"\n":
                            break
                    continue
                if line[-1:] != b"\n" and line.strip(_JSON_SPACE):
                    # Only the chunk at EOF lacks its newline: a crash mid-write. Even if it
                    # parses, the writer never finished it, so it is not an event.
                    stats.torn += 1
                    return len(line)
                slow = _slow_line(line, lineno, stats)
                if slow is None:
                    continue
                obj = slow
                ev = obj["ev"]
            if ev == "run_start":
                _note_run_start(obj, stats)
            events += 1
            yield obj
        return 0
    finally:
        # In `finally` so the counts stay right when the consumer stops early or the file
        # fails under us.
        stats.events += events
        stats.lines = stats.events + stats.corrupt + stats.torn
        if where is not None:
            where[0] = lineno


def _bounded_lines(f: Any) -> Iterator[bytes]:
    """The lines of a binary file, each read with a bound: a line longer than
    `MAX_LINE_BYTES` comes out as several chunks (`for line in f` would hold it whole).
    `iter(partial(readline, n), b"")` keeps the per-line cost in C."""
    return iter(functools.partial(f.readline, MAX_LINE_BYTES), b"")


def open_fd(path: str) -> tuple[int, os.stat_result]:
    """Open a log for reading, refusing anything but a regular file; return (fd, fstat).

    ``O_NONBLOCK`` so that a FIFO (or a device) put where a log was cannot block the open
    itself (``open(2)`` on a FIFO waits for a writer); the regular-file check then refuses it
    before any read. For a regular file ``O_NONBLOCK`` changes nothing, but it is cleared anyway.
    """
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def open_log(path: str | os.PathLike[str]) -> io.BufferedIOBase:
    """A log opened for reading as a binary file, decompressed if its name ends in ``.gz``.

    Raises OSError (EINVAL) for anything but a regular file, without blocking on a FIFO:
    every reader of logs (serve, report, prune) opens through here or `open_fd`.
    """
    name = os.fsdecode(path)
    fd, _ = open_fd(name)
    try:
        raw = open(fd, "rb")  # noqa: SIM115  (returned to the caller, who closes it)
    except BaseException:
        os.close(fd)
        raise
    if name.endswith(".gz"):
        # GzipFile does not close a fileobj it was given: close both through one wrapper.
        return _GzipLog(raw)
    return raw


class _GzipLog(gzip.GzipFile):
    """A GzipFile that owns (and closes) the file it reads, decompressing in bounded steps."""

    def __init__(self, raw: io.BufferedReader) -> None:
        super().__init__(fileobj=raw, mode="rb")
        self._owned = raw

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._owned.close()


def iter_events(
    path: str | os.PathLike[str],
    stats: ReadStats | None = None,
    opened: Callable[[Any], None] | None = None,
) -> Iterator[Event]:
    """Yield every event of a finished (or growing) log file, `.gz` included.

    Blank lines are ignored; corrupt lines and a torn final chunk are counted in `stats` (pass a
    fresh `ReadStats` to see them, final once iteration ends or the iterator is closed;
    `ReadStats.merge` sums several files) and skipped. Unknown kinds and keys pass through
    untouched. A line longer than `MAX_LINE_BYTES` is counted corrupt and skipped, never held
    whole. Raises OSError only if the file cannot be opened or read, or is not a regular file
    (a FIFO is refused without blocking). ``opened`` is called
    with the open binary file once, e.g. to watch its position for a progress line.
    """
    name = os.fsdecode(path)
    if stats is None:
        stats = ReadStats(name)
    where = [0]
    with open_log(name) as f:
        if opened is not None:
            opened(f)
        try:
            torn = yield from _parse(_bounded_lines(f), stats, 0, where)
            if torn:
                stats.torn_offset = f.tell() - torn
        except EOFError:
            # A .gz cut short (the compressor was killed): the same situation as a torn line.
            # The partial line is lost inside gzip, so the offset is where the readable data ends.
            stats.torn += 1
            stats.torn_offset = f.tell()
        except (gzip.BadGzipFile, zlib.error):
            # Garbage inside the compressed stream: nothing after it can be trusted.
            _count_corrupt(stats, where[0] + 1)
        finally:
            stats.bytes += f.tell()
            stats.lines = stats.events + stats.corrupt + stats.torn


def _count_corrupt(stats: ReadStats, lineno: int) -> None:
    stats.corrupt += 1
    if len(stats.corrupt_lines) < MAX_CORRUPT_LINES:
        stats.corrupt_lines.append(lineno)


class Follower:
    """Follow a log that another process may still be appending to.

    Call `poll()` repeatedly; it returns `(reset, events)`: the complete events appended since the
    last poll, and whether the consumer must first throw its state away because the file was
    truncated, replaced (`os.replace`, rotation) or reappeared after vanishing, in which case
    `events` holds the new file from its start. A partial last line waits in a buffer until its
    newline arrives (the writer is usually mid-`write`, not dead), so it is never counted torn.

    One poll reads at most `max_bytes`; when it stopped short, `more` is True and the caller
    should poll again soon instead of sleeping. A missing or unreadable file never raises:
    `available` turns False, `error` says why, and each poll retries.

    Gzip logs are finished, so they are decompressed once (in `max_bytes` slices) and not
    watched for growth, only for replacement. Not thread-safe: one consumer polls.
    """

    def __init__(self, path: str | os.PathLike[str], *, max_bytes: int = DEFAULT_POLL_BYTES):
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
        self.path = os.fsdecode(path)
        self.stats = ReadStats(self.path)
        self.available = False
        self.more = False
        self.resets = 0
        """How many times the consumer was told to start over."""
        self.error: str | None = None
        """Why the file is not available, if it is not."""
        self._max_bytes = max_bytes
        self._gz = self.path.endswith(".gz")
        self._fd: int | None = None
        self._raw: io.FileIO | None = None
        self._gzfile: gzip.GzipFile | None = None
        self._ident: tuple[int, ...] = ()
        self._gzsig: tuple[int, int] = (0, 0)
        self._offset = 0  # bytes consumed from the file (for .gz: decompressed bytes)
        self._pending = b""
        self._skipping = False  # inside an over-long line, already counted corrupt
        self._lineno = 0
        self._eof = False  # .gz only: fully decompressed
        self._opened = False  # any later (re)open means the consumer's state is stale
        self._closed = False

    @property
    def pending(self) -> int:
        """Bytes of an incomplete last line waiting for their newline."""
        return len(self._pending)

    def poll(self) -> tuple[bool, list[Event]]:
        """Return `(reset, new complete events)`; never raises for file trouble."""
        if self._closed:
            return False, []
        try:
            reset, size = self._sync()
            if self._fd is None:
                return False, []
            events = self._read_gz() if self._gz else self._read_plain(size)
        except OSError as exc:
            # The one place OS errors become state (STYLE: translate them in one place). If a
            # reset was pending it is not lost: the reopen on a later poll reports it again.
            self._lose(exc)
            return False, []
        return reset, events

    def close(self) -> None:
        """Release the file; later polls return `(False, [])`."""
        self._closed = True
        self._close_fd()
        self.available = False
        self.more = False

    def release(self) -> None:
        """Close the descriptor but keep the position: the next poll that finds something new
        reopens the file and reads on from where it was (no reset if it is the same file).
        A source following thousands of logs keeps descriptors only for the busy ones."""
        self._close_fd()

    def settled(self) -> tuple[int, int] | None:
        """``(size, mtime_ns)`` of the file if everything in it has been read (nothing
        pending, no backlog), else None: a caller may then stop following it and watch
        only that signature."""
        if self._closed or self.more or self._pending or not self._ident:
            return None
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        if self._identity(st) != self._ident or self._news(st):
            return None
        if not self._gz and st.st_size != self._offset:
            return None
        return st.st_size, st.st_mtime_ns

    @property
    def holding(self) -> bool:
        """Whether a descriptor is open now."""
        return self._fd is not None

    def __enter__(self) -> Follower:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- keeping the descriptor on the file now at the path -----------------------------------

    def _identity(self, st: os.stat_result) -> tuple[int, ...]:
        # The inode, not the size: a .gz being written grows like a plain log, and counting
        # each growth as a replacement rebuilt the whole state on every poll (issue 13).
        return (st.st_dev, st.st_ino)

    def _sync(self) -> tuple[bool, int]:
        """Point the descriptor at the file now at the path; return (reset, size to read to).
        Leaves the descriptor closed when a released file has nothing new."""
        if self._fd is None:
            if self._ident:
                # Released (not lost: _lose forgets the identity). A stat says whether there
                # is anything to read before a descriptor is spent on it.
                st = os.stat(self.path)
                if self._identity(st) == self._ident and (self._gz or st.st_size >= self._offset):
                    if not self._news(st):
                        return False, st.st_size
                    if not (self._gz and self._eof):
                        self._reopen()
                        return False, st.st_size
            st = self._open()
            return self._restart(), st.st_size
        # fstat could not see a replacement: our descriptor keeps the old inode alive.
        st = os.stat(self.path)
        if self._identity(st) != self._ident:
            self._close_fd()
            st = self._open()
            return self._restart(), st.st_size
        if self._gz:
            if self._news(st) and self._eof:
                # A finished .gz rewritten in place (same inode): read it again, once.
                self._close_fd()
                st = self._open()
                return self._restart(), st.st_size
        elif st.st_size < self._offset:
            # Truncated in place (`> file`, logrotate copytruncate). A truncate-and-refill that
            # outgrows our offset between two polls is indistinguishable from appending, as for
            # `tail -F`. (Not for .gz: _offset counts decompressed bytes there.)
            return self._restart(), st.st_size
        return False, st.st_size

    def _news(self, st: os.stat_result) -> bool:
        """Whether the file (same inode) may hold something not read yet."""
        if not self._gz:
            return st.st_size != self._offset
        if not self._eof:
            return True
        if (st.st_size, st.st_mtime_ns) == self._gzsig:
            return False
        # Changed since it was read to its end: being written (`gzip -k`, a copy). Wait until
        # it has been quiet for a moment, then read it again, once, not on every poll.
        return time.time() - st.st_mtime_ns / 1e9 >= GZ_SETTLE_S

    def _open(self) -> os.stat_result:
        # open_fd refuses a FIFO or a directory put where the log was, without blocking.
        fd, st = open_fd(self.path)
        try:
            if self._gz:
                self._raw = io.FileIO(fd, "rb", closefd=False)
                self._gzfile = gzip.GzipFile(fileobj=self._raw, mode="rb")
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._ident = self._identity(st)
        self._gzsig = (st.st_size, st.st_mtime_ns)
        self.available = True
        self.error = None
        return st

    def _reopen(self) -> None:
        """Open the same file again after `release()` and go on from the position kept."""
        st = self._open()
        if self._identity(st) != self._ident:  # pragma: no cover - replaced between two calls
            raise OSError(errno.ESTALE, "replaced while reopening", self.path)
        if self._gz and self._offset:
            # A gzip stream has no random access: decompress up to where we were, discarding.
            assert self._gzfile is not None
            left = self._offset
            while left > 0:
                chunk = self._gzfile.read1(min(left, 1 << 20))
                if not chunk:
                    break
                left -= len(chunk)

    def _restart(self) -> bool:
        """Start reading from byte 0; return True if the consumer had been given earlier data."""
        self._offset = 0
        self._pending = b""
        self._skipping = False
        self._lineno = 0
        self._eof = False
        self.more = False
        self.stats = ReadStats(self.path)
        seen = self._opened
        self._opened = True
        if seen:
            self.resets += 1
        return seen

    def _lose(self, exc: OSError) -> None:
        # A missing log is a normal state (the writer has not started, or is rotating); keep why,
        # so the caller can show it, and retry on the next poll.
        self._close_fd()
        self._ident = ()  # whatever appears at the path next is read from its start
        self.available = False
        self.more = False
        self.error = f"{type(exc).__name__}: {exc.strerror or exc}"

    def _close_fd(self) -> None:
        if self._gzfile is not None:
            self._gzfile.close()
            self._gzfile = None
        if self._raw is not None:
            self._raw.close()
            self._raw = None
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.close(fd)
            except OSError:
                pass  # the descriptor is gone either way; nothing left to release

    # -- reading ---------------------------------------------------------------------------------

    def _read_plain(self, size: int) -> list[Event]:
        assert self._fd is not None
        want = min(size - self._offset, self._max_bytes)
        if want <= 0:
            self.more = False
            return []
        chunks = []
        got = 0
        while got < want:
            # pread: no shared file position to keep in step with our offset.
            chunk = os.pread(self._fd, want - got, self._offset + got)
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        self._offset += got
        self.stats.bytes += got
        self.more = got == want and self._offset < size
        return self._feed(b"".join(chunks))

    def _read_gz(self) -> list[Event]:
        assert self._gzfile is not None
        if self._eof:
            return []
        chunks = []
        got = 0
        ended = broken = False
        try:
            while got < self._max_bytes:
                # read1: one decompression step per call, so an error loses nothing read before.
                chunk = self._gzfile.read1(min(self._max_bytes - got, 1 << 20))
                if not chunk:
                    ended = True
                    break
                chunks.append(chunk)
                got += len(chunk)
        except EOFError:
            ended = True  # cut short: whatever is pending below is a torn line
        except (gzip.BadGzipFile, zlib.error):
            # Garbage inside the compressed stream: nothing after it can be trusted.
            ended = broken = True
        self._offset += got
        self.stats.bytes += got
        events = self._feed(b"".join(chunks))
        if ended:
            self._eof = True
            if broken:
                _count_corrupt(self.stats, self._lineno + 1)
            elif self._pending.strip(_JSON_SPACE):
                self.stats.torn += 1
                self.stats.torn_offset = self._offset - len(self._pending)
            self._pending = b""
            self.stats.lines = self.stats.events + self.stats.corrupt + self.stats.torn
            # Nothing more will come from this stream: keep no descriptor for it (a stat
            # tells if it is ever rewritten).
            self._close_fd()
        self.more = not ended
        return events

    def _feed(self, data: bytes) -> list[Event]:
        if self._skipping:
            # The tail of an over-long line: dropped up to its newline, never buffered.
            nl = data.find(b"\n")
            if nl < 0:
                return []
            self._skipping = False
            self._lineno += 1
            data = data[nl + 1 :]
        if self._pending:
            data = self._pending + data
        end = data.rfind(b"\n") + 1
        self._pending = data[end:]
        events: list[Event] = []
        if end:
            complete = data[:end] if end < len(data) else data
            bio = io.BytesIO(complete)
            events = list(_parse(_bounded_lines(bio), self.stats, self._lineno))
            self._lineno += complete.count(b"\n")
        if len(self._pending) >= MAX_LINE_BYTES:
            # An unfinished line already longer than any event: count it now and skip the
            # rest of it as it arrives, so a 100 MB line is never held whole.
            _count_corrupt(self.stats, self._lineno + 1)
            self.stats.lines = self.stats.events + self.stats.corrupt + self.stats.torn
            self._pending = b""
            self._skipping = True
        return events


def follow(
    path: str | os.PathLike[str],
    interval: float = 0.2,
    stop: threading.Event | None = None,
    *,
    on_reset: Callable[[], None] | None = None,
) -> Iterator[Event]:
    """Yield the events of a log as they are appended, until `stop` is set.

    Waits with `stop.wait(interval)`, so setting `stop` ends it promptly. When the file is
    truncated or replaced, `on_reset` (if given) is called before the events of the new file are
    yielded: a consumer keeping state must rebuild it then.
    """
    if interval < 0:
        raise ValueError(f"interval must be >= 0, got {interval}")
    if stop is None:
        stop = threading.Event()
    follower = Follower(path)
    try:
        while not stop.is_set():
            reset, events = follower.poll()
            if reset and on_reset is not None:
                on_reset()
            yield from events
            if not follower.more:
                stop.wait(interval)
    finally:
        follower.close()


def part_path(path: str, n: int) -> str:
    """The name of part ``n`` (2, 3, ...) of a log rotated at a size: ``run.jsonl`` ->
    ``run.part2.jsonl``."""
    stem = path[: -len(".jsonl")] if path.endswith(".jsonl") else path
    return f"{stem}.part{n}.jsonl"


def parts_of(path: str, follow_symlinks: bool = False) -> list[str]:
    """The rotated parts of a log that exist beside it (plain or compressed), in order. A
    part that is a symlink is skipped unless ``follow_symlinks`` (it may be planted)."""
    if not path.endswith(".jsonl"):
        return []
    out = []
    n = 2
    while True:
        p = part_path(path, n)
        for name in (p, p + ".gz"):
            if os.path.lexists(name):
                if follow_symlinks or not os.path.islink(name):
                    out.append(name)
                break
        else:
            return out
        n += 1


def discover(
    paths: Iterable[str | os.PathLike[str]], *, follow_symlinks: bool = False
) -> list[str]:
    """Expand log files and directories into a list of log files.

    A directory contributes its `*.jsonl` and `*.jsonl.gz` files (not recursively), sorted by
    name; a file is taken as given, whatever its name, with its rotated parts
    (`run.part2.jsonl`, ...) after it. Symlinks inside a directory (and symlinked parts) are
    skipped unless ``follow_symlinks``: whoever can write the directory could point them at
    a file only the reader may read; a path given explicitly is followed. Order follows the
    arguments, duplicates are dropped. A directory with no logs contributes nothing (the
    caller decides what to say). Raises FileNotFoundError naming the first path that does
    not exist.
    """
    found: list[str] = []
    seen: set[str] = set()
    for entry in paths:
        name = os.fsdecode(entry)
        if os.path.isdir(name):
            with os.scandir(name) as it:
                names = sorted(
                    e.name
                    for e in it
                    if e.name.endswith(LOG_SUFFIXES) and e.is_file(follow_symlinks=follow_symlinks)
                )
            candidates = [os.path.join(name, n) for n in names]
        elif os.path.exists(name):
            candidates = [name] + parts_of(name, follow_symlinks)
        else:
            raise FileNotFoundError(errno.ENOENT, "no such log file or directory", name)
        for candidate in candidates:
            key = os.path.abspath(candidate)
            if key not in seen:
                seen.add(key)
                found.append(candidate)
    return found
