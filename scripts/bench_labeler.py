#!/usr/bin/env python3
"""Pipeline fps on vtest.avi with and without the CLIP labeler.

The labeler is a full-size ViT-B/32 with random weights (real timing), exported
once by the test helper into ``.cache/edgewatch/test-assets`` (needs torch and
transformers). Each configuration runs the real pipeline on the same frames
and prints end-to-end fps and detector inference ms, so the cost of labeling
on the detector is visible. Target: <= 10 % lower fps with the labeler.

Usage::

    python scripts/bench_labeler.py [--frames 150] [--every 15]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "pipeline"))


def _run(text: str) -> tuple[float, dict[str, float], dict[str, float], float]:
    from edgewatch.config import parse_config
    from edgewatch.pipeline.runner import Pipeline

    pipe = Pipeline(parse_config(text))
    s = pipe.run()
    encoded = pipe.metrics.counter_sum("edgewatch_labeler_encoded_total")
    return s.fps, s.stage_ms, s.drops, encoded


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--every", type=int, default=15)
    ap.add_argument("--recipe", choices=["vit-b32", "tiny"], default="vit-b32")
    args = ap.parse_args()

    from clip_models import TINY, VIT_B32, build_clip_dir

    from edgewatch.samples import fetch_samples

    samples = fetch_samples()
    clip = build_clip_dir(VIT_B32 if args.recipe == "vit-b32" else TINY, seed=0)
    base = (
        f"sources: [{{id: v, uri: '{samples.video}', max_frames: {args.frames}}}]\n"
        f"detector: {{model: '{samples.model}', conf: 0.35}}\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        labeler = (
            f"labeler:\n  model: '{clip}'\n  labels: [pedestrian, cyclist, delivery worker]\n"
            f"  every: {args.every}\n  cache_dir: '{tmp}'\n"
        )
        rows = []
        for name, text in (
            ("without labeler", base),
            ("with labeler", base + labeler),
            ("without labeler (again)", base),
        ):
            fps, stages, drops, encoded = _run(text)
            rows.append((name, fps, stages.get("inference", 0.0), encoded, drops))
    print(f"{'run':26s} {'fps':>7s} {'infer ms':>9s} {'crops':>6s}  drops")
    for name, fps, inf, enc, drops in rows:
        print(f"{name:26s} {fps:7.2f} {inf:9.1f} {int(enc):6d}  {drops or ''}")
    ref = (rows[0][1] + rows[2][1]) / 2
    print(f"labeler cost: {100 * (1 - rows[1][1] / ref):.1f} % of pipeline fps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
