"""The report as text for a terminal and as markdown (a CI summary, a pull request): renderings
of ``view.report_model``'s model, nothing computed here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ..view.report_model import ordered_rows

STATUS_MARK = {
    "completed": "ok",
    "failed": "FAIL",
    "cancelled": "cancel",
    "interrupted": "intr",
    "running": "run",
    "pending": "-",
    "skipped": "skip",
    "cached": "cache",
}


def fmt_ms(ms: float | None, signed: bool = False) -> str:
    """A duration in the unit that fits its size, the sign kept ("-516.4ms", not
    "-516394us"); ``signed`` writes "+" on positive values too (a change). The unit is
    chosen on the rounded value, so 999.96 ms reads "1.00s", never "1000.0ms"."""
    if ms is None:
        return "-"
    sign = "-" if ms < 0 else ("+" if signed and ms > 0 else "")
    ms = abs(ms)
    if ms < 0.9995:
        return f"{sign}{ms * 1000:.0f}us"
    if ms < 999.95:
        return f"{sign}{ms:.1f}ms"
    s = ms / 1000
    if s < 59.995:
        return f"{sign}{s:.2f}s"
    tenths = round(s * 10)
    if tenths < 36000:
        m, t = divmod(tenths, 600)
        return f"{sign}{m}m{t / 10:04.1f}s"
    h, m = divmod(round(s / 60), 60)
    return f"{sign}{h}h{m:02d}m"


def fmt_bytes(n: float | None, signed: bool = False) -> str:
    if n is None:
        return "-"
    sign = "-" if n < 0 else ("+" if signed and n > 0 else "")
    n = abs(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{sign}{n:.0f}{unit}" if unit == "B" else f"{sign}{n:.1f}{unit}"
        n /= 1024
    return f"{sign}{n:.1f}TiB"


def _num(v: float | None, fmt: str = "{:.0f}") -> str:
    return "-" if v is None else fmt.format(v)


def clean(text: Any, width: int | None = None) -> str:
    """User text for a terminal: control characters (escape sequences included) shown as
    ``?``, cut to ``width``."""
    s = "" if text is None else str(text)
    s = "".join(ch if ch.isprintable() else "?" for ch in s)
    if width is not None and len(s) > width:
        s = s[: max(width - 1, 0)] + "~"
    return s


def _ts(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


_BLOCKS = "▁▂▃▄▅▆▇█"


_ASCII = " .:-=+*#"


class _Style:
    def __init__(self, color: bool) -> None:
        self.color = color

    def __call__(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text

    def status(self, st: str, width: int = 0) -> str:
        mark = STATUS_MARK.get(st, st)
        padded = f"{mark:<{width}}" if width else mark
        code = {
            "completed": "32",
            "failed": "1;31",
            "running": "33",
            "interrupted": "35",
            "cancelled": "35",
        }.get(st)
        return self(padded, code) if code else padded


def sparkline(values: Sequence[float | None], width: int, unicode: bool = True) -> str:
    """Values resampled to ``width`` columns (max per column), scaled to the maximum."""
    chars = _BLOCKS if unicode else _ASCII
    vals = [v for v in values]
    if not vals:
        return ""
    n = len(vals)
    cols = []
    for i in range(min(width, n)):
        lo, hi = i * n // min(width, n), (i + 1) * n // min(width, n)
        chunk = [v for v in vals[lo : max(hi, lo + 1)] if v is not None]
        cols.append(max(chunk) if chunk else None)
    top = max((v for v in cols if v is not None), default=0) or 1
    return "".join(
        " " if v is None else chars[min(len(chars) - 1, int(v / top * (len(chars) - 1) + 0.5))]
        for v in cols
    )


def timeline(
    ts: Sequence[float],
    values: Sequence[float | None],
    t0: float,
    t1: float,
    width: int,
    unicode: bool = True,
) -> str:
    """A sparkline on the run's time axis: column i covers [t0, t1] / width; several samples
    in a column show their maximum, a column with none repeats the one before."""
    cols: list[float | None] = [None] * width
    span = (t1 - t0) or 1.0
    for t, v in zip(ts, values, strict=False):
        if v is None:
            continue
        i = min(width - 1, max(0, int((t - t0) / span * width)))
        c = cols[i]
        cols[i] = v if c is None or v > c else c
    last = None
    for i, v in enumerate(cols):
        if v is None:
            cols[i] = last
        else:
            last = v
    return sparkline(cols, width, unicode)


def _bar(start: float | None, dur: float | None, run_ms: float, width: int, unicode: bool) -> str:
    if start is None or dur is None or run_ms <= 0:
        return " " * width
    a = max(0, min(width - 1, int(start / run_ms * width)))
    b = max(a + 1, min(width, int(math.ceil((start + dur) / run_ms * width))))
    fill = "█" if unicode else "#"
    return " " * a + fill * (b - a) + " " * (width - b)


def render_text(
    model: dict[str, Any], *, color: bool = False, unicode: bool = True, errors_max: int = 10
) -> str:
    """The terminal report, fitting 100 columns."""
    st = _Style(color)
    out = _header_text(model, st)
    out += _phase_tables_text(model, st, unicode)
    out += _resources_text(model, st, unicode)
    out += _highlights_text(model, st)
    out += _errors_text(model, st, errors_max)
    out += _groups_text(model.get("error_groups"), st, errors_max)
    if model.get("counters"):
        out += ["", st("counters", "1") + "  " + clean(_counters(model["counters"]), 88)]
    out += _alerts_text(model, st, errors_max)
    out += _history_text(model, st, unicode)
    if model["comparison"] is not None:
        out += _comparison_text(model["comparison"], st)
    if model["runs_table"] is not None:
        out += _runs_table_text(model["runs_table"])
    out += _suggestions_text(model.get("suggestions") or [], st)
    if model.get("compare") is not None:
        out += _compare_text(model["compare"], st, unicode)
    return "\n".join(out)


def _header_text(model: Mapping[str, Any], st: _Style) -> list[str]:
    """The run's header: identity, command, tags, limits, resumes, progress, quality, error."""
    run = model["run"]
    q = model["quality"]
    mon = model["monitor"]
    out: list[str] = []
    out.append(st(f"run {clean(run['id'], 40)}", "1") + f"  {clean(run.get('name'), 40)}")
    argv = run.get("argv") or []
    argv = argv if isinstance(argv, list) else [argv]
    out.append(
        f"status {st.status(run['status'])}  start {_ts(run.get('start'))}  "
        f"duration {fmt_ms(run.get('duration_ms'))}  host {clean(run.get('host'), 24)}  "
        f"pid {run.get('pid') or '-'}"
    )
    if argv:
        out.append("command " + clean(" ".join(str(a) for a in argv), 90))
    if run.get("tags"):
        out.append("tags " + clean(", ".join(f"{k}={v}" for k, v in run["tags"].items()), 94))
    lim = run.get("limits")
    if isinstance(lim, dict) and (lim.get("memory_max_bytes") or lim.get("cpu_quota")):
        out.append(
            "container limits: memory "
            + (fmt_bytes(lim["memory_max_bytes"]) if lim.get("memory_max_bytes") else "-")
            + ", CPU "
            + (f"{lim['cpu_quota']:g}" if lim.get("cpu_quota") else "-")
            + f" ({clean(lim.get('source'), 30)})"
        )
    if model.get("baseline_tags"):
        out.append("history and baseline: only runs tagged " + _tag_list(model["baseline_tags"]))
    for res in run.get("resumed") or []:
        gap = res.get("gap_s")
        out.append(
            f"resumed by pid {res.get('pid')} after pid {res.get('prev_pid')} stopped"
            + (f" (a gap of {fmt_ms(gap * 1000)})" if isinstance(gap, (int, float)) else "")
        )
    prog = model["progress"]
    if run["status"] == "running":
        eta = prog.get("eta_s")
        out.append(
            f"progress {prog.get('done')}/{prog.get('planned')} phases"
            + (
                f", ETA {fmt_ms(eta * 1000)}"
                if eta is not None
                else ", ETA: no history for "
                + ", ".join(clean(k, 12) for k in prog.get("missing_history") or [])
            )
        )
    out.append("data quality: " + quality_line(q, mon))
    if isinstance(run.get("error"), dict):
        e = run["error"]
        out.append(st("error ", "31") + clean(f"{e.get('type')}: {e.get('msg')}", 90))
    return out


