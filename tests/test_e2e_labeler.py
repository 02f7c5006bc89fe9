"""The labeler inside the real pipeline: real footage, real detector, a random CLIP.

Speed goals (detector fps with and without the labeler) live in
``scripts/bench_labeler.py``; these tests check behaviour only.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pipeline.clip_models import TINY, AssetUnavailable, build_clip_dir

from edgewatch.config import parse_config
from edgewatch.pipeline.runner import Pipeline
from edgewatch.types import DATA_LABEL

EVERY = 10


@pytest.fixture(scope="module")
def clip_dir() -> Path:
    try:
        return build_clip_dir(TINY, seed=0)
    except AssetUnavailable as e:
        if os.environ.get("CI"):
            pytest.fail(f"cannot build the test CLIP: {e}")
        pytest.skip(f"cannot fetch the OpenAI CLIP vocabulary from PyPI: {e}")


def _run(
    vtest: Path,
    model: Path,
    clip: Path,
    tmp: Path,
    frames: int,
    extra: str = "",
    every: int = EVERY,
):
    cfg = parse_config(
        f"sources: [{{id: v, uri: '{vtest}', max_frames: {frames}}}]\n"
        f"detector: {{model: '{model}', conf: 0.35}}\n"
        "labeler:\n"
        f"  model: '{clip}'\n"
        "  labels: [pedestrian, cyclist, person carrying a bag]\n"
        f"  every: {every}\n"
        f"  cache_dir: '{tmp / 'cache'}'\n"
        # This file runs a file source flat out, so detection saturates both
        # cores: under the default `priority: idle` the encoder only gets idle
        # CPU and labels arrive when they can. These tests check scheduling
        # and labels, so the encoder runs at `nice` only (labels on time).
        "  priority: nice\n"
        f"{extra}"
    )
    results = []
    pipe = Pipeline(cfg, on_result=results.append)
    summary = pipe.run()
    return results, summary, pipe.metrics


def test_every_track_labeled_within_every_frames(
    vtest_path, detector_path, clip_dir, tmp_path
) -> None:
    results, summary, metrics = _run(
        vtest_path,
        detector_path,
        clip_dir,
        tmp_path,
        60,
        "  min_score: 0.0\n  max_crops_per_frame: 4\n",
    )
    assert summary.frames == {"v": 60}
    first_seen: dict[int, int] = {}
    labeled_at: dict[int, int] = {}
    for r in results:
        det = r.detections
        assert DATA_LABEL in det.data
        for tid, label in zip(det.tracker_id, det.data[DATA_LABEL], strict=True):
            first_seen.setdefault(int(tid), r.frame.index)
            if label and int(tid) not in labeled_at:
                labeled_at[int(tid)] = r.frame.index
    # Tracks seen long enough to be due a label must have one within `every` frames.
    due = [
        t
        for t, f in first_seen.items()
        if f + EVERY < 60
        and sum(1 for r in results if t in set(r.detections.tracker_id.tolist())) > EVERY
    ]
    assert len(due) >= 3, first_seen
    for t in due:
        assert t in labeled_at, (t, first_seen[t])
        assert labeled_at[t] - first_seen[t] <= EVERY, (t, first_seen[t], labeled_at[t])
    labels = {str(x) for r in results for x in r.detections.data[DATA_LABEL] if x}
    assert labels <= {"pedestrian", "cyclist", "person carrying a bag"}
    crops = metrics.counter_sum("edgewatch_labeler_crops_total")
    assert 0 < crops <= 60 * 4  # the per-frame budget holds


def test_slow_encoder_drops_and_counts(vtest_path, detector_path, clip_dir, tmp_path) -> None:
    # A queue of 1 and a crop on every frame for every track: the encoder must
    # fall behind, drop the oldest requests, count them, and never stall frames.
    results, summary, metrics = _run(
        vtest_path,
        detector_path,
        clip_dir,
        tmp_path,
        30,
        "  queue_size: 1\n  batch: 1\n  max_crops_per_frame: 16\n  min_size: 1\n",
        every=1,
    )
    assert summary.frames == {"v": 30}
    assert [r.frame.index for r in results] == list(range(30))
    dropped = metrics.counter_sum("edgewatch_drops_total", stage="labeler")
    encoded = metrics.counter_sum("edgewatch_labeler_encoded_total")
    assert dropped > 0 and encoded > 0
    assert summary.drops.get("v/labeler", 0) == dropped


def test_botsort_takes_appearance_from_the_labeler(
    vtest_path, detector_path, clip_dir, tmp_path, caplog
) -> None:
    cfg = parse_config(
        f"sources: [{{id: v, uri: '{vtest_path}', max_frames: 40}}]\n"
        f"detector: {{model: '{detector_path}', conf: 0.35}}\n"
        "tracker: {type: botsort, gmc_method: none, with_reid: true, model: auto}\n"
        f"labeler: {{model: '{clip_dir}', labels: [pedestrian, cyclist], every: 5,"
        f" cache_dir: '{tmp_path / 'c'}'}}\n"
    )
    pipe = Pipeline(cfg)
    with caplog.at_level("WARNING"):
        s = pipe.run()
    assert s.frames == {"v": 40}
    tracker = pipe._sources["v"].tracker
    # Every reported track that the labeler encoded now carries its embedding.
    with_emb = [t for t in tracker.book.tracked if t.track_id and t.embedding is not None]
    assert len(with_emb) >= 3
    assert not [r for r in caplog.records if "carry no 'embedding'" in r.getMessage()]
    assert pipe.metrics.counter_sum("edgewatch_fallbacks_total", stage="reid") == 0
