"""One stateless, vectorised constant-velocity Kalman filter for box tracking.

Every function works on all tracks at once: ``mean`` is ``(N, 8)`` float64 and
``covariance`` is ``(N, 8, 8)`` float64. Nothing is stored between calls.

Two state layouts (:class:`Layout`), both in source-frame **pixels**, with
velocities in **pixels per frame** (the filter's time step is one frame):

``XYAH`` (ByteTrack)
    ``[cx, cy, a, h, vcx, vcy, va, vh]``: box centre, aspect ratio
    ``a = w / h`` (unitless, its velocity per frame) and height.
``XYWH`` (BoT-SORT)
    ``[cx, cy, w, h, vcx, vcy, vw, vh]``: box centre, width and height.

The noise follows ByteTrack / BoT-SORT: standard deviations are proportional
to the box size, with ``std_weight_position = 1/20`` and
``std_weight_velocity = 1/160``. Measurements are 4-vectors in the same layout
(the first four state entries).

>>> import numpy as np
>>> m, P = initiate(np.array([[10.0, 20.0, 0.5, 40.0]]), Layout.XYAH)
>>> m2, P2 = predict(m, P, Layout.XYAH)
>>> m2[0, :4].tolist()
[10.0, 20.0, 0.5, 40.0]
"""

from __future__ import annotations

import enum

import numpy as np
import scipy.linalg

STD_WEIGHT_POSITION = 1.0 / 20
STD_WEIGHT_VELOCITY = 1.0 / 160

#: 0.95 quantile of the chi-square distribution, by degrees of freedom.
CHI2INV95 = {1: 3.8415, 2: 5.9915, 3: 7.8147, 4: 9.4877}

_NDIM = 4


class Layout(str, enum.Enum):
    """State layout of the filter; see the module docstring."""

    XYAH = "xyah"
    XYWH = "xywh"


def _motion_mat() -> np.ndarray:
    f = np.eye(2 * _NDIM)
    f[:_NDIM, _NDIM:] = np.eye(_NDIM)
    return f


_F = _motion_mat()
_F.setflags(write=False)


