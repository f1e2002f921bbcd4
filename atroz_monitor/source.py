"""Data sources for the HTTP API: run logs followed live into reducer state.

A source owns one ``State`` built by the one reducer from the files it follows, and a
``version`` bumped whenever anything a client can see changed (events applied, a run's
status or a file's availability). Each version records which runs and spans it touched, in
a bounded ring, so a Server-Sent Events writer can send only what changed since the version
its client last saw; writers wait on ``cond`` and do no work while nothing changes.

Files are polled, not watched (inotify is not in the standard library): one background
thread per source polls every ``POLL_S`` while a stream client is connected or a request
came in the last ``IDLE_S``; otherwise it parks. A poll costs one ``stat`` per followed file
and one per directory (rescanned only when its mtime moves).

Locking: ``refresh`` reads files outside the state lock, then applies the whole batch under
it and bumps the version once, so a reader never sees half a batch. Views are built under the
lock and copied (``_detach``); JSON encoding happens outside it, once per version and run.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import loader, views
from .events import dumps
from .reader import LOG_SUFFIXES, Follower, ReadStats
from .state import RunState, State, apply
from .watch import DirWatch

if TYPE_CHECKING:
    from .monitor import Monitor

__all__ = ["Delta", "FileSource", "MonitorSource", "Source", "View"]

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
MAX_BATCH_EVENTS = 200_000
"""Events read per refresh before applying (a large backlog is consumed over several)."""

AlertHook = Callable[[State, str], "Sequence[dict[str, Any]]"]


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


def _run_start(r: RunState) -> float:
    return r.start if r.start is not None else (r.first_ts or 0.0)


class Source:
    """The state of every run in a set of followed log files; thread-safe.

    Subclasses say which files to follow (``_files``) and may override what is known about a
    run beyond its log (``_alive_override``, ``_monitor_info``).
    """

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
        self._last_sweep = 0.0
        self._sweep_at = 0
        self._views: dict[str, View] = {}
        self._runs_cache: tuple[int, float, bool, list[dict[str, Any]]] | None = None
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
        self._parked = False
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

    def _monitor_info(self, run_id: str) -> dict[str, Any] | None:
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
            return list(self.state.runs)

    def resolve(self, run: str) -> str | None:
        """A run id, or ``latest``, to the id of a known run; None if there is none."""
        with self._lock:
            if run == "latest":
                return views.latest_run(self.state)
            return run if run in self.state.runs else None

    def view(self, run_id: str) -> View | None:
        """The run's snapshot at the current version (cached; read-only)."""
        with self._lock:
            return self._view_locked(run_id)

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
            return self._delta_locked(run_id, since), self._view_locked(run_id)

    def runs(self) -> list[dict[str, Any]]:
        """Every run, newest first: the ``/api/v1/runs`` rows (cached per version)."""
        with self._lock:
            c = self._runs_cache
            now_m = time.monotonic()
            if (
                c is not None
                and c[0] == self.version
                and (not c[2] or now_m - c[1] < RUNNING_TTL_S)
            ):
                return c[3]
            rows = [self._run_row(r) for r in self.state.runs.values()]
            rows.sort(key=lambda row: row["start"] or 0.0, reverse=True)
            running = any(row["status"] == "running" for row in rows)
            # Rows are built fresh here from scalars: nothing in them is shared with state.
            self._runs_cache = (self.version, now_m, running, rows)
            return rows

    def statuses(self) -> dict[str, str]:
        with self._lock:
            return {rid: self._status(r) for rid, r in self.state.runs.items()}

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
                "runs": len(self.state.runs),
                "files": len(self._followers),
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
                if path not in self._followers:
                    files.append(path)  # a vanished file: its follower says so
                continue
            if not os.path.isdir(path):
                if path not in self._followers:
                    files.append(path)
                    self._watch_dir(os.path.dirname(path))
                continue
            self._watch_dir(path)
            if self._dirs.get(path) == st.st_mtime_ns:
                continue
            self._dirs[path] = st.st_mtime_ns
            try:
                with os.scandir(path) as it:
                    names = sorted(
                        e.name for e in it if e.name.endswith(LOG_SUFFIXES) and e.is_file()
                    )
            except OSError:
                continue
            for n in names:
                f = os.path.join(path, n)
                if f not in self._followers:
                    files.append(f)
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
        if changed is None:
            due.update(dict.fromkeys(self._followers))  # events were lost: look at everything
        else:
            for p in changed:
                if p in self._followers:
                    due[p] = None
                elif p in self._dirs:
                    self._dirs[p] = None  # moved or deleted: rescan it
        if (not self._watch.ok or self._unwatched) and now - self._last_sweep >= COLD_SWEEP_S:
            self._last_sweep = now
            paths = list(self._followers)
            if paths:
                i = self._sweep_at % len(paths)
                due.update(dict.fromkeys(paths[i : i + COLD_SLICE]))
                self._sweep_at = i + COLD_SLICE
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
        descriptors."""
        for path, t in list(self._hot.items()):
            if now - t < HOT_S:
                continue
            if any(self._statuses.get(rid) == "running" for rid in self._path_runs.get(path, ())):
                continue
            del self._hot[path]
            f = self._followers.get(path)
            if f is not None and not f.more:
                self._keep_or_release(path, f)
            elif f is not None:
                self._hot[path] = now

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
                s = self._status(r, now)
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
                self._statuses[rid] = self._status(r, now)
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
                s = self._status(r, now)
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

    def _status(self, r: RunState, now: float | None = None) -> str:
        return views.run_status(r, time.time() if now is None else now, self._alive(r))

    def _files_of(self, run_id: str) -> list[str]:
        return [p for p, rids in self._path_runs.items() if run_id in rids]

    def _is_available(self, run_id: str) -> bool:
        return all(self._available.get(p, True) for p in self._files_of(run_id))

    def _quality(self, run_id: str) -> dict[str, Any]:
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
        status = self._status(r)
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
            "progress": {
                "planned": len(plan_ids),
                "done": done,
                "pct": round(done / len(plan_ids) * 100.0, 1) if plan_ids else None,
            },
            "host": r.info.get("host"),
            "alerts_open": sum(
                1 for a in self._alerts_of(r) if a.get("state") in ("raised", "acknowledged")
            ),
            "available": self._is_available(r.id),
        }

    def _alerts_of(self, r: RunState) -> list[dict[str, Any]]:
        extra = self._rule_alerts.get(r.id)
        if not extra:
            return list(r.alerts.values())
        merged = dict(r.alerts)
        for a in extra:
            aid = a.get("alert") or a.get("id")
            merged[str(aid)] = a
        return list(merged.values())

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
            quality=self._quality(run_id),
            monitor=self._monitor_info(run_id),
        )
        if self._rule_alerts.get(run_id):
            snap["alerts"] = sorted(
                self._alerts_of(r), key=lambda a: a.get("raised_ts") or a.get("ts") or 0
            )
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
            if self._parked:
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
                self._parked = True
                self._wake.wait()
                self._wake.clear()
                self._parked = False
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
    ) -> None:
        super().__init__(max_phases=max_phases, alerts=alerts)
        self.paths = [os.path.abspath(os.fspath(p)) for p in paths]
        for p in self.paths:
            if not os.path.exists(p):
                raise FileNotFoundError(2, "no such log file or directory", p)
        while self.refresh() and self.backlog():
            pass

    def _roots(self) -> list[str]:
        return self.paths


class MonitorSource(Source):
    """A live ``Monitor``'s runs, read back from its own logs (worker processes append to
    them too), plus its directory's earlier runs and its ``history`` paths as history. Its
    own open runs are alive, and their ``monitor`` fields come from ``run.health()``."""

    def __init__(self, monitor: Monitor, *, alerts: AlertHook | None = None) -> None:
        super().__init__(max_phases=monitor.max_phases, alerts=alerts)
        self.monitor = monitor

    def _roots(self) -> list[str]:
        mon = self.monitor
        roots = [run.path for run in mon.runs()]
        if mon.is_dir:
            roots.append(mon.path)
        roots.extend(p for p in mon.history_paths if os.path.exists(p))
        return roots

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

    def _monitor_info(self, run_id: str) -> dict[str, Any] | None:
        run = self._own(run_id)
        if run is None:
            return None
        try:
            return dict(run.health())
        except Exception:
            return None
