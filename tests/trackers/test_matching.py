"""Cost matrices and the assignment solver."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from edgewatch.trackers import kalman
from edgewatch.trackers.matching import (
    embedding_distance,
    fuse_score,
    gate_cost,
    iou_distance,
    iou_matrix,
    linear_assignment,
)


@pytest.mark.parametrize(
    ("a", "b", "iou"),
    [
        ([0, 0, 10, 10], [0, 0, 10, 10], 1.0),
        ([0, 0, 10, 10], [5, 0, 15, 10], 50 / 150),
        ([0, 0, 10, 10], [10, 0, 20, 10], 0.0),  # touching edges
        ([0, 0, 10, 10], [2, 2, 4, 4], 4 / 100),  # contained
        ([0, 0, 10, 10], [20, 20, 30, 30], 0.0),
        ([0, 0, 0, 0], [0, 0, 0, 0], 0.0),  # degenerate: no area, no overlap
    ],
)
def test_iou_pairs(a: list[float], b: list[float], iou: float) -> None:
    assert iou_matrix(np.array([a]), np.array([b]))[0, 0] == pytest.approx(iou)
    assert iou_distance(np.array([a]), np.array([b]))[0, 0] == pytest.approx(1 - iou)


def test_iou_matrix_matches_loops() -> None:
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 100, (7, 2))
    a = np.hstack([xy, xy + rng.uniform(1, 40, (7, 2))])
    xy = rng.uniform(0, 100, (5, 2))
    b = np.hstack([xy, xy + rng.uniform(1, 40, (5, 2))])
    m = iou_matrix(a, b)
    assert m.shape == (7, 5)
    for i in range(7):
        for j in range(5):
            assert m[i, j] == pytest.approx(iou_matrix(a[i : i + 1], b[j : j + 1])[0, 0])
    assert iou_matrix(a, np.zeros((0, 4))).shape == (7, 0)


@pytest.mark.parametrize(
    ("cost", "scores", "expect"),
    [
        ([[0.0, 0.5]], [1.0, 1.0], [[0.0, 0.5]]),
        ([[0.2, 1.0]], [0.5, 0.9], [[0.6, 1.0]]),
        ([[0.5], [0.0]], [0.4], [[0.8], [0.6]]),
    ],
)
def test_fuse_score(cost: list, scores: list, expect: list) -> None:
    np.testing.assert_allclose(fuse_score(np.array(cost), np.array(scores)), expect)


@pytest.mark.parametrize(
    ("t", "d", "expect"),
    [
        ([[1, 0]], [[1, 0], [0, 1], [-1, 0]], [[0.0, 1.0, 2.0]]),
        ([[3, 4]], [[6, 8]], [[0.0]]),  # not normalised: same direction
        ([[0, 0]], [[1, 0]], [[1.0]]),  # zero vector
    ],
)
def test_embedding_distance(t: list, d: list, expect: list) -> None:
    np.testing.assert_allclose(embedding_distance(np.array(t), np.array(d)), expect, atol=1e-12)


def _optimum(cost: np.ndarray, thresh: float) -> float:
    """Best objective with refusals: matched costs + thresh / 2 per unmatched row or column.

    Solved by scipy on the (n + m) square matrix that lap's ``extend_cost`` builds.
    """
    n, m = cost.shape
    big = 1e9
    full = np.full((n + m, n + m), big)
    full[:n, :m] = np.where(cost <= thresh, cost, big)
    full[:n, m:] = np.where(np.eye(n), thresh / 2, big)
    full[n:, :m] = np.where(np.eye(m), thresh / 2, big)
    full[n:, m:] = 0.0
    r, c = linear_sum_assignment(full)
    return float(full[r, c].sum())


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("shape", [(5, 5), (3, 8), (9, 4), (1, 6), (20, 20)])
def test_linear_assignment_vs_scipy(seed: int, shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(seed)
    cost = rng.uniform(0, 1, shape)
    # Without a threshold (every pair allowed): the same total cost as scipy.
    m, ua, ub = linear_assignment(cost, thresh=1e6)
    r, c = linear_sum_assignment(cost)
    assert cost[m[:, 0], m[:, 1]].sum() == pytest.approx(cost[r, c].sum())
    assert len(m) == min(shape)
    # With a threshold: no pair above it, and the refusal-aware optimum.
    thresh = 0.4
    m, ua, ub = linear_assignment(cost, thresh)
    assert np.all(cost[m[:, 0], m[:, 1]] <= thresh)
    got = cost[m[:, 0], m[:, 1]].sum() + thresh / 2 * (len(ua) + len(ub))
    assert got == pytest.approx(_optimum(cost, thresh))
    assert sorted([*m[:, 0], *ua]) == list(range(shape[0]))
    assert sorted([*m[:, 1], *ub]) == list(range(shape[1]))


@pytest.mark.parametrize(
    ("cost", "thresh", "matches", "ua", "ub"),
    [
        ([[0.1, 0.9], [0.8, 0.95]], 0.5, [[0, 0]], [1], [1]),
        ([[0.1, 0.2], [0.2, 0.9]], 0.5, [[0, 1], [1, 0]], [], []),
        ([[np.inf, 0.3]], 0.5, [[0, 1]], [], [0]),
        ([[0.6]], 0.5, [], [0], [0]),
        (np.zeros((0, 3)), 0.5, [], [], [0, 1, 2]),
        (np.zeros((2, 0)), 0.5, [], [0, 1], []),
    ],
)
def test_linear_assignment_table(
    cost: list, thresh: float, matches: list, ua: list, ub: list
) -> None:
    m, a, b = linear_assignment(np.array(cost, dtype=np.float64), thresh)
    assert m.reshape(-1, 2).tolist() == matches
    assert a.tolist() == ua
    assert b.tolist() == ub


def test_gate_cost() -> None:
    mean, cov = kalman.initiate(
        np.array([[100, 50, 0.5, 40]], dtype=np.float64), kalman.Layout.XYAH
    )
    dets = np.array([[104, 50, 0.5, 40], [130, 50, 0.5, 40]], dtype=np.float64)
    # squared Mahalanobis: 16 / 20 = 0.8 (inside), 900 / 20 = 45 (outside the 9.4877 gate)
    out = gate_cost(np.array([[0.1, 0.2]]), mean, cov, dets, kalman.Layout.XYAH)
    assert out.tolist() == [[0.1, np.inf]]
