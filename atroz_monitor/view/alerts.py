"""Alert rules and their evaluation: thresholds, severities, de-duplication, rate limits.

A rule has a type, a scope (all phases or one phase key; the run/process for resource
rules) and thresholds per severity (``info``, ``warning``, ``critical``): an alert takes the
highest severity whose threshold the value passes. One ``Evaluator`` judges one run; it is
fed phase ends and samples, live (the monitor feeds it as it records) or replayed (from
reducer state, for logs recorded without these rules), and returns ``alert`` events:
``raised`` once per episode, ``resolved`` when the condition clears. At most one alert is
open per rule and scope, a scope re-raised within ``cooldown_s`` of its last raise is not
raised again, and no more than ``max_per_minute`` alerts are raised per minute.
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing import TypeAlias

SEVERITIES = ("info", "warning", "critical")
_RANK = {s: i for i, s in enumerate(SEVERITIES)}


@dataclass(frozen=True)
class RuleType:
    """What a rule type measures: its unit, direction, parameters and defaults."""

    unit: str
    below: bool = False  # True: the value is bad when it falls below the threshold
    params: Mapping[str, float] = field(default_factory=dict)
    phase_scoped: bool = True


TYPES: dict[str, RuleType] = {
    # Evaluated when a phase ends.
    "phase_failed": RuleType("failed"),
    "phase_duration": RuleType("ms"),
    "phase_duration_p95": RuleType("x p95", params={"min_runs": 5}),
    "phase_errors": RuleType("errors"),
    "phase_warnings": RuleType("warnings"),
    "throughput": RuleType("items/s", below=True, params={"min_elapsed_s": 10.0}),
    # Evaluated on each sample (the sampler thread, off the host's hot path).
    "rss": RuleType("MB", phase_scoped=False),
    "rss_pct": RuleType("% of memory", phase_scoped=False),
    "rss_growth": RuleType(
        "MB", phase_scoped=False, params={"window_s": 120.0, "rising_pct": 90.0}
    ),
    "cpu_saturation": RuleType("% of machine", phase_scoped=False, params={"for_s": 60.0}),
    "stall": RuleType("s", params={"cpu_floor_pct": 5.0}),
}

_COMMON_KEYS = {"id", "type", "phase", "cooldown_s", *SEVERITIES}


@dataclass(frozen=True)
class Rule:
    """One alert rule. ``thresholds`` maps severity to the value that raises it."""

    type: str
    thresholds: Mapping[str, float]
    phase: str | None = None  # None: every phase (phase rules) or the whole run
    id: str = ""
    params: Mapping[str, float] = field(default_factory=dict)
    cooldown_s: float = 60.0
    if TYPE_CHECKING:  # set by __post_init__; declared for mypy only, so fields() is unchanged
        _levels: tuple[tuple[float, str], ...] = field(init=False)
        _below: bool = field(init=False)
        _gate: float | None = field(init=False)

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(self, "id", self.type + (f"@{self.phase}" if self.phase else ""))
        # Highest severity first: the first threshold passed is the answer (evaluated on
        # every sample, so no per-call lookups or sorting).
        levels = sorted(((t, sv) for sv, t in self.thresholds.items()),
                        key=lambda x: -_RANK[x[1]])  # fmt: skip
        object.__setattr__(self, "_levels", tuple(levels))
        below = TYPES[self.type].below
        object.__setattr__(self, "_below", below)
        # The value a reading must pass for any severity (the lowest threshold, or the
        # highest for "below" rules): most samples fail it, and then nothing else runs.
        thr = [t for t, _ in levels]
        gate = (max(thr) if below else min(thr)) if thr else None
        object.__setattr__(self, "_gate", gate)

    def passes(self, value: float) -> bool:
        """Whether ``value`` passes any threshold (a cheap test before ``severity``)."""
        gate = self._gate
        if gate is None:
            return False
        return value < gate if self._below else value > gate

    def severity(self, value: float) -> tuple[str, float] | None:
        """The highest severity whose threshold ``value`` passes, with that threshold."""
        if self._below:
            for thr, sev in self._levels:
                if value < thr:
                    return sev, thr
        else:
            for thr, sev in self._levels:
                if value > thr:
                    return sev, thr
        return None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "type": self.type, **self.thresholds}
        if self.phase:
            d["phase"] = self.phase
        d.update(self.params)
        d["cooldown_s"] = self.cooldown_s
        return d


def rule(
    type: str, *, phase: str | None = None, id: str = "", cooldown_s: float = 60.0, **kw: float
) -> Rule:
    """Build and validate a rule: ``rule("phase_duration", phase="P03", warning=60000)``."""
    return build_rule(
        {"type": type, "phase": phase, "id": id, "cooldown_s": cooldown_s, **kw},
        f"rule {id or type!r}",
    )


def build_rule(entry: Mapping[str, Any], where: str) -> Rule:
    """One rule from its table/object; ``where`` names it in the ValueError a bad one raises."""
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where}: a rule must be a table/object, not {type(entry).__name__}")
    t = entry.get("type")
    if t not in TYPES:
        raise ValueError(f"{where}: unknown rule type {t!r} (one of {', '.join(sorted(TYPES))})")
    spec = TYPES[t]
    allowed = _COMMON_KEYS | set(spec.params)
    for k in entry:
        if k not in allowed:
            raise ValueError(
                f"{where}: unknown key {k!r} for a {t} rule (allowed: {', '.join(sorted(allowed))})"
            )
    phase = entry.get("phase")
    if phase is not None and (not isinstance(phase, str) or not phase):
        raise ValueError(f"{where}: 'phase' must be a phase key string")
    if phase is not None and not spec.phase_scoped:
        raise ValueError(f"{where}: a {t} rule is about the whole run and takes no 'phase'")
    thresholds: dict[str, float] = {}
    for sev in SEVERITIES:
        if sev in entry and entry[sev] is not None:
            thresholds[sev] = _number(entry[sev], where, sev)
    if t == "phase_failed" and not thresholds:
        thresholds = {"critical": 0.0}
    if not thresholds:
        raise ValueError(f"{where}: give at least one threshold ({', '.join(SEVERITIES)})")
    params = dict(spec.params)
    for k in spec.params:
        if k in entry:
            params[k] = _number(entry[k], where, k)
    cooldown = _number(entry.get("cooldown_s", 60.0), where, "cooldown_s")
    rid = entry.get("id") or ""
    if not isinstance(rid, str):
        raise ValueError(f"{where}: 'id' must be a string")
    return Rule(t, thresholds, phase, rid, params, cooldown)


def _number(v: Any, where: str, key: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"{where}: {key!r} must be a number, not {v!r}")
    if v < 0:
        raise ValueError(f"{where}: {key!r} must not be negative ({v})")
    return float(v)


def default_rules() -> list[Rule]:
    """The rules that are on unless ``alert_rules=[]`` (documented in docs/ALERTS.md)."""
    return [
        rule("phase_failed", critical=0),
        rule("phase_duration_p95", warning=1.5, critical=3.0),
        rule("phase_errors", warning=0),
        rule("rss_pct", warning=70, critical=90),
        rule("rss_growth", warning=256),
        rule("cpu_saturation", warning=95),
        rule("stall", warning=120),
    ]


def parse_rules(data: Any, source: str = "rules") -> list[Rule]:
    """Rules from parsed TOML/JSON: ``{"rules": [ {...}, ... ]}`` or a bare list."""
    entries = data.get("rules") if isinstance(data, Mapping) else data
    if isinstance(data, Mapping):
        extra = [k for k in data if k != "rules"]
        if extra:
            raise ValueError(f"{source}: unknown top-level key {extra[0]!r} (expected 'rules')")
    if not isinstance(entries, list):
        raise ValueError(f"{source}: expected a list of rules under 'rules'")
    rules = []
    ids: set[str] = set()
    for i, e in enumerate(entries):
        name = e.get("id") if isinstance(e, Mapping) else None
        r = build_rule(e, f"{source}: rules[{i}]" + (f" ({name!r})" if name else ""))
        if r.id in ids:
            raise ValueError(f"{source}: rules[{i}]: duplicate rule id {r.id!r}")
        ids.add(r.id)
        rules.append(r)
    return rules


def load_rules(path: str | os.PathLike[str]) -> list[Rule]:
    """Rules from ``alerts.toml`` (Python 3.11+) or ``alerts.json``; errors name the line
    (syntax) or the rule and key (meaning)."""
    p = os.fspath(path)
    try:
        with open(p, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise ValueError(f"{p}: cannot read alert rules: {exc.strerror}") from None
    if p.endswith(".json"):
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise ValueError(f"{p}: not valid JSON: {exc}") from None
    elif sys.version_info >= (3, 11):  # tomllib is standard from 3.11
        import tomllib

        try:
            data = tomllib.loads(raw.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{p}: not valid TOML: {exc}") from None
    else:
        raise ValueError(f"{p}: TOML needs Python 3.11+; use alerts.json")
    return parse_rules(data, p)


# -- evaluation ---------------------------------------------------------------------------


@dataclass(slots=True)
class Active:
    """A running phase as resource rules see it at a sample."""

    span: str
    key: str
    start: float  # wall seconds
    items: int = 0
    last_activity: float = 0.0  # wall seconds of the last progress, sub-phase, metric or log


class Evaluator:
    """Judges one run against rules; returns ``alert`` event fields (without envelope)."""

    Active: TypeAlias = Active  # the class, for the sampler: no import on every tick

    def __init__(
        self,
        rules: Iterable[Rule],
        *,
        history: Mapping[str, Sequence[float]] | None = None,
        mem_total: int | None = None,
        ncpu: float | None = None,  # a CPU quota may be fractional
        max_per_minute: int = 30,
    ) -> None:
        self.rules = list(rules)
        self.mem_total = mem_total
        self.ncpu = ncpu or os.cpu_count() or 1
        self.max_per_minute = max_per_minute
        self._lock = threading.Lock()
        self.open: dict[tuple[str, str], dict[str, Any]] = {}
        self.last_raise: dict[tuple[str, str], float] = {}
        self.episodes: dict[tuple[str, str], int] = {}
        self.all: dict[str, dict[str, Any]] = {}
        self._recent: deque[float] = deque()
        self.suppressed = 0  # raises held back by the rate limit or the cooldown
        self._p95: dict[str, float] = {}
        self._runs: dict[str, int] = {}
        self._phase_rules = [
            r for r in self.rules if TYPES[r.type].phase_scoped and r.type not in ("stall",)
        ]
        self._sample_rules = [
            r
            for r in self.rules
            if not TYPES[r.type].phase_scoped or r.type in ("stall", "throughput")
        ]
        # Only stall and throughput rules look at the running phases.
        self.wants_active = any(r.type in ("stall", "throughput") for r in self._sample_rules)
        # RSS points in the growth window, each with 1 if it rose from the one before; the
        # running sum keeps a tick O(1) however many samples the window holds.
        self._rss: deque[tuple[float, int, int]] = deque()
        self._rises = 0
        self._cpu_since: float | None = None
        # Fast gate for the host's hot path: with no error/warning/duration rule that a
        # completed phase could trip, a completed phase costs one comparison.
        self.gate_errors = any(r.type == "phase_errors" for r in self._phase_rules)
        self.gate_warnings = any(r.type == "phase_warnings" for r in self._phase_rules)
        self.gate_always = False
        self.set_history(history or {})

    def set_history(self, history: Mapping[str, Sequence[float]]) -> None:
        """Per-key durations (ms) of earlier completed runs, for the p95 rule."""
        from . import analysis

        p95 = {k: analysis.percentile(v, 95) for k, v in history.items() if v}
        runs = {k: len(v) for k, v in history.items() if v}
        with self._lock:
            self._p95, self._runs = p95, runs
            self.gate_always = any(
                r.type in ("phase_duration", "throughput")
                or (r.type == "phase_duration_p95" and p95)
                for r in self._phase_rules
            )

    # -- bookkeeping --------------------------------------------------------------------
    def _matches(self, r: Rule, key: str) -> bool:
        return r.phase is None or r.phase == key

    def _raise(
        self,
        r: Rule,
        scope: str,
        ts: float,
        sev: str,
        value: float,
        thr: float,
        msg: str | Callable[[], str],
        phase: str | None = None,
        span: str | None = None,
    ) -> dict[str, Any] | None:
        k = (r.id, scope)
        cur = self.open.get(k)
        if cur is not None:
            if _RANK[sev] <= _RANK[cur["severity"]]:
                cur["value"] = value  # the episode goes on; no new event
                return None
            # Escalation within an episode: the same alert, re-raised at the higher severity.
            text = msg() if callable(msg) else msg
            cur.update(severity=sev, value=value, threshold=thr, msg=text, state="raised")
            cur.pop("cleared", None)  # an escalation is active again
            return dict(cur)
        last = self.last_raise.get(k)
        if last is not None and ts - last < r.cooldown_s:
            self.suppressed += 1
            return None
        while self._recent and ts - self._recent[0] > 60.0:
            self._recent.popleft()
        if len(self._recent) >= self.max_per_minute:
            self.suppressed += 1
            return None
        self._recent.append(ts)
        self.last_raise[k] = ts
        n = self.episodes[k] = self.episodes.get(k, 0) + 1
        a: dict[str, Any] = {
            "alert": f"{r.id}:{scope}:{n}",
            "rule": r.id,
            "type": r.type,
            "severity": sev,
            "state": "raised",
            "scope": scope,
            "phase": phase,
            "span": span,
            "value": _round(value),
            "threshold": thr,
            "unit": TYPES[r.type].unit,
            "msg": msg() if callable(msg) else msg,
        }
        self.open[k] = a
        self.all[a["alert"]] = a
        return dict(a)

    def _resolve(self, r: Rule, scope: str, value: float | None = None) -> dict[str, Any] | None:
        a = self.open.pop((r.id, scope), None)
        if a is None:
            return None
        a["state"] = "resolved"
        if value is not None:
            a["value"] = _round(value)
        return dict(a)

    def finish(self) -> list[dict[str, Any]]:
        """At the end of the run: resolve alerts about phases that are over (stalls)."""
        out = []
        with self._lock:
            for rid, scope in list(self.open):
                if scope.startswith("span:"):
                    r = next((x for x in self.rules if x.id == rid), None)
                    a = self._resolve(r, scope) if r is not None else None
                    if a is not None:
                        out.append(a)
        return out

    def acknowledge(self, alert_id: str) -> dict[str, Any] | None:
        with self._lock:
            a = self.all.get(alert_id)
            if a is None:
                return None
            a["acknowledged"] = True
            return {**a, "state": "acknowledged"}

    def active(self) -> list[dict[str, Any]]:
        """The open alerts, without those cleared (``ack --clear``)."""
        with self._lock:
            return [dict(a) for a in self.open.values() if not a.get("cleared")]

    def external_ack(self, alert_id: str, by: Any, ts: Any, note: Any) -> bool:
        """An ``alert_ack`` another process appended to the run's log; False if unknown."""
        with self._lock:
            a = self.all.get(alert_id)
            if a is None:
                return False
            a.update(acknowledged=True, ack_by=by, ack_ts=ts, ack_note=note)
            if a.get("state") == "raised":
                a["state"] = "acknowledged"
            return True

    def clear(self, alert_ids: Iterable[Any], by: Any, ts: Any) -> int:
        """An ``alerts_cleared``: those alerts leave ``active()`` (until re-raised)."""
        n = 0
        with self._lock:
            for aid in alert_ids:
                a = self.all.get(aid) if isinstance(aid, str) else None
                if a is not None:
                    a.update(cleared=True, cleared_by=by, cleared_ts=ts)
                    n += 1
        return n

    # -- phase ends ---------------------------------------------------------------------
    def phase_end(
        self,
        ts: float,
        span: str,
        key: str,
        status: str,
        duration_ms: float,
        errors: int = 0,
        warnings: int = 0,
        items: int = 0,
    ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        secs = duration_ms / 1000
        with self._lock:
            for r in self._phase_rules:
                if not self._matches(r, key):
                    continue
                t = r.type
                if t == "phase_failed":
                    value, msg = (1.0 if status == "failed" else 0.0), f"phase {key} failed"
                elif t == "phase_duration":
                    value, msg = duration_ms, f"phase {key} took {secs:.2f} s"
                elif t == "phase_duration_p95":
                    p95 = self._p95.get(key)
                    n = self._runs.get(key, 0)
                    if status != "completed" or not p95 or n < r.params["min_runs"]:
                        continue
                    value = duration_ms / p95
                    msg = (
                        f"phase {key} took {secs:.2f} s, {value:.1f}x its p95 "
                        f"({p95 / 1000:.2f} s over {n} runs)"
                    )
                elif t == "phase_errors":
                    value, msg = float(errors), f"phase {key} logged {errors} error(s)"
                elif t == "phase_warnings":
                    value, msg = float(warnings), f"phase {key} logged {warnings} warning(s)"
                elif t == "throughput":
                    if status != "completed" or secs < r.params["min_elapsed_s"] or not items:
                        continue
                    value = items / secs
                    msg = f"phase {key} processed {value:.1f} items/s"
                else:
                    continue
                self._level(out, r, f"phase:{key}", ts, value, msg, key, span)
        return out

    # -- samples ------------------------------------------------------------------------
    def sample(
        self, ts: float, s: Mapping[str, Any], active: Sequence[Active] = ()
    ) -> list[dict[str, Any]]:
        # Runs on every sampler tick. A reading that passes no threshold while no alert of
        # its rule is open costs one comparison: no message, no scope string, no call (the
        # rules that walk the running phases, stall and throughput, pay one call a reading).
        out: list[dict[str, Any]] = []
        rss = s.get("rss_bytes")
        tree = (rss or 0) + (s.get("children_rss_bytes") or 0) if rss is not None else None
        # A container's memory limit binds before the host's memory does.
        mem_total = s.get("mem_limit_bytes") or s.get("mem_total_bytes") or self.mem_total
        cpu = s.get("cpu_pct")
        tree_cpu = None if cpu is None else cpu + (s.get("children_cpu_pct") or 0.0)
        with self._lock:
            if tree is not None:
                pts = self._rss
                rose = 1 if pts and tree >= pts[-1][1] else 0
                pts.append((ts, tree, rose))
                self._rises += rose
            opened = self.open
            for r in self._sample_rules:
                t = r.type
                if t == "rss_pct":
                    if tree is None or not mem_total:
                        continue
                    pct = tree / mem_total * 100
                    if r.passes(pct):
                        self._level(
                            out,
                            r,
                            "run",
                            ts,
                            pct,
                            f"process tree RSS {tree / 2**20:.0f} MB is {pct:.0f}% of memory",
                        )
                    elif opened:
                        self._settle(out, r, "run", pct)
                elif t == "rss":
                    if tree is None:
                        continue
                    mb = tree / 2**20
                    if r.passes(mb):
                        self._level(out, r, "run", ts, mb, f"process tree RSS {mb:.0f} MB")
                    elif opened:
                        self._settle(out, r, "run", mb)
                elif t == "rss_growth":
                    self._growth(out, r, ts)
                elif t == "cpu_saturation":
                    if tree_cpu is None:
                        continue
                    pct = tree_cpu / self.ncpu
                    if not r.passes(pct):
                        self._cpu_since = None
                        if opened:
                            self._settle(out, r, "run", pct)
                        continue
                    if self._cpu_since is None:
                        self._cpu_since = ts
                    lasted = ts - self._cpu_since
                    if lasted < r.params["for_s"]:
                        continue
                    self._level(
                        out,
                        r,
                        "run",
                        ts,
                        pct,
                        f"process tree at {pct:.0f}% of the machine for {lasted:.0f} s",
                    )
                elif t == "stall":
                    self._sample_stall(out, r, ts, tree_cpu, active)
                elif t == "throughput":
                    self._sample_throughput(out, r, ts, active)
        return out

    def _sample_stall(
        self,
        out: list[dict[str, Any]],
        r: Rule,
        ts: float,
        tree_cpu: float | None,
        active: Sequence[Active],
    ) -> None:
        """The ``stall`` rule on one reading: each running phase idle while CPU is low."""
        opened = self.open
        low = tree_cpu is not None and tree_cpu < r.params["cpu_floor_pct"]
        for a in active:
            if not self._matches(r, a.key):
                continue
            idle = ts - max(a.last_activity, a.start)
            value = idle if low else 0.0
            if r.passes(value):
                self._level(
                    out,
                    r,
                    f"span:{a.span}",
                    ts,
                    value,
                    f"phase {a.key} made no progress for {idle:.1f} s "
                    f"with CPU at {tree_cpu or 0:.0f}%",
                    a.key,
                    a.span,
                )
            elif opened:
                self._settle(out, r, f"span:{a.span}", value)
        # A stalled phase that ended is no longer stalled.
        if opened:
            live = {f"span:{a.span}" for a in active}
            for rid, scope in list(opened):
                if rid == r.id and scope not in live:
                    res = self._resolve(r, scope)
                    if res is not None:
                        out.append(res)

    def _sample_throughput(
        self, out: list[dict[str, Any]], r: Rule, ts: float, active: Sequence[Active]
    ) -> None:
        """The ``throughput`` rule on one reading: each running phase's items/s so far."""
        opened = self.open
        for a in active:
            el = ts - a.start
            if not self._matches(r, a.key):
                continue
            if el < r.params["min_elapsed_s"]:
                continue
            rate = a.items / el if el > 0 else 0.0
            if r.passes(rate):
                self._level(
                    out,
                    r,
                    f"phase:{a.key}",
                    ts,
                    rate,
                    f"phase {a.key} processing {rate:.1f} items/s",
                    a.key,
                    a.span,
                )
            elif opened:
                self._settle(out, r, f"phase:{a.key}", rate)

    def _settle(self, out: list[dict[str, Any]], r: Rule, scope: str, value: float) -> None:
        """The reading passes no threshold: resolve the rule's open alert in ``scope``."""
        a = self._resolve(r, scope, value)
        if a is not None:
            out.append(a)

    def _level(
        self,
        out: list[dict[str, Any]],
        r: Rule,
        scope: str,
        ts: float,
        value: float,
        msg: str | Callable[[], str],
        phase: str | None = None,
        span: str | None = None,
    ) -> None:
        hit = r.severity(value)
        a = (
            self._raise(r, scope, ts, hit[0], value, hit[1], msg, phase, span)
            if hit is not None
            else self._resolve(r, scope, value)
        )
        if a is not None:
            out.append(a)

    def _growth(self, out: list[dict[str, Any]], r: Rule, ts: float) -> None:
        window = r.params["window_s"]
        pts = self._rss
        while pts and ts - pts[0][0] > window:
            self._rises -= pts.popleft()[2]
        if len(pts) < 3 or ts - pts[0][0] < window * 0.9:
            return  # not a full window yet
        rises = self._rises - pts[0][2]  # pairs inside the window only
        rising = rises / (len(pts) - 1) * 100 >= r.params["rising_pct"]
        grown = (pts[-1][1] - pts[0][1]) / 2**20
        value = grown if rising else 0.0
        if r.passes(value):
            self._level(
                out,
                r,
                "run",
                ts,
                value,
                f"process tree RSS grew {grown:.0f} MB in {window:.0f} s and kept rising",
            )
        elif self.open:
            self._settle(out, r, "run", value)


def _round(v: float) -> float:
    return round(v, 3) if isinstance(v, float) else v


# -- replay -------------------------------------------------------------------------------


def alert_id(a: Mapping[str, Any]) -> str:
    """An alert's identity across the log and a replay (``alert``; ``id`` in older logs)."""
    return str(a.get("alert") or a.get("id"))


def open_summary(alerts: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Open alerts (raised or acknowledged, not cleared): ``open`` and one count per
    severity. The page's alert card, the runs list and the report read this one count."""
    out = {"open": 0, **{sev: 0 for sev in SEVERITIES}}
    for a in alerts:
        if a.get("state") in ("raised", "acknowledged") and not a.get("cleared"):
            out["open"] += 1
            sev = a.get("severity")
            if sev in _RANK:
                out[str(sev)] += 1
    return out


def with_alerts(snap: dict[str, Any], alerts: list[dict[str, Any]]) -> None:
    """Set a snapshot's ``alerts`` and the ``alerts_open`` summary of them together."""
    snap["alerts"] = alerts
    snap["alerts_open"] = open_summary(alerts)


def merge_alerts(
    recorded: Iterable[Mapping[str, Any]], replayed: Iterable[Mapping[str, Any]] | None
) -> list[dict[str, Any]]:
    """The one merge of a run's recorded alerts with those ``--alerts`` rules raised on
    replay (``serve`` and ``report`` both call it, so they show one state per alert).

    For an alert both hold, the recorded one wins: the log carries its acknowledgement and
    clearing, which a replay cannot know. Oldest raise first.
    """
    merged: dict[str, dict[str, Any]] = {}
    for a in replayed or ():
        merged[alert_id(a)] = dict(a)
    for a in recorded:
        merged[alert_id(a)] = dict(a)
    return sorted(merged.values(), key=lambda a: a.get("raised_ts") or a.get("ts") or 0)


def evaluate_replay(
    state: Any,
    run_id: str,
    rules: Iterable[Rule],
    history: Sequence[Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Judge a recorded run with ``rules``: its phase ends and samples fed in time order to
    an ``Evaluator``; returns the alerts as the state shows them (latest state of each).
    ``history``: the earlier runs' summaries (a catalog's) for the p95 rule; None: the
    state's other runs."""
    from . import history as H

    r = state.runs[run_id]
    durations = H.durations_by_key(state if history is None else history, run_id)
    keys = {rec.phase for rec in r.phases.values()} | set(r.keys)
    hist: dict[str, list[float]] = {k: durations.get(k, []) for k in keys}
    ncpu = r.info.get("ncpu")
    lim = r.info.get("limits")
    eff = lim.get("cpu_effective") if isinstance(lim, dict) else None
    if isinstance(eff, (int, float)) and eff > 0:
        ncpu = eff  # a CPU quota binds before the host's cores do
    ev = Evaluator(
        rules, history=hist, ncpu=ncpu if isinstance(ncpu, (int, float)) and ncpu > 0 else None
    )
    items: list[tuple[float, int, Any]] = []
    for rec in r.phases.values():
        if rec.end is not None and rec.status in ("completed", "failed", "cancelled"):
            items.append((rec.end, 1, rec))
    for s in r.samples.snapshot():
        ts = s.get("ts")
        if isinstance(ts, (int, float)):
            items.append((float(ts), 0, s))
    items.sort(key=lambda t: (t[0], t[1]))
    # Activity per span for stall detection: sub-phase starts and attributed logs.
    activity: dict[str, list[float]] = {}
    for rec in r.phases.values():
        if rec.parent and rec.start is not None:
            activity.setdefault(rec.parent, []).append(rec.start)
    for lg in r.logs.snapshot():
        if isinstance(lg.get("span"), str) and isinstance(lg.get("ts"), (int, float)):
            activity.setdefault(lg["span"], []).append(lg["ts"])
    alerts: dict[str, dict[str, Any]] = {}
    for ts, kind, obj in items:
        if kind == 1:
            got = ev.phase_end(
                ts,
                obj.span,
                obj.phase,
                obj.status,
                obj.duration_ms or 0.0,
                obj.errors,
                obj.warnings,
                obj.items,
            )
        else:
            act = []
            for span in obj.get("spans") or []:
                rec = r.phases.get(span)
                if rec is None or rec.start is None:
                    continue
                last = max((t for t in activity.get(span, ()) if t <= ts), default=rec.start)
                act.append(Active(span, rec.phase, rec.start, 0, last))
            got = ev.sample(ts, obj, act)
        for a in got:
            prev = alerts.get(a["alert"], {})
            merged = {**prev, **a}
            if a["state"] == "raised":
                merged.setdefault("raised_ts", ts)
            else:
                merged["resolved_ts"] = ts
            alerts[a["alert"]] = merged
    return sorted(alerts.values(), key=lambda a: a.get("raised_ts") or 0)
