#!/usr/bin/env python3
"""Tracker benchmarks: per-frame update time and scores on the synthetic scenes.

    python scripts/bench_trackers.py [--frames 300] [--no-scenes] [--no-peer]

1. ByteTrack with 30 objects (update only, detections prepared beforehand);
2. BoT-SORT + sparseOptFlow GMC on 1920x1080 textured frames panning 5 px/frame
   (update including GMC), 30 objects;
3. HOTA / MOTA / IDF1 / ID switches of every tracker on the synthetic scenes of
   tests/trackers/scenes.py, side by side with supervision's ``sv.ByteTrack``
   on the same detections (when supervision provides it: 0.31 no longer does;
   run it from a separate venv with ``supervision==0.25.1`` and edgewatch's
   dependencies, e.g. ``PYTHONPATH=. /tmp/peers/bin/python scripts/bench_trackers.py``).

Times are wall-clock medians and 95th percentiles in milliseconds per frame.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import supervision as sv

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "trackers"))

from edgewatch.config import BotSortConfig, ByteTrackConfig  # noqa: E402
from edgewatch.trackers import build_tracker  # noqa: E402
from edgewatch.trackers.base import Tracker  # noqa: E402
from edgewatch.trackers.mot import MotSequence, evaluate, read_sequence, run_tracker  # noqa: E402


def _objects(n: int, frames: int, w: int, h: int, seed: int = 0) -> list[sv.Detections]:
    rng = np.random.default_rng(seed)
    start = rng.uniform([0, 0], [w - 200, h - 300], (n, 2))
    vel = rng.uniform(-2, 2, (n, 2))
    size = rng.uniform([30, 60], [60, 160], (n, 2))
    out = []
    for f in range(frames):
        xy = np.clip(start + vel * f, 0, [w - 60, h - 160]) + rng.normal(0, 1, (n, 2))
        xyxy = np.hstack([xy, xy + size]).astype(np.float32)
        out.append(
            sv.Detections(
                xyxy=xyxy,
                confidence=rng.uniform(0.3, 0.95, n).astype(np.float32),
                class_id=np.zeros(n, dtype=np.int64),
            )
        )
    return out


def _time(
    update: Callable[[int, np.ndarray | None], object],
    frames: int,
    image: Callable[[int], np.ndarray | None] = lambda f: None,
) -> tuple[float, float, float]:
    """Median, mean and p95 of ``update(f, image(f))`` in ms (``image`` runs untimed)."""
    ts = []
    for f in range(frames):
        img = image(f)
        t0 = time.perf_counter()
        update(f, img)
        ts.append(time.perf_counter() - t0)
    a = np.array(ts[5:]) * 1000.0  # skip warm-up frames
    return float(np.median(a)), float(a.mean()), float(np.percentile(a, 95))


def _report(label: str, stats: tuple[float, float, float]) -> None:
    med, mean, p95 = stats
    print(f"{label:40s} median {med:6.3f}  mean {mean:6.3f}  p95 {p95:6.3f} ms")


def bench_bytetrack(frames: int) -> None:
    dets = _objects(30, frames, 1920, 1080)
    t = build_tracker(ByteTrackConfig(), 30.0)
    _report("ByteTrack, 30 objects", _time(lambda f, _: t.update(dets[f]), frames))
    peer = getattr(sv, "ByteTrack", None)
    if peer is not None:
        p = peer(frame_rate=30)
        _report(
            "supervision sv.ByteTrack, 30 objects",
            _time(lambda f, _: p.update_with_detections(dets[f]), frames),
        )


def bench_botsort(frames: int) -> None:
    w, h = 1920, 1080
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 256, (h // 4 + 4, (w + 5 * frames) // 4 + 4), dtype=np.uint8)
    world = cv2.cvtColor(cv2.resize(noise, (w + 5 * frames + 16, h + 16)), cv2.COLOR_GRAY2BGR)

    def image(f: int) -> np.ndarray:  # a decoded frame is one contiguous array
        return np.ascontiguousarray(world[8 : 8 + h, 5 * f : 5 * f + w])

    dets = _objects(30, frames, w, h, seed=2)
    for method in ("sparseOptFlow", "none"):
        t = build_tracker(BotSortConfig(gmc_method=method), 30.0)
        _report(
            f"BoT-SORT + {method}, 1080p, 30 objects",
            _time(lambda f, img, t=t: t.update(dets[f], img), frames, image),
        )


class _SvPeer(Tracker):
    """supervision's ByteTrack behind our interface (for the scene table only)."""

    def __init__(self, fps: float) -> None:
        self.fps = fps
        self.reset()

    def update(self, detections: sv.Detections, image: np.ndarray | None = None) -> sv.Detections:
        return self.t.update_with_detections(detections)

    def reset(self) -> None:
        self.t = sv.ByteTrack(frame_rate=int(self.fps))


def scene_table() -> None:
    import scenes

    trackers: dict[str, Callable[[MotSequence], Tracker]] = {
        "bytetrack": lambda s: build_tracker(ByteTrackConfig(), s.fps),
        "botsort": lambda s: build_tracker(BotSortConfig(), s.fps),
    }
    if hasattr(sv, "ByteTrack"):
        trackers["sv.ByteTrack"] = lambda s: _SvPeer(s.fps)
    print(
        f"\n{'scene':12s} {'tracker':13s} {'HOTA':>6s} {'MOTA':>6s} {'IDF1':>6s} "
        f"{'IDs':>4s} {'Frag':>5s} {'ms':>7s}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for scene, images in [
            (scenes.crossing(), False),
            (scenes.occlusion(40), False),
            (scenes.flicker(), False),
            (scenes.crowd(), False),
            (scenes.pan(), True),
        ]:
            seq = read_sequence(scene.write(Path(tmp), images=images))
            for name, make in trackers.items():
                res, ms = run_tracker(seq, make(seq))
                assert seq.gt is not None
                s = evaluate(seq.gt, res)
                print(
                    f"{seq.name:12s} {name:13s} {100 * s['HOTA']:6.1f} {100 * s['mota']:6.1f} "
                    f"{100 * s['idf1']:6.1f} {s['num_switches']:4.0f} "
                    f"{s['num_fragmentations']:5.0f} {ms:7.3f}"
                )


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--frames", type=int, default=300, help="frames per timing run")
    ap.add_argument("--no-scenes", action="store_true", help="skip the synthetic scene table")
    args = ap.parse_args()
    print(f"opencv threads: {cv2.getNumThreads()}")
    bench_bytetrack(args.frames)
    bench_botsort(min(args.frames, 120))
    if not args.no_scenes:
        scene_table()
    return 0


if __name__ == "__main__":
    sys.exit(main())
