"""The event model: kinds, schema version, and the JSON encoding of one log line.

Every observation is one JSON object on one ``\\n``-terminated line (``docs/FORMAT.md``).
The hot kinds (phase start/end) are hand-formatted by the recorder with the C string
escaper below, about 2.5x cheaper than ``json.dumps``; everything else goes through
:func:`dumps`, which never fails: objects JSON cannot encode fall back to ``repr`` and
non-finite floats become ``null`` (JSON has no NaN).
"""

from __future__ import annotations

import math
import os

TYPE_CHECKING = False  # not typing's: importing typing would double the import time
if TYPE_CHECKING:
    from json import JSONEncoder
    from typing import Any

try:  # the C escaper, without importing the json package (import time matters here)
    from _json import encode_basestring_ascii as _quote
except ImportError:  # pragma: no cover - other interpreters
    from json.encoder import encode_basestring_ascii as _quote
quote = _quote  # assigned, not imported as: mypy --strict then sees it exported to sinks/monitor

SCHEMA_VERSION = 1

RUN_START = "run_start"
RUN_END = "run_end"
PROCESS_START = "process_start"
PROCESS_END = "process_end"
PHASE_START = "phase_start"
PHASE_END = "phase_end"
PROGRESS = "progress"
SAMPLE = "sample"
LOG = "log"
ARTIFACT = "artifact"
METRIC = "metric"
ALERT = "alert"
COUNT = "count"  # an increment of a counter (p.count)
ALERT_ACK = "alert_ack"  # an acknowledgement appended by any process (the ack command)
ALERTS_CLEARED = "alerts_cleared"  # acknowledged alerts hidden from the active list

KINDS = (
    RUN_START,
    RUN_END,
    PROCESS_START,
    PROCESS_END,
    PHASE_START,
    PHASE_END,
    PROGRESS,
    SAMPLE,
    LOG,
    ARTIFACT,
    METRIC,
    ALERT,
    "resumed",
    "aggregate",
    COUNT,
    ALERT_ACK,
    ALERTS_CLEARED,
)

# Phase statuses. "running" and "interrupted" are derived by readers, never written.
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
RUNNING = "running"
INTERRUPTED = "interrupted"
SKIPPED = "skipped"
CACHED = "cached"
PHASE_STATUSES = (COMPLETED, FAILED, CANCELLED, SKIPPED, CACHED)
DONE_STATUSES = PHASE_STATUSES  # a phase in one of these is over
RESUMED = "resumed"
AGGREGATE = "aggregate"

# A phase's CPU average needs a phase longer than the coarsest clock its CPU time may come
# from (one tick of USER_HZ: /proc and rusage count in those): a few microseconds of CPU
# over a few microseconds of wall time is noise ("133%"), so readers show none.
try:
    CPU_AVG_MIN_MS = 1000.0 / max(1, os.sysconf("SC_CLK_TCK"))
except (AttributeError, ValueError, OSError):
    CPU_AVG_MIN_MS = 10.0


def cpu_avg_pct(cpu_ms: float | None, duration_ms: float | None) -> float | None:
    """A phase's CPU average (100 = one core), None when unknown or shorter than a tick."""
    if cpu_ms is None or not duration_ms or duration_ms < CPU_AVG_MIN_MS:
        return None
    return round(cpu_ms / duration_ms * 100.0, 1)


def items_rate(items: float | None, duration_ms: float | None) -> float | None:
    """Items per second over a duration (2 decimals): every surface's ``items_per_s``."""
    return round(items / (duration_ms / 1000.0), 2) if items and duration_ms else None


def phase_errors(logged: int, status: Any) -> int:
    """A phase's errors: the error log events attributed to it, plus its exception when it
    failed (raised there or in a sub-phase; the run's count has each exception once)."""
    return logged + (1 if status == FAILED else 0)


# ``quote`` (above) gives ensure_ascii output: the whole line is ASCII, so lone surrogates,
# newlines, quotes and any control character are escaped and a line can never be split.

TRACEBACK_LIMIT = 8_000  # characters kept of a formatted traceback
MESSAGE_LIMIT = 4_000  # characters kept of a log message


def _default(obj: Any) -> Any:
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, os.PathLike):
        try:
            return os.fspath(obj)
        except Exception:  # a hostile __fspath__: fall through to repr
            pass
    try:
        return repr(obj)
    except Exception:
        return f"<unrepresentable {type(obj).__name__}>"


def _clean(obj: Any, path: set[int], depth: int) -> Any:
    """A JSON-safe copy: non-finite floats -> None, cycles and deep nesting -> a string."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    if depth > 64:
        return _default(obj)
    if isinstance(obj, (dict, list, tuple, set, frozenset)):
        if id(obj) in path:
            return "<cycle>"
        path.add(id(obj))
        try:
            if isinstance(obj, dict):
                return {str(k): _clean(v, path, depth + 1) for k, v in obj.items()}
            return [_clean(v, path, depth + 1) for v in obj]
        finally:
            path.discard(id(obj))
    return _clean(_default(obj), path, depth + 1)


_encoders: list[JSONEncoder] = []


def _encoder() -> JSONEncoder:
    """The JSON encoder, built on first use: ``import atroz_monitor`` stays cheap."""
    if not _encoders:
        import json

        _encoders.append(
            json.JSONEncoder(
                ensure_ascii=True, separators=(",", ":"), default=_default, allow_nan=False
            )
        )
    return _encoders[0]


def json_safe(obj: Any) -> Any:
    """A copy of ``obj`` that any JSON encoder takes with ``allow_nan=False``: non-finite
    floats become None, cycles and unknown objects strings."""
    return _clean(obj, set(), 0)


def dumps(obj: Any) -> str:
    """Encode one value as compact ASCII JSON; never raises, always valid JSON."""
    try:
        return _encoder().encode(obj)
    except Exception:
        # NaN/inf, a cycle, a hostile __repr__, keys JSON cannot take: clean a copy.
        try:
            return _encoder().encode(_clean(obj, set(), 0))
        except Exception:
            return quote(_default(obj))


def members(fields: dict[str, Any]) -> str:
    """Encode a dict's items as JSON object members with a leading comma each, value by
    value, so one bad value cannot spoil the others (or the line)."""
    try:
        body = _encoder().encode(fields)
        return "," + body[1:-1] if len(body) > 2 else ""
    except Exception:
        return "".join(f",{quote(str(k))}:{dumps(v)}" for k, v in fields.items())


def number(value: Any) -> str:
    """Encode a metric value: int and finite float as JSON numbers, anything else as null."""
    if type(value) is int:
        return str(value)
    try:
        f = float(value)
    except (TypeError, ValueError, OverflowError):
        return "null"
    return repr(f) if math.isfinite(f) else "null"


def clip(text: str, limit: int) -> str:
    """Bound user text so one event stays one reasonably sized line."""
    if len(text) <= limit:
        return text
    return text[: limit - 20] + f"... [{len(text) - limit + 20} chars cut]"