def _phase_tables_text(model: Mapping[str, Any], st: _Style, unicode: bool) -> list[str]:
    """The phases twice: times with a timeline bar, then resources, items and counts."""
    run = model["run"]
    out: list[str] = []
    rows = model["phases"]
    run_ms = run.get("duration_ms") or 0.0
    pending = [f for f in model["flow"] if f["status"] == "pending"]
    out.append("")
    out.append(st("phases", "1") + f" ({len(rows)} shown; timeline = the run's {fmt_ms(run_ms)})")
    bw = 30
    out.append(
        f"{'phase':<12} {'name':<20} {'status':<6} {'start':>8} {'duration':>9} "
        f"{'share':>5}  {'timeline':<{bw}}"
    )
    for p in rows:
        ind = "  " * p.get("depth", 0)
        extent = p.get("extent_ms", p.get("duration_ms"))
        pct = p.get("share_pct") if p.get("depth", 0) == 0 else None
        share = f"{pct:.0f}%" if pct is not None else ""
        out.append(
            f"{clean(ind + p['phase'], 12):<12} {clean(_label(p), 20):<20} "
            f"{st.status(p['status'], 6)} {fmt_ms(p.get('offset_ms')):>8} "
            f"{_dur(p):>9} {share:>5}  "
            f"{_bar(p.get('offset_ms'), extent, run_ms, bw, unicode)}"
        )
    for f in pending:
        out.append(
            f"{clean(f['id'], 12):<12} {clean(f.get('name'), 20):<20} {st.status('pending', 6)}"
        )
    out.append("")
    out.append(
        f"{'phase':<12} {'cpu avg':>7} {'cpu pk':>6} {'peak rss':>9} {'rss chg':>9} "
        f"{'child cpu':>9} {'items':>7} {'items/s':>9} {'warn':>4} {'err':>4} {'art':>4}"
    )
    for p in rows:
        ind = "  " * p.get("depth", 0)
        out.append(
            f"{clean(ind + p['phase'], 12):<12} {_num(p.get('cpu_pct'), '{:.0f}%'):>7} "
            f"{_num(p.get('cpu_peak_pct'), '{:.0f}%'):>6} "
            f"{fmt_bytes(p.get('peak_rss_bytes')):>9} "
            f"{fmt_bytes(p.get('rss_delta_bytes'), signed=True):>9} "
            f"{fmt_ms(p.get('children_cpu_ms')):>9} {p.get('items') or '':>7} "
            f"{_num(p.get('items_per_s'), '{:.1f}'):>9} {p.get('warnings') or '':>4} "
            f"{p.get('errors') or '':>4} {len(p.get('artifacts') or []) or '':>4}"
        )
    return out


