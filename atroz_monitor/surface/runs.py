"""The read API for notebooks and scripts: ``atroz_monitor.load(paths) -> Runs``.

Plain Python objects over the views every other surface uses: a ``RunView`` wraps its
snapshot (``views.snapshot``, the JSON the API serves and the report reads), history and trends are
``history``'s, a comparison is ``report_model.compare``. Nothing here reduces events a second
time, so a notebook sees exactly what the report and the dashboard show.

Records (``to_records()``, ``phase_records()``, ...) are lists of flat dicts of plain
values (str, int, float, bool, None), ready for ``pandas.DataFrame(records)`` or any other
dataframe library, or for ``json.dumps``.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

from ..read import loader
from ..read.loader import liveness
from ..read.state import RunState, State
from ..view import analysis, history, report_model, views

__all__ = ["PhaseView", "RunView", "Runs", "load"]

PathArg = str | os.PathLike[str]

# The per-phase columns of phase_records(), in order (besides ``run`` and ``metric.<name>``).
PHASE_COLUMNS = (
    "span",
    "phase",
    "name",
    "parent",
    "depth",
    "status",
    "start",
    "end",
    "offset_ms",
    "duration_ms",
    "cpu_ms",
    "cpu_pct",
    "cpu_peak_pct",
    "children_cpu_ms",
    "rss_bytes",
    "rss_delta_bytes",
    "peak_rss_bytes",
    "items",
    "total",
    "items_per_s",
    "warnings",
    "errors",
    "pid",
    "thread",
)


def _plain(v: Any) -> Any:
    """A value a dataframe cell and ``json.dumps`` both take: the log is input, so a field
    that should be a number may hold anything; anything else becomes its ``str()``."""
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    return str(v)


@dataclass(frozen=True)
class PhaseView:
    """One phase (span) of a run, read back: the fields of a snapshot phase (docs/FORMAT.md).

    ``extra`` holds snapshot fields this class does not name (fields added by later
    versions, e.g. ``attempt`` or ``reason``), so nothing the snapshot says is lost.
    """

    run: str
    span: str
    phase: str
    name: str
    parent: str | None
    depth: int
    status: str
    start: float | None
    end: float | None
    offset_ms: float | None
    duration_ms: float | None
    cpu_ms: float | None
    cpu_pct: float | None
    cpu_peak_pct: float | None
    children_cpu_ms: float | None
    rss_bytes: int | None
    rss_start_bytes: int | None
    rss_delta_bytes: int | None
    peak_rss_bytes: int | None
    items: int
    total: int | None
    items_per_s: float | None
    warnings: int
    errors: int
    pid: Any
    thread: Any
    artifacts: list[dict[str, Any]] = field(default_factory=list, repr=False)
    metrics: dict[str, Any] = field(default_factory=dict, repr=False)
    error: Any = field(default=None, repr=False)
    meta: Any = field(default=None, repr=False)
    children: list[str] = field(default_factory=list, repr=False)
    folded: dict[str, Any] = field(default_factory=dict, repr=False)
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_view(cls, run_id: str, view: Mapping[str, Any]) -> PhaseView:
        """Build from one entry of a snapshot's ``phases``."""
        named: dict[str, Any] = {k: view.get(k) for k in _PHASE_FIELDS}
        named["depth"] = view.get("depth") or 0
        named["items"] = view.get("items") or 0
        named["warnings"] = view.get("warnings") or 0
        named["errors"] = view.get("errors") or 0
        for k in ("artifacts", "children"):
            named[k] = list(view.get(k) or [])
        for k in ("metrics", "folded"):
            named[k] = dict(view.get(k) or {})
        extra = {k: v for k, v in view.items() if k not in _PHASE_FIELDS}
        return cls(run=run_id, **named, extra=extra)

    def to_record(self) -> dict[str, Any]:
        """One flat dict: ``run``, the ``PHASE_COLUMNS`` and a ``metric.<name>`` column per
        metric recorded in the phase."""
        rec: dict[str, Any] = {"run": self.run}
        for k in PHASE_COLUMNS:
            rec[k] = _plain(getattr(self, k))
        for k in ("attempt", "reason"):  # later snapshot fields worth a column when present
            if k in self.extra:
                rec[k] = _plain(self.extra[k])
        for name, value in self.metrics.items():
            rec[f"metric.{name}"] = _plain(value)
        return rec


_PHASE_FIELDS = tuple(
    f.name for f in dataclasses.fields(PhaseView) if f.name not in ("run", "extra")
)


