"""Trackers: ByteTrack and BoT-SORT over one shared core, built from their config.

>>> from edgewatch.config import ByteTrackConfig
>>> type(build_tracker(ByteTrackConfig(), fps=25.0)).__name__
'ByteTrack'
"""

from __future__ import annotations

import numpy as np
import supervision as sv

from edgewatch.config import BotSortConfig, ByteTrackConfig, NoTrackerConfig
from edgewatch.metrics import Metrics
from edgewatch.trackers.base import Tracker


class PassThrough(Tracker):
    """``type: none``: returns the detections unchanged, with ``tracker_id = None``."""

    def update(self, detections: sv.Detections, image: np.ndarray | None = None) -> sv.Detections:
        from edgewatch.trackers.bytetrack import select

        out = select(detections, np.arange(len(detections)))
        out.tracker_id = None
        return out

    def reset(self) -> None:
        """Nothing to forget."""

    def coast(self, gap_s: float) -> None:
        """Nothing to carry over a gap."""


def build_tracker(
    cfg: ByteTrackConfig | BotSortConfig | NoTrackerConfig,
    fps: float,
    metrics: Metrics | None = None,
    source: str = "",
) -> Tracker:
    """The tracker for one source; ``fps`` (<= 0: unknown) scales ``track_buffer``."""
    if isinstance(cfg, BotSortConfig):
        from edgewatch.trackers.botsort import BotSort

        return BotSort(cfg, fps, metrics, source)
    if isinstance(cfg, ByteTrackConfig):
        from edgewatch.trackers.bytetrack import ByteTrack

        return ByteTrack(cfg, fps, metrics, source)
    if isinstance(cfg, NoTrackerConfig):
        return PassThrough()
    raise TypeError(f"not a tracker config: {type(cfg).__name__}")


__all__ = ["PassThrough", "Tracker", "build_tracker"]
