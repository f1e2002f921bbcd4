"""Error groups: errors and warnings folded by a fingerprint, within a run and across runs.

Forty "failed to parse doc N" lines are one group of forty. The fingerprint is the level,
the exception type, the message with what varies masked (numbers, ids, hex, paths, quoted
values), and the innermost frame of the pipeline's own code (not the standard library,
site-packages or the monitor itself), so one bug is one group however its data differ, and
two different exceptions never share one.

Pure: ``Groups`` is the bounded per-run accumulator the reducer feeds (``state._log`` and
failed phases), ``error_groups(state, run_id)`` the view every surface reads (report,
page, API), with "new in this run", "seen in N of the last M runs" and "gone".
"""

from __future__ import annotations

import hashlib
import heapq
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["MAX_GROUPS", "Groups", "error_groups", "fingerprint", "frame_of", "mask"]

MAX_GROUPS = 500  # per run; occurrences of further fingerprints are counted in ``other``
MAX_PHASES = 20  # phase keys listed per group
RECENT_RUNS = 10  # earlier runs compared with ("seen in N of the last M runs")

# One pass over the message: at each position the first alternative that matches wins, so
# the order matters: quoted values and paths first (they may hold numbers), then ids and
# hex (they hold digits), then numbers. Each alternative is anchored (a token start, a word
# boundary), so no long word makes it backtrack quadratically.
_MASK = re.compile(
    r"(?P<sq>'[^'\n]*')"
    r'|(?P<dq>"[^"\n]*")'
    r"|(?P<path>(?<!\S)[^\s/\\'\"]*[/\\]\S*)"  # any word with a slash: paths, URLs
    r"|(?P<hex>\b0[xX][0-9a-fA-F]+\b"
    r"|\b(?=[0-9a-fA-F]*[0-9])(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]+\b)"
    r"|(?P<num>(?<![\w.])[-+]?\d+(?:[.,_]\d+)*(?:[eE][-+]?\d+)?(?![\w.]))"
    # Words mixing letters and digits are ids ("doc42", "u_17", "P01"): the same bug
    # hitting another record.
    r"|(?P<id>\b(?=[A-Za-z_]*\d)(?=\w*[A-Za-z])\w+\b)"
    r"|(?P<d>\d+)"
)
_PLACEHOLDER = {
    "sq": "'<q>'", "dq": '"<q>"', "path": "<path>", "hex": "<hex>", "num": "<n>",
    "id": "<id>", "d": "<n>",
}  # fmt: skip
_UUID = re.compile(
    r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"
)
_DIGITS = re.compile(r"[0-9]+")
# Masks by the message's bytes with every ASCII digit read as 0: a repeated error costs an
# encode, a C-level translate and a lookup, not the masking. The mask is a function of that
# key alone (digits change no match of the masks but the digits', and those give the same
# placeholder whatever the digit), so the memo never makes a result depend on which
# message came first. Bounded: cleared when full.
_memo: dict[bytes, str] = {}
MEMO_SIZE = 4096
_ZERO_DIGITS = bytes.maketrans(b"123456789", b"000000000")


def _placeholder(m: re.Match[str]) -> str:
    return _PLACEHOLDER[m.lastgroup or "d"]


_VARIES = re.compile(r"[0-9'\"/\\]")  # what any mask needs: a digit, a quote, a slash
_FRAME = re.compile(r'File "([^"\n]+)", line (\d+), in ([^\n]+)')
_NOT_OWN = re.compile(
    r"[/\\](?:site|dist)-packages[/\\]|[/\\]lib[/\\](?:python|pypy)[0-9.]*[/\\]"
    r"|[/\\]atroz_monitor[/\\]|^<"
)
_TYPE = re.compile(r"^([A-Z][A-Za-z0-9_]*(?:Error|Warning|Exception|Exit|Interrupt)): ")


def _base(path: str) -> str:
    return re.split(r"[/\\]", path)[-1]


def mask(msg: str) -> str:
    """The message with what varies from one occurrence to the next replaced by
    placeholders (``'<q>'``, ``<path>``, ``<id>``, ``<hex>``, ``<n>``)."""
    text = msg[:2000]
    key = text.encode("utf-8", "surrogatepass").translate(_ZERO_DIGITS)
    t = _memo.get(key)
    if t is None:
        t = _mask(text)
        if len(_memo) >= MEMO_SIZE:
            _memo.clear()
        _memo[key] = t
    return t


def _mask(text: str) -> str:
    if _VARIES.search(text) is None:
        return " ".join(text.split())  # nothing to mask
    if "-" in text:
        text = _UUID.sub("<id>", text)  # before the digits go: a UUID's shape varies
    return " ".join(_MASK.sub(_placeholder, _DIGITS.sub("0", text)).split())


def frame_of(tb: Any) -> str | None:
    """The innermost frame of the pipeline's own code in a formatted traceback, as
    ``file.py:function`` (no line number: an edit elsewhere in the file keeps the group)."""
    if not isinstance(tb, str):
        return None
    best = None
    for path, _line, func in _FRAME.findall(tb[-8000:]):
        if not _NOT_OWN.search(path):
            best = f"{_base(path)}:{func.strip()}"
    return best


def fingerprint(level: str, etype: str | None, template: str, frame: str | None) -> str:
    """A short stable id of a group (12 hex digits of a SHA-1 of its parts)."""
    key = "\x1f".join((level, etype or "", template, frame or ""))
    return hashlib.sha1(key.encode("utf-8", "replace")).hexdigest()[:12]