def _scales(measure: np.ndarray, layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    """Per-entry size scale ``(N, 4)`` for position-like and velocity-like noise."""
    h = measure[:, 3]
    if layout is Layout.XYAH:
        return np.stack([h, h, h, h], axis=1), h
    w = measure[:, 2]
    return np.stack([w, h, w, h], axis=1), h


def _std(measure: np.ndarray, layout: Layout, wp: float, wv: float) -> np.ndarray:
    """``(N, 8)`` standard deviations ``[wp * size, wv * size]`` (XYAH: fixed aspect noise)."""
    size, _ = _scales(measure, layout)
    std = np.concatenate([wp * size, wv * size], axis=1)
    if layout is Layout.XYAH:
        std[:, 2] = 1e-2
        std[:, 6] = 1e-5
    return std


def initiate(measurement: np.ndarray, layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    """Start tracks from ``(N, 4)`` measurements; velocities start at 0.

    Returns ``(mean (N, 8), covariance (N, 8, 8))``.
    """
    z = np.asarray(measurement, dtype=np.float64).reshape(-1, _NDIM)
    mean = np.concatenate([z, np.zeros_like(z)], axis=1)
    std = _std(z, layout, 2 * STD_WEIGHT_POSITION, 10 * STD_WEIGHT_VELOCITY)
    return mean, _diag(std**2)


def _diag(var: np.ndarray) -> np.ndarray:
    n, d = var.shape
    out = np.zeros((n, d, d))
    idx = np.arange(d)
    out[:, idx, idx] = var
    return out


def predict(
    mean: np.ndarray, covariance: np.ndarray, layout: Layout
) -> tuple[np.ndarray, np.ndarray]:
    """One frame of constant-velocity motion: ``x' = F x``, ``P' = F P F^T + Q``.

    ``Q`` is diagonal with ``std_pos = 1/20 * size`` and ``std_vel = 1/160 *
    size`` (XYAH: 1e-2 and 1e-5 for the aspect ratio), size taken from the
    current (pre-prediction) mean. Returns new arrays.
    """
    if len(mean) == 0:
        return mean.copy(), covariance.copy()
    std = _std(mean[:, :_NDIM], layout, STD_WEIGHT_POSITION, STD_WEIGHT_VELOCITY)
    new_mean = mean @ _F.T
    new_cov = _F @ covariance @ _F.T + _diag(std**2)
    return new_mean, new_cov


def project(
    mean: np.ndarray, covariance: np.ndarray, layout: Layout
) -> tuple[np.ndarray, np.ndarray]:
    """Measurement-space distribution: ``(N, 4)`` mean and ``(N, 4, 4)`` ``H P H^T + R``.

    ``R`` is diagonal with ``std = 1/20 * size`` (XYAH: 1e-1 for the aspect ratio).
    """
    size, _ = _scales(mean[:, :_NDIM], layout)
    std = STD_WEIGHT_POSITION * size
    if layout is Layout.XYAH:
        std = std.copy()
        std[:, 2] = 1e-1
    cov = covariance[:, :_NDIM, :_NDIM] + _diag(std**2)
    return mean[:, :_NDIM].copy(), cov


def update(
    mean: np.ndarray, covariance: np.ndarray, measurement: np.ndarray, layout: Layout
) -> tuple[np.ndarray, np.ndarray]:
    """Correct ``N`` tracks with ``(N, 4)`` measurements (row ``i`` updates track ``i``).

    ``K = P H^T S^-1``; ``x' = x + K (z - H x)``; ``P' = P - K S K^T``.
    """
    if len(mean) == 0:
        return mean.copy(), covariance.copy()
    z = np.asarray(measurement, dtype=np.float64).reshape(-1, _NDIM)
    proj_mean, proj_cov = project(mean, covariance, layout)
    pht = covariance[:, :, :_NDIM]  # P H^T, (N, 8, 4)
    # S is symmetric positive definite: solve S K^T = (P H^T)^T.
    gain = np.linalg.solve(proj_cov, np.transpose(pht, (0, 2, 1)))  # (N, 4, 8) = K^T
    gain = np.transpose(gain, (0, 2, 1))  # (N, 8, 4)
    innovation = z - proj_mean
    new_mean = mean + np.einsum("nij,nj->ni", gain, innovation)
    new_cov = covariance - gain @ proj_cov @ np.transpose(gain, (0, 2, 1))
    return new_mean, new_cov


def gating_distance(
    mean: np.ndarray,
    covariance: np.ndarray,
    measurements: np.ndarray,
    layout: Layout,
    only_position: bool = False,
) -> np.ndarray:
    """Squared Mahalanobis distance ``(N, M)`` of ``M`` measurements to each of ``N`` tracks.

    Compare with :data:`CHI2INV95` (4 degrees of freedom, or 2 with
    ``only_position``).
    """
    z = np.asarray(measurements, dtype=np.float64).reshape(-1, _NDIM)
    proj_mean, proj_cov = project(mean, covariance, layout)
    dims = 2 if only_position else _NDIM
    out = np.empty((len(mean), len(z)))
    for i in range(len(mean)):
        chol = np.linalg.cholesky(proj_cov[i, :dims, :dims])
        d = (z[:, :dims] - proj_mean[i, :dims]).T
        sol = scipy.linalg.solve_triangular(chol, d, lower=True, check_finite=False)
        out[i] = np.sum(sol * sol, axis=0)
    return out


def apply_affine(
    mean: np.ndarray, covariance: np.ndarray, affine: np.ndarray, layout: Layout
) -> tuple[np.ndarray, np.ndarray]:
    """Move every track by a ``2x3`` image affine (camera motion), as BoT-SORT's ``multi_gmc``.

    XYWH: the ``2x2`` part ``R`` acts on each of the four 2-vectors
    (centre, size, centre velocity, size velocity) and the translation on the
    centre. XYAH: ``R`` acts on the centre and its velocity only (aspect and
    height are left alone). Returns new arrays.
    """
    a = np.asarray(affine, dtype=np.float64)
    if len(mean) == 0:
        return mean.copy(), covariance.copy()
    rot, t = a[:2, :2], a[:2, 2]
    big = np.eye(2 * _NDIM)
    blocks = (0, 2, 4, 6) if layout is Layout.XYWH else (0, 4)
    for b in blocks:
        big[b : b + 2, b : b + 2] = rot
    new_mean = mean @ big.T
    new_mean[:, :2] += t
    new_cov = big @ covariance @ big.T
    return new_mean, new_cov


def xyxy_to_measurement(xyxy: np.ndarray, layout: Layout) -> np.ndarray:
    """``(N, 4)`` corner boxes in pixels -> measurements of ``layout``.

    >>> xyxy_to_measurement(np.array([[0.0, 0.0, 10.0, 20.0]]), Layout.XYAH).tolist()
    [[5.0, 10.0, 0.5, 20.0]]
    """
    b = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    w = b[:, 2] - b[:, 0]
    h = b[:, 3] - b[:, 1]
    cx = b[:, 0] + w / 2
    cy = b[:, 1] + h / 2
    if layout is Layout.XYAH:
        return np.stack([cx, cy, w / np.maximum(h, 1e-9), h], axis=1)
    return np.stack([cx, cy, w, h], axis=1)


def state_to_xyxy(mean: np.ndarray, layout: Layout) -> np.ndarray:
    """``(N, 8)`` states -> ``(N, 4)`` corner boxes ``x1, y1, x2, y2`` in pixels.

    >>> state_to_xyxy(np.array([[5.0, 10.0, 0.5, 20.0, 0, 0, 0, 0]]), Layout.XYAH).tolist()
    [[0.0, 0.0, 10.0, 20.0]]
    """
    m = np.asarray(mean, dtype=np.float64).reshape(-1, 2 * _NDIM)
    h = m[:, 3]
    w = m[:, 2] * h if layout is Layout.XYAH else m[:, 2]
    return np.stack([m[:, 0] - w / 2, m[:, 1] - h / 2, m[:, 0] + w / 2, m[:, 1] + h / 2], axis=1)