def _resources_text(model: Mapping[str, Any], st: _Style, unicode: bool) -> list[str]:
    """CPU and RSS over the run on one time axis, with the top-level phases' starts marked."""
    run = model["run"]
    rows = model["phases"]
    run_ms = run.get("duration_ms") or 0.0
    out: list[str] = []
    res = model["resources"]
    if res["ts"]:
        out.append("")
        w = 80
        t0 = run.get("start") or res["ts"][0]
        cpu = [v for v in res["cpu_pct"] if v is not None]
        rss = [v for v in res["rss_bytes"] if v is not None]
        out.append(
            st("resources", "1") + f" over the run ({len(res['ts'])} samples; "
            "| = a top-level phase starts)"
        )
        t1 = max(res["ts"][-1], t0 + run_ms / 1000)
        span_s = (t1 - t0) or 1.0
        out.append(
            f"cpu {_num(max(cpu) if cpu else None, '{:.0f}%'):>9} "
            + timeline(res["ts"], res["cpu_pct"], t0, t1, w, unicode)
        )
        out.append(
            f"rss {fmt_bytes(max(rss) if rss else None):>9} "
            + timeline(res["ts"], res["rss_bytes"], t0, t1, w, unicode)
        )
        marks = [" "] * w
        labels = [" "] * w
        for p in rows:
            if p.get("depth", 0) or p.get("start") is None:
                continue
            i = min(w - 1, max(0, int((p["start"] - t0) / span_s * w)))
            marks[i] = "|"
            key = clean(p["phase"])
            if all(c == " " for c in labels[i : i + len(key) + 1]):
                labels[i : i + len(key)] = list(key[: w - i])
        out.append(" " * 14 + "".join(marks))
        out.append(" " * 14 + "".join(labels)[:w])
    return out


def _highlights_text(model: Mapping[str, Any], st: _Style) -> list[str]:
    """The critical path and the slowest phases."""
    run_ms = model["run"].get("duration_ms") or 0.0
    out: list[str] = []
    if model["critical_path"] or model["slowest"]:
        out.append("")
        chain = model["critical_path"]
        if chain:
            total = sum(c["duration_ms"] or 0 for c in chain)
            out.append(
                st("critical path", "1")
                + f" ({fmt_ms(total)}"
                + (f", {total / run_ms * 100:.0f}% of the run)" if run_ms else ")")
            )
            out.append("  " + clean(" > ".join(c["phase"] for c in chain), 96))
        if model["slowest"]:
            out.append(
                st("slowest", "1")
                + "  "
                + clean(
                    ", ".join(
                        f"{s['phase']} {fmt_ms(s['duration_ms'])}"
                        + (f" ({s['share_pct']:.0f}%)" if s.get("share_pct") is not None else "")
                        for s in model["slowest"][:4]
                    ),
                    90,
                )
            )
    return out


def _errors_text(model: Mapping[str, Any], st: _Style, errors_max: int) -> list[str]:
    """Failed phases, then error and warning lines in time order, at most ``errors_max``."""
    out: list[str] = []
    errs, warns = model["errors"], model["warnings"]
    if errs["count"] or warns["count"] or errs["failed_phases"]:
        out.append("")
        out.append(
            st("errors and warnings", "1") + f" ({errs['count']} errors, {warns['count']} warnings)"
        )
        for f in errs["failed_phases"][:errors_max]:
            e = f.get("error") or {}
            out.append(
                st("  failed ", "31")
                + clean(f"{f['phase']}: {e.get('type', '?')}: {e.get('msg', '')}", 88)
            )
        shown = errs["items"] + warns["items"]
        shown.sort(key=lambda g: g.get("ts") or 0)
        for g in shown[:errors_max]:
            lvl = "error" if g.get("level") == "error" else "warn"
            out.append(
                f"  {st(f'{lvl:<5}', '31' if lvl == 'error' else '33')} "
                f"{clean(g.get('phase') or '-', 10):<10} {clean(g.get('msg'), 80)}"
            )
        more = errs["logged"] + warns["count"] - min(len(shown), errors_max)
        if more > 0:
            out.append(f"  ... and {more} more")
    return out


def _alerts_text(model: Mapping[str, Any], st: _Style, errors_max: int) -> list[str]:
    """The alerts, at most ``errors_max``, each with who acknowledged it."""
    out: list[str] = []
    if model["alerts"]:
        out.append("")
        out.append(st("alerts", "1") + f" ({len(model['alerts'])})")
        for a in model["alerts"][:errors_max]:
            sev = a.get("severity", "?")
            code = {"critical": "1;31", "warning": "33"}.get(sev, "36")
            state = a.get("state", "?") + (" (ack)" if a.get("acknowledged") else "")
            out.append(f"  {st(f'{sev:<8}', code)} {state:<14} {clean(a.get('msg'), 70)}")
            ack = _ack_text(a)
            if ack:
                out.append("  " + " " * 24 + clean(ack, 74))
    return out


