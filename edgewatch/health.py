"""The daemon's HTTP health and metrics endpoint (stdlib only).

:class:`HealthServer` serves, on ``health.listen`` (default ``127.0.0.1:9108``,
loopback only):

``GET /healthz``
    The runner's health report as JSON. HTTP **200** when its ``status`` is
    ``"ok"``, **503** otherwise (``"degraded"``, ``"failing"``, a missing or
    unknown status, or a health callback that raised), so a supervisor or a
    load balancer can use the status code alone. The body looks like::

        {"status": "degraded", "uptime_s": 12.5,
         "sources": {"lobby": {"state": "backoff", "detail": "connection refused",
                               "fps": 0.0, "frames": 120, "drops": 3,
                               "reconnects": 2, "last_frame_age_s": 4.2}},
         "sinks": {"zmq": {"state": "ok", "error": "", "drops": 0, "hwm_drops": 5}}}

    Non-finite floats become ``null``; times are seconds.
``GET /metrics``
    :meth:`edgewatch.metrics.Metrics.render`, ``Content-Type: text/plain;
    version=0.0.4; charset=utf-8`` (the Prometheus text format).
``GET /``
    A tiny HTML index linking both.

Everything else is 404; ``HEAD`` works on every route; other methods get 405.
Every body goes through :func:`edgewatch.secrets.mask` before it is sent, as a
last line of defence against a camera password in a status detail. Request
lines are logged at DEBUG only.
"""

from __future__ import annotations

import json
import logging
import math
import socket
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NoReturn
from urllib.parse import urlsplit

from edgewatch.config import HealthConfig
from edgewatch.errors import ConfigError
from edgewatch.metrics import Metrics
from edgewatch.secrets import mask

log = logging.getLogger(__name__)

HealthFn = Callable[[], Mapping[str, Any]]
"""Returns the health report; called from a server thread, so it must be thread-safe."""

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_REQUEST_TIMEOUT_S = 5.0
_POLL_INTERVAL_S = 0.1
_STOP_TIMEOUT_S = 1.0

_INDEX = """<!doctype html>
<html><head><meta charset="utf-8"><title>edgewatch</title></head>
<body><h1>edgewatch</h1><ul>
<li><a href="/healthz">/healthz</a> &mdash; health (JSON; 200 ok, 503 otherwise)</li>
<li><a href="/metrics">/metrics</a> &mdash; Prometheus metrics</li>
</ul></body></html>
"""


def parse_listen(listen: str) -> tuple[str, int]:
    """Split ``host:port`` or ``[v6addr]:port`` into ``(host, port)``.

    Port 0 asks the OS for a free port. Raises :class:`ConfigError` naming
    ``health.listen`` on anything else.

    >>> parse_listen("127.0.0.1:9108"), parse_listen("[::1]:0"), parse_listen("localhost:80")
    (('127.0.0.1', 9108), ('::1', 0), ('localhost', 80))
    """
    host, sep, port_text = listen.rpartition(":")
    if not sep or not host:
        _bad(listen, "expected host:port, e.g. 127.0.0.1:9108 (0.0.0.0:9108 for all interfaces)")
    if host.startswith("["):
        if not host.endswith("]") or len(host) < 3:
            _bad(listen, "expected [IPv6-address]:port, e.g. [::1]:9108")
        host = host[1:-1]
    elif ":" in host:
        _bad(listen, "IPv6 addresses need brackets, e.g. [::1]:9108")
    if any(ch.isspace() or ch in "[]/\0" for ch in host):
        _bad(listen, f"invalid host {host!r}")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        _bad(listen, f"port {port_text!r} is not a number in 0..65535")
    return host, int(port_text)


def _bad(listen: str, why: str) -> NoReturn:
    raise ConfigError(
        f"health.listen: {why}", [("health.listen", f"cannot listen on {listen!r}: {why}")]
    )


