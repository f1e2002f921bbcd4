"""The parts a ``Monitor`` runs beside its runs, behind one small protocol.

A monitor holds its components in a list and calls them in order: ``start(run)`` when a run
this process owns is announced, ``close()`` when the monitor's main run ends, ``health()``
for the counters a run's ``run_end`` and snapshot carry, ``after_fork()`` in a forked child.
The sampler (``sampler.Sampling``), the log capture (``capture.LogCapture``) and the
notifier (``notify.Notifier``) implement it in their own modules; the two adapters here
make components of the OTLP pusher and of the per-run alert evaluator.

Imported when the first ``Monitor`` is built, never by ``import atroz_monitor``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .monitor import Monitor, Run
    from .otlp import Pusher


class Component(Protocol):
    """What a monitor asks of each of its parts. None of the methods raises: a failure is
    counted in the part's ``health()`` or with ``Monitor.note_internal_error``."""

    #: False: closed as the main run ends, before its last alerts are written (the sampler's
    #: final reading, the log capture). True: closed after them, so what they send is in
    #: ``run_end``'s counters (the notifier's bounded wait, the OTLP flush).
    closes_after_alerts: bool

    def start(self, run: Run) -> None:
        """A run this process owns was announced (the main run or a job's)."""

    def close(self) -> None:
        """The main run is ending: stop threads, flush, release descriptors."""

    def health(self) -> dict[str, Any]:
        """Counters for the run's ``monitor`` health (flat, JSON-ready, distinct keys)."""
        return {}

    def after_fork(self) -> None:
        """In a forked child: forget what belongs to the parent (threads, descriptors)."""


class OtlpPush:
    """Component: pushes the monitor's runs to an OTLP/HTTP endpoint from the main run's
    start (``otlp.Pusher``'s thread) and flushes before ``run_end``."""

    closes_after_alerts = True

    def __init__(self, monitor: Monitor, endpoint: str) -> None:
        self.monitor = monitor
        self.endpoint = endpoint  # already checked by otlp.check_endpoint
        self.pusher: Pusher | None = None

    def start(self, run: Run) -> None:
        if run is self.monitor.main and self.pusher is None:
            from .otlp import Pusher

            self.pusher = Pusher(self.monitor, self.endpoint)

    def close(self) -> None:
        if self.pusher is not None:
            self.pusher.close()  # kept: its counters stay in health()

    def health(self) -> dict[str, Any]:
        return {} if self.pusher is None else self.pusher.health()

    def after_fork(self) -> None:
        self.pusher = None  # its thread stayed in the parent, which pushes the child's spans


class Alerting:
    """Component: gives each run this process owns an alert evaluator for the monitor's
    rules (with the history the p95 rule compares with) and the watch that brings it the
    acknowledgements other processes append. Each run closes its own watch as it ends."""

    closes_after_alerts = False

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor

    def start(self, run: Run) -> None:
        mon = self.monitor
        if not mon.alert_rules or run.evaluator is not None:
            return
        import os

        from ..probe import cgroup
        from ..view.alerts import Evaluator
        from .ack import AckWatch

        ev = Evaluator(mon.alert_rules, ncpu=cgroup.cpu_count(mon.limits, os.cpu_count()))
        if any(r.type == "phase_duration_p95" for r in mon.alert_rules):
            # The catalog's tail: a few ms, the same with 10,000 earlier runs as with none,
            # so no thread (one per run outlived its run before).
            from ..view.history import durations_by_key

            ev.set_history(durations_by_key(mon.history()))
        run.attach_alerting(ev, AckWatch(run))

    def close(self) -> None:
        pass

    def health(self) -> dict[str, Any]:
        return {}

    def after_fork(self) -> None:
        pass
