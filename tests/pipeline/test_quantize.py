"""Static INT8 quantization: head detection, frame sampling, agreement, end to end.

The end-to-end tests quantize a small YOLOv8-shaped model built here with the
``onnx`` helper API: a conv stem with SiLU, two scales (strides 16 and 32), a
box branch (4 x 16 DFL bins) and a class branch per scale, and the real
Ultralytics post-processing (Concat/Reshape, Split, DFL Softmax + Conv,
dist2bbox Sub/Add/Div, Mul by strides, Sigmoid, final Concat). Its weights are
set by hand so class 0 fires on bright image regions: calibrating on pictures of
white squares gives real detections to compare.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgewatch.errors import ModelError, SourceError
from edgewatch.pipeline.models.onnx import read_model_info
from edgewatch.pipeline.models.quantize import (
    agreement,
    box_iou,
    calibration_stride,
    head_float_nodes,
    match_detections,
    name_nodes,
    quantize_yolo,
    sample_frames,
    split_positions,
)

IMGSZ = 640
REG = 16
NC = 2
#: Names of the post-processing nodes the builder creates (what must stay float).
POST_NODES = {
    "cat_s16", "cat_s32", "flat_s16", "flat_s32", "cat_anchors", "split_box_cls",
    "dfl_reshape", "dfl_transpose", "dfl_softmax", "dfl_conv", "dfl_flat", "split_lt_rb",
    "x1y1", "x2y2", "sum_xy", "c_xy", "wh", "cat_box", "mul_stride", "cls_sigmoid", "cat_out",
}


def _silu(x: np.ndarray | float) -> np.ndarray | float:
    return x / (1 + np.exp(-x))


def _conv(nodes: list, inits: list, name: str, x: str, w: np.ndarray, b: np.ndarray | None,
          stride: int, act: bool) -> str:
    inits.append(numpy_helper.from_array(w.astype(np.float32), f"{name}.w"))
    ins = [x, f"{name}.w"]
    if b is not None:
        inits.append(numpy_helper.from_array(b.astype(np.float32), f"{name}.b"))
        ins.append(f"{name}.b")
    k = w.shape[2]
    nodes.append(helper.make_node("Conv", ins, [f"{name}.y"], name=name, kernel_shape=[k, k],
                                  strides=[stride, stride]))
    if not act:
        return f"{name}.y"
    nodes.append(helper.make_node("Sigmoid", [f"{name}.y"], [f"{name}.s"], name=f"{name}.sig"))
    nodes.append(helper.make_node("Mul", [f"{name}.y", f"{name}.s"], [f"{name}.a"],
                                  name=f"{name}.silu"))
    return f"{name}.a"


def _head_weights(rng: np.random.Generator, thresh: float) -> tuple[np.ndarray, ...]:
    """Box and class conv weights: boxes 2 strides from the anchor on each side
    (DFL peaked at bin 2), class 0 logit = 40 * (feature0 - thresh), class 1 never."""
    wb = rng.normal(0, 0.01, (4 * REG, 8, 1, 1))
    bb = np.zeros(4 * REG)
    bb[2::REG] = 8.0
    wc = np.zeros((NC, 8, 1, 1))
    wc[0, 0] = 40.0
    bc = np.array([-40.0 * thresh, -12.0])
    return wb, bb, wc, bc


def build_tiny_yolo(path: Path, metadata: dict[str, str] | None = None) -> Path:
    """Write the YOLOv8-shaped detector described in the module docstring."""
    rng = np.random.default_rng(0)
    nodes: list = []
    inits: list = []
    w_stem = rng.normal(0, 0.02, (8, 3, 16, 16))
    w_stem[0] = 1.0 / (3 * 16 * 16)  # channel 0 = mean brightness of the 16x16 patch
    f16 = _conv(nodes, inits, "stem", "images", w_stem, np.zeros(8), 16, True)
    w_down = rng.normal(0, 0.02, (8, 8, 2, 2))
    w_down[0] = 0.0
    w_down[0, 0] = 0.25
    f32 = _conv(nodes, inits, "down", f16, w_down, np.zeros(8), 2, True)
    t16 = float(_silu(0.6))
    t32 = float(_silu(_silu(0.6)))
    flats, anchors, strides = [], [], []
    for tag, feat, stride, thresh in (("s16", f16, 16, t16), ("s32", f32, 32, t32)):
        wb, bb, wc, bc = _head_weights(rng, thresh)
        box = _conv(nodes, inits, f"box_{tag}", feat, wb, bb, 1, False)
        cls = _conv(nodes, inits, f"cls_{tag}", feat, wc, bc, 1, False)
        nodes.append(helper.make_node("Concat", [box, cls], [f"cat_{tag}.y"], name=f"cat_{tag}",
                                      axis=1))
        inits.append(numpy_helper.from_array(np.array([1, 4 * REG + NC, -1], np.int64),
                                             f"flat_{tag}.shape"))
        nodes.append(helper.make_node("Reshape", [f"cat_{tag}.y", f"flat_{tag}.shape"],
                                      [f"flat_{tag}.y"], name=f"flat_{tag}"))
        flats.append(f"flat_{tag}.y")
        g = IMGSZ // stride
        ys, xs = np.meshgrid(np.arange(g) + 0.5, np.arange(g) + 0.5, indexing="ij")
        anchors.append(np.stack([xs.ravel(), ys.ravel()]))
        strides.append(np.full(g * g, stride, np.float32))
    n_anchors = sum(a.shape[1] for a in anchors)
    inits += [
        numpy_helper.from_array(np.concatenate(anchors, 1)[None].astype(np.float32), "anchors"),
        numpy_helper.from_array(np.concatenate(strides)[None], "strides"),
        numpy_helper.from_array(np.array([4 * REG, NC], np.int64), "split_bc"),
        numpy_helper.from_array(np.array([1, 4, REG, n_anchors], np.int64), "dfl_shape"),
        numpy_helper.from_array(np.arange(REG, dtype=np.float32).reshape(1, REG, 1, 1), "dfl.w"),
        numpy_helper.from_array(np.array([1, 4, n_anchors], np.int64), "dfl_flat_shape"),
        numpy_helper.from_array(np.array([2, 2], np.int64), "split_lr"),
        numpy_helper.from_array(np.array(2.0, np.float32), "two"),
    ]
    mk = helper.make_node
    nodes += [
        mk("Concat", flats, ["x_cat"], name="cat_anchors", axis=2),
        mk("Split", ["x_cat", "split_bc"], ["box_logits", "cls_logits"], name="split_box_cls",
           axis=1),
        mk("Reshape", ["box_logits", "dfl_shape"], ["dfl_r"], name="dfl_reshape"),
        mk("Transpose", ["dfl_r"], ["dfl_t"], name="dfl_transpose", perm=[0, 2, 1, 3]),
        mk("Softmax", ["dfl_t"], ["dfl_sm"], name="dfl_softmax", axis=1),
        mk("Conv", ["dfl_sm", "dfl.w"], ["dfl_c"], name="dfl_conv", kernel_shape=[1, 1]),
        mk("Reshape", ["dfl_c", "dfl_flat_shape"], ["dist"], name="dfl_flat"),
        mk("Split", ["dist", "split_lr"], ["lt", "rb"], name="split_lt_rb", axis=1),
        mk("Sub", ["anchors", "lt"], ["x1y1"], name="x1y1"),
        mk("Add", ["anchors", "rb"], ["x2y2"], name="x2y2"),
        mk("Add", ["x1y1", "x2y2"], ["sum_xy"], name="sum_xy"),
        mk("Div", ["sum_xy", "two"], ["c_xy"], name="c_xy"),
        mk("Sub", ["x2y2", "x1y1"], ["wh"], name="wh"),
        mk("Concat", ["c_xy", "wh"], ["box_grid"], name="cat_box", axis=1),
        mk("Mul", ["box_grid", "strides"], ["box_px"], name="mul_stride"),
        mk("Sigmoid", ["cls_logits"], ["cls_prob"], name="cls_sigmoid"),
        mk("Concat", ["box_px", "cls_prob"], ["output0"], name="cat_out", axis=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny_yolo",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, IMGSZ, IMGSZ])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 4 + NC, n_anchors])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    meta = metadata if metadata is not None else {
        "author": "Ultralytics", "task": "detect", "stride": "32", "batch": "1",
        "imgsz": f"[{IMGSZ}, {IMGSZ}]", "names": "{0: 'bright', 1: 'never'}",
        "args": "{'batch': 1, 'half': False, 'dynamic': False, 'opset': 13, 'nms': False}",
    }
    for k, v in meta.items():
        p = model.metadata_props.add()
        p.key, p.value = k, v
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def write_square_images(folder: Path, n: int, seed: int = 1) -> list[Path]:
    """``n`` 640x480 dark images, each with 1-3 white 64..128 px squares (PNG)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        img = np.full((480, 640, 3), 20, np.uint8)
        for _ in range(int(rng.integers(1, 4))):
            s = int(rng.integers(64, 129))
            x, y = int(rng.integers(0, 640 - s)), int(rng.integers(0, 480 - s))
            img[y : y + s, x : x + s] = 255
        p = folder / f"img_{i:03d}.png"
        cv2.imwrite(str(p), img)
        paths.append(p)
    return paths


