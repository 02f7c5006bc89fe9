"""One track lifecycle, shared by ByteTrack and BoT-SORT.

A :class:`Track` is ``NEW`` when born from an unmatched detection, ``TRACKED``
while it is matched, ``LOST`` while it coasts unmatched (its Kalman state keeps
moving) and ``REMOVED`` when it was lost for more than ``max_time_lost``
frames or never confirmed. As in ByteTrack, a track born after the first frame
is *confirmed* (``is_activated``) by its second match; a confirmed track is
reported once it has ``min_hits`` matches.

Public IDs are handed out by the owning :class:`TrackBook` (one counter per
tracker instance, starting at 1) the first time a track is reported, so the IDs
a tracker outputs are dense: 1, 2, 3, ...
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from edgewatch.trackers import kalman

#: Weight of the old appearance in the running embedding (BoT-SORT's ``alpha``).
EMBEDDING_MOMENTUM = 0.9


class TrackState(enum.IntEnum):
    NEW = 0
    TRACKED = 1
    LOST = 2
    REMOVED = 3


@dataclass(slots=True, eq=False)
class Track:
    """One tracked object. Boxes are xyxy pixels; ``mean``/``covariance`` follow ``layout``."""

    serial: int
    mean: np.ndarray
    covariance: np.ndarray
    score: float
    class_id: int
    start_frame: int
    frame_id: int
    state: TrackState = TrackState.NEW
    is_activated: bool = False
    track_id: int = 0
    hits: int = 1
    det_index: int = -1
    embedding: np.ndarray | None = None

    @property
    def age(self) -> int:
        """Frames since birth, as of the last match."""
        return self.frame_id - self.start_frame

    def mark_lost(self) -> None:
        self.state = TrackState.LOST

    def mark_removed(self) -> None:
        self.state = TrackState.REMOVED

    def add_embedding(self, emb: np.ndarray | None) -> None:
        """Blend a new embedding into the running one (then renormalise); zero rows are skipped."""
        if emb is None:
            return
        e = np.asarray(emb, dtype=np.float64)
        norm = float(np.linalg.norm(e))
        if norm < 1e-12:  # a zero row: no embedding for this detection
            return
        e = e / norm
        if self.embedding is None:
            self.embedding = e
            return
        mixed = EMBEDDING_MOMENTUM * self.embedding + (1 - EMBEDDING_MOMENTUM) * e
        self.embedding = mixed / max(float(np.linalg.norm(mixed)), 1e-12)


def max_time_lost(track_buffer: int, fps: float) -> int:
    """Frames a lost track survives: ``int(fps / 30 * track_buffer)`` (at least 1).

    ``fps <= 0`` (unknown) counts as 30.

    >>> max_time_lost(30, 30.0), max_time_lost(30, 15.0), max_time_lost(30, 0.0)
    (30, 15, 30)
    """
    rate = fps if fps > 0 else 30.0
    return max(1, int(rate / 30.0 * track_buffer))


class TrackBook:
    """The tracks of one tracker instance and its ID counter."""

    def __init__(self, layout: kalman.Layout, max_lost: int, min_hits: int) -> None:
        self.layout = layout
        self.max_lost = max_lost
        self.min_hits = min_hits
        self.tracked: list[Track] = []
        self.lost: list[Track] = []
        self.frame_id = 0
        self._next_serial = 1
        self._next_id = 1

    def reset(self) -> None:
        self.tracked = []
        self.lost = []
        self.frame_id = 0
        self._next_serial = 1
        self._next_id = 1

    # ------------------------------------------------------------------ kalman

    def predict(self, tracks: list[Track]) -> None:
        """One Kalman step for ``tracks`` at once; non-tracked ones lose their size velocity."""
        if not tracks:
            return
        mean = np.stack([t.mean for t in tracks])
        cov = np.stack([t.covariance for t in tracks])
        coasting = np.array([t.state is not TrackState.TRACKED for t in tracks])
        if self.layout is kalman.Layout.XYAH:
            mean[coasting, 7] = 0.0
        else:
            mean[coasting, 6:8] = 0.0
        mean, cov = kalman.predict(mean, cov, self.layout)
        for i, t in enumerate(tracks):
            t.mean, t.covariance = mean[i], cov[i]

    def warp(self, tracks: list[Track], affine: np.ndarray) -> None:
        """Apply a camera-motion affine (``2x3``) to ``tracks`` at once."""
        if not tracks:
            return
        mean = np.stack([t.mean for t in tracks])
        cov = np.stack([t.covariance for t in tracks])
        mean, cov = kalman.apply_affine(mean, cov, affine, self.layout)
        for i, t in enumerate(tracks):
            t.mean, t.covariance = mean[i], cov[i]

    @staticmethod
    def boxes(tracks: list[Track], layout: kalman.Layout) -> np.ndarray:
        """``(N, 4)`` xyxy boxes of the tracks' current Kalman means."""
        if not tracks:
            return np.zeros((0, 4))
        return kalman.state_to_xyxy(np.stack([t.mean for t in tracks]), layout)

    # ------------------------------------------------------------------ lifecycle

    def birth(self, xyxy: np.ndarray, score: float, class_id: int, det_index: int) -> Track:
        """A new (unconfirmed, except on frame 1) track from one detection."""
        z = kalman.xyxy_to_measurement(xyxy.reshape(1, 4), self.layout)
        mean, cov = kalman.initiate(z, self.layout)
        t = Track(
            serial=self._next_serial,
            mean=mean[0],
            covariance=cov[0],
            score=score,
            class_id=class_id,
            start_frame=self.frame_id,
            frame_id=self.frame_id,
            state=TrackState.TRACKED,
            is_activated=self.frame_id == 1,
            det_index=det_index,
        )
        self._next_serial += 1
        return t

    def match(
        self,
        tracks: list[Track],
        xyxy: np.ndarray,
        scores: np.ndarray,
        class_ids: np.ndarray,
        det_indices: np.ndarray,
    ) -> None:
        """Correct ``tracks[i]`` with detection row ``i`` (all at once) and mark them tracked.

        A lost track that is matched again is re-activated (its ID is kept).
        """
        if not tracks:
            return
        mean = np.stack([t.mean for t in tracks])
        cov = np.stack([t.covariance for t in tracks])
        z = kalman.xyxy_to_measurement(xyxy, self.layout)
        mean, cov = kalman.update(mean, cov, z, self.layout)
        for i, t in enumerate(tracks):
            t.mean, t.covariance = mean[i], cov[i]
            t.score = float(scores[i])
            t.class_id = int(class_ids[i])
            t.det_index = int(det_indices[i])
            t.frame_id = self.frame_id
            t.hits += 1
            t.state = TrackState.TRACKED
            t.is_activated = True

    def expire_lost(self) -> None:
        """Remove lost tracks unmatched for more than ``max_lost`` frames."""
        keep = []
        for t in self.lost:
            if self.frame_id - t.frame_id > self.max_lost:
                t.mark_removed()
            else:
                keep.append(t)
        self.lost = keep

    def reportable(self) -> list[Track]:
        """Tracks matched this frame that are confirmed and have ``min_hits``; gives IDs."""
        out = []
        for t in self.tracked:
            if not t.is_activated or t.frame_id != self.frame_id or t.hits < self.min_hits:
                continue
            if t.track_id == 0:
                t.track_id = self._next_id
                self._next_id += 1
            out.append(t)
        return out
