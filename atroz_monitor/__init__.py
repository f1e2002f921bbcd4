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
from .monitor import (
    ENV_LOG,
    ENV_RUN,
    Monitor,
    Phase,
    Run,
    configure,
    current_phase,
    default_monitor,
    phase,
    shutdown,
)

__version__ = "0.1.0"

__all__ = [
    "ENV_LOG",
    "ENV_RUN",
    "SCHEMA_VERSION",
    "Monitor",
    "Phase",
    "Run",
    "__version__",
    "configure",
    "current_phase",
    "default_monitor",
    "phase",
    "shutdown",
]
