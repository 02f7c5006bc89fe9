"""Small helpers shared by tests (importable as ``testkit``: tests/ is on sys.path)."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from pathlib import Path

import av
import cv2
import numpy as np
from pipeline.yolo_onnx_builders import build_model, detect_output, ultralytics_metadata


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    """``(HTTP status, body text)`` of a GET; an error status is returned, not raised."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def tiny_detector(path: Path) -> Path:
    """A 320x320 ONNX detector that always reports the same two people (fast)."""
    boxes = np.array([[100, 100, 40, 80], [200, 150, 50, 90]], np.float32)
    scores = np.array([[0.9, 0.0], [0.8, 0.0]], np.float32)
    return build_model(
        path, {"output0": detect_output(boxes, scores, 2100)}, metadata=ultralytics_metadata()
    )


def write_clip(
    src: Path,
    out: Path,
    frames: int,
    codec: str = "libx264",
    fps: int = 10,
    options: dict[str, str] | None = None,
) -> Path:
    """Re-encode the first ``frames`` frames of ``src`` to ``out`` (768x576);
    ``options`` go to the muxer (``{"movflags": "faststart"}``: the MP4 index first)."""
    with av.open(str(src)) as inp, av.open(str(out), "w", options=options or {}) as dst:
        st = dst.add_stream(codec, rate=fps)
        st.width, st.height, st.pix_fmt = 768, 576, "yuv420p"
        for i, frame in enumerate(inp.decode(video=0)):
            if i == frames:
                break
            frame.pts = None
            for p in st.encode(frame):
                dst.mux(p)
        for p in st.encode():
            dst.mux(p)
    return out


def image_folder(folder: Path, frames: int, shape: tuple[int, int], seed: int = 0) -> Path:
    """``frames`` PNGs of ``shape`` (h, w) in ``folder``, each a different grey level.

    The levels differ from frame to frame (and with ``seed``), so a model whose
    output follows the picture's brightness gives every frame its own boxes.
    """
    folder.mkdir(parents=True, exist_ok=True)
    levels = np.random.default_rng(seed).permutation(np.arange(20, 236, 4))[:frames]
    assert len(levels) == frames, "at most 54 distinct levels"
    for i, level in enumerate(levels):
        img = np.full((*shape, 3), int(level), np.uint8)
        img[: shape[0] // 3, : shape[1] // 4] = 255 - int(level)  # not a flat picture
        assert cv2.imwrite(str(folder / f"img{i}.png"), img)
    return folder
