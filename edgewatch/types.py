"""Frame context and results that travel between stages.

Detections travel as :class:`supervision.Detections`: ``xyxy`` float32 in
source-frame pixels, ``confidence``, ``class_id``, ``tracker_id``, ``mask``
(bool, HxW per instance). Extra per-detection arrays live in ``.data`` under
the keys below.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import supervision as sv

#: ``(N, K, 3)`` float32: x, y in source pixels and visibility/confidence in [0, 1].
DATA_KEYPOINTS = "keypoints"
#: ``(N,)`` object array of str: the track's CLIP label, ``"unknown"`` when unsure,
#: ``""`` before the labeler has a result for the track.
DATA_LABEL = "label"
#: ``(N,)`` float32: the mean probability of ``label``; NaN where no label yet.
DATA_LABEL_SCORE = "label_score"
#: ``(N,)`` object array of ``dict[str, tuple[str, float]]``: one label per group.
DATA_LABEL_GROUPS = "label_groups"
#: ``(N, D)`` float32: L2-normalised appearance embedding (ReID or CLIP).
DATA_EMBEDDING = "embedding"
#: ``(N,)`` bool: which rows of ``DATA_EMBEDDING`` are real (zero rows are "none yet").
DATA_EMBEDDING_VALID = "embedding_valid"

#: Version of the wire schema (JSONL lines and ZeroMQ messages).
SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame of one source.

    ``index`` counts decoded frames from 0 over the source's life (it keeps
    counting across reconnects and loops); ``pts`` is the presentation time in
    seconds of stream time; ``wall_time`` is the capture time as a Unix
    timestamp (seconds); ``image`` is HxWx3 BGR uint8. ``generation`` grows by
    one each time the source reopens (reconnect or loop), so trackers can tell
    a gap from a cut. ``fps`` is the stream's nominal rate (0 when unknown) and
    ``decode_ms`` the time the source spent decoding this frame.
    """

    source_id: str
    index: int
    pts: float
    wall_time: float
    image: np.ndarray
    generation: int = 0
    fps: float = 0.0
    decode_ms: float = 0.0

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])


@dataclass(frozen=True, slots=True)
class FrameResult:
    """What the pipeline made of one frame: detections (tracked) and timings.

    ``timing_ms`` maps a stage name (decode, preprocess, inference,
    postprocess, detect, track, total) to milliseconds spent on this frame.
    """

    frame: Frame
    detections: sv.Detections
    class_names: Mapping[int, str]
    timing_ms: Mapping[str, float] = field(default_factory=dict)


class SourceState(str, enum.Enum):
    """Where a source stands, as shown by ``/healthz``."""

    CONNECTING = "connecting"
    STREAMING = "streaming"
    BACKOFF = "backoff"
    FAILED = "failed"
    ENDED = "ended"
    STOPPED = "stopped"


class EventKind(str, enum.Enum):
    """Source lifecycle events, published beside frame messages."""

    CONNECTED = "connected"
    LOST = "lost"
    RECONNECTED = "reconnected"
    ENDED = "ended"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class SourceEvent:
    """A change in a source's state; ``detail`` is already free of secrets."""

    source_id: str
    kind: EventKind
    wall_time: float
    detail: str = ""
