#!/usr/bin/env python3
"""Capture-to-publish latency of live sources: p50/p95/max, fps and drops per source.

The goal (daemon issue): with cameras faster than the detector, frames are
dropped (oldest first, counted) and latency stays bounded instead of growing
with a backlog.

Each scenario runs the whole pipeline (real sample detector
``samples/models/fall_detector.onnx``, ByteTrack, no sinks) on N live sources
for ``--seconds`` after ``--warmup`` seconds. A live source is
``samples/vtest.avi`` (768x576, 10 fps) as a realtime-paced, looping file
source, which behaves like a camera: its queue drops the oldest frame when
the detector is behind. With ``--rtsp`` the sources are instead N clients of
the RTSP test server (tests/fixtures/rtsp_server.py, GStreamer under
/usr/bin/python3) streaming the same footage at the same size and rate.

Latency is the pipeline's own per-frame ``timing_ms.total``: from the frame's
capture (its wall time when decoded) to its result being handed to the sinks.
For every source it prints frames published in the window, fps, latency p50 /
p95 / max (ms) and frames dropped (source hand-off and queue); then all
sources together, and p95 over the window's first and second halves: a latency
that grows between them points at a backlog.

Usage::

    python scripts/bench_latency.py [--seconds 60] [--warmup 5] [--sources 1,8] [--rtsp]
    python scripts/bench_latency.py --seconds 15 --warmup 3        # smoke run

Timing numbers only mean something on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # sources.sourcekit: the RTSP test server

CAMERA_FPS = 10  # vtest.avi's rate, and the RTSP server's


@dataclass
class Window:
    """Per-source latencies (ms) published between ``start`` and ``end`` (monotonic)."""

    start: float = float("inf")
    end: float = float("inf")
    lock: threading.Lock = field(default_factory=threading.Lock)
    samples: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    def record(self, source: str, total_ms: float) -> None:
        now = time.monotonic()
        if self.start <= now < self.end:
            with self.lock:
                self.samples.setdefault(source, []).append((now, total_ms))


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def _config(uris: list[str], args: argparse.Namespace) -> object:
    from edgewatch.config import PipelineConfig

    detector: dict[str, object] = {"model": str(args.model)}
    if args.threads:
        detector["intra_op_num_threads"] = args.threads
    return PipelineConfig.model_validate(
        {
            "sources": [
                {
                    "id": f"cam{i}",
                    "uri": uri,
                    "realtime": True,
                    "loop": True,
                    "queue_size": args.queue_size,
                }
                for i, uri in enumerate(uris)
            ],
            "detector": detector,
            # Queued frames are drained at stop (8 queues of 4 at ~5 fps take seconds):
            # a generous deadline lets every thread end before the next scenario.
            "shutdown_timeout": 60,
        }
    )


def run_scenario(uris: list[str], args: argparse.Namespace) -> None:
    from edgewatch.config import PipelineConfig
    from edgewatch.pipeline.runner import Pipeline

    cfg = _config(uris, args)
    assert isinstance(cfg, PipelineConfig)
    ids = [s.id for s in cfg.sources]
    win = Window()
    pipe = Pipeline(cfg, on_result=lambda r: win.record(r.frame.source_id, r.timing_ms["total"]))
    pipe.start()
    try:
        time.sleep(args.warmup)
        dropped0 = {s: pipe.metrics.counter_sum("edgewatch_drops_total", source=s) for s in ids}
        win.start = time.monotonic()
        win.end = win.start + args.seconds
        time.sleep(args.seconds)
        dropped = {
            s: pipe.metrics.counter_sum("edgewatch_drops_total", source=s) - dropped0[s]
            for s in ids
        }
        health = pipe.health()
    finally:
        pipe.stop()
        pipe.shutdown()
    with win.lock:
        samples = {s: list(win.samples.get(s, [])) for s in ids}
    kind = "RTSP" if uris[0].startswith("rtsp://") else "realtime file"
    print(
        f"\n== {len(ids)} live source(s) ({kind}, {CAMERA_FPS} fps each), "
        f"{args.seconds:g} s after {args.warmup:g} s warm-up, queue_size {args.queue_size} =="
    )
    print(f"{'source':8s} {'frames':>7s} {'fps':>6s} {'p50 ms':>8s} {'p95 ms':>8s} "
          f"{'max ms':>8s} {'drops':>6s}")
    every: list[float] = []
    for sid in ids:
        lat = [ms for _, ms in samples[sid]]
        every += lat
        print(f"{sid:8s} {len(lat):7d} {len(lat) / args.seconds:6.2f} {_pct(lat, 50):8.0f} "
              f"{_pct(lat, 95):8.0f} {max(lat, default=float('nan')):8.0f} "
              f"{int(dropped[sid]):6d}")
    print(f"{'all':8s} {len(every):7d} {len(every) / args.seconds:6.2f} {_pct(every, 50):8.0f} "
          f"{_pct(every, 95):8.0f} {max(every, default=float('nan')):8.0f} "
          f"{int(sum(dropped.values())):6d}")
    mid = win.start + args.seconds / 2
    first = [ms for s in ids for t, ms in samples[s] if t < mid]
    second = [ms for s in ids for t, ms in samples[s] if t >= mid]
    offered = CAMERA_FPS * len(ids) * args.seconds
    print(f"offered ~{offered:.0f} frames, published {len(every)} "
          f"({100 * len(every) / offered:.0f} %), dropped {int(sum(dropped.values()))}")
    print(f"p95 first half {_pct(first, 95):.0f} ms, second half {_pct(second, 95):.0f} ms "
          "(growth means a backlog)")
    states = {s: v["state"] for s, v in health["sources"].items()}  # type: ignore[attr-defined]
    if set(states.values()) != {"streaming"}:
        print(f"source states at the end: {states}")


def main() -> int:
    from edgewatch.samples import default_dir

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="measured seconds per scenario")
    ap.add_argument("--warmup", type=float, default=5.0, help="seconds before measuring")
    ap.add_argument("--sources", default="1,8", help="comma-separated source counts")
    ap.add_argument("--queue-size", type=int, default=4, help="sources[].queue_size")
    ap.add_argument("--threads", type=int, default=0, help="detector intra_op_num_threads")
    ap.add_argument("--rtsp", action="store_true", help="sources from the RTSP test server")
    ap.add_argument("--video", type=Path, default=default_dir() / "vtest.avi")
    ap.add_argument("--model", type=Path, default=default_dir() / "models" / "fall_detector.onnx")
    args = ap.parse_args()
    for p in (args.video, args.model):
        if not p.is_file():
            print(f"{p} missing: run scripts/fetch-samples", file=sys.stderr)
            return 2
    counts = [int(n) for n in args.sources.split(",")]
    if not args.rtsp:
        for n in counts:
            run_scenario([str(args.video)] * n, args)
        return 0
    from sources.sourcekit import RtspServer, gst_missing, jpeg_frames
    from testkit import free_port

    why = gst_missing()
    if why:
        print(f"--rtsp: {why}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        pattern = jpeg_frames(args.video, Path(tmp), 100, (768, 576))
        server = RtspServer(free_port(), pattern, size=(768, 576), fps=CAMERA_FPS)
        server.start()
        try:
            for n in counts:
                run_scenario([server.url()] * n, args)
        finally:
            server.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