@pytest.fixture(scope="module")
def tiny_yolo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_yolo(tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture(scope="module")
def squares(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("squares")
    write_square_images(folder, 16)
    return folder


# --------------------------------------------------------------------------- graph


def test_head_float_nodes_are_exactly_the_post_processing(tiny_yolo: Path) -> None:
    model = onnx.load(str(tiny_yolo))
    assert set(head_float_nodes(model)) == POST_NODES


def test_head_float_nodes_on_real_detector(detector_path: Path) -> None:
    model = onnx.load(str(detector_path))
    name_nodes(model)
    got = head_float_nodes(model)
    ops = [n.op_type for n in model.graph.node if n.name in set(got)]
    assert got[-1] == "/model.22/Concat_5"  # the output Concat
    assert "/model.22/dfl/conv/Conv" in got and "/model.22/Sigmoid" in got
    assert ops.count("Conv") == 1  # only the DFL conv; the head's learned convs are quantized
    assert not any(n.startswith("/model.2") and "/cv2." in n for n in got)


def test_name_nodes_fills_only_missing_names() -> None:
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="Relu_1"),
             helper.make_node("Relu", ["y"], ["z"]), helper.make_node("Relu", ["z"], ["w"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", 1, [1])],
                              [helper.make_tensor_value_info("w", 1, [1])])
    model = helper.make_model(graph)
    assert name_nodes(model) == 2
    assert [n.name for n in model.graph.node] == ["Relu_1", "Relu_1_", "Relu_2"]


# --------------------------------------------------------------------------- frames


@pytest.mark.parametrize(
    ("n", "n_eval", "calib", "ev"),
    [
        (6, 2, [0, 2, 3, 5], [1, 4]),
        (4, 0, [0, 1, 2, 3], []),
        (5, 1, [0, 1, 3, 4], [2]),
        (3, 3, [], [0, 1, 2]),
        (10, 3, [0, 2, 3, 4, 6, 7, 9], [1, 5, 8]),
    ],
)
def test_split_positions(n: int, n_eval: int, calib: list[int], ev: list[int]) -> None:
    assert split_positions(n, n_eval) == (calib, ev)


@pytest.mark.parametrize(("n", "stride"), [(1, 1), (8, 8), (9, 3), (12, 6), (13, 1), (64, 8)])
def test_calibration_stride(n: int, stride: int) -> None:
    assert calibration_stride(n) == stride


def _write_video(path: Path, n: int) -> None:
    """MJPG AVI whose frame i is a flat image of intensity 10 * i."""
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
    for i in range(n):
        vw.write(np.full((48, 64, 3), 10 * i, np.uint8))
    vw.release()


def test_sample_frames_video_spreads_and_holds_out(tmp_path: Path) -> None:
    video = tmp_path / "v.avi"
    _write_video(video, 21)
    s = sample_frames(video, 4, 2)
    # 6 picks over 0..20 = round(linspace) -> 0, 4, 8, 12, 16, 20; eval positions 0.5*6/2 -> 1, 4
    assert s.calib_indices == (0, 8, 12, 20)
    assert s.eval_indices == (4, 16)
    assert [round(float(f.mean()) / 10) for f in s.calib] == [0, 8, 12, 20]
    assert [round(float(f.mean()) / 10) for f in s.eval] == [4, 16]


def test_sample_frames_images(squares: Path) -> None:
    s = sample_frames(squares, 5, 3)
    # 8 picks = round(linspace(0, 15, 8)) -> 0 2 4 6 9 11 13 15; eval positions 1, 4, 6
    assert s.calib_indices == (0, 4, 6, 11, 15)
    assert s.eval_indices == (2, 9, 13)
    assert not set(s.calib_indices) & set(s.eval_indices)
    assert all(f.shape == (480, 640, 3) for f in (*s.calib, *s.eval))


@pytest.mark.parametrize(("calib", "ev", "match"), [
    (20, 0, r"has 16 frames, need 20"),
    (10, 10, r"has 16 frames, need 20 \(10 calibration \+ 10 held out\)"),
])
def test_sample_frames_too_few(squares: Path, calib: int, ev: int, match: str) -> None:
    with pytest.raises(SourceError, match=match):
        sample_frames(squares, calib, ev)


def test_sample_frames_missing_source(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="calibration source not found"):
        sample_frames(tmp_path / "nope.avi", 4, 1)


# --------------------------------------------------------------------------- agreement


@pytest.mark.parametrize(
    ("ref", "ref_cls", "test", "test_cls", "conf", "expected"),
    [
        # identical box -> one match at IoU 1
        ([[0, 0, 10, 10]], [0], [[0, 0, 10, 10]], [0], [0.9], [(0, 0, 1.0)]),
        # same box, other class -> no match
        ([[0, 0, 10, 10]], [0], [[0, 0, 10, 10]], [1], [0.9], []),
        # IoU exactly 0.5 counts: [0,0,10,10] vs [0,0,10,5] -> 50/100
        ([[0, 0, 10, 10]], [0], [[0, 0, 10, 5]], [0], [0.9], [(0, 0, 0.5)]),
        # IoU 1/3 does not
        ([[0, 0, 2, 2]], [0], [[1, 0, 3, 2]], [0], [0.9], []),
        # two test boxes on one ref: the more confident one takes it
        ([[0, 0, 10, 10]], [0], [[0, 0, 10, 10], [0, 0, 10, 9]], [0, 0], [0.3, 0.8],
         [(1, 0, 0.9)]),
        # nothing to match
        ([], [], [[0, 0, 1, 1]], [0], [0.5], []),
    ],
)
def test_match_detections(ref, ref_cls, test, test_cls, conf, expected) -> None:
    got = match_detections(np.array(ref, float).reshape(-1, 4), np.array(ref_cls, int),
                           np.array(test, float).reshape(-1, 4), np.array(test_cls, int),
                           np.array(conf, float))
    assert [(t, r) for t, r, _ in got] == [(t, r) for t, r, _ in expected]
    assert [iou for *_, iou in got] == pytest.approx([iou for *_, iou in expected])


def test_box_iou_table() -> None:
    a = np.array([[0, 0, 2, 2], [0, 0, 0, 0]], float)
    b = np.array([[1, 0, 3, 2], [0, 0, 2, 2], [5, 5, 6, 6]], float)
    np.testing.assert_allclose(box_iou(a, b), [[1 / 3, 1.0, 0.0], [0.0, 0.0, 0.0]])


def test_agreement_pools_images() -> None:
    import supervision as sv

    def det(boxes: list, cls: list, conf: list) -> sv.Detections:
        return sv.Detections(xyxy=np.array(boxes, np.float32).reshape(-1, 4),
                             class_id=np.array(cls, int), confidence=np.array(conf, np.float32))

    ref = [det([[0, 0, 10, 10], [20, 20, 30, 30]], [0, 0], [0.9, 0.8]), det([], [], [])]
    test = [det([[0, 0, 10, 10]], [0], [0.7]), det([[0, 0, 5, 5]], [1], [0.4])]
    a = agreement(ref, test)
    assert (a.frames, a.ref_boxes, a.test_boxes, a.matched) == (2, 2, 2, 1)
    assert (a.precision, a.recall, a.mean_iou) == (0.5, 0.5, 1.0)
    empty = agreement([det([], [], [])], [det([], [], [])])
    assert (empty.precision, empty.recall) == (1.0, 1.0)


# --------------------------------------------------------------------------- end to end


@pytest.mark.parametrize("preprocess_graph", [True, False])
def test_quantize_tiny_yolo(tiny_yolo: Path, squares: Path, tmp_path: Path,
                            preprocess_graph: bool) -> None:
    out = tmp_path / "tiny_int8.onnx"
    r = quantize_yolo(tiny_yolo, squares, out, frames=10, eval_frames=6,
                      preprocess_graph=preprocess_graph)
    assert r.output == out and out.is_file()
    assert set(r.excluded_nodes) == POST_NODES
    assert r.calib_indices == (0, 2, 3, 5, 7, 8, 10, 11, 13, 15)
    assert r.eval_indices == (1, 4, 6, 9, 12, 14)
    q = onnx.load(str(out))
    ops = {n.op_type for n in q.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    # the stem and head convs are quantized (their weights go through DequantizeLinear)
    dq_inputs = {n.input[0] for n in q.graph.node if n.op_type == "DequantizeLinear"}
    assert any(i.startswith("stem.w") for i in dq_inputs)
    assert not any(i.startswith("dfl.w") for i in dq_inputs)
    info = read_model_info(out)
    assert (info.task, info.names, info.imgsz) == ("detect", {0: "bright", 1: "never"}, (640, 640))
    assert info.metadata["author"] == "Ultralytics"
    assert info.metadata["quantization"] == "int8 static QDQ (minmax, 10 frames of squares0)"
    assert info.args["int8"] is True and info.args["half"] is False
    a = r.agreement
    assert a.frames == 6 and a.ref_boxes >= 6  # every held-out image has a bright square
    assert a.test_boxes > 0 and a.precision >= 0.8 and a.recall >= 0.8 and a.mean_iou >= 0.8
    assert r.float_ms > 0 and r.int8_ms > 0


def test_quantizing_the_head_is_refused(tiny_yolo: Path, squares: Path, tmp_path: Path) -> None:
    out = tmp_path / "bad_int8.onnx"
    with pytest.raises(ModelError, match=r"INT8 model finds no detections on 4 held-out frames"):
        quantize_yolo(tiny_yolo, squares, out, frames=6, eval_frames=4, keep_head_float=False)
    assert not out.exists()


def test_quantize_refuses_to_overwrite_input(tiny_yolo: Path, squares: Path) -> None:
    with pytest.raises(ModelError, match="would overwrite the input model"):
        quantize_yolo(tiny_yolo, squares, tiny_yolo, frames=2, eval_frames=1)


def test_quantize_unknown_method(tiny_yolo: Path, squares: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="unknown calibration method 'kl'"):
        quantize_yolo(tiny_yolo, squares, tmp_path / "x.onnx", method="kl")


def test_cli_quantize_prints_report(tiny_yolo: Path, squares: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    from edgewatch.cli import main

    out = tmp_path / "cli_int8.onnx"
    rc = main(["models", "quantize", str(tiny_yolo), "--calibrate", str(squares), "--frames", "6",
               "--eval-frames", "3", "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0 and out.is_file()
    assert f"wrote {out}" in text
    assert f"{len(POST_NODES)} head nodes kept in float" in text
    assert "precision" in text and "recall" in text and "x)" in text


@pytest.mark.slow
def test_quantize_real_detector(detector_path: Path, vtest_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "det_int8.onnx"
    r = quantize_yolo(detector_path, vtest_path, out, frames=16, eval_frames=8)
    info = read_model_info(out)
    assert info.names == {0: "Normal", 1: "Fall"} and info.task == "detect"
    assert not set(r.calib_indices) & set(r.eval_indices)
    a = r.agreement
    assert a.ref_boxes > 0 and a.precision >= 0.8 and a.recall >= 0.8


@pytest.mark.slow
def test_quantizing_real_head_loses_every_detection(detector_path: Path, vtest_path: Path,
                                                    tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="finds no detections"):
        quantize_yolo(detector_path, vtest_path, tmp_path / "bad.onnx", frames=8, eval_frames=4,
                      keep_head_float=False)
