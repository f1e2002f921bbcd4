"""Prometheus text exposition 0.0.4 and OpenMetrics 1.0: bounded series (run-labelled only for
running runs and the latest run of each pipeline; history as histograms by phase key),
rendered from snapshots and catalog summaries.
"""

from __future__ import annotations

import time
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from ..read.state import DURATION_BUCKETS_S, KeyAgg, RunState, State, error_count
from ..view.timeline import finite

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"


SEVERITIES = ("info", "warning", "critical")


OPEN_ALERT_STATES = ("raised", "acknowledged")


MAX_CUSTOM_METRICS = 100


"""Custom metric names exported per run: user-chosen names must not explode cardinality."""


Labels = tuple[tuple[str, str], ...]


class Family(NamedTuple):
    """One metric family: ``name`` without the ``_total`` / ``_info`` suffix its type adds;
    samples are ``(suffix, labels, value)``."""

    name: str
    type: str  # counter, gauge, histogram, info
    help: str
    samples: list[tuple[str, Labels, float]]


def _start_of(r: RunState) -> float | None:
    return r.start if r.start is not None else r.first_ts


def _ended(rec: Any) -> bool:
    """The record had its ``phase_end`` (only those are in the per-key aggregates)."""
    return rec.end is not None or rec.duration_ms is not None


def _bucket_counts(agg: KeyAgg, observed: list[float] | None) -> list[int] | None:
    """Cumulative counts per ``DURATION_BUCKETS_S`` bound, exact, or None if the reducer did
    not keep enough to know them.

    Exact sources, in order: per-key bucket counters if the reducer keeps them
    (``KeyAgg.bucket_counts``, non-cumulative, aligned with ``DURATION_BUCKETS_S``); the
    run's phase records, when every ended phase of the key still has its record (always, but
    for runs folded beyond ``max_phases``); the aggregate's window of recent durations, when
    it still holds them all.
    """
    kept = getattr(agg, "bucket_counts", None)
    if isinstance(kept, list) and len(kept) == len(DURATION_BUCKETS_S):
        out, acc = [], 0
        for c in kept:
            acc += c
            out.append(acc)
        return out
    if observed is not None and len(observed) == agg.count:
        values = observed
    elif agg.recent is not None and agg.count <= len(agg.recent):
        values = list(agg.recent)
    else:
        return None
    secs = sorted(v / 1000.0 for v in values)
    out, i = [], 0
    for bound in DURATION_BUCKETS_S:
        while i < len(secs) and secs[i] <= bound:
            i += 1
        out.append(i)
    return out


def _progress_done(r: RunState, plan_ids: list[str]) -> int:
    latest: dict[str, str] = {}
    wanted = set(plan_ids)
    for rec in r.phases.values():  # start order: the latest record of a key wins
        if rec.phase in wanted:
            latest[rec.phase] = rec.status
    done = 0
    for k in plan_ids:
        s = latest.get(k)
        if s in ("completed", "failed", "cancelled") or (s is None and k in r.keys):
            done += 1  # no record but an aggregate: a compacted history run
    return done


