"""The event model: kinds, schema version, and the JSON encoding of one log line.

Every observation is one JSON object on one ``\\n``-terminated line (``docs/FORMAT.md``).
The hot kinds (phase start/end) are hand-formatted by the recorder with the C string
escaper below, about 2.5x cheaper than ``json.dumps``; everything else goes through
:func:`dumps`, which never fails: objects JSON cannot encode fall back to ``repr`` and
non-finite floats become ``null`` (JSON has no NaN).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

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
)

# Phase statuses. "running" and "interrupted" are derived by readers, never written.
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
RUNNING = "running"
INTERRUPTED = "interrupted"
PHASE_STATUSES = (COMPLETED, FAILED, CANCELLED)

# ensure_ascii output: the whole line is ASCII, so lone surrogates, newlines, quotes and
# any control character are escaped and a line can never be split or made unparseable.
quote: Any = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]

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


def _finite(obj: Any) -> Any:
    """Replace non-finite floats (anywhere in the structure) by None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


_encoder = json.JSONEncoder(
    ensure_ascii=True, separators=(",", ":"), default=_default, allow_nan=False
)


def dumps(obj: Any) -> str:
    """Encode one value as compact ASCII JSON; never raises."""
    try:
        return _encoder.encode(obj)
    except ValueError:
        # NaN/inf somewhere, or a circular reference.
        try:
            return _encoder.encode(_finite(obj))
        except ValueError:
            return quote(_default(obj))
    except Exception:
        return quote(_default(obj))


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


def line(fields: dict[str, Any]) -> bytes:
    """Encode a whole event as one ``\\n``-terminated line."""
    return (dumps(fields) + "\n").encode("ascii")
