"""The runner under faults that used to end a run: a stop asked for while the
model loads, and frames the prep stage cannot letterbox."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from testkit import image_folder, tiny_detector

import edgewatch.pipeline.models.yolo as yolo
from edgewatch.config import PipelineConfig
from edgewatch.metrics import Metrics
from edgewatch.pipeline.runner import Pipeline, RunSummary

FRAMES = 6


def _config(tmp_path: Path, source: dict[str, object]) -> PipelineConfig:
    return PipelineConfig.model_validate(
        {
            "sources": [source],
            "detector": {"model": str(tiny_detector(tmp_path / "det.onnx")), "device": "cpu"},
            "sinks": [{"type": "jsonl", "path": str(tmp_path / "out.jsonl")}],
            "shutdown_timeout": 10,
        }
    )


def _run_in_thread(pipe: Pipeline) -> tuple[threading.Thread, list[RunSummary]]:
    got: list[RunSummary] = []
    t = threading.Thread(target=lambda: got.append(pipe.run()), daemon=True)
    t.start()
    return t, got


@pytest.mark.parametrize("when", ["before_run", "while_loading"])
def test_stop_before_sources_start_ends_the_run(
    tmp_path: Path, vtest_path: Path, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    """A looping realtime source never ends by itself: only the stop can end it."""
    cfg = _config(tmp_path, {"id": "loop", "uri": str(vtest_path), "realtime": True, "loop": True})
    pipe = Pipeline(cfg)
    if when == "before_run":
        pipe.stop()
    else:  # the signal handler's call, made while the detector loads
        real_load = yolo.YoloDetector.load

        def load(self: yolo.YoloDetector) -> None:
            pipe.stop()
            real_load(self)

        monkeypatch.setattr(yolo.YoloDetector, "load", load)
    t, got = _run_in_thread(pipe)
    t.join(20)
    if t.is_alive():  # the bug: the source runs on; end it so the test process can
        pipe.stop()
        t.join(20)
        pytest.fail("run() kept going after stop() was called during start()")
    assert got and got[0].error == ""
    assert got[0].total_frames <= 1  # at most the frame read before the flag was seen


def _odd_folder(tmp_path: Path) -> Path:
    folder = image_folder(tmp_path / "cam", FRAMES, (96, 128))
    rng = np.random.default_rng(1)
    for name, shape in (("img2a.tif", (5000, 3)), ("img4a.png", (1, 1))):
        assert cv2.imwrite(str(folder / name), rng.integers(0, 256, (*shape, 3), np.uint8))
    return folder


def _frames(path: Path) -> list[dict[str, object]]:
    return [m for m in map(json.loads, path.read_text().splitlines()) if m.get("type") != "event"]


def test_odd_sized_images_are_processed(tmp_path: Path) -> None:
    cfg = _config(tmp_path, {"id": "cam", "uri": str(_odd_folder(tmp_path))})
    summary = Pipeline(cfg).run()
    assert summary.error == ""
    assert summary.frames == {"cam": FRAMES + 2}
    sizes = {(m["width"], m["height"]) for m in _frames(tmp_path / "out.jsonl")}
    assert {(3, 5000), (1, 1), (128, 96)} == sizes


def _pre_fix_params(
    shape: tuple[int, int], new_shape: tuple[int, int], *_: object
) -> tuple[float, tuple[int, int], tuple[int, int, int, int]]:
    """The letterbox rounding before it kept 1 px: a 3x5000 strip gets 0 px (cv2 raises)."""
    r = min(new_shape[0] / shape[0], new_shape[1] / shape[1])
    new_w, new_h = round(shape[1] * r), round(shape[0] * r)
    dw, dh = (new_shape[1] - new_w) / 2, (new_shape[0] - new_h) / 2
    return r, (new_w, new_h), (round(dh - 0.1), round(dh + 0.1), round(dw - 0.1), round(dw + 0.1))


@pytest.mark.parametrize("batch", [1, 4])
def test_frame_that_cannot_be_preprocessed_is_skipped_and_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, batch: int
) -> None:
    monkeypatch.setattr(yolo, "letterbox_params", _pre_fix_params)
    folder = _odd_folder(tmp_path)
    good = image_folder(tmp_path / "other", FRAMES, (64, 80), seed=3)
    cfg = _config(tmp_path, {"id": "cam", "uri": str(folder)})
    cfg = cfg.model_copy(
        update={
            "sources": [
                *cfg.sources,
                cfg.sources[0].model_copy(update={"id": "b", "uri": str(good)}),
            ],
            "detector": cfg.detector.model_copy(update={"batch": batch}),
        }
    )
    metrics = Metrics()
    with caplog.at_level(logging.WARNING, logger="edgewatch.pipeline.runner"):
        summary = Pipeline(cfg, metrics=metrics).run()
    assert summary.error == ""
    assert summary.frames == {"cam": FRAMES + 1, "b": FRAMES}  # all but the 3x5000 strip
    assert metrics.counter("edgewatch_drops_total", source="cam", stage="preprocess") == 1
    assert summary.drops == {"cam/preprocess": 1}
    msgs = [r.getMessage() for r in caplog.records if "cannot preprocess" in r.getMessage()]
    assert len(msgs) == 1 and "source cam" in msgs[0] and "5000x3x3" in msgs[0]
    lines = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    events = [(m["source"], m["event"]) for m in lines if m.get("type") == "event"]
    assert events.count(("cam", "ended")) == 1 and events.count(("b", "ended")) == 1


def test_sigterm_while_loading_exits_0(
    tmp_path: Path, vtest_path: Path, detector_path: Path
) -> None:
    """``edgewatch run`` signalled as soon as it logs that the model loads."""
    cfg = tmp_path / "s.yaml"
    cfg.write_text(
        f"sources:\n  - {{id: loop, uri: {vtest_path}, realtime: true, loop: true}}\n"
        f"detector: {{model: {detector_path}, device: cpu}}\n"
        f"sinks:\n  - {{type: jsonl, path: {tmp_path / 'out.jsonl'}}}\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgewatch", "run", str(cfg), "--no-progress"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:  # the log says when loading starts (handlers are in place)
        seen.append(line)
        if "loading detector" in line:
            proc.send_signal(signal.SIGTERM)
            break
    try:
        rc = proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail("edgewatch kept running after SIGTERM during loading:\n" + "".join(seen))
    rest = proc.stderr.read()
    assert rc == 0, "".join(seen) + rest
    text = (tmp_path / "out.jsonl").read_text()
    assert text == "" or text.endswith("\n")
