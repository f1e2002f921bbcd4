"""Tests for atroz_monitor.read.reader: whole-file reading, following a growing file, discovery."""

from __future__ import annotations

import gzip
import json
import os
import pathlib
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atroz_monitor.read.reader import (
    MAX_CORRUPT_LINES,
    SCHEMA_VERSION,
    Follower,
    ReadStats,
    discover,
    follow,
    iter_events,
)

# -- a realistic log ------------------------------------------------------------------------------

NASTY_STRINGS = [
    "plain",
    "first line\nsecond line\r\nthird",
    'she said "hi" and left',
    "</script><script>alert(1)</script>",
    "naïve café ✓ 日本語 🚀",
    "lone \ud800 surrogate",
    "low \udfff too",
    "back\\slash\ttab",
    "",
    "\u2028\u2029 separators",
    "\x00\x1f control",
]


def make_events() -> list[dict[str, Any]]:
    """A few dozen varied events, as a real run would write them."""
    events: list[dict[str, Any]] = [
        {
            "ev": "run_start",
            "ts": 1700000000.0,
            "run": "r1",
            "pid": 4242,
            "seq": 0,
            "v": 1,
            "argv": ["pipeline", "--fast"],
            "host": "box",
        },
    ]
    seq = 1
    for i, text in enumerate(NASTY_STRINGS):
        phase = f"P{i:02d}"
        events.append(
            {
                "ev": "phase_start",
                "ts": 1700000000.5 + i,
                "run": "r1",
                "pid": 4242,
                "seq": seq,
                "phase": phase,
                "name": text,
                "parent": None,
            }
        )
        events.append(
            {
                "ev": "log",
                "ts": 1700000000.6 + i,
                "run": "r1",
                "pid": 4242,
                "seq": seq + 1,
                "level": "info",
                "msg": text * 2,
                "extra": {"nested": [1, 2.5, None, True, text]},
            }
        )
        events.append(
            {
                "ev": "phase_end",
                "ts": 1700000001.0 + i,
                "run": "r1",
                "pid": 4242,
                "seq": seq + 2,
                "phase": phase,
                "ok": i % 3 != 0,
                "items": i * 1000,
                "dur_ns": 10**12 + i,
            }
        )
        seq += 3
    events.append(
        {
            "ev": "future_kind",
            "ts": 1700000100.0,
            "run": "r1",
            "pid": 4242,
            "seq": seq,
            "unknown_key": {"deep": {"deeper": [[], {}]}},
            "big": 2**70,
            "neg": -0.0,
        }
    )
    events.append({"ev": "run_end", "ts": 1700000101.0, "run": "r1", "pid": 4242, "seq": seq + 1})
    return events


def encode(event: dict[str, Any], i: int) -> bytes:
    """One log line; alternate ASCII-escaped and raw UTF-8 like different writers would."""
    if i % 2 == 0:
        try:
            compact = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
            return (compact + "\n").encode("utf-8")
        except UnicodeEncodeError:
            pass  # lone surrogates only exist as \\ud800 escapes in a real log
    return (json.dumps(event, ensure_ascii=True) + "\n").encode("utf-8")


EVENTS = make_events()
LINES = [encode(e, i) for i, e in enumerate(EVENTS)]
DATA = b"".join(LINES)


def write(path: pathlib.Path, data: bytes) -> pathlib.Path:
    path.write_bytes(data)
    return path


def read(path: str | os.PathLike[str]) -> tuple[list[dict[str, Any]], ReadStats]:
    stats = ReadStats(os.fspath(path))
    return list(iter_events(path, stats)), stats


def test_sample_log_is_varied() -> None:
    """The shared sample has the nasty cases it claims: escapes, raw UTF-8, lone surrogates."""
    assert len(EVENTS) == 36
    assert any(b"\\ud800" in line for line in LINES)
    assert any("日本語".encode() in line for line in LINES)
    assert any(b"</script>" in line for line in LINES)
    assert all(line.count(b"\n") == 1 for line in LINES)


# -- iter_events -----------------------------------------------------------------------------------


def test_reads_every_event_with_exact_stats(tmp_path: pathlib.Path) -> None:
    """A clean log yields its 36 events unchanged, with lines/bytes counted and nothing skipped."""
    events, stats = read(write(tmp_path / "run.jsonl", DATA))
    assert events == EVENTS
    assert stats.to_dict() == {
        "path": str(tmp_path / "run.jsonl"),
        "lines": 36,
        "events": 36,
        "bytes": len(DATA),
        "torn": 0,
        "torn_offset": None,
        "corrupt": 0,
        "corrupt_lines": [],
        "newer_schema": None,
    }


