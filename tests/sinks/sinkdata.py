"""Synthetic frames and detections for the sink tests (also used by writer_child.py)."""

from __future__ import annotations

import numpy as np
import supervision as sv

from edgewatch.types import (
    DATA_KEYPOINTS,
    DATA_LABEL,
    DATA_LABEL_SCORE,
    Frame,
    FrameResult,
)

NAMES = {0: "person", 1: "car"}
T0 = 1796320800.0  # 2026-12-03T18:00:00Z


def scene(index: int, width: int = 64, height: int = 48) -> np.ndarray:
    """A BGR gradient that changes with ``index`` (so frames differ)."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    img = np.empty((height, width, 3), np.uint8)
    img[..., 0] = ((x + index * 7) % 256).astype(np.uint8)
    img[..., 1] = ((y + index * 3) % 256).astype(np.uint8)
    img[..., 2] = 128
    return img


def detections(index: int, width: int = 64, height: int = 48, *, masks: bool = False,
               keypoints: int = 0, labels: bool = False, tracked: bool = True) -> sv.Detections:
    """Two boxes moving right by one pixel per frame; ids 1 and 2 (class 0 and 1)."""
    x = float(index % max(1, width // 2))
    xyxy = np.array([[x + 2, 4, x + 14, 30], [width - 20, height - 18, width - 4, height - 2]],
                    np.float32)
    data: dict[str, np.ndarray] = {}
    if keypoints:
        pts = np.stack([np.linspace(xyxy[:, 0], xyxy[:, 2], keypoints, axis=1),
                        np.linspace(xyxy[:, 1], xyxy[:, 3], keypoints, axis=1),
                        np.full((2, keypoints), 0.9)], axis=-1)
        data[DATA_KEYPOINTS] = pts.astype(np.float32)
    if labels:
        data[DATA_LABEL] = np.array(["person carrying a bag", None], dtype=object)
        data[DATA_LABEL_SCORE] = np.array([0.8, np.nan], np.float32)
    mask = None
    if masks:
        mask = np.zeros((2, height, width), bool)
        for i, (x1, y1, x2, y2) in enumerate(xyxy.astype(int)):
            mask[i, y1 + 2 : y2 - 2, x1 + 2 : x2 - 2] = True
    return sv.Detections(
        xyxy=xyxy,
        confidence=np.array([0.9, 0.6], np.float32),
        class_id=np.array([0, 1]),
        tracker_id=np.array([1, 2]) if tracked else None,
        mask=mask,
        data=data,
    )


def result(index: int, source: str = "cam", *, width: int = 64, height: int = 48,
           fps: float = 25.0, generation: int = 0, pts: float | None = None,
           **det_kwargs: object) -> FrameResult:
    """One synthetic FrameResult: frame ``index`` of ``source`` at ``fps``."""
    t = index / fps if pts is None else pts
    frame = Frame(source, index, t, T0 + t, scene(index, width, height), generation, fps)
    return FrameResult(frame, detections(index, width, height, **det_kwargs), NAMES,
                       {"detect": 1.5, "total": 2.0})
