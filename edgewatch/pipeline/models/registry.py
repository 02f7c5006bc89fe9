"""Registry of known public model files that ``edgewatch models fetch`` can download.

The registry is plain frozen data: a name maps to a :class:`RegistryEntry` whose
``files`` each carry a URL, the SHA-256 of the file's bytes (lower-case hex) and
the file name to store it under. An entry enters the registry only with a
checksum published by its host (a Hugging Face LFS pointer's ``oid sha256:``), so
every download is verified.

Other registries (the CLIP labeler's, :mod:`edgewatch.pipeline.models.clip_registry`)
use the same dataclasses and are merged by :func:`known_models`. A user or a test
can add entries from a YAML file (:func:`load_registry_file`)::

    models:
      - name: my-detector
        description: a mirror of my detector
        task: detect
        files:
          - url: http://127.0.0.1:8000/det.onnx
            sha256: 0f3c...
            filename: det.onnx
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import yaml

from edgewatch.errors import ModelError

log = logging.getLogger(__name__)

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_FILENAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$")


@dataclass(frozen=True)
class RegistryFile:
    """One downloadable file.

    ``url``: http(s) address of the bytes. ``sha256``: lower-case hex digest of the
    whole file. ``filename``: relative path (``/``-separated, no ``..``) under the
    entry's directory in the cache. ``size``: length in bytes when the host
    publishes it (used for the progress bar and to spot a truncated transfer).
    """

    url: str
    sha256: str
    filename: str
    size: int | None = None

    def __post_init__(self) -> None:
        if self.size is not None and self.size < 0:
            raise ValueError(f"registry file size must be >= 0 bytes: {self.size}")
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"registry file url must be http(s): {self.url!r}")
        if not _SHA256_RE.match(self.sha256):
            raise ValueError(f"registry file sha256 must be 64 lower-case hex: {self.sha256!r}")
        if not _FILENAME_RE.match(self.filename) or ".." in self.filename.split("/"):
            raise ValueError(f"registry file name must be a plain relative path: {self.filename!r}")


@dataclass(frozen=True)
class RegistryEntry:
    """A named model: what it is (``description``, ``task``) and its files.

    ``task`` is one of ``detect``, ``segment``, ``pose``, ``classify``, ``clip``.
    """

    name: str
    description: str
    task: str
    files: tuple[RegistryFile, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise ValueError(f"registry entry name is not a plain name: {self.name!r}")
        if not self.files:
            raise ValueError(f"registry entry {self.name!r} has no files")
        names = [f.filename for f in self.files]
        if len(set(names)) != len(names):
            raise ValueError(f"registry entry {self.name!r} lists a file name twice")


_HF = "https://huggingface.co"

#: Detector entries. Each checksum is the ``oid sha256`` of the file's Git LFS
#: pointer on Hugging Face (the same value its file page shows).
#: URLs are pinned to a commit where the pointer was found on a commit page.
_DETECTORS: tuple[RegistryEntry, ...] = (
    RegistryEntry(
        name="yolov8n",
        description="YOLOv8n COCO-80 detector, ONNX export (webml/yolov8n on Hugging Face)",
        task="detect",
        files=(
            RegistryFile(
                url=f"{_HF}/webml/yolov8n/resolve/85bc8d7ab30d4065a41909d756c42819b67b4388"
                "/onnx/yolov8n.onnx",
                sha256="190ba5f1e61411a001683e349d6b2cdb0804c0dc67a5e34cd8ff6fd00ee54b4d",
                filename="yolov8n.onnx",
                size=12823574,
            ),
        ),
    ),
    RegistryEntry(
        name="yolov8n-seg",
        description="YOLOv8n-seg COCO-80 instance segmentation, ONNX export "
        "(camstack/camstack-models on Hugging Face)",
        task="segment",
        files=(
            RegistryFile(
                url=f"{_HF}/camstack/camstack-models/resolve/"
                "6e748c26548e917e30f536c7ebab47ac48df5171"
                "/segmentation/yolov8-seg/onnx/camstack-yolov8n-seg.onnx",
                sha256="58cd44a9f74de0705a16d68ae65d50cf5d3ad0b9e231cdae3b2897f4d44888f3",
                filename="yolov8n-seg.onnx",
                size=13873434,
            ),
        ),
    ),
    RegistryEntry(
        name="yolov8s-pose",
        description="YOLOv8s-pose COCO 17-keypoint person pose, ONNX export "
        "(Xenova/yolov8s-pose on Hugging Face)",
        task="pose",
        files=(
            RegistryFile(
                url=f"{_HF}/Xenova/yolov8s-pose/resolve/4fc37fa2e014be6ed7aa0f59139f2aaf5b7ef714"
                "/onnx/model.onnx",
                sha256="5c92815cc509a9ccb6a817f4c2816de800092964319ad179a2751eda6df35d83",
                filename="yolov8s-pose.onnx",
            ),
        ),
    ),
    RegistryEntry(
        name="yolo11n",
        description="YOLO11n COCO-80 detector, ONNX export (boquila/yolov11 on Hugging Face)",
        task="detect",
        files=(
            RegistryFile(
                url=f"{_HF}/boquila/yolov11/resolve/main/yolov11n.onnx",
                sha256="1e72e561b9ed8c6f10586a78dd67d2415dc17121670d1fd91b1077650353b79b",
                filename="yolo11n.onnx",
            ),
        ),
    ),
)


def _entries_from(module_name: str) -> tuple[RegistryEntry, ...]:
    """Entries of another registry module, ``()`` if it is not installed yet."""
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name != module_name:
            raise
        return ()
    entries = getattr(module, "ENTRIES", None)
    if entries is None and hasattr(module, "known_models"):
        entries = tuple(module.known_models().values())
    return tuple(entries or ())


def _index(entries: Iterable[RegistryEntry]) -> dict[str, RegistryEntry]:
    out: dict[str, RegistryEntry] = {}
    for entry in entries:
        if entry.name in out:
            raise ModelError(f"model registry lists {entry.name!r} twice")
        out[entry.name] = entry
    return out


def builtin_models() -> Mapping[str, RegistryEntry]:
    """The built-in registry: detectors plus the CLIP labeler's entries, by name."""
    merged = _index((*_DETECTORS, *_entries_from("edgewatch.pipeline.models.clip_registry")))
    return MappingProxyType(dict(sorted(merged.items())))


