"""FileSource on real footage (vtest.avi) and on damaged copies of it."""

from __future__ import annotations

import itertools
import os
import random
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest
from testkit import write_clip

from edgewatch.config import SourceConfig
from edgewatch.errors import SourceError
from edgewatch.metrics import Metrics
from edgewatch.sources import build_source
from edgewatch.sources.file import FileSource, mp4_without_moov
from edgewatch.types import EventKind, Frame, SourceEvent, SourceState

VTEST_FRAMES = 795
VTEST_FPS = 10.0


def run(
    cfg: SourceConfig, metrics: Metrics | None = None, stop_after: int | None = None
) -> tuple[list[Frame], FileSource, list[SourceEvent]]:
    events: list[SourceEvent] = []
    src = build_source(cfg, metrics or Metrics(), events.append)
    assert isinstance(src, FileSource)
    stop = threading.Event()
    frames: list[Frame] = []
    for f in src.frames(stop):
        frames.append(f)
        if stop_after is not None and len(frames) >= stop_after:
            stop.set()
    src.close()
    return frames, src, events


def cfg(uri: Path | str, **kw: object) -> SourceConfig:
    kw.setdefault("realtime", False)
    return SourceConfig(id="file", uri=str(uri), **kw)


@pytest.mark.parametrize(
    ("max_frames", "limit_fps", "expected_index"),
    [
        (30, None, list(range(30))),
        (10, 5.0, list(range(0, 20, 2))),
        (8, 2.5, list(range(0, 32, 4))),
        (7, 3.0, [0, 4, 7, 10, 14, 17, 20]),  # due every 1/3 s: pts 0, .4, .7, 1.0, 1.4, ...
        (5, 100.0, list(range(5))),
    ],
)
def test_index_pts_and_fps_limit(
    vtest_path: Path, max_frames: int, limit_fps: float | None, expected_index: list[int]
) -> None:
    frames, src, _ = run(cfg(vtest_path, max_frames=max_frames, fps=limit_fps))
    assert [f.index for f in frames] == expected_index
    assert [f.pts for f in frames] == pytest.approx([i / VTEST_FPS for i in expected_index])
    assert src.fps == VTEST_FPS
    for f in frames:
        assert f.image.shape == (576, 768, 3) and f.image.dtype == np.uint8
        assert f.generation == 0 and f.fps == VTEST_FPS and f.source_id == "file"


@pytest.mark.slow
def test_whole_file_counts_and_events(vtest_path: Path) -> None:
    m = Metrics()
    t0 = time.perf_counter()
    frames, src, events = run(cfg(vtest_path), m)
    elapsed = time.perf_counter() - t0
    assert len(frames) == VTEST_FRAMES
    assert [f.index for f in frames] == list(range(VTEST_FRAMES))
    assert all(b.pts > a.pts for a, b in itertools.pairwise(frames))
    assert [e.kind for e in events] == [EventKind.CONNECTED, EventKind.ENDED]
    assert src.state is SourceState.ENDED and src.decode_errors == 0
    assert src.total_frames == VTEST_FRAMES
    assert elapsed / VTEST_FRAMES < 0.05  # 1.1 ms/frame measured; generous for a busy CI box


def test_matches_a_plain_pyav_decode(vtest_path: Path) -> None:
    frames, _, _ = run(cfg(vtest_path, max_frames=5))
    with av.open(str(vtest_path)) as c:
        ref = [
            f.to_ndarray(format="bgr24") for _, f in zip(range(5), c.decode(video=0), strict=False)
        ]
    for got, want in zip(frames, ref, strict=True):
        np.testing.assert_array_equal(got.image, want)


def test_realtime_paces_at_stream_rate(vtest_path: Path) -> None:
    frames, _, _ = run(cfg(vtest_path, realtime=True, max_frames=11))
    span = frames[-1].wall_time - frames[0].wall_time
    assert span == pytest.approx(1.0, abs=0.15)  # 10 intervals of 100 ms


def test_realtime_with_fps_limit_paces_kept_frames(vtest_path: Path) -> None:
    frames, _, _ = run(cfg(vtest_path, realtime=True, fps=5, max_frames=6))
    assert [f.index for f in frames] == [0, 2, 4, 6, 8, 10]
    assert frames[-1].wall_time - frames[0].wall_time == pytest.approx(1.0, abs=0.15)


