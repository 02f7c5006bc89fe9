"""Network streams through PyAV: RTSP (TCP or UDP), HTTP(S) MJPEG and HLS.

Opening uses FFmpeg's low-latency demuxer flags (``flags=low_delay``, a small
``max_delay``, short probing and, for RTSP, ``fflags=nobuffer``), a socket I/O
``timeout`` in microseconds and PyAV's ``timeout=(open, read)`` interrupt, so
neither opening nor one read blocks longer than ``open_timeout`` /
``min(read_timeout, stall_timeout)`` seconds. Failures become typed errors with
readable, password-free messages: :class:`~edgewatch.errors.SourceAuthError`
(401/403), :class:`UnknownHostError`, :class:`SourceRefusedError`,
:class:`SourceTimeoutError`, :class:`SourceStalledError`.

Frame ``pts`` is the stream's presentation time in seconds (it restarts with
each connection); MJPEG over HTTP, whose demuxer invents timestamps, gets the
seconds since the connection opened, by arrival.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import av
import av.container
import av.error
import numpy as np

from edgewatch.config import SourceConfig, SourceKind
from edgewatch.errors import SourceAuthError, SourceError
from edgewatch.metrics import Metrics
from edgewatch.secrets import mask_uri
from edgewatch.sources.base import EventCallback
from edgewatch.sources.file import av_reason, stream_fps
from edgewatch.sources.live import (
    LiveSource,
    Session,
    SourceEndedError,
    SourceRefusedError,
    SourceStalledError,
    SourceTimeoutError,
    UnknownHostError,
)
from edgewatch.sources.pacing import RateLimitedLog

log = logging.getLogger(__name__)

#: Largest demuxer reorder delay for live streams, microseconds.
MAX_DELAY_US = 500_000
#: Probing limits for live streams (bytes, microseconds): enough for SPS/PPS.
PROBESIZE = 1_000_000
ANALYZE_US = 1_000_000
DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "rtmp": 1935, "http": 80, "https": 443}
#: Demuxers whose timestamps are invented (MJPEG over HTTP: a fixed 25 fps);
#: their frames get pts = seconds since the session opened, by arrival.
ARRIVAL_PTS_FORMATS = frozenset({"mpjpeg", "jpeg_pipe", "mjpeg"})


def av_options(cfg: SourceConfig) -> dict[str, str]:
    """The FFmpeg demuxer options for a live stream (all values strings).

    >>> from edgewatch.config import SourceConfig
    >>> o = av_options(SourceConfig(id="c", uri="rtsp://h/s", transport="udp", read_timeout=2))
    >>> o["rtsp_transport"], o["timeout"], o["fflags"]
    ('udp', '2000000', 'nobuffer')
    """
    io_timeout = min(cfg.read_timeout, cfg.stall_timeout)
    opts = {
        "flags": "low_delay",
        "max_delay": str(MAX_DELAY_US),
        "probesize": str(PROBESIZE),
        "analyzeduration": str(ANALYZE_US),
        "timeout": str(int(io_timeout * 1_000_000)),
    }
    if cfg.kind is SourceKind.RTSP:
        # Do not buffer (nor replay) what probing read: start at the live edge.
        # Not for HTTP, where it would drop whole HLS segments read while probing.
        opts["fflags"] = "nobuffer"
    if cfg.uri.lower().startswith(("rtsp://", "rtsps://")):
        opts["rtsp_transport"] = cfg.transport.value
    return opts


def host_port(uri: str) -> tuple[str, int]:
    """The host and port a stream URI connects to (default port by scheme)."""
    parts = urlsplit(uri)
    try:
        port = parts.port
    except ValueError:
        port = None
    return parts.hostname or "", port or DEFAULT_PORTS.get(parts.scheme.lower(), 0)


def resolve(uri: str) -> None:
    """Raise :class:`UnknownHostError` if the URI's host name does not resolve."""
    host, port = host_port(uri)
    if not host:
        raise SourceError(f"no host in stream URI {mask_uri(uri)}")
    try:
        socket.getaddrinfo(host, port or None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UnknownHostError(f"unknown host {host!r}: {exc.strerror} ({mask_uri(uri)})") from None


def classify(
    exc: BaseException, uri: str, phase: str, timeout: float, elapsed: float = 0.0
) -> SourceError:
    """Turn a PyAV/OS error into a typed :class:`SourceError` with a masked, readable message.

    ``phase`` is "open" or "read"; ``timeout`` the limit (s) that applied and
    ``elapsed`` how long the call took: FFmpeg reports a silent server as
    "invalid data" or an I/O error once its socket timeout fires, so a generic
    error that took the whole timeout is reported as a timeout.
    """
    where = mask_uri(uri)
    host, port = host_port(uri)
    reason = av_reason(exc)
    if isinstance(exc, (av.error.HTTPUnauthorizedError, av.error.HTTPForbiddenError)):
        unauthorized = isinstance(exc, av.error.HTTPUnauthorizedError)
        status = "401 Unauthorized" if unauthorized else "403 Forbidden"
        return SourceAuthError(f"wrong credentials: server answered {status} for {where}")
    if isinstance(exc, av.error.HTTPNotFoundError):
        return SourceError(f"stream not found: server answered 404 for {where}")
    if isinstance(exc, (av.error.HTTPClientError, av.error.HTTPServerError)):
        return SourceError(f"server error on {phase}: {reason} ({where})")
    if isinstance(exc, ConnectionRefusedError):
        return SourceRefusedError(f"connection refused by {host}:{port} ({where})")
    timed_out = elapsed >= timeout - 0.1 and isinstance(
        exc, (av.error.InvalidDataError, av.error.OSError, av.error.EOFError)
    )
    if timed_out or isinstance(exc, (av.error.ExitError, TimeoutError)):
        return SourceTimeoutError(
            f"timeout: no answer from {host}:{port} within {timeout:g} s on {phase} ({where})"
        )
    if isinstance(exc, av.error.EOFError):
        return SourceEndedError(f"stream ended by the server ({where})")
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        return SourceEndedError(f"connection lost: {reason} ({where})")
    return SourceError(f"cannot {phase} stream {where}: {reason}")


class AvSession(Session):
    """One open PyAV container reading one video stream."""

    def __init__(
        self, container: av.container.InputContainer, cfg: SourceConfig, owner: StreamSource
    ) -> None:
        self._container = container
        self._cfg = cfg
        self._owner = owner
        self._stream = container.streams.video[0]
        self._stream.thread_type = "SLICE"  # frame threading would add frames of latency
        self._stream.codec_context.thread_count = cfg.decode_threads
        cc = self._stream.codec_context
        self._arrival_pts = container.format.name in ARRIVAL_PTS_FORMATS
        self.fps = 0.0 if self._arrival_pts else stream_fps(self._stream, cfg.fps or 0.0)
        self.description = f"{cc.name} {cc.width}x{cc.height}"

    def read(self, stopping: Callable[[], bool]) -> Iterator[tuple[np.ndarray, float, float]]:
        """Decode frames; raise on error, end, or no frame for ``stall_timeout`` s."""
        stall = self._cfg.stall_timeout
        io_timeout = min(self._cfg.read_timeout, stall)
        time_base = self._stream.time_base
        t0 = last_frame = time.monotonic()
        packets = self._container.demux(self._stream)
        while not stopping():
            try:
                packet = next(packets)
            except StopIteration:
                raise SourceEndedError(
                    f"stream ended by the server ({self._owner.masked_uri})"
                ) from None
            except (av.error.FFmpegError, OSError) as exc:
                if time.monotonic() - last_frame >= stall - 0.05:
                    raise SourceStalledError(
                        f"stalled: no frame for {stall:g} s from {self._owner.masked_uri}"
                    ) from None
                raise classify(exc, self._cfg.uri, "read", io_timeout) from None
            t_dec = time.perf_counter()
            try:
                decoded = packet.decode()
            except av.error.FFmpegError as exc:
                self._owner.decode_error(exc)
                decoded = []
            for vframe in decoded:
                last_frame = time.monotonic()
                if self._arrival_pts or vframe.pts is None or not time_base:
                    pts = last_frame - t0
                else:
                    pts = float(vframe.pts * time_base)
                image = vframe.to_ndarray(format="bgr24")
                decode_ms = (time.perf_counter() - t_dec) * 1000.0
                yield image, pts, decode_ms
                t_dec = time.perf_counter()
            if time.monotonic() - last_frame > stall:
                where = self._owner.masked_uri
                raise SourceStalledError(
                    f"stalled: packets but no decodable frame for {stall:g} s from {where}"
                )

    def close(self) -> None:
        self._container.close()


class StreamSource(LiveSource):
    """RTSP / RTMP / HTTP(S) (MJPEG, HLS) stream with reconnects; see the module doc."""

    def __init__(
        self, cfg: SourceConfig, metrics: Metrics, on_event: EventCallback | None = None
    ) -> None:
        super().__init__(cfg, metrics, on_event)
        self.decode_errors = 0
        self._errlog = RateLimitedLog(log)

    @property
    def join_timeout(self) -> float:
        return max(self.cfg.open_timeout, min(self.cfg.read_timeout, self.cfg.stall_timeout)) + 1.0

    def connect(self) -> AvSession:
        """Resolve the host, open the stream and its video track; typed errors on failure."""
        resolve(self.cfg.uri)
        io_timeout = min(self.cfg.read_timeout, self.cfg.stall_timeout)
        t0 = time.monotonic()
        try:
            container = av.open(
                self.cfg.uri,
                mode="r",
                options=av_options(self.cfg),
                timeout=(self.cfg.open_timeout, io_timeout),
            )
        except (av.error.FFmpegError, OSError) as exc:
            limit = min(self.cfg.open_timeout, io_timeout)
            raise classify(exc, self.cfg.uri, "open", limit, time.monotonic() - t0) from None
        if not container.streams.video:
            container.close()
            raise SourceError(f"stream {self.masked_uri} has no video track")
        session = AvSession(container, self.cfg, self)
        if session.fps:
            self.fps = session.fps
        return session

    def probe(self) -> str:
        """Open the stream once, decode one frame and close; the session description.

        Raises the same typed errors a connection attempt records in ``last_error``.
        """
        session = self.connect()
        try:
            for _frame in session.read(lambda: False):
                return session.description
        finally:
            session.close()
        raise SourceEndedError(f"stream {self.masked_uri} ended before its first frame")

    def decode_error(self, exc: BaseException) -> None:
        """Count (and rate-limit log) one undecodable packet."""
        self.decode_errors += 1
        self.metrics.inc("edgewatch_decode_errors_total", source=self.id)
        self._errlog.warning(
            "source %s: decode error: %s (%d so far)", self.id, av_reason(exc), self.decode_errors
        )
