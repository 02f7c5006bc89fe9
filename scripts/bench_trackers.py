#!/usr/bin/env python3
"""Tracker benchmarks: per-frame update time and scores, synthetic and on real detections.

    python scripts/bench_trackers.py [--frames 300] [--no-scenes]
    python scripts/bench_trackers.py --real 200 [--no-peer] [--peers-python PY]

Synthetic (default):

1. ByteTrack with 30 objects (update only, detections prepared beforehand);
2. BoT-SORT + sparseOptFlow GMC on 1920x1080 textured frames panning 5 px/frame
   (update including GMC), 30 objects;
3. HOTA / MOTA / IDF1 / ID switches of every tracker on the synthetic scenes of
   tests/trackers/scenes.py (with supervision's ``sv.ByteTrack`` beside them
   when the installed supervision still has it: 0.31 no longer does).

Real detections (``--real N``): the sample detector runs once over the first
N frames of samples/vtest.avi (``--conf``, default 0.1, so that ByteTrack's
low-score stage has work); the detections are cached in
``.cache/edgewatch/bench/``. Then ByteTrack and BoT-SORT (GMC ``none`` and
``sparseOptFlow``) are timed per update on them (the frames GMC needs are
decoded outside the timed call), and their distinct IDs and tracked objects
per frame are reported (vtest.avi has no ground truth).

Reference trackers on the same cached detections and frames, side by side,
when they are installed in a *separate* virtual environment (they are never
edgewatch dependencies; this script runs without them and says so)::

    python3 -m venv /tmp/peers
    /tmp/peers/bin/pip install ultralytics lap torch==2.13.0 supervision trackers

Ultralytics' ``BYTETracker`` / ``BOTSORT`` (fed the detections directly,
their own YAML defaults with ``track_buffer`` set to the frames edgewatch keeps
a lost track at this rate, since Ultralytics 8.4 no longer scales it by fps),
roboflow ``trackers``' ``ByteTrackTracker`` / ``BoTSORTTracker`` and
supervision's ``sv.ByteTrack`` if present. They run in a child process of the
peers' Python (``--peers-python``, default /tmp/peers/bin/python) that reads
the cached detections and never imports edgewatch.

Times are wall-clock medians, means and 95th percentiles in milliseconds per
frame (the first 5 frames are warm-up and not counted).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PEERS_PYTHON = Path("/tmp/peers/bin/python")
PEERS_INSTALL = (
    "python3 -m venv /tmp/peers && "
    "/tmp/peers/bin/pip install ultralytics lap torch==2.13.0 supervision trackers"
)
WARMUP = 5

# ---------------------------------------------------------------------- both venvs
# numpy and OpenCV only: this part also runs in the peers' venv.


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
    a = np.array(ts[WARMUP:] or ts) * 1000.0  # skip warm-up frames
    return float(np.median(a)), float(a.mean()), float(np.percentile(a, 95))


def _report(label: str, stats: tuple[float, float, float]) -> None:
    med, mean, p95 = stats
    print(f"{label:40s} median {med:6.3f}  mean {mean:6.3f}  p95 {p95:6.3f} ms")


class _Frames:
    """The first frames of a video, read in order (``frames(f)`` must ask f = 0, 1, ...)."""

    def __init__(self, video: Path) -> None:
        self.cap = cv2.VideoCapture(str(video))
        self.next = 0

    def __call__(self, f: int) -> np.ndarray:
        if f != self.next:
            raise ValueError(f"frames are read in order: asked {f}, next is {self.next}")
        ok, img = self.cap.read()
        if not ok:
            raise RuntimeError(f"cannot read frame {f}")
        self.next += 1
        return np.ascontiguousarray(img)


def _load_dets(path: Path) -> tuple[list[tuple[np.ndarray, np.ndarray, np.ndarray]], float]:
    """Per frame ``(xyxy float32 (K, 4), confidence (K,), class_id (K,))`` and the video fps."""
    with np.load(path) as z:
        frame, xyxy, conf, cls = z["frame"], z["xyxy"], z["confidence"], z["class_id"]
        n, fps = int(z["frames"]), float(z["fps"])
    return [(xyxy[frame == i], conf[frame == i], cls[frame == i]) for i in range(n)], fps


def _row(name: str, stats: tuple[float, float, float], ids: set[int], tracked: int, n: int) -> dict:
    return {"name": name, "stats": stats, "ids": len(ids), "tracked": tracked / max(n, 1)}


def _print_real(row: dict[str, Any]) -> None:
    if "skipped" in row:
        print(f"{row['name']:48s} skipped: {row['skipped']}")
        return
    med, mean, p95 = row["stats"]
    print(
        f"{row['name']:48s} {med:7.3f} {mean:7.3f} {p95:7.3f} {row['ids']:5d} {row['tracked']:8.2f}"
    )


# ---------------------------------------------------------------------- peer worker
# Runs in the peers' venv (``--peer-worker``): imports the reference trackers, never edgewatch.


class _UltraBoxes:
    """What Ultralytics' trackers read from ``Results.boxes``: conf, cls, xywh, mask indexing."""

    def __init__(self, xyxy: np.ndarray, conf: np.ndarray, cls: np.ndarray) -> None:
        self.xyxy, self.conf, self.cls = xyxy, conf, cls
        self.xywh = np.hstack([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]])

    def __len__(self) -> int:
        return len(self.conf)

    def __getitem__(self, idx: np.ndarray) -> _UltraBoxes:
        return _UltraBoxes(self.xyxy[idx], self.conf[idx], self.cls[idx])


