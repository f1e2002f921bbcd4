"""The reducer: ``apply(state, event)`` folds events into state. Pure: no I/O, clock or threads.

The live monitor, ``serve`` over files written by other processes, and ``report`` all build
state with this one function, so a run looks the same watched live or replayed from disk.
Unknown kinds and keys are ignored. Memory is bounded however long the run: samples, logs
and artifacts live in rings with drop counters, and beyond ``max_phases`` detailed records
per run, completed repeats of a phase key are folded into per-key aggregates under their
parent (counted in ``folded``), so a phase entered a million times costs a few aggregates.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from collections.abc import Iterable
from math import fsum
from typing import Any

from .errgroups import Groups
from .ring import Ring

RECENT = 64  # durations kept per phase key for statistics
# Upper bounds (seconds) of the per-key duration histogram (Prometheus
# ``atroz_phase_duration_seconds``): 5 ms (a tight inner step) to 1 h (a long batch phase).
DURATION_BUCKETS_S: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
)  # fmt: skip
_BUCKET_MS = tuple(b * 1000.0 for b in DURATION_BUCKETS_S)
_NBUCKETS = len(_BUCKET_MS)


class KeyAgg:
    """Aggregate of every ended phase with one key (in one run, or under one parent)."""

    __slots__ = (
        "count",
        "completed",
        "failed",
        "cancelled",
        "skipped",
        "cached",
        "total_ms",
        "min_ms",
        "max_ms",
        "last_ms",
        "cpu_ms",
        "items",
        "peak_rss_bytes",
        "recent",
        "bucket_counts",
    )

    def __init__(self, light: bool = False) -> None:
        # light: a folded table under a parent, only ever shown through to_dict(), keeps
        # no histogram and no recent durations (two operations less per folded repeat).
        self.count = 0
        self.completed = 0
        self.failed = 0
        self.cancelled = 0
        self.skipped = 0
        self.cached = 0
        self.total_ms = 0.0
        self.min_ms: float | None = None
        self.max_ms: float | None = None
        self.last_ms: float | None = None
        self.cpu_ms = 0.0
        self.items = 0
        self.peak_rss_bytes: int | None = None
        self.recent: deque[float] | None = None if light else deque(maxlen=RECENT)
        # Non-cumulative counts per DURATION_BUCKETS_S bound (beyond the last: +Inf only);
        # None once calls were summed by the writer (their distribution is unknown).
        self.bucket_counts: list[int] | None = None if light else [0] * _NBUCKETS

    def add(
        self, status: str, ms: float, cpu_ms: float, items: int, peak: int | None = None
    ) -> None:
        self.count += 1
        if status == "completed":
            self.completed += 1
        elif status == "failed":
            self.failed += 1
        elif status == "cancelled":
            self.cancelled += 1
        elif status == "skipped" or status == "cached":
            # Not run (or reused): no duration to count in the statistics.
            if status == "skipped":
                self.skipped += 1
            else:
                self.cached += 1
            return
        self.total_ms += ms
        b = self.bucket_counts
        if b is not None:
            i = bisect_left(_BUCKET_MS, ms)
            if i < _NBUCKETS:
                b[i] += 1
        lo = self.min_ms
        if lo is None or ms < lo:
            self.min_ms = ms
        hi = self.max_ms
        if hi is None or ms > hi:
            self.max_ms = ms
        self.last_ms = ms
        self.cpu_ms += cpu_ms
        self.items += items
        if peak is not None and (self.peak_rss_bytes is None or peak > self.peak_rss_bytes):
            self.peak_rss_bytes = peak
        recent = self.recent
        if recent is not None:
            recent.append(ms)

    def add_many(self, ev: dict[str, Any]) -> None:
        """Fold an ``aggregate`` event (many calls summed by the writer): counts, totals,
        extremes and failures stay exact; the recent-durations window gets the mean."""
        n = _int(ev.get("count"))
        if n <= 0:
            return
        self.count += n
        self.bucket_counts = None
        for attr in ("completed", "failed", "cancelled", "skipped", "cached", "items"):
            v = _int(ev.get(attr))
            if v > 0:
                setattr(self, attr, getattr(self, attr) + v)
        total = _num(ev.get("total_ms")) or 0.0
        self.total_ms += total
        self.cpu_ms += _num(ev.get("cpu_ms")) or 0.0
        lo, hi = _num(ev.get("min_ms")), _num(ev.get("max_ms"))
        if lo is not None and (self.min_ms is None or lo < self.min_ms):
            self.min_ms = lo
        if hi is not None and (self.max_ms is None or hi > self.max_ms):
            self.max_ms = hi
        timed = n - max(0, _int(ev.get("skipped"))) - max(0, _int(ev.get("cached")))
        if timed > 0:
            self.last_ms = total / timed
            if self.recent is not None:
                self.recent.append(total / timed)

    @property
    def timed(self) -> int:
        """Occurrences that ran (not skipped or cached): the denominator of the mean."""
        return self.count - self.skipped - self.cached

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "completed": self.completed,
            "failed": self.failed,
            "cancelled": self.cancelled,
            "skipped": self.skipped,
            "cached": self.cached,
            "total_ms": round(self.total_ms, 3),
            "mean_ms": round(self.total_ms / self.timed, 3) if self.timed else None,
            "min_ms": self.min_ms,
            "max_ms": self.max_ms,
            "last_ms": self.last_ms,
            "cpu_ms": round(self.cpu_ms, 3),
            "items": self.items,
            "peak_rss_bytes": self.peak_rss_bytes,
        }


class PhaseRec:
    """One phase (span) as the log describes it so far.

    Defaults live on the class and lists/dicts are made on first use: a replay creates a
    record per phase (a million for a long loop, most folded away at once), so creating
    one must be cheap.
    """

    thread: Any = None
    meta: Any = None
    start: float | None = None
    end: float | None = None
    status = "running"
    duration_ms: float | None = None
    cpu_ms: float | None = None
    children_cpu_ms: float | None = None
    rss_bytes: int | None = None
    rss_start_bytes: int | None = None
    peak_rss_bytes: int | None = None
    peak_rss_method: str | None = None  # how the recorder measured the peak (issue 12)
    cpu_peak_pct: float | None = None
    items = 0
    total: int | None = None
    warnings = 0
    errors = 0
    error: Any = None
    artifacts: list[dict[str, Any]] | None = None
    metrics: dict[str, Any] | None = None
    folded: dict[str, KeyAgg] | None = None
    attempt: int | None = None
    reason: str | None = None
    # Started after its run had ended (a daemon left behind): filed at the top level, never
    # under the (finished) phase it names as parent.
    late = False
    # Failed with an exception of its own, not one a failed child raised through it: this
    # phase's failure is one error in the run's count (error_count()).
    origin = False
    # (type, msg) of the exceptions that failed phases beneath it: its own failure with one
    # of them is that exception passing through, not another error.
    failed_below: set[tuple[Any, Any]] | None = None
    items_ts: float | None = None  # when ``items`` was last reported (the ETA's elapsed time)
    counts: dict[str, float] | None = None  # p.count() totals over the phase

    def __init__(self, span: str, phase: str, name: str, parent: str | None, pid: Any) -> None:
        self.span = span
        self.phase = phase
        self.name = name
        self.parent = parent
        self.pid = pid
        self.children: list[str] = []


MAX_ARTIFACTS_PER_PHASE = 100
MAX_METRICS_PER_PHASE = 200
MAX_COUNTERS = 1_000  # counter names per run (and per phase): names are user input


class RunState:
    """Everything known about one run."""

    def __init__(self, run_id: str, samples: int, logs: int, artifacts: int) -> None:
        self.id = run_id
        self.info: dict[str, Any] = {}  # run_start fields, minus the envelope
        self.started = False  # a run_start was seen
        self.start: float | None = None
        self.end: float | None = None
        self.status = "running"  # until run_end; views derive "interrupted"
        self.end_info: dict[str, Any] = {}
        self.first_ts: float | None = None
        self.last_ts: float | None = None
        self.events = 0
        self.processes: dict[int, dict[str, Any]] = {}
        self.phases: dict[str, PhaseRec] = {}
        self.roots: list[str] = []
        # Phases whose parent span is not known yet (its start line comes later: another
        # process's deferred write): filed as roots until the parent appears, then moved.
        self.waiting: dict[str, list[str]] = {}
        self.open: set[str] = set()
        self.keys: dict[str, KeyAgg] = {}
        self.folded: dict[str, KeyAgg] = {}  # folded top-level repeats
        self.folded_count = 0
        self.first_of: dict[tuple[str | None, str], str] = {}  # (parent, key) -> first span
        self.samples: Ring[dict[str, Any]] = Ring(samples)
        self.logs: Ring[dict[str, Any]] = Ring(logs)
        self.log_counts = {"warning": 0, "error": 0}
        self.failures = 0  # exceptions that failed phases, each counted once
        self.run_failure = 0  # 1 when the run failed with an exception no phase failed with
        self.artifacts: Ring[dict[str, Any]] = Ring(artifacts)
        self.metrics: dict[str, dict[str, Any]] = {}  # name -> {value, count, min, max, span}
        self.counters: dict[str, float] = {}  # name -> sum of every increment (p.count)
        self.acks: dict[str, dict[str, Any]] = {}  # alert id -> its latest alert_ack
        self.cleared: dict[str, Any] | None = None  # the latest alerts_cleared
        # Errors and warnings by fingerprint (errgroups): exact counts beyond the log ring,
        # kept when an earlier run is compacted to history ("new in this run", "gone").
        self.errgroups: Groups | None = None
        self.alerts: dict[str, dict[str, Any]] = {}
        self.alert_events = 0
        self.seq_gaps = 0
        # The last seq of each writer (pid), except the one being read now, whose next seq
        # is expected in _next_seq: the common case, one writer in order, is one comparison.
        self.last_seq: dict[Any, int] = {}
        self._seq_pid: Any = _NO_PID
        self._next_seq = -1
        self.peak_rss_bytes: int | None = None
        self.peak_tree_rss_bytes: int | None = None
        self.compacted = False
        self.resumes: list[dict[str, Any]] = []  # a new owner continuing the run
        self.aggregated = 0  # calls recorded as aggregates (hot loops), not one by one
        self.bad_values = 0  # values of a wrong type, not finite or absurd: read as missing
        # Repeats started beyond max_phases, kept as (key, parent, start event) until they
        # end (then folded at once) or until something needs their record (a child, a
        # log, a metric).
        self.lite: dict[str, tuple[str, str | None, dict[str, Any]]] = {}


class State:
    """All runs seen by one reader (a live monitor, a server, a report)."""

    def __init__(
        self,
        max_phases: int = 10_000,
        max_samples: int = 10_000,
        max_logs: int = 1_000,
        max_artifacts: int = 1_000,
    ) -> None:
        self.max_phases = max_phases
        self.max_samples = max_samples
        self.max_logs = max_logs
        self.max_artifacts = max_artifacts
        self.runs: dict[str, RunState] = {}
        self.ignored = 0  # events of unknown kinds or without a run

    @property
    def events(self) -> int:
        """Events applied to the runs held (each run counts its own: one increment a line)."""
        return sum(r.events for r in self.runs.values())

    def compact(self, run_id: str) -> None:
        """Keep only what history needs of a run (its header, status and per-key
        aggregates): earlier runs cost a few aggregates each, not their detail."""
        r = self.runs.get(run_id)
        if r is None:
            return
        r.phases.clear()
        r.roots.clear()
        r.waiting.clear()
        r.open.clear()
        r.first_of.clear()
        r.lite.clear()
        r.samples.clear()
        r.logs.clear()
        r.artifacts.clear()
        r.compacted = True

    def run(self, run_id: str) -> RunState:
        r = self.runs.get(run_id)
        if r is None:
            r = self.runs[run_id] = RunState(
                run_id, self.max_samples, self.max_logs, self.max_artifacts
            )
        return r


_ENVELOPE = ("ev", "ts", "run", "pid", "seq")

# A log is input: any JSON value may stand in any field. A number outside these bounds, or
# not finite, is no measurement but a corrupt value: read as missing and counted in the
# run's ``bad_values`` (so every reader does arithmetic on sane numbers only). 1e18 is
# beyond any real duration (ms: 31 million years), size (bytes: 1 EiB) or count.
LIMIT = 1e18
INT_LIMIT = 10**18  # the same for ints (an int compares faster with an int)
TS_LIMIT = 1e11  # wall-clock seconds: the year 5138, and datetime still formats it


def _num(v: Any) -> float | None:
    """A finite number within +-LIMIT (NaN fails both comparisons), else None."""
    t = type(v)
    return v if (t is float or t is int) and -LIMIT <= v <= LIMIT else None


def _int(v: Any) -> int:
    return v if type(v) is int and -INT_LIMIT <= v <= INT_LIMIT else 0


# The fields of kept events (samples, logs, artifacts, alerts, run_start, run_end) that
# readers use as numbers ("n") or strings ("s"); another type there is removed and counted.
_TYPED = dict.fromkeys(
    ("duration_ms", "cpu_ms", "children_cpu_ms", "rss_bytes", "rss_start_bytes",
     "peak_rss_bytes", "items", "total", "cpu_pct", "children_cpu_pct", "children_rss_bytes",
     "threads", "io_read_bytes", "io_write_bytes", "sys_cpu_pct", "sys_mem_pct", "bytes",
     "value", "threshold", "raised_ts", "resolved_ts", "gap_s", "prev_pid", "ppid", "ncpu",
     "sample_interval", "v", "count", "exit_code", "signal", "attempt", "pid_start",
     "warnings", "errors", "children", "cpu_s", "children_cpu_s", "mem_total_bytes",
     "rss_peak_bytes", "mem_limit_bytes", "memory_max_bytes", "cpu_quota", "cpu_effective",
     "max_rss_bytes"),
    "n",
) | dict.fromkeys(
    ("name", "phase", "span", "parent", "status", "level", "msg", "path", "rule",
     "severity", "state", "type", "scope", "unit", "host", "cwd", "python", "note",
     "logger", "reason", "thread_name"),
    "s",
)  # fmt: skip


def _scrub(r: RunState, d: dict[str, Any]) -> dict[str, Any]:
    """Remove (and count) the values of ``d`` of the wrong type or out of bounds."""
    bad = None
    for k, v in d.items():
        kind = _TYPED.get(k)
        if kind is None or v is None:
            continue
        t = type(v)
        if kind == "n":
            if (t is float or t is int) and -LIMIT <= v <= LIMIT:
                continue
        elif t is str:
            continue
        if bad is None:
            bad = []
        bad.append(k)
    if bad:
        r.bad_values += len(bad)
        for k in bad:
            del d[k]
    return d


def _scrub_sample(r: RunState, d: dict[str, Any]) -> dict[str, Any]:
    """``_scrub`` for a sample, whose values are all numbers but ``spans``: checked at C
    speed with the loop only when something is off (a sample a second per process is a
    large part of a long log). The sum of the magnitudes is NaN or infinite if one value
    is, a TypeError if one is not a number, and <= LIMIT only if every one is."""
    spans = d.pop("spans", d)
    try:
        if fsum(map(abs, d.values())) <= LIMIT:
            if spans is not d:
                d["spans"] = spans
            return d
    except (TypeError, ValueError, OverflowError):
        pass
    if spans is not d:
        d["spans"] = spans
    return _scrub(r, d)


def _measure(r: RunState, v: Any) -> float | None:
    """A duration or CPU time from a phase line: a finite number in [0, LIMIT], else None
    (counted when a value was there)."""
    t = type(v)
    if (t is float or t is int) and 0 <= v <= LIMIT:
        return v  # type: ignore[no-any-return]
    if v is not None:
        r.bad_values += 1
    return None


def _size(r: RunState, v: Any) -> int | None:
    """A size or count from a phase line: an int in [0, LIMIT], else None (counted)."""
    if type(v) is int and 0 <= v <= INT_LIMIT:
        return v
    if v is not None:
        r.bad_values += 1
    return None


def apply(state: State, ev: dict[str, Any]) -> State:
    """Fold one event into ``state`` (in place) and return it."""
    apply_all(state, (ev,))
    return state


def apply_all(state: State, events: Iterable[dict[str, Any]]) -> int:
    """Fold every event of ``events`` into ``state`` (in place); returns how many.

    The hot loop of every replay (a report reads a million lines through it): what each
    line updates on its run (the event count, the time span, the writer's next seq) is
    kept in locals while the lines are of one run and written back when the run changes
    or the loop ends (no handler reads them), and each line here costs every event.
    """
    runs = state.runs
    handlers = _HANDLERS
    cur_id: Any = None
    r: Any = None
    n = 0
    k = 0  # events of the current run not yet added to r.events
    last: Any = None  # r.last_ts while it is held here
    next_seq: Any = -1  # r._next_seq, r._seq_pid while held here
    seq_pid: Any = _NO_PID
    try:
        for ev in events:
            n += 1
            try:  # the envelope every writer gives: subscripts cost less than get() calls
                kind = ev["ev"]
                run_id = ev["run"]
                ts = ev["ts"]
                seq = ev["seq"]
                pid = ev["pid"]
            except KeyError:
                get = ev.get
                kind, run_id, ts = get("ev"), get("run"), get("ts")
                seq, pid = get("seq"), get("pid")
            handler = handlers.get(kind)
            if handler is None or type(run_id) is not str:
                state.ignored += 1
                continue
            if run_id != cur_id:
                if r is not None:
                    r.events += k
                    r.last_ts = last
                    r._next_seq = next_seq
                    r._seq_pid = seq_pid
                r = runs.get(run_id)
                if r is None:
                    r = state.run(run_id)
                cur_id = run_id
                k = 0
                last = r.last_ts
                next_seq = r._next_seq
                seq_pid = r._seq_pid
            k += 1
            if (type(ts) is float or type(ts) is int) and -TS_LIMIT < ts < TS_LIMIT:
                if last is None or ts > last:
                    if last is None:
                        r.first_ts = ts
                    last = ts
                elif ts < r.first_ts:
                    r.first_ts = ts  # first_ts is set with the first last_ts
            else:
                if ts is not None:
                    r.bad_values += 1  # NaN, 1e308, "x": no time at all
                ts = None
            if seq == next_seq and pid == seq_pid:
                next_seq = seq + 1
            elif type(seq) is int:
                r._next_seq = next_seq
                r._seq_pid = seq_pid
                _writer_switch(r, pid, seq)
                next_seq = r._next_seq
                seq_pid = r._seq_pid
            handler(state, r, ev, ts)
    finally:
        if r is not None:
            r.events += k
            r.last_ts = last
            r._next_seq = next_seq
            r._seq_pid = seq_pid
    return n


_NO_PID = object()


def _writer_switch(r: RunState, pid: Any, seq: int) -> None:
    """A seq that does not follow the previous event's: another writer, or a gap."""
    if type(pid) is not int:
        pid = None  # a corrupt pid (a list, a dict) must not be used as a key
    seqs = r.last_seq
    if r._seq_pid is not _NO_PID:
        seqs[r._seq_pid] = r._next_seq - 1
    prev = seqs.get(pid)
    # Gaps within one writer mean lines lost (a write failure, a cut file). A seq back at 1
    # is a new writer with a reused pid (or a forked child): not a gap.
    if prev is not None and seq > prev + 1:
        r.seq_gaps += seq - prev - 1
    seqs[pid] = seq
    r._seq_pid = pid
    r._next_seq = seq + 1


def _run_start(state: State, r: RunState, ev: dict[str, Any], ts: float | None) -> None:
    r.started = True
    r.info = info = _scrub(r, {k: v for k, v in ev.items() if k not in _ENVELOPE})
    lim = info.get("limits")
    if lim is not None:  # the container's limits: a nested object of numbers
        if isinstance(lim, dict):
            info["limits"] = _scrub(r, dict(lim))
        else:
            del info["limits"]
            r.bad_values += 1
    r.start = ts
    pid = ev.get("pid")
    if type(pid) is int:
        proc = r.processes.setdefault(pid, {"pid": pid})
        proc.update(start=ts, owner=True, pid_start=ev.get("pid_start"), argv=ev.get("argv"))


def _run_end(state: State, r: RunState, ev: dict[str, Any], ts: float | None) -> None:
    r.end = ts
    status = ev.get("status")
    r.status = status if isinstance(status, str) else "completed"
    r.end_info = _scrub(r, {k: v for k, v in ev.items() if k not in _ENVELOPE})
    err = ev.get("error")
    r.run_failure = 0
    if r.status == "failed" and isinstance(err, dict):
        sig = _err_sig(err)
        phases = r.phases
        caught = any(p.status == "failed" and _sig(p) == sig for p in phases.values())
        r.run_failure = 0 if caught else 1
    if ts is not None:
        # Phases already read that started after this end (another writer's lines came
        # first): late, as they would be had they come after it.
        for p in list(r.phases.values()):
            if not p.late and p.start is not None and p.start > ts:
                _make_late(r, p)
    if "error" in ev and r.status == "failed":
        # Usually the exception that failed the last phase, grouped already: counted once.
        _group_error(r, ev["error"], None, ts, None, once=True)
    # Phases the run left open ended with it (repeats kept as tuples are dropped: counted).
    r.folded_count += len(r.lite)
    r.lite.clear()
    for span in list(r.open):
        rec = r.phases.get(span)
        if rec is not None and rec.status == "running":
            rec.status = "interrupted"  # no end line: we cannot know how it ended
        r.open.discard(span)


def _resumed(state: State, r: RunState, ev: dict[str, Any], ts: float | None) -> None:
    """A new process continues the run after its owner died: it becomes the owner, and the
    phases the dead one left open are interrupted."""
    pid = ev.get("pid")
    prev = ev.get("prev_pid")
    for span in list(r.open):
        rec = r.phases.get(span)
        if rec is not None and rec.pid != pid and rec.status == "running":
            rec.status = "interrupted"
            r.open.discard(span)
    for proc in r.processes.values():
        proc["owner"] = False
    if type(pid) is int:
        r.processes.setdefault(pid, {"pid": pid}).update(
            start=ts, owner=True, pid_start=ev.get("pid_start"), argv=ev.get("argv")
        )
    r.resumes.append(
        {"ts": ts, "pid": pid, "prev_pid": prev if type(prev) is int else None,
         "gap_s": _num(ev.get("gap_s"))}
    )  # fmt: skip


def _process_start(state: State, r: RunState, ev: dict[str, Any], ts: float | None) -> None:
    pid = ev.get("pid")
    if type(pid) is int:
        proc = r.processes.setdefault(pid, {"pid": pid})
        proc.update(
            start=ts,
            owner=False,
            ppid=ev.get("ppid"),
            pid_start=ev.get("pid_start"),
            argv=ev.get("argv"),
        )


def _process_end(state: State, r: RunState, ev: dict[str, Any], ts: float | None) -> None:
    pid = ev.get("pid")
    if type(pid) is int:
        proc = r.processes.setdefault(pid, {"pid": pid})
        proc.update(end=ts, status=ev.get("status"))


def _phase_start(state: State, r: RunState, ev: dict[str, Any], ts: float | None) -> None:
    try:  # what every start line has: subscripts cost less than get() calls
        span = ev["span"]
        parent = ev["parent"]
        key = ev["phase"]
    except KeyError:
        get = ev.get
        span, parent, key = get("span"), get("parent"), get("phase")
    phases = r.phases
    if type(span) is not str or span in phases:
        return
    if type(parent) is not str:
        parent = None
    if type(key) is not str:
        key = "?"
    if parent is not None and parent in r.lite:
        _materialize(r, parent)
    if len(phases) >= state.max_phases and (parent, key) in r.first_of:
        # A repeat beyond the bound: it will be folded when it ends, so keep no record.
        r.lite[span] = (key, parent, ev)
        return
    _record(r, span, key, parent, ev, ts)
    r.first_of.setdefault((parent, key), span)
    pid = ev.get("pid")
    if type(pid) is int and pid not in r.processes:
        r.processes[pid] = {"pid": pid, "start": ts}


def _record(
    r: RunState, span: str, key: str, parent: str | None, ev: dict[str, Any], ts: float | None
) -> PhaseRec:
    """The open record of a phase from its start line, under its parent (or a root)."""
    name = ev.get("name")
    pid = ev.get("pid")
    rec = PhaseRec(span, key, name if type(name) is str else key, parent,
                   pid if type(pid) is int else None)  # fmt: skip
    if ts is not None:
        rec.start = ts
    thread = ev.get("thread")
    if thread is not None:
        rec.thread = thread
    meta = ev.get("meta")
    if meta is not None:
        rec.meta = meta
    attempt = ev.get("attempt")
    if type(attempt) is int:
        rec.attempt = attempt
    phases = r.phases
    phases[span] = rec
    r.open.add(span)
    end = r.end
    if end is not None and ts is not None and ts > end:
        rec.late = True
        r.roots.append(span)
    else:
        prec = phases.get(parent) if parent is not None else None
        if prec is not None:
            prec.children.append(span)
        else:
            r.roots.append(span)
            if parent is not None:
                r.waiting.setdefault(parent, []).append(span)
    if r.waiting and span in r.waiting:
        _adopt(r, rec, r.waiting.pop(span))
    return rec


def _adopt(r: RunState, rec: PhaseRec, spans: list[str]) -> None:
    """File the phases that named ``rec`` as parent before it was known beneath it, so the
    tree is the same whatever order the writers' lines arrived in."""
    ancestors = {rec.span}
    a = rec
    while a.parent is not None and a.parent not in ancestors and not a.late:
        ancestors.add(a.parent)
        nxt = r.phases.get(a.parent)
        if nxt is None:
            break
        a = nxt
    moved = set()
    for span in spans:
        kid = r.phases.get(span)
        # Gone (folded), late, or an ancestor (a damaged log naming a cycle): stays a root.
        if kid is None or kid.late or kid.parent != rec.span or span in ancestors:
            continue
        moved.add(span)
        rec.children.append(span)
        if kid.status == "failed":
            _below(r, rec, _sig(kid))
    if moved:
        r.roots = [s for s in r.roots if s not in moved]


def _make_late(r: RunState, rec: PhaseRec) -> None:
    """A phase found to have started after the run's end: out from under its parent."""
    rec.late = True
    prec = r.phases.get(rec.parent) if rec.parent is not None else None
    if prec is not None and rec.span in prec.children:
        prec.children.remove(rec.span)
        r.roots.append(rec.span)
    elif rec.parent is not None:
        waiting = r.waiting.get(rec.parent)
        if waiting is not None and rec.span in waiting:
            waiting.remove(rec.span)


def _err_sig(e: Any) -> tuple[str | None, str | None]:
    """What tells one exception from another in the log: its type and message (strings
    only: a damaged line's list must not reach a set)."""
    if not isinstance(e, dict):
        return (None, None)
    t, m = e.get("type"), e.get("msg")
    return (t if isinstance(t, str) else None, m if isinstance(m, str) else None)


def _sig(rec: PhaseRec) -> tuple[str | None, str | None]:
    return _err_sig(rec.error)


MAX_FAILED_BELOW = 64  # distinct exceptions remembered under one phase


def _below(r: RunState, prec: PhaseRec, sig: tuple[Any, Any]) -> None:
    """Note that an exception failed a phase beneath ``prec``; if ``prec`` was counted for
    that same exception (its end line was read first), it no longer is."""
    below = prec.failed_below
    if below is None:
        below = prec.failed_below = set()
    if len(below) < MAX_FAILED_BELOW:
        below.add(sig)
    if prec.origin and prec.status == "failed" and _sig(prec) == sig:
        prec.origin = False
        r.failures -= 1


def _count_error(r: RunState, sig: tuple[Any, Any]) -> None:
    """One more exception in the run's count (the run's own, if it is this one, no more)."""
    r.failures += 1
    if r.run_failure:
        err = r.end_info.get("error")
        if isinstance(err, dict) and _err_sig(err) == sig:
            r.run_failure = 0  # the run's exception is this phase's, read after the run's end


def _count_failure(r: RunState, rec: PhaseRec) -> None:
    """Count a failed phase's exception once in the run: not when it failed a phase beneath
    (the exception passing through), and no longer for a parent counted before this line
    was read (lines from several writers come in any order). Works on the parent's note,
    not its children, so a child folded away still counts."""
    if rec.origin:
        return
    sig = _sig(rec)
    prec = r.phases.get(rec.parent) if rec.parent is not None and not rec.late else None
    if prec is not None:
        _below(r, prec, sig)
    below = rec.failed_below
    if below is not None and sig in below:
        return
    rec.origin = True
    _count_error(r, sig)


def error_count(r: RunState) -> int:
    """The run's errors, the one count every surface shows: error log events, plus each
    exception that failed phases (once, however many nested phases it ended), plus the
    run's own exception when no phase failed with it."""
    return r.log_counts.get("error", 0) + r.failures + r.run_failure


# long: the reducer's per-phase path, kept in one frame: `report` on 1M events (PERFORMANCE.md)
def _end_record(
    state: State, r: RunState, ev: dict[str, Any], ts: float | None, span: str, rec: PhaseRec
) -> None:
    """The end of a phase that has a record."""
    get = ev.get
    status = get("status")
    rec.status = status if type(status) is str else "completed"
    rec.end = ts
    # Each check inline for the usual type; the helpers only for anything else (the hot
    # path of a replay: a function call per field would cost a tenth of the reducer).
    d = get("duration_ms")
    if not (type(d) is float and 0.0 <= d <= LIMIT):
        d = _measure(r, d)
    rec.duration_ms = d
    c = get("cpu_ms")
    if not (type(c) is float and 0.0 <= c <= LIMIT):
        c = _measure(r, c)
    rec.cpu_ms = c
    v = get("children_cpu_ms")
    if v is not None and _measure(r, v) is not None:
        rec.children_cpu_ms = v
    v = get("rss_bytes")
    if v is not None and (type(v) is int and 0 <= v <= INT_LIMIT or _size(r, v) is not None):
        rec.rss_bytes = v
    v = get("rss_start_bytes")
    if v is not None and (type(v) is int and 0 <= v <= INT_LIMIT or _size(r, v) is not None):
        rec.rss_start_bytes = v
    v = get("peak_rss_bytes")
    if v is not None and (type(v) is int and 0 <= v <= INT_LIMIT or _size(r, v) is not None):
        rec.peak_rss_bytes = v
        # The owner's phase peaks come from boundary reads the samples may not have seen:
        # the run's peak is never below one of its own process's phases.
        proc = r.processes.get(rec.pid)
        if (
            proc is not None
            and proc.get("owner")
            and (r.peak_rss_bytes is None or v > r.peak_rss_bytes)
        ):
            r.peak_rss_bytes = v
    v = get("peak_rss_method")
    if type(v) is str:
        rec.peak_rss_method = v
    v = get("items")
    if v is not None and (type(v) is int and 0 <= v <= INT_LIMIT or _size(r, v) is not None):
        rec.items = v
    v = get("total")
    if v is not None and _size(r, v) is not None:
        rec.total = v
    v = get("warnings")
    if v is not None and _size(r, v) is not None and v > rec.warnings:
        rec.warnings = v
    v = get("errors")
    if v is not None and _size(r, v) is not None and v > rec.errors:
        rec.errors = v
    if "error" in ev:
        rec.error = ev["error"]
    v = get("reason")
    if type(v) is str:
        rec.reason = v
    v = get("attempt")
    if type(v) is int:
        rec.attempt = v
    v = get("counts")
    if v is not None:
        _phase_counts(r, rec, v)
    if rec.status == "failed" and "error" in ev:
        _group_error(r, ev["error"], rec.phase, ts, span)
    r.open.discard(span)
    if rec.status == "failed":
        _count_failure(r, rec)
    agg = r.keys.get(rec.phase)
    if agg is None:
        agg = r.keys[rec.phase] = KeyAgg()
    agg.add(rec.status, d or 0.0, c or 0.0, rec.items, rec.peak_rss_bytes)
    if len(r.phases) > state.max_phases:
        _maybe_fold(r, rec)


def _materialize(r: RunState, span: str) -> PhaseRec | None:
    """Give a repeat kept light its full record (something now refers to it)."""
    t = r.lite.pop(span, None)
    if t is None:
        return r.phases.get(span)
    key, parent, ev = t
    ts = ev.get("ts")
    return _record(r, span, key, parent, ev, ts if type(ts) is float or type(ts) is int else None)


# phase_end with light repeats folded inline (no call per repeat):
# long: the reducer's per-event path; the 1M-event `report` figure depends on it
def _phase_end(state: State, r: RunState, ev: dict[str, Any], ts: float | None) -> None:
    span = ev.get("span")
    if type(span) is not str:
        return
    rec = r.phases.get(span)
    lite = None
    if rec is None:
        lite = r.lite.pop(span, None)
        if lite is None:
            # No start line: a phase written whole in one line (it ended before its start
            # line was due; the line carries the start's members), a cut log, a folded
            # repeat. The start from the end line, at ts - duration_ms.
            d = _num(ev.get("duration_ms"))
            start = ts - d / 1000.0 if ts is not None and d is not None and d >= 0 else None
            _phase_start(state, r, ev, start)
            rec = r.phases.get(span)
            if rec is None:
                lite = r.lite.pop(span, None)  # a repeat beyond max_phases: folded below
                if lite is None:
                    return
    if rec is not None:
        _end_record(state, r, ev, ts, span, rec)
        return
    if lite is None:
        return
    # The end of a repeat kept light (the usual end beyond max_phases): straight into the
    # aggregates, as _maybe_fold would have put it.
    key, parent, _ = lite
    get = ev.get
    try:  # what the monitor writes at every end: subscripts cost less than get() calls
        status = ev["status"]
        d = ev["duration_ms"]
        c = ev["cpu_ms"]
        items = ev["items"]
        peak = ev["peak_rss_bytes"]
    except KeyError:
        status, d, c = get("status"), get("duration_ms"), get("cpu_ms")
        items, peak = get("items"), get("peak_rss_bytes")
    if type(status) is not str:
        status = "completed"
    # Each check inline for the usual type; the helpers only for anything else.
    if not (type(d) is float and 0.0 <= d <= LIMIT):
        d = _measure(r, d) or 0.0
    if not (type(c) is float and 0.0 <= c <= LIMIT):
        c = _measure(r, c) or 0.0
    if not (type(items) is int and 0 <= items <= INT_LIMIT):
        items = _size(r, items) or 0
    if peak is not None and not (type(peak) is int and 0 <= peak <= INT_LIMIT):
        peak = _size(r, peak)
    prec = r.phases.get(parent) if parent is not None else None
    if status == "failed":  # a repeat kept light has no sub-phase: its exception is its own
        sig = _err_sig(get("error"))
        _count_error(r, sig)
        if prec is not None:
            _below(r, prec, sig)
    agg = r.keys.get(key)
    if agg is None:
        agg = r.keys[key] = KeyAgg()
    if prec is not None:
        table = prec.folded
        if table is None:
            table = prec.folded = {}
    else:
        table = r.folded
    f = table.get(key)
    if f is None:
        f = table[key] = KeyAgg(light=True)
    if status == "completed":
        # The usual repeat: KeyAgg.add's body for both aggregates, inline (its two calls
        # were a sixth of the cost of a folded repeat). test_state checks both paths agree.
        for a in (agg, f):
            a.count += 1
            a.completed += 1
            a.total_ms += d
            b = a.bucket_counts
            if b is not None:
                i = bisect_left(_BUCKET_MS, d)
                if i < _NBUCKETS:
                    b[i] += 1
            if a.min_ms is None or d < a.min_ms:
                a.min_ms = d
            if a.max_ms is None or d > a.max_ms:
                a.max_ms = d
            a.last_ms = d
            a.cpu_ms += c
            a.items += items
            if peak is not None and (a.peak_rss_bytes is None or peak > a.peak_rss_bytes):
                a.peak_rss_bytes = peak
            recent = a.recent
            if recent is not None:
                recent.append(d)
    else:
        agg.add(status, d, c, items, peak)
        f.add(status, d, c, items, peak)
    counts = get("counts")
    if counts is not None:
        _phase_counts(r, None, counts)
    if status == "failed" and "error" in ev:
        _group_error(r, ev["error"], key, get("ts"), span)
    r.folded_count += 1


def _maybe_fold(r: RunState, rec: PhaseRec) -> None:
    """Fold a completed repeat of a key into its parent's aggregate, bounding memory.

    The first phase with a given key under a given parent always keeps its record, so every
    distinct phase of the plan stays visible in detail.
    """
    if r.first_of.get((rec.parent, rec.phase)) == rec.span:
        return
    if rec.children and any(c in r.open for c in rec.children):
        return
    prec = r.phases.get(rec.parent) if rec.parent is not None and not rec.late else None
    if prec is not None:
        siblings = prec.children
        folded = prec.folded
        if folded is None:
            folded = prec.folded = {}
    else:
        siblings = r.roots
        folded = r.folded
        waiting = r.waiting.get(rec.parent) if rec.parent is not None else None
        if waiting:  # an orphan folded before its parent appeared: nothing left to adopt
            if waiting[-1] == rec.span:
                waiting.pop()
            elif rec.span in waiting:
                waiting.remove(rec.span)
    agg = folded.get(rec.phase)
    if agg is None:
        agg = folded[rec.phase] = KeyAgg(light=True)
    agg.add(rec.status, rec.duration_ms or 0.0, rec.cpu_ms or 0.0, rec.items, rec.peak_rss_bytes)
    # Remove the record and any detail beneath it; the per-key aggregates keep the figures.
    if siblings and siblings[-1] == rec.span:
        siblings.pop()  # the usual case, a loop: O(1)
    else:
        try:
            siblings.remove(rec.span)
        except ValueError:
            if rec.span in r.roots:  # an orphan its parent could not adopt (a cycle)
                r.roots.remove(rec.span)
    r.open.discard(rec.span)
    del r.phases[rec.span]
    r.folded_count += 1
    stack = list(rec.children)
    while stack:
        gone = r.phases.pop(stack.pop(), None)
        if gone is not None:
            stack.extend(gone.children)
            r.open.discard(gone.span)
            r.folded_count += 1


def _aggregate(state: State, r: RunState, ev: dict[str, Any], ts: float | None) -> None:
    """Many calls of one key summed by the writer (hot-loop recording): first-class in the
    per-key aggregates and under their parent, like folded repeats."""
    key = ev.get("phase")
    if type(key) is not str:
        return
    parent = ev.get("parent")
    prec = r.phases.get(parent) if type(parent) is str else None
    if prec is not None:
        if prec.folded is None:
            prec.folded = {}
        table = prec.folded
    else:
        table = r.folded
    agg = table.get(key)
    if agg is None:
        agg = table[key] = KeyAgg(light=True)
    agg.add_many(ev)
    k = r.keys.get(key)
    if k is None:
        k = r.keys[key] = KeyAgg()
    k.add_many(ev)
    n = _int(ev.get("count"))
    if n > 0:
        r.aggregated += n


def _rec(r: RunState, span: Any) -> PhaseRec | None:
    if type(span) is not str:
        return None  # no span, or a corrupt one (a list is not even a key)
    rec = r.phases.get(span)
    if rec is None and span in r.lite:
        rec = _materialize(r, span)
    return rec


def _progress(state: State, r: RunState, ev: dict[str, Any], ts: float | None) -> None:
    get = ev.get
    rec = _rec(r, get("span"))
    if rec is None:
        return
    # Checks inline for the usual type, the helper for anything else (a tenth of a replay).
    v = get("items")
    if v is not None and (type(v) is int and 0 <= v <= INT_LIMIT or _size(r, v) is not None):
        rec.items = v
        rec.items_ts = ts
    v = get("total")
    if v is not None and (type(v) is int and 0 <= v <= INT_LIMIT or _size(r, v) is not None):
        rec.total = v


def _bare(ev: dict[str, Any]) -> dict[str, Any]:
    """A copy of an event without the kind, run and seq (kept in rings); a C-level copy and
    three deletions cost less than a filtering comprehension."""
    d = dict(ev)
    d.pop("ev", None)
    d.pop("run", None)
    d.pop("seq", None)
    return d


def _stamped(r: RunState, ev: dict[str, Any], ts: float | None) -> dict[str, Any]:
    """The kept copy of a log, artifact or alert line: scrubbed, without an unusable ts."""
    d = _scrub(r, _bare(ev))
    if ts is None:
        d.pop("ts", None)
    return d


def _sample(state: State, r: RunState, ev: dict[str, Any], ts: float | None) -> None:
    sample = dict(ev)  # the kept copy, without the kind, run and seq (as _bare)
    del sample["ev"]
    sample.pop("run", None)
    sample.pop("seq", None)
    sample = _scrub_sample(r, sample)
    if ts is None:
        sample.pop("ts", None)  # NaN or 1e308: no time
    r.samples.append(sample)
    get = sample.get
    rss = get("rss_bytes")
    if type(rss) is int and rss >= 0:
        if r.peak_rss_bytes is None or rss > r.peak_rss_bytes:
            r.peak_rss_bytes = rss
        # The process tree's RSS (the page's "process + children" line): summed here once.
        sample["tree_rss_bytes"] = tree = rss + _int(get("children_rss_bytes"))
        if r.peak_tree_rss_bytes is None or tree > r.peak_tree_rss_bytes:
            r.peak_tree_rss_bytes = tree
    else:
        rss = None
    cpu = get("cpu_pct")
    if not (type(cpu) is float or type(cpu) is int):
        cpu = None  # in range: scrubbed above
    spans = get("spans")
    if isinstance(spans, list):
        phases = r.phases
        for span in spans:
            rec = phases.get(span) if isinstance(span, str) else None
            if rec is None:
                continue
            if cpu is not None and (rec.cpu_peak_pct is None or cpu > rec.cpu_peak_pct):
                rec.cpu_peak_pct = cpu
            if rss is not None and (rec.peak_rss_bytes is None or rss > rec.peak_rss_bytes):
                rec.peak_rss_bytes = rss


def _log(state: State, r: RunState, ev: dict[str, Any], ts: float | None) -> None:
    level = ev.get("level")
    level = level if level in ("warning", "error") else "warning"
    r.log_counts[level] = r.log_counts.get(level, 0) + 1
    r.logs.append(_stamped(r, ev, ts))
    g = r.errgroups
    if g is None:
        g = r.errgroups = Groups()
    g.add_log(ev, level, ts)
    rec = _rec(r, ev.get("span"))
    if rec is not None:
        if level == "error":
            rec.errors += 1
        else:
            rec.warnings += 1


def _artifact(state: State, r: RunState, ev: dict[str, Any], ts: float | None) -> None:
    a = _stamped(r, ev, ts)
    r.artifacts.append(a)
    rec = _rec(r, ev.get("span"))
    if rec is not None:
        if rec.artifacts is None:
            rec.artifacts = []
        if len(rec.artifacts) < MAX_ARTIFACTS_PER_PHASE:
            rec.artifacts.append({"path": a.get("path"), "bytes": a.get("bytes")})


def _metric(state: State, r: RunState, ev: dict[str, Any], ts: float | None) -> None:
    name = ev.get("name")
    if not isinstance(name, str):
        return
    value = _num(ev.get("value"))
    m = r.metrics.get(name)
    if m is None:
        m = r.metrics[name] = {"value": value, "count": 0, "min": value, "max": value}
    m["count"] += 1
    m["value"] = value
    m["ts"] = ts
    if value is not None:
        if m["min"] is None or value < m["min"]:
            m["min"] = value
        if m["max"] is None or value > m["max"]:
            m["max"] = value
    rec = _rec(r, ev.get("span"))
    if rec is not None:
        if rec.metrics is None:
            rec.metrics = {}
        if name in rec.metrics or len(rec.metrics) < MAX_METRICS_PER_PHASE:
            rec.metrics[name] = value


def _group_error(
    r: RunState, error: Any, key: str | None, ts: Any, span: Any, once: bool = False
) -> None:
    """The exception that ended a phase or the run, into the run's error groups."""
    g = r.errgroups
    if g is None:
        g = r.errgroups = Groups()
    g.add_error(error, key, ts if type(ts) is float or type(ts) is int else None, span, once)


def _add_count(table: dict[str, float], name: str, inc: float) -> None:
    cur = table.get(name)
    if cur is not None:
        table[name] = cur + inc
    elif len(table) < MAX_COUNTERS:
        table[name] = inc


def _counter(state: State, r: RunState, ev: dict[str, Any], ts: float | None) -> None:
    """An increment of a counter: summed over the run (every process) and its phase."""
    name = ev.get("name")
    inc = _num(ev.get("inc"))
    if type(name) is not str or inc is None or not 0 <= inc < float("inf"):
        return
    _add_count(r.counters, name, inc)
    rec = _rec(r, ev.get("span"))
    if rec is not None:
        if rec.counts is None:
            rec.counts = {}
        _add_count(rec.counts, name, inc)


def _phase_counts(r: RunState, rec: PhaseRec | None, counts: Any) -> None:
    """A phase's counter totals at its end: what its ``count`` events did not carry yet
    (the increments of its last half second) is added to the run's sums."""
    if not isinstance(counts, dict):
        return
    for name, total in counts.items():
        total = _num(total)
        if total is None or not 0 <= total < float("inf"):
            continue
        if rec is None:
            _add_count(r.counters, name, total)
            continue
        if rec.counts is None:
            rec.counts = {}
        seen = rec.counts.get(name, 0)
        if total > seen:
            _add_count(r.counters, name, total - seen)
            _add_count(rec.counts, name, total - seen)


def _alert(state: State, r: RunState, ev: dict[str, Any], ts: float | None) -> None:
    aid = ev.get("alert")
    if not isinstance(aid, str):
        return
    r.alert_events += 1
    cur = r.alerts.get(aid)
    a = _stamped(r, ev, ts)
    if cur is None:
        a.setdefault("raised_ts", ts)
        r.alerts[aid] = a
        if r.acks and aid in r.acks:
            _acknowledged(a, r.acks[aid])  # appended to another file read before this one
        return
    # An acknowledgement or resolution keeps what the raise said (value, threshold, msg).
    merged = {**cur, **{k: v for k, v in a.items() if v is not None}}
    if ev.get("state") == "acknowledged":
        merged["acknowledged"] = True
        merged["state"] = cur.get("state") if cur.get("state") == "resolved" else "acknowledged"
    elif ev.get("state") == "resolved":
        merged["resolved_ts"] = ts
    elif ev.get("state") == "raised":
        merged["raised_ts"] = ts
        merged.pop("resolved_ts", None)
        merged.pop("acknowledged", None)
        merged.pop("cleared", None)  # a re-raise (an escalation) is active again
    r.alerts[aid] = merged


def _alert_ack(state: State, r: RunState, ev: dict[str, Any], ts: float | None) -> None:
    """An acknowledgement appended by any process (``ack``): who, when, the note."""
    aid = ev.get("alert")
    if type(aid) is not str:
        return
    ack = {"ack_by": _text(ev.get("by")), "ack_ts": ts, "ack_note": _text(ev.get("note"))}
    if aid not in r.acks and len(r.acks) >= MAX_COUNTERS:
        return  # hostile input: a bounded table
    r.acks[aid] = ack
    cur = r.alerts.get(aid)
    if cur is not None:
        _acknowledged(cur, ack)


def _acknowledged(a: dict[str, Any], ack: dict[str, Any]) -> None:
    a.update(ack)
    a["acknowledged"] = True
    if a.get("state") == "raised":
        a["state"] = "acknowledged"


def _alerts_cleared(state: State, r: RunState, ev: dict[str, Any], ts: float | None) -> None:
    """Acknowledged alerts hidden from the active list (``ack --clear``); they stay in
    the alert history, marked ``cleared``."""
    ids = ev.get("alerts")
    if not isinstance(ids, list):
        return
    by = _text(ev.get("by"))
    for aid in ids:
        cur = r.alerts.get(aid) if type(aid) is str else None
        if cur is not None:
            cur.update(cleared=True, cleared_by=by, cleared_ts=ts)
    r.cleared = {"by": by, "ts": ts, "count": len(ids)}


def _text(v: Any) -> str | None:
    return v[:500] if type(v) is str else None


_HANDLERS = {
    "run_start": _run_start,
    "run_end": _run_end,
    "process_start": _process_start,
    "resumed": _resumed,
    "aggregate": _aggregate,
    "process_end": _process_end,
    "phase_start": _phase_start,
    "phase_end": _phase_end,
    "progress": _progress,
    "sample": _sample,
    "log": _log,
    "artifact": _artifact,
    "metric": _metric,
    "alert": _alert,
    "count": _counter,
    "alert_ack": _alert_ack,
    "alerts_cleared": _alerts_cleared,
}
