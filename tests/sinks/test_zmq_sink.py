"""ZeroMQ sink over real sockets on 127.0.0.1: delivery, topics, HWM drops, CURVE."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import zmq
from pydantic import ValidationError
from sinkdata import T0, result

from edgewatch.commands.keys import generate_keypair
from edgewatch.config import CurveConfig, MaskFormat, ZmqSinkConfig
from edgewatch.errors import SinkError
from edgewatch.metrics import Metrics
from edgewatch.sinks import build_sink
from edgewatch.sinks.zmq import Subscriber, ZmqSink
from edgewatch.types import EventKind, Frame, FrameResult, SourceEvent
from edgewatch.wire import event_message, frame_message

ANY = "tcp://127.0.0.1:*"


@pytest.fixture
def context() -> Iterator[zmq.Context]:
    ctx = zmq.Context()
    yield ctx
    ctx.term()


def _sink(context: zmq.Context | None, metrics: Metrics | None = None, **kw: object) -> ZmqSink:
    cfg = ZmqSinkConfig(**{"endpoint": ANY, **kw})
    sink = build_sink(cfg, metrics or Metrics(), zmq_context=context,
                      mask_format=MaskFormat.POLYGON)
    assert isinstance(sink, ZmqSink)
    sink.start()
    return sink


def _join(sink: ZmqSink, sub: Subscriber, source: str = "cam", timeout_s: float = 5.0) -> bool:
    """Publish probe events until ``sub`` gets one (the subscription has propagated)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        sink.event(SourceEvent(source, EventKind.CONNECTED, T0, "probe"))
        msg = sub.recv(0.05)
        if msg is not None:
            while sub.recv(0.1) is not None:  # drain further probes
                pass
            return True
    return False


