"""A camera that dies mid-stream, inside the whole pipeline, beside a healthy source.

A real GStreamer RTSP server on loopback is killed, left down for 10 s and
restarted on the same port: the RTSP source reconnects, its tracker is reset
(the gap is longer than the 1 s it keeps lost tracks), lost/reconnected events
reach the JSONL and ZeroMQ sinks, the other source never stops, and no thread
or file descriptor leaks. A camera given the wrong password shows a distinct
detail on ``/healthz`` and the password appears nowhere.

(Refused and unknown-host cameras on ``/healthz``: tests/test_daemon.py.)
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

import pytest
import zmq
from testkit import free_port as _port
from testkit import http_get as _get
from testkit import tiny_detector, write_clip

from edgewatch.config import parse_config
from edgewatch.pipeline.runner import Pipeline

pytestmark = pytest.mark.rtsp


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return tiny_detector(tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture(scope="module")
def small_clip(tmp_path_factory, vtest_path: Path) -> Path:
    return write_clip(vtest_path, tmp_path_factory.mktemp("clip") / "clip.mkv", 20, "mpeg4")


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _wait(pred, timeout: float, step: float = 0.1) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return False


class _Sub(threading.Thread):
    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"cam")
        self.sock.setsockopt(zmq.RECONNECT_IVL, 10)
        self.sock.connect(f"tcp://127.0.0.1:{port}")
        self.msgs: list[dict] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            if self.sock.poll(100):
                topic, body, *_ = self.sock.recv_multipart()
                if topic == b"cam":
                    self.msgs.append(json.loads(body))
        self.sock.close(linger=0)
        self.ctx.term()


def test_camera_restart_inside_pipeline(rtsp_server, tiny_model, small_clip, tmp_path) -> None:
    zport = _port()
    out = tmp_path / "cam.jsonl"
    cfg = parse_config(
        "sources:\n"
        f"  - {{id: cam, uri: '{rtsp_server.url()}', stall_timeout: 3,"
        " reconnect: {initial: 0.5, max: 2, jitter: 0}}\n"
        f"  - {{id: other, uri: '{small_clip}', realtime: true, loop: true}}\n"
        f"detector: {{model: '{tiny_model}'}}\n"
        "tracker: {type: bytetrack, track_buffer: 30}\n"
        "sinks:\n"
        f"  - {{type: jsonl, path: '{out}', sources: [cam]}}\n"
        f"  - {{type: zmq, endpoint: 'tcp://127.0.0.1:{zport}'}}\n"
    )
    sub = _Sub(zport)
    sub.start()
    pipe = Pipeline(cfg)
    frames: dict[str, list[tuple[float, int, list[int]]]] = {"cam": [], "other": []}

    def record(r) -> None:
        frames[r.frame.source_id].append(
            (time.monotonic(), r.frame.generation, [int(t) for t in r.detections.tracker_id])
        )

    pipe.on_result = record
    pipe.start()
    try:
        assert _wait(lambda: len(frames["cam"]) > 15, 30), "no frames from the camera"
        threads0, fds0 = threading.active_count(), _fds()
        ids_before = frames["cam"][-1][2]
        rtsp_server.kill()
        t_kill = time.monotonic()
        assert _wait(
            lambda: pipe.health()["sources"]["cam"]["state"] in ("backoff", "connecting"), 10
        )
        time.sleep(max(0.0, 10.0 - (time.monotonic() - t_kill)))
        other_during = sum(1 for t, _, _ in frames["other"] if t_kill < t < time.monotonic())
        n_cam = len(frames["cam"])
        rtsp_server.start()
        t_restart = time.monotonic()
        assert _wait(lambda: len(frames["cam"]) > n_cam, 30), "camera did not come back"
        reconnect_s = frames["cam"][n_cam][0] - t_restart
        assert _wait(lambda: len(frames["cam"]) > n_cam + 15, 30)
        threads1, fds1 = threading.active_count(), _fds()
        health = pipe.health()
        resets = {
            sid: pipe.metrics.counter("edgewatch_tracker_resets_total", source=sid)
            for sid in ("cam", "other")
        }
    finally:
        pipe.stop()
        pipe.shutdown()
        sub.stop.set()
        sub.join(5)
    print(f"reconnect after server restart: {reconnect_s:.2f} s")
    assert reconnect_s < 5.0
    assert other_during >= 50, "the healthy source must keep flowing during the outage"
    assert frames["cam"][n_cam][1] > frames["cam"][n_cam - 1][1]  # a new generation
    assert ids_before == [1, 2]
    # The gap (10 s) is longer than the tracker keeps lost tracks (track_buffer 30 /
    # 30 = 1 s): it was reset once, so its IDs restart. The looping file reopens
    # without a gap at every loop and keeps its tracker.
    assert resets == {"cam": 1, "other": 0}
    assert frames["cam"][n_cam + 5][2] == [1, 2]
    assert threads1 <= threads0, (threads0, threads1)
    assert fds1 <= fds0 + 1, (fds0, fds1)
    assert health["sources"]["cam"]["reconnects"] >= 1
    events = [
        m["event"] for m in map(json.loads, out.read_text().splitlines()) if m["type"] == "event"
    ]
    assert events[:1] == ["connected"] and "lost" in events and "reconnected" in events
    assert events.index("lost") < events.index("reconnected")
    zevents = [m["event"] for m in sub.msgs if m["type"] == "event"]
    assert "lost" in zevents and "reconnected" in zevents


def test_wrong_credentials_on_healthz(
    rtsp_auth_server, tiny_model, caplog: pytest.LogCaptureFixture
) -> None:
    """Wrong password, seen by a supervisor: 503 and a 'wrong credentials' detail, and
    the password is in neither the health JSON, /metrics nor any log record."""
    caplog.set_level(logging.DEBUG)
    wrong = "Wr0ng-pass-hz"
    hport = _port()
    uri = rtsp_auth_server.url("viewer", wrong)
    cfg = parse_config(
        f"sources:\n  - {{id: cam, uri: '{uri}', reconnect: {{initial: 5, jitter: 0}}}}\n"
        f"detector: {{model: '{tiny_model}'}}\nhealth: {{listen: '127.0.0.1:{hport}'}}\n"
    )
    pipe = Pipeline(cfg)
    pipe.start()
    try:
        assert _wait(lambda: pipe.health()["sources"]["cam"]["state"] == "backoff", 20)
        code, body = _get(f"http://127.0.0.1:{hport}/healthz")
        mcode, metrics = _get(f"http://127.0.0.1:{hport}/metrics")
    finally:
        pipe.stop()
        pipe.shutdown()
    assert code == 503 and mcode == 200
    health = json.loads(body)
    cam = health["sources"]["cam"]
    assert health["status"] == "failing" and cam["state"] == "backoff"
    assert cam["detail"].startswith(
        "wrong credentials: server answered 401 Unauthorized for "
        f"rtsp://viewer:***@127.0.0.1:{rtsp_auth_server.port}/cam; retry 1 in 5.0 s"
    ), cam["detail"]
    assert 'edgewatch_frames_total{source="cam"' not in metrics  # nothing streamed
    assert "source cam: failed wrong credentials" in caplog.text  # the event, logged
    for text in (body, metrics, caplog.text):
        assert wrong not in text and "Zq8-secret" not in text
