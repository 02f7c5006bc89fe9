"""Keep secrets out of logs, metrics, messages and errors.

Values interpolated from ``${VAR}`` in a config and passwords inside URIs are
registered here; :func:`mask` replaces every registered value with ``***`` and
:class:`MaskingFilter` does the same for every log record.
"""

from __future__ import annotations

import logging
import re
import threading
from urllib.parse import urlsplit, urlunsplit

_MASK = "***"


class SecretRegistry:
    """A thread-safe set of strings that must never be shown."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: frozenset[str] = frozenset()

    def add(self, value: str) -> None:
        # Very short values would mask ordinary words; they are not real secrets.
        if len(value) < 3:
            return
        with self._lock:
            self._values = self._values | {value}

    def mask(self, text: str) -> str:
        for value in sorted(self._values, key=len, reverse=True):
            if value in text:
                text = text.replace(value, _MASK)
        return _URI_PASSWORD.sub(r"\1" + _MASK + "@", text)


_URI_PASSWORD = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://[^/@:\s]*:)[^@/\s]*@")

registry = SecretRegistry()


def mask(text: str) -> str:
    """Return ``text`` with every registered secret and URI password masked.

    >>> mask("rtsp://admin:hunter2@cam.local/stream")
    'rtsp://admin:***@cam.local/stream'
    """
    return registry.mask(text)


def mask_uri(uri: str) -> str:
    """Mask the password of a URI (and any registered secret in it).

    >>> mask_uri("rtsp://u:p4ss@10.0.0.1:554/s")
    'rtsp://u:***@10.0.0.1:554/s'
    """
    try:
        parts = urlsplit(uri)
    except ValueError:
        return mask(uri)
    if parts.password:
        registry.add(parts.password)
        netloc = f"{parts.username or ''}:{_MASK}@{parts.hostname or ''}"
        if parts.port:
            netloc += f":{parts.port}"
        uri = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return mask(uri)


class MaskingFilter(logging.Filter):
    """A logging filter that masks secrets in the formatted message."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        masked = mask(msg)
        if masked != msg:
            record.msg = masked
            record.args = None
        return True