def collect(
    state: State,
    statuses: Mapping[str, str] | None = None,
    *,
    now: float | None = None,
    alerts: Mapping[str, Iterable[Mapping[str, Any]]] | None = None,
    monitor: Mapping[str, Mapping[str, Any]] | None = None,
    history: Sequence[Mapping[str, Any]] | None = None,
) -> list[Family]:
    """Metric families of bounded cardinality (plain data, safe to render unlocked).

    ``state`` holds the runs read in full (a server's live runs, or every run of an
    ``export``); ``history`` the summaries of finished runs (a catalog's). Series labelled
    by ``run`` exist only for running runs and for the latest run of each pipeline (at most
    ``MAX_PIPELINES`` pipelines); every other run counts in the ``atroz_history_*``
    families, labelled by pipeline and phase key, never by run (docs/SCALING.md gives the
    series count). ``statuses`` maps run id to its status as the caller judged it (liveness
    needs /proc, which this pure function does not read); missing ones are derived from the
    log alone. ``alerts`` replaces a run's alerts (rule alerts evaluated on replay),
    ``monitor`` its writer's health (a live monitor's counters), both by run id.
    """
    from ..view.views import run_status

    now = time.time() if now is None else now
    statuses = statuses or {}
    fam: dict[str, Family] = {}

    def add(name: str, typ: str, help_: str, labels: Labels, value: Any, suffix: str = "") -> None:
        v = finite(value)
        if v is None:
            return  # absent means not measured: no sample, never an invented zero
        f = fam.get(name)
        if f is None:
            f = fam[name] = Family(name, typ, help_, [])
        f.samples.append((suffix, labels, v))

    live = sorted(state.runs.values(), key=lambda r: (_start_of(r) or 0.0, r.id))
    status_of = {r.id: statuses.get(r.id) or run_status(r, now, None) for r in live}
    # History's part is computed once per history list (a scrape of an unchanged catalog
    # costs a pass over its ids, not over its runs' phases); held runs go on top of it.
    hidx = _history_index(history or ())
    latest, by_status, extra = _with_held_runs(state, live, status_of, hidx)
    # The pipelines that ran last, by their latest run's start.
    top = _latest_pipelines(latest)
    shown = {s["run"] for s in top.values()}
    for r in live:
        if status_of[r.id] == "running" or r.id in shown:
            _collect_run(r, status_of[r.id], now, alerts, monitor, add)
            shown.discard(r.id)
    for t in top.values():
        if t["run"] in shown:
            _collect_summary(t, add)
    for status in sorted(by_status):
        add(
            "atroz_runs",
            "gauge",
            "Runs known (held live or catalogued), by status.",
            (("status", status),),
            by_status[status],
        )
    agg = hidx.agg if not extra else _merge(hidx.agg, _aggregate(extra))
    _collect_history(agg, set(top), add)
    return list(fam.values())


def _with_held_runs(
    state: State, live: Sequence[RunState], status_of: Mapping[str, str], hidx: _HistoryIndex
) -> tuple[dict[str, Mapping[str, Any]], dict[str, int], list[Mapping[str, Any]]]:
    """The history's latest run per pipeline and runs per status, with the runs ``state``
    holds on top; and the ended held runs the history does not have."""
    from ..read import catalog
    from ..view import history as _history

    held = {s["run"]: s for s in _history.as_summaries(state)} if live else {}
    latest = dict(hidx.latest)
    by_status = dict(hidx.by_status)
    extra: list[Mapping[str, Any]] = []  # ended held runs the history does not have
    for r in live:
        st = status_of[r.id]
        s = {**held[r.id], "status": st}
        if r.id not in hidx.ids:
            by_status[st] = by_status.get(st, 0) + 1
            if st != "running":
                extra.append(s)
        elif st != "running":
            continue  # its catalog summary already counts
        pipe = catalog.pipeline(s)
        cur = latest.get(pipe)
        if cur is None or (catalog.start_of(s), s["run"]) >= (catalog.start_of(cur), cur["run"]):
            latest.pop(pipe, None)
            latest[pipe] = s
    return latest, by_status, extra


