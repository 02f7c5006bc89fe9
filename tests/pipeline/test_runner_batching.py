"""Batching across sources through the real runner: a dynamic-batch model,
three image folders of different sizes, ``detector.batch: 3``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from testkit import image_folder
from yolo_onnx_builders import build_model, detect_output, ultralytics_metadata

from edgewatch.config import PipelineConfig
from edgewatch.metrics import Metrics
from edgewatch.pipeline.runner import Pipeline
from edgewatch.types import FrameResult

#: (h, w) and number of images of each source
SOURCES = {"wide": ((240, 320), 9), "hd": ((360, 640), 7), "tall": ((300, 200), 8)}
FRAMES = sum(n for _, n in SOURCES.values())
TIMING_KEYS = {"decode", "preprocess", "inference", "postprocess", "detect", "track", "total"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    tmp = tmp_path_factory.mktemp("batching")
    boxes = np.array([[80, 100, 40, 60], [200, 160, 80, 40], [150, 220, 30, 30]], np.float32)
    scores = np.array([[0.9, 0.0], [0.0, 0.8], [0.7, 0.1]], np.float32)
    out = detect_output(boxes, scores, 8)
    w = np.zeros_like(out)  # box centres move with the picture's mean brightness
    w[0, 0, :3], w[0, 1, :3] = 60.0, -40.0
    model = build_model(
        tmp / "dyn.onnx",
        {"output0": out},
        batch=None,
        metadata=ultralytics_metadata(dynamic=True),
        weights={"output0": w},
    )
    folders = {
        sid: image_folder(tmp / sid, n, shape, seed=i)
        for i, (sid, (shape, n)) in enumerate(SOURCES.items())
    }
    return model, folders


def _run(setup: tuple[Path, dict[str, Path]], batch: int) -> tuple[list[FrameResult], float]:
    model, folders = setup
    cfg = PipelineConfig.model_validate(
        {
            "sources": [{"id": sid, "uri": str(p)} for sid, p in folders.items()],
            "detector": {"model": str(model), "device": "cpu", "batch": batch, "conf": 0.5},
            "shutdown_timeout": 30,
        }
    )
    metrics = Metrics()
    results: list[FrameResult] = []
    summary = Pipeline(cfg, metrics=metrics, on_result=results.append).run()
    assert summary.error == ""
    assert summary.frames == {sid: n for sid, (_, n) in SOURCES.items()}
    return results, metrics.counter("edgewatch_inference_calls_total", stage="detector")


def test_batch_3_keeps_order_and_detections_with_fewer_calls(
    setup: tuple[Path, dict[str, Path]],
) -> None:
    batched, calls = _run(setup, batch=3)
    single, single_calls = _run(setup, batch=1)

    assert single_calls == FRAMES
    assert FRAMES / 3 <= calls < FRAMES
    for res in (batched, single):
        assert len(res) == FRAMES
        for sid, (_, n) in SOURCES.items():
            # per-source order: every frame once, in the order it was read
            assert [r.frame.index for r in res if r.frame.source_id == sid] == list(range(n))
        assert all(set(r.timing_ms) == TIMING_KEYS for r in res)

    key = {(r.frame.source_id, r.frame.index): r.detections for r in single}
    for r in batched:
        ref = key[(r.frame.source_id, r.frame.index)]
        assert r.frame.image.shape[:2] == SOURCES[r.frame.source_id][0]
        np.testing.assert_allclose(r.detections.xyxy, ref.xyxy, atol=1e-3)
        np.testing.assert_array_equal(r.detections.class_id, ref.class_id)
        np.testing.assert_allclose(r.detections.confidence, ref.confidence, atol=1e-6)
        np.testing.assert_array_equal(r.detections.tracker_id, ref.tracker_id)
    # the boxes follow each picture, so a frame mixed up with another would show
    first_x = {round(float(r.detections.xyxy[0, 0]), 1) for r in single if len(r.detections)}
    assert len(first_x) > FRAMES // 2
