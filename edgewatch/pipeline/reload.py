"""What a SIGHUP reload can apply live, and what it cannot.

The runner re-reads the pipeline YAML on SIGHUP and compares it with the
running config:

- :func:`diff_sources` says which sources to start, stop and restart (by id);
  every source change is applied live, one camera at a time.
- :func:`reload_blockers` lists the changes that cannot be applied to running
  stages, one readable line each (``detector.model changed ('a.onnx' ->
  'b.onnx'): ...``). The runner logs them and keeps the old config for those
  parts (or restarts those stages).

Live without restart: sources, ``log`` and ``shutdown_timeout``, and the
detector's post-processing options in :data:`DETECTOR_LIVE_FIELDS`
(thresholds, class filter, ``max_det``, mask format; ``warmup`` only matters
at start). Everything else in ``detector``, and any change to ``tracker``,
``labeler``, ``sinks`` or ``health``, is a blocker. A model file overwritten
in place under the same path is not a config change and is not detected.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel

from edgewatch.config import PipelineConfig, SourceConfig
from edgewatch.secrets import mask

DETECTOR_LIVE_FIELDS: frozenset[str] = frozenset(
    {"conf", "iou", "classes", "agnostic_nms", "max_det", "mask_format", "warmup"}
)
"""Detector options that only affect post-processing; a reload may change them live."""

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
    """One line per change that a live reload cannot apply; empty when all can be.

    Lines name the YAML path (``detector.imgsz``, ``tracker.type``,
    ``sinks[1]``, ``health.listen``) and say why; secrets are masked.
    """
    lines = _detector_blockers(old, new) + _tracker_blockers(old, new)
    lines += _labeler_blockers(old, new) + _sink_blockers(old, new)
    if old.health != new.health:
        lines.append(
            f"health changed ({_show(old.health)} -> {_show(new.health)}): "
            "the health server keeps its address until a restart"
        )
    return [mask(line) for line in lines]


def _detector_blockers(old: PipelineConfig, new: PipelineConfig) -> list[str]:
    return [
        f"detector.{name} changed ({_show(getattr(old.detector, name))} -> "
        f"{_show(getattr(new.detector, name))}): the detector model must be reloaded"
        for name in changed_fields(old.detector, new.detector)
        if name not in DETECTOR_LIVE_FIELDS
    ]


def _tracker_blockers(old: PipelineConfig, new: PipelineConfig) -> list[str]:
    a, b = old.tracker, new.tracker
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


def _labeler_blockers(old: PipelineConfig, new: PipelineConfig) -> list[str]:
    a, b = old.labeler, new.labeler
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


def _sink_blockers(old: PipelineConfig, new: PipelineConfig) -> list[str]:
    lines: list[str] = []
    for i in range(max(len(old.sinks), len(new.sinks))):
        a = old.sinks[i] if i < len(old.sinks) else None
        b = new.sinks[i] if i < len(new.sinks) else None
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


def _show(value: object) -> str:
    """A short, readable rendering of a config value for a log line."""
    if isinstance(value, enum.Enum):
        text = repr(value.value)
    elif isinstance(value, Path):
        text = repr(str(value))
    elif isinstance(value, BaseModel):
        text = repr(value.model_dump(mode="json", exclude_defaults=True))
    else:
        text = repr(value)
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 3] + "..."
