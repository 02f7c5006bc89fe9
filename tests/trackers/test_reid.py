"""The ONNX ReID embedder, with tiny models built at test time, and BoT-SORT using it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import supervision as sv
from onnx import TensorProto, helper

from edgewatch.config import BotSortConfig
from edgewatch.errors import ModelError
from edgewatch.trackers import build_tracker
from edgewatch.trackers.mot import evaluate
from edgewatch.trackers.reid import OnnxReid

MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])


def _mean_colour_model(path: Path, batch: int | str, hw: tuple[int | str, int | str]) -> Path:
    """(B, 3, H, W) -> (B, 3): the per-channel mean of the normalised crop."""
    x = helper.make_tensor_value_info("crops", TensorProto.FLOAT, [batch, 3, *hw])
    y = helper.make_tensor_value_info("emb", TensorProto.FLOAT, [batch, 3])
    pool = helper.make_node("GlobalAveragePool", ["crops"], ["pooled"])
    flat = helper.make_node("Flatten", ["pooled"], ["emb"], axis=1)
    graph = helper.make_graph([pool, flat], "reid", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def _expected(bgr: tuple[int, int, int]) -> np.ndarray:
    rgb = np.array(bgr[::-1], dtype=np.float64) / 255.0
    v = (rgb - MEAN) / STD
    return v / np.linalg.norm(v)


@pytest.mark.parametrize(
    ("batch", "hw"),
    [("B", (32, 16)), (1, (32, 16)), ("B", ("H", "W"))],
    ids=["dynamic-batch", "batch-1", "dynamic-size"],
)
def test_embeddings(tmp_path: Path, batch: int | str, hw: tuple[int | str, int | str]) -> None:
    model = _mean_colour_model(tmp_path / "reid.onnx", batch, hw)
    img = np.zeros((100, 200, 3), np.uint8)
    img[:, :100] = (0, 0, 255)  # red (BGR)
    img[:, 100:] = (255, 128, 0)
    reid = OnnxReid(model).load()
    emb = reid.embed(
        img, np.array([[10, 10, 60, 90], [120, 5, 190, 95], [-20, -20, 50, 50]], dtype=np.float32)
    )
    assert emb.shape == (3, 3) and emb.dtype == np.float32
    np.testing.assert_allclose(emb[0], _expected((0, 0, 255)), atol=1e-4)  # float32 means
    np.testing.assert_allclose(emb[1], _expected((255, 128, 0)), atol=1e-4)
    np.testing.assert_allclose(emb[2], emb[0], atol=1e-5)  # clipped to the image
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-6)
    assert reid.embed(img, np.zeros((0, 4))).shape[0] == 0


@pytest.mark.parametrize(
    ("content", "match"),
    [(None, "not found"), (b"not an onnx file", "not an ONNX file")],
)
def test_bad_model(tmp_path: Path, content: bytes | None, match: str) -> None:
    p = tmp_path / "reid.onnx"
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(ModelError, match=match):
        OnnxReid(p).load()


def test_wrong_input_shape(tmp_path: Path) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "m.onnx")
    with pytest.raises(ModelError, match=r"is not \(B, 3, H, W\)"):
        OnnxReid(tmp_path / "m.onnx").load()


@pytest.mark.parametrize(("with_reid", "switches"), [(False, 2), (True, 0)])
def test_botsort_with_onnx_reid(tmp_path: Path, with_reid: bool, switches: int) -> None:
    """Two differently coloured people (IoU 0.40) trade places; the ReID model tells them apart."""
    model = _mean_colour_model(tmp_path / "reid.onnx", "B", (32, 16))
    cfg = BotSortConfig(
        gmc_method="none", with_reid=with_reid, proximity_thresh=0.3, model=str(model)
    )
    t = build_tracker(cfg, 30.0)
    colours = [(0, 0, 255), (255, 128, 0)]
    left, right = [100, 50, 140, 150], [117, 50, 157, 150]
    gt, res = [], []
    for f in range(1, 21):
        boxes = [left, right] if f <= 10 else [right, left]
        img = np.full((200, 300, 3), 90, np.uint8)
        # person 2 is drawn first, person 1 on top: the crops keep mostly their own colour
        for pid in (1, 0):
            x1, y1, x2, y2 = boxes[pid]
            img[y1:y2, x1:x2] = colours[pid]
        d = sv.Detections(
            xyxy=np.array(boxes, dtype=np.float32),
            confidence=np.full(2, 0.9, np.float32),
            class_id=np.zeros(2, dtype=np.int64),
        )
        out = t.update(d, img)
        gt += [
            [f, pid + 1, b[0], b[1], b[2] - b[0], b[3] - b[1], 1, 1, 1]
            for pid, b in enumerate(boxes)
        ]
        res += [
            [f, i, b[0], b[1], b[2] - b[0], b[3] - b[1], 1]
            for b, i in zip(out.xyxy, out.tracker_id, strict=True)
        ]
    s = evaluate(np.array(gt, dtype=np.float64), np.array(res, dtype=np.float64))
    assert s["num_switches"] == switches
