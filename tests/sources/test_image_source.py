"""ImageSource on a real folder of frames cut from vtest.avi."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgewatch.config import SourceConfig
from edgewatch.errors import SourceError
from edgewatch.metrics import Metrics
from edgewatch.sources import build_source
from edgewatch.sources.images import ImageSource, list_images, natural_key
from edgewatch.types import EventKind, Frame, SourceEvent


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, vtest_path: Path) -> Path:
    """img1..img12 (mixed formats), a corrupt img5.jpg, and a non-image file."""
    out = tmp_path_factory.mktemp("imgs")
    cap = cv2.VideoCapture(str(vtest_path))
    exts = [
        ".png",
        ".jpg",
        ".bmp",
        ".png",
        ".jpg",
        ".webp",
        ".tif",
        ".png",
        ".png",
        ".jpg",
        ".png",
        ".bmp",
    ]
    for i, ext in enumerate(exts, start=1):
        ok, img = cap.read()
        assert ok
        small = cv2.resize(img, (160, 120))
        if i == 5:
            (out / f"img{i}{ext}").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
        else:
            assert cv2.imwrite(str(out / f"img{i}{ext}"), small)
    cap.release()
    (out / "notes.txt").write_text("not an image")
    return out


def run(
    cfg: SourceConfig, m: Metrics | None = None
) -> tuple[list[Frame], ImageSource, list[SourceEvent]]:
    events: list[SourceEvent] = []
    src = build_source(cfg, m or Metrics(), events.append)
    assert isinstance(src, ImageSource)
    frames = list(src.frames(threading.Event()))
    src.close()
    return frames, src, events


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["img10.png", "img2.png", "img1.png"], ["img1.png", "img2.png", "img10.png"]),
        (["a/f_100.jpg", "a/f_20.jpg", "a/f_3.jpg"], ["a/f_3.jpg", "a/f_20.jpg", "a/f_100.jpg"]),
        (
            ["cam2_0010.jpg", "cam10_0001.jpg", "cam2_0002.jpg"],
            ["cam2_0002.jpg", "cam2_0010.jpg", "cam10_0001.jpg"],
        ),
        (["B.png", "a.png"], ["a.png", "B.png"]),
    ],
)
def test_natural_order(names: list[str], expected: list[str]) -> None:
    assert sorted(names, key=natural_key) == expected


def test_folder_in_natural_order_skips_and_counts_the_corrupt_image(folder: Path) -> None:
    m = Metrics()
    frames, src, events = run(SourceConfig(id="imgs", uri=str(folder), realtime=False), m)
    assert [Path(p).name for p in list_images(str(folder))][:3] == [
        "img1.png",
        "img2.jpg",
        "img3.bmp",
    ]
    assert [f.index for f in frames] == [0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11]
    assert [f.pts for f in frames] == pytest.approx(
        [i / 30 for i in [0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11]]
    )
    assert src.decode_errors == 1 and src.total_frames == 12
    assert all(f.decode_ms > 0 for f in frames)
    assert m.counter("edgewatch_decode_errors_total", source="imgs") == 1
    assert all(f.image.shape == (120, 160, 3) and f.image.dtype == np.uint8 for f in frames)
    lossless = cv2.imread(str(folder / "img1.png"))
    np.testing.assert_array_equal(frames[0].image, lossless)
    assert [e.kind for e in events] == [EventKind.CONNECTED, EventKind.ENDED]


@pytest.mark.parametrize(
    ("pattern", "count"),
    [("*.png", 5), ("img1*", 4), ("*.jpg", 2), ("img[2-4].*", 3)],  # img5.jpg is corrupt
)
def test_glob(folder: Path, pattern: str, count: int) -> None:
    frames, _, _ = run(SourceConfig(id="g", uri=str(folder / pattern), realtime=False))
    assert len(frames) == count


def test_loop_and_max_frames(folder: Path) -> None:
    frames, _src, _ = run(
        SourceConfig(
            id="l", uri=str(folder / "*.png"), loop=True, max_frames=12, realtime=False, fps=10
        )
    )
    assert [f.index for f in frames] == list(range(12))
    assert [f.generation for f in frames] == [0] * 5 + [1] * 5 + [2] * 2
    assert [f.pts for f in frames] == pytest.approx([(i % 5) / 10 for i in range(12)])


def test_realtime_paces_at_fps(folder: Path) -> None:
    t0 = time.monotonic()
    frames, _, _ = run(SourceConfig(id="r", uri=str(folder / "*.png"), realtime=True, fps=20))
    assert len(frames) == 5
    assert frames[-1].wall_time - frames[0].wall_time == pytest.approx(0.2, abs=0.08)
    assert time.monotonic() - t0 < 2.0


def test_empty_folder_raises(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("x")
    src = build_source(SourceConfig(id="e", uri=str(tmp_path)), Metrics())
    with pytest.raises(SourceError, match="no images"):
        list(src.frames(threading.Event()))
