"""SIGHUP reload planning: source diffs by id, and the changes a live reload cannot apply."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from edgewatch.config import PipelineConfig
from edgewatch.pipeline.reload import (
    DETECTOR_SESSION_FIELDS,
    DETECTOR_START_ONLY_FIELDS,
    SourceDiff,
    changed_fields,
    diff_sources,
    reload_blockers,
)
from edgewatch.secrets import registry


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with two model files and a CLIP model folder."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.onnx").write_bytes(b"x")
    (tmp_path / "b.onnx").write_bytes(b"x")
    (tmp_path / "clip").mkdir()
    return tmp_path


BASE: dict[str, Any] = {
    "sources": [
        {"id": "lobby", "uri": "rtsp://cam1/stream"},
        {"id": "gate", "uri": "rtsp://cam2/stream"},
        {"id": "yard", "uri": "rtsp://cam3/stream"},
    ],
    "detector": {"model": "a.onnx"},
    "sinks": [{"type": "jsonl", "path": "out/{source}.jsonl"}, {"type": "zmq"}],
}


def build(edit: dict[str, Any] | None = None) -> PipelineConfig:
    data = copy.deepcopy(BASE)
    for key, value in (edit or {}).items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return PipelineConfig.model_validate(data)


def src(sid: str, uri: str, **extra: Any) -> dict[str, Any]:
    return {"id": sid, "uri": uri, **extra}


@pytest.mark.parametrize(
    ("new_sources", "added", "removed", "changed", "unchanged"),
    [
        (BASE["sources"], [], [], [], ["lobby", "gate", "yard"]),
        # reordering is not a change
        (BASE["sources"][::-1], [], [], [], ["yard", "gate", "lobby"]),
        (
            [*BASE["sources"], src("dock", "rtsp://cam4/s")],
            ["dock"],
            [],
            [],
            ["lobby", "gate", "yard"],
        ),
        (BASE["sources"][1:], [], ["lobby"], [], ["gate", "yard"]),
        (
            [src("lobby", "rtsp://cam1/other"), *BASE["sources"][1:]],
            [],
            [],
            ["lobby"],
            ["gate", "yard"],
        ),
        (
            [src("lobby", "rtsp://cam1/stream", fps=5), *BASE["sources"][1:]],
            [],
            [],
            ["lobby"],
            ["gate", "yard"],
        ),
        # a default written out explicitly is the same config
        (
            [src("lobby", "rtsp://cam1/stream", queue_size=4), *BASE["sources"][1:]],
            [],
            [],
            [],
            ["lobby", "gate", "yard"],
        ),
        (
            [src("lobby", "rtsp://cam1/stream", reconnect={"max": 5}), *BASE["sources"][1:]],
            [],
            [],
            ["lobby"],
            ["gate", "yard"],
        ),
        # renaming = one removed, one added
        (
            [src("hall", "rtsp://cam1/stream"), *BASE["sources"][1:]],
            ["hall"],
            ["lobby"],
            [],
            ["gate", "yard"],
        ),
        (
            [src("x", "rtsp://x/1"), src("yard", "rtsp://cam3/new")],
            ["x"],
            ["lobby", "gate"],
            ["yard"],
            [],
        ),
    ],
)
def test_diff_sources(
    files: Path,
    new_sources: list[dict[str, Any]],
    added: list[str],
    removed: list[str],
    changed: list[str],
    unchanged: list[str],
) -> None:
    old, new = build(), build({"sources": new_sources})
    d = diff_sources(old, new)
    assert [s.id for s in d.added] == added
    assert d.removed == removed
    assert [s.id for s in d.changed] == changed
    assert d.unchanged == unchanged
    assert d.empty == (not added and not removed and not changed)
    by_id = {s.id: s for s in new.sources}
    assert all(s is by_id[s.id] for s in [*d.added, *d.changed])  # the new configs


def test_source_diff_default_is_empty() -> None:
    assert SourceDiff().empty


DET = BASE["detector"]
SINKS = BASE["sinks"]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        ({}, []),
        # live: sources; detector.warmup has no effect once running
        ({"sources": [src("new", "rtsp://n/1")]}, []),
        (
            {
                "detector": {
                    **DET,
                    "conf": 0.5,
                    "classes": [0],
                    "warmup": False,
                }
            },
            [
                "detector.conf changed (0.25 -> 0.5): the running detector keeps its "
                "post-processing options until a restart",
                "detector.classes changed (None -> [0]): the running detector keeps its "
                "post-processing options until a restart",
            ],
        ),
        ({"detector": {**DET, "warmup": False}}, []),
        (
            {"log": {"level": "debug"}, "shutdown_timeout": 30},
            [
                "log.level changed ('info' -> 'debug'): logging keeps its setup until a restart",
                "shutdown_timeout changed (10.0 -> 30.0): the running pipeline keeps its drain "
                "deadline until a restart",
            ],
        ),
        ({"detector": {**DET, "conf": 0.25}}, []),  # the default, spelled out
        (
            {"detector": {"model": "b.onnx"}},
            ["detector.model changed ('a.onnx' -> 'b.onnx'): the detector model must be reloaded"],
        ),
        (
            {"detector": {**DET, "imgsz": 320}},
            ["detector.imgsz changed (None -> 320): the detector model must be reloaded"],
        ),
        (
            {"detector": {**DET, "device": "cpu"}},
            ["detector.device changed ('auto' -> 'cpu'): the detector model must be reloaded"],
        ),
        (
            {"detector": {**DET, "task": "pose", "batch": 2}},
            [
                "detector.task changed (None -> 'pose'): the detector model must be reloaded",
                "detector.batch changed (1 -> 2): the detector model must be reloaded",
            ],
        ),
        (
            {"tracker": {"type": "botsort"}},
            [
                "tracker.type changed (bytetrack -> botsort): running trackers keep their type and "
                "track ids until a restart"
            ],
        ),
        (
            {"tracker": {"type": "none"}},
            [
                "tracker.type changed (bytetrack -> none): running trackers keep their type and "
                "track ids until a restart"
            ],
        ),
        (
            {"tracker": {"type": "bytetrack", "track_buffer": 60}},
            [
                "tracker.track_buffer changed (30 -> 60): running trackers keep their options "
                "until a restart"
            ],
        ),
        ({"tracker": {"type": "bytetrack", "track_buffer": 30}}, []),
        (
            {"labeler": {"model": "clip", "labels": ["a"]}},
            ["labeler added: the labeler starts only with the pipeline"],
        ),
        ({"sinks": SINKS[:1]}, ["sinks[1] (zmq) removed: sinks close only with the pipeline"]),
        (
            {"sinks": [*SINKS, {"type": "display"}]},
            ["sinks[2] (display) added: sinks open only with the pipeline"],
        ),
        (
            {"sinks": [{"type": "jsonl", "path": "o.jsonl", "events": False}, SINKS[1]]},
            ["sinks[0] (jsonl) changed: path, events: sinks must be restarted"],
        ),
        (
            {"sinks": [{"type": "mot", "path": "o.txt"}, SINKS[1]]},
            ["sinks[0] type changed (jsonl -> mot): sinks must be restarted"],
        ),
        (
            {"sinks": SINKS[::-1]},
            [
                "sinks[0] type changed (jsonl -> zmq): sinks must be restarted",
                "sinks[1] type changed (zmq -> jsonl): sinks must be restarted",
            ],
        ),
        (
            {"health": {"listen": "127.0.0.1:9200"}},
            [
                "health changed (None -> {'listen': '127.0.0.1:9200'}): the health server "
                "keeps its address until a restart"
            ],
        ),
    ],
)
def test_reload_blockers(files: Path, edit: dict[str, Any], expected: list[str]) -> None:
    assert reload_blockers(build(), build(edit)) == expected


@pytest.mark.parametrize(
    ("old_labeler", "new_labeler", "expected"),
    [
        ({"model": "clip", "labels": ["a"]}, {"model": "clip", "labels": ["a"]}, []),
        (
            {"model": "clip", "labels": ["a"]},
            None,
            ["labeler removed: the labeler stops only with the pipeline"],
        ),
        (
            {"model": "clip", "labels": ["a"]},
            {"model": "clip", "labels": ["a", "b"], "every": 5},
            [
                "labeler.labels changed (['a'] -> ['a', 'b']): the labeler must be restarted",
                "labeler.every changed (15 -> 5): the labeler must be restarted",
            ],
        ),
    ],
)
def test_labeler_blockers(
    files: Path,
    old_labeler: dict[str, Any] | None,
    new_labeler: dict[str, Any] | None,
    expected: list[str],
) -> None:
    assert (
        reload_blockers(build({"labeler": old_labeler}), build({"labeler": new_labeler}))
        == expected
    )


def test_long_values_are_shortened(files: Path) -> None:
    long = [f"label number {i}" for i in range(20)]
    old = build({"labeler": {"model": "clip", "labels": ["a"]}})
    new = build({"labeler": {"model": "clip", "labels": long}})
    (line,) = reload_blockers(old, new)
    assert line.startswith("labeler.labels changed (['a'] -> ['label number 0', ")
    assert "...): the labeler must be restarted" in line
    assert len(line) < 160


def test_blockers_mask_secrets(files: Path) -> None:
    secret = "Zmq-reload-secret"
    registry.add(secret)
    old = build()
    new = build({"health": {"listen": f"{secret}:9108"}})
    (line,) = reload_blockers(old, new)
    assert secret not in line and "***" in line


def test_detector_field_sets_name_real_fields() -> None:
    from edgewatch.config import DetectorConfig

    fields = set(DetectorConfig.model_fields)
    assert DETECTOR_SESSION_FIELDS <= fields and DETECTOR_START_ONLY_FIELDS <= fields
    assert not DETECTOR_SESSION_FIELDS & DETECTOR_START_ONLY_FIELDS


# One changed value per top-level field other than sources: each must be reported.
TOP_LEVEL_EDITS: dict[str, Any] = {
    "detector": {"model": "b.onnx"},
    "tracker": {"type": "botsort"},
    "labeler": {"model": "clip", "labels": ["a"]},
    "sinks": [],
    "health": {"listen": "127.0.0.1:1"},
    "log": {"json": True},
    "shutdown_timeout": 1.5,
}


def test_every_top_level_field_is_covered() -> None:
    assert set(TOP_LEVEL_EDITS) == set(PipelineConfig.model_fields) - {"sources"}


@pytest.mark.parametrize("field", sorted(TOP_LEVEL_EDITS))
def test_each_top_level_change_is_a_blocker(files: Path, field: str) -> None:
    lines = reload_blockers(build(), build({field: TOP_LEVEL_EDITS[field]}))
    assert len(lines) >= 1
    assert all(line.startswith(field) for line in lines)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ({"model": "a.onnx"}, {"model": "a.onnx"}, []),
        ({"model": "a.onnx"}, {"model": "b.onnx", "conf": 0.3}, ["model", "conf"]),
        ({"model": "a.onnx", "imgsz": [640, 480]}, {"model": "a.onnx", "imgsz": [640, 480]}, []),
    ],
)
def test_changed_fields(
    files: Path, a: dict[str, Any], b: dict[str, Any], expected: list[str]
) -> None:
    from edgewatch.config import DetectorConfig

    assert changed_fields(DetectorConfig(**a), DetectorConfig(**b)) == expected


def test_changed_fields_needs_same_type(files: Path) -> None:
    cfg = build()
    with pytest.raises(TypeError, match="cannot compare"):
        changed_fields(cfg.detector, cfg.log)


@pytest.mark.parametrize(
    ("old_health", "new_health", "expected"),
    [
        ({"listen": "127.0.0.1:9108"}, {"listen": "127.0.0.1:9108"}, []),
        (
            {"listen": "127.0.0.1:9108"},
            {"listen": "0.0.0.0:9108"},
            [
                "health.listen changed ('127.0.0.1:9108' -> '0.0.0.0:9108'): the health "
                "server keeps its address until a restart"
            ],
        ),
        (
            {"listen": "127.0.0.1:9108"},
            None,
            [
                "health changed ({'listen': '127.0.0.1:9108'} -> None): the health server keeps "
                "its address until a restart"
            ],
        ),
    ],
)
def test_health_blockers(
    files: Path,
    old_health: dict[str, Any] | None,
    new_health: dict[str, Any] | None,
    expected: list[str],
) -> None:
    assert reload_blockers(build({"health": old_health}), build({"health": new_health})) == expected
