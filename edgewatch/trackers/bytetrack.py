"""ByteTrack: two-stage IoU association over the shared track core.

Per frame (as ByteTrack / Ultralytics' ``BYTETracker``):

1. every confirmed or lost track is predicted one frame ahead;
2. detections scoring ``>= track_high_thresh`` are matched to those tracks
   (IoU distance, optionally fused with the score, refused above
   ``match_thresh``);
3. detections scoring in ``(track_low_thresh, track_high_thresh)`` are matched
   to the still-unmatched *tracked* tracks (IoU distance, refused above 0.5);
   tracked tracks left over become lost;
4. unconfirmed tracks (born last frame) are matched to the high detections
   left (refused above 0.7); unmatched ones are removed;
5. high detections left that score ``>= new_track_thresh`` start tracks;
   tracks lost longer than ``int(fps / 30 * track_buffer)`` frames are removed.

The output is the input detections that matched a reported track (their own
box, class, confidence, mask and ``.data``) with ``tracker_id`` set, in the
order of the tracks.

Lost tracks are therefore kept ``max_time_lost / fps`` seconds
(:meth:`ByteTrack.keeps_tracks_for_s`: ``track_buffer / 30`` s, whatever the
rate); :meth:`ByteTrack.coast` runs the frames of a gap in the stream as frames
without detections, so a track continues after a short reconnect where its
Kalman state says it went.
"""

from __future__ import annotations

import numpy as np
import supervision as sv

from edgewatch.config import BotSortConfig, ByteTrackConfig
from edgewatch.metrics import Metrics
from edgewatch.trackers import kalman, matching
from edgewatch.trackers.base import Tracker
from edgewatch.trackers.track import Track, TrackBook, TrackState, max_time_lost

SECOND_STAGE_THRESH = 0.5
UNCONFIRMED_THRESH = 0.7
DUPLICATE_IOU_DIST = 0.15


class _Dets:
    """The arrays of one frame's detections that the association needs."""

    __slots__ = ("class_id", "embedding", "score", "xyxy")

    def __init__(self, detections: sv.Detections, embedding: np.ndarray | None) -> None:
        n = len(detections)
        self.xyxy = np.asarray(detections.xyxy, dtype=np.float64).reshape(-1, 4)
        conf = detections.confidence
        score = np.ones(n) if conf is None else np.array(conf, dtype=np.float64)
        # Empty or non-finite boxes cannot be tracked (the Kalman noise scales
        # with the box size): a score of -1 keeps them out of every stage.
        size = self.xyxy[:, 2:] - self.xyxy[:, :2]
        bad = ~(np.isfinite(self.xyxy).all(axis=1) & (size > 0).all(axis=1))
        score[bad] = -1.0
        self.score = score
        cls = detections.class_id
        self.class_id = (
            np.zeros(n, dtype=np.int64) if cls is None else np.asarray(cls, dtype=np.int64)
        )
        self.embedding = embedding


def select(detections: sv.Detections, idx: np.ndarray) -> sv.Detections:
    """``detections[idx]`` (a new object; every field and ``.data`` array indexed alike)."""
    out = detections[idx]
    if not isinstance(out, sv.Detections):
        raise TypeError(f"indexing Detections gave {type(out).__name__}")
    return out


