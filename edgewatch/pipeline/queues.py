"""Bounded queues with an explicit back-pressure policy.

``DROP_OLDEST`` keeps latency bounded (live cameras, sinks): a put on a full
queue evicts the oldest item and counts it. ``BLOCK`` makes the producer wait
(file sources: every frame is processed).
"""

from __future__ import annotations

import collections
import enum
import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class Policy(str, enum.Enum):
    DROP_OLDEST = "drop_oldest"
    BLOCK = "block"


class Closed(Exception):
    """Raised by :meth:`BoundedQueue.put` after :meth:`BoundedQueue.close`."""


class BoundedQueue(Generic[T]):
    """A thread-safe FIFO of at most ``maxsize`` items.

    ``notify`` (optional) is a shared :class:`threading.Condition` that is
    notified on every put, so one consumer can wait on many queues.
    """

    def __init__(
        self, maxsize: int, policy: Policy, notify: threading.Condition | None = None
    ) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.maxsize = maxsize
        self.policy = policy
        self._items: collections.deque[T] = collections.deque()
        self._lock = threading.Lock()
        self._not_full = threading.Condition(self._lock)
        self._not_empty = threading.Condition(self._lock)
        self._notify = notify
        self._closed = False
        self.dropped = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def put(self, item: T, stop: threading.Event | None = None) -> T | None:
        """Add ``item``; return the evicted item under DROP_OLDEST, else None.

        Under BLOCK, waits for room; gives up (returns ``item``) once ``stop``
        is set, so a stopping producer is never stuck.
        """
        evicted: T | None = None
        with self._lock:
            if self._closed:
                raise Closed
            if len(self._items) >= self.maxsize:
                if self.policy is Policy.DROP_OLDEST:
                    evicted = self._items.popleft()
                    self.dropped += 1
                else:
                    while len(self._items) >= self.maxsize and not self._closed:
                        if stop is not None and stop.is_set():
                            return item
                        self._not_full.wait(0.1)
                    if self._closed:
                        raise Closed
            self._items.append(item)
            self._not_empty.notify()
        if self._notify is not None:
            with self._notify:
                self._notify.notify_all()
        return evicted

    def get_nowait(self) -> T | None:
        with self._lock:
            if not self._items:
                return None
            item = self._items.popleft()
            self._not_full.notify()
            return item

    def get(self, timeout: float) -> T | None:
        """Wait up to ``timeout`` seconds for an item; None if none came."""
        with self._lock:
            if not self._items:
                self._not_empty.wait(timeout)
            if not self._items:
                return None
            item = self._items.popleft()
            self._not_full.notify()
            return item

    def drain(self) -> list[T]:
        with self._lock:
            items = list(self._items)
            self._items.clear()
            self._not_full.notify_all()
            return items

    def discard(self) -> int:
        """Drop every queued item, count them in :attr:`dropped`; return how many."""
        with self._lock:
            n = len(self._items)
            self._items.clear()
            self.dropped += n
            self._not_full.notify_all()
            return n

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._not_full.notify_all()
            self._not_empty.notify_all()
