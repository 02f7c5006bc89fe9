"""Shared fixtures: the real sample footage and detector, and small helpers.

The samples come from ``scripts/fetch-samples`` (the test command runs it).
Outside CI a missing sample skips the tests that need it; under ``CI=true`` it
is an error, so CI can never pass by skipping them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from testkit import free_port

from edgewatch.samples import default_dir

ROOT = Path(__file__).resolve().parent.parent
_FALLBACKS = {
    "vtest.avi": [Path("/tmp/vtest.avi")],
    "models/fall_detector.onnx": [Path("/tmp/samp/whl/fall_detection/models/best_fp16.onnx")],
}


def _find(rel: str) -> Path:
    for p in [default_dir() / rel, *_FALLBACKS[rel]]:
        if p.is_file() and p.stat().st_size > 0:
            return p
    msg = f"sample {rel} missing: run scripts/fetch-samples"
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)
    raise AssertionError  # unreachable


@pytest.fixture(scope="session")
def vtest_path() -> Path:
    """Real CCTV footage: 768x576, 795 frames of pedestrians."""
    return _find("vtest.avi")


@pytest.fixture(scope="session")
def detector_path() -> Path:
    """A real Ultralytics YOLOv8 ONNX person detector (classes Normal, Fall)."""
    return _find("models/fall_detector.onnx")


@pytest.fixture(scope="session")
def vtest_frames(vtest_path: Path) -> list:
    """The first 60 frames of vtest.avi as BGR uint8 arrays."""
    import av

    frames = []
    with av.open(str(vtest_path)) as c:
        for f in c.decode(video=0):
            frames.append(f.to_ndarray(format="bgr24"))
            if len(frames) == 60:
                break
    return frames


@pytest.fixture
def port() -> int:
    """A free TCP port on 127.0.0.1."""
    return free_port()
