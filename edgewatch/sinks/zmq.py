"""ZeroMQ sink: a PUB socket publishing wire messages, and the matching :class:`Subscriber`.

Every message is multipart ``[topic, body]`` or ``[topic, body, jpeg]``: the
topic is the source id (UTF-8), the body a wire message (JSON, see
:mod:`edgewatch.wire`), the optional third frame the source image as JPEG.
Source events are their own ``[topic, body]`` messages with ``"type": "event"``.

Sends never block. With ``count_drops`` (the default) the socket sets
``XPUB_NODROP``: when a subscriber's queue (``hwm`` messages here plus its own
receive queue and the TCP buffers) is full, the send fails at once, the
message is dropped for every subscriber of that topic and counted in
``edgewatch_drops_total{stage="hwm:<name>"}`` (``stage="sink:<name>"`` is the
sink's own queue in front of the socket, see the runner). Without it libzmq
drops per subscriber and nobody counts.

CURVE: ``curve.secret_key`` is the server's secret certificate (written by
``edgewatch keys generate``); ``curve.authorized_keys`` a public certificate
or a folder of them. Without it any client that knows the server's public
key may subscribe; with it a ZAP authenticator thread refuses other keys.

One ``zmq.Context`` per process: the runner passes its context in; a sink
built without one creates (and terminates) its own.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import cv2
import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from edgewatch.config import MaskFormat, ZmqSinkConfig
from edgewatch.errors import SinkError
from edgewatch.metrics import Metrics
from edgewatch.sinks.base import Sink
from edgewatch.types import FrameResult, SourceEvent
from edgewatch.wire import dumps, event_message, frame_message

log = logging.getLogger(__name__)

#: Seconds between two warnings about dropped messages.
DROP_LOG_INTERVAL_S = 10.0


def load_keypair(path: Path) -> tuple[bytes, bytes]:
    """The Z85 ``(public, secret)`` keys of a secret certificate file."""
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as e:
        raise SinkError(f"cannot read key file {path}: {e}") from None
    if secret is None:
        raise SinkError(f"{path} holds no secret key (give the .key_secret file)")
    return public, secret


def load_public_key(path: Path) -> bytes:
    """The Z85 public key of a certificate file (public or secret)."""
    try:
        return zmq.auth.load_certificate(path)[0]
    except (OSError, ValueError) as e:
        raise SinkError(f"cannot read key file {path}: {e}") from None


def load_authorized_keys(path: Path) -> frozenset[bytes]:
    """Z85 public keys of a certificate file, or of every ``*.key`` in a folder."""
    if path.is_dir():
        try:
            keys = frozenset(zmq.auth.load_certificates(path))
        except (OSError, ValueError) as e:
            raise SinkError(f"cannot read authorized keys in {path}: {e}") from None
        if not keys:
            log.warning("no *.key certificates in %s: every client will be refused", path)
        return keys
    return frozenset({load_public_key(path)})


@dataclass(frozen=True)
class _KeySet:
    """A ZAP credentials provider allowing a fixed set of Z85 public keys."""

    keys: frozenset[bytes]

    def callback(self, domain: str, key: bytes) -> bool:
        allowed = key in self.keys
        if not allowed:
            log.warning("zmq: refused client key %s (domain %r)", key.decode("ascii"), domain)
        return allowed


class ZmqSink(Sink):
    """Publishes every frame (and event) on a PUB socket; see the module docstring."""

    def __init__(
        self,
        cfg: ZmqSinkConfig,
        metrics: Metrics,
        *,
        name: str = "zmq",
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
        mask_format: MaskFormat = MaskFormat.RLE,
        publish_embedding: bool = False,
    ) -> None:
        super().__init__(name, metrics)
        self.cfg = cfg
        self.needs_image = cfg.send_image
        self.mask_format = mask_format
        self.publish_embedding = publish_embedding
        self._context = context
        self._own_context = False
        self._socket: zmq.Socket[bytes] | None = None
        self._auth: ThreadAuthenticator | None = None
        self._last_drop_log = 0.0
        self._drops_since_log = 0
        self.endpoint = cfg.endpoint

    def start(self) -> None:
        """Create the socket, set up CURVE, bind or connect."""
        if self._context is None:
            self._context = zmq.Context()
            self._own_context = True
        sock = self._context.socket(zmq.PUB)
        self._socket = sock
        try:
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SNDHWM, self.cfg.hwm)
            if self.cfg.count_drops:
                sock.setsockopt(zmq.XPUB_NODROP, 1)
            if self.cfg.curve is not None:
                self._setup_curve(sock)
            if self.cfg.bind:
                sock.bind(self.cfg.endpoint)
                self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
            else:
                sock.connect(self.cfg.endpoint)
        except zmq.ZMQError as e:
            self.stop()
            verb = "bind" if self.cfg.bind else "connect"
            raise SinkError(f"zmq sink: cannot {verb} {self.cfg.endpoint}: {e}") from None
        except SinkError:
            self.stop()
            raise
        log.info("zmq sink %s: PUB %s %s", self.name, "bound to" if self.cfg.bind else
                 "connected to", self.endpoint)

    def _setup_curve(self, sock: zmq.Socket[bytes]) -> None:
        curve = self.cfg.curve
        assert curve is not None and self._context is not None
        public, secret = load_keypair(curve.secret_key)
        if curve.authorized_keys is not None:
            keys = load_authorized_keys(curve.authorized_keys)
            self._auth = ThreadAuthenticator(self._context, log=logging.getLogger("zmq.auth"))
            try:
                self._auth.start()
            except zmq.ZMQError as e:
                self._auth = None
                raise SinkError(
                    f"zmq sink: cannot start the CURVE authenticator ({e}); "
                    "only one authenticated zmq sink per process is supported"
                ) from None
            self._auth.configure_curve_callback(domain="*", credentials_provider=_KeySet(keys))
        sock.curve_secretkey = secret
        sock.curve_publickey = public
        sock.curve_server = True

    def _send(self, source_id: str, parts: list[bytes]) -> None:
        if self._socket is None:
            raise SinkError(f"zmq sink {self.name} is not started")
        try:
            self._socket.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            self._dropped(source_id)
        except zmq.ZMQError as e:
            raise SinkError(f"zmq sink: send on {self.endpoint} failed: {e}") from None

    def _dropped(self, source_id: str) -> None:
        self.metrics.inc("edgewatch_drops_total", source=source_id, stage=f"hwm:{self.name}")
        self._drops_since_log += 1
        now = time.monotonic()
        if now - self._last_drop_log >= DROP_LOG_INTERVAL_S:
            log.warning("zmq sink %s: a subscriber is not keeping up, %d message(s) dropped",
                        self.name, self._drops_since_log)
            self._last_drop_log = now
            self._drops_since_log = 0

    def write(self, result: FrameResult) -> None:
        source = result.frame.source_id
        body = dumps(frame_message(result, self.mask_format, self.publish_embedding))
        parts = [source.encode("utf-8"), body]
        if self.cfg.send_image:
            ok, jpeg = cv2.imencode(
                ".jpg", result.frame.image, [cv2.IMWRITE_JPEG_QUALITY, self.cfg.jpeg_quality]
            )
            if not ok:
                raise SinkError(f"zmq sink: JPEG encoding failed for {source} frame "
                                f"{result.frame.index}")
            parts.append(jpeg.tobytes())
        self._send(source, parts)

    def event(self, ev: SourceEvent) -> None:
        if self.cfg.events:
            self._send(ev.source_id, [ev.source_id.encode("utf-8"), dumps(event_message(ev))])

    def stop(self) -> None:
        """Close the socket, stop the authenticator, end an own context.

        Queued messages get ``linger_ms`` to reach connected subscribers (the
        context's ``term`` waits at most that long for them), then are dropped.
        """
        if self._socket is not None:
            self._socket.close(linger=self.cfg.linger_ms)
            self._socket = None
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        if self._own_context and self._context is not None:
            self._context.term()
            self._context = None
            self._own_context = False


@dataclass(frozen=True)
class Message:
    """One received wire message: topic (source id), parsed body, optional JPEG bytes."""

    topic: str
    body: dict[str, Any]
    raw: bytes
    image: bytes | None = None


class Subscriber:
    """A SUB socket for edgewatch messages (used by ``edgewatch subscribe`` and tests).

    ``topics`` are exact source ids (empty: everything). ``server_key`` is the
    server's public certificate and ``client_key`` the client's secret
    certificate, both needed for CURVE. ``bind`` binds instead of connecting
    (for a sink configured with ``bind: false``).
    """

    def __init__(
        self,
        endpoint: str,
        *,
        topics: Sequence[str] = (),
        server_key: Path | None = None,
        client_key: Path | None = None,
        bind: bool = False,
        rcvhwm: int = 1000,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
    ) -> None:
        if (server_key is None) != (client_key is None):
            raise SinkError("CURVE needs both the server's public key and a client key")
        self._own_context = context is None
        self._context = context if context is not None else zmq.Context()
        self._topics = frozenset(topics)
        self._socket = self._context.socket(zmq.SUB)
        try:
            self._socket.setsockopt(zmq.LINGER, 0)
            self._socket.setsockopt(zmq.RCVHWM, rcvhwm)
            if server_key is not None and client_key is not None:
                public, secret = load_keypair(client_key)
                self._socket.curve_serverkey = load_public_key(server_key)
                self._socket.curve_publickey = public
                self._socket.curve_secretkey = secret
            for topic in self._topics or {""}:
                self._socket.setsockopt(zmq.SUBSCRIBE, topic.encode("utf-8"))
            if bind:
                self._socket.bind(endpoint)
            else:
                self._socket.connect(endpoint)
            self.endpoint = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        except (zmq.ZMQError, SinkError) as e:
            self.close()
            if isinstance(e, SinkError):
                raise
            raise SinkError(f"cannot {'bind' if bind else 'connect'} {endpoint}: {e}") from None

    def recv(self, timeout_s: float | None = None) -> Message | None:
        """The next message of a wanted topic, or ``None`` after ``timeout_s`` seconds."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            wait_ms = None
            if deadline is not None:
                wait_ms = max(0, int((deadline - time.monotonic()) * 1000))
            if not self._socket.poll(wait_ms):
                return None
            parts = self._socket.recv_multipart()
            topic = parts[0].decode("utf-8", errors="replace")
            if self._topics and topic not in self._topics:
                continue  # SUBSCRIBE matches prefixes; topics are exact
            if len(parts) < 2:
                log.warning("ignoring a message without a body on topic %r", topic)
                continue
            try:
                body = json.loads(parts[1])
            except ValueError:
                log.warning("ignoring a message whose body is not JSON on topic %r", topic)
                continue
            return Message(topic, body, parts[1], parts[2] if len(parts) > 2 else None)

    def close(self) -> None:
        """Close the socket (and the context if this subscriber created it); idempotent."""
        if self._socket.closed:
            return
        self._socket.close(linger=0)
        if self._own_context:
            self._context.term()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
