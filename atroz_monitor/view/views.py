"""Pure JSON views of reducer state: the run snapshot every surface reads.

A snapshot shares nothing mutable with the state (containers the reducer keeps changing
are copied), so it can be encoded outside the lock while the reducer goes on.

``snapshot(state, run_id, now=..., alive=...)`` is the documented contract
(``docs/FORMAT.md``): the report, the HTTP API, the page and the exporters read it. Later
features add fields; they do not reshape it. Time and liveness are inputs, never read
here, so the view stays a pure function.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..events import DONE_STATUSES, cpu_avg_pct, items_per_s, phase_errors
from ..read import errgroups
from ..read.state import KeyAgg, PhaseRec, RunState, State, error_count
from . import history as _history
from .alerts import with_alerts

SNAPSHOT_VERSION = 1
STALE_FLOOR_S = 10.0
DONE = DONE_STATUSES  # a run with no event for max(3 x interval, this) is presumed dead

Liveness = Callable[[RunState], "bool | None"]


def run_status(r: RunState, now: float, alive: bool | None) -> str:
    """completed/failed/cancelled from ``run_end``; else running or interrupted.

    ``alive`` says whether the owner process still lives (same host, same pid and start
    time); None when it cannot be told (another host, no /proc): then a run that has been
    silent for longer than max(3 x its sample interval, 10 s) is presumed interrupted.
    """
    if r.end is not None:
        return r.status
    if alive is True:
        return "running"
    if alive is False:
        return "interrupted"
    interval = r.info.get("sample_interval")
    horizon = max(3 * interval if isinstance(interval, (int, float)) else 0.0, STALE_FLOOR_S)
    last = r.last_ts if r.last_ts is not None else now
    return "running" if now - last <= horizon else "interrupted"


def _r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(x, nd)


def share_pct(ms: float | None, run_ms: float | None) -> float | None:
    """A duration's share of the run's, in percent (1 decimal): the one formula the page,
    the report and the snapshot use."""
    if ms is None or not run_ms or run_ms <= 0:
        return None
    return round(ms / run_ms * 100.0, 1)


def phase_view(
    rec: PhaseRec,
    run_start: float | None,
    now: float,
    run_status: str,
    names: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """One phase record as JSON. ``names`` (plan id -> name) names a phase whose writer gave
    no name of its own (its name is its key)."""
    status = rec.status
    if status == "running" and run_status not in ("running",):
        status = "interrupted"
    dur = rec.duration_ms
    if dur is None and rec.start is not None:
        end = now if status == "running" else None
        if end is not None:
            dur = max(0.0, (end - rec.start) * 1000.0)
    name = rec.name
    if names and name == rec.phase:
        name = names.get(name, name)
    d: dict[str, Any] = {
        "span": rec.span,
        "phase": rec.phase,
        "name": name,
        "parent": rec.parent,
        "pid": rec.pid,
        "thread": rec.thread,
        "status": status,
        "start": rec.start,
        "end": rec.end,
        "offset_ms": _r((rec.start - run_start) * 1000.0)
        if rec.start is not None and run_start is not None
        else None,
        "duration_ms": _r(dur),
        "cpu_ms": rec.cpu_ms,
        "cpu_pct": cpu_avg_pct(rec.cpu_ms, dur),
        "cpu_peak_pct": rec.cpu_peak_pct,
        "children_cpu_ms": rec.children_cpu_ms,
        "rss_bytes": rec.rss_bytes,
        "rss_start_bytes": rec.rss_start_bytes,
        "rss_delta_bytes": rec.rss_bytes - rec.rss_start_bytes
        if rec.rss_bytes is not None and rec.rss_start_bytes is not None
        else None,
        "peak_rss_bytes": rec.peak_rss_bytes,
        "peak_rss_method": rec.peak_rss_method,
        "items": rec.items,
        "total": rec.total,
        "items_per_s": items_per_s(rec.items, dur),
        "items_ts": rec.items_ts,
        "warnings": rec.warnings,
        "errors": phase_errors(rec.errors, status),
        "late": rec.late,
        "artifacts": list(rec.artifacts) if rec.artifacts else [],
        "metrics": dict(rec.metrics) if rec.metrics else {},
        "counts": dict(rec.counts) if rec.counts else {},
        "error": rec.error,
        "reason": rec.reason,
        "attempt": rec.attempt,
        "meta": rec.meta,
        "children": list(rec.children),
        "folded": {k: a.to_dict() for k, a in rec.folded.items()} if rec.folded else {},
    }
    return d


def _ordered_phases(r: RunState) -> list[tuple[PhaseRec, int]]:
    """Depth-first, children in start order: the tree as a flat list with depths."""
    out: list[tuple[PhaseRec, int]] = []
    phases = r.phases

    def order(spans: list[str]) -> list[str]:
        # Start order, whatever order the writers' lines arrived in (one file per process
        # is read file by file); the span id breaks ties deterministically.
        return sorted(spans, key=lambda s: (getattr(phases.get(s), "start", None) or 0.0, s))

    stack: list[tuple[str, int]] = [(s, 0) for s in reversed(order(r.roots))]
    seen: set[str] = set()
    while stack:
        span, depth = stack.pop()
        rec = r.phases.get(span)
        if rec is None or span in seen:
            continue
        seen.add(span)
        out.append((rec, depth))
        stack.extend((c, depth + 1) for c in reversed(order(rec.children)))
    # Phases no root reaches (a damaged log naming a cycle of parents): top level. (A phase
    # whose parent was never seen is a root in the reducer already.)
    for span, rec in r.phases.items():
        if span not in seen:
            out.append((rec, 0))
    return out


def _last_seen(samples: list[dict[str, Any]], spans: set[str]) -> dict[str, float]:
    """When the newest sample listing each of ``spans`` open was taken (the ring keeps the
    newest; read only for phases without an end, so a sample costs the reducer nothing)."""
    out: dict[str, float] = {}
    for s in reversed(samples):
        listed = s.get("spans")
        ts = s.get("ts")
        if not isinstance(listed, list) or not isinstance(ts, (int, float)):
            continue
        for span in listed:
            if isinstance(span, str) and span in spans and span not in out:
                out[span] = ts
        if len(out) == len(spans):
            break
    return out


def _span_children(phases: list[dict[str, Any]], samples: list[dict[str, Any]]) -> None:
    """An interrupted phase (no end line: killed, or the run ended with it open) lasted at
    least until the last sample that saw it open and until its sub-phases ended: its
    duration is that lower bound (``duration_lower_bound``), never shorter than a child's.

    ``phases`` is depth-first, so walking it backwards meets every child before its parent.
    """
    open_ = {v["span"] for v in phases if v["status"] == "interrupted" and v["end"] is None}
    if not open_:
        return
    seen = _last_seen(samples, open_)
    reach: dict[str, float] = {}
    for v in reversed(phases):
        start = v["start"]
        if start is None:
            continue
        dur = v["duration_ms"]
        own = v["end"] if v["end"] is not None else start + (dur or 0.0) / 1000.0
        if v["end"] is None and v["span"] in seen:
            own = max(own, seen[v["span"]])
        for c in v["children"]:
            t = reach.get(c)
            if t is not None and t > own:
                own = t
        if v["status"] == "interrupted" and v["end"] is None:
            v["duration_ms"] = _r(max(0.0, own - start) * 1000.0)
            v["duration_lower_bound"] = True
        if not v["late"]:
            reach[v["span"]] = own


def snapshot(
    state: State,
    run_id: str,
    *,
    now: float,
    alive: bool | None = None,
    quality: Mapping[str, Any] | None = None,
    monitor: Mapping[str, Any] | None = None,
    history: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The JSON-ready view of one run. ``history``: the earlier runs' summaries (a
    catalog's) for the ETA and anomalies; None: the state's other runs."""
    r = state.runs[run_id]
    status = run_status(r, now, alive)
    start = r.start if r.start is not None else r.first_ts
    plan = _plan(r.info)
    names = {p["id"]: p["name"] for p in plan}
    phases = []
    for rec, depth in _ordered_phases(r):
        v = phase_view(rec, start, now, status, names)
        v["depth"] = depth
        phases.append(v)
    samples = r.samples.snapshot()
    _span_children(phases, samples)
    attempts = attempts_view(phases)
    flow = flow_view(plan, phases, attempts)
    run = _run_view(r, status, start, now, plan)
    for v in phases:  # a late phase ran after the run: no share of it
        v["share_pct"] = None if v["late"] else share_pct(v["duration_ms"], run["duration_ms"])
    snap = {
        "schema": SNAPSHOT_VERSION,
        "run": run,
        "progress": progress_view(flow, phases),
        "flow": flow,
        "phases": phases,
        "keys": {k: a.to_dict() for k, a in r.keys.items()},
        "folded": {k: a.to_dict() for k, a in r.folded.items()},
        "aggregates": aggregates_view(phases, r.folded, run["duration_ms"]),
        "attempts": attempts,
        "processes": sorted(
            (dict(p) for p in r.processes.values()), key=lambda p: p.get("start") or 0
        ),
        "resources": {
            "samples": samples,
            "total": r.samples.total,
            "dropped": r.samples.dropped,
            "peak_rss_bytes": r.peak_rss_bytes,
            "peak_tree_rss_bytes": r.peak_tree_rss_bytes,
        },
        "logs": {
            "items": r.logs.snapshot(),
            "warnings": r.log_counts.get("warning", 0),
            "errors": r.log_counts.get("error", 0),
            "dropped": r.logs.dropped,
        },
        "errors": errors_view(r, phases),
        "artifacts": {"items": r.artifacts.snapshot(), "total": r.artifacts.total},
        "metrics": {k: dict(v) for k, v in r.metrics.items()},
        "counters": dict(r.counters),
        "quality": _quality_view(r, quality),
        "monitor": _monitor_view(r, monitor),
    }
    with_alerts(snap, sorted(r.alerts.values(), key=lambda a: a.get("raised_ts") or 0))
    _history.evaluate(state if history is None else history, run_id, snap, now)
    snap["error_groups"] = errgroups.error_groups(state, run_id)
    return snap


