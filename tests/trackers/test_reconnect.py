"""A source that reopens after a gap, at the runner: bridge the gap or reset the tracker.

Three walkers move fast (5 to 8 px per frame at 10 fps), so that after a gap of
several frames their boxes no longer overlap where they were: only a tracker
that predicts them across the gap finds them again. The frames are fed to the
runner's own ``Pipeline._tracker_for`` (the code that decides) with a new
``generation`` after the gap, as a reconnecting camera delivers them.

The rule is the tracker's: it keeps lost tracks ``track_buffer / 30`` seconds
(``int(fps / 30 * track_buffer)`` frames at ``fps``): 1.0 s with the default
``track_buffer: 30``, at any rate.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import pytest
import supervision as sv
from testkit import tiny_detector

from edgewatch.config import LabelerConfig, parse_config
from edgewatch.pipeline.labeler import NO_LABEL, Labeler
from edgewatch.pipeline.queues import BoundedQueue, Policy
from edgewatch.pipeline.runner import Pipeline, _SourceRun
from edgewatch.sources import build_source
from edgewatch.types import DATA_LABEL, Frame

T0 = 1_700_000_000.0
#: x, y (top-left, pixels) at t = 0 and velocity in px/frame at 10 fps; boxes are 40 x 90.
WALKERS = {1: (100.0, 40.0, 5.0, 0.0), 2: (800.0, 300.0, -5.0, 0.0), 3: (450.0, 20.0, 0.0, 8.0)}
SIZE = (40.0, 90.0)
BEFORE, AFTER = 20, 10  # frames before and after the gap
TRACKERS = {
    "bytetrack": "{type: bytetrack}",
    "botsort": "{type: botsort, gmc_method: none}",
}


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_detector(tmp_path_factory.mktemp("model") / "tiny.onnx")


def _pipeline(model: Path, tracker: str) -> tuple[Pipeline, _SourceRun]:
    cfg = parse_config(
        "sources:\n"
        "  - {id: cam, uri: 'rtsp://127.0.0.1:9/cam'}\n"
        f"detector: {{model: '{model}'}}\n"
        f"tracker: {tracker}\n"
    )
    pipe = Pipeline(cfg)
    scfg = cfg.sources[0]
    source = build_source(scfg, pipe.metrics, lambda ev: None)
    run = _SourceRun(scfg, source, BoundedQueue(1, Policy.DROP_OLDEST), threading.Event())
    return pipe, run


def _frames(gap_s: float, fps: float) -> list[tuple[Frame, sv.Detections, list[int]]]:
    """Frames (with the walkers' detections and their true ids) before and after a gap.

    After the gap the walkers are where their constant velocity took them, and
    the detections come in reverse order, so a tracker started afresh would
    number them differently.
    """
    image = np.random.default_rng(0).integers(0, 256, (480, 960, 3), dtype=np.uint8)
    times = [k / fps for k in range(BEFORE)]
    times += [times[-1] + gap_s + k / fps for k in range(AFTER)]
    out = []
    for i, t in enumerate(times):
        after = i >= BEFORE
        ids = sorted(WALKERS, reverse=after)
        boxes = []
        for oid in ids:
            x, y, vx, vy = WALKERS[oid]
            x, y = x + vx * 10.0 * t, y + vy * 10.0 * t  # velocities are per frame at 10 fps
            boxes.append([x, y, x + SIZE[0], y + SIZE[1]])
        det = sv.Detections(
            xyxy=np.array(boxes, dtype=np.float32),
            confidence=np.full(len(ids), 0.9, np.float32),
            class_id=np.zeros(len(ids), dtype=np.int64),
        )
        frame = Frame("cam", i, t, T0 + t, image, generation=int(after), fps=fps)
        out.append((frame, det, ids))
    return out


def _ids(tracked: sv.Detections, det: sv.Detections, truth: list[int]) -> dict[int, int]:
    """``{true id: tracker id}`` of one frame (the output rows are input rows)."""
    out = {}
    for box, tid in zip(tracked.xyxy, tracked.tracker_id, strict=True):
        row = int(np.flatnonzero(np.all(det.xyxy == box, axis=1))[0])
        out[truth[row]] = int(tid)
    return out


def _track(
    pipe: Pipeline, run: _SourceRun, frames: list[tuple[Frame, sv.Detections, list[int]]]
) -> list[dict[int, int]]:
    result = []
    for frame, det, truth in frames:
        tracker = pipe._tracker_for(run, frame)
        assert tracker is not None
        result.append(_ids(tracker.update(det, frame.image), det, truth))
    return result


@pytest.mark.parametrize("tracker", sorted(TRACKERS))
@pytest.mark.parametrize(("fps", "gap_s"), [(10.0, 0.8), (10.0, 1.0), (25.0, 0.8)])
def test_short_gap_keeps_ids(
    model: Path, tracker: str, fps: float, gap_s: float, caplog: pytest.LogCaptureFixture
) -> None:
    pipe, run = _pipeline(model, TRACKERS[tracker])
    with caplog.at_level(logging.INFO, logger="edgewatch.pipeline.runner"):
        ids = _track(pipe, run, _frames(gap_s, fps))
    assert run.tracker is not None and run.tracker.keeps_tracks_for_s() == pytest.approx(1.0)
    assert ids[BEFORE - 1] == {1: 1, 2: 2, 3: 3}
    # Every walker is found again on the first frame after the gap, under its own ID.
    assert ids[BEFORE:] == [{1: 1, 2: 2, 3: 3}] * AFTER
    assert pipe.metrics.counter("edgewatch_tracker_resets_total", source="cam") == 0
    assert "tracker reset" not in caplog.text


@pytest.mark.parametrize("tracker", sorted(TRACKERS))
@pytest.mark.parametrize(("fps", "gap_s"), [(10.0, 1.2), (10.0, 10.0), (25.0, 1.2)])
def test_long_gap_resets_ids(
    model: Path, tracker: str, fps: float, gap_s: float, caplog: pytest.LogCaptureFixture
) -> None:
    pipe, run = _pipeline(model, TRACKERS[tracker])
    with caplog.at_level(logging.INFO, logger="edgewatch.pipeline.runner"):
        ids = _track(pipe, run, _frames(gap_s, fps))
    assert ids[BEFORE - 1] == {1: 1, 2: 2, 3: 3}
    # A fresh tracker: IDs restart at 1, in the order of the (reversed) detections.
    assert ids[BEFORE:] == [{3: 1, 2: 2, 1: 3}] * AFTER
    assert pipe.metrics.counter("edgewatch_tracker_resets_total", source="cam") == 1
    assert f"gap of {gap_s:.1f} s after reopening (> 1.0 s), tracker reset" in caplog.text



@pytest.mark.parametrize(("gap_s", "kept"), [(0.8, True), (1.2, False)])
def test_labels_follow_the_tracker(model: Path, tmp_path: Path, gap_s: float, kept: bool) -> None:
    """The labeler keeps a track's label over a bridged gap and forgets it on a reset."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from pipeline.clip_models import TINY, AssetUnavailable, build_clip_dir

    try:
        clip = build_clip_dir(TINY, seed=0)
    except AssetUnavailable as e:
        pytest.skip(f"cannot fetch the OpenAI CLIP vocabulary from PyPI: {e}")
    pipe, run = _pipeline(model, TRACKERS["bytetrack"])
    # every: 15 -> crops at frames 0 and 15 (and none of the old tracks at 20).
    cfg = LabelerConfig(
        model=clip, labels=["person", "car"], every=15, cache_dir=tmp_path, device="cpu"
    )
    lab = pipe._labeler = Labeler(cfg, {0: "person"}, pipe.metrics)
    lab.start()
    labels: list[dict[int, str]] = []
    try:
        for frame, det, truth in _frames(gap_s, 10.0):
            tracker = pipe._tracker_for(run, frame)
            assert tracker is not None
            if frame.index == BEFORE:
                assert lab.tracks_known() == (3 if kept else 0)
            out = lab.process(frame, tracker.update(det, frame.image))
            ids = _ids(out, det, truth)
            by_tid = dict(zip(out.tracker_id.tolist(), out.data[DATA_LABEL].tolist(), strict=True))
            labels.append({oid: by_tid[tid] for oid, tid in ids.items()})
            assert lab.flush()  # each frame's crops encoded before the next frame
    finally:
        lab.stop()
    assert NO_LABEL not in labels[BEFORE - 1].values()
    if kept:  # the same walkers under the same IDs: their labels carry on
        assert labels[BEFORE] == labels[BEFORE - 1]
