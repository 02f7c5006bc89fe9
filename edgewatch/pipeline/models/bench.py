"""Micro-benchmark of the detector stages (used by ``edgewatch bench``).

>>> # stats = bench_detector(cfg, [frame], n=50)
>>> # stats["preprocess"], stats["inference"], stats["postprocess"]  # ms per call
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from edgewatch.config import DetectorConfig
from edgewatch.metrics import Metrics
from edgewatch.pipeline.models.yolo import YoloDetector

STAGES = ("preprocess", "inference", "postprocess", "total")


def bench_loaded(
    detector: YoloDetector, images: Sequence[np.ndarray], n: int = 50, warmup: int = 3
) -> dict[str, float]:
    """Time ``n`` calls of each stage on ``images`` (one batch) with a loaded detector.

    Returns milliseconds per call: the median of each stage in
    :data:`STAGES`, the same with a ``_p90`` suffix, plus ``fps`` (images per
    second at the median total), ``batch`` (images per call) and
    ``detections`` (mean detections per image).
    """
    if n < 1:
        raise ValueError("n must be >= 1")
    times: dict[str, list[float]] = {s: [] for s in STAGES}
    found = 0
    for i in range(warmup + n):
        t0 = time.perf_counter()
        prepared = detector.preprocess(images)
        t1 = time.perf_counter()
        outputs = detector.infer(prepared)
        t2 = time.perf_counter()
        results = detector.postprocess(outputs, prepared)
        t3 = time.perf_counter()
        if i < warmup:
            continue
        found += sum(len(r) for r in results)
        for stage, dt in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t3 - t0), strict=True):
            times[stage].append(dt * 1000.0)
    stats: dict[str, float] = {}
    for stage, values in times.items():
        stats[stage] = float(np.median(values))
        stats[f"{stage}_p90"] = float(np.percentile(values, 90))
    stats["fps"] = len(images) * 1000.0 / stats["total"] if stats["total"] > 0 else float("inf")
    stats["batch"] = float(len(images))
    stats["detections"] = found / (n * max(len(images), 1))
    return stats


def bench_detector(
    cfg: DetectorConfig, images: Sequence[np.ndarray], n: int = 50, metrics: Metrics | None = None
) -> dict[str, float]:
    """Load the detector of ``cfg`` and :func:`bench_loaded` it on ``images``.

    ``images`` are BGR uint8 HxWx3 frames run as one batch per call (give
    ``cfg.batch`` frames to measure batching). Adds ``load`` (ms, including
    the warm-up inference).
    """
    detector = YoloDetector(cfg, metrics)
    t0 = time.perf_counter()
    detector.load()
    load_ms = (time.perf_counter() - t0) * 1000.0
    stats = bench_loaded(detector, images, n)
    stats["load"] = load_ms
    return stats
