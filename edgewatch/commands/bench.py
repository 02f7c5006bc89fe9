"""``edgewatch bench [CONFIG]``: how fast the model and the pipeline run on this machine.

Two measurements:

1. **stages** (always): N frames of ``--video`` are decoded (timed); the
   detector micro-benchmark (:mod:`edgewatch.pipeline.models.bench`) times the
   detector's own ``preprocess`` / ``infer`` / ``postprocess`` on one batch of
   ``--batch`` of them, N / batch times; then the frames are detected in order
   and the configured tracker's ``update`` is timed. Reported as median and
   90th-percentile milliseconds per frame; *inference fps* is
   ``1000 / median inference ms`` (the model alone, same preprocessing as ``run``).
2. **end to end** (with a CONFIG): the real :class:`~edgewatch.pipeline.runner.
   Pipeline` runs the config (file sources limited to ``--frames`` frames and not
   paced), its stages overlapping in threads; reported as frames per second of
   wall time, mean stage ms and drops.

``--json`` prints one object for scripts instead of the table.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgewatch.errors import ConfigError, SourceError

STAGES = ("decode", "preprocess", "inference", "postprocess", "track")


def register(sub: Any) -> None:
    p = sub.add_parser("bench", help="measure model and pipeline speed", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", nargs="?", help="pipeline YAML: also run it end to end")
    p.add_argument("--model", help="ONNX detector (default: the config's detector.model)")
    p.add_argument("--video", help="video for the stage benchmark (default: the config's "
                                   "first file source, else the sample vtest.avi)")
    p.add_argument("--frames", type=_positive, default=100, help="frames to time (default 100)")
    p.add_argument("--batch", type=_positive, default=None,
                   help="frames per inference call (default: the config's detector.batch or 1)")
    p.add_argument("--device", default=None, help="auto|cpu|cuda[:N]|tensorrt|openvino")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, as for run")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=main)


def _positive(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


# --------------------------------------------------------------------------- setup


def _detector_config(args: argparse.Namespace, cfg: Any) -> Any:
    from edgewatch.config import DetectorConfig

    update: dict[str, Any] = {}
    if args.model:
        update["model"] = Path(args.model)
    if args.batch:
        update["batch"] = args.batch
    if args.device:
        update["device"] = args.device
    data = cfg.detector.model_dump() | update if cfg is not None else update
    if "model" not in data:
        raise ConfigError("bench needs a model",
                          [("--model", "give --model MODEL.onnx or a CONFIG")])
    try:
        return DetectorConfig.model_validate(data)
    except ValueError as e:
        raise ConfigError("bad bench options", [("--model/--batch/--device", str(e))]) from None


def _video(args: argparse.Namespace, cfg: Any) -> Path:
    if args.video:
        return Path(args.video)
    if cfg is not None:
        from edgewatch.config import SourceKind

        for s in cfg.sources:
            if s.kind is SourceKind.FILE:
                return Path(s.uri)
    from edgewatch.samples import default_dir

    sample = default_dir() / "vtest.avi"
    if sample.is_file():
        return sample
    raise ConfigError("bench needs a video", [("--video", "give --video FILE (no file source in "
                                               "the config and no samples/vtest.avi)")])


def read_frames(path: Path, n: int) -> tuple[list[np.ndarray], list[float]]:
    """First ``n`` frames (BGR) of a video and the decode ms of each."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise SourceError(f"cannot open video {path}")
    frames: list[np.ndarray] = []
    ms: list[float] = []
    try:
        while len(frames) < n:
            t0 = time.perf_counter()
            ok, frame = cap.read()
            if not ok:
                break
            ms.append((time.perf_counter() - t0) * 1000)
            frames.append(frame)
    finally:
        cap.release()
    if not frames:
        raise SourceError(f"{path}: no frame could be decoded")
    return frames, ms


# --------------------------------------------------------------------------- stage bench


def track_ms(det: Any, tracker: Any, frames: Sequence[np.ndarray]) -> tuple[list[float], float]:
    """Tracker ``update`` ms per frame over the detections of ``frames`` in order,
    and the mean detections per frame (the detector runs once per frame here)."""
    times: list[float] = []
    found = 0
    for frame in frames:
        (d,) = det.predict([frame])
        found += len(d)
        t0 = time.perf_counter()
        if tracker is not None:
            tracker.update(d, frame)
        times.append((time.perf_counter() - t0) * 1000)
    return times, found / max(len(frames), 1)


