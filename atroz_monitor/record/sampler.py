"""The sampling thread: one reading of the process tree every ``interval`` seconds.

Each tick reads /proc through kept file descriptors (``procfs.TreeSampler``), publishes the
latest RSS and children's CPU for phase boundaries to use (so ``phase()`` itself never reads
/proc), raises the peak RSS of every open phase, and writes one ``sample`` event to each
live run this process owns. Without /proc, CPU comes from ``os.times`` and RSS is absent.
"""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .monitor import Monitor, Run


class Sampling:
    """Component (see component.py): one ``Sampler`` thread, from the start of the first
    run this process owns to the end of the monitor's main run."""

    closes_after_alerts = False

    def __init__(self, monitor: Monitor, interval: float, proc: str = "/proc") -> None:
        self.monitor = monitor
        self.interval = interval
        self.proc = proc
        self.running: Sampler | None = None
        self.done: Sampler | None = None  # the stopped sampler, for its final counters

    def start(self, run: Run) -> None:
        if self.running is None:
            s = Sampler(self.monitor, self.interval, self.proc)
            s.start()
            self.running = s

    def close(self) -> None:
        s = self.running
        if s is not None:
            s.stop()  # one final sample, so short runs have at least one
            self.running = None
            self.done = s

    def health(self) -> dict[str, Any]:
        s = self.running or self.done
        return {} if s is None else s.health()

    def after_fork(self) -> None:
        self.running = None  # threads do not survive fork; the parent samples the tree

    def children_rss_peak(self) -> int | None:
        """The highest RSS of the process's descendants (summed) seen so far."""
        s = self.running or self.done
        return None if s is None else s.peak_children_rss


class Sampler:
    """The sampling thread and its readers (``start``, ``stop``, ``health``)."""

    def __init__(self, monitor: Monitor, interval: float, proc: str = "/proc") -> None:
        from ..probe.procfs import RusageSampler, TreeSampler

        self.monitor = monitor
        self.interval = interval
        from ..probe.cgroup import cpu_count

        # Rates are capped at what the tree may use: the cgroup quota, else the cores.
        ncpu = cpu_count(dict(monitor.limits), os.cpu_count())
        tree: Any = TreeSampler(os.getpid(), proc, max_cpus=ncpu)
        tree.skip_own_thread = True  # read on our own thread, which never forks
        if not tree.available:
            tree.close()
            tree = RusageSampler(max_cpus=ncpu)
        self._tree = tree
        self.source = "procfs" if isinstance(tree, TreeSampler) else "rusage"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        from ..probe.cgroup import OomWatch

        self.mem_limit = monitor.limits.get("memory_max_bytes")
        try:
            self._oom: Any = OomWatch(proc=proc)
        except Exception:
            self._oom = None
        self.oom_kills = 0
        self.samples = 0
        self.errors = 0
        self.missed = 0
        self.last_error: str | None = None
        self.peak_children_rss: int | None = None  # highest children_rss_bytes seen

    def start(self) -> None:
        self._tick()  # a first reading at once: phases can carry RSS from the start
        t = threading.Thread(target=self._loop, name="atroz-sampler", daemon=True)
        self._thread = t
        t.start()

    def _loop(self) -> None:
        interval = self.interval
        deadline = time.monotonic()
        while True:
            deadline += interval
            timeout = deadline - time.monotonic()
            if timeout < -2 * interval:
                # Far behind (a starved thread, a suspended process): skip the lost ticks
                # instead of bursting to catch up, and count them. A tick delayed by
                # scheduling jitter (up to two intervals) runs at once: rates are taken over
                # at least 0.1 s (procfs), so such a catch-up tick merges into the window
                # before it instead of dividing a clock step by a fraction of a millisecond.
                skipped = int(-timeout // interval) - 1
                self.missed += skipped
                deadline += skipped * interval
                timeout = deadline - time.monotonic()
            if self._stop.wait(max(timeout, 0.0)):
                return
            self._tick()

    def _tick(self) -> None:
        mon = self.monitor
        t_read = time.perf_counter_ns()
        try:
            reading = self._tree.read()
        except Exception as exc:  # never let the thread die: count and go on
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            return
        self.samples += 1
        if self.source == "procfs" and "cpu_s" not in reading:
            # The process's own /proc files could not be read this tick: a gap, counted.
            self.errors += 1
            self.last_error = "the process's /proc files were unreadable"
        lim = self.mem_limit
        if lim is not None:
            total = reading.get("mem_total_bytes")
            reading["mem_limit_bytes"] = lim if total is None else min(lim, total)
        oom = self._oom
        new_ooms = 0
        if oom is not None:
            try:
                new_ooms = oom.poll()
            except Exception:
                new_ooms = 0
        rss = reading.get("rss_bytes")
        tree = self._tree
        mon.publish_reading(rss, (tree.reaped_s, tree.tree_s, tree.direct))
        crss = reading.get("children_rss_bytes")
        if type(crss) is int and (self.peak_children_rss is None or crss > self.peak_children_rss):
            self.peak_children_rss = crss
        for run in mon.owned_live_runs():
            # Only the phases open before the reading began: one that started during it
            # (after a free, say) must not take a figure older than its own start.
            active = run.open_phases(t_read)
            if rss is not None:
                for h in active:
                    if h.peak_rss is None or rss > h.peak_rss:
                        h.peak_rss = rss
            # Two decimals are plenty for percentages and seconds, and keep lines short.
            fields = {k: round(v, 2) if type(v) is float else v for k, v in reading.items()}
            fields["spans"] = [h.span for h in active]
            run.emit("sample", fields)
            if new_ooms:
                run.note_oom_kills(new_ooms)
                self.oom_kills += new_ooms
            if run.evaluator is not None:
                try:
                    run.sample_alerts(fields, active)
                except Exception as exc:
                    mon.note_internal_error("alert evaluation", exc)

    def stop(self) -> None:
        self._stop.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout=max(2.0, 2 * self.interval))
        self._tick()  # a final reading: even a run shorter than one interval has samples
        try:
            self._tree.close()
        except Exception:
            pass
        try:
            if self._oom is not None:
                self._oom.close()  # its descriptor on the cgroup's OOM counter
        except Exception:
            pass

    def health(self) -> dict[str, Any]:
        return {
            "oom_kills": self.oom_kills,
            "samples": self.samples,
            "sample_errors": self.errors,
            "samples_missed": self.missed,
            "sample_source": self.source,
        }
