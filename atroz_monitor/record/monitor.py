"""Recording: ``Monitor``, its runs, and phase handles.

Everything here writes events to the run log and nothing else: the live view is the same
reducer following the same file (``snapshot()``), so a run looks the same live and replayed,
and the phases of worker processes that append to the file show up in it too.

After construction nothing in this module raises into the host program: failures inside
the monitor are counted (``internal_errors``), reported once, and visible in ``run_end``.
The explicit phase API raises ``ValueError`` for misuse (completing a phase never started),
which is the caller's bug to see.
"""

from __future__ import annotations

# Imports are few and cheap: importing the package must cost next to nothing (typing, re,
# collections, functools and threading are imported where first used; _thread is threading's
# C core, already loaded).
import _thread
import atexit
import itertools
import os
import stat
import sys
import time
import weakref
from contextvars import ContextVar

from .. import events as E
from ..events import clip, dumps, quote
from . import sinks
from .sinks import FILE_MODE, LogWriter, UnsafeLogError

ENV_LOG = "ATROZ_MONITOR_LOG"
ENV_RUN = "ATROZ_MONITOR_RUN"

TYPE_CHECKING = False  # not typing's: importing typing would double the import time
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from contextvars import Token
    from typing import Any, Literal, TypeVar

    from ..probe.procfs import HighWater, Statm
    from ..store.live import LiveView
    from ..view.alerts import Evaluator
    from .ack import AckWatch
    from .component import Component
    from .notify import Notifier
    from .redact import Redactor
    from .sampler import Sampler, Sampling

    F = TypeVar("F", bound=Callable[..., Any])

_current: ContextVar[Phase | None] = ContextVar("atroz_monitor_phase", default=None)

# Span ids are "<pid>.<n>": unique across the processes of a run without coordination.
_pid = os.getpid()
_span_prefix = f"{_pid}."
_spans = itertools.count(1)

_RUN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


def valid_run_id(run_id: str) -> bool:
    import re  # here, not at import: re costs more than the rest of the package to import

    return re.match(_RUN_ID_PATTERN, run_id) is not None  # re caches the compiled pattern


PROGRESS_EVERY_S = 0.5  # at most one progress event per phase this often (set_total: always)
_perf_ns = time.perf_counter_ns
_pread = os.pread  # the phase boundary's statm read (see procfs.Statm.rss)
_cpu_ns = time.process_time_ns
_wall = time.time
_wall_ns = time.time_ns

REUSE_NS = 20_000
"""A phase boundary reuses the process's last RSS and CPU reading (``procfs.Statm.reading``)
if it was taken less than 20 us before, on the monotonic clock: boundaries that close
together (a phase's end and the next one's start, a parent's start and its first child's, a
phase shorter than 20 us) cost one reading. Each figure is off by at most what changes in
20 us: CPU at most 20 us per CPU the process runs on; RSS at most what the process maps or
unmaps in 20 us (docs/ACCURACY.md). Children's CPU is read at every boundary: one reap moves
it by any amount at once."""


_tls = _thread._local()  # threading.local


def _thread_name() -> bytes:
    """The current thread's name, JSON-quoted; cached per thread at its first phase (names
    are for display; a thread renamed later keeps the name it had then)."""
    try:
        return _tls.q  # type: ignore[no-any-return]
    except AttributeError:
        import threading

        q = _tls.q = _quoted(threading.current_thread().name)
        return q


def _quoted(s: str) -> bytes:
    """``s`` as a JSON string, in bytes (ASCII: quote() escapes everything else)."""
    return quote(s).encode("ascii")


def _quoted_key(key: str) -> bytes:
    """A phase key, quoted; the first _QUOTED_MAX keys are kept (a key is quoted at every
    call; names, parents and threads are not kept, so they never crowd the keys out)."""
    q = _quoted(key)
    if len(_quoted_keys) < _QUOTED_MAX:
        _quoted_keys[key] = q
    return q


_quoted_keys: dict[str, bytes] = {}
_QUOTED_MAX = 4096


# The phase lines, as bytes formats: one ``%`` formats a whole line, with no str round trip
# (the hot path; docs/FORMAT.md). The writer fills the first fields: the time (two), the
# run/pid prefix and the seq (LogWriter.emit_fmt). The members after: span, phase, name,
# parent; then the start's thread and optional members (meta, attempt); the end's status
# and duration, then its figures (_END: the common case, all of them; _END_ANY: any other,
# preformatted), then its optional members (items ... reason). A phase that ends before its
# start line was written is one line, its end's with the start's thread and meta at the
# end (the _WHOLE formats: LogWriter.emit_end); its start is ts - duration_ms.
_HEAD = b'{"ev":"%s","ts":%%s%%06d,%%s%%d,"span":"%%s","phase":%%s,"name":%%s,"parent":%%s'
_START = _HEAD % b"phase_start" + b',"thread":%s%s%s}\n'
_END_ANY = _HEAD % b"phase_end" + b',"status":"%s","duration_ms":%.3f%s%s}\n'
_END = (
    _HEAD % b"phase_end"
    + b',"status":"%s","duration_ms":%.3f,"cpu_ms":%.3f%s'
    + b',"rss_bytes":%d,"peak_rss_bytes":%d,"rss_start_bytes":%d%s%s}\n'
)
_END_ANY_WHOLE = _END_ANY[:-2] + b',"thread":%s%s}\n'
_END_WHOLE = _END[:-2] + b',"thread":%s%s}\n'
# The plain end lines take the same arguments and drop the start's two (%.0s: nothing).
_END_ANY = _END_ANY[:-2] + b"%.0s%.0s}\n"
_END = _END[:-2] + b"%.0s%.0s}\n"
# The wall clock's current second, as (its first microsecond, b"<seconds>."): a phase line's
# time is that prefix and %06d microseconds, read from time_ns (the %.6f of a 10-digit float
# goes through dtoa's big-number path, and costs more than every other number in the line).
_second: tuple[int, bytes] = (0, b"0.")


def _second_of(us: int) -> tuple[int, bytes]:
    """The second ``us`` (wall-clock microseconds) falls in: its first microsecond and its
    ``b"<seconds>."`` prefix (a line's time is the prefix and ``us`` less that, %06d)."""
    sec = us // 1_000_000
    return sec * 1_000_000, b"%d." % sec


def _new_second(us: int) -> tuple[int, bytes]:
    """``_second_of(us)``, cached as the current second (one tuple: a thread reading it
    never sees a new start with an old prefix)."""
    global _second
    _second = t = _second_of(us)
    return t


_STATUS = {s: s.encode() for s in ("completed", "failed", "cancelled", "skipped", "cached")}


def current_phase() -> Phase | None:
    """The phase active in this thread or asyncio task, or None."""
    return _current.get()


def innermost_monitor() -> Monitor | None:
    """The innermost monitor inside its ``with`` block in this process, if any."""
    return _active[-1] if _active else None


def open_phase() -> Phase | None:
    """The phase active in this thread or task if it is still open and was entered in this
    process (one inherited across a fork is not), else None: where a log line belongs."""
    h = _current.get()
    return h if h is not None and h._pid == _pid and h.status is None else None


