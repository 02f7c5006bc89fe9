"""Keep secrets out of logs, metrics, messages and errors.

Values interpolated from ``${VAR}`` in a config and passwords inside URIs are
registered here; :func:`mask` replaces every registered value with ``***``, as
well as any ``user:password@`` in a URI and the values of credential-like query
parameters (``?token=``, ``&password=``, ``&key=``, ``auth=``, ``api_key=``,
``X-Amz-Signature=``, ... see :data:`QUERY_SECRET_NAMES`) of HTTP/HLS URLs.
:class:`MaskingFilter` does the same for every log record.
"""

from __future__ import annotations

import logging
import re
import threading
from urllib.parse import parse_qsl, urlsplit, urlunsplit

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
        text = _URI_PASSWORD.sub(r"\1" + _MASK + "@", text)
        return _QUERY_PARAM.sub(_mask_query_value, text)


_URI_PASSWORD = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://[^/@:\s]*:)[^@/\s]*@")

QUERY_SECRET_NAMES = frozenset(
    {
        "token",
        "password",
        "passwd",
        "pwd",
        "pass",
        "key",
        "apikey",
        "auth",
        "authorization",
        "secret",
        "signature",
        "sig",
        "credential",
        "credentials",
    }
)
"""Query parameter names (case-insensitive) whose values are masked; a name also
matches when one of these ends it after ``_``, ``-`` or ``.`` (``access_token``,
``api_key``, ``client_secret``, ``X-Amz-Signature``)."""

#: A query parameter: ``?`` or ``&`` (or ``;``), a name, ``=``, a value up to the next
#: separator, whitespace or quote.
_QUERY_PARAM = re.compile(r"([?&;])([A-Za-z0-9_.\-]+)=([^&#;\s\"'<>]+)")


def _secret_param(name: str) -> bool:
    last = re.split(r"[_.\-]", name.lower())[-1]
    return name.lower() in QUERY_SECRET_NAMES or last in QUERY_SECRET_NAMES


def _mask_query_value(m: re.Match[str]) -> str:
    if not _secret_param(m.group(2)) or m.group(3) == _MASK:
        return m.group(0)
    return f"{m.group(1)}{m.group(2)}={_MASK}"


registry = SecretRegistry()


def mask(text: str) -> str:
    """Return ``text`` with every registered secret, URI password and query credential masked.

    >>> mask("rtsp://admin:hunter2@cam.local/stream")
    'rtsp://admin:***@cam.local/stream'
    >>> mask("GET https://cdn.example/live.m3u8?token=abc123&res=720 failed")
    'GET https://cdn.example/live.m3u8?token=***&res=720 failed'
    """
    return registry.mask(text)


def mask_uri(uri: str) -> str:
    """Mask the password of a URI (and any registered secret in it).

    Values of credential-like query parameters are registered as secrets too.

    >>> mask_uri("rtsp://u:p4ss@10.0.0.1:554/s")
    'rtsp://u:***@10.0.0.1:554/s'
    >>> mask_uri("https://cam.example/live.m3u8?access_token=t0k3n&quality=hd")
    'https://cam.example/live.m3u8?access_token=***&quality=hd'
    """
    try:
        parts = urlsplit(uri)
    except ValueError:
        return mask(uri)
    for name, value in parse_qsl(parts.query, keep_blank_values=False):
        if _secret_param(name):
            registry.add(value)
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
