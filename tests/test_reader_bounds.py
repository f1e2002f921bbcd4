"""A reader never holds more than it needs: bounded lines, streamed gzip, no special files."""

from __future__ import annotations

import gzip
import json
import os
import pathlib
import subprocess
import sys
import threading
import zlib

import pytest
from helpers import child_env
from hypothesis import given, settings
from hypothesis import strategies as st

from atroz_monitor.read.reader import MAX_LINE_BYTES, Follower, ReadStats, iter_events, open_log
from atroz_monitor.store.source import FileSource

EV = b'{"ev":"log","ts":1.0,"run":"r","pid":1,"seq":%d,"level":"warning","msg":"m"}\n'


def _events(n: int, start: int = 0) -> bytes:
    return b"".join(EV % i for i in range(start, start + n))


def test_overlong_line_is_corrupt_and_neighbours_survive(tmp_path: pathlib.Path) -> None:
    """A line over MAX_LINE_BYTES is counted corrupt (with its line number); the lines around
    it are read, and a forged event at its tail is not taken for a line of its own."""
    p = tmp_path / "run.jsonl"
    forged = b'{"ev":"log","ts":9,"run":"forged","pid":1,"seq":99}\n'
    big = b'{"ev":"x","pad":"' + b"a" * (MAX_LINE_BYTES * 2) + b'"}' + forged
    p.write_bytes(_events(2) + big + _events(3, 2))
    stats = ReadStats()
    got = list(iter_events(p, stats))
    assert [e["seq"] for e in got] == [0, 1, 2, 3, 4]
    assert stats.corrupt == 1 and stats.corrupt_lines == [3]
    assert stats.lines == 6


def test_follower_skips_overlong_line_arriving_in_slices(tmp_path: pathlib.Path) -> None:
    """A follower given an over-long line in small polls counts it once and reads on."""
    p = tmp_path / "run.jsonl"
    p.write_bytes(_events(1))
    f = Follower(p, max_bytes=256 * 1024)
    assert [e["seq"] for e in f.poll()[1]] == [0]
    with open(p, "ab") as w:
        w.write(b'{"ev":"x","pad":"' + b"b" * (3 * MAX_LINE_BYTES))
        w.flush()
        while f.poll()[1] or f.more:
            pass
        assert f.pending < MAX_LINE_BYTES
        w.write(b'"}\n' + _events(2, 1))
    got = []
    while True:
        got += f.poll()[1]
        if not f.more:
            break
    f.close()
    assert [e["seq"] for e in got] == [1, 2]
    assert f.stats.corrupt == 1 and f.stats.corrupt_lines == [2]


@settings(max_examples=40, deadline=None)
@given(
    lines=st.lists(
        st.one_of(st.integers(0, 1000), st.integers(MAX_LINE_BYTES - 2, MAX_LINE_BYTES + 3)),
        min_size=1,
        max_size=6,
    ),
    step=st.sampled_from([4096, 300_000, 8 << 20]),
)
def test_follower_and_iter_agree_on_long_lines(
    tmp_path_factory: pytest.TempPathFactory, lines: list[int], step: int
) -> None:
    """Whole-file reading and following in any slice size agree on events and corrupt counts
    for lines around the length bound (a short int stands for an event, a long one for a line
    of that many bytes including its newline)."""
    p = tmp_path_factory.mktemp("b") / "run.jsonl"
    data = b""
    want = []
    for i, n in enumerate(lines):
        if n <= 1000:
            data += EV % i
            want.append(i)
        else:
            data += b"x" * (n - 1) + b"\n"
    p.write_bytes(data)
    s1 = ReadStats()
    whole = [e["seq"] for e in iter_events(p, s1)]
    f = Follower(p, max_bytes=step)
    followed = []
    while True:
        followed += [e["seq"] for e in f.poll()[1]]
        if not f.more:
            break
    f.close()
    long_lines = [i + 1 for i, n in enumerate(lines) if n > 1000]
    assert whole == followed == want
    assert s1.corrupt == f.stats.corrupt == len(long_lines)
    assert s1.corrupt_lines == f.stats.corrupt_lines == long_lines


# -- peak memory of a child reading hostile files (VmHWM, the kernel's own figure) -------------

CHILD = r"""
import sys
from atroz_monitor.read.reader import Follower, ReadStats, iter_events
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
mode, path = sys.argv[1], sys.argv[2]
base = hwm()
if mode == "iter":
    st = ReadStats()
    n = sum(1 for _ in iter_events(path, st))
else:
    f = Follower(path)
    n = 0
    while True:
        n += len(f.poll()[1])
        if not f.more:
            break
    st = f.stats
print(base, hwm(), n, st.corrupt, st.bytes)
"""


def _child_peak(mode: str, path: pathlib.Path) -> tuple[int, int, int, int, int]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(path)],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout.split()
    base, peak, n, corrupt, nbytes = (int(x) for x in out)
    return base, peak, n, corrupt, nbytes


