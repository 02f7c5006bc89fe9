"""Camera-motion compensation on textured frames with a known shift."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest

from edgewatch.config import GmcMethod
from edgewatch.metrics import Metrics
from edgewatch.trackers import kalman
from edgewatch.trackers.gmc import GMC, identity


def _texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (h // 4 + 1, w // 4 + 1), dtype=np.uint8)
    tex = cv2.GaussianBlur(cv2.resize(noise, (w, h)), (3, 3), 0)
    return cv2.cvtColor(tex, cv2.COLOR_GRAY2BGR)


def _pair(dx: int, dy: int) -> tuple[np.ndarray, np.ndarray]:
    """Two 320x240 views of one texture; the scene moves by (dx, dy) px between them."""
    world = _texture(300, 400)
    a = world[30 : 30 + 240, 40 : 40 + 320].copy()
    b = world[30 - dy : 30 - dy + 240, 40 - dx : 40 - dx + 320].copy()
    return a, b


@pytest.mark.parametrize("method", ["sparseOptFlow", "orb", "sift", "ecc"])
@pytest.mark.parametrize(
    ("dx", "dy", "downscale"),
    [(5, 0, 1), (-5, 0, 2), (3, -4, 2), (0, 0, 1), (8, 6, 1)],
)
def test_translation_recovered(method: str, dx: int, dy: int, downscale: int) -> None:
    a, b = _pair(dx, dy)
    g = GMC(method, downscale)
    np.testing.assert_array_equal(g.apply(a), identity())  # first frame: nothing to compare
    affine = g.apply(b)
    # Sub-pixel fits; the tolerance covers the downscale's rounding (<= 0.5 px at half size).
    np.testing.assert_allclose(affine[:, :2], np.eye(2), atol=0.01)
    np.testing.assert_allclose(affine[:, 2], [dx, dy], atol=0.35)
    assert g.failures == 0


def test_none_is_identity() -> None:
    a, b = _pair(5, 0)
    g = GMC(GmcMethod.NONE, 2)
    g.apply(a)
    np.testing.assert_array_equal(g.apply(b), identity())


def test_detections_are_masked_out() -> None:
    """A textured object moving against a still background must not drag the estimate."""
    bg = _texture(240, 320, seed=1)
    obj = _texture(120, 120, seed=2)
    a, b = bg.copy(), bg.copy()
    a[60:180, 60:180] = obj
    b[60:180, 90:210] = obj  # the object moved 30 px right; the camera did not
    g = GMC("sparseOptFlow", 1)
    g.apply(a, np.array([[60, 60, 180, 180]]))
    affine = g.apply(b, np.array([[90, 60, 210, 180]]))
    np.testing.assert_allclose(affine[:, 2], [0, 0], atol=0.2)


@pytest.mark.parametrize("method", ["sparseOptFlow", "orb", "sift"])
def test_featureless_frames_fall_back(method: str, caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    g = GMC(method, 1, metrics=metrics, source="cam")
    flat = np.full((120, 160, 3), 128, np.uint8)
    with caplog.at_level(logging.WARNING, logger="edgewatch.trackers.gmc"):
        results = [g.apply(flat) for _ in range(4)]
    for r in results:
        np.testing.assert_array_equal(r, identity())
    assert g.failures == 3  # every frame after the first
    assert "cam" in metrics.render() and "gmc" in metrics.render()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # rate-limited: one warning per 10 s


def test_frame_size_change_restarts() -> None:
    g = GMC("sparseOptFlow", 1)
    a, b = _pair(4, 0)
    g.apply(a)
    np.testing.assert_array_equal(g.apply(cv2.resize(b, (160, 120))), identity())
    assert g.failures == 0


@pytest.mark.parametrize(
    ("layout", "affine", "mean_in", "mean_out", "cov_scale"),
    [
        # pure translation: the centre moves, nothing else changes
        (
            kalman.Layout.XYWH,
            [[1, 0, 5], [0, 1, -3]],
            [10, 20, 4, 8, 1, 2, 0, 0],
            [15, 17, 4, 8, 1, 2, 0, 0],
            1.0,
        ),
        (
            kalman.Layout.XYAH,
            [[1, 0, 5], [0, 1, -3]],
            [10, 20, 0.5, 8, 1, 2, 0, 0],
            [15, 17, 0.5, 8, 1, 2, 0, 0],
            1.0,
        ),
        # zoom x2 about the origin: XYWH scales every 2-vector; XYAH scales centre and its velocity
        (
            kalman.Layout.XYWH,
            [[2, 0, 0], [0, 2, 0]],
            [10, 20, 4, 8, 1, 2, 1, 1],
            [20, 40, 8, 16, 2, 4, 2, 2],
            4.0,
        ),
        (
            kalman.Layout.XYAH,
            [[2, 0, 1], [0, 2, 1]],
            [10, 20, 0.5, 8, 1, 2, 0, 0],
            [21, 41, 0.5, 8, 2, 4, 0, 0],
            None,
        ),
    ],
)
def test_apply_affine(
    layout: kalman.Layout, affine: list, mean_in: list, mean_out: list, cov_scale: float | None
) -> None:
    mean = np.array([mean_in, mean_in], dtype=np.float64)
    cov = np.stack([np.eye(8), 2 * np.eye(8)])
    m2, c2 = kalman.apply_affine(mean, cov, np.array(affine, dtype=np.float64), layout)
    np.testing.assert_allclose(m2, [mean_out, mean_out])
    if cov_scale is not None:
        np.testing.assert_allclose(c2, cov * cov_scale)
    else:  # XYAH zoom: position / velocity variances x4, aspect and height untouched
        expect = np.array([4, 4, 1, 1, 4, 4, 1, 1], dtype=np.float64)
        np.testing.assert_allclose(np.diagonal(c2[0]), expect)