def test_truncated_at_every_byte_offset(tmp_path: pathlib.Path) -> None:
    """Cut at any byte, the reader never raises, yields exactly the complete lines, and counts
    torn == 1 exactly when the cut falls mid-line, with the offset where that line starts."""
    starts = [0]
    for line in LINES:
        starts.append(starts[-1] + len(line))
    path = tmp_path / "cut.jsonl"
    for cut in range(len(DATA) + 1):
        write(path, DATA[:cut])
        events, stats = read(path)
        complete = sum(1 for end in starts[1:] if end <= cut)
        mid_line = cut not in starts
        assert events == EVENTS[:complete], cut
        assert stats.torn == (1 if mid_line else 0), cut
        assert stats.torn_offset == (starts[complete] if mid_line else None), cut
        assert (stats.events, stats.corrupt, stats.bytes) == (complete, 0, cut), cut
        assert stats.lines == complete + stats.torn, cut


def test_torn_last_line_is_counted_even_if_it_parses(tmp_path: pathlib.Path) -> None:
    """A final line that is valid JSON but lacks its newline is torn, not yielded."""
    path = write(tmp_path / "t.jsonl", LINES[0] + LINES[1].rstrip(b"\n"))
    events, stats = read(path)
    assert events == EVENTS[:1]
    assert (stats.torn, stats.torn_offset, stats.lines) == (1, len(LINES[0]), 2)


def test_whitespace_after_the_last_newline_is_not_torn(tmp_path: pathlib.Path) -> None:
    """Trailing spaces with no newline are a blank line, not a torn one."""
    events, stats = read(write(tmp_path / "w.jsonl", LINES[0] + b"   "))
    assert (len(events), stats.torn, stats.torn_offset) == (1, 0, None)


# Breakers that always make a line corrupt, whatever the line (it starts with "{" and ends "}").
BREAKERS: list[Callable[[bytes, int], bytes]] = [
    lambda body, k: body[: 1 + k % (len(body) - 1)],  # a strict prefix of an object
    lambda body, k: body + b"x",  # trailing garbage
    lambda body, k: b"]" + body,  # leading garbage
    lambda body, k: body[: k % len(body)] + b"\xff" + body[k % len(body) :],  # invalid UTF-8
    lambda body, k: body[: k % len(body)] + b"\x01" + body[k % len(body) :],  # raw control char
    lambda body, k: [b"[1, 2]", b'"text"', b"3", b"null", b"true", b"NaN"][k % 6],
    lambda body, k: [b'{"ts": 1}', b'{"ev": 5}', b'{"ev": null}', b'{"EV": "x"}'][k % 4],
    lambda body, k: b"[" * 100_000,  # nesting past the recursion limit
    lambda body, k: b'{"ev": "x", "n": ' + b"9" * 5000 + b"}",  # int over the digit limit
    lambda body, k: b"\xfe\xff" + json.dumps({"ev": "x"}).encode("utf-16-be"),  # not UTF-8
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    broken=st.dictionaries(
        st.integers(0, len(LINES) - 1),
        st.tuples(st.integers(0, len(BREAKERS) - 1), st.integers(0, 10_000)),
    ),
    blank_after=st.sets(st.integers(0, len(LINES) - 1), max_size=5),
)
def test_deliberately_broken_lines_are_counted_by_line_number(
    tmp_path_factory: pytest.TempPathFactory,
    broken: dict[int, tuple[int, int]],
    blank_after: set[int],
) -> None:
    """Each deliberately broken line is counted corrupt at its 1-based line number (blank lines
    included in the numbering), and every other event is yielded in order."""
    out: list[bytes] = []
    expected_lines: list[int] = []
    for i, line in enumerate(LINES):
        if i in broken:
            which, k = broken[i]
            out.append(BREAKERS[which](line.rstrip(b"\n"), k) + b"\n")
            expected_lines.append(len(out))
        else:
            out.append(line)
        if i in blank_after:
            out.append(b" \t\r\n" if i % 2 else b"\n")
    path = write(tmp_path_factory.mktemp("broken") / "b.jsonl", b"".join(out))
    events, stats = read(path)
    assert events == [e for i, e in enumerate(EVENTS) if i not in broken]
    assert stats.corrupt == len(broken)
    assert stats.corrupt_lines == expected_lines[:MAX_CORRUPT_LINES]
    assert (stats.torn, stats.lines) == (0, len(LINES))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    edits=st.dictionaries(
        st.integers(0, len(LINES) - 1),
        st.lists(
            st.tuples(st.integers(0, 10_000), st.binary(max_size=4), st.booleans()),
            min_size=1,
            max_size=4,
        ),
    )
)
def test_random_byte_damage_never_raises_and_spares_untouched_lines(
    tmp_path_factory: pytest.TempPathFactory, edits: dict[int, list[tuple[int, bytes, bool]]]
) -> None:
    """Random byte overwrites and insertions (newlines included) never raise, and every untouched
    line's event is still yielded, in order."""
    out: list[bytes] = []
    for i, line in enumerate(LINES):
        body = bytearray(line[:-1])
        for pos, blob, overwrite in edits.get(i, []):
            at = pos % (len(body) + 1)
            body[at : at + (len(blob) if overwrite else 0)] = blob
        out.append(bytes(body) + b"\n")
    path = write(tmp_path_factory.mktemp("damage") / "d.jsonl", b"".join(out))
    events, stats = read(path)
    untouched = [e for i, e in enumerate(EVENTS) if i not in edits]
    remaining = iter(events)
    assert all(any(e == got for got in remaining) for e in untouched)  # ordered subsequence
    assert stats.torn == 0
    assert stats.lines == stats.events + stats.corrupt == len(events) + stats.corrupt
    assert len(stats.corrupt_lines) == min(stats.corrupt, MAX_CORRUPT_LINES)


