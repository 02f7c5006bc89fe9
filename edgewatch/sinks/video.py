"""Annotated video sink: one file per source, encoded with PyAV.

H.264 (libx264, ``yuv420p``, ``crf`` from the config, preset ``veryfast``) by
default; ``codec`` may name any PyAV encoder (``mpeg4``, ``libx265``,
``libvpx-vp9``, ``mjpeg``, ``h264_nvenc``...). The container follows the
file extension (``.mp4``, ``.mkv``, ``.avi``, ...).

Timing: the output has a constant frame rate (``fps`` from the config, else
the source's nominal rate, else 30). Each frame's output timestamp follows its
source ``pts`` so that frames dropped upstream leave gaps instead of speeding
the video up; a new source generation (reconnect or loop), a backwards step or
a jump of more than :data:`MAX_GAP_S` re-anchors the clock right after the
previous frame.

Frames are drawn with :class:`edgewatch.annotate.Annotator`. Odd widths or
heights are padded by one black pixel on the right/bottom (4:2:0 chroma needs
even sizes); a source whose resolution changes is resized to the first size.
:meth:`VideoSink.stop` flushes the encoder and writes the trailer, so a file
stopped early (SIGTERM) is playable. A process killed with SIGKILL leaves an
MP4 without its index; ``.mkv`` files stay readable up to the last cluster.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from edgewatch.annotate import Annotator
from edgewatch.config import VideoSinkConfig, expand_path
from edgewatch.errors import SinkError
from edgewatch.metrics import Metrics
from edgewatch.sinks.base import Sink
from edgewatch.types import Frame, FrameResult

log = logging.getLogger(__name__)

#: Frame rate used when neither the config nor the source gives one.
DEFAULT_FPS = 30.0
#: A pts jump larger than this (seconds) re-anchors the output clock.
MAX_GAP_S = 10.0
#: Encoders that take x264-style ``crf`` and ``preset`` options.
_X26X = frozenset({"libx264", "libx265"})


def even_size(width: int, height: int) -> tuple[int, int]:
    """The frame size after padding odd sides to even.

    >>> even_size(101, 75), even_size(640, 480)
    ((102, 76), (640, 480))
    """
    return width + (width & 1), height + (height & 1)


def fps_fraction(fps: float) -> Fraction:
    """A frame rate as the exact fraction codecs want (NTSC rates recovered).

    >>> fps_fraction(25.0), fps_fraction(30000 / 1001), fps_fraction(12.5)
    (Fraction(25, 1), Fraction(30000, 1001), Fraction(25, 2))
    """
    return Fraction(fps).limit_denominator(1001)


def _pick_pix_fmt(codec: av.Codec) -> str:
    """The encoder's own first choice when it is 4:2:0 (``yuvj420p`` for MJPEG), else yuv420p."""
    formats = [f.name for f in (codec.video_formats or ())]
    if not formats:
        return "yuv420p"
    if formats[0] in ("yuv420p", "yuvj420p", "nv12") or "yuv420p" not in formats:
        return formats[0]
    return "yuv420p"


@dataclass
class _Clock:
    """Maps source pts (seconds) to strictly increasing output frame numbers."""

    rate: Fraction
    last: int = -1
    anchor_out: int = 0
    anchor_pts: float = 0.0
    generation: int = field(default=-1)

    def next_pts(self, frame: Frame) -> int:
        if frame.generation != self.generation:
            self._anchor(frame)
        out = self.anchor_out + round((frame.pts - self.anchor_pts) * float(self.rate))
        if out <= self.last or out - self.last > MAX_GAP_S * float(self.rate):
            self._anchor(frame)
            out = self.anchor_out
        self.last = out
        return out

    def _anchor(self, frame: Frame) -> None:
        self.generation = frame.generation
        self.anchor_out = self.last + 1
        self.anchor_pts = frame.pts


