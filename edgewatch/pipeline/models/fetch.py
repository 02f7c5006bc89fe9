"""Download registry models into a local cache, resumably and verified.

``edgewatch models fetch NAME`` calls :func:`fetch_model`. Each file of the
entry is written to ``<dest>/<entry name>/<file name>``:

1. a final file already present with the right SHA-256 is kept (no network);
2. otherwise bytes stream into ``<final>.part``; a ``.part`` left by an
   interrupted run is continued with an HTTP ``Range`` request (a server that
   ignores the range and answers 200 restarts it from zero);
3. the finished ``.part`` is hashed; a mismatch deletes it and raises
   :class:`ChecksumError`, leaving nothing at the final path; a match is
   fsynced and atomically renamed to the final path.

A network failure raises :class:`DownloadError` and keeps the ``.part`` so the
next run resumes. Only ``urllib`` is used. ``EDGEWATCH_MODEL_MIRROR`` (or the
``mirror`` argument) replaces the scheme and host of every registry URL, e.g.
``http://127.0.0.1:8000`` serves ``/webml/yolov8n/resolve/...``.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from edgewatch import __version__
from edgewatch.errors import ModelError
from edgewatch.pipeline.models.registry import RegistryEntry, RegistryFile, known_models

log = logging.getLogger(__name__)

CACHE_ENV = "EDGEWATCH_CACHE"
MIRROR_ENV = "EDGEWATCH_MODEL_MIRROR"
_CHUNK = 1 << 16
_CONTENT_RANGE_RE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")

#: ``progress(done_bytes, total_bytes_or_None)`` after every chunk.
ProgressFn = Callable[[int, "int | None"], None]


class DownloadError(ModelError):
    """The transfer failed (network, HTTP status); a ``.part`` may be kept for resume."""


class ChecksumError(ModelError):
    """The downloaded bytes do not have the registry's SHA-256; nothing was kept."""


class UnknownModelError(ModelError):
    """The name is not in the registry."""


@dataclass(frozen=True)
class FetchedFile:
    """One file of a fetch: where it is, its size in bytes, and whether it was
    already in the cache (``cached``) or ``resumed`` from a ``.part``."""

    path: Path
    size: int
    cached: bool
    resumed: bool


def default_cache_dir() -> Path:
    """``$EDGEWATCH_CACHE`` or ``~/.cache/edgewatch/models``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "edgewatch" / "models"


def resolve_url(url: str, mirror: str | None) -> str:
    """``url`` with its scheme and host replaced by ``mirror`` (path and query kept).

    >>> resolve_url("https://huggingface.co/a/b.onnx?x=1", "http://127.0.0.1:8000/m")
    'http://127.0.0.1:8000/m/a/b.onnx?x=1'
    >>> resolve_url("https://huggingface.co/a/b.onnx", None)
    'https://huggingface.co/a/b.onnx'
    """
    if not mirror:
        return url
    src = urllib.parse.urlsplit(url)
    base = urllib.parse.urlsplit(mirror.rstrip("/"))
    if base.scheme not in ("http", "https") or not base.netloc:
        raise ModelError(f"model mirror must be an http(s) base URL: {mirror!r}")
    return urllib.parse.urlunsplit((base.scheme, base.netloc, base.path + src.path, src.query, ""))


def sha256_file(path: Path) -> str:
    """Lower-case hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def lookup(name: str, registry: Mapping[str, RegistryEntry] | None = None) -> RegistryEntry:
    """The entry called ``name``; :class:`UnknownModelError` lists the known names."""
    reg = known_models() if registry is None else registry
    if name not in reg:
        known = ", ".join(sorted(reg)) or "(none)"
        raise UnknownModelError(f"unknown model {name!r}; known models: {known}")
    return reg[name]


def fetch_model(
    name: str,
    dest: str | os.PathLike[str] | None = None,
    *,
    registry: Mapping[str, RegistryEntry] | None = None,
    mirror: str | None = None,
    progress: bool | None = None,
    timeout: float = 30.0,
) -> list[FetchedFile]:
    """Download every file of registry entry ``name`` into ``dest/name/``.

    ``dest`` defaults to :func:`default_cache_dir`; ``mirror`` to
    ``$EDGEWATCH_MODEL_MIRROR``; ``progress`` (a tqdm bar on stderr) to "stderr
    is a terminal"; ``timeout`` is the socket timeout in seconds. Raises
    :class:`UnknownModelError`, :class:`DownloadError` or :class:`ChecksumError`.
    """
    entry = lookup(name, registry)
    root = (Path(dest).expanduser() if dest is not None else default_cache_dir()) / entry.name
    mirror = mirror if mirror is not None else os.environ.get(MIRROR_ENV) or None
    show = sys.stderr.isatty() if progress is None else progress
    return [
        download_file(f, root / f.filename, mirror=mirror, progress=show, timeout=timeout)
        for f in entry.files
    ]


