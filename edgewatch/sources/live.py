"""Live sources: the reconnect loop shared by network streams and webcams.

A live source runs its connection in one named worker thread that opens the
stream, reads frames and hands them to :meth:`LiveSource.frames` through a small
drop-oldest queue. When the stream fails (cannot open, error, end, or no frame
for ``stall_timeout`` s) the worker waits a capped exponential backoff with
jitter and opens it again, forever, until stopped. :meth:`frames` polls the
queue in 0.1 s steps, so it returns within that time of ``stop`` being set, even
while the worker is blocked on the network or sleeping in backoff; the worker
itself leaves within the read timeout and :meth:`close` joins it.

States (``set_state``): CONNECTING -> STREAMING; on failure FAILED (the reason)
then BACKOFF (reason and next retry); STOPPED when stopped; ENDED after
``max_frames``. Events: CONNECTED on the first frame, FAILED when the very first
attempt fails (once), LOST when a stream that delivered frames fails,
RECONNECTED on the first frame after that. Frame ``index`` keeps counting across reconnects,
``generation`` grows by one at each reconnect, ``pts`` is stream time in seconds
(it restarts with each connection) and ``wall_time`` the Unix capture time.
Every detail, event, log line and error message has passwords masked.
"""

from __future__ import annotations

import abc
import logging
import queue
import threading
import time
import traceback
from collections.abc import Callable, Iterator

import numpy as np

from edgewatch.config import SourceConfig
from edgewatch.errors import SourceError, SourceUnreachableError
from edgewatch.metrics import Metrics
from edgewatch.secrets import mask, mask_uri
from edgewatch.sources.base import EventCallback, Source
from edgewatch.sources.pacing import Backoff, RateLimiter
from edgewatch.types import EventKind, Frame, SourceState

log = logging.getLogger(__name__)

#: How often (seconds) frames() and the worker look at the stop flags.
POLL_S = 0.1
#: Frames held between the worker and frames(); the oldest is dropped when full.
HANDOFF_FRAMES = 2


class SourceTimeoutError(SourceUnreachableError):
    """The server did not answer (or stopped answering) within the timeout."""


class SourceRefusedError(SourceUnreachableError):
    """The host actively refused the connection (nothing listens on the port)."""


class UnknownHostError(SourceUnreachableError):
    """The host name does not resolve."""


class SourceStalledError(SourceError):
    """The stream is open but delivered no frame for ``stall_timeout`` seconds."""


class SourceEndedError(SourceError):
    """The server or device ended the stream."""


class Session(abc.ABC):
    """One open connection to a live stream or device."""

    #: A short, secret-free description of what was opened (codec, size, ...).
    description: str = ""

    @abc.abstractmethod
    def read(self, stopping: Callable[[], bool]) -> Iterator[tuple[np.ndarray, float, float]]:
        """Yield ``(BGR uint8 image, pts seconds, decode milliseconds)`` until the stream ends.

        Raises :class:`SourceError` on failure (:class:`SourceStalledError` when no
        frame came for ``stall_timeout`` s); returns within the read timeout once
        ``stopping()`` is true.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Release the connection (called from the worker thread)."""


class _End:
    """Marks the end of the worker's output."""


