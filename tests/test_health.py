"""HealthServer on a real socket: routes, status codes, metrics format, secrets, binding."""

from __future__ import annotations

import http.client
import json
import math
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from edgewatch.config import HealthConfig, parse_config
from edgewatch.errors import ConfigError
from edgewatch.health import METRICS_CONTENT_TYPE, HealthServer, parse_listen
from edgewatch.metrics import Metrics
from edgewatch.secrets import registry

SOURCE = {
    "state": "streaming",
    "detail": "",
    "fps": 25.0,
    "frames": 120,
    "drops": 0,
    "reconnects": 0,
    "last_frame_age_s": 0.04,
}


def report(status: str, **extra: Any) -> dict[str, Any]:
    return {
        "status": status,
        "sources": {"lobby": dict(SOURCE)},
        "sinks": {"jsonl": {"state": "ok", "error": "", "drops": 0}},
        "uptime_s": 12.5,
        **extra,
    }


def fetch(
    port: int, path: str, method: str = "GET", host: str = "127.0.0.1"
) -> tuple[int, Mapping[str, str], bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


@pytest.fixture
def serve() -> Iterator[Callable[..., HealthServer]]:
    started: list[HealthServer] = []

    def make(
        health: Callable[[], Mapping[str, Any]],
        metrics: Metrics | None = None,
        listen: str = "127.0.0.1:0",
    ) -> HealthServer:
        srv = HealthServer(HealthConfig(listen=listen), metrics or Metrics(), health)
        srv.start()
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (report("ok"), 200),
        (report("degraded"), 503),
        (report("failing"), 503),
        ({"sources": {}}, 503),  # no status: not healthy
        ({"status": "OK"}, 503),  # unknown status: not healthy
        ({"status": "ok"}, 200),
    ],
)
def test_healthz_status_code_and_json(
    serve: Callable[..., HealthServer], body: dict[str, Any], code: int
) -> None:
    srv = serve(lambda: body)
    status, headers, raw = fetch(srv.port, "/healthz")
    assert (status, headers["Content-Type"]) == (code, "application/json")
    assert json.loads(raw) == body
    assert int(headers["Content-Length"]) == len(raw)


def test_healthz_non_finite_floats_become_null(serve: Callable[..., HealthServer]) -> None:
    src = dict(SOURCE, last_frame_age_s=math.inf, fps=math.nan)
    srv = serve(lambda: report("ok", sources={"cam": src}))
    _, _, raw = fetch(srv.port, "/healthz")
    got = json.loads(raw)["sources"]["cam"]
    assert (got["last_frame_age_s"], got["fps"]) == (None, None)


def test_healthz_when_callback_raises(serve: Callable[..., HealthServer]) -> None:
    def broken() -> Mapping[str, Any]:
        raise KeyError("lobby")

    srv = serve(broken)
    status, _, raw = fetch(srv.port, "/healthz")
    assert status == 503
    assert json.loads(raw) == {"status": "failing", "error": "health check raised KeyError"}


def test_healthz_calls_health_per_request(serve: Callable[..., HealthServer]) -> None:
    states = iter(["ok", "degraded", "ok"])
    srv = serve(lambda: {"status": next(states)})
    assert [fetch(srv.port, "/healthz")[0] for _ in range(3)] == [200, 503, 200]


def test_metrics_parse_and_show_recorded_series(serve: Callable[..., HealthServer]) -> None:
    parser = pytest.importorskip(
        "prometheus_client.parser", reason="pip install prometheus-client (test extra)"
    )
    m = Metrics()
    m.inc("edgewatch_frames_total", 40, source="lobby", stage="detect")
    m.inc("edgewatch_drops_total", 2, source="lobby", stage="queue")
    m.set("edgewatch_fps", 24.5, source="lobby")
    for v in (0.02, 0.07, 0.3):
        m.observe("edgewatch_stage_seconds", v, stage="detect", source="lobby")
    srv = serve(lambda: {"status": "ok"}, m)
    status, headers, raw = fetch(srv.port, "/metrics")
    assert status == 200
    assert headers["Content-Type"] == METRICS_CONTENT_TYPE
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in parser.text_string_to_metric_families(raw.decode())
        for s in f.samples
    }
    lab = (("source", "lobby"), ("stage", "detect"))
    assert samples[("edgewatch_frames_total", lab)] == 40
    assert samples[("edgewatch_drops_total", (("source", "lobby"), ("stage", "queue")))] == 2
    assert samples[("edgewatch_fps", (("source", "lobby"),))] == 24.5
    assert samples[("edgewatch_stage_seconds_bucket", (("le", "0.05"), *lab))] == 1
    assert samples[("edgewatch_stage_seconds_bucket", (("le", "0.1"), *lab))] == 2
    assert samples[("edgewatch_stage_seconds_bucket", (("le", "+Inf"), *lab))] == 3
    assert samples[("edgewatch_stage_seconds_count", lab)] == 3
    assert samples[("edgewatch_stage_seconds_sum", lab)] == pytest.approx(0.39)
    # the endpoint renders live: a later increment shows on the next scrape
    m.inc("edgewatch_frames_total", 1, source="lobby", stage="detect")
    assert (
        b'edgewatch_frames_total{source="lobby",stage="detect"} 41\n'
        in fetch(srv.port, "/metrics")[2]
    )