def test_corrupt_line_numbers_are_capped_but_the_count_is_not(tmp_path: pathlib.Path) -> None:
    """With 30 corrupt lines, corrupt is 30 and corrupt_lines holds the first 20 numbers."""
    data = b"".join(LINES[:1] + [b"garbage\n"] * 30 + LINES[1:2])
    events, stats = read(write(tmp_path / "c.jsonl", data))
    assert events == EVENTS[:2]
    assert stats.corrupt == 30
    assert stats.corrupt_lines == list(range(2, 22))


def test_lenient_but_utf8_only_decoding(tmp_path: pathlib.Path) -> None:
    """CRLF endings, padding, a UTF-8 BOM and UTF-8-encoded surrogates are read as json.loads
    would; the slow path gives the same events as the fast one."""
    data = (
        b'\xef\xbb\xbf{"ev":"a","seq":1}\n'
        b'{"ev":"b","seq":2}\r\n'
        b'  {"ev":"c","seq":3}  \n'
        b'{"ev":"d","s":"\xed\xa0\x80"}\n'
    )
    events, stats = read(write(tmp_path / "l.jsonl", data))
    assert events == [
        {"ev": "a", "seq": 1},
        {"ev": "b", "seq": 2},
        {"ev": "c", "seq": 3},
        {"ev": "d", "s": "\ud800"},
    ]
    assert (stats.corrupt, stats.lines) == (0, 4)


def test_newer_schema_is_counted_and_still_read(tmp_path: pathlib.Path) -> None:
    """run_start events with v above SCHEMA_VERSION set newer_schema to the highest v and are
    yielded with their unknown keys intact."""
    assert SCHEMA_VERSION == 1
    newer = [
        {"ev": "run_start", "ts": 1, "run": "a", "pid": 1, "seq": 0, "v": 3, "new": {"x": 1}},
        {"ev": "run_start", "ts": 2, "run": "b", "pid": 1, "seq": 0, "v": 2},
        {"ev": "run_start", "ts": 3, "run": "c", "pid": 1, "seq": 0, "v": "9"},
        {"ev": "sample", "ts": 4, "run": "a", "pid": 1, "seq": 1, "v": 99},
    ]
    data = b"".join(LINES[:2]) + "".join(json.dumps(e) + "\n" for e in newer).encode()
    events, stats = read(write(tmp_path / "n.jsonl", data))
    assert events == EVENTS[:2] + newer
    assert stats.newer_schema == 3
    _, current = read(write(tmp_path / "cur.jsonl", DATA))
    assert current.newer_schema is None


def test_gzip_reads_identically_to_plain(tmp_path: pathlib.Path) -> None:
    """A .jsonl.gz yields the same events and stats (bytes uncompressed) as the plain file."""
    plain_events, plain = read(write(tmp_path / "run.jsonl", DATA + LINES[0][:10]))
    gz_path = tmp_path / "run.jsonl.gz"
    gz_path.write_bytes(gzip.compress(DATA + LINES[0][:10]))
    gz_events, gz = read(gz_path)
    assert gz_events == plain_events == EVENTS
    assert {**gz.to_dict(), "path": ""} == {**plain.to_dict(), "path": ""}
    assert (gz.bytes, gz.torn, gz.torn_offset) == (len(DATA) + 10, 1, len(DATA))


