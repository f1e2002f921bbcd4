"""Tests for probe.cgroup: limits on fake cgroup trees, OOM counting, a real OOM kill."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atroz_monitor.probe.cgroup import (
    OomWatch,
    cpu_count,
    exit_was_oom,
    limits,
    memory_total,
    parse_cfs,
    parse_cpu_max,
    parse_memory_max,
    parse_oom_kill,
    parse_proc_cgroup,
    parse_v1_limit,
)

PID = 4242
V1_NO_LIMIT = b"9223372036854771712\n"  # what Linux 6.x writes for "no limit" with 4 KiB pages

# Recorded on a Linux 6.18 host (cgroup v1 hybrid) around a real OOM kill of a child limited
# to 64 MiB, and v2 memory.events as Linux 6.x formats it.
V1_OOM_BEFORE = b"oom_kill_disable 0\nunder_oom 0\noom_kill 0\n"
V1_OOM_AFTER = b"oom_kill_disable 0\nunder_oom 0\noom_kill 1\n"
V2_EVENTS = b"low 0\nhigh 0\nmax %d\noom %d\noom_kill %d\noom_group_kill 0\n"
HYBRID_PROC_CGROUP = (
    b"9:name=systemd:/\n8:pids:/\n7:blkio:/\n6:freezer:/\n5:devices:/\n"
    b"4:memory:/process_api/2458052e\n3:cpuset:/\n2:cpuacct:/\n1:cpu:/\n0::/\n"
)


def write(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)


class Tree:
    """A fake /proc and /sys/fs/cgroup under tmp_path."""

    def __init__(self, tmp: Path, proc_cgroup: bytes | str) -> None:
        self.proc = tmp / "proc"
        self.root = tmp / "cgroup"
        self.root.mkdir()
        write(self.proc / str(PID) / "cgroup", proc_cgroup)

    def file(self, rel: str, data: bytes | str) -> Path:
        path = self.root / rel
        write(path, data)
        return path

    def limits(self) -> dict[str, object]:
        return limits(PID, proc=str(self.proc), root=str(self.root))


# ---------------------------------------------------------------------------------------------
# Parsers


def test_parse_proc_cgroup_v2_only() -> None:
    """A pure v2 file is one `0::/path` line, keyed by the empty controller name."""
    assert parse_proc_cgroup(b"0::/system.slice/app.service\n") == {"": "/system.slice/app.service"}


def test_parse_proc_cgroup_hybrid_keeps_v1_controllers() -> None:
    """Hybrid systems list v1 controllers and the v2 line; named hierarchies are left out."""
    groups = parse_proc_cgroup(HYBRID_PROC_CGROUP)
    assert groups["memory"] == "/process_api/2458052e"
    assert groups["cpu"] == "/"
    assert groups[""] == "/"
    assert "name=systemd" not in groups


def test_parse_proc_cgroup_split_controller_list_and_colon_in_path() -> None:
    """`cpu,cpuacct` gives both names; a ':' inside the path is kept."""
    groups = parse_proc_cgroup(b"4:cpu,cpuacct:/a:b/c\n")
    assert groups == {"cpu": "/a:b/c", "cpuacct": "/a:b/c"}


def test_parse_memory_max_values() -> None:
    """`max` is no limit, digits are bytes, anything else is not a limit."""
    assert parse_memory_max(b"max\n") == (True, None)
    assert parse_memory_max(b"536870912\n") == (True, 536870912)
    assert parse_memory_max(b"lots\n") == (False, None)
    assert parse_memory_max(b"") == (False, None)


def test_parse_v1_limit_huge_value_is_unlimited() -> None:
    """v1's PAGE_COUNTER_MAX*PAGE_SIZE (~2^63) and -1 both mean no limit."""
    assert parse_v1_limit(V1_NO_LIMIT) == (True, None)
    assert parse_v1_limit(b"-1\n") == (True, None)
    assert parse_v1_limit(b"268435456\n") == (True, 268435456)
    assert parse_v1_limit(b"x") == (False, None)


