"""Pacing, rate limiting and backoff of the sources, as input -> expected tables."""

from __future__ import annotations

import random
import threading
import time

import pytest

from edgewatch.config import ReconnectConfig
from edgewatch.sources.pacing import Backoff, Pacer, RateLimiter


@pytest.mark.parametrize(
    ("src_fps", "limit", "n", "kept"),
    [
        (25, 10, 10, [0, 3, 5, 8]),
        (10, 5, 10, [0, 2, 4, 6, 8]),
        (10, 10, 5, [0, 1, 2, 3, 4]),
        (10, 20, 5, [0, 1, 2, 3, 4]),  # a limit above the stream rate keeps all
        (30, 1, 61, [0, 30, 60]),
        (10, 3, 10, [0, 4, 7]),  # due at 0, 1/3, 2/3: frames 0.0, 0.4, 0.7
    ],
)
def test_rate_limiter_keeps_evenly(src_fps: int, limit: float, n: int, kept: list[int]) -> None:
    lim = RateLimiter(limit)
    assert [i for i in range(n) if lim.keep(i / src_fps)] == kept


def test_rate_limiter_averages_the_limit_over_a_minute() -> None:
    lim = RateLimiter(7.0)
    kept = sum(lim.keep(i / 30) for i in range(30 * 60))
    assert kept == 7 * 60


def test_rate_limiter_restarts_on_pts_jump_back() -> None:
    lim = RateLimiter(5.0)
    assert [lim.keep(t) for t in (0.0, 0.1, 0.2, 0.0, 0.1, 0.2)] == [
        True,
        False,
        True,
        True,
        False,
        True,
    ]


def test_no_limit_keeps_everything() -> None:
    lim = RateLimiter(None)
    assert all(lim.keep(t / 100) for t in range(100))


@pytest.mark.parametrize(
    ("initial", "cap", "factor", "expected"),
    [
        (1.0, 30.0, 2.0, [1, 2, 4, 8, 16, 30, 30]),
        (0.5, 2.0, 3.0, [0.5, 1.5, 2.0, 2.0, 2.0, 2.0, 2.0]),
        (2.0, 2.0, 1.0, [2, 2, 2, 2, 2, 2, 2]),
    ],
)
def test_backoff_without_jitter(
    initial: float, cap: float, factor: float, expected: list[float]
) -> None:
    b = Backoff(ReconnectConfig(initial=initial, max=cap, factor=factor, jitter=0))
    assert [b.next_delay() for _ in expected] == pytest.approx(expected)
    b.reset()
    assert b.next_delay() == pytest.approx(initial)


def test_backoff_jitter_stays_in_band_and_under_cap() -> None:
    b = Backoff(ReconnectConfig(initial=1, max=8, factor=2, jitter=0.25), rng=random.Random(7))
    delays = [b.next_delay() for _ in range(200)]
    nominal = [min(8, 2**i) for i in range(200)]
    for d, n in zip(delays, nominal, strict=True):
        assert n * 0.75 - 1e-9 <= d <= min(8.0, n * 1.25) + 1e-9
    assert len(set(delays)) > 100  # jitter actually varies the delays


def test_pacer_releases_at_stream_rate() -> None:
    pacer, stop = Pacer(), threading.Event()
    t0 = time.monotonic()
    released = []
    for i in range(6):
        assert pacer.wait(10.0 + i * 0.05, stop)
        released.append(time.monotonic() - t0)
    for i, t in enumerate(released):
        assert t == pytest.approx(i * 0.05, abs=0.03)


def test_pacer_returns_at_once_when_stopped() -> None:
    pacer, stop = Pacer(), threading.Event()
    assert pacer.wait(0.0, stop)
    threading.Timer(0.1, stop.set).start()
    t0 = time.monotonic()
    assert not pacer.wait(3.0, stop)
    assert time.monotonic() - t0 < 0.5
