"""Evaluation costs and accuracy (issue 3).

1. Live evaluation's share of a sampler tick: a tick with the default alert rules against
   a tick with none, same process, interleaved rounds, ticks paced at 100 Hz and at 10 Hz
   as the sampler thread paces them. Target: <= 1.2x.
2. History over 1,000 runs x 10 phases: phase_history + phase_trends of every key on
   compacted runs. Target: < 1 s (against the time to reduce those runs' events).
3. ETA accuracy: demo runs into one directory; for the last one, the ETA its snapshot
   gave when half the planned phases had ended, against the real remaining time.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

from .common import Figure


def _paced_tick_us(tick: Callable[[], None], ticks: int, hz: float) -> float:
    """Thread CPU microseconds per tick, ticks spaced as the sampler spaces them (the time
    between ticks is slept, not measured: caches go cold in it, as they do in real use)."""
    total = 0.0
    nxt = time.monotonic()
    for _ in range(ticks):
        nxt += 1 / hz
        time.sleep(max(0.0, nxt - time.monotonic()))
        t0 = time.thread_time()
        tick()
        total += time.thread_time() - t0
    return total / ticks * 1e6


def _tick_cost(quick: bool) -> list[Figure]:
    from atroz_monitor import Monitor

    tmp = tempfile.mkdtemp(prefix="atroz-bench-")
    # One monitor, default rules; the baseline is the very same tick with its evaluator
    # detached, so the difference is the evaluation and nothing else. Ticks are driven
    # here (the interval is an hour) at 100 Hz, the highest rate the sampler is asked for
    # (where a tick is cheapest, as system-wide figures are read at most at 10 Hz, so the
    # evaluation's share is largest), and at 10 Hz; a phase is running so the stall rule
    # has something to judge. Rounds alternate with and without.
    m = Monitor(os.path.join(tmp, "tick.jsonl"), sample_interval=3600)
    m.start()
    run = m.main
    ev = run.evaluator
    ph = m.phase("P00").__enter__()
    tick = m._sampler._tick
    figures = []
    for hz, ticks, rounds in ((100.0, 50 if quick else 100, 3 if quick else 9),
                              (10.0, 10 if quick else 20, 3 if quick else 5)):  # fmt: skip
        vals: dict[str, list[float]] = {"with": [], "without": []}
        for _ in range(rounds):
            run.evaluator = ev
            vals["with"].append(_paced_tick_us(tick, ticks, hz))
            run.evaluator = None
            vals["without"].append(_paced_tick_us(tick, ticks, hz))
        run.evaluator = ev
        w, wo = statistics.median(vals["with"]), statistics.median(vals["without"])
        figures.append(
            Figure(
                f"sampler tick at {hz:.0f} Hz with default alert rules",
                w,
                "us",
                "same tick, no rules",
                wo,
                "<= 1.2x",
            )
        )
    ph.__exit__(None, None, None)
    m.close()
    return figures


def _history(quick: bool) -> list[Figure]:
    from atroz_monitor.read import state as S
    from atroz_monitor.view import history

    runs = 200 if quick else 1000
    keys = [f"P{i:02d}" for i in range(10)]
    st = S.State()
    t0 = time.perf_counter()
    for r in range(runs):
        rid = f"r{r:05d}"
        seq = 0
        base = r * 100.0
        for i, k in enumerate(keys):
            seq += 1
            S.apply(
                st,
                {
                    "ev": "phase_start",
                    "run": rid,
                    "pid": 1,
                    "seq": seq,
                    "ts": base + i,
                    "span": f"{rid}.{i}",
                    "phase": k,
                    "name": k,
                    "parent": None,
                },
            )
            seq += 1
            S.apply(
                st,
                {
                    "ev": "phase_end",
                    "run": rid,
                    "pid": 1,
                    "seq": seq,
                    "ts": base + i + 0.5,
                    "span": f"{rid}.{i}",
                    "phase": k,
                    "name": k,
                    "parent": None,
                    "status": "completed",
                    "duration_ms": 500.0 + (r % 13),
                    "cpu_ms": 100.0,
                    "items": 10,
                },
            )
        st.compact(rid)
    reduce_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for k in keys:
        history.phase_history(st, k)
        history.phase_trends(st, k)
    hist_s = time.perf_counter() - t0
    return [
        Figure(
            f"history+trends of 10 keys over {runs} runs",
            hist_s,
            "s",
            "reducing those runs",
            reduce_s,
            "< 1 s",
        )
    ]


def _eta(quick: bool) -> list[Figure]:
    from atroz_monitor.read import state as S
    from atroz_monitor.read.loader import load_state
    from atroz_monitor.read.reader import discover, iter_events
    from atroz_monitor.view import views

    n, dur = (3, 2) if quick else (6, 4)
    tmp = tempfile.mkdtemp(prefix="atroz-eta-")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root)
    for _ in range(n):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "atroz_monitor",
                "demo",
                "--duration",
                str(dur),
                "--no-serve",
                "--out",
                tmp,
            ],
            check=True,
            capture_output=True,
            env=env,
        )
    files = discover([tmp])
    last = files[-1]
    st, _ = load_state(files[:-1])
    events = list(iter_events(last))
    run_id = events[0]["run"]
    end_ts = events[-1]["ts"]
    half_ts = None
    done = 0
    for ev in events:
        S.apply(st, ev)
        if ev["ev"] == "phase_end" and ev.get("parent") is None:
            done += 1
            if done == 5:
                half_ts = ev["ts"]
                break
    snap = views.snapshot(st, run_id, now=half_ts, alive=True)
    eta = snap["progress"]["eta_s"]
    actual = end_ts - half_ts
    err = abs(eta - actual) / actual * 100 if eta is not None else float("nan")
    return [
        Figure(
            f"ETA at 50% of a demo run ({n - 1} runs of history)",
            eta or 0.0,
            "s",
            "actual remaining",
            actual,
            f"error {err:.1f}%",
        )
    ]


def run(quick: bool = False) -> list[Figure]:
    return _tick_cost(quick) + _history(quick) + _eta(quick)


if __name__ == "__main__":
    for fig in run("--quick" in sys.argv):
        print(fig.line())
