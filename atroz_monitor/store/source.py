"""Data sources for the HTTP API: run logs followed live into reducer state.

A source owns one ``State`` built by the one reducer from the files it follows, and a
``version`` bumped whenever anything a client can see changed (events applied, a run's
status or a file's availability). Each version records which runs and spans it touched, in
a bounded ring, so a Server-Sent Events writer can send only what changed since the version
its client last saw; writers wait on ``cond`` and do no work while nothing changes.

One background thread per source polls every ``POLL_S`` while a stream client is connected
or a request came in the last ``IDLE_S``; otherwise it sleeps. A poll looks only at what can
change (issue 13): the directories (rescanned when their mtime moves), the *hot* files
(changed in the last ``HOT_S`` or holding a running run) and the files the kernel named
(``watch.DirWatch``, inotify; without it, quiet files are stat'ed ``COLD_SLICE`` at a time).
At most ``MAX_OPEN_LOGS`` descriptors stay open, for hot files only.

A finished run is *parked*: known by its catalog summary (``catalog.summarize``), its files
neither followed nor held in ``state``; a parked file that changes is followed again. Runs
parked at start come from the directory's catalog, read line by line; followed runs are
parked once quiet. A parked run's full view is reduced from its files on demand into a small
LRU. Answers over every run (summaries, the run index) are cached per version (``cached``).

Locking: ``refresh`` reads files outside the state lock, then applies the whole batch under
it and bumps the version once, so a reader never sees half a batch. Views are built under the
lock and copied (``_detach``); JSON encoding happens outside it, once per version and run.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import heapq
import os
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from ..events import dumps
from ..read import catalog, loader, reader
from ..read.reader import LOG_SUFFIXES, Follower, ReadStats
from ..read.state import RunState, State, apply
from ..read.watch import DirWatch
from ..view import history, views
from ..view.alerts import merge_alerts, open_summary, with_alerts

if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Protocol

    class LiveRun(Protocol):
        """What the store reads of one run of a live monitor."""

        id: str
        live: bool
        ended: bool

        @property
        def path(self) -> str: ...
        def health(self) -> Mapping[str, Any]: ...

    class LiveMonitor(Protocol):
        """What the store reads of a live monitor (``record.monitor.Monitor``): the store
        comes before the recorder in the data flow, so it names these members, not the class."""

        max_phases: int
        path: str
        is_dir: bool
        history_paths: list[str]

        @property
        def run_id(self) -> str: ...
        def runs(self) -> Sequence[LiveRun]: ...
        def history(self) -> list[dict[str, Any]]: ...


__all__ = ["Delta", "FileSource", "MonitorSource", "RunEntry", "Source", "View"]

POLL_S = 0.025
"""How often the refresher polls files while someone is watching (bounds SSE latency)."""
IDLE_S = 5.0
"""The refresher keeps polling this long after the last request, then parks."""
FRESH_S = 0.1
"""A request refreshes inline if the last refresh is older than this."""
STATUS_EVERY_S = 1.0
"""How often run statuses (liveness, silence) are re-evaluated while polling."""
CHANGES = 512
"""Versions remembered for SSE deltas; a client further behind gets a full snapshot."""
RUNNING_TTL_S = 0.1
"""A running run's view depends on the clock (durations, ETA): rebuilt at most this often."""
LIVENESS_TTL_S = 1.0
MAX_OPEN_LOGS = 64
"""Most log descriptors a source holds, whatever its directories hold (issue 13)."""
HOT_S = 10.0
"""A file that changed this recently (or holds a running run) is polled on every refresh."""
COLD_SWEEP_S = 1.0
COLD_SLICE = 64
"""Without inotify, quiet files are stat'ed ``COLD_SLICE`` at a time every ``COLD_SWEEP_S``."""
PARKED_VIEWS = 8
"""Full views of finished (parked) runs kept, least recently used dropped: a finished run's
detail is reduced from its log when asked, not held for every run of the directory."""
HISTORY_RUNS = 200
"""Earlier runs a view compares with (as many as a ``Monitor`` loads for its own runs)."""
REDUCED_RUNS = 24
"""Light reductions of parked runs kept for /metrics (the latest run of each pipeline)."""
SLOW_S = 0.05
"""A cached answer costing more than this is recomputed in the background when stale."""
EMBEDDED_HISTORY = 1000
"""Finished runs of its directory an embedded dashboard lists (from the catalog's tail)."""
CACHE_S = 1.0
"""Cross-run answers (summary, alerts, history) are reused for at most this long."""
MAX_BATCH_EVENTS = 200_000
"""Events read per refresh before applying (a large backlog is consumed over several)."""

AlertHook = Callable[[State, str], "Sequence[dict[str, Any]]"]


class RunEntry(NamedTuple):
    """One run in the run index: what a page of runs is sorted, filtered and cut by."""

    start: float
    id: str
    status: str
    name: str


@dataclass
class RunChange:
    """What one version changed in one run."""

    spans: set[str] | None  # None: every span (run_end, a status change)
    samples_from: int  # the run's sample total before this version
    logs_from: int


@dataclass
class Change:
    version: int
    runs: dict[str, RunChange]
    runs_changed: bool  # the run list or a run's status or availability changed
    new_runs: bool
    reset: bool  # state rebuilt: deltas across it are meaningless


@dataclass
class Delta:
    """What changed in one run since a client's version."""

    spans: set[str] | None
    samples_from: int
    logs_from: int
    runs_changed: bool
    new_runs: bool


@dataclass
class View:
    """One run's snapshot at one version. Shared between requests: treat as read-only."""

    version: int
    built: float  # monotonic
    snap: dict[str, Any]
    samples_total: int
    logs_total: int
    running: bool
    _body: bytes | None = field(default=None, repr=False)

    def body(self) -> bytes:
        """The snapshot as JSON bytes, encoded once (outside any lock)."""
        b = self._body
        if b is None:
            b = self._body = dumps(self.snap).encode("ascii")
        return b


def _detach(obj: Any) -> Any:
    """A copy of the dicts and lists of a view, so that the reducer can go on mutating the
    records the view refers to (a phase's artifact list, a metric's dict) while it is encoded."""
    if type(obj) is dict:
        return {k: _detach(v) for k, v in obj.items()}
    if type(obj) is list or type(obj) is tuple:
        return [_detach(v) for v in obj]
    return obj


def _compact(summary: dict[str, Any]) -> dict[str, Any]:
    """A summary as serve keeps it for a parked run (in place): phase keys, names and
    statuses interned (they repeat in every run: one copy each), ``phases`` as the
    catalog's read-only ``Phases`` over its compact arrays."""
    phases = summary.get("phases")
    raw = phases.raw if isinstance(phases, catalog.Phases) else phases
    if isinstance(raw, dict):
        out: dict[str, Any] = {}
        for key, v in raw.items():
            if type(v) is list and len(v) >= 2:
                if type(v[0]) is str:
                    v[0] = sys.intern(v[0])
                if type(v[1]) is str:
                    v[1] = sys.intern(v[1])
            out[sys.intern(key) if type(key) is str else key] = v
        summary["phases"] = catalog.Phases(out)
    plan = summary.get("plan")
    if type(plan) is list:
        summary["plan"] = [sys.intern(k) if type(k) is str else k for k in plan]
    return summary


STALE_REBUILD = 64
"""More logs than this without a current catalog entry: the catalog is rebuilt at start
(else they are followed, and summarised into the catalog once quiet)."""
_CATALOG_LINE = 64 << 20


def _log_names(directory: str) -> list[str]:
    try:
        with os.scandir(directory) as it:
            return [e.name for e in it if e.name.endswith(LOG_SUFFIXES) and _is_file(e)]
    except OSError:
        return []


def _is_file(e: os.DirEntry[str]) -> bool:
    try:
        return e.is_file()
    except OSError:
        return False


