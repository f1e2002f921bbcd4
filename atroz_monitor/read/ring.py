"""A thread-safe bounded buffer that counts every item it evicts.

Each item has an absolute index: its 0-based position in the whole append history. Indices never
restart (not even after `clear()`), so a consumer can remember `total` and later ask for
`since(that_total)` to get only what is new, and can tell from `dropped` whether it missed any.
"""

from __future__ import annotations

import itertools
import os
import threading
import weakref
from collections import deque
from collections.abc import Iterable
from typing import Any, Generic, TypeVar

__all__ = ["Ring"]

T = TypeVar("T")

# Every live ring, so the fork hook below can reach them; weak so that registering a ring never
# keeps it alive.
_RINGS: weakref.WeakSet[Ring[Any]] = weakref.WeakSet()


class Ring(Generic[T]):
    """Keep the newest `maxlen` items appended, counting the ones evicted to make room."""

    # __weakref__ is needed by _RINGS; slots keep attribute lookups on the hot path cheap.
    __slots__ = ("__weakref__", "_cleared", "_items", "_lock", "_maxlen", "_total")

    def __init__(self, maxlen: int) -> None:
        # Fail fast at construction (STYLE: bad arguments raise here, never later on a hot path).
        if isinstance(maxlen, bool) or not isinstance(maxlen, int):
            raise TypeError(f"maxlen must be an int, not {type(maxlen).__name__}")
        if maxlen < 1:
            raise ValueError(f"maxlen must be >= 1, got {maxlen}")
        self._maxlen = maxlen
        self._items: deque[T] = deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self._total = 0
        # Items removed by clear() are discarded on purpose, not evicted: keeping them apart lets
        # `dropped` mean exactly "lost to lack of room" while indices keep counting up.
        self._cleared = 0
        if not _fork_hooked:
            _hook_fork()
        _RINGS.add(self)

    def append(self, item: T) -> None:
        """Add one item, evicting the oldest if the ring is full."""
        # Only two cheap operations under the lock: callers sit on hot paths, and `dropped` is
        # derived later rather than counted here.
        with self._lock:
            self._items.append(item)
            self._total += 1

    def extend(self, items: Iterable[T]) -> None:
        """Add several items in order, as one atomic step."""
        # Materialise first so a slow or failing generator never runs while the lock is held.
        batch = list(items)
        with self._lock:
            self._items.extend(batch)
            self._total += len(batch)

    def snapshot(self) -> list[T]:
        """Return a copy of the items held, oldest first."""
        with self._lock:
            return list(self._items)

    def since(self, index: int) -> list[T]:
        """Return the held items whose absolute index is >= `index`, oldest first.

        Items already evicted or cleared are simply absent; compare `index` with
        `total - len(ring)` (or watch `dropped`) to learn that some were missed.
        """
        with self._lock:
            held = len(self._items)
            first = self._total - held
            if index <= first:
                return list(self._items)
            if index >= self._total:
                return []
            return list(itertools.islice(self._items, index - first, None))

    def clear(self) -> None:
        """Discard every held item; `total` and absolute indices keep counting from where they
        were."""
        with self._lock:
            self._cleared += len(self._items)
            self._items.clear()

    @property
    def total(self) -> int:
        """How many items were ever appended."""
        return self._total

    @property
    def dropped(self) -> int:
        """How many items were evicted because the ring was full (cleared ones are not counted)."""
        with self._lock:
            return self._total - len(self._items) - self._cleared

    @property
    def maxlen(self) -> int:
        """The capacity given at construction."""
        return self._maxlen

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return (
            f"Ring(maxlen={self._maxlen}, len={len(self._items)}, total={self._total}, "
            f"dropped={self.dropped})"
        )

    def _reset_lock(self) -> None:
        self._lock = threading.Lock()


def _after_fork_in_child() -> None:
    # Only the forking thread survives in the child. If another thread held a ring's lock at that
    # moment, the child's copy stays locked forever and its first append would deadlock (the bug
    # OpenTelemetry and prometheus_client both had to fix). The items themselves are intact, since
    # each deque operation is atomic under the GIL; at worst `total` misses the one append that
    # was in flight.
    for ring in list(_RINGS):
        ring._reset_lock()


# Registered with the first ring, not at import: os.register_at_fork cannot be undone, and
# importing a module should leave the interpreter as it was.
_fork_hooked = False
_fork_lock = threading.Lock()


def _hook_fork() -> None:
    global _fork_hooked
    with _fork_lock:
        if not _fork_hooked:
            _fork_hooked = True
            if hasattr(os, "register_at_fork"):  # absent on Windows: no fork to survive
                os.register_at_fork(after_in_child=_after_fork_in_child)
