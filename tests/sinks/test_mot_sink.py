"""MOT sink: exact lines, 1-based frames, untracked detections skipped, one file per source."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import motmetrics as mm
import numpy as np
import pytest
import supervision as sv
from conftest import fill_disk
from sinkdata import result

from edgewatch.config import MotSinkConfig
from edgewatch.errors import SinkError
from edgewatch.metrics import Metrics
from edgewatch.pipeline.sinkworker import SinkWorker
from edgewatch.sinks import build_sink
from edgewatch.sinks.mot import mot_lines


def _det(xyxy, tracker_id=None, confidence=None) -> sv.Detections:
    return sv.Detections(
        xyxy=np.array(xyxy, np.float32),
        tracker_id=None if tracker_id is None else np.array(tracker_id),
        confidence=None if confidence is None else np.array(confidence, np.float32),
    )


@pytest.mark.parametrize(
    ("frame", "det", "expected"),
    [
        (1, _det([[10, 20, 40, 80]], [3], [0.9]), ["1,3,10.00,20.00,30.00,60.00,0.9000,-1,-1,-1"]),
        (7, _det([[0.5, 1.25, 2.75, 4.0], [5, 5, 6, 6]], [12, 4], [0.12345, 1.0]),
         ["7,12,0.50,1.25,2.25,2.75,0.1235,-1,-1,-1", "7,4,5.00,5.00,1.00,1.00,1.0000,-1,-1,-1"]),
        (2, _det([[1, 2, 3, 4]], [5]), ["2,5,1.00,2.00,2.00,2.00,1.0000,-1,-1,-1"]),
        (3, _det([[1, 2, 3, 4], [0, 0, 1, 1]], [-1, 9], [0.5, 0.5]),
         ["3,9,0.00,0.00,1.00,1.00,0.5000,-1,-1,-1"]),
        (4, _det([[1, 2, 3, 4]], None, [0.5]), []),
        (5, sv.Detections.empty(), []),
    ],
)
def test_mot_lines(frame: int, det: sv.Detections, expected: list[str]) -> None:
    assert mot_lines(frame, det) == expected


def test_files_per_source_readable_by_motmetrics(tmp_path: Path) -> None:
    sink = build_sink(MotSinkConfig(path=str(tmp_path / "mot" / "{source}.txt")), Metrics())
    sink.start()
    for i in range(10):
        sink.write(result(i, "a"))
        if i % 2 == 0:
            sink.write(result(i, "b"))
    sink.write(result(10, "c", tracked=False))
    sink.stop()
    a = (tmp_path / "mot" / "a.txt").read_text()
    assert a.splitlines()[:2] == ["1,1,2.00,4.00,12.00,26.00,0.9000,-1,-1,-1",
                                  "1,2,44.00,30.00,16.00,16.00,0.6000,-1,-1,-1"]
    assert len(a.splitlines()) == 20 and a.endswith("\n")
    df = mm.io.loadtxt(str(tmp_path / "mot" / "a.txt"), fmt="mot15-2D")
    assert len(df) == 20
    assert sorted(df.index.get_level_values("FrameId").unique()) == list(range(1, 11))
    assert sorted(df.index.get_level_values("Id").unique()) == [1, 2]
    b = mm.io.loadtxt(str(tmp_path / "mot" / "b.txt"), fmt="mot15-2D")
    assert sorted(b.index.get_level_values("FrameId").unique()) == [1, 3, 5, 7, 9]
    assert (tmp_path / "mot" / "c.txt").read_text() == ""


def test_fixed_path_refuses_a_second_source(tmp_path: Path) -> None:
    sink = build_sink(MotSinkConfig(path=str(tmp_path / "one.txt")), Metrics())
    sink.start()
    sink.write(result(0, "a"))
    with pytest.raises(SinkError, match="has no \\{source\\}"):
        sink.write(result(0, "b"))
    sink.stop()
    assert len((tmp_path / "one.txt").read_text().splitlines()) == 2


def test_unwritable_path(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    sink = build_sink(MotSinkConfig(path=str(tmp_path / "f" / "x.txt")), Metrics())
    with pytest.raises(SinkError, match=r"x\.txt"):
        sink.start()


def test_whole_lines_after_sigterm(tmp_path: Path, child_writer) -> None:
    path = tmp_path / "live.txt"
    rc, written, out = child_writer("mot", path, 30, signal.SIGTERM)
    assert rc == 0, out
    lines = path.read_text().splitlines()
    assert len(lines) == 2 * written
    assert lines[-1].startswith(f"{written},2,")


def _frames(path: Path) -> list[int]:
    """Frame numbers of a MOT file that ends in a whole line of 10 numeric fields each."""
    data = path.read_text()
    assert data.endswith("\n")
    rows = [line.split(",") for line in data.splitlines()]
    assert all(len(r) == 10 and all(f.replace(".", "", 1).lstrip("-").isdigit() for f in r)
               for r in rows), rows
    return [int(r[0]) for r in rows]


def test_full_disk_leaves_whole_lines_and_recovers(small_disk: Path) -> None:
    """ENOSPC mid-line: the torn frame is cut, the error counted, writing resumes with space."""
    path = small_disk / "seq.txt"
    filler = fill_disk(small_disk, leave=6000)
    worker = SinkWorker(build_sink(MotSinkConfig(path=str(path)), Metrics()), Metrics(), 1000)
    worker.start()
    n = 300
    for i in range(n):
        worker.submit(result(i))
    deadline = time.monotonic() + 30
    while worker.status.handled < n and time.monotonic() < deadline:
        time.sleep(0.01)
    written = worker.status.written
    assert 0 < written < n and worker.status.errors == n - written
    # two tracked boxes per frame, frames 1-based and whole
    assert _frames(path) == [f for i in range(written) for f in (i + 1, i + 1)]
    filler.unlink()
    for i in range(n, n + 5):
        worker.submit(result(i))
    worker.stop(time.monotonic() + 30)
    assert _frames(path)[2 * written :] == [f for i in range(n, n + 5) for f in (i + 1, i + 1)]
