"""The daemon's life: many paced sources, bounded latency, SIGHUP, SIGTERM, health.

These run the real runner; the latency test uses the real (slow) detector,
the others a tiny generated model so that they stay quick.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from testkit import free_port, tiny_detector, write_clip
from testkit import http_get as _get

from edgewatch.config import parse_config
from edgewatch.pipeline.runner import Pipeline

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return tiny_detector(tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture(scope="module")
def clip(tmp_path_factory, vtest_path: Path) -> Path:
    """The first 50 frames of vtest.avi (10 fps) re-encoded, for looping sources."""
    return write_clip(vtest_path, tmp_path_factory.mktemp("clip") / "clip.mp4", 50)


def _histogram_p(metrics_text: str, name: str, q: float, source: str) -> float:
    """The bucket bound at quantile q of a Prometheus histogram for one source."""
    buckets: list[tuple[float, float]] = []
    for line in metrics_text.splitlines():
        if line.startswith(f"{name}_bucket{{") and f'source="{source}"' in line:
            le = line.split('le="')[1].split('"')[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), float(line.split()[-1])))
    buckets.sort()
    total = buckets[-1][1]
    return next(b for b, c in buckets if c >= q * total)


@pytest.mark.slow
def test_eight_paced_sources_latency_bounded(clip: Path, detector_path: Path) -> None:
    port = free_port()
    sources = "\n".join(
        f"  - {{id: cam{i}, uri: '{clip}', realtime: true, loop: true, queue_size: 2}}"
        for i in range(8)
    )
    cfg = parse_config(
        f"sources:\n{sources}\ndetector: {{model: '{detector_path}', conf: 0.3}}\n"
        f"health: {{listen: '127.0.0.1:{port}'}}\n"
    )
    pipe = Pipeline(cfg)
    pipe.start()
    try:
        time.sleep(20)
        status, metrics = _get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        code, body = _get(f"http://127.0.0.1:{port}/healthz")
        health = json.loads(body)
    finally:
        pipe.stop()
        pipe.shutdown()
    s = pipe.summary()
    # 8 cameras at 10 fps = 80 frames/s offered to a detector that does ~5-10:
    # frames are dropped (and counted), never queued without bound.
    assert sum(v for k, v in s.drops.items() if k.endswith("/queue")) > 100
    assert all(n >= 3 for n in s.frames.values()), s.frames  # every camera is served
    for i in range(8):
        p95 = _histogram_p(metrics, "edgewatch_latency_seconds", 0.95, f"cam{i}")
        assert p95 <= 5.0, (i, p95)
    assert code == 200 and set(health["sources"]) == {f"cam{i}" for i in range(8)}
    assert all(v["state"] == "streaming" for v in health["sources"].values()), health


def _write(path: Path, clip: Path, model: Path, ids: list[str], port: int) -> None:
    srcs = "\n".join(f"  - {{id: {i}, uri: '{clip}', realtime: true, loop: true}}" for i in ids)
    path.write_text(
        f"sources:\n{srcs}\ndetector: {{model: '{model}'}}\n"
        f"health: {{listen: '127.0.0.1:{port}'}}\nshutdown_timeout: 5\n"
    )


def _wait_for(pred, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if pred():
                return True
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.2)
    return False


def _sources(port: int) -> dict:
    return json.loads(_get(f"http://127.0.0.1:{port}/healthz")[1])["sources"]


def test_sighup_adds_removes_and_refuses(tmp_path: Path, clip: Path, tiny_model: Path) -> None:
    port = free_port()
    cfg = tmp_path / "p.yaml"
    _write(cfg, clip, tiny_model, ["a", "b"], port)
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgewatch", "run", str(cfg)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert _wait_for(
            lambda: (
                set(_sources(port)) == {"a", "b"}
                and all(s["frames"] > 0 for s in _sources(port).values())
            ),
            60,
        )
        frames_a = _sources(port)["a"]["frames"]
        _write(cfg, clip, tiny_model, ["a", "c"], port)
        proc.send_signal(signal.SIGHUP)
        assert _wait_for(
            lambda: set(_sources(port)) == {"a", "c"} and _sources(port)["c"]["frames"] > 0, 30
        ), _sources(port)
        assert _sources(port)["a"]["frames"] > frames_a  # 'a' never stopped
        cfg.write_text("sources: [\n")  # invalid: refused, the old config keeps running
        proc.send_signal(signal.SIGHUP)
        time.sleep(1.5)
        assert proc.poll() is None
        assert set(_sources(port)) == {"a", "c"}
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-2000:]
    assert "config refused" in err and "invalid YAML" in err


def test_sigterm_during_backoff_exits_in_time(tmp_path: Path, tiny_model: Path) -> None:
    dead = free_port()  # nothing listens here: connection refused, then backoff
    cfg = tmp_path / "p.yaml"
    cfg.write_text(
        f"sources:\n  - id: cam\n    uri: rtsp://127.0.0.1:{dead}/x\n"
        "    reconnect: {initial: 30, max: 60}\n"
        f"detector: {{model: '{tiny_model}'}}\nshutdown_timeout: 3\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgewatch", "run", str(cfg)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(4)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 5.0
    assert proc.returncode in (0, 1), err[-2000:]
    assert "refused" in err.lower(), err[-2000:]


@pytest.mark.parametrize(
    ("uri", "expect"),
    [
        ("rtsp://user:hunter22@127.0.0.1:{dead}/x", "connection refused by 127.0.0.1:{dead} "),
        ("rtsp://user:hunter22@no-such-host.invalid/x", "unknown host 'no-such-host.invalid': "),
    ],
)
def test_health_shows_distinct_failures(tiny_model: Path, uri: str, expect: str) -> None:
    """Refused and unknown host on /healthz (wrong credentials, against the real RTSP
    server: tests/sources/test_rtsp_pipeline.py::test_wrong_credentials_on_healthz)."""
    port, dead = free_port(), free_port()
    cfg = parse_config(
        f"sources:\n  - {{id: cam, uri: '{uri.format(dead=dead)}', reconnect: {{initial: 5}}}}\n"
        f"detector: {{model: '{tiny_model}'}}\nhealth: {{listen: '127.0.0.1:{port}'}}\n"
    )
    pipe = Pipeline(cfg)
    pipe.start()
    try:
        assert _wait_for(lambda: _sources(port)["cam"]["state"] in ("backoff", "failed"), 20)
        code, body = _get(f"http://127.0.0.1:{port}/healthz")
        _, metrics = _get(f"http://127.0.0.1:{port}/metrics")
    finally:
        pipe.stop()
        pipe.shutdown()
    detail = json.loads(body)["sources"]["cam"]["detail"]
    assert code == 503
    assert detail.startswith(expect.format(dead=dead)), detail
    assert "hunter22" not in body and "hunter22" not in metrics


def test_slow_subscriber_does_not_stall(tmp_path: Path, vtest_path: Path, tiny_model: Path) -> None:
    """A ZeroMQ subscriber that never reads: its messages are dropped at the socket's
    high-water mark (counted as ``hwm:zmq``, apart from the sink queue's ``sink:zmq``)
    while a paced camera keeps its pace through the pipeline and the JSONL sink."""
    import zmq

    paced = 150  # frames the paced source offers: 6 s of a 25 fps clip, looped
    clip25 = write_clip(vtest_path, tmp_path / "clip25.mp4", 50, fps=25)
    out = tmp_path / "o.jsonl"
    zport = free_port()
    cfg = parse_config(
        f"sources:\n  - {{id: cam, uri: '{clip25}', realtime: true, loop: true,"
        f" max_frames: {paced}}}\n"
        f"detector: {{model: '{tiny_model}'}}\n"
        "sinks:\n"
        f"  - {{type: zmq, endpoint: 'tcp://127.0.0.1:{zport}', hwm: 5, send_image: true}}\n"
        f"  - {{type: jsonl, path: '{out}'}}\n"
    )
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 1)
    sub.setsockopt(zmq.RCVBUF, 4096)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(f"tcp://127.0.0.1:{zport}")  # and never reads
    pipe = Pipeline(cfg)
    try:
        s = pipe.run()
    finally:
        sub.close(linger=0)
        ctx.term()
    m = pipe.metrics
    hwm = m.counter("edgewatch_drops_total", source="cam", stage="hwm:zmq")
    assert hwm > 0, s.drops
    assert s.drops["hwm:zmq"] == hwm
    zmq_health = pipe.health()["sinks"]["zmq"]
    assert zmq_health["hwm_drops"] == hwm
    assert zmq_health["drops"] == m.counter("edgewatch_drops_total", source="cam", stage="sink:zmq")
    # The stalled subscriber held nothing up: the camera's frames were published at
    # the pace it offered them (a stalled pipeline would drop them at its queue).
    published = s.frames["cam"]
    assert published >= 0.85 * paced, (published, s.drops)
    assert m.counter("edgewatch_drops_total", source="cam", stage="queue") == paced - published
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len([x for x in lines if x["type"] == "frame"]) == published


def test_sixteen_sources_one_process(clip: Path, tiny_model: Path) -> None:
    sources = "\n".join(
        f"  - {{id: cam{i:02d}, uri: '{clip}', realtime: true, loop: true, fps: 5}}"
        for i in range(16)
    )
    cfg = parse_config(f"sources:\n{sources}\ndetector: {{model: '{tiny_model}'}}\n")
    seen: dict[str, list[list[int]]] = {}
    pipe = Pipeline(
        cfg,
        on_result=lambda r: seen.setdefault(r.frame.source_id, []).append(
            [int(t) for t in r.detections.tracker_id]
        ),
    )
    pipe.start()
    time.sleep(8)
    pipe.stop()
    pipe.shutdown()
    assert sorted(seen) == [f"cam{i:02d}" for i in range(16)]
    for sid, ids in seen.items():
        # fps: 5 of a 10 fps clip, for ~8 s: about 40 frames each, never 80.
        assert 15 <= len(ids) <= 48, (sid, len(ids))
        # Per-source trackers: every source numbers its own two tracks from 1.
        assert ids[-1] == [1, 2], (sid, ids[-1])