def _history_text(model: Mapping[str, Any], st: _Style, unicode: bool) -> list[str]:
    """Each top-level key against its history: median, change, trend, sparkline, anomaly."""
    out: list[str] = []
    if model["history"] or model["anomalies"]:
        out.append("")
        out.append(st("against history", "1"))
        out.append(
            f"  {'phase':<12} {'runs':>4} {'median':>9} {'this run':>9} {'change':>7} "
            f"{'trend':<10} sparkline"
        )
        anomalous = {a["phase"] for a in model["anomalies"]}
        for k, h in model["history"].items():
            delta = h.get("delta_pct")
            flag = st(" anomaly", "1;31") if k in anomalous else ""
            tr = h["trend"]
            trend = tr.get("direction", "-")
            if tr.get("pct_per_run") is not None and trend != "insufficient":
                trend += f" {tr['pct_per_run']:+.0f}%"
            out.append(
                f"  {clean(k, 12):<12} {h['runs']:>4} {fmt_ms(h.get('median_ms')):>9} "
                f"{fmt_ms(h.get('current_ms')):>9} "
                f"{_num(delta, '{:+.0f}%'):>7} {clean(trend, 10):<10} "
                f"{sparkline(h['series_ms'], 20, unicode)}{flag}"
            )
    return out


def _counters(counters: Mapping[str, Any]) -> str:
    """``signals 1,005, pages 12``: each p.count() counter's sum over the run."""
    return ", ".join(
        f"{k} {v:,.0f}" if isinstance(v, (int, float)) and float(v).is_integer() else f"{k} {v}"
        for k, v in counters.items()
    )


def _ack_text(a: Mapping[str, Any]) -> str | None:
    """Who acknowledged or cleared an alert (the ``ack`` command), when, and why."""
    if a.get("cleared"):
        return f"cleared by {a.get('cleared_by') or '?'} {_ts(a.get('cleared_ts'))}"
    if a.get("acknowledged") and a.get("ack_by"):
        note = f": {a['ack_note']}" if a.get("ack_note") else ""
        return f"acknowledged by {a['ack_by']} {_ts(a.get('ack_ts'))}{note}"
    return None


def _across(g: Mapping[str, Any]) -> str:
    if not g.get("recent_runs"):
        return ""
    if g.get("new"):
        return "new"
    return f"{g.get('seen_runs')}/{g.get('recent_runs')} runs"


def _groups_text(eg: Mapping[str, Any] | None, st: _Style, limit: int) -> list[str]:
    """Errors and warnings by fingerprint (read/errgroups.py): one line per group."""
    if not eg or not (eg.get("groups") or eg.get("gone")):
        return []
    groups = eg.get("groups") or []
    against = f"; against the last {eg['recent_runs']} run(s)" if eg.get("recent_runs") else ""
    out = [
        "",
        st("error groups", "1")
        + f" ({len(groups)} groups, {eg.get('total', 0)} occurrences{against})",
    ]
    if groups:
        out.append(f"  {'count':>6} {'level':<5} {'seen':<9} {'phases':<12} group")
    for g in groups[:limit]:
        lvl = "error" if g.get("level") == "error" else "warn"
        kind = f"{g['type']}: " if g.get("type") else ""
        where = f" (at {g['frame']})" if g.get("frame") else ""
        out.append(
            f"  {g.get('count', 0):>6} {st(f'{lvl:<5}', '31' if lvl == 'error' else '33')} "
            f"{_across(g):<9} {clean(','.join(g.get('phases') or []) or '-', 12):<12} "
            + clean(kind + str(g.get("template")) + where, 60)
        )
    if len(groups) > limit:
        out.append(f"  ... and {len(groups) - limit} more groups")
    gone = eg.get("gone") or []
    if gone:
        out.append(
            f"  gone since the previous run ({len(gone)}): "
            + clean("; ".join(str(g.get("template")) for g in gone[:3]), 60)
        )
    return out


def _groups_markdown(eg: Mapping[str, Any] | None) -> list[str]:
    if not eg or not (eg.get("groups") or eg.get("gone")):
        return []
    out = [
        "",
        f"### Error groups ({len(eg.get('groups') or [])})",
        "",
        "| count | level | type | group | frame | phases | first | last | across runs |",
        "|--:|---|---|---|---|---|---|---|---|",
    ]
    for g in (eg.get("groups") or [])[:50]:
        across = _across(g) or "-"
        out.append(
            f"| {g.get('count')} | {_md(g.get('level'))} | {_md(g.get('type') or '-')} "
            f"| {_md(g.get('template'))} | {_md(g.get('frame') or '-')} "
            f"| {_md(', '.join(g.get('phases') or []) or '-')} | {_ts(g.get('first_ts'))} "
            f"| {_ts(g.get('last_ts'))} | {across} |"
        )
    for g in eg.get("gone") or []:
        out.append(
            f"| 0 | {_md(g.get('level'))} | {_md(g.get('type') or '-')} "
            f"| {_md(g.get('template'))} | {_md(g.get('frame') or '-')} | | | | gone |"
        )
    return out


def _tag_list(tags: Mapping[str, Any]) -> str:
    """``k=v, k2=v2``, as user text for a terminal (sorted: the same tags read the same)."""
    return clean(", ".join(f"{k}={v}" for k, v in sorted(tags.items())), 90)


def _dur(p: dict[str, Any]) -> str:
    """A phase's duration; ">" before the least an interrupted phase is known to have
    lasted (it has no end line)."""
    return (">" if p.get("duration_lower_bound") else "") + fmt_ms(p.get("duration_ms"))