def test_every_message_multipart(context: zmq.Context) -> None:
    sink = _sink(context, send_image=True, jpeg_quality=95)
    with Subscriber(sink.endpoint) as sub:
        assert _join(sink, sub)
        sent = [result(i, width=96, height=64, masks=True, labels=True) for i in range(40)]
        for r in sent:
            sink.write(r)
        sink.event(SourceEvent("cam", EventKind.ENDED, T0 + 2, "end of file"))
        got = [sub.recv(5.0) for _ in range(41)]
        assert sub.recv(0.2) is None
    sink.stop()
    assert all(m is not None for m in got)
    for r, m in zip(sent, got[:40], strict=True):
        assert m.topic == "cam"
        assert m.body == frame_message(r, MaskFormat.POLYGON)
        img = cv2.imdecode(np.frombuffer(m.image, np.uint8), cv2.IMREAD_COLOR)
        assert img.shape == (64, 96, 3)
        ok, ref = cv2.imencode(".jpg", r.frame.image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        assert ok and m.image == ref.tobytes()  # the raw frame, not the annotated one
        assert np.abs(img.astype(np.int16) - r.frame.image).mean() < 6
    last = got[40]
    assert last.image is None
    assert last.body == event_message(SourceEvent("cam", EventKind.ENDED, T0 + 2, "end of file"))


@pytest.mark.parametrize(
    ("topics", "expected"),
    [((), ["cam", "cam2", "gate"]), (("cam",), ["cam"]), (("cam2", "gate"), ["cam2", "gate"])],
)
def test_topic_filter_is_exact(context: zmq.Context, topics, expected) -> None:
    sink = _sink(context)
    with Subscriber(sink.endpoint, topics=topics) as sub:
        for src in expected:
            assert _join(sink, sub, src)
        for i in range(3):
            for src in ("cam", "cam2", "gate"):
                sink.write(result(i, src))
        got = []
        while (m := sub.recv(0.3)) is not None:
            got.append((m.topic, m.body["frame"]))
    sink.stop()
    assert got == [(src, i) for i in range(3) for src in ("cam", "cam2", "gate") if src in expected]


def test_events_can_be_off(context: zmq.Context) -> None:
    sink = _sink(context, events=False)
    with Subscriber(sink.endpoint) as sub:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and sub.recv(0.05) is None:
            sink.write(result(0))
        for _ in range(5):
            sink.event(SourceEvent("cam", EventKind.LOST, T0))
        types = {m.body["type"] for m in iter(lambda: sub.recv(0.3), None)}
    sink.stop()
    assert "event" not in types


def test_connect_mode(context: zmq.Context, port: int) -> None:
    with Subscriber(f"tcp://127.0.0.1:{port}", bind=True) as sub:
        sink = _sink(context, endpoint=f"tcp://127.0.0.1:{port}", bind=False)
        assert _join(sink, sub)
        sink.write(result(3))
        m = sub.recv(5.0)
        sink.stop()
    assert m is not None and m.body["frame"] == 3


def _big_result(i: int) -> FrameResult:
    img = np.random.default_rng(i).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    r = result(i)
    return FrameResult(Frame("cam", i, i / 25, T0, img), r.detections, r.class_names)


@pytest.mark.parametrize(("count_drops", "counted"), [(True, True), (False, False)])
def test_slow_subscriber_never_blocks(context: zmq.Context, count_drops: bool,
                                      counted: bool) -> None:
    metrics = Metrics()
    sink = _sink(context, metrics, hwm=5, send_image=True, count_drops=count_drops)
    frames = [_big_result(i) for i in range(4)]
    with Subscriber(sink.endpoint, rcvhwm=5) as sub:  # connected, never reads
        assert _join(sink, sub)
        longest = 0.0
        for i in range(400):
            t = time.perf_counter()
            sink.write(frames[i % 4])
            longest = max(longest, time.perf_counter() - t)
        received = sum(1 for _ in iter(lambda: sub.recv(0.3), None))
    sink.stop()
    drops = metrics.counter("edgewatch_drops_total", source="cam", stage="hwm:zmq")
    # No write waits for the subscriber (a blocking send would hang here forever).
    assert longest < 0.5
    assert received < 400
    if counted:
        assert drops > 0 and received + drops == 400
    else:
        assert drops == 0


def test_drop_counter_follows_the_runner_name(context: zmq.Context) -> None:
    metrics = Metrics()
    sink = _sink(context, metrics, hwm=1, send_image=True)
    sink.name = "zmq1"
    with Subscriber(sink.endpoint, rcvhwm=1) as sub:
        assert _join(sink, sub)
        for i in range(200):
            sink.write(_big_result(i % 2))
    sink.stop()
    assert metrics.counter("edgewatch_drops_total", source="cam", stage="hwm:zmq1") > 0


def test_bind_in_use_is_sink_error(context: zmq.Context) -> None:
    first = _sink(context)
    with pytest.raises(SinkError, match="cannot bind"):
        _sink(context, endpoint=first.endpoint)
    first.stop()


def test_own_context_is_terminated() -> None:
    sink = _sink(None)
    with Subscriber(sink.endpoint) as sub:
        assert _join(sink, sub)
    ctx = sink._context
    sink.stop()
    assert ctx is not None and ctx.closed


@pytest.mark.parametrize("own_context", [True, False], ids=["own-context", "runner-context"])
def test_messages_published_right_before_stop_all_arrive(own_context: bool) -> None:
    """The end of a file run: the subscriber is behind, so the last results are
    still queued in the PUB socket when the sink stops; the bounded linger lets
    every one of them reach it (linger 0 loses most of them)."""
    n = 200
    ctx = None if own_context else zmq.Context()
    # ~10 MB queued take ~0.2 s to drain here; 5 s of linger leave room for a busy CI
    sink = _sink(ctx, hwm=n + 10, send_image=True, linger_ms=5000)
    frames = [_big_result(i) for i in range(4)]  # ~50 kB of JPEG each
    got: list[int] = []
    go = threading.Event()
    with Subscriber(sink.endpoint, rcvhwm=1) as sub:
        assert _join(sink, sub)

        def read() -> None:
            go.wait()
            got.extend(m.body["frame"] for m in iter(lambda: sub.recv(1.0), None))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        for i in range(n):
            sink.write(frames[i % 4])
        go.set()  # the subscriber catches up only now, while the sink stops
        sink.stop()
        if ctx is not None:
            ctx.term()  # what the runner does after stopping its sinks
        reader.join(60.0)
    assert got == [i % 4 for i in range(n)]


def test_linger_is_bounded_with_a_stuck_subscriber() -> None:
    sink = _sink(None, hwm=100_000, send_image=True, linger_ms=200)
    frames = [_big_result(i) for i in range(4)]
    with Subscriber(sink.endpoint, rcvhwm=1) as sub:  # connected, never reads
        assert _join(sink, sub)
        for i in range(400):
            sink.write(frames[i % 4])
        stopper = threading.Thread(target=sink.stop, daemon=True)
        stopper.start()
        # a generous bound: linger -1 (wait for delivery) would hang here for good
        stopper.join(30.0)
        assert not stopper.is_alive(), "stop() waited for a subscriber that never reads"


def test_linger_ms_bounds() -> None:
    assert ZmqSinkConfig().linger_ms == 1000
    for bad in (-1, 10_001):
        with pytest.raises(ValidationError, match="linger_ms"):
            ZmqSinkConfig(linger_ms=bad)


def test_passed_context_stays_usable(context: zmq.Context) -> None:
    sink = _sink(context)
    sink.stop()
    s = context.socket(zmq.PUB)
    s.close(linger=0)
    assert not context.closed


# --------------------------------------------------------------------------- CURVE


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("keys")
    out = {}
    for name in ("server", "client", "intruder", "other"):
        pub, sec = generate_keypair(d / "all", name)
        out[name], out[f"{name}_secret"] = pub, sec
    allowed = d / "authorized"
    allowed.mkdir()
    for name in ("client", "other"):
        (allowed / f"{name}.key").write_bytes(out[name].read_bytes())
    out["authorized"] = allowed
    return out


def _received(sink: ZmqSink, sub: Subscriber, seconds: float = 1.5) -> int:
    """Write frames for ``seconds`` and count what ``sub`` gets."""
    n = 0
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline:
        sink.write(result(i))
        i += 1
        if sub.recv(0.02) is not None:
            n += 1
    return n


@pytest.mark.parametrize(
    ("authorized", "server_key", "client_key", "gets_messages"),
    [
        ("authorized", "server", "client", True),
        ("authorized", "server", "other", True),
        ("client_file", "server", "client", True),
        ("client_file", "server", "other", False),
        ("authorized", "server", "intruder", False),
        ("authorized", "intruder", "client", False),     # wrong server key
        (None, "server", "intruder", True),               # no list: any client with the key
        (None, "intruder", "client", False),
    ],
)
def test_curve(context: zmq.Context, keys: dict[str, Path], authorized, server_key: str,
               client_key: str, gets_messages: bool) -> None:
    auth = {"authorized": keys["authorized"], "client_file": keys["client"], None: None}
    curve = CurveConfig(secret_key=keys["server_secret"], authorized_keys=auth[authorized])
    sink = _sink(context, curve=curve)
    with Subscriber(sink.endpoint, server_key=keys[server_key],
                    client_key=keys[f"{client_key}_secret"]) as sub:
        if gets_messages:
            assert _join(sink, sub)
            for i in range(30):
                sink.write(result(i))
            frames = [sub.recv(5.0) for _ in range(30)]
            assert [m.body["frame"] for m in frames if m] == list(range(30))
        else:
            assert _received(sink, sub) == 0
    sink.stop()


def test_curve_refuses_plain_subscribers(context: zmq.Context, keys: dict[str, Path]) -> None:
    sink = _sink(context, curve=CurveConfig(secret_key=keys["server_secret"]))
    with Subscriber(sink.endpoint) as sub:
        assert _received(sink, sub) == 0
    sink.stop()


@pytest.mark.parametrize(
    ("secret", "match"),
    [("server", "holds no secret key"), ("missing", "cannot read key file")],
)
def test_curve_bad_key_files(context: zmq.Context, keys: dict[str, Path], tmp_path: Path,
                             secret: str, match: str) -> None:
    path = keys["server"] if secret == "server" else tmp_path / "nope.key_secret"
    with pytest.raises(SinkError, match=match):
        _sink(context, curve=CurveConfig(secret_key=path))


def test_subscriber_needs_both_keys(keys: dict[str, Path]) -> None:
    with pytest.raises(SinkError, match="both"):
        Subscriber("tcp://127.0.0.1:1", server_key=keys["server"])