def test_parse_cpu_max_values() -> None:
    """`max 100000` is no quota; `50000 100000` is half a CPU; a bare quota uses 100000."""
    assert parse_cpu_max(b"max 100000\n") == (True, None)
    assert parse_cpu_max(b"50000 100000\n") == (True, 0.5)
    assert parse_cpu_max(b"200000 100000\n") == (True, 2.0)
    assert parse_cpu_max(b"150000\n") == (True, 1.5)
    assert parse_cpu_max(b"50000 0\n") == (False, None)
    assert parse_cpu_max(b"") == (False, None)


def test_parse_cfs_values() -> None:
    """v1 quota -1 is no quota; quota/period is CPUs."""
    assert parse_cfs(b"-1\n", b"100000\n") == (True, None)
    assert parse_cfs(b"150000\n", b"100000\n") == (True, 1.5)
    assert parse_cfs(b"150000\n", b"0\n") == (False, None)


def test_parse_oom_kill_v1_and_v2() -> None:
    """The `oom_kill` line of both formats; None when missing (v1 before Linux 4.13)."""
    assert parse_oom_kill(V1_OOM_AFTER) == 1
    assert parse_oom_kill(V2_EVENTS % (3, 2, 7)) == 7
    assert parse_oom_kill(b"oom_kill_disable 0\nunder_oom 0\n") is None


@given(st.binary(max_size=300))
def test_parsers_never_raise_on_arbitrary_bytes(data: bytes) -> None:
    """Every parser takes any bytes without raising (torn, corrupt or hostile files)."""
    parse_proc_cgroup(data)
    assert parse_memory_max(data)[0] in (True, False)
    assert parse_v1_limit(data)[0] in (True, False)
    assert parse_cpu_max(data)[0] in (True, False)
    assert parse_cfs(data, data)[0] in (True, False)
    value = parse_oom_kill(data)
    assert value is None or value >= 0


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=200), st.binary(max_size=200))
def test_limits_never_raise_on_arbitrary_files(
    tmp_path_factory: pytest.TempPathFactory, proc_cgroup: bytes, content: bytes
) -> None:
    """limits() on a tree of arbitrary file contents returns a dict with a source, never raises."""
    tree = Tree(tmp_path_factory.mktemp("t"), proc_cgroup)
    for rel in ("memory.max", "cpu.max", "memory/memory.limit_in_bytes", "cpu/cpu.cfs_quota_us"):
        tree.file(rel, content)
    lim = tree.limits()
    assert lim["source"] in ("cgroup", "host")


# ---------------------------------------------------------------------------------------------
# limits() on fake trees


def test_v2_limited(tmp_path: Path) -> None:
    """v2 with memory.max and cpu.max set: both limits, their path, and no note."""
    tree = Tree(tmp_path, "0::/kubepods/pod1/c1\n")
    tree.file("kubepods/pod1/c1/memory.max", "536870912\n")
    tree.file("kubepods/pod1/c1/cpu.max", "50000 100000\n")
    tree.file("kubepods/pod1/c1/memory.current", "1048576\n")
    tree.file("kubepods/pod1/c1/memory.events", V2_EVENTS % (0, 0, 2))
    lim = tree.limits()
    assert lim["version"] == 2
    assert lim["path"] == "/kubepods/pod1/c1"
    assert lim["memory_max_bytes"] == 536870912
    assert lim["cpu_quota"] == 0.5
    assert lim["memory_current_bytes"] == 1048576
    assert lim["oom_kills"] == 2
    assert lim["source"] == "cgroup"
    assert lim["note"] is None


def test_v2_unlimited(tmp_path: Path) -> None:
    """v2 with `max` everywhere: no limits, host figures, and the note says so."""
    tree = Tree(tmp_path, "0::/app\n")
    tree.file("app/memory.max", "max\n")
    tree.file("app/cpu.max", "max 100000\n")
    lim = tree.limits()
    assert lim["version"] == 2
    assert lim["memory_max_bytes"] is None
    assert lim["cpu_quota"] is None
    assert lim["source"] == "host"
    assert lim["note"] == "no cgroup limits found; host figures used"


