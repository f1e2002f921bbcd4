"""Tests for atroz_monitor.read.ring: the bounded, drop-counting, fork-aware buffer."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from atroz_monitor.read.ring import Ring


def _wait_until(predicate: object, timeout: float) -> bool:
    """Bounded poll: True as soon as predicate() holds, False at the deadline."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    tick = threading.Event()
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        tick.wait(0.01)
    return True


class RingModel(RuleBasedStateMachine):
    """Ring against a model: a list of (absolute index, item) plus the three counters."""

    @initialize(maxlen=st.integers(min_value=1, max_value=9))
    def create(self, maxlen: int) -> None:
        self.ring: Ring[int] = Ring(maxlen)
        self.maxlen = maxlen
        self.held: list[tuple[int, int]] = []
        self.total = 0
        self.dropped = 0

    def _push(self, item: int) -> None:
        self.held.append((self.total, item))
        self.total += 1
        if len(self.held) > self.maxlen:
            self.held.pop(0)
            self.dropped += 1

    @rule(item=st.integers())
    def append(self, item: int) -> None:
        self.ring.append(item)
        self._push(item)

    @rule(items=st.lists(st.integers(), max_size=15))
    def extend(self, items: list[int]) -> None:
        # A generator, to prove extend() does not need a sized sequence.
        self.ring.extend(x for x in items)
        for item in items:
            self._push(item)

    @rule()
    def snapshot(self) -> None:
        assert self.ring.snapshot() == [item for _, item in self.held]

    @rule(index=st.integers(min_value=-3, max_value=60))
    def since(self, index: int) -> None:
        assert self.ring.since(index) == [item for i, item in self.held if i >= index]

    @rule()
    def clear(self) -> None:
        self.ring.clear()
        self.held.clear()

    @invariant()
    def counters_match(self) -> None:
        assert self.ring.total == self.total
        assert self.ring.dropped == self.dropped
        assert len(self.ring) == len(self.held)
        assert self.ring.maxlen == self.maxlen


TestRingModel = RingModel.TestCase
TestRingModel.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)


def test_maxlen_below_one_is_rejected() -> None:
    """Ring(0) and Ring(-1) raise ValueError; a non-int maxlen raises TypeError."""
    with pytest.raises(ValueError, match="maxlen must be >= 1, got 0"):
        Ring(0)
    with pytest.raises(ValueError, match="got -1"):
        Ring(-1)
    with pytest.raises(TypeError):
        Ring(2.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Ring(True)


def test_eviction_is_counted_and_since_skips_evicted() -> None:
    """After 7 appends into a ring of 3, dropped is 4 and since(2) returns only what is held."""
    ring: Ring[str] = Ring(3)
    for ch in "abcdefg":
        ring.append(ch)
    assert ring.snapshot() == ["e", "f", "g"]
    assert (ring.total, ring.dropped, len(ring)) == (7, 4, 3)
    assert ring.since(2) == ["e", "f", "g"]
    assert ring.since(5) == ["f", "g"]
    assert ring.since(7) == []


def test_clear_keeps_absolute_indices_and_is_not_a_drop() -> None:
    """clear() empties the ring without counting drops, and indices continue after it."""
    ring: Ring[int] = Ring(4)
    ring.extend([0, 1, 2])
    ring.clear()
    assert (ring.total, ring.dropped, len(ring), ring.snapshot()) == (3, 0, 0, [])
    ring.extend([3, 4])
    assert ring.since(3) == [3, 4]
    assert ring.since(4) == [4]
    assert ring.since(0) == [3, 4]


def test_snapshot_is_a_copy() -> None:
    """Mutating a snapshot does not touch the ring."""
    ring: Ring[int] = Ring(2)
    ring.append(1)
    snap = ring.snapshot()
    snap.append(99)
    assert ring.snapshot() == [1]


def test_eight_threads_appending_lose_nothing_uncounted() -> None:
    """8 threads x 10,000 appends: total is exact, dropped = total - maxlen, and each thread's
    surviving items are its newest ones, in order."""
    threads_n, per_thread, maxlen = 8, 10_000, 1_000
    ring: Ring[tuple[int, int]] = Ring(maxlen)
    start = threading.Barrier(threads_n)

    def worker(tid: int) -> None:
        start.wait()
        append = ring.append
        for i in range(per_thread):
            append((tid, i))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(threads_n)]
    # Switch threads as often as the interpreter allows, so an unlocked read-modify-write of
    # the counters would actually lose updates here.
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
            assert not t.is_alive()
    finally:
        sys.setswitchinterval(old_interval)

    total = threads_n * per_thread
    assert ring.total == total
    assert ring.dropped == total - maxlen
    snap = ring.snapshot()
    assert len(snap) == maxlen == len(ring)
    seen_threads = 0
    for tid in range(threads_n):
        mine = [i for t, i in snap if t == tid]
        if mine:
            seen_threads += 1
            # A contiguous run ending with the thread's very last append.
            assert mine == list(range(per_thread - len(mine), per_thread))
    assert seen_threads >= 1
    # The last absolute index is total - 1, so since(total - 1) is exactly one item.
    assert len(ring.since(total - 1)) == 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_child_of_fork_does_not_deadlock_on_a_lock_held_at_fork() -> None:
    """A lock held by another thread at fork time is replaced in the child, so it can append."""
    ring: Ring[int] = Ring(4)
    ring.append(1)
    held, release = threading.Event(), threading.Event()

    def hold_lock() -> None:
        with ring._lock:
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold_lock)
    holder.start()
    try:
        assert held.wait(10)
        pid = os.fork()
        if pid == 0:  # child: only this thread exists; the copied lock is still "held"
            code = 3
            try:
                ring.append(2)
                code = 0 if ring.snapshot() == [1, 2] and ring.total == 2 else 1
            finally:
                os._exit(code)
        status: list[int] = []

        def reaped() -> bool:
            done, st_ = os.waitpid(pid, os.WNOHANG)
            if done:
                status.append(st_)
            return bool(done)

        if not _wait_until(reaped, timeout=10):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("child deadlocked on the ring lock inherited from fork")
        assert os.waitstatus_to_exitcode(status[0]) == 0
    finally:
        release.set()
        holder.join(timeout=10)
    # The parent's ring is untouched by the child's append.
    assert ring.snapshot() == [1]