def download_file(
    rf: RegistryFile,
    target: Path,
    *,
    mirror: str | None = None,
    progress: bool = False,
    timeout: float = 30.0,
    on_progress: ProgressFn | None = None,
) -> FetchedFile:
    """Fetch one registry file to ``target`` (see the module docstring for the steps)."""
    if target.is_file():
        if sha256_file(target) == rf.sha256:
            log.info("%s: already present, checksum ok", target)
            return FetchedFile(target, target.stat().st_size, cached=True, resumed=False)
        log.warning("%s: present but its SHA-256 differs from the registry; removed, "
                    "downloading again", target)
        target.unlink()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ModelError(f"cannot create {target.parent}: {e.strerror or e}") from None
    part = target.with_name(target.name + ".part")
    url = resolve_url(rf.url, mirror)
    bar = _Progress(progress, target.name, on_progress)
    try:
        resumed = _transfer(url, part, rf.size, timeout, bar)
    finally:
        bar.close()
    digest = sha256_file(part)
    if digest != rf.sha256:
        part.unlink(missing_ok=True)
        raise ChecksumError(
            f"{url}: SHA-256 mismatch (expected {rf.sha256}, got {digest}); "
            f"the download was deleted, nothing was written to {target}"
        )
    _fsync(part)
    os.replace(part, target)
    size = target.stat().st_size
    log.info("%s: %d bytes, checksum ok", target, size)
    return FetchedFile(target, size, cached=False, resumed=resumed)


def _fsync(path: Path) -> None:
    with path.open("rb") as f:
        os.fsync(f.fileno())


class _Progress:
    """Calls ``extra(done, total)`` and, when ``show``, drives a tqdm bar on stderr."""

    def __init__(self, show: bool, label: str, extra: ProgressFn | None) -> None:
        self._show, self._label, self._extra = show, label, extra
        self._bar: Any = None

    def __call__(self, done: int, total: int | None) -> None:
        if self._extra is not None:
            self._extra(done, total)
        if not self._show:
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=done, unit="B", unit_scale=True,
                             unit_divisor=1024, desc=self._label, file=sys.stderr, leave=True)
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _request(url: str, offset: int) -> urllib.request.Request:
    headers = {"User-Agent": f"edgewatch/{__version__}", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.Request(url, headers=headers)  # noqa: S310 (scheme checked)


def _transfer(
    url: str, part: Path, size: int | None, timeout: float, progress: ProgressFn | None
) -> bool:
    """Stream ``url`` into ``part``; True when it continued an existing ``.part``."""
    if not url.startswith(("http://", "https://")):
        raise DownloadError(f"refusing to download from a non-http(s) URL: {url!r}")
    offset = part.stat().st_size if part.is_file() else 0
    if size is not None and offset > size:
        log.warning("%s: partial file is larger than the expected %d bytes; restarting", part, size)
        part.unlink()
        offset = 0
    if size is not None and offset == size:
        return True  # complete already: the caller verifies the checksum
    try:
        resp = urllib.request.urlopen(_request(url, offset), timeout=timeout)  # noqa: S310
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:
            log.info("%s: server says the range is past the end; verifying what is there", part)
            return True
        raise DownloadError(f"{url}: HTTP {e.code} {e.reason}{_kept(part)}") from e
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise DownloadError(f"{url}: {_reason(e)}{_kept(part)}") from e
    with resp:
        start, total = _start_and_total(resp, offset, size)
        if start == 0 and offset:
            log.info("%s: server ignored the Range request; restarting from byte 0", part)
        mode = "ab" if start else "wb"
        with part.open(mode) as out:
            _copy(resp, out, start, total, url, part, progress)
    return start > 0


def _start_and_total(
    resp: http.client.HTTPResponse, offset: int, size: int | None
) -> tuple[int, int | None]:
    """Byte where this response starts, and the whole file's length if known."""
    length = resp.headers.get("Content-Length")
    if resp.status == 206:
        m = _CONTENT_RANGE_RE.match(resp.headers.get("Content-Range", "").strip())
        if not m or int(m.group(1)) != offset:
            raise DownloadError(
                f"{resp.url}: bad Content-Range {resp.headers.get('Content-Range')!r} "
                f"for a request from byte {offset}"
            )
        whole = m.group(3)
        return offset, int(whole) if whole != "*" else size
    return 0, int(length) if length is not None and length.isdigit() else size


def _copy(
    resp: IO[bytes],
    out: IO[bytes],
    start: int,
    total: int | None,
    url: str,
    part: Path,
    progress: ProgressFn | None,
) -> None:
    """Copy the body; a short body is a :class:`DownloadError` (``.part`` kept)."""
    done = start
    try:
        while chunk := resp.read(_CHUNK):
            out.write(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, total)
    except (OSError, http.client.HTTPException) as e:
        out.flush()
        raise DownloadError(f"{url}: connection lost after {done} bytes "
                            f"({_reason(e)}){_kept(part)}") from e
    if total is not None and done < total:
        raise DownloadError(f"{url}: connection closed after {done} of {total} bytes{_kept(part)}")


def _reason(e: BaseException) -> str:
    if isinstance(e, urllib.error.URLError) and not isinstance(e, urllib.error.HTTPError):
        return str(e.reason)
    if isinstance(e, http.client.IncompleteRead):
        return f"incomplete read ({len(e.partial)} more bytes)"
    return f"{e.__class__.__name__}: {e}"


def _kept(part: Path) -> str:
    if part.is_file() and part.stat().st_size:
        return f"; {part.stat().st_size} bytes kept in {part}, run the command again to resume"
    return ""