def test_v2_nested_ancestor_limit_binds(tmp_path: Path) -> None:
    """A pod-level limit above an unlimited container binds: the smallest on the way up wins."""
    tree = Tree(tmp_path, "0::/kubepods/pod1/c1\n")
    tree.file("kubepods/memory.max", "max\n")
    tree.file("kubepods/pod1/memory.max", "268435456\n")
    tree.file("kubepods/pod1/cpu.max", "max 100000\n")
    tree.file("kubepods/pod1/c1/memory.max", "1073741824\n")
    tree.file("kubepods/pod1/c1/cpu.max", "200000 100000\n")
    lim = tree.limits()
    assert lim["memory_max_bytes"] == 268435456
    assert lim["cpu_quota"] == 2.0


def test_v2_namespaced_container_reads_mount_root(tmp_path: Path) -> None:
    """Inside a cgroup namespace the path is `/` and the limits sit at the mount itself."""
    tree = Tree(tmp_path, "0::/\n")
    tree.file("memory.max", "1073741824\n")
    tree.file("cpu.max", "100000 100000\n")
    lim = tree.limits()
    assert lim["memory_max_bytes"] == 1073741824
    assert lim["cpu_quota"] == 1.0
    assert lim["dir"] == str(tree.root)


def test_v2_path_not_under_mount_drops_leading_components(tmp_path: Path) -> None:
    """A host path like /docker/<id> with only the container's cgroup mounted: found by
    dropping leading components (here down to `<id>`'s own directory)."""
    tree = Tree(tmp_path, "0::/docker/abc123\n")
    tree.file("abc123/memory.max", "33554432\n")
    lim = tree.limits()
    assert lim["memory_max_bytes"] == 33554432
    assert lim["dir"] == str(tree.root / "abc123")


def test_v2_missing_files_fall_back_with_note(tmp_path: Path) -> None:
    """A cgroup directory without limit files: host figures, and the note names the files."""
    tree = Tree(tmp_path, "0::/app\n")
    (tree.root / "app").mkdir()
    lim = tree.limits()
    assert lim["version"] == 2
    assert lim["source"] == "host"
    assert lim["note"] == "memory.max missing; cpu.max missing; host figures used"


def test_v2_one_limit_missing_says_which_is_host(tmp_path: Path) -> None:
    """Memory limited but cpu.max missing: source cgroup, the note names the host figure."""
    tree = Tree(tmp_path, "0::/app\n")
    tree.file("app/memory.max", "1000000\n")
    lim = tree.limits()
    assert lim["memory_max_bytes"] == 1000000
    assert lim["source"] == "cgroup"
    assert lim["note"] == "cpu.max missing; host figure used for the rest"


def test_v2_unreadable_file_as_directory_falls_back(tmp_path: Path) -> None:
    """A limit 'file' that cannot be read (EISDIR here; EACCES behaves the same) is a note."""
    tree = Tree(tmp_path, "0::/app\n")
    (tree.root / "app" / "memory.max").mkdir(parents=True)
    tree.file("app/cpu.max", "max 100000\n")
    lim = tree.limits()
    assert lim["memory_max_bytes"] is None
    assert lim["note"] == "memory.max unreadable (EISDIR); host figures used"


def test_v2_directory_missing(tmp_path: Path) -> None:
    """A cgroup path with no directory under the mount falls back to the mount itself."""
    tree = Tree(tmp_path, "0::/gone/away\n")
    lim = tree.limits()
    assert lim["dir"] == str(tree.root)  # the mount itself is the last candidate
    assert lim["source"] == "host"


def test_proc_cgroup_missing(tmp_path: Path) -> None:
    """No /proc/<pid>/cgroup (not Linux, or the process is gone): host figures, said why."""
    lim = limits(999999, proc=str(tmp_path), root=str(tmp_path))
    assert lim["version"] is None
    assert lim["source"] == "host"
    assert lim["note"] == "/proc/999999/cgroup missing; host figures used"


