"""Sinks: where results go (JSON Lines, MOT txt, video, ZeroMQ, display).

:func:`build_sink` turns one ``sinks[]`` config entry into a :class:`Sink`;
the runner gives each sink its own thread and bounded queue.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from edgewatch.config import (
    DisplaySinkConfig,
    JsonlSinkConfig,
    MaskFormat,
    MotSinkConfig,
    SinkConfig,
    VideoSinkConfig,
    ZmqSinkConfig,
)
from edgewatch.errors import SinkError
from edgewatch.metrics import Metrics
from edgewatch.sinks.base import Sink

if TYPE_CHECKING:
    import zmq

__all__ = ["Sink", "build_sink"]


def build_sink(
    cfg: SinkConfig,
    metrics: Metrics,
    *,
    zmq_context: zmq.Context[zmq.Socket[bytes]] | None = None,
    on_quit: Callable[[], None] | None = None,
    mask_format: MaskFormat = MaskFormat.RLE,
    publish_embedding: bool = False,
    name: str | None = None,
) -> Sink:
    """The sink for one config entry (not started: call ``start()``).

    ``zmq_context`` is the process's ZeroMQ context (zmq sinks), ``on_quit``
    what a display window calls when the user presses ``q`` or closes it;
    ``mask_format`` and ``publish_embedding`` shape the wire messages of the
    jsonl and zmq sinks. ``name`` defaults to the sink type.
    """
    sink_name = name or cfg.type
    if isinstance(cfg, JsonlSinkConfig):
        from edgewatch.sinks.jsonl import JsonlSink

        return JsonlSink(cfg, metrics, name=sink_name, mask_format=mask_format,
                         publish_embedding=publish_embedding)
    if isinstance(cfg, MotSinkConfig):
        from edgewatch.sinks.mot import MotSink

        return MotSink(cfg, metrics, name=sink_name)
    if isinstance(cfg, VideoSinkConfig):
        from edgewatch.sinks.video import VideoSink

        return VideoSink(cfg, metrics, name=sink_name)
    if isinstance(cfg, ZmqSinkConfig):
        from edgewatch.sinks.zmq import ZmqSink

        return ZmqSink(cfg, metrics, name=sink_name, context=zmq_context,
                       mask_format=mask_format, publish_embedding=publish_embedding)
    if isinstance(cfg, DisplaySinkConfig):
        from edgewatch.sinks.display import DisplaySink

        return DisplaySink(cfg, metrics, name=sink_name, on_quit=on_quit)
    raise SinkError(f"unknown sink type {getattr(cfg, 'type', cfg)!r}")
