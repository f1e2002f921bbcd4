"""Shared helpers: repeated rounds, medians with spread, one printed line per figure."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    baseline: str = ""
    baseline_value: float | None = None
    target: str = ""
    spread: float | None = None  # (max - min) / median of the rounds, in %

    @property
    def ratio(self) -> float | None:
        if self.baseline_value in (None, 0):
            return None
        return self.value / self.baseline_value  # type: ignore[operator]

    def line(self) -> str:
        s = f"{self.name:<52} {self.value:>11.3f} {self.unit:<6}"
        if self.baseline:
            s += f" vs {self.baseline} {self.baseline_value:.3f}"
            if self.ratio is not None:
                s += f" -> ratio {self.ratio:.3f}"
        if self.spread is not None:
            s += f" (spread {self.spread:.0f}%)"
        if self.target:
            s += f"  [target {self.target}]"
        return s


def rounds(fn: Callable[[], float], n: int) -> tuple[float, float]:
    """Median of n rounds of fn() and the spread (max-min)/median in %."""
    vals = [fn() for _ in range(n)]
    med = statistics.median(vals)
    return med, (max(vals) - min(vals)) / med * 100 if med else 0.0


def per_op_us(op: Callable[[], object], n: int) -> float:
    """Mean microseconds per call of op over n calls (one round), in CPU time of the calling
    thread: on a shared machine other processes' load inflates wall time, not this."""
    t0 = time.thread_time()
    for _ in range(n):
        op()
    return (time.thread_time() - t0) / n * 1e6
