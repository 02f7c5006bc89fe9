"""A child process that writes synthetic frames to one sink until SIGTERM, then stops it.

Usage: python writer_child.py TYPE PATH   (TYPE: jsonl, mot or video). It prints
``wrote N`` after each frame and ``stopped N`` after ``sink.stop()``.
"""

from __future__ import annotations

import signal
import sys
import threading
import time


def main(kind: str, path: str) -> int:
    from pydantic import TypeAdapter
    from sinkdata import result

    from edgewatch.config import SinkConfig
    from edgewatch.metrics import Metrics
    from edgewatch.sinks import build_sink

    cfg = TypeAdapter(SinkConfig).validate_python({"type": kind, "path": path})
    sink = build_sink(cfg, Metrics())
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    sink.start()
    n = 0
    while not stop.is_set():
        sink.write(result(n, masks=True, labels=True))
        n += 1
        print(f"wrote {n}", flush=True)
        time.sleep(0.005)
    sink.stop()
    print(f"stopped {n}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