def _peer_ultralytics(dets: list, fps: float, video: Path, keep_frames: int) -> Iterator[dict]:
    from types import SimpleNamespace

    import ultralytics
    import yaml
    from ultralytics.trackers.bot_sort import BOTSORT
    from ultralytics.trackers.byte_tracker import BYTETracker

    cfg_dir = Path(ultralytics.__file__).parent / "cfg" / "trackers"
    version = ultralytics.__version__
    for name, cls, yml, gmc in (
        ("BYTETracker", BYTETracker, "bytetrack.yaml", None),
        ("BOTSORT gmc none", BOTSORT, "botsort.yaml", "none"),
        ("BOTSORT gmc sparseOptFlow", BOTSORT, "botsort.yaml", "sparseOptFlow"),
    ):
        args = yaml.safe_load((cfg_dir / yml).read_text())
        args["track_buffer"] = keep_frames
        if gmc is not None:
            args["gmc_method"] = gmc
        t = cls(SimpleNamespace(**args))
        ids: set[int] = set()
        tracked = 0

        def update(f: int, img: np.ndarray | None, t: Any = t, ids: set[int] = ids) -> None:
            nonlocal tracked
            out = t.update(_UltraBoxes(*dets[f]), img)
            if len(out):
                ids.update(int(i) for i in out[:, 4])
                tracked += len(out)

        image = _Frames(video) if gmc not in (None, "none") else (lambda f: None)
        stats = _time(update, len(dets), image)
        yield _row(f"ultralytics {version} {name}", stats, ids, tracked, len(dets))


def _peer_roboflow(dets: list, fps: float, video: Path) -> Iterator[dict]:
    from importlib.metadata import version

    import supervision as sv
    import trackers

    common = {"lost_track_buffer": 30, "frame_rate": fps, "track_activation_threshold": 0.25}
    common |= {"high_conf_det_threshold": 0.25, "minimum_consecutive_frames": 2}
    off = {**common, "enable_cmc": False}
    for name, make, cmc in (
        ("ByteTrackTracker", lambda: trackers.ByteTrackTracker(**common), False),
        ("BoTSORTTracker cmc off", lambda: trackers.BoTSORTTracker(**off), False),
        ("BoTSORTTracker cmc sparseOptFlow", lambda: trackers.BoTSORTTracker(**common), True),
    ):
        t = make()
        ids: set[int] = set()
        tracked = 0

        def update(f: int, img: np.ndarray | None, t: Any = t, ids: set[int] = ids) -> None:
            nonlocal tracked
            xyxy, conf, cls = dets[f]
            d = sv.Detections(xyxy=xyxy, confidence=conf, class_id=cls)
            out = t.update(d, img) if img is not None else t.update(d)
            tid = out.tracker_id[out.tracker_id >= 0] if out.tracker_id is not None else []
            ids.update(int(i) for i in tid)
            tracked += len(tid)

        image = _Frames(video) if cmc else (lambda f: None)
        stats = _time(update, len(dets), image)
        yield _row(f"trackers {version('trackers')} {name}", stats, ids, tracked, len(dets))


def _peer_supervision(dets: list, fps: float, video: Path) -> Iterator[dict]:
    import supervision as sv

    if not hasattr(sv, "ByteTrack"):
        raise ImportError(f"supervision {sv.__version__} has no ByteTrack (removed in 0.31)")
    t = sv.ByteTrack(frame_rate=int(fps))
    ids: set[int] = set()
    tracked = 0

    def update(f: int, _img: np.ndarray | None) -> None:
        nonlocal tracked
        xyxy, conf, cls = dets[f]
        out = t.update_with_detections(sv.Detections(xyxy=xyxy, confidence=conf, class_id=cls))
        ids.update(int(i) for i in out.tracker_id)
        tracked += len(out)

    stats = _time(update, len(dets))
    yield _row(f"supervision {sv.__version__} ByteTrack", stats, ids, tracked, len(dets))


