"""The real runner behind the health server: /healthz and /metrics while running, and a reload."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from testkit import free_port

from edgewatch.config import PipelineConfig
from edgewatch.pipeline.runner import Pipeline


def get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def wait_for(cond: Callable[[], Any], timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"condition not met within {timeout} s")


def config(
    vtest: Path, model: Path, port: int, ids: list[str], conf: float = 0.25
) -> PipelineConfig:
    return PipelineConfig.model_validate(
        {
            "sources": [
                {"id": sid, "uri": str(vtest), "realtime": True, "loop": True, "queue_size": 1}
                for sid in ids
            ],
            "detector": {"model": str(model), "conf": conf, "intra_op_num_threads": 1},
            "health": {"listen": f"127.0.0.1:{port}"},
            "shutdown_timeout": 5,
        }
    )


@pytest.fixture
def running(vtest_path: Path, detector_path: Path) -> Iterator[tuple[Pipeline, int]]:
    port = free_port()
    pipe = Pipeline(config(vtest_path, detector_path, port, ["lobby"]))
    pipe.start()
    try:
        yield pipe, port
    finally:
        pipe.shutdown()


def healthy(port: int, *ids: str) -> dict[str, Any] | None:
    code, body = get(port, "/healthz")
    data = json.loads(body)
    srcs = data["sources"]
    ok = code == 200 and all(srcs.get(i, {}).get("frames", 0) > 0 for i in ids)
    return data if ok else None


def test_healthz_and_metrics_of_a_running_pipeline(running: tuple[Pipeline, int]) -> None:
    parser = pytest.importorskip(
        "prometheus_client.parser", reason="pip install prometheus-client (test extra)"
    )
    pipe, port = running
    data = wait_for(lambda: healthy(port, "lobby"))
    assert data["status"] == "ok"
    lobby = data["sources"]["lobby"]
    assert lobby["state"] == "streaming"
    assert lobby["last_frame_age_s"] is not None and lobby["last_frame_age_s"] < 30
    assert data["uptime_s"] >= 0
    code, body = get(port, "/metrics")
    assert code == 200
    families = {f.name: f for f in parser.text_string_to_metric_families(body.decode())}
    frames = [s for s in families["edgewatch_frames"].samples if s.labels.get("source") == "lobby"]
    assert frames and all(s.value > 0 for s in frames)
    assert families["edgewatch_stage_seconds"].type == "histogram"
    pipe.shutdown()
    with pytest.raises(ConnectionRefusedError):
        get(port, "/healthz")


def test_reload_adds_a_source_and_reports_blockers(
    running: tuple[Pipeline, int], vtest_path: Path, detector_path: Path
) -> None:
    pipe, port = running
    wait_for(lambda: healthy(port, "lobby"))
    new = config(vtest_path, detector_path, port, ["lobby", "gate"], conf=0.5)
    blockers = pipe.reload(new)
    assert blockers == [
        "detector.conf changed (0.25 -> 0.5): the running detector keeps its "
        "post-processing options until a restart"
    ]

    def gate_streaming() -> dict[str, Any] | None:
        data = json.loads(get(port, "/healthz")[1])
        gate = data["sources"].get("gate", {})
        return data if gate.get("state") == "streaming" else None

    data = wait_for(gate_streaming, timeout=30)
    assert set(data["sources"]) == {"lobby", "gate"}
    assert [s.id for s in pipe.cfg.sources] == ["lobby", "gate"]
    assert pipe.cfg.detector.conf == 0.25  # the blocked part keeps the old value


def test_live_sources_share_the_detector(vtest_path: Path, detector_path: Path) -> None:
    port = free_port()
    pipe = Pipeline(config(vtest_path, detector_path, port, ["lobby", "gate"]))
    pipe.start()
    try:

        def frames() -> dict[str, int] | None:
            srcs = json.loads(get(port, "/healthz")[1])["sources"]
            counts = {k: v["frames"] for k, v in srcs.items()}
            return counts if sum(counts.values()) >= 30 else None

        counts = wait_for(frames, timeout=60)
    finally:
        pipe.shutdown()
    # two identical live cameras: neither may get less than a third of the detector
    assert min(counts.values()) >= sum(counts.values()) / 3, counts
