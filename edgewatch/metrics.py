"""Process-wide counters, gauges and histograms, rendered in Prometheus text format.

One :class:`Metrics` instance belongs to a pipeline run (no module-level
registry); stages receive it and record into labelled series::

    m = Metrics()
    m.inc("edgewatch_frames_total", source="lobby", stage="detect")
    m.observe("edgewatch_latency_seconds", 0.05, source="lobby")
    print(m.render())
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable, Mapping

_DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

LabelKey = tuple[tuple[str, str], ...]

HELP: dict[str, tuple[str, str]] = {
    "edgewatch_frames_total": ("counter", "Frames handled, per source and stage."),
    "edgewatch_drops_total": ("counter", "Frames or results dropped, per source and stage."),
    "edgewatch_decode_errors_total": ("counter", "Undecodable packets or frames skipped."),
    "edgewatch_reconnects_total": ("counter", "Source reconnect attempts."),
    "edgewatch_sink_errors_total": ("counter", "Sink write failures."),
    "edgewatch_fallbacks_total": ("counter", "Fallbacks taken (provider, decoder, ...)."),
    "edgewatch_fps": ("gauge", "Frames per second over the last seconds."),
    "edgewatch_latency_seconds": ("histogram", "Capture-to-publish latency."),
    "edgewatch_stage_seconds": ("histogram", "Time spent per frame in a stage."),
}


def _key(labels: Mapping[str, object]) -> LabelKey:
    return tuple(sorted((k, str(v)) for k, v in labels.items()))


class _Histogram:
    __slots__ = ("buckets", "count", "counts", "sum")

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.count += 1
        self.sum += value

    def quantile(self, q: float) -> float:
        """Upper bound of the bucket holding quantile ``q`` (inf if past the last)."""
        if self.count == 0:
            return float("nan")
        target = q * self.count
        acc = 0
        for i, c in enumerate(self.counts):
            acc += c
            if acc >= target:
                return self.buckets[i] if i < len(self.buckets) else float("inf")
        return float("inf")


class Metrics:
    """Thread-safe labelled metrics."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, dict[LabelKey, float]] = {}
        self._gauges: dict[str, dict[LabelKey, float]] = {}
        self._hists: dict[str, dict[LabelKey, _Histogram]] = {}

    def inc(self, name: str, value: float = 1.0, **labels: object) -> None:
        key = _key(labels)
        with self._lock:
            series = self._counters.setdefault(name, {})
            series[key] = series.get(key, 0.0) + value

    def set(self, name: str, value: float, **labels: object) -> None:
        with self._lock:
            self._gauges.setdefault(name, {})[_key(labels)] = value

    def observe(
        self, name: str, value: float, buckets: tuple[float, ...] = _DEFAULT_BUCKETS, **labels: object
    ) -> None:
        key = _key(labels)
        with self._lock:
            series = self._hists.setdefault(name, {})
            h = series.get(key)
            if h is None:
                h = series[key] = _Histogram(buckets)
            h.observe(value)

    def counter(self, name: str, **labels: object) -> float:
        with self._lock:
            return self._counters.get(name, {}).get(_key(labels), 0.0)

    def counter_sum(self, name: str, **labels: object) -> float:
        """Sum of a counter over every series whose labels include ``labels``."""
        want = set(_key(labels))
        with self._lock:
            return sum(v for k, v in self._counters.get(name, {}).items() if want <= set(k))

    def gauge(self, name: str, **labels: object) -> float | None:
        with self._lock:
            return self._gauges.get(name, {}).get(_key(labels))

    def quantile(self, name: str, q: float, **labels: object) -> float:
        with self._lock:
            h = self._hists.get(name, {}).get(_key(labels))
            return h.quantile(q) if h else float("nan")

    def render(self) -> str:
        """The Prometheus text exposition format (version 0.0.4)."""
        lines: list[str] = []
        with self._lock:
            for kind, table in (("counter", self._counters), ("gauge", self._gauges)):
                for name, series in sorted(table.items()):
                    lines += _header(name, kind)
                    lines += [f"{name}{_fmt(k)} {_num(v)}" for k, v in sorted(series.items())]
            for name, hseries in sorted(self._hists.items()):
                lines += _header(name, "histogram")
                for k, h in sorted(hseries.items()):
                    acc = 0
                    for bound, c in zip((*h.buckets, float("inf")), h.counts, strict=True):
                        acc += c
                        le = "+Inf" if bound == float("inf") else _num(bound)
                        lines.append(f"{name}_bucket{_fmt(k, (('le', le),))} {acc}")
                    lines.append(f"{name}_sum{_fmt(k)} {_num(h.sum)}")
                    lines.append(f"{name}_count{_fmt(k)} {h.count}")
        return "\n".join(lines) + "\n"


def _header(name: str, kind: str) -> list[str]:
    help_text = HELP.get(name, (kind, name))[1]
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _fmt(key: LabelKey, extra: Iterable[tuple[str, str]] = ()) -> str:
    items = [*key, *extra]
    if not items:
        return ""
    return "{" + ",".join(f'{k}="{_esc(v)}"' for k, v in items) + "}"


def _num(v: float) -> str:
    return repr(float(v)) if v != int(v) else str(int(v))
