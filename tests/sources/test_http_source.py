"""StreamSource on HTTP MJPEG from a real multipart HTTP server on 127.0.0.1.

Needs no GStreamer: the server is Python's http.server streaming JPEG frames cut
from vtest.avi at 10 frames/s (the way IP cameras serve /video.mjpg).
"""

from __future__ import annotations

import base64
import http.server
import itertools
import logging
import socket
import socketserver
import threading
import time
from pathlib import Path

import cv2
import pytest

from edgewatch.config import SourceConfig
from edgewatch.errors import SourceAuthError
from edgewatch.metrics import Metrics
from edgewatch.sources import build_source
from edgewatch.sources.rtsp import StreamSource
from edgewatch.types import EventKind, Frame, SourceEvent, SourceState

PASSWORD = "Mj-9secret"


class MjpegServer:
    """A multipart/x-mixed-replace JPEG server that can be killed and restarted on its port."""

    def __init__(self, jpegs: list[bytes], fps: float = 10.0, password: str | None = None) -> None:
        self.jpegs, self.period, self.password = jpegs, 1.0 / fps, password
        self.port = 0
        self._srv: socketserver.ThreadingTCPServer | None = None
        self._thread: threading.Thread | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if server.password is not None:
                    want = "Basic " + base64.b64encode(f"cam:{server.password}".encode()).decode()
                    if self.headers.get("Authorization") != want:
                        self.send_response(401)
                        self.send_header("WWW-Authenticate", 'Basic realm="cam"')
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                with server._lock:
                    server._conns.append(self.connection)
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                i = 0
                try:
                    while True:
                        jpg = server.jpegs[i % len(server.jpegs)]
                        i += 1
                        self.wfile.write(
                            b"--frame\r\nContent-Type: image/jpeg\r\n"
                            b"Content-Length: %d\r\n\r\n" % len(jpg) + jpg + b"\r\n"
                        )
                        time.sleep(server.period)
                except OSError:
                    return

            def log_message(self, *args: object) -> None:
                return

        return Handler

    def start(self) -> None:
        socketserver.ThreadingTCPServer.allow_reuse_address = True
        srv = socketserver.ThreadingTCPServer(("127.0.0.1", self.port), self._handler())
        srv.daemon_threads = True
        self.port = srv.server_address[1]
        self._srv = srv
        self._thread = threading.Thread(target=srv.serve_forever, args=(0.05,), name="mjpeg-server")
        self._thread.start()

    def kill(self) -> None:
        if self._srv is None:
            return
        self._srv.shutdown()
        self._srv.server_close()
        assert self._thread is not None
        self._thread.join(5)
        with self._lock:
            for c in self._conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._conns.clear()
        self._srv = None

    def url(self, password: str | None = None) -> str:
        cred = f"cam:{password}@" if password is not None else ""
        return f"http://{cred}127.0.0.1:{self.port}/video.mjpg"


@pytest.fixture(scope="module")
def jpegs(vtest_path: Path) -> list[bytes]:
    cap = cv2.VideoCapture(str(vtest_path))
    out = []
    for _ in range(20):
        ok, img = cap.read()
        assert ok
        out.append(cv2.imencode(".jpg", cv2.resize(img, (320, 240)))[1].tobytes())
    cap.release()
    return out


def drive(
    cfg: SourceConfig,
) -> tuple[StreamSource, list[Frame], list[SourceEvent], threading.Event, threading.Thread]:
    events: list[SourceEvent] = []
    src = build_source(cfg, Metrics(), events.append)
    assert isinstance(src, StreamSource)
    frames: list[Frame] = []
    stop = threading.Event()
    t = threading.Thread(target=lambda: frames.extend(src.frames(stop)), name="consumer")
    t.start()
    return src, frames, events, stop, t


def wait(cond, timeout: float) -> None:
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, "timed out"
        time.sleep(0.02)


def cfg(uri: str, **kw: object) -> SourceConfig:
    base: dict[str, object] = {
        "open_timeout": 3,
        "read_timeout": 2,
        "stall_timeout": 2,
        "reconnect": {"initial": 0.2, "max": 0.5, "jitter": 0},
    }
    base.update(kw)
    return SourceConfig(id="mjpeg", uri=uri, **base)


def test_mjpeg_frames_reconnect_and_arrival_pts(jpegs: list[bytes]) -> None:
    server = MjpegServer(jpegs)
    server.start()
    threads = threading.active_count()
    src, frames, events, stop, t = drive(cfg(server.url()))
    try:
        wait(lambda: len(frames) >= 10, 10)
        assert src.state is SourceState.STREAMING and "mjpeg 320x240" in src.state_detail
        first = frames[:10]
        # pts come from arrival (the demuxer's are invented): about 0.1 s apart
        gaps = [b.pts - a.pts for a, b in itertools.pairwise(first)]
        assert sum(gaps) / len(gaps) == pytest.approx(0.1, abs=0.03)
        server.kill()
        wait(lambda: EventKind.LOST in [e.kind for e in events], 5)
        n = len(frames)
        time.sleep(1.0)
        server.start()  # same port
        wait(lambda: len(frames) > n + 3, 10)
        assert [e.kind for e in events] == [
            EventKind.CONNECTED,
            EventKind.LOST,
            EventKind.RECONNECTED,
        ]
        assert {f.generation for f in frames[n:]} == {1}
        assert [f.index for f in frames] == list(range(len(frames)))
    finally:
        stop.set()
        t.join(5)
        src.close()
        server.kill()
    assert not t.is_alive()
    assert threading.active_count() <= threads


def test_mjpeg_wrong_password_is_an_auth_error(
    jpegs: list[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server = MjpegServer(jpegs, password=PASSWORD)
    server.start()
    try:
        bad = build_source(cfg(server.url("nope-wrong")), Metrics())
        assert isinstance(bad, StreamSource)
        with pytest.raises(
            SourceAuthError, match=r"401 Unauthorized for http://cam:\*\*\*@127"
        ) as err:
            bad.probe()
        assert "nope-wrong" not in str(err.value)
        good = build_source(cfg(server.url(PASSWORD)), Metrics())
        assert isinstance(good, StreamSource)
        assert good.probe() == "mjpeg 320x240"
    finally:
        server.kill()
    assert "nope-wrong" not in caplog.text and PASSWORD not in caplog.text


@pytest.fixture(scope="module")
def hls_dir(tmp_path_factory: pytest.TempPathFactory, vtest_path: Path) -> Path:
    """40 frames of vtest.avi as H.264 HLS (1 s segments), written by PyAV's hls muxer."""
    import av

    out = tmp_path_factory.mktemp("hls")
    opts = {"hls_time": "1", "hls_list_size": "0"}
    with av.open(str(vtest_path)) as src, av.open(str(out / "index.m3u8"), "w", "hls", opts) as dst:
        st = dst.add_stream("libx264", rate=10)
        st.width, st.height, st.pix_fmt = 320, 240, "yuv420p"
        st.options = {"g": "10"}
        for i, f in enumerate(src.decode(video=0)):
            if i == 40:
                break
            for p in st.encode(f.reformat(width=320, height=240)):
                dst.mux(p)
        for p in st.encode(None):
            dst.mux(p)
    return out


def test_hls_playlist_over_http(hls_dir: Path) -> None:
    import functools

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(hls_dir))
    handler.log_message = lambda *a: None  # type: ignore[method-assign]
    srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, args=(0.05,), name="hls-server")
    t.start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/index.m3u8"
        src, frames, events, _stop, consumer = drive(cfg(url, max_frames=40))
        consumer.join(20)
        src.close()
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(5)
    assert [f.index for f in frames] == list(range(40))
    steps = [round(b.pts - a.pts, 3) for a, b in itertools.pairwise(frames)]
    assert steps == [0.1] * 39 and frames[0].image.shape == (240, 320, 3)
    assert [e.kind for e in events] == [EventKind.CONNECTED, EventKind.ENDED]
    assert src.state is SourceState.ENDED
