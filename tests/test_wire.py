"""The wire schema: exact messages for small cases, JSON Schema validation, NaN, time."""

from __future__ import annotations

import json
import math

import jsonschema
import numpy as np
import pytest
import supervision as sv

from edgewatch.config import MaskFormat
from edgewatch.types import (
    DATA_EMBEDDING,
    DATA_KEYPOINTS,
    DATA_LABEL,
    DATA_LABEL_GROUPS,
    DATA_LABEL_SCORE,
    EventKind,
    Frame,
    FrameResult,
    SourceEvent,
)
from edgewatch.wire import (
    decode_embedding,
    dumps,
    encode_embedding,
    event_message,
    format_time,
    frame_message,
    schema,
)

T0 = 1796320800.123  # 2026-12-03T18:00:00.123Z
NAMES = {0: "person", 1: "car"}


def _result(det: sv.Detections, *, h: int = 3, w: int = 4, timing=None, index: int = 5,
            pts: float = 0.2, wall: float = T0) -> FrameResult:
    frame = Frame("lobby", index, pts, wall, np.zeros((h, w, 3), np.uint8))
    return FrameResult(frame, det, NAMES, timing or {})


def _two() -> sv.Detections:
    masks = np.zeros((2, 3, 4), bool)
    masks[0, 0:2, 1] = True
    masks[1, 0:2, 1:3] = True
    kp = np.array([[[1.26, 2.04, 0.9], [3.0, 1.0, 0.25]],
                   [[0.0, 0.0, 0.0], [2.5, 2.56, 1.0]]], np.float32)
    return sv.Detections(
        xyxy=np.array([[10.04, 20.06, 30.16, 40.0], [0.0, 1.0, 2.0, 3.0]], np.float32),
        confidence=np.array([0.91, 0.5], np.float32),
        class_id=np.array([0, 7]),
        tracker_id=np.array([7, -1]),
        mask=masks,
        data={
            DATA_LABEL: np.array(["person carrying a bag", None], dtype=object),
            DATA_LABEL_SCORE: np.array([0.83, np.nan], np.float32),
            DATA_LABEL_GROUPS: np.array([{"color": ("red", 0.7)}, {}], dtype=object),
            DATA_KEYPOINTS: kp,
            DATA_EMBEDDING: np.array([[1.0, -2.0], [0.5, 0.25]], np.float32),
        },
    )


OBJ0_BASE = {"track_id": 7, "class_id": 0, "class_name": "person", "confidence": 0.91,
             "box": [10.0, 20.1, 30.2, 40.0], "label": "person carrying a bag",
             "label_score": 0.83, "labels": {"color": {"label": "red", "score": 0.7}},
             "keypoints": [[1.3, 2.0, 0.9], [3.0, 1.0, 0.25]]}
OBJ1_BASE = {"track_id": None, "class_id": 7, "class_name": "7", "confidence": 0.5,
             "box": [0.0, 1.0, 2.0, 3.0], "keypoints": [[0.0, 0.0, 0.0], [2.5, 2.6, 1.0]]}


def _header(objects: list, timing: dict) -> dict:
    return {"schema": 1, "type": "frame", "source": "lobby", "frame": 5, "pts": 0.2,
            "time": "2026-12-03T18:00:00.123Z", "width": 4, "height": 3,
            "objects": objects, "timing_ms": timing}


@pytest.mark.parametrize(
    ("mask_format", "publish", "extra0", "extra1"),
    [
        (MaskFormat.RLE, False,
         {"mask": {"rle": {"size": [3, 4], "counts": [3, 2, 7]}}},
         {"mask": {"rle": {"size": [3, 4], "counts": [3, 2, 1, 2, 4]}}}),
        (MaskFormat.POLYGON, False,
         {"mask": {"polygon": [[[1, 0], [1, 1]]]}},
         {"mask": {"polygon": [[[1, 0], [1, 1], [2, 1], [2, 0]]]}}),
        (MaskFormat.NONE, True, {"embedding": "ADwAwA=="}, {"embedding": "ADgANA=="}),
    ],
)
def test_frame_message_exact(mask_format, publish, extra0, extra1) -> None:
    timing = {"detect": 40.2349, "track": 0.4, "total": 55.0}
    msg = frame_message(_result(_two(), timing=timing), mask_format, publish)
    assert msg == _header([{**OBJ0_BASE, **extra0}, {**OBJ1_BASE, **extra1}],
                          {"detect": 40.23, "track": 0.4, "total": 55.0})


def test_frame_message_empty_and_untracked() -> None:
    det = sv.Detections(xyxy=np.array([[1, 2, 3, 4]], np.float32),
                        confidence=np.array([0.25], np.float32), class_id=np.array([1]))
    assert frame_message(_result(det))["objects"] == [
        {"track_id": None, "class_id": 1, "class_name": "car", "confidence": 0.25,
         "box": [1.0, 2.0, 3.0, 4.0]}
    ]
    assert frame_message(_result(sv.Detections.empty())) == _header([], {})


