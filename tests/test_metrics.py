"""Metrics: counters, gauges, histograms, quantiles and the exact text format."""

from __future__ import annotations

import math
import threading

import pytest

from edgewatch.metrics import Metrics

NAME = "edgewatch_frames_total"


@pytest.mark.parametrize(
    ("incs", "labels", "expected"),
    [
        ([], {"source": "a"}, 0.0),
        ([(1.0, {"source": "a"})], {"source": "a"}, 1.0),
        ([(1.0, {"source": "a"}), (2.5, {"source": "a"})], {"source": "a"}, 3.5),
        ([(1.0, {"source": "a"}), (2.0, {"source": "b"})], {"source": "b"}, 2.0),
        # label order does not matter; label values are compared as strings
        ([(1.0, {"source": "a", "stage": "x"})], {"stage": "x", "source": "a"}, 1.0),
        ([(3.0, {"n": 1})], {"n": "1"}, 3.0),
        ([(0.0, {})], {}, 0.0),
        ([(4.0, {})], {"source": "a"}, 0.0),
    ],
)
def test_inc_counter(
    incs: list[tuple[float, dict[str, object]]], labels: dict[str, object], expected: float
) -> None:
    m = Metrics()
    for value, lab in incs:
        m.inc(NAME, value, **lab)
    assert m.counter(NAME, **labels) == expected


@pytest.mark.parametrize(
    ("sets", "labels", "expected"),
    [
        ([], {"source": "a"}, None),
        ([(5.0, {"source": "a"})], {"source": "a"}, 5.0),
        ([(5.0, {"source": "a"}), (2.0, {"source": "a"})], {"source": "a"}, 2.0),
        ([(5.0, {"source": "a"}), (-1.0, {"source": "b"})], {"source": "b"}, -1.0),
        ([(math.inf, {})], {}, math.inf),
    ],
)
def test_set_gauge(
    sets: list[tuple[float, dict[str, object]]], labels: dict[str, object], expected: float | None
) -> None:
    m = Metrics()
    for value, lab in sets:
        m.set("edgewatch_fps", value, **lab)
    assert m.gauge("edgewatch_fps", **labels) == expected


SERIES = [
    ({"source": "a", "stage": "detect"}, 1.0),
    ({"source": "a", "stage": "track"}, 2.0),
    ({"source": "b", "stage": "detect"}, 4.0),
]


@pytest.mark.parametrize(
    ("name", "labels", "expected"),
    [
        (NAME, {}, 7.0),
        (NAME, {"source": "a"}, 3.0),
        (NAME, {"stage": "detect"}, 5.0),
        (NAME, {"source": "a", "stage": "track"}, 2.0),
        (NAME, {"source": "b", "stage": "track"}, 0.0),
        (NAME, {"source": "c"}, 0.0),
        ("edgewatch_drops_total", {}, 0.0),
    ],
)
def test_counter_sum(name: str, labels: dict[str, object], expected: float) -> None:
    m = Metrics()
    for lab, value in SERIES:
        m.inc(NAME, value, **lab)
    assert m.counter_sum(name, **labels) == expected


@pytest.mark.parametrize(
    ("values", "expected_cumulative", "expected_sum"),
    [
        ([], None, None),
        ([0.5], [1, 1, 1, 1], 0.5),
        ([1.0], [1, 1, 1, 1], 1.0),  # le is inclusive
        ([1.5, 2.0, 2.5], [0, 2, 3, 3], 6.0),
        ([0.0, 10.0, -1.0], [2, 2, 2, 3], 9.0),
    ],
)
def test_observe_buckets(
    values: list[float], expected_cumulative: list[int] | None, expected_sum: float | None
) -> None:
    m = Metrics()
    for v in values:
        m.observe("h_seconds", v, buckets=(1.0, 2.0, 3.0), source="a")
    snap = m.snapshot()
    if expected_cumulative is None:
        assert "h_seconds_bucket" not in snap
        return
    got = [
        snap["h_seconds_bucket"][(("le", le), ("source", "a"))] for le in ("1", "2", "3", "+Inf")
    ]
    assert got == expected_cumulative
    assert snap["h_seconds_sum"][(("source", "a"),)] == expected_sum
    assert snap["h_seconds_count"][(("source", "a"),)] == len(values)


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([0.5, 1.5, 1.5, 2.5], 0.0, 1.0),
        ([0.5, 1.5, 1.5, 2.5], 0.25, 1.0),
        ([0.5, 1.5, 1.5, 2.5], 0.5, 2.0),
        ([0.5, 1.5, 1.5, 2.5], 0.75, 2.0),
        ([0.5, 1.5, 1.5, 2.5], 1.0, 3.0),
        ([2.5, 2.5], 0.0, 3.0),  # q=0 is the bucket of the smallest value, not the first
        ([0.5, 5.0], 1.0, math.inf),
        ([0.5, 5.0], 0.5, 1.0),
        ([], 0.5, math.nan),
    ],
)
def test_quantile(values: list[float], q: float, expected: float) -> None:
    m = Metrics()
    for v in values:
        m.observe("h_seconds", v, buckets=(1.0, 2.0, 3.0))
    got = m.quantile("h_seconds", q)
    if math.isnan(expected):
        assert math.isnan(got)
    else:
        assert got == expected


