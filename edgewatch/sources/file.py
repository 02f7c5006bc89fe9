"""Video files decoded with PyAV (FFmpeg), with threaded decoding.

Frames carry the decoded-frame ``index`` (0-based, counting every decoded frame
over the source's life, so frames skipped by the ``fps`` limit leave gaps),
``pts`` in seconds of stream time (from the frame's PTS; ``index / fps`` when the
file has none; it restarts at each loop, when ``generation`` grows by one),
``wall_time`` as the Unix time the frame was decoded, and a BGR uint8 image.

A damaged file yields every frame that can be decoded: undecodable packets,
packets the demuxer flags corrupt (the half-written last one of a cut file) and
frames flagged corrupt are skipped, counted in
``edgewatch_decode_errors_total{source=...}`` and logged (rate-limited). A file
that cannot be opened at all raises :class:`~edgewatch.errors.SourceError`; for
an MP4/MOV cut off before its ``moov`` index was written, the message says so.
"""

from __future__ import annotations

import logging
import math
import os
import struct
import threading
import time
from collections.abc import Iterator
from fractions import Fraction

import av
import av.container
import av.error
import av.video

from edgewatch.config import SourceConfig
from edgewatch.errors import SourceError
from edgewatch.metrics import Metrics
from edgewatch.sources.base import EventCallback, Source
from edgewatch.sources.pacing import Pacer, RateLimitedLog, RateLimiter
from edgewatch.types import EventKind, Frame, SourceState

log = logging.getLogger(__name__)

#: Demux errors in a row after which the rest of the file is given up.
MAX_CONSECUTIVE_ERRORS = 100
#: Frame rate assumed when a stream declares none.
DEFAULT_FPS = 30.0


def av_reason(exc: BaseException) -> str:
    """The FFmpeg reason of a PyAV error without the file name PyAV appends."""
    strerror = getattr(exc, "strerror", None)
    return str(strerror) if strerror else str(exc)


