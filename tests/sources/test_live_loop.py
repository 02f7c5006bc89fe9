"""The reconnect loop of LiveSource, driven by real sessions that read vtest.avi.

Each session decodes a few frames of the real clip and then ends, as a camera
that drops its connection would; no network is involved, so the state machine
(events, generation, index, backoff, stop) is checked exactly and fast.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import numpy as np
import pytest

from edgewatch.config import SourceConfig
from edgewatch.errors import SourceError
from edgewatch.metrics import Metrics
from edgewatch.sources.live import LiveSource, Session, SourceEndedError
from edgewatch.types import EventKind, SourceEvent, SourceState

PASSWORD = "Crash-pw9"


class ClipSession(Session):
    """Decodes ``n`` frames of a real file, then ends."""

    def __init__(self, path: Path, n: int) -> None:
        self._container = av.open(str(path))
        self._n = n
        self.description = "clip"

    def read(self, stopping: Callable[[], bool]) -> Iterator[tuple[np.ndarray, float, float]]:
        for i, f in enumerate(self._container.decode(video=0)):
            if i >= self._n or stopping():
                return
            yield f.to_ndarray(format="bgr24"), float(f.time or 0.0), 1.0

    def close(self) -> None:
        self._container.close()


class ClipSource(LiveSource):
    """Fails ``fail_first`` connection attempts, then serves sessions of ``n`` frames."""

    def __init__(
        self,
        cfg: SourceConfig,
        path: Path,
        n: int,
        fail_first: int = 0,
        on_event: Callable[[SourceEvent], None] | None = None,
    ) -> None:
        super().__init__(cfg, Metrics(), on_event)
        self.path, self.n, self.fail_left = path, n, fail_first
        self.attempts: list[float] = []

    def connect(self) -> Session:
        self.attempts.append(time.monotonic())
        if self.fail_left > 0:
            self.fail_left -= 1
            raise SourceEndedError("camera not ready")
        return ClipSession(self.path, self.n)


class CrashingSource(LiveSource):
    def connect(self) -> Session:
        raise RuntimeError(f"bug while opening {self.cfg.uri}")


def cfg(**kw: object) -> SourceConfig:
    base: dict[str, object] = {"reconnect": {"initial": 0.05, "max": 0.2, "factor": 2, "jitter": 0}}
    base.update(kw)
    return SourceConfig(id="clip", uri="rtsp://cam.invalid/x", **base)


def test_sessions_that_end_reconnect_with_growing_generation(vtest_path: Path) -> None:
    events: list[SourceEvent] = []
    src = ClipSource(cfg(max_frames=12), vtest_path, n=5, on_event=events.append)
    frames = list(src.frames(threading.Event()))
    src.close()
    assert [f.index for f in frames] == list(range(12))
    assert [f.generation for f in frames] == [0] * 5 + [1] * 5 + [2] * 2
    assert [f.pts for f in frames] == pytest.approx([(i % 5) / 10 for i in range(12)])
    kinds = [e.kind for e in events]
    assert kinds == [
        EventKind.CONNECTED,
        EventKind.LOST,
        EventKind.RECONNECTED,
        EventKind.LOST,
        EventKind.RECONNECTED,
        EventKind.ENDED,
    ]
    assert events[1].detail == "stream ended by the server (rtsp://cam.invalid/x)"
    assert src.metrics.counter("edgewatch_reconnects_total", source="clip") == 2
    assert src.state is SourceState.ENDED and src.reconnects == 2


def test_backoff_grows_until_a_frame_then_resets(vtest_path: Path) -> None:
    events: list[SourceEvent] = []
    src = ClipSource(cfg(max_frames=6), vtest_path, n=3, fail_first=4, on_event=events.append)
    frames = list(src.frames(threading.Event()))
    src.close()
    gaps = [b - a for a, b in zip(src.attempts, src.attempts[1:], strict=False)]
    # four failures: 0.05, 0.1, 0.2, 0.2 (cap); after frames flowed it starts again at 0.05
    assert gaps == pytest.approx([0.05, 0.1, 0.2, 0.2, 0.05], abs=0.04)
    assert [e.kind for e in events] == [
        EventKind.FAILED,
        EventKind.CONNECTED,
        EventKind.LOST,
        EventKind.RECONNECTED,
        EventKind.ENDED,
    ]
    assert [f.generation for f in frames] == [0, 0, 0, 1, 1, 1]


def test_stop_ends_frames_and_close_joins_the_worker(vtest_path: Path) -> None:
    threads = threading.active_count()
    src = ClipSource(cfg(), vtest_path, n=1000)
    stop = threading.Event()
    got = 0
    for _ in src.frames(stop):
        got += 1
        if got == 3:
            stop.set()
    src.close()
    assert got == 3 and src.state is SourceState.STOPPED
    assert threading.active_count() == threads


def test_a_crashing_worker_surfaces_a_masked_source_error(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    src = CrashingSource(
        SourceConfig(id="bad", uri=f"rtsp://u:{PASSWORD}@127.0.0.1:9/x"), Metrics()
    )
    with pytest.raises(
        SourceError, match=r"worker crashed: RuntimeError\('bug while opening rtsp://u:\*\*\*@"
    ) as err:
        list(src.frames(threading.Event()))
    src.close()
    assert PASSWORD not in str(err.value) and PASSWORD not in caplog.text
    assert "Traceback" in caplog.text  # the (masked) traceback is kept for debugging
