"""Container limits and OOM kills from Linux cgroups (v2, with v1 as the fallback).

A process in a container sees the host's memory and cores in ``/proc/meminfo`` and
``os.cpu_count()``, but the kernel kills it at the cgroup's ``memory.max`` and throttles it at
its ``cpu.max``. This module finds the process's cgroup and reads those limits, so memory
percentages, the RSS alert and CPU saturation can use the figures that actually bind.

Parsing follows ``procfs.py``: bytes in, pure parsers that never raise, and injectable roots
(``proc="/proc"``, ``root="/sys/fs/cgroup"``) so tests build fake trees. Nothing here starts a
thread or writes anything.

Which hierarchy: ``/proc/<pid>/cgroup`` has one ``0::/path`` line under pure cgroup v2. Hybrid
systems (systemd's default for years) list that line *and* v1 controllers; the controllers are
then bound to v1, so v1 wins whenever a ``memory`` or ``cpu`` controller line is present.

Which directory: the path in ``/proc/<pid>/cgroup`` is relative to the hierarchy's root, but a
container often has only its own cgroup mounted at ``/sys/fs/cgroup`` (Docker without a cgroup
namespace under v1). When ``<mount>/<path>`` does not exist, leading components are dropped
until a directory exists, ending at the mount itself.

Which limit: a cgroup is bounded by every ancestor's limit too (a Kubernetes pod's limit sits
one level above its containers'), so the effective limit is the smallest one found on the way
from the process's cgroup up to the mount.
"""

from __future__ import annotations

import errno
import os
import signal
from typing import Any

from .procfs import pread

__all__ = [
    "OomWatch",
    "cpu_count",
    "exit_was_oom",
    "limits",
    "memory_total",
    "parse_cpu_max",
    "parse_cfs",
    "parse_memory_max",
    "parse_oom_kill",
    "parse_proc_cgroup",
    "parse_v1_limit",
]

CGROUP_ROOT = "/sys/fs/cgroup"
V1_UNLIMITED = 1 << 62
"""v1 writes "no limit" as PAGE_COUNTER_MAX pages (9223372036854771712 with 4 KiB pages);
anything at or above 2^62 bytes is no limit on any machine that exists."""

_UNSET: tuple[bool, Any] = (False, None)

# ---------------------------------------------------------------------------------------------
# Pure parsers: bytes in, never raise


def _int(raw: bytes) -> int | None:
    """A decimal integer (optional leading '-'), or None."""
    raw = raw.strip()
    digits = raw[1:] if raw.startswith(b"-") else raw
    if not digits.isdigit() or len(digits) > 30:  # 30 digits: far beyond any real value
        return None
    return int(raw)


def parse_proc_cgroup(data: bytes) -> dict[str, str]:
    """``/proc/<pid>/cgroup`` as controller -> path; the v2 line is keyed ``""``.

    Lines are ``hierarchy-id:controller,list:path``; the path may itself contain ':'.
    Named v1 hierarchies (``name=systemd``) carry no limits and are left out.
    """
    out: dict[str, str] = {}
    for line in data.split(b"\n"):
        parts = line.split(b":", 2)
        if len(parts) != 3 or not parts[0].strip().isdigit():
            continue
        path = parts[2].decode("utf-8", errors="replace").strip()
        if not path.startswith("/"):
            continue
        controllers = parts[1].decode("ascii", errors="replace")
        if parts[0].strip() == b"0" and not controllers:
            out.setdefault("", path)
            continue
        for name in controllers.split(","):
            if name and not name.startswith("name="):
                out.setdefault(name, path)
    return out


def parse_memory_max(data: bytes) -> tuple[bool, int | None]:
    """v2 ``memory.max``: ``(True, bytes)``, ``(True, None)`` for "max", ``(False, None)`` if
    the content is not a limit."""
    text = data.strip()
    if text == b"max":
        return True, None
    value = _int(text)
    if value is None or value < 0:
        return _UNSET
    return True, value


def parse_v1_limit(data: bytes) -> tuple[bool, int | None]:
    """v1 ``memory.limit_in_bytes``: a huge value (~2^63) or -1 means no limit."""
    value = _int(data)
    if value is None:
        return _UNSET
    if value < 0 or value >= V1_UNLIMITED:
        return True, None
    return True, value