def _clash(m: Metrics) -> None:
    m.inc("x_total")
    m.set("x_total", 1.0)


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (lambda m: m.inc(NAME, -1.0), "negative"),
        (lambda m: m.inc(NAME, math.nan), "NaN"),
        (lambda m: m.inc("bad-name"), "metric name"),
        (lambda m: m.set("1abc", 1.0), "metric name"),
        (lambda m: m.inc(NAME, __reserved="x"), "label name"),
        (_clash, "another kind"),
        (lambda m: (m.set("g", 1.0), m.observe("g", 1.0)), "another kind"),
        (lambda m: m.observe("h", 1.0, le="1"), "reserved"),
        (lambda m: m.observe("h", math.nan), "NaN"),
        (lambda m: m.observe("h", 1.0, buckets=(2.0, 1.0)), "increasing"),
        (lambda m: m.observe("h", 1.0, buckets=(1.0, math.inf)), "finite"),
        (lambda m: m.observe("h", 1.0, buckets=()), "buckets"),
        (lambda m: (m.observe("h", 1.0), m.quantile("h", 1.5)), "outside"),
    ],
)
def test_invalid_use_raises(action: object, message: str) -> None:
    m = Metrics()
    with pytest.raises(ValueError, match=message):
        action(m)  # type: ignore[operator]


def test_render_exact_small_case() -> None:
    m = Metrics()
    m.inc(NAME, source="b", stage="detect")
    m.inc(NAME, 2, source="a", stage="detect")
    m.set("edgewatch_fps", 12.5, source="a")
    m.set("edgewatch_fps", math.nan, source="b")
    m.observe("req_seconds", 0.5, buckets=(0.1, 1.0), path='x"y\\z\nw')
    m.observe("req_seconds", 3, buckets=(0.1, 1.0), path='x"y\\z\nw')
    lab = 'path="x\\"y\\\\z\\nw"'
    assert m.render() == "\n".join(
        [
            "# HELP edgewatch_frames_total Frames handled, per source and stage.",
            "# TYPE edgewatch_frames_total counter",
            'edgewatch_frames_total{source="a",stage="detect"} 2',
            'edgewatch_frames_total{source="b",stage="detect"} 1',
            "# HELP edgewatch_fps Frames per second over the last seconds.",
            "# TYPE edgewatch_fps gauge",
            'edgewatch_fps{source="a"} 12.5',
            'edgewatch_fps{source="b"} NaN',
            "# HELP req_seconds req_seconds",
            "# TYPE req_seconds histogram",
            f'req_seconds_bucket{{{lab},le="0.1"}} 0',
            f'req_seconds_bucket{{{lab},le="1"}} 1',
            f'req_seconds_bucket{{{lab},le="+Inf"}} 2',
            f"req_seconds_sum{{{lab}}} 3.5",
            f"req_seconds_count{{{lab}}} 2",
            "",
        ]
    )


