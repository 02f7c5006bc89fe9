"""YOLO output decoding: NMS tables, raw and end-to-end decoders, and whole
models built at test time in every layout (detect, segment, pose, end-to-end;
fp32/fp16; static/dynamic batch; square/rectangular imgsz)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from yolo_onnx_builders import build_model, detect_output, ultralytics_metadata

from edgewatch.config import DetectorConfig, Task
from edgewatch.errors import ModelError
from edgewatch.pipeline.models.yolo import (
    YoloDetector,
    decode_end2end,
    decode_raw,
    nms,
    resolve_classes,
)
from edgewatch.types import DATA_KEYPOINTS

# --------------------------------------------------------------------------- NMS tables

# boxes xyxy, scores, class ids (None = agnostic), iou, max_det -> kept indices
NMS_CASES = [
    pytest.param([[0, 0, 10, 10], [1, 0, 11, 10]], [0.9, 0.8], None, 0.45, None, [0], id="overlap"),
    pytest.param(
        [[0, 0, 10, 10], [1, 0, 11, 10]], [0.8, 0.9], None, 0.45, None, [1], id="best-first"
    ),
    pytest.param(
        [[0, 0, 10, 10], [1, 0, 11, 10]],
        [0.9, 0.8],
        [0, 1],
        0.45,
        None,
        [0, 1],
        id="other-class-kept",
    ),
    pytest.param(
        [[0, 0, 10, 10], [1, 0, 11, 10]], [0.9, 0.8], [1, 1], 0.45, None, [0], id="same-class"
    ),
    # IoU = 50 / 100 = 0.5: suppressed only when strictly greater than the threshold
    pytest.param(
        [[0, 0, 10, 10], [0, 0, 10, 5]], [0.9, 0.8], None, 0.5, None, [0, 1], id="iou-equal-kept"
    ),
    pytest.param(
        [[0, 0, 10, 10], [0, 0, 10, 5]],
        [0.9, 0.8],
        None,
        0.49,
        None,
        [0],
        id="iou-above-suppressed",
    ),
    # A suppresses B; C only overlaps B (removed), so C stays
    pytest.param(
        [[0, 0, 10, 10], [5, 0, 15, 10], [10, 0, 20, 10]],
        [0.9, 0.8, 0.7],
        None,
        0.3,
        None,
        [0, 2],
        id="chain",
    ),
    pytest.param(
        [[0, 0, 1, 1], [2, 2, 3, 3], [4, 4, 5, 5]],
        [0.5, 0.7, 0.6],
        None,
        0.5,
        2,
        [1, 2],
        id="max-det",
    ),
    pytest.param(
        [[0, 0, 1, 1], [2, 2, 3, 3]], [0.5, 0.5], None, 0.5, None, [0, 1], id="ties-keep-order"
    ),
    pytest.param(np.zeros((0, 4)), [], None, 0.5, None, [], id="empty"),
    # zero-area boxes never divide by zero
    pytest.param(
        [[1, 1, 1, 1], [1, 1, 1, 1]], [0.9, 0.8], None, 0.5, None, [0, 1], id="degenerate"
    ),
]


@pytest.mark.parametrize(("boxes", "scores", "cls", "iou", "max_det", "expected"), NMS_CASES)
def test_nms(boxes, scores, cls, iou, max_det, expected) -> None:
    keep = nms(
        np.array(boxes, np.float32).reshape(-1, 4),
        np.array(scores, np.float32),
        iou,
        None if cls is None else np.array(cls),
        max_det,
    )
    assert keep.tolist() == expected


def test_nms_class_offset_matches_per_class_nms() -> None:
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 600, (300, 2))
    boxes = np.hstack([xy, xy + rng.uniform(10, 80, (300, 2))]).astype(np.float32)
    scores = rng.uniform(0, 1, 300).astype(np.float32)
    cls = rng.integers(0, 5, 300)
    got = set(nms(boxes, scores, 0.5, cls).tolist())
    want: set[int] = set()
    for c in range(5):
        idx = np.flatnonzero(cls == c)
        want |= set(idx[nms(boxes[idx], scores[idx], 0.5)].tolist())
    assert got == want


# --------------------------------------------------------------------------- raw decoder


def _raw(rows: list[list[float]]) -> np.ndarray:
    """Anchors as rows [cx, cy, w, h, s0, s1, extra...] -> (C, N)."""
    return np.array(rows, np.float32).T


RAW_CASES = [
    # conf is strict (> 0.25), class = argmax, xywh -> xyxy
    pytest.param(
        [[50, 50, 20, 10, 0.25, 0.1], [50, 50, 20, 10, 0.3, 0.6], [100, 100, 10, 10, 0.9, 0.0]],
        {},
        [[95, 95, 105, 105], [40, 45, 60, 55]],
        [0.9, 0.6],
        [0, 1],
        id="conf-argmax",
    ),
    # classes filter works on the best class (Ultralytics): anchor 1's best is 1
    pytest.param(
        [[50, 50, 20, 10, 0.3, 0.6], [100, 100, 10, 10, 0.9, 0.0]],
        {"classes": np.array([0])},
        [[95, 95, 105, 105]],
        [0.9],
        [0],
        id="classes",
    ),
    pytest.param(
        [[50, 50, 20, 20, 0.9, 0.0], [52, 50, 20, 20, 0.0, 0.8]],
        {},
        [[40, 40, 60, 60], [42, 40, 62, 60]],
        [0.9, 0.8],
        [0, 1],
        id="class-aware",
    ),
    pytest.param(
        [[50, 50, 20, 20, 0.9, 0.0], [52, 50, 20, 20, 0.0, 0.8]],
        {"agnostic": True},
        [[40, 40, 60, 60]],
        [0.9],
        [0],
        id="agnostic",
    ),
    pytest.param(
        [[10, 10, 2, 2, 0.5, 0], [20, 20, 2, 2, 0.7, 0], [30, 30, 2, 2, 0.6, 0]],
        {"max_det": 2},
        [[19, 19, 21, 21], [29, 29, 31, 31]],
        [0.7, 0.6],
        [0, 0],
        id="max-det",
    ),
    pytest.param([[10, 10, 2, 2, 0.1, 0.2]], {}, [], [], [], id="none"),
]


@pytest.mark.parametrize(("rows", "kw", "boxes", "scores", "cls"), RAW_CASES)
def test_decode_raw(rows, kw, boxes, scores, cls) -> None:
    dec = decode_raw(_raw(rows), 2, 0.25, 0.45, **kw)
    np.testing.assert_array_equal(dec.boxes, np.array(boxes, np.float32).reshape(-1, 4))
    np.testing.assert_array_equal(dec.scores, np.array(scores, np.float32))
    assert dec.class_ids.tolist() == cls
    assert dec.extra.shape == (len(cls), 0)


def test_decode_raw_carries_extra_rows() -> None:
    pred = _raw([[10, 10, 2, 2, 0.1, 0.9, 7, 8, 9], [40, 40, 2, 2, 0.8, 0.0, 1, 2, 3]])
    dec = decode_raw(pred, 2, 0.25, 0.45)
    np.testing.assert_array_equal(dec.extra, [[7, 8, 9], [1, 2, 3]])


E2E_CASES = [
    pytest.param({}, [[0, 0, 10, 10], [1, 0, 11, 10]], [0.9, 0.8], [2, 2], id="no-nms"),
    pytest.param({"classes": np.array([0])}, [[50, 50, 60, 60]], [0.5], [0], id="classes"),
    pytest.param({"max_det": 1}, [[0, 0, 10, 10]], [0.9], [2], id="max-det"),
]


@pytest.mark.parametrize(("kw", "boxes", "scores", "cls"), E2E_CASES)
def test_decode_end2end(kw, boxes, scores, cls) -> None:
    pred = np.array(
        [
            [0, 0, 10, 10, 0.9, 2],
            [1, 0, 11, 10, 0.8, 2],
            [50, 50, 60, 60, 0.5, 0],
            [5, 5, 6, 6, 0.25, 1],
            [0, 0, 0, 0, 0.0, 0],
        ],
        np.float32,
    )
    dec = decode_end2end(pred, 0.25, **{"max_det": 300, **kw})
    if "classes" not in kw and "max_det" not in kw:
        boxes, scores, cls = [*boxes, [50, 50, 60, 60]], [*scores, 0.5], [*cls, 0]
    np.testing.assert_array_equal(dec.boxes, np.array(boxes, np.float32))
    np.testing.assert_array_equal(dec.scores, np.array(scores, np.float32))
    assert dec.class_ids.tolist() == cls


@pytest.mark.parametrize(
    ("classes", "expected", "error"),
    [
        (None, None, None),
        (["car", 0], [2, 0], None),
        ([2, "person"], [2, 0], None),
        (["2"], [2], None),
        (["bicycle"], None, "bicycle"),
        ([5], None, "class id 5"),
    ],
)
def test_resolve_classes(classes, expected, error) -> None:
    names = {0: "person", 1: "bus", 2: "car"}
    if error:
        with pytest.raises(ModelError, match=error):
            resolve_classes(classes, names)
    else:
        got = resolve_classes(classes, names)
        assert (got is None and expected is None) or got.tolist() == expected


# --------------------------------------------------------------------------- whole models

SRC_W, SRC_H = 640, 480
N_ANCHORS = 16


def _geometry(imgsz: tuple[int, int]) -> tuple[float, int, int]:
    """ratio, left, top for a 640x480 frame (both test sizes give r = 0.5)."""
    h, w = imgsz
    r = min(h / SRC_H, w / SRC_W)
    return r, round((w - SRC_W * r) / 2 - 0.1), round((h - SRC_H * r) / 2 - 0.1)


def _to_input(xyxy: np.ndarray, imgsz: tuple[int, int]) -> np.ndarray:
    r, left, top = _geometry(imgsz)
    return np.asarray(xyxy, np.float64) * r + [left, top, left, top]


def _cxcywh(xyxy: np.ndarray) -> np.ndarray:
    return np.hstack([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]])


# source-pixel boxes (the last leaves the frame), class, score
SRC_BOXES = np.array(
    [
        [100, 100, 300, 400],
        [110, 100, 310, 400],
        [110, 100, 310, 400],
        [400, 50, 600, 200],
        [0, 300, 100, 460],
        [500, 400, 700, 500],
    ],
    np.float64,
)
SRC_CLS = np.array([0, 0, 1, 0, 1, 1])
SRC_SCORES = np.array([0.875, 0.75, 0.625, 0.5, 0.25, 0.375])
# after NMS (B suppressed by A; E at conf), sorted by score
KEPT = [0, 2, 3, 5]
EXPECTED_BOXES = np.array(
    [[100, 100, 300, 400], [110, 100, 310, 400], [400, 50, 600, 200], [500, 400, 640, 480]],
    np.float32,
)

# per kept instance: mask rectangle in source pixels (x0, y0, x1, y1), a multiple of 8
MASK_RECTS = {
    0: (120, 120, 280, 360),
    2: (40, 80, 360, 440),
    3: (400, 56, 600, 200),
    5: (504, 400, 640, 480),
}
# keypoints (K=3) in source pixels; the last one of box 5 leaves the frame
KPTS = {
    i: np.array([[200 + 8 * i, 200, 0.875], [150, 304, 0.5], [248, 352, 0.25]]) for i in range(6)
}
KPTS[5][2, :2] = (704, 520)


def _scores(nc: int) -> np.ndarray:
    s = np.zeros((len(SRC_BOXES), nc), np.float32)
    s[np.arange(len(SRC_BOXES)), SRC_CLS % nc] = SRC_SCORES
    return s


def _protos(imgsz: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Prototypes (1, 32, h/4, w/4): channel k is +1 on instance k's rectangle."""
    h, w = imgsz
    protos = -np.ones((1, 32, h // 4, w // 4), np.float32)
    coefs = np.zeros((len(SRC_BOXES), 32), np.float32)
    for k, rect in MASK_RECTS.items():
        x0, y0, x1, y1 = (_to_input(np.array([rect]), imgsz)[0] / 4).round().astype(int)
        protos[0, k, y0:y1, x0:x1] = 1.0
        coefs[k, k] = 1.0
    return protos, coefs


def _kpt_input(imgsz: tuple[int, int], d: int) -> np.ndarray:
    r, left, top = _geometry(imgsz)
    out = []
    for i in range(len(SRC_BOXES)):
        k = KPTS[i].copy()
        k[:, 0], k[:, 1] = k[:, 0] * r + left, k[:, 1] * r + top
        out.append(k[:, :d].reshape(-1))
    return np.array(out, np.float32)


def _outputs(task: str, end2end: bool, imgsz: tuple[int, int], d: int) -> dict[str, np.ndarray]:
    nc = 1 if task == "pose" else 2
    extra = None
    outs: dict[str, np.ndarray] = {}
    if task == "segment":
        protos, extra = _protos(imgsz)
        outs["output1"] = protos
    if task == "pose":
        extra = _kpt_input(imgsz, d)
    boxes_in = _to_input(SRC_BOXES, imgsz)
    if end2end:
        keep = [0, 1, 2, 3, 4, 5]
        rows = np.hstack([boxes_in, SRC_SCORES[:, None], (SRC_CLS % nc)[:, None]])
        if extra is not None:
            rows = np.hstack([rows, extra])
        e2e = np.zeros((1, 10, rows.shape[1]), np.float32)
        e2e[0, : len(keep)] = rows[keep]
        return {"output0": e2e, **outs}
    return {"output0": detect_output(_cxcywh(boxes_in), _scores(nc), N_ANCHORS, extra), **outs}


def _expected(task: str, end2end: bool) -> list[int]:
    if not end2end:
        return KEPT if task != "pose" else [0, 3, 5]  # one class: A suppresses B and C
    return [0, 1, 2, 3, 5]  # NMS-free: only the conf filter


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


LAYOUTS = [
    ("detect", False),
    ("segment", False),
    ("pose", False),
    ("detect", True),
    ("segment", True),
    ("pose", True),
]
VARIANTS = [  # fp16, batch (None = dynamic), imgsz (h, w)
    (False, 1, (320, 320)),
    (True, 1, (320, 320)),
    (False, None, (320, 320)),
    (True, None, (256, 320)),
    (False, 1, (256, 320)),
]


def _build(
    tmp_path: Path,
    task: str,
    end2end: bool,
    fp16: bool,
    batch: int | None,
    imgsz: tuple[int, int],
    d: int = 3,
) -> Path:
    names = {0: "person"} if task == "pose" else {0: "person", 1: "car"}
    meta = ultralytics_metadata(
        task,
        names,
        imgsz,
        batch or 1,
        half=fp16,
        dynamic=batch is None,
        nms=end2end,
        kpt_shape=(3, d) if task == "pose" else None,
    )
    return build_model(
        tmp_path / f"{task}.onnx",
        _outputs(task, end2end, imgsz, d),
        imgsz=imgsz,
        batch=batch,
        fp16=fp16,
        metadata=meta,
    )


def _frame(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (SRC_H, SRC_W, 3), dtype=np.uint8)


def _check(det, task: str, end2end: bool, d: int = 3) -> None:
    kept = _expected(task, end2end)
    boxes = np.clip(SRC_BOXES[kept], 0, [SRC_W, SRC_H, SRC_W, SRC_H]).astype(np.float32)
    np.testing.assert_array_equal(det.xyxy, boxes)
    assert det.xyxy.dtype == np.float32 and det.confidence.dtype == np.float32
    np.testing.assert_array_equal(det.confidence, SRC_SCORES[kept].astype(np.float32))
    nc = 1 if task == "pose" else 2
    assert det.class_id.tolist() == (SRC_CLS[kept] % nc).tolist()
    if task == "segment":
        assert det.mask.shape == (len(kept), SRC_H, SRC_W) and det.mask.dtype == bool
        for j, k in enumerate(kept):
            want = np.zeros((SRC_H, SRC_W), bool)
            if k in MASK_RECTS:
                x0, y0, x1, y1 = MASK_RECTS[k]
                want[y0:y1, x0:x1] = True
                bx = boxes[j].astype(int)
                crop = np.zeros_like(want)
                crop[bx[1] : bx[3], bx[0] : bx[2]] = True
                want &= crop
            assert _iou(det.mask[j], want) > 0.99 if want.any() else not det.mask[j].any()
    else:
        assert det.mask is None
    if task == "pose":
        kp = det.data[DATA_KEYPOINTS]
        assert kp.shape == (len(kept), 3, 3) and kp.dtype == np.float32
        want = np.stack([KPTS[k] for k in kept]).astype(np.float32)
        want[..., 0] = np.clip(want[..., 0], 0, SRC_W)
        want[..., 1] = np.clip(want[..., 1], 0, SRC_H)
        if d == 2:
            want[..., 2] = 1.0
        np.testing.assert_array_equal(kp, want)
    else:
        assert DATA_KEYPOINTS not in det.data


@pytest.mark.parametrize(("task", "end2end"), LAYOUTS)
@pytest.mark.parametrize(("fp16", "batch", "imgsz"), VARIANTS)
def test_model_layouts(tmp_path, task, end2end, fp16, batch, imgsz) -> None:
    path = _build(tmp_path, task, end2end, fp16, batch, imgsz)
    det = YoloDetector(DetectorConfig(model=path, device="cpu", iou=0.45))
    det.load()
    assert det.task is Task(task)
    assert det.imgsz == imgsz
    assert det.max_batch == 1
    prepared = det.preprocess([_frame(0), _frame(1)])
    assert prepared.blob.dtype == (np.float16 if fp16 else np.float32)
    assert prepared.blob.shape == (2, 3, *imgsz)
    results = det.postprocess(det.infer(prepared), prepared)
    assert len(results) == 2
    for res in results:
        _check(res, task, end2end)


@pytest.mark.parametrize("end2end", [False, True])
def test_pose_two_dim_keypoints(tmp_path, end2end) -> None:
    path = _build(tmp_path, "pose", end2end, False, 1, (320, 320), d=2)
    det = YoloDetector(DetectorConfig(model=path, device="cpu"))
    det.load()
    _check(det.predict([_frame()])[0], "pose", end2end, d=2)


@pytest.mark.parametrize(
    ("classes", "expected_cls"),
    [(["car"], [1, 1]), ([0], [0, 0]), (["person", "car"], [0, 1, 0, 1])],
)
def test_classes_filter_by_name(tmp_path, classes, expected_cls) -> None:
    path = _build(tmp_path, "detect", False, False, 1, (320, 320))
    det = YoloDetector(DetectorConfig(model=path, device="cpu", classes=classes))
    det.load()
    assert det.predict([_frame()])[0].class_id.tolist() == expected_cls


def test_unknown_class_name_is_an_error(tmp_path) -> None:
    path = _build(tmp_path, "detect", False, False, 1, (320, 320))
    det = YoloDetector(DetectorConfig(model=path, device="cpu", classes=["person", "zebra"]))
    with pytest.raises(ModelError, match="zebra"):
        det.load()


@pytest.mark.parametrize(("max_det", "agnostic", "n"), [(2, False, 2), (300, True, 3)])
def test_max_det_and_agnostic(tmp_path, max_det, agnostic, n) -> None:
    path = _build(tmp_path, "detect", False, False, 1, (320, 320))
    cfg = DetectorConfig(model=path, device="cpu", max_det=max_det, agnostic_nms=agnostic)
    det = YoloDetector(cfg)
    det.load()
    got = det.predict([_frame()])[0]
    assert len(got) == n
    assert got.confidence.tolist() == sorted(got.confidence.tolist(), reverse=True)


def test_empty_results_keep_shapes(tmp_path) -> None:
    path = _build(tmp_path, "segment", False, False, 1, (320, 320))
    det = YoloDetector(DetectorConfig(model=path, device="cpu", conf=0.95))
    det.load()
    got = det.predict([_frame()])[0]
    assert len(got) == 0 and got.xyxy.shape == (0, 4) and got.mask.shape == (0, SRC_H, SRC_W)


@pytest.mark.parametrize(("task", "end2end"), [("segment", False), ("pose", False), ("pose", True)])
def test_task_override_to_detect(tmp_path, task, end2end) -> None:
    """A segment/pose model run as detect: same boxes, no masks or keypoints."""
    path = _build(tmp_path, task, end2end, False, 1, (320, 320))
    det = YoloDetector(DetectorConfig(model=path, device="cpu", task="detect"))
    det.load()
    got = det.predict([_frame()])[0]
    kept = _expected(task, end2end)
    want = np.clip(SRC_BOXES[kept], 0, [SRC_W, SRC_H, SRC_W, SRC_H]).astype(np.float32)
    np.testing.assert_array_equal(got.xyxy, want)
    assert got.mask is None and DATA_KEYPOINTS not in got.data


def test_end2end_guessed_without_metadata(tmp_path) -> None:
    outs = _outputs("detect", True, (320, 320), 3)
    path = build_model(tmp_path / "e2e.onnx", outs, imgsz=(320, 320))
    det = YoloDetector(DetectorConfig(model=path, device="cpu", names=["person", "car"]))
    det.load()
    _check(det.predict([_frame()])[0], "detect", True)


@pytest.mark.parametrize(
    ("meta", "error"),
    [
        ({"task": "classify"}, "task 'classify' is not supported"),
        ({"task": "segment"}, "needs a prototype output"),
        ({"task": "pose"}, r"no 'kpt_shape': set detector\.kpt_shape: \[K, D\]"),
    ],
)
def test_unsupported_layouts(tmp_path, meta, error) -> None:
    outs = _outputs("detect", False, (320, 320), 3)
    path = build_model(
        tmp_path / "m.onnx",
        outs,
        imgsz=(320, 320),
        metadata={**meta, "names": "{0: 'person', 1: 'car'}"},
    )
    with pytest.raises(ModelError, match=error):
        YoloDetector(DetectorConfig(model=path, device="cpu")).load()


@pytest.mark.parametrize("end2end", [False, True])
@pytest.mark.parametrize("d", [2, 3])
def test_pose_without_metadata_needs_kpt_shape(tmp_path, end2end, d) -> None:
    """A bare pose export (no metadata_props): task, names and kpt_shape from the config."""
    outs = _outputs("pose", end2end, (320, 320), d)
    if end2end:  # 300 rows as exported (max_det), so the layout is recognised without metadata
        e2e = outs["output0"]
        outs["output0"] = np.pad(e2e, ((0, 0), (0, 300 - e2e.shape[1]), (0, 0)))
    path = build_model(tmp_path / "bare.onnx", outs)
    base = {"model": path, "device": "cpu", "task": "pose", "names": ["person"]}
    with pytest.raises(ModelError, match=r"bare\.onnx: task pose .* set detector\.kpt_shape"):
        YoloDetector(DetectorConfig(**base)).load()
    det = YoloDetector(DetectorConfig(**base, kpt_shape=(3, d)))
    det.load()
    assert det.task is Task.POSE and det.names == {0: "person"}
    _check(det.predict([_frame()])[0], "pose", end2end, d=d)


def test_config_kpt_shape_overrides_metadata(tmp_path) -> None:
    """The metadata says [3, 3]; the config's [3, 2] wins (a 9-row head read as 3 x 2
    keypoints leaves 3 rows for classes, so the class-count check refuses it)."""
    path = _build(tmp_path, "pose", False, False, 1, (320, 320), d=3)
    cfg = DetectorConfig(model=path, device="cpu", kpt_shape=(3, 2))
    with pytest.raises(ModelError, match=r"4 box \+ 4 classes \+ 6 extra"):
        YoloDetector(cfg).load()


# --------------------------------------------------------------------------- batches

# Frames of different sizes and brightness: the models below move boxes and
# keypoints and lower scores with the picture's mean, so each frame keeps other
# detections (5, 4 and 2 of 6 at 320x320) in other places.
BATCH_FRAMES = [((480, 640), 30), ((300, 200), 130), ((720, 1280), 230)]


def _weights(task: str, end2end: bool, outs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-output weights of the image mean (see ``build_model``)."""
    out0 = outs["output0"]
    w = np.zeros_like(out0)
    nc = 1 if task == "pose" else 2
    if end2end:  # rows: x1, y1, x2, y2, score, class, extra
        w[0, :, [0, 2]] = 40.0
        w[0, :, 4] = -0.5
        if task == "pose":
            w[0, :, 6::3] = 20.0  # keypoint x (K = 3, d = 3)
    else:  # channels: cx, cy, w, h, class scores, extra
        w[0, 0] = 40.0
        w[0, 4 : 4 + nc] = -0.5
        if task == "pose":
            w[0, 4 + nc :: 3] = 20.0
    weights = {"output0": w}
    if task == "segment":  # prototypes brighten but keep their sign: masks move with the boxes
        weights["output1"] = np.full_like(outs["output1"], 0.5)
    return weights


class _CountingSession:
    """The real ONNX Runtime session, recording the batch size of every call."""

    def __init__(self, session) -> None:
        self.session = session
        self.batches: list[int] = []

    def get_inputs(self):
        return self.session.get_inputs()

    def run(self, names, feed):
        self.batches.append(len(next(iter(feed.values()))))
        return self.session.run(names, feed)


@pytest.mark.parametrize(("task", "end2end"), LAYOUTS)
@pytest.mark.parametrize(("fp16", "imgsz"), [(False, (320, 320)), (True, (256, 320))])
@pytest.mark.parametrize(("batch", "calls"), [(3, [3]), (2, [2, 1])])
def test_dynamic_batch_equals_one_by_one(
    tmp_path, task, end2end, fp16, imgsz, batch, calls
) -> None:
    """Several different frames per inference call decode exactly as one at a time."""
    outs = _outputs(task, end2end, imgsz, 3)
    meta = ultralytics_metadata(
        task,
        {0: "person"} if task == "pose" else {0: "person", 1: "car"},
        imgsz,
        1,
        half=fp16,
        dynamic=True,
        nms=end2end,
        kpt_shape=(3, 3) if task == "pose" else None,
    )
    path = build_model(
        tmp_path / f"{task}.onnx",
        outs,
        imgsz=imgsz,
        batch=None,
        fp16=fp16,
        metadata=meta,
        weights=_weights(task, end2end, outs),
    )
    det = YoloDetector(DetectorConfig(model=path, device="cpu", batch=batch))
    det.load()
    assert det.max_batch == batch
    session = _CountingSession(det._session)
    det._session = session
    frames = [np.full((h, w, 3), v, np.uint8) for (h, w), v in BATCH_FRAMES]
    prepared = det.preprocess(frames)
    outputs = det.infer(prepared)
    assert session.batches == calls
    assert [len(o) for o in outputs] == [3] * len(outputs)
    together = det.postprocess(outputs, prepared)
    alone = [det.predict([f])[0] for f in frames]
    assert session.batches == [*calls, 1, 1, 1]
    assert len(together) == 3
    for a, b in zip(together, alone, strict=True):
        np.testing.assert_array_equal(a.xyxy, b.xyxy)
        np.testing.assert_array_equal(a.confidence, b.confidence)
        np.testing.assert_array_equal(a.class_id, b.class_id)
        if task == "segment":
            np.testing.assert_array_equal(a.mask, b.mask)
        if task == "pose":
            np.testing.assert_array_equal(a.data[DATA_KEYPOINTS], b.data[DATA_KEYPOINTS])
    # each frame decodes to something else, so a mix-up between frames would show
    counts = [len(d) for d in alone]
    assert len(set(counts)) == 3 and min(counts) >= 1, counts