def peer_worker(argv: list[str]) -> int:
    """``--peer-worker DETS.npz VIDEO KEEP_FRAMES``: one JSON line per reference tracker."""
    dets_path, video, keep = Path(argv[0]), Path(argv[1]), int(argv[2])
    dets, fps = _load_dets(dets_path)
    runs: list[tuple[str, Callable[[], Iterator[dict]]]] = [
        ("ultralytics", lambda: _peer_ultralytics(dets, fps, video, keep)),
        ("trackers", lambda: _peer_roboflow(dets, fps, video)),
        ("supervision", lambda: _peer_supervision(dets, fps, video)),
    ]
    for name, run in runs:
        try:
            for row in run():
                print(json.dumps(row), flush=True)
        except ImportError as e:
            print(json.dumps({"name": name, "skipped": f"not importable: {e}"}), flush=True)
    return 0


if __name__ == "__main__" and sys.argv[1:2] == ["--peer-worker"]:
    sys.exit(peer_worker(sys.argv[2:]))

# ---------------------------------------------------------------------- edgewatch venv

import supervision as sv  # noqa: E402

sys.path.insert(0, str(ROOT / "tests" / "trackers"))

from edgewatch.config import BotSortConfig, ByteTrackConfig, DetectorConfig  # noqa: E402
from edgewatch.trackers import build_tracker  # noqa: E402
from edgewatch.trackers.base import Tracker  # noqa: E402
from edgewatch.trackers.mot import MotSequence, evaluate, read_sequence, run_tracker  # noqa: E402
from edgewatch.trackers.track import max_time_lost  # noqa: E402


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

    def coast(self, gap_s: float) -> None:
        """Not used here (no gaps in the scenes)."""


def scene_table() -> None:
    import scenes

    trackers: dict[str, Callable[[MotSequence], Tracker]] = {
        "bytetrack": lambda s: build_tracker(ByteTrackConfig(), s.fps),
        "botsort": lambda s: build_tracker(BotSortConfig(), s.fps),
    }
    if hasattr(sv, "ByteTrack"):
        trackers["sv.ByteTrack"] = lambda s: _SvPeer(s.fps)
    print(
        f"\n{'scene':14s} {'tracker':13s} {'HOTA':>6s} {'MOTA':>6s} {'IDF1':>6s} "
        f"{'IDs':>4s} {'Frag':>5s} {'ms':>7s}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for scene, images in [
            (scenes.crossing(), False),
            (scenes.occlusion(40), False),
            (scenes.flicker(), False),
            (scenes.crowd(), False),
            (scenes.crowd(occluded=True), False),
            (scenes.pan(), True),
        ]:
            seq = read_sequence(scene.write(Path(tmp), images=images))
            for name, make in trackers.items():
                res, ms = run_tracker(seq, make(seq))
                assert seq.gt is not None
                s = evaluate(seq.gt, res)
                print(
                    f"{seq.name:14s} {name:13s} {100 * s['HOTA']:6.1f} {100 * s['mota']:6.1f} "
                    f"{100 * s['idf1']:6.1f} {s['num_switches']:4.0f} "
                    f"{s['num_fragmentations']:5.0f} {ms:7.3f}"
                )


# ---------------------------------------------------------------------- real detections


def real_detections(video: Path, model: Path, n: int, conf: float) -> Path:
    """Detections of the first ``n`` frames of ``video`` by ``model`` (cached ``.npz``)."""
    vs, ms = video.stat(), model.stat()
    ident = f"{video.resolve()}:{vs.st_size}:{model.resolve()}:{ms.st_size}:{ms.st_mtime_ns}:{conf}"
    key = hashlib.sha256(ident.encode()).hexdigest()[:12]
    path = ROOT / ".cache" / "edgewatch" / "bench" / f"{video.stem}-{n}-{key}.npz"
    if path.is_file():
        print(f"detections: cached {path.relative_to(ROOT)}")
        return path
    from edgewatch.pipeline.models.yolo import YoloDetector

    det = YoloDetector(DetectorConfig(model=model, conf=conf, device="cpu"), None)
    det.load()
    cap = cv2.VideoCapture(str(video))
    fps = float(cap.get(cv2.CAP_PROP_FPS)) or 30.0
    cap.release()
    frames = _Frames(video)
    parts: list[sv.Detections] = []
    t0 = time.perf_counter()
    for i in range(n):
        parts.append(det.predict([frames(i)])[0])
    print(f"detections: {n} frames detected in {time.perf_counter() - t0:.1f} s")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(
        tmp,
        frame=np.concatenate([np.full(len(d), i) for i, d in enumerate(parts)]),
        xyxy=np.concatenate([d.xyxy.reshape(-1, 4) for d in parts]).astype(np.float32),
        confidence=np.concatenate([d.confidence for d in parts]).astype(np.float32),
        class_id=np.concatenate([d.class_id for d in parts]).astype(np.int64),
        frames=n,
        fps=fps,
    )
    tmp.replace(path)
    print(f"detections: written to {path.relative_to(ROOT)}")
    return path


