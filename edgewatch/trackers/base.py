"""The tracker interface: ``update`` and ``reset``.

A tracker instance belongs to one source. ``update`` takes the detections of
one frame (xyxy in source pixels) and returns the confirmed tracks of that
frame as new ``Detections`` with ``tracker_id`` set (IDs start at 1 and are
unique within the instance). Nothing is shared between instances.

When a source reopens after a gap (reconnect), the runner asks the tracker how
long it keeps lost tracks (:meth:`Tracker.keeps_tracks_for_s`): a longer gap
resets it, a shorter one is bridged with :meth:`Tracker.coast`, so that the
tracks continue with their IDs exactly as if the frames of the gap had come
without detections.
"""

from __future__ import annotations

import abc
import math

import numpy as np
import supervision as sv


class Tracker(abc.ABC):
    @abc.abstractmethod
    def update(self, detections: sv.Detections, image: np.ndarray | None = None) -> sv.Detections:
        """Advance one frame; ``image`` (BGR) is used for camera-motion compensation."""

    @abc.abstractmethod
    def reset(self) -> None:
        """Forget every track and restart IDs at 1."""

    def keeps_tracks_for_s(self) -> float:
        """Seconds a lost track survives without a match (``inf``: nothing to forget).

        A gap without frames longer than this leaves nothing to continue: the
        runner resets the tracker instead of bridging the gap.
        """
        return math.inf

    @abc.abstractmethod
    def coast(self, gap_s: float) -> None:
        """Bridge ``gap_s`` seconds without frames, as frames without detections.

        ``gap_s`` is the time from the last frame to the next one; the tracks
        are predicted over the frames that would have come between.
        """