@settings(max_examples=60, deadline=None)
@given(cut=st.integers(0, 4000))
def test_truncated_gzip_never_raises(tmp_path_factory: pytest.TempPathFactory, cut: int) -> None:
    """A .gz cut short anywhere yields a prefix of the events and records the damage."""
    blob = gzip.compress(DATA * 3)
    cut = cut % (len(blob) + 1)
    path = tmp_path_factory.mktemp("gz") / "cut.jsonl.gz"
    path.write_bytes(blob[:cut])
    events, stats = read(path)
    assert events == (EVENTS * 3)[: len(events)]
    if cut == len(blob):
        assert (len(events), stats.torn, stats.corrupt) == (108, 0, 0)
    elif cut > 0:
        assert stats.torn + stats.corrupt >= 1


def test_stats_survive_an_early_stop(tmp_path: pathlib.Path) -> None:
    """Closing the iterator after 3 events leaves stats.events == 3."""
    stats = ReadStats("x")
    it = iter_events(write(tmp_path / "e.jsonl", DATA), stats)
    got = [next(it) for _ in range(3)]
    it.close()
    assert got == EVENTS[:3]
    assert (stats.events, stats.lines) == (3, 3)


def test_missing_file_raises_file_not_found(tmp_path: pathlib.Path) -> None:
    """iter_events on a missing path raises FileNotFoundError when iterated."""
    with pytest.raises(FileNotFoundError):
        list(iter_events(tmp_path / "nope.jsonl"))


def test_merge_sums_stats_over_files() -> None:
    """merge adds counters, keeps the highest newer_schema and caps corrupt_lines at 20."""
    a = ReadStats("a", lines=5, events=4, bytes=100, corrupt=1, corrupt_lines=[3])
    b = ReadStats(
        "b",
        lines=30,
        events=8,
        bytes=50,
        torn=1,
        torn_offset=45,
        corrupt=21,
        corrupt_lines=list(range(1, 21)),
        newer_schema=2,
    )
    m = a.merge(b)
    assert m.to_dict() == {
        "path": "a, b",
        "lines": 35,
        "events": 12,
        "bytes": 150,
        "torn": 1,
        "torn_offset": 45,
        "corrupt": 22,
        "corrupt_lines": [3, *range(1, 20)],
        "newer_schema": 2,
    }
    assert a.events == 4  # merge leaves its operands alone
    assert ReadStats().merge(a) == a


# -- Follower --------------------------------------------------------------------------------------


def poll_until(
    follower: Follower, want: int, timeout: float = 30.0
) -> tuple[list[dict[str, Any]], list[bool]]:
    """Bounded poll: collect events until `want` have arrived or the deadline passes."""
    got: list[dict[str, Any]] = []
    resets: list[bool] = []
    deadline = time.monotonic() + timeout
    tick = threading.Event()
    while len(got) < want and time.monotonic() < deadline:
        reset, events = follower.poll()
        resets.append(reset)
        got.extend(events)
        if not events and not follower.more:
            tick.wait(0.005)
    return got, resets


def append(path: pathlib.Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


WRITER = r"""
import json, os, random, sys
path, n = sys.argv[1], int(sys.argv[2])
rnd = random.Random(5)
fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
for i in range(n):
    event = {"ev": "tick", "ts": i / 10, "run": "w", "pid": os.getpid(), "seq": i,
             "msg": "é\n\"" * rnd.randrange(0, 60)}
    line = (json.dumps(event, ensure_ascii=False) + "\n").encode()
    a, b = sorted(rnd.sample(range(1, len(line)), 2))
    for piece in (line[:a], line[a:b], line[b:]):  # three writes: partial lines are visible
        os.write(fd, piece)
os.close(fd)
"""


def test_follower_gets_every_event_of_a_live_writer_exactly_once(tmp_path: pathlib.Path) -> None:
    """A subprocess appending 5,000 lines in pieces while we poll: each event arrives once, in
    order, with no reset and nothing counted torn or corrupt."""
    n = 5000
    path = tmp_path / "live.jsonl"
    path.touch()
    with Follower(path) as follower:
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(n)])
        try:
            got, resets = poll_until(follower, n, timeout=60)
        finally:
            assert proc.wait(timeout=60) == 0
        assert [e["seq"] for e in got] == list(range(n))
        assert not any(resets)
        assert follower.poll() == (False, [])
        assert follower.pending == 0
        s = follower.stats
        assert (s.events, s.lines, s.corrupt, s.torn) == (n, n, 0, 0)
        assert s.bytes == path.stat().st_size


