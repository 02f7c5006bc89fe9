"""The sink interface.

The runner gives every sink its own worker thread and bounded queue, so a slow
or failing sink never stalls detection. ``start`` opens resources, ``write``
handles one result, ``event`` one source event, ``stop`` finalizes files.
"""

from __future__ import annotations

import abc

from edgewatch.metrics import Metrics
from edgewatch.types import FrameResult, SourceEvent


class Sink(abc.ABC):
    """Base class of every sink."""

    #: Whether ``write`` needs ``result.frame.image`` (video, display, zmq with JPEG).
    needs_image: bool = False
    #: Whether a failing ``start`` aborts the run (a socket that cannot bind, no
    #: display). File sinks say False: a file that cannot be opened is a per-sink
    #: error, logged and counted, and the open is retried on every write.
    fatal_start: bool = True

    def __init__(self, name: str, metrics: Metrics) -> None:
        self.name = name
        self.metrics = metrics

    def start(self) -> None:  # noqa: B027 - optional hook
        """Open sockets/windows; files may open lazily per source."""

    @abc.abstractmethod
    def write(self, result: FrameResult) -> None:
        """Handle one processed frame; raise :class:`~edgewatch.errors.SinkError` on failure."""

    def event(self, ev: SourceEvent) -> None:  # noqa: B027 - optional hook
        """Handle one source event (default: ignore)."""

    def stop(self) -> None:  # noqa: B027 - optional hook
        """Flush and close; a file left behind must be whole and playable."""
