"""BoT-SORT: ByteTrack's association plus camera-motion compensation and appearance.

Differences from :class:`~edgewatch.trackers.bytetrack.ByteTrack`:

* the Kalman state is ``xywh`` (:attr:`kalman.Layout.XYWH`);
* after prediction, the camera motion between the previous and the current
  frame (:class:`~edgewatch.trackers.gmc.GMC`, detections masked out) moves
  every track at once;
* with ``with_reid``, the first-stage and unconfirmed costs become
  ``min(iou_cost, emb_cost)`` where ``emb_cost`` is the cosine distance / 2,
  set to 1 where it exceeds ``1 - appearance_thresh`` or where the IoU is
  below ``proximity_thresh`` (as Ultralytics' ``BOTSORT.get_dists``).

Embeddings come, when ``model`` is a path ending in ``.onnx``, from
:class:`~edgewatch.trackers.reid.OnnxReid` run on the frame's crops, else
(``model: auto``) from ``detections.data["embedding"]`` (``(N, D)`` float32,
L2-normalised, zero rows meaning "none yet"; filled by a stage upstream).
Without either, a rate-limited warning is logged, the
``edgewatch_fallbacks_total{stage="reid"}`` counter grows and matching is by
IoU alone.

With ``model: auto`` and the CLIP labeler running, the appearance comes
*after* association instead: the labeler encodes crops of tracks (its own
schedule; nothing is encoded twice) and the runner feeds each track's mean
embedding back through :meth:`BotSort.observe_embeddings`. A track's first
embedding is compared with the tracks lost while it was not yet born; when
one is close enough (cosine distance / 2 <= ``1 - appearance_thresh``, same
class), the new track is *re-linked*: it takes over the lost track's ID, so a
person who reappears far from where the Kalman filter expected them (behind a
pillar, after a change of pace) keeps their identity after a few frames
instead of getting a new one.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import supervision as sv

from edgewatch.config import BotSortConfig
from edgewatch.metrics import Metrics
from edgewatch.trackers import kalman, matching
from edgewatch.trackers.bytetrack import ByteTrack, _Dets
from edgewatch.trackers.gmc import GMC
from edgewatch.trackers.reid import OnnxReid
from edgewatch.trackers.track import Track, TrackBook
from edgewatch.types import DATA_EMBEDDING

log = logging.getLogger(__name__)

_WARN_EVERY_S = 60.0


class BotSort(ByteTrack):
    """BoT-SORT; one instance per source. ``load`` opens the ReID model if one is configured."""

    layout = kalman.Layout.XYWH

    def __init__(
        self,
        cfg: BotSortConfig,
        fps: float = 30.0,
        metrics: Metrics | None = None,
        source: str = "",
    ) -> None:
        super().__init__(cfg, fps, metrics, source)
        self.bcfg = cfg
        self.gmc = GMC(cfg.gmc_method, cfg.gmc_downscale, metrics=metrics, source=source)
        self.reid: OnnxReid | None = None
        if cfg.with_reid and cfg.model.lower().endswith(".onnx"):
            self.reid = OnnxReid(cfg.model, metrics=metrics)
        self._last_warn = -np.inf
        #: True once appearance arrives through :meth:`observe_embeddings`.
        self._feedback = False

    def reset(self) -> None:
        super().reset()
        self.gmc.reset()

    def _embeddings(self, detections: sv.Detections, image: np.ndarray | None) -> np.ndarray | None:
        """The configured ONNX ReID model's embeddings, else ``data["embedding"]``, else None.

        Zero rows (no embedding yet) never match by appearance.
        """
        if not self.bcfg.with_reid:
            return None
        if self.reid is not None and image is not None:
            return self.reid.embed(image, np.asarray(detections.xyxy))
        emb = detections.data.get(DATA_EMBEDDING)
        if emb is not None:
            return np.asarray(emb, dtype=np.float64).reshape(len(detections), -1)
        if len(detections) and not self._feedback:
            self._no_embeddings()
        return None

    def expect_feedback(self) -> None:
        """Appearance will come through :meth:`observe_embeddings`: no missing-embedding warning."""
        if self.bcfg.with_reid and self.reid is None:
            self._feedback = True

    def observe_embeddings(
        self, track_ids: np.ndarray, embeddings: np.ndarray, valid: np.ndarray | None = None
    ) -> dict[int, int]:
        """Take per-track embeddings computed downstream (CLIP); re-link new tracks.

        ``track_ids`` are IDs this tracker reported for the current frame,
        ``embeddings`` their ``(N, D)`` embeddings and ``valid`` which rows are
        real. Returns ``{new_id: old_id}`` for the tracks re-linked to a lost
        track's ID (their later reports use ``old_id``).
        """
        if not self.bcfg.with_reid or self.reid is not None:
            return {}
        self._feedback = True
        by_id = {t.track_id: t for t in self.book.tracked if t.track_id}
        relinked: dict[int, int] = {}
        for i, tid in enumerate(np.asarray(track_ids, dtype=int).tolist()):
            t = by_id.get(tid)
            if t is None or (valid is not None and not bool(valid[i])):
                continue
            first = t.embedding is None
            t.add_embedding(np.asarray(embeddings[i]))
            if first and t.embedding is not None:
                old = self._relink(t)
                if old is not None:
                    relinked[tid] = old
        if relinked and self.metrics is not None:
            self.metrics.inc("edgewatch_relinks_total", len(relinked), source=self.source)
        return relinked

    def _relink(self, young: Track) -> int | None:
        """Give ``young`` the ID of the closest lost track it may be; None if none."""
        assert young.embedding is not None
        limit = 1.0 - self.bcfg.appearance_thresh
        best, best_cost = None, limit
        for lost in self.book.lost:
            if (
                lost.embedding is None
                or lost.class_id != young.class_id
                or lost.frame_id >= young.start_frame
                or not lost.track_id
            ):
                continue
            cost = (1.0 - float(np.dot(lost.embedding, young.embedding))) / 2.0
            if cost <= best_cost:
                best, best_cost = lost, cost
        if best is None:
            return None
        log.debug(
            "track %d re-linked to lost track %d (appearance cost %.3f)",
            young.track_id,
            best.track_id,
            best_cost,
        )
        young.track_id = best.track_id
        young.add_embedding(best.embedding)
        best.mark_removed()
        self.book.lost = [t for t in self.book.lost if t is not best]
        return best.track_id

    def _no_embeddings(self) -> None:
        if self.metrics is not None:
            self.metrics.inc("edgewatch_fallbacks_total", source=self.source, stage="reid")
        now = time.monotonic()
        if now - self._last_warn >= _WARN_EVERY_S:
            self._last_warn = now
            log.warning(
                "with_reid is on but the detections carry no %r and no ReID .onnx model is "
                "configured: matching by IoU only",
                DATA_EMBEDDING,
            )

    def _compensate(
        self, tracks: list[Track], image: np.ndarray | None, dets_xyxy: np.ndarray
    ) -> None:
        affine = self.gmc.apply(image, dets_xyxy)
        self.book.warp(tracks, affine)

    def _first_cost(self, tracks: list[Track], dets: _Dets, idx: np.ndarray) -> np.ndarray:
        iou_cost = matching.iou_distance(TrackBook.boxes(tracks, self.layout), dets.xyxy[idx])
        far = iou_cost > (1 - self.bcfg.proximity_thresh)
        cost = matching.fuse_score(iou_cost, dets.score[idx]) if self.cfg.fuse_score else iou_cost
        if dets.embedding is None or not tracks or not len(idx):
            return cost
        have = np.array([t.embedding is not None for t in tracks])
        if not have.any():
            return cost
        dim = dets.embedding.shape[1]
        track_emb = np.stack(
            [t.embedding if t.embedding is not None else np.zeros(dim) for t in tracks]
        )
        emb_cost = matching.embedding_distance(track_emb, dets.embedding[idx]) / 2.0
        emb_cost[emb_cost > (1 - self.bcfg.appearance_thresh)] = 1.0
        emb_cost[far] = 1.0
        emb_cost[~have] = 1.0
        return np.minimum(cost, emb_cost)