def _json_safe(value: Any) -> Any:
    """A copy of ``value`` that ``json.dumps`` writes as strict JSON (NaN/inf -> null)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


class _Server(ThreadingHTTPServer):
    """A ThreadingHTTPServer of one address family that logs instead of printing."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], family: socket.AddressFamily, app: HealthServer):
        self.address_family = family
        self.app = app
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6:
            # Listen on exactly the given v6 address, not on v4 as well.
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        super().server_bind()

    def handle_error(self, request: object, client_address: object) -> None:
        log.debug("health: error serving %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "edgewatch"
    sys_version = ""
    timeout = _REQUEST_TIMEOUT_S

    def do_GET(self) -> None:
        self._respond(head=False)

    def do_HEAD(self) -> None:
        self._respond(head=True)

    def _not_allowed(self) -> None:
        self._send(
            405,
            "text/plain; charset=utf-8",
            "method not allowed\n",
            head=False,
            extra={"Allow": "GET, HEAD"},
        )

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed

    def _respond(self, head: bool) -> None:
        path = urlsplit(self.path).path
        app = self.server.app
        if path == "/healthz":
            code, body = app.health_response()
            self._send(code, "application/json", body, head)
        elif path == "/metrics":
            code, body = app.metrics_response()
            ctype = METRICS_CONTENT_TYPE if code == 200 else "text/plain; charset=utf-8"
            self._send(code, ctype, body, head)
        elif path == "/":
            self._send(200, "text/html; charset=utf-8", _INDEX, head)
        else:
            self._send(404, "text/plain; charset=utf-8", "not found\n", head)

    def _send(
        self, code: int, ctype: str, body: str, head: bool, extra: Mapping[str, str] | None = None
    ) -> None:
        data = mask(body).encode("utf-8")
        try:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if not head:
                self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError) as e:
            log.debug("health: client went away: %s", e)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("health: %s %s", self.address_string(), mask(format % args))


class HealthServer:
    """Serves ``/healthz`` and ``/metrics`` from a named daemon thread.

    ``health`` is the runner's callable (see the module docstring for the shape
    of its report); it runs on a server thread. Nothing binds until
    :meth:`start`; a bad ``listen`` string raises :class:`ConfigError` here.

    >>> from edgewatch.config import HealthConfig
    >>> srv = HealthServer(HealthConfig(listen="127.0.0.1:0"), Metrics(), lambda: {"status": "ok"})
    >>> srv.start(); srv.port > 0
    True
    >>> srv.stop()
    """

    def __init__(self, config: HealthConfig, metrics: Metrics, health: HealthFn) -> None:
        self._listen = config.listen
        self._host, self._want_port = parse_listen(config.listen)
        self._metrics = metrics
        self._health = health
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def host(self) -> str:
        """The host or address from ``health.listen``."""
        return self._host

    @property
    def port(self) -> int:
        """The bound TCP port (the OS's pick when ``listen`` asked for 0); 0 before start."""
        server = self._server
        return int(server.server_address[1]) if server is not None else 0

    @property
    def url(self) -> str:
        """``http://host:port`` of the running server (IPv6 hosts bracketed)."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        """Bind and serve; raises :class:`ConfigError` naming ``health.listen`` if it cannot."""
        with self._lock:
            if self._server is not None:
                raise RuntimeError("HealthServer already started")
            server = self._bind()
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": _POLL_INTERVAL_S},
                name="edgewatch-health",
                daemon=True,
            )
            self._server, self._thread = server, thread
            thread.start()
        log.info("health: serving /healthz and /metrics on %s", self.url)

    def _bind(self) -> _Server:
        try:
            infos = socket.getaddrinfo(
                self._host, self._want_port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
        except (socket.gaierror, UnicodeError) as e:
            _bad(self._listen, f"cannot resolve host {self._host!r}: {e}")
        errors: list[str] = []
        for family, _type, _proto, _canon, sockaddr in infos:
            if family not in (socket.AF_INET, socket.AF_INET6):
                continue
            try:
                return _Server((str(sockaddr[0]), int(sockaddr[1])), family, self)
            except OSError as e:
                errors.append(e.strerror or str(e))
        _bad(self._listen, "; ".join(dict.fromkeys(errors)) or "no IPv4/IPv6 address")

    def stop(self) -> None:
        """Stop serving and close the socket (within about a second). Idempotent."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is None or thread is None:
            return
        server.shutdown()
        server.server_close()
        thread.join(_STOP_TIMEOUT_S)
        if thread.is_alive():
            log.warning("health: server thread did not stop within %.1f s", _STOP_TIMEOUT_S)
        log.debug("health: stopped")

    def __enter__(self) -> HealthServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ responses

    def health_response(self) -> tuple[int, str]:
        """``(HTTP status, JSON text)`` of ``/healthz``; 200 only when status is ok."""
        try:
            report = dict(self._health())
        except Exception as e:  # the endpoint must answer even when the runner has a bug
            log.warning("health: the health callback raised %s: %s", type(e).__name__, e)
            report = {"status": "failing", "error": f"health check raised {type(e).__name__}"}
        code = 200 if report.get("status") == "ok" else 503
        return code, json.dumps(_json_safe(report), sort_keys=True, allow_nan=False) + "\n"

    def metrics_response(self) -> tuple[int, str]:
        """``(HTTP status, text)`` of ``/metrics``."""
        try:
            return 200, self._metrics.render()
        except Exception as e:  # a rendering bug must not kill the endpoint
            log.warning("health: rendering metrics raised %s: %s", type(e).__name__, e)
            return 500, "metrics unavailable\n"