@pytest.fixture(scope="module")
def huge_line(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    p = tmp_path_factory.mktemp("huge") / "run.jsonl"
    with open(p, "wb") as f:
        f.write(_events(1))
        f.write(b'{"ev":"x","pad":"')
        block = b"z" * (1 << 20)
        for _ in range(100):
            f.write(block)
        f.write(b'"}\n')
        f.write(_events(1, 1))
    return p


@pytest.fixture(scope="module")
def gzip_bomb(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """400 MiB of one line, compressed to well under 1 MiB."""
    p = tmp_path_factory.mktemp("bomb") / "run.jsonl.gz"
    c = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: a gzip header and trailer
    block = b"a" * (1 << 20)
    with open(p, "wb") as f:
        f.write(c.compress(_events(1)))
        for _ in range(400):
            f.write(c.compress(block))
        f.write(c.compress(b"\n" + _events(1, 1)))
        f.write(c.flush())
    return p


@pytest.mark.parametrize("mode", ["iter", "follow"])
def test_100mb_line_peak_memory_is_bounded(huge_line: pathlib.Path, mode: str) -> None:
    """Reading a log with one 100 MiB line raises a child's VmHWM by less than 32 MiB; the
    line is counted corrupt and both real events are read."""
    base, peak, n, corrupt, nbytes = _child_peak(mode, huge_line)
    assert (n, corrupt) == (2, 1)
    assert nbytes == huge_line.stat().st_size
    assert peak - base < 32 << 20, f"VmHWM grew {(peak - base) >> 20} MiB"


@pytest.mark.parametrize("mode", ["iter", "follow"])
def test_gzip_bomb_peak_memory_is_bounded(gzip_bomb: pathlib.Path, mode: str) -> None:
    """A .gz holding a 400 MiB line is decompressed in bounded steps: the child's VmHWM grows
    by less than 32 MiB, the line is one corrupt line, the two real events are read."""
    assert gzip_bomb.stat().st_size < 1 << 20
    base, peak, n, corrupt, nbytes = _child_peak(mode, gzip_bomb)
    assert (n, corrupt) == (2, 1)
    assert nbytes > 400 << 20
    assert peak - base < 32 << 20, f"VmHWM grew {(peak - base) >> 20} MiB"


# -- special files ----------------------------------------------------------------------------


def test_open_log_refuses_a_fifo_without_blocking(tmp_path: pathlib.Path) -> None:
    """open_log and iter_events raise EINVAL for a FIFO at once (open(2) would wait for a
    writer forever)."""
    p = tmp_path / "run.jsonl"
    os.mkfifo(p)
    result: list[BaseException] = []

    def attempt() -> None:
        for fn in (lambda: open_log(p), lambda: list(iter_events(p))):
            try:
                fn()
            except OSError as exc:
                result.append(exc)

    t = threading.Thread(target=attempt, daemon=True)
    t.start()
    t.join(20)
    assert not t.is_alive(), "reading a FIFO blocked"
    assert [getattr(e, "errno", None) for e in result] == [22, 22]


def test_fifo_swapped_in_for_followed_log(tmp_path: pathlib.Path) -> None:
    """A FIFO put where a followed log was makes the follower unavailable with a reason (no
    hang); serve's source keeps answering and marks the file unavailable."""
    d = tmp_path / "runs"
    d.mkdir()
    p = d / "run.jsonl"
    p.write_bytes(
        b'{"ev":"run_start","ts":1.0,"run":"r1","pid":1,"seq":0,"v":1,"name":"x"}\n'
        + _events(2, 1).replace(b'"run":"r"', b'"run":"r1"')
    )
    f = Follower(p)
    src = FileSource([d])
    try:
        assert len(f.poll()[1]) == 3
        assert src.run_ids() == ["r1"]
        os.remove(p)
        os.mkfifo(p)
        done = threading.Event()
        out: list[object] = []

        def work() -> None:
            out.append(f.poll())
            src.refresh()
            out.append(src.unavailable())
            done.set()

        threading.Thread(target=work, daemon=True).start()
        assert done.wait(20), "polling a FIFO blocked"
        assert out[0] == (False, [])
        assert f.available is False and "not a regular file" in (f.error or "")
        assert out[1] == [{"path": str(p), "error": "OSError: not a regular file"}]
    finally:
        f.close()
        src.close()


def test_report_and_prune_on_fifo_do_not_hang(tmp_path: pathlib.Path) -> None:
    """`report` on a FIFO exits 2 naming it; `prune` of a directory holding a FIFO named like a
    log finishes (exit 0) and leaves the FIFO alone."""
    d = tmp_path / "runs"
    d.mkdir()
    (d / "a.jsonl").write_bytes(
        b'{"ev":"run_start","ts":1.0,"run":"a","pid":1,"seq":0,"v":1}\n'
        b'{"ev":"run_end","ts":2.0,"run":"a","pid":1,"seq":1,"status":"completed"}\n'
    )
    os.mkfifo(d / "b.jsonl")
    rep = subprocess.run(
        [sys.executable, "-m", "atroz_monitor", "report", str(d / "b.jsonl")],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert rep.returncode == 2 and "not a regular file" in rep.stderr
    pr = subprocess.run(
        [sys.executable, "-m", "atroz_monitor", "prune", str(d), "--keep-runs", "1"],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert pr.returncode == 0, pr.stderr
    assert (d / "b.jsonl").exists() and (d / "a.jsonl").exists()


def test_gzip_log_through_open_log_closes_its_descriptor(tmp_path: pathlib.Path) -> None:
    """open_log on a .gz decompresses and closing it releases the descriptor it opened."""
    p = tmp_path / "run.jsonl.gz"
    with gzip.open(p, "wb") as g:
        g.write(_events(2))
    before = len(os.listdir("/proc/self/fd"))
    with open_log(p) as f:
        data = f.read()
        assert len(os.listdir("/proc/self/fd")) == before + 1
    assert [json.loads(x)["seq"] for x in data.splitlines()] == [0, 1]
    assert len(os.listdir("/proc/self/fd")) == before
