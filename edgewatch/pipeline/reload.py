"""What a SIGHUP reload can apply live, and what it cannot.

The runner re-reads the pipeline YAML on SIGHUP and compares it with the
running config:

- :func:`diff_sources` says which sources to start, stop and restart (by id);
  every source change is applied live, one camera at a time.
- :func:`reload_blockers` lists the changes that cannot be applied to running
  stages, one readable line each (``detector.model changed ('a.onnx' ->
  'b.onnx'): ...``). The runner logs them and keeps the old config for those
  parts (or restarts those stages).

Only ``sources`` are applied live. Every other change is a blocker, with a
reason: detector options in :data:`DETECTOR_SESSION_FIELDS` need a model
reload, its post-processing options (``conf``, ``iou``, ``classes``, ...) are
kept by the running detector, and any change to ``tracker``, ``labeler``,
``sinks``, ``health``, ``log`` or ``shutdown_timeout`` is kept until a
restart. ``detector.warmup`` has no effect once running and is ignored. A
model file overwritten in place under the same path is not a config change
and is not detected.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel

from edgewatch.config import (
    DetectorConfig,
    LabelerConfig,
    PipelineConfig,
    SinkConfig,
    SourceConfig,
    TrackerConfig,
)
from edgewatch.secrets import mask

DETECTOR_SESSION_FIELDS: frozenset[str] = frozenset(
    {
        "model",
        "task",
        "names",
        "imgsz",
        "batch",
        "device",
        "intra_op_num_threads",
        "half",
        "trt_cache_dir",
    }
)
"""Detector options baked into the ONNX Runtime session: changing one means reloading the model."""

DETECTOR_START_ONLY_FIELDS: frozenset[str] = frozenset({"warmup"})
"""Detector options with no effect once running; a reload ignores their changes."""

_REASONS = MappingProxyType(
    {
        "health": "the health server keeps its address until a restart",
        "log": "logging keeps its setup until a restart",
        "shutdown_timeout": "the running pipeline keeps its drain deadline until a restart",
    }
)

_MAX_VALUE_CHARS = 60


@dataclass(frozen=True)
class SourceDiff:
    """Sources of a reload, by id.

    ``added`` and ``changed`` hold the *new* configs in new-file order;
    ``removed`` holds ids in old-file order; ``unchanged`` ids in new-file order.
    Moving a source within the list is not a change.
    """

    added: list[SourceConfig] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[SourceConfig] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """True when no source is added, removed or changed."""
        return not (self.added or self.removed or self.changed)


def diff_sources(old: PipelineConfig, new: PipelineConfig) -> SourceDiff:
    """Compare the sources of two configs by id (every field counts)."""
    before = {s.id: s for s in old.sources}
    after_ids = {s.id for s in new.sources}
    return SourceDiff(
        added=[s for s in new.sources if s.id not in before],
        removed=[s.id for s in old.sources if s.id not in after_ids],
        changed=[s for s in new.sources if s.id in before and before[s.id] != s],
        unchanged=[s.id for s in new.sources if before.get(s.id) == s],
    )


def changed_fields(old: BaseModel, new: BaseModel) -> list[str]:
    """Names of the fields whose values differ, in declaration order.

    Both models must be of the same class.
    """
    if type(old) is not type(new):
        raise TypeError(f"cannot compare {type(old).__name__} with {type(new).__name__}")
    return [n for n in type(old).model_fields if getattr(old, n) != getattr(new, n)]


def reload_blockers(old: PipelineConfig, new: PipelineConfig) -> list[str]:
    """One line per change that a live reload does not apply; empty when there is none.

    Every field of :class:`PipelineConfig` except ``sources`` is compared (a
    field added to the config later is covered too). Lines name the YAML path
    (``detector.imgsz``, ``tracker.type``, ``sinks[1]``, ``health.listen``),
    show old and new value and say why; secrets are masked.
    """
    lines: list[str] = []
    for name in PipelineConfig.model_fields:
        if name == "sources":
            continue
        a, b = getattr(old, name), getattr(new, name)
        if a == b:
            continue
        special = _SECTIONS.get(name)
        if special is not None:
            lines += special(a, b)
        else:
            lines += _generic(name, a, b, _REASONS.get(name, "kept until a restart"))
    return [mask(line) for line in lines]


def _generic(path: str, a: object, b: object, reason: str) -> list[str]:
    """``path.field changed (a -> b): reason`` per differing field, or one line for the whole."""
    if isinstance(a, BaseModel) and type(a) is type(b):
        assert isinstance(b, BaseModel)
        return [
            f"{path}.{n} changed ({_show(getattr(a, n))} -> {_show(getattr(b, n))}): {reason}"
            for n in changed_fields(a, b)
        ]
    return [f"{path} changed ({_show(a)} -> {_show(b)}): {reason}"]


def _detector_blockers(a: DetectorConfig, b: DetectorConfig) -> list[str]:
    lines = []
    for name in changed_fields(a, b):
        if name in DETECTOR_START_ONLY_FIELDS:
            continue
        reason = (
            "the detector model must be reloaded"
            if name in DETECTOR_SESSION_FIELDS
            else "the running detector keeps its post-processing options until a restart"
        )
        lines += _generic(f"detector.{name}", getattr(a, name), getattr(b, name), reason)
    return lines


def _tracker_blockers(a: TrackerConfig, b: TrackerConfig) -> list[str]:
    if a.type != b.type:
        return [
            f"tracker.type changed ({a.type} -> {b.type}): "
            "running trackers keep their type and track ids until a restart"
        ]
    return [
        f"tracker.{name} changed ({_show(getattr(a, name))} -> {_show(getattr(b, name))}): "
        "running trackers keep their options until a restart"
        for name in changed_fields(a, b)
    ]


def _labeler_blockers(a: LabelerConfig | None, b: LabelerConfig | None) -> list[str]:
    if a is None and b is None:
        return []
    if a is None:
        return ["labeler added: the labeler starts only with the pipeline"]
    if b is None:
        return ["labeler removed: the labeler stops only with the pipeline"]
    return [
        f"labeler.{name} changed ({_show(getattr(a, name))} -> {_show(getattr(b, name))}): "
        "the labeler must be restarted"
        for name in changed_fields(a, b)
    ]


def _sink_blockers(old: list[SinkConfig], new: list[SinkConfig]) -> list[str]:
    lines: list[str] = []
    for i in range(max(len(old), len(new))):
        a = old[i] if i < len(old) else None
        b = new[i] if i < len(new) else None
        if a == b:
            continue
        if a is None and b is not None:
            lines.append(f"sinks[{i}] ({b.type}) added: sinks open only with the pipeline")
        elif b is None and a is not None:
            lines.append(f"sinks[{i}] ({a.type}) removed: sinks close only with the pipeline")
        elif a is not None and b is not None and a.type != b.type:
            lines.append(f"sinks[{i}] type changed ({a.type} -> {b.type}): sinks must be restarted")
        elif a is not None and b is not None:
            names = ", ".join(changed_fields(a, b))
            lines.append(f"sinks[{i}] ({a.type}) changed: {names}: sinks must be restarted")
    return lines


_SECTIONS: MappingProxyType[str, Callable[[Any, Any], list[str]]] = MappingProxyType(
    {
        "detector": _detector_blockers,
        "tracker": _tracker_blockers,
        "labeler": _labeler_blockers,
        "sinks": _sink_blockers,
    }
)


def _show(value: object) -> str:
    """A short, readable rendering of a config value for a log line."""
    if isinstance(value, enum.Enum):
        text = repr(value.value)
    elif isinstance(value, Path):
        text = repr(str(value))
    elif isinstance(value, BaseModel):
        text = repr(value.model_dump(mode="json"))
    else:
        text = repr(value)
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 3] + "..."