def open_file(
    path: str, decode_threads: int = 0
) -> tuple[av.container.InputContainer, av.video.VideoStream]:
    """Open ``path`` and its first video stream with threaded decoding.

    ``decode_threads`` 0 lets FFmpeg choose. Raises :class:`SourceError` when the
    file cannot be opened or holds no video.
    """
    try:
        container = av.open(path, mode="r")
    except (av.error.FFmpegError, OSError) as exc:
        hint = ""
        if isinstance(exc, av.error.InvalidDataError) and mp4_without_moov(path):
            hint = (
                " (an MP4/MOV file without its 'moov' index: the recording was cut off "
                "before it was finalised)"
            )
        raise SourceError(f"cannot open video file {path!r}: {av_reason(exc)}{hint}") from None
    if not container.streams.video:
        container.close()
        raise SourceError(f"video file {path!r} has no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    stream.codec_context.thread_count = decode_threads
    # Flag (do not hide) frames the decoder had to conceal, so they are counted.
    stream.codec_context.options = {"err_detect": "bitstream+buffer"}
    return container, stream


def mp4_without_moov(path: str) -> bool:
    """True for an MP4/MOV file (first box ``ftyp``) whose top-level boxes end, or
    run past the end of the file, without a ``moov`` box: a recording cut off
    before the muxer wrote its index at the end.
    """
    try:
        with open(path, "rb") as f:
            end = os.fstat(f.fileno()).st_size
            pos = 0
            while pos + 8 <= end:
                f.seek(pos)
                head = f.read(16)
                size, kind = struct.unpack(">I4s", head[:8])
                if (pos == 0 and kind != b"ftyp") or kind == b"moov":
                    return False
                if size == 1 and len(head) == 16:
                    size = struct.unpack(">Q", head[8:])[0]
                elif size == 0:  # the box runs to the end of the file
                    break
                if size < 8:
                    return False  # not a box structure
                pos += size
            return pos > 0
    except OSError:
        return False


def stream_fps(stream: av.video.VideoStream, fallback: float = DEFAULT_FPS) -> float:
    """The nominal frame rate of ``stream`` (frames/s), ``fallback`` if undeclared."""
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            value = float(rate)
            if 0 < value <= 1000:
                return value
    return fallback


def expected_total(
    frames: int, fps: float, limit: float | None, max_frames: int | None, loop: bool
) -> int:
    """How many frames a file source will yield; 0 when unknown.

    ``frames`` is the container's count (0 if unknown), ``fps`` the stream rate,
    ``limit`` the ``fps`` cap, ``max_frames`` the cap on frames.

    >>> expected_total(795, 10.0, None, None, False), expected_total(795, 10.0, 2.5, None, False)
    (795, 199)
    >>> expected_total(795, 10.0, None, 100, True), expected_total(0, 10.0, None, None, True)
    (100, 0)
    """
    n = 0 if loop else frames
    if n and limit and fps > limit:
        n = math.ceil(n * limit / fps)
    if max_frames is not None:
        n = min(n, max_frames) if n else max_frames
    return n


class FileSource(Source):
    """A video file (anything FFmpeg demuxes), optionally paced, looped and rate-limited."""

    def __init__(
        self, cfg: SourceConfig, metrics: Metrics, on_event: EventCallback | None = None
    ) -> None:
        super().__init__(cfg, metrics, on_event)
        self.fps = 0.0
        #: Frames this source will yield (for progress bars); 0 when unknown or looping.
        self.total_frames = 0
        self.generation = 0
        self.decode_errors = 0
        self.last_decode_ms = 0.0
        self._index = 0
        self._emitted = 0
        self._pacer = Pacer()
        self._limiter = RateLimiter(cfg.fps)
        self._errlog = RateLimitedLog(log)
        self._container: av.container.InputContainer | None = None

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        """Decode the file (and loop it if asked) until its end, ``max_frames`` or ``stop``."""
        first = True
        while not stop.is_set():
            container, stream = open_file(self.cfg.uri, self.cfg.decode_threads)
            self._container = container
            try:
                self.fps = stream_fps(stream, self.cfg.fps or DEFAULT_FPS)
                if first:
                    self.total_frames = expected_total(
                        stream.frames, self.fps, self.cfg.fps, self.cfg.max_frames, self.cfg.loop
                    )
                    self.set_state(
                        SourceState.STREAMING, f"{stream.codec_context.name} {self.fps:g} fps"
                    )
                    self.emit(
                        EventKind.CONNECTED,
                        f"{stream.codec_context.name} {stream.width}x{stream.height}",
                    )
                    first = False
                before = self._index
                yield from self._play(container, stream, stop)
            finally:
                self._container = None
                container.close()
            if stop.is_set() or self._done() or not self.cfg.loop or self._index == before:
                break
            self.generation += 1
            self._pacer.reset()
            self._limiter.reset()
        if stop.is_set():
            self.set_state(SourceState.STOPPED, "stopped")
        else:
            detail = f"{self._index} frames decoded, {self.decode_errors} decode errors"
            self.set_state(SourceState.ENDED, detail)
            self.emit(EventKind.ENDED, detail)

    def close(self) -> None:
        """Close the file if :meth:`frames` was abandoned before its end (same thread)."""
        container, self._container = self._container, None
        if container is not None:
            container.close()

    def _done(self) -> bool:
        return self.cfg.max_frames is not None and self._emitted >= self.cfg.max_frames

    def _play(
        self,
        container: av.container.InputContainer,
        stream: av.video.VideoStream,
        stop: threading.Event,
    ) -> Iterator[Frame]:
        time_base: Fraction | None = stream.time_base
        pass_index = 0
        for vframe, decode_s in self._decode(container, stream, stop):
            index, pass_index = self._index, pass_index + 1
            self._index += 1
            if vframe.pts is not None and time_base:
                pts = float(vframe.pts * time_base)
            else:
                pts = (pass_index - 1) / self.fps
            if not self._limiter.keep(pts):
                continue
            if self.cfg.paced and not self._pacer.wait(pts, stop):
                return
            t0 = time.perf_counter()
            image = vframe.to_ndarray(format="bgr24")
            decode_s += time.perf_counter() - t0
            self.last_decode_ms = decode_s * 1000.0
            yield Frame(
                self.id,
                index,
                pts,
                time.time(),
                image,
                self.generation,
                self.fps,
                self.last_decode_ms,
            )
            self._emitted += 1
            if self._done() or stop.is_set():
                return

    def _decode(
        self,
        container: av.container.InputContainer,
        stream: av.video.VideoStream,
        stop: threading.Event,
    ) -> Iterator[tuple[av.VideoFrame, float]]:
        """Yield ``(frame, seconds spent demuxing and decoding it)``, skipping bad data."""
        packets = container.demux(stream)
        consecutive = 0
        spent = 0.0
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                packet = next(packets)
            except StopIteration:
                return
            except av.error.FFmpegError as exc:
                consecutive += 1
                self._decode_error("demux", exc)
                if consecutive >= MAX_CONSECUTIVE_ERRORS:
                    log.error(
                        "source %s: %d demux errors in a row, giving up the rest of %r",
                        self.id,
                        consecutive,
                        self.cfg.uri,
                    )
                    return
                packets = container.demux(stream)  # resume after the bad data
                continue
            if packet.is_corrupt and packet.size:
                # Flagged by the demuxer, e.g. cut short at the end of a truncated file.
                # Skipped undecoded: a frame-threaded decoder failing on it would also
                # drop the good frames still in flight, silently. It takes no index:
                # frames in flight come out after it, in their own order.
                spent += time.perf_counter() - t0
                self._decode_error("demux", "packet flagged corrupt (truncated or damaged)")
                continue
            try:
                decoded = packet.decode()
            except av.error.FFmpegError as exc:
                self._decode_error("decode", exc)
                continue
            finally:
                spent += time.perf_counter() - t0
            consecutive = 0
            for vframe in decoded:
                if vframe.is_corrupt:
                    self._index += 1  # decoded, but damaged: skipped, keeps its number
                    self._decode_error("decode", "frame flagged corrupt")
                    continue
                yield vframe, spent
                spent = 0.0

    def _decode_error(self, where: str, exc: BaseException | str) -> None:
        self.decode_errors += 1
        self.metrics.inc("edgewatch_decode_errors_total", source=self.id)
        reason = av_reason(exc) if isinstance(exc, BaseException) else exc
        self._errlog.warning(
            "source %s: %s error in %r: %s (%d so far)",
            self.id,
            where,
            self.cfg.uri,
            reason,
            self.decode_errors,
        )
