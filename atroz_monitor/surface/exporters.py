"""Exporters: runs in the formats of the tools that take over beyond one machine.

Pure functions of reducer state or of a run snapshot (``views.snapshot``), no I/O:

- ``collect(state, ...)`` + ``render_prometheus(families, openmetrics=...)``: every run the
  state holds as Prometheus text exposition 0.0.4 or OpenMetrics 1.0 (``prometheus()`` does
  both steps). ``collect`` copies what it needs into plain tuples, so a server calls it under
  its state lock and renders outside it (prometheus_client's ``registry.collect()`` habit).
- ``chrome_trace(snapshot)``: Trace Event Format JSON for Perfetto UI and chrome://tracing.
- ``otlp_json(snapshot)``: an OTLP/JSON ``ExportTraceServiceRequest``.

``main()`` at the end is the ``export`` command (reading logs, writing the output); it is the
only part that touches files.
"""

from __future__ import annotations

import math
import os
import sys
import time
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from ..read.state import DURATION_BUCKETS_S, KeyAgg, RunState, State, error_count
from ..record.otlp import (
    attributes,
    phase_span,
    resource_fields,
    service_name,
    span_event,
    span_id,
    trace_id,
)

__all__ = [
    "DURATION_BUCKETS_S",
    "ExportError",
    "FORMATS",
    "Family",
    "OPENMETRICS_CONTENT_TYPE",
    "PROMETHEUS_CONTENT_TYPE",
    "chrome_trace",
    "collect",
    "encode_json",
    "main",
    "otlp_json",
    "prometheus",
    "render",
    "render_prometheus",
    "span_id",
    "trace_id",
    "wants_openmetrics",
]

FORMATS = ("chrome-trace", "prometheus", "otlp-json")

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"

# DURATION_BUCKETS_S (state.py): 5 ms (a tight inner step) to 1 h (a long batch phase);
# 18 buckets keep a histogram at 21 series per run and phase key.

SEVERITIES = ("info", "warning", "critical")
OPEN_ALERT_STATES = ("raised", "acknowledged")
MAX_CUSTOM_METRICS = 100
"""Custom metric names exported per run: user-chosen names must not explode cardinality."""


# -- Prometheus / OpenMetrics ----------------------------------------------------------------

Labels = tuple[tuple[str, str], ...]


class Family(NamedTuple):
    """One metric family: ``name`` without the ``_total`` / ``_info`` suffix its type adds;
    samples are ``(suffix, labels, value)``."""

    name: str
    type: str  # counter, gauge, histogram, info
    help: str
    samples: list[tuple[str, Labels, float]]


