"""MOT-challenge sink: one ``frame,id,x,y,w,h,conf,-1,-1,-1`` line per tracked object.

``frame`` is 1-based (the source's frame index + 1), ``id`` the track id,
``x, y`` the top-left corner and ``w, h`` the size of the box in source
pixels (2 decimals; 0-based coordinates as ByteTrack and Ultralytics write
them, not the 1-based convention of the MOT ground-truth files), ``conf``
the detection confidence (4 decimals; 1 when the detections carry none).
Untracked detections (no or negative track id) are not written. One file
per source: the path must contain ``{source}`` when several sources write to
this sink.
"""

from __future__ import annotations

from pathlib import Path

import supervision as sv

from edgewatch.config import MotSinkConfig, expand_path
from edgewatch.errors import SinkError
from edgewatch.metrics import Metrics
from edgewatch.sinks.base import Sink
from edgewatch.sinks.jsonl import LineFile, close_all
from edgewatch.types import FrameResult


def mot_lines(frame_number: int, detections: sv.Detections) -> list[str]:
    """The MOT-challenge lines of one frame (``frame_number`` is 1-based).

    >>> import numpy as np
    >>> d = sv.Detections(xyxy=np.array([[10, 20, 40, 80], [0, 0, 5, 5]], np.float32),
    ...                   confidence=np.array([0.9, 0.4], np.float32),
    ...                   tracker_id=np.array([3, -1]))
    >>> mot_lines(1, d)
    ['1,3,10.00,20.00,30.00,60.00,0.9000,-1,-1,-1']
    """
    if detections.tracker_id is None:
        return []
    lines: list[str] = []
    for i in range(len(detections)):
        tid = int(detections.tracker_id[i])
        if tid < 0:
            continue
        x1, y1, x2, y2 = (float(v) for v in detections.xyxy[i])
        conf = 1.0 if detections.confidence is None else float(detections.confidence[i])
        box = f"{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f}"
        lines.append(f"{frame_number},{tid},{box},{conf:.4f},-1,-1,-1")
    return lines


class MotSink(Sink):
    """Writes tracks in MOT-challenge txt format, one file per source."""

    fatal_start = False

    def __init__(self, cfg: MotSinkConfig, metrics: Metrics, *, name: str = "mot") -> None:
        super().__init__(name, metrics)
        self.cfg = cfg
        self._files: dict[str, LineFile] = {}
        self._owners: dict[Path, str] = {}

    def start(self) -> None:
        """Open the file now when the path has no ``{source}`` (a failure is a
        per-sink error: the worker counts it, writes try again)."""
        if "{source}" not in self.cfg.path:
            path = expand_path(self.cfg.path, "")
            f = LineFile(path)
            f.open()
            self._files[""] = f

    def _file_for(self, source_id: str) -> LineFile:
        f = self._files.get(source_id)
        if f is not None:
            return f
        if "{source}" not in self.cfg.path:  # one fixed path: the first source owns it
            if "" not in self._files:
                self.start()  # it could not be opened at start: try again
            if self._owners.setdefault(self._files[""].path, source_id) != source_id:
                raise SinkError(
                    f"mot sink: {self.cfg.path} has no {{source}} but sources "
                    f"{self._owners[self._files[''].path]!r} and {source_id!r} both write to it"
                )
            return self._files[""]
        f = LineFile(expand_path(self.cfg.path, source_id))
        f.open()
        self._files[source_id] = f
        return f

    def write(self, result: FrameResult) -> None:
        f = self._file_for(result.frame.source_id)
        lines = mot_lines(result.frame.index + 1, result.detections)
        if lines:
            f.write_line("\n".join(lines).encode("ascii"))

    def stop(self) -> None:
        close_all(self._files)
