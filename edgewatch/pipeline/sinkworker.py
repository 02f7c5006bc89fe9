"""One thread and one bounded queue per sink: a slow or broken sink stalls nothing."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import cast

from edgewatch.errors import EdgewatchError
from edgewatch.metrics import Metrics
from edgewatch.pipeline.queues import BoundedQueue, Policy
from edgewatch.secrets import mask
from edgewatch.sinks.base import Sink
from edgewatch.types import FrameResult, SourceEvent

log = logging.getLogger(__name__)

_END = object()


def _source_of(item: FrameResult | SourceEvent) -> str:
    return item.frame.source_id if isinstance(item, FrameResult) else item.source_id


@dataclass
class SinkStatus:
    written: int = 0
    errors: int = 0
    last_error: str = ""
    last_error_time: float = 0.0
    #: Messages (results and events) handed to the sink, failed ones included.
    handled: int = 0
    #: Seconds spent in ``write``/``event`` over those messages.
    busy_s: float = 0.0

    @property
    def mean_ms(self) -> float:
        """Mean milliseconds per message handed to the sink (0 before the first)."""
        return self.busy_s * 1000 / self.handled if self.handled else 0.0


class SinkWorker:
    """Runs ``sink.write`` in its own named thread, fed by a drop-oldest queue.

    A write that raises is logged (at most once per 10 s per sink), counted in
    ``edgewatch_sink_errors_total`` and the sink keeps receiving later results.
    """

    def __init__(
        self,
        sink: Sink,
        metrics: Metrics,
        queue_size: int,
        sources: list[str] | None = None,
    ) -> None:
        self.sink = sink
        self.name = sink.name
        self.metrics = metrics
        self.sources = set(sources) if sources else None
        self.queue: BoundedQueue[FrameResult | SourceEvent | object] = BoundedQueue(
            queue_size, Policy.DROP_OLDEST
        )
        self.status = SinkStatus()
        self._thread = threading.Thread(target=self._loop, name=f"sink-{self.name}", daemon=True)
        self._last_log = 0.0

    def start(self) -> None:
        """Start the sink and its thread; a failing start raises only when the
        sink's ``fatal_start`` says so, otherwise it is counted like a failed write."""
        try:
            self.sink.start()
        except EdgewatchError as e:
            if self.sink.fatal_start:
                raise
            self._failed(e)
        self._thread.start()

    def accepts(self, source_id: str) -> bool:
        return self.sources is None or source_id in self.sources

    def submit(self, item: FrameResult | SourceEvent) -> None:
        source_id = _source_of(item)
        if not self.accepts(source_id):
            return
        if self.queue.put(item) is not None:
            self.metrics.inc("edgewatch_drops_total", source=source_id, stage=f"sink:{self.name}")

    def _loop(self) -> None:
        while True:
            item = self.queue.get(0.5)
            if item is None:
                continue
            if item is _END:
                return
            t0 = time.perf_counter()
            try:
                if isinstance(item, FrameResult):
                    self.sink.write(item)
                    self.status.written += 1
                elif isinstance(item, SourceEvent):
                    self.sink.event(item)
            except Exception as e:  # any bug in one sink must not silence it for good
                self._failed(e)
                continue
            finally:
                took = time.perf_counter() - t0
                self.status.busy_s += took
                self.status.handled += 1
            self.metrics.observe(
                "edgewatch_stage_seconds",
                took,
                source=_source_of(cast("FrameResult | SourceEvent", item)),
                stage=f"sink:{self.name}",
            )

    def _failed(self, e: Exception) -> None:
        expected = isinstance(e, (EdgewatchError, OSError))
        self.status.errors += 1
        self.status.last_error = mask(str(e) if expected else f"{type(e).__name__}: {e}")
        self.status.last_error_time = time.time()
        self.metrics.inc("edgewatch_sink_errors_total", sink=self.name)
        now = time.monotonic()
        if now - self._last_log > 10.0:
            self._last_log = now
            log.error(
                "sink %s failed (%d errors so far): %s",
                self.name,
                self.status.errors,
                self.status.last_error,
                exc_info=None if expected else e,  # an unexpected type: show where
            )

    def stop(self, deadline: float) -> None:
        """Finish queued items until ``deadline`` (monotonic), then finalize the sink."""
        # The end marker must not be evicted by a full queue: wait for room first.
        while len(self.queue) >= self.queue.maxsize and time.monotonic() < deadline:
            time.sleep(0.01)
        if time.monotonic() >= deadline:
            dropped = len(self.queue.drain())
            if dropped:
                log.warning(
                    "sink %s: shutdown deadline, %d results not written", self.name, dropped
                )
        self.queue.put(_END)
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            log.warning("sink %s did not drain before the deadline", self.name)
            self.queue.drain()
            self.queue.put(_END)
            self._thread.join(2.0)
        try:
            self.sink.stop()
        except Exception as e:  # finalizing one sink must not stop the others
            self._failed(e)
