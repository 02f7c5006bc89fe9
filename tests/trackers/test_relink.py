"""BoT-SORT re-linking from downstream (CLIP labeler) embeddings, ``model: auto``.

A person walks right, vanishes for 10 frames and reappears 200 px further on
than the Kalman filter expects (no IoU with the prediction): by IoU alone that
is a new track. When the labeler's embeddings are fed back, the new track's
first embedding matches the lost one and it takes over the old ID; a stranger
with a different embedding does not.
"""

from __future__ import annotations

import numpy as np
import pytest
import supervision as sv

from edgewatch.config import BotSortConfig
from edgewatch.metrics import Metrics
from edgewatch.trackers import build_tracker

E_A = np.array([1.0, 0.0, 0.0, 0.0], np.float32)
E_B = np.array([0.0, 1.0, 0.0, 0.0], np.float32)


def _det(x: float) -> sv.Detections:
    return sv.Detections(
        xyxy=np.array([[x, 100, x + 40, 200]], np.float32),
        confidence=np.array([0.9], np.float32),
        class_id=np.array([0]),
    )


def _run(feed: np.ndarray | None, reappear_emb: np.ndarray, with_reid: bool = True):
    cfg = BotSortConfig(gmc_method="none", with_reid=with_reid, model="auto")
    metrics = Metrics()
    tracker = build_tracker(cfg, 30.0, metrics)
    ids: list[list[int]] = []
    for f in range(40):
        if 15 <= f < 25:
            dets = _det(0)[np.zeros(0, int)]  # gone
        else:
            x = 50 + 5 * f + (200 if f >= 25 else 0)
            dets = _det(x)
        out = tracker.update(dets)
        tids = [int(t) for t in out.tracker_id]
        if feed is not None and len(out):
            emb = np.stack([feed if f < 15 else reappear_emb] * len(out))
            relinked = tracker.observe_embeddings(out.tracker_id, emb, np.ones(len(out), bool))
            tids = [relinked.get(t, t) for t in tids]
        ids.append(tids)
    return ids, metrics


@pytest.mark.parametrize(
    ("feed", "reappear", "with_reid", "after", "relinks"),
    [
        (None, E_A, True, [2], 0),  # no appearance at all: a new ID
        (E_A, E_A, True, [1], 1),  # same person: the old ID comes back
        (E_A, E_B, True, [2], 0),  # a stranger: a new ID
        (E_A, E_A, False, [2], 0),  # with_reid off: feedback ignored
        # cost = (1 - cos) / 2 against 1 - appearance_thresh (0.8) = 0.2:
        (E_A, 0.8 * E_A + 0.6 * E_B, True, [1], 1),  # cos 0.8 -> cost 0.10: same person
        (E_A, 0.5 * E_A + 0.75**0.5 * E_B, True, [2], 0),  # cos 0.5 -> cost 0.25: refused
    ],
)
def test_relink_table(feed, reappear, with_reid, after, relinks) -> None:
    ids, metrics = _run(feed, reappear, with_reid)
    assert ids[10] == [1]
    assert all(ids[f] == [] for f in range(15, 25))
    # The reappeared track is confirmed on its second frame; from then on:
    assert ids[30] == after and ids[39] == after
    assert metrics.counter("edgewatch_relinks_total", source="") == relinks


def test_relink_needs_the_lost_track_to_predate_the_new_one() -> None:
    """Two people side by side with the same embedding are never merged."""
    cfg = BotSortConfig(gmc_method="none", with_reid=True, model="auto")
    tracker = build_tracker(cfg, 30.0)
    for _ in range(5):
        dets = sv.Detections(
            xyxy=np.array([[0, 0, 40, 100], [300, 0, 340, 100]], np.float32),
            confidence=np.array([0.9, 0.9], np.float32),
            class_id=np.array([0, 0]),
        )
        out = tracker.update(dets)
        relinked = tracker.observe_embeddings(out.tracker_id, np.stack([E_A, E_A]))
        assert relinked == {}
    assert sorted(out.tracker_id.tolist()) == [1, 2]
