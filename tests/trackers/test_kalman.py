"""The Kalman filter against hand-computed steps.

Both layouts keep the four axes independent (diagonal noise, constant
velocity), so one axis can be worked out on paper:

XYAH, measurement h = 40: initial std = 2 * 40/20 = 4 (position), 10 * 40/160
= 2.5 (velocity). predict adds Q = (40/20)^2 = 4 and (40/160)^2 = 0.0625:
    Pxx = 16 + 6.25 + 4 = 26.25, Pxv = 6.25, Pvv = 6.3125.
update with innovation 2 and R = (40/20)^2 = 4, S = 30.25:
    x = 100 + 2 * 26.25 / 30.25, vx = 2 * 6.25 / 30.25,
    Pxx = 26.25 * 4 / 30.25, Pxv = 6.25 * 4 / 30.25, Pvv = 6.3125 - 6.25^2 / 30.25.
XYWH uses w = 20 on the x axis: every variance is a quarter of the above, the
gains are the same.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgewatch.trackers import kalman
from edgewatch.trackers.kalman import Layout

S = 30.25


@pytest.mark.parametrize(
    ("layout", "z", "var"),
    [
        (Layout.XYAH, [100, 50, 0.5, 40], [16, 16, 1e-4, 16, 6.25, 6.25, 1e-10, 6.25]),
        (Layout.XYWH, [100, 50, 20, 40], [4, 16, 4, 16, 1.5625, 6.25, 1.5625, 6.25]),
    ],
)
def test_initiate(layout: Layout, z: list[float], var: list[float]) -> None:
    mean, cov = kalman.initiate(np.array([z], dtype=np.float64), layout)
    np.testing.assert_allclose(mean, [[*z, 0, 0, 0, 0]])
    np.testing.assert_allclose(cov[0], np.diag(var), rtol=1e-12, atol=1e-16)


@pytest.mark.parametrize(
    ("layout", "z", "scale"),
    [(Layout.XYAH, [100, 50, 0.5, 40], 1.0), (Layout.XYWH, [100, 50, 20, 40], 0.25)],
)
def test_predict_then_update_x_axis(layout: Layout, z: list[float], scale: float) -> None:
    mean, cov = kalman.initiate(np.array([z], dtype=np.float64), layout)
    mean, cov = kalman.predict(mean, cov, layout)
    np.testing.assert_allclose(mean[0], [*z, 0, 0, 0, 0])
    np.testing.assert_allclose(
        [cov[0, 0, 0], cov[0, 0, 4], cov[0, 4, 4]], np.array([26.25, 6.25, 6.3125]) * scale
    )
    z2 = np.array([[z[0] + 2, *z[1:]]], dtype=np.float64)
    mean, cov = kalman.update(mean, cov, z2, layout)
    np.testing.assert_allclose(mean[0, [0, 4]], [100 + 2 * 26.25 / S, 2 * 6.25 / S])
    np.testing.assert_allclose(mean[0, [1, 2, 3, 5, 6, 7]], [z[1], z[2], z[3], 0, 0, 0], atol=1e-12)
    expect = np.array([26.25 * 4 / S, 6.25 * 4 / S, 6.3125 - 6.25**2 / S]) * scale
    np.testing.assert_allclose([cov[0, 0, 0], cov[0, 0, 4], cov[0, 4, 4]], expect)
    np.testing.assert_allclose(cov[0], cov[0].T)


@pytest.mark.parametrize(
    ("layout", "mean", "expect"),
    [
        (
            Layout.XYAH,
            [100, 50, 0.5, 40, 2, -1, 0.01, 0.5],
            [102, 49, 0.51, 40.5, 2, -1, 0.01, 0.5],
        ),
        (Layout.XYWH, [100, 50, 20, 40, 2, -1, 1, 0.5], [102, 49, 21, 40.5, 2, -1, 1, 0.5]),
    ],
)
def test_predict_moves_by_velocity(layout: Layout, mean: list[float], expect: list[float]) -> None:
    m = np.array([mean, mean], dtype=np.float64)
    cov = np.stack([np.eye(8), np.eye(8)])
    m2, c2 = kalman.predict(m, cov, layout)
    np.testing.assert_allclose(m2, [expect, expect])
    # F I F^T puts 1 + 1 on position variances and 1 on position/velocity covariances.
    assert c2[0, 0, 0] == pytest.approx(
        2 + (mean[3] / 20 if layout is Layout.XYAH else mean[2] / 20) ** 2
    )
    assert c2[0, 0, 4] == pytest.approx(1.0)


def test_rows_are_independent() -> None:
    """Updating two tracks at once equals updating each alone."""
    rng = np.random.default_rng(0)
    z = np.column_stack(
        [
            rng.uniform(0, 500, 5),
            rng.uniform(0, 500, 5),
            rng.uniform(10, 50, 5),
            rng.uniform(20, 90, 5),
        ]
    )
    for layout in Layout:
        mean, cov = kalman.initiate(z, layout)
        mean, cov = kalman.predict(mean, cov, layout)
        meas = z + rng.normal(0, 2, z.shape)
        both_m, both_c = kalman.update(mean, cov, meas, layout)
        for i in range(5):
            one_m, one_c = kalman.update(mean[i : i + 1], cov[i : i + 1], meas[i : i + 1], layout)
            np.testing.assert_allclose(both_m[i], one_m[0])
            np.testing.assert_allclose(both_c[i], one_c[0])


@pytest.mark.parametrize(
    ("meas", "only_position", "expect"),
    [
        # S = diag(16 + 4, 20, 1e-4 + 1e-2, 20) after initiate (h = 40)
        ([104, 50, 0.5, 40], False, 16 / 20),
        ([104, 46, 0.5, 40], True, 32 / 20),
        ([100, 50, 0.5, 50], False, 100 / 20),
        ([100, 50, 0.5, 50], True, 0.0),
    ],
)
def test_gating_distance(meas: list[float], only_position: bool, expect: float) -> None:
    mean, cov = kalman.initiate(np.array([[100, 50, 0.5, 40]], dtype=np.float64), Layout.XYAH)
    d = kalman.gating_distance(mean, cov, np.array([meas]), Layout.XYAH, only_position)
    assert d.shape == (1, 1)
    assert d[0, 0] == pytest.approx(expect)


@pytest.mark.parametrize("layout", list(Layout))
def test_box_round_trip(layout: Layout) -> None:
    xyxy = np.array([[10, 20, 40, 100], [0, 0, 1, 1]], dtype=np.float64)
    z = kalman.xyxy_to_measurement(xyxy, layout)
    mean, _ = kalman.initiate(z, layout)
    np.testing.assert_allclose(kalman.state_to_xyxy(mean, layout), xyxy)


def test_empty_inputs() -> None:
    for layout in Layout:
        m, c = kalman.initiate(np.zeros((0, 4)), layout)
        assert m.shape == (0, 8) and c.shape == (0, 8, 8)
        m2, c2 = kalman.predict(m, c, layout)
        m3, c3 = kalman.update(m2, c2, np.zeros((0, 4)), layout)
        assert m3.shape == (0, 8) and c3.shape == (0, 8, 8)