class RunView:
    """One run read back from its log, as of the moment it was loaded (``Run`` is the
    recording side, ``mon.run()``). Its snapshot is built on first use."""

    def __init__(self, runs: Runs, r: RunState) -> None:
        self._runs = runs
        self._r = r
        self._snap: dict[str, Any] | None = None
        self._bare_snap: dict[str, Any] | None = None
        self._phases: list[PhaseView] | None = None

    def __repr__(self) -> str:
        return f"<RunView {self.id} {self.status} {len(self.phases)} phases>"

    @property
    def id(self) -> str:
        return self._r.id

    @property
    def snapshot(self) -> dict[str, Any]:
        """The run's snapshot (docs/FORMAT.md), evaluated against the other runs of the
        collection it came from (their history gives the ETA and anomalies)."""
        if self._snap is None:
            self._snap = views.snapshot(
                self._runs._state,
                self.id,
                now=self._runs.loaded_at,
                alive=self._runs._alive.get(self.id),
                quality=self._runs.quality,
            )
        return self._snap

    def _bare(self) -> dict[str, Any]:
        """The snapshot without the history evaluation (ETA, anomalies), for everything
        that does not depend on other runs: phases, samples, logs, alerts, counts. Over
        hundreds of runs, evaluating each against all the others would make the records
        of a collection quadratic."""
        if self._snap is not None:
            return self._snap
        if self._bare_snap is None:
            rid = self.id
            self._bare_snap = views.snapshot(
                _alone(self._runs._state, self._r),
                rid,
                now=self._runs.loaded_at,
                alive=self._runs._alive.get(rid),
                quality=self._runs.quality,
            )
        return self._bare_snap

    @property
    def name(self) -> str:
        name = self._r.info.get("name")
        return name if isinstance(name, str) else self.id

    @property
    def status(self) -> str:
        """completed, failed, cancelled, running or interrupted (``views.run_status``)."""
        return views.run_status(self._r, self._runs.loaded_at, self._runs._alive.get(self.id))

    @property
    def start(self) -> float | None:
        """Wall-clock start (``run_start``; the first event's time if that line is lost)."""
        return self._r.start if self._r.start is not None else self._r.first_ts

    @property
    def end(self) -> float | None:
        """Wall-clock end (``run_end``); None while running or when the run was cut short."""
        return self._r.end

    @property
    def duration_ms(self) -> float | None:
        """Wall time (to the moment of loading while the run is running)."""
        d: float | None = self._bare()["run"]["duration_ms"]
        return d

    @property
    def host(self) -> str | None:
        host = self._r.info.get("host")
        return host if isinstance(host, str) else None

    @property
    def tags(self) -> dict[str, str]:
        """The run's tags (``Monitor(tags=...)``); ``{}`` when it has none."""
        return history.run_tags(self._r)

    @property
    def phases(self) -> list[PhaseView]:
        """Every phase record, depth-first in start order (sub-phases after their parent)."""
        if self._phases is None:
            self._phases = [PhaseView.from_view(self.id, v) for v in self._bare()["phases"]]
        return list(self._phases)

    def phase(self, key_or_span: str) -> PhaseView:
        """The phase with this span id, else the latest top-level phase with this key (a
        retried or repeated key: its last record), else the latest phase with this key.
        KeyError when there is none."""
        phases = self.phases
        for p in phases:
            if p.span == key_or_span:
                return p
        same = [p for p in phases if p.phase == key_or_span]
        top = [p for p in same if p.depth == 0] or same
        if not top:
            raise KeyError(f"run {self.id} has no phase or span {key_or_span!r}")
        return max(top, key=lambda p: (p.start or 0.0, p.span))

    @property
    def samples(self) -> list[dict[str, Any]]:
        """Resource samples kept in memory, oldest first (event fields, no envelope)."""
        return [dict(s) for s in self._bare()["resources"]["samples"]]

    @property
    def alerts(self) -> list[dict[str, Any]]:
        """Alerts in the order raised (as in the snapshot)."""
        return [dict(a) for a in self._bare()["alerts"]]

    @property
    def logs(self) -> list[dict[str, Any]]:
        """Warning and error log events kept in memory, oldest first."""
        return [dict(g) for g in self._bare()["logs"]["items"]]

    def critical_path(self, *, all_levels: bool = False) -> list[PhaseView]:
        """The chain of phases that determined the run's wall time, in time order
        (``analysis.critical_path``): top-level phases, as the report shows it, or with
        ``all_levels`` the sub-phases on the path too."""
        phases = self.phases
        chain = analysis.critical_path(
            [
                {"span": p.span, "parent": p.parent, "start": p.start, "end": p.end}
                for p in phases
                if p.start is not None
            ]
        )
        by_span = {p.span: p for p in phases}
        out = [by_span[s] for s in chain if s in by_span]
        return out if all_levels else [p for p in out if p.depth == 0]

    def record(self) -> dict[str, Any]:
        """The run as one flat dict: id, name, status, start, end, duration_ms, host, a
        ``tag.<key>`` column per tag, phases planned and done, warnings, errors, peak RSS."""
        snap = self._bare()
        run, prog = snap["run"], snap["progress"]
        rec: dict[str, Any] = {
            "id": self.id,
            "name": _plain(run.get("name")),
            "status": run["status"],
            "start": run.get("start"),
            "end": run.get("end"),
            "duration_ms": run.get("duration_ms"),
            "host": _plain(run.get("host")),
        }
        for k, v in sorted(self.tags.items()):
            rec[f"tag.{k}"] = v
        rec.update(
            phases_planned=prog.get("planned"),
            phases_done=prog.get("done"),
            phases=len(snap["phases"]),
            warnings=snap["logs"]["warnings"],
            errors=snap["errors"]["count"],
            peak_rss_bytes=snap["resources"]["peak_rss_bytes"],
        )
        return rec

    def to_records(self) -> list[dict[str, Any]]:
        """This run's phases as flat dicts (``PhaseView.to_record``): one row per phase."""
        return [p.to_record() for p in self.phases]


