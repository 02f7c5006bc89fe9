"""Labeler stage: scheduling, budget, back-pressure, aggregation and the prompt cache.

Runs the tiny random-weight CLIP of ``clip_models.py`` (exported once per
session into ``.cache/edgewatch/test-assets``) on a real frame of the sample
footage. ``Labeler.flush()`` waits for the worker where a test needs results.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import supervision as sv
from clip_models import TINY, AssetUnavailable, build_clip_dir, write_toy_encoders

from edgewatch import types
from edgewatch.config import LabelerConfig
from edgewatch.errors import ConfigError, ModelError
from edgewatch.metrics import Metrics
from edgewatch.pipeline.labeler import (
    DATA_EMBEDDING_VALID,
    FORGET_FRAMES,
    NO_LABEL,
    UNKNOWN,
    LabelAggregator,
    Labeler,
)

pytest.importorskip("torch")
pytest.importorskip("transformers")
cv2 = pytest.importorskip("cv2")

REPO = Path(__file__).resolve().parents[2]
NAN = float("nan")


@pytest.fixture(scope="session")
def model_dir() -> Path:
    try:
        return build_clip_dir(TINY, seed=0)
    except AssetUnavailable as e:
        pytest.skip(f"cannot fetch the OpenAI CLIP vocabulary from PyPI: {e}")


@pytest.fixture(scope="session")
def image() -> np.ndarray:
    for p in (REPO / "samples" / "vtest.avi", Path("/tmp/vtest.avi")):
        if p.is_file():
            cap = cv2.VideoCapture(str(p))
            ok, img = cap.read()
            cap.release()
            if ok:
                return img
    pytest.skip("sample footage missing: run scripts/fetch-samples (samples/vtest.avi)")


@pytest.fixture
def make(model_dir: Path, tmp_path: Path) -> Any:
    made: list[Labeler] = []

    def _make(**kw: Any) -> tuple[Labeler, Metrics]:
        opts: dict[str, Any] = {
            "labels": ["person", "car", "dog"],
            "cache_dir": tmp_path / "cache",
            "device": "cpu",
            **kw,
        }
        metrics = Metrics()
        lab = Labeler(LabelerConfig(model=model_dir, **opts), {0: "person", 1: "car"}, metrics)
        lab.start()
        made.append(lab)
        return lab, metrics

    yield _make
    for lab in made:
        lab.stop()


def _frame(image: np.ndarray, index: int, source: str = "cam", generation: int = 0) -> types.Frame:
    return types.Frame(source, index, index / 25, time.time(), image, generation=generation)


def _tracks(
    boxes: list[tuple[float, float, float, float]],
    ids: list[int] | None = None,
    classes: list[int] | None = None,
) -> sv.Detections:
    n = len(boxes)
    return sv.Detections(
        xyxy=np.asarray(boxes, np.float32).reshape(n, 4),
        confidence=np.full(n, 0.9, np.float32),
        class_id=np.asarray(classes if classes is not None else [0] * n),
        tracker_id=np.asarray(ids if ids is not None else list(range(1, n + 1))),
    )


def _grid(n: int) -> list[tuple[float, float, float, float]]:
    return [
        (40.0 * (i % 16), 100.0 * (i // 16), 40.0 * (i % 16) + 40, 100.0 * (i // 16) + 90)
        for i in range(n)
    ]


def _crops(m: Metrics, source: str = "cam") -> int:
    return int(m.counter("edgewatch_labeler_crops_total", source=source))


# --------------------------------------------------------------------------- aggregator


@pytest.mark.parametrize(
    ("window", "min_score", "sequence", "expected"),
    [
        (3, 0.3, [], (NO_LABEL, NAN)),
        (3, 0.3, [[0.2, 0.7, 0.1]], ("b", 0.7)),
        (3, 0.3, [[0.9, 0.05, 0.05], [0.1, 0.8, 0.1]], ("a", 0.5)),
        (2, 0.3, [[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.1, 0.6, 0.3]], ("b", 0.7)),
        (1, 0.3, [[0.9, 0.05, 0.05], [0.2, 0.2, 0.6]], ("c", 0.6)),
        (3, 0.5, [[0.4, 0.35, 0.25]], (UNKNOWN, 0.4)),
        (3, 0.4, [[0.4, 0.35, 0.25]], ("a", 0.4)),
        (
            4,
            0.3,
            [[0.5, 0.25, 0.25], [0.1, 0.45, 0.45], [0.5, 0.25, 0.25], [0.1, 0.45, 0.45]],
            ("b", 0.35),
        ),
    ],
)
def test_aggregator(
    window: int, min_score: float, sequence: list[list[float]], expected: tuple[str, float]
) -> None:
    agg = LabelAggregator(["a", "b", "c"], window, min_score)
    for p in sequence:
        agg.add(p)
    label, score = agg.label()
    assert label == expected[0]
    np.testing.assert_allclose(score, expected[1], atol=1e-6)
    assert len(agg) == min(len(sequence), window)


@pytest.mark.parametrize(
    ("labels", "window", "probs"), [([], 3, None), (["a"], 0, None), (["a", "b"], 2, [1.0])]
)
def test_aggregator_bad_input(labels: list[str], window: int, probs: list[float] | None) -> None:
    with pytest.raises(ValueError):
        agg = LabelAggregator(labels, window, 0.3)
        agg.add(probs or [])


# --------------------------------------------------------------------------- scheduling


@pytest.mark.parametrize(
    ("every", "frames", "crops"), [(10, 31, 4), (15, 15, 1), (1, 5, 5), (7, 8, 2)]
)
def test_crop_every_n_frames(
    make: Any, image: np.ndarray, every: int, frames: int, crops: int
) -> None:
    lab, m = make(every=every)
    for i in range(frames):
        out = lab.process(_frame(image, i), _tracks([(100, 100, 200, 300)]))
        if i == 1:  # the first crop was queued on frame 0: a label is there one frame later
            assert not np.isnan(out.data[types.DATA_LABEL_SCORE][0])
        assert lab.flush()
    assert _crops(m) == crops


def test_label_appears_within_every_frames_live(make: Any, image: np.ndarray) -> None:
    """Without flushing, at 25 fps pacing, the label is there before ``every`` frames pass."""
    lab, _ = make(every=10)
    seen = None
    for i in range(10):
        out = lab.process(_frame(image, i), _tracks([(100, 100, 200, 300)]))
        if seen is None and not np.isnan(out.data[types.DATA_LABEL_SCORE][0]):
            seen = i
        time.sleep(0.04)
    assert seen is not None and seen < 10


@pytest.mark.parametrize(
    ("tracks", "budget", "per_frame"),
    [(12, 5, [5, 5, 2, 0]), (3, 8, [3, 0, 0, 0]), (9, 1, [1, 1, 1, 1])],
)
def test_budget_per_frame(
    make: Any, image: np.ndarray, tracks: int, budget: int, per_frame: list[int]
) -> None:
    lab, m = make(every=100, max_crops_per_frame=budget)
    boxes = _grid(tracks)
    got = []
    for i in range(len(per_frame)):
        before = _crops(m)
        lab.process(_frame(image, i), _tracks(boxes))
        assert lab.flush()
        got.append(_crops(m) - before)
    assert got == per_frame


def test_queue_overflow_drops_oldest(make: Any, image: np.ndarray) -> None:
    lab, m = make(every=100, max_crops_per_frame=64, queue_size=4, batch=1)
    n = 60
    lab.process(_frame(image, 0), _tracks(_grid(n)))
    assert lab.flush()
    out = lab.process(_frame(image, 1), _tracks(_grid(n)))
    dropped = m.counter("edgewatch_drops_total", stage="labeler", source="cam")
    encoded = m.counter("edgewatch_labeler_encoded_total", source="cam")
    has = ~np.isnan(out.data[types.DATA_LABEL_SCORE])
    assert dropped > 0
    assert dropped + encoded == n == _crops(m)
    assert has.sum() == encoded
    assert has[-4:].all()  # the newest queue_size requests are never dropped


@pytest.mark.parametrize(("grow", "early"), [(1.0, False), (1.2, False), (1.5, True), (3.0, True)])
def test_regrow_triggers_early_crop(make: Any, image: np.ndarray, grow: float, early: bool) -> None:
    lab, m = make(every=100, regrow=1.5)
    lab.process(_frame(image, 0), _tracks([(100, 100, 200, 200)]))
    assert lab.flush()
    side = 100 * grow**0.5
    lab.process(_frame(image, 3), _tracks([(100, 100, 100 + side, 100 + side)]))
    assert lab.flush()
    assert _crops(m) == (2 if early else 1)


@pytest.mark.parametrize(
    ("box", "crops"),
    [
        ((0, 0, 31.5, 100), 1),
        ((0, 0, 31, 100), 0),
        ((10, 10, 100, 40), 0),
        ((750, 500, 800, 700), 0),
        ((700, 500, 800, 620), 1),
    ],
)
def test_min_size(
    make: Any, image: np.ndarray, box: tuple[float, float, float, float], crops: int
) -> None:
    lab, m = make(min_size=32)  # the frame is 768x576: the last two boxes are clipped
    lab.process(_frame(image, 0), _tracks([box]))
    assert lab.flush()
    assert _crops(m) == crops


@pytest.mark.parametrize(
    ("classes", "labelled"),
    [
        (None, [True, True, True]),
        ([0], [True, False, False]),
        (["car"], [False, True, False]),
        (["person", 1], [True, True, False]),
    ],
)
def test_class_filter(
    make: Any, image: np.ndarray, classes: list[int | str] | None, labelled: list[bool]
) -> None:
    lab, _ = make(classes=classes)
    t = _tracks(_grid(3), classes=[0, 1, 2])
    lab.process(_frame(image, 0), t)
    assert lab.flush()
    out = lab.process(_frame(image, 1), t)
    assert (~np.isnan(out.data[types.DATA_LABEL_SCORE])).tolist() == labelled


def test_unknown_class_name(model_dir: Path, tmp_path: Path) -> None:
    cfg = LabelerConfig(model=model_dir, labels=["x"], classes=["bus"], cache_dir=tmp_path)
    with pytest.raises(ConfigError, match="unknown class 'bus'"):
        Labeler(cfg, {0: "person"}, Metrics()).start()


# --------------------------------------------------------------------------- output


def test_output_columns(make: Any, image: np.ndarray) -> None:
    lab, _ = make(groups={"colour": ["red", "blue"]}, min_score=0.0)
    t = _tracks([(100, 100, 200, 300), (300, 100, 400, 300)], ids=[5, -1])
    first = lab.process(_frame(image, 0), t)
    assert first is not t and types.DATA_LABEL not in t.data
    assert first.data[types.DATA_LABEL].tolist() == [NO_LABEL, NO_LABEL]
    assert not first.data[DATA_EMBEDDING_VALID].any()
    assert not first.data[types.DATA_EMBEDDING].any()
    assert lab.flush()
    out = lab.process(_frame(image, 1), t)
    emb = out.data[types.DATA_EMBEDDING]
    assert emb.shape == (2, 48) and emb.dtype == np.float32
    assert out.data[DATA_EMBEDDING_VALID].tolist() == [True, False]
    np.testing.assert_allclose(np.linalg.norm(emb[0]), 1.0, atol=1e-5)
    assert out.data[types.DATA_LABEL][0] in ("person", "car", "dog")
    assert out.data[types.DATA_LABEL_SCORE].dtype == np.float32
    groups = out.data[types.DATA_LABEL_GROUPS]
    assert set(groups[0]) == {"colour"} and groups[0]["colour"][0] in ("red", "blue")
    assert groups[1] == {}
    expected = lab.encode_images([image[100:300, 100:200]])[0]
    np.testing.assert_allclose(emb[0], expected, atol=1e-5)


def test_forgets_vanished_tracks(make: Any, image: np.ndarray) -> None:
    lab, _ = make()
    lab.process(_frame(image, 0), _tracks(_grid(5)))
    lab.process(_frame(image, 0, source="other"), _tracks(_grid(2)))
    assert lab.tracks_known() == 7
    lab.process(_frame(image, FORGET_FRAMES + 1), _tracks([]))
    assert lab.tracks_known() == 2
    # A reconnect alone forgets nothing: the tracker may bridge the gap with the same IDs.
    lab.process(_frame(image, 1, source="other", generation=1), _tracks([]))
    assert lab.tracks_known() == 2
    lab.forget_source("other")  # the runner reset the source's tracker
    assert lab.tracks_known() == 0


# --------------------------------------------------------------------------- prompt cache


def test_text_embedding_cache(make: Any) -> None:
    a, _ = make()
    b, _ = make()
    c, _ = make(templates=["a photo of the {}."])
    assert (a.cache_hit, b.cache_hit, c.cache_hit) == (False, True, False)
    np.testing.assert_array_equal(a.text_embeddings[""], b.text_embeddings[""])
    assert not np.allclose(a.text_embeddings[""], c.text_embeddings[""])


def test_prompt_ensemble(make: Any) -> None:
    templates = ["a photo of a {}.", "a blurry photo of a {}."]
    lab, _ = make(labels=["person", "dog"], templates=templates)
    raw = lab.encode_text([t.format(lb) for lb in ("person", "dog") for t in templates])
    mean = raw.reshape(2, 2, -1).mean(axis=1)
    mean /= np.linalg.norm(mean, axis=1, keepdims=True)
    np.testing.assert_allclose(lab.text_embeddings[""], mean, atol=1e-6)


def test_encoder_failure_is_counted_and_survived(
    model_dir: Path, tmp_path: Path, image: np.ndarray
) -> None:
    """An image encoder that fails for batch != 1: the batch is dropped, the worker lives on."""
    d = tmp_path / "toy"
    d.mkdir()
    write_toy_encoders(d, 224, "n", reshape_batch=1)
    (d / "bpe_simple_vocab_16e6.txt.gz").symlink_to(model_dir / "bpe_simple_vocab_16e6.txt.gz")
    m = Metrics()
    cfg = LabelerConfig(model=d, labels=["a", "b"], cache_dir=tmp_path / "c", every=1, device="cpu")
    lab = Labeler(cfg, {0: "person"}, m)
    lab.start()
    try:
        lab.process(_frame(image, 0), _tracks(_grid(2)))  # one batch of 2: fails
        assert lab.flush()
        assert m.counter("edgewatch_drops_total", stage="labeler", source="cam") == 2
        lab.process(_frame(image, 1), _tracks(_grid(1)))  # batch of 1: works
        assert lab.flush()
        out = lab.process(_frame(image, 2), _tracks(_grid(1)))
        assert not np.isnan(out.data[types.DATA_LABEL_SCORE][0])
        assert m.counter("edgewatch_labeler_encoded_total", source="cam") == 1
    finally:
        lab.stop()


def _thread_nice() -> dict[int, int]:
    """Niceness of each thread of this process (Linux ``/proc/self/task/*/stat``)."""
    out = {}
    for d in Path("/proc/self/task").iterdir():
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        out[int(d.name)] = int(fields[16])
    return out


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux per-thread nice")
@pytest.mark.parametrize("priority", ["idle", "nice"])
@pytest.mark.parametrize("threads", [1, 2, 0])
def test_every_encoder_thread_runs_below_detection(
    make: Any, threads: int, priority: str
) -> None:
    """The worker and ONNX Runtime's intra-op threads (threads != 1) all get ``nice``
    and, with ``priority: idle``, SCHED_IDLE; the thread that started the labeler
    keeps its own priority and policy."""
    me = threading.get_native_id()
    base = os.getpriority(os.PRIO_PROCESS, me)
    if base >= 10:
        pytest.skip(f"this process already runs at nice {base}")
    policy = os.sched_getscheduler(me)
    before = _thread_nice()
    _, metrics = make(intra_op_num_threads=threads, nice=10, priority=priority)
    deadline = time.monotonic() + 5
    while True:  # the worker lowers its own priority as it starts
        new = {t: n for t, n in _thread_nice().items() if t not in before}
        if set(new.values()) == {10} or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert new and set(new.values()) == {10}, new
    assert (len(new) > 1) is (threads != 1)  # ORT's pool threads exist only with threads != 1
    want = os.SCHED_IDLE if priority == "idle" else os.SCHED_OTHER
    policies = {}
    for t in new:
        try:
            policies[t] = os.sched_getscheduler(t)
        except OSError:  # the thread ended meanwhile
            continue
    assert policies and set(policies.values()) == {want}, policies
    assert os.getpriority(os.PRIO_PROCESS, me) == base
    assert os.sched_getscheduler(me) == policy
    assert metrics.counter_sum("edgewatch_fallbacks_total") == 0


@pytest.mark.parametrize("nice", [10, 0])
def test_model_error_reaches_the_caller(tmp_path: Path, nice: int) -> None:
    """A model that fails to load (here in the lower-priority loader thread) raises in start()."""
    cfg = LabelerConfig(model=tmp_path, labels=["a"], cache_dir=tmp_path / "c", device="cpu",
                        nice=nice)
    with pytest.raises(ModelError, match="no CLIP image encoder"):
        Labeler(cfg, {0: "person"}, Metrics()).start()


def test_wire_message_of_labelled_tracks(make: Any, image: np.ndarray) -> None:
    """The runner publishes the labeler's output: no label key before a result, then both."""
    from edgewatch.wire import decode_embedding, frame_message

    lab, _ = make(groups={"colour": ["red", "blue"]}, min_score=0.0)
    t = _tracks([(100, 100, 200, 300)])
    names = {0: "person"}
    before = frame_message(
        types.FrameResult(_frame(image, 0), lab.process(_frame(image, 0), t), names)
    )
    assert "label" not in before["objects"][0] and "labels" not in before["objects"][0]
    assert lab.flush()
    out = lab.process(_frame(image, 1), t)
    msg = frame_message(types.FrameResult(_frame(image, 1), out, names), publish_embedding=True)
    obj = msg["objects"][0]
    assert obj["label"] == out.data[types.DATA_LABEL][0]
    assert obj["label_score"] == round(float(out.data[types.DATA_LABEL_SCORE][0]), 4)
    assert set(obj["labels"]) == {"colour"}
    np.testing.assert_allclose(
        decode_embedding(obj["embedding"]), out.data[types.DATA_EMBEDDING][0], atol=1e-3
    )
