"""Cost matrices and the assignment solver (the only caller of ``lap.lapjv``).

Boxes are ``(N, 4)`` ``x1, y1, x2, y2`` in pixels. Every cost is a distance in
``[0, 1]`` (IoU distance, fused score distance) or ``[0, 2]`` (cosine
distance); rows are tracks, columns are detections.
"""

from __future__ import annotations

import lap
import numpy as np

from edgewatch.trackers import kalman


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU ``(N, M)`` of corner boxes ``a (N, 4)`` and ``b (M, 4)``.

    >>> a, b = np.array([[0, 0, 2, 2]]), np.array([[1, 0, 3, 2], [5, 5, 6, 6]])
    >>> iou_matrix(a, b).round(4).tolist()
    [[0.3333, 0.0]]
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def iou_distance(tracks_xyxy: np.ndarray, dets_xyxy: np.ndarray) -> np.ndarray:
    """``1 - IoU``, shape ``(tracks, detections)``."""
    return 1.0 - iou_matrix(tracks_xyxy, dets_xyxy)


def fuse_score(cost: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """ByteTrack's ``fuse_score``: ``1 - (1 - cost) * score`` per detection column.

    >>> fuse_score(np.array([[0.2, 1.0]]), np.array([0.5, 0.9])).tolist()
    [[0.6, 1.0]]
    """
    if cost.size == 0:
        return cost.copy()
    sim = (1.0 - cost) * np.asarray(scores, dtype=np.float64)[None, :]
    return 1.0 - sim


def embedding_distance(track_emb: np.ndarray, det_emb: np.ndarray) -> np.ndarray:
    """Cosine distance ``1 - cos`` in ``[0, 2]`` between ``(N, D)`` and ``(M, D)`` embeddings.

    Inputs need not be normalised; zero vectors get distance 1.
    """
    t = np.asarray(track_emb, dtype=np.float64)
    d = np.asarray(det_emb, dtype=np.float64)
    if len(t) == 0 or len(d) == 0:
        return np.zeros((len(t), len(d)))
    tn = np.linalg.norm(t, axis=1, keepdims=True)
    dn = np.linalg.norm(d, axis=1, keepdims=True)
    t = t / np.where(tn > 0, tn, 1.0)
    d = d / np.where(dn > 0, dn, 1.0)
    return np.clip(1.0 - t @ d.T, 0.0, 2.0)


def gate_cost(
    cost: np.ndarray,
    mean: np.ndarray,
    covariance: np.ndarray,
    dets_measurement: np.ndarray,
    layout: kalman.Layout,
    only_position: bool = False,
    value: float = np.inf,
) -> np.ndarray:
    """Set ``cost[i, j] = value`` where detection ``j`` lies outside track ``i``'s 95 % gate.

    The gate is the squared Mahalanobis distance under the Kalman projection
    (chi-square, 4 or 2 degrees of freedom). Returns a new array.
    """
    out = np.array(cost, dtype=np.float64, copy=True)
    if out.size == 0:
        return out
    d = kalman.gating_distance(mean, covariance, dets_measurement, layout, only_position)
    out[d > kalman.CHI2INV95[2 if only_position else 4]] = value
    return out


def linear_assignment(cost: np.ndarray, thresh: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minimum-cost assignment of rows to columns, pairs costing more than ``thresh`` refused.

    Returns ``(matches (K, 2) int [row, col], unmatched_rows, unmatched_cols)``,
    each sorted ascending.

    >>> m, ua, ub = linear_assignment(np.array([[0.1, 0.9], [0.8, 0.95]]), 0.5)
    >>> m.tolist(), ua.tolist(), ub.tolist()
    ([[0, 0]], [1], [1])
    """
    cost = np.asarray(cost, dtype=np.float64)
    n, m = cost.shape
    if n == 0 or m == 0:
        return np.empty((0, 2), dtype=np.int64), np.arange(n), np.arange(m)
    # lapjv needs finite entries; anything above thresh is refused anyway.
    finite = np.where(np.isfinite(cost), cost, thresh + 1.0)
    _, x, _ = lap.lapjv(finite, extend_cost=True, cost_limit=thresh)
    rows = np.flatnonzero(x >= 0)
    matches = np.stack([rows, x[rows]], axis=1).astype(np.int64)
    unmatched_a = np.flatnonzero(x < 0)
    matched_b = np.zeros(m, dtype=bool)
    matched_b[matches[:, 1]] = True
    unmatched_b = np.flatnonzero(~matched_b)
    return matches, unmatched_a, unmatched_b
