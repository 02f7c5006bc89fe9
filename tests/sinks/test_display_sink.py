"""Display sink: a clear SinkError without a display; windows, q and close under Xvfb."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgewatch.config import DisplaySinkConfig
from edgewatch.errors import SinkError
from edgewatch.metrics import Metrics
from edgewatch.sinks import build_sink
from edgewatch.sinks.display import check_display

HERE = Path(__file__).resolve().parent


@pytest.fixture
def xvfb() -> Iterator[str]:
    """A private Xvfb server; yields its DISPLAY (skips when Xvfb is not installed)."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (apt-get install -y xvfb)")
    r, w = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(w), "-screen", "0", "800x600x24",
                             "-nolisten", "tcp"], pass_fds=(w,), stderr=subprocess.DEVNULL)
    os.close(w)
    try:
        with os.fdopen(r) as f:
            number = f.readline().strip()
        if not number:
            pytest.fail("Xvfb did not report a display number")
        yield f":{number}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({}, r"no display \(\$DISPLAY and \$WAYLAND_DISPLAY are not set\)"),
        ({"DISPLAY": ":9731"}, "cannot open a window on :9731"),
    ],
)
def test_no_display_is_sink_error(monkeypatch: pytest.MonkeyPatch, env: dict, match: str) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    sink = build_sink(DisplaySinkConfig(), Metrics())
    with pytest.raises(SinkError, match=match):
        sink.start()


def test_write_before_start_is_sink_error() -> None:
    from sinkdata import result

    with pytest.raises(SinkError, match="not started"):
        build_sink(DisplaySinkConfig(), Metrics()).write(result(0))


def _child(display: str) -> subprocess.Popen[str]:
    env = {**os.environ, "DISPLAY": display,
           "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, str(HERE / "display_child.py")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _window_id(display: str, name: str) -> int:
    out = subprocess.run(["xdotool", "search", "--name", f"^{name}$"], capture_output=True,
                         text=True, env={**os.environ, "DISPLAY": display}, check=True)
    return int(out.stdout.split()[0])


def _run_and_quit(display: str, action: str) -> list[str]:
    proc = _child(display)
    assert proc.stdout is not None
    try:
        shown = proc.stdout.readline().strip()
        assert shown.startswith("shown "), proc.stderr.read() if proc.stderr else ""
        wid = _window_id(display, "ew: cam")
        env = {**os.environ, "DISPLAY": display}
        if action == "key":
            subprocess.run(["xdotool", "windowfocus", "--sync", str(wid), "key", "q"],
                           env=env, check=True)
        else:
            subprocess.run([sys.executable, str(HERE / "x11close.py"), str(wid)], env=env,
                           check=True)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    return [shown, *out.splitlines()]


@pytest.mark.display
def test_display_probe_passes(xvfb: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPLAY", xvfb)
    t = time.monotonic()
    check_display()
    assert time.monotonic() - t < 20


@pytest.mark.display
@pytest.mark.parametrize("action", ["key", "close"])
def test_window_per_source_and_quit(xvfb: str, action: str) -> None:
    if shutil.which("xdotool") is None:
        pytest.skip("xdotool is not installed (apt-get install -y xdotool)")
    lines = _run_and_quit(xvfb, action)
    assert lines == ["shown ew: cam|ew: door", "quit 1", "stopped"]
