"""Fixtures of the sink tests: a child writer stopped by a signal."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def run_child_until(kind: str, path: Path, frames: int, sig: int) -> tuple[int, int, str]:
    """Run writer_child.py, send ``sig`` after ``frames`` frames; return (rc, written, out)."""
    path_env = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path_env}
    proc = subprocess.Popen([sys.executable, str(HERE / "writer_child.py"), kind, str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    written = 0
    lines: list[str] = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("wrote "):
                written = int(line.split()[1])
                if written >= frames:
                    proc.send_signal(sig)
                    break
        rest, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines += rest.splitlines(keepends=True)
    for line in lines:
        if line.startswith(("wrote ", "stopped ")):
            written = int(line.split()[1])
    return proc.returncode, written, "".join(lines) + err


@pytest.fixture
def child_writer() -> Callable[[str, Path, int, int], tuple[int, int, str]]:
    """``child_writer(kind, path, frames, signal)`` -> (exit code, frames written, output)."""
    return run_child_until



@pytest.fixture
def small_disk(tmp_path: Path):
    """A real 64 KiB tmpfs (skipped where mounting is not permitted); unmounted after."""
    disk = tmp_path / "disk"
    disk.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)],
                              capture_output=True, text=True, timeout=30)
    except OSError as e:
        pytest.skip(f"cannot mount a tmpfs: {e}")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "--lazy", str(disk)], capture_output=True, timeout=30)


def fill_disk(disk: Path, leave: int) -> Path:
    """Fill ``disk`` with one file, then free about ``leave`` bytes of it; return its path."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler
