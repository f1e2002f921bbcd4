"""Capture of ``logging`` records (WARNING and above) and ``warnings.warn`` as log events.

The host's own output is left as it was: the ``warnings.showwarning`` we install calls the
one it replaced, and our logging handler, when it is the only handler a record meets, hands
the record to ``logging.lastResort`` exactly as logging would have without it.
"""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .monitor import Monitor, Run

_lock = threading.Lock()
_monitors: list[Monitor] = []
_handler: Any = None
_prev_showwarning: Any = None
_guard = threading.local()  # no recursion when recording itself warns or logs


def _target() -> Any:
    from .monitor import open_phase

    h = open_phase()
    if h is not None:
        return h.run, h
    with _lock:
        mon = _monitors[-1] if _monitors else None
    return (mon.main, None) if mon is not None else (None, None)


def _record(level: str, msg: str, source: str, **extra: Any) -> None:
    if getattr(_guard, "busy", False):
        return
    _guard.busy = True
    try:
        run, h = _target()
        if run is not None and not run.ended:
            run.log(level, msg, h, source, **extra)
    except Exception:
        pass
    finally:
        _guard.busy = False


def _showwarning(
    message: Any, category: Any, filename: Any, lineno: Any, *a: Any, **k: Any
) -> None:
    try:
        text = f"{getattr(category, '__name__', 'Warning')}: {message}"
        _record("warning", text, "warnings", file=str(filename), line=lineno)
    finally:
        if _prev_showwarning is not None:
            _prev_showwarning(message, category, filename, lineno, *a, **k)


def _make_handler() -> Any:
    import logging

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            try:
                msg = record.getMessage()
            except Exception:
                msg = str(record.msg)
            level = "error" if record.levelno >= logging.ERROR else "warning"
            extra: dict[str, Any] = {"logger": record.name}
            if record.exc_info and record.exc_info[0] is not None:
                extra["exc_type"] = record.exc_info[0].__name__
            _record(level, msg, "logging", **extra)
            last = logging.lastResort
            if last is not None and record.levelno >= last.level and not _other_handlers(record):
                last.handle(record)

    def _other_handlers(record: logging.LogRecord) -> bool:
        c: Any = logging.getLogger(record.name)
        while c:
            if any(h is not _handler for h in c.handlers):
                return True
            if not c.propagate:
                break
            c = c.parent
        return False

    return Handler(logging.WARNING)


class LogCapture:
    """Component (see component.py): captures logging and warnings into the monitor's runs
    from the start of the first run this process owns to the end of its main run."""

    closes_after_alerts = False

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        self.installed = False

    def start(self, run: Run) -> None:
        if not self.installed:
            install(self.monitor)
            self.installed = True

    def close(self) -> None:
        if self.installed:
            uninstall(self.monitor)
            self.installed = False

    def health(self) -> dict[str, Any]:
        return {}

    def after_fork(self) -> None:
        pass  # the child records into the runs it joins: the capture stays


def install(monitor: Monitor) -> None:
    global _handler, _prev_showwarning
    import logging
    import warnings

    with _lock:
        _monitors.append(monitor)
        if len(_monitors) > 1:
            return
        _handler = _make_handler()
        logging.getLogger().addHandler(_handler)
        _prev_showwarning = warnings.showwarning
        warnings.showwarning = _showwarning


def uninstall(monitor: Monitor) -> None:
    global _handler, _prev_showwarning
    with _lock:
        if monitor in _monitors:
            _monitors.remove(monitor)
        if _monitors:
            return
        logging = sys.modules.get("logging")
        if logging is not None and _handler is not None:
            logging.getLogger().removeHandler(_handler)
        _handler = None
        if "warnings" in sys.modules:  # install() imported it; uninstall never imports it
            import warnings

            if warnings.showwarning is _showwarning:
                warnings.showwarning = _prev_showwarning
        _prev_showwarning = None