class Runs(Sequence[RunView]):
    """The runs read from some logs, in start order: ``len``, iteration, ``runs[i]``,
    ``runs["<run id>"]``, ``"<run id>" in runs``; ``filter`` narrows, the rest are views."""

    def __init__(
        self,
        state: State,
        *,
        quality: Mapping[str, Any],
        files: Sequence[str],
        loaded_at: float,
        alive: Mapping[str, bool | None],
    ) -> None:
        self._state = state
        self.quality: dict[str, Any] = dict(quality)
        """What reading found (lines, bytes, torn and corrupt lines, newer schema)."""
        self.files = list(files)
        """The log files read."""
        self.loaded_at = loaded_at
        """When the logs were read: 'now' for every status and running duration."""
        self._alive = dict(alive)
        order = sorted(state.runs.values(), key=lambda r: (_start(r), r.id))
        self._runs = [RunView(self, r) for r in order]
        self._by_id = {run.id: run for run in self._runs}

    def _narrow(self, keep: Callable[[RunState], bool]) -> Runs:
        return Runs(
            history.subset(self._state, keep),
            quality=self.quality,
            files=self.files,
            loaded_at=self.loaded_at,
            alive=self._alive,
        )

    def __repr__(self) -> str:
        return f"<Runs: {len(self)} run(s) from {len(self.files)} file(s)>"

    def __len__(self) -> int:
        return len(self._runs)

    def __iter__(self) -> Iterator[RunView]:
        return iter(self._runs)

    @overload
    def __getitem__(self, index: int) -> RunView: ...
    @overload
    def __getitem__(self, index: str) -> RunView: ...
    @overload
    def __getitem__(self, index: slice) -> Runs: ...
    def __getitem__(self, index: int | str | slice) -> RunView | Runs:
        """By position in start order, by run id (KeyError if unknown), or a slice."""
        if isinstance(index, str):
            try:
                return self._by_id[index]
            except KeyError:
                raise KeyError(f"no run {index!r} (runs: {', '.join(self.ids[:8])})") from None
        if isinstance(index, slice):
            ids = {run.id for run in self._runs[index]}
            return self._narrow(lambda r: r.id in ids)
        return self._runs[index]

    def __contains__(self, item: object) -> bool:
        if isinstance(item, RunView):
            item = item.id
        return isinstance(item, str) and item in self._by_id

    @property
    def ids(self) -> list[str]:
        """Run ids in start order."""
        return [run.id for run in self._runs]

    @property
    def latest(self) -> RunView | None:
        """The run that started last (what ``report`` picks by default); None if empty."""
        rid = views.latest_run(self._state)
        return self._by_id[rid] if rid is not None else None

    def filter(
        self,
        *,
        tags: Mapping[str, str] | None = None,
        status: str | Iterable[str] | None = None,
    ) -> Runs:
        """The runs whose tags include every ``key=value`` of ``tags`` and (if given) whose
        status is ``status`` (or one of several)."""
        if tags is not None:
            _check_tags(tags)
        wanted = {status} if isinstance(status, str) else set(status or ())
        keep = {
            run.id
            for run in self._runs
            if history.matches(run._r, tags) and (not wanted or run.status in wanted)
        }
        return self._narrow(lambda r: r.id in keep)

    def history(
        self,
        key: str,
        *,
        before: str | None = None,
        tags: Mapping[str, str] | None = None,
        limit: int = history.HISTORY_LIMIT,
    ) -> dict[str, Any]:
        """``history.phase_history`` over these runs: one row per run in which ``key``
        ended (all of them, or those started before run ``before``; with ``tags``, those
        carrying all of them) and the statistics of the completed ones."""
        if tags is not None:
            _check_tags(tags)
        return history.phase_history(self._state, key, before=before, limit=limit, tags=tags)

    def trends(
        self,
        key: str,
        *,
        before: str | None = None,
        tags: Mapping[str, str] | None = None,
        k: int = 10,
    ) -> dict[str, Any]:
        """``history.phase_trends`` over these runs: each metric's trend over the last
        ``k`` completed runs of ``key`` (restricted as for ``history``)."""
        if tags is not None:
            _check_tags(tags)
        return history.phase_trends(self._state, key, before=before, k=k, tags=tags)

    def compare(
        self,
        subject: str | RunView,
        baseline: Runs | None = None,
        *,
        metric: str = "duration",
        threshold: float | None = None,
        noise_floor: float | None = None,
    ) -> dict[str, Any]:
        """``report --baseline`` for one run: each top-level phase of ``subject`` against
        the ``baseline`` runs (default: the runs here that started before it); the subject
        itself never counts as its own baseline. Same result as the report's
        ``comparison`` (docs/REPORT.md)."""
        if metric not in report_model.METRICS:
            raise ValueError(
                f"metric must be one of {', '.join(report_model.METRICS)}, not {metric!r}"
            )
        for name, v in (("threshold", threshold), ("noise_floor", noise_floor)):
            if v is not None and not v >= 0:
                raise ValueError(f"{name} must be >= 0, not {v!r}")
        run = subject if isinstance(subject, RunView) else self[subject]
        if baseline is None:
            earlier = {s["run"] for s in history.runs_before(self._state, run.id)}
            base = history.subset(self._state, lambda r: r.id in earlier)
        else:
            base = history.subset(baseline._state, lambda r: r.id != run.id)
        return report_model.compare(run.snapshot, base, metric, threshold, noise_floor)

    def summary(self) -> dict[str, Any]:
        """``history.summary``: counts by status, open alerts by severity, phase means."""
        return history.summary(self._state, {run.id: run.status for run in self._runs})

    def to_records(self) -> list[dict[str, Any]]:
        """One flat dict per run (``RunView.record``), in start order."""
        return [run.record() for run in self._runs]

    def phase_records(self) -> list[dict[str, Any]]:
        """One flat dict per phase of every run (``PhaseView.to_record``)."""
        return [rec for run in self._runs for rec in run.to_records()]

    def sample_records(self) -> list[dict[str, Any]]:
        """One flat dict per resource sample of every run: ``run`` and the sample's fields;
        ``spans`` (the spans active then) joined by commas."""
        out = []
        for run in self._runs:
            for s in run.samples:
                rec: dict[str, Any] = {"run": run.id}
                for k, v in s.items():
                    if k == "spans" and isinstance(v, list):
                        rec[k] = ",".join(str(x) for x in v)
                    else:
                        rec[k] = _plain(v)
                out.append(rec)
        return out

    def alert_records(self) -> list[dict[str, Any]]:
        """One flat dict per alert of every run: ``run`` and the alert's fields."""
        return [
            {"run": run.id, **{k: _plain(v) for k, v in a.items()}}
            for run in self._runs
            for a in run.alerts
        ]