def test_partial_line_waits_for_its_newline(tmp_path: pathlib.Path) -> None:
    """Half a line is buffered (pending, not torn) and yielded only once completed."""
    path = write(tmp_path / "p.jsonl", LINES[0])
    follower = Follower(path)
    assert follower.poll() == (False, EVENTS[:1])
    half = len(LINES[1]) // 2
    append(path, LINES[1][:half])
    assert follower.poll() == (False, [])
    assert (follower.pending, follower.stats.torn, follower.stats.events) == (half, 0, 1)
    append(path, LINES[1][half:] + LINES[2])
    assert follower.poll() == (False, EVENTS[1:3])
    assert (follower.pending, follower.stats.lines, follower.stats.torn) == (0, 3, 0)
    follower.close()


def test_follower_counts_corrupt_lines_with_numbers(tmp_path: pathlib.Path) -> None:
    """Corrupt and blank lines arriving across polls are numbered in file order."""
    path = write(tmp_path / "c.jsonl", LINES[0] + b"oops\n\n")
    follower = Follower(path)
    assert follower.poll() == (False, EVENTS[:1])
    append(path, b"[1]\n" + LINES[1])
    assert follower.poll() == (False, EVENTS[1:2])
    assert (follower.stats.corrupt, follower.stats.corrupt_lines) == (2, [2, 4])
    follower.close()


def test_truncation_resets_and_rereads(tmp_path: pathlib.Path) -> None:
    """A file truncated in place and rewritten shorter gives reset=True and only the new lines."""
    path = write(tmp_path / "t.jsonl", b"".join(LINES[:5]))
    follower = Follower(path)
    assert follower.poll() == (False, EVENTS[:5])
    append(path, LINES[5][:7])  # a pending partial line must be dropped by the reset too
    os.truncate(path, 0)
    append(path, LINES[10] + LINES[11])
    assert follower.poll() == (True, EVENTS[10:12])
    assert (follower.resets, follower.stats.events, follower.pending) == (1, 2, 0)
    assert follower.poll() == (False, [])
    follower.close()


def test_replacement_resets_and_rereads(tmp_path: pathlib.Path) -> None:
    """os.replace of the followed file gives reset=True and a full read of the new file, even
    when the new file is larger than the old one."""
    path = write(tmp_path / "r.jsonl", b"".join(LINES[:3]))
    follower = Follower(path)
    assert follower.poll() == (False, EVENTS[:3])
    write(tmp_path / "r.tmp", b"".join(LINES[20:30]))
    os.replace(tmp_path / "r.tmp", path)
    assert follower.poll() == (True, EVENTS[20:30])
    assert (follower.resets, follower.stats.events) == (1, 10)
    append(path, LINES[30])
    assert follower.poll() == (False, EVENTS[30:31])
    follower.close()


def test_deleted_file_becomes_unavailable_then_returns(tmp_path: pathlib.Path) -> None:
    """A deleted file gives available=False without raising; when it reappears, reset=True."""
    path = write(tmp_path / "d.jsonl", LINES[0])
    follower = Follower(path)
    assert follower.poll() == (False, EVENTS[:1])
    assert follower.available
    path.unlink()
    assert follower.poll() == (False, [])
    assert follower.available is False
    assert follower.error is not None and "FileNotFoundError" in follower.error
    assert follower.poll() == (False, [])
    write(path, LINES[1])
    assert follower.poll() == (True, EVENTS[1:2])
    assert (follower.available, follower.error) == (True, None)
    follower.close()


def test_missing_at_start_is_not_a_reset(tmp_path: pathlib.Path) -> None:
    """A file that appears after the first polls is read from its start with reset=False."""
    path = tmp_path / "later.jsonl"
    follower = Follower(path)
    assert follower.poll() == (False, [])
    assert follower.available is False
    write(path, LINES[0])
    assert follower.poll() == (False, EVENTS[:1])
    assert follower.available is True
    follower.close()


