"""Letterbox geometry against hand-computed values (Ultralytics LetterBox rounding)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgewatch.pipeline.models.yolo import letterbox, letterbox_params, scale_boxes, scale_coords

# (src w, src h), new_shape (h, w), auto, scaleup
#   -> ratio, (new_w, new_h), (top, bottom, left, right)
CASES = [
    # 640/641 = 0.99844; 479 * r = 478.25 -> 478; dh = 162 / 2 = 81
    ((641, 479), (640, 640), False, True, 640 / 641, (640, 478), (81, 81, 0, 0)),
    ((1920, 1080), (640, 640), False, True, 1 / 3, (640, 360), (140, 140, 0, 0)),
    ((1080, 1920), (640, 640), False, True, 1 / 3, (360, 640), (0, 0, 140, 140)),
    ((64, 48), (640, 640), False, True, 10.0, (640, 480), (80, 80, 0, 0)),
    # no upscaling: 64x48 stays, pad (640-64)/2 = 288, (640-48)/2 = 296
    ((64, 48), (640, 640), False, False, 1.0, (64, 48), (296, 296, 288, 288)),
    # odd padding: 57 * 6.4 = 364.8 -> 365; dh = 137.5 -> top 137, bottom 138
    ((100, 57), (640, 640), False, True, 6.4, (640, 365), (137, 138, 0, 0)),
    # auto: pad only to a stride multiple: 280 % 32 = 24 -> 12 + 12
    ((1920, 1080), (640, 640), True, True, 1 / 3, (640, 360), (12, 12, 0, 0)),
    # rectangular input (h=384, w=640): r = min(384/1080, 640/1920) = 1/3
    ((1920, 1080), (384, 640), False, True, 1 / 3, (640, 360), (12, 12, 0, 0)),
    # 768x576 -> 640: r = 0.8333, 480 rows; dh = 80
    ((768, 576), (640, 640), False, True, 640 / 768, (640, 480), (80, 80, 0, 0)),
    # extreme strips: 3 * 0.128 = 0.384 px rounds to 0, kept at 1; pad 639 -> 319 + 320
    ((3, 5000), (640, 640), False, True, 0.128, (1, 640), (0, 0, 319, 320)),
    ((5000, 3), (640, 640), False, True, 0.128, (640, 1), (319, 320, 0, 0)),
    ((1, 1), (640, 640), False, True, 640.0, (640, 640), (0, 0, 0, 0)),
    ((1, 1), (640, 640), False, False, 1.0, (1, 1), (319, 320, 319, 320)),
]


@pytest.mark.parametrize(("src", "new_shape", "auto", "scaleup", "ratio", "unpad", "pads"), CASES)
def test_letterbox_params(src, new_shape, auto, scaleup, ratio, unpad, pads) -> None:
    r, got_unpad, got_pads = letterbox_params((src[1], src[0]), new_shape, 32, auto, scaleup)
    assert r == pytest.approx(ratio, rel=1e-12)
    assert got_unpad == unpad
    assert got_pads == pads


@pytest.mark.parametrize(("src", "new_shape", "auto", "scaleup", "ratio", "unpad", "pads"), CASES)
def test_letterbox_image(src, new_shape, auto, scaleup, ratio, unpad, pads) -> None:
    w, h = src
    rng = np.random.default_rng(w * h)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    out, r, (pad_w, pad_h) = letterbox(img, new_shape, auto=auto, scaleup=scaleup)
    top, bottom, left, right = pads
    assert out.shape == (unpad[1] + top + bottom, unpad[0] + left + right, 3)
    assert (pad_w, pad_h) == (left, top)
    assert r == pytest.approx(ratio, rel=1e-12)
    inner = out[top : top + unpad[1], left : left + unpad[0]]
    expected = img if unpad == (w, h) else cv2.resize(img, unpad, interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(inner, expected)
    border = np.ones(out.shape[:2], bool)
    border[top : top + unpad[1], left : left + unpad[0]] = False
    assert (out[border] == 114).all()


@pytest.mark.parametrize(("src", "new_shape", "auto", "scaleup", "ratio", "unpad", "pads"), CASES)
def test_box_round_trip(src, new_shape, auto, scaleup, ratio, unpad, pads) -> None:
    w, h = src
    boxes = np.array([[0, 0, w, h], [w * 0.25, h * 0.5, w * 0.75, h * 0.9]], np.float64)
    r, _, (top, _, left, _) = letterbox_params((h, w), new_shape, 32, auto, scaleup)
    fwd = boxes * r + np.array([left, top, left, top])
    back = scale_boxes(fwd, r, (left, top), (h, w))
    np.testing.assert_allclose(back, boxes, atol=1e-3)
    assert back.dtype == np.float32


# input-pixel xyxy, ratio, pad (left, top), source (h, w) -> source-pixel xyxy (clipped)
SCALE_CASES = [
    ([[10, 150, 330, 490]], 1 / 3, (0, 140), (1080, 1920), [[30, 30, 990, 1050]]),
    # clipped to the frame: x < 0 -> 0, y beyond h -> h
    ([[-20, 100, 700, 700]], 1 / 3, (0, 140), (1080, 1920), [[0, 0, 1920, 1080]]),
    ([[150, 10, 290, 650]], 1 / 3, (140, 0), (1920, 1080), [[30, 30, 450, 1920]]),
    ([[288, 296, 352, 344]], 1.0, (288, 296), (48, 64), [[0, 0, 64, 48]]),
    ([[0, 80, 640, 560]], 10.0, (0, 80), (48, 64), [[0, 0, 64, 48]]),
]


@pytest.mark.parametrize(("boxes", "ratio", "pad", "shape", "expected"), SCALE_CASES)
def test_scale_boxes(boxes, ratio, pad, shape, expected) -> None:
    got = scale_boxes(np.array(boxes, np.float32), ratio, pad, shape)
    np.testing.assert_allclose(got, np.array(expected, np.float32), atol=1e-4)


def test_scale_coords_keeps_leading_dims() -> None:
    pts = np.array([[[10.0, 150.0], [330.0, 490.0]]], np.float32)  # (1, 2, 2)
    got = scale_coords(pts, 1 / 3, (0, 140), (1080, 1920))
    assert got.shape == (1, 2, 2)
    np.testing.assert_allclose(got, [[[30, 30], [990, 1050]]], atol=1e-4)


@pytest.mark.parametrize("shape", [(5000, 3), (3, 5000), (1, 1), (2, 7000), (96, 128)])
def test_detector_takes_any_frame_size(tmp_path, shape: tuple[int, int]) -> None:
    """A frame of any size >= 1x1 gives a valid blob and boxes inside the frame."""
    from testkit import tiny_detector

    from edgewatch.config import DetectorConfig
    from edgewatch.metrics import Metrics
    from edgewatch.pipeline.models.yolo import YoloDetector

    det = YoloDetector(
        DetectorConfig(model=str(tiny_detector(tmp_path / "d.onnx")), device="cpu"), Metrics()
    )
    det.load()
    img = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    prepared = det.preprocess([img])
    assert prepared.blob.shape == (1, 3, 320, 320)
    assert np.isfinite(prepared.blob).all()
    (found,) = det.postprocess(det.infer(prepared), prepared)
    h, w = shape
    assert len(found)  # the tiny model always reports two people
    assert (found.xyxy >= 0).all()
    assert (found.xyxy[:, [0, 2]] <= w).all() and (found.xyxy[:, [1, 3]] <= h).all()