def _label(p: dict[str, Any]) -> str:
    """A phase's name, with its attempt number and the reason it was skipped or cached."""
    name = str(p.get("name") or p["phase"])
    if p.get("attempt"):
        name += f" #{p['attempt']}"
    if p.get("reason"):
        name += f" ({p['reason']})"
    if p.get("late"):
        name += " (late)"  # started after the run ended
    return name


def quality_line(q: dict[str, Any], mon: dict[str, Any]) -> str:
    parts = []
    if q.get("torn"):
        parts.append(f"torn last line at byte {q.get('torn_offset')} (skipped)")
    if q.get("corrupt"):
        lines = ", ".join(str(n) for n in (q.get("corrupt_lines") or [])[:5])
        parts.append(
            f"{q['corrupt']} corrupt line(s) skipped (line {lines}"
            + (" ..." if q["corrupt"] > 5 else "")
            + ")"
        )
    if q.get("newer_schema"):
        parts.append(f"schema v{q['newer_schema']} is newer than this reader: known parts read")
    if q.get("seq_gaps"):
        parts.append(f"{q['seq_gaps']} event(s) missing (sequence gaps)")
    if q.get("bad_values"):
        parts.append(f"{q['bad_values']} value(s) of a wrong type or out of range read as missing")
    for k, label in (
        ("samples_dropped", "samples dropped from memory"),
        ("phases_folded", "repeated phases folded into aggregates"),
    ):
        if q.get(k):
            parts.append(f"{q[k]} {label}")
    if mon.get("write_errors"):
        parts.append(
            f"{mon['write_errors']} monitor write error(s) ({mon.get('events_lost', 0)} "
            "events lost)"
        )
    if mon.get("internal_errors"):
        parts.append(f"{mon['internal_errors']} monitor internal error(s)")
    if mon.get("samples_missed"):
        parts.append(f"{mon['samples_missed']} sample ticks missed")
    undelivered = [
        f"{mon[k]} {label}"
        for k, label in (("notify_failed", "failed"), ("notify_dropped", "dropped"))
        if mon.get(k)
    ]
    if undelivered:
        parts.append("alert notifications not delivered: " + ", ".join(undelivered))
    return "; ".join(parts) if parts else "ok"


def _comparison_text(c: dict[str, Any], st: _Style) -> list[str]:
    unit_ms = c["field"] in ("duration_ms", "cpu_ms")

    def fmt(v: float | None, signed: bool = False) -> str:
        if unit_ms:
            return fmt_ms(v, signed)
        if c["field"] == "peak_rss_bytes":
            return fmt_bytes(v, signed)
        return _num(v, "{:+.1f}" if signed else "{:.1f}")

    out = [
        "",
        st("comparison", "1") + f" with {c['baseline_runs']} baseline run(s), metric "
        f"{c['metric']}, noise floor {c['noise_floor']:g}",
    ]
    out.append(
        f"  {'phase':<12} {'baseline':>10} {'rule':<7} {'this run':>10} {'change':>10} "
        f"{'%':>7}  verdict"
    )
    for k, r in c["phases"].items():
        verdict = st("REGRESSED", "1;31") if r["regressed"] else "ok"
        if r["rule"] == "no-baseline":
            verdict = "new"
        delta = r.get("delta")
        change = fmt(delta, signed=True)
        out.append(
            f"  {clean(k, 12):<12} {fmt(r.get('reference')):>10} {r['rule']:<7} "
            f"{fmt(r.get('current')):>10} {change:>10} "
            f"{_num(r.get('delta_pct'), '{:+.0f}%'):>7}  {verdict}"
        )
    for k in c["missing"]:
        out.append(f"  {clean(k, 12):<12} {'':>10} {'':<7} {'-':>10} {'':>10} {'':>7}  missing")
    n = len(c["regressions"])
    out.append(f"  {n} regression(s)" + (": " + ", ".join(c["regressions"]) if n else ""))
    return out


def _runs_table_text(t: dict[str, Any]) -> list[str]:
    runs = t["runs"]
    out = ["", f"run by run (duration; {len(runs)} most recent runs, newest last)"]
    out.append(f"  {'phase':<12} " + " ".join(f"{clean(r[-13:], 13):>13}" for r in runs))
    for k, vals in t["phases"].items():
        out.append(f"  {clean(k, 12):<12} " + " ".join(f"{fmt_ms(v):>13}" for v in vals))
    return out