def parse_cpu_max(data: bytes) -> tuple[bool, float | None]:
    """v2 ``cpu.max`` ("quota period"): CPUs as a float, None for "max" (no quota).

    ``"50000 100000"`` is half a CPU; the period defaults to 100000 when absent.
    """
    words = data.split()
    if not words or len(words) > 2:
        return _UNSET
    period = _int(words[1]) if len(words) == 2 else 100_000
    if period is None or period <= 0:
        return _UNSET
    if words[0] == b"max":
        return True, None
    quota = _int(words[0])
    if quota is None or quota <= 0:
        return _UNSET
    return True, quota / period


def parse_cfs(quota: bytes, period: bytes) -> tuple[bool, float | None]:
    """v1 ``cpu.cfs_quota_us`` and ``cpu.cfs_period_us``: CPUs, None for -1 (no quota)."""
    q = _int(quota)
    if q is None:
        return _UNSET
    if q < 0:
        return True, None
    p = _int(period)
    if p is None or p <= 0 or q == 0:
        return _UNSET
    return True, q / p


def parse_oom_kill(data: bytes) -> int | None:
    """The ``oom_kill N`` count of v2 ``memory.events`` or v1 ``memory.oom_control``.

    None when the line is missing (v1 before Linux 4.13 has no ``oom_kill`` line).
    """
    for line in data.split(b"\n"):
        words = line.split()
        if len(words) == 2 and words[0] == b"oom_kill":
            value = _int(words[1])
            return value if value is not None and value >= 0 else None
    return None


# ---------------------------------------------------------------------------------------------
# Reading the tree


def _read(path: str, size: int = 4096) -> tuple[bytes | None, str | None]:
    """The file's first bytes, or None and a short reason ("missing", "unreadable: EACCES")."""
    try:
        with open(path, "rb", buffering=0) as f:
            return f.read(size), None
    except FileNotFoundError:
        return None, "missing"
    except OSError as exc:
        name = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
        return None, f"unreadable ({name})"


def _locate(mount: str, path: str) -> str | None:
    """The directory of cgroup ``path`` under ``mount`` (see the module doc), or None."""
    parts = [p for p in path.split("/") if p and p not in (".", "..")]
    for start in range(len(parts) + 1):
        candidate = os.path.join(mount, *parts[start:])
        if os.path.isdir(candidate):
            return candidate
    return None


def _ancestors(directory: str, mount: str) -> list[str]:
    """``directory`` and its parents up to and including ``mount``, innermost first."""
    out = [directory]
    mount = os.path.normpath(mount)
    cur = os.path.normpath(directory)
    while cur != mount and cur.startswith(mount + os.sep):
        cur = os.path.dirname(cur)
        out.append(cur)
    return out


def _v1_mount(root: str, controller: str) -> str | None:
    """The v1 mount of ``controller``: ``cpu`` lives at ``cpu,cpuacct`` on most systems, with
    ``cpu`` as a symlink that some images drop."""
    names = [controller] + (["cpu,cpuacct", "cpuacct,cpu"] if controller == "cpu" else [])
    for name in names:
        candidate = os.path.join(root, name)
        if os.path.isdir(candidate):
            return candidate
    return None


def _smallest(dirs: list[str], read: Any, reasons: list[str], what: str) -> Any:
    """The smallest limit among ``dirs`` via ``read(dir) -> (ok, value, reason)``; None when
    nothing limits. Only the innermost cgroup's unreadable file is worth a note: ancestors up
    to the hierarchy's root legitimately lack limit files (the root cgroup has none)."""
    best: float | int | None = None
    for i, d in enumerate(dirs):
        ok, value, reason = read(d)
        if not ok:
            if i == 0:
                reasons.append(f"{what} {reason}".strip())
            continue
        if value is not None and (best is None or value < best):
            best = value
    return best