def _plan(info: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The run's plan, well-formed entries only (the log is input: a damaged line may say
    anything); an entry without a name is named by its id."""
    field = info.get("plan")
    raw: list[Any] = field if isinstance(field, list) else []
    return [
        p if isinstance(p.get("name"), str) else {**p, "name": p["id"]}
        for p in raw
        if isinstance(p, dict) and isinstance(p.get("id"), str)
    ]


def _run_view(
    r: RunState, status: str, start: float | None, now: float, plan: list[dict[str, Any]]
) -> dict[str, Any]:
    end = r.end
    duration = None
    if start is not None:
        stop = end if end is not None else (now if status == "running" else r.last_ts)
        if stop is not None:
            duration = max(0.0, (stop - start) * 1000.0)
    info = r.info
    owner_pid = next((p["pid"] for p in r.processes.values() if p.get("owner")), None)
    return {
        "id": r.id,
        "name": info.get("name", r.id),
        "status": status,
        "start": start,
        "end": end,
        "duration_ms": _r(duration),
        "last_event": r.last_ts,
        "host": info.get("host"),
        "argv": info.get("argv"),
        "cwd": info.get("cwd"),
        "python": info.get("python"),
        "pid": r.processes and owner_pid,
        "ncpu": info.get("ncpu"),
        "sample_interval": info.get("sample_interval"),
        "v": info.get("v"),
        "meta": info.get("meta") or {},
        "plan": plan,
        "tags": info.get("tags") if isinstance(info.get("tags"), dict) else {},
        "limits": info.get("limits") if isinstance(info.get("limits"), dict) else None,
        "resumed": list(r.resumes),
        "error": r.end_info.get("error"),
        "started": r.started,
    }


def flow_view(
    plan: list[dict[str, Any]],
    phases: list[dict[str, Any]],
    attempts: Sequence[Mapping[str, Any]] = (),
) -> list[dict[str, Any]]:
    """One entry per planned phase: the state of its latest top-level record (a retry or
    repeat), and how many records (attempts) it has and how many of them failed.
    ``tries`` is the flow's retry badge: the latest record's attempt number and group
    (``attempts``) when it was retried, else the count of its records when more than one."""
    group = {span: g for g in attempts for span in g["spans"]}
    plan_ids = {p["id"] for p in plan}
    latest: dict[str, dict[str, Any]] = {}
    tries: dict[str, list[str]] = {}
    for v in phases:
        if v["depth"] == 0 or v["phase"] in plan_ids:
            key = v["phase"]
            cur = latest.get(key)
            if cur is None or ((v["start"] or 0.0), v["span"]) > (
                (cur["start"] or 0.0),
                cur["span"],
            ):
                latest[key] = v
            tries.setdefault(key, []).append(v["status"])
    flow = []
    for p in plan:
        last = latest.get(p["id"])
        statuses = tries.get(p["id"], [])
        entry = {
            "id": p["id"],
            "name": p.get("name"),
            "status": last["status"] if last else "pending",
            "span": last["span"] if last else None,
            "duration_ms": last["duration_ms"] if last else None,
            "attempts": len(statuses),
            "failed_attempts": sum(1 for t in statuses if t == "failed"),
        }
        entry["tries"] = _tries(last, group, entry["attempts"], entry["failed_attempts"])
        if isinstance(p.get("after"), list):
            entry["after"] = [a for a in p["after"] if isinstance(a, str)]
        flow.append(entry)
    return flow


def _tries(
    last: Mapping[str, Any] | None, group: Mapping[str, Mapping[str, Any]], n: int, failed: int
) -> dict[str, int] | None:
    g = group.get(last["span"]) if last is not None else None
    if last is not None and g is not None and g["of"] > 1:
        return {"n": last["attempt"], "of": g["of"], "failed": g["failed"]}
    return {"n": n, "of": n, "failed": failed} if n > 1 else None


def plan_progress(planned: int, done: int) -> dict[str, Any]:
    """Planned phases done, as every run list and the snapshot show it: the one home of
    the percentage (None without a plan)."""
    return {
        "planned": planned,
        "done": done,
        "pct": _r(done / planned * 100.0, 1) if planned else None,
    }


def progress_view(flow: list[dict[str, Any]], phases: list[dict[str, Any]]) -> dict[str, Any]:
    """Planned phases done, the running spans, the finished top-level phases' mean
    duration and slowest one (the page's "average phase" card), and ``bar``: the page's
    progress bar over the flow (the top-level phases when no plan was recorded)."""
    done = sum(1 for f in flow if f["status"] in DONE)
    steps = flow or [{"id": v["phase"], "status": v["status"]} for v in phases if v["depth"] == 0]
    steps_done = sum(1 for f in steps if f["status"] in DONE)
    tops = [
        v
        for v in phases
        if v["depth"] == 0 and v["duration_ms"] is not None and v["status"] != "running"
    ]
    slow = None
    for v in tops:
        if slow is None or v["duration_ms"] > slow["duration_ms"]:
            slow = v
    return {
        **plan_progress(len(flow), done),
        "running": [v["span"] for v in phases if v["status"] == "running"],
        "finished_top": len(tops),
        "mean_top_ms": _r(sum(v["duration_ms"] for v in tops) / len(tops)) if tops else None,
        "slowest_top": (
            {"span": slow["span"], "phase": slow["phase"], "duration_ms": slow["duration_ms"]}
            if slow
            else None
        ),
        "bar": {
            "done": steps_done,
            "total": len(steps),
            "pct": _r(steps_done / len(steps) * 100.0, 1) if steps else 0.0,
            "failed": any(f["status"] == "failed" for f in steps),
            "running": [f["id"] for f in steps if f["status"] == "running"],
        },
    }


def _quality_view(r: RunState, quality: Mapping[str, Any] | None) -> dict[str, Any]:
    q: dict[str, Any] = {
        "events": r.events,
        "seq_gaps": r.seq_gaps,
        "phases_folded": r.folded_count,
        "calls_aggregated": r.aggregated,
        "samples_dropped": r.samples.dropped,
        "logs_dropped": r.logs.dropped,
        "artifacts_dropped": r.artifacts.dropped,
        "bad_values": r.bad_values,
    }
    if quality:
        q.update(quality)
    return q


def _monitor_view(r: RunState, monitor: Mapping[str, Any] | None) -> dict[str, Any]:
    counters = r.end_info.get("counters")
    mon: dict[str, Any] = dict(counters) if isinstance(counters, dict) else {}
    if monitor:
        mon.update(monitor)
    return mon


_AGG_STATUSES = ("completed", "failed", "cancelled", "skipped", "cached")


def repeat_aggregate(
    records: Sequence[Mapping[str, Any]], folded: Mapping[str, Any] | None
) -> KeyAgg:
    """The calls of one key under one parent: what the writer summed (``folded``, an
    ``aggregate``'s or ``KeyAgg.to_dict``'s fields) plus ``records`` (phase views) recorded
    one by one, counted by ``state.KeyAgg`` (the one place repeats are counted). A record
    without a duration counts by status only."""
    agg = KeyAgg(light=True)
    if folded:
        agg.add_many(dict(folded))
    for v in records:
        status = v.get("status")
        dur = v.get("duration_ms")
        if isinstance(dur, (int, float)) and status not in ("skipped", "cached"):
            agg.add(str(status), float(dur), v.get("cpu_ms") or 0.0, v.get("items") or 0)
        else:
            agg.add_many({"count": 1, str(status): 1} if status in _AGG_STATUSES else {"count": 1})
    return agg


def aggregates_view(
    phases: list[dict[str, Any]], top_folded: Mapping[str, KeyAgg], run_ms: float | None = None
) -> dict[str, dict[str, Any]]:
    """Hot loops recorded as aggregates, per parent span ("" for the top level): one row per
    key, the writer's sums plus the calls of that key recorded one by one before aggregation
    began (so ``count`` is every call made), and ``calls``, the sum over the parent's rows."""
    kids: dict[str, list[dict[str, Any]]] = {}
    for v in phases:
        if v["depth"] > 0 and v["parent"] and not v["late"]:
            kids.setdefault(v["parent"], []).append(v)
    out: dict[str, dict[str, Any]] = {}

    def put(parent: str, key: str, folded: Mapping[str, Any], recs: list[dict[str, Any]]) -> None:
        agg = repeat_aggregate(recs, folded)
        named = next((x["name"] for x in recs if x["name"]), None)
        row = {
            "span": f"agg:{parent}:{key}",
            "parent": parent or None,
            "phase": key,
            "name": named or key,
            "aggregated": agg.count - len(recs),
            "individual": len(recs),
            **agg.to_dict(),
        }
        del row["last_ms"], row["peak_rss_bytes"]
        row["share_pct"] = share_pct(row["total_ms"], run_ms)
        group = out.setdefault(parent, {"calls": 0, "rows": []})
        group["calls"] += agg.count
        group["rows"].append(row)

    for v in phases:
        for key, folded in (v["folded"] or {}).items():
            put(v["span"], key, folded, [c for c in kids.get(v["span"], ()) if c["phase"] == key])
    for key, a in top_folded.items():
        recs = [v for v in phases if v["depth"] == 0 and v["phase"] == key]
        put("", key, a.to_dict(), recs)
    return out


def attempts_view(phases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Retried phases: the records of one key under one parent (top level: any parent) that
    carry an attempt number, in start order; ``of`` is the attempts known (recorded, or the
    highest number seen), ``failed`` how many of them failed."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for v in phases:
        if isinstance(v["attempt"], int):
            k = ("" if v["depth"] == 0 else v["parent"] or "", v["phase"])
            groups.setdefault(k, []).append(v)
    return [
        {
            "phase": key,
            "parent": parent or None,
            "of": max(len(recs), *(v["attempt"] for v in recs)),
            "failed": sum(1 for v in recs if v["status"] == "failed"),
            "spans": [v["span"] for v in recs],
        }
        for (parent, key), recs in groups.items()
    ]


def errors_view(r: RunState, phases: list[dict[str, Any]]) -> dict[str, Any]:
    """The run's errors, counted once (``state.error_count``): ``count``, ``logged`` (error
    log events), ``exceptions`` (each exception that failed phases, at the phase that
    raised it, then the run's own when no phase failed with it)."""
    recs = r.phases
    exceptions = [
        {
            "ts": v["end"],
            "span": v["span"],
            "phase": v["phase"],
            "name": v["name"],
            "pid": v["pid"],
            "error": v["error"],
        }
        for v in phases
        if (rec := recs.get(v["span"])) is not None and rec.origin
    ]
    err = r.end_info.get("error")
    if r.run_failure and isinstance(err, dict):
        exceptions.append({"ts": r.end, "span": None, "phase": None, "name": None,
                           "pid": None, "error": err})  # fmt: skip
    return {
        "count": error_count(r),
        "logged": r.log_counts.get("error", 0),
        "exceptions": exceptions,
    }


def latest_run(state: State) -> str | None:
    """The id of the run that started last (by its first event)."""
    best: tuple[float, str] | None = None
    for rid, r in state.runs.items():
        t = r.start if r.start is not None else (r.first_ts or 0.0)
        if best is None or t >= best[0]:
            best = (t, rid)
    return best[1] if best else None