def phase_table(snap: dict[str, Any], depth: int = 0) -> str:
    """The short per-phase summary the demo prints: status, duration, share, CPU, RSS,
    items and items/s per phase, then the data-quality line."""
    run = snap["run"]
    rows = ordered_rows(snap, depth)
    dur = run.get("duration_ms")
    lines = [
        f"run {clean(run['id'])}  {run.get('status')}  {fmt_ms(dur)}  "
        f"host {clean(run.get('host') or '-')}",
        f"{'phase':<12} {'name':<24} {'status':<7} {'duration':>9} {'share':>6} "
        f"{'cpu%':>6} {'peak rss':>9} {'items':>7} {'items/s':>9} {'w/e':>5}",
    ]
    for p in rows:
        indent = "  " * p.get("depth", 0)
        pct = p.get("share_pct") if p.get("depth", 0) == 0 else None
        share = f"{pct:.0f}%" if pct is not None else ""
        lines.append(
            f"{clean(indent + p['phase'], 12):<12} {clean(_label(p), 24):<24} "
            f"{STATUS_MARK.get(p['status'], p['status']):<7} {_dur(p):>9} "
            f"{share:>6} {_num(p.get('cpu_pct')):>6} {fmt_bytes(p.get('peak_rss_bytes')):>9} "
            f"{p.get('items') or '':>7} {_num(p.get('items_per_s'), '{:.1f}'):>9} "
            f"{p.get('warnings', 0)}/{p.get('errors', 0):<3}"
        )
    for f in snap["flow"]:
        if f["status"] == "pending":
            lines.append(f"{clean(f['id'], 12):<12} {clean(f.get('name'), 24):<24} {'-':<7}")
    res, logs = snap["resources"], snap["logs"]
    lines.append(
        f"peak rss {fmt_bytes(res.get('peak_rss_bytes'))} (tree "
        f"{fmt_bytes(res.get('peak_tree_rss_bytes'))}), {res.get('total', 0)} samples, "
        f"{logs.get('warnings', 0)} warnings, {snap['errors']['count']} errors"
    )
    lines.append("data quality: " + quality_line(snap["quality"], snap["monitor"]))
    err = run.get("error")
    if isinstance(err, dict):
        lines.append(f"error: {clean(err.get('type'), 40)}: {clean(err.get('msg'), 50)}")
    return "\n".join(lines)


def _md(text: Any) -> str:
    """A table cell: pipes escaped, newlines and control characters flattened."""
    s = clean(text).replace("\\", "\\\\").replace("|", "\\|")
    for ch in "<>*_`[]":
        s = s.replace(ch, "\\" + ch)
    return s


def render_markdown(model: dict[str, Any]) -> str:
    """GitHub-flavoured Markdown, for $GITHUB_STEP_SUMMARY and pull-request comments."""
    out = _md_header(model)
    out += _md_phases(model)
    out += _md_errors(model)
    out += _groups_markdown(model.get("error_groups"))
    if model.get("counters"):
        out += ["", f"**Counters:** {_md(_counters(model['counters']))}"]
    out += _md_alerts(model)
    out += _md_history(model)
    out += _md_comparison(model)
    out += _md_runs_table(model)
    out += _suggestions_markdown(model.get("suggestions") or [])
    if model.get("compare") is not None:
        out += _compare_markdown(model["compare"])
    return "\n".join(out) + "\n"


def _md_header(model: Mapping[str, Any]) -> list[str]:
    """The title and the run's one-paragraph summary, its tags and the baseline's."""
    run = model["run"]
    out = [
        f"## atroz_monitor: run `{clean(run['id']).replace('`', '')}` {run['status']}",
        "",
        f"**{_md(run.get('name'))}** on {_md(run.get('host'))}, started "
        f"{_ts(run.get('start'))}, took **{fmt_ms(run.get('duration_ms'))}**. "
        f"Data quality: {_md(quality_line(model['quality'], model['monitor']))}.",
        "",
    ]
    if run.get("tags"):
        out += [f"Tags: {_md(_tag_list(run['tags']))}.", ""]
    if model.get("baseline_tags"):
        out += [
            f"History and baseline: only runs tagged {_md(_tag_list(model['baseline_tags']))}.",
            "",
        ]
    return out


