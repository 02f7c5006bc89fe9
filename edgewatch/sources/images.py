"""A folder or glob of still images, read with OpenCV, as a frame sequence.

Files are taken in natural order (``img2`` before ``img10``). Frame ``index``
counts listed images (an unreadable one is skipped, counted in
``edgewatch_decode_errors_total`` and keeps its number); ``pts = index / fps``
seconds (``fps`` from the config, default 30); ``wall_time`` is the Unix time the
image was read; images are BGR uint8 (grey and 16-bit images are converted).
"""

from __future__ import annotations

import glob
import logging
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from edgewatch.config import SourceConfig
from edgewatch.errors import SourceError
from edgewatch.metrics import Metrics
from edgewatch.sources.base import EventCallback, Source
from edgewatch.sources.pacing import Pacer, RateLimitedLog
from edgewatch.types import EventKind, Frame, SourceState

log = logging.getLogger(__name__)

#: File name endings (lower case) that are listed as images.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
DEFAULT_FPS = 30.0

_DIGITS = re.compile(r"(\d+)")


def natural_key(path: str) -> tuple[tuple[int, int | str], ...]:
    """A sort key that orders digit runs by value: ``img2`` before ``img10``.

    >>> sorted(["img10.jpg", "img2.jpg", "Img1.jpg"], key=natural_key)
    ['Img1.jpg', 'img2.jpg', 'img10.jpg']
    """
    parts = _DIGITS.split(path.lower())
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in parts)


def list_images(uri: str) -> list[str]:
    """The image files of a directory or a glob pattern, in natural order."""
    p = Path(uri)
    if p.is_dir():
        names = [str(f) for f in p.iterdir() if f.is_file()]
    else:
        names = [f for f in glob.glob(uri, recursive=True) if Path(f).is_file()]
    return sorted((n for n in names if Path(n).suffix.lower() in IMAGE_SUFFIXES), key=natural_key)


def to_bgr8(image: np.ndarray) -> np.ndarray:
    """Convert a grey, BGRA or 16-bit image to HxWx3 BGR uint8."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


class ImageSource(Source):
    """Still images as frames; ``realtime`` paces them at ``fps``, ``loop`` restarts."""

    def __init__(
        self, cfg: SourceConfig, metrics: Metrics, on_event: EventCallback | None = None
    ) -> None:
        super().__init__(cfg, metrics, on_event)
        self.fps = cfg.fps or DEFAULT_FPS
        #: Images this source will yield at most (for progress bars); 0 when looping.
        self.total_frames = 0
        self.generation = 0
        self.decode_errors = 0
        self._errlog = RateLimitedLog(log)

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        """Read the images in natural order until the end, ``max_frames`` or ``stop``."""
        paths = list_images(self.cfg.uri)
        if not paths:
            raise SourceError(
                f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {self.cfg.uri!r}"
            )
        limit = self.cfg.max_frames
        total = 0 if self.cfg.loop else len(paths)
        self.total_frames = min(total, limit) if (total and limit) else (total or limit or 0)
        self.set_state(SourceState.STREAMING, f"{len(paths)} images")
        self.emit(EventKind.CONNECTED, f"{len(paths)} images")
        emitted = 0
        index = 0
        pacer = Pacer()
        while not stop.is_set():
            good = 0
            for n, path in enumerate(paths):
                if stop.is_set() or (limit is not None and emitted >= limit):
                    break
                frame_no, index = index, index + 1
                t0 = time.perf_counter()
                image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
                if image is None or image.size == 0:
                    self._bad(path)
                    continue
                image = to_bgr8(image)
                decode_ms = (time.perf_counter() - t0) * 1000.0
                pts = n / self.fps
                if self.cfg.paced and not pacer.wait(pts, stop):
                    break
                good += 1
                yield Frame(
                    self.id, frame_no, pts, time.time(), image, self.generation, self.fps, decode_ms
                )
                emitted += 1
            if (
                stop.is_set()
                or not self.cfg.loop
                or good == 0
                or (limit is not None and emitted >= limit)
            ):
                break
            self.generation += 1
            pacer.reset()
        self._finish(stop, emitted)

    def _finish(self, stop: threading.Event, emitted: int) -> None:
        if stop.is_set():
            self.set_state(SourceState.STOPPED, "stopped")
            return
        detail = f"{emitted} images read, {self.decode_errors} unreadable"
        self.set_state(SourceState.ENDED, detail)
        self.emit(EventKind.ENDED, detail)

    def _bad(self, path: str) -> None:
        self.decode_errors += 1
        self.metrics.inc("edgewatch_decode_errors_total", source=self.id)
        self._errlog.warning(
            "source %s: cannot read image %r, skipped (%d so far)",
            self.id,
            path,
            self.decode_errors,
        )
