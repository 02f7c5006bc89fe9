"""Helpers for source tests (and benchmarks): a driver that runs a source the way the
pipeline runner does, and the real GStreamer RTSP server on loopback
(tests/fixtures/rtsp_server.py, run by the distribution's /usr/bin/python3)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2

from edgewatch.config import SourceConfig
from edgewatch.metrics import Metrics
from edgewatch.sources import build_source
from edgewatch.sources.base import EventCallback, Source
from edgewatch.types import EventKind, Frame, SourceEvent

SERVER = Path(__file__).resolve().parent.parent / "fixtures" / "rtsp_server.py"
SYSTEM_PYTHON = "/usr/bin/python3"
CHECK = (
    "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0');"
    " from gi.repository import Gst, GstRtspServer; Gst.init(None);"
    " assert Gst.ElementFactory.find('x264enc') and Gst.ElementFactory.find('rtph264pay')"
)

SourceFactory = Callable[[SourceConfig, Metrics, EventCallback], Source]
"""Builds a source from its config (``build_source`` unless a test injects a seam)."""


class Driver:
    """Runs a source the way the pipeline runner does: frames() in a thread, then close()."""

    def __init__(self, cfg: SourceConfig, build: SourceFactory = build_source) -> None:
        self.events: list[SourceEvent] = []
        self.metrics = Metrics()
        self.src = build(cfg, self.metrics, self.events.append)
        self.frames: list[Frame] = []
        self.stop = threading.Event()
        self.returned_at: float | None = None
        self.thread = threading.Thread(target=self._consume, name="test-consumer")

    def _consume(self) -> None:
        for f in self.src.frames(self.stop):
            self.frames.append(f)
        self.returned_at = time.monotonic()

    def __enter__(self) -> Driver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)
        self.src.close()

    def wait_for(self, cond: Callable[[], bool], timeout: float, what: str) -> float:
        t0 = time.monotonic()
        while not cond():
            if time.monotonic() - t0 > timeout:
                raise AssertionError(
                    f"timed out after {timeout} s waiting for {what}; "
                    f"state {self.src.state}: {self.src.state_detail}"
                )
            time.sleep(0.02)
        return time.monotonic()

    def kinds(self) -> list[EventKind]:
        return [e.kind for e in self.events]

    def stop_and_time(self) -> float:
        t0 = time.monotonic()
        self.stop.set()
        self.thread.join(5)
        assert self.returned_at is not None, "frames() did not return"
        return self.returned_at - t0


def jpeg_frames(video: Path, out: Path, frames: int, size: tuple[int, int]) -> str:
    """The first ``frames`` frames of ``video`` resized to ``size`` (w, h) as JPEGs in
    ``out``; returns their printf pattern (the RTSP server's ``--frames``)."""
    cap = cv2.VideoCapture(str(video))
    try:
        for i in range(frames):
            ok, img = cap.read()
            assert ok, f"{video} ended at frame {i}"
            cv2.imwrite(str(out / f"frame_{i:05d}.jpg"), cv2.resize(img, size))
    finally:
        cap.release()
    return str(out / "frame_%05d.jpg")


def gst_missing() -> str:
    """Why the RTSP server cannot run here ("" when it can)."""
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} not found"
    r = subprocess.run([SYSTEM_PYTHON, "-c", CHECK], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        return "GStreamer RTSP bindings or x264enc missing: run scripts/ci-deps"
    return ""


@dataclass
class RtspServer:
    """A running rtsp_server.py process; start/kill it by PID."""

    port: int
    frames: str
    path: str = "/cam"
    user: str | None = None
    password: str | None = None
    size: tuple[int, int] = (320, 240)
    fps: int = 10
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
            str(self.fps),
            "--width",
            str(self.size[0]),
            "--height",
            str(self.size[1]),
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
