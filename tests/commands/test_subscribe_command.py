"""``edgewatch subscribe``: one JSON message per line from a real ZeroMQ sink."""

from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgewatch.commands import subscribe
from edgewatch.commands.keys import generate_keypair
from edgewatch.config import CurveConfig, ZmqSinkConfig
from edgewatch.metrics import Metrics
from edgewatch.sinks.zmq import ZmqSink
from edgewatch.types import Frame, FrameResult

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "sinks"))
from sinkdata import result


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    subscribe.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return int(args.func(args))


class _Publisher:
    """Publishes frames of sources ``cam`` and ``gate`` every 10 ms until stopped."""

    def __init__(self, **cfg: object) -> None:
        self.sink = ZmqSink(ZmqSinkConfig(endpoint="tcp://127.0.0.1:*", **cfg), Metrics())
        self.sink.start()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        i = 0
        while not self.stop.wait(0.01):
            for src in ("cam", "gate"):
                r = result(i, src)
                f = r.frame
                self.sink.write(FrameResult(Frame(src, i, f.pts, f.wall_time, f.image),
                                            r.detections, r.class_names))
            i += 1

    def __enter__(self) -> _Publisher:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.sink.stop()


def test_prints_lines_and_saves_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with _Publisher(send_image=True) as pub:
        rc = _run(["subscribe", pub.sink.endpoint, "--topic", "gate", "--count", "5",
                   "--timeout", "10", "--save-images", str(tmp_path / "img")])
    assert rc == 0
    lines = capsys.readouterr().out.splitlines()
    msgs = [json.loads(line) for line in lines]
    assert len(msgs) == 5 and {m["source"] for m in msgs} == {"gate"}
    frames = [m["frame"] for m in msgs]
    assert frames == list(range(frames[0], frames[0] + 5))
    for n in frames:
        img = cv2.imread(str(tmp_path / "img" / f"gate_{n:06d}.jpg"))
        assert img is not None and img.shape == (48, 64, 3)
    assert len(list((tmp_path / "img").iterdir())) == 5


def test_curve_subscription(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server, server_secret = generate_keypair(tmp_path, "server")
    _client, client_secret = generate_keypair(tmp_path / "clients", "client")
    curve = CurveConfig(secret_key=server_secret, authorized_keys=tmp_path / "clients")
    with _Publisher(curve=curve) as pub:
        rc = _run(["subscribe", pub.sink.endpoint, "--server-key", str(server),
                   "--client-key", str(client_secret), "--count", "3", "--timeout", "10"])
        assert rc == 0
        assert len(capsys.readouterr().out.splitlines()) == 3
        _intruder, intruder_secret = generate_keypair(tmp_path / "x", "intruder")
        rc = _run(["subscribe", pub.sink.endpoint, "--server-key", str(server),
                   "--client-key", str(intruder_secret), "--count", "1", "--timeout", "1"])
    assert rc == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "no message for 1 s" in captured.err


def test_keys_go_together(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["subscribe", "tcp://127.0.0.1:1", "--server-key", str(tmp_path / "k")]) == 2
    assert "go together" in capsys.readouterr().err


def test_image_bytes_unchanged(tmp_path: Path) -> None:
    from edgewatch.sinks.zmq import Message

    jpeg = cv2.imencode(".jpg", np.zeros((4, 4, 3), np.uint8))[1].tobytes()
    subscribe._save_image(Message("cam", {"frame": 12}, b"{}", jpeg), tmp_path)
    assert (tmp_path / "cam_000012.jpg").read_bytes() == jpeg


@pytest.mark.parametrize(
    ("endpoint", "bind", "problem"),
    [
        ("tcp://127.0.0.1:5555", False, None),
        ("tcp://cam-1.example.org:5555", False, None),
        ("tcp://localhost:1", False, None),
        ("tcp://[::1]:65535", False, None),
        ("tcp://*:5555", True, None),
        ("ipc:///tmp/ew.sock", False, None),
        ("tcp://999.0.0.1:5", False, "'999.0.0.1' is not a valid IP address or host name"),
        ("tcp://1.2.3:5", False, "'1.2.3' is not a valid IP address"),
        ("tcp://bad_host!:5", False, "'bad_host!' is not a valid IP address or host name"),
        ("tcp://-cam:5", False, "'-cam' is not a valid"),
        ("tcp://[::g]:5", False, "'[::g]' is not a valid"),
        ("tcp://*:5555", False, "'*' is not a valid"),
        ("tcp://127.0.0.1:0", False, "port must be 1-65535"),
        ("tcp://127.0.0.1:70000", False, "port must be 1-65535"),
        ("udp://127.0.0.1:5", False, "expected tcp://host:port"),
    ],
)
def test_endpoint_problem(endpoint: str, bind: bool, problem: str | None) -> None:
    got = subscribe.endpoint_problem(endpoint, bind=bind)
    if problem is None:
        assert got is None
    else:
        assert got is not None and problem in got, got


@pytest.mark.parametrize("endpoint", ["tcp://999.0.0.1:5", "tcp://127.0.0.1:99999"])
def test_bad_endpoint_exits_2(endpoint: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["subscribe", endpoint, "--timeout", "0.1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"edgewatch subscribe: endpoint {endpoint!r}: "), err


def test_announces_the_subscription(capsys: pytest.CaptureFixture[str]) -> None:
    """A valid endpoint nobody publishes on: announced at start, then the timeout."""
    assert _run(["subscribe", "tcp://127.0.0.1:1", "--topic", "cam", "--topic", "gate",
                 "--timeout", "0.2"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == ("subscribed to tcp://127.0.0.1:1 (topics: cam, gate); "
                      "waiting for messages, Ctrl-C to stop")
    assert err[1] == "edgewatch subscribe: no message for 0.2 s"
