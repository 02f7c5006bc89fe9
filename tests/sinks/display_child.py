"""A child process showing two sources in a DisplaySink until the user quits (or 30 s).

Prints ``shown <window names>`` once both windows are up, then ``quit <on_quit calls>``
(or ``timeout``) and ``stopped``. Run with DISPLAY set.
"""

from __future__ import annotations

import sys
import threading
import time


def main() -> int:
    from sinkdata import result

    from edgewatch.config import DisplaySinkConfig
    from edgewatch.metrics import Metrics
    from edgewatch.sinks.display import DisplaySink

    calls: list[float] = []
    quit_event = threading.Event()

    def on_quit() -> None:
        calls.append(time.monotonic())
        quit_event.set()

    sink = DisplaySink(DisplaySinkConfig(window="ew", scale=0.5), Metrics(), on_quit=on_quit)
    sink.start()
    deadline = time.monotonic() + 30
    i = 0
    announced = False
    while not quit_event.is_set() and time.monotonic() < deadline:
        sink.write(result(i, "cam", width=160, height=120, keypoints=17, labels=True))
        sink.write(result(i, "door", width=120, height=90, masks=True))
        i += 1
        if not announced and len(sink.windows) == 2:
            print("shown", "|".join(sink.windows), flush=True)
            announced = True
        time.sleep(0.01)
    time.sleep(0.3)  # a second on_quit call would land here
    print(f"quit {len(calls)}" if calls else "timeout", flush=True)
    sink.write(result(i, "cam"))  # ignored after quit, must not raise
    sink.stop()
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
