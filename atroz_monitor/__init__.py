"""atroz_monitor: granular, per-phase observability for Python pipelines.

    from atroz_monitor import Monitor
    with Monitor("atroz-runs", plan=[("P00", "Document Assembly")]) as mon:
        with mon.phase("P00") as p:
            p.add_items(50)

or, process-wide: ``import atroz_monitor as monitor; with monitor.phase("P00"): ...`` after
``monitor.configure(path)`` or with ``ATROZ_MONITOR_LOG`` set. Standard library only.
"""

from __future__ import annotations

from .events import SCHEMA_VERSION
from .record.default import configure, default_monitor, phase, shutdown
from .record.monitor import ENV_LOG, ENV_RUN, Monitor, Phase, Run, current_phase

# typing is not imported at runtime: it would double the package's import time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .surface.runs import PhaseView, Runs, RunView, load

__version__ = "0.1.0"

__all__ = [
    "ENV_LOG",
    "ENV_RUN",
    "SCHEMA_VERSION",
    "Monitor",
    "Phase",
    "PhaseView",
    "Run",
    "RunView",
    "Runs",
    "__version__",
    "configure",
    "current_phase",
    "default_monitor",
    "load",
    "phase",
    "shutdown",
]

# The read API (``load``) pulls in the report and analysis modules: imported on first use, so
# a pipeline that only records does not pay for them at startup (PEP 562).
_READ_API = ("PhaseView", "RunView", "Runs", "load")


def __getattr__(name: str) -> Any:
    if name in _READ_API:
        from .surface import runs

        return getattr(runs, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
