"""ONNX Runtime sessions: metadata, providers and fallback, errors, batching,
and the real detector on real footage."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from yolo_onnx_builders import build_model, detect_output, ultralytics_metadata

from edgewatch.config import DetectorConfig, Task
from edgewatch.errors import ModelError
from edgewatch.metrics import Metrics
from edgewatch.pipeline.models.onnx import (
    CPU,
    CUDA,
    TENSORRT,
    DeviceRequest,
    TensorSpec,
    create_session,
    parse_device,
    parse_names,
    provider_chain,
    read_model_info,
)
from edgewatch.pipeline.models.yolo import YoloDetector

IMGSZ = (320, 320)


def _detect_model(
    tmp_path: Path,
    *,
    batch: int | None = 1,
    meta: dict | None = None,
    weights: bool = False,
    name: str = "m.onnx",
) -> Path:
    boxes = np.array([[80, 100, 40, 60], [200, 160, 80, 40], [150, 220, 30, 30]], np.float32)
    scores = np.array([[0.9, 0.0], [0.0, 0.8], [0.7, 0.1]], np.float32)
    out = detect_output(boxes, scores, 8)
    w = None
    if weights:  # box centres move with the picture's mean brightness
        w = np.zeros_like(out)
        w[0, 0, :3] = 60.0
        w[0, 1, :3] = -40.0
    return build_model(
        tmp_path / name,
        {"output0": out},
        imgsz=IMGSZ,
        batch=batch,
        metadata=meta,
        weights=None if w is None else {"output0": w},
    )


# --------------------------------------------------------------------------- metadata


def test_read_model_info_ultralytics_metadata(tmp_path) -> None:
    meta = ultralytics_metadata(
        "pose", {0: "person"}, (256, 320), batch=4, half=True, kpt_shape=(17, 3)
    )
    path = build_model(
        tmp_path / "p.onnx",
        {"output0": np.zeros((1, 56, 10))},
        imgsz=(256, 320),
        batch=4,
        fp16=True,
        metadata=meta,
    )
    info = read_model_info(path)
    assert (info.task, info.names, info.imgsz, info.stride) == (
        "pose",
        {0: "person"},
        (256, 320),
        32,
    )
    assert (info.batch, info.kpt_shape, info.half, info.end2end) == (4, (17, 3), True, False)
    assert info.inputs == (TensorSpec("images", (4, 3, 256, 320), "float16"),)
    assert info.outputs == (TensorSpec("output0", (4, 56, 10), "float16"),)
    assert info.metadata["author"] == "Ultralytics"
    assert info.args["opset"] == 13


@pytest.mark.parametrize(
    ("meta", "field", "expected"),
    [
        ({"end2end": "True"}, "end2end", True),
        ({"args": "{'nms': True}"}, "end2end", True),
        ({"args": "{'nms': False}"}, "end2end", False),
        ({"imgsz": "[480, 640]"}, "imgsz", (480, 640)),
        ({"imgsz": "640"}, "imgsz", (640, 640)),
        ({}, "imgsz", IMGSZ),  # no metadata: the static input shape
        ({"stride": "[8, 16, 32]"}, "stride", 32),
        ({}, "task", None),
        ({}, "names", {}),
        ({"names": "['a', 'b']"}, "names", {0: "a", 1: "b"}),
    ],
)
def test_metadata_fields(tmp_path, meta, field, expected) -> None:
    info = read_model_info(_detect_model(tmp_path, meta=meta))
    assert getattr(info, field) == expected


@pytest.mark.parametrize(
    ("meta", "error"),
    [
        ({"kpt_shape": "[17]"}, "kpt_shape"),
        ({"kpt_shape": "[17, 4]"}, "kpt_shape"),
        ({"stride": "'big'"}, "stride"),
        ({"imgsz": "[1, 2, 3]"}, "imgsz"),
        ({"args": "[1]"}, "args"),
    ],
)
def test_malformed_metadata(tmp_path, meta, error) -> None:
    with pytest.raises(ModelError, match=error):
        read_model_info(_detect_model(tmp_path, meta=meta))


def test_dynamic_batch_is_none(tmp_path) -> None:
    info = read_model_info(_detect_model(tmp_path, batch=None))
    assert info.batch is None
    assert info.inputs[0].shape == ("batch", 3, *IMGSZ)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("__import__('os').system('true')", "not a Python literal"),
        ("{0: 'a'", "not a Python literal"),
        ("{'x': 'a'}", "non-integer ids"),
        ("3", "must be a dict or list"),
    ],
)
def test_bad_names_metadata(tmp_path, text, error) -> None:
    with pytest.raises(ModelError, match=error):
        read_model_info(_detect_model(tmp_path, meta={"names": text}))
    with pytest.raises(ModelError, match=error):
        parse_names(text)


# --------------------------------------------------------------------------- providers


@pytest.mark.parametrize(
    ("device", "expected"),
    [
        ("auto", DeviceRequest("auto")),
        ("cpu", DeviceRequest("cpu")),
        ("cuda", DeviceRequest("cuda", 0)),
        ("cuda:2", DeviceRequest("cuda", 2)),
        ("tensorrt:1", DeviceRequest("tensorrt", 1)),
        ("OpenVINO", DeviceRequest("openvino")),
        ("coreml", DeviceRequest("coreml")),
    ],
)
def test_parse_device(device, expected) -> None:
    assert parse_device(device) == expected


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "cpu:1", "openvino:0", ""])
def test_parse_device_rejects(device) -> None:
    with pytest.raises(ModelError, match="unknown device"):
        parse_device(device)


def test_provider_chain_options(tmp_path) -> None:
    chain = provider_chain(DeviceRequest("tensorrt", 1), half=True, trt_cache_dir=tmp_path)
    assert [n for n, _ in chain] == [TENSORRT, CUDA, CPU]
    trt = chain[0][1]
    assert trt["device_id"] == 1 and trt["trt_fp16_enable"] is True
    assert trt["trt_engine_cache_enable"] is True and trt["trt_engine_cache_path"] == str(tmp_path)
    assert chain[1][1] == {"device_id": 1}
    assert provider_chain(DeviceRequest("cuda", 3))[0] == (CUDA, {"device_id": 3})
    assert provider_chain(DeviceRequest("cpu")) == [(CPU, {})]


@pytest.mark.parametrize("device", ["cuda", "cuda:1", "tensorrt", "openvino", "coreml"])
def test_unavailable_provider_falls_back_with_one_warning(tmp_path, caplog, device) -> None:
    import onnxruntime as ort

    wanted = provider_chain(parse_device(device))[0][0]
    if wanted in ort.get_available_providers():
        pytest.skip(f"{wanted} is available here; the fallback needs a machine without it")
    m = Metrics()
    with caplog.at_level(logging.WARNING, logger="edgewatch.pipeline.models.onnx"):
        sess = create_session(
            _detect_model(tmp_path), device, metrics=m, trt_cache_dir=tmp_path / "trt"
        )
    assert sess.get_providers() == [CPU]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert wanted in warnings[0].getMessage() and "CPU" in warnings[0].getMessage()
    assert (
        m.counter("edgewatch_fallbacks_total", stage="detector", reason="provider_unavailable") == 1
    )


def test_detector_on_cuda_runs_on_cpu(tmp_path, caplog) -> None:
    import onnxruntime as ort

    if CUDA in ort.get_available_providers():
        pytest.skip("CUDA is available here")
    m = Metrics()
    det = YoloDetector(
        DetectorConfig(model=_detect_model(tmp_path, meta=ultralytics_metadata()), device="cuda"), m
    )
    with caplog.at_level(logging.WARNING):
        det.load()
    assert det.providers == [CPU]
    assert m.counter_sum("edgewatch_fallbacks_total", stage="detector") == 1
    assert sum("CUDAExecutionProvider" in r.getMessage() for r in caplog.records) == 1
    assert len(det.predict([np.zeros((240, 320, 3), np.uint8)])[0]) == 3


def test_cpu_and_auto_do_not_warn(tmp_path, caplog) -> None:
    m = Metrics()
    with caplog.at_level(logging.WARNING):
        create_session(_detect_model(tmp_path), "cpu", metrics=m, intra_op_num_threads=1)
        create_session(_detect_model(tmp_path), "auto", metrics=m)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert m.counter_sum("edgewatch_fallbacks_total") == 0


# --------------------------------------------------------------------------- errors


def test_missing_model(tmp_path) -> None:
    with pytest.raises(ModelError, match="model file not found"):
        create_session(tmp_path / "nope.onnx", "cpu")
    with pytest.raises(ModelError, match="model file not found"):
        read_model_info(tmp_path / "nope.onnx")
    # the config validator also checks the path; construct past it to test the runtime
    cfg = DetectorConfig.model_construct(model=tmp_path / "nope.onnx", device="cpu")
    with pytest.raises(ModelError, match=r"nope\.onnx"):
        YoloDetector(cfg).load()


def test_not_an_onnx_file(tmp_path) -> None:
    path = tmp_path / "random.onnx"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ModelError, match="not an ONNX file"):
        create_session(path, "cpu")
    with pytest.raises(ModelError, match="not an ONNX file"):
        read_model_info(path)
    with pytest.raises(ModelError, match="not an ONNX file"):
        YoloDetector(DetectorConfig(model=path, device="cpu")).load()


def test_unloadable_graph(tmp_path) -> None:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 32, 32])
    node = helper.make_node("NoSuchOp", ["images"], ["out"], domain="made.up")
    model = helper.make_model(
        helper.make_graph([node], "g", [x], [y]),
        opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("made.up", 1)],
    )
    path = tmp_path / "bad.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ModelError, match="cannot load the ONNX graph"):
        create_session(path, "cpu")


def test_model_without_metadata_needs_names(tmp_path) -> None:
    path = _detect_model(tmp_path)
    with pytest.raises(ModelError, match=r"no class names.*detector\.names"):
        YoloDetector(DetectorConfig(model=path, device="cpu")).load()
    det = YoloDetector(DetectorConfig(model=path, device="cpu", names=["a", "b"]))
    det.load()
    assert det.task is Task.DETECT and det.names == {0: "a", 1: "b"} and det.imgsz == IMGSZ
    res = det.predict([np.zeros((320, 320, 3), np.uint8)])[0]
    assert res.class_id.tolist() == [0, 1, 0]
    np.testing.assert_array_equal(res.xyxy[0], [60, 70, 100, 130])


def test_names_count_must_match_outputs(tmp_path) -> None:
    det = YoloDetector(
        DetectorConfig(model=_detect_model(tmp_path), device="cpu", names=["a", "b", "c"])
    )
    with pytest.raises(ModelError, match=r"2 classes .* 3 class names"):
        det.load()


def test_fixed_input_rejects_other_imgsz(tmp_path) -> None:
    det = YoloDetector(
        DetectorConfig(
            model=_detect_model(tmp_path, meta=ultralytics_metadata()), device="cpu", imgsz=640
        )
    )
    with pytest.raises(ModelError, match="fixed at"):
        det.load()


def test_not_loaded_is_an_error(tmp_path) -> None:
    det = YoloDetector(DetectorConfig(model=_detect_model(tmp_path), device="cpu"))
    with pytest.raises(ModelError, match="load"):
        det.preprocess([np.zeros((8, 8, 3), np.uint8)])


def test_inference_failure_is_a_model_error(tmp_path) -> None:
    from edgewatch.pipeline.models.yolo import Prepared

    det = YoloDetector(
        DetectorConfig(model=_detect_model(tmp_path), device="cpu", names=["a", "b"])
    )
    det.load()
    bad = Prepared(np.zeros((1, 3, 64, 64), np.float32), ((64, 64),), (1.0,), ((0, 0),))
    with pytest.raises(ModelError, match="inference failed"):
        det.infer(bad)


# --------------------------------------------------------------------------- batching

FRAMES = [(480, 640), (1080, 1920), (300, 200)]


def _frames() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [np.full((h, w, 3), rng.integers(20, 230), np.uint8) for h, w in FRAMES]


@pytest.mark.parametrize(
    ("batch", "cfg_batch", "max_batch", "calls"),
    [(None, 8, 8, 1), (None, 2, 2, 2), (2, 8, 2, 2), (1, 8, 1, 3)],
)
def test_batch_equals_one_by_one(tmp_path, batch, cfg_batch, max_batch, calls) -> None:
    meta = ultralytics_metadata(imgsz=IMGSZ, batch=batch or 1, dynamic=batch is None)
    metrics = Metrics()
    det = YoloDetector(
        DetectorConfig(
            model=_detect_model(tmp_path, batch=batch, meta=meta, weights=True),
            device="cpu",
            batch=cfg_batch,
        ),
        metrics,
    )
    det.load()
    assert det.max_batch == max_batch
    assert metrics.counter("edgewatch_inference_calls_total", stage="detector") == 0  # warm-up
    frames = _frames()
    together = det.predict(frames)
    assert metrics.counter("edgewatch_inference_calls_total", stage="detector") == calls
    alone = [det.predict([f])[0] for f in frames]
    assert len(together) == 3
    for a, b in zip(together, alone, strict=True):
        np.testing.assert_allclose(a.xyxy, b.xyxy, atol=1e-3)
        np.testing.assert_array_equal(a.class_id, b.class_id)
        np.testing.assert_allclose(a.confidence, b.confidence, atol=1e-6)
    reverse = det.predict(frames[::-1])[::-1]
    for a, b in zip(together, reverse, strict=True):
        np.testing.assert_allclose(a.xyxy, b.xyxy, atol=1e-3)
    # the outputs depend on the picture, so a mix-up between frames would show:
    # in network-input pixels the first box sits elsewhere in every frame
    prep = det.preprocess(frames)
    x_in = [
        float(d.xyxy[0, 0]) * r + p[0]
        for d, r, p in zip(together, prep.ratios, prep.pads, strict=True)
    ]
    assert (
        min(abs(a - b) for a, b in [(x_in[0], x_in[1]), (x_in[1], x_in[2]), (x_in[0], x_in[2])])
        > 1.0
    )


# --------------------------------------------------------------------------- real model


def test_real_detector_finds_people(detector_path, vtest_frames) -> None:
    det = YoloDetector(DetectorConfig(model=detector_path, device="cpu"))
    det.load()
    assert det.names == {0: "Normal", 1: "Fall"} and det.imgsz == (640, 640)
    assert det.task is Task.DETECT and det.max_batch == 1
    results = det.predict(vtest_frames[:10])
    assert len(results) == 10
    for res in results:
        people = res[res.class_id == 0]
        assert len(people) >= 2
        w = people.xyxy[:, 2] - people.xyxy[:, 0]
        h = people.xyxy[:, 3] - people.xyxy[:, 1]
        assert ((w > 15) & (w < 200) & (h > 40) & (h < 400) & (h > w)).all()
        assert (people.xyxy >= 0).all() and (people.xyxy[:, [2, 3]] <= [768, 576]).all()
        assert (res.confidence > 0.25).all()