def _read_catalog(directory: str) -> dict[str, tuple[Any, list[dict[str, Any]]]] | None:
    """``{unit: (signature, compacted summaries)}`` from a directory's catalog file, read a
    line at a time (each line checksummed: a torn or corrupt one is skipped, its log is then
    followed); None when there is no usable catalog."""
    try:
        fd, _ = reader.open_fd(os.path.join(directory, catalog.FILE))
    except OSError:
        return None
    out: dict[str, tuple[Any, list[dict[str, Any]]]] = {}
    with open(fd, "rb") as f:
        lines = iter(functools.partial(f.readline, _CATALOG_LINE), b"")
        head = catalog.decode(next(lines, b"").rstrip(b"\n"))
        if not (isinstance(head, dict) and head.get("catalog") == catalog.FORMAT):
            return None
        for line in lines:
            if not line.endswith(b"\n"):
                continue  # torn (a writer mid-append) or longer than any entry: not trusted
            obj = catalog.decode(line[:-1])
            if not catalog.valid_entry(obj):
                continue
            out[obj["f"]] = (obj["sig"], [_compact(x) for x in obj["runs"]])
    return out


FREEZE_RUNS = 1000
"""A catalog load that parks more runs than this is frozen out of the cyclic collector."""


@contextlib.contextmanager
def _gc_paused(loaded: Callable[[], int]) -> Iterator[None]:
    """The cyclic collector paused while a catalog loads: 10,000 summaries are millions of
    objects (none of them cyclic garbage) that every full collection would walk again, a
    third of serve's start at 10,000 runs. Re-enabling it alone would only defer that:
    the next collections would walk every object the load made, so a big load (more than
    ``FREEZE_RUNS`` runs, ``loaded()``) is frozen first (``gc.freeze``: objects the
    collector never walks again; a finished run's summary is acyclic and is freed by
    reference counting when it goes). Only ``serve``'s ``FileSource`` loads catalogs this
    big; an embedded dashboard reads at most ``EMBEDDED_HISTORY`` runs."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if loaded() > FREEZE_RUNS:
            gc.freeze()
        if was:
            gc.enable()


def _summary_duration(s: dict[str, Any]) -> float | None:
    """A summary's duration (a light one, from a catalog's tail, has only start and end)."""
    d = s.get("duration_ms")
    if isinstance(d, (int, float)):
        return d
    start, end = s.get("start"), s.get("end")
    if isinstance(start, (int, float)) and isinstance(end, (int, float)):
        return round(max(0.0, (end - start) * 1000.0), 3)
    return None


_DONE = frozenset(("completed", "failed", "cancelled", "skipped", "cached"))


def _run_start(r: RunState) -> float:
    return r.start if r.start is not None else (r.first_ts or 0.0)


class Source:
    """The state of every run in a set of followed log files; thread-safe.

    Subclasses say which files to follow (``_files``) and may override what is known about a
    run beyond its log (``_alive_override``, ``monitor_info``).
    """

    follow_symlinks = False
    """Whether symlinks inside a followed directory are read (``serve --follow-symlinks``):
    whoever can write the directory could point one at a file only the server may read."""

    def __init__(self, *, max_phases: int = 10_000, alerts: AlertHook | None = None) -> None:
        self._lock = threading.RLock()
        self.cond = threading.Condition(self._lock)
        """Notified (under the lock) whenever ``version`` changes."""
        self._refresh_lock = threading.Lock()
        self._max_phases = max_phases
        self.state = State(max_phases=max_phases)
        # Versions start from the clock (ms) so that an id a client kept from an earlier
        # server process is never mistaken for a version of this one.
        self.version = time.time_ns() // 1_000_000
        self._changes: deque[Change] = deque(maxlen=CHANGES)
        self._followers: dict[str, Follower] = {}
        self._path_runs: dict[str, set[str]] = {}
        self._available: dict[str, bool] = {}
        self._dirs: dict[str, int | None] = {}  # directory -> mtime_ns at the last scan
        self._hot: dict[str, float] = {}  # path -> when it last changed (monotonic)
        self._held: dict[str, None] = {}  # paths whose follower keeps a descriptor
        self._due: dict[str, None] = {}  # paths to poll at the next refresh (ordered set)
        self._watch = DirWatch()
        self._unwatched = False
        # Parked: files whose runs all ended, no longer followed nor held in ``state``; their
        # runs are known by their catalog summaries (issue 13: a finished run is summarised
        # once, and costs a summary, not a reduced state).
        self._parked_sigs: dict[str, tuple[int, int]] = {}  # path -> (size, mtime_ns) parked
        self._parked_gone: set[str] = set()  # parked runs whose files vanished
        self._parked_runs: dict[str, dict[str, Any]] = {}  # run id -> summary
        # The parked runs' cross-run aggregates (summary, history, trends), folded once per
        # run as it is parked or loaded from a catalog: a request reads them (issue 13).
        self._index = history.Index()
        self._live_summ: dict[str, tuple[int, dict[str, Any]]] = {}  # run id -> (events, summary)
        self._parked_files: dict[str, list[str]] = {}  # run id -> its files
        self._parked_rows: list[RunEntry] | None = None  # newest first; None: rebuild
        self._parked_gen = 0  # bumped whenever the parked runs change
        self._parked_views: OrderedDict[str, View] = OrderedDict()
        self._cache: dict[Any, tuple[int, float, Any, float]] = {}
        self._computing: dict[Any, threading.Event] = {}
        self._reduced: OrderedDict[str, RunState] = OrderedDict()
        self._sweep_park = True  # at the first status check, park what the start read
        self._last_sweep = 0.0
        self._sweep_at = 0
        self._views: dict[str, View] = {}
        self._runs_cache: tuple[int, float, bool, list[RunEntry]] | None = None
        self._statuses: dict[str, str] = {}
        self._liveness: dict[str, tuple[float, bool | None]] = {}
        self._alert_hook = alerts
        self._rule_alerts: dict[str, list[dict[str, Any]]] = {}
        self._last_refresh = 0.0
        self._last_status = 0.0
        self._last_demand = 0.0
        self._clients = 0
        self._closed = False
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._sleeping = False
        self.refreshes = 0
        self.errors = 0
        self.last_error: str | None = None

    # -- what to follow (subclasses) ---------------------------------------------------
    def _roots(self) -> list[str]:
        """Files and directories to follow (directories: their ``*.jsonl[.gz]``)."""
        return []

    def _alive_override(self, run_id: str) -> bool | None | str:
        """``"ask"`` to use ``loader.liveness``; else the answer itself."""
        return "ask"

    def monitor_info(self, run_id: str) -> dict[str, Any] | None:
        """The recording monitor's counters for a run it records in this process, else None."""
        return None

    # -- public reading API --------------------------------------------------------------
    def ensure_fresh(self, max_age: float = FRESH_S) -> None:
        """Make sure the state is at most ``max_age`` seconds behind the files, and keep the
        refresher polling for a while (someone is looking)."""
        now = time.monotonic()
        self._last_demand = now
        self._start_refresher()
        if now - self._last_refresh > max_age:
            self.refresh()

    def subscribe(self) -> None:
        """A stream client attached: poll until it leaves."""
        with self._lock:
            self._clients += 1
        self._start_refresher()

    def unsubscribe(self) -> None:
        with self._lock:
            self._clients = max(0, self._clients - 1)

    @property
    def clients(self) -> int:
        return self._clients

    def run_ids(self) -> list[str]:
        with self._lock:
            return [*self.state.runs, *(r for r in self._parked_runs if r not in self.state.runs)]

    def resolve(self, run: str) -> str | None:
        """A run id, or ``latest``, to the id of a known run; None if there is none."""
        if run == "latest":
            index = self.run_index()
            return index[0].id if index else None
        with self._lock:
            return run if run in self.state.runs or run in self._parked_runs else None

    def view(self, run_id: str) -> View | None:
        """The run's snapshot at the current version (cached; read-only). A parked run's is
        reduced from its files on demand (outside the lock) and kept in a small LRU."""
        with self._lock:
            if run_id in self.state.runs or run_id not in self._parked_runs:
                return self._view_locked(run_id)
            v = self._parked_views.get(run_id)
            if v is not None:
                self._parked_views.move_to_end(run_id)
                return v
            files = list(self._parked_files.get(run_id, ()))
            rule_alerts = self._rule_alerts.get(run_id)
        v = self._build_parked_view(run_id, files, rule_alerts)
        if v is None:
            return None
        with self._lock:
            if run_id in self._parked_runs:
                self._parked_views[run_id] = v
                while len(self._parked_views) > PARKED_VIEWS:
                    self._parked_views.popitem(last=False)
        return v

    def snapshot(self, run_id: str) -> dict[str, Any]:
        """A fresh, caller-owned snapshot of the run; KeyError if unknown."""
        v = self.view(run_id)
        if v is None:
            raise KeyError(run_id)
        return _detach(v.snap)  # type: ignore[no-any-return]

    def delta(self, run_id: str, since: int) -> tuple[Delta | None, View | None]:
        """What changed in ``run_id`` since version ``since`` (None: too far behind, or the
        state was rebuilt: send a snapshot), with the current view; atomically."""
        with self._lock:
            if run_id in self.state.runs or run_id not in self._parked_runs:
                return self._delta_locked(run_id, since), self._view_locked(run_id)
        v = self.view(run_id)
        with self._lock:
            if v is None:
                return None, None
            return self._parked_delta(since, v), v

    def runs(self) -> list[dict[str, Any]]:
        """Every run, newest first: the ``/api/v1/runs`` rows. Builds a row per run: a
        page should use ``run_index`` and ``rows`` instead."""
        return self.rows([e.id for e in self.run_index()])

    def run_index(self) -> list[RunEntry]:
        """Every run, newest first by (start, id), as small entries (no row built): what a
        page of runs is filtered, counted and cut from. Cached per version; the parked runs'
        part is kept until they change."""
        parked = self._parked_index()
        with self._lock:
            c = self._runs_cache
            now_m = time.monotonic()
            if (
                c is not None
                and c[0] == self.version
                and (not c[2] or now_m - c[1] < RUNNING_TTL_S)
            ):
                return c[3]
            now = time.time()
            live = []
            for r in self.state.runs.values():
                start = r.start if r.start is not None else r.first_ts
                name = r.info.get("name", r.id)
                live.append(
                    RunEntry(
                        float(start) if isinstance(start, (int, float)) else 0.0,
                        r.id,
                        self.run_status(r, now),
                        name if isinstance(name, str) else str(name),
                    )
                )
            live.sort(reverse=True)
            running = any(e.status == "running" for e in live)
            index = list(
                heapq.merge(live, [e for e in parked if e.id not in self.state.runs], reverse=True)
            )
            self._runs_cache = (self.version, now_m, running, index)
            return index

    def rows(self, run_ids: Iterable[str]) -> list[dict[str, Any]]:
        """The ``/api/v1/runs`` rows of these runs (unknown ids skipped), in that order."""
        out = []
        with self._lock:
            for rid in run_ids:
                r = self.state.runs.get(rid)
                if r is not None:
                    out.append(self._run_row(r))
                else:
                    s = self._parked_runs.get(rid)
                    if s is not None:
                        out.append(self._summary_row(s))
        return out

    def statuses(self) -> dict[str, str]:
        with self._lock:
            out = {rid: s["status"] for rid, s in self._parked_runs.items()}
            out.update((rid, self.run_status(r)) for rid, r in self.state.runs.items())
            return out

    def summaries(self) -> list[dict[str, Any]]:
        """The catalog summary of every run (parked ones as catalogued, live ones summarised
        now), oldest first by start: what history, the summary and the alerts list read.
        Shared and cached: treat as read-only."""

        return self._summaries()[0]

    def _summaries(self) -> tuple[list[dict[str, Any]], list[float]]:
        def build() -> tuple[list[dict[str, Any]], list[float]]:
            with self._lock:
                live = self._live_summaries()
                parked = self._index.summaries()  # oldest first already
                held = set(self.state.runs)
            if held:
                parked = [s for s in parked if s["run"] not in held]
            out = list(heapq.merge(parked, live, key=catalog.start_of))
            return out, [catalog.start_of(s) for s in out]

        return self.cached(("summaries",), build)  # type: ignore[no-any-return]

    def _live_summaries(self) -> list[dict[str, Any]]:
        """The followed runs' summaries, oldest first; each summarised again only when
        events were applied to it (call with the lock held)."""
        cache = self._live_summ
        runs = self.state.runs
        out = []
        for rid, r in runs.items():
            hit = cache.get(rid)
            if hit is None or hit[0] != r.events:
                hit = cache[rid] = (r.events, catalog.summarize(r))
            out.append(hit[1])
        if len(cache) > len(runs):
            for rid in [rid for rid in cache if rid not in runs]:
                del cache[rid]
        out.sort(key=catalog.start_of)
        return out

    def _history_for(self, r: RunState) -> list[dict[str, Any]] | None:
        """The earlier runs a run's view compares with (ETA, anomalies): the latest
        ``HISTORY_RUNS`` summaries that started before it, bounded whatever the directory
        holds (None: the state's other runs, for a source without summaries)."""
        start = _run_start(r)
        with self._lock:
            held = set(self.state.runs)
            live = [s for s in self._live_summaries() if catalog.start_of(s) < start]
            # Enough parked runs that HISTORY_RUNS remain once the held ones are left out.
            parked = self._index.before(start, HISTORY_RUNS + len(held))
        parked = [s for s in parked if s["run"] not in held]
        runs = list(heapq.merge(parked, live, key=catalog.start_of))[-HISTORY_RUNS:]
        return [s for s in runs if s["run"] != r.id]

    def parked_summaries(self) -> list[dict[str, Any]]:
        """Summaries of the parked (finished, not held) runs, oldest first."""

        def build() -> list[dict[str, Any]]:
            with self._lock:
                out = self._index.summaries()
                held = set(self.state.runs)
            return [s for s in out if s["run"] not in held] if held else out

        return self.cached(("parked",), build)  # type: ignore[no-any-return]

    # -- cross-run answers, from the maintained aggregates ------------------------------------
    def _live_statuses(self) -> tuple[list[dict[str, Any]], dict[str, str]]:
        now = time.time()
        return self._live_summaries(), {
            rid: self.run_status(r, now) for rid, r in self.state.runs.items()
        }

    def summary(self) -> dict[str, Any]:
        """``history.summary`` of every run: the parked runs' folded totals with the
        followed runs laid over them (no pass over every run)."""
        with self._lock:
            live, statuses = self._live_statuses()
            return self._index.summary(live, statuses)

    def phase_history(
        self,
        key: str,
        *,
        before: str | None = None,
        limit: int = history.HISTORY_LIMIT,
        tags: dict[str, str] | None = None,
        skip: int = 0,
    ) -> dict[str, Any]:
        """``history.phase_history`` of ``key`` over every run (``history.Index``): the
        page of ``limit`` rows ending ``skip`` rows before the newest."""
        with self._lock:
            return self._index.phase_history(
                key, before=before, limit=limit, tags=tags, live=self._live_summaries(), skip=skip
            )

    def phase_trends(
        self,
        key: str,
        *,
        before: str | None = None,
        k: int = 10,
        tags: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """``history.phase_trends`` of ``key`` over every run (``history.Index``)."""
        with self._lock:
            return self._index.phase_trends(
                key, before=before, k=k, tags=tags, live=self._live_summaries()
            )

    def phase_keys(self) -> set[str]:
        """Every phase key of a run: the parked runs' (folded) and the followed runs'."""
        with self._lock:
            out = set(self._index.keys())
            for r in self.state.runs.values():
                out.update(r.keys)
                out.update(p.phase for p in r.phases.values())
            return out

    def live_ids(self) -> set[str]:
        """Runs held in ``state`` (followed); the others are parked, known by summary."""
        with self._lock:
            return set(self.state.runs)

    def parked_alerts(self, run_id: str, summary: dict[str, Any]) -> list[dict[str, Any]]:
        """A parked run's alerts: those its log recorded (from its summary) and those the
        server's ``--alerts`` rules raised over it."""
        with self._lock:
            extra = self._rule_alerts.get(run_id)
        return merge_alerts(summary.get("alerts") or (), extra)

    def cached(self, key: Any, fn: Callable[[], Any], max_age: float = CACHE_S) -> Any:
        """``fn()`` (an answer over every run), computed once per change of version, and
        while runs keep changing at most once per ``max_age`` seconds or ten times its own
        cost, whichever is longer. An expensive answer (over ``SLOW_S`` to compute) that
        went stale is served stale while one background thread computes the new one: a
        request never waits for a recomputation over 10,000 runs, and the CPU spent on
        them stays a small fraction of a core whatever the history holds."""
        now = time.monotonic()
        with self._lock:
            c = self._cache.get(key)
            if c is not None:
                version, built, value, cost = c
                if version == self.version or now - built < max(max_age, 10.0 * cost):
                    return value
                if cost > SLOW_S:
                    if key not in self._computing:
                        self._computing[key] = threading.Event()
                        threading.Thread(
                            target=self._recompute_quietly,
                            args=(key, fn),
                            name="atroz-monitor-cache",
                            daemon=True,
                        ).start()
                    return value
            busy = self._computing.get(key)
            if busy is None:
                busy = self._computing[key] = threading.Event()
                mine = True
            else:
                mine = False
        if mine:
            return self._recompute(key, fn)
        # Computed by another request right now: wait for it rather than computing it again
        # (eight clients asking at once must not cost eight passes over every run).
        busy.wait(60.0)
        with self._lock:
            c = self._cache.get(key)
        return c[2] if c is not None else fn()

    def _recompute_quietly(self, key: Any, fn: Callable[[], Any]) -> None:
        try:
            self._recompute(key, fn)
        except Exception as exc:  # a background thread must not print a traceback
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"

    def _recompute(self, key: Any, fn: Callable[[], Any]) -> Any:
        with self._lock:
            version = self.version
        t0 = time.monotonic()
        try:
            value = fn()
            with self._lock:
                if len(self._cache) > 256:
                    self._cache.clear()  # keys include query parameters: keep it bounded
                self._cache[key] = (version, t0, value, time.monotonic() - t0)
        finally:
            with self._lock:
                done = self._computing.pop(key, None)
            if done is not None:
                done.set()
        return value

    def read(self, fn: Callable[[State], Any]) -> Any:
        """Call ``fn(state)`` under the lock; ``fn`` must return a copy, never state itself."""
        with self._lock:
            return fn(self.state)

    def unavailable(self) -> list[dict[str, Any]]:
        """Followed files that cannot be read now, with why."""
        with self._lock:
            return [
                {"path": p, "error": f.error}
                for p, f in self._followers.items()
                if not self._available.get(p, True)
            ]

    def health(self) -> dict[str, Any]:
        with self._lock:
            return {
                "version": self.version,
                "runs": len(self.state.runs)
                + sum(1 for r in self._parked_runs if r not in self.state.runs),
                "files": len(self._followers) + len(self._parked_sigs),
                "parked_files": len(self._parked_sigs),
                "open_files": len(self._held),
                "watching": self._watch.ok and not self._unwatched,
                "unavailable": len([a for a in self._available.values() if not a]),
                "clients": self._clients,
                "refreshes": self.refreshes,
                "errors": self.errors,
                "last_error": self.last_error,
            }

    # -- refreshing ---------------------------------------------------------------------
    def refresh(self) -> bool:
        """Apply whatever is new in the followed files; True if the version changed."""
        with self._refresh_lock:
            if self._closed:
                return False
            try:
                changed = self._refresh_locked()
                now = time.monotonic()
                if changed or now - self._last_status >= STATUS_EVERY_S:
                    changed = self._check_statuses() or changed
                return changed
            except Exception as exc:  # never let one bad poll stop the refresher
                self.errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                return False
            finally:
                self._last_refresh = time.monotonic()
                self.refreshes += 1

    def _scan(self) -> list[str]:
        """Files not followed yet: explicit files, and new directory entries (a directory is
        rescanned only when its mtime changed)."""
        files: list[str] = []
        for root in self._roots():
            path = os.path.abspath(root)
            try:
                st = os.stat(path)
            except OSError:
                if path in self._dirs:
                    continue  # a vanished directory: its files' followers say so
                if path not in self._followers and path not in self._parked_sigs:
                    files.append(path)  # a vanished file: its follower says so
                continue
            if not os.path.isdir(path):
                if path not in self._followers and path not in self._parked_sigs:
                    files.append(path)
                    self._watch_dir(os.path.dirname(path))
                continue
            self._watch_dir(path)
            if self._dirs.get(path) == st.st_mtime_ns:
                continue
            self._dirs[path] = st.st_mtime_ns
            try:
                with os.scandir(path) as it:
                    follow = self.follow_symlinks
                    names = sorted(
                        e.name
                        for e in it
                        if e.name.endswith(LOG_SUFFIXES) and e.is_file(follow_symlinks=follow)
                    )
            except OSError:
                continue
            present = set()
            for n in names:
                f = os.path.join(path, n)
                present.add(f)
                if f not in self._followers and f not in self._parked_sigs:
                    files.append(f)
            gone = [f for f in self._parked_sigs if os.path.dirname(f) == path and f not in present]
            if gone:
                self._drop_parked(gone)
        return files

    def _watch_dir(self, directory: str) -> None:
        w = self._watch
        if w.ok and not w.watching(directory) and not w.add(directory):
            self._unwatched = True  # some directory is polled in slices instead

    def _due_paths(self, now: float) -> list[str]:
        """What to poll in this refresh: hot files (changed lately or holding a running
        run), files the kernel said changed, and new ones. A finished, quiet file is not
        looked at: inotify names it when it changes, or, without inotify, it is stat'ed in a
        slice of ``COLD_SLICE`` files per ``COLD_SWEEP_S`` (issue 13: stat only what can
        change)."""
        due = self._due
        changed = self._watch.changed()
        parked: list[str] = []
        if changed is None:
            due.update(dict.fromkeys(self._followers))  # events were lost: look at everything
            parked = list(self._parked_sigs)
        else:
            for p in changed:
                if p in self._followers:
                    due[p] = None
                elif p in self._parked_sigs:
                    parked.append(p)
                elif p in self._dirs:
                    self._dirs[p] = None  # moved or deleted: rescan it
        if (not self._watch.ok or self._unwatched) and now - self._last_sweep >= COLD_SWEEP_S:
            self._last_sweep = now
            paths = [*self._followers, *self._parked_sigs]
            if paths:
                i = self._sweep_at % len(paths)
                for p in paths[i : i + COLD_SLICE]:
                    (parked.append(p) if p in self._parked_sigs else due.__setitem__(p, None))
                self._sweep_at = i + COLD_SLICE
        for p in parked:
            sig = self._parked_sigs.get(p)
            try:
                st = os.stat(p)
                cur: tuple[int, int] | None = (st.st_size, st.st_mtime_ns)
            except OSError:
                cur = None
            if cur is None:
                self._drop_parked([p])
            elif cur != sig:
                due.update(dict.fromkeys(self._unpark(p)))
        out = list(self._hot)
        out.extend(p for p in due if p not in self._hot)
        due.clear()
        return out

    def _refresh_locked(self) -> bool:
        now = time.monotonic()
        for path in self._scan():
            self._followers[path] = Follower(path)
            self._due[path] = None
        batches: list[tuple[str, list[dict[str, Any]]]] = []
        count = 0
        avail_changed = False
        more = False
        resets: list[str] = []
        paths = self._due_paths(now)
        for i, path in enumerate(paths):
            f = self._followers.get(path)
            if f is None:
                self._hot.pop(path, None)
                continue
            if count >= MAX_BATCH_EVENTS:
                # Left for the next refresh, which comes straight back.
                self._due.update(dict.fromkeys(paths[i:]))
                more = True
                break
            reset, evs = f.poll()
            if reset:
                resets.append(path)
            if f.more:
                more = True
            if f.available != self._available.get(path):
                # A file never seen before is not a change of availability.
                avail_changed = avail_changed or path in self._available
                self._available[path] = f.available
            if evs:
                batches.append((path, evs))
                count += len(evs)
            if evs or reset or f.more:
                self._hot[path] = now
            self._keep_or_release(path, f)
        if more:
            self._wake.set()  # the refresher comes straight back for the rest
        if resets:
            # Apply what was read from the other files first, then rebuild the runs of the
            # replaced ones from their start.
            if batches or avail_changed:
                with self._lock:
                    self._apply_batches([b for b in batches if b[0] not in resets], avail_changed)
            self._rebuild(resets)
            return True
        if not batches and not avail_changed:
            return False
        with self._lock:
            self._apply_batches(batches, avail_changed)
        return True

    def _keep_or_release(self, path: str, f: Follower) -> None:
        """A descriptor stays open only for a hot file, and for at most ``MAX_OPEN_LOGS`` of
        them: a directory of 10,000 logs must not take the process's (or its host's)
        descriptors (issue 13)."""
        if not f.holding:
            self._held.pop(path, None)
            return
        if path in self._hot and (path in self._held or len(self._held) < MAX_OPEN_LOGS):
            self._held[path] = None
            return
        f.release()
        self._held.pop(path, None)

    def _cool(self, now: float) -> None:
        """Demote files quiet for ``HOT_S`` whose runs are not running; release their
        descriptors, and park the files whose runs have all ended."""
        cooled = []
        for path, t in list(self._hot.items()):
            if now - t < HOT_S:
                continue
            if any(self._statuses.get(rid) == "running" for rid in self._path_runs.get(path, ())):
                continue
            del self._hot[path]
            f = self._followers.get(path)
            if f is not None and not f.more:
                self._keep_or_release(path, f)
                cooled.append(path)
            elif f is not None:
                self._hot[path] = now
        if self._sweep_park or cooled:
            self._sweep_park = False
            self._park_quiet(cooled if cooled else list(self._followers))

    def _park_quiet(self, paths: list[str]) -> None:
        """Park what can be parked among ``paths``: files none of whose runs is still
        running, with every file of those runs quiet and read to its end. Their runs leave
        ``state`` for a summary (``catalog.summarize``); a view of one is reduced again on
        demand. Call from the refresher (``_refresh_lock`` held)."""
        done: set[str] = set()
        for path in paths:
            if path in done or path not in self._followers:
                continue
            rids = set(self._path_runs.get(path, ()))
            files = {path}
            while True:
                grown = {p for p, rr in self._path_runs.items() if rr & rids} - files
                if not grown:
                    break
                files |= grown
                for p in grown:
                    rids |= self._path_runs.get(p, set())
            done |= files
            if not rids or any(p in self._hot for p in files):
                continue
            if any(self._statuses.get(rid) in (None, "running") for rid in rids):
                continue
            sigs: dict[str, tuple[int, int]] = {}
            for p in files:
                f = self._followers.get(p)
                sig = f.settled() if f is not None and self._available.get(p, True) else None
                if sig is None:
                    break
                sigs[p] = sig
            else:
                self._park(rids, sigs)

    def _park(self, rids: set[str], sigs: dict[str, tuple[int, int]]) -> None:
        names = sorted(os.path.basename(p) for p in sigs)
        with self._lock:
            for rid in rids:
                r = self.state.runs.pop(rid, None)
                if r is None:
                    continue
                summ = _compact(catalog.summarize(r, names))
                status = self._statuses.pop(rid, None)
                if status is not None and status != summ["status"]:
                    summ["status"] = status  # a silent run without run_end: interrupted
                self._parked_runs[rid] = summ
                self._index.add(summ)
                self._parked_files[rid] = sorted(sigs)
                self._views.pop(rid, None)
                self._liveness.pop(rid, None)
            for p, sig in sigs.items():
                f = self._followers.pop(p, None)
                if f is not None:
                    f.close()
                self._parked_sigs[p] = sig
                self._path_runs.pop(p, None)
                self._available.pop(p, None)
                self._held.pop(p, None)
                self._hot.pop(p, None)
            self._parked_changed()
            self._runs_cache = None

    def _unpark(self, path: str) -> list[str]:
        """A parked file changed: follow it (and the other files of its runs) again, from
        their start; their runs come back into ``state``. Returns the files to poll."""
        files = {path}
        with self._lock:
            rids = {rid for rid, fs in self._parked_files.items() if path in fs}
            for rid in rids:
                files.update(self._parked_files.pop(rid, ()))
                self._parked_runs.pop(rid, None)
                self._index.remove(rid)
                self._parked_views.pop(rid, None)
                self._parked_gone.discard(rid)
            for p in files:
                self._parked_sigs.pop(p, None)
                self._followers[p] = Follower(p)
            self._parked_changed()
            self._runs_cache = None
            if rids:
                self._bump(Change(0, {}, True, False, False))
        return sorted(files)

    def _drop_parked(self, paths: list[str]) -> None:
        """Parked files that vanished (deleted, pruned): their runs stay listed, shown
        unavailable, as a followed run whose log vanished is; their detail went with the
        log. A file that reappears is read again as a new one."""
        with self._lock:
            gone = set(paths)
            for p in gone:
                self._parked_sigs.pop(p, None)
            rids = {rid for rid, fs in self._parked_files.items() if gone & set(fs)}
            for rid in rids:
                self._parked_gone.add(rid)
                self._parked_views.pop(rid, None)
            self._parked_changed()
            self._runs_cache = None
            if rids:
                self._bump(Change(0, {}, True, False, False))

    def _catalog_dirs(self) -> list[str]:
        """Directories whose catalogs give parked runs (subclasses)."""
        return []

    def _catalog_summaries(self, directory: str) -> Iterable[tuple[list[str], dict[str, Any]]]:
        """``(files, summary)`` of a catalog directory's runs (subclasses)."""
        return []

    def _load_catalogs(self) -> None:
        """Park every finished run a directory's catalog summarises: its log is not read at
        start, nor followed, nor held (serve on 10,000 runs is ready in seconds)."""
        followed = {os.path.abspath(p) for p in self._roots()}
        for path in self._catalog_dirs():
            try:
                self._park_catalogued(path, self._catalog_summaries(path), followed)
            except Exception as exc:  # a catalog problem costs speed, never the data
                self.errors += 1
                self.last_error = f"catalog of {path}: {type(exc).__name__}: {exc}"
        self._parked_changed()

    def _park_catalogued(
        self,
        path: str,
        summaries: Iterable[tuple[list[str], dict[str, Any]]],
        followed: set[str],
    ) -> None:
        """Park each finished run given as ``(its files' current (size, mtime_ns) signature
        holders, summary)``; a run whose files are followed, or that is not finished, is
        left to the followers."""
        seen: set[str] = set()
        for files, summ in summaries:
            rid = summ["run"]
            paths = [os.path.join(path, n) for n in files]
            if not paths or not summ.get("ended") or rid in seen or followed & set(paths):
                continue
            seen.add(rid)
            sigs = {}
            for f in paths:
                try:
                    st = os.stat(f)
                except OSError:
                    break
                sigs[f] = (st.st_size, st.st_mtime_ns)
            else:
                self._parked_runs[rid] = summ
                self._index.add(summ)
                self._parked_files[rid] = sorted(paths)
                self._parked_sigs.update(sigs)

    # -- parked runs ----------------------------------------------------------------------
    def _parked_changed(self) -> None:
        """The parked runs changed (call with the lock held): their rows are built again."""
        self._parked_rows = None
        self._parked_gen += 1

    def _parked_index(self) -> list[RunEntry]:
        """The parked runs' index entries, newest first; built outside the lock and kept
        until the parked runs change. Call without the lock held."""
        with self._lock:
            index = self._parked_rows
            if index is not None:
                return index
            gen = self._parked_gen
            items = list(self._parked_runs.values())
        index = []
        for s in items:
            start = s.get("start")
            name = s.get("name") or s["run"]
            index.append(
                RunEntry(
                    float(start) if isinstance(start, (int, float)) else 0.0,
                    s["run"],
                    str(s.get("status")),
                    name if isinstance(name, str) else str(name),
                )
            )
        index.sort(reverse=True)
        with self._lock:
            if self._parked_gen == gen:
                self._parked_rows = index
        return index

    def _summary_row(self, s: dict[str, Any]) -> dict[str, Any]:
        """The ``/api/v1/runs`` row of a parked run, from its summary (same keys as
        ``_run_row``)."""
        plan = [k for k in s.get("plan") or () if isinstance(k, str)]
        phases = s.get("phases") or {}
        done = 0
        for k in plan:
            fig = phases.get(k)
            if fig is not None and fig.get("status") in _DONE:
                done += 1
        rid = s["run"]
        alerts = merge_alerts(s.get("alerts") or (), self._rule_alerts.get(rid))
        return {
            "id": rid,
            "name": s.get("name") or rid,
            "status": s.get("status"),
            "start": s.get("start"),
            "end": s.get("end"),
            "duration_ms": _summary_duration(s),
            "last_event": s.get("last_ts"),
            "progress": views.plan_progress(len(plan), done),
            "host": s.get("host"),
            "alerts_open": open_summary(alerts)["open"],
            "available": rid not in self._parked_gone,
        }

    def reduced(self, run_ids: Iterable[str]) -> dict[str, RunState]:
        """Parked runs reduced again from their files, light (one sample, one log line kept:
        what a run's own /metrics series need), cached in a small LRU: /metrics shows the
        latest run of each pipeline in full even when it has ended."""
        out: dict[str, RunState] = {}
        for rid in run_ids:
            with self._lock:
                r = self._reduced.get(rid)
                files = list(self._parked_files.get(rid, ()))
                if r is not None:
                    self._reduced.move_to_end(rid)
            if r is None and files:
                st, _, _ = self._reduce(files, light=True)
                r = st.runs.get(rid)
                if r is None:
                    continue
                with self._lock:
                    self._reduced[rid] = r
                    while len(self._reduced) > REDUCED_RUNS:
                        self._reduced.popitem(last=False)
            if r is not None:
                out[rid] = r
        return out

    def _reduce(
        self, files: list[str], light: bool = False
    ) -> tuple[State, ReadStats, list[dict[str, Any]]]:
        """The files of a parked run read into a state of their own (no lock held)."""
        if light:
            st = State(max_phases=self._max_phases, max_samples=1, max_logs=1, max_artifacts=1)
        else:
            st = State(max_phases=self._max_phases)
        total = ReadStats(path="")
        down = []
        for p in files:
            stats = ReadStats(path=p)
            try:
                for ev in reader.iter_events(p, stats):
                    apply(st, ev)
            except OSError as exc:
                down.append({"path": p, "error": f"{type(exc).__name__}: {exc.strerror or exc}"})
            total = total.merge(stats)
        return st, total, down

    def _evaluate_parked_alerts(self) -> None:
        """``--alerts`` rules over each parked run, once (one run held at a time): their
        alerts are listed like the ones of followed runs, at the cost of one read of each
        log at start, never per request."""
        if self._alert_hook is None:
            return
        with self._lock:
            todo = [(rid, list(fs)) for rid, fs in self._parked_files.items()]
        for rid, files in todo:
            st, _, _ = self._reduce(files)
            if rid not in st.runs:
                continue
            try:
                found = [dict(a) for a in self._alert_hook(st, rid) if isinstance(a, dict)]
            except Exception as exc:
                self.errors += 1
                self.last_error = f"alert rules: {type(exc).__name__}: {exc}"
                continue
            with self._lock:
                self._rule_alerts[rid] = found
        with self._lock:
            self._parked_changed()

    def _build_parked_view(
        self, run_id: str, files: list[str], rule_alerts: list[dict[str, Any]] | None
    ) -> View | None:
        """A parked run's full view, reduced from its files (no lock held)."""
        st, total, down = self._reduce(files)
        r = st.runs.get(run_id)
        if r is None:
            return None
        q = total.to_dict()
        q.pop("path", None)
        q["read_events"] = q.pop("events", 0)
        q["files"] = files
        q["available"] = not down
        q["unavailable"] = down
        snap = views.snapshot(
            st, run_id, now=time.time(), alive=None, quality=q, history=self._history_for(r)
        )
        if rule_alerts:
            with_alerts(snap, merge_alerts(r.alerts.values(), rule_alerts))
        return View(
            version=self.version,
            built=time.monotonic(),
            snap=snap,
            samples_total=r.samples.total,
            logs_total=r.logs.total,
            running=False,
        )

    def _parked_delta(self, since: int, v: View) -> Delta | None:
        """A parked run does not change: only the run list may have."""
        if since > self.version:
            return None
        runs_changed = new_runs = False
        if since != self.version:
            if not self._changes or since < self._changes[0].version - 1:
                return None
            for c in self._changes:
                if c.version > since:
                    if c.reset:
                        return None
                    runs_changed = runs_changed or c.runs_changed
                    new_runs = new_runs or c.new_runs
        return Delta(set(), v.samples_total, v.logs_total, runs_changed, new_runs)

    def backlog(self) -> bool:
        """Whether files hold more than the last refresh read (call ``refresh`` again)."""
        with self._refresh_lock:
            return bool(self._due) or any(
                f.more for p in self._hot if (f := self._followers.get(p)) is not None
            )

    def open_logs(self) -> int:
        """Log descriptors held now (at most ``MAX_OPEN_LOGS``)."""
        return sum(1 for f in list(self._followers.values()) if f.holding)

    def _apply_batches(
        self, batches: list[tuple[str, list[dict[str, Any]]]], avail_changed: bool
    ) -> None:
        st = self.state
        touched: dict[str, RunChange] = {}
        runs_changed = avail_changed
        new_runs = False
        for path, evs in batches:
            pr = self._path_runs.setdefault(path, set())
            for ev in evs:
                rid = ev.get("run")
                if isinstance(rid, str):
                    rc = touched.get(rid)
                    if rc is None:
                        r = st.runs.get(rid)
                        if r is None:
                            new_runs = runs_changed = True
                            rc = RunChange(set(), 0, 0)
                        else:
                            rc = RunChange(set(), r.samples.total, r.logs.total)
                        touched[rid] = rc
                    pr.add(rid)
                    kind = ev.get("ev")
                    spans = rc.spans
                    if kind == "run_end" or kind == "run_start":
                        runs_changed = True
                        if kind == "run_end":
                            rc.spans = None
                    elif kind == "alert_ack" or kind == "alerts_cleared":
                        rc.spans = None  # rare: a full update carries the alerts
                    elif spans is not None:
                        if kind == "sample":
                            ss = ev.get("spans")
                            if isinstance(ss, list):
                                spans.update(s for s in ss if isinstance(s, str))
                        else:
                            span = ev.get("span")
                            if isinstance(span, str):
                                spans.add(span)
                apply(st, ev)
        if avail_changed:
            for path in self._available:
                for rid in self._path_runs.get(path, ()):
                    if rid not in touched and rid in st.runs:
                        r = st.runs[rid]
                        touched[rid] = RunChange(set(), r.samples.total, r.logs.total)
        self._evaluate_alerts(touched)
        now = time.time()
        for rid in touched:
            r = st.runs.get(rid)
            if r is not None:
                s = self.run_status(r, now)
                if self._statuses.get(rid) != s:
                    runs_changed = True
                    touched[rid].spans = None
                self._statuses[rid] = s
        self._bump(Change(0, touched, runs_changed, new_runs, False))

    def _bump(self, change: Change) -> None:
        """Record a new version (call with the lock held) and wake the stream writers."""
        self.version += 1
        change.version = self.version
        self._changes.append(change)
        self.cond.notify_all()

    def _rebuild(self, replaced: list[str]) -> None:
        """Followed files were truncated or replaced: read again, from their start, every file
        holding a run of theirs (a run may span files), into a state of its own (built
        outside the lock), then swap those runs in. The other runs are left alone: one
        rewritten log costs its own runs, not the whole directory."""
        files = set(replaced)
        rids: set[str] = set()
        while True:
            for p in files:
                rids |= self._path_runs.get(p, set())
            grown = {p for p, rr in self._path_runs.items() if rr & rids} - files
            if not grown:
                break
            files |= grown
        st = State(max_phases=self._max_phases)
        followers: dict[str, Follower] = {}
        path_runs: dict[str, set[str]] = {}
        for path in sorted(files):
            old = self._followers.get(path)
            if old is not None:
                old.close()
            self._held.pop(path, None)
            f = followers[path] = Follower(path)
            pr = path_runs[path] = set()
            while True:
                _, evs = f.poll()
                for ev in evs:
                    rid = ev.get("run")
                    if isinstance(rid, str):
                        pr.add(rid)
                    apply(st, ev)
                if not f.more:
                    break
            f.release()
        with self._lock:
            for rid in rids:
                self.state.runs.pop(rid, None)
                self._views.pop(rid, None)
                self._liveness.pop(rid, None)
                self._rule_alerts.pop(rid, None)
                self._statuses.pop(rid, None)
            self.state.runs.update(st.runs)
            self._followers.update(followers)
            self._path_runs.update(path_runs)
            now_m = time.monotonic()
            for p, f in followers.items():
                self._available[p] = f.available
                self._hot[p] = now_m
            self._evaluate_alerts({rid: RunChange(None, 0, 0) for rid in st.runs})
            now = time.time()
            for rid, r in st.runs.items():
                self._statuses[rid] = self.run_status(r, now)
            self._bump(Change(0, {}, True, True, True))

    def _check_statuses(self) -> bool:
        """Re-evaluate run statuses (a writer died, a run went silent); bump on change."""
        self._last_status = time.monotonic()
        self._cool(self._last_status)
        with self._lock:
            now = time.time()
            touched: dict[str, RunChange] = {}
            for rid, r in self.state.runs.items():
                if r.end is not None and self._statuses.get(rid) == r.status:
                    continue  # an ended run's status is final: no liveness to ask
                s = self.run_status(r, now)
                if self._statuses.get(rid) != s:
                    self._statuses[rid] = s
                    touched[rid] = RunChange(None, r.samples.total, r.logs.total)
            if not touched:
                return False
            self._bump(Change(0, touched, True, False, False))
            return True

    # -- run facts ------------------------------------------------------------------------
    def _alive(self, r: RunState) -> bool | None:
        o = self._alive_override(r.id)
        if o != "ask":
            return o  # type: ignore[return-value]
        if r.end is not None:
            return None
        now = time.monotonic()
        c = self._liveness.get(r.id)
        if c is not None and now - c[0] < LIVENESS_TTL_S:
            return c[1]
        try:
            alive = loader.liveness(r)
        except Exception:
            alive = None
        self._liveness[r.id] = (now, alive)
        return alive

    def run_status(self, r: RunState, now: float | None = None) -> str:
        """Run ``r``'s status at ``now`` (default: the time now), its liveness asked."""
        return views.run_status(r, time.time() if now is None else now, self._alive(r))

    def _files_of(self, run_id: str) -> list[str]:
        return [p for p, rids in self._path_runs.items() if run_id in rids]

    def _is_available(self, run_id: str) -> bool:
        return all(self._available.get(p, True) for p in self._files_of(run_id))

    def run_quality(self, run_id: str) -> dict[str, Any]:
        """The read statistics of run ``run_id``'s files, summed, and which are unreadable."""
        files = self._files_of(run_id)
        total = ReadStats(path="")
        down = []
        for p in files:
            f = self._followers.get(p)
            if f is None:
                continue
            total = total.merge(f.stats)
            if not self._available.get(p, True):
                down.append({"path": p, "error": f.error})
        q = total.to_dict()
        q.pop("path", None)
        # The reader's event count covers every run in the file; the run's own is in views.
        q["read_events"] = q.pop("events", 0)
        q["files"] = files
        q["available"] = not down
        q["unavailable"] = down
        return q

    def _run_row(self, r: RunState) -> dict[str, Any]:
        status = self.run_status(r)
        start = r.start if r.start is not None else r.first_ts
        stop = r.end if r.end is not None else (time.time() if status == "running" else r.last_ts)
        duration = (
            round(max(0.0, (stop - start) * 1000.0), 3)
            if start is not None and stop is not None
            else None
        )
        plan: list[Any] = r.info.get("plan") or []
        if not isinstance(plan, list):
            plan = []
        plan_ids: list[str] = [
            p["id"] for p in plan if isinstance(p, dict) and isinstance(p.get("id"), str)
        ]
        latest: dict[str, str] = {}
        wanted = set(plan_ids)
        for rec in r.phases.values():  # start order; the latest record of a key wins
            if rec.phase in wanted:
                latest[rec.phase] = rec.status
        done = sum(1 for k in plan_ids if latest.get(k) in ("completed", "failed", "cancelled"))
        return {
            "id": r.id,
            "name": r.info.get("name", r.id),
            "status": status,
            "start": start,
            "end": r.end,
            "duration_ms": duration,
            "last_event": r.last_ts,
            "progress": views.plan_progress(len(plan_ids), done),
            "host": r.info.get("host"),
            "alerts_open": open_summary(self.alerts_of(r))["open"],
            "available": self._is_available(r.id),
        }

    def alerts_of(self, r: RunState) -> list[dict[str, Any]]:
        """Run ``r``'s alerts: the recorded ones, merged with the served rules' replay."""
        extra = self._rule_alerts.get(r.id)
        if not extra:
            return list(r.alerts.values())
        return merge_alerts(r.alerts.values(), extra)

    def _evaluate_alerts(self, touched: dict[str, RunChange]) -> None:
        """Alert rules given with ``--alerts`` (the hook is ``alerts.evaluate_replay``),
        re-evaluated over each run the batch touched."""
        hook = self._alert_hook
        if hook is None:
            return
        for rid in touched:
            if rid not in self.state.runs:
                continue
            try:
                found = hook(self.state, rid)
                self._rule_alerts[rid] = [dict(a) for a in found if isinstance(a, dict)]
            except Exception as exc:
                self.errors += 1
                self.last_error = f"alert rules: {type(exc).__name__}: {exc}"

    def _view_locked(self, run_id: str) -> View | None:
        v = self._views.get(run_id)
        now_m = time.monotonic()
        if (
            v is not None
            and v.version == self.version
            and (not v.running or now_m - v.built < RUNNING_TTL_S)
        ):
            return v
        r = self.state.runs.get(run_id)
        if r is None:
            return None
        snap = views.snapshot(
            self.state,
            run_id,
            now=time.time(),
            alive=self._alive(r),
            quality=self.run_quality(run_id),
            monitor=self.monitor_info(run_id),
            history=self._history_for(r),
        )
        if self._rule_alerts.get(run_id):
            with_alerts(snap, self.alerts_of(r))
        v = View(
            version=self.version,
            built=now_m,
            snap=snap,
            samples_total=r.samples.total,
            logs_total=r.logs.total,
            running=snap["run"]["status"] == "running",
        )
        self._views[run_id] = v
        return v

    def _delta_locked(self, run_id: str, since: int) -> Delta | None:
        if since == self.version:
            r = self.state.runs.get(run_id)
            if r is None:
                return None
            return Delta(set(), r.samples.total, r.logs.total, False, False)
        if since > self.version or not self._changes:
            return None
        if since < self._changes[0].version - 1:
            return None
        spans: set[str] | None = set()
        samples_from: int | None = None
        logs_from: int | None = None
        runs_changed = new_runs = False
        for c in self._changes:
            if c.version <= since:
                continue
            if c.reset:
                return None
            runs_changed = runs_changed or c.runs_changed
            new_runs = new_runs or c.new_runs
            rc = c.runs.get(run_id)
            if rc is None:
                continue
            if samples_from is None:
                samples_from, logs_from = rc.samples_from, rc.logs_from
            if rc.spans is None:
                spans = None
            elif spans is not None:
                spans |= rc.spans
        r = self.state.runs.get(run_id)
        if r is None:
            return None
        return Delta(
            spans,
            r.samples.total if samples_from is None else samples_from,
            r.logs.total if logs_from is None else logs_from,
            runs_changed,
            new_runs,
        )

    # -- the refresher thread ------------------------------------------------------------
    def _start_refresher(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            if self._sleeping:
                self._wake.set()  # only a parked refresher needs waking: no churn per request
            return
        with self._lock:
            if self._closed or (self._thread is not None and self._thread.is_alive()):
                self._wake.set()
                return
            self._thread = threading.Thread(
                target=self._refresher, name="atroz-monitor-refresh", daemon=True
            )
            self._thread.start()

    def _refresher(self) -> None:
        while not self._closed:
            idle = self._clients == 0 and time.monotonic() - self._last_demand > IDLE_S
            if idle:
                # Nobody is watching: no polling at all until a request or a client comes.
                self._sleeping = True
                self._wake.wait()
                self._wake.clear()
                self._sleeping = False
                continue
            self.refresh()
            if self._wake.wait(POLL_S):
                self._wake.clear()

    def close(self) -> None:
        """Stop the refresher and release the files."""
        self._closed = True
        self._wake.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout=2.0)
        with self._refresh_lock:
            for f in self._followers.values():
                f.close()
            self._held.clear()
            self._watch.close()
        with self._lock:
            self.cond.notify_all()


class FileSource(Source):
    """Run logs on disk: files and directories (new ``*.jsonl`` files in a directory are
    picked up), possibly still being written by other processes.

    Raises FileNotFoundError for a path that does not exist. The files are read at
    construction, so the first request does not pay for a large backlog.
    """

    def __init__(
        self,
        paths: Iterable[str | os.PathLike[str]],
        *,
        alerts: AlertHook | None = None,
        max_phases: int = 10_000,
        follow_symlinks: bool = False,
    ) -> None:
        super().__init__(max_phases=max_phases, alerts=alerts)
        self.follow_symlinks = follow_symlinks
        self.paths = [os.path.abspath(os.fspath(p)) for p in paths]
        for p in self.paths:
            if not os.path.exists(p):
                raise FileNotFoundError(2, "no such log file or directory", p)
        with _gc_paused(lambda: len(self._parked_runs)):
            self._load_catalogs()
        self._evaluate_parked_alerts()
        while self.refresh() and self.backlog():
            pass
        # The run index and the summaries over every run are built once in the background,
        # so the first requests after start do not pay for them.
        threading.Thread(target=self._warm, name="atroz-monitor-warm", daemon=True).start()

    def _warm(self) -> None:
        try:
            self.run_index()
            self.summaries()
        except Exception as exc:  # only a head start: a request computes them anyway
            self.errors += 1
            self.last_error = f"warming: {type(exc).__name__}: {exc}"

    def _roots(self) -> list[str]:
        return self.paths

    def _catalog_dirs(self) -> list[str]:
        return [p for p in self.paths if os.path.isdir(p)]

    def _catalog_summaries(self, directory: str) -> Iterator[tuple[list[str], dict[str, Any]]]:
        # The catalog is read line by line, each entry compacted as it comes, so 10,000
        # summaries never exist as decoded dicts all at once (~20 KB each). Entries whose
        # logs changed are skipped (those logs are followed and summarised when quiet);
        # only when many logs have no current entry is the catalog rebuilt whole first.
        names = _log_names(directory)
        groups = catalog.units(names)
        entries = _read_catalog(directory)
        current = {base: catalog.unit_sig(directory, files) for base, files in groups.items()}
        if entries is None:
            stale = len(current)
        else:
            stale = sum(1 for b, sig in current.items() if b not in entries or entries[b][0] != sig)
        if stale > STALE_REBUILD:
            cat = catalog.Catalog(directory)
            cat.refresh()
            del cat
            entries = _read_catalog(directory) or {}
        for base, (sig, runs) in (entries or {}).items():
            if base in current and current[base] == sig:
                for summ in runs:
                    yield groups[base], summ


class MonitorSource(Source):
    """A live ``Monitor``'s runs, read back from its own logs (worker processes append to
    them too); its open runs are alive, and their ``monitor`` fields come from
    ``run.health()``. With ``catalog`` (the embedded dashboard), the latest
    ``EMBEDDED_HISTORY`` finished runs of its directory and ``history`` directories come
    from their catalogs' tails, parked: the host never reads, follows or holds the logs of
    its directory (issue 13), whatever the directory holds."""

    def __init__(
        self, monitor: LiveMonitor, *, alerts: AlertHook | None = None, catalog: bool = True
    ) -> None:
        super().__init__(max_phases=monitor.max_phases, alerts=alerts)
        self.monitor = monitor
        if catalog:
            self._load_catalogs()

    def _roots(self) -> list[str]:
        mon = self.monitor
        roots = [run.path for run in mon.runs()]
        roots.extend(p for p in mon.history_paths if os.path.isfile(p))
        return roots

    def _catalog_dirs(self) -> list[str]:
        mon = self.monitor
        dirs = [mon.path] if mon.is_dir else []
        dirs.extend(p for p in mon.history_paths if os.path.isdir(p))
        return dirs

    def _history_for(self, r: RunState) -> list[dict[str, Any]] | None:
        # What the monitor itself compares with (its catalog's tail and history= paths).
        try:
            own = self.monitor.history()
        except Exception:
            own = []
        start = _run_start(r)
        return [s for s in own if catalog.start_of(s) < start and s["run"] != r.id]

    def _catalog_summaries(self, directory: str) -> Iterator[tuple[list[str], dict[str, Any]]]:
        for summ in catalog.Catalog(directory).recent(EMBEDDED_HISTORY):
            yield list(summ.get("files") or ()), _compact(summ)

    def _own(self, run_id: str) -> Any:
        for run in self.monitor.runs():
            if run.id == run_id:
                return run
        return None

    def _alive_override(self, run_id: str) -> bool | None | str:
        run = self._own(run_id)
        if run is not None and run.live and not run.ended:
            return True
        return "ask"

    def monitor_info(self, run_id: str) -> dict[str, Any] | None:
        run = self._own(run_id)
        if run is None:
            return None
        try:
            return dict(run.health())
        except Exception:
            return None
