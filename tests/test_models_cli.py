"""``edgewatch models info`` and ``models fp32`` on ONNX models built at test time."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgewatch.cli import main
from edgewatch.pipeline.models.quantize import convert_to_fp32

F16, F32 = TensorProto.FLOAT16, TensorProto.FLOAT
ROOT = Path(__file__).resolve().parent.parent


def _meta(model: onnx.ModelProto, meta: dict[str, str]) -> None:
    for k, v in meta.items():
        p = model.metadata_props.add()
        p.key, p.value = k, v


def build_info_model(path: Path, batch: int | str, meta: dict[str, str],
                     outputs: list[tuple[str, list[int | str]]]) -> Path:
    """A model whose graph is ``ReduceMean`` -> Reshape to (B, 1, ...) -> Expand to each
    output shape (the batch dimension follows the input's, so ORT infers the declared shapes)."""
    inp = helper.make_tensor_value_info("images", F32, [batch, 3, 320, 320])
    nodes, outs, inits = [], [], []
    nodes.append(helper.make_node("ReduceMean", ["images"], ["m"], axes=[1, 2, 3], keepdims=0))
    for name, shape in outputs:
        static = [1] + [d if isinstance(d, int) else 1 for d in shape[1:]]
        inits.append(numpy_helper.from_array(np.array(static, np.int64), f"{name}_shape"))
        rows = np.array([-1] + [1] * (len(shape) - 1), np.int64)
        inits.append(numpy_helper.from_array(rows, f"{name}_rows"))
        nodes.append(helper.make_node("Reshape", ["m", f"{name}_rows"], [f"{name}_m"]))
        nodes.append(helper.make_node("Expand", [f"{name}_m", f"{name}_shape"], [name]))
        outs.append(helper.make_tensor_value_info(name, F32, shape))
    graph = helper.make_graph(nodes, "info", [inp], outs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="edgewatch-test")
    model.ir_version = 8
    _meta(model, meta)
    onnx.save(model, str(path))
    return path


DETECT_META = {
    "author": "Ultralytics", "task": "detect", "stride": "32", "batch": "1",
    "imgsz": "[320, 320]", "names": "{0: 'person', 1: 'car'}",
    "args": "{'batch': 1, 'half': False, 'nms': False}",
}
POSE_META = {
    "task": "pose", "stride": "32", "imgsz": "[320, 320]", "names": "{0: 'person'}",
    "kpt_shape": "[17, 3]", "args": "{'batch': 4, 'dynamic': True}",
}


@pytest.mark.parametrize(
    ("batch", "meta", "outputs", "expected_lines"),
    [
        (1, DETECT_META, [("output0", [1, 6, 2100])], [
            "task:     detect",
            "classes:  2: 0=person, 1=car",
            "imgsz:    320x320 (h x w)",
            "stride:   32",
            "batch:    1",
            "half:     False",
            "end2end:  False",
            "  images  [1, 3, 320, 320]  float32",
            "  output0  [1, 6, 2100]  float32",
            "  author  Ultralytics",
            "  names   {0: 'person', 1: 'car'}",
            "producer: edgewatch-test",
            "opset:    ai.onnx 13",
        ]),
        ("batch", POSE_META, [("output0", ["batch", 56, 2100])], [
            "task:     pose",
            "classes:  1: 0=person",
            "batch:    dynamic",
            "kpt_shape: [17, 3]",
            "  images  [batch, 3, 320, 320]  float32",
            "  output0  [batch, 56, 2100]  float32",
            "  kpt_shape  [17, 3]",
        ]),
        (1, {}, [("out", [1, 84, 2100])], [
            "task:     (not in metadata)",
            "classes:  0: (none in metadata)",
            "imgsz:    320x320 (h x w)",
            "metadata: (none)",
        ]),
    ],
)
def test_info_text(tmp_path: Path, capsys: pytest.CaptureFixture[str], batch: int | str,
                   meta: dict[str, str], outputs: list, expected_lines: list[str]) -> None:
    path = build_info_model(tmp_path / "m.onnx", batch, meta, outputs)
    assert main(["models", "info", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"model:    {path}"
    for line in expected_lines:
        assert line in lines


def test_info_wraps_many_classes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    names = {i: f"class{i:02d}" for i in range(80)}
    meta = DETECT_META | {"names": repr(names)}
    path = build_info_model(tmp_path / "m.onnx", 1, meta, [("output0", [1, 84, 2100])])
    assert main(["models", "info", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("classes:  80: 0=class00"))
    block = [lines[start][10:]]
    block += [x[10:] for x in lines[start + 1 :] if x.startswith("          ")]
    assert all(len(x) <= 90 for x in block)
    assert " ".join(block) == "80: " + ", ".join(f"{i}=class{i:02d}" for i in range(80))


def test_info_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = build_info_model(tmp_path / "m.onnx", 1, DETECT_META, [("output0", [1, 6, 2100])])
    assert main(["models", "info", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["task"] == "detect"
    assert doc["names"] == {"0": "person", "1": "car"}
    assert (doc["imgsz"], doc["stride"], doc["batch"]) == ([320, 320], 32, 1)
    assert doc["inputs"] == [{"name": "images", "shape": [1, 3, 320, 320], "dtype": "float32"}]
    assert doc["outputs"] == [{"name": "output0", "shape": [1, 6, 2100], "dtype": "float32"}]
    assert (doc["producer"], doc["opset"]) == ("edgewatch-test", {"ai.onnx": 13})
    assert doc["metadata"] == DETECT_META


def test_info_needs_only_onnxruntime(tmp_path: Path) -> None:
    """`models info` in a fresh interpreter where `import onnx` fails (as after a plain
    `pip install edgewatch`): the same answer, the opset left out."""
    path = build_info_model(tmp_path / "m.onnx", "batch", POSE_META,
                            [("output0", ["batch", 56, 2100])])
    blocker = tmp_path / "no_onnx"
    blocker.mkdir()
    (blocker / "onnx.py").write_text("raise ImportError('onnx is not installed (test)')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), str(ROOT)])}

    def info(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "edgewatch", "models", "info", str(path),
                               *extra], capture_output=True, text=True, env=env, timeout=120)

    probe = subprocess.run([sys.executable, "-c", "import onnx"], capture_output=True,
                           text=True, env=env, timeout=60)
    assert probe.returncode != 0 and "onnx is not installed (test)" in probe.stderr
    r = info("--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["opset"] is None and doc["producer"] == "edgewatch-test"
    assert (doc["task"], doc["names"], doc["kpt_shape"], doc["batch"]) == (
        "pose", {"0": "person"}, [17, 3], None)
    assert doc["inputs"] == [{"name": "images", "shape": ["batch", 3, 320, 320],
                              "dtype": "float32"}]
    assert doc["outputs"] == [{"name": "output0", "shape": ["batch", 56, 2100],
                               "dtype": "float32"}]
    assert doc["metadata"] == POSE_META
    r = info()
    assert r.returncode == 0, r.stderr
    assert "opset:    (not read: pip install onnx to show it)" in r.stdout.splitlines()
    assert "task:     pose" in r.stdout.splitlines()
    r = subprocess.run([sys.executable, "-m", "edgewatch", "models", "info",
                        str(tmp_path / "no_onnx" / "onnx.py")],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1 and "not an ONNX file" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "model file not found"), (b"definitely not protobuf", "not an ONNX file")],
)
def test_info_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | None,
                       message: str) -> None:
    path = tmp_path / "bad.onnx"
    if content is not None:
        path.write_bytes(content)
    assert main(["models", "info", str(path)]) == 1
    assert message in capsys.readouterr().err


def test_info_real_detector(detector_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "info", str(detector_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    for line in ("task:     detect", "classes:  2: 0=Normal, 1=Fall", "imgsz:    640x640 (h x w)",
                 "  images  [1, 3, 640, 640]  float32", "  output0  [1, 6, 8400]  float32"):
        assert line in lines


# --------------------------------------------------------------------------- fp32


def build_fp16_model(path: Path, keep_io_float: bool) -> Path:
    """Conv(fp16 weights) + SiLU + a Constant fp16 bias + ConstantOfShape, in fp16.

    With ``keep_io_float`` the graph takes and returns float32 through Cast nodes
    (as ``onnxconverter_common`` ``keep_io_types`` writes it)."""
    rng = np.random.default_rng(3)
    w = rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float16)
    b = rng.normal(0, 0.1, 4).astype(np.float16)
    io = F32 if keep_io_float else F16
    nodes = []
    x = "images"
    if keep_io_float:
        nodes.append(helper.make_node("Cast", ["images"], ["x16"], to=F16, name="cast_in"))
        x = "x16"
    nodes += [
        helper.make_node("Conv", [x, "w", "b"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Sigmoid", ["c"], ["s"]),
        helper.make_node("Mul", ["c", "s"], ["a"]),
        helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(
            np.array(0.5, np.float16), "k")),
        helper.make_node("Shape", ["a"], ["shp"]),
        helper.make_node("ConstantOfShape", ["shp"], ["ones"], value=numpy_helper.from_array(
            np.array([1.0], np.float16), "v")),
        helper.make_node("Mul", ["a", "k"], ["ak"]),
        helper.make_node("Add", ["ak", "ones"], ["y16" if keep_io_float else "out"]),
    ]
    if keep_io_float:
        nodes.append(helper.make_node("Cast", ["y16"], ["out"], to=F32, name="cast_out"))
    graph = helper.make_graph(
        nodes, "fp16", [helper.make_tensor_value_info("images", io, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("out", io, [1, 4, 16, 16])],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    _meta(model, {"task": "detect", "names": "{0: 'a'}", "args": "{'half': True, 'batch': 1}"})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"images": x})[0]


@pytest.mark.parametrize(
    ("keep_io_float", "tensors", "retargeted", "removed"),
    [
        # w, b, images, out, Constant k, ConstantOfShape value
        (False, 6, 0, 0),
        # w, b, k, value; cast_in becomes float->float (removed), cast_out feeds the output (kept)
        (True, 4, 1, 1),
    ],
)
def test_fp32_conversion(tmp_path: Path, keep_io_float: bool, tensors: int, retargeted: int,
                         removed: int) -> None:
    src = build_fp16_model(tmp_path / "m16.onnx", keep_io_float)
    report = convert_to_fp32(src, tmp_path / "m32.onnx")
    assert (report.tensors, report.casts_retargeted, report.casts_removed) == (
        tensors, retargeted, removed)
    m = onnx.load(str(report.output))
    assert not any(t.data_type == F16 for t in m.graph.initializer)
    assert m.graph.input[0].type.tensor_type.elem_type == F32
    assert m.graph.output[0].type.tensor_type.elem_type == F32
    meta = {p.key: p.value for p in m.metadata_props}
    assert meta["names"] == "{0: 'a'}" and meta["task"] == "detect"
    assert meta["args"] == "{'half': False, 'batch': 1}"
    x = np.random.default_rng(5).random((1, 3, 16, 16), dtype=np.float32)
    ref = _run(src, x if keep_io_float else x.astype(np.float16)).astype(np.float32)
    got = _run(report.output, x)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=1e-2, atol=1e-2)


def test_fp32_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = build_fp16_model(tmp_path / "m16.onnx", False)
    out = tmp_path / "m32.onnx"
    assert main(["models", "fp32", str(src), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == (
        f"wrote {out}: 6 tensors to float32, 0 casts retargeted, 0 float32->float32 casts removed")
    assert main(["models", "info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "half:     False" in text and "  images  [1, 3, 16, 16]  float32" in text


def test_fp32_of_fp32_model_is_a_copy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = build_info_model(tmp_path / "m.onnx", 1, DETECT_META, [("output0", [1, 6, 2100])])
    out = tmp_path / "copy.onnx"
    assert main(["models", "fp32", str(src), "--out", str(out)]) == 0
    assert "has no float16 tensors" in capsys.readouterr().out
    assert onnx.load(str(out)).SerializeToString() == onnx.load(str(src)).SerializeToString()


def test_fp32_refuses_to_overwrite(tmp_path: Path) -> None:
    from edgewatch.errors import ModelError

    src = build_fp16_model(tmp_path / "m16.onnx", False)
    with pytest.raises(ModelError, match="would overwrite the input model"):
        convert_to_fp32(src, src)


# --------------------------------------------------------------------------- bench
# (``edgewatch bench`` shares this file: it needs the same tiny models)


def _write_video(path: Path, n: int) -> Path:
    import cv2

    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (160, 120))
    for i in range(n):
        vw.write(np.full((120, 160, 3), 8 * i, np.uint8))
    vw.release()
    return path


def test_bench_stages_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = build_info_model(tmp_path / "m.onnx", 1, DETECT_META, [("output0", [1, 6, 2100])])
    video = _write_video(tmp_path / "v.avi", 12)
    assert main(["bench", "--model", str(model), "--video", str(video), "--frames", "7",
                 "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    st = doc["stages"]
    assert (st["frames"], st["batch"], st["imgsz"]) == (7, 1, [320, 320])
    assert set(st["stage_ms"]) == {"decode", "preprocess", "inference", "postprocess", "track"}
    assert all(set(v) == {"p50", "p90"} for v in st["stage_ms"].values())
    assert st["inference_fps"] == pytest.approx(1000 / st["stage_ms"]["inference"]["p50"])
    assert "pipeline" not in doc


def test_bench_config_runs_pipeline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = build_info_model(tmp_path / "m.onnx", 1, DETECT_META, [("output0", [1, 6, 2100])])
    video = _write_video(tmp_path / "v.avi", 12)
    cfg = tmp_path / "p.yaml"
    cfg.write_text(
        f"sources:\n  - {{id: cam, uri: '{video}'}}\n"
        f"detector: {{model: '{model}', device: cpu}}\n"
        f"sinks:\n  - {{type: jsonl, path: '{tmp_path}/{{source}}.jsonl'}}\n"
        "  - {type: zmq, endpoint: 'tcp://127.0.0.1:5555'}\n"
    )
    (tmp_path / "cam.jsonl").write_text("a real run's results\n")
    assert main(["bench", str(cfg), "--frames", "5"]) == 0
    text = capsys.readouterr().out
    assert "inference only:" in text
    assert "end to end (pipeline):" in text and "5 frames in" in text
    # the sinks did their work (timed per message) but elsewhere: the config's
    # own outputs are untouched and its ZeroMQ port was not taken
    assert re.search(r"sink jsonl\s+\d+\.\d+ ms/message", text), text
    assert re.search(r"sink zmq\s+\d+\.\d+ ms/message", text), text
    assert (tmp_path / "cam.jsonl").read_text() == "a real run's results\n"


def test_bench_json_has_sink_ms(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = build_info_model(tmp_path / "m.onnx", 1, DETECT_META, [("output0", [1, 6, 2100])])
    video = _write_video(tmp_path / "v.avi", 8)
    cfg = tmp_path / "p.yaml"
    cfg.write_text(
        f"sources:\n  - {{id: cam, uri: '{video}'}}\n"
        f"detector: {{model: '{model}', device: cpu}}\n"
        f"sinks:\n  - {{type: mot, path: '{tmp_path}/{{source}}.txt'}}\n"
    )
    assert main(["bench", str(cfg), "--frames", "4", "--json"]) == 0
    pl = json.loads(capsys.readouterr().out)["pipeline"]
    assert sum(pl["frames"].values()) == 4
    assert set(pl["sink_ms"]) == {"mot"} and pl["sink_ms"]["mot"] >= 0
    assert not (tmp_path / "cam.txt").exists()


def test_bench_needs_a_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--video", "x.avi"]) == 2
    assert "--model: give --model MODEL.onnx or a CONFIG" in capsys.readouterr().err


def test_fp32_of_real_fp16_export(detector_path: Path, vtest_frames: list, tmp_path: Path) -> None:
    """fp16 made from the real detector by onnxruntime's own converter, then back to fp32:
    same detections as the original model (within fp16 weight rounding)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from edgewatch.config import DetectorConfig
    from edgewatch.pipeline.models.onnx import read_model_info
    from edgewatch.pipeline.models.quantize import agreement
    from edgewatch.pipeline.models.yolo import YoloDetector

    m16 = convert_float_to_float16(onnx.load(str(detector_path)), keep_io_types=False)
    onnx.save(m16, str(tmp_path / "det16.onnx"))
    report = convert_to_fp32(tmp_path / "det16.onnx", tmp_path / "det32.onnx")
    assert report.tensors > 0
    info = read_model_info(report.output)
    assert info.inputs[0].dtype == "float32" and info.outputs[0].dtype == "float32"
    assert info.names == {0: "Normal", 1: "Fall"} and not info.half

    def detect(path: Path) -> list:
        det = YoloDetector(DetectorConfig.model_validate({"model": path, "device": "cpu"}))
        det.load()
        return det.predict(vtest_frames[:3])

    a = agreement(detect(detector_path), detect(report.output))
    assert a.ref_boxes > 0
    # a box whose score sits at the 0.25 threshold may flip under fp16 rounding; the rest match
    assert a.precision >= 0.9 and a.recall >= 0.9 and a.mean_iou > 0.98


@pytest.mark.parametrize("out", ["/proc/edgewatch-test/y.onnx", "file/y.onnx", "dir"])
def test_fp32_unusable_out_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   out: str) -> None:
    src = build_fp16_model(tmp_path / "m16.onnx", False)
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir").mkdir()
    target = tmp_path / out
    assert main(["models", "fp32", str(src), "--out", str(target)]) == 2
    err = capsys.readouterr().err
    where, why = (target, "is a directory") if out == "dir" else (
        target.parent, "cannot create this folder")
    assert err.startswith(f"edgewatch models fp32: --out {where}: {why}"), err