def limits(
    pid: int | None = None, *, proc: str = "/proc", root: str = CGROUP_ROOT
) -> dict[str, Any]:
    """The memory and CPU limits that bind ``pid`` (default: this process).

    Keys: ``version`` (2, 1 or None), ``path`` (the cgroup path, as in ``/proc/<pid>/cgroup``),
    ``dir`` (where its files were read), ``memory_max_bytes`` (None: no limit),
    ``cpu_quota`` (CPUs as a float, None: no quota), ``memory_current_bytes``, ``oom_kills``
    (count so far, None if unknown), ``source`` (``"cgroup"`` when a limit was found,
    ``"host"`` otherwise) and ``note`` (None, or why host figures are used). Never raises.
    """
    pid_s = "self" if pid is None else str(pid)
    out: dict[str, Any] = {
        "version": None,
        "path": None,
        "dir": None,
        "memory_max_bytes": None,
        "cpu_quota": None,
        "memory_current_bytes": None,
        "oom_kills": None,
        "source": "host",
        "note": None,
    }
    data, why = _read(os.path.join(proc, pid_s, "cgroup"))
    if data is None:
        out["note"] = f"/proc/{pid_s}/cgroup {why}; host figures used"
        return out
    groups = parse_proc_cgroup(data)
    reasons: list[str] = []
    if "memory" in groups or "cpu" in groups:
        _limits_v1(groups, root, out, reasons)
    elif "" in groups:
        _limits_v2(groups[""], root, out, reasons)
    else:
        reasons.append("no cgroup memory or cpu controller")
    limited = out["memory_max_bytes"] is not None or out["cpu_quota"] is not None
    if limited:
        out["source"] = "cgroup"
        if reasons:  # one limit found, the other not: say which figure is the host's
            out["note"] = "; ".join(reasons) + "; host figure used for the rest"
    elif reasons:
        out["note"] = "; ".join(reasons) + "; host figures used"
    else:
        out["note"] = "no cgroup limits found; host figures used"
    return out


def _limits_v2(path: str, root: str, out: dict[str, Any], reasons: list[str]) -> None:
    out["version"] = 2
    out["path"] = path
    directory = _locate(root, path)
    if directory is None:
        reasons.append(f"cgroup v2 directory for {path} not found under {root}")
        return
    out["dir"] = directory
    dirs = _ancestors(directory, root)

    def mem(d: str) -> tuple[bool, int | None, str | None]:
        data, why = _read(os.path.join(d, "memory.max"))
        if data is None:
            return False, None, why
        ok, value = parse_memory_max(data)
        return ok, value, None if ok else "unparseable"

    def cpu(d: str) -> tuple[bool, float | None, str | None]:
        data, why = _read(os.path.join(d, "cpu.max"))
        if data is None:
            return False, None, why
        ok, value = parse_cpu_max(data)
        return ok, value, None if ok else "unparseable"

    out["memory_max_bytes"] = _smallest(dirs, mem, reasons, "memory.max")
    out["cpu_quota"] = _smallest(dirs, cpu, reasons, "cpu.max")
    cur, _ = _read(os.path.join(directory, "memory.current"))
    if cur is not None:
        value = _int(cur)
        out["memory_current_bytes"] = value if value is not None and value >= 0 else None
    events, _ = _read(os.path.join(directory, "memory.events"))
    if events is not None:
        out["oom_kills"] = parse_oom_kill(events)


def _limits_v1(groups: dict[str, str], root: str, out: dict[str, Any], reasons: list[str]) -> None:
    out["version"] = 1
    mem_path = groups.get("memory")
    cpu_path = groups.get("cpu")
    out["path"] = mem_path if mem_path is not None else cpu_path
    if mem_path is None:
        reasons.append("no v1 memory controller")
    else:
        mount = _v1_mount(root, "memory")
        directory = _locate(mount, mem_path) if mount is not None else None
        if mount is None or directory is None:
            reasons.append(f"cgroup v1 memory directory for {mem_path} not found under {root}")
        else:
            out["dir"] = directory

            def mem(d: str) -> tuple[bool, int | None, str | None]:
                data, why = _read(os.path.join(d, "memory.limit_in_bytes"))
                if data is None:
                    return False, None, why
                ok, value = parse_v1_limit(data)
                return ok, value, None if ok else "unparseable"

            dirs = _ancestors(directory, mount)
            out["memory_max_bytes"] = _smallest(dirs, mem, reasons, "memory.limit_in_bytes")
            cur, _ = _read(os.path.join(directory, "memory.usage_in_bytes"))
            if cur is not None:
                value = _int(cur)
                out["memory_current_bytes"] = value if value is not None and value >= 0 else None
            oom, _ = _read(os.path.join(directory, "memory.oom_control"))
            if oom is not None:
                out["oom_kills"] = parse_oom_kill(oom)
    if cpu_path is None:
        reasons.append("no v1 cpu controller")
        return
    mount = _v1_mount(root, "cpu")
    directory = _locate(mount, cpu_path) if mount is not None else None
    if mount is None or directory is None:
        reasons.append(f"cgroup v1 cpu directory for {cpu_path} not found under {root}")
        return
    if out["dir"] is None:
        out["dir"] = directory

    def cpu(d: str) -> tuple[bool, float | None, str | None]:
        quota, why = _read(os.path.join(d, "cpu.cfs_quota_us"))
        if quota is None:
            return False, None, f"cpu.cfs_quota_us {why}"
        period, why = _read(os.path.join(d, "cpu.cfs_period_us"))
        if period is None:
            return False, None, f"cpu.cfs_period_us {why}"
        ok, value = parse_cfs(quota, period)
        return ok, value, None if ok else "unparseable"

    out["cpu_quota"] = _smallest(_ancestors(directory, mount), cpu, reasons, "")