def test_stop_during_pacing_returns_promptly(vtest_path: Path) -> None:
    src = build_source(cfg(vtest_path, realtime=True, fps=0.2), Metrics())
    stop = threading.Event()
    it = src.frames(stop)
    assert next(it).index == 0  # the next kept frame is due 5 s later
    threading.Timer(0.2, stop.set).start()
    t0 = time.monotonic()
    assert list(it) == []
    assert time.monotonic() - t0 < 1.0
    assert src.state is SourceState.STOPPED


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory: pytest.TempPathFactory, vtest_path: Path) -> Path:
    """The first 12 frames of vtest.avi, stream-copied into a new AVI."""
    out = tmp_path_factory.mktemp("clip") / "short.avi"
    with av.open(str(vtest_path)) as src, av.open(str(out), "w") as dst:
        s_in = src.streams.video[0]
        s_out = dst.add_stream_from_template(s_in)
        for n, pkt in enumerate(src.demux(s_in)):
            if pkt.dts is None or n >= 12:
                break
            pkt.stream = s_out
            dst.mux(pkt)
    return out


def test_loop_increments_generation_and_keeps_index(short_clip: Path) -> None:
    frames, src, events = run(cfg(short_clip, loop=True, max_frames=30))
    assert [f.index for f in frames] == list(range(30))
    assert [f.generation for f in frames] == [0] * 12 + [1] * 12 + [2] * 6
    assert [f.pts for f in frames] == pytest.approx([(i % 12) / VTEST_FPS for i in range(30)])
    kinds = [e.kind for e in events]
    assert kinds == [EventKind.CONNECTED, EventKind.ENDED] and EventKind.LOST not in kinds
    assert src.generation == 2


