"""JSON Lines sink: one wire message per line, one file per source (``{source}``).

Each line is written with a single ``write(2)`` of the whole line and its
``\\n`` on an unbuffered file, so a reader (``tail -f``) never sees half a
line and a process killed between writes leaves only whole lines. A write
that fails part way (a full disk) is cut back to the end of the last whole
line and raised as :class:`SinkError`; the next line is tried as usual. The file
is fsynced every few seconds and on :meth:`JsonlSink.stop`.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from edgewatch.config import JsonlSinkConfig, MaskFormat, expand_path
from edgewatch.errors import SinkError
from edgewatch.metrics import Metrics
from edgewatch.sinks.base import Sink
from edgewatch.types import FrameResult, SourceEvent
from edgewatch.wire import dumps, event_message, frame_message

log = logging.getLogger(__name__)

#: Seconds between fsyncs of an open line file.
FSYNC_INTERVAL_S = 5.0


class LineFile:
    """An append-only file of whole lines (shared by the JSONL and MOT sinks).

    ``append=False`` truncates an existing file; ``append=True`` keeps it and
    first cuts a torn last line (one without its ``\\n``) left by a crash.
    Every error is a :class:`SinkError` naming the path.
    """

    def __init__(self, path: Path, *, append: bool = False) -> None:
        self.path = path
        self._append = append
        self._fd: int | None = None
        self._last_sync = 0.0

    def open(self) -> None:
        """Create parent folders and open the file."""
        mode = os.O_RDWR | os.O_APPEND if self._append else os.O_WRONLY | os.O_TRUNC
        flags = os.O_CREAT | mode
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, flags, 0o644)
            if self._append:
                _cut_torn_line(self._fd)
        except OSError as e:
            raise SinkError(f"cannot open {self.path} for writing: {e.strerror or e}") from None
        self._last_sync = time.monotonic()
        log.info("writing %s", self.path)

    def write_line(self, line: bytes) -> None:
        """Write ``line`` (without its newline) and a newline in one ``write`` call."""
        if self._fd is None:
            raise SinkError(f"{self.path} is not open")
        data = memoryview(line + b"\n")
        try:
            # O_APPEND writes at the end, so the end is where this line starts.
            fd = self._fd
            start = os.fstat(fd).st_size if self._append else os.lseek(fd, 0, os.SEEK_CUR)
        except OSError as e:
            raise SinkError(f"cannot write {self.path}: {e.strerror or e}") from None
        try:
            while data:
                n = os.write(self._fd, data)
                data = data[n:]
            now = time.monotonic()
            if now - self._last_sync >= FSYNC_INTERVAL_S:
                os.fsync(self._fd)
                self._last_sync = now
        except OSError as e:
            # A full disk (ENOSPC) may have taken part of the line: cut it so the file
            # still ends in a whole line; later lines are written when space returns.
            self._roll_back(start)
            raise SinkError(f"cannot write {self.path}: {e.strerror or e}") from None

    def _roll_back(self, offset: int) -> None:
        """Truncate the file to ``offset`` (the end of its last whole line)."""
        assert self._fd is not None
        try:
            os.ftruncate(self._fd, offset)
            os.lseek(self._fd, offset, os.SEEK_SET)
        except OSError as e:
            log.error("cannot cut a partly written line from %s: %s", self.path, e.strerror or e)

    def close(self) -> None:
        """fsync and close (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.fsync(fd)
        except OSError as e:
            raise SinkError(f"cannot sync {self.path}: {e.strerror or e}") from None
        finally:
            os.close(fd)


def close_all(files: dict[Any, LineFile]) -> None:
    """Close every file (all of them, even after a failure); raise the first error."""
    errors: list[SinkError] = []
    for f in files.values():
        try:
            f.close()
        except SinkError as e:
            errors.append(e)
    files.clear()
    if errors:
        raise errors[0]


def _cut_torn_line(fd: int, block: int = 65536) -> None:
    """Truncate an open file after its last newline (to 0 when it has none)."""
    end = os.fstat(fd).st_size
    pos = end
    while pos > 0:
        start = max(0, pos - block)
        chunk = os.pread(fd, pos - start, start)
        idx = chunk.rfind(b"\n")
        if idx >= 0:
            keep = start + idx + 1
            if keep != end:
                log.warning("cutting a torn last line (%d bytes)", end - keep)
                os.ftruncate(fd, keep)
            return
        pos = start
    if end:
        log.warning("cutting a file without any whole line (%d bytes)", end)
        os.ftruncate(fd, 0)


class JsonlSink(Sink):
    """Writes frame messages (and source events when ``cfg.events``) as JSON Lines.

    Files open lazily per expanded path; sources whose paths expand to the
    same file share it (every line names its source).
    """

    fatal_start = False

    def __init__(
        self,
        cfg: JsonlSinkConfig,
        metrics: Metrics,
        *,
        name: str = "jsonl",
        mask_format: MaskFormat = MaskFormat.RLE,
        publish_embedding: bool = False,
    ) -> None:
        super().__init__(name, metrics)
        self.cfg = cfg
        self.mask_format = mask_format
        self.publish_embedding = publish_embedding
        self._files: dict[Path, LineFile] = {}

    def start(self) -> None:
        """Open the file now when the path has no ``{source}`` (a failure is a
        per-sink error: the worker counts it, writes try again)."""
        if "{source}" not in self.cfg.path:
            self._file_for("")

    def _file_for(self, source_id: str) -> LineFile:
        path = expand_path(self.cfg.path, source_id)
        f = self._files.get(path)
        if f is None:
            f = LineFile(path, append=self.cfg.append)
            f.open()
            self._files[path] = f
        return f

    def write(self, result: FrameResult) -> None:
        msg = frame_message(result, self.mask_format, self.publish_embedding)
        self._file_for(result.frame.source_id).write_line(dumps(msg))

    def event(self, ev: SourceEvent) -> None:
        if self.cfg.events:
            self._file_for(ev.source_id).write_line(dumps(event_message(ev)))

    def stop(self) -> None:
        close_all(self._files)