def bench_real(n: int, conf: float, peers_python: Path | None) -> None:
    from edgewatch.samples import default_dir

    video, model = default_dir() / "vtest.avi", default_dir() / "models" / "fall_detector.onnx"
    if not (video.is_file() and model.is_file()):
        print(f"real detections: skipped ({video} or {model} missing: run scripts/fetch-samples)")
        return
    path = real_detections(video, model, n, conf)
    dets, fps = _load_dets(path)
    total = sum(len(c) for _, c, _ in dets)
    keep = max_time_lost(ByteTrackConfig().track_buffer, fps)
    print(
        f"\n{video.name}: {n} frames at {fps:g} fps, {total} detections "
        f"({total / max(n, 1):.2f}/frame, conf >= {conf}); lost tracks kept {keep} frames"
    )
    print(f"{'tracker':48s} {'median':>7s} {'mean':>7s} {'p95':>7s} {'IDs':>5s} {'tracked':>8s}")
    print(f"{'':48s} {'ms/frame':>23s} {'':5s} {'/frame':>8s}")
    inputs = [sv.Detections(xyxy=x, confidence=c, class_id=k) for x, c, k in dets]
    for name, cfg, with_images in (
        ("edgewatch ByteTrack", ByteTrackConfig(), False),
        ("edgewatch BoT-SORT gmc none", BotSortConfig(gmc_method="none"), False),
        ("edgewatch BoT-SORT gmc sparseOptFlow", BotSortConfig(gmc_method="sparseOptFlow"), True),
    ):
        t = build_tracker(cfg, fps)
        ids: set[int] = set()
        tracked = [0]

        def update(
            f: int, img: np.ndarray | None, t: Tracker = t, ids: set[int] = ids, n: list = tracked
        ) -> None:
            out = t.update(inputs[f], img)
            ids.update(int(i) for i in out.tracker_id)
            n[0] += len(out)

        image = _Frames(video) if with_images else (lambda f: None)
        _print_real(_row(name, _time(update, n, image), ids, tracked[0], n))
    bench_peers(path, video, keep, peers_python)


def bench_peers(dets: Path, video: Path, keep: int, peers_python: Path | None) -> None:
    """The reference trackers, in a child process of the peers' venv."""
    if peers_python is None:
        print("reference trackers: skipped (--no-peer)")
        return
    if not peers_python.is_file():
        print(f"reference trackers: skipped ({peers_python} not found; install: {PEERS_INSTALL})")
        return
    cmd = [str(peers_python), str(Path(__file__).resolve()), "--peer-worker"]
    # Ultralytics pip-installs what it misses at run time unless told not to.
    env = {**os.environ, "YOLO_AUTOINSTALL": "false", "YOLO_OFFLINE": "true"}
    r = subprocess.run(
        [*cmd, str(dets), str(video), str(keep)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    for line in r.stdout.splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a library's own chatter
        _print_real(row)
    if r.returncode:
        print(f"reference trackers: the worker failed (exit {r.returncode}):\n{r.stderr[-3000:]}")


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--frames", type=int, default=300, help="frames per timing run")
    ap.add_argument("--no-scenes", action="store_true", help="skip the synthetic scene table")
    ap.add_argument(
        "--real", type=int, metavar="N", help="only the real-detection bench, on N frames of vtest"
    )
    ap.add_argument("--conf", type=float, default=0.1, help="detector confidence for --real")
    ap.add_argument("--no-peer", action="store_true", help="skip the reference trackers")
    ap.add_argument(
        "--peers-python",
        type=Path,
        default=PEERS_PYTHON,
        help="python of the venv holding the reference trackers",
    )
    args = ap.parse_args()
    print(f"opencv threads: {cv2.getNumThreads()}")
    if args.real:
        bench_real(args.real, args.conf, None if args.no_peer else args.peers_python)
        return 0
    bench_bytetrack(args.frames)
    bench_botsort(min(args.frames, 120))
    if not args.no_scenes:
        scene_table()
    return 0


if __name__ == "__main__":
    sys.exit(main())
