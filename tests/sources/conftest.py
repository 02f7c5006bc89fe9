"""Fixtures of the source tests: a real GStreamer RTSP server on loopback.

The server (tests/fixtures/rtsp_server.py) runs under the distribution's
/usr/bin/python3, where PyGObject and gst-rtsp-server live (scripts/ci-deps
installs them). Without them the RTSP tests skip with the reason (under
``CI=true`` they fail instead, so CI cannot pass by skipping).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from sources.sourcekit import RtspServer, gst_missing, jpeg_frames


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def gst_available() -> None:
    """Skip (fail under CI) when the GStreamer RTSP server cannot run here."""
    reason = gst_missing()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def rtsp_frames(tmp_path_factory: pytest.TempPathFactory, vtest_path: Path) -> str:
    """The first 40 frames of vtest.avi at 320x240 as JPEGs; a printf pattern."""
    return jpeg_frames(vtest_path, tmp_path_factory.mktemp("rtsp_frames"), 40, (320, 240))


@pytest.fixture
def rtsp_server(gst_available: None, rtsp_frames: str) -> Iterator[RtspServer]:
    """A started server on a free loopback port, no auth; killed after the test."""
    server = RtspServer(free_port(), rtsp_frames)
    server.start()
    yield server
    server.kill()


@pytest.fixture
def rtsp_auth_server(gst_available: None, rtsp_frames: str) -> Iterator[RtspServer]:
    """A started server that asks for basic auth (user ``viewer``, password ``Zq8-secret``)."""
    server = RtspServer(free_port(), rtsp_frames, user="viewer", password="Zq8-secret")
    server.start()
    yield server
    server.kill()
