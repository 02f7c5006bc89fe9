"""StreamSource against a real GStreamer RTSP server on 127.0.0.1 (see conftest.py).

Reconnects, the stall watchdog, typed failure details and prompt stops are
exercised on real sockets; timings are asserted with generous tolerances.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from sources.sourcekit import Driver

from edgewatch.config import SourceConfig
from edgewatch.errors import SourceAuthError, SourceError
from edgewatch.metrics import Metrics
from edgewatch.sources import build_source
from edgewatch.sources.live import (
    SourceRefusedError,
    SourceStalledError,
    SourceTimeoutError,
    UnknownHostError,
)
from edgewatch.sources.rtsp import StreamSource
from edgewatch.types import EventKind, SourceState

pytestmark = pytest.mark.rtsp

SECRET = "Zq8-secret"
WRONG = "Wr0ng-pass"


def live_cfg(uri: str, **kw: object) -> SourceConfig:
    base: dict[str, object] = {
        "open_timeout": 5,
        "read_timeout": 3,
        "stall_timeout": 3,
        "reconnect": {"initial": 0.5, "max": 2.0, "factor": 2.0, "jitter": 0.1},
    }
    base.update(kw)
    return SourceConfig(id="cam", uri=uri, **base)


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_reads_frames(rtsp_server, transport: str) -> None:
    threads = threading.active_count()
    with Driver(live_cfg(rtsp_server.url(), transport=transport)) as d:
        d.wait_for(lambda: len(d.frames) >= 20, 20, "20 frames")
        assert d.src.state is SourceState.STREAMING
        assert "h264 320x240" in d.src.state_detail
    frames = d.frames
    assert [f.index for f in frames] == list(range(len(frames)))
    assert all(b.pts > a.pts for a, b in itertools.pairwise(frames))
    assert all(b.wall_time >= a.wall_time for a, b in itertools.pairwise(frames))
    assert frames[0].image.shape == (240, 320, 3) and frames[0].generation == 0
    assert all(0 < f.decode_ms < 200 for f in frames)
    assert d.src.fps == pytest.approx(10.0)
    assert d.kinds() == [EventKind.CONNECTED]
    assert threading.active_count() == threads


def test_max_frames_and_fps_limit(rtsp_server) -> None:
    with Driver(live_cfg(rtsp_server.url(), max_frames=8, fps=5)) as d:
        d.thread.join(20)
    idx = [f.index for f in d.frames]
    assert len(idx) == 8
    assert all(b - a == 2 for a, b in itertools.pairwise(idx))  # 10 fps -> every other


@pytest.mark.slow
def test_reconnects_after_server_restart(rtsp_server, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    threads, fds = threading.active_count(), fd_count()
    with Driver(live_cfg(rtsp_server.url())) as d:
        d.wait_for(lambda: len(d.frames) >= 10, 20, "10 frames")
        rtsp_server.kill()
        killed = time.monotonic()
        d.wait_for(lambda: EventKind.LOST in d.kinds(), 6, "LOST")
        lost_after = time.monotonic() - killed
        time.sleep(max(0.0, 10.0 - (time.monotonic() - killed)))
        assert d.src.state in (SourceState.BACKOFF, SourceState.CONNECTING, SourceState.FAILED)
        before = len(d.frames)
        rtsp_server.start()
        restarted = time.monotonic()
        back = d.wait_for(lambda: len(d.frames) > before, 20, "frames after restart")
        reconnect_s = back - restarted
        d.wait_for(lambda: len(d.frames) > before + 5, 10, "more frames")
        assert d.kinds() == [EventKind.CONNECTED, EventKind.LOST, EventKind.RECONNECTED]
        assert d.src.state is SourceState.STREAMING
        new = d.frames[before:]
        assert all(f.generation == 1 for f in new) and all(
            f.generation == 0 for f in d.frames[:before]
        )
        idx = [f.index for f in d.frames]
        assert idx == list(range(len(idx)))  # the index keeps counting across the reconnect
        assert d.metrics.counter("edgewatch_reconnects_total", source="cam") >= 1
    print(
        f"\nmeasured: LOST {lost_after:.2f} s after kill; "
        f"first frame {reconnect_s:.2f} s after restart"
    )
    assert lost_after < 3 + 1.5
    assert reconnect_s < 2.0 + 5.0 + 1.0  # backoff cap + open + first keyframe
    time.sleep(0.3)
    assert threading.active_count() == threads
    assert fd_count() <= fds


def test_stall_watchdog_fires_within_stall_timeout(rtsp_server) -> None:
    stall = 2.0
    with Driver(live_cfg(rtsp_server.url(), stall_timeout=stall, read_timeout=10)) as d:
        d.wait_for(lambda: len(d.frames) >= 5, 20, "5 frames")
        rtsp_server.signal(signal.SIGUSR1)  # the server keeps the session, sends nothing
        d.wait_for(lambda: EventKind.LOST in d.kinds(), stall + 5, "LOST")
        last_frame = d.frames[-1].wall_time
        lost = next(e for e in d.events if e.kind is EventKind.LOST)
        assert lost.wall_time - last_frame <= stall + 1.0
        assert lost.detail.startswith("stalled: no frame for 2 s")
        assert isinstance(d.src.last_error, SourceStalledError)
        rtsp_server.signal(signal.SIGUSR2)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A TCP server on loopback that accepts connections and never answers."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    held: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        srv.settimeout(0.1)
        while not done.is_set():
            try:
                held.append(srv.accept()[0])
            except TimeoutError:
                continue

    t = threading.Thread(target=accept, name="silent-server")
    t.start()
    yield srv.getsockname()[1]
    done.set()
    t.join()
    for c in held:
        c.close()
    srv.close()


def refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again: nothing listens


@pytest.mark.parametrize(
    ("case", "error", "detail"),
    [
        ("wrong_password", SourceAuthError, "wrong credentials: server answered 401 Unauthorized"),
        ("no_password", SourceAuthError, "wrong credentials: server answered 401 Unauthorized"),
        ("wrong_path", SourceError, "stream not found: server answered 404"),
        ("unknown_host", UnknownHostError, "unknown host 'nonexistent.invalid'"),
        ("refused", SourceRefusedError, "connection refused by 127.0.0.1:"),
        ("silent", SourceTimeoutError, "timeout: no answer from 127.0.0.1:"),
    ],
)
def test_failures_are_typed_readable_and_masked(
    case: str,
    error: type,
    detail: str,
    rtsp_auth_server,
    silent_port: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    uri = {
        "wrong_password": rtsp_auth_server.url("viewer", WRONG),
        "no_password": rtsp_auth_server.url(),
        "wrong_path": rtsp_auth_server.url("viewer", SECRET).replace("/cam", "/nope"),
        "unknown_host": f"rtsp://viewer:{WRONG}@nonexistent.invalid/x",
        "refused": f"rtsp://viewer:{WRONG}@127.0.0.1:{refused_port()}/x",
        "silent": f"rtsp://viewer:{WRONG}@127.0.0.1:{silent_port}/x",
    }[case]
    cfg = live_cfg(uri, open_timeout=1.5, reconnect={"initial": 0.2, "max": 0.5, "jitter": 0})
    probe = build_source(cfg, Metrics())
    assert isinstance(probe, StreamSource)
    with pytest.raises(error, match=detail) as err:
        probe.probe()
    assert type(err.value) is error
    with Driver(cfg) as d:
        d.wait_for(
            lambda: d.metrics.counter("edgewatch_reconnects_total", source="cam") >= 1, 8, "a retry"
        )
        d.wait_for(lambda: d.src.state is SourceState.BACKOFF, 5, "backoff")
        state_detail = d.src.state_detail
        assert state_detail.startswith(detail) and "; retry " in state_detail
        assert type(d.src.last_error) is error
        assert d.frames == [] and d.kinds() == [EventKind.FAILED]  # once, not per retry
        assert d.events[0].detail.startswith(detail)
    for text in (str(err.value), state_detail, caplog.text, *(e.detail for e in d.events)):
        assert WRONG not in text and SECRET not in text


def test_right_credentials_stream(rtsp_auth_server, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with Driver(live_cfg(rtsp_auth_server.url("viewer", SECRET))) as d:
        d.wait_for(lambda: len(d.frames) >= 3, 20, "3 frames")
        assert "viewer:***@127.0.0.1" in d.src.state_detail
    assert d.kinds() == [EventKind.CONNECTED] and "viewer:***@" in d.events[0].detail
    assert SECRET not in caplog.text and all(SECRET not in e.detail for e in d.events)


@pytest.mark.parametrize(
    ("case", "state"),
    [("backoff", SourceState.BACKOFF), ("blocked_open", SourceState.CONNECTING)],
)
def test_stop_returns_within_a_second(case: str, state: SourceState, silent_port: int) -> None:
    if case == "backoff":
        cfg = live_cfg(
            f"rtsp://127.0.0.1:{refused_port()}/x",
            reconnect={"initial": 30, "max": 60, "jitter": 0},
        )
    else:
        cfg = live_cfg(f"rtsp://127.0.0.1:{silent_port}/x", open_timeout=3)
    threads = threading.active_count()
    d = Driver(cfg)
    with d:
        d.wait_for(lambda: d.src.state is state, 5, str(state))
        time.sleep(0.3)
        assert d.src.state is state
        assert d.stop_and_time() < 1.0
    assert d.src.state is SourceState.STOPPED
    # close() joined the worker: a blocked open finishes within open_timeout.
    assert threading.active_count() == threads
