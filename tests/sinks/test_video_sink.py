"""Video sink: files decode back with PyAV (count, size, rate, timing), early stop is playable."""

from __future__ import annotations

import signal
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from pydantic import ValidationError
from sinkdata import result

from edgewatch.config import VideoSinkConfig
from edgewatch.errors import SinkError
from edgewatch.metrics import Metrics
from edgewatch.sinks import build_sink
from edgewatch.sinks.video import _Clock
from edgewatch.types import Frame


def _decode(path: Path) -> tuple[list[np.ndarray], list[float], av.VideoStream]:
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        frames = list(c.decode(stream))
        return ([f.to_ndarray(format="bgr24") for f in frames],
                [float(f.time) for f in frames], stream)


@pytest.mark.parametrize(
    ("name", "codec", "size", "decoded_codec", "out_size"),
    [
        ("a.mp4", "h264", (64, 48), "h264", (64, 48)),
        ("b.mkv", "libx264", (101, 75), "h264", (102, 76)),
        ("c.avi", "mjpeg", (64, 48), "mjpeg", (64, 48)),
        ("d.mkv", "mpeg4", (63, 48), "mpeg4", (64, 48)),
    ],
)
def test_thirty_frames_decode(tmp_path: Path, name: str, codec: str, size: tuple[int, int],
                              decoded_codec: str, out_size: tuple[int, int]) -> None:
    path = tmp_path / "nested" / name
    sink = build_sink(VideoSinkConfig(path=str(path), codec=codec, crf=18), Metrics())
    sink.start()
    w, h = size
    for i in range(30):
        sink.write(result(i, width=w, height=h, masks=True, keypoints=17, labels=True))
    sink.stop()
    frames, times, stream = _decode(path)
    assert len(frames) == 30
    assert frames[0].shape == (out_size[1], out_size[0], 3)
    assert stream.codec_context.name == decoded_codec
    assert stream.average_rate == 25
    assert times == pytest.approx([i / 25 for i in range(30)], abs=1e-3)


def test_frames_are_annotated_and_faithful(tmp_path: Path) -> None:
    path = tmp_path / "x.mkv"
    sink = build_sink(VideoSinkConfig(path=str(path), crf=0), Metrics())
    sink.start()
    raw = [result(i, width=192, height=128) for i in range(5)]
    for r in raw:
        sink.write(r)
    sink.stop()
    frames, _, _ = _decode(path)
    for r, got in zip(raw, frames, strict=True):
        img = r.frame.image.astype(np.int16)
        x1, y1, _, y2 = r.detections.xyxy[0].astype(int)
        # The box outline is drawn (thickness 2): its left edge differs from the scene...
        edge = got[y1 + 8 : y2 - 2, x1].astype(np.int16)
        assert np.abs(edge - img[y1 + 8 : y2 - 2, x1]).mean() > 40
        # ...and away from boxes and labels the picture is the source (crf 0; the area
        # is smooth, so 4:2:0 chroma costs little).
        assert np.abs(got[60:80, 60:100].astype(np.int16) - img[60:80, 60:100]).mean() < 4


@pytest.mark.parametrize(("cfg_fps", "src_fps", "expected"),
                         [(None, 25.0, 25), (10.0, 25.0, 10), (None, 30000 / 1001,
                                                                Fraction(30000, 1001)),
                          (None, 0.0, 30)])
def test_rate_from_config_or_source(tmp_path: Path, cfg_fps, src_fps, expected) -> None:
    path = tmp_path / "r.mp4"
    sink = build_sink(VideoSinkConfig(path=str(path), fps=cfg_fps), Metrics())
    sink.start()
    for i in range(3):
        sink.write(result(i, fps=src_fps or 25.0, pts=i / (src_fps or 25.0))
                   if src_fps else _no_fps(i))
    sink.stop()
    _, _, stream = _decode(path)
    assert stream.average_rate == expected


def _no_fps(i: int):
    r = result(i)
    f = r.frame
    return type(r)(Frame(f.source_id, f.index, f.pts, f.wall_time, f.image, 0, 0.0),
                   r.detections, r.class_names, r.timing_ms)


