"""Text views of a run snapshot (the terminal summary; the ``report`` command builds on it)."""

from __future__ import annotations

from typing import Any

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


def fmt_ms(ms: float | None) -> str:
    if ms is None:
        return "-"
    if ms < 1:
        return f"{ms * 1000:.0f}us"
    if ms < 1000:
        return f"{ms:.1f}ms"
    s = ms / 1000
    if s < 60:
        return f"{s:.2f}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{int(m)}m{s:04.1f}s"
    h, m = divmod(m, 60)
    return f"{int(h)}h{int(m):02d}m"


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    sign = "-" if n < 0 else ""
    n = abs(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{sign}{n:.0f}{unit}" if unit == "B" else f"{sign}{n:.1f}{unit}"
        n /= 1024
    return f"{sign}{n:.1f}TiB"  # pragma: no cover


def _cut(text: Any, width: int) -> str:
    s = "" if text is None else str(text)
    s = "".join(ch if ch.isprintable() else "?" for ch in s)
    return s if len(s) <= width else s[: width - 1] + "~"


def phase_table(snap: dict[str, Any], depth: int = 0) -> str:
    """The per-phase table of a run, in plan order then start order, fitting 100 columns."""
    run = snap["run"]
    rows = [p for p in snap["phases"] if p.get("depth", 0) <= depth]
    plan_ids = [p.get("id") for p in run.get("plan") or []]
    order = {k: i for i, k in enumerate(plan_ids)}
    top = [p for p in rows if p.get("depth", 0) == 0]
    top.sort(key=lambda p: (order.get(p["phase"], len(order)), p.get("start") or 0))
    by_parent: dict[str, list[dict[str, Any]]] = {}
    for p in rows:
        if p.get("depth", 0) > 0 and p.get("parent"):
            by_parent.setdefault(p["parent"], []).append(p)
    ordered: list[dict[str, Any]] = []

    def walk(p: dict[str, Any]) -> None:
        ordered.append(p)
        for c in by_parent.get(p["span"], []):
            walk(c)

    for p in top:
        walk(p)
    seen = {p["phase"] for p in top}
    pending = [k for k in plan_ids if k not in seen]

    dur = run.get("duration_ms")
    lines = [
        f"run {run['id']}  {run.get('status')}  {fmt_ms(dur)}  host {run.get('host') or '-'}",
        f"{'phase':<12} {'name':<24} {'status':<7} {'duration':>9} {'share':>6} "
        f"{'cpu%':>6} {'peak rss':>9} {'items':>7} {'items/s':>9} {'w/e':>5}",
    ]
    for p in ordered:
        indent = "  " * p.get("depth", 0)
        share = (
            f"{p['duration_ms'] / dur * 100:.0f}%"
            if dur and p.get("duration_ms") is not None and p.get("depth", 0) == 0
            else ""
        )
        cpu = "" if p.get("cpu_pct") is None else f"{p['cpu_pct']:.0f}"
        ips = "" if p.get("items_per_s") is None else f"{p['items_per_s']:.1f}"
        we = f"{p.get('warnings', 0)}/{p.get('errors', 0)}"
        lines.append(
            f"{_cut(indent + p['phase'], 12):<12} {_cut(p.get('name'), 24):<24} "
            f"{STATUS_MARK.get(p['status'], p['status']):<7} {fmt_ms(p.get('duration_ms')):>9} "
            f"{share:>6} {cpu:>6} {fmt_bytes(p.get('peak_rss_bytes')):>9} "
            f"{p.get('items') or '':>7} {ips:>9} {we:>5}"
        )
    names = {p.get("id"): p.get("name") for p in run.get("plan") or []}
    for k in pending:
        lines.append(f"{_cut(k, 12):<12} {_cut(names.get(k), 24):<24} {'-':<7}")
    res = snap.get("resources", {})
    logs = snap.get("logs", {})
    q = snap.get("quality", {})
    lines.append(
        f"peak rss {fmt_bytes(res.get('peak_rss_bytes'))} (tree "
        f"{fmt_bytes(res.get('peak_tree_rss_bytes'))}), {res.get('total', 0)} samples, "
        f"{logs.get('warnings', 0)} warnings, {logs.get('errors', 0)} errors"
    )
    problems = [
        f"{k.replace('_', ' ')} {q[k]}"
        for k in ("torn", "corrupt", "seq_gaps", "samples_dropped")
        if q.get(k)
    ]
    mon = snap.get("monitor", {})
    if mon.get("write_errors"):
        problems.append(f"write errors {mon['write_errors']}")
    if mon.get("internal_errors"):
        problems.append(f"internal errors {mon['internal_errors']}")
    lines.append("data quality: " + (", ".join(problems) if problems else "ok"))
    err = run.get("error")
    if isinstance(err, dict):
        lines.append(f"error: {_cut(err.get('type'), 40)}: {_cut(err.get('msg'), 50)}")
    return "\n".join(lines)