def memory_total(lim: dict[str, Any], host_total: int | None) -> int | None:
    """The memory that binds: the cgroup limit or the host's, whichever is smaller.

    A limit above the host's memory (common: a limit set without regard to the node) binds
    nothing; the host's total does.
    """
    cg = lim.get("memory_max_bytes")
    if isinstance(cg, int) and cg > 0:
        return cg if host_total is None else min(cg, host_total)
    return host_total


def cpu_count(lim: dict[str, Any], host_cpus: int | None = None) -> float:
    """CPUs available: the cgroup quota, capped at the host's cores (a quota of 8 CPUs on a
    4-core host still gives 4)."""
    host = float(host_cpus if host_cpus else (os.cpu_count() or 1))
    quota = lim.get("cpu_quota")
    if isinstance(quota, (int, float)) and quota > 0:
        return min(float(quota), host)
    return host


# ---------------------------------------------------------------------------------------------
# OOM kills


def _oom_file(pid: int | None, proc: str, root: str) -> str | None:
    data, _ = _read(os.path.join(proc, "self" if pid is None else str(pid), "cgroup"))
    if data is None:
        return None
    groups = parse_proc_cgroup(data)
    if "memory" in groups:
        mount = _v1_mount(root, "memory")
        d = _locate(mount, groups["memory"]) if mount is not None else None
        return os.path.join(d, "memory.oom_control") if d is not None else None
    if "" in groups:
        d = _locate(root, groups[""])
        return os.path.join(d, "memory.events") if d is not None else None
    return None


class OomWatch:
    """Counts OOM kills in a cgroup: ``poll()`` returns how many happened since the last poll.

    The file (v2 ``memory.events``, v1 ``memory.oom_control``) is opened once and re-read with
    ``pread``, like ``procfs.ProcFS``: cheap enough for every sampler tick, and it keeps reading
    the same cgroup even after the process that led us to it has exited.

    v2 counts a kill in the victim's cgroup and every ancestor, so watching the monitor's own
    cgroup sees kills of its children placed in sub-cgroups too; v1 counts only in the victim's
    own cgroup. ``available`` is False when there is nothing to watch (no cgroup, no file,
    a v1 kernel before 4.13 without the ``oom_kill`` line); ``poll()`` then returns 0.
    Not thread-safe: one owner polls.
    """

    def __init__(
        self,
        pid: int | None = None,
        *,
        proc: str = "/proc",
        root: str = CGROUP_ROOT,
        file: str | None = None,
    ) -> None:
        self.file = file if file is not None else _oom_file(pid, proc, root)
        self.total = 0
        """OOM kills seen since construction."""
        self.errors = 0
        """Polls that could not read the file (the cgroup was removed, ...)."""
        self._fd: int | None = None
        self._last: int | None = None
        if self.file is not None:
            try:
                self._fd = os.open(self.file, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except OSError:
                self._fd = None
        self._last = self._read()
        self.available = self._last is not None

    def _read(self) -> int | None:
        if self._fd is None:
            return None
        try:
            return parse_oom_kill(pread(self._fd, 4096))
        except OSError:
            self.errors += 1
            return None

    def poll(self) -> int:
        """New OOM kills since the previous poll (or construction); 0 if unknown."""
        now = self._read()
        if now is None or self._last is None:
            if now is not None:
                self._last = now
            return 0
        delta = now - self._last
        self._last = now
        if delta < 0:  # a recreated cgroup starts again from zero: nothing new to report
            return 0
        self.total += delta
        return delta

    def close(self) -> None:
        """Release the descriptor; later polls return 0."""
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass  # the number is released either way

    def __enter__(self) -> OomWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def exit_was_oom(returncode: int, oom_delta: int) -> bool:
    """Whether a child's exit looks like the OOM killer: ended by SIGKILL while ``oom_kill``
    rose (``oom_delta`` from ``OomWatch.poll()`` over the child's life).

    ``returncode`` as ``subprocess`` gives it (``-9``) or as a shell reports it (``137``).
    A SIGKILL with no OOM kill counted is someone's ``kill -9``, not the limit.
    """
    killed = returncode in (-signal.SIGKILL, 128 + signal.SIGKILL)
    return killed and oom_delta > 0