def load_registry_file(path: str | Path) -> tuple[RegistryEntry, ...]:
    """Read extra entries from a YAML file (shape in the module docstring).

    Raises :class:`ModelError` naming the bad entry when the file is unreadable or
    an entry is malformed.
    """
    p = Path(path)
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ModelError(f"cannot read model registry {p}: {e}") from e
    items = doc.get("models") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise ModelError(f"{p}: expected a mapping with a 'models' list")
    entries = []
    for i, item in enumerate(items):
        try:
            files = tuple(
                RegistryFile(url=str(f["url"]), sha256=str(f["sha256"]).lower(),
                             filename=str(f["filename"]),
                             size=None if f.get("size") is None else int(f["size"]))
                for f in item["files"]
            )
            entries.append(RegistryEntry(name=str(item["name"]),
                                         description=str(item.get("description", "")),
                                         task=str(item.get("task", "detect")), files=files))
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"{p}: models[{i}]: {e}") from e
    return tuple(entries)


def known_models(extra: Iterable[RegistryEntry] = ()) -> Mapping[str, RegistryEntry]:
    """All known entries by name; ``extra`` entries (a registry file) override built-ins."""
    merged = dict(builtin_models())
    for entry in extra:
        merged[entry.name] = entry
    return MappingProxyType(dict(sorted(merged.items())))
