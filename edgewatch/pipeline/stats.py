"""Per-stage timing accumulators for the end-of-run summary."""

from __future__ import annotations

import threading
from collections.abc import Mapping


class StageClock:
    """Sums milliseconds per stage name; :meth:`means` gives ms per frame.

    >>> c = StageClock(); c.add({"track": 1.0}); c.add({"track": 3.0}); c.means()
    {'track': 2.0}
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sum: dict[str, float] = {}
        self._n: dict[str, int] = {}

    def add(self, timing: Mapping[str, float]) -> None:
        with self._lock:
            for k, v in timing.items():
                self._sum[k] = self._sum.get(k, 0.0) + v
                self._n[k] = self._n.get(k, 0) + 1

    def means(self) -> dict[str, float]:
        with self._lock:
            return {k: self._sum[k] / self._n[k] for k in self._sum}
