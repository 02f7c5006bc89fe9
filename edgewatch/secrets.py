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
from urllib.parse import parse_qsl, urlsplit

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
        text = _URI_USERINFO.sub(_mask_userinfo, text)
        return _QUERY_PARAM.sub(_mask_query_value, text)


#: ``scheme://`` then the userinfo: everything up to the LAST ``@`` before the first
#: whitespace, quote or end (greedy), since a password may hold ``/ : ? #`` unescaped.
_URI_USERINFO = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)([^\s\"'<>]*)@")


def _split_userinfo(m: re.Match[str]) -> tuple[str, str] | None:
    """``(user, password)`` of a :data:`_URI_USERINFO` match, or None without a ``:``."""
    user, sep, password = m.group(2).partition(":")
    return (user, password) if sep else None


def _mask_userinfo(m: re.Match[str]) -> str:
    parts = _split_userinfo(m)
    if parts is None:
        return m.group(0)
    return f"{m.group(1)}{parts[0]}:{_MASK}@"

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
        "session",
        "pw",
    }
)
"""Query parameter names (case-insensitive) whose values are masked; a name also
matches when one of these ends it after ``_``, ``-`` or ``.`` (``access_token``,
``api_key``, ``client_secret``, ``X-Amz-Signature``)."""

#: A query parameter: ``?`` or ``&`` (or ``;``), a name, ``=``, a value up to the next
#: separator, whitespace, quote or ``)`` (a URL in parentheses keeps its closing one).
_QUERY_PARAM = re.compile(r"([?&;])([A-Za-z0-9_.\-]+)=([^&#;\s\"'<>)]+)")


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
    # The userinfo is found by _URI_USERINFO, not urlsplit: urlsplit ends the netloc at
    # a '/', '?' or '#' inside the password and would then see no password at all.
    rest = uri
    userinfo = _URI_USERINFO.match(uri)
    if userinfo is not None and (up := _split_userinfo(userinfo)) is not None:
        registry.add(up[1])
        rest = userinfo.group(1) + uri[userinfo.end() :]
    try:
        parts = urlsplit(rest)
    except ValueError:
        return mask(uri)
    for name, value in parse_qsl(parts.query, keep_blank_values=False):
        if _secret_param(name):
            registry.add(value)
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
