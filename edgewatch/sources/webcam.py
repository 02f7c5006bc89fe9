"""Webcams (``uri: 0`` or ``/dev/videoN``) through OpenCV's VideoCapture.

The source asks for ``capture.width/height/fps/fourcc`` and logs what the device
granted. A device that disappears fails the session (read error or no frame for
``stall_timeout`` s) and is reopened with the same backoff as network streams.
Frames have ``pts`` = seconds since the session opened (monotonic clock).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np

from edgewatch.config import SourceConfig
from edgewatch.errors import SourceError
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


class CvSession(Session):
    """One open VideoCapture."""

    def __init__(self, cap: cv2.VideoCapture, cfg: SourceConfig, name: str) -> None:
        self._cap = cap
        self._cfg = cfg
        self._name = name
        w = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        h = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        code = int(cap.get(cv2.CAP_PROP_FOURCC))
        fourcc = "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4)) if code else "?"
        self.description = f"{w}x{h} {self.fps:g} fps {fourcc}"

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
            if not Path(self._name).exists() and self._name.startswith("/dev/"):
                raise SourceError(f"device {self._name} disappeared")
            time.sleep(0.05)

    def close(self) -> None:
        self._cap.release()


class WebcamSource(LiveSource):
    """A local capture device with reopen-on-failure; see the module doc."""

    @property
    def join_timeout(self) -> float:
        return self.cfg.stall_timeout + 2.0

    def connect(self) -> CvSession:
        dev = device_of(self.cfg.uri)
        name = f"/dev/video{dev}" if isinstance(dev, int) else dev
        if sys.platform.startswith("linux") and not Path(name).exists():
            raise SourceError(f"capture device {name} not found")
        cap = cv2.VideoCapture(dev, _backend())
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open capture device {name}")
        self._request(cap)
        session = CvSession(cap, self.cfg, name)
        want = self.cfg.capture
        log.info(
            "source %s: %s granted %s (asked %sx%s %s fps %s)",
            self.id,
            name,
            session.description,
            want.width,
            want.height,
            want.fps,
            want.fourcc,
        )
        if session.fps:
            self.fps = session.fps
        return session

    def _request(self, cap: cv2.VideoCapture) -> None:
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