class ByteTrack(Tracker):
    """ByteTrack over :mod:`edgewatch.trackers.track`; one instance per source."""

    layout = kalman.Layout.XYAH

    def __init__(
        self,
        cfg: ByteTrackConfig | BotSortConfig,
        fps: float = 30.0,
        metrics: Metrics | None = None,
        source: str = "",
    ) -> None:
        self.cfg = cfg
        self.fps = fps
        self.metrics = metrics
        self.source = source
        self.book = TrackBook(self.layout, max_time_lost(cfg.track_buffer, fps), cfg.min_hits)

    # ------------------------------------------------------------------ hooks

    def _embeddings(self, detections: sv.Detections, image: np.ndarray | None) -> np.ndarray | None:
        """Per-detection appearance ``(N, D)``, or None (ByteTrack uses none)."""
        return None

    def _compensate(
        self, tracks: list[Track], image: np.ndarray | None, dets_xyxy: np.ndarray
    ) -> None:
        """Camera-motion hook, called after prediction (ByteTrack: nothing)."""

    def _first_cost(self, tracks: list[Track], dets: _Dets, idx: np.ndarray) -> np.ndarray:
        """Cost of the first and unconfirmed stages: IoU distance, score-fused if configured."""
        cost = matching.iou_distance(TrackBook.boxes(tracks, self.layout), dets.xyxy[idx])
        if self.cfg.fuse_score:
            cost = matching.fuse_score(cost, dets.score[idx])
        return cost

    # ------------------------------------------------------------------ API

    def reset(self) -> None:
        self.book.reset()

    def keeps_tracks_for_s(self) -> float:
        """``max_time_lost`` frames in seconds at this tracker's rate (``track_buffer / 30``)."""
        return self.book.max_lost / self._rate()

    def coast(self, gap_s: float) -> None:
        """Run the ``round(gap_s * fps) - 1`` frames missing in a gap as frames without detections.

        As :meth:`update` would with empty detections: confirmed tracks become
        lost, unconfirmed ones are removed, every lost track is predicted one
        step per missing frame, and those lost for more than ``max_time_lost``
        frames expire.
        """
        missed = round(gap_s * self._rate()) - 1
        if missed < 1:
            return
        book = self.book
        confirmed = [t for t in book.tracked if t.is_activated]
        for t in book.tracked:
            if not t.is_activated:
                t.mark_removed()
        pool = confirmed + book.lost
        book.predict(pool)  # the first missing frame: tracked ones keep their size velocity
        for t in confirmed:
            t.mark_lost()
        for _ in range(missed - 1):
            book.predict(pool)
        book.frame_id += missed
        book.tracked, book.lost = [], pool
        book.expire_lost()

    def _rate(self) -> float:
        return self.fps if self.fps > 0 else 30.0

    def update(self, detections: sv.Detections, image: np.ndarray | None = None) -> sv.Detections:
        """Advance one frame; the matched detections with ``tracker_id`` (see the module doc)."""
        book = self.book
        book.frame_id += 1
        dets = _Dets(detections, self._embeddings(detections, image))
        for t in book.tracked + book.lost:
            t.det_index = -1
        high = np.flatnonzero(dets.score >= self.cfg.track_high_thresh)
        low = np.flatnonzero(
            (dets.score > self.cfg.track_low_thresh) & (dets.score < self.cfg.track_high_thresh)
        )
        unconfirmed = [t for t in book.tracked if not t.is_activated]
        confirmed = [t for t in book.tracked if t.is_activated]
        pool = confirmed + [t for t in book.lost if t not in confirmed]
        book.predict(pool)
        self._compensate(pool + unconfirmed, image, dets.xyxy[high])

        # Stage 1: high detections against confirmed + lost tracks.
        m, u_track, u_high = matching.linear_assignment(
            self._first_cost(pool, dets, high), self.cfg.match_thresh
        )
        matched = self._apply(pool, m, dets, high)
        # Stage 2: low detections against tracks still tracked.
        remain = [pool[i] for i in u_track if pool[i].state is TrackState.TRACKED]
        cost = matching.iou_distance(TrackBook.boxes(remain, self.layout), dets.xyxy[low])
        m2, u_remain, _ = matching.linear_assignment(cost, SECOND_STAGE_THRESH)
        matched += self._apply(remain, m2, dets, low)
        newly_lost = [remain[i] for i in u_remain]
        for t in newly_lost:
            t.mark_lost()
        # Stage 3: unconfirmed tracks against the high detections left.
        left = high[u_high]
        m3, u_unconf, u_left = matching.linear_assignment(
            self._first_cost(unconfirmed, dets, left), UNCONFIRMED_THRESH
        )
        matched += self._apply(unconfirmed, m3, dets, left)
        for i in u_unconf:
            unconfirmed[i].mark_removed()
        births = self._births(dets, left[u_left])
        self._settle(pool, matched, births)
        return self._output(detections)

    # ------------------------------------------------------------------ steps

    def _apply(
        self, tracks: list[Track], m: np.ndarray, dets: _Dets, idx: np.ndarray
    ) -> list[Track]:
        if len(m) == 0:
            return []
        chosen = [tracks[i] for i in m[:, 0]]
        rows = idx[m[:, 1]]
        self.book.match(chosen, dets.xyxy[rows], dets.score[rows], dets.class_id[rows], rows)
        if dets.embedding is not None:
            for t, r in zip(chosen, rows, strict=True):
                t.add_embedding(dets.embedding[r])
        return chosen

    def _births(self, dets: _Dets, idx: np.ndarray) -> list[Track]:
        out = []
        for r in idx:
            if dets.score[r] < self.cfg.new_track_thresh:
                continue
            t = self.book.birth(dets.xyxy[r], float(dets.score[r]), int(dets.class_id[r]), int(r))
            if dets.embedding is not None:
                t.add_embedding(dets.embedding[r])
            out.append(t)
        return out

    def _settle(self, pool: list[Track], matched: list[Track], births: list[Track]) -> None:
        """Rebuild the tracked / lost lists after association."""
        book = self.book
        seen: set[int] = set()
        tracked: list[Track] = []
        for t in book.tracked + matched + births:
            if t.state is TrackState.TRACKED and id(t) not in seen:
                seen.add(id(t))
                tracked.append(t)
        lost = [t for t in book.lost + pool if t.state is TrackState.LOST and id(t) not in seen]
        lost = list({id(t): t for t in lost}.values())
        book.tracked, book.lost = tracked, lost
        book.expire_lost()
        self._drop_duplicates()

    def _drop_duplicates(self) -> None:
        """Of a tracked and a lost track on the same spot, keep the older (ByteTrack)."""
        book = self.book
        if not book.tracked or not book.lost:
            return
        dist = matching.iou_distance(
            TrackBook.boxes(book.tracked, self.layout), TrackBook.boxes(book.lost, self.layout)
        )
        drop_t: set[int] = set()
        drop_l: set[int] = set()
        for i, j in zip(*np.nonzero(dist < DUPLICATE_IOU_DIST), strict=True):
            if book.tracked[i].age > book.lost[j].age:
                drop_l.add(int(j))
            else:
                drop_t.add(int(i))
        book.tracked = [t for i, t in enumerate(book.tracked) if i not in drop_t]
        book.lost = [t for j, t in enumerate(book.lost) if j not in drop_l]

    def _output(self, detections: sv.Detections) -> sv.Detections:
        tracks = self.book.reportable()
        idx = np.array([t.det_index for t in tracks], dtype=np.int64)
        out = select(detections, idx)
        out.tracker_id = np.array([t.track_id for t in tracks], dtype=np.int64)
        return out