def summarize(samples: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Median and 90th percentile ms per stage.

    >>> summarize({"inference": [10.0, 20.0, 30.0]})["inference"]
    {'p50': 20.0, 'p90': 28.0}
    """
    return {k: {"p50": float(np.percentile(v, 50)), "p90": float(np.percentile(v, 90))}
            for k, v in samples.items() if v}


def _stage_report(args: argparse.Namespace, cfg: Any) -> dict[str, Any]:
    """Decode and track timed over the video's frames in order; preprocess,
    inference and postprocess by the detector micro-benchmark
    (:func:`edgewatch.pipeline.models.bench.bench_loaded`) on one batch of them."""
    from edgewatch.config import ByteTrackConfig
    from edgewatch.pipeline.models.bench import bench_loaded
    from edgewatch.pipeline.models.yolo import YoloDetector
    from edgewatch.trackers import build_tracker

    dcfg = _detector_config(args, cfg)
    video = _video(args, cfg)
    frames, decode_ms = read_frames(video, args.frames)
    det = YoloDetector(dcfg)
    det.load()
    batch = det.max_batch
    images = (frames * batch)[:batch]  # a short video still fills one batch
    micro = bench_loaded(det, images, n=max(len(frames) // batch, 1))
    tracker = build_tracker(cfg.tracker if cfg is not None else ByteTrackConfig.model_validate({}),
                            30.0)
    track, per_frame = track_ms(det, tracker, frames)
    stats = summarize({"decode": decode_ms, "track": track})
    for name in ("preprocess", "inference", "postprocess"):  # ms per call -> per frame
        stats[name] = {"p50": micro[name] / batch, "p90": micro[f"{name}_p90"] / batch}
    stats = {k: stats[k] for k in STAGES}
    infer = stats["inference"]["p50"]
    total = sum(s["p50"] for s in stats.values())
    return {
        "model": str(dcfg.model), "video": str(video), "frames": len(frames),
        "batch": batch, "imgsz": list(det.imgsz), "providers": det.providers,
        "detections_per_frame": per_frame, "stage_ms": stats,
        "inference_fps": 1000.0 / infer if infer > 0 else 0.0,
        "sequential_fps": 1000.0 / total if total > 0 else 0.0,
    }


# --------------------------------------------------------------------------- end to end


def _pipeline_report(args: argparse.Namespace, cfg: Any) -> dict[str, Any]:
    from edgewatch.pipeline.runner import Pipeline

    sources = []
    for s in cfg.sources:
        upd: dict[str, Any] = {}
        if not s.live:
            upd = {"max_frames": min(args.frames, s.max_frames or args.frames), "realtime": False,
                   "loop": False}
        sources.append(s.model_copy(update=upd))
    with tempfile.TemporaryDirectory(prefix="edgewatch-bench-") as tmp:
        run_cfg = cfg.model_copy(update={
            "sources": sources, "detector": _detector_config(args, cfg),
            "sinks": _bench_sinks(cfg.sinks, Path(tmp)), "health": None,
        })
        summary = Pipeline(run_cfg).run()
    return {
        "frames": dict(summary.frames), "elapsed_s": summary.elapsed_s, "fps": summary.fps,
        "stage_ms": dict(summary.stage_ms), "sink_ms": dict(summary.sink_ms),
        "drops": dict(summary.drops),
        "failed_sources": dict(summary.failed_sources), "error": summary.error,
    }


def _bench_sinks(sinks: Sequence[Any], tmp: Path) -> list[Any]:
    """The config's sinks, doing the same work without touching its outputs.

    File sinks write into ``tmp`` (a benchmark must not overwrite a real run's
    results), ZeroMQ binds a free loopback port, display sinks are left out.
    """
    out = []
    for i, s in enumerate(sinks):
        if s.type == "display":
            continue
        if s.type == "zmq":
            out.append(s.model_copy(update={"endpoint": "tcp://127.0.0.1:*", "bind": True,
                                            "curve": None}))
        elif hasattr(s, "path"):
            out.append(s.model_copy(update={"path": str(tmp / f"{i}-{Path(s.path).name}")}))
        else:
            out.append(s)
    return out


def format_report(report: dict[str, Any]) -> str:
    """The human-readable table of :func:`main`'s report."""
    st = report["stages"]
    lines = [
        f"model  {st['model']}  (batch {st['batch']}, input {st['imgsz'][0]}x{st['imgsz'][1]}, "
        f"{', '.join(st['providers'])})",
        f"video  {st['video']}  ({st['frames']} frames)",
        "",
        f"{'stage':<12} {'p50 ms':>9} {'p90 ms':>9}   (per frame; "
        f"{st['detections_per_frame']:.1f} detections/frame)",
    ]
    for name in STAGES:
        s = st["stage_ms"][name]
        lines.append(f"{name:<12} {s['p50']:9.2f} {s['p90']:9.2f}")
    lines += ["", f"inference only:       {st['inference_fps']:7.1f} fps",
              f"all stages in a row:  {st['sequential_fps']:7.1f} fps"]
    pl = report.get("pipeline")
    if pl is not None:
        lines += ["", f"end to end (pipeline): {pl['fps']:7.1f} fps, "
                      f"{sum(pl['frames'].values())} frames in {pl['elapsed_s']:.2f} s"]
        lines += [f"  {k:<12} {v:9.2f} ms" for k, v in pl["stage_ms"].items()]
        lines += [f"  sink {k:<7} {v:9.2f} ms/message" for k, v in pl.get("sink_ms", {}).items()]
        drops = {k: v for k, v in pl["drops"].items() if v}
        lines.append("  drops: " + (", ".join(f"{k}={v:g}" for k, v in drops.items()) or "none"))
        if pl["error"]:
            lines.append(f"  error: {pl['error']}")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    cfg = None
    if args.config:
        from edgewatch.config import load_config

        cfg = load_config(args.config, args.overrides)
    report: dict[str, Any] = {"stages": _stage_report(args, cfg)}
    if cfg is not None:
        report["pipeline"] = _pipeline_report(args, cfg)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0
