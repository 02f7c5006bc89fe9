"""The source interface.

A source yields :class:`~edgewatch.types.Frame` objects from :meth:`Source.frames`
until it ends or ``stop`` is set. Reconnects and pacing live inside the source;
the runner only moves frames into the per-source queue (drop-oldest for live
sources, blocking for files).
"""

from __future__ import annotations

import abc
import logging
import threading
import time
from collections.abc import Callable, Iterator

from edgewatch.config import SourceConfig
from edgewatch.metrics import Metrics
from edgewatch.types import EventKind, Frame, SourceEvent, SourceState

log = logging.getLogger(__name__)

EventCallback = Callable[[SourceEvent], None]


class Source(abc.ABC):
    """Base class of every source; built from its config, opened in :meth:`frames`."""

    def __init__(
        self, cfg: SourceConfig, metrics: Metrics, on_event: EventCallback | None = None
    ) -> None:
        self.cfg = cfg
        self.id = cfg.id
        self.metrics = metrics
        self._on_event = on_event
        self._state = SourceState.CONNECTING
        self.state_detail = ""
        self._state_lock = threading.Lock()

    @property
    def live(self) -> bool:
        """Live sources drop the oldest queued frame instead of blocking."""
        return self.cfg.live

    @property
    def state(self) -> SourceState:
        return self._state

    def set_state(self, state: SourceState, detail: str = "") -> None:
        """Record a state change (detail must already be free of secrets)."""
        with self._state_lock:
            self._state, self.state_detail = state, detail

    def emit(self, kind: EventKind, detail: str = "") -> None:
        """Publish a source event to the sinks (via the runner's callback)."""
        log.info("source %s: %s %s", self.id, kind.value, detail)
        if self._on_event is not None:
            self._on_event(SourceEvent(self.id, kind, time.time(), detail))

    @abc.abstractmethod
    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        """Yield frames until the source ends or ``stop`` is set."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources; called once after :meth:`frames` returns."""
