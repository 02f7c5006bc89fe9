"""One error hierarchy for edgewatch.

Library code raises these; only the CLI turns them into messages and exit codes.
"""

from __future__ import annotations


class EdgewatchError(Exception):
    """Base class of every error edgewatch raises on purpose."""


class ConfigError(EdgewatchError):
    """A pipeline YAML (or a ``--set`` override) is invalid.

    ``problems`` holds one ``(location, message)`` pair per problem, where location
    is ``file:line path`` when it is known.
    """

    def __init__(self, message: str, problems: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.problems: list[tuple[str, str]] = problems or []

    def __str__(self) -> str:
        if not self.problems:
            return super().__str__()
        return "\n".join(f"{loc}: {msg}" if loc else msg for loc, msg in self.problems)


class SourceError(EdgewatchError):
    """A source cannot be opened or read."""


class SourceAuthError(SourceError):
    """The server refused the credentials (RTSP 401/403)."""


class SourceUnreachableError(SourceError):
    """Host unknown, connection refused or timed out."""


class ModelError(EdgewatchError):
    """A model file is missing, not ONNX, or lacks what the task needs."""


class SinkError(EdgewatchError):
    """A sink cannot be opened or written."""