CLOCK_CASES = [
    # (pts seconds, generation) -> output frame number at 25 fps
    ([(0.0, 0), (0.04, 0), (0.12, 0)], [0, 1, 3]),                      # a dropped frame
    ([(0.0, 0), (0.12, 0), (0.12, 0), (0.16, 0)], [0, 3, 4, 5]),        # repeated pts
    ([(0.0, 0), (0.12, 0), (0.08, 0), (0.12, 0)], [0, 3, 4, 5]),        # backwards step
    ([(5.0, 0), (5.04, 0), (0.0, 1), (0.04, 1)], [0, 1, 2, 3]),         # loop / reconnect
    ([(0.0, 0), (100.0, 0), (100.04, 0)], [0, 1, 2]),                   # jump > 10 s
    ([(0.0, 0), (8.0, 0)], [0, 200]),                                   # gap < 10 s kept
]


@pytest.mark.parametrize(("seq", "expected"), CLOCK_CASES)
def test_clock(seq: list[tuple[float, int]], expected: list[int]) -> None:
    clock = _Clock(Fraction(25))
    img = np.zeros((2, 2, 3), np.uint8)
    got = [clock.next_pts(Frame("s", i, pts, 0.0, img, gen)) for i, (pts, gen) in enumerate(seq)]
    assert got == expected


def test_dropped_frames_leave_gaps(tmp_path: Path) -> None:
    path = tmp_path / "gaps.mp4"
    sink = build_sink(VideoSinkConfig(path=str(path)), Metrics())
    sink.start()
    for i in (0, 1, 4, 5):
        sink.write(result(i))
    sink.stop()
    _, times, _ = _decode(path)
    assert times == pytest.approx([0.0, 0.04, 0.16, 0.2], abs=1e-3)


def test_resolution_change_is_resized(tmp_path: Path) -> None:
    path = tmp_path / "rs.mkv"
    sink = build_sink(VideoSinkConfig(path=str(path)), Metrics())
    sink.start()
    sink.write(result(0, width=64, height=48))
    sink.write(result(1, width=128, height=96))
    sink.stop()
    frames, _, _ = _decode(path)
    assert [f.shape for f in frames] == [(48, 64, 3), (48, 64, 3)]


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        ({"path": "{tmp}/f/x.mp4"}, "cannot open video file .*x.mp4"),
        ({"path": "{tmp}/x.mp4", "codec": "no-such-codec"}, "unknown encoder 'no-such-codec'"),
        ({"path": "{tmp}/x.unknownext"}, "x.unknownext"),
    ],
)
def test_errors(tmp_path: Path, cfg: dict, match: str) -> None:
    """The sink's own checks at the first write. The config refuses a bad codec or
    container before start (below), so those two reach the sink only through a
    config built without validation: the sink's second line of defence."""
    (tmp_path / "f").write_text("")
    cfg = {**cfg, "path": cfg["path"].replace("{tmp}", str(tmp_path))}
    sink = build_sink(VideoSinkConfig.model_construct(**VideoSinkConfig(path="x.mp4").model_dump()
                                                       | cfg), Metrics())
    sink.start()
    with pytest.raises(SinkError, match=match):
        sink.write(result(0))
    sink.stop()


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        ({"path": "x.mp4", "codec": "no-such-codec"}, "no encoder 'no-such-codec'"),
        ({"path": "x.unknownext"}, "x.unknownext"),
    ],
)
def test_config_refuses_bad_codec_and_container(cfg: dict, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        VideoSinkConfig(**cfg)


def test_fixed_path_refuses_a_second_source(tmp_path: Path) -> None:
    sink = build_sink(VideoSinkConfig(path=str(tmp_path / "one.mp4")), Metrics())
    sink.start()
    sink.write(result(0, "a"))
    with pytest.raises(SinkError, match="both write to"):
        sink.write(result(0, "b"))
    sink.stop()
    frames, _, _ = _decode(tmp_path / "one.mp4")
    assert len(frames) == 1


def test_two_sources_two_files(tmp_path: Path) -> None:
    sink = build_sink(VideoSinkConfig(path=str(tmp_path / "{source}.mp4")), Metrics())
    sink.start()
    for i in range(6):
        sink.write(result(i, "a"))
        if i < 3:
            sink.write(result(i, "b", width=32, height=32))
    sink.stop()
    assert len(_decode(tmp_path / "a.mp4")[0]) == 6
    b = _decode(tmp_path / "b.mp4")[0]
    assert len(b) == 3 and b[0].shape == (32, 32, 3)


@pytest.mark.parametrize("name", ["early.mp4", "early.mkv"])
def test_sigterm_stop_leaves_a_playable_file(tmp_path: Path, child_writer, name: str) -> None:
    path = tmp_path / name
    rc, written, out = child_writer("video", path, 20, signal.SIGTERM)
    assert rc == 0, out
    frames, _, _ = _decode(path)
    assert len(frames) == written >= 20
