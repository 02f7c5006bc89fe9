"""Shared fixtures: the real sample footage and detector, and small helpers.

The samples come from ``scripts/fetch-samples`` (the test command runs it)
into ``samples/`` (or ``$EDGEWATCH_SAMPLES``) and are checked against their
SHA-256. Outside CI a missing or different sample skips the tests that need
it; under ``CI=true`` it is an error, so CI can never pass by skipping them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from testkit import free_port

from edgewatch.samples import MODEL_SHA256, VIDEO_SHA256, default_dir, sha256

ROOT = Path(__file__).resolve().parent.parent


def _find(rel: str, digest: str) -> Path:
    """``rel`` inside the samples folder that ``scripts/fetch-samples`` fills."""
    p = default_dir() / rel
    if not p.is_file():
        msg = f"sample {p} missing: run scripts/fetch-samples"
    elif sha256(p) != digest:
        msg = f"sample {p} is not the expected file (SHA-256): run scripts/fetch-samples"
    else:
        return p
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)
    raise AssertionError  # unreachable


@pytest.fixture(scope="session")
def vtest_path() -> Path:
    """Real CCTV footage: 768x576, 795 frames of pedestrians."""
    return _find("vtest.avi", VIDEO_SHA256)


@pytest.fixture(scope="session")
def detector_path() -> Path:
    """A real Ultralytics YOLOv8 ONNX fall detector (classes Normal, Fall; 640x640)."""
    return _find("models/fall_detector.onnx", MODEL_SHA256)


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
