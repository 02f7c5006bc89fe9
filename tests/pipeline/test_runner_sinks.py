"""Sinks behind the real runner: a failing sink is logged and counted, never
stops the others, and the run summary reports each sink's write time."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from testkit import image_folder, tiny_detector

import edgewatch.sinks
from edgewatch.commands.run import print_summary
from edgewatch.config import JsonlSinkConfig, PipelineConfig
from edgewatch.metrics import Metrics
from edgewatch.pipeline.runner import Pipeline
from edgewatch.sinks.base import Sink
from edgewatch.types import FrameResult

FRAMES = 12


class TypeErrorSink(Sink):
    """A sink with a bug: every write raises a plain TypeError."""

    def write(self, result: FrameResult) -> None:
        raise TypeError(f"buggy sink cannot handle frame {result.frame.index}")


def _config(tmp_path: Path, bad_sink: dict[str, Any]) -> PipelineConfig:
    images = image_folder(tmp_path / "cam", FRAMES, (96, 128))
    return PipelineConfig.model_validate(
        {
            "sources": [{"id": "cam", "uri": str(images)}],
            "detector": {"model": str(tiny_detector(tmp_path / "det.onnx")), "device": "cpu"},
            "sinks": [{"type": "jsonl", "path": str(tmp_path / "good.jsonl")}, bad_sink],
            "shutdown_timeout": 10,
        }
    )


@pytest.fixture
def buggy_sinks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Build a :class:`TypeErrorSink` for a jsonl entry whose path ends in ``.buggy``."""
    real = edgewatch.sinks.build_sink

    def build(cfg: Any, metrics: Metrics, **kw: Any) -> Sink:
        if isinstance(cfg, JsonlSinkConfig) and cfg.path.endswith(".buggy"):
            return TypeErrorSink("buggy", metrics)
        return real(cfg, metrics, **kw)

    monkeypatch.setattr(edgewatch.sinks, "build_sink", build)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        # a jsonl file that cannot be opened: a SinkError on every write
        ({"type": "jsonl", "path": "{dir}/{{source}}", "events": False}, "cannot open"),
        # a sink with a bug: not an Edgewatch error at all
        ({"type": "jsonl", "path": "{dir}/x.buggy"}, "TypeError: buggy sink"),
    ],
    ids=["unwritable-jsonl", "type-error"],
)
@pytest.mark.usefixtures("buggy_sinks")
def test_failing_sink_is_counted_and_stops_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, bad: dict[str, Any], message: str
) -> None:
    folder = tmp_path / "a-directory"
    (folder / "cam").mkdir(parents=True)  # {source} expands to a directory
    bad = {**bad, "path": bad["path"].format(dir=folder)}
    metrics = Metrics()
    with caplog.at_level(logging.ERROR, logger="edgewatch.pipeline.sinkworker"):
        summary = Pipeline(_config(tmp_path, bad), metrics=metrics).run()

    assert summary.error == ""
    assert summary.frames == {"cam": FRAMES}
    lines = [json.loads(x) for x in (tmp_path / "good.jsonl").read_text().splitlines()]
    assert [m["frame"] for m in lines if "frame" in m] == list(range(FRAMES))
    assert [m["event"] for m in lines if m.get("type") == "event"] == ["connected", "ended"]
    assert metrics.counter("edgewatch_sink_errors_total", sink="jsonl1") == FRAMES
    assert metrics.counter("edgewatch_sink_errors_total", sink="jsonl0") == 0
    assert summary.sink_errors == {"jsonl1": FRAMES}
    # rate limited: one line for the whole run, naming the sink and the error
    logged = [r for r in caplog.records if r.name == "edgewatch.pipeline.sinkworker"]
    assert len(logged) == 1
    assert "sink jsonl1 failed" in logged[0].getMessage()
    assert message in logged[0].getMessage()


def test_summary_reports_ms_per_sink(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path, {"type": "jsonl", "path": str(tmp_path / "second.jsonl")})
    summary = Pipeline(cfg).run()
    assert summary.error == ""
    assert set(summary.sink_ms) == {"jsonl0", "jsonl1"}
    assert all(ms > 0 for ms in summary.sink_ms.values()), summary.sink_ms
    print_summary(summary)
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if "sinks ms/message" in x)
    assert "jsonl0 " in line and "jsonl1 " in line
    for stage in ("decode", "preprocess", "inference", "postprocess", "track"):
        assert f" {stage} " in out


@pytest.mark.parametrize("sink_type", ["jsonl", "mot"])
def test_sink_file_that_cannot_be_opened_at_start_stops_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, sink_type: str
) -> None:
    """A fixed path under a regular file fails at start: counted, the run goes on."""
    (tmp_path / "afile").write_text("x")
    bad = {"type": sink_type, "path": str(tmp_path / "afile" / "x.out")}
    metrics = Metrics()
    with caplog.at_level(logging.ERROR, logger="edgewatch.pipeline.sinkworker"):
        summary = Pipeline(_config(tmp_path, bad), metrics=metrics).run()

    assert summary.error == ""
    assert summary.frames == {"cam": FRAMES}
    lines = [json.loads(x) for x in (tmp_path / "good.jsonl").read_text().splitlines()]
    assert [m["frame"] for m in lines if "frame" in m] == list(range(FRAMES))
    name = "jsonl1" if sink_type == "jsonl" else "mot"
    # the open at start, then every write (and, for jsonl, both events) retries it
    expected = 1 + FRAMES + (2 if sink_type == "jsonl" else 0)
    assert metrics.counter("edgewatch_sink_errors_total", sink=name) == expected
    assert summary.sink_errors == {name: expected}
    logged = [r.getMessage() for r in caplog.records if r.name == "edgewatch.pipeline.sinkworker"]
    assert len(logged) == 1 and f"sink {name} failed" in logged[0] and "x.out" in logged[0]
