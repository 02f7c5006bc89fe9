"""The versioned wire schema: one JSON object per processed frame or source event.

The same object is a JSONL line, the body of a ZeroMQ message and what the
display draws. A frame message looks like::

    {"schema": 1, "type": "frame", "source": "lobby", "frame": 1234, "pts": 41.133,
     "time": "2026-12-03T18:00:00.123Z", "width": 1920, "height": 1080,
     "objects": [{"track_id": 7, "class_id": 0, "class_name": "person",
                  "confidence": 0.91, "box": [x1, y1, x2, y2],
                  "label": "person carrying a bag", "label_score": 0.83}],
     "timing_ms": {"detect": 40.2, "track": 0.4, "total": 55.0}}

Units and formats:

- ``frame`` is the source's frame index (from 0), ``pts`` the presentation time
  in seconds of stream time, ``time`` the capture wall time as ISO 8601 UTC with
  milliseconds and a ``Z`` suffix.
- ``box`` is ``[x1, y1, x2, y2]`` in source-frame pixels, rounded to 0.1 px;
  ``keypoints`` are ``[[x, y, c], ...]`` with x, y in source pixels (0.1 px)
  and c in [0, 1].
- ``track_id`` is ``null`` for untracked detections (no tracker, or a
  negative id). ``confidence``, ``label_score`` and keypoint ``c`` are rounded
  to 4 decimals; ``timing_ms`` values to 0.01 ms.
- ``mask`` is ``{"rle": {"size": [h, w], "counts": [...]}}`` (uncompressed
  COCO RLE, column-major, starting with a run of zeros) or
  ``{"polygon": [[[x, y], ...], ...]}`` in source pixels.
- ``embedding`` is base64 of the float16 little-endian vector.

:func:`dumps` never writes ``NaN`` or ``Infinity``: non-finite numbers become
``null``. The JSON Schema of these messages is ``schema/wire-v1.schema.json``
(see :func:`schema`).
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping
from datetime import datetime, timezone
from importlib import resources
from typing import Any

import numpy as np
import supervision as sv

from edgewatch.config import MaskFormat
from edgewatch.pipeline.models.masks import mask_to_polygons, mask_to_rle
from edgewatch.types import (
    DATA_EMBEDDING,
    DATA_EMBEDDING_VALID,
    DATA_KEYPOINTS,
    DATA_LABEL,
    DATA_LABEL_GROUPS,
    DATA_LABEL_SCORE,
    SCHEMA_VERSION,
    FrameResult,
    SourceEvent,
)

#: Package-relative location of the JSON Schema document for ``SCHEMA_VERSION``.
SCHEMA_RESOURCE = f"schema/wire-v{SCHEMA_VERSION}.schema.json"


def format_time(t: float) -> str:
    """A Unix timestamp (seconds) as ISO 8601 UTC with milliseconds and ``Z``.

    The timestamp is rounded to the nearest millisecond.

    >>> format_time(0.0)
    '1970-01-01T00:00:00.000Z'
    >>> format_time(1796320800.1234)
    '2026-12-03T18:00:00.123Z'
    >>> format_time(1796320800.9996)
    '2026-12-03T18:00:01.000Z'
    """
    seconds, ms = divmod(round(t * 1000.0), 1000)
    stamp = datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{ms:03d}Z"


def _num(value: Any, ndigits: int) -> float | None:
    """``value`` as a rounded Python float, or ``None`` when missing or not finite."""
    if value is None:
        return None
    f = float(value)
    return round(f, ndigits) if math.isfinite(f) else None


def _label_groups(groups: Any) -> dict[str, dict[str, Any]] | None:
    if not isinstance(groups, Mapping) or not groups:
        return None
    return {
        str(name): {"label": str(label), "score": _num(score, 4)}
        for name, (label, score) in groups.items()
    }


def _mask_entry(mask: np.ndarray, mask_format: MaskFormat) -> dict[str, Any] | None:
    if mask_format is MaskFormat.RLE:
        return {"rle": mask_to_rle(mask)}
    if mask_format is MaskFormat.POLYGON:
        return {"polygon": mask_to_polygons(mask)}
    return None


def encode_embedding(vector: np.ndarray) -> str:
    """Base64 (ASCII) of ``vector`` as float16 little-endian.

    >>> encode_embedding(np.array([1.0, -2.0], dtype=np.float32))
    'ADwAwA=='
    """
    return base64.b64encode(np.asarray(vector, dtype="<f2").tobytes()).decode("ascii")


def decode_embedding(text: str) -> np.ndarray:
    """Inverse of :func:`encode_embedding`: a float32 vector.

    >>> decode_embedding("ADwAwA==").tolist()
    [1.0, -2.0]
    """
    return np.frombuffer(base64.b64decode(text), dtype="<f2").astype(np.float32)


def _object(
    det: sv.Detections,
    i: int,
    class_names: Mapping[int, str],
    mask_format: MaskFormat,
    publish_embedding: bool,
) -> dict[str, Any]:
    """The wire dict of detection ``i`` of ``det``."""
    class_id = None if det.class_id is None else int(det.class_id[i])
    track = None if det.tracker_id is None else int(det.tracker_id[i])
    obj: dict[str, Any] = {
        "track_id": track if track is not None and track >= 0 else None,
        "class_id": class_id,
        "class_name": None if class_id is None else class_names.get(class_id, str(class_id)),
        "confidence": None if det.confidence is None else _num(det.confidence[i], 4),
        "box": [_num(v, 1) for v in det.xyxy[i]],
    }
    data = det.data
    if DATA_LABEL in data:
        label = data[DATA_LABEL][i]
        if isinstance(label, str) and label:
            obj["label"] = label
            scores = data.get(DATA_LABEL_SCORE)
            obj["label_score"] = None if scores is None else _num(scores[i], 4)
    if DATA_LABEL_GROUPS in data:
        groups = _label_groups(data[DATA_LABEL_GROUPS][i])
        if groups is not None:
            obj["labels"] = groups
    if DATA_KEYPOINTS in data:
        obj["keypoints"] = [
            [_num(x, 1), _num(y, 1), _num(c, 4)] for x, y, c in np.asarray(data[DATA_KEYPOINTS][i])
        ]
    if det.mask is not None:
        entry = _mask_entry(np.asarray(det.mask[i], dtype=bool), mask_format)
        if entry is not None:
            obj["mask"] = entry
    valid = data.get(DATA_EMBEDDING_VALID)
    if publish_embedding and DATA_EMBEDDING in data and (valid is None or bool(valid[i])):
        obj["embedding"] = encode_embedding(data[DATA_EMBEDDING][i])
    return obj


def frame_message(
    result: FrameResult,
    mask_format: MaskFormat = MaskFormat.RLE,
    publish_embedding: bool = False,
) -> dict[str, Any]:
    """The wire message (a plain dict of JSON types) of one processed frame.

    ``mask_format`` chooses how instance masks travel (``none`` leaves them
    out); embeddings are included only when ``publish_embedding`` is set and
    the detections carry them.
    """
    frame = result.frame
    det = result.detections
    return {
        "schema": SCHEMA_VERSION,
        "type": "frame",
        "source": frame.source_id,
        "frame": int(frame.index),
        "pts": _num(frame.pts, 6),
        "time": format_time(frame.wall_time),
        "width": frame.width,
        "height": frame.height,
        "objects": [
            _object(det, i, result.class_names, mask_format, publish_embedding)
            for i in range(len(det))
        ],
        "timing_ms": {str(k): _num(v, 2) for k, v in result.timing_ms.items()},
    }


def event_message(ev: SourceEvent) -> dict[str, Any]:
    """The wire message of one source event.

    >>> from edgewatch.types import EventKind
    >>> event_message(SourceEvent("cam", EventKind.LOST, 0.5, "read timeout"))["time"]
    '1970-01-01T00:00:00.500Z'
    """
    return {
        "schema": SCHEMA_VERSION,
        "type": "event",
        "source": ev.source_id,
        "event": ev.kind.value,
        "time": format_time(ev.wall_time),
        "detail": ev.detail,
    }


def _clean(value: Any) -> Any:
    """``value`` with numpy scalars/arrays made plain and non-finite floats made ``None``."""
    if isinstance(value, float | np.floating):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    return value


def dumps(msg: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON of a message; ``NaN`` and infinities become ``null``.

    >>> dumps({"a": float("nan"), "b": [1.5, float("inf")], "c": "é"})
    b'{"a":null,"b":[1.5,null],"c":"\\xc3\\xa9"}'
    """
    text = json.dumps(_clean(msg), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8")


def schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of wire messages of ``SCHEMA_VERSION``."""
    text = resources.files("edgewatch").joinpath(SCHEMA_RESOURCE).read_text(encoding="utf-8")
    doc: dict[str, Any] = json.loads(text)
    return doc