def test_embedding_round_trip() -> None:
    v = np.array([0.1, -0.5, 0.333, 1.0], np.float32)
    assert np.allclose(decode_embedding(encode_embedding(v)), v, atol=1e-3)
    assert len(encode_embedding(np.zeros(512, np.float32))) == math.ceil(1024 / 3) * 4


@pytest.mark.parametrize(
    ("t", "expected"),
    [
        (0.0, "1970-01-01T00:00:00.000Z"),
        (T0, "2026-12-03T18:00:00.123Z"),
        (1796320800.1234, "2026-12-03T18:00:00.123Z"),
        (1796320800.9996, "2026-12-03T18:00:01.000Z"),
        (86399.9999, "1970-01-02T00:00:00.000Z"),
        (951782400.5, "2000-02-29T00:00:00.500Z"),
    ],
)
def test_format_time(t: float, expected: str) -> None:
    assert format_time(t) == expected


@pytest.mark.parametrize(
    ("kind", "detail"),
    [(EventKind.CONNECTED, ""), (EventKind.LOST, "read timeout after 10 s"),
     (EventKind.FAILED, "rtsp://user:***@cam/1: 401")],
)
def test_event_message_exact(kind: EventKind, detail: str) -> None:
    assert event_message(SourceEvent("gate-2", kind, T0, detail)) == {
        "schema": 1, "type": "event", "source": "gate-2", "event": kind.value,
        "time": "2026-12-03T18:00:00.123Z", "detail": detail,
    }


def _strict_loads(data: bytes) -> object:
    def refuse(name: str) -> None:
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(data.decode("utf-8"), parse_constant=refuse)


def test_dumps_nan_free_and_compact() -> None:
    det = sv.Detections(
        xyxy=np.array([[0, 1, 2, 3]], np.float32),  # supervision refuses NaN boxes
        confidence=np.array([np.nan], np.float32), class_id=np.array([0]),
        tracker_id=np.array([1]),
        data={DATA_LABEL: np.array(["unknown"], dtype=object),
              DATA_LABEL_SCORE: np.array([np.nan], np.float32),
              DATA_KEYPOINTS: np.array([[[np.nan, 2.0, -np.inf]]], np.float32)},
    )
    raw = dumps(frame_message(_result(det, timing={"detect": float("nan"), "total": 1.0},
                                      pts=float("nan"))))
    assert b" " not in raw.replace(b"unknown", b"")
    msg = _strict_loads(raw)
    assert msg["pts"] is None
    assert msg["timing_ms"] == {"detect": None, "total": 1.0}
    assert msg["objects"] == [{"track_id": 1, "class_id": 0, "class_name": "person",
                               "confidence": None, "box": [0.0, 1.0, 2.0, 3.0],
                               "label": "unknown", "label_score": None,
                               "keypoints": [[None, 2.0, None]]}]
    jsonschema.validate(msg, schema())


@pytest.mark.parametrize(
    ("value", "expected"),
    [({"x": np.float32(1.5)}, b'{"x":1.5}'), ({"x": np.int64(3)}, b'{"x":3}'),
     ({"x": np.bool_(True)}, b'{"x":true}'), ({"x": np.arange(3)}, b'{"x":[0,1,2]}'),
     ({"x": (float("-inf"), "ü")}, '{"x":[null,"ü"]}'.encode())],
)
def test_dumps_plain_types(value: dict, expected: bytes) -> None:
    assert dumps(value) == expected


def _messages() -> list[dict]:
    out = [frame_message(_result(_two()), fmt, True) for fmt in MaskFormat]
    out.append(frame_message(_result(sv.Detections.empty())))
    out += [event_message(SourceEvent("cam", k, T0, "x")) for k in EventKind]
    return [_strict_loads(dumps(m)) for m in out]


@pytest.mark.parametrize("msg", _messages(), ids=lambda m: f"{m['type']}")
def test_schema_accepts_real_messages(msg: dict) -> None:
    jsonschema.Draft202012Validator.check_schema(schema())
    jsonschema.Draft202012Validator(schema()).validate(msg)


def _frame() -> dict:
    return _strict_loads(dumps(frame_message(_result(_two()))))


@pytest.mark.parametrize(
    ("mutate", "why"),
    [
        (lambda m: m.pop("time"), "missing time"),
        (lambda m: m.update(time="2026-12-03 18:00:00"), "time format"),
        (lambda m: m.update(schema=2), "schema version"),
        (lambda m: m.update(extra=1), "unknown key"),
        (lambda m: m["objects"][0].update(box=[1, 2, 3]), "box of 3"),
        (lambda m: m["objects"][0].update(confidence=1.5), "confidence > 1"),
        (lambda m: m["objects"][0].update(mask={"rle": {"size": [3, 4]}}), "rle without counts"),
        (lambda m: m["objects"][0].update(track_id="7"), "track id as string"),
        (lambda m: m.update(type="event"), "frame typed as event"),
        (lambda m: m.update(source="has space"), "bad source id"),
    ],
)
def test_schema_rejects(mutate, why: str) -> None:
    msg = _frame()
    mutate(msg)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(msg, schema(), cls=jsonschema.Draft202012Validator)