@pytest.mark.parametrize(
    ("method", "path", "code", "ctype"),
    [
        ("GET", "/", 200, "text/html; charset=utf-8"),
        ("GET", "/healthz?verbose=1", 200, "application/json"),
        ("GET", "/nope", 404, "text/plain; charset=utf-8"),
        ("GET", "/healthz/", 404, "text/plain; charset=utf-8"),
        ("GET", "/metrics/x", 404, "text/plain; charset=utf-8"),
        ("POST", "/healthz", 405, "text/plain; charset=utf-8"),
        ("DELETE", "/metrics", 405, "text/plain; charset=utf-8"),
    ],
)
def test_routes(
    serve: Callable[..., HealthServer], method: str, path: str, code: int, ctype: str
) -> None:
    srv = serve(lambda: {"status": "ok"})
    status, headers, raw = fetch(srv.port, path, method)
    assert (status, headers["Content-Type"]) == (code, ctype)
    if code == 405:
        assert headers["Allow"] == "GET, HEAD"
    if path == "/":
        assert b'href="/healthz"' in raw and b'href="/metrics"' in raw


@pytest.mark.parametrize(
    ("path", "code"), [("/healthz", 503), ("/metrics", 200), ("/", 200), ("/x", 404)]
)
def test_head_has_headers_and_no_body(
    serve: Callable[..., HealthServer], path: str, code: int
) -> None:
    m = Metrics()
    m.inc("edgewatch_frames_total", source="a")
    srv = serve(lambda: report("degraded"), m)
    get_status, get_headers, get_body = fetch(srv.port, path)
    status, headers, body = fetch(srv.port, path, "HEAD")
    assert (status, body) == (code, b"")
    assert get_status == code
    assert headers["Content-Length"] == get_headers["Content-Length"] == str(len(get_body))
    assert headers["Content-Type"] == get_headers["Content-Type"]


def test_secret_never_leaves_in_either_body(serve: Callable[..., HealthServer]) -> None:
    secret = "Hunter2-health-secret"
    registry.add(secret)
    src = dict(SOURCE, state="backoff", detail=f"auth failed for rtsp://admin:{secret}@cam/1")
    m = Metrics()
    m.inc("edgewatch_reconnects_total", source="lobby", reason=f"token {secret}")
    srv = serve(lambda: report("degraded", sources={"lobby": src}, note=secret), m)
    for path in ("/healthz", "/metrics", "/"):
        _, headers, raw = fetch(srv.port, path)
        assert secret.encode() not in raw
        assert int(headers["Content-Length"]) == len(raw)
    health = json.loads(fetch(srv.port, "/healthz")[2])
    assert health["sources"]["lobby"]["detail"] == "auth failed for rtsp://admin:***@cam/1"
    assert health["note"] == "***"
    assert b'reason="token ***"' in fetch(srv.port, "/metrics")[2]


def test_address_in_use_names_health_listen() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        srv = HealthServer(HealthConfig(listen=f"127.0.0.1:{port}"), Metrics(), dict)
        with pytest.raises(ConfigError, match=r"health\.listen") as err:
            srv.start()
        assert "in use" in str(err.value)
        assert err.value.problems[0][0] == "health.listen"
        assert srv.port == 0
        srv.stop()  # a server that never started stops quietly


def test_second_server_on_same_port_fails(serve: Callable[..., HealthServer]) -> None:
    first = serve(lambda: {"status": "ok"})
    second = HealthServer(HealthConfig(listen=f"127.0.0.1:{first.port}"), Metrics(), dict)
    with pytest.raises(ConfigError, match=r"health\.listen"):
        second.start()
    assert fetch(first.port, "/healthz")[0] == 200


def test_address_not_on_this_host() -> None:
    srv = HealthServer(HealthConfig(listen="192.0.2.1:0"), Metrics(), dict)  # TEST-NET-1
    with pytest.raises(ConfigError, match=r"health\.listen"):
        srv.start()