def _alone(state: State, r: RunState) -> State:
    """A state holding just ``r`` (as ``history.subset`` would, without a pass over all)."""
    out = State(
        max_phases=state.max_phases,
        max_samples=state.max_samples,
        max_logs=state.max_logs,
        max_artifacts=state.max_artifacts,
    )
    out.runs = {r.id: r}
    return out


def _start(r: RunState) -> float:
    return r.start if r.start is not None else (r.first_ts or 0.0)


def _check_tags(tags: Mapping[str, str]) -> None:
    if not isinstance(tags, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in tags.items()
    ):
        raise TypeError(f"tags must be a mapping of str to str, not {tags!r}")


def load(paths: PathArg | Iterable[PathArg], *, tags: Mapping[str, str] | None = None) -> Runs:
    """Read run logs (a file, a directory of ``*.jsonl`` / ``*.jsonl.gz``, or a list of
    them) into a ``Runs`` collection; with ``tags``, keep only runs carrying all of them.

    Raises FileNotFoundError for a path that does not exist, another OSError for one that
    cannot be read, and ValueError when the input holds no atroz_monitor run.
    """
    names = (
        [os.fsdecode(paths)]
        if isinstance(paths, (str, os.PathLike))
        else [os.fsdecode(p) for p in paths]
    )
    if tags is not None:
        _check_tags(tags)
    # OSError and FileNotFoundError come through as they are; loader.NoRuns is a ValueError.
    st, stats, files = loader.load(names)
    quality = stats.to_dict()
    quality.pop("path", None)
    alive = {rid: liveness(r) for rid, r in st.runs.items() if r.end is None}
    runs = Runs(st, quality=quality, files=files, loaded_at=time.time(), alive=alive)
    return runs.filter(tags=tags) if tags else runs