def new_run_id() -> str:
    """A sortable, unique run id: ``YYYYmmdd-HHMMSS-xxxxxx``."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + os.urandom(3).hex()


def _normalize_plan(plan: Any) -> list[dict[str, Any]]:
    if plan is None:
        return []
    if isinstance(plan, (str, bytes)) or not isinstance(plan, (list, tuple)):
        raise ValueError(
            "plan must be a list of phase ids, (id, name) pairs or {'id': ..., 'name': ...} "
            f"dicts, not {type(plan).__name__}"
        )
    from collections.abc import Mapping

    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    extra: dict[Any, Any]  # a mapping entry's keys besides id and name (checked below)
    for i, entry in enumerate(plan):
        if isinstance(entry, str):
            pid, name, extra = entry, entry, {}
        elif isinstance(entry, (list, tuple)) and len(entry) == 2:
            pid, name, extra = entry[0], entry[1], {}
        elif isinstance(entry, Mapping) and "id" in entry:
            pid = entry["id"]
            name = entry.get("name", pid)
            extra = {k: v for k, v in entry.items() if k not in ("id", "name")}
        else:
            raise ValueError(
                f"plan entry {i} must be an id, an (id, name) pair or a dict: {entry!r}"
            )
        if not isinstance(pid, str) or not pid:
            raise ValueError(f"plan entry {i}: the phase id must be a non-empty string: {pid!r}")
        if not isinstance(name, str):
            raise ValueError(f"plan entry {i}: the phase name must be a string: {name!r}")
        if pid in seen:
            raise ValueError(f"plan entry {i}: phase id {pid!r} appears twice")
        seen.add(pid)
        after = extra.get("after")
        if after is not None and (
            isinstance(after, (str, bytes))
            or not isinstance(after, (list, tuple))
            or not all(isinstance(a, str) for a in after)
        ):
            raise ValueError(f"plan entry {i} ({pid!r}): 'after' must be a list of phase ids")
        if after is not None:
            extra["after"] = list(after)
        out.append({"id": pid, "name": name, **extra})
    _check_dag(out)
    return out


def _check_dag(plan: list[dict[str, Any]]) -> None:
    """A plan with ``after`` is a DAG: every dependency is a planned id, and no cycles."""
    ids = {p["id"] for p in plan}
    deps = {p["id"]: p.get("after") or [] for p in plan}
    for pid, after in deps.items():
        for a in after:
            if a not in ids:
                raise ValueError(f"plan: {pid!r} is after {a!r}, which is not in the plan")
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(n: str, path: list[str]) -> None:
        if state.get(n) == 2:
            return
        if state.get(n) == 1:
            cycle = " -> ".join(path[path.index(n) :] + [n])
            raise ValueError(f"plan: the 'after' dependencies form a cycle: {cycle}")
        state[n] = 1
        for a in deps[n]:
            visit(a, path + [n])
        state[n] = 2

    for pid in deps:
        visit(pid, [])


def _limits_fields(lim: Mapping[str, Any]) -> dict[str, Any]:
    """The container limits as run_start records them (host figures when unlimited)."""
    from ..probe import cgroup

    return {
        "version": lim.get("version"),
        "memory_max_bytes": lim.get("memory_max_bytes"),
        "cpu_quota": lim.get("cpu_quota"),
        "cpu_effective": cgroup.cpu_count(dict(lim), os.cpu_count()),
        "source": lim.get("source"),
        "note": lim.get("note"),
    }


ENV_TAGS = "ATROZ_MONITOR_TAGS"


def _tags(tags: Mapping[str, str] | None, env: bool = True) -> dict[str, str]:
    """Run tags: ``ATROZ_MONITOR_TAGS="k=v,k2=v2"`` overlaid with the ``tags`` given."""
    out: dict[str, str] = {}
    if env:
        for part in (os.environ.get(ENV_TAGS) or "").split(","):
            if part.strip():
                k, sep, v = part.partition("=")
                if not sep or not k.strip():
                    raise ValueError(f"{ENV_TAGS}: expected key=value pairs, got {part!r}")
                out[k.strip()] = v.strip()
    if tags is not None:
        from collections.abc import Mapping

        if not isinstance(tags, Mapping):
            raise ValueError(f"tags must be a mapping of strings, not {type(tags).__name__}")
        for k, v in tags.items():
            if not isinstance(k, str) or not k or not isinstance(v, (str, int, float, bool)):
                raise ValueError(f"tags: {k!r}={v!r}: keys must be strings, values strings")
            out[k] = str(v)
    return out


def _make_parent(p: str, mode: int = 0o700) -> None:
    """Create the missing directories of a log file path, as the directory form does
    (0700: other users on the machine have no business in a run's logs)."""
    parent = os.path.dirname(os.path.abspath(p))
    missing: list[str] = []
    while parent and not os.path.isdir(parent):
        missing.append(parent)
        parent = os.path.dirname(parent)
    # One by one: os.makedirs gives the mode to the last directory only.
    for d in reversed(missing):
        try:
            os.mkdir(d, mode)  # the umask still applies
        except FileExistsError:
            pass  # created meanwhile by another process: the file open says if it is usable
        except OSError as exc:
            raise OSError(
                exc.errno, f"cannot create the directory {d!r} of the run log: {exc.strerror}"
            ) from None


def _check_count(n: Any) -> None:
    if (type(n) is not int and type(n) is not float) or not 0 <= n < float("inf"):
        raise ValueError(f"a count must be a finite number >= 0, not {n!r}")


def _counts_member(counts: dict[str, list[Any]]) -> str:
    """The ``counts`` member of a phase_end line: each counter's total over the phase."""
    return ',"counts":{' + ",".join(f"{e[2]}:{E.number(e[0])}" for e in counts.values()) + "}"


def check_key(key: Any) -> str:
    if not isinstance(key, str) or not key:
        raise ValueError(f"a phase key must be a non-empty string, not {key!r}")
    return key


def _is_cancel(exc: BaseException) -> bool:
    if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
        return True
    aio = sys.modules.get("asyncio")
    return aio is not None and isinstance(exc, aio.CancelledError)


def _format_error(exc: BaseException, redactor: Any = None) -> dict[str, Any]:
    try:
        import traceback

        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    except Exception:
        tb = ""
    if len(tb) > E.TRACEBACK_LIMIT:  # keep the end: the frame that raised
        tb = "... [cut]\n" + tb[-E.TRACEBACK_LIMIT :]
    try:
        msg = str(exc)
    except Exception:
        msg = "<str() failed>"
    if redactor is not None:
        msg, tb = redactor.redact(msg), redactor.redact(tb)
    return {"type": type(exc).__qualname__, "msg": clip(msg, E.MESSAGE_LIMIT), "tb": tb}


DETAILS = ("auto", "all", "aggregate")
AGGREGATE_FLUSH_S = 1.0  # an aggregated key writes one aggregate event per second at most


class _Hot:
    """Rate and running totals of one phase key under one parent: hot-loop detection.

    With ``detail="auto"``, a key entered more than ``aggregate_above`` times within a
    second under the same parent switches to aggregate recording: its calls are summed
    (count, total, extremes, failures: all exact) and written as one ``aggregate`` event
    per second and when the parent ends, instead of two lines per call.
    """

    __slots__ = (
        "key", "name", "parent", "owner", "since", "n", "on", "count", "completed", "failed",
        "cancelled", "skipped", "cached", "total_ms", "min_ms", "max_ms", "cpu_ms", "items",
        "errors", "flushed", "first_ts",
    )  # fmt: skip

    def __init__(self, key: str, name: str, parent: str | None, owner: Phase | None,
                 now: float, on: bool) -> None:  # fmt: skip
        self.key, self.name, self.parent, self.owner = key, name, parent, owner
        self.since = self.flushed = now
        self.n = 0
        self.on = on
        self.first_ts: float | None = None
        self._reset()

    def _reset(self) -> None:
        self.count = self.completed = self.failed = self.cancelled = 0
        self.skipped = self.cached = self.items = self.errors = 0
        self.total_ms = self.cpu_ms = 0.0
        self.min_ms: float | None = None
        self.max_ms: float | None = None


class Phase:
    """One phase: a context manager (sync and async), a decorator, and a handle.

    ``with mon.phase("P00") as p:`` gives the handle: ``p.add_items(n)``, ``p.set_total(n)``,
    ``p.artifact(path)``, ``p.metric(name, value)``, ``p.warning(msg)``, ``p.error(msg)``.
    Used as a decorator, every call of the function records a fresh phase.
    """

    __slots__ = (
        "_run",
        "key",
        "name",
        "meta",
        "_parent_arg",
        "_qkey",
        "_qname",
        "_sb",
        "_qp",
        "_tq",
        "span",
        "parent",
        "status",
        "items",
        "total",
        "warnings",
        "errors",
        "_token",
        "_prev",
        "_pid",
        "_t0",
        "_cpu0",
        "_ccpu0",
        "_rd",
        "peak_rss",
        "_prog_t",
        "_last_activity",
        "pending",
        "_figures",
        "attempt",
        "_outcome",
        "_detail",
        "_agg",
        "_hot",
        "_counts",
    )
    # The slots' types (annotations only: no class attribute, nothing at runtime).
    _run: Run
    key: str
    name: str
    meta: Mapping[str, Any] | None
    _parent_arg: Phase | str | None
    _qkey: bytes  # the key, JSON-quoted (ASCII: quote() escapes the rest)
    _qname: bytes
    _sb: bytes  # the span, as bytes
    _qp: bytes  # the parent span, JSON-quoted, or null
    span: str | None
    parent: str | None
    status: str | None
    items: int
    total: int | None
    warnings: int
    errors: int
    _token: Token[Phase | None] | None  # None: the explicit form sets no context token
    _prev: Phase | None
    _pid: int
    _t0: int  # perf_counter_ns
    _cpu0: int  # process_time_ns
    _ccpu0: float
    _rd: tuple[int, int, int | None]  # the start's reading: (stamp ns, CPU ns, RSS)
    peak_rss: int | None
    _prog_t: float
    _last_activity: float
    # The start line is deferred and not written yet (deferred_line() gives it): public,
    # LogWriter.emit_deferred and emit_end test and clear it under the writer's lock.
    pending: bool
    _tq: bytes  # the thread's name, JSON-quoted
    _figures: str | None
    attempt: int | None
    _outcome: tuple[str, str | None] | None  # ("skipped" or "cached", reason)
    _detail: str | None
    _agg: _Hot | None
    _hot: dict[str, _Hot] | None
    _counts: dict[str, list[Any]] | None

    def __init__(
        self,
        run: Run,
        key: str,
        name: str | None = None,
        meta: Mapping[str, Any] | None = None,
        parent: Phase | str | None = None,
        _q: tuple[bytes, bytes] | None = None,
        attempt: int | None = None,
        detail: str | None = None,
    ) -> None:
        # Only what is read before __enter__, which sets the rest (kept short: hot path).
        self.attempt = attempt
        self._detail = detail
        self._hot = None
        self._counts = None  # p.count(): name -> _CountEntry
        self._run = run
        self.key = key
        self.meta = meta
        self._parent_arg = parent
        if _q is not None:
            self.name = name if name is not None else key
            self._qkey, self._qname = _q
        else:
            self._qkey = q = _quoted_keys.get(key) or _quoted_key(key)
            if name is None or name == key:
                self.name = key
                self._qname = q
            else:
                self.name = name
                self._qname = _quoted(name)
        # Read before entering (a second entry, repr, an exit after a failed entry).
        self.span = None
        self.status = None
        self._pid = 0

    # -- context manager, sync and async ------------------------------------------------
    # The recording itself lives here rather than in a Run method the `with` statement
    # would reach through a second call: this is the hot path. ``_ctx`` is False for the
    # explicit form (``start_phase``/``complete_phase``), which sets no context token.
    # long: the hot path, inlined: a call layer per step would cost phase() ~5% (PERFORMANCE.md)
    def __enter__(self, _ctx: bool = True) -> Phase:
        try:
            run = self._run
            if not run.live:
                run.start()
            pid = _pid
            if self.status is None and self.span is not None and self._pid == pid:
                run.monitor.note_internal_error("phase entered twice", None)
                return self
            prev = _current.get()
            parg = self._parent_arg
            if parg is None:
                # The nearest open phase of this run in this process (a phase of another
                # run, or one inherited from the parent across a fork, is not our parent).
                p = prev
                while p is not None and (
                    p._run is not run or p._pid != pid or p.status is not None or p._agg is not None
                ):
                    p = p._prev
            elif isinstance(parg, Phase):
                p = parg
            else:
                p = None
            if p is not None:
                parent = p.span  # "<pid>.<n>": nothing to escape
                qp = b"null" if parent is None else b'"%s"' % parent.encode()
                if p.pending:
                    # A parent's start line must precede its children's.
                    run.writer.emit_deferred(p)
            elif parg is None:
                parent, qp = None, b"null"
            else:
                parent = str(parg)
                qp = _quoted(parent)
            mon = run.monitor
            detail = self._detail or mon.detail
            # Top-level hot loops aggregate only in the run's owner, which flushes them at
            # the run's end; a joined worker may be terminated by its pool with nothing
            # flushed.
            if _ctx and detail != "all" and (p is not None or run.owner):
                table = p._hot if p is not None else run._hot_top
                if table is None:
                    table = p._hot = {}  # type: ignore[union-attr]
                hot = table.get(self.key)
                if hot is None:
                    hot = table[self.key] = _Hot(
                        self.key, self.name, parent, p, time.perf_counter(), detail == "aggregate"
                    )
                if not hot.on:
                    now = time.perf_counter()
                    if now - hot.since >= 1.0:
                        hot.since, hot.n = now, 1
                    else:
                        hot.n += 1
                        hot.on = hot.n > mon.aggregate_above
                if hot.on:
                    # Summed, not written: no span, no line; the parent stays the parent of
                    # anything nested inside (this handle is transparent).
                    self._agg = hot
                    self.span = None
                    self.parent, self._prev, self._pid, self.status = parent, prev, pid, None
                    self.items = self.warnings = self.errors = 0
                    self.total = self._outcome = None
                    self._token = _current.set(self)
                    self._cpu0 = _cpu_ns()
                    self._t0 = t0 = _perf_ns()
                    self._last_activity = self._prog_t = t0 / 1e9
                    return self
            self._agg = None
            self.span = span = _span_prefix + str(next(_spans))
            self._sb = span.encode()
            self._qp = qp
            self.parent = parent
            self._prev = prev
            self._pid = pid
            self.status = self.total = self._outcome = self._figures = None
            self.items = self.warnings = self.errors = 0
            if _ctx:
                self._token = _current.set(self)
            else:
                self._token = None
                _current.set(self)
            try:
                self._tq = _tls.q  # this thread's name, JSON-quoted (see _thread_name)
            except AttributeError:
                self._tq = _thread_name()
            # The boundary itself, last (the monitor's own work above is not the phase's):
            # the exact peak so far folded into the phases already open (this one starts
            # from its own figure), then RSS (one pread) and CPU, or a reading < REUSE_NS old.
            if mon._hwm is not None:
                _fold_hwm()
            now = _perf_ns()
            st = mon._statm
            if st is None:
                rd = (now, _cpu_ns(), mon._rss)
                r = mon._reaped()
            else:
                rd = st.reading
                if now - rd[0] >= REUSE_NS:
                    cpu = _cpu_ns()
                    try:  # Statm.rss() inlined: this is the hot path
                        rss = int(_pread(st.fd, 128, 0).split(None, 2)[1]) * st.page
                    except (OSError, IndexError, ValueError):
                        rss = None
                    st.reading = rd = (now, cpu, rss)
                    now = _perf_ns()  # the pread lets other threads take the GIL: after it
                children = st.children  # a slot holding a C callable: LOAD_METHOD is generic
                ru = children()
                r = ru.ru_utime + ru.ru_stime
            # The start, after any read that may wait for the GIL: the duration's origin (the
            # start line's time is the wall clock's now less the time since: deferred_line).
            self._t0 = t0 = now
            self._rd = rd
            self.peak_rss = rd[2]
            # Children's CPU (mon._children_cpu() inlined but for its rare slow case).
            pub = mon._ccpu
            if pub is None:
                self._ccpu0 = r
            elif r == pub[0] or not pub[2]:
                self._ccpu0 = pub[1] + (r - pub[0])
            else:
                self._ccpu0 = mon._children_cpu()
            # Progress lines start after PROGRESS_EVERY_S.
            self._last_activity = self._prog_t = t0 / 1e9
            if p is not None:
                p._last_activity = self._last_activity  # a sub-phase is progress (stall rule)
            if _ctx and mon._sampler is not None:
                # Deferred: the end line stands for both if the phase ends first, or the
                # sampler writes it at its next tick if the phase is still running then (so a
                # running phase shows live and in a crashed log within one sample interval).
                self.pending = True
            else:
                self.pending = False
                run.writer.emit_fmt(*self.deferred_line())
            # Last, with every field set: the sampler thread reads the open phases.
            run.active[span] = self
        except Exception as exc:
            self._run.monitor.note_internal_error("phase enter", exc)
        return self

    # long: the hot path, inlined: a call layer per step would cost phase() ~5% (PERFORMANCE.md)
    def __exit__(
        self, et: Any, exc: BaseException | None, tb: Any, _ctx: bool = True
    ) -> Literal[False]:
        t1 = _perf_ns()
        try:
            run = self._run
            if self._pid != _pid:
                # A forked child leaving a phase its parent opened: not ours to end.
                if _ctx and self._token is not None:
                    _reset(self)
                return False
            hot = self._agg
            if hot is not None:
                run._finish_hot(self, hot, exc, t1, _cpu_ns())
                return False
            if self.status is not None or self.span is None:
                return False
            reason = None
            if exc is None:
                status = "completed"
                if self._outcome is not None:
                    status, reason = self._outcome
            elif _is_cancel(exc):
                status = "cancelled"
            else:
                status = "failed"
            mon = run.monitor
            # The end's reading: RSS and CPU, or one < REUSE_NS old and not older than the
            # start's (another thread may have put back an older one since).
            rd = self._rd
            st = mon._statm
            if st is None:
                end = (t1, _cpu_ns(), mon._rss)
                r = mon._reaped()
            else:
                end = st.reading
                if t1 - end[0] >= REUSE_NS or end[0] < rd[0]:
                    cpu = _cpu_ns()
                    try:
                        rss = int(_pread(st.fd, 128, 0).split(None, 2)[1]) * st.page
                    except (OSError, IndexError, ValueError):
                        rss = None
                    st.reading = end = (t1, cpu, rss)
                children = st.children
                ru = children()
                r = ru.ru_utime + ru.ru_stime
            pub = mon._ccpu
            if pub is None:
                ccpu = r - self._ccpu0
            elif r == pub[0] or not pub[2]:
                ccpu = pub[1] + (r - pub[0]) - self._ccpu0
            else:
                ccpu = mon._children_cpu() - self._ccpu0
            if mon._hwm is not None:
                _fold_hwm()  # into every open phase, this one included, then reset
            self.status = status
            run.active.pop(self.span, None)
            if self._hot:
                for hot in self._hot.values():
                    run._flush_hot(hot)
                self._hot = None
            if _ctx:
                try:
                    # The explicit form's None raises TypeError, handled as any foreign token
                    # (no test here: hot path); hence the ignore, not a stub error.
                    _current.reset(self._token)  # type: ignore[arg-type]
                except (ValueError, RuntimeError, TypeError):
                    _current.set(self._prev)  # exited in another context than it entered
            elif _current.get() is self:
                _current.set(self._prev)
            # The optional members (rare: a few tests when there are none).
            if (
                exc is not None
                or self.items
                or self.total is not None
                or self.warnings
                or self.errors
                or self._counts
                or self.attempt is not None
                or reason is not None
            ):
                ex = self._end_extra(exc, reason, mon)
            else:
                ex = b""
            d = (t1 - self._t0) / 1e6
            us = _wall_ns() // 1000
            sec = _second
            if not 0 <= us - sec[0] < 1_000_000:
                sec = _new_second(us)
            rss = end[2]
            r0 = rd[2]
            if self._figures is None and rss is not None and r0 is not None:
                # Two readings of different threads may be a few us out of order: never < 0.
                cpu = end[1] - rd[1]
                peak = self.peak_rss
                if peak is None or rss > peak:
                    peak = rss
                args: tuple[Any, ...] = (
                    self._sb, self._qkey, self._qname, self._qp, _STATUS[status], d,
                    cpu / 1e6 if cpu > 0 else 0.0,
                    b',"children_cpu_ms":%.3f' % (ccpu * 1000) if ccpu > 0 else b"",
                    rss, peak, r0, mon._peak_method, ex, self._tq,
                    self._meta_member() if self.meta else b"",
                )  # fmt: skip
                run.writer.emit_end(self, _END, _END_WHOLE, sec[1], us - sec[0], args)
            else:
                args = (
                    self._sb, self._qkey, self._qname, self._qp, _STATUS[status], d,
                    self._end_figures(end, ccpu, mon), ex, self._tq, self._meta_member(),
                )  # fmt: skip
                run.writer.emit_end(self, _END_ANY, _END_ANY_WHOLE, sec[1], us - sec[0], args)
            ev = run.evaluator
            # Outcome rules run here, so a failed phase's alert is written before the host's
            # exception propagates; a completed, clean phase costs only this test.
            if ev is not None and (
                status != "completed"
                or ev.gate_always
                or (self.errors and ev.gate_errors)
                or (self.warnings and ev.gate_warnings)
            ):
                run._alerts(
                    ev.phase_end(
                        _wall(),
                        self.span,
                        self.key,
                        status,
                        (t1 - self._t0) / 1e6,
                        self.errors,
                        self.warnings,
                        self.items,
                    )
                )
        except Exception as e:
            self._run.monitor.note_internal_error("phase exit", e)
        return False  # the host's exception propagates unchanged

    # -- the rare parts of the two lines (off the hot path) -------------------------------
    def deferred_line(self) -> tuple[bytes, bytes, int, tuple[Any, ...]]:
        """The start line, as ``LogWriter.emit_fmt`` takes it (public: ``emit_deferred``
        calls it). Its time is the wall clock's now less the monotonic time since the start,
        as a phase written whole starts at its end's time less its duration."""
        us = _wall_ns() // 1000 - (_perf_ns() - self._t0) // 1000
        start, prefix = _second_of(us)
        ab = b"" if self.attempt is None else b',"attempt":%d' % int(self.attempt)
        args = (self._sb, self._qkey, self._qname, self._qp, self._tq, self._meta_member(), ab)
        return _START, prefix, us - start, args

    def _meta_member(self) -> bytes:
        """The start's ``meta`` member, redacted, or nothing."""
        if not self.meta:
            return b""
        meta = self._run.monitor.redactor.redact_obj(self.meta)
        return (',"meta":' + dumps(meta)).encode("ascii")

    def _end_figures(self, end: tuple[int, int, int | None], ccpu: float, mon: Monitor) -> bytes:
        """The end line's figures when they are not all there (_END's common case)."""
        if self._figures is not None:
            return self._figures.encode("ascii")  # measured elsewhere (``run``: the command's)
        rd = self._rd
        cpu = end[1] - rd[1]
        body = f',"cpu_ms":{cpu / 1e6 if cpu > 0 else 0.0:.3f}'
        if ccpu > 0:
            body += f',"children_cpu_ms":{ccpu * 1000:.3f}'
        rss = end[2]
        if rss is None:
            return body.encode("ascii")
        peak = self.peak_rss
        if peak is None or rss > peak:
            peak = rss
        body += f',"rss_bytes":{rss},"peak_rss_bytes":{peak}'
        if rd[2] is not None:
            body += f',"rss_start_bytes":{rd[2]}'
        return body.encode("ascii") + mon._peak_method

    def _end_extra(self, exc: BaseException | None, reason: Any, mon: Monitor) -> bytes:
        """The end line's optional members, in their order: items, total, warnings, errors,
        counts, error, attempt, reason."""
        body = ""
        if self.items:
            body += f',"items":{self.items}'
        if self.total is not None:
            body += f',"total":{self.total}'
        if self.warnings:
            body += f',"warnings":{self.warnings}'
        if self.errors:
            body += f',"errors":{self.errors}'
        if self._counts:
            body += _counts_member(self._counts)
            self._counts = None
        if exc is not None:
            body += ',"error":' + dumps(_format_error(exc, mon.redactor))
        if self.attempt is not None:
            body += f',"attempt":{int(self.attempt)}'
        if reason is not None:
            body += ',"reason":' + quote(clip(str(reason), E.MESSAGE_LIMIT))
        return body.encode("ascii")

    async def __aenter__(self) -> Phase:
        return self.__enter__()

    async def __aexit__(self, et: Any, exc: BaseException | None, tb: Any) -> bool:
        return self.__exit__(et, exc, tb)

    # -- decorator ----------------------------------------------------------------------
    def __call__(self, fn: F) -> F:
        run, key, name, meta, parent = self._run, self.key, self.name, self.meta, self._parent_arg
        q = (self._qkey, self._qname)
        attempt = self.attempt
        detail = self._detail
        code = getattr(fn, "__code__", None)
        # CO_COROUTINE | CO_ITERABLE_COROUTINE, read from the code object so that we do
        # not import inspect or asyncio (tens of ms) just to decorate a function.
        import functools

        if code is not None and code.co_flags & 0x180:

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                async with Phase(run, key, name, meta, parent, q, attempt, detail):
                    return await fn(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with Phase(run, key, name, meta, parent, q, attempt, detail):
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    # -- the handle -----------------------------------------------------------------------
    def add_items(self, n: int = 1) -> None:
        """Count ``n`` more items processed (progress and items/s)."""
        try:
            self.items += int(n)
            t = time.perf_counter()
            self._last_activity = t
            if t - self._prog_t >= PROGRESS_EVERY_S and self.span is not None:
                self._prog_t = t
                self._run._progress(self)
        except Exception as exc:
            self._run.monitor.note_internal_error("add_items", exc)

    def set_total(self, n: int) -> None:
        """Declare how many items this phase will process (progress % and ETA)."""
        try:
            self.total = int(n)
            self._last_activity = self._prog_t = time.perf_counter()
            if self.span is not None:
                self._run._progress(self)
        except Exception as exc:
            self._run.monitor.note_internal_error("set_total", exc)

    def artifact(self, path: str | os.PathLike[str], **meta: Any) -> None:
        """Record an output file; its size is recorded when the file exists."""
        self._run._artifact(path, self, meta)

    def metric(self, name: str, value: float, **meta: Any) -> None:
        """Record a custom metric value, attributed to this phase."""
        self._run._metric(name, value, self, meta)

    def count(self, name: str, n: float = 1) -> None:
        """Add ``n`` (>= 0) to the counter ``name``: summed over the phase, the run and its
        processes (``/metrics``: a Prometheus counter). Cheap enough for a loop: the
        running totals are written at most every 0.5 s per name and with the phase's end
        (``count`` events, ``counts`` in ``phase_end``)."""
        try:
            h: Phase | None = self
            while h is not None and h.span is None and h._agg is not None:
                h = h._agg.owner  # an aggregated hot-loop call: its parent counts
            if h is None or h.span is None or h.status is not None or h._pid != _pid:
                self._run._count(name, n, None)
                return
            c = h._counts
            if c is None:
                c = h._counts = {}
            ent = c.get(name)
            if ent is None:
                _check_count(n)
                ent = c[name] = [0, 0, self._run._count_name(name), time.perf_counter()]
            elif (type(n) is not int and type(n) is not float) or not n >= 0:
                _check_count(n)
            ent[0] += n
            ent[1] += n
            t = time.perf_counter()
            if t - ent[3] >= PROGRESS_EVERY_S:
                ent[3] = t
                self._run._count_flush(h, ent)
        except Exception as exc:
            self._run.monitor.note_internal_error("count", exc)

    def skip(self, reason: str | None = None) -> None:
        """End this phase as ``skipped`` (not run: nothing to do, a condition not met) when
        its block exits normally. Skipped phases are kept out of duration statistics."""
        self._outcome = ("skipped", reason)

    def cached(self, reason: str | None = None) -> None:
        """End this phase as ``cached`` (its result was reused) when its block exits
        normally. Cached phases are kept out of duration statistics."""
        self._outcome = ("cached", reason)

    def warning(self, msg: str) -> None:
        """Record a warning attributed to this phase."""
        self._run.log("warning", msg, self, "api")

    def error(self, msg: str) -> None:
        """Record an error attributed to this phase (the phase itself goes on)."""
        self._run.log("error", msg, self, "api")

    def use_figures(
        self,
        cpu_ms: float | None,
        peak_rss_bytes: int | None = None,
        max_rss_bytes: int | None = None,
        source: str = "wait4",
    ) -> None:
        """Record these figures at the phase's end instead of this process's own: a phase
        that stands for another process (``run -- CMD``: the command's ``wait4`` rusage and
        its tree's sampled peak). ``peak_rss_bytes`` is the tree's peak, ``max_rss_bytes``
        the largest single process's."""
        body = ""
        if cpu_ms is not None:
            body += f',"cpu_ms":{float(cpu_ms):.3f}'
        if peak_rss_bytes is not None:
            body += f',"peak_rss_bytes":{int(peak_rss_bytes)}'
        if max_rss_bytes is not None:
            body += f',"max_rss_bytes":{int(max_rss_bytes)}'
        self._figures = body + f',"figures_source":{quote(source)},"peak_rss_method":"tree_sampled"'

    @property
    def run(self) -> Run:
        """The run this phase belongs to."""
        return self._run

    @property
    def elapsed_s(self) -> float:
        """Seconds since the phase started (0 before it starts)."""
        t0 = getattr(self, "_t0", 0)  # unset until the phase is entered
        return (_perf_ns() - t0) / 1e9 if t0 else 0.0

    def __repr__(self) -> str:
        return f"<Phase {self.key!r} span={self.span} status={self.status or 'open'}>"


def _check_detail(detail: Any) -> str | None:
    if detail is not None and detail not in DETAILS:
        raise ValueError(f"detail must be one of {', '.join(DETAILS)}, not {detail!r}")
    return detail  # type: ignore[no-any-return]


def _check_attempt(attempt: Any) -> int | None:
    if attempt is not None and (type(attempt) is not int or attempt < 1):
        raise ValueError(f"attempt must be a positive integer, not {attempt!r}")
    return attempt


class Attempts:
    """Iterator of retry attempts; each item is a context manager recording one attempt."""

    def __init__(
        self,
        run: Run,
        key: str,
        attempts: int,
        name: str | None,
        retry_on: type[BaseException] | tuple[type[BaseException], ...],
        backoff: float,
        meta: Mapping[str, Any] | None,
    ) -> None:
        if type(attempts) is not int or attempts < 1:
            raise ValueError(f"attempts must be a positive integer, not {attempts!r}")
        if backoff < 0:
            raise ValueError(f"backoff must not be negative, not {backoff!r}")
        self._run, self._key, self._n, self._name = run, key, attempts, name
        self._retry_on, self._backoff, self._meta = retry_on, backoff, meta
        self._i = 0
        self._done = False

    def __iter__(self) -> Attempts:
        return self

    def __next__(self) -> _Attempt:
        if self._done or self._i >= self._n:
            raise StopIteration
        if self._i and self._backoff:
            time.sleep(self._backoff * 2 ** (self._i - 1))
        self._i += 1
        return _Attempt(self, self._i)


class _Attempt:
    def __init__(self, owner: Attempts, n: int) -> None:
        self._owner = owner
        self._phase = Phase(owner._run, owner._key, owner._name, owner._meta, None, None, n)

    def __enter__(self) -> Phase:
        return self._phase.__enter__()

    def __exit__(self, et: Any, exc: BaseException | None, tb: Any) -> bool:
        self._phase.__exit__(et, exc, tb)
        o = self._owner
        if exc is None:
            o._done = True
            return False
        # Swallow a retryable failure while attempts remain; the last one propagates.
        return isinstance(exc, o._retry_on) and self._phase.attempt < o._n  # type: ignore[operator]


class Run:
    """One run: the unit a log, a report and a dashboard page describe.

    The owner process writes ``run_start``/``run_end``; a process that joins the run (a
    worker) writes ``process_start``/``process_end`` and never ends it.
    """

    def __init__(
        self,
        monitor: Monitor,
        run_id: str,
        path: str,
        *,
        name: str | None = None,
        meta: Mapping[str, Any] | None = None,
        plan: list[dict[str, Any]] | None = None,
        owner: bool = True,
        tags: Mapping[str, str] | None = None,
        resumed: dict[str, Any] | None = None,
        lenient: bool = False,
    ) -> None:
        self.monitor = monitor
        self.tags = dict(tags) if tags else {}
        self._resumed = resumed
        self.id = run_id
        self.name = name or run_id
        self.meta = dict(meta) if meta else {}
        self.plan = plan or []
        self.owner = owner
        self.writer = LogWriter(
            path,
            run_id,
            monitor.max_bytes,
            lenient=lenient,
            mode=monitor.file_mode,
            trust=monitor.trust_dir,
        )
        self.active: dict[str, Phase] = {}
        self._explicit: dict[str, list[Phase]] = {}
        self._explicit_done: set[str] = set()
        self.live = False  # run_start / process_start written
        self.ended = False
        # From end() until run_end is written: still sampled, so the sampler's final
        # reading (taken as the main run ends) lands in this run's log.
        self.winding_down = False
        self.status: str | None = None
        self._t0 = 0
        self._env_saved: dict[str, str | None] | None = None
        self.evaluator: Evaluator | None = None  # an owned run's, when it has rules
        self._ackwatch: AckWatch | None = None  # acknowledgements other processes append
        self._hot_top: dict[str, _Hot] = {}  # hot-loop tables of top-level phases

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> Run:
        """Write ``run_start`` (or ``process_start`` for a joined run). Idempotent."""
        try:
            if not self.live and not self.ended:
                self._announce()
        except Exception as exc:
            self.monitor.note_internal_error("run start", exc)
        return self

    def _announce(self) -> None:
        self.live = True
        _run_live()
        self._t0 = _perf_ns()
        mon = self.monitor
        red = mon.redactor
        common = {
            "host": mon.host,
            "argv": red.redact_obj(list(sys.argv)),
            "pid_start": mon._pid_start(),
        }
        if self.owner and self._resumed is not None:
            last = self._resumed.get("last_ts")
            self.emit(
                E.RESUMED,
                {
                    "prev_pid": self._resumed.get("prev_pid"),
                    "gap_s": round(_wall() - last, 3) if isinstance(last, (int, float)) else None,
                    **common,
                },
            )
            if self is mon._main:
                self._env_saved = {k: os.environ.get(k) for k in (ENV_LOG, ENV_RUN)}
                os.environ[ENV_LOG] = self.path
                os.environ[ENV_RUN] = self.id
        elif self.owner:
            fields: dict[str, Any] = {
                "v": E.SCHEMA_VERSION,
                "name": red.redact(self.name),
                **common,
                "python": sys.version.split()[0],
                "cwd": red.redact(os.getcwd()),
                "plan": self.plan,
                "meta": red.redact_obj(self.meta),
                "tags": self.tags,
                "limits": _limits_fields(mon.limits),
                "sample_interval": mon.sample_interval,
                "ncpu": os.cpu_count(),
            }
            self.emit(E.RUN_START, fields)
            if self is mon._main:
                self._env_saved = {k: os.environ.get(k) for k in (ENV_LOG, ENV_RUN)}
                os.environ[ENV_LOG] = self.path
                os.environ[ENV_RUN] = self.id
        else:
            self.emit(E.PROCESS_START, {"ppid": os.getppid(), **common})
        mon._run_started(self)

    def end(
        self,
        status: str = E.COMPLETED,
        error: BaseException | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """Write ``run_end`` (``process_end`` for a joined run). Idempotent. ``extra``
        adds fields (``run`` records the command's ``exit_code`` and ``signal``)."""
        try:
            if self.ended:
                return
            if not self.live:
                self._announce()
            # The run's duration ends here: the monitor's own winding down (the final sample,
            # the notifications' bounded wait, the OTLP flush) is not the pipeline's time.
            duration_ms = round((_perf_ns() - self._t0) / 1e6, 3)
            self.ended = True
            _run_over()
            self.status = status
            mon = self.monitor
            self.winding_down = True
            mon._run_ending(self)
            fields: dict[str, Any] = {"status": status}
            fields["duration_ms"] = duration_ms
            if error is not None:
                fields["error"] = _format_error(error, mon.redactor)
            if extra:
                fields.update(extra)
            for h in list(self.active.values()):
                if h.pending:
                    self.writer.emit_deferred(h)
                for hot in (h._hot or {}).values():
                    self._flush_hot(hot)
            for hot in self._hot_top.values():
                self._flush_hot(hot)
            if self.evaluator is not None:
                self._alerts(self.evaluator.finish())
            mon._run_flushing(self)  # after the last alerts: they are notified (or counted)
            if self._ackwatch is not None:
                self._ackwatch.close()  # its descriptor on the log
            if self.owner:
                open_spans = list(self.active)
                if open_spans:
                    fields["open_spans"] = open_spans
                fields["counters"] = self.health()
                self.emit(E.RUN_END, fields)
                mon._catalog_run(self)
            else:
                self.emit(E.PROCESS_END, fields)
            self.winding_down = False
            self.writer.release()  # no descriptor held per finished run
            if self._env_saved is not None:
                for k, v in self._env_saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
                self._env_saved = None
        except Exception as exc:
            self.winding_down = False
            self.monitor.note_internal_error("run end", exc)

    def __enter__(self) -> Run:
        return self.start()

    def __exit__(self, et: Any, exc: BaseException | None, tb: Any) -> Literal[False]:
        if exc is None:
            self.end(E.COMPLETED)
        elif _is_cancel(exc) and not isinstance(exc, SystemExit):
            self.end(E.CANCELLED, exc)
        elif isinstance(exc, SystemExit) and exc.code in (0, None):
            self.end(E.COMPLETED)
        else:
            self.end(E.FAILED, exc)
        return False

    @property
    def path(self) -> str:
        """The log file being written (the latest part once rotated at ``max_bytes``)."""
        return self.writer.path

    def environ(self) -> dict[str, str]:
        """Environment variables that make a child process join this run."""
        return {ENV_LOG: self.path, ENV_RUN: self.id}

    def health(self) -> dict[str, Any]:
        h: dict[str, Any] = dict(self.writer.health())
        h.update(self.monitor._health())
        return h

    # -- phases -------------------------------------------------------------------------
    def phase(
        self,
        key: str,
        name: str | None = None,
        *,
        meta: Mapping[str, Any] | None = None,
        parent: Phase | str | None = None,
        attempt: int | None = None,
        detail: str | None = None,
    ) -> Phase:
        """A phase of this run: ``with``, ``async with``, or ``@decorator``. ``attempt``
        numbers a retry (the phase's outcome is its last attempt); ``detail`` overrides the
        monitor's recording detail for this key ("auto", "all", "aggregate")."""
        return Phase(
            self,
            check_key(key),
            name,
            meta,
            parent,
            None,
            _check_attempt(attempt),
            _check_detail(detail),
        )

    def attempts(
        self,
        key: str,
        attempts: int,
        name: str | None = None,
        *,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] = Exception,
        backoff: float = 0.0,
        meta: Mapping[str, Any] | None = None,
    ) -> Attempts:
        """Retry a block: ``for attempt in run.attempts("P03", 3): with attempt as p: ...``.
        Each attempt is recorded as a phase with ``attempt`` = 1, 2, ...; a failure of an
        attempt but the last is recorded and swallowed, the last one's propagates."""
        return Attempts(self, check_key(key), attempts, name, retry_on, backoff, meta)

    def retry(
        self,
        key: str,
        attempts: int,
        name: str | None = None,
        *,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] = Exception,
        backoff: float = 0.0,
    ) -> Callable[[F], F]:
        """Decorator form of ``attempts`` for plain functions."""
        check_key(key)

        def deco(fn: F) -> F:
            import functools

            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                for attempt in self.attempts(
                    key, attempts, name, retry_on=retry_on, backoff=backoff
                ):
                    with attempt:
                        return fn(*args, **kwargs)
                raise AssertionError("unreachable: the last attempt re-raises")  # pragma: no cover

            return wrapper  # type: ignore[return-value]

        return deco

    def skip_phase(self, key: str, reason: str | None = None, name: str | None = None) -> None:
        """Record a planned phase as skipped without running anything."""
        with Phase(self, check_key(key), name) as p:
            p.skip(reason)

    def start_phase(
        self,
        key: str,
        name: str | None = None,
        *,
        meta: Mapping[str, Any] | None = None,
        parent: Phase | str | None = None,
    ) -> Phase:
        """Start a phase without a ``with`` block (orchestrators). Returns its handle."""
        h = Phase(self, check_key(key), name, meta, parent)
        h.__enter__(False)
        with self.monitor._lock:
            self._explicit.setdefault(key, []).append(h)
            self._explicit_done.discard(key)
        return h

    def _take_explicit(self, phase: Phase | str, verb: str) -> Phase:
        if isinstance(phase, Phase):
            key = phase.key
        else:
            key = check_key(phase)
        with self.monitor._lock:
            stack = self._explicit.get(key)
            if not stack:
                if key in self._explicit_done:
                    raise ValueError(f"cannot {verb} phase {key!r}: it was already completed")
                raise ValueError(f"cannot {verb} phase {key!r}: it was never started")
            if isinstance(phase, Phase):
                if phase not in stack:
                    raise ValueError(f"cannot {verb} phase {key!r}: this handle is not open")
                stack.remove(phase)
                h = phase
            else:
                h = stack.pop()
            if not stack:
                del self._explicit[key]
                self._explicit_done.add(key)
        return h

    def complete_phase(
        self,
        phase: Phase | str,
        *,
        artifacts: Iterable[str | os.PathLike[str]] = (),
        metrics: Mapping[str, float] | None = None,
        items: int | None = None,
    ) -> None:
        """Complete a phase started with ``start_phase`` (by key or handle)."""
        h = self._take_explicit(phase, "complete")
        try:
            for a in artifacts:
                self._artifact(a, h, {})
            for k, v in (metrics or {}).items():
                self._metric(k, v, h, {})
            if items is not None:
                h.items += int(items)
            h.__exit__(None, None, None, False)
        except Exception as exc:
            self.monitor.note_internal_error("complete_phase", exc)

    def fail_phase(self, phase: Phase | str, error: BaseException | str) -> None:
        """Mark a phase started with ``start_phase`` failed."""
        h = self._take_explicit(phase, "fail")
        try:
            exc = error if isinstance(error, BaseException) else RuntimeError(str(error))
            h.__exit__(type(exc), exc, None, False)
        except Exception as e:
            self.monitor.note_internal_error("fail_phase", e)

    # -- recording internals (hot path) -------------------------------------------------
    def _finish_hot(
        self, h: Phase, hot: _Hot, exc: BaseException | None, t1: int, cpu1: int
    ) -> None:
        h._agg = None
        if exc is None:
            status = h._outcome[0] if h._outcome is not None else "completed"
        elif _is_cancel(exc):
            status = "cancelled"
        else:
            status = "failed"
        h.status = status
        _reset(h)
        ms = (t1 - h._t0) / 1e6
        hot.count += 1
        if status == "completed":
            hot.completed += 1
        elif status == "failed":
            hot.failed += 1
        elif status == "cancelled":
            hot.cancelled += 1
        elif status == "skipped":
            hot.skipped += 1
        else:
            hot.cached += 1
        if status not in ("skipped", "cached"):
            hot.total_ms += ms
            hot.cpu_ms += (cpu1 - h._cpu0) / 1e6
            if hot.min_ms is None or ms < hot.min_ms:
                hot.min_ms = ms
            if hot.max_ms is None or ms > hot.max_ms:
                hot.max_ms = ms
            hot.items += h.items  # as state.KeyAgg.add: a call that did not run adds none
        hot.errors += h.errors
        if hot.first_ts is None:
            hot.first_ts = _wall()
        if t1 / 1e9 - hot.flushed >= AGGREGATE_FLUSH_S:
            self._flush_hot(hot)
        if status == "failed" and self.evaluator is not None:
            self._alerts(self.evaluator.phase_end(_wall(), "", h.key, status, ms, h.errors))

    def _flush_hot(self, hot: _Hot) -> None:
        """Write what an aggregated key summed since its last aggregate event."""
        hot.flushed = time.perf_counter()
        if not hot.count:
            return
        owner = hot.owner
        if owner is not None and owner.pending:
            self.writer.emit_deferred(owner)  # the parent's start line comes first
        fields = {
            "phase": hot.key, "name": hot.name, "parent": hot.parent, "count": hot.count,
            "completed": hot.completed, "failed": hot.failed, "cancelled": hot.cancelled,
            "skipped": hot.skipped, "cached": hot.cached, "total_ms": round(hot.total_ms, 3),
            "min_ms": None if hot.min_ms is None else round(hot.min_ms, 3),
            "max_ms": None if hot.max_ms is None else round(hot.max_ms, 3),
            "cpu_ms": round(hot.cpu_ms, 3), "items": hot.items, "errors": hot.errors,
            "first_ts": hot.first_ts,
        }  # fmt: skip
        hot._reset()
        hot.first_ts = None
        self.emit(E.AGGREGATE, fields)

    def _progress(self, h: Phase) -> None:
        if h.pending:
            self.writer.emit_deferred(h)
        body = f',"span":"{h.span}","phase":{h._qkey.decode()},"items":{h.items}'
        if h.total is not None:
            body += f',"total":{h.total}'
        self.writer.emit(E.PROGRESS, _wall(), body)

    def attach_alerting(self, evaluator: Evaluator | None, ackwatch: AckWatch | None) -> None:
        """Give this run its alert evaluator (``alerts.Evaluator``) and the watch that brings
        it acknowledgements other processes append (``ack.AckWatch``, closed at run end)."""
        self.evaluator = evaluator
        self._ackwatch = ackwatch

    def _target(self, h: Phase | None) -> Phase | None:
        if h is None:
            h = _current.get()
        if h is not None and (h._run is not self or h._pid != _pid):
            return None
        return h

    def _event(self, ev: str, fields: dict[str, Any], h: Phase | None) -> None:
        if h is not None and h.span is not None:
            if h.pending:
                self.writer.emit_deferred(h)
            fields["span"] = h.span
            fields["phase"] = h.key
            h._last_activity = time.perf_counter()
        self.emit(ev, fields)

    # -- what the sampler, log capture and alerting use (the run's public method set) -------
    def emit(self, ev: str, fields: dict[str, Any]) -> None:
        """Write one event of kind ``ev`` with ``fields`` (announcing the run first if it is
        not live yet). The sampler writes its ``sample`` events through this."""
        if not self.live and ev not in (E.RUN_START, E.PROCESS_START):
            self.start()
        self.writer.emit(ev, _wall(), E.members(fields))

    def log(self, level: str, msg: Any, h: Phase | None, source: str, **extra: Any) -> None:
        """Write a ``log`` event (redacted, clipped) counted on phase ``h`` (or the current
        phase when it belongs to this run); ``source`` says where it came from (``api``,
        ``logging``, ``warnings``, ``monitor``). Never raises."""
        try:
            h = self._target(h)
            if h is not None:
                if level == "error":
                    h.errors += 1
                else:
                    h.warnings += 1
            text = msg if isinstance(msg, str) else str(msg)
            text = self.monitor.redactor.redact(text)
            fields: dict[str, Any] = {"level": level, "msg": clip(text, E.MESSAGE_LIMIT)}
            fields["source"] = source
            fields.update(extra)
            self._event(E.LOG, fields, h)
        except Exception as exc:
            self.monitor.note_internal_error("log", exc)

    def _artifact(self, path: Any, h: Phase | None, meta: Mapping[str, Any]) -> None:
        try:
            h = self._target(h)
            p = os.fspath(path)
            text = p if isinstance(p, str) else p.decode(errors="replace")
            fields: dict[str, Any] = {"path": self.monitor.redactor.redact(text)}
            try:
                st = os.stat(p)
                fields["bytes"] = st.st_size
            except OSError:
                fields["exists"] = False
            if meta:
                fields["meta"] = self.monitor.redactor.redact_obj(dict(meta))
            self._event(E.ARTIFACT, fields, h)
        except Exception as exc:
            self.monitor.note_internal_error("artifact", exc)

    def _metric(self, name: Any, value: Any, h: Phase | None, meta: Mapping[str, Any]) -> None:
        try:
            h = self._target(h)
            fields: dict[str, Any] = {"name": self.monitor.redactor.redact(str(name))}
            v = E.number(value)
            fields["value"] = None if v == "null" else (int(v) if type(value) is int else float(v))
            if meta:
                fields["meta"] = self.monitor.redactor.redact_obj(dict(meta))
            self._event(E.METRIC, fields, h)
        except Exception as exc:
            self.monitor.note_internal_error("metric", exc)

    def _count_name(self, name: Any) -> str:
        """A counter's name, redacted and JSON-quoted (once per name and phase)."""
        return quote(clip(self.monitor.redactor.redact(str(name)), 200))

    def _count_flush(self, h: Phase, ent: list[Any]) -> None:
        """Write a phase counter's increment since its last ``count`` event."""
        inc = ent[1]
        if not inc:
            return
        ent[1] = 0
        if h.pending:
            self.writer.emit_deferred(h)  # the phase's start line comes first
        key = h._qkey.decode()
        body = f',"name":{ent[2]},"inc":{E.number(inc)},"span":"{h.span}","phase":{key}'
        self.writer.emit(E.COUNT, _wall(), body)

    def _count(self, name: Any, n: Any, h: Phase | None) -> None:
        """A run-level increment (no phase of this run is current): one event now."""
        try:
            h = self._target(h)
            if h is not None and h.span is not None and h.status is None:
                h.count(name, n)
                return
            _check_count(n)
            if not self.live:
                self.start()
            body = f',"name":{self._count_name(name)},"inc":{E.number(n)}'
            self.writer.emit(E.COUNT, _wall(), body)
        except Exception as exc:
            self.monitor.note_internal_error("count", exc)

    # -- module-level-style conveniences ------------------------------------------------
    def artifact(self, path: str | os.PathLike[str], **meta: Any) -> None:
        """Record an artifact of the active phase (or of the run)."""
        self._artifact(path, None, meta)

    def count(self, name: str, n: float = 1) -> None:
        """Add ``n`` to a counter of the active phase (or of the run)."""
        self._count(name, n, None)

    def metric(self, name: str, value: float, **meta: Any) -> None:
        """Record a metric of the active phase (or of the run)."""
        self._metric(name, value, None, meta)

    def warning(self, msg: str) -> None:
        self.log("warning", msg, None, "api")

    def error(self, msg: str) -> None:
        self.log("error", msg, None, "api")

    def snapshot(self) -> dict[str, Any]:
        """The JSON-ready view of this run (``docs/FORMAT.md``)."""
        return self.monitor.snapshot(self.id)

    # -- alerts -------------------------------------------------------------------------
    def _alerts(self, alerts: list[dict[str, Any]]) -> None:
        """Write alert events and hand them to the notifiers."""
        notifier = self.monitor._notifier
        for a in alerts:
            self.emit(E.ALERT, a)
            if notifier is not None:
                notifier.submit(
                    {
                        "source": "atroz_monitor",
                        "run": self.id,
                        "run_name": self.name,
                        "host": self.monitor.host,
                        "alert": a,
                    }
                )

    def open_phases(self, before_ns: int) -> list[Phase]:
        """The phases open in this run that were entered before ``before_ns``
        (``perf_counter_ns``), their deferred start lines written: the phases a reading
        taken at that time covers (one entered during the reading must not take it)."""
        active = [h for h in list(self.active.values()) if h._t0 <= before_ns]
        for h in active:
            if h.pending:  # a start line still deferred: it is written now
                self.writer.emit_deferred(h)
        return active

    def note_oom_kills(self, n: int) -> None:
        """The OOM killer ended processes in this run's cgroup: an error log and a critical
        alert (one episode per kill, never rate-limited away)."""
        self._oom_seen = getattr(self, "_oom_seen", 0) + n
        msg = f"the OOM killer ended {n} process(es) in this run's cgroup (memory limit reached)"
        self.log("error", msg, None, "monitor")
        self._alerts(
            [{"alert": f"oom_kill:run:{self._oom_seen}", "rule": "oom_kill", "type": "oom_kill",
              "severity": "critical", "state": "raised", "scope": "run", "phase": None,
              "span": None, "value": n, "threshold": 0, "unit": "kills", "msg": msg}]
        )  # fmt: skip

    def sample_alerts(self, fields: Mapping[str, Any], active: list[Phase]) -> None:
        """Resource, stall and throughput rules on the sampler thread."""
        ev = self.evaluator
        if ev is None:
            return
        if self._ackwatch is not None:
            self._ackwatch.poll()  # at most once a second, only the bytes appended since
        now = _wall()
        act: list[Any] = []
        if ev.wants_active and active:
            perf = _perf_ns() / 1e9
            Active = ev.Active  # the class, held by the evaluator: no import on every tick
            act = [
                Active(
                    h.span,
                    h.key,
                    now - (perf - h._t0 / 1e9),
                    h.items,
                    now - (perf - h._last_activity),
                )
                for h in active
                if h.span is not None and h.status is None
            ]
        alerts = ev.sample(now, fields, act)
        if alerts:
            self._alerts(alerts)


def _exists(pid: int) -> bool:
    """Whether ``pid`` is still ours to wait for (alive or a zombie, not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


_hwm_lock = _thread.allocate_lock()


def _fold_hwm() -> None:
    """Fold the exact peak since the last reset into every open phase of every monitor
    that keeps exact peaks, then reset it: each reset is preceded by a fold, so every open
    phase sees every moment of its life (the high-water mark is one per process)."""
    with _hwm_lock:
        marks = [(m, m._hwm) for m in list(_monitors) if m._hwm is not None]
        if not marks:
            return
        v = marks[0][1].take()
        if v is None:
            return
        for m, _ in marks:
            for run in list(m._runs.values()):
                for h in list(run.active.values()):
                    if h.peak_rss is None or v > h.peak_rss:
                        h.peak_rss = v


def _reset(h: Phase) -> None:
    tok = h._token
    h._token = None
    try:
        _current.reset(tok)  # type: ignore[arg-type]  # None raises TypeError, handled below
    except (ValueError, RuntimeError, TypeError):
        # Exited in another context than it entered (a generator, a task switch):
        # fall back to restoring the phase that was current on entry.
        _current.set(h._prev)


DIR_MODE = 0o700
"""Run directories are private by default, as the logs in them are."""


def _check_log_dir(d: str) -> None:
    """Refuse a log directory another user controls: one they own (or a link to one they
    planted), or one anyone may write without the sticky bit. Either lets them replace,
    redirect or delete the logs (a symlink at the next rotation part, a swapped file)."""
    try:
        link, st = os.lstat(d), os.stat(d)
    except OSError:
        return  # a missing parent: opening the log reports it
    trusted = (os.geteuid(), 0)  # root could read it anyway (ssh's StrictModes rule)
    problem = None
    if stat.S_ISLNK(link.st_mode) and link.st_uid not in trusted:
        problem = f"it is a symbolic link another user (uid {link.st_uid}) owns"
    elif st.st_uid not in trusted:
        problem = f"it belongs to another user (uid {st.st_uid})"
    elif st.st_mode & stat.S_IWOTH and not st.st_mode & stat.S_ISVTX:
        problem = f"anyone may write to it (mode {stat.S_IMODE(st.st_mode):04o}, no sticky bit)"
    if problem is not None:
        raise UnsafeLogError(
            13,
            f"refusing the log directory {d!r}: {problem}, so another user could read, "
            "replace or redirect its logs; use a directory of your own, or pass "
            "trust_dir=True to accept it",
        )


def _check_options(
    path: Any,
    sample_interval: Any,
    max_phases: Any,
    meta: Any,
    run_id: Any,
    detail: Any,
    aggregate_above: Any,
    max_bytes: Any,
    file_mode: Any,
    dir_mode: Any,
) -> None:
    """Monitor's own option checks: a clear ValueError for the first bad one."""
    from collections.abc import Mapping

    p = os.fspath(path)
    if not isinstance(p, str) or not p:
        raise ValueError(f"path must be a file or directory path, not {path!r}")
    if sample_interval is not None and (
        isinstance(sample_interval, bool)
        or not isinstance(sample_interval, (int, float))
        or not sample_interval > 0
        or sample_interval != sample_interval
    ):
        raise ValueError(
            f"sample_interval must be a positive number of seconds or None, not {sample_interval!r}"
        )
    if not isinstance(max_phases, int) or max_phases < 1:
        raise ValueError(f"max_phases must be a positive integer, not {max_phases!r}")
    if meta is not None and not isinstance(meta, Mapping):
        raise ValueError(f"meta must be a mapping, not {type(meta).__name__}")
    if run_id is not None and not valid_run_id(run_id):
        raise ValueError(f"run_id must match {_RUN_ID_PATTERN}: {run_id!r}")
    if detail not in DETAILS:
        raise ValueError(f"detail must be one of {', '.join(DETAILS)}, not {detail!r}")
    if type(aggregate_above) is not int or aggregate_above < 1:
        raise ValueError(f"aggregate_above must be a positive integer: {aggregate_above!r}")
    if max_bytes is not None and (type(max_bytes) is not int or max_bytes < 4096):
        raise ValueError(f"max_bytes must be an integer >= 4096, not {max_bytes!r}")
    for what, m, need in (("file_mode", file_mode, 0o600), ("dir_mode", dir_mode, 0o700)):
        if type(m) is not int or m & ~0o777 or m & need != need:
            raise ValueError(f"{what} must be permission bits including {need:#o}: {m!r}")


def _prepare_log_place(p: str, is_dir: bool, dir_mode: int, join: bool, trust: bool) -> None:
    """Create the run directory (or the log file's parent) and refuse one another user
    controls, unless trusted."""
    if is_dir:
        try:
            os.makedirs(p, mode=dir_mode, exist_ok=True)  # the umask still applies
        except OSError as exc:
            raise OSError(
                exc.errno, f"cannot create the run directory {p!r}: {exc.strerror}"
            ) from None
        if not os.access(p, os.W_OK | os.X_OK):
            raise PermissionError(f"the run directory {p!r} is not writable")
    elif not join:
        _make_parent(p, dir_mode)
    if not trust:
        _check_log_dir(p if is_dir else os.path.dirname(os.path.abspath(p)) or ".")


def _alert_rules(alert_rules: Iterable[Any] | None, join: bool) -> list[Any]:
    """The monitor's rules: the defaults (none for a joining process), or the given list of
    ``alerts.Rule`` and rule tables."""
    from collections.abc import Mapping

    from ..view.alerts import Rule, build_rule, default_rules

    if alert_rules is None:
        return [] if join else default_rules()
    if isinstance(alert_rules, (str, bytes, Mapping)):
        raise ValueError("alert_rules must be a list of rules (or [] for none)")
    return [
        r if isinstance(r, Rule) else build_rule(r, f"alert_rules[{i}]")
        for i, r in enumerate(alert_rules)
    ]


def _check_notify_wait(notify_wait: Any) -> float:
    if (
        isinstance(notify_wait, bool)
        or not isinstance(notify_wait, (int, float))
        or not 0 <= notify_wait <= 3600
    ):
        raise ValueError(f"notify_wait must be seconds between 0 and 3600, not {notify_wait!r}")
    return float(notify_wait)


def _notifier(
    webhook: str | None,
    on_alert: Callable[[dict[str, Any]], Any] | None,
    webhook_format: str,
    email: Mapping[str, Any] | None,
    public_url: str | None,
    notify_wait: float,
) -> Notifier | None:
    """The notifier for the alert settings, or None when nothing is to be notified. A bad
    setting or an unreadable mail password fails here, at construction."""
    mailer = None
    if email is not None:
        from .mailer import mailer_from

        mailer = mailer_from(email)
    if public_url is not None and not (
        isinstance(public_url, str) and public_url.startswith(("http://", "https://"))
    ):
        raise ValueError(f"public_url must be an http:// or https:// URL, not {public_url!r}")
    if webhook is None and on_alert is None and mailer is None:
        return None
    from .notify import Notifier

    return Notifier(
        webhook,
        on_alert,
        webhook_format=webhook_format,
        public_url=public_url,
        mailer=mailer,
        close_wait=notify_wait,
    )


def _is_run_dir(p: str, join: bool) -> bool:
    """A ".jsonl" name, or anything that exists and is not a directory (a file, /dev/full),
    is one log file; any other path is a directory of per-run logs."""
    return not (p.endswith(".jsonl") or join or (os.path.exists(p) and not os.path.isdir(p)))


def _check_otlp_endpoint(endpoint: str | None) -> str | None:
    """The OTLP endpoint, checked now: a bad one is a ValueError here, not later."""
    if endpoint is None:
        return None
    from .otlp import check_endpoint

    return check_endpoint(endpoint)


def _redactor(patterns: Iterable[Any], disable: Iterable[str]) -> Redactor:
    """Secrets never reach the log: argv, metadata, messages, paths and metric names are
    redacted before they are written (a bad user pattern fails here)."""
    from .redact import Redactor

    return Redactor(tuple(patterns), disable=tuple(disable))


def _read_limits(proc: str) -> dict[str, Any]:
    from ..probe import cgroup

    try:
        return cgroup.limits(proc=proc)
    except Exception as exc:  # never a reason not to record
        return {"version": None, "note": f"cgroup limits unreadable: {exc}"}


_monitors: weakref.WeakSet[Monitor] = weakref.WeakSet()
HISTORY_RUNS = 100
"""Earlier runs a live monitor compares with (the catalog's latest)."""
_active: list[Monitor] = []  # monitors inside their ``with`` block, innermost last


class Monitor:
    """Records the runs of a pipeline into JSON-lines run logs.

    ``path`` ending in ``.jsonl`` is one log file (several runs may share it); any other
    path is a directory holding one ``<run_id>.jsonl`` per run, whose earlier runs are the
    history of this one.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = "atroz-runs",
        *,
        plan: Any = None,
        sample_interval: float | None = 0.5,
        meta: Mapping[str, Any] | None = None,
        name: str | None = None,
        run_id: str | None = None,
        capture: bool = True,
        history: Iterable[str | os.PathLike[str]] | None = None,
        max_phases: int = 10_000,
        proc: str = "/proc",
        alert_rules: Iterable[Any] | None = None,
        on_alert: Callable[[dict[str, Any]], Any] | None = None,
        webhook: str | None = None,
        webhook_format: str = "generic",
        email: Mapping[str, Any] | None = None,
        public_url: str | None = None,
        tags: Mapping[str, str] | None = None,
        resume: str | None = None,
        detail: str = "auto",
        aggregate_above: int = 100,
        max_bytes: int | None = None,
        otlp_endpoint: str | None = None,
        redact: Iterable[Any] = (),
        redact_disable: Iterable[str] = (),
        file_mode: int = FILE_MODE,
        dir_mode: int = DIR_MODE,
        trust_dir: bool = False,
        exact_peak: bool = False,
        notify_wait: float = 0.5,
        _join: bool = False,
    ) -> None:
        _hook_fork()  # before anything below makes a writer or a thread a fork must reset
        p = os.fspath(path)
        _check_options(path, sample_interval, max_phases, meta, run_id, detail, aggregate_above,
                       max_bytes, file_mode, dir_mode)  # fmt: skip
        self.detail, self.aggregate_above, self.max_bytes = detail, aggregate_above, max_bytes
        self.plan = _normalize_plan(plan)
        self.sample_interval = float(sample_interval) if sample_interval is not None else None
        self.capture = bool(capture)
        self.max_phases, self.proc = max_phases, proc
        self.host = os.uname().nodename if hasattr(os, "uname") else "unknown"
        self.is_dir = _is_run_dir(p, _join)
        self.file_mode, self.dir_mode = file_mode, dir_mode
        # A process joining a run appends to the log its owner already accepted (perhaps
        # with trust_dir=True); links are refused all the same (O_NOFOLLOW).
        self.trust_dir = bool(trust_dir) or _join
        _prepare_log_place(p, self.is_dir, dir_mode, _join, self.trust_dir)
        self.path = os.path.abspath(p)
        self.history_paths = [os.fspath(h) for h in history or ()]
        self.alert_rules = _alert_rules(alert_rules, _join)
        self.notify_wait = _check_notify_wait(notify_wait)
        self._notifier = _notifier(
            webhook, on_alert, webhook_format, email, public_url, self.notify_wait
        )
        self._history: list[dict[str, Any]] | None = None  # see history()
        otlp_endpoint = _check_otlp_endpoint(otlp_endpoint)
        self._lock = _thread.RLock()
        self._runs: dict[str, Run] = {}
        self._internal_errors, self._internal_warned = 0, False
        self._internal_last: str | None = None
        self._open_boundary_readers(proc, exact_peak)
        self._view: LiveView | None = None
        self._entered = False
        self.redactor = _redactor(redact, redact_disable)
        self.limits = _read_limits(proc)
        self.tags = self.redactor.redact_obj(_tags(tags))
        self._make_components(otlp_endpoint)
        resumed = None if resume is None else self._find_resumable(resume, run_id)
        # Construct the main run now so that an unwritable path fails here, not later.
        self._main = self._new_run(
            resume or run_id or new_run_id(), name=name, meta=meta, plan=self.plan,
            owner=not _join, tags=self.tags, resumed=resumed,
        )  # fmt: skip
        _monitors.add(self)

    def _open_boundary_readers(self, proc: str, exact_peak: bool) -> None:
        """What phase boundaries read: the shared statm descriptor, the opt-in exact peak,
        and the sampler's latest figures (none yet)."""
        from ..probe import procfs

        self._rss: int | None = None  # latest sampled RSS (bytes)
        # (RUSAGE_CHILDREN, tree total, live children's part) at the sampler's last read
        self._ccpu: tuple[float, float, tuple[tuple[int, float], ...]] | None = None
        self._reaped = procfs.reaped_children_cpu_s
        # One descriptor per process, not per run.
        self._statm: Statm | None = procfs.shared_statm(proc)
        if self._statm.fd < 0:
            self._statm = None  # no /proc: the sampler's figures, if any
        # Exact peak RSS (opt-in: the reset also lowers the process's own ru_maxrss).
        self._hwm: HighWater | None = None
        if exact_peak:
            try:
                self._hwm = procfs.shared_high_water(proc)
            except OSError as exc:
                self.note_internal_error(f"exact_peak unavailable, peaks are sampled ({exc})", None)
        method = b"hwm" if self._hwm is not None else b"sampled"
        self._peak_method = b',"peak_rss_method":"%s"' % method

    def _make_components(self, otlp_endpoint: str | None) -> None:
        """The parts started with the runs this process owns (see component.py), in the
        order they start, report health and close."""
        comps: list[Component] = []
        self._sampling: Sampling | None = None
        if self.sample_interval is not None:
            from .sampler import Sampling

            self._sampling = Sampling(self, self.sample_interval, self.proc)
            comps.append(self._sampling)
        if self.capture:
            from .capture import LogCapture

            comps.append(LogCapture(self))
        if self._notifier is not None:
            comps.append(self._notifier)
        from .component import Alerting, OtlpPush

        if otlp_endpoint is not None:
            comps.append(OtlpPush(self, otlp_endpoint))
        comps.append(Alerting(self))
        self._components = comps
        # The running sampler, or None: the phase hot path asks this one attribute whether
        # a start line may wait for the sampler's next tick.
        self._sampler: Sampler | None = None

    # -- runs ---------------------------------------------------------------------------
    def _find_resumable(self, run_id: str, given_id: str | None = None) -> dict[str, Any]:
        """The interrupted run ``run_id`` to continue: its last event time and owner pid.
        A run that is unknown here or already ended is an error at construction, and so is
        another ``run_id=`` (``given_id``) given beside ``resume=``."""
        from ..read.reader import discover, iter_events

        if given_id is not None and given_id != run_id:
            raise ValueError("give run_id or resume, not both")
        if not valid_run_id(run_id):
            raise ValueError(f"resume: not a run id: {run_id!r}")
        file = os.path.join(self.path, run_id + ".jsonl") if self.is_dir else self.path
        found: dict[str, Any] | None = None
        try:
            files = discover([file])
        except FileNotFoundError:
            files = []
        if files:
            self._resume_file = files[-1]  # go on appending to the latest part
        try:
            for ev in (e for f in files for e in iter_events(f)):
                if ev.get("run") != run_id:
                    continue
                if ev.get("ev") == "run_start":
                    found = {"prev_pid": ev.get("pid"), "last_ts": ev.get("ts")}
                elif found is not None:
                    if ev.get("ev") == "run_end":
                        raise ValueError(f"resume: run {run_id!r} has already ended")
                    if ev.get("ev") in ("run_start", "resumed"):
                        found["prev_pid"] = ev.get("pid")
                    if isinstance(ev.get("ts"), (int, float)):
                        found["last_ts"] = ev["ts"]
        except FileNotFoundError:
            found = None
        if found is None:
            raise ValueError(f"resume: no run {run_id!r} in {file}")
        return found

    def _new_run(self, run_id: str, **kw: Any) -> Run:
        file = os.path.join(self.path, run_id + ".jsonl") if self.is_dir else self.path
        if kw.get("resumed") and getattr(self, "_resume_file", None):
            file = self._resume_file
        if self.is_dir and os.path.exists(file) and kw.get("owner", True) and not kw.get("resumed"):
            raise ValueError(f"run {run_id!r} already exists in {self.path}")
        try:
            run = Run(self, run_id, file, **kw)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot write the run log {file!r}: {exc.strerror}") from None
        with self._lock:
            self._runs[run_id] = run
        return run

    @property
    def run_id(self) -> str:
        return self._main.id

    @property
    def main(self) -> Run:
        """The run this monitor records by default."""
        return self._main

    def run(
        self,
        job: str | None = None,
        /,
        *,
        name: str | None = None,
        run_id: str | None = None,
        meta: Mapping[str, Any] | None = None,
        plan: Any = None,
        tags: Mapping[str, str] | None = None,
    ) -> Run:
        """Start a job: another concurrent run with its own ``.phase()``; end it with
        ``with`` or ``.end()``. ``mon.run("job-42")`` names the job: every call is a new
        run with a new unique id, and the runs of one job share the name, as the runs of a
        pipeline do. ``run_id=`` picks the id (it must be new: a ``ValueError`` otherwise).
        The older form ``mon.run("job-42", name="Job 42")`` still means id and name."""
        if job is not None and name is None:
            name = job
        elif job is not None:
            if run_id is not None:
                raise ValueError("give the run id once: run(id, name=...) or run(run_id=...)")
            run_id = job
        if name is not None and not isinstance(name, str):
            raise ValueError(f"a job's name must be a string, not {type(name).__name__}")
        if run_id is not None and not (isinstance(run_id, str) and valid_run_id(run_id)):
            raise ValueError(f"run_id must match {_RUN_ID_PATTERN}: {run_id!r}")
        with self._lock:
            if run_id is not None and run_id in self._runs:
                raise ValueError(f"run {run_id!r} already exists in this monitor")
            rid = run_id or self._fresh_id()
        run = self._new_run(
            rid,
            name=name,
            meta=meta,
            plan=_normalize_plan(plan) if plan is not None else [],
            tags={**self.tags, **_tags(tags, env=False)},
            lenient=True,  # after construction: never raise into the host for the disk
        )
        if run.writer.last_error is not None:
            self.note_internal_error(
                f"cannot write the run log {run.path}: {run.writer.last_error}", None
            )
        return run.start()

    def _fresh_id(self) -> str:
        """A run id not used in this monitor nor in its directory (called under the lock)."""
        while True:
            rid = new_run_id()
            file = os.path.join(self.path, rid + ".jsonl")
            if rid not in self._runs and not (self.is_dir and os.path.exists(file)):
                return rid

    def runs(self) -> list[Run]:
        with self._lock:
            return list(self._runs.values())

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> Monitor:
        """Start the main run (``with Monitor(...)`` does this)."""
        self._main.start()
        return self

    def close(self, status: str = E.COMPLETED, error: BaseException | None = None) -> None:
        """End every run this monitor still has open, the main run last."""
        for run in self.runs():
            if run is not self._main and run.live and not run.ended:
                run.end(status if run.owner else E.COMPLETED)
        self._main.end(status, error)

    def __enter__(self) -> Monitor:
        self._entered = True
        _active.append(self)
        self._main.start()
        return self

    def __exit__(self, et: Any, exc: BaseException | None, tb: Any) -> Literal[False]:
        try:
            if exc is None or (isinstance(exc, SystemExit) and exc.code in (0, None)):
                self.close(E.COMPLETED)
            elif _is_cancel(exc):
                self.close(E.CANCELLED, exc)
            else:
                self.close(E.FAILED, exc)
        finally:
            if self in _active:
                _active.remove(self)
        return False

    # -- the default run's API ----------------------------------------------------------
    def phase(
        self,
        key: str,
        name: str | None = None,
        *,
        meta: Mapping[str, Any] | None = None,
        parent: Phase | str | None = None,
        attempt: int | None = None,
        detail: str | None = None,
    ) -> Phase:
        """A phase of the main run: ``with``, ``async with`` or ``@decorator``."""
        if type(key) is not str or not key:
            check_key(key)
        if attempt is not None:
            _check_attempt(attempt)
        if detail is not None:
            _check_detail(detail)
        return Phase(self._main, key, name, meta, parent, None, attempt, detail)

    def attempts(self, key: str, attempts: int, name: str | None = None, **kw: Any) -> Attempts:
        """Retry a block in the main run (see ``Run.attempts``)."""
        return self._main.attempts(key, attempts, name, **kw)

    def retry(self, key: str, attempts: int, name: str | None = None, **kw: Any) -> Any:
        """Retry decorator in the main run (see ``Run.retry``)."""
        return self._main.retry(key, attempts, name, **kw)

    def skip_phase(self, key: str, reason: str | None = None, name: str | None = None) -> None:
        """Record a planned phase of the main run as skipped."""
        self._main.skip_phase(key, reason, name)

    def start_phase(self, key: str, name: str | None = None, **kw: Any) -> Phase:
        return self._main.start_phase(key, name, **kw)

    def complete_phase(self, phase: Phase | str, **kw: Any) -> None:
        self._main.complete_phase(phase, **kw)

    def fail_phase(self, phase: Phase | str, error: BaseException | str) -> None:
        self._main.fail_phase(phase, error)

    def artifact(self, path: str | os.PathLike[str], **meta: Any) -> None:
        self._main.artifact(path, **meta)

    def metric(self, name: str, value: float, **meta: Any) -> None:
        self._main.metric(name, value, **meta)

    def count(self, name: str, n: float = 1) -> None:
        """Add ``n`` to a counter of the active phase of the main run (or of the run)."""
        self._main.count(name, n)

    def warning(self, msg: str) -> None:
        self._main.warning(msg)

    def error(self, msg: str) -> None:
        self._main.error(msg)

    # -- reading back -------------------------------------------------------------------
    def snapshot(self, run_id: str | None = None) -> dict[str, Any]:
        """The JSON-ready view of a run (the main one by default), built by the same reducer
        that reads files, from this run's log (worker processes included)."""
        from ..store.live import LiveView

        try:
            with self._lock:
                if self._view is None:
                    self._view = LiveView(self)
                view = self._view
            return view.snapshot(run_id or self._main.id)
        except KeyError:
            return self._unread_snapshot(run_id or self._main.id)
        except Exception as exc:
            self.note_internal_error("snapshot", exc)
            return {"run": {"id": run_id or self._main.id}, "error": f"{type(exc).__name__}: {exc}"}

    # -- serving ------------------------------------------------------------------------
    def serve(self, host: str = "127.0.0.1", port: int = 0, **kw: Any) -> Any:
        """Serve this monitor's live dashboard and JSON API from daemon threads inside the
        pipeline; returns the server (``.url``, ``.close()``). Loopback only unless a
        ``token=`` is given; see docs/API.md for the other options."""
        from ..surface.server import serve_monitor

        return serve_monitor(self, host, port, **kw)

    # -- alerts -------------------------------------------------------------------------
    def acknowledge(self, alert_id: str) -> None:
        """Record an acknowledgement of an alert (the HTTP API stays read-only)."""
        for run in self.runs():
            ev = run.evaluator
            a = ev.acknowledge(alert_id) if ev is not None else None
            if a is not None:
                run._alerts([a])
                return
        raise ValueError(f"no alert {alert_id!r} in this monitor's runs")

    def active_alerts(self) -> list[dict[str, Any]]:
        """The open alerts of this monitor's runs, as JSON-ready dicts."""
        out: list[dict[str, Any]] = []
        for run in self.runs():
            if run._ackwatch is not None:
                run._ackwatch.poll(force=True)  # `ack` from a shell: seen without restart
            if run.evaluator is not None:
                for a in run.evaluator.active():
                    out.append({"run": run.id, **a})
        return out

    def history(self) -> list[dict[str, Any]]:
        """Summaries of the earlier runs this monitor compares with (the ETA's medians, the
        p95 alert rule), oldest first: the latest ``HISTORY_RUNS`` of its directory's
        catalog and of its ``history=`` paths, its own runs left out. Loaded once, on
        first use, from the catalog's tail: bounded whatever the directory holds (issue 13)."""
        h = self._history
        if h is not None:
            return h
        try:
            h = self._read_history()
        except Exception as exc:
            self.note_internal_error("loading history", exc)
            h = []
        self._history = h
        return h

    def _read_history(self) -> list[dict[str, Any]]:
        from ..read.catalog import Catalog, start_of, summarize_files
        from ..read.reader import discover

        own = {r.id for r in self.runs()}
        out: list[dict[str, Any]] = []
        if self.is_dir:
            out += Catalog(self.path).recent(HISTORY_RUNS)
        for p in self.history_paths:
            if os.path.isdir(p):
                out += Catalog(p).recent(HISTORY_RUNS)
            elif os.path.exists(p):
                out += summarize_files(discover([p]))  # a file the user named: read it
            else:
                self.note_internal_error(f"history path {p} not found", None)
        byid = {s["run"]: s for s in out if s["run"] not in own and s["status"] != "running"}
        return sorted(byid.values(), key=start_of)[-HISTORY_RUNS:]

    def _catalog_run(self, run: Run) -> None:
        """Append the ended run's summary to its directory's catalog, so the next run's
        history is one tail read, not a pass over every log (never raises)."""
        if run is self._main:
            # An ended run needs no ETA: free its history now, not when the cyclic collector
            # gets to this monitor (a service starting run after run would pile them up).
            self._history = None
        if not self.is_dir:
            return
        try:
            from ..read.catalog import Catalog, summarize_files
            from ..read.reader import parts_of

            files = [run.path, *parts_of(run.path)]
            mine = [s for s in summarize_files(files) if s["run"] == run.id]
            Catalog(self.path).record(run.path, mine)
        except Exception as exc:
            self.note_internal_error("cataloguing the run", exc)

    def _unread_snapshot(self, run_id: str) -> dict[str, Any]:
        """A snapshot of a run whose log cannot be read back (a full disk, /dev/full): its
        header from memory and the monitor's counters, so the losses are visible."""
        from ..read import state as S
        from ..view import views

        run = next((r for r in self.runs() if r.id == run_id), None)
        if run is None:
            raise ValueError(f"no run {run_id!r} in this monitor")
        st = S.State()
        S.apply(st, {"ev": "run_start", "run": run_id, "pid": os.getpid(), "ts": time.time(),
                     "v": E.SCHEMA_VERSION, "name": run.name, "plan": run.plan,
                     "host": self.host, "tags": run.tags})  # fmt: skip
        snap = views.snapshot(
            st, run_id, now=time.time(), alive=run.live and not run.ended, monitor=run.health()
        )
        snap["quality"]["unreadable"] = f"the run log {run.path} could not be read back"
        return snap

    # -- health -------------------------------------------------------------------------
    def note_internal_error(self, where: str, exc: BaseException | None) -> None:
        """Count an internal failure (``where``, and ``exc`` if any) in the run's counters;
        the first one is also written to stderr. The monitor's parts call this instead of
        raising into the pipeline."""
        self._internal_errors += 1
        self._internal_last = f"{where}: {type(exc).__name__}: {exc}" if exc else where
        if not self._internal_warned:
            self._internal_warned = True
            try:
                sys.stderr.write(
                    f"atroz_monitor: internal error ({self._internal_last}); the pipeline goes "
                    "on, further errors are counted\n"
                )
            except Exception:
                pass

    def _health(self) -> dict[str, Any]:
        h: dict[str, Any] = {
            "internal_errors": self._internal_errors,
            "last_internal_error": self._internal_last,
        }
        for c in self._components:
            h.update(c.health())
        return h

    def _pid_start(self) -> int | None:
        try:
            from ..probe.procfs import pid_start_time

            return pid_start_time(os.getpid(), self.proc)
        except Exception:
            return None

    def publish_reading(
        self, rss: int | None, children_cpu: tuple[float, float, tuple[tuple[int, float], ...]]
    ) -> None:
        """The sampler's latest reading, for phase boundaries to use (so ``phase()`` never
        reads /proc itself): the RSS in bytes, and the children's CPU as (RUSAGE_CHILDREN,
        tree total, live direct children's ``(pid, cpu_s)``) at that read."""
        self._rss = rss
        self._ccpu = children_cpu

    def _children_cpu(self) -> float:
        """Children's CPU seconds now, on one scale across phase boundaries: the exact
        RUSAGE_CHILDREN, plus live descendants' CPU as of the sampler's last read. A child
        reaped since that read is in RUSAGE_CHILDREN now: its part of the read is taken
        out, so it is counted once (with all its CPU, the part after the read included)."""
        r = self._reaped()
        pub = self._ccpu
        if pub is None:
            return r
        r_tick, tree, direct = pub
        if r == r_tick or not direct:
            return tree + (r - r_tick)
        for _ in range(3):  # a child reaped between the checks and the read: look again
            gone = [cpu for pid, cpu in direct if not _exists(pid)]
            r = self._reaped()
            if [cpu for pid, cpu in direct if not _exists(pid)] == gone:
                break
        return tree + (r - r_tick) - sum(gone)

    def children_rss_peak(self) -> int | None:
        """The highest RSS of this process's descendants (summed) the sampler has seen."""
        return None if self._sampling is None else self._sampling.children_rss_peak()

    # -- run start/end side effects -----------------------------------------------------
    def _run_started(self, run: Run) -> None:
        if run.owner:
            for c in self._components:
                c.start(run)
            self._sampler = self._sampling.running if self._sampling is not None else None

    def _run_ending(self, run: Run) -> None:
        """The main run is ending: close the components that end before its last alerts
        (the sampler's final reading, the log capture)."""
        if run is self._main:
            self._close_components(after_alerts=False)

    def _run_flushing(self, run: Run) -> None:
        """The main run's last alerts are written: give the notifications their bounded wait
        (``notify_wait`` in total) and flush OTLP, before ``run_end`` carries their counters."""
        if run is self._main:
            self._close_components(after_alerts=True)

    def _close_components(self, after_alerts: bool) -> None:
        for c in self._components:
            if c.closes_after_alerts is after_alerts:
                c.close()
        self._sampler = self._sampling.running if self._sampling is not None else None

    def owned_live_runs(self) -> list[Run]:
        """The runs this process owns that are live and whose ``run_end`` is not written yet:
        the ones it samples (the final reading at the main run's end included)."""
        with self._lock:
            return [
                r
                for r in self._runs.values()
                if r.owner and r.live and (not r.ended or r.winding_down)
            ]

    # -- fork ---------------------------------------------------------------------------
    def _after_fork_child(self) -> None:
        self._lock = _thread.RLock()
        for c in self._components:
            c.after_fork()
        self._sampler = None  # threads do not survive fork; the parent samples the tree
        self._rss = None
        self._ccpu = None
        self._view = None
        if self._statm is not None:
            self._statm.reopen()  # the inherited descriptor reads the parent's statm
        if self._hwm is not None:
            try:
                self._hwm.reopen()
            except OSError:
                self._hwm = None
        for run in self._runs.values():
            run.active = {}
            run._explicit = {}
            run._env_saved = None
            if run.live and not run.ended:
                # The child joins the run: process_start on its first event, never run_end.
                run.owner = False
                run.live = False
        mp_util = sys.modules.get("multiprocessing.util")
        if mp_util is not None:
            # A multiprocessing child (a fork-started pool worker) leaves through os._exit,
            # so atexit never runs; its finalizers do. They are cleared when the child starts,
            # after this hook: register through the after-fork hooks, which run after that.
            mp_util.register_after_fork(self, Monitor._mp_child_started)

    def _mp_child_started(self) -> None:
        """In a multiprocessing child: write process_end at its normal exit."""
        import multiprocessing.util as mp_util

        mp_util.Finalize(self, self._end_joined, exitpriority=10)

    def _end_joined(self) -> None:
        """End the runs this process joined and wrote to (its process_end)."""
        for run in self.runs():
            if run.live and not run.ended and not run.owner and run.writer.pid == os.getpid():
                run.end(E.COMPLETED)


def _new_pid() -> None:
    global _pid, _span_prefix, _spans
    _pid = os.getpid()
    _span_prefix = f"{_pid}."
    _spans = itertools.count(1)


def _after_fork_child() -> None:
    global _hwm_lock, _hooks_lock, _live_runs
    _hwm_lock = _thread.allocate_lock()  # another thread may have held it at the fork
    _new_pid()
    # The parent's live runs are not live here (a child joins them at its first event):
    # the exception hook comes back with the first run this process announces.
    _hooks_lock = _thread.allocate_lock()
    _live_runs = 0
    _remove_hooks()
    for m in list(_monitors):
        try:
            m._after_fork_child()
        except Exception:
            pass


# os.register_at_fork cannot be undone, so it waits for the first Monitor: importing the
# package leaves the interpreter as it was.
_fork_hooked = False


def _hook_fork() -> None:
    global _fork_hooked
    with _hooks_lock:
        if _fork_hooked:
            return
        _fork_hooked = True
        if _pid != os.getpid():
            _new_pid()  # forked after the import, before any Monitor: no handler ran
        if hasattr(os, "register_at_fork"):  # absent on Windows, where nothing forks
            os.register_at_fork(after_in_child=sinks.after_fork_in_child)
            os.register_at_fork(after_in_child=_after_fork_child)


def _at_exit() -> None:
    # Runs left open at exit (a default monitor, a Monitor never closed) end here; a
    # joined worker writes its process_end. An uncaught exception makes the run failed.
    global _exiting
    _exiting = True
    failed = getattr(sys, "last_value", None) is not None or _uncaught
    status = E.FAILED if failed else E.COMPLETED
    for m in list(_monitors):
        try:
            for run in m.runs():
                if run.live and not run.ended and (run.owner or run.writer.pid == os.getpid()):
                    run.end(status if run.owner else E.COMPLETED)
        except Exception:
            pass


# -- process hooks: installed with the first live run ---------------------------------------
# An uncaught exception marks the live runs failed, and interpreter exit ends them. Importing
# the package (or only reading logs) changes nothing: sys.excepthook is wrapped while this
# process has a live run, and the exit hook is registered with its first run. That one stays
# (a no-op once no run is live): CPython never reuses the slot atexit.unregister empties, so
# unregistering at each last run's end would make the n-th run's end scan n dead slots.
_hooks_lock = _thread.allocate_lock()
_live_runs = 0  # runs announced and not ended in this process
_exiting = False
_atexit_hooked = False
_uncaught = False
_hooked_except = False  # our hook is in sys.excepthook's chain
_prev_excepthook: Any = None


def _excepthook(et: Any, ev: Any, tb: Any) -> None:
    global _uncaught
    _uncaught = True
    (_prev_excepthook or sys.__excepthook__)(et, ev, tb)


def _run_live() -> None:
    global _live_runs, _hooked_except, _prev_excepthook, _atexit_hooked
    with _hooks_lock:
        _live_runs += 1
        if _live_runs > 1:
            return
        if not _atexit_hooked and not _exiting:  # once atexit runs, this would not run
            atexit.register(_at_exit)
            _atexit_hooked = True
        if not _hooked_except:
            _prev_excepthook, sys.excepthook = sys.excepthook, _excepthook
            _hooked_except = True


def _run_over() -> None:
    global _live_runs
    with _hooks_lock:
        if _live_runs > 0:
            _live_runs -= 1
            if _live_runs == 0 and not _exiting:
                _remove_hooks()


def _remove_hooks() -> None:
    global _hooked_except
    if sys.excepthook is _excepthook:
        sys.excepthook = _prev_excepthook
        _hooked_except = False
    # else someone wrapped our hook after us: it stays in their chain (and is not installed
    # again, which would make it call itself).
