"""Tests for atroz_monitor.probe.procfs: parsers, kept descriptors, tree and rusage samplers."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atroz_monitor.probe import procfs
from atroz_monitor.probe.procfs import (
    ProcFS,
    ProcStat,
    RusageSampler,
    TreeSampler,
    clk_tck,
    page_size,
    parse_children,
    parse_cpu_line,
    parse_io,
    parse_meminfo,
    parse_stat,
    pid_start_time,
    process_alive,
)

T = TypeVar("T")
TCK = 100  # ticks per second injected into fake-tree samplers
PAGE = 4096  # page size injected into fake-tree samplers
MODES = ["children", "scan"]


# ---------------------------------------------------------------------------------------------
# A fake /proc tree


def stat_line(
    pid: int,
    name: str | bytes = "proc",
    *,
    state: str = "S",
    ppid: int = 1,
    utime: int = 0,
    stime: int = 0,
    cutime: int = 0,
    cstime: int = 0,
    threads: int = 1,
    starttime: int = 0,
    rss: int = 0,
) -> bytes:
    """A full 52-field stat line, as Linux 6.x writes it."""
    fields = ["0"] * 50  # fields 3..52
    fields[0] = state
    for index, value in (
        (1, ppid),
        (11, utime),
        (12, stime),
        (13, cutime),
        (14, cstime),
        (17, threads),
        (19, starttime),
        (21, rss),
    ):
        fields[index] = str(value)
    raw_name = name.encode() if isinstance(name, str) else name
    return b"%d (%s) %s\n" % (pid, raw_name, " ".join(fields).encode())


class FakeProc:
    """Writes a /proc-like tree; files are rewritten in place so kept descriptors see updates."""

    def __init__(self, root: Path, *, children_files: bool = True) -> None:
        self.root = root
        self.children_files = children_files
        root.mkdir(parents=True, exist_ok=True)

    def write(self, relpath: str, data: bytes) -> None:
        path = self.root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)  # O_TRUNC on the same inode, like procfs regenerating a file

    def process(
        self,
        pid: int,
        *,
        tasks: dict[int, Iterable[int]] | None = None,
        io: bytes | None = None,
        **stat: int | str,
    ) -> None:
        """Write ``<pid>/stat`` and one children file per task (``{tid: [child pids]}``)."""
        self.write(f"{pid}/stat", stat_line(pid, **stat))  # type: ignore[arg-type]
        for tid, kids in (tasks if tasks is not None else {pid: []}).items():
            (self.root / str(pid) / "task" / str(tid)).mkdir(parents=True, exist_ok=True)
            if self.children_files:
                self.write(f"{pid}/task/{tid}/children", b"".join(b"%d " % k for k in kids))
        if io is not None:
            self.write(f"{pid}/io", io)

    def remove(self, pid: int) -> None:
        shutil.rmtree(self.root / str(pid))

    def system(
        self, cpu: str = "cpu 100 0 100 800 0 0 0 0", mem_kib: tuple[int, int] = (1000, 250)
    ) -> None:
        self.write("stat", f"{cpu} 0 0\ncpu0 1 2 3 4\nintr 5\n".encode())
        total, available = mem_kib
        self.write("meminfo", f"MemTotal: {total} kB\nMemAvailable: {available} kB\n".encode())


class Boot:
    """An injectable CLOCK_BOOTTIME."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def sampler(fake: FakeProc, pid: int, boot: Boot, **kwargs: object) -> TreeSampler:
    return TreeSampler(
        pid,
        str(fake.root),
        boot_clock=boot,
        ticks_per_s=TCK,
        page_bytes=PAGE,
        scan=not fake.children_files,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture(params=MODES)
def fake(request: pytest.FixtureRequest, tmp_path: Path) -> FakeProc:
    """A fake tree, once with children files and once discovered by scanning ppids."""
    proc = FakeProc(tmp_path / "proc", children_files=request.param == "children")
    proc.system()
    return proc


@pytest.fixture
def fake_children(tmp_path: Path) -> FakeProc:
    proc = FakeProc(tmp_path / "proc")
    proc.system()
    return proc


# ---------------------------------------------------------------------------------------------
# Pure parsers


def test_stat_name_with_spaces_and_parentheses_parses() -> None:
    """The name runs to the LAST ')', so `a b) (c` keeps every field after it in place."""
    line = stat_line(
        42,
        "a b) (c",
        state="R",
        ppid=7,
        utime=11,
        stime=12,
        cutime=13,
        cstime=14,
        threads=3,
        starttime=999,
        rss=55,
    )
    assert parse_stat(line) == ProcStat(42, "a b) (c", "R", 7, 11, 12, 13, 14, 3, 999, 55)


def test_truncated_stat_defaults_missing_fields_to_zero() -> None:
    """A stat cut after ppid still parses, with 0 for every missing field."""
    assert parse_stat(b"7 (x) R 3") == ProcStat(7, "x", "R", 3, 0, 0, 0, 0, 0, 0, 0)
    assert parse_stat(b"7 (x)") == ProcStat(7, "x", "", 0, 0, 0, 0, 0, 0, 0, 0)


def test_stat_without_pid_or_name_is_none() -> None:
    """No pid, no '(' or no ')' means not a stat line at all."""
    assert parse_stat(b"") is None
    assert parse_stat(b"7 (x R 3") is None
    assert parse_stat(b"x (y) R 3") is None
    assert parse_stat(b") 7 (") is None


def test_stat_name_with_invalid_utf8_is_replaced() -> None:
    """Undecodable name bytes become U+FFFD instead of failing."""
    st = parse_stat(stat_line(5, b"\xffok"))
    assert st is not None and st.name == "\ufffdok"


def test_parse_io_reads_read_and_write_bytes() -> None:
    """Only read_bytes/write_bytes are taken, and only when present and numeric."""
    data = b"rchar: 1\nwchar: 2\nread_bytes: 4096\nwrite_bytes: 8192\ncancelled_write_bytes: 3\n"
    assert parse_io(data) == {"read_bytes": 4096, "write_bytes": 8192}
    assert parse_io(b"read_bytes: 1\nwrite_bytes: x\n") == {"read_bytes": 1}
    assert parse_io(b"") == {}


def test_parse_meminfo_uses_memavailable() -> None:
    """MemTotal and MemAvailable are kB and come back as bytes."""
    data = b"MemTotal: 1000 kB\nMemFree: 1 kB\nMemAvailable: 250 kB\nCached: 9 kB\n"
    assert parse_meminfo(data) == (1024000, 256000)


def test_meminfo_without_memavailable_uses_free_buffers_cached() -> None:
    """Pre-3.14 kernels: available = MemFree + Buffers + Cached."""
    data = b"MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 150 kB\n"
    assert parse_meminfo(data) == (1024000, 307200)


def test_meminfo_without_memtotal_is_none() -> None:
    """Without MemTotal there is no percentage to compute."""
    assert parse_meminfo(b"MemFree: 100 kB\nMemAvailable: 50 kB\n") is None
    assert parse_meminfo(b"MemTotal: 0 kB\nMemAvailable: 0 kB\n") is None


def test_parse_cpu_line_counts_steal_not_guest() -> None:
    """total = user..steal (guest is inside user); busy = total - idle - iowait."""
    data = b"cpu  10 2 3 40 5 6 7 8 9 1\ncpu0 1 1 1 1 1 1 1 1 1 1\n"
    assert parse_cpu_line(data) == (36, 81)
    assert parse_cpu_line(b"cpu 1 2 3 4\n") == (6, 10)
    assert parse_cpu_line(b"cpu0 1 2 3 4\n") is None
    assert parse_cpu_line(b"cpu 1 2 x 4\n") is None


def test_parse_children_skips_junk() -> None:
    """Children files are space separated pids; anything else is dropped."""
    assert parse_children(b"12 34 x -5 0 56 \n") == [12, 34, 56]
    assert parse_children(b"") == []


def test_clk_tck_and_page_size_fall_back_to_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without sysconf the Linux defaults 100 Hz and 4 KiB pages are used."""

    def broken(name: str) -> int:
        raise ValueError(name)

    monkeypatch.setattr(os, "sysconf", broken)
    assert (clk_tck(), page_size()) == (100, 4096)


# ---------------------------------------------------------------------------------------------
# Property tests


@given(st.binary(max_size=600))
def test_parsers_never_raise_on_arbitrary_bytes(data: bytes) -> None:
    """Torn or corrupt files yield None/empty values, never an exception."""
    result = parse_stat(data)
    assert result is None or isinstance(result, ProcStat)
    assert isinstance(parse_io(data), dict)
    mem = parse_meminfo(data)
    assert mem is None or 0 <= mem[1] <= mem[0]
    cpu = parse_cpu_line(data)
    assert cpu is None or 0 <= cpu[0] <= cpu[1]
    assert all(pid > 0 for pid in parse_children(data))


_words = st.lists(
    st.one_of(st.integers(-(10**30), 10**30).map(str), st.sampled_from(["kB", ":", "cpu", "()"])),
    max_size=30,
)


@given(st.lists(_words, max_size=8), st.sampled_from(["cpu ", "MemTotal:", "read_bytes:", "1 ("]))
def test_parsers_never_raise_on_near_valid_text(lines: list[list[str]], head: str) -> None:
    """Lines that look almost right (huge, negative numbers; stray units) are also safe."""
    data = "\n".join(head + " ".join(words) for words in lines).encode()
    parse_stat(data)
    parse_io(data)
    assert parse_meminfo(data) is None or parse_meminfo(data) is not None
    cpu = parse_cpu_line(data)
    assert cpu is None or 0 <= cpu[0] <= cpu[1]
    parse_children(data)


_names = st.text(
    alphabet=st.one_of(st.sampled_from(" ()"), st.characters(exclude_categories=["Cs"])),
    max_size=40,
)
_ticks = st.integers(0, 2**63)


@given(_names, st.integers(1, 2**22), _ticks, _ticks, _ticks, st.integers(1, 10**5))
def test_parse_stat_round_trips_names(
    name: str, pid: int, utime: int, starttime: int, rss: int, threads: int
) -> None:
    """Any name (spaces, parentheses, unicode) comes back intact and the fields stay aligned."""
    line = stat_line(
        pid,
        name,
        state="R",
        ppid=pid + 1,
        utime=utime,
        stime=1,
        threads=threads,
        starttime=starttime,
        rss=rss,
    )
    expected = ProcStat(pid, name, "R", pid + 1, utime, 1, 0, 0, threads, starttime, rss)
    assert parse_stat(line) == expected


# ---------------------------------------------------------------------------------------------
# ProcFS


def test_procfs_keeps_descriptor_and_rereads_from_start(tmp_path: Path) -> None:
    """One descriptor per file, re-read with pread at offset 0 (sees rewritten content)."""
    (tmp_path / "12").mkdir()
    (tmp_path / "12" / "stat").write_bytes(b"first")
    fs = ProcFS(str(tmp_path))
    assert fs.read("12/stat") == b"first"
    (tmp_path / "12" / "stat").write_bytes(b"second")
    assert fs.read("12/stat") == b"second"
    assert fs.read("12/stat", 3) == b"sec"
    assert fs.open_paths == ["12/stat"]
    fs.close()
    assert fs.open_files == 0


@pytest.mark.parametrize("impl", ["gil", "os"])
def test_pread_matches_os_pread_and_raises_oserror(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, impl: str
) -> None:
    """Both implementations read the same bytes at any offset and raise OSError with errno."""
    import errno

    if impl == "gil":
        chosen = procfs._gil_holding_pread()
        if sys.platform.startswith("linux"):  # ctypes and libc's pread64 are there
            assert chosen is not procfs._os_pread
    else:  # no ctypes at all: the fallback
        monkeypatch.setitem(sys.modules, "ctypes", None)
        chosen = procfs._gil_holding_pread()
        assert chosen is procfs._os_pread
    monkeypatch.setattr(procfs, "_pread_impl", chosen)
    path = tmp_path / "f"
    path.write_bytes(bytes(range(256)) * 40)
    fd = os.open(path, os.O_RDONLY)
    try:
        for size, offset in [(1, 0), (4096, 0), (100, 5000), (4096, 10_000), (10, 20_000)]:
            assert procfs.pread(fd, size, offset) == os.pread(fd, size, offset)
    finally:
        os.close(fd)
    own = os.open(f"/proc/{os.getpid()}/stat", os.O_RDONLY)
    try:
        assert procfs.pread(own, 4096).startswith(f"{os.getpid()} (".encode())
    finally:
        os.close(own)
    with pytest.raises(OSError) as err:
        procfs.pread(-1, 10, 0)
    assert err.value.errno == errno.EBADF
    dfd = os.open(tmp_path, os.O_RDONLY)
    try:
        with pytest.raises(OSError) as err:
            procfs.pread(dfd, 10, 0)
        assert err.value.errno == errno.EISDIR
    finally:
        os.close(dfd)


def test_procfs_unreadable_file_is_none_and_not_kept(tmp_path: Path) -> None:
    """Missing files and directories read as None and leave no descriptor behind."""
    (tmp_path / "12").mkdir()
    fs = ProcFS(str(tmp_path))
    assert fs.read("12/stat") is None
    assert fs.read("12") is None  # EISDIR on pread: the descriptor is dropped
    assert fs.open_files == 0


def test_procfs_forget_closes_only_that_pid(tmp_path: Path) -> None:
    """forget(12) closes 12/stat and 12/io and leaves 123/stat and the root files open."""
    for rel in ("12/stat", "12/io", "123/stat", "meminfo"):
        (tmp_path / rel).parent.mkdir(exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    fs = ProcFS(str(tmp_path))
    for rel in ("12/stat", "12/io", "123/stat", "meminfo"):
        assert fs.read(rel) == b"x"
    fs.forget(12)
    assert fs.open_paths == ["123/stat", "meminfo"]
    fs.close()


def test_procfs_listdir(tmp_path: Path) -> None:
    """listdir returns the entries, or None for a missing directory."""
    (tmp_path / "7" / "task" / "7").mkdir(parents=True)
    fs = ProcFS(str(tmp_path))
    assert fs.listdir("7/task") == ["7"]
    assert fs.listdir("8/task") is None


def test_procfs_reset_closes_own_descriptors_but_not_recycled_numbers(tmp_path: Path) -> None:
    """After a fork, reset() must not close a descriptor number the child has reused."""
    for rel in ("1/stat", "2/stat", "other"):
        (tmp_path / rel).parent.mkdir(exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    fs = ProcFS(str(tmp_path))
    fs.read("1/stat")
    fs.read("2/stat")
    recycled = fs._fds["1/stat"]  # private: the number is what this test is about
    ours = fs._fds["2/stat"]
    os.close(recycled)
    foreign = os.open(tmp_path / "other", os.O_RDONLY)
    try:
        assert foreign == recycled  # POSIX hands out the lowest free number
        fs.reset()
        assert fs.open_files == 0
        assert os.pread(foreign, 1, 0) == b"x"  # the child's file is still open
        with pytest.raises(OSError):
            os.fstat(ours)  # ours was closed
    finally:
        os.close(foreign)


# ---------------------------------------------------------------------------------------------
# TreeSampler on a fake tree


def test_three_level_tree_two_reads_exact_values(fake: FakeProc) -> None:
    """CPU %, children CPU %/s and RSS over two reads, including born-new and old-unseen kids."""
    io = b"read_bytes: 4096\nwrite_bytes: 8192\n"
    # Root 100 has two threads; 200 is forked by thread 100, 500 (later) by thread 101.
    fake.process(
        100,
        ppid=1,
        utime=50,
        stime=50,
        threads=2,
        rss=100,
        starttime=10,
        tasks={100: [200], 101: []},
        io=io,
    )
    fake.process(200, ppid=100, utime=100, rss=10, starttime=50000, tasks={200: [300]})
    fake.process(300, ppid=200, utime=200, rss=20, starttime=60000)
    boot = Boot(1000.0)
    s = sampler(fake, 100, boot)
    assert s.available is True
    assert s.discovery == ("children" if fake.children_files else "scan")

    first = s.read(now=10.0)
    assert first == {
        "cpu_s": 1.0,
        "rss_bytes": 100 * PAGE,
        "threads": 2,
        "io_read_bytes": 4096,
        "io_write_bytes": 8192,
        "children": 2,
        "children_cpu_s": 0.0,  # pre-existing children are a baseline
        "children_rss_bytes": 30 * PAGE,
        "sys_mem_pct": 75.0,
        "mem_total_bytes": 1024000,
    }

    boot.t = 1002.0
    fake.process(
        100,
        ppid=1,
        utime=150,
        stime=50,
        threads=2,
        rss=100,
        starttime=10,
        tasks={100: [200], 101: [500]},
        io=io,
    )
    fake.process(200, ppid=100, utime=250, stime=50, rss=10, starttime=50000, tasks={200: [300]})
    fake.process(300, ppid=200, utime=400, rss=20, starttime=60000, tasks={300: [400]})
    # 400 was born after the first read (tick 100100 > 1000 s * 100): all its 50 ticks count.
    fake.process(400, ppid=300, utime=30, stime=20, rss=30, starttime=100100)
    # 500 is older than the first read but unseen until now: a baseline, 0 this time.
    fake.process(500, ppid=100, utime=1000, rss=40, starttime=90000)
    fake.system(cpu="cpu 300 0 100 1400 200 0 0 0")

    second = s.read(now=12.0)
    assert second["cpu_pct"] == 50.0  # 100 ticks in 2 s
    assert second["cpu_s"] == 2.0
    assert second["children"] == 4
    assert second["children_cpu_pct"] == 225.0  # (200 + 200 + 50) ticks in 2 s
    assert second["children_cpu_s"] == 4.5
    assert second["children_rss_bytes"] == (10 + 20 + 30 + 40) * PAGE
    assert second["sys_cpu_pct"] == 20.0  # busy 200 of 1000 ticks
    assert sorted(s.descendants) == [200, 300, 400, 500]

    # 500 exits and is reaped; 300 burns 100 more ticks in 1 s. The kernel adds the reaped
    # child's whole CPU (its 1000 ticks, baseline included) to the root's cutime.
    boot.t = 1003.0
    fake.remove(500)
    fake.process(
        100,
        ppid=1,
        utime=150,
        stime=50,
        cutime=1000,
        threads=2,
        rss=100,
        starttime=10,
        tasks={100: [200], 101: []},
        io=io,
    )
    fake.process(300, ppid=200, utime=500, rss=20, starttime=60000, tasks={300: [400]})
    third = s.read(now=13.0)
    assert third["children"] == 3
    assert third["children_cpu_pct"] == 100.0
    assert third["children_cpu_s"] == 5.5  # 500's CPU stays counted, and once
    assert third["children_rss_bytes"] == (10 + 20 + 30) * PAGE
    assert not [p for p in s._fs.open_paths if p.startswith("500/")]  # its fds were closed
    assert s.vanished == 0
    s.close()
    assert s._fs.open_files == 0


def test_process_named_like_stat_syntax_is_measured(fake: FakeProc) -> None:
    """A child called `a b) (c` is found and its CPU measured exactly."""
    fake.process(100, tasks={100: [200]})
    fake.process(200, name="a b) (c", ppid=100, utime=10, rss=3, starttime=5)
    boot = Boot(1000.0)
    s = sampler(fake, 100, boot)
    s.read(now=1.0)
    fake.process(200, name="a b) (c", ppid=100, utime=60, rss=3, starttime=5)
    sample = s.read(now=2.0)
    assert (sample["children"], sample["children_cpu_pct"]) == (1, 50.0)
    assert sample["children_rss_bytes"] == 3 * PAGE


def test_truncated_child_stat_counts_with_zero_fields(fake: FakeProc) -> None:
    """A child whose stat stops after ppid is a live child with 0 RSS and 0 CPU."""
    fake.process(100, tasks={100: [200]})
    fake.write("200/stat", b"200 (short) R 100")
    (fake.root / "200" / "task" / "200").mkdir(parents=True)
    sample = sampler(fake, 100, Boot(1000.0)).read(now=1.0)
    assert (sample["children"], sample["children_rss_bytes"]) == (1, 0)


def test_vanished_child_listed_without_directory_is_counted(fake_children: FakeProc) -> None:
    """A pid listed in a children file with no /proc entry is dropped and counted, not raised."""
    fake_children.process(100, tasks={100: [999, 200]})
    fake_children.process(200, ppid=100, rss=2)
    s = sampler(fake_children, 100, Boot(1000.0))
    sample = s.read(now=1.0)
    assert (sample["children"], s.descendants, s.vanished) == (1, (200,), 1)


def test_missing_or_unreadable_io_omits_io_keys(fake: FakeProc) -> None:
    """No io file, or one that cannot be read (EISDIR here), leaves the io keys out."""
    fake.process(100)
    s = sampler(fake, 100, Boot(1000.0))
    assert "io_read_bytes" not in s.read(now=1.0)
    (fake.root / "100" / "io").mkdir()
    sample = s.read(now=2.0)
    assert "io_read_bytes" not in sample and "io_write_bytes" not in sample
    assert sample["cpu_s"] == 0.0


def test_sampler_meminfo_without_memavailable(fake: FakeProc) -> None:
    """sys_mem_pct falls back to MemFree+Buffers+Cached: (1000-300)/1000 = 70 %."""
    fake.process(100)
    fake.write("meminfo", b"MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 150 kB\n")
    sample = sampler(fake, 100, Boot(1000.0)).read(now=1.0)
    assert (sample["sys_mem_pct"], sample["mem_total_bytes"]) == (70.0, 1024000)


def test_excluded_pid_and_its_subtree_not_counted(fake: FakeProc) -> None:
    """exclude() removes the monitor's own helper 200 and its child 400 from every figure."""
    fake.process(100, tasks={100: [200, 300]})
    fake.process(200, ppid=100, rss=5, tasks={200: [400]})
    fake.process(300, ppid=100, rss=7)
    fake.process(400, ppid=200, rss=9)
    s = sampler(fake, 100, Boot(1000.0), exclude=lambda: [200])
    sample = s.read(now=1.0)
    assert (sample["children"], sample["children_rss_bytes"]) == (1, 7 * PAGE)
    assert s.descendants == (300,)


def test_broken_exclude_callback_is_counted_not_raised(fake: FakeProc) -> None:
    """An exclude() that raises counts an error and nothing is excluded."""
    fake.process(100, tasks={100: [200]})
    fake.process(200, ppid=100)

    def broken() -> list[int]:
        raise RuntimeError("boom")

    s = sampler(fake, 100, Boot(1000.0), exclude=broken)
    assert s.read(now=1.0)["children"] == 1
    assert s.exclude_errors == 1


def test_negative_deltas_are_clamped_and_not_recounted(fake: FakeProc) -> None:
    """Ticks that go backwards give 0 %, and climbing back is not counted twice."""
    fake.process(100, utime=100, tasks={100: [200]})
    fake.process(200, ppid=100, utime=100, starttime=5)
    s = sampler(fake, 100, Boot(1000.0))
    s.read(now=1.0)
    fake.process(100, utime=90, tasks={100: [200]})
    fake.process(200, ppid=100, utime=80, starttime=5)
    dip = s.read(now=2.0)
    assert (dip["cpu_pct"], dip["children_cpu_pct"]) == (0.0, 0.0)
    fake.process(200, ppid=100, utime=120, starttime=5)
    after = s.read(now=3.0)
    assert (after["children_cpu_pct"], after["children_cpu_s"]) == (20.0, 0.2)


def test_reused_pid_is_a_new_process(fake: FakeProc) -> None:
    """Same pid with a new starttime is a new child: its own ticks count, not a negative delta."""
    fake.process(100, tasks={100: [200]})
    fake.process(200, ppid=100, utime=1000, starttime=5000)
    s = sampler(fake, 100, Boot(1000.0))
    s.read(now=1.0)
    fake.process(100, cutime=1000, tasks={100: [200]})  # the old 200 was reaped: 1000 ticks
    fake.process(200, ppid=100, utime=30, starttime=100050)  # born after the first read
    sample = s.read(now=2.0)
    assert (sample["children_cpu_s"], sample["children_cpu_pct"]) == pytest.approx((0.3, 30.0))


def test_zombie_child_is_not_live_but_its_cpu_counts(fake: FakeProc) -> None:
    """A zombie keeps its final CPU times (counted) but is not a live child (no count, no RSS)."""
    fake.process(100, tasks={100: [200]})
    fake.process(200, ppid=100, utime=10, rss=50, starttime=5)
    s = sampler(fake, 100, Boot(1000.0))
    s.read(now=1.0)
    fake.process(200, ppid=100, state="Z", utime=40, rss=0, starttime=5)
    sample = s.read(now=2.0)
    assert (sample["children"], sample["children_rss_bytes"], sample["children_cpu_s"]) == (
        0,
        0,
        0.3,
    )


def test_task_lists_refresh_at_most_once_per_second(fake_children: FakeProc) -> None:
    """A thread that appears between reads is listed only once its task list is 1 s old."""
    fake_children.process(100, tasks={100: []})
    boot = Boot(1000.0)
    s = sampler(fake_children, 100, boot)
    assert s.read(now=10.0)["children"] == 0
    fake_children.process(100, tasks={100: [], 101: [500]})
    fake_children.process(500, ppid=100, utime=40, starttime=100060)
    boot.t = 1000.5
    assert s.read(now=10.5)["children"] == 0  # cached task list: thread 101 unknown yet
    boot.t = 1001.0
    sample = s.read(now=11.0)
    assert sample["children"] == 1
    # Born (tick 100060) after the previous read (boot 1000.5 s): all 40 ticks count.
    assert sample["children_cpu_s"] == 0.4


def test_scan_mode_rescans_at_most_once_per_second(tmp_path: Path) -> None:
    """Without children files new descendants are found by a ppid scan every second."""
    fake = FakeProc(tmp_path / "proc", children_files=False)
    fake.system()
    fake.process(100)
    (fake.root / "100" / "task" / "100" / "children").unlink(missing_ok=True)
    boot = Boot(1000.0)
    s = TreeSampler(100, str(fake.root), boot_clock=boot, ticks_per_s=TCK, page_bytes=PAGE)
    assert s.discovery == "scan"  # picked automatically: no children file
    assert s.read(now=10.0)["children"] == 0
    fake.process(200, ppid=100, utime=70, rss=1, starttime=100020)
    boot.t = 1000.5
    assert s.read(now=10.5)["children"] == 0
    boot.t = 1001.0
    sample = s.read(now=11.0)
    # Born after the previous scan (boot 1000 s): all 70 ticks count.
    assert (sample["children"], sample["children_cpu_s"]) == (1, 0.7)


def test_sys_cpu_keeps_baseline_while_proc_stat_is_unchanged(fake: FakeProc) -> None:
    """Reads closer than a tick give no sys_cpu_pct and keep the older baseline for the next."""
    fake.process(100)
    s = sampler(fake, 100, Boot(1000.0))
    s.read(now=1.0)
    assert "sys_cpu_pct" not in s.read(now=1.001)  # cpu line unchanged: 0 ticks elapsed
    fake.system(cpu="cpu 150 0 150 900 0 0 0 0")
    assert s.read(now=2.0)["sys_cpu_pct"] == 50.0  # busy 100 of 200 ticks since the first read


def test_first_read_has_no_rates(fake: FakeProc) -> None:
    """Rates need two reads: the first has no cpu_pct, children_cpu_pct or sys_cpu_pct."""
    fake.process(100, utime=5)
    sample = sampler(fake, 100, Boot(1000.0)).read(now=1.0)
    assert {"cpu_pct", "children_cpu_pct", "sys_cpu_pct"}.isdisjoint(sample)
    assert (sample["cpu_s"], sample["children_cpu_s"]) == (0.05, 0.0)


def test_missing_process_is_unavailable_and_measures_nothing_of_it(tmp_path: Path) -> None:
    """A pid with no stat: available is False and no process or tree figure is invented."""
    fake = FakeProc(tmp_path / "proc")
    fake.system()
    s = TreeSampler(4242, str(fake.root), ticks_per_s=TCK, page_bytes=PAGE)
    assert s.available is False
    assert s.read(now=1.0) == {"sys_mem_pct": 75.0, "mem_total_bytes": 1024000}


def test_bad_arguments_fail_at_construction() -> None:
    """Bad pid, exclude or units raise at construction, never later."""
    with pytest.raises(ValueError):
        TreeSampler(0)
    with pytest.raises(TypeError):
        TreeSampler(1, exclude=[1])  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        TreeSampler(1, ticks_per_s=0)


# ---------------------------------------------------------------------------------------------
# Liveness


def test_pid_start_time_and_process_alive_on_fake_tree(tmp_path: Path) -> None:
    """Alive needs the pid, the same start time and a non-zombie state; no root means None."""
    fake = FakeProc(tmp_path / "proc")
    fake.process(12, starttime=777)
    fake.process(14, state="Z", starttime=5)
    root = str(fake.root)
    assert pid_start_time(12, root) == 777
    assert pid_start_time(13, root) is None
    assert process_alive(12, 777, root) is True
    assert process_alive(12, None, root) is True
    assert process_alive(12, 778, root) is False  # pid reused by another process
    assert process_alive(13, None, root) is False
    assert process_alive(14, 5, root) is False
    assert process_alive(12, 777, str(tmp_path / "none")) is None


# ---------------------------------------------------------------------------------------------
# RusageSampler


def test_rusage_sampler_reports_cpu_and_peak_rss() -> None:
    """cpu_pct is CPU seconds over the injected interval; only the peak RSS is known."""
    r = RusageSampler()
    first = r.read(now=0.0)
    assert "cpu_pct" not in first and r.available is True
    deadline = time.monotonic() + 10
    while sum(os.times()[:2]) - first["cpu_s"] < 0.05 and time.monotonic() < deadline:
        pass  # burn CPU until os.times() moves
    second = r.read(now=2.0)
    assert second["cpu_pct"] == pytest.approx((second["cpu_s"] - first["cpu_s"]) * 50)
    assert second["cpu_pct"] > 0
    assert second["rss_peak_bytes"] > 1 << 20
    assert "rss_bytes" not in second
    assert second["children_cpu_s"] >= 0.0


# ---------------------------------------------------------------------------------------------
# Real /proc


def _children_files_supported() -> bool:
    pid = os.getpid()
    return os.path.exists(f"/proc/{pid}/task/{pid}/children")


real_proc = pytest.mark.skipif(
    not os.path.exists(f"/proc/{os.getpid()}/stat"), reason="needs Linux /proc"
)


@pytest.fixture(params=MODES)
def real_mode(request: pytest.FixtureRequest) -> bool:
    """Returns scan=...; the children-file mode is skipped on kernels without it."""
    if request.param == "children" and not _children_files_supported():
        pytest.skip("kernel built without CONFIG_PROC_CHILDREN")
    return bool(request.param == "scan")


def poll(fn: Callable[[], T | None], timeout: float = 20.0, every: float = 0.1) -> T:
    """Call fn until it returns a truthy value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(every)


def sample_with(s: TreeSampler, key: str) -> dict[str, int | float] | None:
    """One read; the sample if it has ``key``, else None."""
    sample = s.read()
    return sample if key in sample else None


def reached(s: TreeSampler, key: str, minimum: float) -> float | None:
    """One read; the value of ``key`` if it is at least ``minimum``, else None."""
    value = s.read().get(key, 0)
    return value if value >= minimum else None


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Starts Python children and kills and reaps every one at the end."""
    procs: list[subprocess.Popen[str]] = []

    def start(code: str, **kwargs: Any) -> subprocess.Popen[str]:
        proc: subprocess.Popen[str] = subprocess.Popen(
            [sys.executable, "-c", code], text=True, **kwargs
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait(timeout=30)


BUSY = "while True: pass"


@real_proc
def test_real_own_process_figures() -> None:
    """The test process itself: CPU seconds, RSS, threads, system memory."""
    s = TreeSampler()
    assert s.available is True
    first = s.read()
    assert first["cpu_s"] > 0 and first["rss_bytes"] > 1 << 20 and first["threads"] >= 1
    assert 0 < first["sys_mem_pct"] < 100 and first["mem_total_bytes"] > 1 << 20
    second = poll(lambda: sample_with(s, "sys_cpu_pct"))
    assert second["cpu_pct"] >= 0 and 0 <= second["sys_cpu_pct"] <= 100
    assert second["cpu_s"] >= first["cpu_s"]
    s.close()


@real_proc
def test_real_busy_child_shows_children_cpu(
    real_mode: bool, spawn: Callable[..., subprocess.Popen[str]]
) -> None:
    """A busy child is a live descendant using more than 30 % of a core."""
    child = spawn(BUSY)
    s = TreeSampler(scan=real_mode)
    assert s.discovery == ("scan" if real_mode else "children")

    def busy() -> dict[str, int | float] | None:
        sample = s.read()
        seen = child.pid in s.descendants and sample.get("children_cpu_pct", 0) > 30
        return sample if seen else None

    sample = poll(busy)
    assert sample["children"] >= 1
    s.close()


@real_proc
def test_real_grandchild_is_counted(
    real_mode: bool, spawn: Callable[..., subprocess.Popen[str]]
) -> None:
    """A child's own child is a descendant too."""
    code = (
        "import subprocess, sys\n"
        f"p = subprocess.Popen([sys.executable, '-c', {BUSY!r}])\n"
        "print(p.pid, flush=True)\n"
        "p.wait()\n"
    )
    child = spawn(code, stdout=subprocess.PIPE)
    assert child.stdout is not None
    grandchild = int(child.stdout.readline())
    s = TreeSampler(scan=real_mode)
    try:
        poll(lambda: s.read()["children"] >= 2 and grandchild in s.descendants)
        assert child.pid in s.descendants
    finally:
        os.kill(grandchild, signal.SIGKILL)  # the child reaps it in p.wait()
        s.close()


@real_proc
def test_real_child_memory_shows_in_children_rss(
    real_mode: bool, spawn: Callable[..., subprocess.Popen[str]]
) -> None:
    """A child holding 200 MiB of touched memory adds at least that to children_rss_bytes."""
    s = TreeSampler(scan=real_mode)
    # Other tests may leave children of this process alive (a browser, a tracker): measure
    # the difference this child makes.
    before = s.read().get("children_rss_bytes", 0)
    code = "import sys\nb = b'x' * (200 << 20)\nprint('ready', flush=True)\nsys.stdin.read()\n"
    child = spawn(code, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert child.stdout is not None
    assert child.stdout.readline() == "ready\n"
    rss = poll(lambda: reached(s, "children_rss_bytes", before + (200 << 20)))
    assert before + (200 << 20) <= rss < before + (1 << 30)
    s.close()


@real_proc
def test_real_killed_child_is_dropped_and_cpu_s_never_decreases(
    real_mode: bool, spawn: Callable[..., subprocess.Popen[str]]
) -> None:
    """After kill and reap the child is gone without error and children_cpu_s keeps its CPU."""
    child = spawn(BUSY)
    s = TreeSampler(scan=real_mode)
    before = poll(lambda: reached(s, "children_cpu_s", 0.2))
    child.kill()
    child.wait(timeout=30)
    after = s.read()
    assert child.pid not in s.descendants
    # Other tests may leave helpers alive (multiprocessing's resource tracker): count only
    # that the killed child is no longer among the live descendants.
    assert after["children"] == len(s.descendants)
    assert after["children_cpu_s"] >= before
    assert not [p for p in s._fs.open_paths if p.startswith(f"{child.pid}/")]
    s.close()


@real_proc
def test_real_kept_descriptor_of_reaped_child_reads_none(
    spawn: Callable[..., subprocess.Popen[str]],
) -> None:
    """A kept stat descriptor of a reaped process fails with ESRCH: None, and it is closed."""
    child = spawn("import sys; sys.stdin.read()", stdin=subprocess.PIPE)
    fs = ProcFS()
    data = fs.read(f"{child.pid}/stat")
    assert data is not None and data.startswith(b"%d (" % child.pid)
    child.kill()
    child.wait(timeout=30)
    assert fs.read(f"{child.pid}/stat") is None
    assert fs.open_files == 0


@real_proc
def test_real_process_alive() -> None:
    """This process is alive with its own start time and not with another one."""
    start = pid_start_time(os.getpid())
    assert start is not None and start > 0
    assert process_alive(os.getpid(), start) is True
    assert process_alive(os.getpid(), start + 1) is False


@real_proc
def test_real_reset_in_forked_child_follows_the_child() -> None:
    """After fork, reset() moves a pid=None sampler to the child and it measures the child."""
    s = TreeSampler()
    s.read()
    parent = os.getpid()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running pytest's cleanup
        code = 1
        try:
            s.reset()
            sample = s.read()
            ok = s.pid == os.getpid() != parent and "cpu_s" in sample and s.available
            code = 0 if ok else 2
        finally:
            os.write(write_end, bytes([code]))
            os._exit(0)
    os.close(write_end)
    try:
        assert os.read(read_end, 1) == b"\x00"
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
    assert s.pid == parent
    assert "cpu_s" in s.read()  # the parent's descriptors were not disturbed
    s.close()


# ---------------------------------------------------------------------------------------------
# Rates, caps and the tree's exact children's CPU (issue 12)


def test_catch_up_read_is_merged_into_the_window_not_a_spike(fake: FakeProc) -> None:
    """A read 0.1 ms after the previous one (a catch-up tick) that sees one more clock tick
    is measured over the window back to the read before: 101 ticks in 1 s, not 10,000%."""
    fake.process(100, utime=0)
    s = sampler(fake, 100, Boot(1000.0))
    s.read(now=1.0)
    fake.process(100, utime=100)
    assert s.read(now=2.0)["cpu_pct"] == 100.0
    fake.process(100, utime=101)
    assert s.read(now=2.0001)["cpu_pct"] == pytest.approx(101 / 1.0001)


def test_rates_are_capped_at_the_usable_cpus(fake: FakeProc) -> None:
    """With max_cpus=1.5, 300 ticks in 1 s (a tick burst) reads 150%, the cap."""
    fake.process(100, utime=0, tasks={100: [200]})
    fake.process(200, ppid=100, utime=0, starttime=5)
    s = sampler(fake, 100, Boot(1000.0), max_cpus=1.5)
    s.read(now=1.0)
    fake.process(100, utime=300, tasks={100: [200]})
    fake.process(200, ppid=100, utime=300, starttime=5)
    sample = s.read(now=2.0)
    assert (sample["cpu_pct"], sample["children_cpu_pct"]) == (150.0, 150.0)


def test_grandchild_reaped_by_its_parent_is_counted_once(fake: FakeProc) -> None:
    """A grandchild seen with 40 ticks, then reaped by the child (whose cutime takes its 50
    final ticks): the tree counts 50, not 90."""
    fake.process(100, tasks={100: [200]})
    fake.process(200, ppid=100, utime=10, starttime=5, tasks={200: []})
    s = sampler(fake, 100, Boot(1000.0))
    s.read(now=1.0)  # 200 is a baseline (older than the sampler)
    fake.process(200, ppid=100, utime=10, starttime=5, tasks={200: [300]})
    fake.process(300, ppid=200, utime=40, starttime=100050)
    assert s.read(now=2.0)["children_cpu_s"] == 0.4
    fake.remove(300)
    fake.process(200, ppid=100, utime=10, cutime=50, starttime=5, tasks={200: []})
    assert s.read(now=3.0)["children_cpu_s"] == pytest.approx(0.5)


def test_descendant_leaving_the_tree_alive_keeps_its_cpu(fake: FakeProc) -> None:
    """A grandchild re-parented out of the tree (its parent exited; init adopted it) keeps the
    CPU it used while in the tree, and its later CPU is not ours."""
    fake.process(100, tasks={100: [200]})
    fake.process(200, ppid=100, starttime=5, tasks={200: []})
    s = sampler(fake, 100, Boot(1000.0))
    s.read(now=1.0)
    fake.process(200, ppid=100, starttime=5, tasks={200: [300]})
    fake.process(300, ppid=200, utime=30, starttime=100050)
    assert s.read(now=2.0)["children_cpu_s"] == 0.3
    fake.process(100, tasks={100: []})  # 200 exited and was reaped (no CPU of its own)
    fake.remove(200)
    fake.process(300, ppid=1, utime=90, starttime=100050)  # adopted by init, still running
    assert s.read(now=3.0)["children_cpu_s"] == pytest.approx(0.3)


def test_parts_for_phase_boundaries(fake: FakeProc) -> None:
    """reaped_s is the root's cutime+cstime, tree_s adds live descendants, and direct gives
    each child's whole live subtree (what leaves the tree's part when that child is reaped)."""
    fake.process(100, cutime=70, cstime=30, tasks={100: [200]})
    fake.process(200, ppid=100, starttime=5, tasks={200: [300]})
    fake.process(300, ppid=200, starttime=6)
    s = sampler(fake, 100, Boot(1000.0))
    s.read(now=1.0)
    fake.process(200, ppid=100, utime=20, starttime=5, tasks={200: [300]})
    fake.process(300, ppid=200, utime=40, starttime=6)
    s.read(now=2.0)
    assert s.reaped_s == 1.0
    assert s.tree_s == pytest.approx(1.6)
    [(pid, cpu)] = s.direct
    assert (pid, cpu) == (200, pytest.approx(0.6))


# ---------------------------------------------------------------------------------------------
# Boundary reads: Statm and HighWater


def _statm_now() -> int:
    with open(f"/proc/{os.getpid()}/statm", "rb") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@real_proc
def test_statm_reads_this_process_rss() -> None:
    """Statm.rss() is /proc/<pid>/statm's resident pages: between two reads taken around it."""
    m = procfs.Statm()
    try:
        block = bytearray(64 << 20)
        block[::4096] = b"x" * len(block[::4096])
        before = _statm_now()
        got = m.rss()
        after = _statm_now()
        assert got is not None and min(before, after) - (1 << 20) <= got <= max(before, after) + (
            1 << 20
        )
        assert got > 64 << 20
        del block
    finally:
        m.close()
    assert m.fd == -1


def test_statm_without_proc_is_none(tmp_path: Path) -> None:
    """No /proc: Statm keeps no descriptor and rss() is None, never an invented figure."""
    m = procfs.Statm(str(tmp_path / "none"))
    assert (m.fd, m.rss()) == (-1, None)


@real_proc
def test_high_water_take_gives_the_peak_then_resets_to_now() -> None:
    """take() returns the peak since the last take (a 100 MB block since freed), and resets:
    the next take is about the current RSS."""
    try:
        hw = procfs.HighWater()
    except OSError as exc:
        pytest.skip(f"clear_refs is not writable here: {exc}")
    try:
        block = bytearray(100 << 20)
        block[::4096] = b"x" * len(block[::4096])
        high = _statm_now()
        del block
        assert (hw.take() or 0) >= high - (1 << 20)
        now = _statm_now()
        assert abs((hw.take() or 0) - now) <= 2 << 20
    finally:
        hw.close()


def test_high_water_without_proc_raises_oserror(tmp_path: Path) -> None:
    """HighWater fails at construction where the files are missing (the monitor falls back)."""
    with pytest.raises(OSError):
        procfs.HighWater(str(tmp_path / "none"))
