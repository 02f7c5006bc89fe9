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
        if len(detections):
            self._no_embeddings()
        return None

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