def _md_phases(model: Mapping[str, Any]) -> list[str]:
    """The phase table (pending planned phases last) and the critical path."""
    run = model["run"]
    out: list[str] = []
    out += [
        "| phase | name | status | start | duration | share | cpu avg | peak rss | rss change "
        "| items | items/s | warnings | errors |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    run_ms = run.get("duration_ms") or 0
    for p in model["phases"]:
        ind = "&nbsp;&nbsp;" * p.get("depth", 0)
        share = (
            f"{p['duration_ms'] / run_ms * 100:.0f}%"
            if run_ms
            and p.get("duration_ms") is not None
            and not p.get("depth")
            and not p.get("late")
            else ""
        )
        out.append(
            f"| {ind}{_md(p['phase'])} | {_md(_label(p))} "
            f"| {STATUS_MARK.get(p['status'], p['status'])} "
            f"| {fmt_ms(p.get('offset_ms'))} | {_dur(p)} | {share} "
            f"| {_num(p.get('cpu_pct'), '{:.0f}%')} | {fmt_bytes(p.get('peak_rss_bytes'))} "
            f"| {fmt_bytes(p.get('rss_delta_bytes'), signed=True)} | {p.get('items') or ''} "
            f"| {_num(p.get('items_per_s'), '{:.1f}')} | {p.get('warnings') or ''} "
            f"| {p.get('errors') or ''} |"
        )
    for f in model["flow"]:
        if f["status"] == "pending":
            out.append(f"| {_md(f['id'])} | {_md(f.get('name'))} | pending | | | | | | | | | | |")
    if model["critical_path"]:
        out += [
            "",
            "**Critical path:** "
            + " → ".join(
                f"{_md(c['phase'])} ({fmt_ms(c['duration_ms'])})" for c in model["critical_path"]
            ),
        ]
    return out


def _md_errors(model: Mapping[str, Any]) -> list[str]:
    """Failed phases, then up to 20 error and warning lines."""
    out: list[str] = []
    failed = model["errors"]["failed_phases"]
    if failed or model["errors"]["items"] or model["warnings"]["items"]:
        out += [
            "",
            f"### Errors and warnings ({model['errors']['count']} errors, "
            f"{model['warnings']['count']} warnings)",
            "",
            "| level | phase | message |",
            "|---|---|---|",
        ]
        for f in failed:
            e = f.get("error") or {}
            out.append(
                f"| failed | {_md(f['phase'])} | {_md(e.get('type'))}: {_md(e.get('msg'))} |"
            )
        for g in (model["errors"]["items"] + model["warnings"]["items"])[:20]:
            out.append(f"| {g.get('level')} | {_md(g.get('phase') or '-')} | {_md(g.get('msg'))} |")
    return out


def _md_alerts(model: Mapping[str, Any]) -> list[str]:
    """The alerts table."""
    out: list[str] = []
    if model["alerts"]:
        out += [
            "",
            f"### Alerts ({len(model['alerts'])})",
            "",
            "| severity | state | rule | phase | value | threshold | message |",
            "|---|---|---|---|--:|--:|---|",
        ]
        for a in model["alerts"]:
            out.append(
                f"| {_md(a.get('severity'))} | {_md(a.get('state'))} | {_md(a.get('rule'))} "
                f"| {_md(a.get('phase') or '-')} | {_md(a.get('value'))} "
                f"| {_md(a.get('threshold'))} | {_md(a.get('msg'))} |"
            )
    return out


def _md_history(model: Mapping[str, Any]) -> list[str]:
    """Each top-level key against its history."""
    out: list[str] = []
    if model["history"]:
        out += [
            "",
            "### Against history",
            "",
            "| phase | runs | median | this run | change | trend | anomaly |",
            "|---|--:|--:|--:|--:|---|---|",
        ]
        anomalous = {a["phase"] for a in model["anomalies"]}
        for k, h in model["history"].items():
            out.append(
                f"| {_md(k)} | {h['runs']} | {fmt_ms(h.get('median_ms'))} "
                f"| {fmt_ms(h.get('current_ms'))} | {_num(h.get('delta_pct'), '{:+.0f}%')} "
                f"| {h['trend'].get('direction')} | {'yes' if k in anomalous else ''} |"
            )
    return out


def _md_comparison(model: Mapping[str, Any]) -> list[str]:
    """The ``--baseline`` verdict per key, and the count of regressions."""
    out: list[str] = []
    c = model["comparison"]
    if c is not None:
        out += [
            "",
            f"### Comparison with {c['baseline_runs']} baseline run(s) ({c['metric']})",
            "",
            "| phase | baseline | rule | this run | change | % | verdict |",
            "|---|--:|---|--:|--:|--:|---|",
        ]
        for k, r in c["phases"].items():
            verdict = (
                "**REGRESSED**"
                if r["regressed"]
                else ("new" if r["rule"] == "no-baseline" else "ok")
            )
            out.append(
                f"| {_md(k)} | {_md(_round(r.get('reference')))} | {r['rule']} "
                f"| {_md(_round(r.get('current')))} | {_md(_round(r.get('delta')))} "
                f"| {_num(r.get('delta_pct'), '{:+.1f}%')} | {verdict} |"
            )
        for k in c["missing"]:
            out.append(f"| {_md(k)} | | | | | | missing |")
        out += ["", f"{len(c['regressions'])} regression(s)."]
    return out


def _md_runs_table(model: Mapping[str, Any]) -> list[str]:
    """Several runs without a baseline: each key's duration run by run."""
    out: list[str] = []
    t = model["runs_table"]
    if t is not None:
        out += [
            "",
            "### Run by run (duration)",
            "",
            "| phase | " + " | ".join(_md(r) for r in t["runs"]) + " |",
            "|---|" + "--:|" * len(t["runs"]),
        ]
        for k, vals in t["phases"].items():
            out.append(f"| {_md(k)} | " + " | ".join(fmt_ms(v) for v in vals) + " |")
    return out


def _round(v: Any) -> Any:
    return round(v, 3) if isinstance(v, float) else v


def _evidence_text(ev: Mapping[str, Any]) -> str:
    parts = []
    for k, v in ev.items():
        if isinstance(v, float):
            # first/last/current are in the unit of the rule's metric.
            unit = str(ev.get("metric", "")) if k in ("first", "last", "current") else k
            if unit.endswith("_ms"):
                v = fmt_ms(v)
            elif unit.endswith("_bytes") or unit.endswith("_per_s") and "bytes" in unit:
                v = fmt_bytes(v)
            elif k.endswith("_pct") or k == "pct_per_run":
                v = f"{v:.1f}%"
            else:
                v = f"{v:g}"
        parts.append(f"{k}={v}")
    return ", ".join(parts)


def _suggestions_text(items: Sequence[Mapping[str, Any]], st: _Style) -> list[str]:
    import textwrap

    if not items:
        return []
    out = ["", st("suggestions", "1") + f" ({len(items)})"]
    for s in items:
        out += textwrap.wrap(
            clean(f"{s['rule']}: {s['finding']}"),
            96,
            initial_indent="  ",
            subsequent_indent="    ",
        )
        out += textwrap.wrap(
            clean(s["advice"]), 96, initial_indent="    ", subsequent_indent="    "
        )
        out += textwrap.wrap(
            clean("evidence: " + _evidence_text(s["evidence"])),
            96,
            initial_indent="    ",
            subsequent_indent="      ",
        )
    return out


def suggestion_lines(items: Sequence[Mapping[str, Any]]) -> list[str]:
    """The text report's suggestions section, without colour (the demo prints it)."""
    return _suggestions_text(items, _Style(False))


def _suggestions_markdown(items: Sequence[Mapping[str, Any]]) -> list[str]:
    if not items:
        return []
    out = ["", f"### Suggestions ({len(items)})", ""]
    out += ["| rule | phase | finding | advice | evidence |", "|---|---|---|---|---|"]
    for s in items:
        out.append(
            f"| {_md(s['rule'])} | {_md(s.get('phase') or '-')} | {_md(s['finding'])} "
            f"| {_md(s['advice'])} | {_md(_evidence_text(s['evidence']))} |"
        )
    return out


def _pct(v: float | None) -> str:
    return _num(v, "{:+.0f}%")


def _compare_text(c: Mapping[str, Any], st: _Style, unicode: bool) -> list[str]:
    a, b = c["a"], c["b"]
    t = c["totals"]
    out = [
        "",
        st("compared with run", "1") + f" {clean(b['id'], 40)}  {clean(b.get('name'), 30)}",
        f"  this run {STATUS_MARK.get(a['status'], a['status'])} {fmt_ms(a['duration_ms'])}, "
        f"that run {STATUS_MARK.get(b['status'], b['status'])} {fmt_ms(b['duration_ms'])} "
        f"({_pct(t['duration_pct'])}); peak rss {fmt_bytes(a['peak_rss_bytes'])} vs "
        f"{fmt_bytes(b['peak_rss_bytes'])}",
        f"  {'phase':<12} {'status':<12} {'this':>9} {'that':>9} {'dur':>6} {'cpu':>9} "
        f"{'cpu':>6} {'peak rss':>9} {'rss chg':>9} {'items/s':>8}",
    ]
    for r in c["phases"]:
        x, y = r["a"] or {}, r["b"] or {}
        sa, sb = str(x.get("status") or "-"), str(y.get("status") or "-")
        stat = (
            f"{STATUS_MARK.get(sa, sa)}>{STATUS_MARK.get(sb, sb)}"
            if r["status_changed"] or r["only"]
            else STATUS_MARK.get(sa, sa)
        )
        d = r["delta"]
        p = r["delta_pct"]
        out.append(
            f"  {clean('  ' * r['depth'] + r['key'], 12):<12} {clean(stat, 12):<12} "
            f"{fmt_ms(x.get('duration_ms')):>9} {fmt_ms(y.get('duration_ms')):>9} "
            f"{_pct(p['duration_ms']):>6} {fmt_ms(x.get('cpu_ms')):>9} {_pct(p['cpu_ms']):>6} "
            f"{fmt_bytes(x.get('peak_rss_bytes')):>9} "
            f"{fmt_bytes(d['peak_rss_bytes'], signed=True):>9} {_pct(p['items_per_s']):>8}"
        )
    axis = c["axis_ms"] or 0.0
    w = 38
    out.append("")
    out.append(f"  timelines on one axis ({fmt_ms(axis)}): this run, then that run")
    bars: dict[str, list[str]] = {}
    for side in ("a", "b"):
        for bar in c["gantt"][side]:
            if bar["depth"] == 0:
                cells = bars.setdefault(bar["phase"], [" " * w, " " * w])
                i = 0 if side == "a" else 1
                cells[i] = _merge_bars(
                    cells[i], _bar(bar["offset_ms"], bar["duration_ms"], axis, w, unicode)
                )
    for key, (ba, bb) in bars.items():
        out.append(f"  {clean(key, 12):<12} |{ba}| |{bb}|")
    return out


def _merge_bars(old: str, new: str) -> str:
    """Two bars of one key (a retry, a repeat) in one row of the text timeline."""
    return "".join(
        n if n != " " else o for o, n in zip(old, new[: len(old)].ljust(len(old)), strict=True)
    )


def _compare_markdown(c: Mapping[str, Any]) -> list[str]:
    a, b = c["a"], c["b"]
    out = [
        "",
        f"### Compared with run `{clean(b['id']).replace('`', '')}`",
        "",
        f"This run {a['status']} in {fmt_ms(a['duration_ms'])}, that run {b['status']} in "
        f"{fmt_ms(b['duration_ms'])} ({_pct(c['totals']['duration_pct'])}).",
        "",
        "| phase | status (this / that) | duration this | that | change | cpu this | that "
        "| change | peak rss this | that | items/s this | that | change |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in c["phases"]:
        x, y = r["a"] or {}, r["b"] or {}
        p = r["delta_pct"]
        ind = "&nbsp;&nbsp;" * r["depth"]
        out.append(
            f"| {ind}{_md(r['key'])} | {x.get('status') or '-'} / {y.get('status') or '-'}"
            f"{' **changed**' if r['status_changed'] else ''} "
            f"| {fmt_ms(x.get('duration_ms'))} | {fmt_ms(y.get('duration_ms'))} "
            f"| {_pct(p['duration_ms'])} | {fmt_ms(x.get('cpu_ms'))} | {fmt_ms(y.get('cpu_ms'))} "
            f"| {_pct(p['cpu_ms'])} | {fmt_bytes(x.get('peak_rss_bytes'))} "
            f"| {fmt_bytes(y.get('peak_rss_bytes'))} | {_num(x.get('items_per_s'), '{:.1f}')} "
            f"| {_num(y.get('items_per_s'), '{:.1f}')} | {_pct(p['items_per_s'])} |"
        )
    return out
