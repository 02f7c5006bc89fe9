#!/usr/bin/env python3
"""Pre- and post-processing milliseconds of the YOLO runtime at 640.

Preprocessing (letterbox + HWC->CHW + scale) is timed on real vtest.avi frames
(768x576) and on the same frames resized to 1920x1080. Postprocessing (decode,
class-aware NMS, scaling to source pixels, and for segment the masks) is timed
on three outputs:

- ``real``: the sample detector's own outputs on vtest.avi frames (1x6x8400);
- ``coco``: a COCO-shaped detect head (1x84x8400) with 20 objects, each seen by
  15 overlapping anchors (what a real head emits), built as an ONNX model at
  run time (tests/pipeline/yolo_onnx_builders.py);
- ``segment``: a COCO-shaped segment head (1x116x8400 + 1x32x160x160
  prototypes) with 20 instances, masks decoded at the source size.

    python scripts/bench_decode.py [--frames 30] [--repeat 50]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "pipeline"))  # yolo_onnx_builders


def _median_ms(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return statistics.median(times), times[int(0.9 * (len(times) - 1))]


def _heads(n_obj: int, nc: int, nm: int, rng: np.random.Generator) -> np.ndarray:
    """(1, 4+nc+nm, 8400): n_obj objects, 15 jittered anchors each, low noise elsewhere."""
    out = np.zeros((1, 4 + nc + nm, 8400), np.float32)
    out[0, 4 : 4 + nc] = rng.random((nc, 8400), dtype=np.float32) * 0.02
    out[0, :4] = np.array([[320], [320], [20], [20]], np.float32)
    k = 0
    for _ in range(n_obj):
        cx, cy = rng.uniform(60, 580, 2)
        w, h = rng.uniform(30, 160, 2)
        cls = int(rng.integers(nc))
        coef = rng.normal(0, 1, nm).astype(np.float32)
        for _ in range(15):
            out[0, :4, k] = (cx + rng.normal(0, 3), cy + rng.normal(0, 3), w, h)
            out[0, 4 + cls, k] = rng.uniform(0.3, 0.95)
            out[0, 4 + nc :, k] = coef
            k += 1
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=30, help="vtest.avi frames to use")
    ap.add_argument("--repeat", type=int, default=50, help="timed calls per measurement")
    args = ap.parse_args()

    import cv2
    from yolo_onnx_builders import build_model, ultralytics_metadata

    from edgewatch.commands.bench import read_frames
    from edgewatch.config import DetectorConfig
    from edgewatch.pipeline.models.yolo import YoloDetector
    from edgewatch.samples import fetch_samples

    s = fetch_samples()
    frames, _ = read_frames(s.video, args.frames)
    big = [cv2.resize(f, (1920, 1080)) for f in frames]
    real = YoloDetector(DetectorConfig(model=s.model, intra_op_num_threads=None))
    real.load()
    print(f"{'measurement':44s} {'median ms':>9s} {'p90 ms':>7s}")
    for label, imgs in (("768x576", frames), ("1920x1080", big)):
        it = iter(range(10**9))

        def pre(imgs: list[np.ndarray] = imgs, it: object = it) -> object:
            return real.preprocess([imgs[next(it) % len(imgs)]])  # type: ignore[call-overload]

        med, p90 = _median_ms(pre, args.repeat)
        print(f"{'preprocess ' + label + ' -> 640':44s} {med:9.2f} {p90:7.2f}")

    outs = []
    for f in frames:
        p = real.preprocess([f])
        outs.append((real.infer(p), p))
    n_det = [len(real.postprocess(o, p)[0]) for o, p in outs]
    it = iter(range(10**9))
    med, p90 = _median_ms(lambda: real.postprocess(*outs[next(it) % len(outs)]), args.repeat)
    name = f"postprocess real detector (6x8400, {np.mean(n_det):.0f} dets)"
    print(f"{name:44s} {med:9.2f} {p90:7.2f}")

    rng = np.random.default_rng(0)
    names = {i: f"c{i}" for i in range(80)}
    with tempfile.TemporaryDirectory() as tmp:
        for task, nm in (("detect", 0), ("segment", 32)):
            outputs = {"output0": _heads(20, 80, nm, rng)}
            if nm:
                outputs["output1"] = rng.normal(0, 1, (1, 32, 160, 160)).astype(np.float32)
            model = build_model(Path(tmp) / f"{task}.onnx", outputs, imgsz=(640, 640),
                                metadata=ultralytics_metadata(task, names, (640, 640)))
            det = YoloDetector(DetectorConfig(model=model, conf=0.25))
            det.load()
            for label, img in (("768x576", frames[0]), ("1920x1080", big[0])):
                p = det.preprocess([img])
                o = det.infer(p)
                n = len(det.postprocess(o, p)[0])
                med, p90 = _median_ms(lambda o=o, p=p, det=det: det.postprocess(o, p), args.repeat)
                name = f"postprocess coco {task} {label} ({n} dets)"
                print(f"{name:44s} {med:9.2f} {p90:7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