def test_v1_limited(tmp_path: Path) -> None:
    """v1: memory.limit_in_bytes and cfs quota/period under their controller mounts."""
    tree = Tree(tmp_path, "5:memory:/docker/c1\n4:cpu,cpuacct:/docker/c1\n0::/\n")
    tree.file("memory/docker/c1/memory.limit_in_bytes", "268435456\n")
    tree.file("memory/docker/c1/memory.usage_in_bytes", "4096\n")
    tree.file("memory/docker/c1/memory.oom_control", V1_OOM_AFTER)
    tree.file("cpu,cpuacct/docker/c1/cpu.cfs_quota_us", "150000\n")
    tree.file("cpu,cpuacct/docker/c1/cpu.cfs_period_us", "100000\n")
    lim = tree.limits()
    assert lim["version"] == 1
    assert lim["path"] == "/docker/c1"
    assert lim["memory_max_bytes"] == 268435456
    assert lim["cpu_quota"] == 1.5
    assert lim["memory_current_bytes"] == 4096
    assert lim["oom_kills"] == 1
    assert lim["source"] == "cgroup"
    assert lim["note"] is None


def test_v1_unlimited(tmp_path: Path) -> None:
    """v1 with ~2^63 and -1: no limits, host figures (the hybrid layout of a real host)."""
    tree = Tree(tmp_path, HYBRID_PROC_CGROUP)
    tree.file("memory/process_api/2458052e/memory.limit_in_bytes", V1_NO_LIMIT)
    tree.file("memory/memory.limit_in_bytes", V1_NO_LIMIT)
    tree.file("cpu/cpu.cfs_quota_us", "-1\n")
    tree.file("cpu/cpu.cfs_period_us", "100000\n")
    lim = tree.limits()
    assert lim["version"] == 1
    assert lim["memory_max_bytes"] is None
    assert lim["cpu_quota"] is None
    assert lim["note"] == "no cgroup limits found; host figures used"


def test_v1_nested_parent_limit_binds(tmp_path: Path) -> None:
    """v1 too: a parent's smaller limit binds a child cgroup."""
    tree = Tree(tmp_path, "4:memory:/batch/job7\n")
    tree.file("memory/batch/memory.limit_in_bytes", "100000000\n")
    tree.file("memory/batch/job7/memory.limit_in_bytes", V1_NO_LIMIT)
    lim = tree.limits()
    assert lim["memory_max_bytes"] == 100000000
    assert lim["note"] == "no v1 cpu controller; host figure used for the rest"


def test_v1_cpu_mount_named_cpu_only(tmp_path: Path) -> None:
    """The cpu controller mounted as plain `cpu` (no `cpu,cpuacct` directory) is found."""
    tree = Tree(tmp_path, "4:cpu,cpuacct:/x\n3:memory:/x\n")
    tree.file("cpu/x/cpu.cfs_quota_us", "25000\n")
    tree.file("cpu/x/cpu.cfs_period_us", "100000\n")
    tree.file("memory/x/memory.limit_in_bytes", V1_NO_LIMIT)
    assert tree.limits()["cpu_quota"] == 0.25


def test_v1_missing_files_fall_back_with_note(tmp_path: Path) -> None:
    """v1 directories without their files: host figures, the note names each missing file."""
    tree = Tree(tmp_path, "4:memory:/x\n3:cpu:/x\n")
    (tree.root / "memory" / "x").mkdir(parents=True)
    (tree.root / "cpu" / "x").mkdir(parents=True)
    lim = tree.limits()
    assert lim["source"] == "host"
    assert lim["note"] == (
        "memory.limit_in_bytes missing; cpu.cfs_quota_us missing; host figures used"
    )


def test_v1_controller_not_mounted(tmp_path: Path) -> None:
    """Controllers listed but not mounted under the root: said so, host figures."""
    tree = Tree(tmp_path, "4:memory:/x\n3:cpu:/x\n")
    lim = tree.limits()
    assert lim["note"] == (
        f"cgroup v1 memory directory for /x not found under {tree.root}; "
        f"cgroup v1 cpu directory for /x not found under {tree.root}; host figures used"
    )


