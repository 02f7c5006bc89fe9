"""A driver for source tests: runs a source the way the pipeline runner does."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from edgewatch.config import SourceConfig
from edgewatch.metrics import Metrics
from edgewatch.sources import build_source
from edgewatch.sources.base import EventCallback, Source
from edgewatch.types import EventKind, Frame, SourceEvent

SourceFactory = Callable[[SourceConfig, Metrics, EventCallback], Source]
"""Builds a source from its config (``build_source`` unless a test injects a seam)."""


class Driver:
    """Runs a source the way the pipeline runner does: frames() in a thread, then close()."""

    def __init__(self, cfg: SourceConfig, build: SourceFactory = build_source) -> None:
        self.events: list[SourceEvent] = []
        self.metrics = Metrics()
        self.src = build(cfg, self.metrics, self.events.append)
        self.frames: list[Frame] = []
        self.stop = threading.Event()
        self.returned_at: float | None = None
        self.thread = threading.Thread(target=self._consume, name="test-consumer")

    def _consume(self) -> None:
        for f in self.src.frames(self.stop):
            self.frames.append(f)
        self.returned_at = time.monotonic()

    def __enter__(self) -> Driver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)
        self.src.close()

    def wait_for(self, cond: Callable[[], bool], timeout: float, what: str) -> float:
        t0 = time.monotonic()
        while not cond():
            if time.monotonic() - t0 > timeout:
                raise AssertionError(
                    f"timed out after {timeout} s waiting for {what}; "
                    f"state {self.src.state}: {self.src.state_detail}"
                )
            time.sleep(0.02)
        return time.monotonic()

    def kinds(self) -> list[EventKind]:
        return [e.kind for e in self.events]

    def stop_and_time(self) -> float:
        t0 = time.monotonic()
        self.stop.set()
        self.thread.join(5)
        assert self.returned_at is not None, "frames() did not return"
        return self.returned_at - t0