@pytest.mark.parametrize(
    "content", [b"", b"not a video at all " * 50, random.Random(5).randbytes(50_000)]
)
def test_unopenable_file_raises_source_error(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(content)
    src = build_source(cfg(bad), Metrics())
    with pytest.raises(SourceError, match=r"cannot open video file .*bad\.mp4") as err:
        list(src.frames(threading.Event()))
    assert err.value.__cause__ is None and "Traceback" not in str(err.value)


def test_truncated_file_yields_a_prefix_and_counts_the_cut(
    tmp_path: Path, vtest_path: Path
) -> None:
    data = vtest_path.read_bytes()
    cut = tmp_path / "half.avi"
    cut.write_bytes(data[: len(data) // 2])
    m = Metrics()
    frames, src, events = run(cfg(cut), m)
    full, _, _ = run(cfg(vtest_path, max_frames=len(frames)))
    assert 300 < len(frames) < VTEST_FRAMES
    assert [f.index for f in frames] == list(range(len(frames)))
    for a, b in zip(frames[::50], full[::50], strict=True):  # a true prefix of the real decode
        np.testing.assert_array_equal(a.image, b.image)
    assert src.state is SourceState.ENDED and events[-1].kind is EventKind.ENDED
    assert src.decode_errors == 1  # the half-written last frame
    assert m.counter("edgewatch_decode_errors_total", source="file") == 1


MP4_FRAMES = 60


@pytest.fixture(scope="module")
def mp4s(tmp_path_factory: pytest.TempPathFactory, vtest_path: Path) -> dict[str, Path]:
    """60 frames of vtest.avi as H.264 MP4, index ('moov') at the end and first."""
    d = tmp_path_factory.mktemp("mp4")
    return {
        "plain": write_clip(vtest_path, d / "plain.mp4", MP4_FRAMES),
        "faststart": write_clip(
            vtest_path, d / "faststart.mp4", MP4_FRAMES, options={"movflags": "faststart"}
        ),
    }


def test_mp4_cut_before_its_moov_is_a_source_error(tmp_path: Path, mp4s: dict[str, Path]) -> None:
    data = mp4s["plain"].read_bytes()
    assert data.index(b"mdat") < len(data) // 2 < data.rindex(b"moov")  # the index is last
    cut = tmp_path / "recording.mp4"
    cut.write_bytes(data[: len(data) // 2])
    assert mp4_without_moov(str(cut)) and not mp4_without_moov(str(mp4s["plain"]))
    src = build_source(cfg(cut), Metrics())
    with pytest.raises(SourceError, match=r"recording\.mp4.*without its 'moov' index") as err:
        list(src.frames(threading.Event()))
    assert err.value.__cause__ is None


@pytest.mark.parametrize("threads", [1, 4])
def test_faststart_mp4_cut_in_mdat_yields_every_whole_frame(
    tmp_path: Path, mp4s: dict[str, Path], threads: int
) -> None:
    """Cut at half its bytes: every frame whose packet is whole comes out (also with
    frame-threaded decoding, which would drop those in flight), the cut one is counted."""
    full = mp4s["faststart"]
    data = full.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")  # the index is first
    size = len(data) // 2
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[:size])
    with av.open(str(full)) as c:
        spans = [(p.pos, p.size) for p in c.demux(video=0) if p.size]
    whole = sum(1 for pos, n in spans if pos + n <= size)
    assert len(spans) == MP4_FRAMES and 10 < whole < MP4_FRAMES - 10
    m = Metrics()
    frames, src, events = run(cfg(cut, decode_threads=threads), m)
    assert len(frames) == whole
    assert [f.index for f in frames] == list(range(whole))
    assert [f.pts for f in frames] == pytest.approx([i / 10 for i in range(whole)])
    with av.open(str(full)) as c:
        ref = [f.to_ndarray(format="bgr24") for _, f in zip(range(whole), c.decode(video=0))]
    for got, want in zip(frames, ref, strict=True):
        np.testing.assert_array_equal(got.image, want)
    assert src.decode_errors == 1  # the packet cut in half
    assert m.counter("edgewatch_decode_errors_total", source="file") == 1
    assert src.state is SourceState.ENDED and events[-1].kind is EventKind.ENDED


@pytest.mark.slow
def test_garbage_mid_stream_is_decoded_around(tmp_path: Path, vtest_path: Path) -> None:
    data = bytearray(vtest_path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 20_000] = random.Random(1).randbytes(20_000)
    bad = tmp_path / "garbage.avi"
    bad.write_bytes(bytes(data))
    m = Metrics()
    frames, src, events = run(cfg(bad), m)
    idx = [f.index for f in frames]
    assert idx == sorted(set(idx)) and len(frames) >= VTEST_FRAMES - 5
    # Decoding resumed after the damage: the last frame is the real last frame. (AVI
    # derives PTS from packet counts, so the packet lost in the garbage shifts them.)
    with av.open(str(vtest_path)) as c:
        *_, last = c.decode(video=0)
    np.testing.assert_array_equal(frames[-1].image, last.to_ndarray(format="bgr24"))
    assert src.decode_errors >= 1
    assert m.counter("edgewatch_decode_errors_total", source="file") == src.decode_errors
    assert events[-1].kind is EventKind.ENDED


def test_decode_time_is_recorded(vtest_path: Path) -> None:
    frames, src, _ = run(cfg(vtest_path, max_frames=20))
    assert len(frames) == 20 and all(0 < f.decode_ms < 100 for f in frames)
    assert src.last_decode_ms == frames[-1].decode_ms


@pytest.mark.parametrize(
    ("kw", "total"),
    [
        ({}, VTEST_FRAMES),
        ({"max_frames": 30}, 30),
        ({"fps": 2.5}, 199),  # every 4th of 795 frames: 0, 4, ..., 792
        ({"fps": 2.5, "max_frames": 500}, 199),
        ({"loop": True}, 0),
        ({"loop": True, "max_frames": 1000}, 1000),
    ],
)
def test_total_frames_for_progress(vtest_path: Path, kw: dict[str, object], total: int) -> None:
    src = build_source(cfg(vtest_path, **kw), Metrics())
    assert isinstance(src, FileSource)
    it = src.frames(threading.Event())
    next(it)
    assert src.total_frames == total
    src.close()


def test_close_releases_an_abandoned_file(vtest_path: Path) -> None:
    fds = len(os.listdir("/proc/self/fd"))
    src = build_source(cfg(vtest_path), Metrics())
    it = src.frames(threading.Event())
    assert [next(it).index for _ in range(3)] == [0, 1, 2]
    assert len(os.listdir("/proc/self/fd")) > fds  # the file is open
    src.close()
    assert len(os.listdir("/proc/self/fd")) == fds