def test_render_parses_with_prometheus_client() -> None:
    parser = pytest.importorskip(
        "prometheus_client.parser", reason="pip install prometheus-client (test extra)"
    )
    m = Metrics()
    m.inc(NAME, 3, source='we"ird\\src\n', stage="detect")
    m.set("edgewatch_fps", math.inf, source="a")
    m.set("edgewatch_fps", 0.25, source="b")
    for v in (0.003, 0.2, 0.2, 20.0):
        m.observe("edgewatch_latency_seconds", v, source="a")
    families = {f.name: f for f in parser.text_string_to_metric_families(m.render())}
    assert {n: f.type for n, f in families.items()} == {
        "edgewatch_frames": "counter",
        "edgewatch_fps": "gauge",
        "edgewatch_latency_seconds": "histogram",
    }
    assert families["edgewatch_frames"].documentation == "Frames handled, per source and stage."
    (frames,) = families["edgewatch_frames"].samples
    assert frames.labels == {"source": 'we"ird\\src\n', "stage": "detect"}
    assert frames.value == 3
    fps = {s.labels["source"]: s.value for s in families["edgewatch_fps"].samples}
    assert fps == {"a": math.inf, "b": 0.25}
    hist = families["edgewatch_latency_seconds"].samples
    buckets = [(s.labels["le"], s.value) for s in hist if s.name.endswith("_bucket")]
    assert buckets == [
        ("0.005", 1),
        ("0.01", 1),
        ("0.025", 1),
        ("0.05", 1),
        ("0.1", 1),
        ("0.25", 3),
        ("0.5", 3),
        ("1", 3),
        ("2.5", 3),
        ("5", 3),
        ("10", 3),
        ("+Inf", 4),
    ]
    tail = {s.name: s.value for s in hist if not s.name.endswith("_bucket")}
    assert tail == {
        "edgewatch_latency_seconds_sum": pytest.approx(20.403),
        "edgewatch_latency_seconds_count": 4,
    }


def test_empty_render_is_valid() -> None:
    assert Metrics().render() == "\n"


def test_concurrent_increments_are_exact() -> None:
    m = Metrics()

    def work() -> None:
        for _ in range(5000):
            m.inc(NAME, source="a")
            m.observe("edgewatch_stage_seconds", 0.01, stage="detect")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert m.counter(NAME, source="a") == 20000
    assert m.snapshot()["edgewatch_stage_seconds_count"][(("stage", "detect"),)] == 20000


@pytest.mark.parametrize("labeler", [False, True], ids=["detector", "with-labeler"])
def test_pipeline_stage_seconds_per_source_and_stage(tmp_path, labeler: bool) -> None:
    """The runner records every per-frame stage (decode .. track, label with a labeler,
    each sink) in ``edgewatch_stage_seconds{source,stage}``, once per frame."""
    from pipeline.clip_models import TINY, AssetUnavailable, build_clip_dir
    from testkit import image_folder, tiny_detector

    from edgewatch.config import parse_config
    from edgewatch.pipeline.runner import Pipeline

    frames = {"a": 5, "b": 3}
    srcs = "".join(
        f"  - {{id: {sid}, uri: '{image_folder(tmp_path / sid, n, (120, 160), seed=i)}'}}\n"
        for i, (sid, n) in enumerate(frames.items())
    )
    text = (
        f"sources:\n{srcs}detector: {{model: '{tiny_detector(tmp_path / 'tiny.onnx')}'}}\n"
        f"sinks: [{{type: jsonl, path: '{tmp_path / 'out' / '{source}.jsonl'}'}}]\n"
    )
    stages = {"decode", "preprocess", "inference", "postprocess", "track"}
    if labeler:
        try:
            clip = build_clip_dir(TINY, seed=0)
        except AssetUnavailable as e:
            pytest.skip(f"cannot fetch the OpenAI CLIP vocabulary from PyPI: {e}")
        text += f"labeler: {{model: '{clip}', labels: [a person, a bag], every: 1}}\n"
        stages.add("label")
    pipe = Pipeline(parse_config(text))
    summary = pipe.run()
    assert summary.frames == frames
    counts = pipe.metrics.snapshot()["edgewatch_stage_seconds_count"]
    labelled = [(dict(k), n) for k, n in counts.items()]
    per_source = {(lab["source"], lab["stage"]): n for lab, n in labelled if "source" in lab}
    sink_msgs = {sid: n + 2 for sid, n in frames.items()}  # + connected and ended events
    assert per_source == {
        **{(sid, st): n for sid, n in frames.items() for st in stages},
        **{(sid, "sink:jsonl"): n for sid, n in sink_msgs.items()},
    }
    # The labeler's encoder batches mix sources: its series is the only one without one.
    assert {dict(k)["stage"] for k in counts if "source" not in dict(k)} <= {"labeler"}
