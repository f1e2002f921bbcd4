"""The process-wide default monitor behind ``atroz_monitor.phase(...)``: set by
``configure()`` or built from ``ATROZ_MONITOR_LOG`` at the first phase, a no-op handle (and
one warning) when neither is there, ended by ``shutdown()`` or at interpreter exit."""

from __future__ import annotations

import _thread
import os
import sys

from .. import events as E
from .monitor import (
    ENV_LOG,
    ENV_RUN,
    Monitor,
    Phase,
    check_key,
    innermost_monitor,
    open_phase,
    valid_run_id,
)

TYPE_CHECKING = False  # not typing's: importing typing would double the import time
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any, Literal, TypeVar

    F = TypeVar("F", bound=Callable[..., Any])

_default: Monitor | None = None
_default_lock = _thread.allocate_lock()
_env_failed: tuple[str | None, str | None] | None = None  # the environment that failed


def configure(path: str | os.PathLike[str] | None = None, **kwargs: Any) -> Monitor:
    """Set the process-wide monitor used by ``atroz_monitor.phase(...)``.

    Without a path, ``ATROZ_MONITOR_LOG`` names it (and ``ATROZ_MONITOR_RUN`` joins a run
    another process owns). The run starts at the first phase and ends at interpreter exit,
    or at ``atroz_monitor.shutdown()``.
    """
    global _default
    with _default_lock:
        old = _default
        _default = _from_env(path, kwargs)
    if old is not None and old is not _default:
        old.close()
    return _default


def _from_env(path: Any, kwargs: dict[str, Any]) -> Monitor:
    env_log = os.environ.get(ENV_LOG)
    env_run = os.environ.get(ENV_RUN)
    if path is None:
        if not env_log:
            raise ValueError(f"no path given and {ENV_LOG} is not set")
        if env_run:
            if not valid_run_id(env_run):
                raise ValueError(f"{ENV_RUN} is not a valid run id: {env_run!r}")
            kwargs.setdefault("sample_interval", None)  # the owner samples the tree
            return Monitor(env_log, run_id=env_run, _join=True, **kwargs)
        path = env_log
    return Monitor(path, **kwargs)


def default_monitor() -> Monitor | None:
    """The monitor ``atroz_monitor.phase`` records into: the innermost ``with Monitor``,
    else the configured one, else one built from ``ATROZ_MONITOR_LOG``; None without any."""
    global _default, _env_failed
    active = innermost_monitor()
    if active is not None:
        return active
    if _default is not None:
        return _default
    log = os.environ.get(ENV_LOG)
    if not log:
        return None
    env = (log, os.environ.get(ENV_RUN))
    if env == _env_failed:  # said once; tried again if the environment changes
        return None
    with _default_lock:
        if _default is None:
            try:
                _default = _from_env(None, {})
            except Exception as exc:
                _env_failed = env
                sys.stderr.write(f"atroz_monitor: cannot record ({exc}); phases are not logged\n")
                return None
    return _default


class _NullPhase:
    """What ``atroz_monitor.phase`` gives with no monitor configured: records nothing."""

    key = name = ""
    span = parent = status = None
    items = warnings = errors = 0
    total = None

    def __enter__(self) -> _NullPhase:
        return self

    def __exit__(self, *a: Any) -> Literal[False]:
        return False

    async def __aenter__(self) -> _NullPhase:
        return self

    async def __aexit__(self, *a: Any) -> bool:
        return False

    def __call__(self, fn: F) -> F:
        return fn

    def add_items(self, n: int = 1) -> None: ...
    def set_total(self, n: int) -> None: ...
    def skip(self, reason: str | None = None) -> None: ...
    def cached(self, reason: str | None = None) -> None: ...
    def artifact(self, path: Any, **meta: Any) -> None: ...
    def metric(self, name: str, value: float, **meta: Any) -> None: ...
    def count(self, name: str, n: float = 1) -> None: ...
    def warning(self, msg: str) -> None: ...
    def error(self, msg: str) -> None: ...


_warned_unconfigured = False


def phase(
    key: str,
    name: str | None = None,
    *,
    meta: Mapping[str, Any] | None = None,
    parent: Phase | str | None = None,
    attempt: int | None = None,
    detail: str | None = None,
) -> Phase | _NullPhase:
    """A phase of the process-wide default run (see ``configure``)."""
    global _warned_unconfigured
    check_key(key)
    mon = default_monitor()
    if mon is None:
        if not _warned_unconfigured:
            _warned_unconfigured = True
            sys.stderr.write(
                f"atroz_monitor: no monitor configured (call atroz_monitor.configure(path) or "
                f"set {ENV_LOG}); phases are not recorded\n"
            )
        return _NullPhase()
    h = open_phase()
    # Inside a phase of a concurrent run (a job), a sub-phase belongs to that job's run.
    run = h.run if h is not None else mon.main
    return run.phase(key, name, meta=meta, parent=parent, attempt=attempt, detail=detail)


def shutdown(status: str = E.COMPLETED) -> None:
    """End the default monitor's runs (also done at interpreter exit)."""
    global _default
    with _default_lock:
        m, _default = _default, None
    if m is not None:
        m.close(status)
