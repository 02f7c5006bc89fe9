"""Pacing, frame-rate limiting, reconnect backoff and rate-limited logging for sources.

All times are seconds: ``pts`` is stream time, deadlines are on
:func:`time.monotonic`. Every wait is ``stop.wait(...)`` so a set stop event ends
it at once.
"""

from __future__ import annotations

import logging
import random
import threading
import time

from edgewatch.config import ReconnectConfig


class Pacer:
    """Release frames at the stream's rate: frame ``pts`` is due ``pts - pts0`` s after start.

    The reference (``pts0``, monotonic start) is taken at the first frame and
    again after :meth:`reset` (a loop or reconnect) or a PTS jump backwards or
    more than ``max_gap`` s forwards, so a discontinuity never stalls the source.
    """

    def __init__(self, max_gap: float = 5.0) -> None:
        self._max_gap = max_gap
        self._pts0: float | None = None
        self._t0 = 0.0
        self._last_pts = 0.0

    def reset(self) -> None:
        """Forget the reference; the next frame is released at once."""
        self._pts0 = None

    def wait(self, pts: float, stop: threading.Event) -> bool:
        """Sleep until ``pts`` is due; return False if ``stop`` was set meanwhile."""
        now = time.monotonic()
        if self._pts0 is None or pts < self._last_pts or pts - self._last_pts > self._max_gap:
            self._pts0, self._t0 = pts, now
        self._last_pts = pts
        delay = self._t0 + (pts - self._pts0) - now
        if delay > 0:
            return not stop.wait(delay)
        return not stop.is_set()


class RateLimiter:
    """Keep at most ``fps`` frames per second of stream time, spread evenly by PTS.

    A frame is kept when its ``pts`` reaches the next due time; the due time then
    advances by ``1/fps`` from the previous due time (not from the frame), so a
    25 fps stream limited to 10 fps keeps frames in a 3-2-3-2 pattern that
    averages exactly 10 per second. A PTS jump backwards or a gap of more than
    one second beyond the due time restarts the schedule at that frame.

    >>> lim = RateLimiter(10.0)
    >>> [i for i in range(10) if lim.keep(i / 25)]
    [0, 3, 5, 8]
    """

    def __init__(self, fps: float | None) -> None:
        self._period = 1.0 / fps if fps else 0.0
        self._due: float | None = None
        self._last = 0.0

    def reset(self) -> None:
        """Restart the schedule at the next frame (after a loop or reconnect)."""
        self._due = None

    def keep(self, pts: float) -> bool:
        """True if the frame at ``pts`` (seconds) is to be processed."""
        if self._period == 0.0:
            return True
        # Half a microsecond of slack absorbs float error in pts = k / fps.
        eps = 5e-7
        if self._due is None or pts < self._last or pts - self._due > 1.0:
            self._due = pts
        self._last = pts
        if pts + eps < self._due:
            return False
        self._due += self._period
        while self._due <= pts + eps:
            self._due += self._period
        return True


class Backoff:
    """Capped exponential backoff with jitter: ``initial * factor**n``, at most ``max``.

    Each delay is multiplied by a random factor in ``[1 - jitter, 1 + jitter]``
    (and capped again). :meth:`reset` after a success starts over at ``initial``.

    >>> b = Backoff(ReconnectConfig(initial=1, max=5, factor=2, jitter=0))
    >>> [b.next_delay() for _ in range(5)]
    [1.0, 2.0, 4.0, 5.0, 5.0]
    """

    def __init__(self, cfg: ReconnectConfig, rng: random.Random | None = None) -> None:
        self._cfg = cfg
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not crypto
        self._failures = 0

    @property
    def failures(self) -> int:
        """Consecutive failures since the last :meth:`reset`."""
        return self._failures

    def reset(self) -> None:
        self._failures = 0

    def next_delay(self) -> float:
        """The delay (seconds) before the next attempt; counts one failure."""
        c = self._cfg
        base = min(c.max, c.initial * c.factor**self._failures)
        self._failures += 1
        if c.jitter:
            base *= 1.0 + self._rng.uniform(-c.jitter, c.jitter)
        return float(min(c.max, max(0.0, base)))


class RateLimitedLog:
    """Log a repeated warning at most once per ``interval`` s, with the count suppressed."""

    def __init__(self, logger: logging.Logger, interval: float = 5.0) -> None:
        self._log = logger
        self._interval = interval
        self._next = 0.0
        self._suppressed = 0

    def warning(self, msg: str, *args: object) -> None:
        now = time.monotonic()
        if now < self._next:
            self._suppressed += 1
            return
        if self._suppressed:
            msg += " (%d similar messages suppressed)"
            args = (*args, self._suppressed)
        self._log.warning(msg, *args)
        self._suppressed = 0
        self._next = now + self._interval
