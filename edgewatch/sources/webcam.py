"""Webcams (``uri: 0`` or ``/dev/videoN``) through OpenCV's VideoCapture.

The source asks for ``capture.width/height/fps/fourcc`` and reports what the
device granted: in the log (a warning when it differs from the request) and in
the session description, which becomes the STREAMING state detail on
``/healthz`` and the CONNECTED event's detail, e.g. ``/dev/video0 1280x720 30
fps MJPG (asked 1920x1080 60 fps MJPG)``. A device that disappears fails the
session (its node is gone, or no frame for ``stall_timeout`` s) and is reopened
with the same backoff as network streams. Frames have ``pts`` = seconds since
the session opened (monotonic clock).

Devices are reached through :class:`CaptureDevices` (by default OpenCV's
``VideoCapture`` with V4L2 on Linux and the ``/dev`` node's existence).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from edgewatch.config import CaptureRequest, SourceConfig
from edgewatch.errors import SourceError
from edgewatch.metrics import Metrics
from edgewatch.sources.base import EventCallback
from edgewatch.sources.images import to_bgr8
from edgewatch.sources.live import LiveSource, Session, SourceStalledError

log = logging.getLogger(__name__)


def device_of(uri: str) -> int | str:
    """The VideoCapture argument for a webcam URI: an index or a device path.

    >>> device_of("0"), device_of("/dev/video2")
    (0, '/dev/video2')
    """
    return int(uri) if uri.isdigit() else uri


def _backend() -> int:
    return cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY


class VideoCaptureLike(Protocol):
    """The part of ``cv2.VideoCapture`` the source uses."""

    def isOpened(self) -> bool: ...
    def get(self, prop_id: int) -> float: ...
    def set(self, prop_id: int, value: float) -> bool: ...
    def grab(self) -> bool: ...
    def retrieve(self) -> tuple[bool, np.ndarray | None]: ...
    def release(self) -> None: ...


class CaptureDevices(Protocol):
    """Where capture devices come from (the seam a test without a camera uses)."""

    def exists(self, name: str) -> bool:
        """False when the device (e.g. ``/dev/video0``) is known to be absent."""
        ...

    def open(self, device: int | str) -> VideoCaptureLike:
        """A capture of ``device`` (an index or a path); check ``isOpened()``."""
        ...


class OpenCvDevices:
    """Real devices: OpenCV's VideoCapture (V4L2 on Linux); on Linux a missing
    ``/dev`` node means the device is absent."""

    def exists(self, name: str) -> bool:
        return not sys.platform.startswith("linux") or Path(name).exists()

    def open(self, device: int | str) -> VideoCaptureLike:
        return cv2.VideoCapture(device, _backend())


def fourcc_text(code: int) -> str:
    """A FOURCC integer as its four characters, ``?`` for 0.

    >>> fourcc_text(cv2.VideoWriter.fourcc(*"MJPG")), fourcc_text(0)
    ('MJPG', '?')
    """
    return "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4)) if code else "?"


def asked_text(want: CaptureRequest) -> str:
    """The requested values, as the session description writes granted ones.

    >>> asked_text(CaptureRequest(width=1920, height=1080, fps=60, fourcc="MJPG"))
    '1920x1080 60 fps MJPG'
    >>> asked_text(CaptureRequest(width=640)), asked_text(CaptureRequest())
    ('640x?', '')
    """
    parts = []
    if want.width or want.height:
        parts.append(f"{want.width or '?'}x{want.height or '?'}")
    if want.fps:
        parts.append(f"{want.fps:g} fps")
    if want.fourcc:
        parts.append(want.fourcc)
    return " ".join(parts)


class CvSession(Session):
    """One open VideoCapture; ``width``, ``height``, ``fps``, ``fourcc`` are what it granted."""

    def __init__(
        self,
        cap: VideoCaptureLike,
        cfg: SourceConfig,
        name: str,
        devices: CaptureDevices | None = None,
    ) -> None:
        self._cap = cap
        self._cfg = cfg
        self._name = name
        self._devices = devices or OpenCvDevices()
        self.width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fourcc = fourcc_text(int(cap.get(cv2.CAP_PROP_FOURCC)))
        self.description = f"{self.width}x{self.height} {self.fps:g} fps {self.fourcc}"

    def differs_from(self, want: CaptureRequest) -> bool:
        """True when the device did not grant some requested value."""
        return bool(
            (want.width and want.width != self.width)
            or (want.height and want.height != self.height)
            or (want.fps and abs(want.fps - self.fps) > 0.01 * want.fps)
            or (want.fourcc and want.fourcc.upper() != self.fourcc.upper())
        )

    def read(self, stopping: Callable[[], bool]) -> Iterator[tuple[np.ndarray, float, float]]:
        t0 = time.monotonic()
        last = t0
        stall = self._cfg.stall_timeout
        while not stopping():
            ok = self._cap.grab()  # waits for the device
            now = time.monotonic()
            if ok:
                t_dec = time.perf_counter()
                ok, image = self._cap.retrieve()  # decodes (e.g. MJPG)
                if ok and image is not None:
                    last = now
                    image = to_bgr8(image)
                    yield image, now - t0, (time.perf_counter() - t_dec) * 1000.0
                    continue
            if now - last > stall:
                raise SourceStalledError(f"stalled: no frame for {stall:g} s from {self._name}")
            if not self._devices.exists(self._name):
                raise SourceError(f"device {self._name} disappeared")
            time.sleep(0.05)

    def close(self) -> None:
        self._cap.release()


class WebcamSource(LiveSource):
    """A local capture device with reopen-on-failure; see the module doc.

    ``devices`` defaults to :class:`OpenCvDevices`.
    """

    def __init__(
        self,
        cfg: SourceConfig,
        metrics: Metrics,
        on_event: EventCallback | None = None,
        devices: CaptureDevices | None = None,
    ) -> None:
        super().__init__(cfg, metrics, on_event)
        self.devices = devices or OpenCvDevices()
        self.device = device_of(cfg.uri)
        #: The device node (``/dev/video0`` for index 0): what states and events name.
        self.device_name = (
            f"/dev/video{self.device}" if isinstance(self.device, int) else self.device
        )
        self.masked_uri = self.device_name

    @property
    def join_timeout(self) -> float:
        return self.cfg.stall_timeout + 2.0

    def connect(self) -> CvSession:
        name = self.device_name
        if not self.devices.exists(name):
            raise SourceError(f"capture device {name} not found")
        cap = self.devices.open(self.device)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open capture device {name}")
        self._request(cap)
        session = CvSession(cap, self.cfg, name, self.devices)
        self._report_granted(name, session)
        if session.fps:
            self.fps = session.fps
        return session

    def _report_granted(self, name: str, session: CvSession) -> None:
        """Log what the device granted; a refused request also goes into the description."""
        want = self.cfg.capture
        asked = asked_text(want)
        if not asked:
            log.info("source %s: %s opened at %s", self.id, name, session.description)
        elif session.differs_from(want):
            log.warning(
                "source %s: %s granted %s, not the requested %s",
                self.id,
                name,
                session.description,
                asked,
            )
            session.description += f" (asked {asked})"
        else:
            log.info("source %s: %s granted %s as requested", self.id, name, session.description)

    def _request(self, cap: VideoCaptureLike) -> None:
        want = self.cfg.capture
        if want.fourcc:
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*want.fourcc))
        if want.width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, want.width)
        if want.height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, want.height)
        if want.fps:
            cap.set(cv2.CAP_PROP_FPS, want.fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
