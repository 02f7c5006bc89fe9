"""Display sink: one OpenCV window per source, drawn like the video sink.

Every OpenCV HighGUI call (``imshow``, ``waitKey``, window queries, closing)
happens on one GUI thread owned by the sink, whichever threads call
``start``/``write``/``stop``; ``write`` only hands the newest annotated frame
of its source to that thread, so a slow window never delays the pipeline and
the window stays responsive between frames.

Pressing ``q`` or ``Esc`` in a window, or closing one, requests a stop: the
``on_quit`` callback passed by the runner is called once (in a thread of
its own, so it may stop the runner and this sink) and
:attr:`DisplaySink.quit_requested` is set; no window is shown after that.

:meth:`DisplaySink.start` first checks that a display can be opened, in a
short-lived subprocess (a Qt build of OpenCV aborts the whole process when
it cannot connect), and raises :class:`~edgewatch.errors.SinkError` otherwise.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable

import cv2
import numpy as np

from edgewatch.annotate import Annotator
from edgewatch.config import DisplaySinkConfig
from edgewatch.errors import SinkError
from edgewatch.metrics import Metrics
from edgewatch.sinks.base import Sink
from edgewatch.types import FrameResult

log = logging.getLogger(__name__)

#: Seconds the display probe may take before the display counts as unusable.
PROBE_TIMEOUT_S = 20.0
#: Milliseconds the GUI thread waits for keys/events per turn.
GUI_WAIT_MS = 10
#: Keys that request a stop: q, Q, Esc.
QUIT_KEYS = frozenset({ord("q"), ord("Q"), 27})

_PROBE = (
    "import cv2\n"
    "cv2.namedWindow('edgewatch-probe', cv2.WINDOW_AUTOSIZE)\n"
    "cv2.waitKey(1)\n"
    "cv2.destroyAllWindows()\n"
    "cv2.waitKey(1)\n"
)


def check_display(timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Raise :class:`SinkError` unless an OpenCV window can be opened here."""
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        raise SinkError(
            "display sink: no display ($DISPLAY and $WAYLAND_DISPLAY are not set); "
            "run on a desktop, under Xvfb, or remove the display sink"
        )
    where = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise SinkError(
            f"display sink: opening a window on {where} took over {timeout_s:g} s"
        ) from None
    if proc.returncode != 0:
        lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
        why = next((ln for ln in lines if "connect" in ln.lower()), lines[-1] if lines else "")
        raise SinkError(
            f"display sink: cannot open a window on {where} (exit {proc.returncode}): {why}"
        )


def _visible(name: str) -> bool:
    """Whether window ``name`` is still open (call from the GUI thread)."""
    try:
        return bool(cv2.getWindowProperty(name, cv2.WND_PROP_VISIBLE) >= 1)
    except cv2.error:
        # Qt: once the last window is closed, OpenCV's GUI receiver is gone and every
        # window query raises ("NULL guiReceiver").
        return False


class DisplaySink(Sink):
    """Shows annotated frames, one window per source; see the module docstring."""

    needs_image = True

    def __init__(
        self,
        cfg: DisplaySinkConfig,
        metrics: Metrics,
        *,
        name: str = "display",
        on_quit: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(name, metrics)
        self.cfg = cfg
        self.on_quit = on_quit
        self.quit_requested = threading.Event()
        self._annotator = Annotator()
        self._lock = threading.Lock()
        self._pending: dict[str, np.ndarray] = {}
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        #: Window names shown so far (only touched by the GUI thread).
        self.windows: list[str] = []

    def window_name(self, source_id: str) -> str:
        """The title of the window of ``source_id``."""
        return f"{self.cfg.window}: {source_id}"

    def start(self) -> None:
        check_display()
        self._stopping.clear()
        self._thread = threading.Thread(target=self._gui_loop, name=f"{self.name}-gui", daemon=True)
        self._thread.start()

    def write(self, result: FrameResult) -> None:
        if self._error is not None:
            raise SinkError(f"display sink: the window thread failed: {self._error}")
        if self._thread is None:
            raise SinkError("display sink is not started")
        if self.quit_requested.is_set():
            return
        image = self._annotator.annotate(
            result.frame.image, result.detections, result.class_names
        )
        if self.cfg.scale != 1.0:
            image = cv2.resize(image, None, fx=self.cfg.scale, fy=self.cfg.scale,
                               interpolation=cv2.INTER_AREA if self.cfg.scale < 1 else
                               cv2.INTER_LINEAR)
        with self._lock:
            self._pending[result.frame.source_id] = image
        self._wake.set()

    def stop(self) -> None:
        """Close every window and end the GUI thread."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5.0)
            if self._thread.is_alive():
                log.warning("display sink: the window thread did not end")
            self._thread = None

    # ------------------------------------------------------------------ GUI thread

    def _gui_loop(self) -> None:
        try:
            while not self._stopping.is_set():
                self._gui_turn()
        except cv2.error as e:
            self._error = e
            log.error("display sink: %s", e)
        finally:
            try:
                cv2.destroyAllWindows()
                cv2.waitKey(1)
            except cv2.error as e:
                log.warning("display sink: closing windows failed: %s", e)

    def _gui_turn(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        if not self.quit_requested.is_set():
            for source_id, image in pending.items():
                name = self.window_name(source_id)
                if name not in self.windows:
                    cv2.namedWindow(name, cv2.WINDOW_AUTOSIZE)
                    self.windows.append(name)
                cv2.imshow(name, image)
        if not self.windows:
            self._wake.wait(0.05)
            self._wake.clear()
            return
        key = cv2.waitKey(GUI_WAIT_MS)
        if self.quit_requested.is_set():
            return
        if key >= 0 and (key & 0xFF) in QUIT_KEYS:
            self._request_quit(f"key {chr(key & 0xFF)!r}")
            return
        for name in self.windows:
            if not _visible(name):
                self._request_quit(f"window {name!r} closed")
                return

    def _request_quit(self, why: str) -> None:
        log.info("display sink: stop requested (%s)", why)
        self.quit_requested.set()
        if self.on_quit is not None:
            # Its own thread: the callback may stop the runner, which stops (joins) this sink.
            threading.Thread(target=self.on_quit, name=f"{self.name}-quit", daemon=True).start()
