"""Mask decoding from prototypes and wire encodings (COCO RLE, polygons)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgewatch.config import MaskFormat
from edgewatch.pipeline.models.masks import (
    encode_mask,
    mask_to_polygons,
    mask_to_rle,
    protos_to_masks,
    rle_to_mask,
)

# mask rows -> counts (column-major, first run counts zeros)
RLE_CASES = [
    pytest.param([[0, 0], [0, 0]], [4], id="empty"),
    pytest.param([[1, 1], [1, 1]], [0, 4], id="full"),
    pytest.param([[1, 0], [0, 0]], [0, 1, 3], id="first-pixel"),
    pytest.param([[0, 0], [0, 1]], [3, 1], id="last-pixel"),
    # column-major: column 0 = (0, 1), column 1 = (1, 1), column 2 = (0, 0)
    pytest.param([[0, 1, 0], [1, 1, 0]], [1, 3, 2], id="column-major"),
    pytest.param([[1, 0, 1], [0, 0, 1]], [0, 1, 3, 2], id="ends-with-ones"),
    pytest.param([[0, 0, 0, 1], [0, 0, 0, 0], [0, 1, 0, 0]], [5, 1, 3, 1, 2], id="sparse"),
]


@pytest.mark.parametrize(("rows", "counts"), RLE_CASES)
def test_rle_table(rows, counts) -> None:
    mask = np.array(rows, bool)
    rle = mask_to_rle(mask)
    assert rle == {"size": list(mask.shape), "counts": counts}
    np.testing.assert_array_equal(rle_to_mask(rle), mask)


@pytest.mark.parametrize("seed", range(6))
def test_rle_round_trip_random(seed) -> None:
    rng = np.random.default_rng(seed)
    h, w = rng.integers(1, 60, 2)
    mask = rng.random((h, w)) < rng.uniform(0.05, 0.95)
    if seed % 2:  # a blob in the middle with empty columns around it
        mask[:] = False
        mask[h // 4 : h // 2 + 1, w // 3 : w // 2 + 1] = True
    rle = mask_to_rle(mask)
    assert sum(rle["counts"]) == h * w
    assert all(c > 0 for c in rle["counts"][1:])
    np.testing.assert_array_equal(rle_to_mask(rle), mask)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools vs numpy 2
@pytest.mark.parametrize("seed", range(4))
def test_rle_matches_pycocotools(seed) -> None:
    coco = pytest.importorskip("pycocotools.mask", reason="pycocotools not installed")
    rng = np.random.default_rng(100 + seed)
    h, w = 37 + seed * 13, 53 + seed * 7
    mask = np.zeros((h, w), bool)
    for _ in range(3):
        y, x = rng.integers(0, h), rng.integers(0, w)
        mask[y : y + rng.integers(1, 20), x : x + rng.integers(1, 20)] = True
    ours = mask_to_rle(mask)
    ref = coco.encode(np.asfortranarray(mask.astype(np.uint8)))
    assert coco.frPyObjects(ours, h, w)["counts"] == ref["counts"]
    np.testing.assert_array_equal(coco.decode(coco.frPyObjects(ours, h, w)).astype(bool), mask)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools vs numpy 2
def test_rle_matches_pycocotools_on_random_masks() -> None:
    coco = pytest.importorskip("pycocotools.mask", reason="pycocotools not installed")
    rng = np.random.default_rng(5)
    for i in range(300):
        h, w = (int(v) for v in rng.integers(1, 12, 2))
        mask = rng.random((h, w)) < rng.random()
        if i % 3 == 0:  # one block, often touching the borders or spanning the height
            mask[:] = False
            mask[rng.integers(0, h) : rng.integers(0, h + 1), rng.integers(0, w) :] = True
        ref = coco.encode(np.asfortranarray(mask.astype(np.uint8)))
        assert coco.frPyObjects(mask_to_rle(mask), h, w)["counts"] == ref["counts"], mask


def test_rle_rejects_bad_counts() -> None:
    with pytest.raises(ValueError, match="sum to 3"):
        rle_to_mask({"size": [2, 2], "counts": [1, 2]})


def test_polygons_of_rectangles() -> None:
    mask = np.zeros((100, 120), bool)
    mask[10:30, 20:50] = True
    mask[60:90, 70:110] = True
    polys = sorted(mask_to_polygons(mask))
    assert polys == [
        [[20, 10], [20, 29], [49, 29], [49, 10]],
        [[70, 60], [70, 89], [109, 89], [109, 60]],
    ]
    assert mask_to_polygons(np.zeros((5, 5), bool)) == []


def test_polygon_fills_back_to_mask() -> None:
    mask = np.zeros((200, 300), np.uint8)
    cv2.circle(mask, (150, 100), 60, 1, -1)
    (poly,) = mask_to_polygons(mask.astype(bool))
    back = np.zeros_like(mask)
    cv2.fillPoly(back, [np.array(poly, np.int32)], 1)
    np.testing.assert_array_equal(back, mask)


@pytest.mark.parametrize(("fmt", "key"), [(MaskFormat.RLE, "rle"), ("polygon", "polygon")])
def test_encode_mask(fmt, key) -> None:
    mask = np.zeros((4, 4), bool)
    mask[1:3, 1:3] = True
    enc = encode_mask(mask, fmt)
    assert list(enc) == [key]
    assert encode_mask(mask, MaskFormat.NONE) is None


def _dense_reference(protos, coefs, boxes, shape):
    """Full-frame masks: logits, un-pad, cv2 bilinear upsampling, crop, > 0."""
    h, w = shape
    nm, mh, mw = protos.shape
    gain = min(mh / h, mw / w)
    pw, ph = (mw - w * gain) / 2, (mh - h * gain) / 2
    top, left = round(ph - 0.1), round(pw - 0.1)
    bottom, right = mh - round(ph + 0.1), mw - round(pw + 0.1)
    logits = (coefs @ protos.reshape(nm, -1)).reshape(-1, mh, mw)[:, top:bottom, left:right]
    out = []
    rr, cc = np.arange(h)[:, None], np.arange(w)[None, :]
    for m, (x1, y1, x2, y2) in zip(logits, boxes, strict=True):
        up = cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR)
        inside = (cc >= x1) & (cc < x2) & (rr >= y1) & (rr < y2)
        out.append((up, (up > 0) & inside))
    return out


@pytest.mark.parametrize(
    ("shape", "proto_hw"),
    [
        ((480, 640), (80, 80)),
        ((1080, 1920), (160, 160)),
        ((1920, 1080), (160, 160)),
        ((1079, 1913), (160, 160)),  # sizes sharing no period with the prototypes
        ((577, 769), (160, 160)),
        ((48, 64), (8, 8)),
    ],
)
def test_protos_to_masks_matches_dense_upsampling(shape, proto_hw) -> None:
    rng = np.random.default_rng(sum(shape))
    h, w = shape
    protos = rng.normal(size=(32, *proto_hw)).astype(np.float32)
    coefs = rng.normal(size=(5, 32)).astype(np.float32)
    xy = rng.uniform(0, [w * 0.8, h * 0.8], (5, 2))
    boxes = np.hstack([xy, xy + rng.uniform(1, [w * 0.5, h * 0.5], (5, 2))])
    boxes = np.clip(boxes, 0, [w, h, w, h]).astype(np.float32)
    boxes[0] = [0, 0, w, h]
    got = protos_to_masks(protos, coefs, boxes, shape)
    assert got.shape == (5, h, w) and got.dtype == bool
    for k, (logit, want) in enumerate(_dense_reference(protos, coefs, boxes, shape)):
        # block-wise resizing gives exactly the full-frame resize
        np.testing.assert_array_equal(got[k], want)
        # and that is torch's interpolate(align_corners=False), up to float rounding
        torch_like = _torch_bilinear(protos, coefs[k], shape)
        assert np.abs(torch_like - logit).max() < 1e-4


def _torch_bilinear(protos, coef, shape):
    """Un-padded logits upsampled with torch's align_corners=False formula."""
    h, w = shape
    _, mh, mw = protos.shape
    gain = min(mh / h, mw / w)
    pw, ph = (mw - w * gain) / 2, (mh - h * gain) / 2
    top, left = round(ph - 0.1), round(pw - 0.1)
    m = np.tensordot(coef, protos, 1)[top : mh - round(ph + 0.1), left : mw - round(pw + 0.1)]

    def taps(n_out, n_in):
        src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0)
        i0 = np.minimum(src.astype(int), n_in - 1)
        return i0, np.minimum(i0 + 1, n_in - 1), src - i0

    y0, y1, ly = taps(h, m.shape[0])
    x0, x1, lx = taps(w, m.shape[1])
    rows = m[y0] * (1 - ly)[:, None] + m[y1] * ly[:, None]
    return rows[:, x0] * (1 - lx) + rows[:, x1] * lx


def test_protos_to_masks_empty_and_degenerate_box() -> None:
    protos = np.ones((32, 8, 8), np.float32)
    assert protos_to_masks(protos, np.zeros((0, 32)), np.zeros((0, 4)), (48, 64)).shape == (
        0,
        48,
        64,
    )
    got = protos_to_masks(protos, np.ones((1, 32)), np.array([[10, 10, 10, 20]]), (48, 64))
    assert not got.any()
