"""The daemon's life: many paced sources, bounded latency, SIGHUP, SIGTERM, health.

These run the real runner; the latency test uses the real (slow) detector,
the others a tiny generated model so that they stay quick.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from testkit import free_port, image_folder, tiny_detector, write_clip
from testkit import http_get as _get

from edgewatch.config import PipelineConfig, parse_config
from edgewatch.pipeline.runner import Pipeline
from edgewatch.types import FrameResult

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
def test_eight_paced_sources_latency_bounded(
    clip: Path, detector_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
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
        with caplog.at_level("WARNING", logger="edgewatch.pipeline.runner"):
            pipe.stop()
            pipe.shutdown()
    s = pipe.summary()
    # Stopping drops the cameras' stale queued frames (counted) instead of
    # detecting them one by one: the stop ends well inside shutdown_timeout and
    # no stage is abandoned mid-inference.
    assert pipe.metrics.counter_sum("edgewatch_drops_total", stage="shutdown") > 0
    assert "shutdown deadline reached" not in caplog.text
    assert "finish its current call" not in caplog.text
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


def _paced(ids_uris: dict[str, str], model: Path) -> PipelineConfig:
    srcs = "".join(
        f"  - {{id: {sid}, uri: '{uri}', realtime: true, loop: true}}\n"
        for sid, uri in ids_uris.items()
    )
    return parse_config(
        f"sources:\n{srcs}detector: {{model: '{model}'}}\nshutdown_timeout: 5\n"
    )


def _source_threads() -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("source-"))


def test_reload_changed_source(tmp_path: Path, clip: Path, tiny_model: Path) -> None:
    """b's uri changes: the old b stops, the new b starts (its frames restart at index 0,
    at the new size), a and c go on untouched; what reload started is joined at shutdown."""
    folder = image_folder(tmp_path / "imgs", 10, (120, 160))
    seen: list[tuple[str, int, int]] = []  # (source, frame index, width), in publish order
    lock = threading.Lock()

    def record(r: FrameResult) -> None:
        with lock:
            seen.append((r.frame.source_id, r.frame.index, r.frame.image.shape[1]))

    def count(sid: str, width: int) -> int:
        with lock:
            return sum(1 for s, _, w in seen if s == sid and w == width)

    pipe = Pipeline(_paced({"a": str(clip), "b": str(clip), "c": str(clip)}, tiny_model),
                    on_result=record)
    pipe.start()
    try:
        assert _wait_for(lambda: all(count(s, 768) >= 5 for s in "abc"), 60)
        blockers = pipe.reload(
            _paced({"a": str(clip), "b": str(folder), "c": str(clip)}, tiny_model)
        )
        assert blockers == []
        n_a, n_c = count("a", 768), count("c", 768)
        assert _wait_for(
            lambda: count("b", 160) >= 5 and count("a", 768) > n_a + 5 < count("c", 768) - n_c,
            60,
        )
        assert _source_threads().count("source-b") == 1  # the old b's thread has ended
        health = pipe.health()["sources"]
    finally:
        pipe.stop()
        pipe.shutdown()
    assert _source_threads() == []
    assert {k: v["state"] for k, v in health.items()} == dict.fromkeys("abc", "streaming")
    with lock:
        b = [(i, w) for s, i, w in seen if s == "b"]
        first_new = next(k for k, (_, w) in enumerate(b) if w == 160)
        assert all(w == 768 for _, w in b[:first_new])  # the old b, up to the switch
        assert all(w == 160 for _, w in b[first_new:])  # then only the new one
        assert b[first_new][0] == 0  # which starts at frame 0
        for sid in "ac":  # never restarted: one frame index sequence, no gap
            idx = [i for s, i, _ in seen if s == sid]
            assert idx == list(range(len(idx))), sid


def test_reload_of_the_only_source_keeps_running(clip: Path, tmp_path: Path,
                                                 tiny_model: Path) -> None:
    """While the only source is swapped, the pipeline must not take it for the end."""
    folder = image_folder(tmp_path / "imgs", 10, (120, 160))
    widths: list[int] = []
    pipe = Pipeline(_paced({"cam": str(clip)}, tiny_model),
                    on_result=lambda r: widths.append(r.frame.image.shape[1]))
    pipe.start()
    try:
        assert _wait_for(lambda: len(widths) >= 3, 60)
        pipe.reload(_paced({"cam": str(folder)}, tiny_model))
        assert _wait_for(lambda: widths.count(160) >= 5, 60), widths[-5:]
        assert not pipe.wait(0)
    finally:
        pipe.stop()
        pipe.shutdown()
    assert _source_threads() == []


def test_reloads_are_serialized_and_refused_once_stopping(clip: Path, tiny_model: Path) -> None:
    pipe = Pipeline(_paced({"a": str(clip)}, tiny_model))
    pipe.start()
    try:
        new = _paced({"a": str(clip), "d": str(clip)}, tiny_model)
        # Two reloads at once (two quick SIGHUPs): 'd' starts once, not twice.
        threads = [threading.Thread(target=pipe.reload, args=(new,)) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert _source_threads() == ["source-a", "source-d"]
        pipe.stop()
        assert pipe.reload(_paced({"a": str(clip), "e": str(clip)}, tiny_model)) == []
        assert "source-e" not in _source_threads()
        assert [s.id for s in pipe.cfg.sources] == ["a", "d"]
    finally:
        pipe.stop()
        pipe.shutdown()
    assert _source_threads() == []


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
    assert proc.returncode == 0, err[-2000:]  # a camera that is down is no failure
    assert "refused" in err.lower(), err[-2000:]


@pytest.mark.parametrize(
    ("sources", "code"),
    [
        (["bad"], 1),  # the only source, a file, cannot be read: nothing processed
        (["bad", "good"], 0),  # another source delivered frames
        (["bad", "camera"], 1),  # nothing processed; the camera only retried until SIGTERM
        (["camera"], 0),  # every camera down until SIGTERM: still a clean stop
    ],
)
def test_exit_codes(
    tmp_path: Path, clip: Path, tiny_model: Path, sources: list[str], code: int
) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(range(256)) * 64)
    entries = {
        "bad": f"{{id: bad, uri: '{bad}'}}",
        "good": f"{{id: good, uri: '{clip}', max_frames: 5}}",
        "camera": f"{{id: camera, uri: 'rtsp://127.0.0.1:{free_port()}/x',"
        " reconnect: {initial: 0.1, max: 0.2}}",
    }
    cfg = tmp_path / "p.yaml"
    cfg.write_text(
        "sources:\n"
        + "".join(f"  - {entries[s]}\n" for s in sources)
        + f"detector: {{model: '{tiny_model}'}}\nshutdown_timeout: 3\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgewatch", "run", str(cfg)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    head = ""
    try:
        if "camera" in sources:  # runs until stopped: stop it once it is retrying
            while "retry 2 " not in head and (line := proc.stderr.readline()):
                head += line
            proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    err = head + err
    assert proc.returncode == code, err[-2000:]
    failed = "edgewatch: source bad failed: cannot open video file"
    assert (failed in err) == (code == 1), err[-2000:]
    if "good" in sources:
        assert "source good: 5 frames" in out


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
