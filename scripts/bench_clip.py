#!/usr/bin/env python3
"""Crops per second of edgewatch's CLIP image encoder on a full-size ViT-B/32.

Random weights give real timing: the architecture is transformers' ``CLIPConfig``
defaults (ViT-B/32, 224 px, 512-d), exported once to ONNX into
``.cache/edgewatch/test-assets`` (needs ``torch`` and ``transformers``; about
600 MB on disk). Crops are real person-sized boxes cut from the sample footage
(``samples/vtest.avi``, else ``/tmp/vtest.avi``), or noise when it is missing.

Usage::

    python scripts/bench_clip.py [--batches 1 8 32] [--seconds 10] [--threads 1] [--device cpu]
    python scripts/bench_clip.py --model-dir models/clip-vit-b32   # a fetched model instead
    python scripts/bench_clip.py --recipe tiny --seconds 0.2      # smoke run of the script

``--threads`` defaults to 1, the labeler's ``intra_op_num_threads``; 0 is ORT's
default (one thread per core).

Reports, per batch size, preprocessing (PIL bicubic + normalise) and encoder
crops/s, and the end-to-end rate of ``ClipModel.encode_images``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "pipeline"))  # clip_models: the test-time exporter


def _crops(n: int) -> list[np.ndarray]:
    import cv2

    for p in (REPO / "samples" / "vtest.avi", Path("/tmp/vtest.avi")):
        cap = cv2.VideoCapture(str(p))
        ok, img = cap.read()
        cap.release()
        if ok:
            rng = np.random.default_rng(0)
            out = []
            for _ in range(n):
                x, y = int(rng.integers(0, 600)), int(rng.integers(0, 300))
                w, h = int(rng.integers(40, 160)), int(rng.integers(80, 270))
                out.append(img[y : y + h, x : x + w].copy())
            return out
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (180, 80, 3), dtype=np.uint8) for _ in range(n)]


def _rate(fn: object, items: int, seconds: float) -> float:
    """Items per second of ``fn()`` (which handles ``items`` items), after one warm-up call."""
    fn()  # type: ignore[operator]
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn()  # type: ignore[operator]
        done += items
    return done / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--seconds", type=float, default=10.0, help="timing per measurement")
    ap.add_argument("--threads", type=int, default=1, help="ORT intra-op threads (0: ORT default)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model-dir", type=Path, default=None, help="default: export --recipe")
    ap.add_argument("--recipe", choices=["vit-b32", "tiny"], default="vit-b32",
                    help="random-weight CLIP to export when no --model-dir")
    args = ap.parse_args()

    from edgewatch.pipeline.models.clip import ClipModel

    if args.model_dir is None:
        from clip_models import TINY, VIT_B32, build_clip_dir

        t0 = time.perf_counter()
        args.model_dir = build_clip_dir(VIT_B32 if args.recipe == "vit-b32" else TINY, seed=0)
        print(f"model dir {args.model_dir} ready in {time.perf_counter() - t0:.1f} s")
    model = ClipModel.load(args.model_dir, device=args.device, intra_op_num_threads=args.threads)
    print(
        f"image {model.image_size}px, embedding {model.embed_dim}, threads {args.threads or 'auto'}"
    )
    print(f"{'batch':>5} {'preproc/s':>10} {'encoder/s':>10} {'end2end/s':>10} {'ms/batch':>9}")
    for b in args.batches:
        crops = _crops(b)
        pixels = np.stack([model.preprocess(c) for c in crops])
        pre = _rate(lambda crops=crops: [model.preprocess(c) for c in crops], b, args.seconds / 4)
        enc = _rate(lambda pixels=pixels: model.encode_pixels(pixels), b, args.seconds)
        e2e = _rate(lambda crops=crops: model.encode_images(crops), b, args.seconds)
        print(f"{b:>5} {pre:>10.1f} {enc:>10.1f} {e2e:>10.1f} {1000 * b / e2e:>9.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
