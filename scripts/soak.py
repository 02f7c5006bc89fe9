#!/usr/bin/env python3
"""Soak: 4 looping RTSP cameras for N minutes, the server restarted every M minutes.

Starts the test RTSP server (tests/fixtures/rtsp_server.py, GStreamer under
/usr/bin/python3; `scripts/ci-deps` installs it) on loopback, runs the real
pipeline on 4 sources of it with a tiny generated detector (the point is leaks,
not model speed; pass --model for a real one), kills and restarts the server
every --restart-every minutes, and prints RSS, threads and open file
descriptors every 30 s, then the growth between the first and the last
quarter of the run. Flat means no leak.

    python scripts/soak.py [--minutes 30] [--restart-every 2] [--model M.onnx]
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "pipeline"))
SERVER = REPO / "tests" / "fixtures" / "rtsp_server.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _frames(video: Path, out: Path) -> str:
    import cv2

    cap = cv2.VideoCapture(str(video))
    for i in range(50):
        ok, img = cap.read()
        if not ok:
            break
        cv2.imwrite(str(out / f"f_{i:05d}.jpg"), cv2.resize(img, (384, 288)))
    cap.release()
    return str(out / "f_%05d.jpg")


def _server(port: int, frames: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            "/usr/bin/python3",
            str(SERVER),
            "--port",
            str(port),
            "--path",
            "/cam",
            "--frames",
            frames,
            "--fps",
            "10",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != b"READY":
        raise SystemExit("rtsp_server.py did not start (run scripts/ci-deps)")
    return proc


def _tiny_model(d: Path) -> Path:
    import numpy as np
    from yolo_onnx_builders import build_model, detect_output, ultralytics_metadata

    boxes = np.array([[100, 100, 40, 80], [200, 150, 50, 90]], np.float32)
    scores = np.array([[0.9, 0.0], [0.8, 0.0]], np.float32)
    return build_model(
        d / "tiny.onnx",
        {"output0": detect_output(boxes, scores, 2100)},
        metadata=ultralytics_metadata(),
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--restart-every", type=float, default=2)
    ap.add_argument("--model", type=Path, default=None)
    args = ap.parse_args()

    import logging

    from edgewatch.config import parse_config
    from edgewatch.logsetup import setup_logging
    from edgewatch.pipeline.runner import Pipeline
    from edgewatch.samples import fetch_samples

    setup_logging(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        frames = _frames(fetch_samples().video, tmp)
        model = args.model or _tiny_model(tmp)
        port = _free_port()
        server = _server(port, frames)
        srcs = "\n".join(
            f"  - {{id: cam{i}, uri: 'rtsp://127.0.0.1:{port}/cam', stall_timeout: 5,"
            " reconnect: {initial: 0.5, max: 5}}"
            for i in range(4)
        )
        cfg = parse_config(
            f"sources:\n{srcs}\ndetector: {{model: '{model}'}}\n"
            f"sinks:\n  - {{type: jsonl, path: '{tmp}/{{source}}.jsonl'}}\n"
        )
        pipe = Pipeline(cfg)
        pipe.start()
        start = time.monotonic()
        end = start + args.minutes * 60
        next_restart = start + args.restart_every * 60
        samples: list[tuple[float, float, int, int]] = []
        restarts = 0
        print(f"{'t_min':>6s} {'rss_mb':>8s} {'threads':>8s} {'fds':>5s} {'frames':>8s} restarts")
        try:
            while time.monotonic() < end:
                time.sleep(min(30.0, max(0.1, end - time.monotonic())))
                now = time.monotonic()
                if now >= next_restart:
                    server.send_signal(signal.SIGKILL)
                    server.wait(10)
                    time.sleep(5)
                    server = _server(port, frames)
                    restarts += 1
                    next_restart = now + args.restart_every * 60
                row = (
                    (now - start) / 60,
                    _rss_mb(),
                    threading.active_count(),
                    len(os.listdir("/proc/self/fd")),
                )
                samples.append(row)
                total = sum(pipe.summary().frames.values())
                print(
                    f"{row[0]:6.1f} {row[1]:8.1f} {row[2]:8d} {row[3]:5d} {total:8d} {restarts}",
                    flush=True,
                )
        finally:
            pipe.stop()
            pipe.shutdown()
            server.send_signal(signal.SIGKILL)
            server.wait(10)
    q = max(1, len(samples) // 4)
    first, last = samples[:q], samples[-q:]
    for name, idx in (("rss_mb", 1), ("threads", 2), ("fds", 3)):
        a = sum(r[idx] for r in first) / len(first)
        b = sum(r[idx] for r in last) / len(last)
        print(f"{name}: first quarter {a:.1f}, last quarter {b:.1f}, growth {b - a:+.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
