"""Chrome trace event JSON (Perfetto, chrome://tracing) of one run's snapshot: a lane per
process and thread, phase slices, flow arrows to pool workers, samples as counters, logs and
alerts as instants.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..view.timeline import finite, owner_pid, phase_interval


def _phase_label(p: Mapping[str, Any]) -> str:
    key, name = str(p.get("phase")), p.get("name")
    return key if not isinstance(name, str) or name == key else f"{key} {name}"


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
    owner = owner_pid(snap)
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
    t0 = finite(run.get("start"))
    if t0 is None:
        starts = [s for p in phases if (s := finite(p.get("start"))) is not None]
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
        start, end, ended = phase_interval(p, snap)
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
        ts_s, pid = finite(s.get("ts")), s.get("pid")
        if ts_s is None:
            continue
        pid = pid if type(pid) is int else (owner or 0)
        for name, series in _COUNTERS:
            cargs = {label: v for label, key in series if (v := finite(s.get(key))) is not None}
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
        ts_l = finite(item.get("ts"))
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
            t = finite(a.get(key))
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