def _latest_pipelines(latest: Mapping[str, Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """The ``MAX_PIPELINES`` pipelines that ran last, by their latest run's start."""
    from ..read import catalog

    order = sorted(latest.items(), key=lambda kv: (catalog.start_of(kv[1]), kv[1]["run"]))
    return dict(order[-MAX_PIPELINES:])


class _HistoryIndex(NamedTuple):
    ids: frozenset[str]
    latest: dict[str, Mapping[str, Any]]  # pipeline -> its latest run, oldest pipeline first
    by_status: dict[str, int]
    agg: _Agg


# (pipeline, status) -> runs; (pipeline, key, key status) -> runs; (pipeline, key) ->
# [cumulative bucket counts..., count, sum]
_Agg = tuple[dict[tuple[str, str], int], dict[tuple[str, str, str], int], dict[Any, list[float]]]


_INDEX: list[Any] = [None, None, None]  # (id key, the list itself, index): the last one


def _history_index(history: Sequence[Mapping[str, Any]]) -> _HistoryIndex:
    """What ``collect`` needs of the finished runs, cached for the last list seen: the
    same summaries (by identity, and held, so no id can be reused) give the same index."""
    key = tuple(map(id, history))
    if _INDEX[0] == key:
        return _INDEX[2]  # type: ignore[no-any-return]
    from ..read import catalog

    latest: dict[str, Mapping[str, Any]] = {}
    by_status: dict[str, int] = {}
    for s in sorted(history, key=lambda s: (catalog.start_of(s), s["run"])):
        pipe = catalog.pipeline(s)
        latest.pop(pipe, None)
        latest[pipe] = s  # re-inserted: the dict stays ordered by each pipeline's latest
        st = s.get("status") or "completed"
        by_status[st] = by_status.get(st, 0) + 1
    idx = _HistoryIndex(frozenset(s["run"] for s in history), latest, by_status,
                        _aggregate(history))  # fmt: skip
    _INDEX[:] = [key, list(history), idx]
    return idx


def _aggregate(runs: Sequence[Mapping[str, Any]]) -> _Agg:
    """Finished runs folded per pipeline and phase key (one observation per run and key:
    its mean duration per occurrence, the figure history compares)."""
    from ..read import catalog

    runs_by: dict[tuple[str, str], int] = {}
    key_status: dict[tuple[str, str, str], int] = {}
    values: dict[tuple[str, str], list[float]] = {}
    for s in runs:
        pipe = catalog.pipeline(s)
        st = s.get("status") or "completed"
        runs_by[(pipe, st)] = runs_by.get((pipe, st), 0) + 1
        ph = s.get("phases") or {}
        if isinstance(ph, catalog.Phases):
            # Straight from the stored arrays: no dict per key and run.
            for key, v in ph.raw.items():
                kst = v[1] if len(v) > 1 and isinstance(v[1], str) else "completed"
                key_status[(pipe, key, kst)] = key_status.get((pipe, key, kst), 0) + 1
            for key, ms in ph.completed_ms():
                values.setdefault((pipe, key), []).append(ms / 1000.0)
        else:
            for key, p in ph.items():
                kst = p.get("status") or "completed"
                key_status[(pipe, key, kst)] = key_status.get((pipe, key, kst), 0) + 1
                d = p.get("duration_ms")
                if kst == "completed" and isinstance(d, (int, float)):
                    values.setdefault((pipe, key), []).append(d / 1000.0)
    hist: dict[Any, list[float]] = {}
    for pk, vs in values.items():
        vs.sort()
        hist[pk] = [float(bisect_right(vs, b)) for b in DURATION_BUCKETS_S] + [
            float(len(vs)),
            sum(vs),
        ]
    return runs_by, key_status, hist


def _merge(a: _Agg, b: _Agg) -> _Agg:
    """Two aggregates summed (a new one; neither is changed)."""
    runs_by = dict(a[0])
    for k2, n in b[0].items():
        runs_by[k2] = runs_by.get(k2, 0) + n
    key_status = dict(a[1])
    for k3, n in b[1].items():
        key_status[k3] = key_status.get(k3, 0) + n
    h = dict(a[2])
    for k, v in b[2].items():
        h[k] = [p + q for p, q in zip(h[k], v, strict=True)] if k in h else v
    return runs_by, key_status, h


MAX_PIPELINES = 20


"""Pipelines (run names) with their own series; the rest are summed as pipeline "_other"."""


def _collect_run(
    r: RunState,
    status: str,
    now: float,
    alerts: Mapping[str, Iterable[Mapping[str, Any]]] | None,
    monitor: Mapping[str, Mapping[str, Any]] | None,
    add: Any,
) -> None:
    """The run-labelled series of one run held in full."""
    rid = r.id
    run: Labels = (("run", rid),)
    name = r.info.get("name")
    info: Labels = (("run", rid), ("name", name if isinstance(name, str) else rid))
    host = r.info.get("host")
    info += (("status", status), ("host", host if isinstance(host, str) else ""))
    add("atroz_run", "info", "A run: its name, status and host.", info, 1)
    start = _start_of(r)
    add("atroz_run_start_time_seconds", "gauge", "When the run started, Unix seconds.", run, start)
    add("atroz_run_end_time_seconds", "gauge", "When the run ended, Unix seconds.", run, r.end)
    stop = r.end if r.end is not None else (now if status == "running" else r.last_ts)
    if start is not None and stop is not None:
        add(
            "atroz_run_duration_seconds",
            "gauge",
            "Wall time of the run so far (to its end once ended).",
            run,
            max(0.0, stop - start),
        )
    plan = r.info.get("plan")
    plan_ids = [
        p["id"]
        for p in (plan if isinstance(plan, list) else [])
        if isinstance(p, dict) and isinstance(p.get("id"), str)
    ]
    if plan_ids:
        add(
            "atroz_run_progress_ratio",
            "gauge",
            "Planned phases ended (completed, failed or cancelled) over planned phases.",
            run,
            _progress_done(r, plan_ids) / len(plan_ids),
        )
    add(
        "atroz_run_phases_running",
        "gauge",
        "Phases of the run open now (0 once the run ended or its writer died).",
        run,
        len(r.open) if status == "running" else 0,
    )
    _collect_phases(r, run, add)
    _collect_resources(r, run, add)
    run_alerts = alerts.get(rid) if alerts is not None and rid in alerts else None
    _collect_alerts(run_alerts if run_alerts is not None else r.alerts.values(), run, add)
    _collect_logs(r.log_counts, error_count(r), run, add)
    _collect_health(r, run, monitor, add)


def _collect_alerts(items: Iterable[Mapping[str, Any]], run: Labels, add: Any) -> None:
    open_by: dict[str, int] = dict.fromkeys(SEVERITIES, 0)
    for a in items:
        if a.get("state") in OPEN_ALERT_STATES and not a.get("cleared"):  # ack --clear
            sev = a.get("severity")
            sev = sev if sev in SEVERITIES else "other"
            open_by[sev] = open_by.get(sev, 0) + 1
    for sev, n in open_by.items():
        add(
            "atroz_alerts_open",
            "gauge",
            "Alerts raised or acknowledged and not resolved nor cleared, by severity.",
            run + (("severity", sev),),
            n,
        )


def _collect_logs(counts: Mapping[str, Any], errors: Any, run: Labels, add: Any) -> None:
    for level in ("warning", "error"):
        add(
            "atroz_log_messages",
            "counter",
            "Warning and error log events of the run (logging, warnings, the phase API).",
            run + (("level", level),),
            counts.get(level, 0),
        )
    add(
        "atroz_errors",
        "counter",
        "Errors of the run, the count every surface shows: error log events plus each "
        "exception that failed phases (once) or the run.",
        run,
        errors,
    )


def _collect_summary(s: Mapping[str, Any], add: Any) -> None:
    """The run-labelled series of a finished run known by its catalog summary only (the
    latest of its pipeline): what a summary carries, no per-run histogram."""
    rid = s["run"]
    run: Labels = (("run", rid),)
    name = s.get("name")
    info: Labels = (("run", rid), ("name", name if isinstance(name, str) else rid))
    host = s.get("host")
    info += (("status", s.get("status") or ""), ("host", host if isinstance(host, str) else ""))
    add("atroz_run", "info", "A run: its name, status and host.", info, 1)
    add("atroz_run_start_time_seconds", "gauge", "When the run started, Unix seconds.", run,
        s.get("start"))  # fmt: skip
    add("atroz_run_end_time_seconds", "gauge", "When the run ended, Unix seconds.", run,
        s.get("end"))  # fmt: skip
    dur = s.get("duration_ms")
    if isinstance(dur, (int, float)):
        add(
            "atroz_run_duration_seconds",
            "gauge",
            "Wall time of the run so far (to its end once ended).",
            run,
            dur / 1000.0,
        )
    add(
        "atroz_run_phases_running",
        "gauge",
        "Phases of the run open now (0 once the run ended or its writer died).",
        run,
        0,
    )
    for key, p in sorted((s.get("phases") or {}).items()):
        lab = run + (("phase", key),)
        count = p.get("count") or 0
        done = (p.get("completed") or 0) + (p.get("failed") or 0) + (p.get("cancelled") or 0)
        for status, n in (
            ("completed", p.get("completed") or 0),
            ("failed", p.get("failed") or 0),
            ("cancelled", p.get("cancelled") or 0),
            ("other", count - done),
        ):
            if status != "other" or n:
                add("atroz_phases", "counter", "Ended phases per phase key and outcome.",
                    lab + (("status", status),), n)  # fmt: skip
        add("atroz_phase_cpu_seconds", "counter",
            "Process CPU time spent in ended phases of the key.", lab,
            (p.get("total_cpu_ms") or 0.0) / 1000.0)  # fmt: skip
        add("atroz_phase_items", "counter", "Items processed by ended phases of the key.", lab,
            p.get("items") or 0)  # fmt: skip
        add("atroz_phase_peak_resident_memory_bytes", "gauge",
            "Highest RSS seen while a phase of the key ran.", lab,
            p.get("peak_rss_bytes"))  # fmt: skip
    add(
        "atroz_run_peak_resident_memory_bytes",
        "gauge",
        "Highest RSS sampled in the run (the monitored process).",
        run,
        s.get("peak_rss_bytes"),
    )
    _collect_alerts(s.get("alerts") or (), run, add)
    logged = {"warning": s.get("warnings") or 0, "error": s.get("errors_logged") or 0}
    _collect_logs(logged, s.get("errors") or 0, run, add)
    add(
        "atroz_log_events_missing",
        "counter",
        "Events missing from the log as its readers see it (gaps in writers' sequence numbers).",
        run,
        s.get("seq_gaps") or 0,
    )


def _collect_history(agg: _Agg, named: set[str], add: Any) -> None:
    """The ``atroz_history_*`` families: finished runs by pipeline and status, by phase key
    and the key's status, and each key's duration histogram. Pipelines not ``named`` are
    summed as ``_other``. No run label: the series count does not grow with the runs kept."""
    runs_by, key_status, hist = _fold(agg, named)
    for (pipe, st), n in sorted(runs_by.items()):
        add(
            "atroz_history_runs",
            "gauge",
            'Finished runs kept, per pipeline (run name; "" unnamed) and status.',
            (("pipeline", pipe), ("status", st)),
            n,
        )
    for (pipe, key, kst), n in sorted(key_status.items()):
        add(
            "atroz_history_phase_runs",
            "gauge",
            "Finished runs in which a phase key ended, per pipeline, key and the key's status.",
            (("pipeline", pipe), ("phase", key), ("status", kst)),
            n,
        )
    h = (
        "Duration of a phase key over finished runs: one observation per run, its mean "
        "per occurrence (completed runs of the key)."
    )
    nb = len(DURATION_BUCKETS_S)
    for (pipe, key), v in sorted(hist.items()):
        lab: Labels = (("pipeline", pipe), ("phase", key))
        for bound, cum in zip(DURATION_BUCKETS_S, v[:nb], strict=True):
            add("atroz_history_phase_duration_seconds", "histogram", h,
                lab + (("le", repr(bound)),), cum, "_bucket")  # fmt: skip
        add("atroz_history_phase_duration_seconds", "histogram", h, lab + (("le", "+Inf"),),
            v[nb], "_bucket")  # fmt: skip
        add("atroz_history_phase_duration_seconds", "histogram", h, lab, v[nb], "_count")
        add("atroz_history_phase_duration_seconds", "histogram", h, lab, v[nb + 1], "_sum")


def _fold(agg: _Agg, named: set[str]) -> _Agg:
    """``agg`` with every pipeline not in ``named`` renamed ``_other`` (summed)."""
    runs_by: dict[tuple[str, str], int] = {}
    key_status: dict[tuple[str, str, str], int] = {}
    hist: dict[Any, list[float]] = {}
    for (pipe, st), n in agg[0].items():
        k2 = (pipe if pipe in named else "_other", st)
        runs_by[k2] = runs_by.get(k2, 0) + n
    for (pipe, key, kst), n in agg[1].items():
        k3 = (pipe if pipe in named else "_other", key, kst)
        key_status[k3] = key_status.get(k3, 0) + n
    for (pipe, key), v in agg[2].items():
        kk = (pipe if pipe in named else "_other", key)
        hist[kk] = [p + q for p, q in zip(hist[kk], v, strict=True)] if kk in hist else v
    return runs_by, key_status, hist


def _collect_phases(r: RunState, run: Labels, add: Any) -> None:
    observed: dict[str, list[float]] = {}
    for rec in r.phases.values():
        if _ended(rec):
            observed.setdefault(rec.phase, []).append(rec.duration_ms or 0.0)
    for key in sorted(r.keys):
        agg = r.keys[key]
        lab = run + (("phase", key),)
        h = "Wall time of ended phases, per phase key (sub-phases have their own keys)."
        buckets = _bucket_counts(agg, observed.get(key))
        if buckets is not None:
            for bound, n in zip(DURATION_BUCKETS_S, buckets, strict=True):
                add(
                    "atroz_phase_duration_seconds",
                    "histogram",
                    h,
                    lab + (("le", repr(bound)),),
                    n,
                    "_bucket",
                )
        # Without exact buckets only +Inf is sent: count and sum stay exact.
        add(
            "atroz_phase_duration_seconds",
            "histogram",
            h,
            lab + (("le", "+Inf"),),
            agg.count,
            "_bucket",
        )
        add("atroz_phase_duration_seconds", "histogram", h, lab, agg.count, "_count")
        add("atroz_phase_duration_seconds", "histogram", h, lab, agg.total_ms / 1000.0, "_sum")
        other = agg.count - agg.completed - agg.failed - agg.cancelled
        for status, n in (
            ("completed", agg.completed),
            ("failed", agg.failed),
            ("cancelled", agg.cancelled),
            ("other", other),
        ):
            if status != "other" or n:
                add(
                    "atroz_phases",
                    "counter",
                    "Ended phases per phase key and outcome.",
                    lab + (("status", status),),
                    n,
                )
        add(
            "atroz_phase_cpu_seconds",
            "counter",
            "Process CPU time spent in ended phases of the key.",
            lab,
            agg.cpu_ms / 1000.0,
        )
        add(
            "atroz_phase_items",
            "counter",
            "Items processed by ended phases of the key.",
            lab,
            agg.items,
        )
        add(
            "atroz_phase_peak_resident_memory_bytes",
            "gauge",
            "Highest RSS seen while a phase of the key ran.",
            lab,
            agg.peak_rss_bytes,
        )


def _collect_resources(r: RunState, run: Labels, add: Any) -> None:
    latest: dict[int, dict[str, Any]] = {}
    for s in reversed(r.samples.snapshot()):  # newest first: the first seen per pid wins
        pid = s.get("pid")
        if type(pid) is int and pid not in latest:
            latest[pid] = s
    for pid in sorted(latest):
        s = latest[pid]
        lab = run + (("pid", str(pid)),)
        add(
            "atroz_process_cpu_seconds",
            "counter",
            "CPU time of the process (latest sample).",
            lab,
            s.get("cpu_s"),
        )
        add(
            "atroz_process_resident_memory_bytes",
            "gauge",
            "Resident set size of the process (latest sample).",
            lab,
            s.get("rss_bytes"),
        )
        add(
            "atroz_process_threads",
            "gauge",
            "Threads of the process (latest sample).",
            lab,
            s.get("threads"),
        )
        add(
            "atroz_children_cpu_seconds",
            "counter",
            "CPU time of the process's descendants, exited ones included (latest sample).",
            lab,
            s.get("children_cpu_s"),
        )
        add(
            "atroz_children_resident_memory_bytes",
            "gauge",
            "Resident set size of the process's live descendants, summed (latest sample).",
            lab,
            s.get("children_rss_bytes"),
        )
        add(
            "atroz_children_processes",
            "gauge",
            "Live descendant processes (latest sample).",
            lab,
            s.get("children"),
        )
    add(
        "atroz_run_peak_resident_memory_bytes",
        "gauge",
        "Highest process RSS sampled during the run.",
        run,
        r.peak_rss_bytes,
    )
    names = sorted(r.metrics)[:MAX_CUSTOM_METRICS]
    for name in names:
        add(
            "atroz_custom_metric",
            "gauge",
            f"Latest value of each custom metric (first {MAX_CUSTOM_METRICS} names per run).",
            run + (("name", name),),
            r.metrics[name].get("value"),
        )
    for name in sorted(r.counters)[:MAX_CUSTOM_METRICS]:
        add(
            "atroz_count",
            "counter",
            f"Sum of each p.count() counter over the run (first {MAX_CUSTOM_METRICS} names).",
            run + (("name", name),),
            r.counters[name],
        )


_HEALTH = (
    ("events_written", "Events the run's writer wrote to the log."),
    ("write_errors", "Log writes that failed."),
    ("events_lost", "Events the writer could not record."),
    ("internal_errors", "Failures inside the monitor (counted, never raised)."),
    ("samples", "Resource samples taken."),
    ("sample_errors", "Resource samples that failed."),
    ("samples_missed", "Sampling ticks missed (the sampler fell behind)."),
)


def _collect_health(
    r: RunState, run: Labels, monitor: Mapping[str, Mapping[str, Any]] | None, add: Any
) -> None:
    counters = monitor.get(r.id) if monitor is not None else None
    if counters is None:
        c = r.end_info.get("counters")  # replayed: the owner's counters at run_end
        counters = c if isinstance(c, dict) else {}
    for key, help_ in _HEALTH:
        v = counters.get(key)
        if type(v) is int:
            add(f"atroz_monitor_{key}", "counter", help_ + " (known live or at run end)", run, v)
    add(
        "atroz_log_events_missing",
        "counter",
        "Events missing from the log as its readers see it (gaps in writers' sequence numbers).",
        run,
        r.seq_gaps,
    )
    add(
        "atroz_reader_samples_dropped",
        "counter",
        "Samples the reader's bounded memory evicted (still in the log).",
        run,
        r.samples.dropped,
    )


def _label_value(v: str) -> str:
    # Lone surrogates (JSON allows them) cannot be UTF-8: replace, never fail the scrape.
    v = v.encode("utf-8", "replace").decode("utf-8")
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _value(v: float) -> str:
    if v.is_integer() and abs(v) < 2**53:
        return str(int(v))
    return repr(v)


def render_prometheus(families: Sequence[Family], *, openmetrics: bool = False) -> str:
    """Families as text exposition 0.0.4, or OpenMetrics 1.0 (``# EOF`` terminated)."""
    out: list[str] = []
    for f in families:
        typ, base = f.type, f.name
        if typ == "counter":
            # 0.0.4 names the family with its _total; OpenMetrics names it without.
            head = base if openmetrics else base + "_total"
            sample_name = base + "_total"
        elif typ == "info":
            head = base if openmetrics else base + "_info"
            sample_name = base + "_info"
            typ = typ if openmetrics else "gauge"
        else:
            head = sample_name = base
        help_ = f.help.replace("\\", "\\\\").replace("\n", "\\n")
        if openmetrics:
            help_ = help_.replace('"', '\\"')
        out.append(f"# HELP {head} {help_}")
        out.append(f"# TYPE {head} {typ}")
        for suffix, labels, value in f.samples:
            name = sample_name if f.type in ("counter", "info") else sample_name + suffix
            if labels:
                body = ",".join(f'{k}="{_label_value(v)}"' for k, v in labels)
                out.append(f"{name}{{{body}}} {_value(value)}")
            else:
                out.append(f"{name} {_value(value)}")
    if openmetrics:
        out.append("# EOF")
    return "\n".join(out) + "\n"


def prometheus(
    state: State,
    statuses: Mapping[str, str] | None = None,
    *,
    now: float | None = None,
    openmetrics: bool = False,
    alerts: Mapping[str, Iterable[Mapping[str, Any]]] | None = None,
    monitor: Mapping[str, Mapping[str, Any]] | None = None,
    history: Sequence[Mapping[str, Any]] | None = None,
) -> str:
    """``collect`` then ``render_prometheus``: Prometheus text of bounded cardinality."""
    fams = collect(state, statuses, now=now, alerts=alerts, monitor=monitor, history=history)
    return render_prometheus(fams, openmetrics=openmetrics)


def wants_openmetrics(accept: str | None) -> bool:
    """Content negotiation for ``/metrics``: OpenMetrics when the Accept header prefers it
    (or ranks it equal) to the 0.0.4 text format, as Prometheus's own scrape header does."""
    if not accept:
        return False
    om_q = text_q = 0.0
    for part in accept.split(","):
        fields = [x.strip() for x in part.split(";")]
        media = fields[0].lower()
        q = 1.0
        for p in fields[1:]:
            k, _, v = p.partition("=")
            if k.strip().lower() == "q":
                try:
                    q = float(v)
                except ValueError:
                    q = 0.0
        if media == "application/openmetrics-text":
            om_q = max(om_q, q)
        elif media in ("text/plain", "text/*", "*/*"):
            text_q = max(text_q, q)
    return om_q > 0 and om_q >= text_q