def test_stop_is_quick_and_releases_the_port() -> None:
    srv = HealthServer(HealthConfig(listen="127.0.0.1:0"), Metrics(), lambda: {"status": "ok"})
    srv.start()
    port = srv.port
    assert port > 0
    assert fetch(port, "/healthz")[0] == 200
    t0 = time.monotonic()
    srv.stop()
    assert time.monotonic() - t0 < 1.0
    with pytest.raises(ConnectionRefusedError):
        fetch(port, "/healthz")
    srv.stop()  # idempotent
    again = HealthServer(
        HealthConfig(listen=f"127.0.0.1:{port}"), Metrics(), lambda: {"status": "degraded"}
    )
    with again:
        assert again.port == port
        assert fetch(port, "/healthz")[0] == 503


def test_start_twice_is_an_error(serve: Callable[..., HealthServer]) -> None:
    srv = serve(lambda: {"status": "ok"})
    with pytest.raises(RuntimeError, match="already started"):
        srv.start()


def test_server_thread_is_named_daemon(serve: Callable[..., HealthServer]) -> None:
    import threading

    serve(lambda: {"status": "ok"})
    (t,) = [t for t in threading.enumerate() if t.name == "edgewatch-health"]
    assert t.daemon


def test_request_lines_not_logged_at_info(
    serve: Callable[..., HealthServer], caplog: pytest.LogCaptureFixture
) -> None:
    srv = serve(lambda: {"status": "ok"})
    caplog.clear()  # the start-up line names the routes; only request lines matter here
    with caplog.at_level("INFO", logger="edgewatch.health"):
        fetch(srv.port, "/healthz")
        fetch(srv.port, "/nope")
    assert [
        r for r in caplog.records if "/healthz" in r.getMessage() or "/nope" in r.getMessage()
    ] == []
    with caplog.at_level("DEBUG", logger="edgewatch.health"):
        fetch(srv.port, "/metrics")
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and not any(
            "GET /metrics" in r.getMessage() for r in caplog.records
        ):
            time.sleep(0.01)
    assert any("GET /metrics" in r.getMessage() and r.levelname == "DEBUG" for r in caplog.records)


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this host")
def test_ipv6_loopback(serve: Callable[..., HealthServer]) -> None:
    srv = serve(lambda: {"status": "ok"}, listen="[::1]:0")
    assert srv.url == f"http://[::1]:{srv.port}"
    assert fetch(srv.port, "/healthz", host="::1")[0] == 200


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("127.0.0.1:9108", ("127.0.0.1", 9108)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        ("localhost:65535", ("localhost", 65535)),
        ("[::1]:9108", ("::1", 9108)),
        ("[::]:0", ("::", 0)),
        ("127.0.0.1", ConfigError),
        (":9108", ConfigError),
        ("::1:9108", ConfigError),
        ("[::1]", ConfigError),
        ("[]:9108", ConfigError),
        ("[::1:9108", ConfigError),
        ("host:65536", ConfigError),
        ("host:-1", ConfigError),
        ("host:http", ConfigError),
        ("host:", ConfigError),
        ("my host:80", ConfigError),
    ],
)
def test_parse_listen(listen: str, expected: tuple[str, int] | type[Exception]) -> None:
    if isinstance(expected, tuple):
        assert parse_listen(listen) == expected
    else:
        with pytest.raises(expected, match=r"health\.listen"):
            parse_listen(listen)
        with pytest.raises(ValidationError, match="cannot listen on"):
            HealthConfig(listen=listen)
        # a config built without validation still fails before binding
        with pytest.raises(expected, match=r"health\.listen"):
            HealthServer(HealthConfig.model_construct(listen=listen), Metrics(), dict)
        assert parse_listen(HealthConfig.model_validate({}).listen) == ("127.0.0.1", 9108)


def test_bad_listen_in_yaml_names_file_line_and_key(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    text = (
        "sources:\n  - {id: cam, uri: 'rtsp://cam/1'}\n"
        f"detector: {{model: '{model}'}}\n"
        "health:\n  listen: '9108'\n"
    )
    with pytest.raises(ConfigError) as err:
        parse_config(text, name="p.yaml")
    assert str(err.value) == (
        "p.yaml:5 health.listen: cannot listen on '9108': expected host:port, e.g. "
        "127.0.0.1:9108 (0.0.0.0:9108 for all interfaces)"
    )


def test_concurrent_scrapes(serve: Callable[..., HealthServer]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    m = Metrics()
    m.inc("edgewatch_frames_total", 5, source="a")
    srv = serve(lambda: report("ok"), m)
    paths = ["/healthz", "/metrics"] * 20
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda p: fetch(srv.port, p)[0], paths))
    assert got == [200] * len(paths)