def test_memory_total_and_cpu_count_cap_at_host() -> None:
    """The binding figure is the smaller of the cgroup's and the host's."""
    assert memory_total({"memory_max_bytes": 1 << 30}, 8 << 30) == 1 << 30
    assert memory_total({"memory_max_bytes": 64 << 30}, 8 << 30) == 8 << 30
    assert memory_total({"memory_max_bytes": None}, 8 << 30) == 8 << 30
    assert cpu_count({"cpu_quota": 0.5}, 4) == 0.5
    assert cpu_count({"cpu_quota": 16.0}, 4) == 4.0
    assert cpu_count({"cpu_quota": None}, 4) == 4.0


def test_limits_of_this_process_never_raise() -> None:
    """On the real machine limits() gives a complete dict whatever the cgroup setup."""
    lim = limits()
    assert set(lim) >= {"version", "memory_max_bytes", "cpu_quota", "path", "source", "note"}
    assert lim["source"] in ("cgroup", "host")


# ---------------------------------------------------------------------------------------------
# OOM counting


def test_oom_watch_counts_new_kills_v2(tmp_path: Path) -> None:
    """poll() returns kills since the previous poll, read through the kept descriptor."""
    tree = Tree(tmp_path, "0::/app\n")
    events = tree.file("app/memory.events", V2_EVENTS % (0, 0, 3))
    with OomWatch(PID, proc=str(tree.proc), root=str(tree.root)) as w:
        assert w.available
        assert w.file == str(events)
        assert w.poll() == 0
        events.write_bytes(V2_EVENTS % (5, 2, 5))  # in place: the kept descriptor sees it
        assert w.poll() == 2
        assert w.poll() == 0
        events.write_bytes(V2_EVENTS % (6, 3, 6))
        assert w.poll() == 1
        assert w.total == 3


def test_oom_watch_v1_recorded_files(tmp_path: Path) -> None:
    """Detection on files recorded around a real v1 OOM kill: one kill, and SIGKILL => OOM."""
    tree = Tree(tmp_path, "4:memory:/job\n")
    path = tree.file("memory/job/memory.oom_control", V1_OOM_BEFORE)
    w = OomWatch(PID, proc=str(tree.proc), root=str(tree.root))
    path.write_bytes(V1_OOM_AFTER)
    delta = w.poll()
    w.close()
    assert delta == 1
    assert exit_was_oom(-signal.SIGKILL, delta) is True


def test_oom_watch_follows_cgroup_after_process_is_gone(tmp_path: Path) -> None:
    """The descriptor outlives /proc/<pid>: the watch still reads the same cgroup."""
    tree = Tree(tmp_path, "0::/app\n")
    events = tree.file("app/memory.events", V2_EVENTS % (0, 0, 0))
    w = OomWatch(PID, proc=str(tree.proc), root=str(tree.root))
    (tree.proc / str(PID) / "cgroup").unlink()
    events.write_bytes(V2_EVENTS % (1, 1, 1))
    assert w.poll() == 1
    w.close()
    assert w.poll() == 0


def test_oom_watch_counter_reset_reports_nothing(tmp_path: Path) -> None:
    """A counter that went down (a recreated cgroup) is not a negative number of kills."""
    events = tmp_path / "memory.events"
    events.write_bytes(V2_EVENTS % (0, 0, 4))
    w = OomWatch(file=str(events))
    events.write_bytes(V2_EVENTS % (0, 0, 1))
    assert w.poll() == 0
    events.write_bytes(V2_EVENTS % (0, 0, 2))
    assert w.poll() == 1
    w.close()


def test_oom_watch_unavailable(tmp_path: Path) -> None:
    """No cgroup file, or one without an oom_kill line: unavailable, poll() is 0."""
    w = OomWatch(PID, proc=str(tmp_path), root=str(tmp_path))
    assert (w.available, w.file, w.poll()) == (False, None, 0)
    old = tmp_path / "memory.oom_control"
    old.write_bytes(b"oom_kill_disable 0\nunder_oom 0\n")  # Linux < 4.13
    w = OomWatch(file=str(old))
    assert (w.available, w.poll()) == (False, 0)
    w.close()


