"""One contract suite and the synthetic scenes, run against every tracker."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import supervision as sv
from scenes import Scene, crossing, crowd, flicker, occlusion, pan

from edgewatch.config import BotSortConfig, ByteTrackConfig, NoTrackerConfig
from edgewatch.metrics import Metrics
from edgewatch.trackers import PassThrough, build_tracker
from edgewatch.trackers.base import Tracker
from edgewatch.trackers.botsort import BotSort
from edgewatch.trackers.mot import evaluate, read_sequence, run_tracker
from edgewatch.types import DATA_EMBEDDING, DATA_LABEL

TRACKERS: dict[str, Callable[..., ByteTrackConfig | BotSortConfig]] = {
    "bytetrack": ByteTrackConfig,
    "botsort": BotSortConfig,
    "botsort-nogmc": lambda **kw: BotSortConfig(gmc_method="none", **kw),
    "botsort-reid": lambda **kw: BotSortConfig(with_reid=True, **kw),
}


@pytest.fixture(params=sorted(TRACKERS))
def make(request: pytest.FixtureRequest) -> Callable[..., Tracker]:
    factory = TRACKERS[request.param]

    def build(fps: float = 30.0, **kw: object) -> Tracker:
        return build_tracker(factory(**kw), fps)

    return build


def _dets(
    boxes: list[list[float]], scores: list[float] | None = None, classes: list[int] | None = None
) -> sv.Detections:
    n = len(boxes)
    xyxy = np.array(boxes, dtype=np.float32).reshape(-1, 4)
    masks = np.zeros((n, 120, 160), dtype=bool)
    for i, (x1, y1, x2, y2) in enumerate(xyxy.astype(int)):
        masks[i, y1:y2, x1:x2] = True
    emb = np.eye(max(n, 1), 8, dtype=np.float32)[:n]
    return sv.Detections(
        xyxy=xyxy,
        confidence=np.array(scores if scores is not None else [0.9] * n, dtype=np.float32),
        class_id=np.array(classes if classes is not None else list(range(n)), dtype=np.int64),
        mask=masks,
        data={
            DATA_EMBEDDING: emb,
            DATA_LABEL: np.array([f"obj{i}" for i in range(n)], dtype=object),
        },
    )


BOXES = [[10, 10, 30, 60], [50, 20, 70, 80], [100, 30, 130, 90]]


def _shift(boxes: list[list[float]], dx: float) -> list[list[float]]:
    return [[b[0] + dx, b[1], b[2] + dx, b[3]] for b in boxes]


# ---------------------------------------------------------------------- contract


def test_empty_frames(make: Callable[..., Tracker]) -> None:
    t = make()
    for _ in range(3):
        out = t.update(sv.Detections.empty())
        assert len(out) == 0
        assert out.tracker_id is not None and out.tracker_id.shape == (0,)


def test_output_carries_the_matched_detection(make: Callable[..., Tracker]) -> None:
    t = make()
    for f in range(4):
        d = _dets(_shift(BOXES, 2 * f), classes=[5, 6, 7])
        before = d.xyxy.copy()
        out = t.update(d)
        assert d.tracker_id is None  # the input is not touched
        np.testing.assert_array_equal(d.xyxy, before)
        assert len(out) == 3
        order = np.argsort(out.tracker_id)
        np.testing.assert_array_equal(out.tracker_id[order], [1, 2, 3])
        np.testing.assert_array_equal(out.xyxy[order], d.xyxy)
        np.testing.assert_array_equal(out.class_id[order], [5, 6, 7])
        np.testing.assert_array_equal(out.confidence[order], d.confidence)
        np.testing.assert_array_equal(out.mask[order], d.mask)
        np.testing.assert_array_equal(out.data[DATA_EMBEDDING][order], d.data[DATA_EMBEDDING])
        assert list(out.data[DATA_LABEL][order]) == ["obj0", "obj1", "obj2"]
        assert out.tracker_id.dtype.kind == "i"


def test_instances_are_independent_and_reset(make: Callable[..., Tracker]) -> None:
    a, b = make(), make()
    for f in range(3):
        out_a = a.update(_dets(_shift(BOXES, f)))
        out_b = b.update(_dets(_shift(BOXES[:2], f)))
    assert sorted(out_a.tracker_id.tolist()) == [1, 2, 3]
    assert sorted(out_b.tracker_id.tolist()) == [1, 2]
    a.reset()
    out = a.update(_dets(BOXES[2:]))
    assert out.tracker_id.tolist() == [1]


@pytest.mark.parametrize(
    ("born", "min_hits", "first_reported"),
    [
        (1, 1, 1),  # on frame 1 a track is confirmed at birth (ByteTrack)
        (1, 2, 2),
        (1, 3, 3),
        (5, 1, 6),  # later tracks need a second match to be confirmed
        (5, 2, 6),
        (5, 3, 7),
    ],
)
def test_min_hits(
    make: Callable[..., Tracker], born: int, min_hits: int, first_reported: int
) -> None:
    t = make(min_hits=min_hits)
    seen = []
    for f in range(1, 10):
        d = _dets([[20 + f, 20, 40 + f, 70]]) if f >= born else sv.Detections.empty()
        if len(t.update(d)):
            seen.append(f)
    assert seen == list(range(first_reported, 10))


@pytest.mark.parametrize(
    ("score", "new_track_thresh", "tracked"),
    [(0.5, 0.6, False), (0.5, 0.4, True), (0.6, 0.6, True)],
)
def test_new_track_thresh(
    make: Callable[..., Tracker], score: float, new_track_thresh: float, tracked: bool
) -> None:
    t = make(new_track_thresh=new_track_thresh)
    outs = [len(t.update(_dets([[20, 20, 40, 70]], [score]))) for _ in range(3)]
    assert outs == ([1, 1, 1] if tracked else [0, 0, 0])


def test_none_passes_through() -> None:
    t = build_tracker(NoTrackerConfig(), 30.0)
    assert isinstance(t, PassThrough)
    d = _dets(BOXES)
    out = t.update(d)
    assert out.tracker_id is None and len(out) == 3
    np.testing.assert_array_equal(out.xyxy, d.xyxy)
    assert out is not d


# ---------------------------------------------------------------------- scenes


def _score(
    scene: Scene,
    root: Path,
    cfg: ByteTrackConfig | BotSortConfig,
    images: bool = False,
    fps: float | None = None,
) -> dict[str, float]:
    seq = read_sequence(scene.write(root, images=images))
    res, _ = run_tracker(seq, build_tracker(cfg, seq.fps if fps is None else fps))
    assert seq.gt is not None
    return evaluate(seq.gt, res)


ALL = [TRACKERS[k] for k in sorted(TRACKERS)]


@pytest.mark.parametrize("factory", ALL, ids=sorted(TRACKERS))
@pytest.mark.parametrize(
    ("scene", "kw", "switches", "frags", "misses"),
    [
        (crossing, {}, 0, 0, 0),
        # 60 walkers, 1 px box noise; two rows of 10 cross head-on (IoU up to
        # 0.64) and start to overlap again at the end: every ID kept (without
        # the Kalman motion, IoU alone swaps 48 of them)
        (crowd, {}, 0, 0, 0),
        # the crossing row hidden for the 5 frames of most overlap: its 10 lost
        # tracks coast through on their motion and are re-found (10 fragments)
        (lambda: crowd(occluded=True), {}, 0, 10, 50),
        # lost tracks dropped after 3 frames: 10 new IDs, each a frame late
        (lambda: crowd(occluded=True), {"track_buffer": 3}, 10, 10, 60),
        # object 1 missed in 3 runs (4 frames): 3 fragments; object 2's
        # low-score frames are picked up by the second association
        (flicker, {}, 0, 3, 4),
        # low-score detections ignored: object 2 also breaks twice (10 frames)
        (flicker, {"track_low_thresh": 0.2}, 0, 5, 14),
        # 40 missed frames > track_buffer 30: a new ID, which is itself only
        # reported from its second frame (one more miss)
        (lambda: occlusion(40), {}, 1, 1, 41),
        (lambda: occlusion(40), {"track_buffer": 60}, 0, 1, 40),
        (lambda: occlusion(25), {}, 0, 1, 25),
    ],
    ids=[
        "crossing",
        "crowd",
        "crowd-occl",
        "crowd-occl-buf3",
        "flicker",
        "flicker-nolow",
        "occl40",
        "occl40-buf60",
        "occl25",
    ],
)
def test_scene(
    tmp_path: Path,
    factory: Callable[..., ByteTrackConfig | BotSortConfig],
    scene: Callable[[], Scene],
    kw: dict,
    switches: int,
    frags: int,
    misses: int,
) -> None:
    s = _score(scene(), tmp_path, factory(**kw))
    assert (
        s["num_switches"],
        s["num_fragmentations"],
        s["num_misses"],
        s["num_false_positives"],
    ) == (
        switches,
        frags,
        misses,
        0,
    )


@pytest.mark.parametrize(("fps", "switches"), [(30.0, 1), (60.0, 0)])
def test_track_buffer_scales_with_fps(tmp_path: Path, fps: float, switches: int) -> None:
    """At 60 fps, track_buffer 30 keeps a lost track for int(60 / 30 * 30) = 60 frames."""
    s = _score(occlusion(40), tmp_path, ByteTrackConfig(), fps=fps)
    assert s["num_switches"] == switches


@pytest.fixture(scope="module")
def pan_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pan().write(tmp_path_factory.mktemp("pan"), images=True)


@pytest.mark.parametrize(
    ("cfg", "switches", "misses"),
    [
        # Without camera motion the 3 lost tracks stay put while the people slide
        # 40 px away during the 8-frame dropout: 3 new IDs (each one frame late).
        (ByteTrackConfig(), 3, 3 * 8 + 3),
        (BotSortConfig(gmc_method="none"), 3, 3 * 8 + 3),
        # With it, the lost tracks move with the camera and are re-found.
        (BotSortConfig(gmc_method="sparseOptFlow"), 0, 3 * 8),
        (BotSortConfig(gmc_method="orb"), 0, 3 * 8),
        (BotSortConfig(gmc_method="sift"), 0, 3 * 8),
        (BotSortConfig(gmc_method="ecc"), 0, 3 * 8),
    ],
    ids=["bytetrack", "botsort-none", "sparseOptFlow", "orb", "sift", "ecc"],
)
def test_camera_pan(
    pan_dir: Path, cfg: ByteTrackConfig | BotSortConfig, switches: int, misses: int
) -> None:
    seq = read_sequence(pan_dir)
    res, _ = run_tracker(seq, build_tracker(cfg, seq.fps))
    assert seq.gt is not None
    s = evaluate(seq.gt, res)
    assert (s["num_switches"], s["num_misses"], s["num_false_positives"]) == (switches, misses, 0)
    assert len(np.unique(res[:, 1])) == 3 + switches


def _swap_run(cfg: ByteTrackConfig | BotSortConfig) -> dict[str, float]:
    """Two people overlapping (IoU 23 / 57 = 0.40) trade places at frame 11.

    Their embeddings say who is who.

    The overlap is below 0.5 so that CLEAR-MOT cannot keep the old pairing
    and sees the swap; ``proximity_thresh`` is lowered to 0.3 to let
    appearance act on such a pair.
    """
    t = build_tracker(cfg, 30.0)
    left, right = [100, 50, 140, 150], [117, 50, 157, 150]
    emb = np.eye(2, 4, dtype=np.float32)
    gt, res = [], []
    for f in range(1, 21):
        boxes = [left, right] if f <= 10 else [right, left]  # person 1, person 2
        d = sv.Detections(
            xyxy=np.array(boxes, dtype=np.float32),
            confidence=np.full(2, 0.9, np.float32),
            class_id=np.zeros(2, dtype=np.int64),
            data={DATA_EMBEDDING: emb},
        )
        out = t.update(d)
        for pid, b in enumerate(boxes, start=1):
            gt.append([f, pid, b[0], b[1], b[2] - b[0], b[3] - b[1], 1, 1, 1])
        for b, tid in zip(out.xyxy, out.tracker_id, strict=True):
            res.append([f, tid, b[0], b[1], b[2] - b[0], b[3] - b[1], 1])
    return evaluate(np.array(gt, dtype=np.float64), np.array(res, dtype=np.float64))


@pytest.mark.parametrize(
    ("cfg", "switches"),
    [
        # IoU alone follows the positions: both identities swap
        (ByteTrackConfig(), 2),
        (BotSortConfig(gmc_method="none"), 2),
        # appearance keeps them: the true pairs cost min(1 - 0.40 * 0.9, 0) = 0,
        # the positional ones min(0.1, 1) = 0.1
        (BotSortConfig(gmc_method="none", with_reid=True, proximity_thresh=0.3), 0),
        # at the default proximity_thresh (IoU >= 0.5) appearance may not act here
        (BotSortConfig(gmc_method="none", with_reid=True), 2),
    ],
    ids=["bytetrack", "botsort", "botsort-reid", "botsort-reid-gated"],
)
def test_appearance_resolves_a_swap(cfg: ByteTrackConfig | BotSortConfig, switches: int) -> None:
    assert _swap_run(cfg)["num_switches"] == switches


def test_reid_without_embeddings_falls_back(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    t = build_tracker(BotSortConfig(gmc_method="none", with_reid=True), 30.0, metrics, "cam")
    with caplog.at_level(logging.WARNING, logger="edgewatch.trackers.botsort"):
        for f in range(3):
            d = sv.Detections(
                xyxy=np.array([[10 + f, 10, 40 + f, 90]], dtype=np.float32),
                confidence=np.array([0.9], dtype=np.float32),
                class_id=np.zeros(1, dtype=np.int64),
            )
            assert t.update(d).tracker_id.tolist() == [1]
        t.update(sv.Detections.empty())  # nothing to embed: no fallback
    assert len([r for r in caplog.records if "matching by IoU only" in r.message]) == 1
    assert 'edgewatch_fallbacks_total{source="cam",stage="reid"} 3' in metrics.render()


def test_zero_embeddings_are_ignored() -> None:
    """Rows of zeros (no embedding yet, as the labeler sends them) give no appearance match."""
    t = build_tracker(BotSortConfig(gmc_method="none", with_reid=True), 30.0)
    d = sv.Detections(
        xyxy=np.array([[10, 10, 40, 90]], dtype=np.float32),
        confidence=np.array([0.9], dtype=np.float32),
        class_id=np.zeros(1, dtype=np.int64),
        data={DATA_EMBEDDING: np.zeros((1, 4), dtype=np.float32)},
    )
    t.update(d)
    assert isinstance(t, BotSort)
    assert [tr.embedding for tr in t.book.tracked] == [None]


def test_degenerate_boxes_are_not_tracked(make: Callable[..., Tracker]) -> None:
    t = make(track_high_thresh=0.0, track_low_thresh=0.0, new_track_thresh=0.0)
    for f in range(3):
        d = sv.Detections(
            xyxy=np.array(
                [[10, 10, 10, 50], [20, 20, 60, 20], [5, 5, 0, 0], [100 + f, 10, 130 + f, 90]],
                dtype=np.float32,
            ),
            confidence=np.full(4, 0.9, dtype=np.float32),
            class_id=np.zeros(4, dtype=np.int64),
        )
        out = t.update(d)
        np.testing.assert_array_equal(out.xyxy, d.xyxy[3:])  # only the real box
        assert out.tracker_id.tolist() == [1]
