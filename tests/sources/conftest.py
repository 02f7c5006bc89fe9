"""Fixtures of the source tests: a real GStreamer RTSP server on loopback.

The server (tests/fixtures/rtsp_server.py) runs under the distribution's
/usr/bin/python3, where PyGObject and gst-rtsp-server live (scripts/ci-deps
installs them). Without them the RTSP tests skip with the reason (under
``CI=true`` they fail instead, so CI cannot pass by skipping).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import pytest

SERVER = Path(__file__).resolve().parent.parent / "fixtures" / "rtsp_server.py"
SYSTEM_PYTHON = "/usr/bin/python3"
CHECK = (
    "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0');"
    " from gi.repository import Gst, GstRtspServer; Gst.init(None);"
    " assert Gst.ElementFactory.find('x264enc') and Gst.ElementFactory.find('rtph264pay')"
)


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def gst_available() -> None:
    """Skip (fail under CI) when the GStreamer RTSP server cannot run here."""
    reason = ""
    if not Path(SYSTEM_PYTHON).exists():
        reason = f"{SYSTEM_PYTHON} not found"
    else:
        r = subprocess.run([SYSTEM_PYTHON, "-c", CHECK], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            reason = "GStreamer RTSP bindings or x264enc missing: run scripts/ci-deps"
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def rtsp_frames(tmp_path_factory: pytest.TempPathFactory, vtest_path: Path) -> str:
    """The first 40 frames of vtest.avi at 320x240 as JPEGs; a printf pattern."""
    out = tmp_path_factory.mktemp("rtsp_frames")
    cap = cv2.VideoCapture(str(vtest_path))
    for i in range(40):
        ok, img = cap.read()
        assert ok, f"vtest.avi ended at frame {i}"
        cv2.imwrite(str(out / f"frame_{i:05d}.jpg"), cv2.resize(img, (320, 240)))
    cap.release()
    return str(out / "frame_%05d.jpg")


@dataclass
class RtspServer:
    """A running rtsp_server.py process; start/kill it by PID."""

    port: int
    frames: str
    path: str = "/cam"
    user: str | None = None
    password: str | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def url(self, user: str | None = None, password: str | None = None) -> str:
        cred = f"{user}:{password}@" if user is not None else ""
        return f"rtsp://{cred}127.0.0.1:{self.port}{self.path}"

    def start(self, timeout: float = 20.0) -> None:
        cmd = [
            SYSTEM_PYTHON,
            str(SERVER),
            "--port",
            str(self.port),
            "--path",
            self.path,
            "--frames",
            self.frames,
            "--fps",
            "10",
        ]
        if self.user:
            cmd += ["--user", self.user, "--password", self.password or ""]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # "READY" once bound
        if line.strip() != b"READY":
            self.kill()
            raise RuntimeError(f"rtsp_server.py did not start on port {self.port}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"rtsp_server.py not listening on {self.port}")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None


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
