"""WebcamSource: a missing device backs off, reports it, and stops promptly; reading,
granted-vs-requested reporting and reopening, through a fake device.

CI boxes have no /dev/video* (and no v4l2loopback), so the reading tests give
the source a fake :class:`~edgewatch.sources.webcam.CaptureDevices`: a device
node that can disappear and come back, and a VideoCapture-like object that
grants fixed values whatever is asked. Everything above that seam is real.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time

import cv2
import numpy as np
import pytest
from sources.sourcekit import Driver

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


class FakeDevice:
    """A device node and its driver: grants ``grant`` whatever is asked."""

    def __init__(self, name: str, width: int, height: int, fps: float, fourcc: str) -> None:
        self.name = name
        self.grant = {
            cv2.CAP_PROP_FRAME_WIDTH: float(width),
            cv2.CAP_PROP_FRAME_HEIGHT: float(height),
            cv2.CAP_PROP_FPS: fps,
            cv2.CAP_PROP_FOURCC: float(cv2.VideoWriter.fourcc(*fourcc)),
        }
        self.present = True
        self.asked: dict[int, float] = {}
        self.captures: list[FakeCapture] = []
        self.shot = 0  # frames delivered, over every capture


class FakeCapture:
    """The VideoCapture-like object: grab/retrieve deliver frames while the device is there."""

    def __init__(self, dev: FakeDevice) -> None:
        self.dev = dev
        self.released = False

    def isOpened(self) -> bool:
        return self.dev.present and not self.released

    def get(self, prop_id: int) -> float:
        return self.dev.grant.get(prop_id, 0.0)

    def set(self, prop_id: int, value: float) -> bool:
        self.dev.asked[prop_id] = value
        return True

    def grab(self) -> bool:
        time.sleep(0.01)
        return self.dev.present and not self.released

    def retrieve(self) -> tuple[bool, np.ndarray | None]:
        if not self.dev.present:
            return False, None
        self.dev.shot += 1
        h, w = int(self.dev.grant[cv2.CAP_PROP_FRAME_HEIGHT]), int(
            self.dev.grant[cv2.CAP_PROP_FRAME_WIDTH]
        )
        return True, np.full((h, w), self.dev.shot % 256, np.uint8)  # grey, as some drivers

    def release(self) -> None:
        self.released = True


class FakeDevices:
    def __init__(self, dev: FakeDevice) -> None:
        self.dev = dev
        self.opened: list[int | str] = []

    def exists(self, name: str) -> bool:
        return name == self.dev.name and self.dev.present

    def open(self, device: int | str) -> FakeCapture:
        self.opened.append(device)
        cap = FakeCapture(self.dev)
        self.dev.captures.append(cap)
        return cap


def _driver(uri: str, devices: FakeDevices, capture: dict) -> Driver:
    cfg = SourceConfig(
        id="cam", uri=uri, capture=capture, reconnect={"initial": 0.05, "max": 0.1, "jitter": 0}
    )
    return Driver(cfg, lambda c, m, on_event: WebcamSource(c, m, on_event, devices=devices))


@pytest.mark.parametrize(
    ("capture", "suffix", "level"),
    [
        # the driver falls back to what it can do: reported, with what was asked
        (
            {"width": 1920, "height": 1080, "fps": 60, "fourcc": "MJPG"},
            " (asked 1920x1080 60 fps MJPG)",
            logging.WARNING,
        ),
        ({"fourcc": "YUYV"}, " (asked YUYV)", logging.WARNING),
        # granted as asked, or nothing asked: no "(asked ...)"
        ({"width": 1280, "height": 720, "fps": 30, "fourcc": "MJPG"}, "", logging.INFO),
        ({}, "", logging.INFO),
    ],
)
def test_reads_frames_and_reports_granted_values(
    capture: dict, suffix: str, level: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edgewatch.sources.webcam")
    dev = FakeDevice("/dev/video0", 1280, 720, 30.0, "MJPG")
    devices = FakeDevices(dev)
    with _driver("0", devices, capture) as d:
        d.wait_for(lambda: len(d.frames) >= 3, 10, "3 frames")
        state, detail = d.src.state, d.src.state_detail
        worker = d.src._worker  # this source's thread: a slow machine may still
        assert worker is not None  # run an earlier test's source, logging alike
    granted = "/dev/video0 1280x720 30 fps MJPG"
    assert devices.opened == [0]  # the index, as VideoCapture takes it
    want = {
        cv2.CAP_PROP_FRAME_WIDTH: capture.get("width"),
        cv2.CAP_PROP_FRAME_HEIGHT: capture.get("height"),
        cv2.CAP_PROP_FPS: capture.get("fps"),
        cv2.CAP_PROP_FOURCC: cv2.VideoWriter.fourcc(*capture["fourcc"])
        if "fourcc" in capture
        else None,
    }
    assert dev.asked == {
        cv2.CAP_PROP_BUFFERSIZE: 1,
        **{k: v for k, v in want.items() if v is not None},
    }
    assert state is SourceState.STREAMING and detail == granted + suffix  # /healthz detail
    assert [(e.kind, e.detail) for e in d.events] == [(EventKind.CONNECTED, granted + suffix)]
    # One report of the granted values, from this source's own thread.
    ((levelno, message),) = {
        (r.levelno, r.getMessage())
        for r in caplog.records
        if r.name == "edgewatch.sources.webcam" and r.thread == worker.ident
    }
    assert levelno == level and "1280x720 30 fps MJPG" in message
    if suffix:
        assert message.endswith(f"not the requested {suffix[8:-1]}")
    f = d.frames
    assert [x.index for x in f[:3]] == [0, 1, 2] and {x.generation for x in f} == {0}
    assert all(x.image.shape == (720, 1280, 3) and x.image.dtype == np.uint8 for x in f)
    assert all(x.fps == 30.0 and x.source_id == "cam" for x in f)
    assert all(a.pts < b.pts for a, b in itertools.pairwise(f))
    assert all(cap.released for cap in dev.captures)  # close() released the capture


def test_reopens_after_the_device_disappears_and_returns() -> None:
    dev = FakeDevice("/dev/video4", 640, 480, 15.0, "YUYV")
    devices = FakeDevices(dev)
    with _driver("/dev/video4", devices, {}) as d:
        d.wait_for(lambda: len(d.frames) >= 3, 10, "first frames")
        dev.present = False  # unplugged
        d.wait_for(
            lambda: d.metrics.counter("edgewatch_reconnects_total", source="cam") >= 2,
            10,
            "retries while absent",
        )
        d.wait_for(lambda: d.src.state is SourceState.BACKOFF, 10, "backoff")
        absent = d.src.state_detail
        n = len(d.frames)
        dev.present = True  # plugged back in
        d.wait_for(lambda: len(d.frames) >= n + 3, 10, "frames after the return")
        back = d.src.state, d.src.state_detail
    events = d.events
    kinds = d.kinds()
    assert kinds == [EventKind.CONNECTED, EventKind.LOST, EventKind.RECONNECTED], events
    assert events[1].detail == "device /dev/video4 disappeared"
    assert absent.startswith("capture device /dev/video4 not found; retry ")
    assert events[2].detail.startswith("/dev/video4 640x480 15 fps YUYV after ")
    assert back == (SourceState.STREAMING, "/dev/video4 640x480 15 fps YUYV")
    assert len(devices.opened) == 2 and all(d == "/dev/video4" for d in devices.opened)
    assert all(cap.released for cap in dev.captures)  # nothing left open
    old = [f for f in d.frames if f.generation == 0]
    new = [f for f in d.frames if f.generation == 1]
    assert len(old) >= 3 and len(new) >= 3 and len(old) + len(new) == len(d.frames)
    indexes = [f.index for f in d.frames]
    assert indexes == sorted(set(indexes))  # frame numbers keep counting across the reopen
    assert d.src.state is SourceState.STOPPED
