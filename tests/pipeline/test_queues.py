"""BoundedQueue: the two back-pressure policies and the shutdown discard."""

from __future__ import annotations

import threading

import pytest

from edgewatch.pipeline.queues import BoundedQueue, Closed, Policy


@pytest.mark.parametrize(
    ("policy", "puts", "expected", "dropped"),
    [
        (Policy.DROP_OLDEST, [1, 2, 3, 4, 5], [3, 4, 5], 2),
        (Policy.DROP_OLDEST, [1, 2], [1, 2], 0),
        (Policy.BLOCK, [1, 2, 3], [1, 2, 3], 0),
    ],
)
def test_policies(policy: Policy, puts: list[int], expected: list[int], dropped: int) -> None:
    q: BoundedQueue[int] = BoundedQueue(3, policy)
    for x in puts:
        q.put(x)
    assert [q.get_nowait() for _ in range(len(q))] == expected
    assert q.dropped == dropped


def test_block_gives_up_when_stopped() -> None:
    q: BoundedQueue[int] = BoundedQueue(1, Policy.BLOCK)
    q.put(1)
    stop = threading.Event()
    stop.set()
    assert q.put(2, stop) == 2  # handed back, not queued
    assert len(q) == 1


def test_discard_counts_and_unblocks_a_producer() -> None:
    q: BoundedQueue[int] = BoundedQueue(2, Policy.BLOCK)
    q.put(1)
    q.put(2)
    t = threading.Thread(target=q.put, args=(3,))
    t.start()
    assert q.discard() == 2
    t.join(2)
    assert not t.is_alive()
    assert q.dropped == 2
    assert q.get_nowait() == 3


def test_closed_queue_refuses_puts() -> None:
    q: BoundedQueue[int] = BoundedQueue(1, Policy.DROP_OLDEST)
    q.close()
    with pytest.raises(Closed):
        q.put(1)
