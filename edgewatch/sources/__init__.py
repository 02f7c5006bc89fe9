"""Frame sources: video files, image folders, RTSP/HTTP streams and webcams.

:func:`build_source` picks the implementation from ``cfg.kind``; every source
yields :class:`~edgewatch.types.Frame` objects from ``frames(stop)`` and is
released with ``close()``.
"""

from __future__ import annotations

from edgewatch.config import SourceConfig, SourceKind
from edgewatch.errors import SourceError
from edgewatch.metrics import Metrics
from edgewatch.sources.base import EventCallback, Source

__all__ = ["Source", "build_source"]


def build_source(
    cfg: SourceConfig, metrics: Metrics, on_event: EventCallback | None = None
) -> Source:
    """Build (not open) the source for ``cfg``; opening happens in ``frames()``."""
    kind = cfg.kind
    if kind is SourceKind.FILE:
        from edgewatch.sources.file import FileSource

        return FileSource(cfg, metrics, on_event)
    if kind is SourceKind.IMAGES:
        from edgewatch.sources.images import ImageSource

        return ImageSource(cfg, metrics, on_event)
    if kind in (SourceKind.RTSP, SourceKind.HTTP):
        from edgewatch.sources.rtsp import StreamSource

        return StreamSource(cfg, metrics, on_event)
    if kind is SourceKind.WEBCAM:
        from edgewatch.sources.webcam import WebcamSource

        return WebcamSource(cfg, metrics, on_event)
    raise SourceError(f"source {cfg.id}: unsupported source kind {kind.value!r}")