def test_exit_was_oom_rules() -> None:
    """SIGKILL plus a risen oom_kill is OOM; either alone is not."""
    assert exit_was_oom(-9, 1) is True
    assert exit_was_oom(137, 1) is True  # through a shell
    assert exit_was_oom(-9, 0) is False  # a plain kill -9
    assert exit_was_oom(1, 1) is False  # an ordinary failure in a cgroup that had a kill
    assert exit_was_oom(-signal.SIGTERM, 2) is False


# ---------------------------------------------------------------------------------------------
# A real OOM kill


def _own_memory_cgroup() -> tuple[str, str, str]:
    """(version, directory of this process's memory cgroup, limit file name) or skip."""
    if sys.platform != "linux":
        pytest.skip("cgroups are Linux only")
    if os.geteuid() != 0:
        pytest.skip("creating a cgroup needs root")
    lim = limits()
    groups = parse_proc_cgroup(Path("/proc/self/cgroup").read_bytes())
    if lim["version"] == 2:
        d = lim["dir"]
        if d is None or "memory" not in Path(d, "cgroup.controllers").read_text().split():
            pytest.skip("cgroup v2 without the memory controller enabled here")
        return "2", d, "memory.max"
    if lim["version"] == 1 and "memory" in groups and lim["dir"] is not None:
        return "1", lim["dir"], "memory.limit_in_bytes"
    pytest.skip(f"no usable memory cgroup ({lim['note']})")
    raise AssertionError  # unreachable: skip raises


@pytest.mark.slow
def test_real_oom_kill_in_memory_limited_cgroup() -> None:
    """A child over a 64 MiB limit is SIGKILLed by the kernel and OomWatch counts it.

    The test cgroup is created *inside* this process's own cgroup (a child cgroup only ever
    tightens limits, so nothing escapes the accounting it runs under) and removed afterwards.
    """
    version, parent, limit_file = _own_memory_cgroup()
    test_dir = os.path.join(parent, f"atroz-test-{os.getpid()}")
    try:
        os.mkdir(test_dir)
    except OSError as exc:
        pytest.skip(f"cannot create a cgroup under {parent}: {exc}")
    child: subprocess.Popen[bytes] | None = None
    try:
        try:
            Path(test_dir, limit_file).write_text(str(64 << 20))
        except OSError as exc:
            pytest.skip(f"cannot set a memory limit on {test_dir}: {exc}")
        # With swap the child would page out instead of dying; absent without swap accounting.
        swap = "memory.swap.max" if version == "2" else "memory.memsw.limit_in_bytes"
        with contextlib.suppress(OSError):
            Path(test_dir, swap).write_text("0" if version == "2" else str(64 << 20))
        code = "import sys; sys.stdin.readline(); b = bytearray(512 << 20); print('survived')"
        child = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        try:
            Path(test_dir, "cgroup.procs").write_text(str(child.pid))
        except OSError as exc:
            pytest.skip(f"cannot move a process into {test_dir}: {exc}")
        lim = limits(child.pid)
        assert lim["memory_max_bytes"] == 64 << 20
        watch = OomWatch(child.pid)
        assert watch.available
        assert child.stdin is not None
        child.stdin.write(b"go\n")
        child.stdin.close()
        out = child.stdout.read() if child.stdout is not None else b""
        rc = child.wait(timeout=60)
        delta = watch.poll()
        watch.close()
        assert out == b""
        assert rc == -signal.SIGKILL
        assert delta == 1
        assert exit_was_oom(rc, delta) is True
    finally:
        if child is not None and child.poll() is None:
            child.kill()
            child.wait()
        deadline = time.monotonic() + 10
        while os.path.isdir(test_dir):  # the dead child's charge is released asynchronously
            try:
                os.rmdir(test_dir)
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
