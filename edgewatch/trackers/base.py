"""The tracker interface: ``update`` and ``reset``.

A tracker instance belongs to one source. ``update`` takes the detections of
one frame (xyxy in source pixels) and returns the confirmed tracks of that
frame as new ``Detections`` with ``tracker_id`` set (IDs start at 1 and are
unique within the instance). Nothing is shared between instances.
"""

from __future__ import annotations

import abc

import numpy as np
import supervision as sv


class Tracker(abc.ABC):
    @abc.abstractmethod
    def update(self, detections: sv.Detections, image: np.ndarray | None = None) -> sv.Detections:
        """Advance one frame; ``image`` (BGR) is used for camera-motion compensation."""

    @abc.abstractmethod
    def reset(self) -> None:
        """Forget every track and restart IDs at 1."""