def _finite(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


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
        v = _finite(value)
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


# -- shared by the trace exporters -------------------------------------------------------------


def _num(v: Any) -> float | None:
    return _finite(v)


def _interval(p: Mapping[str, Any], snap: Mapping[str, Any]) -> tuple[float, float, bool]:
    """(start, end, ended) of a phase in Unix seconds. An ended phase lasts its monotonic
    ``duration_ms``; an open one (running, or interrupted by a dead writer) ends at the run's
    last event, the last moment the log vouches for."""
    run = snap["run"]
    start = _num(p.get("start"))
    if start is None:
        off = _num(p.get("offset_ms"))
        base = _num(run.get("start")) or 0.0
        start = base + (off or 0.0) / 1000.0
    ended = p.get("status") not in ("running", "interrupted")
    dur = _num(p.get("duration_ms"))
    if ended and dur is not None:
        return start, start + max(0.0, dur) / 1000.0, True
    end = _num(p.get("end"))
    if ended and end is not None:
        return start, max(start, end), True
    last = _num(run.get("last_event"))
    return start, max(start, last if last is not None else start), False


def _phase_label(p: Mapping[str, Any]) -> str:
    key, name = str(p.get("phase")), p.get("name")
    return key if not isinstance(name, str) or name == key else f"{key} {name}"


def _owner_pid(snap: Mapping[str, Any]) -> int | None:
    pid = snap["run"].get("pid")
    return pid if type(pid) is int else None


# -- Chrome trace / Perfetto -------------------------------------------------------------------


def chrome_trace(snap: Mapping[str, Any]) -> dict[str, Any]:
    """The run as Trace Event Format JSON (Perfetto UI, chrome://tracing).

    One process track per pid and one thread track per thread of it (tids are small ints per
    pid; phases that overlap on one thread without nesting, asyncio tasks, get a second track
    so slices always nest). Phases are complete events (``X``, microseconds from the run
    start) nested by time (a child is clamped into its parent on the same track); samples are
    counter tracks; logs, phase errors and alerts are instant events; a sub-phase on another
    track (a worker process) is linked to its parent by a flow arrow.
    """
    run = snap["run"]
    phases = snap.get("phases") or []
    t0 = _trace_t0(run, phases)
    owner = _owner_pid(snap)
    # Times first (children clamped into their parents on the same thread), then tracks.
    placed, rows = _place_slices(snap, phases, t0, owner)
    rows_sorted = sorted(
        rows, key=lambda r: (r["ts"], -(r["te"] - r["ts"]), r["p"].get("depth", 0))
    )
    tids = _assign_tracks(rows_sorted)
    events = _phase_events(rows_sorted, placed)
    span_lane = {s: (r["pid"], r["tid"]) for s, r in placed.items()}
    events += _sample_events(snap, t0, owner)
    events += _log_events(snap, t0, owner, span_lane)
    events += _alert_events(snap, t0, owner)
    run_name = run.get("name") or run.get("id")
    meta = _trace_metadata(snap, tids, events, owner, run_name)
    return {
        "traceEvents": meta + events,
        "displayTimeUnit": "ms",
        "otherData": {
            "run": run.get("id"),
            "name": run_name,
            "status": run.get("status"),
            "host": run.get("host"),
            "start_unix_s": t0,
            "exporter": "atroz_monitor",
        },
    }


def _trace_t0(run: Mapping[str, Any], phases: Sequence[Mapping[str, Any]]) -> float:
    """The trace's zero: the run's start, else its earliest phase start, else 0."""
    t0 = _num(run.get("start"))
    if t0 is None:
        starts = [s for p in phases if (s := _num(p.get("start"))) is not None]
        t0 = min(starts) if starts else 0.0
    return t0


def _us(t: float, t0: float) -> float:
    """Microseconds from the trace's zero, as the Trace Event Format counts."""
    return round((t - t0) * 1e6, 3)


def _place_slices(
    snap: Mapping[str, Any], phases: Sequence[Any], t0: float, owner: int | None
) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Each phase's slice times (a child clamped into its parent on the same thread), by
    span and in the snapshot's order."""
    placed: dict[str, dict[str, Any]] = {}
    rows = []
    for p in phases:  # depth-first: a parent comes before its children
        start, end, ended = _interval(p, snap)
        ts, te = _us(start, t0), _us(end, t0)
        pid = p.get("pid")
        pid = pid if type(pid) is int else (owner if owner is not None else 0)
        thread = str(p.get("thread")) if p.get("thread") is not None else "thread ?"
        parent = placed.get(p.get("parent")) if p.get("parent") is not None else None
        if parent is not None and (parent["pid"], parent["thread"]) == (pid, thread):
            ts = min(max(ts, parent["ts"]), parent["te"])
            te = max(min(te, parent["te"]), ts)
        row = {"p": p, "pid": pid, "thread": thread, "ts": ts, "te": max(te, ts), "ended": ended}
        placed[str(p.get("span"))] = row
        rows.append(row)
    return placed, rows


def _assign_tracks(rows_sorted: Sequence[dict[str, Any]]) -> dict[int, dict[tuple[str, int], int]]:
    """Set each row's ``tid``: the first track of its thread where it nests (an overlap
    without nesting opens the next track). Returns pid -> (thread, slot) -> tid."""
    # Lanes: (pid, thread name) -> tracks, each a stack of the open slices' ends.
    tids: dict[int, dict[tuple[str, int], int]] = {}
    stacks: dict[tuple[int, int], list[float]] = {}
    for row in rows_sorted:
        pid, thread = row["pid"], row["thread"]
        lanes = tids.setdefault(pid, {})
        slot = 0
        while True:
            tid = lanes.get((thread, slot))
            if tid is None:
                tid = lanes[(thread, slot)] = len(lanes) + 1
            stack = stacks.setdefault((pid, tid), [])
            while stack and stack[-1] <= row["ts"]:
                stack.pop()
            if not stack or row["te"] <= stack[-1]:
                stack.append(row["te"])
                row["tid"] = tid
                break
            slot += 1
    return tids


_SLICE_ARGS = (
    "span",
    "phase",
    "name",
    "status",
    "parent",
    "duration_ms",
    "cpu_ms",
    "cpu_pct",
    "children_cpu_ms",
    "rss_bytes",
    "peak_rss_bytes",
    "rss_delta_bytes",
    "items",
    "total",
    "items_per_s",
    "warnings",
    "errors",
)


def _phase_events(
    rows_sorted: Sequence[dict[str, Any]], placed: Mapping[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Per phase: its slice, a flow arrow from a parent on another track, its error."""
    events: list[dict[str, Any]] = []
    flows = 0
    for row in rows_sorted:
        p = row["p"]
        events.append(_phase_slice(row))
        parent = placed.get(p.get("parent")) if p.get("parent") is not None else None
        if parent is not None and (parent["pid"], parent["tid"]) != (row["pid"], row["tid"]):
            # A sub-phase on another track (a worker process, a thread): an arrow from the
            # parent's slice to the child's start.
            flows += 1
            events += _flow_arrow(flows, parent, row)
        err = p.get("error")
        if isinstance(err, dict) and row["ended"]:
            events.append(
                {
                    "name": f"error: {err.get('type')}: {err.get('msg')}"[:120],
                    "cat": "error",
                    "ph": "i",
                    "s": "p",
                    "ts": round(row["te"], 3),
                    "pid": row["pid"],
                    "tid": row["tid"],
                    "args": {"span": p.get("span"), "phase": p.get("phase"), **err},
                }
            )
    return events


def _phase_slice(row: Mapping[str, Any]) -> dict[str, Any]:
    """A phase as a complete event (``X``) with its figures as args."""
    p = row["p"]
    args: dict[str, Any] = {k: p.get(k) for k in _SLICE_ARGS if p.get(k) is not None}
    if p.get("metrics"):
        args["metrics"] = p["metrics"]
    if not row["ended"]:
        args["open"] = True  # no end line (yet): drawn to the last event of the run
    ev: dict[str, Any] = {
        "name": _phase_label(p),
        "cat": "phase",
        "ph": "X",
        "ts": row["ts"],
        "dur": round(row["te"] - row["ts"], 3),
        "pid": row["pid"],
        "tid": row["tid"],
        "args": args,
    }
    cname = {"failed": "terrible", "cancelled": "bad", "interrupted": "bad"}.get(
        str(p.get("status"))
    )
    if cname:
        ev["cname"] = cname  # chrome://tracing colours; Perfetto ignores it
    return ev


def _flow_arrow(n: int, parent: Mapping[str, Any], row: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Flow ``n``: from the parent's slice (at the child's start, clamped) to the child."""
    at = min(max(row["ts"], parent["ts"]), parent["te"])
    common = {"name": "sub-phase", "cat": "flow", "id": n}
    return [
        {**common, "ph": "s", "ts": at, "pid": parent["pid"], "tid": parent["tid"]},
        {**common, "ph": "f", "bp": "e", "ts": row["ts"], "pid": row["pid"], "tid": row["tid"]},
    ]


_COUNTERS = (
    ("CPU %", (("process", "cpu_pct"), ("children", "children_cpu_pct"))),
    ("Memory bytes", (("rss", "rss_bytes"), ("children rss", "children_rss_bytes"))),
    ("System %", (("cpu", "sys_cpu_pct"), ("memory", "sys_mem_pct"))),
)


def _sample_events(snap: Mapping[str, Any], t0: float, owner: int | None) -> list[dict[str, Any]]:
    """Samples as counter events (``C``), one track per counter and pid."""
    events: list[dict[str, Any]] = []
    for s in (snap.get("resources") or {}).get("samples") or []:
        ts_s, pid = _num(s.get("ts")), s.get("pid")
        if ts_s is None:
            continue
        pid = pid if type(pid) is int else (owner or 0)
        for name, series in _COUNTERS:
            cargs = {label: v for label, key in series if (v := _num(s.get(key))) is not None}
            if cargs:
                events.append(
                    {
                        "name": name,
                        "cat": "resources",
                        "ph": "C",
                        "ts": _us(ts_s, t0),
                        "pid": pid,
                        "args": cargs,
                    }
                )
    return events


def _log_events(
    snap: Mapping[str, Any],
    t0: float,
    owner: int | None,
    span_lane: Mapping[str, tuple[int, int]],
) -> list[dict[str, Any]]:
    """Log lines as instant events on their phase's track (else their process's)."""
    events: list[dict[str, Any]] = []
    for item in (snap.get("logs") or {}).get("items") or []:
        ts_l = _num(item.get("ts"))
        if ts_l is None:
            continue
        pid, tid = span_lane.get(str(item.get("span")), (None, 1))
        if pid is None:
            lp = item.get("pid")
            pid = lp if type(lp) is int else (owner or 0)
        level = str(item.get("level"))
        events.append(
            {
                "name": f"{level}: {item.get('msg')}"[:120],
                "cat": level,
                "ph": "i",
                "s": "p",
                "ts": _us(ts_l, t0),
                "pid": pid,
                "tid": tid,
                "args": {k: v for k, v in item.items() if k not in ("ts", "pid")},
            }
        )
    return events


def _alert_events(snap: Mapping[str, Any], t0: float, owner: int | None) -> list[dict[str, Any]]:
    """Alerts raised and resolved as global instant events."""
    events: list[dict[str, Any]] = []
    for a in snap.get("alerts") or []:
        label = a.get("rule") or a.get("alert")
        akeys = ("alert", "rule", "severity", "state", "value", "threshold", "msg")
        aargs = {k: a.get(k) for k in akeys if a.get(k) is not None}
        for what, key in (("alert", "raised_ts"), ("alert resolved", "resolved_ts")):
            t = _num(a.get(key))
            if t is None:
                continue
            sev = f" {a.get('severity')}" if what == "alert" else ""
            events.append(
                {
                    "name": f"{what}{sev}: {label}"[:120],
                    "cat": "alert",
                    "ph": "i",
                    "s": "g",
                    "ts": _us(t, t0),
                    "pid": owner or 0,
                    "tid": 0,
                    "args": aargs,
                }
            )
    return events


def _trace_metadata(
    snap: Mapping[str, Any],
    tids: Mapping[int, Mapping[tuple[str, int], int]],
    events: Sequence[Mapping[str, Any]],
    owner: int | None,
    run_name: Any,
) -> list[dict[str, Any]]:
    """Process and thread names and order (``M`` events): the owner first, then by start."""
    run = snap["run"]
    meta: list[dict[str, Any]] = []
    procs = {p.get("pid"): p for p in snap.get("processes") or [] if type(p.get("pid")) is int}
    pids = sorted(
        set(tids) | {e["pid"] for e in events},
        key=lambda x: (x != owner, (procs.get(x) or {}).get("start") or 0.0, x),
    )
    for order, pid in enumerate(pids):
        proc = procs.get(pid) or {}
        if pid == owner:
            pname = f"{run_name} (pid {pid}, owner)"
        else:
            ppid = proc.get("ppid")
            pname = f"pid {pid}" + (f" (child of {ppid})" if type(ppid) is int else "")
        meta += [
            {"name": "process_name", "ph": "M", "pid": pid, "tid": 0, "args": {"name": pname}},
            {
                "name": "process_sort_index",
                "ph": "M",
                "pid": pid,
                "tid": 0,
                "args": {"sort_index": order},
            },
            {
                "name": "process_labels",
                "ph": "M",
                "pid": pid,
                "tid": 0,
                "args": {"labels": f"run {run.get('id')}"},
            },
        ]
        for (thread, slot), tid in (tids.get(pid) or {}).items():
            tname = thread if slot == 0 else f"{thread} ({slot + 1})"
            meta += [
                {"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": tname}},
                {
                    "name": "thread_sort_index",
                    "ph": "M",
                    "pid": pid,
                    "tid": tid,
                    "args": {"sort_index": tid},
                },
            ]
    return meta


# -- OpenTelemetry (OTLP/JSON) -----------------------------------------------------------------


def otlp_json(snap: Mapping[str, Any]) -> dict[str, Any]:
    """The run as an OTLP/JSON ``ExportTraceServiceRequest`` (one trace, one span per phase).

    Encoding (OTLP spec, "JSON Protobuf Encoding"): lowerCamelCase keys, hex ids, enums as
    integers, 64-bit integers (times, ``intValue``) as decimal strings. One ``resourceSpans``
    per process of the run, so each process is its own resource (``process.pid``).
    """
    from .. import __version__

    run = snap["run"]
    rid = str(run.get("id"))
    owner = _owner_pid(snap)
    service = service_name(run.get("name"), rid)
    spans_present = {str(p.get("span")) for p in snap.get("phases") or []}
    logs_by_span: dict[str, list[Mapping[str, Any]]] = {}
    for item in (snap.get("logs") or {}).get("items") or []:
        s = item.get("span")
        if isinstance(s, str) and _num(item.get("ts")) is not None:
            logs_by_span.setdefault(s, []).append(item)
    alerts_by_span: dict[str, list[Mapping[str, Any]]] = {}
    for a in snap.get("alerts") or []:
        s, t = a.get("span"), _num(a.get("raised_ts") or a.get("ts"))
        if isinstance(s, str) and t is not None:
            alerts_by_span.setdefault(s, []).append({**a, "ts": t})  # raised: its time

    by_pid: dict[int, list[dict[str, Any]]] = {}
    for p in snap.get("phases") or []:
        span = str(p.get("span"))
        start, end, ended = _interval(p, snap)
        events = [span_event("log", item) for item in logs_by_span.get(span, ())]
        events += [span_event("alert", a) for a in alerts_by_span.get(span, ())]
        parent = p.get("parent")
        known = not isinstance(parent, str) or parent in spans_present
        # The one phase-to-span mapping (the live push's too).
        span_obj = phase_span(rid, p, start, end, ended=ended, events=events, parent_known=known)
        pid = p.get("pid")
        pid = pid if type(pid) is int else (owner if owner is not None else 0)
        by_pid.setdefault(pid, []).append(span_obj)

    procs = {p.get("pid"): p for p in snap.get("processes") or [] if type(p.get("pid")) is int}
    resource_spans = []
    for pid in sorted(by_pid, key=lambda x: (x != owner, (procs.get(x) or {}).get("start") or 0)):
        proc = procs.get(pid) or {}
        res = attributes(
            resource_fields(rid, pid, service=service, host=run.get("host"),
                            argv=proc.get("argv"), ppid=proc.get("ppid"), owner=pid == owner)
        )  # fmt: skip
        resource_spans.append(
            {
                "resource": {"attributes": res},
                "scopeSpans": [
                    {
                        "scope": {"name": "atroz_monitor", "version": __version__},
                        "spans": by_pid[pid],
                    }
                ],
            }
        )
    return {"resourceSpans": resource_spans}


def encode_json(doc: Any) -> bytes:
    """A trace document as compact ASCII JSON bytes (non-finite numbers become null)."""
    from ..events import dumps

    return dumps(doc).encode("ascii")


# -- the ``export`` command --------------------------------------------------------------------


class ExportError(Exception):
    """Input that yields no export: one line on stderr, exit 2."""


def render(
    paths: Sequence[str], fmt: str, run: str | None = None, *, follow_symlinks: bool = False
) -> bytes:
    """Read run logs and render them in ``fmt`` (one of ``FORMATS``); ExportError on bad
    input. Prometheus covers every run read; the trace formats the ``run`` (default: the
    latest)."""
    from ..read import loader
    from ..view import views
    from . import report

    if fmt not in FORMATS:
        raise ExportError(f"--format: unknown format {fmt!r} (one of {', '.join(FORMATS)})")
    try:
        st, stats, _ = report.load(list(paths), follow_symlinks=follow_symlinks)
    except report.ReportError as exc:
        raise ExportError(str(exc)) from None
    now = time.time()
    if fmt == "prometheus":
        statuses = {rid: views.run_status(r, now, loader.liveness(r)) for rid, r in st.runs.items()}
        return prometheus(st, statuses, now=now).encode("utf-8")
    if run is not None and run not in st.runs:
        known = ", ".join(sorted(st.runs)[:8])
        raise ExportError(f"--run: no run {run!r} in the input (runs: {known})")
    rid = run if run is not None else (views.latest_run(st) or next(iter(st.runs)))
    snap = views.snapshot(st, rid, now=now, alive=loader.liveness(st.runs[rid]))
    doc = chrome_trace(snap) if fmt == "chrome-trace" else otlp_json(snap)
    return encode_json(doc) + b"\n"


def main(
    paths: Sequence[str],
    fmt: str,
    run: str | None = None,
    output: str | None = None,
    *,
    follow_symlinks: bool = False,
) -> int:
    """The ``export`` command: stdout unless ``output``; ExportError on bad input."""
    body = render(paths, fmt, run, follow_symlinks=follow_symlinks)
    if output is None:
        sys.stdout.flush()
        sys.stdout.buffer.write(body)
        sys.stdout.buffer.flush()
        return 0
    tmp = f"{output}.tmp{os.getpid()}"
    try:
        # Whole or nothing: a reader (a scraper's textfile collector) never sees half a file.
        with open(tmp, "xb") as f:  # O_EXCL: never written through a link planted at tmp
            f.write(body)
        os.replace(tmp, output)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise ExportError(f"--output: cannot write {output}: {exc.strerror}") from None
    return 0