class Groups:
    """The groups of one run, bounded (``MAX_GROUPS``; further ones counted in ``other``)."""

    __slots__ = ("groups", "other", "_keys")

    def __init__(self) -> None:
        self.groups: dict[str, dict[str, Any]] = {}  # fingerprint -> group
        self.other = 0
        # (level, type, template, frame) -> group: the hash is taken once per group.
        self._keys: dict[tuple[str, str | None, str, str | None], dict[str, Any]] = {}

    def add(
        self,
        level: str,
        etype: str | None,
        msg: str,
        frame: str | None,
        phase: Any,
        ts: float | None,
        span: Any = None,
    ) -> None:
        template = mask(msg)
        key = (level, etype, template, frame)
        g = self._keys.get(key)
        if g is None:
            if len(self.groups) >= MAX_GROUPS:
                self.other += 1
                return
            fp = fingerprint(level, etype, template, frame)
            g = self.groups[fp] = self._keys[key] = {
                "fingerprint": fp,
                "level": level,
                "type": etype,
                "template": template,
                "frame": frame,
                "count": 0,
                "first_ts": ts,
                "last_ts": ts,
                "phases": [],
                "example": {"msg": msg[:1000], "phase": phase, "span": span, "ts": ts},
            }
        g["count"] += 1
        if ts is not None:
            if g["first_ts"] is None or ts < g["first_ts"]:
                g["first_ts"] = ts
            if g["last_ts"] is None or ts > g["last_ts"]:
                g["last_ts"] = ts
        phases = g["phases"]
        if type(phase) is str and phase not in phases and len(phases) < MAX_PHASES:
            phases.append(phase)

    def add_log(self, ev: Mapping[str, Any], level: str, ts: float | None) -> None:
        """A ``log`` event (the reducer has checked its level)."""
        msg = ev.get("msg")
        msg = msg if type(msg) is str else str(msg)
        etype = ev.get("exc_type")
        etype = etype if type(etype) is str else None
        frame = None
        if ev.get("source") == "warnings":
            m = _TYPE.match(msg)  # "UserWarning: ..." as the warnings capture writes it
            if m:
                etype, msg = m.group(1), msg[m.end() :]
            f, line = ev.get("file"), ev.get("line")
            if type(f) is str and not _NOT_OWN.search(f):
                frame = f"{_base(f)}:{line}"
        self.add(level, etype, msg, frame, ev.get("phase"), ts, ev.get("span"))

    def add_error(
        self, error: Any, phase: Any, ts: float | None, span: Any = None, once: bool = False
    ) -> None:
        """The exception that ended a phase or the run (``{"type", "msg", "tb"}``).
        ``once``: not if its group has an occurrence already (the run's error is usually
        the one that failed its last phase)."""
        if not isinstance(error, dict):
            return
        etype = error.get("type")
        etype = etype if type(etype) is str else None
        msg = error.get("msg")
        msg = msg if type(msg) is str else ""
        frame = frame_of(error.get("tb"))
        if once and ("error", etype, mask(msg), frame) in self._keys:
            return
        self.add("error", etype, msg, frame, phase, ts, span)


def _start(r: Any) -> float:
    return r.start if r.start is not None else (r.first_ts or 0.0)


def error_groups(state: Any, run_id: str, recent: int = RECENT_RUNS) -> dict[str, Any]:
    """The error groups of ``run_id``, most frequent first, each with ``new`` (in none of
    the last ``recent`` earlier runs), ``seen_runs`` (in how many of them) and
    ``recent_runs``; plus ``gone``: groups of the previous run that this one no longer has.
    Costs the same with 10,000 earlier runs as with ten (only the last ``recent`` are read).
    """
    r = state.runs[run_id]
    limit = _start(r)
    # The last ``recent`` runs before this one, oldest first: a bounded heap, not a sort
    # of the whole history.
    earlier = heapq.nlargest(
        recent,
        (x for x in state.runs.values() if x.id != run_id and _start(x) <= limit),
        key=_start,
    )[::-1]
    seen: dict[str, int] = {}
    for x in earlier:
        g = getattr(x, "errgroups", None)
        if g is not None:
            for fp in g.groups:
                seen[fp] = seen.get(fp, 0) + 1
    own: Groups | None = getattr(r, "errgroups", None)
    groups = []
    for g in own.groups.values() if own is not None else ():
        n = seen.get(g["fingerprint"], 0)
        groups.append(
            {
                **g,
                "phases": list(g["phases"]),
                "example": dict(g["example"]),
                "new": n == 0,
                "seen_runs": n,
                "recent_runs": len(earlier),
            }  # fmt: skip
        )
    groups.sort(key=lambda g: (-g["count"], g["first_ts"] or 0.0, g["fingerprint"]))
    gone = []
    prev = getattr(earlier[-1], "errgroups", None) if earlier else None
    if prev is not None:
        mine = own.groups if own is not None else {}
        gone = [
            {k: g[k] for k in ("fingerprint", "level", "type", "template", "frame", "count")}
            for fp, g in prev.groups.items()
            if fp not in mine
        ]
        gone.sort(key=lambda g: -g["count"])
    return {
        "run": run_id,
        "groups": groups,
        "total": sum(g["count"] for g in groups),
        "other": own.other if own is not None else 0,
        "recent_runs": len(earlier),
        "previous_run": earlier[-1].id if earlier else None,
        "gone": gone,
    }