def test_unreadable_path_never_raises(tmp_path: pathlib.Path) -> None:
    """A directory where the log should be is reported unavailable, not raised."""
    follower = Follower(tmp_path)
    assert follower.poll() == (False, [])
    assert follower.available is False
    assert follower.error is not None and "not a regular file" in follower.error
    follower.close()


def test_backlog_is_consumed_in_bounded_slices(tmp_path: pathlib.Path) -> None:
    """With max_bytes=512, each poll reads at most 512 bytes and sets more until caught up."""
    path = write(tmp_path / "big.jsonl", DATA)
    follower = Follower(path, max_bytes=512)
    got: list[dict[str, Any]] = []
    polls = 0
    while True:
        before = follower.stats.bytes
        reset, events = follower.poll()
        polls += 1
        assert not reset
        assert follower.stats.bytes - before <= 512
        got.extend(events)
        if not follower.more:
            break
        assert polls < 1000
    assert got == EVENTS
    assert polls == -(-len(DATA) // 512)
    with pytest.raises(ValueError):
        Follower(path, max_bytes=0)


def test_gzip_is_read_once(tmp_path: pathlib.Path) -> None:
    """A .gz log is read fully (in slices) and not re-read; a cut-short one counts torn."""
    path = tmp_path / "done.jsonl.gz"
    path.write_bytes(gzip.compress(DATA))
    follower = Follower(path, max_bytes=1000)
    got, resets = poll_until(follower, len(EVENTS), timeout=10)
    assert got == EVENTS and not any(resets)
    assert follower.poll() == (False, [])
    assert (follower.stats.events, follower.stats.torn, follower.more) == (36, 0, False)
    follower.close()

    cut = tmp_path / "cut.jsonl.gz"
    blob = gzip.compress(DATA)
    cut.write_bytes(blob[: len(blob) // 2])
    follower = Follower(cut)
    _, events = follower.poll()
    assert events == EVENTS[: len(events)]
    assert follower.stats.torn == 1
    assert follower.poll() == (False, [])
    follower.close()


def test_closed_follower_returns_nothing(tmp_path: pathlib.Path) -> None:
    """After close(), poll returns (False, []) even if the file grew."""
    path = write(tmp_path / "x.jsonl", LINES[0])
    follower = Follower(path)
    follower.close()
    assert follower.poll() == (False, [])
    assert follower.available is False


def test_follow_yields_until_stopped_and_signals_resets(tmp_path: pathlib.Path) -> None:
    """follow() yields appended events, calls on_reset when the file is replaced, and returns
    once stop is set."""
    path = write(tmp_path / "f.jsonl", b"".join(LINES[:3]))
    stop = threading.Event()
    safety = threading.Timer(30, stop.set)  # bounds the test if something hangs
    safety.start()
    resets: list[int] = []
    got: list[dict[str, Any]] = []
    try:
        for event in follow(path, interval=0.01, stop=stop, on_reset=lambda: resets.append(1)):
            got.append(event)
            if len(got) == 3:
                append(path, LINES[3])
            elif len(got) == 4:
                write(tmp_path / "f.tmp", b"".join(LINES[10:12]))
                os.replace(tmp_path / "f.tmp", path)
            elif len(got) == 6:
                stop.set()
    finally:
        safety.cancel()
    assert got == EVENTS[:4] + EVENTS[10:12]
    assert resets == [1]


# -- discover --------------------------------------------------------------------------------------


def test_discover_files_directories_and_missing(tmp_path: pathlib.Path) -> None:
    """Directories give their *.jsonl and *.jsonl.gz files sorted by name (not recursively);
    explicit files are kept in argument order without duplicates; a missing path raises."""
    logs = tmp_path / "logs"
    (logs / "sub").mkdir(parents=True)
    for name in ("b.jsonl", "a.jsonl", "c.jsonl.gz", "notes.txt", "d.json", "sub/e.jsonl"):
        (logs / name).write_bytes(b"")
    (logs / "dir.jsonl").mkdir()
    other = write(tmp_path / "other.log", b"")
    assert discover([logs]) == [str(logs / n) for n in ("a.jsonl", "b.jsonl", "c.jsonl.gz")]
    assert discover([str(other), logs, logs / "b.jsonl"]) == [
        str(other),
        str(logs / "a.jsonl"),
        str(logs / "b.jsonl"),
        str(logs / "c.jsonl.gz"),
    ]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert discover([empty]) == []
    assert discover([]) == []
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(FileNotFoundError, match="no such log file or directory") as info:
        discover([logs, missing])
    assert str(missing) in str(info.value)
