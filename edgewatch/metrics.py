"""Process-wide counters, gauges and histograms, rendered in Prometheus text format.

One :class:`Metrics` instance belongs to a pipeline run (no module-level
registry); stages receive it and record into labelled series::

    m = Metrics()
    m.inc("edgewatch_frames_total", source="lobby", stage="detect")
    m.observe("edgewatch_latency_seconds", 0.05, source="lobby")
    text = m.render()  # what /metrics serves
"""

from __future__ import annotations

import bisect
import itertools
import math
import re
import threading
from collections.abc import Iterable, Mapping

_DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

LabelKey = tuple[tuple[str, str], ...]

_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

HELP: dict[str, tuple[str, str]] = {
    "edgewatch_frames_total": ("counter", "Frames handled, per source and stage."),
    "edgewatch_drops_total": ("counter", "Frames or results dropped, per source and stage."),
    "edgewatch_decode_errors_total": ("counter", "Undecodable packets or frames skipped."),
    "edgewatch_reconnects_total": ("counter", "Source reconnect attempts."),
    "edgewatch_sink_errors_total": ("counter", "Sink write failures."),
    "edgewatch_fallbacks_total": ("counter", "Fallbacks taken (provider, decoder, ...)."),
    "edgewatch_inference_calls_total": (
        "counter",
        "Model runs, per stage (one run may hold a batch of frames).",
    ),
    "edgewatch_relinks_total": ("counter", "New tracks re-linked to a lost track by appearance."),
    "edgewatch_tracker_resets_total": (
        "counter",
        "Trackers restarted after a source reopened past the time they keep lost tracks.",
    ),
    "edgewatch_fps": ("gauge", "Frames per second over the last seconds."),
    "edgewatch_latency_seconds": ("histogram", "Capture-to-publish latency."),
    "edgewatch_stage_seconds": ("histogram", "Time spent per frame in a stage."),
}


def _key(labels: Mapping[str, object]) -> LabelKey:
    for k in labels:
        if not _LABEL_RE.match(k) or k.startswith("__"):
            raise ValueError(f"invalid Prometheus label name {k!r}")
    return tuple(sorted((k, str(v)) for k, v in labels.items()))


def _check_name(name: str) -> None:
    if not _NAME_RE.match(name):
        raise ValueError(f"invalid Prometheus metric name {name!r}")


class _Histogram:
    __slots__ = ("buckets", "count", "counts", "sum")

    def __init__(self, buckets: tuple[float, ...]) -> None:
        increasing = all(a < b for a, b in itertools.pairwise(buckets))
        if not buckets or not increasing or not all(math.isfinite(b) for b in buckets):
            raise ValueError(f"histogram buckets must be finite and increasing: {buckets}")
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
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile {q} outside 0..1")
        if self.count == 0:
            return float("nan")
        target = q * self.count
        acc = 0
        for i, c in enumerate(self.counts):
            acc += c
            if acc >= target and acc > 0:
                return self.buckets[i] if i < len(self.buckets) else float("inf")
        return float("inf")


class Metrics:
    """Thread-safe labelled metrics.

    A name belongs to one kind (counter, gauge or histogram); using it as
    another kind raises :class:`ValueError`, so :meth:`render` never writes two
    ``# TYPE`` lines for one name. Counters only go up.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, dict[LabelKey, float]] = {}
        self._gauges: dict[str, dict[LabelKey, float]] = {}
        self._hists: dict[str, dict[LabelKey, _Histogram]] = {}

    def _claim(self, name: str, table: Mapping[str, object]) -> None:
        """Reject ``name`` if another kind already uses it (call under the lock)."""
        if name in table:
            return
        _check_name(name)
        for other in (self._counters, self._gauges, self._hists):
            if other is not table and name in other:
                raise ValueError(f"metric {name!r} is already used as another kind")

    def inc(self, name: str, value: float = 1.0, **labels: object) -> None:
        """Add ``value`` (>= 0) to a counter."""
        if not value >= 0:
            raise ValueError(f"counter {name}: increment {value} is negative or NaN")
        key = _key(labels)
        with self._lock:
            self._claim(name, self._counters)
            series = self._counters.setdefault(name, {})
            series[key] = series.get(key, 0.0) + value

    def set(self, name: str, value: float, **labels: object) -> None:
        """Set a gauge (NaN and infinities are allowed and rendered as such)."""
        key = _key(labels)
        with self._lock:
            self._claim(name, self._gauges)
            self._gauges.setdefault(name, {})[key] = value

    def observe(
        self,
        name: str,
        value: float,
        buckets: tuple[float, ...] = _DEFAULT_BUCKETS,
        **labels: object,
    ) -> None:
        """Record ``value`` into a histogram; ``buckets`` are used when the series is new."""
        if "le" in labels:
            raise ValueError(f"histogram {name}: 'le' is a reserved label")
        if math.isnan(value):
            raise ValueError(f"histogram {name}: cannot observe NaN")
        key = _key(labels)
        with self._lock:
            self._claim(name, self._hists)
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

    def snapshot(self) -> dict[str, dict[LabelKey, float]]:
        """A copy of every sample as rendered: sample name -> label key -> value.

        Histograms appear as ``<name>_bucket`` (cumulative, with an ``le`` label,
        ``+Inf`` last), ``<name>_sum`` and ``<name>_count``, as in :meth:`render`.

        >>> m = Metrics(); m.inc("x_total", 2, source="a")
        >>> m.snapshot()
        {'x_total': {(('source', 'a'),): 2.0}}
        """
        out: dict[str, dict[LabelKey, float]] = {}
        with self._lock:
            for table in (self._counters, self._gauges):
                for name, series in table.items():
                    out[name] = dict(series)
            for name, hseries in self._hists.items():
                buckets = out.setdefault(f"{name}_bucket", {})
                sums = out.setdefault(f"{name}_sum", {})
                counts = out.setdefault(f"{name}_count", {})
                for k, h in hseries.items():
                    acc = 0
                    for bound, c in zip((*h.buckets, math.inf), h.counts, strict=True):
                        acc += c
                        buckets[tuple(sorted((*k, ("le", _num(bound)))))] = float(acc)
                    sums[k] = h.sum
                    counts[k] = float(h.count)
        return out

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
                        lines.append(f"{name}_bucket{_fmt(k, (('le', _num(bound)),))} {acc}")
                    lines.append(f"{name}_sum{_fmt(k)} {_num(h.sum)}")
                    lines.append(f"{name}_count{_fmt(k)} {h.count}")
        return "\n".join(lines) + "\n"


def _header(name: str, kind: str) -> list[str]:
    help_text = HELP.get(name, (kind, name))[1].replace("\\", "\\\\").replace("\n", "\\n")
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _fmt(key: LabelKey, extra: Iterable[tuple[str, str]] = ()) -> str:
    items = [*key, *extra]
    if not items:
        return ""
    return "{" + ",".join(f'{k}="{_esc(v)}"' for k, v in items) + "}"


def _num(v: float) -> str:
    """A sample value as Prometheus writes it: ``1``, ``0.25``, ``+Inf``, ``NaN``.

    >>> [_num(x) for x in (3.0, 0.25, 1e20, float("inf"), -float("inf"), float("nan"))]
    ['3', '0.25', '1e+20', '+Inf', '-Inf', 'NaN']
    """
    v = float(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)
