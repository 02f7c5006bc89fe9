"""WebcamSource without a camera: a missing device backs off, reports it, and stops promptly.

(CI boxes have no /dev/video*; reading from a real device is exercised by
``edgewatch run`` on hardware.)
"""

from __future__ import annotations

import threading
import time

import pytest

from edgewatch.config import SourceConfig
from edgewatch.metrics import Metrics
from edgewatch.sources import build_source
from edgewatch.sources.webcam import WebcamSource, device_of
from edgewatch.types import EventKind, SourceEvent, SourceState


@pytest.mark.parametrize(
    ("uri", "expected"), [("0", 0), ("12", 12), ("/dev/video3", "/dev/video3")]
)
def test_device_of(uri: str, expected: int | str) -> None:
    assert device_of(uri) == expected


@pytest.mark.parametrize("uri", ["97", "/dev/video98"])
def test_missing_device_backs_off_and_stops(uri: str) -> None:
    events: list[SourceEvent] = []
    cfg = SourceConfig(id="webcam", uri=uri, reconnect={"initial": 0.1, "max": 0.2, "jitter": 0})
    src = build_source(cfg, Metrics(), events.append)
    assert isinstance(src, WebcamSource) and src.live
    stop = threading.Event()
    out: list[object] = []
    t = threading.Thread(target=lambda: out.extend(src.frames(stop)), name="consumer")
    t.start()
    try:
        t0 = time.monotonic()
        while src.metrics.counter("edgewatch_reconnects_total", source="webcam") < 2:
            assert time.monotonic() - t0 < 5, src.state_detail
            time.sleep(0.02)
        while src.state is not SourceState.BACKOFF:
            assert time.monotonic() - t0 < 5, src.state_detail
            time.sleep(0.005)
        name = uri if uri.startswith("/dev/") else f"/dev/video{uri}"
        assert src.state_detail.startswith(f"capture device {name} not found; retry ")
        assert [e.kind for e in events] == [EventKind.FAILED]
    finally:
        t1 = time.monotonic()
        stop.set()
        t.join(5)
        src.close()
    assert time.monotonic() - t1 < 1.0 and out == []
    assert src.state is SourceState.STOPPED


@pytest.mark.parametrize(("uri", "kind_uri"), [(0, "0"), (2, "2"), ("/dev/video1", "/dev/video1")])
def test_yaml_int_uri_is_a_webcam(uri: int | str, kind_uri: str) -> None:
    cfg = SourceConfig(id="w", uri=uri)  # YAML `uri: 0` arrives as an int
    assert cfg.uri == kind_uri and cfg.kind.value == "webcam" and cfg.live
    assert isinstance(build_source(cfg, Metrics()), WebcamSource)