class _Writer:
    """One open output file: container, stream and clock."""

    def __init__(self, path: Path, cfg: VideoSinkConfig, frame: Frame) -> None:
        self.path = path
        fps = cfg.fps or frame.fps or DEFAULT_FPS
        if not (cfg.fps or frame.fps):
            log.warning("%s: source %s has no frame rate, writing %g fps",
                        path, frame.source_id, fps)
        self.size = even_size(frame.width, frame.height)
        try:
            codec = av.Codec(cfg.codec, "w")
        except (av.FFmpegError, ValueError) as e:
            raise SinkError(f"video sink: unknown encoder {cfg.codec!r} ({e})") from None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.container = av.open(str(path), mode="w")
        except (av.FFmpegError, OSError, ValueError) as e:
            raise SinkError(f"cannot open video file {path} for writing: {e}") from None
        try:
            self.stream = self._add_stream(codec, fps, cfg)
        except (av.FFmpegError, ValueError) as e:
            self.container.close()
            raise SinkError(f"{path}: cannot set up encoder {codec.name}: {e}") from None
        self.clock = _Clock(fps_fraction(fps))
        self.frames = 0
        log.info("writing %s (%s %dx%d @ %g fps)", path, codec.name, *self.size, fps)

    def _add_stream(self, codec: av.Codec, fps: float, cfg: VideoSinkConfig) -> av.VideoStream:
        options = {"crf": str(cfg.crf), "preset": "veryfast"} if codec.name in _X26X else {}
        stream = self.container.add_stream(codec.name, rate=fps_fraction(fps), options=options)
        if not isinstance(stream, av.VideoStream):
            raise SinkError(f"{codec.name} is not a video encoder")
        stream.width, stream.height = self.size
        stream.pix_fmt = _pick_pix_fmt(codec)
        return stream

    def _fit(self, image: np.ndarray) -> np.ndarray:
        w, h = self.size
        ih, iw = image.shape[:2]
        if (iw, ih) == (w, h):
            return image
        if even_size(iw, ih) == (w, h):
            return cv2.copyMakeBorder(image, 0, h - ih, 0, w - iw, cv2.BORDER_CONSTANT, value=0)
        return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)

    def encode(self, image: np.ndarray, frame: Frame) -> None:
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(self._fit(image)), format="bgr24")
        vf = vf.reformat(format=self.stream.pix_fmt)
        vf.pts = self.clock.next_pts(frame)
        vf.time_base = 1 / self.clock.rate
        try:
            self.container.mux(self.stream.encode(vf))
        except (av.FFmpegError, OSError, ValueError) as e:
            raise SinkError(f"cannot write {self.path}: {e}") from None
        self.frames += 1

    def close(self) -> None:
        try:
            self.container.mux(self.stream.encode(None))
        except (av.FFmpegError, OSError, ValueError) as e:
            raise SinkError(f"cannot finish {self.path}: {e}") from None
        finally:
            self.container.close()
        log.info("closed %s (%d frames)", self.path, self.frames)


class VideoSink(Sink):
    """Writes annotated frames of each source to its own video file."""

    needs_image = True

    def __init__(self, cfg: VideoSinkConfig, metrics: Metrics, *, name: str = "video") -> None:
        super().__init__(name, metrics)
        self.cfg = cfg
        self._annotator = Annotator(draw_labels=cfg.draw_labels)
        self._writers: dict[str, _Writer] = {}
        self._owners: dict[Path, str] = {}

    def _writer_for(self, frame: Frame) -> _Writer:
        w = self._writers.get(frame.source_id)
        if w is not None:
            return w
        path = expand_path(self.cfg.path, frame.source_id)
        owner = self._owners.setdefault(path, frame.source_id)
        if owner != frame.source_id:
            raise SinkError(
                f"video sink: {self.cfg.path} has no {{source}} but sources {owner!r} "
                f"and {frame.source_id!r} both write to {path}"
            )
        w = self._writers[frame.source_id] = _Writer(path, self.cfg, frame)
        return w

    def write(self, result: FrameResult) -> None:
        frame = result.frame
        writer = self._writer_for(frame)
        image = self._annotator.annotate(frame.image, result.detections, result.class_names)
        writer.encode(image, frame)

    def stop(self) -> None:
        errors: list[SinkError] = []
        for w in self._writers.values():
            try:
                w.close()
            except SinkError as e:
                errors.append(e)
        self._writers.clear()
        if errors:
            raise errors[0]