class LiveSource(Source):
    """Base of network and device sources: reconnect loop, stall watchdog, handoff."""

    def __init__(
        self, cfg: SourceConfig, metrics: Metrics, on_event: EventCallback | None = None
    ) -> None:
        super().__init__(cfg, metrics, on_event)
        self.fps = cfg.fps or 0.0
        self.generation = 0
        self.reconnects = 0
        self.last_error: SourceError | None = None
        self.masked_uri = mask_uri(cfg.uri)
        self._index = 0
        self._emitted = 0
        self._halted = threading.Event()
        self._user_stop: threading.Event | None = None
        self._worker: threading.Thread | None = None
        self._handoff: queue.Queue[Frame | _End | BaseException] = queue.Queue(HANDOFF_FRAMES)

    # ------------------------------------------------------------------ to override

    @abc.abstractmethod
    def connect(self) -> Session:
        """Open one session; raise a typed :class:`SourceError` on failure."""

    @property
    def join_timeout(self) -> float:
        """Seconds :meth:`close` waits for the worker (its longest blocking call)."""
        return self.cfg.open_timeout + self.cfg.read_timeout + 1.0

    # ------------------------------------------------------------------ consumer side

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        """Yield frames, reconnecting as needed, until ``stop``, ``max_frames`` or close."""
        if self._worker is not None:
            raise SourceError(f"source {self.id}: frames() may only be called once")
        self._user_stop = stop
        self._worker = threading.Thread(target=self._run, name=f"source-{self.id}", daemon=True)
        self._worker.start()
        try:
            while not self._halted.is_set():
                if stop.is_set():
                    break
                try:
                    item = self._handoff.get(timeout=POLL_S)
                except queue.Empty:
                    continue
                if isinstance(item, _End):
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._halted.set()
            if stop.is_set():
                self.set_state(SourceState.STOPPED, "stopped")

    def close(self) -> None:
        """Stop the worker and wait for it (at most :attr:`join_timeout` s)."""
        self._halted.set()
        worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(self.join_timeout)
            if worker.is_alive():
                log.warning(
                    "source %s: worker still blocked after %.1f s; left to finish",
                    self.id,
                    self.join_timeout,
                )

    # ------------------------------------------------------------------ worker side

    def _stopping(self) -> bool:
        return self._halted.is_set() or (self._user_stop is not None and self._user_stop.is_set())

    def _sleep(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless stopped; True if stopped."""
        deadline = time.monotonic() + seconds
        while not self._stopping():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._halted.wait(min(POLL_S, left))
        return True

    def _run(self) -> None:
        backoff = Backoff(self.cfg.reconnect)
        lost_at: float | None = None
        ever_streamed = False
        try:
            while not self._stopping():
                self.set_state(SourceState.CONNECTING, f"connecting to {self.masked_uri}")
                streamed, error = self._attempt(backoff, ever_streamed, lost_at)
                if self._stopping():
                    break
                if error is None:  # max_frames reached
                    detail = f"max_frames={self.cfg.max_frames} reached"
                    self.set_state(SourceState.ENDED, detail)
                    self.emit(EventKind.ENDED, detail)
                    break
                first_failure = not ever_streamed and backoff.failures == 0
                if streamed:
                    ever_streamed, lost_at = True, time.monotonic()
                delay = self._fail(error, backoff, lost=streamed, first=first_failure)
                if self._sleep(delay):
                    break
                self.reconnects += 1
                self.metrics.inc("edgewatch_reconnects_total", source=self.id)
        except Exception as exc:  # the worker must never die silently
            # The traceback is masked too: library messages may quote the URI.
            trace = mask("".join(traceback.format_exception(exc)))
            log.error("source %s: worker crashed:\n%s", self.id, trace)
            self._put(SourceError(f"source {self.id}: worker crashed: {mask(repr(exc))}"))
        finally:
            if self._stopping():
                self.set_state(SourceState.STOPPED, "stopped")
            self._put(_End())

    def _limit_reached(self) -> bool:
        return self.cfg.max_frames is not None and self._emitted >= self.cfg.max_frames

    def _attempt(
        self, backoff: Backoff, ever_streamed: bool, lost_at: float | None
    ) -> tuple[bool, SourceError | None]:
        """Open one session and stream until it fails, ends or we stop.

        Returns ``(frames flowed, the failure)``; the failure is None when we
        stopped or reached ``max_frames``.
        """
        try:
            session = self.connect()
        except SourceError as exc:
            return False, exc
        streamed = False
        limiter = RateLimiter(self.cfg.fps)
        try:
            for image, pts, decode_ms in session.read(self._stopping):
                if not streamed:
                    streamed = True
                    backoff.reset()
                    self._on_first_frame(session, ever_streamed, lost_at)
                index = self._index
                self._index += 1
                if not limiter.keep(pts):
                    continue
                frame = Frame(
                    self.id, index, pts, time.time(), image, self.generation, self.fps, decode_ms
                )
                self._put(frame)
                self._emitted += 1
                if self._limit_reached() or self._stopping():
                    return streamed, None
            if self._stopping():
                return streamed, None
            return streamed, SourceEndedError(f"stream ended by the server ({self.masked_uri})")
        except SourceError as exc:
            return streamed, exc
        finally:
            session.close()

    def _on_first_frame(self, session: Session, ever_streamed: bool, lost_at: float | None) -> None:
        detail = f"{self.masked_uri} {session.description}".strip()
        self.set_state(SourceState.STREAMING, detail)
        if not ever_streamed:
            self.emit(EventKind.CONNECTED, detail)
            return
        self.generation += 1
        down = time.monotonic() - lost_at if lost_at is not None else 0.0
        self.emit(EventKind.RECONNECTED, f"{detail} after {down:.1f} s down")

    def _fail(self, error: SourceError, backoff: Backoff, lost: bool, first: bool) -> float:
        """Record a failure: state FAILED, then BACKOFF; returns the delay (s).

        Emits LOST when a stream that delivered frames failed, FAILED when the very
        first connection attempt failed (once, not on every retry).
        """
        self.last_error = error
        reason = mask(str(error))
        self.set_state(SourceState.FAILED, reason)
        if lost:
            self.emit(EventKind.LOST, reason)
        elif first:
            self.emit(EventKind.FAILED, reason)
        delay = backoff.next_delay()
        retry = f"retry {backoff.failures} in {delay:.1f} s"
        log.warning("source %s: %s; %s", self.id, reason, retry)
        self.set_state(SourceState.BACKOFF, f"{reason}; {retry}")
        return delay

    def _put(self, item: Frame | _End | BaseException) -> None:
        """Hand an item to frames(); a full queue drops its oldest frame (never _End)."""
        while True:
            try:
                self._handoff.put_nowait(item)
                return
            except queue.Full:
                try:
                    old = self._handoff.get_nowait()
                except queue.Empty:
                    continue
                if isinstance(old, Frame):
                    self.metrics.inc("edgewatch_drops_total", source=self.id, stage="source")
